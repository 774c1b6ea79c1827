//! One definition per metric, rendered to both `/stats` (one JSON object) and `/metrics` (Prometheus text format
//! 0.0.4).
//!
//! Each component describes its metrics once, as a table of [`Metric`]s: the Prometheus name, help and type, the
//! place in `/stats`, and how to read the value from a snapshot of the component's counters. A [`StatusReporter`]
//! hands its tables and a snapshot to a [`Report`], and this module's one renderer writes them to whichever output
//! was asked for, so the two outputs cannot drift apart. Adding a metric is adding one descriptor to a table.
//!
//! What is not a measurement (a version, a name, a URL, a last error) is a [`Fact`]: `/stats` only. A list of like
//! things (the followed logs) is a [`Table`]: an array of objects in `/stats`, one labelled sample per row and
//! metric in `/metrics`.
//!
//! Sans-I/O: plain functions over snapshots; the routes serve the bytes.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// A Prometheus metric type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only ever grows (since start).
    Counter,
    /// A current level.
    Gauge,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// How a metric's value is read from a snapshot `S`, and shown.
pub enum Read<S> {
    /// A count or a size: the same integer in both outputs.
    Count(fn(&S) -> u64),
    /// A duration in whole milliseconds: `/stats` shows milliseconds, Prometheus seconds (its base unit).
    Millis(fn(&S) -> u64),
    /// A duration in seconds: `/stats` rounds it to the millisecond.
    Seconds(fn(&S) -> f64),
    /// One count per value of `label`. In `/stats` each is a key of the metric's object, and `total` (when given)
    /// a key holding their sum (Prometheus users sum with a query).
    PerLabel {
        /// The Prometheus label that tells the counts apart.
        label: &'static str,
        /// The `/stats` key of the sum, if `/stats` shows one.
        total: Option<&'static str>,
        /// The counts, in the order they are shown.
        read: fn(&S) -> Vec<LabelledCount>,
    },
}

/// One count of a [`Read::PerLabel`] metric.
pub struct LabelledCount {
    /// The Prometheus label value.
    pub label: &'static str,
    /// Its key in the metric's `/stats` object.
    pub key: &'static str,
    /// The count.
    pub count: u64,
}

impl LabelledCount {
    /// A count whose `/stats` key is its label value.
    pub fn keyed_by_label(label: &'static str, count: u64) -> Self {
        Self {
            label,
            key: label,
            count,
        }
    }
}

/// A metric: everything both outputs show of it.
pub struct Metric<S> {
    /// The Prometheus metric name (`certstream_…`; counters end in `_total`).
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// The Prometheus `# HELP` text.
    pub help: &'static str,
    /// Where `/stats` shows it: object keys joined by dots (`connections.open`); for [`Read::PerLabel`], the
    /// object holding its counts.
    pub stats: &'static str,
    /// How to read it.
    pub read: Read<S>,
}

impl<S> Metric<S> {
    /// A counter read as a count.
    pub const fn counter(
        name: &'static str,
        stats: &'static str,
        help: &'static str,
        read: fn(&S) -> u64,
    ) -> Self {
        Self::count(Kind::Counter, name, stats, help, read)
    }

    /// A gauge read as a count.
    pub const fn gauge(
        name: &'static str,
        stats: &'static str,
        help: &'static str,
        read: fn(&S) -> u64,
    ) -> Self {
        Self::count(Kind::Gauge, name, stats, help, read)
    }

    const fn count(
        kind: Kind,
        name: &'static str,
        stats: &'static str,
        help: &'static str,
        read: fn(&S) -> u64,
    ) -> Self {
        Self {
            name,
            kind,
            help,
            stats,
            read: Read::Count(read),
        }
    }
}

/// Something `/stats` shows that is not a measurement (text, or a figure `/metrics` does not export).
pub struct Fact<S> {
    /// Where `/stats` shows it (as [`Metric::stats`]).
    pub stats: &'static str,
    /// Its value.
    pub read: fn(&S) -> Value,
}

