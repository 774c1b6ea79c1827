//! The supervisor: keeps one poller running per selected log of the log list.
//!
//! - The list is Chrome's (signature checked), or a custom one (URL or file; signature checked only when one is
//!   configured), optionally merged with Apple's (deduplicated by log ID, the first list winning).
//! - It is fetched at start and again every `log_list_refresh`. A fetch or parse that fails keeps the previous
//!   list; when the very first one fails, the compiled-in snapshot of Chrome's list is used (offline start).
//! - Usable, qualified and read-only logs are followed (read-only ones to their final size), pending ones on
//!   request; retired and rejected ones never. A log that joins the list gets a poller; one that leaves has its
//!   poller stopped. Logs are identified by log ID only. A listed log whose poller inputs change (URL, description,
//!   final tree size) gets a new poller that starts at the old one's next index, so nothing is lost or repeated.
//! - List files and URLs are read with a size cap and a deadline, files off the reactor thread
//!   ([`crate::operator_input`]); what `/stats`, `/metrics` and the log show of locations is redacted
//!   ([`crate::redact`]).
//! - Per-log state (position, lag, errors, politeness) goes to `/stats` (`logs`) and `/metrics`.
//! - With a state file ([`super::resume`]), a log starts at its saved index (unless that is more than
//!   `--max-resume-backlog` behind: then at its current size, the skip logged and counted); the positions are saved
//!   every `--state-save-interval` and at shutdown, a log that leaves the list keeps its entry for a week.
//! - Each poller runs inside a panic boundary: a panic in its own code is logged, counted in `restarts`, and the
//!   poller is started again after a backoff (1 s, doubling up to 5 min) from its next undelivered index, so
//!   nothing is skipped or repeated and no other log notices. (A panic while building one entry costs only that
//!   entry: see [`super::deliver_entry`].)

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::IngestConfig;
use crate::http::{HttpClient, HttpError, Target};
use crate::message::{self, LogSource};
use crate::metrics::{Fact, Kind, Metric, Read, Report, StatusReporter, Table};
use crate::operator_input::{self, InputError};
use crate::panic_boundary::CatchUnwind;
use crate::redact;
use certstream_ct::checkpoint::origin_from_submission_url;
use certstream_ct::entry::LogEntry;
use certstream_ct::log_list::{
    self, GOOGLE_LOG_LIST_PUBKEY_PEM, GOOGLE_LOG_LIST_SIG_URL, GOOGLE_LOG_LIST_URL, LogInfo,
    LogKind, LogList, LogListError, LogState,
};

use super::issuers::IssuerCache;
use super::resume::StateFile;
use super::{
    LogStatus, LogTarget, PollOptions, PollerContext, SharedStatus, Start, StopToken, rfc6962,
    tiled,
};
use crate::publish::{DurablePositions, EntrySink, Gate, LogSink, Publisher, SinkCounts};

/// The first pause before a panicked poller is started again; it doubles on each panic in a row.
const RESTART_BACKOFF_MIN: Duration = Duration::from_secs(1);
/// The longest pause before a restart; a poller that ran this long without panicking starts again at the minimum.
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Apple's list of the logs in its CT programme (no detached signature: it rests on TLS).
pub const APPLE_LOG_LIST_URL: &str = "https://valid.apple.com/ct/log_list/current_log_list.json";

/// Why a log list could not be loaded.
#[derive(Debug)]
pub(crate) enum LoadError {
    /// Verifying or parsing failed.
    List(LogListError),
    /// Fetching a list or signature URL failed.
    Fetch(HttpError),
    /// A list or signature URL answered with a non-200 status.
    Status {
        /// The URL, redacted ([`redact::location`]).
        url: String,
        /// The status received.
        status: u16,
    },
    /// A list or signature file could not be read, or a URL was too slow or too big.
    Read {
        /// The file or URL, redacted ([`redact::location`]).
        location: String,
        /// What went wrong.
        source: InputError,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::List(e) => e.fmt(f),
            Self::Fetch(e) => write!(f, "log list fetch failed: {e}"),
            Self::Status { url, status } => write!(f, "{url} answered HTTP {status}"),
            Self::Read { location, source } => write!(f, "cannot read {location}: {source}"),
        }
    }
}

impl std::error::Error for LoadError {}

impl From<LogListError> for LoadError {
    fn from(error: LogListError) -> Self {
        Self::List(error)
    }
}

/// One followed log.
struct Followed {
    info: LogInfo,
    status: SharedStatus,
    counts: Rc<SinkCounts>,
    stop: StopToken,
}

/// Where the list in use came from, and how fetching it went.
#[derive(Default)]
struct ListState {
    /// What was loaded last: a URL, a path, or the snapshot.
    source: String,
    version: Option<String>,
    /// When a list was last loaded, Unix seconds.
    loaded_at: Option<u64>,
    loads: u64,
    failures: u64,
    last_error: Option<String>,
    /// Apple's last good list, merged into every primary list.
    apple: Option<LogList>,
}

/// Runs the pollers of every selected log, following the log list over time.
pub struct Supervisor {
    config: IngestConfig,
    http: Rc<HttpClient>,
    publisher: Rc<Publisher>,
    issuers: Rc<IssuerCache>,
    options: PollOptions,
    logs: RefCell<Vec<Followed>>,
    /// What the logs that left the list counted, so the totals never go down (they are Prometheus counters).
    departed: Cell<Totals>,
    list: RefCell<ListState>,
    /// Where the positions are saved (`--state-file`), if anywhere.
    state: Option<Rc<StateFile>>,
    /// An output that must have an entry before its position is saved (the broker), if any.
    durable: Option<Rc<dyn DurablePositions>>,
    stop: StopToken,
}

