//! `/stats` (JSON) and `/metrics` (Prometheus text): the server's counters, extensible by other components (the CT
//! pollers add their per-log state through [`StatusReporter`]). Never client addresses or headers.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use crate::hub::HubStats;
use crate::server::guard::{GuardStats, Reason};
use crate::server::limits::ConnectionStats;
use crate::stream::StreamKind;

/// A component that contributes to `/stats` and `/metrics`.
pub trait StatusReporter {
    /// Adds this component's keys to the `/stats` object.
    fn stats(&self, out: &mut Map<String, Value>);
    /// Appends this component's metrics in Prometheus text format (with `# HELP`/`# TYPE` lines).
    fn metrics(&self, out: &mut String);
}

/// The server's own counters at one instant.
pub(crate) struct Snapshot {
    /// Seconds since start.
    pub uptime_seconds: f64,
    /// Fan-out counters.
    pub hub: HubStats,
    /// Connection counters.
    pub connections: ConnectionStats,
    /// Requests to the operational routes answered `429`.
    pub rate_limited: u64,
    /// Protective closes and the partial-message bytes held.
    pub guard: GuardStats,
}

/// The `/stats` key of each stream.
fn stream_name(kind: StreamKind) -> &'static str {
    match kind {
        StreamKind::Lite => "lite",
        StreamKind::Full => "full",
        StreamKind::DomainsOnly => "domains_only",
    }
}

impl StatusReporter for Snapshot {
    fn stats(&self, out: &mut Map<String, Value>) {
        let mut clients = Map::new();
        for (kind, count) in StreamKind::ALL.iter().zip(self.hub.clients) {
            clients.insert(stream_name(*kind).to_owned(), count.into());
        }
        clients.insert(
            "total".to_owned(),
            self.hub.clients.iter().sum::<usize>().into(),
        );
        out.insert("version".to_owned(), env!("CARGO_PKG_VERSION").into());
        out.insert(
            "uptime_seconds".to_owned(),
            json!((self.uptime_seconds * 1000.0).round() / 1000.0),
        );
        out.insert("clients".to_owned(), clients.into());
        out.insert("messages_published".to_owned(), self.hub.published.into());
        out.insert("messages_dropped".to_owned(), self.hub.dropped.into());
        out.insert("queued_frames".to_owned(), self.hub.queued.into());
        out.insert("max_client_queue".to_owned(), self.hub.max_queued.into());
        out.insert(
            "messages_dropped_for_bytes".to_owned(),
            self.hub.dropped_for_bytes.into(),
        );
        out.insert("queued_bytes".to_owned(), self.hub.queued_bytes.into());
        out.insert(
            "max_client_queue_bytes".to_owned(),
            self.hub.max_queued_bytes.into(),
        );
        out.insert(
            "latest_skipped_messages".to_owned(),
            self.hub.latest_skipped.into(),
        );
        out.insert("http_rate_limited".to_owned(), self.rate_limited.into());
        let c = &self.connections;
        out.insert(
            "connections".to_owned(),
            json!({
                "open": c.open,
                "accepted": c.accepted,
                "rejected": c.rejected,
                "rejected_per_ip": c.rejected_per_ip,
                "rejected_total_limit": c.rejected_total,
                "rejected_descriptors": c.rejected_descriptors,
                "accept_errors": c.accept_errors,
                "descriptor_room": c.descriptor_room,
            }),
        );
        let closes: Map<String, Value> = Reason::ALL
            .iter()
            .zip(self.guard.closes)
            .map(|(reason, count)| (reason.name().to_owned(), count.into()))
            .collect();
        out.insert("protective_closes".to_owned(), closes.into());
        out.insert(
            "partial_message_bytes".to_owned(),
            self.guard.partial_message_bytes.into(),
        );
    }

