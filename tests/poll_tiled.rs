//! The tiled (static-ct-api) poller against a scripted log on 127.0.0.1 that serves the real Navigli data tiles,
//! re-sliced into partial tiles, with their issuer fingerprints pointed at real chain certificates from the
//! RFC 6962 corpus, and checkpoints signed by a generated P-256 key. The server counts every request so the tests
//! can see refetches, and can be scripted to answer a path with faults (429, garbage, bad checkpoints, delays).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::{Arc, LazyLock, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use certstream::http::HttpClient;
use certstream::ingest::issuers::{IssuerCache, hex};
use certstream::ingest::{
    LogStatus, LogTarget, PollOptions, PollerContext, SharedStatus, Start, StopToken, tiled,
};
use certstream::message::{LogSource, SourceKind};
use certstream::publish::EntrySink;
use certstream_ct::entry::{Chain, LogEntry, decode_rfc6962};
use certstream_ct::{log_key::LogKey, tree_head::TreeHead};
use certstream_testkit::corpus;
use certstream_testkit::http::{After, ScriptedServer, loopback_poller_client, respond};
use certstream_testkit::runtime::block_on;
use certstream_testkit::signing::{LogSigner, checkpoint_body, log_signer};

/// Every test gives up after this long rather than hang.
const DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------------------------
// The log's content: the 1,024 real Navigli entries, issuers remapped to real certificates.

struct Corpus {
    /// One `TileLeaf` record per index, fingerprints rewritten.
    records: Vec<Vec<u8>>,
    /// The chain each index must be delivered with.
    chains: Vec<Vec<Vec<u8>>>,
    timestamps: Vec<u64>,
    /// Lowercase hex fingerprint → DER.
    issuers: HashMap<String, Vec<u8>>,
}

static CORPUS: LazyLock<Corpus> = LazyLock::new(build_corpus);

fn be(bytes: &[u8]) -> usize {
    bytes.iter().fold(0, |acc, b| acc << 8 | usize::from(*b))
}

/// Splits a data tile into records by the static-ct-api layout (independently of the crate's decoder); returns
/// each record and the offset of its fingerprint bytes.
fn split_records(tile: &[u8]) -> Vec<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut p = 0;
    while p < tile.len() {
        let start = p;
        let precert = be(&tile[p + 8..p + 10]) == 1;
        p += 10;
        if precert {
            p += 32;
        }
        p += 3 + be(&tile[p..p + 3]);
        p += 2 + be(&tile[p..p + 2]);
        if precert {
            p += 3 + be(&tile[p..p + 3]);
        }
        let fingerprints = be(&tile[p..p + 2]);
        p += 2 + fingerprints;
        out.push((tile[start..p].to_vec(), p - fingerprints - start));
    }
    out
}

/// Distinct chain certificates of the live RFC 6962 entries, in order of appearance.
fn real_chain_certificates() -> Vec<Vec<u8>> {
    let mut certs: Vec<Vec<u8>> = Vec::new();
    for live in corpus::live_entries() {
        let (leaf, extra) = (live.leaf_input, live.extra_data);
        let entry = decode_rfc6962(&leaf, &extra).unwrap();
        let Chain::Certificates(chain) = entry.chain else {
            panic!("RFC 6962 entries carry certificates")
        };
        for cert in chain {
            if !certs.iter().any(|c| c.as_slice() == cert) {
                certs.push(cert.to_vec());
            }
        }
    }
    certs
}