/// A list of like things, one row each: an array of objects in `/stats`, and in `/metrics` one sample per row of
/// each metric, told apart by the row's labels.
pub struct Table<R: 'static> {
    /// The `/stats` key of the array.
    pub stats: &'static str,
    /// The Prometheus gauge of the number of rows (in `/stats`: the array's length).
    pub rows_name: &'static str,
    /// Its `# HELP` text.
    pub rows_help: &'static str,
    /// A row's Prometheus labels, `(name, value)`.
    pub labels: fn(&R) -> Vec<(&'static str, String)>,
    /// What `/stats` shows of a row besides its metrics.
    pub facts: &'static [Fact<R>],
    /// The metrics of a row (`stats` is the key in the row's object).
    pub metrics: &'static [Metric<R>],
}

/// A component that contributes to `/stats` and `/metrics`.
pub trait StatusReporter {
    /// Hands this component's tables and snapshots to `out`.
    fn report(&self, out: &mut Report<'_>);
}

/// One rendering of every reporter's metrics: into the `/stats` object or the `/metrics` text.
pub struct Report<'a> {
    output: Output<'a>,
}

enum Output<'a> {
    Stats(&'a mut Map<String, Value>),
    Metrics(&'a mut String),
    /// Every metric family with its samples as both outputs show them (for the tests).
    #[cfg(test)]
    Catalogue(&'a mut Vec<tests::Family>),
}

/// One sample of a metric, as both outputs show it.
struct Sample {
    /// Prometheus labels, rendered (`a="b",c="d"`), or empty.
    labels: String,
    /// The value in `/metrics` (`None`: a sum shown by `/stats` only).
    text: Option<String>,
    /// The `/stats` path, keys joined by dots.
    stats: String,
    /// The value in `/stats`.
    json: Value,
}

impl Report<'_> {
    /// The metrics of one snapshot.
    pub fn metrics<S>(&mut self, metrics: &[Metric<S>], snapshot: &S) {
        for metric in metrics {
            let samples = samples(metric, snapshot, "", "");
            self.family(metric.name, metric.kind, metric.help, samples);
        }
    }

    /// The facts of one snapshot (`/stats` only).
    pub fn facts<S>(&mut self, facts: &[Fact<S>], snapshot: &S) {
        if let Output::Stats(out) = &mut self.output {
            for fact in facts {
                insert(out, fact.stats, (fact.read)(snapshot));
            }
        }
    }

    /// A table and its rows.
    pub fn table<R: 'static>(&mut self, table: &Table<R>, rows: &[R]) {
        if let Output::Stats(out) = &mut self.output {
            let objects = rows.iter().map(|row| row_object(table, row)).collect();
            insert(out, table.stats, Value::Array(objects));
            return;
        }
        let count = Sample {
            labels: String::new(),
            text: Some(rows.len().to_string()),
            stats: table.stats.to_owned(),
            json: rows.len().into(),
        };
        self.family(table.rows_name, Kind::Gauge, table.rows_help, vec![count]);
        let labels: Vec<String> = rows.iter().map(|row| labels((table.labels)(row))).collect();
        for metric in table.metrics {
            let samples = rows
                .iter()
                .zip(&labels)
                .enumerate()
                .flat_map(|(index, (row, labels))| {
                    samples(metric, row, labels, &format!("{}.{index}.", table.stats))
                })
                .collect();
            self.family(metric.name, metric.kind, metric.help, samples);
        }
    }

    fn family(&mut self, name: &'static str, kind: Kind, help: &'static str, samples: Vec<Sample>) {
        match &mut self.output {
            Output::Stats(out) => {
                for sample in samples {
                    insert(out, &sample.stats, sample.json);
                }
            }
            Output::Metrics(out) => write_family(out, name, kind, help, &samples),
            #[cfg(test)]
            Output::Catalogue(catalogue) => catalogue.push(tests::Family {
                name,
                kind,
                help,
                samples,
            }),
        }
    }
}

/// A table row's `/stats` object: its facts and metrics.
fn row_object<R: 'static>(table: &Table<R>, row: &R) -> Value {
    let mut object = Map::new();
    for fact in table.facts {
        insert(&mut object, fact.stats, (fact.read)(row));
    }
    for metric in table.metrics {
        for sample in samples(metric, row, "", "") {
            insert(&mut object, &sample.stats, sample.json);
        }
    }
    Value::Object(object)
}

