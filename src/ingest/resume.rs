//! Resume after a restart: each log's next index, saved by log ID in the state file (`--state-file`).
//!
//! - **The state** ([`Positions`], sans-I/O): per log ID (never the URL, which can change) the next index to
//!   deliver, when it was saved and when the log was last in the list. A log that left the list keeps its entry for
//!   [`DEPARTED_RETENTION_SECONDS`] (it resumes from it if it comes back), then the entry is dropped. Encoded as
//!   versioned JSON, at most [`MAX_STATE_FILE_BYTES`]; a file that is bigger, not JSON, of another version or with a bad entry
//!   is refused with the reason ([`StateError`]), never silently reset.
//! - **Where a log starts** is the follower's decision at the log's first verified head ([`super::Start::Saved`]):
//!   at its saved index, unless that is more than `--max-resume-backlog` entries behind the log's current size;
//!   then at the current size, the skipped entries logged and counted.
//! - **The file** ([`StateFile`]): read once at start, written every `--state-save-interval` and at shutdown,
//!   atomically (temporary file, fsync, rename, fsync of the directory) by a helper thread under a deadline
//!   ([`crate::operator_input`]), so a slow or hung disk never holds the reactor.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::log_throttle::LogThrottle;
use crate::metrics::{Fact, Metric, Report, StatusReporter};
use crate::operator_input::{self, FileWriter, InputError};
use crate::redact;

/// Default `--max-resume-backlog`: about an hour of the busiest real log (a few hundred entries a second), so an
/// upgrade, a reboot or a short outage is caught up; following a million entries at the default growth cap
/// (`--max-log-growth`, 2,000 a second) takes about 8 minutes, beyond which a log would stream hours-old
/// certificates for longer than it is worth: it starts from its current size instead, the skip logged and counted.
pub const DEFAULT_MAX_RESUME_BACKLOG: u64 = 1_000_000;

/// Default `--state-save-interval`: after a crash (`kill -9`) at most about two intervals of entries are
/// delivered again ([`StateFile`]); a save costs one small file write and two fsyncs, off the reactor.
pub const DEFAULT_SAVE_INTERVAL: Duration = Duration::from_secs(5);

/// How long a log that left the list keeps its saved position, in seconds: a log dropped by mistake or by a list
/// rollback comes back within days; after a week its backlog is past any sensible `--max-resume-backlog`.
pub(crate) const DEPARTED_RETENTION_SECONDS: u64 = 7 * 24 * 3600;

/// The largest state file read: an entry takes ~110 bytes, so this holds thousands of logs (Chrome's list has
/// about a hundred, ever).
pub(crate) const MAX_STATE_FILE_BYTES: usize = 1 << 20;

/// At most this many logs are kept, so the file stays under the cap even with a hostile custom list of thousands of
/// logs: logs that left the list make room (the least recently listed first); a listed log's position is never
/// dropped, and a listed log beyond the bound is not saved (counted in `state_file.unsaved_logs`).
pub(crate) const MAX_SAVED_LOGS: usize = 4096;

/// A log ID is the base64 of a SHA-256 (44 characters); anything much longer is not one.
const MAX_LOG_ID_CHARS: usize = 64;

/// The version written; another one is refused (a newer server's file is not guessed at).
const FORMAT_VERSION: u32 = 1;

/// At most one warning per this interval about listed logs whose position is not saved.
const UNSAVED_WARNING_INTERVAL: Duration = Duration::from_secs(600);

/// Deadline of each read or write of the state file.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// One log's saved position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Saved {
    /// The next index to deliver.
    pub next_index: u64,
    /// When `next_index` was recorded, Unix seconds.
    pub saved_at: u64,
    /// When the log was last in the list, Unix seconds.
    pub listed_at: u64,
}

/// The saved positions, by log ID.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Positions {
    logs: BTreeMap<String, Saved>,
    /// Listed logs not saved at the last round for want of room (not in the file).
    unsaved: usize,
}

/// The file's shape.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    version: u32,
    logs: BTreeMap<String, Saved>,
}