fn build_corpus() -> Corpus {
    let certs = real_chain_certificates();
    let mut mapping: HashMap<[u8; 32], Vec<u8>> = HashMap::new();
    let mut corpus = Corpus {
        records: Vec::new(),
        chains: Vec::new(),
        timestamps: Vec::new(),
        issuers: HashMap::new(),
    };
    for name in ["000", "001", "002", "003"] {
        let tile = corpus::navigli_data_tile(name);
        for (mut record, fingerprints_at) in split_records(&tile) {
            let mut chain = Vec::new();
            for fp in record[fingerprints_at..].chunks_exact_mut(32) {
                let next = mapping.len();
                let der = mapping
                    .entry(fp.try_into().unwrap())
                    .or_insert_with(|| certs[next].clone());
                let real: [u8; 32] = Sha256::digest(&*der).into();
                corpus.issuers.insert(hex(&real), der.clone());
                fp.copy_from_slice(&real);
                chain.push(der.clone());
            }
            corpus.timestamps.push(be(&record[..8]) as u64);
            corpus.records.push(record);
            corpus.chains.push(chain);
        }
    }
    assert_eq!(corpus.records.len(), 1024);
    assert_eq!(corpus.issuers.len(), 5, "the Navigli sample has 5 issuers");
    corpus
}

// ---------------------------------------------------------------------------------------------------------------
// The scripted log server.

/// One HTTP answer.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    delay: Duration,
}

impl Reply {
    fn new(status: u16, body: Vec<u8>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body,
            delay: Duration::ZERO,
        }
    }
}

struct LogState {
    size: u64,
    serve_partials: bool,
    /// One-shot answers per path, served before the normal one.
    script: HashMap<String, VecDeque<Reply>>,
    /// Every request: path and when it arrived.
    requests: Vec<(String, Instant)>,
}

struct TestLog {
    origin: String,
    signer: LogSigner,
    state: Mutex<LogState>,
}

/// A checkpoint note for `size` naming `origin`, signed by `signer` under the key name `origin` and the key ID of
/// the log `log_id`, after a signature line of an unknown key (which a reader skips).
fn checkpoint_note(origin: &str, size: u64, signer: &LogSigner, log_id: &[u8; 32]) -> Vec<u8> {
    let timestamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let head = TreeHead {
        tree_size: size,
        timestamp,
        root_hash: Sha256::digest(size.to_be_bytes()).into(),
    };
    let signature = signer
        .note_signature(origin, log_id, &head)
        .expect("note signature");
    format!(
        "{}\n\u{2014} grease.invalid AAAAAAAAAAAA\n\u{2014} {origin} {signature}\n",
        checkpoint_body(origin, &head)
    )
    .into_bytes()
}

/// `.../x001/234` or `.../005.p/10` → (tile, width).
fn parse_tile_path(path: &str) -> Option<(u64, Option<usize>)> {
    let (tile, width) = match path.split_once(".p/") {
        Some((tile, width)) => (tile, Some(width.parse().ok()?)),
        None => (path, None),
    };
    let mut n = 0u64;
    for group in tile.split('/') {
        n = n * 1000 + group.trim_start_matches('x').parse::<u64>().ok()?;
    }
    Some((n, width))
}

impl TestLog {
    fn new(origin: &str, size: u64) -> Arc<Self> {
        Arc::new(Self {
            origin: origin.to_string(),
            signer: log_signer(),
            state: Mutex::new(LogState {
                size,
                serve_partials: true,
                script: HashMap::new(),
                requests: Vec::new(),
            }),
        })
    }

    fn set_size(&self, size: u64) {
        self.state.lock().unwrap().size = size;
    }

    fn script(&self, path: &str, reply: Reply) {
        let mut state = self.state.lock().unwrap();
        state
            .script
            .entry(path.to_string())
            .or_default()
            .push_back(reply);
    }

    fn requests(&self) -> Vec<(String, Instant)> {
        self.state.lock().unwrap().requests.clone()
    }

    fn count(&self, path: &str) -> usize {
        self.requests().iter().filter(|(p, _)| p == path).count()
    }

    fn tile_requests(&self) -> Vec<String> {
        let requests = self.requests();
        let tiles = requests.into_iter().map(|(p, _)| p);
        tiles.filter(|p| p.starts_with("/tile/")).collect()
    }

    fn tile_body(first: usize, width: usize) -> Vec<u8> {
        CORPUS.records[first..first + width].concat()
    }

