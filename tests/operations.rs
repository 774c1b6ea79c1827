//! What an operator runs besides the binary (`packaging/`): the environment file documents every variable of
//! `--help`; the Prometheus alert rules pass `promtool check rules` and their unit tests; the live `/metrics` of
//! the real binary, fed by the mock CT logs, passes `promtool check metrics` and holds every metric the alert rules
//! and the Grafana dashboard query.
//!
//! `promtool` comes with Debian's `prometheus` package; without it these tests fail, saying so.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use certstream_testkit::nats::NatsServer;
use certstream_testkit::{Certstream, ListFile, Mock};
use serde_json::Value;

/// Metrics Prometheus makes itself for every target (not in `/metrics`).
const SYNTHETIC_METRICS: &[&str] = &["up"];

fn packaging(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging")
        .join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `promtool ARGS` with `stdin`; returns whether it succeeded and what it printed.
fn promtool(args: &[&str], dir: &Path, stdin: &[u8]) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool: {e}; it comes with Debian's prometheus package: apt-get install prometheus")
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool output");
    let printed = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), printed)
}

/// The metric names a PromQL expression reads: its identifiers, less functions and aggregations (followed by
/// `(`), keywords, label lists (`by (…)`), and what is inside strings, `{…}` matchers and `[…]` ranges.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Aggregations may be followed by `by (…)` rather than `(`.
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    const LABEL_LISTS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_to = |from: usize, close: char| {
        chars[from..]
            .iter()
            .position(|&c| c == close)
            .map_or(chars.len(), |at| from + at + 1)
    };
    let next_non_space = |from: usize| chars[from..].iter().find(|c| !c.is_whitespace()).copied();
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            i = skip_to(i + 1, c);
        } else if c == '{' {
            i = skip_to(i + 1, '}');
        } else if c == '[' {
            i = skip_to(i + 1, ']');
        } else if c.is_ascii_digit() || c == '.' {
            // A number or a duration (`5m`, `1e3`): digits and letters together.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if LABEL_LISTS.contains(&word.as_str()) {
                if next_non_space(i) == Some('(') {
                    i = skip_to(i, ')');
                }
            } else if !KEYWORDS.contains(&word.as_str()) && next_non_space(i) != Some('(') {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Every `expr` of the alert rules (one line each, as the file says).
fn alert_exprs() -> Vec<String> {
    read(&packaging("prometheus/certstream-alerts.yml"))
        .lines()
        .filter_map(|line| line.trim().strip_prefix("expr:"))
        .map(|expr| expr.trim().to_owned())
        .collect()
}

/// Every `expr` of the dashboard, wherever it is in the JSON.
fn dashboard_exprs() -> Vec<String> {
    fn collect(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr", Value::String(expr)) => out.push(expr.clone()),
                        _ => collect(value, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| collect(item, out)),
            _ => {}
        }
    }
    let path = packaging("grafana/certstream.json");
    let dashboard: Value = serde_json::from_str(&read(&path)).expect("dashboard JSON");
    let mut exprs = Vec::new();
    collect(&dashboard, &mut exprs);
    exprs
}

#[test]
fn the_environment_file_documents_every_variable_of_help() {
    let output = Command::new(certstream_testkit::certstream_binary())
        .arg("--help")
        .output()
        .expect("certstream --help");
    let help = String::from_utf8(output.stdout).expect("UTF-8 help");
    let mut variables: Vec<&str> = help
        .split("[env ")
        .skip(1)
        .map(|rest| rest.split(['=', ']']).next().expect("variable"))
        .collect();
    variables.push("RUST_LOG");
    assert!(variables.len() > 30, "{variables:?}");
    let file = read(&packaging("certstream.default"));
    for variable in variables {
        let documented = file.lines().any(|line| {
            let line = line.strip_prefix('#').unwrap_or(line);
            line.strip_prefix(variable)
                .is_some_and(|rest| rest.starts_with('='))
        });
        assert!(
            documented,
            "{variable} (certstream --help) has no line `{variable}=…` or `#{variable}=…` in \
             packaging/certstream.default: document it there"
        );
    }
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let dir = packaging("prometheus");
    let (ok, printed) = promtool(&["check", "rules", "certstream-alerts.yml"], &dir, b"");
    assert!(ok, "promtool check rules:\n{printed}");
    let (ok, printed) = promtool(&["test", "rules", "certstream-alerts.test.yml"], &dir, b"");
    assert!(ok, "promtool test rules:\n{printed}");
}

#[test]
fn live_metrics_pass_promtool_and_hold_every_metric_of_the_alerts_and_the_dashboard() {
    let mock = Mock::with_logs(1, 1, 50, &[]);
    // The list file's private directory also holds the state file (its metrics appear only with one).
    let list = ListFile::new();
    list.write(&serde_json::to_vec(&mock.list()).expect("list JSON"));
    let state = list.path.with_file_name("state.json");
    // With JetStream, so that the broker's and the stream reader's metrics are there too.
    let nats = NatsServer::start(&[]);
    let server = Certstream::start(
        &[
            "--nats-url",
            &nats.url(),
            "--log-list",
            list.location(),
            "--state-file",
            state.to_str().expect("UTF-8 path"),
            "--start-back",
            "20",
            "--poll-interval",
            "200ms",
        ],
        &[],
    );
    server.wait_stats("entries from every log", Duration::from_secs(30), |s| {
        s["logs"].as_array().is_some_and(|logs| {
            logs.len() == 2 && logs.iter().all(|log| log["delivered"].as_u64() > Some(0))
        })
    });
    let (status, body) = server.get("/metrics");
    assert_eq!(status, 200);
    let (ok, printed) = promtool(&["check", "metrics"], Path::new("."), &body);
    assert!(ok, "promtool check metrics:\n{printed}");

    let text = String::from_utf8(body).expect("UTF-8 metrics");
    let exported: BTreeSet<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split(' ').next())
        .collect();
    for (source, exprs) in [
        ("packaging/prometheus/certstream-alerts.yml", alert_exprs()),
        ("packaging/grafana/certstream.json", dashboard_exprs()),
    ] {
        assert!(exprs.len() >= 5, "{source}: {exprs:?}");
        for expr in exprs {
            let names = metric_names(&expr);
            assert!(!names.is_empty(), "{source}: no metric in {expr:?}");
            for name in names {
                assert!(
                    exported.contains(name.as_str()) || SYNTHETIC_METRICS.contains(&name.as_str()),
                    "{source}: {name} (in {expr:?}) is not in /metrics:\n{text}"
                );
            }
        }
    }
}

#[test]
fn metric_names_are_read_from_promql() {
    let names = |expr| metric_names(expr).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names("sum by (instance) (rate(certstream_a_total{log=\"x y\"}[5m] offset 1h)) > 0.5"),
        ["certstream_a_total"]
    );
    assert_eq!(
        names("certstream_lag > 50000 and deriv(certstream_lag[30m]) > 1e3 or on(job) up == 0"),
        ["certstream_lag", "up"]
    );
    assert_eq!(
        names("rate(a[$__rate_interval]) / ignoring (x) group_left (y) b_total"),
        ["a", "b_total"]
    );
}
