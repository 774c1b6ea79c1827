//! The RFC 6962 poller: follows one log through `get-sth` and `get-entries` and hands every entry to the sink
//! exactly once, in index order (docs/ct-protocols.md §1.1–1.2, §4).
//!
//! - Tree heads are verified with the log's key; a bad one is an error and never used. The verified size is a
//!   high-water mark: a head that goes backwards (stale replica) or stays equal changes nothing.
//! - The page size is learned from the log's first short answers, then every request covers at most one page and
//!   ends on a page boundary (or the tree's end), so a request started on a boundary hits operators' caches.
//! - While behind, up to `max_in_flight` pages are fetched concurrently, each by its own task; responses are
//!   consumed strictly in range order, and a short or failed range is re-requested before any later one is used.
//! - Every failure (HTTP, status, timeout, bad JSON, zero entries, bad tree head) only delays the log. The only
//!   thing ever skipped is an entry that does not decode (bad base64 in its item included: the JSON framing gives
//!   its boundaries), and that is logged and counted, never costing its neighbours or a retry.
//! - The status's next index and counts move with every entry, so a poller restarted after a panic resumes
//!   exactly after the last entry handled.
//! - A page is delivered in turns ([`super::pacing`]): only while the hub admits messages, a few milliseconds at a
//!   time; and while it does not, no further page is requested beyond the one being waited for.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use monoio::task::JoinHandle;

use crate::http::{HttpClient, HttpError, Response};
use crate::log_throttle::LogThrottle;
use certstream_ct::entry::{Chain, decode_rfc6962};
use certstream_ct::get_entries::{GetEntriesError, RawEntry, body_limit, scan_get_entries};
use certstream_ct::tree_head::{SignedTreeHead, TreeHead, TreeHeadError};

use super::growth::{self, FollowedSize};
use super::pacing::{Turn, yield_now};
use super::politeness::{Politeness, parse_retry_after};
use super::{
    LogTarget, MAX_TREE_HEAD_BYTES, PollerContext, SharedStatus, StopOnDrop, StopToken,
    deliver_entry,
};

/// Entries asked for while the log's page size is unknown. Logs answer with at most their cap (Google 32, most
/// others 256, ct-go's default 1000), which is how the cap is learned.
const FIRST_PAGE: u64 = 1024;

/// A short answer smaller than this is taken as a plain short read, never as the log's page size: a replica
/// lagging at the tip can return a handful of entries, and learning a tiny page would cripple the log for good.
/// No known log serves pages smaller than 32.
const MIN_LEARNED_PAGE: u64 = 16;
/// Entries base64-decoded per step (~0.2 ms for real entries): a 1,000-entry page never holds the reactor long.
const DECODE_PIECE: usize = 100;

/// Follows the RFC 6962 log `target` until `stop` is requested (or, for a read-only log, until every entry up to
/// its final tree size has been delivered), delivering entries to `ctx.sink` and keeping `status` current.
///
/// Starts after a random delay of up to one poll interval (so many logs do not poll in step), at `resume` (a
/// restarted poller's next index) or else at the log's verified tree size minus `options.start_back`.
pub async fn run(
    ctx: PollerContext,
    target: Rc<LogTarget>,
    status: SharedStatus,
    stop: StopToken,
    resume: Option<u64>,
) {
    let mut poller = Rfc6962Poller {
        growth: FollowedSize::new(ctx.options.max_growth_per_second),
        ctx,
        target,
        status,
        stop,
        resume,
        skip_warnings: LogThrottle::new(Duration::from_secs(1)),
        politeness: Politeness::default(),
        tree_size: None,
        next: 0,
        page: FIRST_PAGE,
        page_known: false,
        last_short: None,
    };
    // Only a stop request ends the loop early; there is nothing to report.
    let _ = poller.run().await;
}

/// The poller was asked to stop.
struct Stopped;

/// Why a request did not yield usable data.
#[derive(Debug)]
enum PollError {
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
    /// The poller stopped while the request was in flight (nobody reads this result).
    Cancelled,
}

impl fmt::Display for PollError {
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
            Self::Cancelled => f.write_str("cancelled"),
        }
    }
}

/// One item of a get-entries page: its entry, or why its base64 does not decode.
type PageItem = Result<RawEntry, GetEntriesError>;

/// One get-entries request in flight, for the inclusive range `start..=end`.
struct Fetch {
    start: u64,
    end: u64,
    handle: JoinHandle<Result<Vec<PageItem>, PollError>>,
}