    fn respond(&self, path: &str) -> Reply {
        let mut state = self.state.lock().unwrap();
        state.requests.push((path.to_string(), Instant::now()));
        if let Some(reply) = state.script.get_mut(path).and_then(VecDeque::pop_front) {
            return reply;
        }
        let size = state.size as usize;
        let not_found = Reply::new(404, b"not found".to_vec());
        if path == "/checkpoint" {
            let note = checkpoint_note(
                &self.origin,
                size as u64,
                &self.signer,
                self.signer.log_id(),
            );
            return Reply::new(200, note);
        }
        if let Some(fp) = path.strip_prefix("/issuer/") {
            return match CORPUS.issuers.get(fp) {
                Some(der) => Reply::new(200, der.clone()),
                None => not_found,
            };
        }
        let Some((tile, width)) = path.strip_prefix("/tile/data/").and_then(parse_tile_path) else {
            return not_found;
        };
        let first = tile as usize * 256;
        match width {
            None if first + 256 <= size => Reply::new(200, Self::tile_body(first, 256)),
            Some(w) if state.serve_partials && (1..256).contains(&w) && first + w <= size => {
                Reply::new(200, Self::tile_body(first, w))
            }
            _ => not_found,
        }
    }
}

struct Server {
    http: ScriptedServer,
    log: Arc<TestLog>,
}

impl Server {
    /// Serves `log` over keep-alive HTTP/1.1.
    fn start(log: Arc<TestLog>) -> Self {
        let shared = log.clone();
        let http = ScriptedServer::serve(move |request, w| {
            let reply = shared.respond(&request.path);
            thread::sleep(reply.delay);
            let headers: String = reply
                .headers
                .iter()
                .map(|(name, value)| format!("{name}: {value}\r\n"))
                .collect();
            respond(w, reply.status, &headers, &reply.body);
            After::KeepOpen
        });
        Self { http, log }
    }

    fn url(&self) -> String {
        self.http.url("/")
    }