impl Supervisor {
    /// A supervisor delivering every log's entries to `publisher`. Nothing runs until [`run`](Self::run).
    pub fn new(config: IngestConfig, http: Rc<HttpClient>, publisher: Rc<Publisher>) -> Self {
        let options = config.poll_options();
        let issuers = IssuerCache::new(
            config.issuer_cache_bytes,
            config.build_limits.max_chain_certificate_bytes,
        );
        Self {
            config,
            http,
            publisher,
            issuers: Rc::new(issuers),
            options,
            logs: RefCell::default(),
            departed: Cell::default(),
            list: RefCell::default(),
            state: None,
            durable: None,
            stop: StopToken::default(),
        }
    }

    /// Logs start at the positions `state` holds, which are saved there from now on.
    pub fn with_state_file(mut self, state: Rc<StateFile>) -> Self {
        self.state = Some(state);
        self
    }

    /// Saves no log's position past what `durable` says it made durable.
    pub fn with_durable_positions(mut self, durable: Rc<dyn DurablePositions>) -> Self {
        self.durable = Some(durable);
        self
    }

    /// The state file's content: the recorded positions, none past what the durable output has.
    fn encoded_positions(&self, state: &StateFile) -> Vec<u8> {
        let positions = state.positions.borrow();
        match &self.durable {
            Some(durable) => positions.encode_within(|log_id, next| durable.durable(log_id, next)),
            None => positions.encode(),
        }
    }

    /// Loads the list, starts the pollers, and refreshes the list until [`shutdown`](Self::shutdown).
    pub async fn run(self: Rc<Self>) {
        if let Some(state) = self.state.clone() {
            monoio::spawn(self.clone().keep_saving(state));
        }
        loop {
            self.refresh().await;
            if !self.stop.sleep(self.config.log_list_refresh).await {
                return;
            }
        }
    }

    /// Stops the refresh loop and every poller, and records where each log stopped (write it with
    /// [`save_state`](Self::save_state)).
    pub fn shutdown(&self) {
        self.stop.stop();
        for log in self.logs.borrow().iter() {
            log.stop.stop();
        }
        // Now, before any poller runs again: a stopped poller still counts entries it no longer publishes.
        self.record_positions();
        self.logs.borrow_mut().clear();
    }

    /// Writes the positions recorded last (after [`shutdown`](Self::shutdown): where every log stopped).
    pub async fn save_state(&self) {
        if let Some(state) = &self.state {
            let bytes = self.encoded_positions(state);
            state.save(bytes).await;
        }
    }

    /// Saves the positions every interval until shutdown. Each save writes what was recorded one interval
    /// earlier: those entries were published an interval ago and have reached the sockets of the clients that
    /// keep up, so a crash right after a save loses nothing still queued for a client; at most about two
    /// intervals of entries are delivered again after a crash.
    async fn keep_saving(self: Rc<Self>, state: Rc<StateFile>) {
        let mut settled = None;
        while self.stop.sleep(self.config.state_save_interval).await {
            self.record_positions();
            let latest = self.encoded_positions(&state);
            if let Some(bytes) = settled.replace(latest) {
                state.save(bytes).await;
            }
        }
    }

    /// Records in the state where each followed log is (and that it is listed), and forgets the logs that left
    /// the list too long ago.
    fn record_positions(&self) {
        let Some(state) = &self.state else { return };
        let now = unix_now();
        let logs = self.logs.borrow();
        state.record_listed(
            logs.iter()
                .map(|f| (f.info.log_id.as_str(), position(&f.status.borrow()))),
            now,
        );
        if self.list.borrow().loaded_at.is_none() {
            // Nothing says yet which logs are listed (a server down for a week would forget them all).
            return;
        }
        for log_id in state.positions.borrow_mut().forget_departed(now) {
            tracing::info!(%log_id, "forgetting the saved position of a log out of the list for a week");
        }
    }

    /// Loads the list once and applies it; on failure keeps the current one (or falls back to the snapshot).
    pub(crate) async fn refresh(&self) {
        let source = redact::location(
            self.config
                .log_list
                .as_deref()
                .unwrap_or(GOOGLE_LOG_LIST_URL),
        );
        let loaded = self.load_primary().await;
        if self.stop.is_stopped() {
            return;
        }
        let primary = match loaded {
            Ok(list) => {
                self.record_load(source, list.version.clone());
                list
            }
            Err(error) => {
                let error = redact::urls_in(&error.to_string());
                tracing::warn!(list = %source, %error, "cannot load the log list");
                let never_loaded = {
                    let mut state = self.list.borrow_mut();
                    state.failures += 1;
                    state.last_error = Some(format!("{source}: {error}"));
                    state.loaded_at.is_none()
                };
                if !never_loaded {
                    tracing::info!("keeping the previous log list");
                    return;
                }
                match LogList::compiled_in() {
                    Ok(snapshot) => {
                        tracing::warn!("following the compiled-in snapshot of Chrome's log list");
                        self.record_load("compiled-in snapshot".into(), snapshot.version.clone());
                        snapshot
                    }
                    Err(error) => {
                        tracing::error!(%error, "the compiled-in log list does not parse");
                        return;
                    }
                }
            }
        };
        let list = self.merge_apple(primary).await;
        for skipped in &list.skipped {
            tracing::warn!(log = %skipped.log, reason = %skipped.reason, "skipping log list entry");
        }
        self.apply(&list);
    }