/// Why a state file's content was refused.
#[derive(Debug)]
pub(crate) enum StateError {
    /// More than [`MAX_STATE_FILE_BYTES`].
    TooLarge,
    /// Not JSON of the expected shape.
    Malformed(serde_json::Error),
    /// Written by another format version.
    Version(u32),
    /// A key that cannot be a log ID.
    BadLogId(String),
    /// More than [`MAX_SAVED_LOGS`] logs.
    TooManyLogs(usize),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge => write!(f, "larger than the {MAX_STATE_FILE_BYTES}-byte cap"),
            Self::Malformed(e) => write!(f, "not a state file: {e}"),
            Self::Version(v) => write!(
                f,
                "format version {v}, this server reads version {FORMAT_VERSION}"
            ),
            Self::BadLogId(id) => write!(
                f,
                "{:?} is not a log ID",
                id.chars().take(MAX_LOG_ID_CHARS).collect::<String>()
            ),
            Self::TooManyLogs(n) => write!(f, "{n} logs, at most {MAX_SAVED_LOGS} are kept"),
        }
    }
}

impl Positions {
    /// Reads a state file's content.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        if bytes.len() > MAX_STATE_FILE_BYTES {
            return Err(StateError::TooLarge);
        }
        let document: Document = serde_json::from_slice(bytes).map_err(StateError::Malformed)?;
        if document.version != FORMAT_VERSION {
            return Err(StateError::Version(document.version));
        }
        if document.logs.len() > MAX_SAVED_LOGS {
            return Err(StateError::TooManyLogs(document.logs.len()));
        }
        if let Some(bad) = document.logs.keys().find(|id| !plausible_log_id(id)) {
            return Err(StateError::BadLogId(bad.clone()));
        }
        Ok(Self {
            logs: document.logs,
            unsaved: 0,
        })
    }

    /// The file's content.
    pub(crate) fn encode(&self) -> Vec<u8> {
        self.encode_within(|_, next_index| next_index)
    }

    /// The file's content with each log's position lowered to `durable(log_id, next_index)`: what an output has
    /// not made durable yet is fetched again after a restart.
    pub(crate) fn encode_within(&self, durable: impl Fn(&str, u64) -> u64) -> Vec<u8> {
        let mut logs = self.logs.clone();
        for (log_id, saved) in &mut logs {
            saved.next_index = durable(log_id, saved.next_index).min(saved.next_index);
        }
        let document = Document {
            version: FORMAT_VERSION,
            logs,
        };
        // A map of strings to integers always serializes.
        serde_json::to_vec_pretty(&document).unwrap_or_default()
    }

    /// The saved position of `log_id`.
    pub(crate) fn get(&self, log_id: &str) -> Option<Saved> {
        self.logs.get(log_id).copied()
    }

    /// A save round: `listed` are the logs in the list at `now`, each with the next index it will deliver (`None`:
    /// not known yet; an entry already saved keeps its index). Within [`MAX_SAVED_LOGS`], logs not listed make room
    /// for new ones, the least recently listed first; listed logs there is no room for are not saved. Returns
    /// how many (also [`unsaved`](Self::unsaved)).
    pub(crate) fn record_listed<'a>(
        &mut self,
        listed: impl IntoIterator<Item = (&'a str, Option<u64>)>,
        now: u64,
    ) -> usize {
        let mut listed_ids = HashSet::new();
        let mut new = Vec::new();
        for (log_id, next_index) in listed {
            if !listed_ids.insert(log_id) {
                continue;
            }
            if !self.update(log_id, next_index, now)
                && let Some(next_index) = next_index
                && plausible_log_id(log_id)
            {
                new.push((log_id, next_index));
            }
        }
        let excess = (self.logs.len() + new.len()).saturating_sub(MAX_SAVED_LOGS);
        if excess > 0 {
            let mut departed: Vec<(u64, &String)> = self
                .logs
                .iter()
                .filter(|(id, _)| !listed_ids.contains(id.as_str()))
                .map(|(id, saved)| (saved.listed_at, id))
                .collect();
            departed.sort_unstable();
            let evicted: Vec<String> = departed
                .into_iter()
                .take(excess)
                .map(|(_, id)| id.clone())
                .collect();
            for id in evicted {
                self.logs.remove(&id);
            }
        }
        let room = MAX_SAVED_LOGS.saturating_sub(self.logs.len());
        self.unsaved = new.len().saturating_sub(room);
        for (log_id, next_index) in new.into_iter().take(room) {
            self.insert(log_id, next_index, now);
        }
        self.unsaved
    }

    /// `log_id` left the list at `now`, at `next_index` (`None`: not known): kept for
    /// [`DEPARTED_RETENTION_SECONDS`] if there is room.
    pub(crate) fn record_departed(&mut self, log_id: &str, next_index: Option<u64>, now: u64) {
        if !self.update(log_id, next_index, now)
            && let Some(next_index) = next_index
            && plausible_log_id(log_id)
            && self.logs.len() < MAX_SAVED_LOGS
        {
            self.insert(log_id, next_index, now);
        }
    }

    /// Listed logs not saved at the last round: the state holds [`MAX_SAVED_LOGS`] listed logs.
    pub(crate) fn unsaved(&self) -> usize {
        self.unsaved
    }

    /// Updates `log_id`'s entry, listed at `now`, if it has one.
    fn update(&mut self, log_id: &str, next_index: Option<u64>, now: u64) -> bool {
        let Some(saved) = self.logs.get_mut(log_id) else {
            return false;
        };
        saved.listed_at = now;
        if let Some(next_index) = next_index {
            (saved.next_index, saved.saved_at) = (next_index, now);
        }
        true
    }

    fn insert(&mut self, log_id: &str, next_index: u64, now: u64) {
        self.logs.insert(
            log_id.to_owned(),
            Saved {
                next_index,
                saved_at: now,
                listed_at: now,
            },
        );
    }

    /// Drops the logs not listed for [`DEPARTED_RETENTION_SECONDS`] at `now`; returns their IDs.
    pub(crate) fn forget_departed(&mut self, now: u64) -> Vec<String> {
        let expired: Vec<String> = self
            .logs
            .iter()
            .filter(|(_, saved)| now.saturating_sub(saved.listed_at) > DEPARTED_RETENTION_SECONDS)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            self.logs.remove(id);
        }
        expired
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.logs.len()
    }
}

