//! Input the operator names (the log list, its signature, the state file), read without trusting it: never on the
//! reactor thread, never more than a size cap, never longer than a deadline. [`read_file`] does this for files;
//! [`InputError`] is also what a URL that is too slow or too big fails with. A [`FileWriter`] replaces a file (the
//! state file) atomically ([`write_atomically`]), under the same deadline and off the reactor thread, one write at a
//! time even when one is stuck past its deadline. [`FileStamp`] tells whether a file changed (the access-token file
//! is watched with it).
//!
//! `/dev/zero` would otherwise fill memory, a FIFO would block `open` until a writer comes, and a hung network
//! mount blocks `read` for as long as it likes. So a helper thread does the blocking part: it opens with
//! `O_NONBLOCK` (a FIFO without a writer reads as empty instead of blocking), reads at most `max_size + 1` bytes,
//! and waits for a slow pipe with `poll` until the deadline. The reactor only checks, every few milliseconds, whether
//! the thread is done, and gives up at the deadline. A thread stuck in the kernel (a hung mount) cannot be
//! cancelled; at most [`MAX_STUCK_READS`] are left behind before reads are refused outright.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Helper threads (reads and state-file writes) that may be still running (stuck past their deadline) before new
/// reads and writes are refused.
pub(crate) const MAX_STUCK_READS: usize = 4;

/// How often the reactor looks whether the reader thread is done.
const POLL_EVERY: Duration = Duration::from_millis(5);

/// Helper threads running now.
static READERS: AtomicUsize = AtomicUsize::new(0);

/// Why a file (or a URL) the operator named could not be read.
#[derive(Debug)]
pub(crate) enum InputError {
    /// Opening or reading failed.
    Io(io::Error),
    /// It holds more than the cap.
    TooLarge {
        /// The cap, in bytes.
        limit: usize,
    },
    /// The deadline passed before its end.
    TimedOut(Duration),
    /// A write's deadline passed before its end (its helper thread may still be stuck in it).
    WriteTimedOut(Duration),
    /// Too many earlier reads are still stuck in the kernel.
    Busy,
    /// An earlier write of the same file is still running, past its deadline.
    StillWriting,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => e.fmt(f),
            Self::TooLarge { limit } => write!(f, "larger than the {limit}-byte cap"),
            Self::TimedOut(after) => write!(f, "not read within {} ms", after.as_millis()),
            Self::WriteTimedOut(after) => {
                write!(f, "not written within {} ms", after.as_millis())
            }
            Self::Busy => write!(
                f,
                "{MAX_STUCK_READS} earlier reads or writes are still stuck; not trying another"
            ),
            Self::StillWriting => f.write_str(
                "the previous write is still stuck past its deadline; not starting another beside it",
            ),
        }
    }
}

impl std::error::Error for InputError {}

/// Reads the whole file at `path` (at most `max_size` bytes) in a helper thread; the calling task waits at most
/// `timeout`.
pub(crate) async fn read_file(
    path: &str,
    max_size: usize,
    timeout: Duration,
) -> Result<Vec<u8>, InputError> {
    let path = path.to_owned();
    off_reactor(timeout, move || read_capped(&path, max_size, timeout)).await
}

/// The writer of one file: one write at a time, even past a deadline. The helper thread holds the writer until its
/// write has really ended, so while a write is stuck in the kernel (a hung disk) later writes fail at once
/// ([`InputError::StillWriting`]) instead of running beside it, where an older write could land after a newer one.
#[derive(Debug, Default)]
pub(crate) struct FileWriter {
    busy: Arc<AtomicBool>,
}

/// Held by the helper thread while it writes: dropped (the writer free again) when the write has ended.
struct Writing(Arc<AtomicBool>);

impl Drop for Writing {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl FileWriter {
    /// Whether a write is running (within its deadline, or stuck past it).
    pub(crate) fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    /// Runs the blocking `write` (e.g. [`write_atomically`]) in a helper thread; the calling task waits at most
    /// `timeout`. Fails at once while an earlier write is still running.
    pub(crate) async fn write(
        &self,
        timeout: Duration,
        write: impl FnOnce() -> io::Result<()> + Send + 'static,
    ) -> Result<(), InputError> {
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err(InputError::StillWriting);
        }
        let writing = Writing(self.busy.clone());
        off_reactor(timeout, move || {
            let _writing = writing;
            write().map_err(InputError::Io)
        })
        .await
        .map_err(|e| match e {
            InputError::TimedOut(after) => InputError::WriteTimedOut(after),
            e => e,
        })
    }
}

