//! The static-ct-api poller (docs/ct-protocols.md §2, §4): one task per tiled log, on the runtime thread.
//!
//! It polls the signed `checkpoint`, fetches each full data tile as soon as a verified checkpoint covers it, and
//! reads the partial tip tile only when new entries have waited in it for `partial_tile_min_age`, never twice at
//! the same width (certstream-server-go's refetch storm, docs/ct-protocols.md §4). Each entry's issuer fingerprints
//! are resolved through the shared [`IssuerCache`] before the entry goes to the sink, in index order, exactly once.
//!
//! Policies where the spec is silent:
//! - A record whose boundaries are known but whose content is bad (an empty certificate, a wrong `leaf_index`, …)
//!   is skipped alone, logged and counted in `skipped`, like an undecodable RFC 6962 entry: it costs neither its
//!   neighbours nor a retry.
//! - A response whose framing is broken (records cannot be located) or that holds the wrong number of records is
//!   an error, counted in `broken_tiles`: retried with backoff. After [`TILE_ATTEMPTS`] bad answers in a row, a
//!   *full* tile's records up to the break are delivered and the rest of the tile is counted in `skipped` and
//!   logged; a *partial* tile is simply not asked again at that width (a wider one or the full tile will carry
//!   its entries).
//! - An issuer that fails [`ISSUER_ATTEMPTS`] times (429s excepted), or once when it is over the chain
//!   certificate byte budget, is given up on for this log for
//!   [`UNAVAILABLE_ISSUER_TTL`]: entries are then delivered with the chain up to that issuer and counted in
//!   `incomplete_chains`, so one missing issuer cannot stall a log.
//! - A tile is delivered in turns ([`super::pacing`]): only while the hub admits messages, a few milliseconds at a
//!   time, so the next tile is not fetched before this one reached the clients that keep up.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::growth::{self, FollowedSize};
use super::issuers::{Fingerprint, IssuerCache, IssuerError, hex};
use super::pacing::Turn;
use super::politeness::{Politeness, parse_retry_after};
use super::{
    LogTarget, MAX_TREE_HEAD_BYTES, PollerContext, SharedStatus, StopToken, deliver_entry,
};
use crate::log_throttle::LogThrottle;
use certstream_ct::checkpoint::Checkpoint;
use certstream_ct::entry::{Chain, DecodeError, LogEntry};
use certstream_ct::get_entries::body_limit;
use certstream_ct::tile::{TILE_WIDTH, TileEntry, TileError, data_tile_entries, tile_path};
/// Bad answers in a row for one tile before its undecodable part is given up on.
pub(crate) const TILE_ATTEMPTS: u32 = 5;
/// Failed fetches of one issuer before entries are delivered without it.
pub(crate) const ISSUER_ATTEMPTS: u32 = 4;
/// How long a given-up issuer is not asked for again.
pub(crate) const UNAVAILABLE_ISSUER_TTL: Duration = Duration::from_secs(600);

/// A located record of a data tile: its entry, or why it is skipped.
type Record<'a> = Result<TileEntry<'a>, (u64, DecodeError)>;

/// Follows one tiled log until `stop` (or, for a read-only log, until its final size is delivered), from `resume`
/// (a restarted poller's next index) or else from the first checkpoint's size minus `options.start_back`.
pub async fn run(
    ctx: PollerContext,
    issuers: Rc<IssuerCache>,
    target: Rc<LogTarget>,
    status: SharedStatus,
    stop: StopToken,
    resume: Option<u64>,
) {
    // Spread the first checkpoint requests of all logs over one poll interval.
    let start = ctx.options.poll_interval.mul_f64(rand::random::<f64>());
    if !stop.sleep(start).await {
        return;
    }
    let mut poller = TiledPoller {
        growth: FollowedSize::new(ctx.options.max_growth_per_second),
        following: false,
        resume,
        record_warnings: LogThrottle::new(Duration::from_secs(1)),
        ctx,
        issuers,
        target,
        status,
        stop,
        politeness: Politeness::default(),
        size: 0,
        next: 0,
        last_checkpoint: None,
        last_partial: None,
        partial_waiting_since: None,
        bad_tile: None,
        unavailable: HashMap::new(),
    };
    poller.follow().await;
}