    fn target(&self) -> Rc<LogTarget> {
        let url = self.url();
        Rc::new(LogTarget {
            source: LogSource::new(
                &self.log.origin,
                &format!("https://{}/", self.log.origin),
                SourceKind::Tiled {
                    monitoring_url: url.clone(),
                },
            ),
            read_url: url,
            origin: self.log.origin.clone(),
            key: LogKey::from_spki(self.log.signer.spki()).unwrap(),
            final_tree_size: None,
        })
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The poller's side.

/// What the sink saw: (monitoring URL, index, timestamp, chain).
type Delivery = (String, u64, u64, Vec<Vec<u8>>);

#[derive(Default)]
struct Recorder {
    got: RefCell<Vec<Delivery>>,
}

impl EntrySink for Recorder {
    fn deliver(&self, log: &LogSource, index: u64, entry: &LogEntry<'_>, chain: &[&[u8]]) {
        let SourceKind::Tiled { monitoring_url } = log.kind() else {
            panic!("a tiled poller delivered for a non-tiled log")
        };
        let chain = chain.iter().map(|der| der.to_vec()).collect();
        self.got
            .borrow_mut()
            .push((monitoring_url.clone(), index, entry.timestamp_ms, chain));
    }

    fn gate(&self) -> Option<certstream::publish::Gate> {
        None
    }
}

impl Recorder {
    fn count(&self, url: &str) -> usize {
        self.got.borrow().iter().filter(|d| d.0 == url).count()
    }

    /// Asserts the log's deliveries are exactly `range`, in order, each with its entry's timestamp and chain.
    fn assert_exactly(&self, url: &str, range: std::ops::Range<u64>) {
        let got = self.got.borrow();
        let indices: Vec<u64> = got.iter().filter(|d| d.0 == url).map(|d| d.1).collect();
        assert_eq!(
            indices,
            range.clone().collect::<Vec<_>>(),
            "indices of {url}"
        );
        for (_, index, timestamp, chain) in got.iter().filter(|d| d.0 == url) {
            let i = *index as usize;
            assert_eq!(*timestamp, CORPUS.timestamps[i], "timestamp of {i}");
            assert_eq!(chain, &CORPUS.chains[i], "chain of {i}");
        }
    }
}

fn options(start_back: u64) -> PollOptions {
    PollOptions {
        start_back,
        poll_interval: Duration::from_millis(50),
        request_timeout: Duration::from_secs(30),
        partial_tile_min_age: Duration::from_millis(150),
        ..PollOptions::default()
    }
}

struct Harness {
    sink: Rc<Recorder>,
    http: Rc<HttpClient>,
    issuers: Rc<IssuerCache>,
}

struct Running {
    status: SharedStatus,
    stop: StopToken,
    done: monoio::task::JoinHandle<()>,
}

impl Harness {
    fn new() -> Self {
        Self {
            sink: Rc::new(Recorder::default()),
            http: Rc::new(loopback_poller_client()),
            issuers: Rc::new(IssuerCache::default()),
        }
    }

    fn spawn(&self, server: &Server, options: PollOptions) -> Running {
        self.spawn_target(server.target(), options)
    }

    fn spawn_target(&self, target: Rc<LogTarget>, options: PollOptions) -> Running {
        let ctx = PollerContext {
            http: self.http.clone(),
            sink: self.sink.clone(),
            options,
        };
        let status: SharedStatus = Rc::default();
        let stop = StopToken::default();
        let done = monoio::spawn(tiled::run(
            ctx,
            self.issuers.clone(),
            target,
            status.clone(),
            stop.clone(),
            Start::Head,
        ));
        Running { status, stop, done }
    }
}

impl Running {
    fn status(&self) -> LogStatus {
        self.status.borrow().clone()
    }

    async fn stop(self) {
        self.stop.stop();
        let stopped = monoio::time::timeout(Duration::from_millis(500), self.done).await;
        assert!(stopped.is_ok(), "the poller ends promptly on stop");
    }
}

/// Waits until `done()` holds; fails the test at the deadline.
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------------------------------

#[test]
fn delivers_every_index_once_in_order_with_its_chain() {
    let server = Server::start(TestLog::new("ct.example.org/all", 1000));
    block_on(async {
        let harness = Harness::new();
        // 1000 - 600 = 400: starts in the middle of tile 1; tile 3 is partial (width 232).
        let poller = harness.spawn(&server, options(600));
        wait_for("entries 400..1000", || {
            harness.sink.count(&server.url()) == 600
        })
        .await;
        monoio::time::sleep(Duration::from_millis(300)).await;
        harness.sink.assert_exactly(&server.url(), 400..1000);
        let status = poller.status();
        assert_eq!(
            (status.tree_size, status.next_index, status.delivered),
            (1000, 1000, 600)
        );
        assert_eq!(
            (status.skipped, status.errors, status.incomplete_chains),
            (0, 0, 0)
        );
        assert_eq!(
            server.log.tile_requests(),
            ["/tile/data/001", "/tile/data/002", "/tile/data/003.p/232"],
            "tile 0 is never needed, each tile is fetched once"
        );
        poller.stop().await;
    });
}

#[test]
fn a_growing_log_fetches_each_partial_width_once_and_an_idle_one_only_checkpoints() {
    let server = Server::start(TestLog::new("ct.example.org/growing", 300));
    block_on(async {
        let harness = Harness::new();
        let poller = harness.spawn(&server, options(300));
        for size in [300, 310, 400, 512, 520, 1024] {
            server.log.set_size(size);
            wait_for("catch-up", || {
                harness.sink.count(&server.url()) == size as usize
            })
            .await;
            // Idle: the tip stays partial for many poll intervals and minimum ages.
            let tiles_before = server.log.tile_requests().len();
            let checkpoints_before = server.log.count("/checkpoint");
            monoio::time::sleep(Duration::from_millis(600)).await;
            assert_eq!(
                server.log.tile_requests().len(),
                tiles_before,
                "no tile request while the log is not growing (size {size})"
            );
            assert!(
                server.log.count("/checkpoint") >= checkpoints_before + 5,
                "an idle log is still polled"
            );
        }
        harness.sink.assert_exactly(&server.url(), 0..1024);
        assert_eq!(
            server.log.tile_requests(),
            [
                "/tile/data/000",
                "/tile/data/001.p/44",
                "/tile/data/001.p/54",
                "/tile/data/001.p/144",
                "/tile/data/001",
                "/tile/data/002.p/8",
                "/tile/data/002",
                "/tile/data/003",
            ]
        );
        poller.stop().await;
    });
}

#[test]
fn partial_tile_waits_for_its_minimum_age() {
    let server = Server::start(TestLog::new("ct.example.org/age", 256));
    block_on(async {
        let harness = Harness::new();
        let mut opts = options(0);
        opts.partial_tile_min_age = Duration::from_millis(800);
        let poller = harness.spawn(&server, opts);
        wait_for("first checkpoint", || poller.status().tree_size == 256).await;
        server.log.set_size(300);
        wait_for("growth seen", || poller.status().tree_size == 300).await;
        let seen = Instant::now();
        wait_for("partial delivered", || {
            harness.sink.count(&server.url()) == 44
        })
        .await;
        let fetched = server
            .log
            .requests()
            .into_iter()
            .find(|(p, _)| p == "/tile/data/001.p/44")
            .map(|(_, at)| at)
            .unwrap();
        let waited = fetched.saturating_duration_since(seen);
        assert!(
            waited >= Duration::from_millis(650),
            "partial fetched {waited:?} after growth"
        );
        harness.sink.assert_exactly(&server.url(), 256..300);
        poller.stop().await;
    });
}

#[test]
fn partial_404_falls_back_to_the_full_tile() {
    let log = TestLog::new("ct.example.org/nopartials", 300);
    log.state.lock().unwrap().serve_partials = false;
    let server = Server::start(log);
    block_on(async {
        let harness = Harness::new();
        let poller = harness.spawn(&server, options(300));
        wait_for("tile 0", || harness.sink.count(&server.url()) == 256).await;
        wait_for("the partial is tried", || {
            server.log.count("/tile/data/001.p/44") == 1
        })
        .await;
        monoio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            server.log.count("/tile/data/001.p/44"),
            1,
            "a missing partial is not asked again"
        );
        assert_eq!(harness.sink.count(&server.url()), 256);
        server.log.set_size(512);
        wait_for("tile 1", || harness.sink.count(&server.url()) == 512).await;
        harness.sink.assert_exactly(&server.url(), 0..512);
        assert_eq!(server.log.count("/tile/data/001"), 1);
        assert_eq!(
            poller.status().errors,
            0,
            "a missing partial is not an error"
        );
        poller.stop().await;
    });
}

#[test]
fn issuers_are_fetched_once_across_logs_and_verified() {
    let a = Server::start(TestLog::new("ct.example.org/a", 512));
    let b = Server::start(TestLog::new("ct.example.org/b", 512));
    // Log b first serves a wrong certificate for one issuer: it must be refused, then fetched again.
    let (first_fp, first_der) = CORPUS.issuers.iter().next().unwrap();
    let wrong = CORPUS
        .issuers
        .values()
        .find(|der| *der != first_der)
        .unwrap();
    b.log.script(
        &format!("/issuer/{first_fp}"),
        Reply::new(200, wrong.clone()),
    );
    block_on(async {
        let harness = Harness::new();
        // Log b starts once a has resolved every issuer, so b needs none and its wrong answer is never asked for.
        let pa = harness.spawn(&a, options(512));
        wait_for("log a", || harness.sink.count(&a.url()) == 512).await;
        let pb = harness.spawn(&b, options(512));
        wait_for("log b", || harness.sink.count(&b.url()) == 512).await;
        harness.sink.assert_exactly(&a.url(), 0..512);
        harness.sink.assert_exactly(&b.url(), 0..512);
        let issuer_requests = |s: &Server| {
            let requests = s.log.requests().into_iter().map(|(p, _)| p);
            requests.filter(|p| p.starts_with("/issuer/")).count()
        };
        assert_eq!(issuer_requests(&a), 5, "each issuer fetched once");
        assert_eq!(issuer_requests(&b), 0, "the cache is shared across logs");
        let all: Vec<[u8; 32]> = CORPUS
            .issuers
            .values()
            .map(|der| Sha256::digest(der).into())
            .collect();
        assert_eq!(all.len(), 5);
        assert!(
            harness.issuers.cached(&all).is_some(),
            "every issuer is cached"
        );
        pa.stop().await;
        pb.stop().await;

        // A fresh cache (a new process): b's wrong body is refused and not cached; the retry gets the right one.
        let fresh = Harness::new();
        let pb = fresh.spawn(&b, options(256));
        wait_for("log b again", || fresh.sink.count(&b.url()) == 256).await;
        fresh.sink.assert_exactly(&b.url(), 256..512);
        assert_eq!(b.log.count(&format!("/issuer/{first_fp}")), 2);
        let status = pb.status();
        assert_eq!(status.errors, 1, "{status:?}");
        assert!(status.last_error.unwrap().contains("SHA-256"));
        pb.stop().await;
    });
}

#[test]
fn concurrent_requests_for_one_issuer_share_one_fetch() {
    let server = Server::start(TestLog::new("ct.example.org/slow", 0));
    let (fp_hex, der) = CORPUS.issuers.iter().next().unwrap();
    let path = format!("/issuer/{fp_hex}");
    let mut slow = Reply::new(200, der.clone());
    slow.delay = Duration::from_millis(300);
    server.log.script(&path, slow);
    let fp: [u8; 32] = Sha256::digest(der).into();
    block_on(async {
        let harness = Harness::new();
        let url = server.url();
        let resolve = |cache: Rc<IssuerCache>, http: Rc<HttpClient>, url: String| async move {
            cache
                .resolve(&http, &url, &[fp], Duration::from_secs(5))
                .await
        };
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                monoio::spawn(resolve(
                    harness.issuers.clone(),
                    harness.http.clone(),
                    url.clone(),
                ))
            })
            .collect();
        for task in tasks {
            let chain = task.await.unwrap();
            assert_eq!(chain, [der.as_slice()]);
        }
        let again = resolve(harness.issuers.clone(), harness.http.clone(), url.clone()).await;
        assert_eq!(again.unwrap(), [der.as_slice()]);
        assert_eq!(server.log.count(&path), 1, "one fetch for four callers");
        // A miss that fails is not cached: the next call asks again.
        let unknown = [7u8; 32];
        for _ in 0..2 {
            let failed = harness
                .issuers
                .resolve(&harness.http, &url, &[unknown], Duration::from_secs(5))
                .await;
            assert!(failed.is_err());
        }
        assert_eq!(server.log.count(&format!("/issuer/{}", hex(&unknown))), 2);
    });
}

