//! Catch-up after a stop: the mock CT logs (30 RFC 6962 logs with Google-sized 32-entry pages + 30 tiled logs,
//! 2,000 entries/s in total) → the `certstream` binary with `--state-file` → one WebSocket client reading the lite
//! stream as fast as it can. The server runs for a while, is stopped with SIGTERM, stays down (5 minutes by default:
//! the logs keep growing), and is started again with the same state file and a new client. Prints how long the
//! restarted server took to catch up (every log at lag 0 in `/stats`), the backlog it found, the rate it caught up
//! at, its RSS, and checks that the client received, per log, every index from the first run's start to the
//! second run's final save exactly once across the two runs (missing, duplicates and strays counted).
//!
//! Run: `cargo bench --bench resume` (the defaults), or `-- --stop-seconds 20` for a quick run; `--logs N`,
//! `--rate R` (entries/s in total), `--run-seconds N` (each run before its SIGTERM, 30), `--catch-up-limit N`
//! (seconds, 600). Not part of the test suite. The server runs on CPU 0, the mock and the client on CPU 1.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use certstream_testkit::process::{memory_resident_kib, pin};
use certstream_testkit::{
    Certstream, ListFile, Mock, STARTUP_TIMEOUT, WsClient, memory_high_water_kib, mock_name,
    update_position,
};
use serde_json::Value;

/// How often `/stats` is read while the second run catches up.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// How often a line is printed while it catches up.
const REPORT_EVERY: Duration = Duration::from_secs(2);
/// How long the second run goes on after catching up (the client must then be getting the logs' growth live).
const AFTER_CATCH_UP: Duration = Duration::from_secs(10);

struct Options {
    stop: Duration,
    logs: usize,
    rate: f64,
    run: Duration,
    catch_up_limit: Duration,
}

impl Options {
    fn from_args() -> Options {
        let mut options = Options {
            stop: Duration::from_secs(300),
            logs: 60,
            rate: 2000.0,
            run: Duration::from_secs(30),
            catch_up_limit: Duration::from_secs(600),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || {
                args.next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .unwrap_or_else(|| panic!("{arg} takes a non-negative number"))
            };
            match arg.as_str() {
                "--stop-seconds" => options.stop = Duration::from_secs_f64(value()),
                "--logs" => options.logs = (value() as usize).max(1),
                "--rate" => options.rate = value(),
                "--run-seconds" => options.run = Duration::from_secs_f64(value()),
                "--catch-up-limit" => options.catch_up_limit = Duration::from_secs_f64(value()),
                // `cargo bench` adds `--bench`; anything else is not ours either.
                _ => {}
            }
        }
        options
    }
}

/// What the client of one run received: per mock log, the indices in arrival order; and the close code.
struct Received {
    by_log: BTreeMap<String, Vec<u64>>,
    close: Option<u16>,
}