/// One log's polling state.
struct Rfc6962Poller {
    ctx: PollerContext,
    target: Rc<LogTarget>,
    status: SharedStatus,
    stop: StopToken,
    /// Where a restarted poller resumes.
    resume: Option<u64>,
    /// Undecodable entries are logged at most once a second.
    skip_warnings: LogThrottle,
    politeness: Politeness,
    /// The highest verified tree size; `None` until the first good tree head.
    tree_size: Option<u64>,
    /// How much of the verified size may be read yet.
    growth: FollowedSize,
    /// The next index to deliver (meaningful once `tree_size` is known).
    next: u64,
    /// Entries per request, and whether that is the log's learned cap or still the first guess.
    page: u64,
    page_known: bool,
    /// The previous short answer's size while the page is unknown: the same size twice is the cap.
    last_short: Option<u64>,
}

impl Rfc6962Poller {
    async fn run(&mut self) -> Result<(), Stopped> {
        let start_delay = self
            .ctx
            .options
            .poll_interval
            .mul_f64(rand::random::<f64>());
        self.sleep(start_delay).await?;
        loop {
            if self.finished() {
                tracing::info!(log = %self.target.read_url, size = self.next, "read-only log fully delivered; poller done");
                return Ok(());
            }
            if self.tree_size.is_some() && self.next < self.limit() {
                self.catch_up().await?;
            } else {
                // Caught up (or no tree head yet): the next tree head is due after a poll interval.
                let interval = if self.tree_size.is_some() {
                    self.ctx.options.poll_interval
                } else {
                    Duration::ZERO
                };
                self.wait_turn(interval).await?;
                self.poll_sth().await?;
            }
        }
    }

    /// Entries below this index may be fetched: the followed part of the verified size, capped by a read-only
    /// log's final size.
    fn limit(&mut self) -> u64 {
        if self.tree_size.is_none() {
            return 0;
        }
        let size = self.growth.followed(Instant::now());
        self.target.final_tree_size.map_or(size, |f| size.min(f))
    }

    /// A read-only log whose every entry has been delivered.
    fn finished(&self) -> bool {
        self.tree_size.is_some() && self.target.final_tree_size.is_some_and(|f| self.next >= f)
    }

    /// The last index of the page holding `index`.
    fn page_end(&self, index: u64) -> u64 {
        (index - index % self.page).saturating_add(self.page - 1)
    }

    async fn sleep(&self, duration: Duration) -> Result<(), Stopped> {
        if self.stop.sleep(duration).await {
            Ok(())
        } else {
            Err(Stopped)
        }
    }

    /// Waits before a request: the politeness delay, error backoff or Retry-After pause, at least `at_least`.
    async fn wait_turn(&mut self, at_least: Duration) -> Result<(), Stopped> {
        let wait = self
            .politeness
            .next_wait(rand::random::<f64>())
            .max(at_least);
        self.sleep(wait).await
    }

    /// Runs `work` unless a stop is requested first.
    async fn until_stopped<F: Future>(&self, work: F) -> Result<F::Output, Stopped> {
        monoio::select! {
            output = work => Ok(output),
            _ = self.stop.stopped() => Err(Stopped),
        }
    }

    async fn poll_sth(&mut self) -> Result<(), Stopped> {
        let url = format!("{}ct/v1/get-sth", self.target.read_url);
        let (http, timeout, key) = (
            &self.ctx.http,
            self.ctx.options.request_timeout,
            &self.target.key,
        );
        let result = self
            .until_stopped(async {
                let response = get(http, &url, timeout, MAX_TREE_HEAD_BYTES).await?;
                SignedTreeHead::from_json(&response.body)
                    .and_then(|sth| sth.verify(key))
                    .map_err(PollError::TreeHead)
            })
            .await?;
        match result {
            Ok(head) => {
                self.politeness.on_success();
                self.accept_head(head);
            }
            Err(error) => self.fail("get-sth", error),
        }
        self.sync_status();
        Ok(())
    }