#[test]
fn rate_limit_retry_after_is_honoured() {
    let server = Server::start(TestLog::new("ct.example.org/busy", 256));
    let mut limited = Reply::new(429, b"slow down".to_vec());
    limited.headers.push(("Retry-After", "1".to_string()));
    server.log.script("/tile/data/000", limited);
    block_on(async {
        let harness = Harness::new();
        let poller = harness.spawn(&server, options(256));
        wait_for("tile 0", || harness.sink.count(&server.url()) == 256).await;
        harness.sink.assert_exactly(&server.url(), 0..256);
        let requests = server.log.requests();
        let limited_at = requests
            .iter()
            .position(|(p, _)| p == "/tile/data/000")
            .unwrap();
        let gap = requests[limited_at + 1]
            .1
            .duration_since(requests[limited_at].1);
        assert!(gap >= Duration::from_secs(1), "next request after {gap:?}");
        let status = poller.status();
        assert_eq!((status.rate_limited, status.errors), (1, 0));
        assert_eq!(
            status.delay_ms, 0,
            "the 50 ms added by the 429 is paid back by 256 certificates"
        );
        poller.stop().await;
    });
}

#[test]
fn bad_and_backwards_checkpoints_are_ignored() {
    let server = Server::start(TestLog::new("ct.example.org/cp", 256));
    block_on(async {
        let harness = Harness::new();
        let poller = harness.spawn(&server, options(256));
        wait_for("tile 0", || harness.sink.count(&server.url()) == 256).await;
        let log = &server.log;
        let other_signer = log_signer();
        let bad = [
            // Backwards, correctly signed.
            checkpoint_note(&log.origin, 100, &log.signer, log.signer.log_id()),
            // Size 512 signed by another key under this log's key ID.
            checkpoint_note(&log.origin, 512, &other_signer, log.signer.log_id()),
            // Size 512 correctly signed, for another origin.
            checkpoint_note(
                "ct.example.org/other",
                512,
                &log.signer,
                log.signer.log_id(),
            ),
        ];
        for note in bad {
            log.script("/checkpoint", Reply::new(200, note));
        }
        let before = log.count("/checkpoint");
        log.set_size(512);
        wait_for("tile 1", || harness.sink.count(&server.url()) == 512).await;
        harness.sink.assert_exactly(&server.url(), 0..512);
        let requests = log.requests();
        let checkpoints_before_tile_1 = requests
            .iter()
            .take_while(|(p, _)| p != "/tile/data/001")
            .filter(|(p, _)| p == "/checkpoint")
            .count();
        assert!(
            checkpoints_before_tile_1 >= before + 4,
            "tile 1 was fetched only after a good checkpoint"
        );
        let status = poller.status();
        assert_eq!(status.errors, 2, "bad signature, wrong origin");
        assert_eq!(status.tree_size, 512);
        poller.stop().await;
    });
}

