//! Soak: every hostile mode of the mock CT log at once, each on its own log, beside well-behaved logs, against the
//! real `certstream` binary for a bounded time; one WebSocket client reads the lite stream, another never reads.
//! Prints, as it goes, the server's RSS and `/health` latency; at the end the `/health` percentiles and, per
//! well-behaved log, how much of what it logged the reading client received.
//!
//! Run: `cargo bench --bench soak -- --minutes 10` (the default), or `--seconds 90` for a short run. Not part of the
//! test suite. Extend [`HOSTILE`] when the mock learns a new hostile mode.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use certstream_testkit::load::percentile;
use certstream_testkit::process::memory_resident_kib;
use certstream_testkit::{Certstream, Collector, ListFile, Mock, SeenEntry, WsClient, http_get};

/// Which kind of log a mode runs on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rfc6962,
    Tiled,
}

/// Every hostile mode, one log each: a mock `--fault` spec without its `@LOG` (the soak gives each row its own log)
/// and the kind of log it runs on. THE table to extend when the mock learns a new mode.
const HOSTILE: &[(&str, Kind)] = &[
    ("429,p=0.3,retry_after=1", Kind::Rfc6962),
    ("429,p=0.3,retry_after=1,http_date=true", Kind::Tiled),
    ("500,p=0.3", Kind::Rfc6962),
    ("500,p=0.3", Kind::Tiled),
    ("slow,p=0.3,ms=3000", Kind::Rfc6962),
    ("slow,p=0.3,ms=3000", Kind::Tiled),
    ("truncate,p=0.3", Kind::Rfc6962),
    ("truncate,p=0.3", Kind::Tiled),
    ("garbage,p=0.3", Kind::Rfc6962),
    ("garbage,p=0.3", Kind::Tiled),
    ("reset,p=0.3", Kind::Rfc6962),
    ("reset,p=0.3", Kind::Tiled),
    ("down", Kind::Rfc6962),
    ("down", Kind::Tiled),
    ("backwards,every=2,by=50", Kind::Rfc6962),
    ("backwards,every=2,by=50", Kind::Tiled),
    ("unparseable,every=7", Kind::Rfc6962),
    ("unparseable,every=5", Kind::Tiled),
    // Hostile HTTP: absurd Retry-After values, forged responses on a kept-alive connection, huge bodies.
    ("absurd-429,p=0.3", Kind::Rfc6962),
    ("absurd-429,p=0.3", Kind::Tiled),
    ("trailing,p=0.3", Kind::Rfc6962),
    ("unsolicited,p=0.3,ms=20", Kind::Rfc6962),
    ("unsolicited,p=0.3,ms=20", Kind::Tiled),
    ("tiny-entries", Kind::Rfc6962),
    // Hostile entries and heads: bad records, oversized certificates, chains and issuers, a tree head at 2^63.
    ("empty_cert,every=13", Kind::Rfc6962),
    ("empty_cert,every=13", Kind::Tiled),
    ("huge_cert,every=11,bytes=300000", Kind::Rfc6962),
    ("huge_cert,every=11,bytes=300000", Kind::Tiled),
    ("huge_chain,every=7,bytes=100000", Kind::Rfc6962),
    ("huge_chain,every=100,bytes=100000", Kind::Tiled),
    ("jump,every=2", Kind::Rfc6962),
    ("jump,every=2", Kind::Tiled),
];

/// Well-behaved logs of each kind.
const WELL_BEHAVED: usize = 4;
/// Entries per second each log grows by (60 logs at the real firehose's ~2,000/s is ~33 each).
const RATE_PER_LOG: f64 = 40.0;
/// How often the soak prints a line.
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// How often `/health` is asked.
const HEALTH_EVERY: Duration = Duration::from_millis(100);

fn duration_from_args() -> Duration {
    let mut args = std::env::args().skip(1);
    let mut duration = Duration::from_secs(600);
    while let Some(arg) = args.next() {
        let mut value = || args.next().and_then(|v| v.parse::<f64>().ok());
        match arg.as_str() {
            "--minutes" => duration = Duration::from_secs_f64(value().unwrap_or(10.0) * 60.0),
            "--seconds" => duration = Duration::from_secs_f64(value().unwrap_or(600.0)),
            // `cargo bench` adds `--bench`; anything else is not ours either.
            _ => {}
        }
    }
    duration
}

/// Log names: hostile rows first (in table order, per kind), then the well-behaved logs.
fn plan() -> (Vec<String>, Vec<String>, usize, usize) {
    let (mut rfc, mut tiled) = (0, 0);
    let mut faults = Vec::new();
    for (spec, kind) in HOSTILE {
        let log = match kind {
            Kind::Rfc6962 => format!("r{}", post_increment(&mut rfc)),
            Kind::Tiled => format!("t{}", post_increment(&mut tiled)),
        };
        let (mode, options) = spec.split_once(',').unwrap_or((spec, ""));
        let options = if options.is_empty() {
            String::new()
        } else {
            format!(",{options}")
        };
        faults.push(format!("{mode}@{log}{options}"));
    }
    let well_behaved = (rfc..rfc + WELL_BEHAVED)
        .map(|i| format!("r{i}"))
        .chain((tiled..tiled + WELL_BEHAVED).map(|i| format!("t{i}")))
        .collect();
    (
        faults,
        well_behaved,
        rfc + WELL_BEHAVED,
        tiled + WELL_BEHAVED,
    )
}

