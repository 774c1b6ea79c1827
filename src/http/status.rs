//! The client's counters in `/stats` (`"http"`) and `/metrics`.

use super::{HttpClient, HttpCounts};
use crate::metrics::{Kind, LabelledCount, Metric, Read, Report, StatusReporter};

const METRICS: &[Metric<HttpCounts>] = &[
    Metric {
        name: "certstream_http_connections_closed_desync_total",
        kind: Kind::Counter,
        help: "Log connections closed instead of reused because the server sent more than was asked for.",
        stats: "http",
        read: Read::PerLabel {
            label: "reason",
            total: None,
            read: |c| {
                vec![
                    LabelledCount {
                        label: "leftover",
                        key: "connections_closed_leftover",
                        count: c.leftover,
                    },
                    LabelledCount {
                        label: "unsolicited",
                        key: "connections_closed_unsolicited",
                        count: c.unsolicited,
                    },
                ]
            },
        },
    },
    Metric::counter(
        "certstream_http_bodies_too_large_total",
        "http.bodies_too_large",
        "Log responses refused because their body was larger than what was asked for allows.",
        |c| c.body_too_large,
    ),
];

impl StatusReporter for HttpClient {
    fn report(&self, out: &mut Report<'_>) {
        out.metrics(METRICS, &self.counts());
    }
}