#[test]
fn a_garbage_tile_is_retried_not_skipped() {
    let server = Server::start(TestLog::new("ct.example.org/garbage", 512));
    let tile_0 = TestLog::tile_body(0, 256);
    // Truncated mid-record, then a well-formed tile of the wrong indices (tile 1's records).
    server.log.script(
        "/tile/data/000",
        Reply::new(200, tile_0[..tile_0.len() / 2].to_vec()),
    );
    server.log.script(
        "/tile/data/000",
        Reply::new(200, TestLog::tile_body(256, 256)),
    );
    block_on(async {
        let harness = Harness::new();
        let poller = harness.spawn(&server, options(512));
        wait_for("both tiles", || harness.sink.count(&server.url()) == 512).await;
        harness.sink.assert_exactly(&server.url(), 0..512);
        assert_eq!(server.log.count("/tile/data/000"), 3);
        let status = poller.status();
        assert_eq!(
            (status.errors, status.skipped, status.broken_tiles),
            (2, 0, 2)
        );
        assert!(
            status.last_error.unwrap().contains("leaf_index"),
            "the second bad answer is a leaf index mismatch"
        );
        poller.stop().await;
    });
}

/// `record` (one TileLeaf) with its certificate (or a precert's TBS) replaced by an empty one (u24 length 0).
fn with_empty_leaf(record: &[u8]) -> Vec<u8> {
    let leaf_at = if record[8..10] == [0, 1] { 10 + 32 } else { 10 };
    let len = be(&record[leaf_at..leaf_at + 3]);
    [&record[..leaf_at], &[0, 0, 0], &record[leaf_at + 3 + len..]].concat()
}

