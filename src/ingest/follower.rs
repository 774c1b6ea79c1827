//! The follower: one log's position and fetch plan, with no sockets and no clocks (in the style of quinn-proto's
//! `Connection`): the I/O shell ([`super::shell`]) asks it what to do next ([`Follower::poll`]), runs the request,
//! hands the answer back ([`Follower::handle`]) and delivers the entries it returns. Time is passed in, and so is
//! the seed of its jitter, so its tests run in virtual time.
//!
//! It owns what both log kinds share:
//! - the start ([`Start`]): after a random delay of up to one poll interval (so many logs do not poll in step), at
//!   the first verified tree size minus `start_back`, a restarted poller's next index, or an index the state file
//!   saved (unless more than `--max-resume-backlog` behind);
//! - the verified tree size as a high-water mark (a head that goes backwards or stays equal changes nothing), read
//!   through the growth cap ([`super::growth`]) and a read-only log's final size, where it is done;
//! - politeness and backoff (429s, Retry-After, errors: [`super::politeness`]);
//! - windows of entries fetched several at a time and delivered strictly in index order, whatever order their
//!   answers come in; a short or failed window is asked again before any later one is used.
//!
//! The kinds differ only in their plan ([`PlanKind`]): RFC 6962 pages (the page size learned from the log's
//! first short answers, then every window ends on a page boundary, so a request hits operators' caches), or
//! static-ct-api data tiles (full tiles as soon as a checkpoint covers them; the partial tip tile only once new
//! entries waited `partial_tile_min_age` in it, never twice at one width; a tile that stays broken given up
//! after [`TILE_ATTEMPTS`]; issuers that stay unavailable given up for [`UNAVAILABLE_ISSUER_TTL`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use certstream_ct::get_entries::GetEntriesError;
use certstream_ct::tile::{TILE_WIDTH, TileError};
use certstream_ct::tree_head::TreeHeadError;

use super::growth::{FollowedSize, Observed};
use super::issuers::{Fingerprint, IssuerError, hex};
use super::politeness::Politeness;
use super::{LogStatus, PollOptions, Start};
use crate::http::HttpError;

/// Entries asked for while an RFC 6962 log's page size is unknown. Logs answer with at most their cap (Google 32,
/// most others 256, ct-go's default 1000), which is how the cap is learned.
const FIRST_PAGE: u64 = 1024;
/// A short answer smaller than this is taken as a plain short read, never as the log's page size: a replica
/// lagging at the tip can return a handful of entries, and learning a tiny page would cripple the log for good.
/// No known log serves pages smaller than 32.
const MIN_LEARNED_PAGE: u64 = 16;
/// Bad answers for one tile (with no good one between; other tiles' answers do not count) before its undecodable
/// part is given up on.
pub(crate) const TILE_ATTEMPTS: u32 = 5;
/// Failed fetches of one issuer before entries are delivered without it.
pub(crate) const ISSUER_ATTEMPTS: u32 = 4;
/// How long a given-up issuer is not asked for again.
pub(crate) const UNAVAILABLE_ISSUER_TTL: Duration = Duration::from_secs(600);

/// Which plan a follower fetches by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlanKind {
    /// RFC 6962 `get-entries` pages.
    Pages,
    /// static-ct-api data tiles.
    Tiles,
}

/// What one request asks the log for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    /// The signed tree head (`get-sth`) or checkpoint.
    TreeHead,
    /// `get-entries` for the inclusive range `start..=end`.
    Entries { start: u64, end: u64 },
    /// Data tile `tile`, full or partial of `width`.
    Tile { tile: u64, width: Option<u8> },
}

impl Request {
    /// The most entries an answer may hold (bounds the body's bytes); none for a tree head.
    pub(crate) fn entries(self) -> u64 {
        match self {
            Self::TreeHead => 0,
            Self::Entries { start, end } => end - start + 1,
            Self::Tile { width, .. } => width.map_or(TILE_WIDTH, u64::from),
        }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TreeHead => f.write_str("tree head"),
            Self::Entries { start, end } => write!(f, "get-entries {start}..={end}"),
            Self::Tile { tile, width: None } => write!(f, "data tile {tile}"),
            Self::Tile {
                tile,
                width: Some(width),
            } => write!(f, "data tile {tile} (partial, {width})"),
        }
    }
}

/// Names one request of one follower, to match its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestId(u64);

/// What the shell does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Send this request (at once: the politeness wait is already over).
    Fetch(RequestId, Request),
    /// Nothing to send before this instant (or an answer, whichever comes first).
    Sleep(Instant),
    /// Nothing to send until an answer comes.
    Wait,
    /// A read-only log whose every entry has been handed out: the follower is finished.
    Done,
}

/// The entries an answer holds, decoded by the shell (a page of `get-entries` items, a data tile).
pub(crate) trait Page {
    /// How many entries it holds, from the request's first index.
    fn len(&self) -> u64;
    /// Keeps only the first `len` entries (more than asked for is not what was asked for).
    fn truncate(&mut self, len: u64);
}

/// A request's decoded answer.
#[derive(Debug)]
pub(crate) enum Answer<P> {
    /// A verified tree head of this size.
    TreeHead(u64),
    /// Entries from the request's first index on.
    Entries(P),
    /// A tile whose framing broke (or that holds the wrong number of records) after the records of `P`.
    Broken(P, FetchError),
}

/// Why a request did not yield usable data. Every one only delays the log.
#[derive(Debug)]
pub(crate) enum FetchError {
    Http(HttpError),
    /// A 429, with the pause the server asked for.
    RateLimited(Option<Duration>),
    Status(u16),
    Body(GetEntriesError),
    /// No entries for a range the verified tree head says exists.
    NoEntries {
        start: u64,
        end: u64,
    },
    TreeHead(TreeHeadError),
    /// A tile's framing is broken.
    Framing(TileError),
    /// A tile holds `found` records where `expected` were asked for.
    Records {
        found: u64,
        expected: u64,
    },
    Issuer(IssuerError),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Http(e) => e.fmt(f),
            Self::RateLimited(Some(pause)) => {
                write!(
                    f,
                    "rate limited (429), retry after {} ms",
                    pause.as_millis()
                )
            }
            Self::RateLimited(None) => f.write_str("rate limited (429)"),
            Self::Status(status) => write!(f, "HTTP status {status}"),
            Self::Body(e) => e.fmt(f),
            Self::NoEntries { start, end } => {
                write!(f, "no entries returned for the range {start}..={end}")
            }
            Self::TreeHead(e) => e.fmt(f),
            Self::Framing(e) => write!(f, "bad tile: {e}"),
            Self::Records { found, expected } => {
                write!(f, "bad tile: {found} records, expected {expected}")
            }
            Self::Issuer(e) => e.fmt(f),
        }
    }
}

/// Entries ready for delivery, in index order: `page`'s entries from index `first` on, of which those before
/// `from` were delivered already; then `skipped_after` entries given up on (a tile that stayed broken).
#[derive(Debug)]
pub(crate) struct Ready<P> {
    pub(crate) first: u64,
    pub(crate) from: u64,
    pub(crate) page: P,
    pub(crate) skipped_after: u64,
}

