//! `mock-ct-log`: N RFC 6962 logs and M static-ct-api (tiled) logs on one loopback port, with a v3 log list,
//! deterministic entries built from the real corpus, growth over time, and injectable faults. Used by the
//! end-to-end tests and the ingestion benchmark.
//!
//! ```text
//! mock-ct-log --listen 127.0.0.1:0 --rfc6962 2 --tiled 2 --rate 100 --start-size 1000 --page-cap 32 --seed 7 \
//!     [--readonly-final SIZE] [--fault SPEC]... [--corpus DIR] [--verbose] [--ignore-stdin]
//! ```
//!
//! The binary prints `listening http://127.0.0.1:PORT` once ready, then serves until killed or until stdin reaches
//! EOF. Tests run the same server in-process with [`MockServer::start`], which stops serving when dropped.
//!
//! Routes (PORT's base URL `B`):
//! - `B/log_list.json`: the v3 list. RFC 6962 logs `rN` at `B/rfc6962/rN/`; tiled logs `tN` submit at
//!   `B/submit/tN/` (nothing served there) and are read at `B/monitor/tN/`; the readonly log is `ro0`.
//! - RFC 6962: `ct/v1/get-sth`, `ct/v1/get-entries?start=&end=`. Tiled: `checkpoint`, `tile/data/<path>[.p/<W>]`,
//!   `issuer/<hex>`.
//! - `B/_mock/expected?log=NAME&start=S&end=E` (inclusive): `[{"index","sha1_fingerprint","update_type",
//!   "unparseable"}]`; `B/_mock/stats`; `GET`/`POST B/_mock/faults` (a JSON array of fault rules, replacing all).
//!
//! Entries: entry i of a log is a corpus entry picked by (seed, log, i) whose certificate (x509) or pre-certificate
//! (precert) has the last 8 bytes of its signature overwritten with (log, i), so every index has its own
//! fingerprint; timestamps increase with i. The mock builds no Merkle tree: root hashes are deterministic stand-ins
//! (signatures over them verify), level-0+ hash tiles and proofs are not served. Responses are never compressed.
//!
//! Fault specs: `KIND[@LOG][,key=value…]`, KIND one of `429 500 slow truncate garbage reset down backwards
//! unparseable absurd-429 trailing unsolicited tiny-entries`, or the hostile entries and heads `empty_cert bad_base64
//! huge_cert huge_chain jump`; keys `endpoint p every retry_after http_date ms by entries bytes to` (see faults.rs).

mod cache;
mod corpus;
mod dates;
mod entries;
mod faults;
mod http;
mod logs;
mod routes;
pub mod signing;
mod stats;

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

use crate::corpus::Corpus;
use crate::faults::Fault;
use crate::http::Connections;
pub use crate::logs::Growth;
use crate::logs::{MockLog, Protocol, log_list_json};
use crate::routes::{App, Settings};

/// The command line, for `--help` and errors.
pub const USAGE: &str = "usage: mock-ct-log [--listen ADDR] [--rfc6962 N] [--tiled M] [--rate ENTRIES_PER_S] \
[--start-size N] [--page-cap N] [--seed N] [--readonly-final SIZE] [--fault SPEC]... [--corpus DIR] [--verbose] \
[--ignore-stdin]";

/// What to serve, from the command line.
pub struct Options {
    listen: String,
    rfc6962: usize,
    tiled: usize,
    rate: f64,
    start_size: u64,
    page_cap: u64,
    seed: u64,
    readonly_final: Option<u64>,
    faults: Vec<Fault>,
    corpus: PathBuf,
    verbose: bool,
    /// Keep serving when stdin reaches EOF (only the binary watches stdin).
    pub ignore_stdin: bool,
}