#[test]
fn a_bad_record_is_skipped_alone_without_a_retry() {
    let server = Server::start(TestLog::new("ct.example.org/bad-record", 512));
    // Record 10 of tile 0 has an empty certificate; its boundaries are known, so it costs only itself.
    let mut records = CORPUS.records[..256].to_vec();
    records[10] = with_empty_leaf(&records[10]);
    server
        .log
        .script("/tile/data/000", Reply::new(200, records.concat()));
    block_on(async {
        let harness = Harness::new();
        let poller = harness.spawn(&server, options(512));
        wait_for("both tiles", || harness.sink.count(&server.url()) == 511).await;
        monoio::time::sleep(Duration::from_millis(200)).await;
        let got: Vec<u64> = harness.sink.got.borrow().iter().map(|d| d.1).collect();
        assert_eq!(got, (0..512).filter(|i| *i != 10).collect::<Vec<_>>());
        assert_eq!(server.log.count("/tile/data/000"), 1, "no retry");
        let status = poller.status();
        assert_eq!(
            (status.skipped, status.errors, status.broken_tiles),
            (1, 0, 0)
        );
        assert_eq!((status.delivered, status.next_index), (511, 512));
        poller.stop().await;
    });
}

#[test]
fn the_stop_token_ends_the_poller_even_during_a_slow_request() {
    let server = Server::start(TestLog::new("ct.example.org/stop", 256));
    block_on(async {
        let harness = Harness::new();
        let poller = harness.spawn(&server, options(0));
        wait_for("first checkpoint", || poller.status().tree_size == 256).await;
        let mut slow = Reply::new(200, Vec::new());
        slow.delay = Duration::from_secs(4);
        server.log.script("/checkpoint", slow);
        let count = server.log.count("/checkpoint");
        wait_for("the slow request", || {
            server.log.count("/checkpoint") > count
        })
        .await;
        let started = Instant::now();
        poller.stop().await;
        assert!(started.elapsed() < Duration::from_millis(500));
    });
}

