//! The server's own section of `/stats` and `/metrics` (clients, fan-out, connections, protective closes); the
//! other components add theirs through [`StatusReporter`]. Never client addresses or headers.

use crate::filter::Refusal;
use crate::hub::HubStats;
use crate::message::StreamKind;
use crate::metrics::{Fact, Kind, LabelledCount, Metric, Read, Report, StatusReporter};
use crate::server::event_stream::Format;
use crate::server::guard::{GuardStats, Reason};
use crate::server::limits::ConnectionStats;

/// The server's own counters at one instant.
pub(crate) struct Snapshot {
    /// Seconds since start.
    pub uptime_seconds: f64,
    /// Fan-out counters.
    pub hub: HubStats,
    /// Connected server-sent events and NDJSON clients, in [`Format::ALL`] order.
    pub http_stream_clients: [usize; 2],
    /// Connection counters.
    pub connections: ConnectionStats,
    /// Requests to the operational routes answered `429`.
    pub rate_limited: u64,
    /// Protective closes and the partial-message bytes held.
    pub guard: GuardStats,
}

/// The `/stats` key and Prometheus `stream` label of each stream.
fn stream_name(kind: StreamKind) -> &'static str {
    match kind {
        StreamKind::Lite => "lite",
        StreamKind::Full => "full",
        StreamKind::DomainsOnly => "domains_only",
    }
}

const FACTS: &[Fact<Snapshot>] = &[Fact {
    stats: "version",
    read: |_| env!("CARGO_PKG_VERSION").into(),
}];

