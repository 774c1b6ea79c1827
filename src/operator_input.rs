//! Input the operator names (the log list, its signature, the state file), read without trusting it: never on the
//! reactor thread, never more than a size cap, never longer than a deadline. [`read_file`] does this for files;
//! [`InputError`] is also what a URL that is too slow or too big fails with. [`write_file`] replaces a file
//! (the state file) atomically, under the same deadline and off the reactor thread. [`FileStamp`] tells whether a
//! file changed (the access-token file is watched with it).
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
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// Too many earlier reads are still stuck in the kernel.
    Busy,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => e.fmt(f),
            Self::TooLarge { limit } => write!(f, "larger than the {limit}-byte cap"),
            Self::TimedOut(after) => write!(f, "not read within {} ms", after.as_millis()),
            Self::Busy => write!(
                f,
                "{MAX_STUCK_READS} earlier reads or writes are still stuck; not trying another"
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

/// Replaces the file at `path` with `bytes` in a helper thread, atomically ([`write_atomically`]); the calling task
/// waits at most `timeout`.
pub(crate) async fn write_file(
    path: &Path,
    bytes: Vec<u8>,
    timeout: Duration,
) -> Result<(), InputError> {
    let path = path.to_owned();
    off_reactor(timeout, move || {
        write_atomically(&path, &bytes).map_err(InputError::Io)
    })
    .await
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

/// The blocking part of [`write_file`]: a temporary file beside `path` is written, synced and renamed over it,
/// then the directory is synced, so a crash at any point leaves either the old file or the new one, whole.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
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
            write_file(&path, b"from the reactor".to_vec(), soon())
                .await
                .unwrap();
        })
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"from the reactor");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
