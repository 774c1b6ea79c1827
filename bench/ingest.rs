//! Ingestion benchmark: the mock CT logs at rising rates → the `certstream` binary pinned to one core → one
//! WebSocket client. For each total rate it prints what was delivered, whether anything was missed (a gap or a
//! duplicate in any log's index sequence; `dropped` counts messages the server dropped for a slow client), the
//! largest per-log lag behind the latest tree head the server saw, the server's CPU use and RSS; then
//! the RSS of an idle server following 60 logs.
//!
//! Run: `cargo bench --bench ingest` (`INGEST_LEVELS=2000,20000` to choose the rates, `INGEST_SECONDS` the
//! measuring window). The server runs on CPU 0, the mock and the client on CPU 1.

#[path = "../tests/e2e_support/mod.rs"]
mod e2e_support;

use std::collections::HashMap;
use std::io::ErrorKind;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e_support::{Certstream, Mock, WsClient};

/// 30 RFC 6962 logs + 30 tiled logs, the size of today's log list.
const RFC6962_LOGS: u32 = 30;
const TILED_LOGS: u32 = 30;

fn pin(pid: u32, cpu: u32) {
    let ok = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("(taskset unavailable: process {pid} not pinned)");
    }
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 of the whole line.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .into_iter()
        .flatten()
        .filter_map(|f| f.parse::<f64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / per_second
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// The value after `"key":` in a compact JSON message, without parsing the whole message (the client must keep
/// up with the server on one core).
fn field<'a>(message: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let start = message.windows(key.len()).position(|w| w == key)? + key.len();
    let rest = &message[start..];
    let end = rest.iter().position(|b| matches!(b, b',' | b'}'))?;
    Some(&rest[..end])
}

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
        let (Some(index), Some(url)) = (
            field(message, b"\"cert_index\":"),
            field(message, b"\"url\":"),
        ) else {
            return;
        };
        let Some(index) = std::str::from_utf8(index)
            .ok()
            .and_then(|i| i.parse::<u64>().ok())
        else {
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

fn start(total_rate: f64) -> (Mock, Certstream) {
    let per_log = format!("{}", total_rate / f64::from(RFC6962_LOGS + TILED_LOGS));
    let mock = Mock::start(&[
        "--rfc6962",
        &RFC6962_LOGS.to_string(),
        "--tiled",
        &TILED_LOGS.to_string(),
        "--rate",
        &per_log,
        "--start-size",
        "1000000",
        "--page-cap",
        "32",
    ]);
    pin(mock.pid(), 1);
    // A ring large enough that the benchmark's client never loses messages to a burst (a full data tile arrives as
    // 256 entries at once): what is measured is ingestion, not the client's reading speed.
    let server = Certstream::start(
        &["--ring-size", "1000000"],
        &[("CUSTOM_LOG_LIST", &mock.list_url()), ("RUST_LOG", "warn")],
    );
    pin(server.pid(), 0);
    (mock, server)
}

fn main() {
    let levels: Vec<f64> = std::env::var("INGEST_LEVELS")
        .unwrap_or_else(|_| "2000,5000,10000,20000,30000,40000".into())
        .split(',')
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let window = Duration::from_secs(
        std::env::var("INGEST_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(15),
    );
    pin(std::process::id(), 1);
    println!(
        "{} logs ({RFC6962_LOGS} RFC 6962 with 32-entry pages, {TILED_LOGS} tiled); server on CPU 0; window {} s",
        RFC6962_LOGS + TILED_LOGS,
        window.as_secs()
    );
    println!(
        "{:>12} {:>12} {:>6} {:>6} {:>8} {:>14} {:>8} {:>9}",
        "offered/s", "delivered/s", "gaps", "dups", "dropped", "max lag", "CPU %", "RSS MiB"
    );
    for total in levels {
        let (mock, server) = start(total);
        let mut client = WsClient::connect(server.addr, "/");
        client
            .stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let mut tally = Tally::default();
        // Warm-up: every poller has started (jittered over one poll interval) and caught up.
        read_for(&mut client, Duration::from_secs(6), &mut tally);
        let (received_before, cpu_before, started) =
            (tally.received, cpu_seconds(server.pid()), Instant::now());
        read_for(&mut client, window, &mut tally);
        let elapsed = started.elapsed().as_secs_f64();
        let delivered = (tally.received - received_before) as f64 / elapsed;
        let cpu = (cpu_seconds(server.pid()) - cpu_before) / elapsed * 100.0;
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
        let per_log_rate = total / f64::from(RFC6962_LOGS + TILED_LOGS);
        println!(
            "{total:>12.0} {delivered:>12.0} {:>6} {:>6} {:>8} {:>7} ({:>4.1} s) {cpu:>8.1} {:>9.1}",
            tally.gaps,
            tally.duplicates,
            stats["messages_dropped"],
            max_lag,
            max_lag as f64 / per_log_rate,
            rss_mib(server.pid())
        );
        drop(client);
        drop(server);
        drop(mock);
    }

    let (mock, server) = start(0.0);
    std::thread::sleep(Duration::from_secs(8));
    let followed = server.stats()["logs"].as_array().map_or(0, |l| l.len());
    println!(
        "idle, following {followed} logs: RSS {:.1} MiB",
        rss_mib(server.pid())
    );
    drop(server);
    drop(mock);
}