struct TiledPoller {
    ctx: PollerContext,
    issuers: Rc<IssuerCache>,
    target: Rc<LogTarget>,
    status: SharedStatus,
    stop: StopToken,
    politeness: Politeness,
    /// The largest verified checkpoint size.
    size: u64,
    /// How much of `size` may be read yet.
    growth: FollowedSize,
    /// A checkpoint has verified (`growth` is started).
    following: bool,
    /// Where a restarted poller resumes.
    resume: Option<u64>,
    /// Skipped records are logged at most once a second.
    record_warnings: LogThrottle,
    /// The next index to deliver.
    next: u64,
    /// When the checkpoint was last requested.
    last_checkpoint: Option<Instant>,
    /// The (tile, width) of the last partial tile fetched or found missing: never requested again.
    last_partial: Option<(u64, u8)>,
    /// Since when undelivered entries have been waiting in the partial tip tile.
    partial_waiting_since: Option<Instant>,
    /// The tile (and partial width) that answered badly, and how many times in a row.
    bad_tile: Option<((u64, Option<u8>), u32)>,
    /// Issuers this log failed to serve, and until when they are not asked for.
    unavailable: HashMap<Fingerprint, Instant>,
}

/// What the poller does next.
enum Step {
    Tile(u64, Option<u8>),
    Checkpoint,
    Sleep(Duration),
}

/// How a request ended; failures are already counted, logged and fed to the politeness state.
enum Reply {
    Body(Bytes),
    NotFound,
    Failed,
    Stopped,
}

impl TiledPoller {
    async fn follow(&mut self) {
        let first = loop {
            if self.stop.is_stopped() {
                return;
            }
            if let Some(size) = self.poll_checkpoint().await {
                break size;
            }
            if !self.stop.sleep(self.ctx.options.poll_interval).await {
                return;
            }
        };
        self.next = self
            .resume
            .unwrap_or_else(|| first.saturating_sub(self.ctx.options.start_back));
        self.status.borrow_mut().next_index = self.next;
        tracing::info!(log = %self.target.read_url, size = first, start = self.next, "following tiled log");
        while !self.stop.is_stopped() {
            if self.target.final_tree_size.is_some_and(|f| self.next >= f) {
                tracing::info!(log = %self.target.read_url, size = self.next, "read-only log fully delivered");
                return;
            }
            match self.next_step(Instant::now()) {
                Step::Tile(tile, width) => self.fetch_tile(tile, width).await,
                Step::Checkpoint => {
                    self.poll_checkpoint().await;
                }
                Step::Sleep(duration) => {
                    self.stop.sleep(duration).await;
                }
            }
        }
    }

    fn next_step(&mut self, now: Instant) -> Step {
        let followed = self.growth.followed(now);
        self.status.borrow_mut().tree_size = followed;
        let tile = self.next / TILE_WIDTH;
        let tile_end = tile.saturating_add(1).saturating_mul(TILE_WIDTH);
        if followed >= tile_end {
            return Step::Tile(tile, None);
        }
        let checkpoint_due = self
            .last_checkpoint
            .map_or(now, |at| at + self.ctx.options.poll_interval);
        let mut wake = checkpoint_due;
        if followed < self.size.min(tile_end) {
            // The growth cap holds back entries the log claims.
            wake = wake.min(now + self.growth.time_until(tile_end, now));
        } else if self.size > self.next {
            // tile·256 ≤ next < size < tile_end, so the width is 1..=255.
            let width = u8::try_from(self.size % TILE_WIDTH).unwrap_or(u8::MAX);
            if self.last_partial != Some((tile, width)) {
                let since = *self.partial_waiting_since.get_or_insert(now);
                let due = since + self.ctx.options.partial_tile_min_age;
                if now >= due {
                    return Step::Tile(tile, Some(width));
                }
                wake = wake.min(due);
            }
        } else {
            self.partial_waiting_since = None;
        }
        if now >= checkpoint_due {
            Step::Checkpoint
        } else {
            Step::Sleep(wake - now)
        }
    }