    fn record_load(&self, source: String, version: Option<String>) {
        let mut state = self.list.borrow_mut();
        state.source = source;
        state.version = version;
        state.loaded_at = Some(unix_now());
        state.loads += 1;
    }

    /// Chrome's list (always signature-checked), or the custom one; both read within the same bounds.
    async fn load_primary(&self) -> Result<LogList, LoadError> {
        let (location, signature) = match &self.config.log_list {
            Some(location) => (location.as_str(), self.config.log_list_signature.as_deref()),
            None => (GOOGLE_LOG_LIST_URL, Some(GOOGLE_LOG_LIST_SIG_URL)),
        };
        let json = self.read(location).await?;
        if let Some(signature) = signature {
            let signature = self.read(signature).await?;
            log_list::verify_signature(&json, &signature, GOOGLE_LOG_LIST_PUBKEY_PEM)?;
        }
        Ok(LogList::parse(&json)?)
    }

    /// The primary list merged with Apple's when asked for (its last good copy when this fetch fails).
    async fn merge_apple(&self, primary: LogList) -> LogList {
        if !self.config.apple_log_list {
            return primary;
        }
        let fetched = match self.read(APPLE_LOG_LIST_URL).await {
            Ok(json) => LogList::parse(&json).map_err(LoadError::List),
            Err(error) => Err(error),
        };
        let mut state = self.list.borrow_mut();
        match fetched {
            Ok(apple) => state.apple = Some(apple),
            Err(error) => {
                let error = redact::urls_in(&error.to_string());
                tracing::warn!(list = APPLE_LOG_LIST_URL, %error, "cannot load Apple's log list");
                state.failures += 1;
                state.last_error = Some(format!("{APPLE_LOG_LIST_URL}: {error}"));
            }
        }
        LogList::merge([primary].into_iter().chain(state.apple.clone()))
    }

    /// The bytes at a URL (`http://`, `https://`) or in a file: at most `log_list_max_size` of them, within
    /// `log_list_timeout`.
    async fn read(&self, location: &str) -> Result<Vec<u8>, LoadError> {
        let (max_size, timeout) = (self.config.log_list_max_size, self.config.log_list_timeout);
        let failed = |source| LoadError::Read {
            location: redact::location(location),
            source,
        };
        if !(location.starts_with("http://") || location.starts_with("https://")) {
            return operator_input::read_file(location, max_size, timeout)
                .await
                .map_err(failed);
        }
        // Capped while it is read, like a file: a list URL cannot make us hold more than `max_size`.
        let response = self
            .http
            .get_limited(location, &[], timeout, max_size)
            .await
            .map_err(|e| match e {
                HttpError::Timeout(_) => failed(InputError::TimedOut(timeout)),
                HttpError::BodyTooLarge { .. } => failed(InputError::TooLarge { limit: max_size }),
                e => LoadError::Fetch(e),
            })?;
        if response.status != 200 {
            return Err(LoadError::Status {
                url: redact::location(location),
                status: response.status,
            });
        }
        Ok(response.body.to_vec())
    }

    /// Starts pollers for the logs `list` selects that are not followed yet, stops those it no longer selects, and
    /// restarts, at their position, those whose poller inputs changed.
    pub(crate) fn apply(&self, list: &LogList) {
        let selected: Vec<&LogInfo> = list.selected(self.config.include_pending).collect();
        let mut logs = self.logs.borrow_mut();
        logs.retain_mut(|followed| {
            let Some(listed) = selected.iter().find(|l| l.log_id == followed.info.log_id) else {
                tracing::info!(log = %followed.info.description, "log left the list: stopping its poller");
                self.depart(followed);
                return false;
            };
            if same_poller_inputs(&followed.info, listed) {
                // Only what is shown (e.g. the state) follows the list.
                followed.info = (*listed).clone();
                return true;
            }
            followed.stop.stop();
            tracing::info!(
                log = %listed.description,
                from = %redact::location(read_url(&followed.info.kind)),
                to = %redact::location(read_url(&listed.kind)),
                next_index = followed.status.borrow().next_index,
                "log changed in the list: restarting its poller where it was"
            );
            match self.follow(listed, Some(followed)) {
                Ok(successor) => {
                    *followed = successor;
                    true
                }
                Err(error) => {
                    tracing::warn!(log = %listed.description, %error, "cannot follow log at its new URL: stopped like a log that left the list");
                    self.depart(followed);
                    false
                }
            }
        });
        for info in selected {
            if logs.iter().any(|f| f.info.log_id == info.log_id) {
                continue;
            }
            match self.follow(info, None) {
                Ok(followed) => logs.push(followed),
                Err(error) => {
                    tracing::warn!(log = %info.description, %error, "cannot follow log");
                }
            }
        }
    }

    /// Stops a log no longer followed: its position is kept in the state (for a while: it resumes there if it
    /// comes back) and what it counted stays in the totals.
    fn depart(&self, followed: &Followed) {
        followed.stop.stop();
        if let Some(state) = &self.state {
            state.positions.borrow_mut().record_departed(
                &followed.info.log_id,
                position(&followed.status.borrow()),
                unix_now(),
            );
        }
        self.departed
            .set(self.departed.get().plus(&followed.status.borrow()));
    }

