//! The mock CT log (crate `mock-ct-log`) in this process, with helpers to query and script it.

use std::collections::BTreeMap;

use mock_ct_log::MockServer;
use serde_json::Value;

use crate::http::request;

/// A running mock CT log (in this process, on its own threads); it stops serving when dropped.
pub struct Mock {
    server: MockServer,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Mock {
    /// Starts the mock with `rfc6962` + `tiled` logs of `size` entries that do not grow, each `--fault` spec of
    /// `faults`, and `args`.
    pub fn fixed(rfc6962: usize, tiled: usize, size: u64, faults: &[&str], args: &[&str]) -> Mock {
        let size = size.to_string();
        let mut all = vec!["--start-size", &size];
        all.extend_from_slice(args);
        for fault in faults {
            all.extend(["--fault", fault]);
        }
        Mock::with_logs(rfc6962, tiled, 0, &all)
    }

    /// Starts the mock with `rfc6962` + `tiled` logs growing by `rate` entries per second, and `args`.
    pub fn with_logs(rfc6962: usize, tiled: usize, rate: u64, args: &[&str]) -> Mock {
        let (rfc6962, tiled, rate) = (rfc6962.to_string(), tiled.to_string(), rate.to_string());
        let mut all = vec!["--rfc6962", &rfc6962, "--tiled", &tiled, "--rate", &rate];
        all.extend_from_slice(args);
        Mock::start(&all)
    }

    /// The benchmarks' firehose: `rfc6962` and `tiled` logs of a million entries that grow by `total_rate`
    /// entries a second in all, served in pages of 32.
    pub fn firehose(rfc6962: u32, tiled: u32, total_rate: f64) -> Mock {
        let per_log = (total_rate / f64::from(rfc6962 + tiled)).to_string();
        let (rfc6962, tiled) = (rfc6962.to_string(), tiled.to_string());
        Mock::start(&[
            "--rfc6962",
            &rfc6962,
            "--tiled",
            &tiled,
            "--rate",
            &per_log,
            "--start-size",
            "1000000",
            "--page-cap",
            "32",
        ])
    }

    /// Starts the mock with `args` (after `--listen 127.0.0.1:0`).
    pub fn start(args: &[&str]) -> Mock {
        let args = ["--listen", "127.0.0.1:0"]
            .iter()
            .chain(args)
            .map(|a| a.to_string());
        let options =
            mock_ct_log::parse_options(args).unwrap_or_else(|e| panic!("mock options: {e}"));
        let server = MockServer::start(options).unwrap_or_else(|e| panic!("mock-ct-log: {e}"));
        let addr = server.addr.clone();
        Mock { server, addr }
    }

    /// When entry `index` of each growing log became visible (`None`: there from the start).
    pub fn visible_at(&self, index: u64) -> Option<std::time::Instant> {
        self.server.growth.visible_at(index)
    }

    /// `http://127.0.0.1:PORT/log_list.json`
    pub fn list_url(&self) -> String {
        format!("http://{}/log_list.json", self.addr)
    }

    /// The mock's log list as JSON.
    pub fn list(&self) -> Value {
        self.json("/log_list.json")
    }

    /// The log ID (base64, the key of a state file's entry) of each log, by mock name.
    pub fn log_ids(&self) -> BTreeMap<String, String> {
        let list = self.list();
        let mut ids = BTreeMap::new();
        for operator in list["operators"].as_array().expect("operators") {
            for field in ["logs", "tiled_logs"] {
                for log in operator[field].as_array().into_iter().flatten() {
                    let url = log["url"].as_str().or(log["submission_url"].as_str());
                    ids.insert(
                        mock_name(url.expect("url")),
                        log["log_id"].as_str().expect("log_id").to_owned(),
                    );
                }
            }
        }
        ids
    }

    /// A GET returning JSON.
    pub fn json(&self, path: &str) -> Value {
        let (status, body) = request(&self.addr, "GET", path, b"");
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Replaces every fault rule.
    pub fn set_faults(&self, faults: &str) {
        let (status, body) = request(&self.addr, "POST", "/_mock/faults", faults.as_bytes());
        assert_eq!(
            status,
            200,
            "POST faults: {}",
            String::from_utf8_lossy(&body)
        );
    }

    /// `/_mock/expected` of `log` for `start..end` (exclusive end): index, fingerprint, unparseable.
    pub fn expected(&self, log: &str, start: u64, end: u64) -> Vec<Expected> {
        self.expected_json(log, start, end - 1)
            .iter()
            .map(|item| {
                (
                    item["index"].as_u64().expect("index"),
                    item["sha1_fingerprint"]
                        .as_str()
                        .expect("fingerprint")
                        .to_owned(),
                    item["unparseable"].as_bool().expect("unparseable"),
                )
            })
            .collect()
    }

    /// `/_mock/expected` of `log` for `first..=last`, each entry as the mock describes it.
    pub fn expected_json(&self, log: &str, first: u64, last: u64) -> Vec<Value> {
        let path = format!("/_mock/expected?log={log}&start={first}&end={last}");
        let Value::Array(items) = self.json(&path) else {
            panic!("{path}: not an array");
        };
        items
    }

    /// `/_mock/stats`.
    pub fn stats(&self) -> Value {
        self.json("/_mock/stats")
    }

    /// Requests `log` received so far, over every endpoint.
    pub fn requests(&self, log: &str) -> u64 {
        let stats = self.stats();
        let Some(requests) = stats["logs"][log]["requests"].as_object() else {
            panic!("no request counts for {log}: {stats}");
        };
        requests.values().filter_map(Value::as_u64).sum()
    }
}

/// The mock's log name (`r0`, `t1`, `ro0`) from a log URL (`…/rfc6962/r0/`, `…/submit/t1/`).
pub fn mock_name(url: &str) -> String {
    url.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// One entry the mock announces: index, SHA-1 fingerprint of the leaf, whether its certificate is unparseable.
pub type Expected = (u64, String, bool);
