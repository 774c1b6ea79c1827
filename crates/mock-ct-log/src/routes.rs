//! The mock's HTTP routes: the log list, both read APIs of every log, and the `/_mock/*` control endpoints.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use certstream_ct::tile::TILE_WIDTH;
use certstream_ct::tree_head::TreeHead;
use serde_json::{Map, Value, json};

use crate::cache::Cache;
use crate::corpus::Corpus;
use crate::dates::http_date;
use crate::entries::{Entry, der_garbage, generate, mix};
use crate::faults::{Action, Fault, FaultSet};
use crate::http::{Body, Handler, Reply, Request, Response};
use crate::logs::{Growth, MONITORING_PREFIX, MockLog, Protocol, RFC6962_PREFIX, origin};
use crate::stats::{Endpoint, LogStats};

/// Most entries one `/_mock/expected` query may ask for.
const MAX_EXPECTED: u64 = 100_000;
const JSON: &str = "application/json";

/// Everything the server needs to answer.
pub struct App {
    logs: Vec<MockLog>,
    names: Vec<String>,
    corpus: Corpus,
    seed: u64,
    growth: Growth,
    page_cap: u64,
    faults: RwLock<Arc<FaultSet>>,
    stats: Vec<LogStats>,
    cache: Cache,
    log_list: String,
    /// `127.0.0.1:PORT`, for checkpoint origins.
    host_port: String,
    verbose: bool,
    /// Distinct garbage bodies.
    garbage_count: AtomicU64,
    /// The `huge_chain` issuers tiles referred to: fingerprint → (log, index, bytes), built again on request.
    extra_issuers: Mutex<HashMap<[u8; 32], (usize, u64, usize)>>,
}

/// How the mock was configured (see main.rs for the flags).
pub struct Settings {
    /// Seed of every derived value.
    pub seed: u64,
    /// Growth of every log.
    pub growth: Growth,
    /// get-entries page cap.
    pub page_cap: u64,
    /// Initial faults.
    pub faults: Vec<Fault>,
    /// Print one line per request.
    pub verbose: bool,
}

impl App {
    /// Assembles the server for `logs` served at `host_port`.
    pub fn new(
        logs: Vec<MockLog>,
        corpus: Corpus,
        settings: Settings,
        host_port: String,
        log_list: String,
    ) -> Result<Self, String> {
        let names: Vec<String> = logs.iter().map(|l| l.name.clone()).collect();
        let faults = FaultSet::new(settings.faults, &names, settings.seed, 0)?;
        Ok(Self {
            stats: logs.iter().map(|_| LogStats::default()).collect(),
            logs,
            names,
            corpus,
            seed: settings.seed,
            growth: settings.growth,
            page_cap: settings.page_cap.max(1),
            faults: RwLock::new(Arc::new(faults)),
            cache: Cache::default(),
            log_list,
            host_port,
            verbose: settings.verbose,
            garbage_count: AtomicU64::new(0),
            extra_issuers: Mutex::new(HashMap::new()),
        })
    }

    fn faults(&self) -> Arc<FaultSet> {
        Arc::clone(&self.faults.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn log_number(&self, name: &str, protocol: Protocol) -> Option<usize> {
        self.logs
            .iter()
            .position(|l| l.name == name && l.protocol == protocol)
    }

    fn entry(&self, faults: &FaultSet, log: usize, index: u64) -> Entry<'_> {
        let mut entry_faults = faults.entry_faults(log, index);
        // Tiles hold no base64: the fault exists only in get-entries pages.
        entry_faults.bad_base64 &= self.logs[log].protocol == Protocol::Rfc6962;
        generate(&self.corpus, self.seed, log, index, entry_faults)
    }

    fn control(&self, request: &Request) -> Response {
        match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/log_list.json") => Response::new(200, JSON, self.log_list.as_bytes()),
            ("GET", "/_mock/stats") => Response::new(200, JSON, self.stats_json()),
            ("GET", "/_mock/expected") => self.expected(request).unwrap_or_else(|e| e),
            ("GET", "/_mock/faults") => self.faults_json(),
            ("POST", "/_mock/faults") => self.set_faults(&request.body).unwrap_or_else(|e| e),
            _ => Response::error(404, "not found"),
        }
    }

    fn stats_json(&self) -> String {
        let logs: Map<String, Value> = self
            .logs
            .iter()
            .zip(&self.stats)
            .map(|(log, stats)| (log.name.clone(), stats.to_json(log.size(&self.growth))))
            .collect();
        let sent_429: u64 = self.stats.iter().map(LogStats::sent_429).sum();
        json!({"logs": logs, "429_sent": sent_429}).to_string()
    }