/// The samples of `metric` read from `snapshot`: `row_labels` are the table row's rendered labels (or empty),
/// `stats_prefix` the `/stats` path of the row (or empty).
fn samples<S>(
    metric: &Metric<S>,
    snapshot: &S,
    row_labels: &str,
    stats_prefix: &str,
) -> Vec<Sample> {
    let one = |text: String, json: Value| Sample {
        labels: row_labels.to_owned(),
        text: Some(text),
        stats: format!("{stats_prefix}{}", metric.stats),
        json,
    };
    match &metric.read {
        Read::Count(read) => {
            let value = read(snapshot);
            vec![one(value.to_string(), value.into())]
        }
        Read::Millis(read) => {
            let millis = read(snapshot);
            vec![one((millis as f64 / 1000.0).to_string(), millis.into())]
        }
        Read::Seconds(read) => {
            let seconds = read(snapshot);
            let rounded = (seconds * 1000.0).round() / 1000.0;
            vec![one(seconds.to_string(), rounded.into())]
        }
        Read::PerLabel { label, total, read } => {
            let counts = read(snapshot);
            let sum: u64 = counts.iter().map(|c| c.count).sum();
            let mut samples: Vec<Sample> = counts
                .into_iter()
                .map(|c| {
                    let mut labels = row_labels.to_owned();
                    if !labels.is_empty() {
                        labels.push(',');
                    }
                    push_label(&mut labels, label, c.label);
                    Sample {
                        labels,
                        text: Some(c.count.to_string()),
                        stats: format!("{stats_prefix}{}.{}", metric.stats, c.key),
                        json: c.count.into(),
                    }
                })
                .collect();
            if let Some(total) = total {
                samples.push(Sample {
                    labels: String::new(),
                    text: None,
                    stats: format!("{stats_prefix}{}.{total}", metric.stats),
                    json: sum.into(),
                });
            }
            samples
        }
    }
}

/// Appends one metric family: `# HELP`, `# TYPE`, then one line per sample that has a Prometheus value.
fn write_family(out: &mut String, name: &str, kind: Kind, help: &str, samples: &[Sample]) {
    // Writing to a `String` cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {}", kind.name());
    for sample in samples {
        match (&sample.text, sample.labels.is_empty()) {
            (None, _) => {}
            (Some(text), true) => {
                let _ = writeln!(out, "{name} {text}");
            }
            (Some(text), false) => {
                let _ = writeln!(out, "{name}{{{}}} {text}", sample.labels);
            }
        }
    }
}

fn labels(pairs: Vec<(&'static str, String)>) -> String {
    let mut out = String::new();
    for (name, value) in pairs {
        if !out.is_empty() {
            out.push(',');
        }
        push_label(&mut out, name, &value);
    }
    out
}

/// Appends `name="value"`, the value's backslashes, quotes and newlines escaped.
fn push_label(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Puts `value` at the dotted `path` of `out`, creating the objects on the way.
fn insert(out: &mut Map<String, Value>, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            let previous = out.insert(path.to_owned(), value);
            debug_assert!(previous.is_none(), "two values at /stats key {path}");
        }
        Some((head, rest)) => match out.entry(head).or_insert_with(|| Value::Object(Map::new())) {
            Value::Object(inner) => insert(inner, rest, value),
            _ => debug_assert!(false, "/stats key {head} is both a value and an object"),
        },
    }
}

/// The `/stats` body: every reporter's metrics and facts in one JSON object (pretty-printed, newline-terminated).
pub fn stats_json(reporters: &[&dyn StatusReporter]) -> serde_json::Result<Vec<u8>> {
    let mut object = Map::new();
    let mut report = Report {
        output: Output::Stats(&mut object),
    };
    for reporter in reporters {
        reporter.report(&mut report);
    }
    let mut body = serde_json::to_vec_pretty(&Value::Object(object))?;
    body.push(b'\n');
    Ok(body)
}