fn post_increment(n: &mut usize) -> usize {
    *n += 1;
    *n - 1
}

fn main() {
    let duration = duration_from_args();
    let (faults, well_behaved, rfc, tiled) = plan();
    let (rfc_count, tiled_count, rate) =
        (rfc.to_string(), tiled.to_string(), RATE_PER_LOG.to_string());
    let mut args = vec![
        "--rfc6962",
        &rfc_count,
        "--tiled",
        &tiled_count,
        "--rate",
        &rate,
        "--start-size",
        "100000",
        "--page-cap",
        "256",
    ];
    for fault in &faults {
        args.extend(["--fault", fault.as_str()]);
    }
    let mock = Mock::start(&args);
    // The list is written once both clients are connected, so the reading client sees every message.
    let list = ListFile::new();
    list.write(br#"{"version":"0","operators":[]}"#);
    let server = Certstream::start(
        &["--log-list", list.location(), "--log-list-refresh", "1s"],
        &[("RUST_LOG", "warn")],
    );
    let collector = Collector::connect(&server, "/");
    // A client that never reads: the server must neither wait for it nor grow for it beyond its queue.
    let _silent = WsClient::connect(server.addr, "/full-stream");
    server.wait_stats("both clients", Duration::from_secs(10), |s| {
        s["clients"]["total"] == 2
    });
    list.write(&serde_json::to_vec(&mock.list()).expect("list JSON"));
    println!(
        "soak for {} s: {} hostile logs ({}), {} well-behaved logs, {RATE_PER_LOG} entries/s each",
        duration.as_secs(),
        faults.len(),
        faults.join(" "),
        well_behaved.len()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let reader = std::thread::spawn({
        let stop = stop.clone();
        let mut collector = collector;
        move || {
            while !stop.load(Ordering::Relaxed) {
                collector.read_until(Duration::from_secs(1), |_| false);
            }
            collector.by_log
        }
    });
    let health = std::thread::spawn({
        let (stop, addr) = (stop.clone(), server.addr);
        move || {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let (status, _, _) = http_get(addr, "/health");
                latencies.push((started.elapsed(), status));
                std::thread::sleep(HEALTH_EVERY);
            }
            latencies
        }
    });

    let started = Instant::now();
    let mut rss_high = 0.0f64;
    println!(
        "{:>6} {:>8} {:>11} {:>8} {:>8} {:>8}",
        "t s", "RSS MiB", "published", "dropped", "lagging", "behind"
    );
    while started.elapsed() < duration {
        std::thread::sleep(REPORT_EVERY.min(duration.saturating_sub(started.elapsed())));
        let rss = memory_resident_kib(server.pid()) as f64 / 1024.0;
        rss_high = rss_high.max(rss);
        let stats = server.stats();
        println!(
            "{:>6.0} {rss:>8.1} {:>11} {:>8} {:>8} {:>8}",
            started.elapsed().as_secs_f64(),
            stats["messages_published"],
            stats["messages_dropped"],
            stats["admission"]["clients_lagging"],
            stats["admission"]["clients_behind"],
        );
    }
    stop.store(true, Ordering::Relaxed);
    let received: BTreeMap<String, Vec<SeenEntry>> = reader.join().expect("reader thread");
    let stats = server.stats();
    let mut health: Vec<(Duration, u16)> = health.join().expect("health thread");
    let failed = health.iter().filter(|(_, status)| *status != 200).count();
    health.sort();
    let latencies: Vec<Duration> = health.iter().map(|(latency, _)| *latency).collect();
    println!(
        "/health: {} requests, {failed} failed; p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
    println!(
        "RSS high-water {rss_high:.1} MiB; the server {}",
        if server_running(server) {
            "kept running"
        } else {
            "EXITED"
        }
    );
    println!(
        "well-behaved logs (what the reading client received of what the server published for each):"
    );
    for log in &well_behaved {
        let published = stats["logs"]
            .as_array()
            .and_then(|logs| {
                logs.iter()
                    .find(|l| l["description"] == format!("Mock '{log}' log").as_str())
            })
            .and_then(|l| l["published"].as_u64())
            .unwrap_or(0);
        let indices: Vec<u64> = received
            .get(log)
            .map(|r| r.iter().map(|(index, _)| *index).collect())
            .unwrap_or_default();
        let span = match (indices.first(), indices.last()) {
            (Some(first), Some(last)) => last - first + 1,
            _ => 0,
        };
        let in_order = indices.windows(2).all(|w| w[1] == w[0] + 1);
        println!(
            "  {log}: received {} of {published} published, indices {} contiguous ({:.2} % of the span)",
            indices.len(),
            if in_order { "all" } else { "NOT" },
            if span == 0 {
                0.0
            } else {
                indices.len() as f64 / span as f64 * 100.0
            }
        );
    }
}

fn server_running(mut server: Certstream) -> bool {
    server.running()
}