    /// `[{"index", "sha1_fingerprint", "update_type", "unparseable"}…]` for `log`, `start..=end`.
    fn expected(&self, request: &Request) -> Result<Response, Response> {
        let name = request.param("log").unwrap_or_default();
        let log = self
            .names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| Response::error(404, format!("no log named {name:?}")))?;
        let (start, end) = range_params(request)?;
        if end - start >= MAX_EXPECTED {
            return Err(Response::error(
                400,
                format!("at most {MAX_EXPECTED} entries per query"),
            ));
        }
        let faults = self.faults();
        let mut body = String::from("[");
        for index in start..=end {
            let entry = self.entry(&faults, log, index);
            let comma = if index == start { "" } else { "," };
            let _ = write!(
                body,
                "{comma}{{\"index\":{index},\"sha1_fingerprint\":\"{}\",\"update_type\":\"{}\",\"unparseable\":{}}}",
                entry.sha1_fingerprint(),
                entry.update_type(),
                entry.unparseable
            );
        }
        body.push(']');
        Ok(Response::new(200, JSON, body))
    }

    fn faults_json(&self) -> Response {
        let faults = self.faults();
        let body = serde_json::to_string(faults.faults()).unwrap_or_else(|_| "[]".into());
        Response::new(200, JSON, body)
    }

    /// Replaces the fault set with the JSON array in `body`.
    fn set_faults(&self, body: &[u8]) -> Result<Response, Response> {
        let faults: Vec<Fault> = serde_json::from_slice(body)
            .map_err(|e| Response::error(400, format!("faults JSON: {e}")))?;
        {
            let mut current = self.faults.write().unwrap_or_else(|p| p.into_inner());
            let next = FaultSet::new(faults, &self.names, self.seed, current.generation + 1)
                .map_err(|e| Response::error(400, e))?;
            *current = Arc::new(next);
        }
        self.cache.clear();
        Ok(self.faults_json())
    }

    /// A request under a log's prefix: counted, run through the faults, then answered.
    fn log_request(&self, log: usize, request: &Request, route: Route<'_>) -> Reply {
        let endpoint = route.endpoint();
        let Some(stats) = self.stats.get(log) else {
            return Reply::Full(Response::error(404, "no such log"));
        };
        stats.request(endpoint);
        if let Route::PartialTile(tile, width) = route {
            stats.partial_tile(tile, width);
        }
        let faults = self.faults();
        let decision = faults.decide(log, endpoint);
        stats.faults(&decision.triggered);
        if decision.delay_ms > 0 {
            std::thread::sleep(Duration::from_millis(decision.delay_ms));
        }
        let truncate = match decision.action {
            None => false,
            Some(Action::Truncate) => true,
            Some(Action::Reset) => return Reply::Reset,
            Some(Action::Down) => return Reply::Full(Response::error(503, "log is down")),
            Some(Action::ServerError) => {
                return Reply::Full(Response::error(500, "injected error"));
            }
            Some(Action::Garbage) => return Reply::Full(self.garbage(log)),
            Some(Action::TooManyRequests {
                retry_after,
                http_date: as_date,
            }) => {
                let value = if as_date {
                    http_date(SystemTime::now() + Duration::from_secs(retry_after))
                } else {
                    retry_after.to_string()
                };
                let mut response = Response::error(429, "rate limited");
                response.headers.push(("Retry-After", value));
                return Reply::Full(response);
            }
            Some(Action::AbsurdRetryAfter(value)) => {
                let mut response = Response::error(429, "rate limited");
                response.headers.push(("Retry-After", value.into()));
                return Reply::Full(response);
            }
        };
        if request.method != "GET" {
            return Reply::Full(Response::error(405, "GET only"));
        }
        let mut response = self
            .answer(
                &faults,
                log,
                request,
                route,
                decision.backwards_by,
                decision.jump_to,
            )
            .unwrap_or_else(|e| e);
        if let Some(count) = decision.tiny_entries.filter(|_| response.status == 200) {
            response.body = Body::Owned(with_tiny_entries(response.body.as_ref(), count));
        }
        if truncate {
            Reply::Truncated(response)
        } else if let Some(delay_ms) = decision.forge_after_ms {
            Reply::Forged {
                response,
                delay_ms,
                forged: self.forged_response(&faults, log),
            }
        } else {
            Reply::Full(response)
        }
    }

    /// What a hostile log injects: a complete 200 get-entries answer carrying a page of its own certificates.
    fn forged_response(&self, faults: &FaultSet, log: usize) -> Vec<u8> {
        let body = self.entries_json(faults, log, 0, self.page_cap - 1);
        crate::http::response_bytes(&Response::new(200, JSON, body), true, usize::MAX)
    }

    fn answer(
        &self,
        faults: &FaultSet,
        log_number: usize,
        request: &Request,
        route: Route<'_>,
        backwards_by: Option<u64>,
        jump_to: Option<u64>,
    ) -> Result<Response, Response> {
        let log = &self.logs[log_number];
        let real_size = log.size(&self.growth);
        // A `jump` log serves entries up to what it claims.
        let size = faults
            .claimed_size(log_number)
            .map_or(real_size, |claimed| claimed.max(real_size));
        let stats = &self.stats[log_number];
        match route {
            Route::GetSth => {
                let head = self.head(log, real_size, backwards_by, jump_to);
                let body = log.sth_json(&head).map_err(|e| Response::error(500, e))?;
                Ok(Response::new(200, JSON, body))
            }
            Route::Checkpoint => {
                let head = self.head(log, real_size, backwards_by, jump_to);
                let origin = origin(&self.host_port, &log.name);
                let body = log
                    .checkpoint(&origin, &head)
                    .map_err(|e| Response::error(500, e))?;
                let mut response = Response::new(200, "text/plain; charset=utf-8", body);
                response.headers.push(("Cache-Control", "no-store".into()));
                Ok(response)
            }
            Route::GetEntries => {
                let (start, last) = self.page(request, size)?;
                let count = last - start + 1;
                stats.entries(count);
                let build = || {
                    self.entries_json(faults, log_number, start, last)
                        .into_bytes()
                };
                let body = if count == self.page_cap && start.is_multiple_of(self.page_cap) {
                    Body::Shared(
                        self.cache
                            .get_or_build((faults.generation, log_number, start), build),
                    )
                } else {
                    Body::Owned(build())
                };
                Ok(Response {
                    status: 200,
                    content_type: JSON,
                    headers: Vec::new(),
                    body,
                })
            }
            Route::FullTile(tile) => {
                if tile >= size / TILE_WIDTH {
                    return Err(Response::error(404, "tile does not exist yet"));
                }
                stats.entries(TILE_WIDTH);
                let first = tile * TILE_WIDTH;
                let build = || self.tile(faults, log_number, first, TILE_WIDTH);
                let body = self
                    .cache
                    .get_or_build((faults.generation, log_number, first), build);
                Ok(immutable("application/octet-stream", Body::Shared(body)))
            }
            Route::PartialTile(tile, width) => {
                if tile != size / TILE_WIDTH || width == 0 || width > size % TILE_WIDTH {
                    return Err(Response::error(404, "no such partial tile"));
                }
                stats.entries(width);
                let body = self.tile(faults, log_number, tile * TILE_WIDTH, width);
                Ok(immutable("application/octet-stream", Body::Owned(body)))
            }
            Route::Issuer(hex) => {
                let fingerprint =
                    parse_lower_hex(hex).ok_or_else(|| Response::error(404, "bad issuer"))?;
                let cert = self
                    .issuer(&fingerprint)
                    .ok_or_else(|| Response::error(404, "unknown issuer"))?;
                Ok(immutable("application/pkix-cert", Body::Owned(cert)))
            }
            Route::Other => Err(Response::error(404, "not found")),
        }
    }

    /// The current head, or an older one for a `backwards` fault, or a huge one for a `jump` fault.
    fn head(
        &self,
        log: &MockLog,
        size: u64,
        backwards_by: Option<u64>,
        jump_to: Option<u64>,
    ) -> TreeHead {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let (tree_size, timestamp) = match (jump_to, backwards_by) {
            (Some(to), _) => (to, now_ms),
            (None, Some(by)) => (size.saturating_sub(by), now_ms.saturating_sub(1000)),
            (None, None) => (size, now_ms),
        };
        TreeHead {
            tree_size,
            timestamp,
            root_hash: log.root_hash(self.seed, tree_size),
        }
    }

    /// The range a get-entries request gets, Trillian style: 400 when `start ≥ size` or `end < start`; a request
    /// of at least the cap is cut back to the next multiple of the cap; the end is clipped to the tree.
    fn page(&self, request: &Request, size: u64) -> Result<(u64, u64), Response> {
        let (start, end) = range_params(request)?;
        if start >= size {
            return Err(Response::error(
                400,
                format!("need tree size > {start}, have {size}"),
            ));
        }
        let cap = self.page_cap;
        let mut last = end;
        if end - start >= cap - 1 {
            last = (start / cap).saturating_add(1).saturating_mul(cap) - 1;
        }
        Ok((start, last.min(size - 1)))
    }

    fn entries_json(&self, faults: &FaultSet, log: usize, start: u64, last: u64) -> String {
        let count = (last - start + 1) as usize;
        let mut out = String::with_capacity(32 + count * 6000);
        let mut scratch = Vec::with_capacity(8192);
        out.push_str("{\"entries\":[");
        for index in start..=last {
            if index != start {
                out.push(',');
            }
            self.entry(faults, log, index)
                .put_json_item(&mut out, &mut scratch);
        }
        out.push_str("]}");
        out
    }

    fn tile(&self, faults: &FaultSet, log: usize, first: u64, width: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(width as usize * 3000);
        for index in first..first + width {
            let entry = self.entry(faults, log, index);
            if let (Some(extra), Some(fingerprint)) =
                (&entry.extra_chain, entry.chain_fingerprints().last())
            {
                let mut issuers = self.extra_issuers.lock().unwrap_or_else(|p| p.into_inner());
                issuers.insert(*fingerprint, (log, index, extra.len()));
            }
            entry.put_tile_leaf(&mut out);
        }
        out
    }

    /// An issuer: a corpus chain certificate, or a `huge_chain` fault's garbage one.
    fn issuer(&self, fingerprint: &[u8; 32]) -> Option<Vec<u8>> {
        if let Some(cert) = self.corpus.issuers.get(fingerprint) {
            return Some(cert.clone());
        }
        let issuers = self.extra_issuers.lock().unwrap_or_else(|p| p.into_inner());
        let &(log, index, len) = issuers.get(fingerprint)?;
        let tag = ((log as u64) << 48 | (index & 0xFFFF_FFFF_FFFF)).to_be_bytes();
        Some(der_garbage(len, &tag))
    }

    /// 200 with random bytes that are neither JSON nor UTF-8 nor a tile.
    fn garbage(&self, log: usize) -> Response {
        let n = self.garbage_count.fetch_add(1, Ordering::Relaxed);
        let len = 64 + mix(&[self.seed, log as u64, n]) % 448;
        let mut body = vec![0xFF];
        body.extend((0..len).map(|i| mix(&[self.seed, log as u64, n, i]) as u8));
        Response::new(200, JSON, body)
    }
}