/// Parses the command line (without the program name).
pub fn parse_options(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        listen: "127.0.0.1:0".into(),
        rfc6962: 2,
        tiled: 2,
        rate: 100.0,
        start_size: 1000,
        page_cap: 32,
        seed: 7,
        readonly_final: None,
        faults: Vec::new(),
        corpus: corpus_dir(),
        verbose: false,
        ignore_stdin: false,
    };
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        fn number<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
            v.parse().map_err(|_| format!("{flag}: bad number {v:?}"))
        }
        match flag.as_str() {
            "--listen" => options.listen = value()?,
            "--rfc6962" => options.rfc6962 = number(&flag, value()?)?,
            "--tiled" => options.tiled = number(&flag, value()?)?,
            "--rate" => options.rate = number(&flag, value()?)?,
            "--start-size" => options.start_size = number(&flag, value()?)?,
            "--page-cap" => options.page_cap = number(&flag, value()?)?,
            "--seed" => options.seed = number(&flag, value()?)?,
            "--readonly-final" => options.readonly_final = Some(number(&flag, value()?)?),
            "--fault" => options.faults.push(Fault::parse_spec(&value()?)?),
            "--corpus" => options.corpus = PathBuf::from(value()?),
            "--verbose" => options.verbose = true,
            "--ignore-stdin" => options.ignore_stdin = true,
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag {other:?}\n{USAGE}")),
        }
    }
    if options.page_cap == 0 {
        return Err("--page-cap must be at least 1".into());
    }
    if !options.rate.is_finite() || options.rate < 0.0 {
        return Err("--rate must be a non-negative number".into());
    }
    Ok(options)
}

/// `$CERTSTREAM_CORPUS`, else the repository's test corpus (`tests/corpus`).
pub fn corpus_dir() -> PathBuf {
    std::env::var_os("CERTSTREAM_CORPUS").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/corpus")),
        PathBuf::from,
    )
}

fn build_logs(options: &Options) -> Result<Vec<MockLog>, String> {
    let mut specs: Vec<(String, Protocol, Option<u64>)> = Vec::new();
    specs.extend((0..options.rfc6962).map(|i| (format!("r{i}"), Protocol::Rfc6962, None)));
    specs.extend((0..options.tiled).map(|i| (format!("t{i}"), Protocol::Tiled, None)));
    if let Some(last) = options.readonly_final {
        specs.push(("ro0".into(), Protocol::Rfc6962, Some(last)));
    }
    specs
        .into_iter()
        .enumerate()
        .map(|(number, (name, protocol, last))| MockLog::new(name, number, protocol, last))
        .collect()
}

/// A mock serving on its own threads; dropping it stops accepting and ends its open connections.
pub struct MockServer {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// How every log grows (benchmarks time entries from when they became visible).
    pub growth: Growth,
    connections: Arc<Connections>,
    acceptor: Option<JoinHandle<()>>,
}

impl MockServer {
    /// Binds, builds the logs and starts serving on a thread.
    pub fn start(options: Options) -> Result<Self, String> {
        let corpus = Corpus::load(&options.corpus)?;
        let logs = build_logs(&options)?;
        let listener =
            TcpListener::bind(&options.listen).map_err(|e| format!("{}: {e}", options.listen))?;
        let addr = listener
            .local_addr()
            .map_err(|e| e.to_string())?
            .to_string();
        let log_list = log_list_json(
            &logs,
            &format!("http://{addr}"),
            options.seed,
            &dates::rfc3339(SystemTime::now()),
        );
        let settings = Settings {
            seed: options.seed,
            growth: Growth {
                started: Instant::now(),
                start_size: options.start_size,
                rate: options.rate,
            },
            page_cap: options.page_cap,
            faults: options.faults,
            verbose: options.verbose,
        };
        let growth = settings.growth;
        let app = Arc::new(App::new(logs, corpus, settings, addr.clone(), log_list)?);
        let connections = Arc::new(Connections::default());
        let acceptor = {
            let connections = connections.clone();
            std::thread::spawn(move || http::serve(listener, app, connections))
        };
        Ok(Self {
            addr,
            growth,
            connections,
            acceptor: Some(acceptor),
        })
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.connections.stop();
        // Wakes the blocked accept so it sees the flag; without that connection it could block forever.
        if TcpStream::connect(&self.addr).is_ok()
            && let Some(acceptor) = self.acceptor.take()
        {
            let _ = acceptor.join();
        }
    }
}