const METRICS: &[Metric<Snapshot>] = &[
    Metric {
        name: "certstream_uptime_seconds",
        kind: Kind::Gauge,
        help: "Seconds since the server started.",
        stats: "uptime_seconds",
        read: Read::Seconds(|s| s.uptime_seconds),
    },
    Metric {
        name: "certstream_clients",
        kind: Kind::Gauge,
        help: "Connected clients per stream (every transport).",
        stats: "clients",
        read: Read::PerLabel {
            label: "stream",
            total: Some("total"),
            read: |s| {
                StreamKind::ALL
                    .iter()
                    .zip(s.hub.clients)
                    .map(|(kind, n)| LabelledCount::keyed_by_label(stream_name(*kind), n as u64))
                    .collect()
            },
        },
    },
    Metric {
        name: "certstream_clients_by_transport",
        kind: Kind::Gauge,
        help: "Connected clients per transport (WebSocket, server-sent events, NDJSON).",
        stats: "clients_by_transport",
        read: Read::PerLabel {
            label: "transport",
            total: None,
            read: |s| {
                let http: usize = s.http_stream_clients.iter().sum();
                let websocket = s.hub.clients.iter().sum::<usize>().saturating_sub(http);
                std::iter::once(LabelledCount::keyed_by_label("websocket", websocket as u64))
                    .chain(
                        Format::ALL
                            .iter()
                            .zip(s.http_stream_clients)
                            .map(|(format, n)| {
                                LabelledCount::keyed_by_label(format.name(), n as u64)
                            }),
                    )
                    .collect()
            },
        },
    },
    Metric {
        name: "certstream_resumes_total",
        kind: Kind::Counter,
        help: "Server-sent events clients that reconnected with a Last-Event-ID, by whether the messages they \
               missed were still in the replay history (served) or not (unavailable: they started live).",
        stats: "resumes",
        read: Read::PerLabel {
            label: "outcome",
            total: None,
            read: |s| {
                vec![
                    LabelledCount::keyed_by_label("served", s.hub.resumes_served),
                    LabelledCount::keyed_by_label("unavailable", s.hub.resumes_unavailable),
                ]
            },
        },
    },
    Metric::gauge(
        "certstream_replay_history_messages",
        "replay_history.messages",
        "Messages kept for resuming clients (--replay-bytes).",
        |s| s.hub.history_messages as u64,
    ),
    Metric::gauge(
        "certstream_replay_history_bytes",
        "replay_history.bytes",
        "Bytes of the messages kept for resuming clients (three variants each).",
        |s| s.hub.history_bytes as u64,
    ),
    Metric::counter(
        "certstream_replays_started_total",
        "replays.started",
        "Clients started from a cursor or a time whose messages were replayed from the stream (JetStream).",
        |s| s.hub.replays.started,
    ),
    Metric::counter(
        "certstream_replays_caught_up_total",
        "replays.caught_up",
        "Replayed clients that caught up and went live.",
        |s| s.hub.replays.caught_up,
    ),
    Metric::counter(
        "certstream_replays_ended_total",
        "replays.ended",
        "Replays that ended before their client caught up (the stream could not be read further): the client was \
         closed, to reconnect from its last cursor.",
        |s| s.hub.replays.ended,
    ),
    Metric::counter(
        "certstream_replays_refused_total",
        "replays.refused",
        "Clients starting from a cursor or a time answered 503: no replay could be opened.",
        |s| s.hub.replays.refused,
    ),
    Metric::gauge(
        "certstream_replays_catching_up",
        "replays.catching_up",
        "Clients catching up from their replay now.",
        |s| s.hub.replays.catching_up as u64,
    ),
    Metric::counter(
        "certstream_replays_messages_total",
        "replays.messages",
        "Replayed messages queued for catching-up clients.",
        |s| s.hub.replays.messages,
    ),
    Metric::counter(
        "certstream_messages_published_total",
        "messages_published",
        "Messages published to the streams.",
        |s| s.hub.published,
    ),
    Metric::counter(
        "certstream_messages_dropped_total",
        "messages_dropped",
        "Messages dropped from full client queues (slow clients).",
        |s| s.hub.dropped,
    ),
    Metric::gauge(
        "certstream_queued_frames",
        "queued_frames",
        "Frames waiting in client queues.",
        |s| s.hub.queued as u64,
    ),
    Metric::gauge(
        "certstream_max_client_queue",
        "max_client_queue",
        "Frames waiting in the fullest client queue.",
        |s| s.hub.max_queued as u64,
    ),
    Metric::gauge(
        "certstream_connections_open",
        "connections.open",
        "Open TCP connections (HTTP and WebSocket).",
        |s| s.connections.open as u64,
    ),
    Metric::counter(
        "certstream_connections_accepted_total",
        "connections.accepted",
        "TCP connections accepted.",
        |s| s.connections.accepted,
    ),
    Metric::counter(
        "certstream_messages_dropped_for_bytes_total",
        "messages_dropped_for_bytes",
        "Of the dropped messages, those dropped because a client queue was over its byte budget.",
        |s| s.hub.dropped_for_bytes,
    ),
    Metric::gauge(
        "certstream_queued_bytes",
        "queued_bytes",
        "Bytes waiting in client queues (shared frames counted once per client).",
        |s| s.hub.queued_bytes as u64,
    ),
    Metric::gauge(
        "certstream_max_client_queue_bytes",
        "max_client_queue_bytes",
        "Bytes waiting in the fullest client queue.",
        |s| s.hub.max_queued_bytes as u64,
    ),
    Metric::counter(
        "certstream_latest_skipped_messages_total",
        "latest_skipped_messages",
        "Messages left out of /latest.json and the example routes for their size.",
        |s| s.hub.latest_skipped,
    ),
    Metric::counter(
        "certstream_http_rate_limited_total",
        "http_rate_limited",
        "Requests to /stats, /metrics, /latest.json or the example routes answered 429.",
        |s| s.rate_limited,
    ),
    Metric::counter(
        "certstream_accept_errors_total",
        "connections.accept_errors",
        "Failed accept calls (typically the open-files limit).",
        |s| s.connections.accept_errors,
    ),
    Metric::gauge(
        "certstream_connections_descriptor_room",
        "connections.descriptor_room",
        "Connections clients may hold before the descriptors reserved for the CT logs.",
        |s| s.connections.descriptor_room as u64,
    ),
    Metric {
        name: "certstream_connections_rejected_total",
        kind: Kind::Counter,
        help: "Connections closed at accept because a limit was reached, by limit.",
        stats: "connections",
        read: Read::PerLabel {
            label: "reason",
            total: Some("rejected"),
            read: |s| {
                let c = &s.connections;
                vec![
                    LabelledCount {
                        label: "per_ip",
                        key: "rejected_per_ip",
                        count: c.rejected_per_ip,
                    },
                    LabelledCount {
                        label: "total",
                        key: "rejected_total_limit",
                        count: c.rejected_total,
                    },
                    LabelledCount {
                        label: "descriptors",
                        key: "rejected_descriptors",
                        count: c.rejected_descriptors,
                    },
                ]
            },
        },
    },
    Metric {
        name: "certstream_protective_closes_total",
        kind: Kind::Counter,
        help: "Connections the server closed to protect itself (deadlines, budgets, dead peers, protocol errors).",
        stats: "protective_closes",
        read: Read::PerLabel {
            label: "reason",
            total: None,
            read: |s| {
                Reason::ALL
                    .iter()
                    .zip(s.guard.closes)
                    .map(|(reason, n)| LabelledCount::keyed_by_label(reason.name(), n))
                    .collect()
            },
        },
    },
    Metric::gauge(
        "certstream_filtered_clients",
        "filtered_clients",
        "Stream clients with a filter.",
        |s| s.hub.filtered_clients as u64,
    ),
    Metric::gauge(
        "certstream_filters",
        "filters.distinct",
        "Distinct filters held (clients with the same filter share one).",
        |s| s.hub.filters.filters as u64,
    ),
    Metric::gauge(
        "certstream_filter_domains",
        "filters.domains",
        "Distinct domain values of the filters.",
        |s| s.hub.filters.domains as u64,
    ),
    Metric::gauge(
        "certstream_filter_keywords",
        "filters.keywords",
        "Distinct keyword values of the filters.",
        |s| s.hub.filters.keywords as u64,
    ),
    Metric::gauge(
        "certstream_filter_regexes",
        "filters.regexes",
        "Distinct regexes of the filters.",
        |s| s.hub.filters.regexes as u64,
    ),
    Metric::gauge(
        "certstream_filter_issuers",
        "filters.issuers",
        "Distinct issuer values of the filters.",
        |s| s.hub.filters.issuers as u64,
    ),
    Metric {
        name: "certstream_filters_refused_total",
        kind: Kind::Counter,
        help: "Stream requests refused with 400 for their filter, by reason.",
        stats: "filters_refused",
        read: Read::PerLabel {
            label: "reason",
            total: None,
            read: |s| {
                Refusal::REASONS
                    .iter()
                    .zip(s.hub.filters.refused)
                    .map(|(reason, n)| LabelledCount::keyed_by_label(reason, n))
                    .collect()
            },
        },
    },
    Metric::gauge(
        "certstream_dedup_clients",
        "dedup.clients",
        "Stream clients that asked for deduplication.",
        |s| s.hub.dedup_clients as u64,
    ),
    Metric::counter(
        "certstream_dedup_skipped_total",
        "dedup.skipped",
        "Messages not sent to deduplicating clients as repeats of a certificate they were offered (summed over clients).",
        |s| s.hub.duplicates_skipped,
    ),
    Metric::gauge(
        "certstream_dedup_fingerprints",
        "dedup.fingerprints",
        "Certificate fingerprints in the deduplication window.",
        |s| s.hub.dedup_fingerprints as u64,
    ),
    Metric::counter(
        "certstream_dedup_evicted_total",
        "dedup.evicted",
        "Fingerprints forgotten before the end of the deduplication window, for room (--dedup-bytes).",
        |s| s.hub.dedup_evicted,
    ),
    Metric::gauge(
        "certstream_partial_message_bytes",
        "partial_message_bytes",
        "Bytes held in unfinished client WebSocket messages.",
        |s| s.guard.partial_message_bytes as u64,
    ),
];

