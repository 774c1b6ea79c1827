//! Ingestion benchmark: the mock CT logs at rising rates → the `certstream` binary pinned to one core → one
//! WebSocket client reading the lite stream as fast as it can, with the server's default queue per client. For
//! each total rate it prints what was delivered, what the reading client lost (a gap or a duplicate in any log's
//! index sequence; `dropped` counts messages the server dropped from client queues), the largest per-log lag
//! behind the latest tree head the server saw, the server's CPU use and RSS; then the RSS of an idle server
//! following 60 logs. "per CPU-s" is what was delivered per second of the server's CPU time: on a shared machine
//! the server's share of the core varies from run to run, this does much less.
//!
//! The overload curve: the rates are multiples of the server's saturation rate (`INGEST_FACTORS`, default
//! 0.5,1,1.5,2,2.5,3), found first as what the server delivers when offered far more than it can take
//! (`INGEST_PROBE`, 60,000 entries/s), or given (`INGEST_SATURATION`); `INGEST_LEVELS=2000,20000` gives absolute
//! rates instead. `INGEST_SECONDS` sets the measuring window, `INGEST_SERVER` another build of the server (to
//! compare versions in the same machine state), `INGEST_RING` a queue size other than the server's default.
//!
//! Run: `cargo bench --bench ingest`. The server runs on CPU 0, the mock and the client on CPU 1.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::time::{Duration, Instant};

use certstream_testkit::process::{cpu_time, memory_resident_kib, pin};
use certstream_testkit::{Certstream, Mock, WsClient, update_position};

/// 30 RFC 6962 logs + 30 tiled logs, the size of today's log list.
const RFC6962_LOGS: u32 = 30;
const TILED_LOGS: u32 = 30;

/// Per-log index sequence checks while reading the lite stream.
#[derive(Default)]
struct Tally {
    last: HashMap<Vec<u8>, u64>,
    received: u64,
    gaps: u64,
    duplicates: u64,
}

impl Tally {
    fn record(&mut self, message: &[u8]) {
        let Some((url, index)) = update_position(message) else {
            return;
        };
        self.received += 1;
        if let Some(last) = self.last.insert(url.to_vec(), index) {
            if index <= last {
                self.duplicates += 1;
            } else if index != last + 1 {
                self.gaps += index - last - 1;
            }
        }
    }
}

fn read_for(client: &mut WsClient, duration: Duration, tally: &mut Tally) {
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        match client.read_frame() {
            Ok(frame) if frame.opcode == 1 => tally.record(&frame.payload),
            Ok(frame) if frame.opcode == 8 => panic!("the server closed the stream"),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("stream read failed: {e}"),
        }
    }
}

/// What one run at one offered rate showed.
struct Run {
    delivered: f64,
    gaps: u64,
    duplicates: u64,
    dropped: u64,
    max_lag: u64,
    cpu: f64,
    rss: f64,
}