/// What tells one version of a file from the next: its device and inode (a file renamed over it, a Kubernetes
/// secret's symlink swapped), its size and its modification time to the nanosecond (a rewrite in place).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileStamp {
    device: u64,
    inode: u64,
    size: u64,
    modified: (i64, i64),
}

impl FileStamp {
    /// The stamp of `path` now (symlinks followed). Blocking: call it off the reactor thread.
    pub(crate) fn of(path: &str) -> Result<Self, InputError> {
        use std::os::unix::fs::MetadataExt;
        let metadata = std::fs::metadata(path).map_err(InputError::Io)?;
        Ok(Self {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            modified: (metadata.mtime(), metadata.mtime_nsec()),
        })
    }
}

/// Runs the blocking `work` in a helper thread; the calling task waits at most `timeout` for it (a thread stuck in
/// the kernel is left behind, counted against [`MAX_STUCK_READS`]).
async fn off_reactor<T: Send + 'static>(
    timeout: Duration,
    work: impl FnOnce() -> Result<T, InputError> + Send + 'static,
) -> Result<T, InputError> {
    let deadline = Instant::now() + timeout;
    if READERS.fetch_add(1, Ordering::Relaxed) >= MAX_STUCK_READS {
        READERS.fetch_sub(1, Ordering::Relaxed);
        return Err(InputError::Busy);
    }
    let result = Arc::new(Mutex::new(None));
    let spawned = {
        let result = result.clone();
        std::thread::Builder::new()
            .name("operator-input".into())
            .spawn(move || {
                let done = work();
                if let Ok(mut slot) = result.lock() {
                    *slot = Some(done);
                }
                READERS.fetch_sub(1, Ordering::Relaxed);
            })
    };
    if let Err(e) = spawned {
        READERS.fetch_sub(1, Ordering::Relaxed);
        return Err(InputError::Io(e));
    }
    loop {
        if let Some(done) = result.lock().ok().and_then(|mut slot| slot.take()) {
            return done;
        }
        if Instant::now() >= deadline {
            return Err(InputError::TimedOut(timeout));
        }
        monoio::time::sleep(POLL_EVERY).await;
    }
}