/// The `/metrics` body: every reporter's metrics in Prometheus text format.
pub fn metrics_text(reporters: &[&dyn StatusReporter]) -> Vec<u8> {
    let mut text = String::new();
    let mut report = Report {
        output: Output::Metrics(&mut text),
    };
    for reporter in reporters {
        reporter.report(&mut report);
    }
    text.into_bytes()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A metric family as the catalogue records it.
    pub(crate) struct Family {
        pub(super) name: &'static str,
        pub(super) kind: Kind,
        pub(super) help: &'static str,
        pub(super) samples: Vec<Sample>,
    }

    /// The `/stats` object of `reporter`.
    pub(crate) fn stats_of(reporter: &dyn StatusReporter) -> Value {
        serde_json::from_slice(&stats_json(&[reporter]).unwrap()).unwrap()
    }

    /// The `/metrics` text of `reporter`.
    pub(crate) fn text_of(reporter: &dyn StatusReporter) -> String {
        String::from_utf8(metrics_text(&[reporter])).unwrap()
    }

    /// Renders `reporters` to `/stats`, `/metrics` and the catalogue, and checks that every metric is in both
    /// outputs with the same value, and that the Prometheus names are valid and unique.
    pub(crate) fn assert_both_outputs_agree(reporters: &[&dyn StatusReporter]) {
        let mut families = Vec::new();
        let mut report = Report {
            output: Output::Catalogue(&mut families),
        };
        for reporter in reporters {
            reporter.report(&mut report);
        }
        assert!(!families.is_empty());
        let mut names = std::collections::HashSet::new();
        let mut paths = std::collections::HashSet::new();
        for family in &families {
            assert!(
                names.insert(family.name),
                "{} is defined twice",
                family.name
            );
            for sample in &family.samples {
                assert!(
                    paths.insert(&sample.stats),
                    "two metrics at /stats {}",
                    sample.stats
                );
            }
        }
        let stats: Value = serde_json::from_slice(&stats_json(reporters).unwrap()).unwrap();
        let text = String::from_utf8(metrics_text(reporters)).unwrap();
        for family in &families {
            let name = family.name;
            assert!(valid_name(name), "{name} is not a valid Prometheus name");
            assert!(name.starts_with("certstream_"), "{name}");
            assert!(
                base_units_only(name),
                "{name}: Prometheus names carry base units (seconds, bytes): Read::Millis shows milliseconds \
                 in /stats and seconds in /metrics"
            );
            assert_eq!(
                family.kind == Kind::Counter,
                name.ends_with("_total"),
                "{name}: counters, and only they, end in _total"
            );
            assert!(
                !family.help.is_empty() && !family.help.contains('\n'),
                "{name}"
            );
            let header = format!(
                "# HELP {name} {}\n# TYPE {name} {}\n",
                family.help,
                family.kind.name()
            );
            assert!(
                text.contains(&header),
                "{name}: no header in /metrics:\n{text}"
            );
            assert!(!family.samples.is_empty(), "{name}: no sample");
            for sample in &family.samples {
                let pointer = format!("/{}", sample.stats.replace('.', "/"));
                let shown = stats.pointer(&pointer);
                if let (Some(Value::Array(rows)), Some(count)) = (shown, sample.json.as_u64()) {
                    // A table's row count: the array's length in /stats.
                    assert_eq!(rows.len() as u64, count, "{name}: {pointer}");
                } else {
                    assert_eq!(shown, Some(&sample.json), "{name}: /stats {pointer}");
                }
                let Some(value) = &sample.text else {
                    continue; // a sum shown by /stats only
                };
                let line = if sample.labels.is_empty() {
                    format!("\n{name} {value}\n")
                } else {
                    format!("\n{name}{{{}}} {value}\n", sample.labels)
                };
                assert!(
                    text.contains(&line),
                    "{name}: {line:?} not in /metrics:\n{text}"
                );
            }
        }
        // Nothing in /metrics that is not in the catalogue.
        for line in text.lines() {
            let name = line
                .strip_prefix("# HELP ")
                .or_else(|| line.strip_prefix("# TYPE "))
                .unwrap_or(line);
            let name = name.split([' ', '{']).next().unwrap();
            assert!(names.contains(name), "{line}: not from a descriptor");
        }
    }

    /// No word of `name` is a scaled unit (`promtool check metrics` asks for `seconds` and `bytes`).
    fn base_units_only(name: &str) -> bool {
        const SCALED: &[&str] = &[
            "ms",
            "milliseconds",
            "microseconds",
            "nanoseconds",
            "minutes",
            "hours",
            "days",
            "kib",
            "mib",
            "kilobytes",
            "megabytes",
        ];
        !name.split('_').any(|word| SCALED.contains(&word))
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`
    fn valid_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    struct Counts {
        sent: u64,
        waiting: u64,
        held_ms: u64,
        by_reason: [u64; 2],
    }

    const COUNTS: &[Metric<Counts>] = &[
        Metric::counter("certstream_sent_total", "sent", "Sent.", |c| c.sent),
        Metric::gauge("certstream_waiting", "queue.waiting", "Waiting.", |c| {
            c.waiting
        }),
        Metric {
            name: "certstream_held_seconds_total",
            kind: Kind::Counter,
            help: "Held.",
            stats: "queue.held_ms",
            read: Read::Millis(|c| c.held_ms),
        },
        Metric {
            name: "certstream_refused_total",
            kind: Kind::Counter,
            help: "Refused, by reason.",
            stats: "refused",
            read: Read::PerLabel {
                label: "reason",
                total: Some("total"),
                read: |c| {
                    vec![
                        LabelledCount::keyed_by_label("full", c.by_reason[0]),
                        LabelledCount {
                            label: "closed",
                            key: "closed_early",
                            count: c.by_reason[1],
                        },
                    ]
                },
            },
        },
    ];

    struct Row {
        name: &'static str,
        size: u64,
    }

    const ROWS: Table<Row> = Table {
        stats: "rows",
        rows_name: "certstream_rows",
        rows_help: "Rows.",
        labels: |r| vec![("row", r.name.to_owned())],
        facts: &[Fact {
            stats: "name",
            read: |r| r.name.into(),
        }],
        metrics: &[Metric::gauge("certstream_row_size", "size", "Size.", |r| {
            r.size
        })],
    };

    struct Example;

    impl StatusReporter for Example {
        fn report(&self, out: &mut Report<'_>) {
            let counts = Counts {
                sent: 7,
                waiting: 2,
                held_ms: 1500,
                by_reason: [3, 4],
            };
            out.metrics(COUNTS, &counts);
            out.facts(
                &[Fact {
                    stats: "version",
                    read: |_| "1.0".into(),
                }],
                &counts,
            );
            let rows = [
                Row {
                    name: "a \"quoted\"\\ name",
                    size: 10,
                },
                Row {
                    name: "b",
                    size: 20,
                },
            ];
            out.table(&ROWS, &rows);
        }
    }

    #[test]
    fn one_descriptor_renders_to_both_outputs() {
        let stats: Value = serde_json::from_slice(&stats_json(&[&Example]).unwrap()).unwrap();
        assert_eq!(
            stats,
            serde_json::json!({
                "sent": 7,
                "queue": {"waiting": 2, "held_ms": 1500},
                "refused": {"full": 3, "closed_early": 4, "total": 7},
                "version": "1.0",
                "rows": [{"name": "a \"quoted\"\\ name", "size": 10}, {"name": "b", "size": 20}],
            })
        );
        let text = String::from_utf8(metrics_text(&[&Example])).unwrap();
        assert_eq!(
            text,
            "# HELP certstream_sent_total Sent.\n# TYPE certstream_sent_total counter\ncertstream_sent_total 7\n\
             # HELP certstream_waiting Waiting.\n# TYPE certstream_waiting gauge\ncertstream_waiting 2\n\
             # HELP certstream_held_seconds_total Held.\n# TYPE certstream_held_seconds_total counter\n\
             certstream_held_seconds_total 1.5\n\
             # HELP certstream_refused_total Refused, by reason.\n# TYPE certstream_refused_total counter\n\
             certstream_refused_total{reason=\"full\"} 3\ncertstream_refused_total{reason=\"closed\"} 4\n\
             # HELP certstream_rows Rows.\n# TYPE certstream_rows gauge\ncertstream_rows 2\n\
             # HELP certstream_row_size Size.\n# TYPE certstream_row_size gauge\n\
             certstream_row_size{row=\"a \\\"quoted\\\"\\\\ name\"} 10\ncertstream_row_size{row=\"b\"} 20\n"
        );
        assert_both_outputs_agree(&[&Example]);
    }

    #[test]
    #[should_panic(expected = "defined twice")]
    fn a_name_defined_twice_is_caught() {
        assert_both_outputs_agree(&[&Example, &Example]);
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        push_label(&mut out, "log", "a \"quoted\" \\ name\nnext");
        assert_eq!(out, r#"log="a \"quoted\" \\ name\nnext""#);
    }

    #[test]
    fn prometheus_names_are_checked() {
        assert!(valid_name("certstream_log_lag"));
        assert!(!valid_name("certstream-log"));
        assert!(!valid_name("1certstream"));
        assert!(!valid_name(""));
        assert!(base_units_only("certstream_log_backoff_seconds"));
        assert!(!base_units_only("certstream_log_backoff_milliseconds"));
        assert!(!base_units_only("certstream_queue_mib"));
    }
}