impl StatusReporter for Snapshot {
    fn report(&self, out: &mut Report<'_>) {
        out.facts(FACTS, self);
        out.metrics(METRICS, self);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::metrics::{metrics_text, stats_json};

    fn snapshot() -> Snapshot {
        Snapshot {
            uptime_seconds: 1.5,
            hub: HubStats {
                clients: [3, 1, 0],
                published: 7,
                dropped: 2,
                queued: 4,
                max_queued: 3,
                resumes_served: 8,
                resumes_unavailable: 2,
                history_messages: 7,
                history_bytes: 7_000,
                replays: crate::hub::ReplayStats {
                    started: 5,
                    caught_up: 3,
                    ended: 1,
                    refused: 2,
                    catching_up: 1,
                    messages: 40,
                },
                ..HubStats::default()
            },
            http_stream_clients: [1, 2],
            connections: ConnectionStats {
                open: 5,
                accepted: 9,
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

    #[test]
    fn stats_json_holds_the_counters() {
        let value: Value = serde_json::from_slice(&stats_json(&[&snapshot()]).unwrap()).unwrap();
        assert_eq!(
            value["clients"],
            json!({"lite": 3, "full": 1, "domains_only": 0, "total": 4})
        );
        assert_eq!(value["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(value["uptime_seconds"], 1.5);
        assert_eq!(value["messages_published"], 7);
        assert_eq!(value["messages_dropped"], 2);
        assert_eq!(value["connections"]["rejected"], 1);
        assert_eq!(value["connections"]["rejected_per_ip"], 1);
        assert_eq!(value["protective_closes"]["control_frame_flood"], 4);
        assert_eq!(value["partial_message_bytes"], 70);
        assert_eq!(
            value["clients_by_transport"],
            json!({"websocket": 1, "sse": 1, "ndjson": 2})
        );
        assert_eq!(value["resumes"], json!({"served": 8, "unavailable": 2}));
        assert_eq!(
            value["replay_history"],
            json!({"messages": 7, "bytes": 7_000})
        );
        assert_eq!(
            value["replays"],
            json!({"started": 5, "caught_up": 3, "ended": 1, "refused": 2, "catching_up": 1, "messages": 40})
        );
    }

    #[test]
    fn metrics_are_prometheus_text() {
        let text = String::from_utf8(metrics_text(&[&snapshot()])).unwrap();
        assert!(text.contains("# TYPE certstream_clients gauge\n"));
        assert!(text.contains("certstream_clients{stream=\"lite\"} 3\n"));
        assert!(text.contains("certstream_messages_dropped_total 2\n"));
        assert!(text.contains("certstream_connections_rejected_total{reason=\"per_ip\"} 1\n"));
        assert!(text.contains("certstream_http_rate_limited_total 6\n"));
        assert!(text.contains("certstream_clients_by_transport{transport=\"sse\"} 1\n"));
        assert!(text.contains("certstream_resumes_total{outcome=\"unavailable\"} 2\n"));
        assert!(text.contains("certstream_replay_history_bytes 7000\n"));
        assert!(text.contains("certstream_replays_caught_up_total 3\n"));
        assert!(text.contains("certstream_replays_catching_up 1\n"));
        assert!(
            text.contains("certstream_protective_closes_total{reason=\"http_write_timeout\"} 1\n")
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }

    /// Every component `main` adds, in its order, as one server shows them: each metric in both outputs with
    /// the same value, and no Prometheus name or `/stats` key defined twice.
    #[test]
    fn every_metric_of_every_component_is_in_both_outputs() {
        use std::rc::Rc;

        use crate::config::IngestConfig;
        use crate::http::HttpClient;
        use crate::hub::Hub;
        use crate::ingest::supervisor::Supervisor;
        use crate::logging::LogOutput;
        use crate::publish::Publisher;
        use certstream_ct::log_list::LogList;

        let tokens =
            std::env::temp_dir().join(format!("certstream-stats-tokens-{}", std::process::id()));
        std::fs::write(&tokens, "a-token\n").unwrap();
        let access = crate::server::auth::Access::load(&tokens, false).unwrap();
        std::fs::remove_file(&tokens).unwrap();
        crate::runtime::block_on(async {
            let config = IngestConfig::default();
            let hub = Hub::new(4);
            let log = LogOutput::spawn(std::io::sink(), 1024).unwrap();
            let http = Rc::new(HttpClient::new(config.http_client_config()).unwrap());
            let publisher = Rc::new(Publisher::to_hub(&hub, Default::default()));
            let supervisor = Supervisor::new(config, http.clone(), publisher.clone());
            let list = LogList::compiled_in().unwrap();
            supervisor.apply(&LogList {
                version: None,
                logs: list.selected(false).take(2).cloned().collect(),
                skipped: Vec::new(),
            });
            crate::metrics::tests::assert_both_outputs_agree(&[
                &snapshot(),
                &log,
                &*publisher,
                &hub.gate(),
                &supervisor,
                &*http,
                &access,
            ]);
            supervisor.shutdown();
        })
        .unwrap();
    }
}