    /// Requests and verifies the checkpoint; returns its size when it verified. Only a larger size is adopted.
    async fn poll_checkpoint(&mut self) -> Option<u64> {
        self.last_checkpoint = Some(Instant::now());
        let url = format!("{}checkpoint", self.target.read_url);
        let body = match self.get(&url, MAX_TREE_HEAD_BYTES).await {
            Reply::Body(body) => body,
            Reply::NotFound => {
                self.failed(format!("{url}: HTTP 404"));
                return None;
            }
            Reply::Failed | Reply::Stopped => return None,
        };
        let verified = Checkpoint::parse(&body)
            .and_then(|checkpoint| checkpoint.verify(&self.target.origin, &self.target.key));
        let head = match verified {
            Ok(head) => head,
            Err(e) => {
                self.failed(format!("{url}: checkpoint rejected: {e}"));
                return None;
            }
        };
        self.succeeded();
        let size = match self.target.final_tree_size {
            Some(last) => head.tree_size.min(last),
            None => head.tree_size,
        };
        let observed = if self.following {
            self.growth.observe(size, Instant::now())
        } else {
            self.following = true;
            self.growth.start(size, self.resume, Instant::now())
        };
        growth::report(
            observed,
            &self.status,
            &self.target.read_url,
            self.size,
            size,
        );
        if size > self.size {
            self.size = size;
            self.status.borrow_mut().claimed_tree_size = size;
        } else if size < self.size {
            tracing::debug!(log = %self.target.read_url, size, known = self.size, "checkpoint went backwards: ignored");
        }
        Some(size)
    }

    /// Fetches data tile `tile` (full, or partial of `width`) and delivers its entries from `next` on.
    async fn fetch_tile(&mut self, tile: u64, width: Option<u8>) {
        let url = format!(
            "{}tile/data/{}",
            self.target.read_url,
            tile_path(tile, width)
        );
        let records = width.map_or(TILE_WIDTH, u64::from);
        let max_body = body_limit(records, self.ctx.options.get_entries_bytes_per_entry);
        let body = match self.get(&url, max_body).await {
            Reply::Body(body) => body,
            Reply::NotFound => {
                match width {
                    // A log may delete a partial tile once the tile is full: look at the checkpoint now, and
                    // fetch the full tile if it says so (or wait for growth: this width is not asked again).
                    Some(w) => {
                        tracing::debug!(%url, "partial tile not found; refreshing the checkpoint");
                        self.last_partial = Some((tile, w));
                        self.last_checkpoint = None;
                    }
                    None => self.failed(format!("{url}: HTTP 404")),
                }
                return;
            }
            Reply::Failed | Reply::Stopped => return,
        };
        let expected = width.map_or(TILE_WIDTH, u64::from);
        let mut records: Vec<Record<'_>> =
            Vec::with_capacity(usize::from(width.unwrap_or(u8::MAX)) + 1);
        let mut problem = None;
        for item in data_tile_entries(&body, tile) {
            match item {
                Ok(entry) => records.push(Ok(entry)),
                Err(TileError::Record { index, error }) => records.push(Err((index, error))),
                Err(error @ TileError::Framing(_)) => {
                    problem = Some(error.to_string());
                    break;
                }
            }
        }
        let count = records.len() as u64;
        if problem.is_none() && count != expected {
            problem = Some(format!("{count} records, expected {expected}"));
        }
        let give_up = match problem {
            None => {
                self.bad_tile = None;
                self.succeeded();
                false
            }
            Some(problem) => {
                let attempts = match self.bad_tile {
                    Some((key, n)) if key == (tile, width) => n + 1,
                    _ => 1,
                };
                self.bad_tile = Some(((tile, width), attempts));
                self.status.borrow_mut().broken_tiles += 1;
                self.failed(format!("{url}: bad tile (attempt {attempts}): {problem}"));
                if attempts < TILE_ATTEMPTS {
                    return;
                }
                self.bad_tile = None;
                if let Some(w) = width {
                    tracing::warn!(%url, "partial tile stays bad; waiting for a wider or the full tile");
                    self.last_partial = Some((tile, w));
                    return;
                }
                true
            }
        };
        if !self.deliver(&records).await {
            return;
        }
        if let Some(w) = width {
            self.last_partial = Some((tile, w));
        }
        self.partial_waiting_since = None;
        if give_up {
            let tile_end = tile.saturating_add(1).saturating_mul(TILE_WIDTH);
            let skipped = tile_end.saturating_sub(self.next);
            tracing::error!(%url, from = self.next, skipped, "full tile stays undecodable: skipping the rest of it");
            self.next = tile_end;
            let mut status = self.status.borrow_mut();
            status.skipped += skipped;
            status.next_index = self.next;
        }
    }

