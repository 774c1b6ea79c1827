//! The client's counters in `/stats` (`"http"`) and `/metrics`.

use serde_json::{Map, Value, json};

use super::HttpClient;
use crate::server::{StatusReporter, metric};

impl StatusReporter for HttpClient {
    fn stats(&self, out: &mut Map<String, Value>) {
        let counts = self.counts();
        out.insert(
            "http".to_owned(),
            json!({
                "connections_closed_leftover": counts.leftover,
                "connections_closed_unsolicited": counts.unsolicited,
                "bodies_too_large": counts.body_too_large,
            }),
        );
    }

    fn metrics(&self, out: &mut String) {
        let counts = self.counts();
        metric(
            out,
            "certstream_http_connections_closed_desync_total",
            "counter",
            "Log connections closed instead of reused because the server sent more than was asked for.",
            &[
                ("reason=\"leftover\"", counts.leftover as f64),
                ("reason=\"unsolicited\"", counts.unsolicited as f64),
            ],
        );
        metric(
            out,
            "certstream_http_bodies_too_large_total",
            "counter",
            "Log responses refused because their body was larger than what was asked for allows.",
            &[("", counts.body_too_large as f64)],
        );
    }
}