    /// Takes a verified tree head: the first one sets the starting index, later ones only ever raise the size.
    fn accept_head(&mut self, head: TreeHead) {
        let log = &self.target.read_url;
        match self.tree_size {
            None => {
                let size = self
                    .target
                    .final_tree_size
                    .map_or(head.tree_size, |f| head.tree_size.min(f));
                self.next = self
                    .resume
                    .unwrap_or_else(|| size.saturating_sub(self.ctx.options.start_back));
                self.tree_size = Some(head.tree_size);
                let observed = self
                    .growth
                    .start(head.tree_size, self.resume, Instant::now());
                growth::report(observed, &self.status, log, self.next, head.tree_size);
                tracing::info!(log = %log, tree_size = head.tree_size, start = self.next, "following log");
            }
            Some(known) if head.tree_size > known => {
                self.tree_size = Some(head.tree_size);
                let observed = self.growth.observe(head.tree_size, Instant::now());
                growth::report(observed, &self.status, log, known, head.tree_size);
            }
            Some(known) if head.tree_size < known => {
                tracing::debug!(log = %log, tree_size = head.tree_size, high_water = known, "tree head went backwards; ignored");
            }
            Some(_) => {}
        }
    }

    /// Fetches from `next` up to the verified size, pipelining pages once the page size is known.
    async fn catch_up(&mut self) -> Result<(), Stopped> {
        // Ends the fetches still in flight whenever this returns (stop, panic), instead of leaving them detached.
        let fetches = StopOnDrop(StopToken::default());
        let mut queue: VecDeque<Fetch> = VecDeque::new();
        // The first index no queued request covers; queued ranges are contiguous from `next` up to it.
        let mut launch_from = self.next;
        loop {
            let depth = if self.page_known {
                self.ctx.options.max_in_flight.max(1)
            } else {
                // Pages planned with a wrong guess would not line up with what the log serves.
                1
            };
            while queue.len() < depth && launch_from < self.limit() {
                if !queue.is_empty() && !self.ctx.sink.gate().is_none_or(|gate| gate.admits()) {
                    // Clients that keep up are behind: what is in flight is enough until they catch up.
                    break;
                }
                self.wait_turn(Duration::ZERO).await?;
                let end = self.page_end(launch_from).min(self.limit() - 1);
                queue.push_back(self.launch(launch_from, end, &fetches.0));
                launch_from = end + 1;
            }
            let Some(fetch) = queue.pop_front() else {
                return Ok(());
            };
            let (start, end) = (fetch.start, fetch.end);
            let resume_at = match self.until_stopped(fetch.handle).await? {
                Ok(mut entries) => {
                    let requested = end - start + 1;
                    // More than asked for is not what was asked for: use only the requested range.
                    let served =
                        u64::try_from(entries.len()).map_or(requested, |n| n.min(requested));
                    entries.truncate(usize::try_from(served).unwrap_or(usize::MAX));
                    self.learn_page(start, requested, served);
                    self.deliver(start, &entries).await?;
                    (served < requested).then_some(start + served)
                }
                Err(error) => {
                    self.fail("get-entries", error);
                    Some(start)
                }
            };
            self.sync_status();
            if let Some(from) = resume_at {
                if queue.is_empty() {
                    // Nothing later is in flight: plan again from here (with the page size just learned, if any).
                    launch_from = from;
                } else {
                    // Later ranges are in flight: the rest of this one must come first.
                    self.wait_turn(Duration::ZERO).await?;
                    queue.push_front(self.launch(from, end, &fetches.0));
                }
            }
        }
    }

    /// Starts fetching `start..=end` in its own task, which ends early when `cancel` is stopped. Only the requested
    /// entries are read from the body, which must fit what was asked for, and they are decoded a piece at a time,
    /// yielding between pieces.
    fn launch(&self, start: u64, end: u64, cancel: &StopToken) -> Fetch {
        let url = format!(
            "{}ct/v1/get-entries?start={start}&end={end}",
            self.target.read_url
        );
        let http = self.ctx.http.clone();
        let timeout = self.ctx.options.request_timeout;
        let requested = end - start + 1;
        let max_body = body_limit(requested, self.ctx.options.get_entries_bytes_per_entry);
        let cancel = cancel.clone();
        let handle = monoio::spawn(async move {
            let fetch = async {
                let response = get(&http, &url, timeout, max_body).await?;
                let page = scan_get_entries(
                    &response.body,
                    usize::try_from(requested).unwrap_or(usize::MAX),
                )
                .map_err(PollError::Body)?;
                if page.is_empty() {
                    return Err(PollError::NoEntries { start, end });
                }
                let mut entries = Vec::with_capacity(page.len());
                for piece in (0..page.len()).step_by(DECODE_PIECE) {
                    entries.extend(page.decode(piece..piece + DECODE_PIECE));
                    yield_now().await;
                }
                Ok(entries)
            };
            monoio::select! {
                result = fetch => result,
                _ = cancel.stopped() => Err(PollError::Cancelled),
            }
        });
        Fetch { start, end, handle }
    }