    /// Delivers the records at and after `next`, in order and in turns (skipping the bad ones, counted and
    /// logged); false if stopped on the way.
    async fn deliver(&mut self, records: &[Record<'_>]) -> bool {
        let mut processed = 0;
        // Records are contiguous from the tile's first index, so the first one at `next` starts the run.
        let from = self.next;
        let index_of = |record: &Record<'_>| match record {
            Ok(tile_entry) => tile_entry.index,
            Err((index, _)) => *index,
        };
        let mut pending = records.iter().skip_while(|r| index_of(r) < from).peekable();
        while pending.peek().is_some() {
            let Some(mut turn) = self.turn().await else {
                return false;
            };
            while turn.may_continue(Instant::now()) {
                let Some(record) = pending.next() else {
                    break;
                };
                let index = index_of(record);
                match record {
                    Ok(tile_entry) => {
                        let Some(chain) = self.chain_of(&tile_entry.entry).await else {
                            return false;
                        };
                        if !turn.may_continue(Instant::now()) {
                            // Fetching an issuer let others publish meanwhile: admission is asked again.
                            match self.turn().await {
                                Some(next) => turn = next,
                                None => return false,
                            }
                        }
                        let ders: Vec<&[u8]> = chain.iter().map(|der| der.as_ref()).collect();
                        let ok = deliver_entry(
                            &self.ctx,
                            &self.target,
                            &self.status,
                            index,
                            &tile_entry.entry,
                            &ders,
                        );
                        self.status.borrow_mut().delivered += u64::from(ok);
                    }
                    Err((_, error)) => {
                        self.status.borrow_mut().skipped += 1;
                        if let Some(held_back) = self.record_warnings.allow(Instant::now()) {
                            tracing::warn!(log = %self.target.read_url, index, %error, held_back, "skipping undecodable tile record");
                        }
                    }
                }
                self.next = index + 1;
                processed += 1;
                self.status.borrow_mut().next_index = self.next;
            }
            turn.end().await;
        }
        self.politeness.on_processed(processed);
        self.sync_politeness();
        true
    }

    /// A turn of delivery, once the hub admits messages; None if stopped while waiting.
    async fn turn(&self) -> Option<Turn> {
        monoio::select! {
            turn = Turn::begin(self.ctx.sink.gate()) => Some(turn),
            _ = self.stop.stopped() => None,
        }
    }