impl Handler for App {
    fn handle(&self, request: &Request) -> Reply {
        let path = request.path.as_str();
        if let Some(rest) = path.strip_prefix(RFC6962_PREFIX) {
            let (name, rest) = rest.split_once('/').unwrap_or((rest, ""));
            if let Some(log) = self.log_number(name, Protocol::Rfc6962) {
                let route = match rest {
                    "ct/v1/get-sth" => Route::GetSth,
                    "ct/v1/get-entries" => Route::GetEntries,
                    _ => Route::Other,
                };
                return self.log_request(log, request, route);
            }
        } else if let Some(rest) = path.strip_prefix(MONITORING_PREFIX) {
            let (name, rest) = rest.split_once('/').unwrap_or((rest, ""));
            if let Some(log) = self.log_number(name, Protocol::Tiled) {
                return self.log_request(log, request, Route::tiled(rest));
            }
        } else {
            return Reply::Full(self.control(request));
        }
        Reply::Full(Response::error(404, "no such log"))
    }

    fn verbose(&self) -> bool {
        self.verbose
    }
}

/// What a request under a log's prefix asks for.
#[derive(Clone, Copy)]
enum Route<'a> {
    GetSth,
    GetEntries,
    Checkpoint,
    FullTile(u64),
    PartialTile(u64, u64),
    Issuer(&'a str),
    Other,
}

