//! The RFC 6962 poller against a scripted log on 127.0.0.1: page-size discovery and alignment, short reads,
//! pipelining, faults (zero entries, garbage, 5xx, timeouts, 429 + Retry-After), tree heads that go backwards or
//! carry a bad signature, undecodable entries, read-only logs and stop requests. Every test checks that each index
//! arrives exactly once and in order.
//!
//! Entries are the real corpus entries re-encoded at arbitrary indices: entry `i` is corpus entry `i % 40` with its
//! timestamp set to `BASE_TIMESTAMP + i`, so a delivery under the wrong index shows.
//! The corpus is the repository's `tests/corpus`.
//! Run on both monoio drivers: `cargo test --test poll_rfc6962` and `MONOIO_FORCE_LEGACY_DRIVER=1 cargo test ...`.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write;
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use certstream::ingest::{
    LogStatus, LogTarget, PollOptions, PollerContext, SharedStatus, Start, StopToken, rfc6962,
};
use certstream::message::{LogSource, SourceKind};
use certstream::publish::EntrySink;
use certstream_ct::entry::{Chain, LogEntry, decode_rfc6962};
use certstream_ct::{log_key::LogKey, tree_head::TreeHead};
use certstream_testkit::corpus;
use certstream_testkit::http::{After, ScriptedServer, loopback_poller_client, respond};
use certstream_testkit::runtime::block_on;
use certstream_testkit::signing::{LogSigner, log_signer};

/// Entry `i` carries this timestamp plus `i`.
const BASE_TIMESTAMP: u64 = 1_780_000_000_000;

// ---------------------------------------------------------------------------------------------------------------
// Entries

/// The corpus as (leaf_input, extra_data) pairs.
fn corpus() -> &'static [(Vec<u8>, Vec<u8>)] {
    static CORPUS_ENTRIES: OnceLock<Vec<(Vec<u8>, Vec<u8>)>> = OnceLock::new();
    CORPUS_ENTRIES.get_or_init(|| {
        corpus::live_entries()
            .into_iter()
            .map(|live| (live.leaf_input, live.extra_data))
            .collect()
    })
}

/// Entry `index` of every scripted log: a real entry with the index folded into its timestamp.
fn log_entry(index: u64) -> (Vec<u8>, Vec<u8>) {
    let all = corpus();
    let (leaf, extra) = &all[(index % all.len() as u64) as usize];
    let mut leaf = leaf.clone();
    // MerkleTreeLeaf: version, leaf_type, then the 8-byte timestamp.
    leaf[2..10].copy_from_slice(&(BASE_TIMESTAMP + index).to_be_bytes());
    (leaf, extra.clone())
}

// ---------------------------------------------------------------------------------------------------------------
// The scripted log server

/// One scripted `get-sth` answer.
#[derive(Clone, Copy, Debug)]
enum Sth {
    /// A head of this size, signed with the log's key.
    Good(u64),
    /// A head of this size signed with another key.
    BadSignature(u64),
    /// An HTTP error status.
    Status(u16),
}

/// A one-shot misbehaviour for the get-entries request starting at a given index.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// `{"entries":[]}`.
    Empty,
    /// A 200 whose body is not JSON.
    Garbage,
    Status(u16),
    /// 429, with `Retry-After: <seconds>` when given.
    RateLimited(Option<u64>),
    /// Serve at most this many entries.
    Short(u64),
    /// Answer only after this long.
    Stall(Duration),
}

/// What the log does.
struct Script {
    /// Entries exist (and are served) below this index, whatever the tree heads say.
    available: u64,
    /// Successive get-sth answers; the last one repeats forever.
    sths: VecDeque<Sth>,
    /// Most entries per get-entries answer.
    cap: u64,
    /// Trillian's alignment: a request of at least `cap` entries is cut back to the next multiple of `cap`.
    align: bool,
    /// One-shot faults, by request start.
    faults: HashMap<u64, Fault>,
    /// Indices whose leaf is not a valid MerkleTreeLeaf.
    undecodable: HashSet<u64>,
    /// Indices whose `leaf_input` is not base64 (the item's JSON is intact).
    bad_base64: HashSet<u64>,
    /// Indices whose building panics in the sink (a stand-in for x509-parser or the formatter panicking on
    /// hostile DER: no known input makes them panic).
    panic_at: HashSet<u64>,
    /// Every get-entries answer takes at least this long (to make concurrency visible).
    delay: Duration,
}