fn plausible_log_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LOG_ID_CHARS
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_'))
}

/// Why the state file could not be used at start.
#[derive(Debug)]
pub struct StateFileError {
    path: PathBuf,
    reason: String,
}

impl fmt::Display for StateFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "state file {}: {}; fix or remove it, or start fresh with --ignore-bad-state-file",
            self.path.display(),
            self.reason
        )
    }
}

impl std::error::Error for StateFileError {}

/// The state file: the positions read at start, and how saving them goes.
pub struct StateFile {
    path: PathBuf,
    pub(crate) positions: RefCell<Positions>,
    /// Writes never overlap (an older one could land after a newer one), not even past their deadline.
    writer: FileWriter,
    /// Deadline of each save ([`IO_TIMEOUT`]; the tests shorten it).
    io_timeout: Duration,
    saves: Cell<u64>,
    failures: Cell<u64>,
    /// When the last save succeeded (or the file was opened).
    saved_at: Cell<Instant>,
    last_error: RefCell<Option<String>>,
    unsaved_warning: LogThrottle,
}

impl StateFile {
    /// Reads the state file at `path` once (a missing file is a first start) and writes it back at once, so a path
    /// that cannot be written fails now rather than at the first save. An unreadable or corrupt file is an error,
    /// unless `ignore_bad`: then it is logged and the server starts fresh (the file is overwritten).
    pub async fn open(path: PathBuf, ignore_bad: bool) -> Result<Self, StateFileError> {
        let failed = |reason: String| StateFileError {
            path: path.clone(),
            reason,
        };
        let location = path.to_string_lossy().into_owned();
        let read = operator_input::read_file(&location, MAX_STATE_FILE_BYTES, IO_TIMEOUT).await;
        let decoded = match read {
            Ok(bytes) => Positions::decode(&bytes).map_err(|e| e.to_string()),
            Err(InputError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
                tracing::info!(state_file = %location, "no state file yet: every log starts fresh");
                Ok(Positions::default())
            }
            Err(InputError::TooLarge { .. }) => Err(StateError::TooLarge.to_string()),
            Err(e) => Err(format!("cannot read it: {e}")),
        };
        let positions = match decoded {
            Ok(positions) => positions,
            Err(reason) if ignore_bad => {
                tracing::warn!(state_file = %location, %reason, "state file unusable: every log starts fresh (--ignore-bad-state-file); it will be overwritten");
                Positions::default()
            }
            Err(reason) => return Err(failed(reason)),
        };
        let state = Self {
            path: path.clone(),
            positions: RefCell::new(positions),
            writer: FileWriter::default(),
            io_timeout: IO_TIMEOUT,
            saves: Cell::new(0),
            failures: Cell::new(0),
            saved_at: Cell::new(Instant::now()),
            last_error: RefCell::new(None),
            unsaved_warning: LogThrottle::new(UNSAVED_WARNING_INTERVAL),
        };
        let (target, bytes) = (state.path.clone(), state.positions.borrow().encode());
        state
            .writer
            .write(IO_TIMEOUT, move || {
                operator_input::write_atomically(&target, &bytes)
            })
            .await
            .map_err(|e| failed(format!("cannot write it: {e}")))?;
        tracing::info!(state_file = %location, logs = state.positions.borrow().logs.len(), "resuming from the state file");
        Ok(state)
    }