    /// Learns the log's page size from an answer to `requested` entries at `start` that returned `served`.
    fn learn_page(&mut self, start: u64, requested: u64, served: u64) {
        if self.page_known {
            return;
        }
        if served == requested {
            // A whole guessed page came back: the cap is at least the guess.
            self.page_known = requested == self.page;
        } else if served >= MIN_LEARNED_PAGE
            && (start.is_multiple_of(served) || self.last_short == Some(served))
        {
            // An aligned short answer, or the same short size twice (logs that cut without aligning): the cap.
            self.page = served;
            self.page_known = true;
            tracing::info!(log = %self.target.read_url, page = served, "learned get-entries page size");
        } else {
            self.last_short = Some(served);
        }
    }

    /// Decodes and delivers entries `start..` in order, in turns; entries that do not decode (their base64 or
    /// their record) are logged and counted. The status moves with every entry: a panic mid-turn restarts the
    /// poller after the last entry handled, never repeating one.
    async fn deliver(&mut self, start: u64, entries: &[PageItem]) -> Result<(), Stopped> {
        let mut pending = entries.iter();
        let mut index = start;
        while pending.len() > 0 {
            let turn = self
                .until_stopped(Turn::begin(self.ctx.sink.gate()))
                .await?;
            let turn_start = index;
            while turn.may_continue(Instant::now()) {
                let Some(item) = pending.next() else { break };
                let decoded = item
                    .as_ref()
                    .map(|raw| decode_rfc6962(&raw.leaf_input, &raw.extra_data));
                let delivered = match decoded {
                    Ok(Ok(entry)) => {
                        let chain: &[&[u8]] = match &entry.chain {
                            Chain::Certificates(certificates) => certificates,
                            Chain::Fingerprints(_) => &[],
                        };
                        deliver_entry(&self.ctx, &self.target, &self.status, index, &entry, chain)
                    }
                    Ok(Err(error)) => {
                        self.skip(index, &error);
                        false
                    }
                    Err(error) => {
                        self.skip(index, error);
                        false
                    }
                };
                index += 1;
                self.next = index;
                let mut status = self.status.borrow_mut();
                status.delivered += u64::from(delivered);
                status.next_index = index;
            }
            self.politeness.on_processed(index - turn_start);
            turn.end().await;
        }
        self.politeness.on_success();
        Ok(())
    }

    /// Skips the undecodable entry at `index`: counted, logged at most once a second.
    fn skip(&self, index: u64, error: &dyn fmt::Display) {
        if let Some(held_back) = self.skip_warnings.allow(Instant::now()) {
            tracing::warn!(log = %self.target.read_url, index, error = %error, held_back, "skipping undecodable entry");
        }
        self.status.borrow_mut().skipped += 1;
    }

    /// Records a failed request: counted, logged, and slowing the next request down.
    fn fail(&mut self, what: &str, error: PollError) {
        let message = format!("{what}: {error}");
        let mut status = self.status.borrow_mut();
        if let PollError::RateLimited(pause) = error {
            self.politeness.on_rate_limited(pause);
            status.rate_limited += 1;
            tracing::info!(log = %self.target.read_url, error = %message, "rate limited");
        } else {
            self.politeness.on_error();
            status.errors += 1;
            tracing::warn!(log = %self.target.read_url, error = %message, "request failed; backing off");
        }
        status.last_error = Some(message);
    }

    fn sync_status(&mut self) {
        let followed = match self.tree_size {
            Some(_) => self.growth.followed(Instant::now()),
            None => 0,
        };
        let mut status = self.status.borrow_mut();
        status.tree_size = followed;
        status.claimed_tree_size = self.tree_size.unwrap_or(0);
        status.next_index = self.next;
        status.delay_ms = duration_ms(self.politeness.delay());
        status.backoff_ms = duration_ms(self.politeness.backoff());
    }
}

/// `GET url`: a 200 response, or why not.
async fn get(
    http: &HttpClient,
    url: &str,
    timeout: Duration,
    max_body: usize,
) -> Result<Response, PollError> {
    let response = http
        .get_limited(url, &[], timeout, max_body)
        .await
        .map_err(PollError::Http)?;
    match response.status {
        200 => Ok(response),
        429 => {
            let pause = response
                .retry_after()
                .and_then(|value| parse_retry_after(value, SystemTime::now()));
            Err(PollError::RateLimited(pause))
        }
        status => Err(PollError::Status(status)),
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