/// A client on the lite stream, read by its own thread until the server closes it or `deadline`; `count` follows
/// how many updates it has received.
fn spawn_reader(
    addr: SocketAddr,
    count: Arc<AtomicU64>,
    deadline: Instant,
) -> std::thread::JoinHandle<Received> {
    let mut client = WsClient::connect(addr, "/");
    client
        .stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    std::thread::spawn(move || {
        let mut received = Received {
            by_log: BTreeMap::new(),
            close: None,
        };
        while Instant::now() < deadline {
            match client.read_frame() {
                Ok(frame) if frame.opcode == 1 => {
                    if let Some((url, index)) = update_position(&frame.payload) {
                        let url = String::from_utf8_lossy(url);
                        received
                            .by_log
                            .entry(mock_name(url.trim_matches('"')))
                            .or_default()
                            .push(index);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(frame) if frame.opcode == 8 => {
                    received.close = frame.close_code();
                    break;
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        received
    })
}

/// One run of the server: started on an empty list, its client connected, then the mock's list written (so the
/// client sees every message of the run). Returns the server, the reader and when the list was written.
fn start_run(
    mock: &Mock,
    list: &ListFile,
    state: &Path,
    count: &Arc<AtomicU64>,
    deadline: Instant,
) -> (Certstream, std::thread::JoinHandle<Received>, Instant) {
    list.write(br#"{"version":"0","operators":[]}"#);
    let server = Certstream::start(
        &[
            "--log-list",
            list.location(),
            "--log-list-refresh",
            "1s",
            "--state-file",
            state.to_str().expect("UTF-8 path"),
            // A first start follows new entries only; a restart resumes at the saved indices.
            "--start-back",
            "0",
        ],
        &[],
    );
    pin(server.pid(), 0);
    let reader = spawn_reader(server.addr, count.clone(), deadline);
    server.wait_stats("the client", Duration::from_secs(10), |s| {
        s["clients"]["total"] == 1
    });
    list.write(&serde_json::to_vec(&mock.list()).expect("list JSON"));
    (server, reader, Instant::now())
}

/// SIGTERM; the exit status, how long the exit took, and what the client received (up to the close frame).
fn stop_run(
    server: Certstream,
    reader: std::thread::JoinHandle<Received>,
) -> (bool, Duration, Received) {
    let (ok, took) = server.terminate();
    (ok, took, reader.join().expect("reader thread"))
}

/// The saved next index of each log, by mock name.
fn saved_positions(state: &Path, ids: &BTreeMap<String, String>) -> BTreeMap<String, u64> {
    let saved: Value =
        serde_json::from_slice(&std::fs::read(state).expect("state file")).expect("state JSON");
    ids.iter()
        .filter_map(|(name, id)| Some((name.clone(), saved["logs"][id]["next_index"].as_u64()?)))
        .collect()
}

fn logs_of(stats: &Value) -> &[Value] {
    stats["logs"].as_array().map_or(&[], Vec::as_slice)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The second run's catch-up as `/stats` showed it.
#[derive(Default)]
struct CatchUp {
    /// Since the list was written, when every log had shown lag 0 with a head past its saved index.
    took: Option<Duration>,
    /// When each log had, sorted.
    per_log: Vec<Duration>,
    /// Entries behind, all logs together, and the most one log was behind.
    peak_total_lag: u64,
    peak_log_lag: u64,
    /// Messages the server published and the client received until caught up.
    published: u64,
    received: u64,
    rss_peak_kib: u64,
}

/// Samples `/stats` until every log has caught up (or `limit`), printing a line every [`REPORT_EVERY`].
fn watch_catch_up(
    server: &Certstream,
    since: Instant,
    logs: usize,
    received: &AtomicU64,
    limit: Duration,
) -> CatchUp {
    let mut catch_up = CatchUp::default();
    let mut caught: BTreeMap<String, Duration> = BTreeMap::new();
    let mut last_report: Option<(Instant, u64, u64)> = None;
    println!(
        "{:>6} {:>8} {:>11} {:>10} {:>12} {:>11} {:>8}",
        "t s", "caught", "total lag", "max lag", "published/s", "received/s", "RSS MiB"
    );
    while since.elapsed() < limit {
        let stats = server.stats();
        let rss = memory_resident_kib(server.pid());
        let now = since.elapsed();
        let (mut total, mut max) = (0, 0);
        for log in logs_of(&stats) {
            let lag = log["lag"].as_u64().unwrap_or(0);
            (total, max) = (total + lag, max.max(lag));
            // Caught up: its head after the restart seen (past the saved index) and everything up to it delivered.
            let resumed = log["resumed_from"].as_u64();
            let head = log["tree_size"].as_u64().unwrap_or(0);
            if resumed.is_some_and(|from| head > from) && lag == 0 {
                let name = mock_name(log["url"].as_str().unwrap_or_default());
                caught.entry(name).or_insert(now);
            }
        }
        catch_up.peak_total_lag = catch_up.peak_total_lag.max(total);
        catch_up.peak_log_lag = catch_up.peak_log_lag.max(max);
        catch_up.rss_peak_kib = catch_up.rss_peak_kib.max(rss);
        let published = stats["messages_published"].as_u64().unwrap_or(0);
        let client = received.load(Ordering::Relaxed);
        let done = caught.len() >= logs;
        let due = last_report.is_none_or(|(at, _, _)| at.elapsed() >= REPORT_EVERY);
        if due || done {
            let (at, published_then, client_then) = last_report.unwrap_or((since, 0, 0));
            let seconds = at.elapsed().as_secs_f64().max(1e-3);
            println!(
                "{:>6.1} {:>8} {total:>11} {max:>10} {:>12.0} {:>11.0} {:>8.1}",
                now.as_secs_f64(),
                format!("{}/{logs}", caught.len()),
                (published - published_then) as f64 / seconds,
                (client - client_then) as f64 / seconds,
                mib(rss)
            );
            last_report = Some((Instant::now(), published, client));
        }
        if done {
            catch_up.took = Some(now);
            catch_up.per_log = caught.into_values().collect();
            catch_up.per_log.sort();
            (catch_up.published, catch_up.received) = (published, client);
            break;
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
    catch_up
}

/// Per log, what the two clients received against `first..end` (the first run's first index to the second run's
/// final save), each index expected exactly once.
#[derive(Default)]
struct Check {
    logs: usize,
    expected: u64,
    missing: u64,
    duplicates: u64,
    outside: u64,
    resumed_at_saved: usize,
    problems: Vec<String>,
}

fn check(
    names: &[String],
    first_run: &Received,
    second_run: &Received,
    saved_first: &BTreeMap<String, u64>,
    saved_last: &BTreeMap<String, u64>,
) -> Check {
    let mut check = Check::default();
    let none = Vec::new();
    for name in names {
        let (one, two) = (
            first_run.by_log.get(name).unwrap_or(&none),
            second_run.by_log.get(name).unwrap_or(&none),
        );
        let (Some(&saved), Some(&end)) = (saved_first.get(name), saved_last.get(name)) else {
            check.problems.push(format!("{name}: not in a state file"));
            continue;
        };
        check.logs += 1;
        if two.first() == Some(&saved) {
            check.resumed_at_saved += 1;
        } else {
            check.problems.push(format!(
                "{name}: saved {saved}, the second run began at {:?}",
                two.first()
            ));
        }
        let first = one.first().copied().unwrap_or(saved).min(saved);
        let mut seen = vec![0u32; end.saturating_sub(first) as usize];
        for &index in one.iter().chain(two) {
            match index
                .checked_sub(first)
                .and_then(|i| seen.get_mut(i as usize))
            {
                Some(count) => *count += 1,
                None => check.outside += 1,
            }
        }
        let missing = seen.iter().filter(|&&c| c == 0).count() as u64;
        let duplicates: u64 = seen.iter().map(|&c| u64::from(c.saturating_sub(1))).sum();
        if missing + duplicates > 0 {
            check.problems.push(format!(
                "{name}: {first}..{end}: {missing} missing, {duplicates} duplicates (saved {saved})"
            ));
        }
        check.expected += seen.len() as u64;
        check.missing += missing;
        check.duplicates += duplicates;
    }
    check
}

fn main() {
    let options = Options::from_args();
    let started = Instant::now();
    // Every wait below is bounded by this: a run that hangs ends with what it has.
    let deadline =
        started + options.run * 2 + options.stop + options.catch_up_limit + 2 * STARTUP_TIMEOUT;
    pin(std::process::id(), 1);
    let tiled = options.logs / 2;
    let rfc6962 = options.logs - tiled;
    let per_log = options.rate / options.logs as f64;
    let mock = Mock::start(&[
        "--rfc6962",
        &rfc6962.to_string(),
        "--tiled",
        &tiled.to_string(),
        "--rate",
        &per_log.to_string(),
        "--start-size",
        "1000000",
        "--page-cap",
        "32",
    ]);
    let ids = mock.log_ids();
    let names: Vec<String> = ids.keys().cloned().collect();
    let list = ListFile::new();
    let state = list.path.with_file_name("state.json");
    println!(
        "{} logs ({rfc6962} RFC 6962 with 32-entry pages, {tiled} tiled), {:.0} entries/s in total; runs of {} s; \
         stop {} s; server on CPU 0, defaults but --state-file",
        options.logs,
        options.rate,
        options.run.as_secs(),
        options.stop.as_secs()
    );

    // First run: follows the logs from their current size, then SIGTERM.
    let count_first = Arc::new(AtomicU64::new(0));
    let (server, reader, _) = start_run(&mock, &list, &state, &count_first, deadline);
    std::thread::sleep(options.run);
    let stats = server.stats();
    let rss_first = memory_high_water_kib(server.pid());
    let (ok, exit_took, first_run) = stop_run(server, reader);
    let saved_first = saved_positions(&state, &ids);
    println!(
        "run 1: {} messages published, {} received, {} dropped; RSS peak {:.1} MiB; SIGTERM → exit {} in {:.2} s, \
         client closed with {:?}",
        stats["messages_published"],
        count_first.load(Ordering::Relaxed),
        stats["messages_dropped"],
        mib(rss_first),
        if ok { "0" } else { "FAILED" },
        exit_took.as_secs_f64(),
        first_run.close
    );

    println!(
        "stopped for {} s (the logs keep growing)",
        options.stop.as_secs()
    );
    std::thread::sleep(options.stop);

    // Second run: the same state file; catch up, keep going a little, SIGTERM.
    let count_second = Arc::new(AtomicU64::new(0));
    let restarted = Instant::now();
    let (server, reader, listed) = start_run(&mock, &list, &state, &count_second, deadline);
    let to_list = listed - restarted;
    // What the logs grew by while the server was down (read as the second run gets the list).
    let sizes = mock.stats();
    let backlog: u64 = saved_first
        .iter()
        .filter_map(|(name, saved)| Some(sizes["logs"][name]["tree_size"].as_u64()? - saved))
        .sum();
    let limit = options
        .catch_up_limit
        .min(deadline.saturating_duration_since(Instant::now()));
    let catch_up = watch_catch_up(&server, listed, options.logs, &count_second, limit);
    std::thread::sleep(AFTER_CATCH_UP.min(deadline.saturating_duration_since(Instant::now())));
    let stats = server.stats();
    let resume_skipped: u64 = logs_of(&stats)
        .iter()
        .filter_map(|l| l["resume_skipped"].as_u64())
        .sum();
    let skipped: u64 = logs_of(&stats)
        .iter()
        .filter_map(|l| l["skipped"].as_u64())
        .sum();
    let rss_second = memory_high_water_kib(server.pid());
    let (ok, exit_took, second_run) = stop_run(server, reader);
    let saved_last = saved_positions(&state, &ids);
    let check = check(&names, &first_run, &second_run, &saved_first, &saved_last);

    println!();
    println!(
        "restart → list loaded: {:.2} s (server serving, client connected); backlog {backlog} entries ({:.0} per \
         log); then:",
        to_list.as_secs_f64(),
        backlog as f64 / options.logs as f64
    );
    match catch_up.took {
        Some(took) => {
            let seconds = took.as_secs_f64().max(1e-3);
            println!(
                "  catch-up (every log at lag 0): {seconds:.1} s; peak lag {} entries in total, {} in one log",
                catch_up.peak_total_lag, catch_up.peak_log_lag
            );
            println!(
                "  per log (sampled every {} ms): median {:.1} s, slowest {:.1} s",
                SAMPLE_EVERY.as_millis(),
                catch_up.per_log[catch_up.per_log.len() / 2].as_secs_f64(),
                took.as_secs_f64()
            );
            println!(
                "  during catch-up: {:.0} messages/s published, {:.0}/s received by the client",
                catch_up.published as f64 / seconds,
                catch_up.received as f64 / seconds
            );
        }
        None => println!(
            "  NOT caught up within {} s; peak lag {} entries in total, {} in one log",
            limit.as_secs(),
            catch_up.peak_total_lag,
            catch_up.peak_log_lag
        ),
    }
    println!(
        "  RSS peak {:.1} MiB (run 1: {:.1} MiB); {} dropped, {} skipped, {} resume_skipped; SIGTERM → exit {} in \
         {:.2} s, client closed with {:?}",
        mib(rss_second.max(catch_up.rss_peak_kib)),
        mib(rss_first),
        stats["messages_dropped"],
        skipped,
        resume_skipped,
        if ok { "0" } else { "FAILED" },
        exit_took.as_secs_f64(),
        second_run.close
    );
    println!(
        "nothing lost: {}/{} logs checked, {} indices expected (run 1's start → run 2's final save): {} missing, \
         {} duplicates, {} outside; run 2 began at the saved index on {}/{} logs",
        check.logs,
        names.len(),
        check.expected,
        check.missing,
        check.duplicates,
        check.outside,
        check.resumed_at_saved,
        check.logs
    );
    for problem in check.problems.iter().take(10) {
        println!("  {problem}");
    }
    println!("total {:.0} s", started.elapsed().as_secs_f64());
}