impl<'a> Route<'a> {
    /// Parses the part of a tiled log's path after its monitoring prefix.
    fn tiled(rest: &'a str) -> Self {
        if rest == "checkpoint" {
            return Route::Checkpoint;
        }
        if let Some(hex) = rest.strip_prefix("issuer/") {
            return Route::Issuer(hex);
        }
        let Some(tile) = rest.strip_prefix("tile/data/") else {
            return Route::Other;
        };
        match tile.split_once(".p/") {
            None => parse_tile_index(tile).map_or(Route::Other, Route::FullTile),
            Some((index, width)) => match (parse_tile_index(index), parse_canonical(width)) {
                (Some(index), Some(width)) => Route::PartialTile(index, width),
                _ => Route::Other,
            },
        }
    }

    fn endpoint(self) -> Endpoint {
        match self {
            Route::GetSth => Endpoint::GetSth,
            Route::GetEntries => Endpoint::GetEntries,
            Route::Checkpoint => Endpoint::Checkpoint,
            Route::FullTile(_) => Endpoint::DataTile,
            Route::PartialTile(..) => Endpoint::PartialDataTile,
            Route::Issuer(_) => Endpoint::Issuer,
            Route::Other => Endpoint::Other,
        }
    }
}

/// The tile index of a path like `x001/x234/067` (the inverse of `ct::tile::tile_path`, canonical form only).
fn parse_tile_index(path: &str) -> Option<u64> {
    let mut segments = path.split('/').peekable();
    let mut index: u64 = 0;
    while let Some(segment) = segments.next() {
        let digits = if segments.peek().is_some() {
            segment.strip_prefix('x')?
        } else {
            segment
        };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        index = index.checked_mul(1000)?.checked_add(digits.parse().ok()?)?;
    }
    Some(index)
}