/// Benchmark settings from the environment.
struct Settings {
    server: Option<String>,
    ring: Option<String>,
    window: Duration,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn list(name: &str) -> Option<Vec<f64>> {
    let text = std::env::var(name).ok()?;
    Some(
        text.split(',')
            .filter_map(|l| l.trim().parse().ok())
            .collect(),
    )
}

fn start(total_rate: f64, settings: &Settings) -> (Mock, Certstream) {
    // The mock runs in this process: it and the readers get core 1, the server core 0.
    pin(std::process::id(), 1);
    let mock = Mock::firehose(RFC6962_LOGS, TILED_LOGS, total_rate);
    let mut args = Vec::new();
    if let Some(ring) = &settings.ring {
        args.extend(["--ring-size", ring.as_str()]);
    }
    let env = [
        ("CUSTOM_LOG_LIST", mock.list_url()),
        ("RUST_LOG", "warn".into()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = match &settings.server {
        Some(program) => Certstream::start_program(program, &args, &env),
        None => Certstream::start(&args, &env),
    };
    pin(server.pid(), 0);
    (mock, server)
}

/// Offers `total` entries/s for a warm-up and the window; what the client received.
fn measure(total: f64, settings: &Settings) -> Run {
    let (mock, server) = start(total, settings);
    let mut client = WsClient::connect(server.addr, "/");
    client
        .stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("read timeout");
    let mut tally = Tally::default();
    // Warm-up: every poller has started (jittered over one poll interval) and caught up.
    read_for(&mut client, Duration::from_secs(6), &mut tally);
    let (received_before, cpu_before, started) = (
        tally.received,
        cpu_time(server.pid()).as_secs_f64(),
        Instant::now(),
    );
    read_for(&mut client, settings.window, &mut tally);
    let elapsed = started.elapsed().as_secs_f64();
    let stats = server.stats();
    let max_lag = stats["logs"]
        .as_array()
        .map(|logs| {
            logs.iter()
                .filter_map(|l| l["lag"].as_u64())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    let run = Run {
        delivered: (tally.received - received_before) as f64 / elapsed,
        gaps: tally.gaps,
        duplicates: tally.duplicates,
        dropped: stats["messages_dropped"].as_u64().unwrap_or(0),
        max_lag,
        cpu: (cpu_time(server.pid()).as_secs_f64() - cpu_before) / elapsed * 100.0,
        rss: memory_resident_kib(server.pid()) as f64 / 1024.0,
    };
    drop(client);
    drop(server);
    drop(mock);
    run
}

fn main() {
    let settings = Settings {
        server: std::env::var("INGEST_SERVER").ok(),
        ring: std::env::var("INGEST_RING").ok(),
        window: Duration::from_secs(env_or("INGEST_SECONDS", 15)),
    };
    pin(std::process::id(), 1);
    println!(
        "{} logs ({RFC6962_LOGS} RFC 6962 with 32-entry pages, {TILED_LOGS} tiled); server {} on CPU 0, queue {}; \
         window {} s",
        RFC6962_LOGS + TILED_LOGS,
        settings.server.as_deref().unwrap_or("(this build)"),
        settings.ring.as_deref().unwrap_or("default"),
        settings.window.as_secs()
    );
    let levels: Vec<(f64, Option<f64>)> = match list("INGEST_LEVELS") {
        Some(levels) => levels.into_iter().map(|l| (l, None)).collect(),
        None => {
            let saturation = std::env::var("INGEST_SATURATION")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| {
                    let probe = env_or("INGEST_PROBE", 60_000.0);
                    let run = measure(probe, &settings);
                    println!(
                        "saturation: {:.0} entries/s delivered when offered {probe:.0}/s (server CPU {:.1} %)",
                        run.delivered, run.cpu
                    );
                    run.delivered.round()
                });
            let factors =
                list("INGEST_FACTORS").unwrap_or_else(|| vec![0.5, 1.0, 1.5, 2.0, 2.5, 3.0]);
            factors
                .into_iter()
                .map(|f| (f * saturation, Some(f)))
                .collect()
        }
    };
    println!(
        "{:>6} {:>10} {:>11} {:>6} {:>6} {:>8} {:>18} {:>7} {:>11} {:>8}",
        "×sat",
        "offered/s",
        "delivered/s",
        "gaps",
        "dups",
        "dropped",
        "max lag",
        "CPU %",
        "per CPU-s",
        "RSS MiB"
    );
    let mut runs = Vec::new();
    for (total, factor) in levels {
        let run = measure(total, &settings);
        let per_log_rate = total / f64::from(RFC6962_LOGS + TILED_LOGS);
        println!(
            "{:>6} {total:>10.0} {:>11.0} {:>6} {:>6} {:>8} {:>9} ({:>5.1} s) {:>7.1} {:>11.0} {:>8.1}",
            factor.map_or("-".into(), |f| format!("{f}×")),
            run.delivered,
            run.gaps,
            run.duplicates,
            run.dropped,
            run.max_lag,
            run.max_lag as f64 / per_log_rate.max(f64::MIN_POSITIVE),
            run.cpu,
            run.delivered / (run.cpu / 100.0).max(f64::MIN_POSITIVE),
            run.rss
        );
        runs.push((total, run));
    }
    let peak = runs.iter().map(|(_, r)| r.delivered).fold(0.0, f64::max);
    if peak > 0.0 {
        let curve: Vec<String> = runs
            .iter()
            .map(|(total, r)| format!("{total:.0}: {:.0} %", r.delivered / peak * 100.0))
            .collect();
        println!(
            "delivered as a share of the peak ({peak:.0}/s): {}",
            curve.join(", ")
        );
    }

    if std::env::var_os("INGEST_SKIP_IDLE").is_none() {
        let (mock, server) = start(0.0, &settings);
        std::thread::sleep(Duration::from_secs(8));
        let followed = server.stats()["logs"].as_array().map_or(0, |l| l.len());
        println!(
            "idle, following {followed} logs: RSS {:.1} MiB",
            memory_resident_kib(server.pid()) as f64 / 1024.0
        );
        drop(server);
        drop(mock);
    }
}