impl Script {
    fn new(available: u64) -> Self {
        Self {
            available,
            sths: VecDeque::from([Sth::Good(available)]),
            cap: 32,
            align: true,
            faults: HashMap::new(),
            undecodable: HashSet::new(),
            bad_base64: HashSet::new(),
            panic_at: HashSet::new(),
            delay: Duration::ZERO,
        }
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    /// `None` for get-sth.
    range: Option<(u64, u64)>,
    /// Entries served.
    served: u64,
}

#[derive(Default)]
struct Observed {
    requests: Vec<Seen>,
    /// get-entries requests received (counted on arrival, before any scripted delay).
    entry_arrivals: usize,
    active: usize,
    max_active: usize,
}

struct Shared {
    script: Mutex<Script>,
    observed: Mutex<Observed>,
    key: LogSigner,
    /// Signs the "bad signature" heads.
    impostor: LogSigner,
}

struct LogServer {
    http: ScriptedServer,
    shared: Arc<Shared>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl LogServer {
    fn start(script: Script) -> Self {
        let shared = Arc::new(Shared {
            script: Mutex::new(script),
            observed: Mutex::default(),
            key: log_signer(),
            impostor: log_signer(),
        });
        let server = shared.clone();
        let http = ScriptedServer::serve(move |request, w| {
            serve_request(&server, &request.path, w);
            After::KeepOpen
        });
        Self { http, shared }
    }

    fn url(&self) -> String {
        self.http.url("/log/")
    }

    fn requests(&self) -> Vec<Seen> {
        lock(&self.shared.observed).requests.clone()
    }

    fn entry_requests(&self) -> Vec<Seen> {
        let mut requests = self.requests();
        requests.retain(|r| r.range.is_some());
        requests
    }
}

/// Answers one request, counting it as in flight until its response is written.
fn serve_request(server: &Shared, path: &str, w: &mut dyn Write) {
    {
        let mut observed = lock(&server.observed);
        observed.active += 1;
        observed.max_active = observed.max_active.max(observed.active);
        observed.entry_arrivals += usize::from(path.contains("get-entries"));
    }
    let (status, extra_headers, body) = answer(server, path);
    // Done before the write, so the client cannot start its next request while this one still counts.
    lock(&server.observed).active -= 1;
    let headers = format!("Content-Type: application/json\r\n{extra_headers}");
    respond(w, status, &headers, &body);
}

/// Status, extra header lines and body for `path`; records the request.
fn answer(server: &Shared, path: &str) -> (u16, String, Vec<u8>) {
    let at = Instant::now();
    let record = |range, served| {
        lock(&server.observed)
            .requests
            .push(Seen { at, range, served })
    };
    if path == "/log/ct/v1/get-sth" {
        let sth = {
            let mut script = lock(&server.script);
            if script.sths.len() > 1 {
                script.sths.pop_front()
            } else {
                script.sths.front().copied()
            }
        };
        let (status, body) = match sth {
            Some(Sth::Good(size)) => (200, sth_json(&server.key, size)),
            Some(Sth::BadSignature(size)) => (200, sth_json(&server.impostor, size)),
            Some(Sth::Status(status)) => (status, b"{}".to_vec()),
            None => (500, b"{}".to_vec()),
        };
        record(None, 0);
        return (status, String::new(), body);
    }
    let Some(query) = path.strip_prefix("/log/ct/v1/get-entries?") else {
        record(None, 0);
        return (404, String::new(), b"not found".to_vec());
    };
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let (Some(start), Some(end)) = (param("start"), param("end")) else {
        record(None, 0);
        return (400, String::new(), b"bad range".to_vec());
    };
    let (fault, delay, cap, align, available, undecodable, bad_base64) = {
        let mut script = lock(&server.script);
        let fault = script.faults.remove(&start);
        (
            fault,
            script.delay,
            script.cap,
            script.align,
            script.available,
            script.undecodable.clone(),
            script.bad_base64.clone(),
        )
    };
    thread::sleep(delay);
    let range = Some((start, end));
    let mut served_end = end.min(available.saturating_sub(1));
    let count = end.saturating_sub(start) + 1;
    if count > cap {
        served_end = served_end.min(start + cap - 1);
    }
    if align && count >= cap {
        served_end = served_end.min((start / cap + 1) * cap - 1);
    }
    match fault {
        Some(Fault::Empty) => {
            record(range, 0);
            return (200, String::new(), br#"{"entries":[]}"#.to_vec());
        }
        Some(Fault::Garbage) => {
            record(range, 0);
            return (200, String::new(), b"<html>upstream error</html>".to_vec());
        }
        Some(Fault::Status(status)) => {
            record(range, 0);
            return (status, String::new(), b"{}".to_vec());
        }
        Some(Fault::RateLimited(retry_after)) => {
            record(range, 0);
            let header = retry_after.map_or(String::new(), |s| format!("Retry-After: {s}\r\n"));
            return (429, header, b"slow down".to_vec());
        }
        Some(Fault::Short(n)) => served_end = served_end.min(start + n - 1),
        Some(Fault::Stall(pause)) => thread::sleep(pause),
        None => {}
    }
    if start > end || start >= available {
        record(range, 0);
        return (400, String::new(), b"need tree size".to_vec());
    }
    let mut body = b"{\"entries\":[".to_vec();
    for index in start..=served_end {
        let (mut leaf, extra) = log_entry(index);
        if undecodable.contains(&index) {
            leaf[0] = 9; // an unknown MerkleTreeLeaf version
        }
        if index > start {
            body.push(b',');
        }
        let mut leaf = BASE64.encode(&leaf);
        if bad_base64.contains(&index) {
            leaf.insert(1, '!');
        }
        body.extend_from_slice(
            format!(
                r#"{{"leaf_input":"{leaf}","extra_data":"{}"}}"#,
                BASE64.encode(&extra)
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(b"]}");
    record(range, served_end - start + 1);
    (200, String::new(), body)
}

fn sth_json(signer: &LogSigner, tree_size: u64) -> Vec<u8> {
    let timestamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let head = TreeHead {
        tree_size,
        timestamp,
        root_hash: [tree_size as u8; 32],
    };
    signer
        .sth_json(&head)
        .expect("signed tree head")
        .into_bytes()
}

// ---------------------------------------------------------------------------------------------------------------
// Running pollers

/// One delivered entry.
#[derive(Debug)]
struct Record {
    index: u64,
    leaf: Vec<u8>,
    timestamp_ms: u64,
    chain_len: usize,
    /// The poller's status as the entry was built: where a poller restarted now would resume, and the entries
    /// counted (delivered, skipped, panicked) so far.
    status_next_index: u64,
    status_counted: u64,
}

/// Records what it is given; building an entry of the set panics. Holds the poller's status to snapshot it.
struct Recorder(RefCell<Vec<Record>>, HashSet<u64>, SharedStatus);

impl EntrySink for Recorder {
    fn deliver(&self, _log: &LogSource, index: u64, entry: &LogEntry<'_>, chain: &[&[u8]]) {
        assert!(!self.1.contains(&index), "building entry {index} panics");
        let status = self.2.borrow();
        self.0.borrow_mut().push(Record {
            index,
            leaf: entry.leaf.to_vec(),
            timestamp_ms: entry.timestamp_ms,
            chain_len: chain.len(),
            status_next_index: status.next_index,
            status_counted: status.delivered + status.skipped + status.panicked,
        });
    }

    fn gate(&self) -> Option<certstream::publish::Gate> {
        None
    }
}

/// How one poller's run went.
struct Outcome {
    records: Vec<Record>,
    status: LogStatus,
    /// The poller returned before the test asked it to stop.
    ended_by_itself: bool,
    /// From the stop request to the poller's return.
    stop_latency: Option<Duration>,
    /// Tasks still holding the HTTP client 100 ms after every poller returned (detached fetches).
    detached_fetches: usize,
}

fn options(start_back: u64) -> PollOptions {
    PollOptions {
        start_back,
        poll_interval: Duration::from_millis(100),
        request_timeout: Duration::from_secs(30),
        max_in_flight: 4,
        ..PollOptions::default()
    }
}

/// Runs one poller per `(server, final_tree_size)` on one monoio thread until `until` holds for their statuses,
/// all of them return, or `deadline` passes; then stops them and waits (up to 2 s) for them to return.
fn follow_all(
    logs: &[(&LogServer, Option<u64>)],
    options: PollOptions,
    until: impl Fn(&[LogStatus]) -> bool,
    deadline: Duration,
) -> Vec<Outcome> {
    block_on(async move {
        let http = Rc::new(loopback_poller_client());
        let mut running = Vec::new();
        for (server, final_tree_size) in logs {
            let url = server.url();
            let target = Rc::new(LogTarget {
                source: LogSource::new("Scripted test log", &url, SourceKind::Rfc6962),
                read_url: url,
                origin: String::new(),
                key: LogKey::from_spki(server.shared.key.spki()).expect("test key"),
                final_tree_size: *final_tree_size,
            });
            let panic_at = lock(&server.shared.script).panic_at.clone();
            let status = Rc::new(RefCell::new(LogStatus::default()));
            let sink = Rc::new(Recorder(RefCell::default(), panic_at, status.clone()));
            let ctx = PollerContext {
                http: http.clone(),
                sink: sink.clone(),
                options: options.clone(),
            };
            let stop = StopToken::default();
            let ended = Rc::new(Cell::new(None::<Instant>));
            let (poller_status, poller_stop, poller_ended) =
                (status.clone(), stop.clone(), ended.clone());
            monoio::spawn(async move {
                rfc6962::run(ctx, target, poller_status, poller_stop, Start::Head).await;
                poller_ended.set(Some(Instant::now()));
            });
            running.push((sink, status, stop, ended));
        }
        let started = Instant::now();
        loop {
            monoio::time::sleep(Duration::from_millis(10)).await;
            let statuses: Vec<LogStatus> = running.iter().map(|r| r.1.borrow().clone()).collect();
            let all_ended = running.iter().all(|r| r.3.get().is_some());
            if all_ended || until(&statuses) || started.elapsed() > deadline {
                break;
            }
        }
        let ended_by_itself: Vec<bool> = running.iter().map(|r| r.3.get().is_some()).collect();
        let stop_at = Instant::now();
        for (_, _, stop, _) in &running {
            stop.stop();
        }
        while running.iter().any(|r| r.3.get().is_none())
            && stop_at.elapsed() < Duration::from_secs(2)
        {
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
        monoio::time::sleep(Duration::from_millis(100)).await;
        let detached_fetches = Rc::strong_count(&http) - 1;
        running
            .into_iter()
            .zip(ended_by_itself)
            .map(|((sink, status, _, ended), ended_by_itself)| Outcome {
                records: sink.0.take(),
                status: status.borrow().clone(),
                ended_by_itself,
                stop_latency: ended
                    .get()
                    .filter(|_| !ended_by_itself)
                    .map(|at| at.saturating_duration_since(stop_at)),
                detached_fetches,
            })
            .collect()
    })
}

/// One poller until its next index reaches `next_index` (or `deadline`).
fn follow_until(
    server: &LogServer,
    options: PollOptions,
    next_index: u64,
    deadline: Duration,
) -> Outcome {
    follow_all(
        &[(server, None)],
        options,
        |s| s[0].next_index >= next_index,
        deadline,
    )
    .remove(0)
}

/// Every index of `expected` arrived exactly once, in order, with its own content.
fn assert_delivered_in_order(records: &[Record], expected: impl Iterator<Item = u64>) {
    let expected: Vec<u64> = expected.collect();
    let got: Vec<u64> = records.iter().map(|r| r.index).collect();
    if got != expected {
        let first_bad = got.iter().zip(&expected).position(|(a, b)| a != b);
        panic!(
            "delivered {} entries, expected {}; first difference at position {first_bad:?}",
            got.len(),
            expected.len()
        );
    }
    for record in records {
        let (leaf, extra) = log_entry(record.index);
        let entry = decode_rfc6962(&leaf, &extra).expect("test entries decode");
        assert_eq!(record.timestamp_ms, BASE_TIMESTAMP + record.index);
        assert_eq!(record.leaf, entry.leaf, "leaf of {}", record.index);
        let Chain::Certificates(chain) = &entry.chain else {
            unreachable!("RFC 6962 chains are certificates");
        };
        assert_eq!(record.chain_len, chain.len(), "chain of {}", record.index);
    }
}

/// No two get-entries requests that returned entries overlapped, and the served ranges leave no gap.
fn assert_served_ranges_tile(server: &LogServer, from: u64, to: u64) {
    let mut served: Vec<(u64, u64)> = server
        .entry_requests()
        .iter()
        .filter(|r| r.served > 0)
        .map(|r| (r.range.unwrap().0, r.range.unwrap().0 + r.served))
        .collect();
    served.sort();
    let mut at = from;
    for (start, end) in served {
        assert_eq!(
            start, at,
            "served ranges must be contiguous and disjoint: one starts at {start}, expected {at}"
        );
        at = end;
    }
    assert_eq!(at, to, "served ranges end at {at}, expected {to}");
}

// ---------------------------------------------------------------------------------------------------------------
// Tests

#[test]
fn every_new_entry_once_in_order_with_the_page_size_learned_and_aligned() {
    let server = LogServer::start(Script::new(1000));
    let out = follow_until(&server, options(590), 1000, Duration::from_secs(20));
    assert_delivered_in_order(&out.records, 410..1000);
    assert_served_ranges_tile(&server, 410, 1000);
    let status = &out.status;
    assert_eq!(
        (status.tree_size, status.next_index, status.delivered),
        (1000, 1000, 590)
    );
    assert_eq!(
        (status.errors, status.skipped, status.rate_limited),
        (0, 0, 0)
    );

    let mut requests = server.entry_requests();
    // Pages in flight together may reach the server in any order (one connection each): compare them by start.
    requests.sort_by_key(|r| r.range);
    // The first request asks for a large page from the start point; the log's aligned answer (410..=415) does not
    // reveal the cap, the next one (416..=447, aligned on 32) does.
    assert_eq!(requests[0].range, Some((410, 999)));
    assert_eq!(
        (requests[0].served, requests[1].range),
        (6, Some((416, 999)))
    );
    assert_eq!(requests[1].served, 32);
    for request in &requests[2..] {
        let (start, end) = request.range.unwrap();
        assert_eq!(start % 32, 0, "request {start}..={end} is not page-aligned");
        assert!(
            end == start + 31 || end == 999,
            "request {start}..={end} is not one page"
        );
        assert_eq!(request.served, end - start + 1);
    }
    assert_eq!(requests.len(), 2 + (1000 - 448) / 32 + 1);
}

#[test]
fn unaligned_cap_is_learned_from_two_equal_short_answers() {
    let mut script = Script::new(1000);
    script.cap = 100;
    script.align = false;
    let server = LogServer::start(script);
    let out = follow_until(&server, options(990), 1000, Duration::from_secs(20));
    assert_delivered_in_order(&out.records, 10..1000);
    assert_served_ranges_tile(&server, 10, 1000);
    let mut ranges: Vec<(u64, u64)> = server
        .entry_requests()
        .iter()
        .map(|r| r.range.unwrap())
        .collect();
    // Pages in flight together may reach the server in any order (one connection each): compare them by start.
    ranges.sort_unstable();
    // 10.. and 110.. come back with 100 entries each: the cap. Then pages of 100, aligned.
    assert_eq!(&ranges[..3], &[(10, 999), (110, 999), (210, 299)]);
    for &(start, end) in &ranges[3..] {
        assert_eq!((start % 100, end - start), (0, 99));
    }
}

#[test]
fn short_read_in_a_pipeline_is_completed_before_later_pages() {
    let mut script = Script::new(600);
    script.faults.insert(128, Fault::Short(5));
    script.delay = Duration::from_millis(20);
    let server = LogServer::start(script);
    let out = follow_until(&server, options(600), 600, Duration::from_secs(20));
    assert_delivered_in_order(&out.records, 0..600);
    assert_served_ranges_tile(&server, 0, 600);
    let ranges: Vec<(u64, u64)> = server
        .entry_requests()
        .iter()
        .map(|r| r.range.unwrap())
        .collect();
    assert!(
        ranges.contains(&(133, 159)),
        "the rest of the short page is requested: {ranges:?}"
    );
    assert_eq!(out.status.errors, 0);
}

#[test]
fn zero_entries_garbage_and_server_errors_are_retried_never_skipped() {
    let mut script = Script::new(256);
    script.faults.insert(64, Fault::Empty);
    script.faults.insert(128, Fault::Garbage);
    script.faults.insert(192, Fault::Status(503));
    let server = LogServer::start(script);
    let out = follow_until(&server, options(256), 256, Duration::from_secs(30));
    assert_delivered_in_order(&out.records, 0..256);
    assert_served_ranges_tile(&server, 0, 256);
    assert_eq!(out.status.errors, 3);
    assert_eq!(out.status.backoff_ms, 0, "a success ends the backoff");
    assert!(
        out.status
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("503"),
        "{:?}",
        out.status.last_error
    );
    for start in [64, 128, 192] {
        let attempts: Vec<Instant> = server
            .entry_requests()
            .iter()
            .filter(|r| r.range.is_some_and(|(s, _)| s == start))
            .map(|r| r.at)
            .collect();
        assert_eq!(attempts.len(), 2, "range at {start} retried once");
        assert!(
            attempts[1] - attempts[0] >= Duration::from_millis(900),
            "retry of {start} waits for the backoff: {:?}",
            attempts[1] - attempts[0]
        );
    }
}

#[test]
fn timed_out_request_is_retried() {
    let mut script = Script::new(128);
    script
        .faults
        .insert(64, Fault::Stall(Duration::from_secs(2)));
    let server = LogServer::start(script);
    let mut opts = options(128);
    opts.request_timeout = Duration::from_millis(300);
    let out = follow_until(&server, opts, 128, Duration::from_secs(20));
    assert_delivered_in_order(&out.records, 0..128);
    assert_eq!(out.status.errors, 1);
    assert!(
        out.status
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("timed out"),
        "{:?}",
        out.status.last_error
    );
}

#[test]
fn rate_limits_slow_requests_down_then_recover() {
    let mut script = Script::new(320);
    script.faults.insert(64, Fault::RateLimited(Some(1)));
    script.faults.insert(160, Fault::RateLimited(None));
    let server = LogServer::start(script);
    let mut opts = options(320);
    opts.max_in_flight = 1;
    let out = follow_until(&server, opts, 320, Duration::from_secs(20));
    assert_delivered_in_order(&out.records, 0..320);
    assert_eq!((out.status.rate_limited, out.status.errors), (2, 0));
    assert_eq!(
        out.status.delay_ms, 0,
        "entries processed wear the delay off"
    );

    let requests = server.entry_requests();
    let at = |start: u64, nth: usize| {
        requests
            .iter()
            .filter(|r| r.range.is_some_and(|(s, _)| s == start))
            .nth(nth)
            .unwrap_or_else(|| panic!("request {nth} at {start}"))
            .at
    };
    // Retry-After: 1 holds the retry back a second.
    assert!(at(64, 1) - at(64, 0) >= Duration::from_millis(1000));
    // Then the +50 ms delay, less 32 ms for the page delivered, spaces the next request.
    assert!(at(96, 0) - at(64, 1) >= Duration::from_millis(18));
    // Without Retry-After, the 429 alone adds 50 ms.
    assert!(at(160, 1) - at(160, 0) >= Duration::from_millis(50));
    // Before any 429 there is no delay to speak of.
    assert!(at(32, 0) - at(0, 0) < Duration::from_millis(500));
}

#[test]
fn tree_heads_going_backwards_or_standing_still_are_ignored() {
    let mut script = Script::new(150);
    script.sths = VecDeque::from([
        Sth::Good(100),
        Sth::Good(80),
        Sth::Good(100),
        Sth::Good(90),
        Sth::Good(150),
    ]);
    let server = LogServer::start(script);
    // The reported size, sampled every 10 ms (heads are polled every 100 ms, so a regression would show).
    let sizes = RefCell::new(Vec::new());
    let out = follow_all(
        &[(&server, None)],
        options(50),
        |s| {
            sizes.borrow_mut().push(s[0].tree_size);
            s[0].next_index >= 150
        },
        Duration::from_secs(20),
    )
    .remove(0);
    let sizes = sizes.into_inner();
    assert!(
        sizes.windows(2).all(|w| w[0] <= w[1]),
        "the verified size never goes down: {sizes:?}"
    );
    assert!(
        sizes.contains(&100),
        "the first head was in use for a while"
    );
    assert_delivered_in_order(&out.records, 50..150);
    assert_served_ranges_tile(&server, 50, 150);
    assert_eq!(out.status.tree_size, 150);
    assert_eq!(out.status.errors, 0);
    let sth_polls = server
        .requests()
        .iter()
        .filter(|r| r.range.is_none())
        .count();
    assert!(
        sth_polls >= 5,
        "every scripted head was served: {sth_polls}"
    );
}

#[test]
fn tree_head_with_a_bad_signature_is_never_used() {
    let mut script = Script::new(200);
    script.sths = VecDeque::from([Sth::Good(100), Sth::BadSignature(200), Sth::Good(120)]);
    let server = LogServer::start(script);
    let sth_polls = || {
        server
            .requests()
            .iter()
            .filter(|r| r.range.is_none())
            .count()
    };
    let out = follow_all(
        &[(&server, None)],
        options(100),
        |s| s[0].next_index >= 120 && sth_polls() >= 5,
        Duration::from_secs(20),
    )
    .remove(0);
    assert_delivered_in_order(&out.records, 0..120);
    assert!(
        server
            .entry_requests()
            .iter()
            .all(|r| r.range.unwrap().1 < 120),
        "nothing beyond the last good head is requested"
    );
    assert_eq!(out.status.errors, 1);
    assert_eq!(out.status.tree_size, 120);
    assert!(
        out.status
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("signature"),
        "{:?}",
        out.status.last_error
    );
}

#[test]
fn several_requests_in_flight_when_far_behind_yet_delivered_in_order() {
    let mut script = Script::new(2000);
    script.delay = Duration::from_millis(40);
    let server = LogServer::start(script);
    let out = follow_until(&server, options(2000), 2000, Duration::from_secs(30));
    assert_delivered_in_order(&out.records, 0..2000);
    assert_served_ranges_tile(&server, 0, 2000);
    let observed = lock(&server.shared.observed);
    assert!(
        (3..=4).contains(&observed.max_active),
        "requests in flight at once: {} (max_in_flight 4)",
        observed.max_active
    );
    let connections = server.http.connections();
    assert!(connections >= 3, "{connections} connections");
}

#[test]
fn undecodable_entries_are_skipped_counted_and_the_rest_arrive() {
    let mut script = Script::new(100);
    script.undecodable = HashSet::from([5, 77]);
    let server = LogServer::start(script);
    let out = follow_until(&server, options(100), 100, Duration::from_secs(20));
    assert_delivered_in_order(&out.records, (0..100).filter(|i| *i != 5 && *i != 77));
    assert_eq!((out.status.skipped, out.status.delivered), (2, 98));
    assert_eq!(out.status.next_index, 100);
}

/// An item whose `leaf_input` is not base64 is skipped alone: its page's other entries arrive, with no retry and
/// no error.
#[test]
fn an_item_with_bad_base64_is_skipped_alone_without_a_retry() {
    let mut script = Script::new(100);
    script.bad_base64 = HashSet::from([5, 40]);
    let server = LogServer::start(script);
    let out = follow_until(&server, options(100), 100, Duration::from_secs(20));
    assert_delivered_in_order(&out.records, (0..100).filter(|i| *i != 5 && *i != 40));
    assert_eq!(
        (out.status.skipped, out.status.delivered, out.status.errors),
        (2, 98, 0)
    );
    assert_eq!(out.status.next_index, 100);
    assert_served_ranges_tile(&server, 0, 100);
}

/// The status moves with every entry, not at the end of a delivery turn: when an entry is built, the next index
/// a restarted poller would resume at is that entry's, and everything before it is counted. (A poller that
/// panicked mid-turn is restarted from the status's next index, so a stale one would repeat entries.)
#[test]
fn the_status_is_current_at_every_entry() {
    let mut script = Script::new(100);
    script.undecodable = HashSet::from([7]);
    script.panic_at = HashSet::from([30]);
    let server = LogServer::start(script);
    let out = follow_until(&server, options(100), 100, Duration::from_secs(20));
    assert_eq!(out.records.len(), 98);
    for record in &out.records {
        assert_eq!(
            (record.status_next_index, record.status_counted),
            (record.index, record.index),
            "status as entry {} was built",
            record.index
        );
    }
}

#[test]
fn a_panic_while_building_an_entry_costs_that_entry_only() {
    let mut script = Script::new(100);
    script.panic_at = HashSet::from([5, 77]);
    let server = LogServer::start(script);
    let out = follow_until(&server, options(100), 100, Duration::from_secs(20));
    assert_delivered_in_order(&out.records, (0..100).filter(|i| *i != 5 && *i != 77));
    assert_eq!(
        (
            out.status.panicked,
            out.status.delivered,
            out.status.skipped
        ),
        (2, 98, 0)
    );
    assert_eq!(out.status.next_index, 100);
}

#[test]
fn read_only_log_stops_after_its_final_size() {
    let mut script = Script::new(300);
    script.sths = VecDeque::from([Sth::Good(140)]);
    let server = LogServer::start(script);
    let out = follow_all(
        &[(&server, Some(130))],
        options(1000),
        |_| false,
        Duration::from_secs(10),
    )
    .remove(0);
    assert!(out.ended_by_itself, "the poller returns on its own");
    assert_delivered_in_order(&out.records, 0..130);
    assert!(
        server
            .entry_requests()
            .iter()
            .all(|r| r.range.unwrap().1 < 130)
    );
}

#[test]
fn stop_ends_the_poller_promptly_mid_request_and_mid_pause() {
    // Mid-request: every get-entries answer takes 3 s.
    let mut slow = Script::new(10_000);
    slow.delay = Duration::from_secs(3);
    let slow = LogServer::start(slow);
    // Mid-pause: a 429 asking for 30 s.
    let mut limited = Script::new(100);
    limited.faults.insert(0, Fault::RateLimited(Some(30)));
    let limited = LogServer::start(limited);
    let outs = follow_all(
        &[(&slow, None), (&limited, None)],
        options(100),
        |s| lock(&slow.shared.observed).entry_arrivals >= 1 && s[1].rate_limited == 1,
        Duration::from_secs(10),
    );
    for (name, out) in ["mid-request", "mid-pause"].iter().zip(&outs) {
        assert!(
            !out.ended_by_itself,
            "{name}: still running before the stop"
        );
        let latency = out.stop_latency.expect("the poller returned");
        assert!(
            latency < Duration::from_millis(300),
            "{name}: stopped after {latency:?}"
        );
        assert!(out.records.is_empty());
        // The slow log's get-entries was still waiting for its answer: the stop cancelled it rather than
        // leaving it to run detached for the rest of its 3 s (or its 30 s timeout).
        assert_eq!(out.detached_fetches, 0, "{name}: fetches left running");
    }
}

#[test]
fn a_failing_log_does_not_hold_up_another() {
    let mut broken = Script::new(1000);
    broken.sths = VecDeque::from([Sth::Status(500)]);
    let broken = LogServer::start(broken);
    let healthy = LogServer::start(Script::new(300));
    let outs = follow_all(
        &[(&broken, None), (&healthy, None)],
        options(300),
        |s| s[1].next_index >= 300 && s[0].errors >= 2,
        Duration::from_secs(20),
    );
    assert_delivered_in_order(&outs[1].records, 0..300);
    assert!(outs[0].records.is_empty());
    assert!(outs[0].status.errors >= 2);
    assert!(
        outs[0].status.backoff_ms >= 1000,
        "the broken log backs off"
    );
    assert_eq!(outs[1].status.errors, 0);
}