/// Counts since the last [`Follower::sync`].
#[derive(Debug, Default)]
struct Tally {
    errors: u64,
    rate_limited: u64,
    broken_tiles: u64,
    implausible_heads: u64,
    last_error: Option<String>,
    resumed_from: Option<u64>,
    resume_skipped: u64,
}

/// A window of entries `from..=end`, fetched by `request`.
#[derive(Debug)]
struct Window<P> {
    from: u64,
    end: u64,
    request: Request,
    state: WindowState<P>,
}

#[derive(Debug)]
enum WindowState<P> {
    /// To be asked (again) before any later window is used.
    Wanted,
    InFlight(RequestId),
    Answered(P),
}

/// The jitter source: xorshift64*, seeded by the shell (deterministic in tests).
#[derive(Debug)]
struct Jitter(u64);

impl Jitter {
    /// A number in [0, 1).
    fn next(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How RFC 6962 windows are cut.
#[derive(Debug)]
struct PagePlan {
    /// Entries per request, and whether that is the log's learned cap or still the first guess.
    page: u64,
    known: bool,
    /// The previous short answer's size while the page is unknown: the same size twice is the cap.
    last_short: Option<u64>,
}

/// What the tile plan remembers.
#[derive(Debug, Default)]
struct TilePlan {
    /// The (tile, width) of the last partial tile fetched, found missing or given up: never requested again.
    last_partial: Option<(u64, u8)>,
    /// Since when undelivered entries have been waiting in the partial tip tile.
    partial_waiting_since: Option<Instant>,
    /// Bad answers so far, by tile index (full or partial, any width), for the tiles in the pipeline: one tile's
    /// count is not reset by another tile's answer, so each broken tile is given up after its own attempts.
    bad_answers: BTreeMap<u64, u32>,
    /// Issuers this log failed to serve, and until when they are not asked for.
    unavailable: HashMap<Fingerprint, Instant>,
    /// Failed fetches in a row of the issuers of the entry being delivered.
    issuer_failures: u32,
}

#[derive(Debug)]
enum Plan {
    Pages(PagePlan),
    Tiles(TilePlan),
}

/// One log's follower (see the module docs).
#[derive(Debug)]
pub(crate) struct Follower<P> {
    /// The log, for what is logged.
    log: String,
    options: PollOptions,
    final_tree_size: Option<u64>,
    start: Start,
    jitter: Jitter,
    politeness: Politeness,
    /// How much of the claimed size may be read yet.
    growth: FollowedSize,
    /// The highest verified tree size (capped at a read-only log's final size); `None` until the first.
    claimed: Option<u64>,
    /// The next index to hand out for delivery.
    next: u64,
    /// No request before this instant: the start delay, then the politeness wait once computed.
    request_at: Option<Instant>,
    started_at: Instant,
    /// When the tree head is due again (once caught up).
    head_due: Instant,
    head_in_flight: Option<RequestId>,
    /// Contiguous windows from `next` on.
    windows: VecDeque<Window<P>>,
    next_id: u64,
    plan: Plan,
    tally: Tally,
}

impl<P: Page> Follower<P> {
    /// A follower of `log` by `plan`, created at `now`; `seed` drives its jitter (start delay, backoff spread).
    pub(crate) fn new(
        log: &str,
        plan: PlanKind,
        options: &PollOptions,
        final_tree_size: Option<u64>,
        start: Start,
        seed: u64,
        now: Instant,
    ) -> Self {
        let mut jitter = Jitter(seed | 1);
        let started_at = now + options.poll_interval.mul_f64(jitter.next());
        Self {
            log: log.to_owned(),
            growth: FollowedSize::new(options.max_growth_per_second),
            options: options.clone(),
            final_tree_size,
            start,
            jitter,
            politeness: Politeness::default(),
            claimed: None,
            next: 0,
            request_at: None,
            started_at,
            head_due: started_at,
            head_in_flight: None,
            windows: VecDeque::new(),
            next_id: 0,
            plan: match plan {
                PlanKind::Pages => Plan::Pages(PagePlan {
                    page: FIRST_PAGE,
                    known: false,
                    last_short: None,
                }),
                PlanKind::Tiles => Plan::Tiles(TilePlan::default()),
            },
            tally: Tally::default(),
        }
    }

    /// The next index to hand out: where a successor resumes. `None` before the first verified tree head (a
    /// successor then starts as a new follower would).
    pub(crate) fn position(&self) -> Option<u64> {
        self.claimed.map(|_| self.next)
    }

    /// Whether requests are in flight (the shell sends no more while clients that keep up are behind).
    pub(crate) fn in_flight(&self) -> bool {
        self.head_in_flight.is_some()
            || self
                .windows
                .iter()
                .any(|w| matches!(w.state, WindowState::InFlight(_)))
    }

    /// What to do next at `now`.
    pub(crate) fn poll(&mut self, now: Instant) -> Action {
        if now < self.started_at {
            return Action::Sleep(self.started_at);
        }
        let Some(claimed) = self.claimed else {
            if self.head_in_flight.is_some() {
                return Action::Wait;
            }
            return self.fetch_head(now);
        };
        if self.windows.is_empty() && self.final_tree_size.is_some_and(|f| self.next >= f) {
            return Action::Done;
        }
        let limit = self.limit(now);
        // A window to ask again comes before any new one.
        if let Some(at) = self
            .windows
            .iter()
            .position(|w| matches!(w.state, WindowState::Wanted))
        {
            return self.send(now, |follower, id| {
                let window = &mut follower.windows[at];
                window.state = WindowState::InFlight(id);
                window.request
            });
        }
        let launch_from = self.windows.back().map_or(self.next, |w| w.end + 1);
        if self.windows.len() < self.depth()
            && let Some((end, request)) = self.next_window(launch_from, limit)
        {
            return self.launch(now, launch_from, end, request);
        }
        if !self.windows.is_empty() || self.head_in_flight.is_some() {
            return Action::Wait;
        }
        // Caught up with what may be read: a partial tile, growth, or the next tree head.
        let mut wake = self.head_due;
        let natural_end = self.window_end(self.next).saturating_add(1).min(claimed);
        if limit < natural_end {
            // The growth cap holds back entries the log claims.
            wake = wake.min(now + self.growth.time_until(natural_end, now));
        } else if let Plan::Tiles(tiles) = &mut self.plan {
            if claimed > self.next {
                // tile·256 ≤ next < claimed < tile_end, so the width is 1..=255.
                let tile = self.next / TILE_WIDTH;
                let width = u8::try_from(claimed % TILE_WIDTH).unwrap_or(u8::MAX);
                if tiles.last_partial != Some((tile, width)) {
                    let due = *tiles.partial_waiting_since.get_or_insert(now)
                        + self.options.partial_tile_min_age;
                    if now >= due {
                        let partial = Request::Tile {
                            tile,
                            width: Some(width),
                        };
                        return self.launch(now, self.next, claimed - 1, partial);
                    }
                    wake = wake.min(due);
                }
            } else {
                tiles.partial_waiting_since = None;
            }
        }
        if now >= self.head_due {
            return self.fetch_head(now);
        }
        Action::Sleep(wake)
    }

    /// Takes the answer to request `id` at `now`; returns the entries now ready, in index order.
    pub(crate) fn handle(
        &mut self,
        id: RequestId,
        answer: Result<Answer<P>, FetchError>,
        now: Instant,
    ) -> Vec<Ready<P>> {
        if self.head_in_flight == Some(id) {
            self.head_in_flight = None;
            match answer {
                Ok(Answer::TreeHead(size)) => {
                    self.politeness.on_success();
                    self.accept_head(size, now);
                }
                Err(error) => self.fail(Request::TreeHead, error),
                Ok(_) => {
                    unreachable!("the shell decodes a tree head request's answer as a tree head")
                }
            }
            return Vec::new();
        }
        let Some(at) = self
            .windows
            .iter()
            .position(|w| matches!(w.state, WindowState::InFlight(of) if of == id))
        else {
            return Vec::new();
        };
        let request = self.windows[at].request;
        match answer {
            Ok(Answer::Entries(page)) => {
                self.politeness.on_success();
                if let (Plan::Tiles(tiles), Request::Tile { tile, .. }) = (&mut self.plan, request)
                {
                    tiles.bad_answers.remove(&tile);
                }
                self.answered(at, page);
            }
            Ok(Answer::Broken(page, problem)) => {
                self.tally.broken_tiles += 1;
                let attempts = self.bad_tile_attempts(request);
                tracing::debug!(log = %self.log, %request, attempts, "bad tile");
                self.fail(request, problem);
                match request {
                    _ if attempts < TILE_ATTEMPTS => self.retry(at),
                    Request::Tile {
                        tile,
                        width: Some(width),
                    } => {
                        tracing::warn!(log = %self.log, tile, width, "partial tile stays bad; waiting for a wider or the full tile");
                        if let Plan::Tiles(tiles) = &mut self.plan {
                            tiles.last_partial = Some((tile, width));
                        }
                        self.windows.remove(at);
                    }
                    _ => {
                        let window = &self.windows[at];
                        let first = window_first(request);
                        let usable_end = first + page.len();
                        let skipped = window.end + 1 - usable_end.max(window.from);
                        tracing::error!(log = %self.log, ?request, from = usable_end.max(window.from), skipped, "full tile stays undecodable: skipping the rest of it");
                        self.answered(at, page);
                    }
                }
            }
            Ok(Answer::TreeHead(_)) => {
                unreachable!("the shell decodes an entries request's answer as entries")
            }
            Err(FetchError::Status(404))
                if matches!(request, Request::Tile { width: Some(_), .. }) =>
            {
                // A log may delete a partial tile once the tile is full: look at the checkpoint now, and fetch
                // the full tile if it says so (or wait for growth: this width is not asked again).
                if let (
                    Plan::Tiles(tiles),
                    Request::Tile {
                        tile,
                        width: Some(w),
                    },
                ) = (&mut self.plan, request)
                {
                    tracing::debug!(log = %self.log, tile, width = w, "partial tile not found; refreshing the checkpoint");
                    tiles.last_partial = Some((tile, w));
                }
                self.head_due = now;
                self.windows.remove(at);
            }
            Err(error) => {
                self.fail(request, error);
                self.retry(at);
            }
        }
        self.take_ready()
    }

    /// Counts a bad answer to the tile `request`: how many that tile has had (forgotten once it reaches the limit,
    /// as the tile is then given up). Tiles behind the position are forgotten too, which bounds the counts by the
    /// pipeline's depth.
    fn bad_tile_attempts(&mut self, request: Request) -> u32 {
        let (Plan::Tiles(tiles), Request::Tile { tile, .. }) = (&mut self.plan, request) else {
            return 1;
        };
        tiles.bad_answers = tiles.bad_answers.split_off(&(self.next / TILE_WIDTH));
        let attempts = tiles.bad_answers.get(&tile).map_or(1, |n| n + 1);
        if attempts < TILE_ATTEMPTS {
            tiles.bad_answers.insert(tile, attempts);
        } else {
            tiles.bad_answers.remove(&tile);
        }
        attempts
    }

    /// `count` entries were delivered (politeness speeds up).
    pub(crate) fn processed(&mut self, count: u64) {
        self.politeness.on_processed(count);
    }

    /// Copies the follower's state into `status` and adds what it counted since the last sync. (The shell moves
    /// `next_index`, `delivered` and `skipped` with every entry it delivers.)
    pub(crate) fn sync(&mut self, status: &mut LogStatus, now: Instant) {
        // Before its first head a follower knows no size: what the status holds (a predecessor's, handed over on
        // a URL change) stays, so the position can be handed over again.
        if let Some(claimed) = self.claimed {
            status.tree_size = self.growth.followed(now);
            status.claimed_tree_size = claimed;
        }
        if let Some(position) = self.position() {
            status.next_index = position;
        }
        status.delay_ms = duration_ms(self.politeness.delay());
        status.backoff_ms = duration_ms(self.politeness.backoff());
        let tally = std::mem::take(&mut self.tally);
        status.errors += tally.errors;
        status.rate_limited += tally.rate_limited;
        status.broken_tiles += tally.broken_tiles;
        status.implausible_heads += tally.implausible_heads;
        if tally.last_error.is_some() {
            status.last_error = tally.last_error;
        }
        if tally.resumed_from.is_some() {
            status.resumed_from = tally.resumed_from;
            status.resume_skipped += tally.resume_skipped;
        }
    }

    /// How many of `fingerprints` may be resolved at `now`: the chain up to the first issuer this log could not
    /// serve lately.
    pub(crate) fn usable_issuers(&self, fingerprints: &[Fingerprint], now: Instant) -> usize {
        let Plan::Tiles(tiles) = &self.plan else {
            return fingerprints.len();
        };
        fingerprints
            .iter()
            .position(|fp| tiles.unavailable.get(fp).is_some_and(|until| *until > now))
            .unwrap_or(fingerprints.len())
    }

    /// When an issuer request may go (the politeness wait, consumed).
    pub(crate) fn issuer_request_at(&mut self, now: Instant) -> Instant {
        now + self.politeness.next_wait(self.jitter.next())
    }

    /// An issuer request ended: failures count towards giving the issuer up (at once when it is too large,
    /// which will not change; 429s never).
    pub(crate) fn issuer_answered(&mut self, result: Result<(), IssuerError>, now: Instant) {
        let error = match result {
            Ok(()) => {
                self.politeness.on_success();
                if let Plan::Tiles(tiles) = &mut self.plan {
                    tiles.issuer_failures = 0;
                }
                return;
            }
            Err(IssuerError::Status {
                status: 429,
                retry_after,
                ..
            }) => {
                let pause = retry_after.as_deref().and_then(|value| {
                    super::politeness::parse_retry_after(value, std::time::SystemTime::now())
                });
                self.fail_issuer(FetchError::RateLimited(pause));
                return;
            }
            Err(error) => error,
        };
        let fingerprint = *error.fingerprint();
        let hopeless = matches!(error, IssuerError::TooLarge { .. });
        if hopeless {
            // An issuer over the byte budget will not shrink: no point asking again, nor backing off.
            tracing::warn!(log = %self.log, %error, "issuer refused");
            self.tally.errors += 1;
            self.tally.last_error = Some(format!("issuer: {error}"));
        } else {
            self.fail_issuer(FetchError::Issuer(error));
        }
        let Plan::Tiles(tiles) = &mut self.plan else {
            return;
        };
        tiles.issuer_failures += 1;
        if hopeless || tiles.issuer_failures >= ISSUER_ATTEMPTS {
            tracing::warn!(log = %self.log, issuer = %hex(&fingerprint), "issuer unavailable: delivering entries with the chain up to it for a while");
            tiles.issuer_failures = 0;
            tiles.unavailable.retain(|_, until| *until > now);
            tiles
                .unavailable
                .insert(fingerprint, now + UNAVAILABLE_ISSUER_TTL);
        }
    }

    /// Entries below this index may be fetched: the followed part of the claimed size.
    fn limit(&mut self, now: Instant) -> u64 {
        self.growth.followed(now)
    }

    /// How many windows may be in flight.
    fn depth(&self) -> usize {
        match &self.plan {
            // Pages planned with a wrong guess would not line up with what the log serves.
            Plan::Pages(pages) if !pages.known => 1,
            _ => self.options.max_in_flight.max(1),
        }
    }

    /// The last index of the page or tile holding `index`.
    fn window_end(&self, index: u64) -> u64 {
        let size = match &self.plan {
            Plan::Pages(pages) => pages.page,
            Plan::Tiles(_) => TILE_WIDTH,
        };
        (index - index % size).saturating_add(size - 1)
    }

    /// The window starting at `from` that may be fetched below `limit`: to the end of its page (or the limit), or
    /// a full tile.
    fn next_window(&self, from: u64, limit: u64) -> Option<(u64, Request)> {
        if from >= limit {
            return None;
        }
        let end = self.window_end(from);
        match self.plan {
            Plan::Pages(_) => {
                let end = end.min(limit - 1);
                Some((end, Request::Entries { start: from, end }))
            }
            Plan::Tiles(_) => (end < limit).then_some((
                end,
                Request::Tile {
                    tile: from / TILE_WIDTH,
                    width: None,
                },
            )),
        }
    }

    /// Sends a request once the politeness wait is over; `register` records it under its id.
    fn send(
        &mut self,
        now: Instant,
        register: impl FnOnce(&mut Self, RequestId) -> Request,
    ) -> Action {
        let at = *self
            .request_at
            .get_or_insert_with(|| now + self.politeness.next_wait(self.jitter.next()));
        if now < at {
            return Action::Sleep(at);
        }
        self.request_at = None;
        let id = RequestId(self.next_id);
        self.next_id += 1;
        let request = register(self, id);
        Action::Fetch(id, request)
    }

    /// Window `at` is asked again before any later one is used; a partial tile (always the last window) is planned
    /// afresh instead, as the log may have filled the tile meanwhile.
    fn retry(&mut self, at: usize) {
        if matches!(
            self.windows[at].request,
            Request::Tile { width: Some(_), .. }
        ) {
            self.windows.remove(at);
        } else {
            self.windows[at].state = WindowState::Wanted;
        }
    }

    /// Sends `request` for the new last window `from..=end`.
    fn launch(&mut self, now: Instant, from: u64, end: u64, request: Request) -> Action {
        self.send(now, |follower, id| {
            follower.windows.push_back(Window {
                from,
                end,
                request,
                state: WindowState::InFlight(id),
            });
            request
        })
    }

    fn fetch_head(&mut self, now: Instant) -> Action {
        let action = self.send(now, |follower, id| {
            follower.head_in_flight = Some(id);
            Request::TreeHead
        });
        if matches!(action, Action::Fetch(..)) {
            self.head_due = now + self.options.poll_interval;
        }
        action
    }

    /// Takes a verified tree head: the first one sets the starting index, later ones only ever raise the size.
    fn accept_head(&mut self, size: u64, now: Instant) {
        let size = self.final_tree_size.map_or(size, |f| size.min(f));
        let observed = match self.claimed {
            None => {
                self.claimed = Some(size);
                let (next, resume) = match self.start {
                    Start::Head => (size.saturating_sub(self.options.start_back), None),
                    Start::Continue(at) => (at, Some(at)),
                    Start::Saved { index, max_backlog } => {
                        let backlog = size.saturating_sub(index);
                        self.tally.resumed_from = Some(index);
                        if backlog > max_backlog {
                            self.tally.resume_skipped = backlog;
                            tracing::warn!(log = %self.log, saved = index, start = size, skipped = backlog, max_backlog, "saved position too far behind: starting at the log's current size, skipping entries");
                            (size, None)
                        } else {
                            tracing::info!(log = %self.log, start = index, "resuming at the saved position");
                            // Our own bounded backlog, not the log's growth: read at once.
                            (index, None)
                        }
                    }
                };
                self.next = next;
                tracing::info!(log = %self.log, tree_size = size, start = self.next, "following log");
                self.growth.start(size, resume, now)
            }
            Some(known) if size > known => {
                self.claimed = Some(size);
                self.growth.observe(size, now)
            }
            Some(known) => {
                if size < known {
                    tracing::debug!(log = %self.log, tree_size = size, high_water = known, "tree head went backwards; ignored");
                }
                Observed::NoGrowth
            }
        };
        if let Observed::Implausible { first } = observed {
            self.tally.implausible_heads += 1;
            if first {
                tracing::warn!(log = %self.log, claimed = size, from = self.next, "tree head grew implausibly; following it at the capped rate");
            }
        }
    }

    /// Window `at` answered with `page` (what it lacks of the window is given up on, a tile that stayed broken).
    fn answered(&mut self, at: usize, mut page: P) {
        let window = &self.windows[at];
        let (end, request) = (window.end, window.request);
        if let Request::Entries { start, .. } = request {
            let requested = request.entries();
            page.truncate(requested);
            let served = page.len();
            self.learn_page(start, requested, served);
            if served < requested {
                let window = &mut self.windows[at];
                window.end = start + served - 1;
                window.request = Request::Entries {
                    start,
                    end: window.end,
                };
                if at + 1 < self.windows.len() {
                    // Later windows are in flight: the rest of this one must come first.
                    let rest = Request::Entries {
                        start: start + served,
                        end,
                    };
                    self.windows.insert(
                        at + 1,
                        Window {
                            from: start + served,
                            end,
                            request: rest,
                            state: WindowState::Wanted,
                        },
                    );
                }
                // Else the next window is planned from here, with the page size just learned, if any.
            }
        }
        if let (Plan::Tiles(tiles), Request::Tile { tile, width }) = (&mut self.plan, request) {
            if let Some(width) = width {
                tiles.last_partial = Some((tile, width));
            }
            tiles.partial_waiting_since = None;
        }
        self.windows[at].state = WindowState::Answered(page);
    }

    /// Learns the log's page size from an answer to `requested` entries at `start` that returned `served`.
    fn learn_page(&mut self, start: u64, requested: u64, served: u64) {
        let Plan::Pages(pages) = &mut self.plan else {
            return;
        };
        if pages.known {
            return;
        }
        if served == requested {
            // A whole guessed page came back: the cap is at least the guess.
            pages.known = requested == pages.page;
        } else if served >= MIN_LEARNED_PAGE
            && (start.is_multiple_of(served) || pages.last_short == Some(served))
        {
            // An aligned short answer, or the same short size twice (logs that cut without aligning): the cap.
            pages.page = served;
            pages.known = true;
            tracing::info!(log = %self.log, page = served, "learned get-entries page size");
        } else {
            pages.last_short = Some(served);
        }
    }

    /// The answered windows at the front, in order.
    fn take_ready(&mut self) -> Vec<Ready<P>> {
        let mut ready = Vec::new();
        while matches!(
            self.windows.front().map(|w| &w.state),
            Some(WindowState::Answered(_))
        ) {
            let Some(window) = self.windows.pop_front() else {
                break;
            };
            let WindowState::Answered(page) = window.state else {
                unreachable!("checked above")
            };
            let first = window_first(window.request);
            let delivered_end = first + page.len();
            let skipped_after = (window.end + 1).saturating_sub(delivered_end.max(window.from));
            self.next = window.end + 1;
            ready.push(Ready {
                first,
                from: window.from,
                page,
                skipped_after,
            });
        }
        ready
    }

    /// Records a failed request: counted, logged, and slowing the next request down.
    fn fail(&mut self, request: Request, error: FetchError) {
        self.failed(format!("{request}: {error}"), error);
    }

    fn fail_issuer(&mut self, error: FetchError) {
        self.failed(format!("issuer: {error}"), error);
    }

    fn failed(&mut self, message: String, error: FetchError) {
        if let FetchError::RateLimited(pause) = error {
            self.politeness.on_rate_limited(pause);
            self.tally.rate_limited += 1;
            tracing::info!(log = %self.log, error = %message, "rate limited");
        } else {
            self.politeness.on_error();
            self.tally.errors += 1;
            tracing::warn!(log = %self.log, error = %message, "request failed; backing off");
        }
        // The wait already computed did not know of this failure.
        self.request_at = None;
        self.tally.last_error = Some(message);
    }
}

/// The index of the first entry an answer to `request` holds.
fn window_first(request: Request) -> u64 {
    match request {
        Request::TreeHead => 0,
        Request::Entries { start, .. } => start,
        Request::Tile { tile, .. } => tile * TILE_WIDTH,
    }
}

pub(crate) fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test page: the indices it holds.
    impl Page for Vec<u64> {
        fn len(&self) -> u64 {
            self.len() as u64
        }
        fn truncate(&mut self, len: u64) {
            Vec::truncate(self, usize::try_from(len).unwrap());
        }
    }

    type TestFollower = Follower<Vec<u64>>;

    const INTERVAL: Duration = Duration::from_secs(1);
    const MIN_AGE: Duration = Duration::from_secs(5);

    fn options(start_back: u64) -> PollOptions {
        PollOptions {
            start_back,
            poll_interval: INTERVAL,
            max_in_flight: 4,
            partial_tile_min_age: MIN_AGE,
            ..PollOptions::default()
        }
    }

    fn follower(
        plan: PlanKind,
        start_back: u64,
        final_size: Option<u64>,
        start: Start,
    ) -> (TestFollower, Instant) {
        let t0 = Instant::now();
        let follower = Follower::new(
            "test log",
            plan,
            &options(start_back),
            final_size,
            start,
            7,
            t0,
        );
        (follower, t0)
    }

    /// The request `poll` sends at `now` (panics on anything else).
    fn fetch(f: &mut TestFollower, now: Instant) -> (RequestId, Request) {
        match f.poll(now) {
            Action::Fetch(id, request) => (id, request),
            other => panic!("expected a request at {:?}, got {other:?}", now),
        }
    }

    /// Runs past the start delay and answers the first tree head with `size`; returns the time then.
    fn started(f: &mut TestFollower, t0: Instant, size: u64) -> Instant {
        let Action::Sleep(at) = f.poll(t0) else {
            panic!("a start delay first")
        };
        assert!(
            at <= t0 + INTERVAL,
            "the start delay is at most one interval"
        );
        let (id, request) = fetch(f, at);
        assert_eq!(request, Request::TreeHead);
        assert!(f.handle(id, Ok(Answer::TreeHead(size)), at).is_empty());
        at
    }

    /// What a log whose pages hold `cap` entries, aligned, answers to `request`.
    fn serve(request: Request, cap: u64) -> Answer<Vec<u64>> {
        match request {
            Request::Entries { start, end } => {
                let end = end.min(start - start % cap + cap - 1);
                Answer::Entries((start..=end).collect())
            }
            Request::Tile { tile, .. } => {
                let first = tile * TILE_WIDTH;
                Answer::Entries((first..first + request.entries()).collect())
            }
            Request::TreeHead => unreachable!(),
        }
    }

    /// The indices delivered from `ready`, in order.
    fn delivered(ready: Vec<Ready<Vec<u64>>>) -> Vec<u64> {
        ready
            .into_iter()
            .flat_map(|r| r.page.into_iter().filter(move |i| *i >= r.from))
            .collect()
    }

    #[test]
    fn the_page_size_is_learned_then_every_window_is_page_aligned() {
        let (mut f, t0) = follower(PlanKind::Pages, 1_000, None, Start::Head);
        let now = started(&mut f, t0, 10_000);
        assert_eq!(f.position(), Some(9_000));
        // The first guess (1,024) ends on its own boundary.
        let (id, request) = fetch(&mut f, now);
        assert_eq!(
            request,
            Request::Entries {
                start: 9_000,
                end: 9_215
            }
        );
        assert_eq!(
            delivered(f.handle(id, Ok(serve(request, 256)), now)),
            (9_000..=9_215).collect::<Vec<_>>()
        );
        // Only one request while the page is unknown.
        let (id, request) = fetch(&mut f, now);
        assert_eq!(f.poll(now), Action::Wait);
        assert_eq!(
            request,
            Request::Entries {
                start: 9_216,
                end: 9_999
            }
        );
        // An aligned short answer is the cap: 256.
        assert_eq!(
            delivered(f.handle(id, Ok(serve(request, 256)), now)).len(),
            256
        );
        let mut requests = Vec::new();
        while let Action::Fetch(_, request) = f.poll(now) {
            requests.push(request);
        }
        assert_eq!(
            requests,
            [
                Request::Entries {
                    start: 9_472,
                    end: 9_727
                },
                Request::Entries {
                    start: 9_728,
                    end: 9_983
                },
                Request::Entries {
                    start: 9_984,
                    end: 9_999
                },
            ]
        );
    }

    #[test]
    fn an_unaligned_cap_is_learned_from_two_equal_short_answers() {
        let (mut f, t0) = follower(PlanKind::Pages, 5_000, None, Start::Head);
        let now = started(&mut f, t0, 5_005);
        let (id, request) = fetch(&mut f, now);
        assert_eq!(
            request,
            Request::Entries {
                start: 5,
                end: 1_023
            }
        );
        f.handle(id, Ok(Answer::Entries((5..105).collect())), now);
        let (id, request) = fetch(&mut f, now);
        assert_eq!(
            request,
            Request::Entries {
                start: 105,
                end: 1_023
            }
        );
        f.handle(id, Ok(Answer::Entries((105..205).collect())), now);
        let (_, request) = fetch(&mut f, now);
        assert_eq!(
            request,
            Request::Entries {
                start: 205,
                end: 299
            },
            "pages of 100 from now on"
        );
        assert!(matches!(f.poll(now), Action::Fetch(..)), "and pipelined");
    }

    #[test]
    fn pages_answered_out_of_order_are_delivered_in_order() {
        let (mut f, t0) = follower(PlanKind::Pages, 1_024, None, Start::Head);
        let now = started(&mut f, t0, 1_024);
        let (id, request) = fetch(&mut f, now);
        assert_eq!(
            delivered(f.handle(id, Ok(serve(request, 1_024)), now)),
            (0..1_024).collect::<Vec<_>>()
        );
        // The log grew by four pages: all asked at once.
        let (id, _) = fetch(&mut f, now + INTERVAL);
        f.handle(id, Ok(Answer::TreeHead(5 * 1_024)), now + INTERVAL);
        let now = now + INTERVAL;
        let sent: Vec<(RequestId, Request)> = (0..4).map(|_| fetch(&mut f, now)).collect();
        assert_eq!(f.poll(now), Action::Wait, "at most max_in_flight");
        for &at in &[3, 1, 2] {
            let (id, request) = sent[at];
            assert!(
                f.handle(id, Ok(serve(request, 1_024)), now).is_empty(),
                "page {at} waits for page 0"
            );
        }
        let (id, request) = sent[0];
        assert_eq!(
            delivered(f.handle(id, Ok(serve(request, 1_024)), now)),
            (1_024..5 * 1_024).collect::<Vec<_>>()
        );
        assert_eq!(f.position(), Some(5 * 1_024));
    }

    #[test]
    fn a_short_or_failed_page_in_a_pipeline_is_asked_again_before_later_ones_are_used() {
        let (mut f, t0) = follower(PlanKind::Pages, 1_024, None, Start::Head);
        let now = started(&mut f, t0, 1_024);
        let (id, request) = fetch(&mut f, now);
        f.handle(id, Ok(serve(request, 1_024)), now);
        let now = now + INTERVAL;
        let (id, _) = fetch(&mut f, now);
        f.handle(id, Ok(Answer::TreeHead(4_096)), now);
        let sent: Vec<(RequestId, Request)> = (0..3).map(|_| fetch(&mut f, now)).collect();
        // The first page comes back short, the second fails, the third is fine.
        assert_eq!(
            delivered(f.handle(
                sent[0].0,
                Ok(Answer::Entries((1_024..1_100).collect())),
                now
            )),
            (1_024..1_100).collect::<Vec<_>>()
        );
        assert!(
            f.handle(sent[1].0, Err(FetchError::Status(500)), now)
                .is_empty()
        );
        assert!(
            f.handle(sent[2].0, Ok(serve(sent[2].1, 1_024)), now)
                .is_empty()
        );
        // (The third page's success ended the backoff.) The rest of the first page, then the second page again.
        let after_backoff = now;
        let (rest, request) = fetch(&mut f, after_backoff);
        assert_eq!(
            request,
            Request::Entries {
                start: 1_100,
                end: 2_047
            }
        );
        let (again, request) = fetch(&mut f, after_backoff);
        assert_eq!(
            request,
            Request::Entries {
                start: 2_048,
                end: 3_071
            }
        );
        assert!(
            f.handle(again, Ok(serve(request, 1_024)), after_backoff)
                .is_empty()
        );
        let all = delivered(f.handle(
            rest,
            Ok(serve(
                Request::Entries {
                    start: 1_100,
                    end: 2_047,
                },
                1_024,
            )),
            after_backoff,
        ));
        assert_eq!(all, (1_100..4_096).collect::<Vec<_>>());
    }

    #[test]
    fn a_429_waits_for_its_retry_after_once() {
        let (mut f, t0) = follower(PlanKind::Pages, 0, None, Start::Head);
        let Action::Sleep(at) = f.poll(t0) else {
            panic!()
        };
        let (id, _) = fetch(&mut f, at);
        f.handle(
            id,
            Err(FetchError::RateLimited(Some(Duration::from_secs(7)))),
            at,
        );
        assert_eq!(f.poll(at), Action::Sleep(at + Duration::from_secs(7)));
        assert_eq!(
            f.poll(at + Duration::from_secs(6)),
            Action::Sleep(at + Duration::from_secs(7))
        );
        let later = at + Duration::from_secs(7);
        let (id, request) = fetch(&mut f, later);
        assert_eq!(request, Request::TreeHead);
        f.handle(id, Ok(Answer::TreeHead(10)), later);
        // Slower by 50 ms per 429 afterwards, not by the Retry-After again.
        let due = later + INTERVAL;
        assert_eq!(f.poll(due), Action::Sleep(due + Duration::from_millis(50)));
        let mut status = LogStatus::default();
        f.sync(&mut status, later);
        assert_eq!(
            (status.rate_limited, status.errors, status.delay_ms),
            (1, 0, 50)
        );
        assert!(status.last_error.unwrap().contains("retry after 7000 ms"));
    }

    #[test]
    fn errors_back_off_exponentially_until_a_success() {
        let (mut f, t0) = follower(PlanKind::Tiles, 0, None, Start::Head);
        let Action::Sleep(mut now) = f.poll(t0) else {
            panic!()
        };
        for backoff in [1, 2, 4, 8] {
            let (id, _) = fetch(&mut f, now);
            f.handle(id, Err(FetchError::Status(503)), now);
            let Action::Sleep(at) = f.poll(now) else {
                panic!()
            };
            let waited = at - now;
            let backoff = Duration::from_secs(backoff);
            assert!(
                waited >= backoff && waited <= backoff.mul_f64(1.5),
                "{waited:?} for {backoff:?}"
            );
            assert_eq!(
                f.poll(at - Duration::from_millis(1)),
                Action::Sleep(at),
                "the wait is kept"
            );
            now = at;
        }
        let mut status = LogStatus::default();
        f.sync(&mut status, now);
        assert_eq!((status.errors, status.backoff_ms), (4, 8_000));
        let (id, _) = fetch(&mut f, now);
        f.handle(id, Ok(Answer::TreeHead(0)), now);
        f.sync(&mut status, now);
        assert_eq!(status.backoff_ms, 0);
    }

    #[test]
    fn tree_heads_going_backwards_or_standing_still_change_nothing() {
        let (mut f, t0) = follower(PlanKind::Pages, 0, None, Start::Head);
        let mut now = started(&mut f, t0, 1_000);
        for size in [900, 1_000, 0] {
            assert_eq!(
                f.poll(now),
                Action::Sleep(now + INTERVAL),
                "caught up: the next head is due"
            );
            now += INTERVAL;
            let (id, request) = fetch(&mut f, now);
            assert_eq!(request, Request::TreeHead);
            f.handle(id, Ok(Answer::TreeHead(size)), now);
        }
        let mut status = LogStatus::default();
        f.sync(&mut status, now);
        assert_eq!(
            (status.claimed_tree_size, status.next_index),
            (1_000, 1_000)
        );
        now += INTERVAL;
        let (id, _) = fetch(&mut f, now);
        f.handle(id, Ok(Answer::TreeHead(1_100)), now);
        assert_eq!(
            fetch(&mut f, now).1,
            Request::Entries {
                start: 1_000,
                end: 1_023
            }
        );
    }

    #[test]
    fn an_implausible_head_is_followed_at_the_capped_rate() {
        let t0 = Instant::now();
        let options = PollOptions {
            max_growth_per_second: 100,
            ..options(0)
        };
        let mut f = Follower::new(
            "test log",
            PlanKind::Pages,
            &options,
            None,
            Start::Head,
            7,
            t0,
        );
        let now = started(&mut f, t0, 0);
        let (id, _) = fetch(&mut f, now + INTERVAL);
        let now = now + INTERVAL;
        f.handle(id, Ok(Answer::TreeHead(1 << 40)), now);
        // The saved allowance (10 s of growth) at once, then 100 entries a second.
        let (id, request) = fetch(&mut f, now);
        assert_eq!(request, Request::Entries { start: 0, end: 999 });
        f.handle(id, Ok(serve(request, 1_024)), now);
        assert_eq!(
            f.poll(now),
            Action::Sleep(now + Duration::from_millis(240)),
            "until the rest of the page may be read"
        );
        let mut status = LogStatus::default();
        f.sync(&mut status, now);
        assert_eq!(
            (
                status.implausible_heads,
                status.tree_size,
                status.claimed_tree_size
            ),
            (1, 1_000, 1 << 40)
        );
    }

    #[test]
    fn a_read_only_log_is_done_at_its_final_size() {
        let (mut f, t0) = follower(PlanKind::Pages, 100, Some(500), Start::Head);
        let now = started(&mut f, t0, 800);
        assert_eq!(
            f.position(),
            Some(400),
            "start_back counts from the final size"
        );
        let (id, request) = fetch(&mut f, now);
        assert_eq!(
            request,
            Request::Entries {
                start: 400,
                end: 499
            }
        );
        assert_eq!(f.poll(now), Action::Wait);
        assert_eq!(
            delivered(f.handle(id, Ok(serve(request, 1_000)), now)),
            (400..500).collect::<Vec<_>>()
        );
        assert_eq!(f.poll(now), Action::Done);
    }

    #[test]
    fn a_partial_tile_waits_its_minimum_age_and_is_fetched_once_per_width() {
        let (mut f, t0) = follower(PlanKind::Tiles, 600, None, Start::Head);
        let mut now = started(&mut f, t0, 600);
        let full: Vec<(RequestId, Request)> = (0..2).map(|_| fetch(&mut f, now)).collect();
        assert_eq!(
            full[1].1,
            Request::Tile {
                tile: 1,
                width: None
            }
        );
        for (id, request) in full.into_iter().rev() {
            f.handle(id, Ok(serve(request, 0)), now);
        }
        assert_eq!(f.position(), Some(512));
        // Entries 512..600 wait in the partial tile: not before the minimum age.
        assert_eq!(
            f.poll(now),
            Action::Sleep(now + INTERVAL),
            "the head is due first"
        );
        for _ in 1..MIN_AGE.as_secs() {
            now += INTERVAL;
            let (id, request) = fetch(&mut f, now);
            assert_eq!(request, Request::TreeHead);
            f.handle(id, Ok(Answer::TreeHead(600)), now);
            assert_eq!(f.poll(now), Action::Sleep(now + INTERVAL));
        }
        now += INTERVAL;
        let (id, request) = fetch(&mut f, now);
        assert_eq!(
            request,
            Request::Tile {
                tile: 2,
                width: Some(88)
            }
        );
        assert_eq!(
            delivered(f.handle(id, Ok(serve(request, 0)), now)),
            (512..600).collect::<Vec<_>>()
        );
        // The same width is never asked again; a wider one is, after its own wait.
        for _ in 0..10 {
            let (id, request) = fetch(&mut f, now);
            assert_eq!(request, Request::TreeHead);
            f.handle(id, Ok(Answer::TreeHead(600)), now);
            assert_eq!(f.poll(now), Action::Sleep(now + INTERVAL));
            now += INTERVAL;
        }
        let (id, _) = fetch(&mut f, now);
        f.handle(id, Ok(Answer::TreeHead(610)), now);
        assert_eq!(f.poll(now), Action::Sleep(now + INTERVAL));
        now += MIN_AGE;
        let (id, request) = fetch(&mut f, now);
        assert_eq!(
            request,
            Request::Tile {
                tile: 2,
                width: Some(98)
            }
        );
        assert_eq!(
            delivered(f.handle(id, Ok(serve(request, 0)), now)),
            (600..610).collect::<Vec<_>>(),
            "from the position on"
        );
    }

    #[test]
    fn a_missing_partial_tile_refreshes_the_checkpoint_and_is_not_asked_again() {
        let (mut f, t0) = follower(PlanKind::Tiles, 10, None, Start::Head);
        let mut now = started(&mut f, t0, 10);
        assert_eq!(
            f.poll(now),
            Action::Sleep(now + INTERVAL),
            "the tip tile's entries start waiting"
        );
        now += MIN_AGE;
        let (id, request) = fetch(&mut f, now);
        assert_eq!(
            request,
            Request::Tile {
                tile: 0,
                width: Some(10)
            }
        );
        assert!(f.handle(id, Err(FetchError::Status(404)), now).is_empty());
        let (id, request) = fetch(&mut f, now);
        assert_eq!(request, Request::TreeHead, "at once");
        f.handle(id, Ok(Answer::TreeHead(256)), now);
        assert_eq!(
            fetch(&mut f, now).1,
            Request::Tile {
                tile: 0,
                width: None
            }
        );
        let mut status = LogStatus::default();
        f.sync(&mut status, now);
        assert_eq!(status.errors, 0, "a deleted partial tile is no error");
    }

    #[test]
    fn a_full_tile_that_stays_broken_is_given_up_after_its_attempts() {
        let (mut f, t0) = follower(PlanKind::Tiles, 256, None, Start::Head);
        let mut now = started(&mut f, t0, 256);
        for attempt in 1..=TILE_ATTEMPTS {
            let (id, request) = fetch(&mut f, now);
            assert_eq!(
                request,
                Request::Tile {
                    tile: 0,
                    width: None
                }
            );
            let broken = Answer::Broken(
                (0..100).collect(),
                FetchError::Records {
                    found: 100,
                    expected: 256,
                },
            );
            let ready = f.handle(id, Ok(broken), now);
            if attempt < TILE_ATTEMPTS {
                assert!(ready.is_empty(), "attempt {attempt} is retried");
                let Action::Sleep(at) = f.poll(now) else {
                    panic!()
                };
                now = at;
            } else {
                assert_eq!(ready.len(), 1);
                assert_eq!(ready[0].skipped_after, 156);
                assert_eq!(delivered(ready), (0..100).collect::<Vec<_>>());
            }
        }
        assert_eq!(f.position(), Some(256));
        let mut status = LogStatus::default();
        f.sync(&mut status, now);
        assert_eq!((status.broken_tiles, status.errors), (5, 5));
    }

    /// Two tiles that stay broken, their retries overlapping (a slow log answers each after a while, so the other
    /// tile's retry is sent meanwhile), are each given up after their own attempts: one tile's bad answer, or a good
    /// answer for another tile, does not reset the other's count. (With one count per log, these took 14, 16 and 18
    /// bad answers; answers slower than the largest backoff, e.g. under a raised request timeout, never ended.)
    #[test]
    fn two_tiles_that_stay_broken_in_a_pipeline_are_each_given_up_after_their_attempts() {
        for latency in [
            Duration::ZERO,
            Duration::from_secs(10),
            Duration::from_secs(30),
            Duration::from_secs(600),
        ] {
            let (mut f, t0) = follower(PlanKind::Tiles, 1_024, None, Start::Head);
            let mut now = started(&mut f, t0, 1_024);
            // Tiles 0 and 2 always answer 100 of their 256 records; tiles 1 and 3 are fine.
            let answer = |request: Request| {
                let Request::Tile { tile, .. } = request else {
                    panic!("only tiles: {request}")
                };
                if tile % 2 == 1 {
                    return serve(request, 256);
                }
                let first = tile * TILE_WIDTH;
                Answer::Broken(
                    (first..first + 100).collect(),
                    FetchError::Records {
                        found: 100,
                        expected: 256,
                    },
                )
            };
            let mut in_flight: Vec<(Instant, RequestId, Request)> = Vec::new();
            let mut ready = Vec::new();
            for _ in 0..1_000 {
                if f.position() == Some(1_024) {
                    break;
                }
                let wake = match f.poll(now) {
                    Action::Fetch(id, request) => {
                        in_flight.push((now + latency, id, request));
                        continue;
                    }
                    Action::Sleep(at) => Some(at),
                    Action::Wait => None,
                    Action::Done => panic!("not read-only"),
                };
                // The next event: an answer, or the end of the wait.
                let due = in_flight.iter().map(|(due, ..)| *due).min();
                now = match (wake, due) {
                    (Some(at), Some(due)) => at.min(due),
                    (at, due) => at.or(due).expect("something to wait for"),
                };
                let (answered, waiting) = in_flight.into_iter().partition(|(due, ..)| *due <= now);
                in_flight = waiting;
                for (_, id, request) in answered {
                    ready.extend(f.handle(id, Ok(answer(request)), now));
                }
            }
            assert_eq!(
                f.position(),
                Some(1_024),
                "stalled with latency {latency:?}"
            );
            let skipped: u64 = ready.iter().map(|r| r.skipped_after).sum();
            assert_eq!(skipped, 2 * 156);
            let mut status = LogStatus::default();
            f.sync(&mut status, now);
            assert_eq!(
                status.broken_tiles,
                2 * u64::from(TILE_ATTEMPTS),
                "latency {latency:?}"
            );
        }
    }

    /// A successor whose first head fails keeps the position it was handed (a second URL change hands it on).
    #[test]
    fn a_failed_first_head_keeps_the_handed_over_position() {
        let (mut f, t0) = follower(PlanKind::Pages, 0, None, Start::Continue(1_000));
        let mut status = LogStatus {
            tree_size: 5_000,
            claimed_tree_size: 5_000,
            next_index: 1_000,
            ..LogStatus::default()
        };
        let Action::Sleep(at) = f.poll(t0) else {
            panic!("a start delay first")
        };
        let (id, request) = fetch(&mut f, at);
        assert_eq!(request, Request::TreeHead);
        f.handle(id, Err(FetchError::Status(503)), at);
        f.sync(&mut status, at);
        assert_eq!(
            (status.claimed_tree_size, status.next_index),
            (5_000, 1_000)
        );
        assert_eq!(status.errors, 1);
    }

    #[test]
    fn an_issuer_that_keeps_failing_is_given_up_for_a_while() {
        let (mut f, t0) = follower(PlanKind::Tiles, 0, None, Start::Head);
        let (good, bad) = ([1; 32], [2; 32]);
        let failure = || IssuerError::Fetch {
            fingerprint: bad,
            reason: "refused".into(),
        };
        assert_eq!(f.usable_issuers(&[good, bad], t0), 2);
        for _ in 0..ISSUER_ATTEMPTS {
            f.issuer_answered(Err(failure()), t0);
        }
        assert_eq!(f.usable_issuers(&[good, bad], t0), 1);
        assert_eq!(
            f.usable_issuers(&[good, bad], t0 + UNAVAILABLE_ISSUER_TTL),
            2
        );
        let mut status = LogStatus::default();
        f.sync(&mut status, t0);
        assert_eq!(status.errors, u64::from(ISSUER_ATTEMPTS));
    }

    /// A stop drops the follower with requests in flight; a successor at its position neither skips nor repeats.
    #[test]
    fn a_stop_in_the_middle_loses_and_repeats_nothing() {
        let (mut f, t0) = follower(PlanKind::Pages, 4_096, None, Start::Head);
        let now = started(&mut f, t0, 4_096);
        let (id, request) = fetch(&mut f, now);
        f.handle(id, Ok(serve(request, 1_024)), now);
        let sent: Vec<(RequestId, Request)> = (0..3).map(|_| fetch(&mut f, now)).collect();
        f.handle(sent[1].0, Ok(serve(sent[1].1, 1_024)), now);
        let position = f.position();
        assert_eq!(position, Some(1_024), "only what was handed out counts");
        drop(f);
        let (mut successor, t1) = follower(
            PlanKind::Pages,
            0,
            None,
            Start::Continue(position.expect("a position")),
        );
        let now = started(&mut successor, t1, 4_096);
        assert_eq!(
            fetch(&mut successor, now).1,
            Request::Entries {
                start: 1_024,
                end: 2_047
            }
        );
    }

    /// A saved index within `--max-resume-backlog`: followed from there at once (the backlog is not the log's
    /// growth), and shown in the status.
    #[test]
    fn a_saved_index_within_the_backlog_limit_is_resumed_at_once() {
        let saved = Start::Saved {
            index: 1_000,
            max_backlog: 1_000_000,
        };
        let (mut f, t0) = follower(PlanKind::Pages, 0, None, saved);
        let now = started(&mut f, t0, 500_000);
        assert_eq!(f.position(), Some(1_000));
        let (id, request) = fetch(&mut f, now);
        assert_eq!(
            request,
            Request::Entries {
                start: 1_000,
                end: 1_023
            }
        );
        f.handle(id, Ok(serve(request, 1_024)), now);
        let mut status = LogStatus::default();
        f.sync(&mut status, now);
        assert_eq!(
            status.tree_size, 500_000,
            "the whole backlog may be read now"
        );
        assert_eq!(status.implausible_heads, 0);
        assert_eq!(
            (status.resumed_from, status.resume_skipped),
            (Some(1_000), 0)
        );
    }

    /// A saved index further behind than the limit: the follower starts at the head, the skip counted.
    #[test]
    fn a_saved_index_beyond_the_backlog_limit_starts_at_the_head() {
        let saved = Start::Saved {
            index: 1_000,
            max_backlog: 500,
        };
        let (mut f, t0) = follower(PlanKind::Pages, 0, None, saved);
        started(&mut f, t0, 4_096);
        assert_eq!(f.position(), Some(4_096));
        let mut status = LogStatus::default();
        f.sync(&mut status, t0);
        assert_eq!(
            (status.resumed_from, status.resume_skipped),
            (Some(1_000), 3_096)
        );
    }

    /// A restarted poller continues below the head, but what lies between is growth: the cap still holds.
    #[test]
    fn a_continued_start_does_not_lift_the_growth_cap() {
        let (mut f, t0) = follower(PlanKind::Pages, 0, None, Start::Continue(1_000));
        let now = started(&mut f, t0, 500_000);
        let mut status = LogStatus::default();
        f.sync(&mut status, now);
        assert!(status.tree_size < 500_000, "{}", status.tree_size);
        assert_eq!(status.implausible_heads, 1);
    }
}