/// Replaces the file at `path` with `bytes` (blocking): a temporary file beside `path`, its name this write's own
/// (process ID and a counter: no other write can be in it), is written, synced and renamed over it, then the
/// directory is synced, so a crash at any point leaves either the old file or the new one, whole.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    static TEMPORARIES: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        TEMPORARIES.fetch_add(1, Ordering::Relaxed)
    ));
    let temporary = dir.join(name);
    let written = (|| {
        let mut file = File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written?;
    File::open(dir)?.sync_all()
}

/// The blocking part: reads `path` to its end, refusing more than `max_size` bytes or waiting longer than `timeout`.
pub(crate) fn read_capped(
    path: &str,
    max_size: usize,
    timeout: Duration,
) -> Result<Vec<u8>, InputError> {
    let deadline = Instant::now() + timeout;
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(InputError::Io)?;
    let mut out = Vec::new();
    let mut chunk = vec![0; 64 * 1024];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => {
                if out.len() + n > max_size {
                    return Err(InputError::TooLarge { limit: max_size });
                }
                out.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // A pipe whose writer has not written yet: wait for data, until the deadline.
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(InputError::TimedOut(timeout));
                }
                let mut fd = libc::pollfd {
                    fd: file.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                let millis = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
                // SAFETY: one valid pollfd for a descriptor `file` keeps open.
                unsafe { libc::poll(&mut fd, 1, millis) };
            }
            Err(e) => return Err(InputError::Io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soon() -> Duration {
        Duration::from_secs(5)
    }

    #[test]
    fn regular_files_are_read_whole_up_to_the_cap() {
        let dir = std::env::temp_dir().join(format!("certstream-opfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("list.json");
        std::fs::write(&path, vec![b'x'; 100_000]).unwrap();
        let path = path.to_str().unwrap();
        assert_eq!(read_capped(path, 100_000, soon()).unwrap().len(), 100_000);
        assert!(matches!(
            read_capped(path, 99_999, soon()),
            Err(InputError::TooLarge { limit: 99_999 })
        ));
        let missing = dir.join("missing");
        assert!(matches!(
            read_capped(missing.to_str().unwrap(), 10, soon()),
            Err(InputError::Io(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn endless_devices_stop_at_the_cap() {
        let started = Instant::now();
        assert!(matches!(
            read_capped("/dev/zero", 1 << 20, soon()),
            Err(InputError::TooLarge { .. })
        ));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_fifo_never_blocks_past_the_deadline() {
        let dir = std::env::temp_dir().join(format!("certstream-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("list.fifo");
        let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let path = fifo.to_str().unwrap();
        // No writer: empty, at once.
        assert_eq!(read_capped(path, 10, soon()).unwrap(), b"");
        // A writer that never writes: the deadline. (A FIFO opens for writing only while it has a reader.)
        let _reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .unwrap();
        let _writer = OpenOptions::new().write(true).open(path).unwrap();
        let started = Instant::now();
        assert!(matches!(
            read_capped(path, 10, Duration::from_millis(200)),
            Err(InputError::TimedOut(_))
        ));
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(150) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_reactor_waits_at_most_the_deadline() {
        crate::runtime::block_on(async {
            let started = Instant::now();
            let zeros = read_file("/dev/zero", 1 << 20, Duration::from_secs(5)).await;
            assert!(matches!(zeros, Err(InputError::TooLarge { .. })));
            assert!(started.elapsed() < Duration::from_secs(1));
            assert!(matches!(
                read_file("/nonexistent/list.json", 10, Duration::from_secs(5)).await,
                Err(InputError::Io(_))
            ));
        })
        .unwrap();
    }

    #[test]
    fn a_stamp_changes_with_the_content_and_with_a_file_renamed_over() {
        let dir = std::env::temp_dir().join(format!("certstream-stamp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens");
        std::fs::write(&path, b"one").unwrap();
        let path_text = path.to_str().unwrap();
        let first = FileStamp::of(path_text).unwrap();
        assert_eq!(FileStamp::of(path_text).unwrap(), first);
        std::fs::write(&path, b"three").unwrap();
        let rewritten = FileStamp::of(path_text).unwrap();
        assert_ne!(rewritten, first);
        write_atomically(&path, b"three").unwrap();
        assert_ne!(FileStamp::of(path_text).unwrap(), rewritten, "a new inode");
        assert!(matches!(
            FileStamp::of("/nonexistent/tokens"),
            Err(InputError::Io(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_atomic_write_replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("certstream-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        std::fs::write(&path, b"old and longer than the new content").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"], "no temporary file is left");
        let error = write_atomically(&dir.join("missing-dir/state.json"), b"x").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        crate::runtime::block_on(async {
            let bytes = b"from the reactor".to_vec();
            let target = path.clone();
            FileWriter::default()
                .write(soon(), move || write_atomically(&target, &bytes))
                .await
                .unwrap();
        })
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"from the reactor");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Each write has a temporary file of its own: another write's (here a FIFO squatting on the name, as good as a
    /// writer stuck in it) can neither block this one nor be renamed in its place.
    #[test]
    fn a_write_never_shares_its_temporary_file() {
        let dir = std::env::temp_dir().join(format!("certstream-tmpname-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        let squatter =
            std::ffi::CString::new(dir.join("state.json.tmp").to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(squatter.as_ptr(), 0o600) }, 0);
        let target = path.clone();
        let written = crate::runtime::block_on(
            FileWriter::default().write(Duration::from_secs(1), move || {
                write_atomically(&target, b"new")
            }),
        )
        .unwrap();
        // A writer stuck on the FIFO is let go.
        let _reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(dir.join("state.json.tmp"));
        assert!(written.is_ok(), "{written:?}");
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A write stuck past its deadline keeps the writer: the next write fails at once without running, and once
    /// the stuck one ends, writes run again.
    #[test]
    fn a_write_stuck_past_its_deadline_keeps_later_ones_from_running_beside_it() {
        let (release, stuck) = std::sync::mpsc::channel::<()>();
        let writer = FileWriter::default();
        let ran = Arc::new(AtomicBool::new(false));
        crate::runtime::block_on(async {
            let first = writer
                .write(Duration::from_millis(50), move || {
                    let _ = stuck.recv();
                    Ok(())
                })
                .await;
            assert!(
                matches!(first, Err(InputError::WriteTimedOut(_))),
                "{first:?}"
            );
            assert!(writer.is_busy(), "the stuck write still holds the writer");
            let second = {
                let ran = ran.clone();
                writer
                    .write(soon(), move || {
                        ran.store(true, Ordering::Relaxed);
                        Ok(())
                    })
                    .await
            };
            assert!(
                matches!(second, Err(InputError::StillWriting)),
                "{second:?}"
            );
            release.send(()).unwrap();
            let started = Instant::now();
            while writer.is_busy() {
                assert!(started.elapsed() < soon(), "the released write ends");
                monoio::time::sleep(POLL_EVERY).await;
            }
            let third = writer.write(soon(), || Ok(())).await;
            assert!(third.is_ok(), "{third:?}");
        })
        .unwrap();
        assert!(!ran.load(Ordering::Relaxed), "the refused write never ran");
    }
}