    fn metrics(&self, out: &mut String) {
        metric(
            out,
            "certstream_uptime_seconds",
            "gauge",
            "Seconds since the server started.",
            &[("", self.uptime_seconds)],
        );
        let clients: Vec<(String, f64)> = StreamKind::ALL
            .iter()
            .zip(self.hub.clients)
            .map(|(kind, count)| (format!("stream=\"{}\"", stream_name(*kind)), count as f64))
            .collect();
        let clients: Vec<(&str, f64)> = clients
            .iter()
            .map(|(label, v)| (label.as_str(), *v))
            .collect();
        metric(
            out,
            "certstream_clients",
            "gauge",
            "Connected WebSocket clients per stream.",
            &clients,
        );
        let counters = [
            (
                "certstream_messages_published_total",
                "counter",
                "Messages published to the streams.",
                self.hub.published as f64,
            ),
            (
                "certstream_messages_dropped_total",
                "counter",
                "Messages dropped from full client queues (slow clients).",
                self.hub.dropped as f64,
            ),
            (
                "certstream_queued_frames",
                "gauge",
                "Frames waiting in client queues.",
                self.hub.queued as f64,
            ),
            (
                "certstream_max_client_queue",
                "gauge",
                "Frames waiting in the fullest client queue.",
                self.hub.max_queued as f64,
            ),
            (
                "certstream_connections_open",
                "gauge",
                "Open TCP connections (HTTP and WebSocket).",
                self.connections.open as f64,
            ),
            (
                "certstream_connections_accepted_total",
                "counter",
                "TCP connections accepted.",
                self.connections.accepted as f64,
            ),
            (
                "certstream_messages_dropped_for_bytes_total",
                "counter",
                "Of the dropped messages, those dropped because a client queue was over its byte budget.",
                self.hub.dropped_for_bytes as f64,
            ),
            (
                "certstream_queued_bytes",
                "gauge",
                "Bytes waiting in client queues (shared frames counted once per client).",
                self.hub.queued_bytes as f64,
            ),
            (
                "certstream_max_client_queue_bytes",
                "gauge",
                "Bytes waiting in the fullest client queue.",
                self.hub.max_queued_bytes as f64,
            ),
            (
                "certstream_latest_skipped_messages_total",
                "counter",
                "Messages left out of /latest.json and the example routes for their size.",
                self.hub.latest_skipped as f64,
            ),
            (
                "certstream_http_rate_limited_total",
                "counter",
                "Requests to /stats, /metrics, /latest.json or the example routes answered 429.",
                self.rate_limited as f64,
            ),
            (
                "certstream_accept_errors_total",
                "counter",
                "Failed accept calls (typically the open-files limit).",
                self.connections.accept_errors as f64,
            ),
            (
                "certstream_connections_descriptor_room",
                "gauge",
                "Connections clients may hold before the descriptors reserved for the CT logs.",
                self.connections.descriptor_room as f64,
            ),
        ];
        for (name, kind, help, value) in counters {
            metric(out, name, kind, help, &[("", value)]);
        }
        let c = &self.connections;
        metric(
            out,
            "certstream_connections_rejected_total",
            "counter",
            "Connections closed at accept because a limit was reached, by limit.",
            &[
                ("reason=\"per_ip\"", c.rejected_per_ip as f64),
                ("reason=\"total\"", c.rejected_total as f64),
                ("reason=\"descriptors\"", c.rejected_descriptors as f64),
            ],
        );
        let closes: Vec<(String, f64)> = Reason::ALL
            .iter()
            .zip(self.guard.closes)
            .map(|(reason, count)| (format!("reason=\"{}\"", reason.name()), count as f64))
            .collect();
        let closes: Vec<(&str, f64)> = closes.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        metric(
            out,
            "certstream_protective_closes_total",
            "counter",
            "Connections the server closed to protect itself (deadlines, budgets, dead peers, protocol errors).",
            &closes,
        );
        metric(
            out,
            "certstream_partial_message_bytes",
            "gauge",
            "Bytes held in unfinished client WebSocket messages.",
            &[("", self.guard.partial_message_bytes as f64)],
        );
    }
}

/// Appends one metric family; each sample is `(labels without braces, value)`.
pub fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// The `/stats` body: the server's counters, then every reporter's keys.
pub(crate) fn stats_json(own: &Snapshot, reporters: &[std::rc::Rc<dyn StatusReporter>]) -> Vec<u8> {
    let mut out = Map::new();
    own.stats(&mut out);
    for reporter in reporters {
        reporter.stats(&mut out);
    }
    format!("{:#}\n", Value::Object(out)).into_bytes()
}

/// The `/metrics` body.
pub(crate) fn metrics_text(
    own: &Snapshot,
    reporters: &[std::rc::Rc<dyn StatusReporter>],
) -> Vec<u8> {
    let mut out = String::new();
    own.metrics(&mut out);
    for reporter in reporters {
        reporter.metrics(&mut out);
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            uptime_seconds: 1.5,
            hub: HubStats {
                clients: [3, 1, 0],
                published: 7,
                dropped: 2,
                queued: 4,
                max_queued: 3,
                ..HubStats::default()
            },
            connections: ConnectionStats {
                open: 5,
                accepted: 9,
                rejected: 1,
                rejected_per_ip: 1,
                ..ConnectionStats::default()
            },
            rate_limited: 6,
            guard: GuardStats {
                closes: [1, 2, 3, 4, 5, 6],
                partial_message_bytes: 70,
            },
        }
    }

    struct Logs;
    impl StatusReporter for Logs {
        fn stats(&self, out: &mut Map<String, Value>) {
            out.insert(
                "logs".to_owned(),
                json!([{"name": "test log", "index": 10}]),
            );
        }
        fn metrics(&self, out: &mut String) {
            metric(
                out,
                "certstream_log_index",
                "gauge",
                "Next index per log.",
                &[("log=\"test\"", 10.0)],
            );
        }
    }

    #[test]
    fn stats_json_holds_counters_and_reporter_sections() {
        let reporters: Vec<std::rc::Rc<dyn StatusReporter>> = vec![std::rc::Rc::new(Logs)];
        let value: Value = serde_json::from_slice(&stats_json(&snapshot(), &reporters)).unwrap();
        assert_eq!(
            value["clients"],
            json!({"lite": 3, "full": 1, "domains_only": 0, "total": 4})
        );
        assert_eq!(value["messages_published"], 7);
        assert_eq!(value["messages_dropped"], 2);
        assert_eq!(value["connections"]["rejected"], 1);
        assert_eq!(value["logs"][0]["index"], 10);
        assert_eq!(value["protective_closes"]["control_frame_flood"], 4);
        assert_eq!(value["partial_message_bytes"], 70);
    }

    #[test]
    fn metrics_are_prometheus_text() {
        let reporters: Vec<std::rc::Rc<dyn StatusReporter>> = vec![std::rc::Rc::new(Logs)];
        let text = String::from_utf8(metrics_text(&snapshot(), &reporters)).unwrap();
        assert!(text.contains("# TYPE certstream_clients gauge\n"));
        assert!(text.contains("certstream_clients{stream=\"lite\"} 3\n"));
        assert!(text.contains("certstream_messages_dropped_total 2\n"));
        assert!(text.contains("certstream_connections_rejected_total{reason=\"per_ip\"} 1\n"));
        assert!(text.contains("certstream_http_rate_limited_total 6\n"));
        assert!(text.contains("certstream_log_index{log=\"test\"} 10\n"));
        assert!(
            text.contains("certstream_protective_closes_total{reason=\"http_write_timeout\"} 1\n")
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