    /// The entry's issuer chain as DER, issuer first; None if stopped while fetching it.
    async fn chain_of(&mut self, entry: &LogEntry<'_>) -> Option<Vec<Bytes>> {
        let fingerprints: &[Fingerprint] = match &entry.chain {
            Chain::Fingerprints(fingerprints) => fingerprints,
            Chain::Certificates(_) => &[],
        };
        let mut failures = 0;
        loop {
            // The chain up to the first issuer this log could not serve.
            let now = Instant::now();
            let usable = fingerprints
                .iter()
                .position(|fp| self.unavailable.get(fp).is_some_and(|until| *until > now))
                .unwrap_or(fingerprints.len());
            let wanted = fingerprints.get(..usable).unwrap_or(fingerprints);
            let shortened = usable < fingerprints.len();
            if let Some(chain) = self.issuers.cached(wanted) {
                if shortened {
                    self.status.borrow_mut().incomplete_chains += 1;
                }
                return Some(chain);
            }
            let wait = self.politeness.next_wait(rand::random::<f64>());
            if !self.stop.sleep(wait).await {
                return None;
            }
            let resolve = self.issuers.resolve(
                &self.ctx.http,
                &self.target.read_url,
                wanted,
                self.ctx.options.request_timeout,
            );
            let result = monoio::select! {
                result = resolve => result,
                _ = self.stop.stopped() => return None,
            };
            match result {
                // Cached now: the next turn returns it.
                Ok(_) => self.succeeded(),
                Err(IssuerError::Status {
                    status: 429,
                    retry_after,
                    ..
                }) => self.rate_limited(retry_after.as_deref()),
                Err(e) => {
                    failures += 1;
                    // An issuer over the byte budget will not shrink: no point asking again, nor backing off.
                    let hopeless = matches!(e, IssuerError::TooLarge { .. });
                    let error = format!("{}: {e}", self.target.read_url);
                    if hopeless {
                        tracing::warn!(log = %self.target.read_url, %error, "issuer refused");
                        let mut status = self.status.borrow_mut();
                        status.errors += 1;
                        status.last_error = Some(error);
                    } else {
                        self.failed(error);
                    }
                    if hopeless || failures >= ISSUER_ATTEMPTS {
                        self.give_up_issuer(*e.fingerprint(), now);
                        failures = 0;
                    }
                }
            }
        }
    }

    fn give_up_issuer(&mut self, fingerprint: Fingerprint, now: Instant) {
        tracing::warn!(
            log = %self.target.read_url,
            issuer = %hex(&fingerprint),
            "issuer unavailable: delivering entries with the chain up to it for a while"
        );
        self.unavailable.retain(|_, until| *until > now);
        self.unavailable
            .insert(fingerprint, now + UNAVAILABLE_ISSUER_TTL);
    }

    /// One GET to the log after the politeness wait, its body capped at `max_body`; 429s and failures are accounted
    /// for here.
    async fn get(&mut self, url: &str, max_body: usize) -> Reply {
        let wait = self.politeness.next_wait(rand::random::<f64>());
        if !self.stop.sleep(wait).await {
            return Reply::Stopped;
        }
        let request =
            self.ctx
                .http
                .get_limited(url, &[], self.ctx.options.request_timeout, max_body);
        let result = monoio::select! {
            result = request => result,
            _ = self.stop.stopped() => return Reply::Stopped,
        };
        match result {
            Err(e) => {
                self.failed(format!("{url}: {e}"));
                Reply::Failed
            }
            Ok(response) => match response.status {
                200 => Reply::Body(response.body),
                404 => Reply::NotFound,
                429 => {
                    self.rate_limited(response.retry_after());
                    Reply::Failed
                }
                other => {
                    self.failed(format!("{url}: HTTP {other}"));
                    Reply::Failed
                }
            },
        }
    }

    fn failed(&mut self, error: String) {
        tracing::warn!(log = %self.target.read_url, %error, "tiled log request failed");
        self.politeness.on_error();
        {
            let mut status = self.status.borrow_mut();
            status.errors += 1;
            status.last_error = Some(error);
        }
        self.sync_politeness();
    }

    fn rate_limited(&mut self, retry_after: Option<&str>) {
        let pause = retry_after.and_then(|value| parse_retry_after(value, SystemTime::now()));
        tracing::debug!(log = %self.target.read_url, ?pause, "rate limited");
        self.politeness.on_rate_limited(pause);
        self.status.borrow_mut().rate_limited += 1;
        self.sync_politeness();
    }

    fn succeeded(&mut self) {
        self.politeness.on_success();
        self.sync_politeness();
    }

    fn sync_politeness(&self) {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let mut status = self.status.borrow_mut();
        status.delay_ms = millis(self.politeness.delay());
        status.backoff_ms = millis(self.politeness.backoff());
    }
}