    /// Spawns the poller of one log; with `predecessor` (stopped), the new one continues at its next index and
    /// carries on its counters.
    fn follow(&self, info: &LogInfo, predecessor: Option<&Followed>) -> Result<Followed, String> {
        let key = info.key().map_err(|e| e.to_string())?;
        // The list only checks the shape of its URLs; the client that will fetch them decides (e.g. the port).
        for url in [listed_url(&info.kind), read_url(&info.kind)] {
            Target::parse(url).map_err(|e| redact::urls_in(&e.to_string()))?;
        }
        let (listed_url, read_url, origin, kind) = match &info.kind {
            LogKind::Rfc6962 { url } => (url, url, String::new(), message::SourceKind::Rfc6962),
            LogKind::Tiled {
                submission_url,
                monitoring_url,
            } => (
                submission_url,
                monitoring_url,
                origin_from_submission_url(submission_url).to_owned(),
                message::SourceKind::Tiled {
                    monitoring_url: monitoring_url.clone(),
                },
            ),
        };
        let previous: Option<LogStatus> = predecessor.map(|p| p.status.borrow().clone());
        let target = Rc::new(LogTarget {
            source: LogSource::new(&info.description, listed_url, kind).with_log_id(&info.log_id),
            read_url: read_url.clone(),
            origin,
            key,
            final_tree_size: final_tree_size(info),
        });
        let mut sink = self.publisher.sink(&info.description);
        if let Some(predecessor) = predecessor {
            sink = sink.with_counts(predecessor.counts.clone());
        }
        let counts = sink.counts();
        let stop = StopToken::default();
        let ctx = PollerContext {
            // Its own pool partition: nothing another log's server sends can be read as this log's answer.
            http: Rc::new(self.http.partitioned(&info.log_id)),
            sink: Rc::new(UntilStopped {
                sink,
                stop: stop.clone(),
            }),
            options: self.options.clone(),
        };
        // A log followed for the first time starts from an empty status.
        let status = SharedStatus::new(RefCell::new(previous.unwrap_or_default()));
        tracing::info!(log = %info.description, url = %redact::location(read_url), "following log");
        let issuers = self.issuers.clone();
        let is_tiled = matches!(info.kind, LogKind::Tiled { .. });
        // A predecessor (the same log at its previous URL) hands over its position; else the state file may hold one.
        let start = match predecessor.and_then(|p| position(&p.status.borrow())) {
            Some(at) => Start::Continue(at),
            None => self
                .state
                .as_ref()
                .and_then(|state| state.positions.borrow().get(&info.log_id))
                .map_or(Start::Head, |saved| Start::Saved {
                    index: saved.next_index,
                    max_backlog: self.config.max_resume_backlog,
                }),
        };
        let (poller_status, poller_stop) = (status.clone(), stop.clone());
        let run = move |start| {
            let (ctx, target, status, stop) = (
                ctx.clone(),
                target.clone(),
                poller_status.clone(),
                poller_stop.clone(),
            );
            let issuers = issuers.clone();
            async move {
                if is_tiled {
                    tiled::run(ctx, issuers, target, status, stop, start).await;
                } else {
                    rfc6962::run(ctx, target, status, stop, start).await;
                }
            }
        };
        let (log, task_status, task_stop) =
            (info.description.clone(), status.clone(), stop.clone());
        monoio::spawn(keep_polling(log, task_status, task_stop, start, run));
        Ok(Followed {
            info: info.clone(),
            status,
            counts,
            stop,
        })
    }

    /// Log IDs of the logs followed now, in the order they were started.
    pub fn followed(&self) -> Vec<String> {
        self.logs
            .borrow()
            .iter()
            .map(|f| f.info.log_id.clone())
            .collect()
    }
}

/// Where a poller that stopped (or panicked) left its log: its next undelivered index, once it verified a tree head
/// (before that it has no position, and a successor starts as a new poller would).
fn position(status: &LogStatus) -> Option<u64> {
    (status.claimed_tree_size > 0).then_some(status.next_index)
}

/// A poller's sink that takes nothing once the poller is told to stop: an entry the stopped poller still had in
/// hand belongs to its successor (which starts at the index the stop left), so passing it on would repeat it.
struct UntilStopped {
    sink: LogSink,
    stop: StopToken,
}

impl EntrySink for UntilStopped {
    fn deliver(&self, log: &LogSource, index: u64, entry: &LogEntry<'_>, chain: &[&[u8]]) {
        if !self.stop.is_stopped() {
            self.sink.deliver(log, index, entry, chain);
        }
    }

    fn gate(&self) -> Option<Gate> {
        self.sink.gate()
    }
}

/// Whether a poller built for `running` also serves `listed`: same read URLs, name and final size. The key cannot
/// differ (the log ID is its hash).
fn same_poller_inputs(running: &LogInfo, listed: &LogInfo) -> bool {
    running.kind == listed.kind
        && running.description == listed.description
        && final_tree_size(running) == final_tree_size(listed)
}

/// A read-only log's final size.
fn final_tree_size(info: &LogInfo) -> Option<u64> {
    match info.state {
        LogState::ReadOnly { final_tree_size } => Some(final_tree_size),
        _ => None,
    }
}

/// Where a log is read: an RFC 6962 log's URL, a tiled log's monitoring prefix.
fn read_url(kind: &LogKind) -> &str {
    match kind {
        LogKind::Rfc6962 { url } => url,
        LogKind::Tiled { monitoring_url, .. } => monitoring_url,
    }
}

