//! The process log: lines go to stdout through a writer thread, so logging can neither block the reactor nor
//! panic.
//!
//! A stalled reader (a full pipe, a stuck log shipper) blocks only the writer thread; a reader that went away
//! (`EPIPE`; Rust ignores `SIGPIPE`) makes writes fail. Either way the reactor only ever appends a formatted line
//! to a queue bounded in bytes; a line that does not fit, or that the writer fails to write, is dropped and
//! counted (`log_lines_dropped` in `/stats`, `certstream_log_lines_dropped_total` in `/metrics`).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::metrics::{Metric, Report, StatusReporter};

/// The log output: cheap to clone, every clone feeds the same queue.
#[derive(Clone)]
pub struct LogOutput {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when a line is queued.
    queued: Condvar,
    /// Bytes the queue may hold (lines waiting plus the one being written).
    budget: usize,
    dropped: AtomicU64,
}

#[derive(Default)]
struct Queue {
    lines: VecDeque<Vec<u8>>,
    /// Bytes of `lines` plus the line being written.
    bytes: usize,
}

impl LogOutput {
    /// Starts the writer thread on a duplicate of stdout; at most `budget` bytes wait for it. Without a stdout
    /// (closed at start) every line is dropped and counted.
    pub fn stdout(budget: usize) -> io::Result<Self> {
        match io::stdout().as_fd().try_clone_to_owned() {
            Ok(fd) => Self::spawn(File::from(fd), budget),
            Err(_) => Self::spawn(Closed, budget),
        }
    }

    /// Starts the writer thread writing to `out`.
    pub fn spawn(mut out: impl Write + Send + 'static, budget: usize) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::default(),
            queued: Condvar::new(),
            budget,
            dropped: AtomicU64::new(0),
        });
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                loop {
                    let line = {
                        let mut queue = writer.lock();
                        loop {
                            match queue.lines.pop_front() {
                                Some(line) => break line,
                                None => {
                                    queue = writer
                                        .queued
                                        .wait(queue)
                                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                                }
                            }
                        }
                    };
                    if out.write_all(&line).and_then(|()| out.flush()).is_err() {
                        writer.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    writer.lock().bytes -= line.len();
                }
            })?;
        Ok(Self { shared })
    }

    /// Queues one complete line, or drops and counts it when the queue is over its byte budget. Never blocks
    /// beyond the writer thread's brief hold of the queue lock.
    pub fn push(&self, line: Vec<u8>) {
        let mut queue = self.shared.lock();
        if queue.bytes + line.len() > self.shared.budget {
            drop(queue);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        queue.bytes += line.len();
        queue.lines.push_back(line);
        drop(queue);
        self.shared.queued.notify_one();
    }

    /// Lines dropped so far (queue full, or the write failed).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Waits up to `timeout` for every queued line to be written (at exit); true if the queue drained.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.shared.lock().bytes > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding the lock; a poisoned queue is still a valid queue.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Where lines go when there is no stdout: nowhere, each one counted as dropped.
struct Closed;

impl Write for Closed {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::BrokenPipe.into())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One event's bytes, queued as one line when the subscriber is done formatting it.
pub struct LineWriter {
    output: LogOutput,
    line: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.output.push(std::mem::take(&mut self.line));
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogOutput {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            output: self.clone(),
            line: Vec::new(),
        }
    }
}

const METRICS: &[Metric<LogOutput>] = &[Metric::counter(
    "certstream_log_lines_dropped_total",
    "log_lines_dropped",
    "Log lines dropped because stdout was too slow or gone.",
    LogOutput::dropped,
)];

impl StatusReporter for LogOutput {
    fn report(&self, out: &mut Report<'_>) {
        out.metrics(METRICS, self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::tests::{assert_both_outputs_agree, stats_of, text_of};

    /// A writer that blocks until released, then fails or succeeds.
    struct Gate {
        open: Arc<(Mutex<bool>, Condvar)>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (lock, cvar) = &*self.open;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = cvar.wait(open).unwrap();
            }
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_writer_never_blocks_the_caller_and_overflow_is_counted() {
        let open = Arc::new((Mutex::new(false), Condvar::new()));
        let written = Arc::new(Mutex::new(Vec::new()));
        let output = LogOutput::spawn(
            Gate {
                open: open.clone(),
                written: written.clone(),
            },
            100,
        )
        .unwrap();
        let started = Instant::now();
        for i in 0..1000 {
            output.push(format!("line {i:04} of the log.\n").into_bytes());
        }
        assert!(started.elapsed() < Duration::from_millis(500));
        // 100 bytes hold four 21-byte lines (one of them possibly already taken by the blocked writer).
        assert_eq!(output.dropped(), 996);
        assert!(!output.flush(Duration::from_millis(20)), "still stalled");
        *open.0.lock().unwrap() = true;
        open.1.notify_all();
        assert!(output.flush(Duration::from_secs(5)));
        let written = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        assert!(
            written.starts_with("line 0000 of the log.\nline 0001"),
            "{written}"
        );
        assert_eq!(written.lines().count(), 4);
    }

    #[test]
    fn failed_writes_are_counted_not_fatal() {
        let output = LogOutput::spawn(Closed, 1 << 20).unwrap();
        {
            let mut writer = tracing_subscriber::fmt::MakeWriter::make_writer(&output);
            writer.write_all(b"one ").unwrap();
            writer.write_all(b"line\n").unwrap();
        }
        output.push(b"two\n".to_vec());
        assert!(output.flush(Duration::from_secs(5)));
        assert_eq!(output.dropped(), 2);
        assert_eq!(stats_of(&output)["log_lines_dropped"], 2);
        assert!(text_of(&output).contains("certstream_log_lines_dropped_total 2\n"));
        assert_both_outputs_agree(&[&output]);
    }
}