#[test]
fn an_issuer_that_stays_unavailable_shortens_the_chain_without_stalling_the_log() {
    let server = Server::start(TestLog::new("ct.example.org/noissuer", 256));
    // Every Navigli entry names the same second issuer; this log never serves it.
    let second = &CORPUS.chains[0][1];
    assert!(
        CORPUS.chains[..256]
            .iter()
            .all(|c| c.len() == 2 && &c[1] == second)
    );
    let path = format!("/issuer/{}", hex(&Sha256::digest(second)));
    for _ in 0..10 {
        server.log.script(&path, Reply::new(404, Vec::new()));
    }
    block_on(async {
        let harness = Harness::new();
        // The other issuers are cached already, so the only waits are the backoffs of the missing one.
        let others: Vec<[u8; 32]> = CORPUS
            .issuers
            .values()
            .filter(|der| *der != second)
            .map(|der| Sha256::digest(der).into())
            .collect();
        let (url, timeout) = (server.url(), Duration::from_secs(5));
        let warm = harness
            .issuers
            .resolve(&harness.http, &url, &others, timeout);
        assert_eq!(warm.await.unwrap().len(), 4);
        let poller = harness.spawn(&server, options(256));
        wait_for("tile 0", || harness.sink.count(&server.url()) == 256).await;
        for (_, index, _, chain) in harness.sink.got.borrow().iter() {
            let issuer_only = &CORPUS.chains[*index as usize][..1];
            assert_eq!(chain, issuer_only, "chain of {index}");
        }
        let status = poller.status();
        assert_eq!(
            (status.delivered, status.incomplete_chains, status.errors),
            (256, 256, 4)
        );
        assert_eq!(
            server.log.count(&path),
            4,
            "given up after 4 attempts, not asked per entry"
        );
        poller.stop().await;
    });
}

#[test]
fn a_read_only_log_ends_at_its_final_size() {
    let server = Server::start(TestLog::new("ct.example.org/frozen", 300));
    let target = server.target();
    let target = Rc::new(LogTarget {
        source: target.source.clone(),
        read_url: target.read_url.clone(),
        origin: target.origin.clone(),
        key: target.key.clone(),
        final_tree_size: Some(300),
    });
    block_on(async {
        let harness = Harness::new();
        let poller = harness.spawn_target(target, options(300));
        let ended = monoio::time::timeout(DEADLINE, poller.done).await;
        assert!(ended.is_ok(), "the poller ends by itself");
        harness.sink.assert_exactly(&server.url(), 0..300);
    });
}
