//! The client's counters in `/stats` (`"http"`) and `/metrics`.

use serde_json::{Map, Value, json};

use super::HttpClient;
use crate::server::{StatusReporter, metric};

impl StatusReporter for HttpClient {
    fn stats(&self, out: &mut Map<String, Value>) {
        let desync = self.desync_counts();
        out.insert(
            "http".to_owned(),
            json!({
                "connections_closed_leftover": desync.leftover,
                "connections_closed_unsolicited": desync.unsolicited,
            }),
        );
    }

    fn metrics(&self, out: &mut String) {
        let desync = self.desync_counts();
        metric(
            out,
            "certstream_http_connections_closed_desync_total",
            "counter",
            "Log connections closed instead of reused because the server sent more than was asked for.",
            &[
                ("reason=\"leftover\"", desync.leftover as f64),
                ("reason=\"unsolicited\"", desync.unsolicited as f64),
            ],
        );
    }
}
