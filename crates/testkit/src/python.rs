//! The Python interpreter of the tests that run real clients (PyPI `certstream`, `websockets`, `httpx-sse`),
//! pyca/cryptography or Playwright (driving the system's Chromium), and [`Client`], a script run as a child whose
//! stdout lines the test reads.
//!
//! `$CERTSTREAM_TEST_PYTHON` when set; else the repository's `.venv`, which the first test that needs it prepares
//! (once, under a lock shared by every test process) with [`PREPARE`], so `cargo test` works in a fresh clone that can
//! reach PyPI. When that fails, or the named interpreter lacks the modules, the test fails naming the command that
//! prepares it: these tests never skip.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

/// The one command that prepares the interpreter, run from the repository (`tests/run.sh` runs it too).
pub const PREPARE: &str =
    "python3 -m venv .venv && .venv/bin/pip install -r tests/python-requirements.txt";

/// What `tests/python-requirements.txt` installs, as the tests import it.
const MODULES: &str = "certstream, websockets, cryptography, httpx, httpx_sse, playwright";

/// The interpreter to run, checked to import the test modules.
pub fn interpreter() -> String {
    if let Ok(python) = std::env::var("CERTSTREAM_TEST_PYTHON") {
        if let Err(why) = imports_the_modules(&python) {
            panic!(
                "CERTSTREAM_TEST_PYTHON={python}: {why}; run `{PREPARE}` in the repository and point it there"
            );
        }
        return python;
    }
    static VENV: OnceLock<Result<String, String>> = OnceLock::new();
    VENV.get_or_init(prepared_venv)
        .clone()
        .unwrap_or_else(|why| panic!("the Python test clients are not prepared ({why}): run `{PREPARE}` in the repository"))
}

/// The repository's `.venv` interpreter, created first if it cannot import the modules.
fn prepared_venv() -> Result<String, String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = repo.join(".venv/bin/python").to_string_lossy().into_owned();
    // Test binaries run in parallel processes: one prepares, the others wait and then find it ready.
    let lock = File::create(repo.join(".venv.lock")).map_err(|e| format!("lock file: {e}"))?;
    // SAFETY: flock on a descriptor this function owns; released when `lock` closes.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(format!("lock: {}", std::io::Error::last_os_error()));
    }
    if imports_the_modules(&python).is_ok() {
        return Ok(python);
    }
    run(&repo, "python3", &["-m", "venv", ".venv"])?;
    run(
        &repo,
        ".venv/bin/pip",
        &[
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            "tests/python-requirements.txt",
        ],
    )?;
    imports_the_modules(&python).map(|()| python)
}

fn run(dir: &Path, program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn imports_the_modules(python: &str) -> Result<(), String> {
    match Command::new(python)
        .args(["-c", &format!("import {MODULES}")])
        .output()
    {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(format!(
            "cannot import {MODULES}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(error) => Err(format!("cannot run {python}: {error}")),
    }
}

/// A script of `tests/python`.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/python")
        .join(name)
}

/// A client process whose stdout lines are collected on a thread.
pub struct Client {
    /// Its name in failures.
    pub name: String,
    /// The process (its stdin may be taken to talk to it).
    pub child: Child,
    lines: mpsc::Receiver<String>,
}

impl Client {
    /// Starts `command` (stdout and stderr piped).
    pub fn spawn(name: &str, command: &mut Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn python");
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            name: name.to_owned(),
            child,
            lines,
        }
    }

    /// The next `n` lines, or a failure naming the client and showing its stderr.
    pub fn take(&mut self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => out.push(line),
                Err(_) => {
                    let _ = self.child.kill();
                    let mut stderr = String::new();
                    let _ = self
                        .child
                        .stderr
                        .take()
                        .unwrap()
                        .read_to_string(&mut stderr);
                    panic!(
                        "{}: got {} of {n} lines; stderr:\n{stderr}",
                        self.name,
                        out.len()
                    );
                }
            }
        }
        out
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