/// A decimal without sign or leading zeros.
fn parse_canonical(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical { s.parse().ok() } else { None }
}

fn parse_lower_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// A get-entries body with `count` tiny entries (`{"leaf_input":"AA==","extra_data":""}`) after its own.
fn with_tiny_entries(body: &[u8], count: u64) -> Vec<u8> {
    const TINY: &[u8] = br#",{"leaf_input":"AA==","extra_data":""}"#;
    let open = body.strip_suffix(b"]}").unwrap_or(body);
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    let mut out =
        Vec::with_capacity(open.len().saturating_add(TINY.len().saturating_mul(count)) + 2);
    out.extend_from_slice(open);
    for i in 0..count {
        let first = i == 0 && open.ends_with(b"[");
        out.extend_from_slice(if first { &TINY[1..] } else { TINY });
    }
    out.extend_from_slice(b"]}");
    out
}

/// `start` and `end` query parameters, `end ≥ start`.
fn range_params(request: &Request) -> Result<(u64, u64), Response> {
    let number = |name| {
        request
            .param(name)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| Response::error(400, format!("missing or bad {name}")))
    };
    let (start, end) = (number("start")?, number("end")?);
    if end < start {
        return Err(Response::error(400, "end < start"));
    }
    Ok((start, end))
}

/// A response for content that never changes (tiles, issuers).
fn immutable(content_type: &'static str, body: Body) -> Response {
    Response {
        status: 200,
        content_type,
        headers: vec![("Cache-Control", "public, max-age=604800, immutable".into())],
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certstream_ct::tile::tile_path;

    #[test]
    fn tile_paths_parse_back_to_their_index() {
        for index in [0, 5, 999, 1000, 1_234_067, 7_000_000_001] {
            assert!(
                matches!(Route::tiled(&format!("tile/data/{}", tile_path(index, None))), Route::FullTile(i) if i == index)
            );
            let partial = format!("tile/data/{}", tile_path(index, Some(17)));
            assert!(matches!(Route::tiled(&partial), Route::PartialTile(i, 17) if i == index));
        }
        for bad in [
            "tile/data/5",
            "tile/data/x1/000",
            "tile/data/001/000",
            "tile/data/000.p/017",
            "tile/data/000.p/",
            "tile/0/000",
        ] {
            assert!(matches!(Route::tiled(bad), Route::Other), "{bad}");
        }
    }

    #[test]
    fn issuer_names_are_lowercase_hex_sha256() {
        let hex = "00ff".repeat(16);
        let parsed = parse_lower_hex(&hex).expect("valid");
        assert_eq!(parsed[..2], [0x00, 0xff]);
        assert!(parse_lower_hex(&hex.to_uppercase()).is_none());
        assert!(parse_lower_hex(&hex[2..]).is_none());
    }

    #[test]
    fn tiny_entries_extend_the_entries_array() {
        let padded =
            with_tiny_entries(br#"{"entries":[{"leaf_input":"AQ==","extra_data":""}]}"#, 3);
        let parsed: Value = serde_json::from_slice(&padded).expect("JSON");
        assert_eq!(parsed["entries"].as_array().map(Vec::len), Some(4));
        let empty: Value =
            serde_json::from_slice(&with_tiny_entries(br#"{"entries":[]}"#, 2)).expect("JSON");
        assert_eq!(empty["entries"].as_array().map(Vec::len), Some(2));
    }
}