    /// Records a save round ([`Positions::record_listed`]); listed logs left unsaved are warned about, rate-limited.
    pub(crate) fn record_listed<'a>(
        &self,
        listed: impl IntoIterator<Item = (&'a str, Option<u64>)>,
        now: u64,
    ) {
        let unsaved = self.positions.borrow_mut().record_listed(listed, now);
        if unsaved > 0
            && let Some(held_back) = self.unsaved_warning.allow(Instant::now())
        {
            tracing::warn!(
                unsaved,
                max = MAX_SAVED_LOGS,
                held_back,
                "more listed logs than the state file keeps: the positions of the newest are not saved"
            );
        }
    }

    /// Writes `bytes` (an encoded [`Positions`]) atomically, after any write still in flight; counted, and a
    /// failure logged and shown in `/stats`.
    pub(crate) async fn save(&self, bytes: Vec<u8>) {
        let path = self.path.clone();
        self.save_with(move || operator_input::write_atomically(&path, &bytes))
            .await;
    }

    /// [`save`](Self::save) by the blocking `write`. A write in flight is waited for, at most one deadline: one
    /// stuck past it (a hung disk) makes this save fail, counted, rather than run beside it.
    async fn save_with(&self, write: impl FnOnce() -> io::Result<()> + Send + 'static) {
        let waited_enough = Instant::now() + self.io_timeout;
        while self.writer.is_busy() && Instant::now() < waited_enough {
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
        let written = self.writer.write(self.io_timeout, write).await;
        match written {
            Ok(()) => {
                self.saves.set(self.saves.get() + 1);
                self.saved_at.set(Instant::now());
            }
            Err(error) => {
                self.failures.set(self.failures.get() + 1);
                let error = format!(
                    "{}: {error}",
                    redact::location(&self.path.to_string_lossy())
                );
                tracing::warn!(%error, "cannot save the state file");
                *self.last_error.borrow_mut() = Some(error);
            }
        }
    }
}

const STATE_FACTS: &[Fact<StateFile>] = &[Fact {
    stats: "state_file.last_error",
    read: |s| s.last_error.borrow().as_deref().into(),
}];

const STATE_METRICS: &[Metric<StateFile>] = &[
    Metric::counter(
        "certstream_state_saves_total",
        "state_file.saves",
        "Saves of the state file that succeeded.",
        |s| s.saves.get(),
    ),
    Metric::counter(
        "certstream_state_save_failures_total",
        "state_file.save_failures",
        "Saves of the state file that failed (the previous file stays).",
        |s| s.failures.get(),
    ),
    Metric::gauge(
        "certstream_state_unsaved_logs",
        "state_file.unsaved_logs",
        "Listed logs whose position is not saved: the state file already holds its most logs, and never drops a listed one.",
        |s| s.positions.borrow().unsaved() as u64,
    ),
    Metric::gauge(
        "certstream_state_age_seconds",
        "state_file.age_seconds",
        "Whole seconds since the saved positions were last written successfully (or since start).",
        |s| s.saved_at.get().elapsed().as_secs(),
    ),
];

impl StatusReporter for StateFile {
    fn report(&self, out: &mut Report<'_>) {
        out.facts(STATE_FACTS, self);
        out.metrics(STATE_METRICS, self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_saved_no_further_than_what_is_durable() {
        let mut positions = Positions::default();
        positions.insert("a", 10, 1);
        positions.insert("b", 20, 1);
        let saved = Positions::decode(&positions.encode_within(|log_id, next| match log_id {
            "a" => 7,
            _ => next + 5,
        }))
        .unwrap();
        assert_eq!(saved.get("a").map(|s| s.next_index), Some(7));
        assert_eq!(
            saved.get("b").map(|s| s.next_index),
            Some(20),
            "never past the recorded index"
        );
        assert_eq!(
            positions.get("a").map(|s| s.next_index),
            Some(10),
            "the record is unchanged"
        );
    }
    use crate::metrics::tests::{assert_both_outputs_agree, stats_of};

    const ID: &str = "7s3QZNXbGs7FXLedtM0TojKHRny87N7DUUhZRnEftZs=";

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("certstream-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn positions_survive_encoding() {
        let mut positions = Positions::default();
        positions.record_listed([(ID, Some(42)), ("other/log+id=", None)], 1_000);
        assert_eq!(positions.len(), 1, "a log without a position is not saved");
        positions.record_listed([(ID, None)], 2_000);
        let decoded = Positions::decode(&positions.encode()).unwrap();
        assert_eq!(decoded, positions);
        assert_eq!(
            decoded.get(ID),
            Some(Saved {
                next_index: 42,
                saved_at: 1_000,
                listed_at: 2_000
            })
        );
    }

    #[test]
    fn corrupt_content_is_refused_with_the_reason() {
        let refused = |bytes: &[u8]| Positions::decode(bytes).unwrap_err().to_string();
        assert!(refused(b"").contains("not a state file"));
        let good = {
            let mut positions = Positions::default();
            positions.record_listed([(ID, Some(7))], 1);
            positions.encode()
        };
        assert!(refused(&good[..good.len() / 2]).contains("not a state file"));
        assert!(refused(br#"{"version":2,"logs":{}}"#).contains("format version 2"));
        assert!(
            refused(br#"{"version":1,"logs":{"a b":{"next_index":1,"saved_at":1,"listed_at":1}}}"#)
                .contains("not a log ID")
        );
        assert!(
            refused(br#"{"version":1,"logs":{"x":{"next_index":-1,"saved_at":1,"listed_at":1}}}"#)
                .contains("not a state file")
        );
        assert!(refused(br#"{"version":1,"logs":{},"extra":1}"#).contains("not a state file"));
        assert!(refused(&vec![b' '; MAX_STATE_FILE_BYTES + 1]).contains("cap"));
    }

    #[test]
    fn departed_logs_are_kept_for_the_retention_then_dropped() {
        let mut positions = Positions::default();
        positions.record_listed([(ID, Some(5))], 100);
        assert!(
            positions
                .forget_departed(100 + DEPARTED_RETENTION_SECONDS)
                .is_empty()
        );
        assert_eq!(
            positions.forget_departed(101 + DEPARTED_RETENTION_SECONDS),
            [ID]
        );
        assert_eq!(positions.len(), 0);
    }

    #[test]
    fn the_number_of_logs_is_bounded_by_evicting_the_least_recently_listed() {
        let mut positions = Positions::default();
        for n in 0..MAX_SAVED_LOGS as u64 + 1 {
            positions.record_listed([(format!("log{n}").as_str(), Some(n))], n);
        }
        assert_eq!(positions.len(), MAX_SAVED_LOGS);
        assert_eq!(positions.get("log0"), None);
        assert!(positions.encode().len() <= MAX_STATE_FILE_BYTES);
    }

    /// One save round: `listed` are the logs in the list now, log `n` at index `n`; returns how many are unsaved.
    fn round(positions: &mut Positions, listed: std::ops::Range<u64>, now: u64) -> usize {
        let ids: Vec<(String, u64)> = listed.map(|n| (format!("log{n}"), n)).collect();
        positions.record_listed(ids.iter().map(|(id, n)| (id.as_str(), Some(*n))), now)
    }

    /// Beyond [`MAX_SAVED_LOGS`] logs, only departed logs make room (the oldest first); a listed log's position is
    /// never evicted, and a listed log there is no room for is not saved (counted).
    #[test]
    fn the_bound_evicts_departed_logs_only_never_a_listed_one() {
        let max = MAX_SAVED_LOGS as u64;
        let mut positions = Positions::default();
        // Two logs that left the list, at 10 and at 20.
        positions.record_departed("gone10", Some(1), 10);
        positions.record_departed("gone20", Some(2), 20);
        assert_eq!(round(&mut positions, 0..max - 1, 100), 0);
        assert_eq!(positions.len(), MAX_SAVED_LOGS);
        assert_eq!(
            positions.get("gone10"),
            None,
            "the oldest departed log made room"
        );
        assert!(positions.get("gone20").is_some());
        // More listed logs than the bound, in later rounds.
        for now in [105, 110] {
            assert_eq!(round(&mut positions, 0..max + 10, now), 10, "unsaved");
            assert_eq!(positions.unsaved(), 10);
            assert_eq!(positions.len(), MAX_SAVED_LOGS);
            assert_eq!(positions.get("gone20"), None);
            for n in 0..max {
                assert_eq!(
                    positions
                        .get(&format!("log{n}"))
                        .map(|s| (s.next_index, s.listed_at)),
                    Some((n, now)),
                    "listed log{n} at {now}"
                );
            }
        }
        assert!(positions.encode().len() <= MAX_STATE_FILE_BYTES);
    }

    #[test]
    fn the_file_is_read_once_written_atomically_and_refused_when_corrupt() {
        let dir = temp_dir("state");
        let path = dir.join("state.json");
        crate::runtime::block_on(async {
            // Missing: a first start, and the file is created at once.
            let state = StateFile::open(path.clone(), false).await.unwrap();
            assert_eq!(
                Positions::decode(&std::fs::read(&path).unwrap())
                    .unwrap()
                    .len(),
                0
            );
            state.record_listed([(ID, Some(9))], 1);
            let bytes = state.positions.borrow().encode();
            state.save(bytes).await;
            let reopened = StateFile::open(path.clone(), false).await.unwrap();
            assert_eq!(
                reopened.positions.borrow().get(ID).map(|s| s.next_index),
                Some(9)
            );
            let stats = stats_of(&reopened);
            assert_eq!(stats["state_file"]["saves"], 0);
            assert_both_outputs_agree(&[&state]);
            assert_eq!(stats_of(&state)["state_file"]["saves"], 1);

            std::fs::write(&path, b"{\"version\":1,\"logs\":{").unwrap();
            let error = StateFile::open(path.clone(), false)
                .await
                .err()
                .unwrap()
                .to_string();
            assert!(error.contains(&path.display().to_string()), "{error}");
            assert!(error.contains("not a state file"), "{error}");
            assert!(error.contains("--ignore-bad-state-file"), "{error}");
            let fresh = StateFile::open(path.clone(), true).await.unwrap();
            assert_eq!(fresh.positions.borrow().len(), 0);
            assert_eq!(
                Positions::decode(&std::fs::read(&path).unwrap())
                    .unwrap()
                    .len(),
                0
            );

            let unwritable = dir.join("missing-dir/state.json");
            let error = StateFile::open(unwritable, false)
                .await
                .err()
                .unwrap()
                .to_string();
            assert!(error.contains("cannot write it"), "{error}");
            // A save that fails is counted and shown, and the state stays usable.
            std::fs::remove_dir_all(&dir).unwrap();
            state.save(b"{}".to_vec()).await;
            let stats = stats_of(&state);
            assert_eq!(stats["state_file"]["save_failures"], 1);
            assert!(
                stats["state_file"]["last_error"]
                    .as_str()
                    .unwrap()
                    .contains("state.json")
            );
        })
        .unwrap();
    }

    /// A save stuck past its deadline (a hung disk) keeps the file's writer: later saves wait one deadline, then
    /// fail, counted, instead of writing beside it; once it ends, saves work again.
    #[test]
    fn a_save_stuck_past_its_deadline_makes_later_saves_fail_not_run_beside_it() {
        let dir = temp_dir("stuck-save");
        let path = dir.join("state.json");
        crate::runtime::block_on(async {
            let mut state = StateFile::open(path.clone(), false).await.unwrap();
            let opened = std::fs::read(&path).unwrap();
            state.io_timeout = Duration::from_millis(100);
            let (release, stuck) = std::sync::mpsc::channel::<()>();
            state
                .save_with(move || {
                    let _ = stuck.recv();
                    Ok(())
                })
                .await;
            state.save(b"second".to_vec()).await;
            let stats = stats_of(&state);
            assert_eq!(stats["state_file"]["save_failures"], 2);
            assert!(
                stats["state_file"]["last_error"]
                    .as_str()
                    .unwrap()
                    .contains("still stuck"),
                "{stats}"
            );
            assert_eq!(
                std::fs::read(&path).unwrap(),
                opened,
                "nothing written beside the stuck save"
            );
            release.send(()).unwrap();
            state
                .positions
                .borrow_mut()
                .record_listed([(ID, Some(3))], 1);
            let bytes = state.positions.borrow().encode();
            state.save(bytes.clone()).await;
            assert_eq!(stats_of(&state)["state_file"]["saves"], 1);
            assert_eq!(std::fs::read(&path).unwrap(), bytes);
        })
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