/// Runs the poller `run(start)` makes inside a panic boundary until it returns (stopped, or a read-only log fully
/// delivered). A panic restarts it after the backoff, from the next undelivered index once it had one.
async fn keep_polling<P, F>(
    log: String,
    status: SharedStatus,
    stop: StopToken,
    mut start: Start,
    mut run: P,
) where
    P: FnMut(Start) -> F,
    F: Future<Output = ()>,
{
    let mut backoff = RESTART_BACKOFF_MIN;
    loop {
        let started = Instant::now();
        let Err(panicked) = CatchUnwind::new(run(start)).await else {
            return;
        };
        if started.elapsed() >= RESTART_BACKOFF_MAX {
            backoff = RESTART_BACKOFF_MIN;
        }
        {
            let mut status = status.borrow_mut();
            status.restarts += 1;
            start = position(&status).map_or(start, Start::Continue);
            status.last_error = Some(format!("poller {panicked}"));
        }
        tracing::error!(log = %log, %panicked, ?start, backoff_ms = backoff.as_millis() as u64, "poller panicked; restarting it");
        if !stop.sleep(backoff).await {
            return;
        }
        backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn state_name(state: LogState) -> &'static str {
    match state {
        LogState::Pending => "pending",
        LogState::Qualified => "qualified",
        LogState::Usable => "usable",
        LogState::ReadOnly { .. } => "readonly",
        LogState::Retired => "retired",
        LogState::Rejected => "rejected",
        LogState::None => "none",
    }
}

/// The URL a log is known by (a tiled log's submission prefix).
fn listed_url(kind: &LogKind) -> &str {
    match kind {
        LogKind::Rfc6962 { url } => url,
        LogKind::Tiled { submission_url, .. } => submission_url,
    }
}

impl Followed {
    /// Entries that produced no message, whatever the reason.
    fn skipped(&self) -> u64 {
        let status = self.status.borrow();
        status.skipped + status.panicked + self.counts.rejected.get() + self.counts.oversized.get()
    }
}

/// `/stats` → `logs` and the `certstream_log_*{log,url}` families: one row per followed log.
const LOGS: Table<Followed> = Table {
    stats: "logs",
    rows_name: "certstream_logs_followed",
    rows_help: "CT logs being followed.",
    labels: |f| {
        vec![
            ("log", f.info.description.clone()),
            ("url", redact::location(listed_url(&f.info.kind))),
        ]
    },
    facts: &[
        Fact {
            stats: "description",
            read: |f| f.info.description.as_str().into(),
        },
        Fact {
            stats: "url",
            read: |f| redact::location(listed_url(&f.info.kind)).into(),
        },
        Fact {
            stats: "kind",
            read: |f| match f.info.kind {
                LogKind::Rfc6962 { .. } => "rfc6962".into(),
                LogKind::Tiled { .. } => "tiled".into(),
            },
        },
        Fact {
            stats: "state",
            read: |f| state_name(f.info.state).into(),
        },
        Fact {
            stats: "resumed_from",
            read: |f| f.status.borrow().resumed_from.into(),
        },
        Fact {
            stats: "last_error",
            read: |f| {
                f.status
                    .borrow()
                    .last_error
                    .as_deref()
                    .map(redact::urls_in)
                    .into()
            },
        },
    ],
    metrics: &[
        Metric::gauge(
            "certstream_log_tree_size",
            "tree_size",
            "Latest verified tree size.",
            |f| f.status.borrow().tree_size,
        ),
        Metric::gauge(
            "certstream_log_next_index",
            "next_index",
            "Next index to deliver.",
            |f| f.status.borrow().next_index,
        ),
        Metric::gauge(
            "certstream_log_lag",
            "lag",
            "Entries in the log not delivered yet.",
            |f| f.status.borrow().lag(),
        ),
        Metric::counter(
            "certstream_log_delivered_total",
            "delivered",
            "Entries delivered by the poller.",
            |f| f.status.borrow().delivered,
        ),
        Metric::counter(
            "certstream_log_published_total",
            "published",
            "Messages published.",
            |f| f.counts.published.get(),
        ),
        Metric::counter(
            "certstream_log_unparseable_total",
            "unparseable",
            "Entries whose certificate x509-parser rejected (part of skipped).",
            |f| f.counts.rejected.get(),
        ),
        Metric::counter(
            "certstream_log_skipped_total",
            "skipped",
            "Entries that produced no message (undecodable, unparseable, oversized or panicked).",
            Followed::skipped,
        ),
        Metric::counter(
            "certstream_log_panicked_total",
            "panicked",
            "Entries skipped because building them panicked.",
            |f| f.status.borrow().panicked,
        ),
        Metric::counter(
            "certstream_log_oversized_total",
            "oversized",
            "Entries skipped because their certificate or message exceeded a byte budget.",
            |f| f.counts.oversized.get(),
        ),
        Metric::counter(
            "certstream_log_restarts_total",
            "restarts",
            "Times the poller panicked and was restarted.",
            |f| f.status.borrow().restarts,
        ),
        Metric::counter(
            "certstream_log_broken_tiles_total",
            "broken_tiles",
            "Tile answers whose framing was broken (retried).",
            |f| f.status.borrow().broken_tiles,
        ),
        Metric::counter(
            "certstream_log_implausible_heads_total",
            "implausible_heads",
            "Tree heads that grew implausibly fast (followed at the capped rate).",
            |f| f.status.borrow().implausible_heads,
        ),
        Metric::gauge(
            "certstream_log_claimed_tree_size",
            "claimed_tree_size",
            "Tree size the latest verified head claims (tree_size is what is followed of it).",
            |f| f.status.borrow().claimed_tree_size,
        ),
        Metric::counter(
            "certstream_log_errors_total",
            "errors",
            "Failed requests or bad responses.",
            |f| f.status.borrow().errors,
        ),
        Metric::counter(
            "certstream_log_rate_limited_total",
            "rate_limited",
            "429 answers.",
            |f| f.status.borrow().rate_limited,
        ),
        Metric {
            name: "certstream_log_delay_seconds",
            kind: Kind::Gauge,
            help: "Politeness delay between requests.",
            stats: "delay_ms",
            read: Read::Millis(|f| f.status.borrow().delay_ms),
        },
        Metric {
            name: "certstream_log_backoff_seconds",
            kind: Kind::Gauge,
            help: "Current error backoff.",
            stats: "backoff_ms",
            read: Read::Millis(|f| f.status.borrow().backoff_ms),
        },
        Metric::counter(
            "certstream_log_resume_skipped_total",
            "resume_skipped",
            "Entries skipped at start because the saved position was more than --max-resume-backlog behind.",
            |f| f.status.borrow().resume_skipped,
        ),
        Metric::counter(
            "certstream_log_incomplete_chains_total",
            "incomplete_chains",
            "Entries delivered with a shortened chain (an issuer stayed unavailable).",
            |f| f.status.borrow().incomplete_chains,
        ),
    ],
};

/// Where the list in use came from, and how loading it went (`/stats` → `log_list`).
const LIST_FACTS: &[Fact<ListState>] = &[
    Fact {
        stats: "log_list.source",
        read: |l| l.source.as_str().into(),
    },
    Fact {
        stats: "log_list.version",
        read: |l| l.version.as_deref().into(),
    },
    Fact {
        stats: "log_list.loaded_at",
        read: |l| l.loaded_at.into(),
    },
    // Already redacted when recorded.
    Fact {
        stats: "log_list.last_error",
        read: |l| l.last_error.as_deref().into(),
    },
];

const LIST_METRICS: &[Metric<ListState>] = &[
    Metric::counter(
        "certstream_log_list_loads_total",
        "log_list.loads",
        "Log list loads that succeeded.",
        |l| l.loads,
    ),
    Metric::counter(
        "certstream_log_list_failures_total",
        "log_list.failures",
        "Log list loads that failed (the previous list was kept).",
        |l| l.failures,
    ),
];

/// Sums over every log followed since start.
#[derive(Clone, Copy, Default)]
struct Totals {
    panicked: u64,
    restarts: u64,
}

impl Totals {
    fn plus(self, status: &LogStatus) -> Self {
        Self {
            panicked: self.panicked + status.panicked,
            restarts: self.restarts + status.restarts,
        }
    }
}

/// Ingestion as a whole at one instant (`/stats` → `ingest`).
struct IngestSnapshot {
    totals: Totals,
    issuer_cache_bytes: usize,
    issuer_cache_evicted: u64,
}

const INGEST_METRICS: &[Metric<IngestSnapshot>] = &[
    Metric::counter(
        "certstream_entries_panicked_total",
        "ingest.panicked",
        "Entries skipped because building them panicked.",
        |s| s.totals.panicked,
    ),
    Metric::counter(
        "certstream_poller_restarts_total",
        "ingest.restarts",
        "Pollers restarted after a panic.",
        |s| s.totals.restarts,
    ),
    Metric::gauge(
        "certstream_issuer_cache_bytes",
        "ingest.issuer_cache_bytes",
        "Bytes held by the issuer cache (at most --issuer-cache-bytes).",
        |s| s.issuer_cache_bytes as u64,
    ),
    Metric::counter(
        "certstream_issuer_cache_evicted_total",
        "ingest.issuer_cache_evicted",
        "Issuers dropped to stay within --issuer-cache-bytes.",
        |s| s.issuer_cache_evicted,
    ),
];

impl Supervisor {
    fn totals(&self) -> Totals {
        self.logs
            .borrow()
            .iter()
            .fold(self.departed.get(), |totals, followed| {
                totals.plus(&followed.status.borrow())
            })
    }
}

impl StatusReporter for Supervisor {
    fn report(&self, out: &mut Report<'_>) {
        let ingest = IngestSnapshot {
            totals: self.totals(),
            issuer_cache_bytes: self.issuers.bytes(),
            issuer_cache_evicted: self.issuers.evicted(),
        };
        out.metrics(INGEST_METRICS, &ingest);
        let list = self.list.borrow();
        out.facts(LIST_FACTS, &list);
        out.metrics(LIST_METRICS, &list);
        out.table(&LOGS, &self.logs.borrow());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::Hub;
    use crate::metrics::tests::{assert_both_outputs_agree, stats_of, text_of};

    /// The snapshot's selected logs, reduced to those at `positions`.
    fn subset(list: &LogList, positions: &[usize]) -> LogList {
        let selected: Vec<LogInfo> = list.selected(false).cloned().collect();
        LogList {
            version: None,
            logs: positions.iter().map(|&i| selected[i].clone()).collect(),
            skipped: Vec::new(),
        }
    }

    /// A supervisor with the default configuration, publishing to a small hub (call inside a runtime).
    fn test_supervisor() -> Supervisor {
        let config = IngestConfig::default();
        let http = Rc::new(HttpClient::new(config.http_client_config()).unwrap());
        let publisher = Rc::new(Publisher::to_hub(&Hub::new(4), Default::default()));
        Supervisor::new(config, http, publisher)
    }

    #[test]
    fn a_log_whose_url_the_client_refuses_is_not_followed() {
        crate::runtime::block_on(async {
            let supervisor = test_supervisor();
            let mut list = subset(&LogList::compiled_in().unwrap(), &[0, 1]);
            for (log, url) in list
                .logs
                .iter_mut()
                .zip(["http://ct.example:99999/", "http://[zz]/"])
            {
                log.kind = LogKind::Rfc6962 { url: url.into() };
            }
            supervisor.apply(&list);
            assert!(
                supervisor.followed().is_empty(),
                "{:?}",
                supervisor.followed()
            );
        })
        .unwrap();
    }

    #[test]
    fn applying_lists_starts_and_stops_pollers_by_log_id() {
        crate::runtime::block_on(async {
            let supervisor = test_supervisor();
            let snapshot = LogList::compiled_in().unwrap();
            let ids = |positions: &[usize]| -> Vec<String> {
                subset(&snapshot, positions)
                    .logs
                    .into_iter()
                    .map(|l| l.log_id)
                    .collect()
            };
            supervisor.apply(&subset(&snapshot, &[0, 1, 2]));
            assert_eq!(supervisor.followed(), ids(&[0, 1, 2]));
            let first_stop = supervisor.logs.borrow()[0].stop.clone();
            supervisor.apply(&subset(&snapshot, &[1, 2, 3]));
            assert_eq!(supervisor.followed(), ids(&[1, 2, 3]));
            assert!(
                first_stop.is_stopped(),
                "the removed log's poller is told to stop"
            );
            // Listed twice (e.g. Google's and Apple's lists before merging): followed once.
            supervisor.apply(&subset(&snapshot, &[3, 3, 1]));
            assert_eq!(supervisor.followed(), ids(&[1, 3]));

            let stats = stats_of(&supervisor);
            let logs = stats["logs"].as_array().unwrap();
            assert_eq!(logs.len(), 2);
            for key in [
                "description",
                "url",
                "kind",
                "state",
                "tree_size",
                "lag",
                "last_error",
            ] {
                assert!(logs[0].get(key).is_some(), "{key} missing: {}", logs[0]);
            }
            let metrics = text_of(&supervisor);
            assert!(
                metrics.contains("certstream_logs_followed 2\n"),
                "{metrics}"
            );
            assert_eq!(
                metrics
                    .lines()
                    .filter(|l| l.starts_with("certstream_log_lag{"))
                    .count(),
                2
            );
            assert_both_outputs_agree(&[&supervisor]);

            let kept: Vec<StopToken> = supervisor
                .logs
                .borrow()
                .iter()
                .map(|f| f.stop.clone())
                .collect();
            supervisor.shutdown();
            assert!(supervisor.followed().is_empty());
            assert!(kept.iter().all(StopToken::is_stopped));
        })
        .unwrap();
    }

    /// A panic in a poller's own code restarts it, after the backoff, from its next undelivered index. (No input
    /// is known to make a poller panic, so the test's poller panics on purpose.)
    #[test]
    fn a_panicking_poller_restarts_from_its_next_index_after_a_backoff() {
        crate::runtime::block_on(async {
            let status = SharedStatus::default();
            // Each start: where it resumed, and when.
            type Starts = Rc<RefCell<Vec<(Start, Instant)>>>;
            let starts: Starts = Rc::default();
            let poller = {
                let (starts, status) = (starts.clone(), status.clone());
                move |resume| {
                    let (starts, status) = (starts.clone(), status.clone());
                    async move {
                        starts.borrow_mut().push((resume, Instant::now()));
                        if starts.borrow().len() == 1 {
                            {
                                let mut status = status.borrow_mut();
                                status.claimed_tree_size = 100;
                                status.next_index = 42;
                            }
                            monoio::time::sleep(Duration::from_millis(1)).await;
                            panic!("a bug in the poller");
                        }
                    }
                }
            };
            keep_polling(
                "test log".into(),
                status.clone(),
                StopToken::default(),
                Start::Head,
                poller,
            )
            .await;
            let starts = starts.borrow();
            assert_eq!(starts.len(), 2);
            assert_eq!(
                (starts[0].0, starts[1].0),
                (Start::Head, Start::Continue(42))
            );
            assert!(starts[1].1 - starts[0].1 >= RESTART_BACKOFF_MIN);
            let status = status.borrow();
            assert_eq!(status.restarts, 1);
            assert!(
                status
                    .last_error
                    .as_deref()
                    .unwrap()
                    .contains("a bug in the poller")
            );
        })
        .unwrap();
    }

    /// A fresh directory of its own for one test (removed by the test).
    fn fresh_dir(test: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "certstream-supervisor-{test}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The state file in `dir`.
    async fn state_file_in(dir: &std::path::Path) -> Rc<StateFile> {
        Rc::new(
            StateFile::open(dir.join("state.json"), false)
                .await
                .unwrap(),
        )
    }

    /// Positions are taken the instant pollers stop (a stopped poller may still count entries it no longer
    /// publishes); a log that leaves the list keeps its position for when it comes back.
    #[test]
    fn positions_are_recorded_when_pollers_stop_and_kept_for_logs_that_leave() {
        let dir = fresh_dir("state");
        crate::runtime::block_on(async {
            let state = state_file_in(&dir).await;
            let supervisor = test_supervisor().with_state_file(state.clone());
            let all = LogList::compiled_in().unwrap();
            supervisor.apply(&subset(&all, &[0, 1]));
            supervisor.record_load("test".into(), None);
            let (ids, statuses): (Vec<String>, Vec<SharedStatus>) = supervisor
                .logs
                .borrow()
                .iter()
                .map(|f| (f.info.log_id.clone(), f.status.clone()))
                .unzip();
            for (status, next) in statuses.iter().zip([42, 7]) {
                let mut status = status.borrow_mut();
                (status.claimed_tree_size, status.next_index) = (100, next);
            }
            supervisor.apply(&subset(&all, &[1]));
            statuses[0].borrow_mut().next_index = 43;
            supervisor.shutdown();
            statuses[1].borrow_mut().next_index = 8;
            let positions = state.positions.borrow();
            let saved = |id: &str| positions.get(id).map(|s| s.next_index);
            assert_eq!((saved(&ids[0]), saved(&ids[1])), (Some(42), Some(7)));
        })
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `certstream_entries_panicked_total` and `certstream_poller_restarts_total` are counters: a log leaving the
    /// list must not take its share out of them.
    #[test]
    fn the_totals_keep_what_departed_logs_counted() {
        crate::runtime::block_on(async {
            let supervisor = test_supervisor();
            let all = LogList::compiled_in().unwrap();
            supervisor.apply(&subset(&all, &[0, 1]));
            for (followed, (panicked, restarts)) in
                supervisor.logs.borrow().iter().zip([(3, 1), (5, 2)])
            {
                let mut status = followed.status.borrow_mut();
                (status.panicked, status.restarts) = (panicked, restarts);
            }
            supervisor.apply(&subset(&all, &[1]));
            let stats = stats_of(&supervisor);
            assert_eq!(stats["ingest"]["panicked"], 8);
            assert_eq!(stats["ingest"]["restarts"], 3);
            supervisor.shutdown();
        })
        .unwrap();
    }

    /// A log whose new URL cannot be followed departs like a log that left the list: its position is kept in the
    /// state (it resumes there once its URL is fixed) and its counters stay in the totals.
    #[test]
    fn a_log_whose_new_url_cannot_be_followed_keeps_its_position_and_counters() {
        let dir = fresh_dir("moved");
        crate::runtime::block_on(async {
            let state = state_file_in(&dir).await;
            let supervisor = test_supervisor().with_state_file(state.clone());
            let mut list = subset(&LogList::compiled_in().unwrap(), &[0, 1]);
            supervisor.apply(&list);
            let (id, old_stop) = {
                let logs = supervisor.logs.borrow();
                let mut status = logs[0].status.borrow_mut();
                (status.claimed_tree_size, status.next_index) = (100, 42);
                (status.panicked, status.restarts) = (3, 1);
                (logs[0].info.log_id.clone(), logs[0].stop.clone())
            };
            let LogKind::Rfc6962 { url } = &mut list.logs[0].kind else {
                panic!("the snapshot's first log is an RFC 6962 log");
            };
            *url = "http://ct.example:99999/".to_owned();
            supervisor.apply(&list);
            assert!(old_stop.is_stopped());
            assert_eq!(
                supervisor.followed().len(),
                1,
                "the moved log is not followed"
            );
            assert_eq!(
                state.positions.borrow().get(&id).map(|s| s.next_index),
                Some(42)
            );
            let stats = stats_of(&supervisor);
            assert_eq!(stats["ingest"]["panicked"], 3);
            assert_eq!(stats["ingest"]["restarts"], 1);
            supervisor.shutdown();
        })
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_log_whose_url_changes_gets_a_new_poller_that_keeps_its_position_and_counters() {
        crate::runtime::block_on(async {
            let supervisor = test_supervisor();
            let mut list = subset(&LogList::compiled_in().unwrap(), &[0, 1]);
            supervisor.apply(&list);
            let (old_stop, other_stop) = {
                let logs = supervisor.logs.borrow();
                let mut status = logs[0].status.borrow_mut();
                (
                    status.claimed_tree_size,
                    status.next_index,
                    status.delivered,
                ) = (100, 42, 7);
                logs[0].counts.published.set(5);
                (logs[0].stop.clone(), logs[1].stop.clone())
            };
            // Only the state changes: nothing restarts.
            list.logs[0].state = LogState::Qualified;
            supervisor.apply(&list);
            assert!(!old_stop.is_stopped());
            let LogKind::Rfc6962 { url } = &mut list.logs[0].kind else {
                panic!("the snapshot's first log is an RFC 6962 log");
            };
            *url = "https://moved.example/log/".to_owned();
            supervisor.apply(&list);
            assert!(old_stop.is_stopped(), "the poller at the old URL stops");
            assert!(!other_stop.is_stopped(), "the other log is left alone");
            let logs = supervisor.logs.borrow();
            assert_eq!(logs.len(), 2);
            assert_eq!(listed_url(&logs[0].info.kind), "https://moved.example/log/");
            assert!(!logs[0].stop.is_stopped());
            {
                let status = logs[0].status.borrow();
                assert_eq!((status.next_index, status.delivered), (42, 7));
                assert_eq!(logs[0].counts.published.get(), 5);
            }
            // A per-log error quoting a URL is shown redacted.
            logs[0].status.borrow_mut().last_error = Some(
                "get-sth: invalid URL \"https://u:hunter2@moved.example/?token=s3cr3t\"".into(),
            );
            drop(logs);
            let stats = stats_of(&supervisor);
            assert_eq!(
                stats["logs"][0]["last_error"],
                "get-sth: invalid URL \"https://***@moved.example/?***\""
            );
        })
        .unwrap();
    }
}
