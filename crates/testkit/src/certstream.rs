//! The real `certstream` binary as a child process on 127.0.0.1 (an ingester, or a relay: `certstream relay`), a
//! log list file the test rewrites, and a WebSocket reader that sorts the stream by log.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, ErrorKind, PipeWriter, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use certstream::ingest::supervisor::APPLE_LOG_LIST_URL;
use certstream_ct::log_list::{GOOGLE_LOG_LIST_URL, LogKind, LogList};
use serde_json::Value;

use crate::http::{closed_port, exchange, get_request, http_request_on};
use crate::mock::{Expected, mock_name};
use crate::process::{accepted_socket_inode, holds_socket};
use crate::wait::wait_until;
use crate::ws::WsClient;

/// Bound of every wait on a child process or socket.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// `host:port` of an absolute http(s) URL.
fn host_port(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("absolute URL");
    let authority = rest.split('/').next().expect("authority");
    if authority.contains(':') {
        authority.to_owned()
    } else {
        let port = if scheme == "https" { 443 } else { 80 };
        format!("{authority}:{port}")
    }
}

/// `--resolve` items sending every snapshot log host and the list hosts to `port` on 127.0.0.1.
fn resolve_everything_to(port: u16) -> String {
    let snapshot = LogList::compiled_in().expect("snapshot parses");
    let mut hosts: BTreeSet<String> = snapshot
        .logs
        .iter()
        .map(|log| match &log.kind {
            LogKind::Rfc6962 { url } => host_port(url),
            LogKind::Tiled { monitoring_url, .. } => host_port(monitoring_url),
        })
        .collect();
    hosts.extend([GOOGLE_LOG_LIST_URL, APPLE_LOG_LIST_URL].map(host_port));
    hosts
        .iter()
        .map(|host| format!("{host}:127.0.0.1:{port}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The `certstream` binary, listening on 127.0.0.1; killed on drop unless stopped.
pub struct Certstream {
    child: Child,
    /// Where it listens (127.0.0.1).
    pub addr: SocketAddr,
    /// Its log output (stdout), kept for failure messages.
    output: Arc<Mutex<Vec<String>>>,
    /// Other processes listen on the same port (relays, SO_REUSEPORT): [`connect`](Self::connect) picks the
    /// connections the kernel gives to this one.
    shares_port: bool,
}

impl Certstream {
    /// Starts `certstream --listen 127.0.0.1:0 ARGS` with extra environment `env` and waits until it serves.
    ///
    /// Unless `env` says otherwise, every host of the compiled-in snapshot and of Chrome's and Apple's lists is
    /// pinned to a closed loopback port (`CERTSTREAM_RESOLVE`): a test that ends up on the snapshot never
    /// reaches the internet.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Certstream {
        Self::start_program(&certstream_binary(), args, env)
    }

    /// [`Certstream::start`] with another build of the binary (benchmarks compare versions).
    pub fn start_program(program: &str, args: &[&str], env: &[(&str, &str)]) -> Certstream {
        Self::spawn(Self::command(program, &[], args, env))
    }

    /// Starts a relay, `certstream relay --listen 127.0.0.1:0 ARGS` (`--nats-url` among `args`), and waits until
    /// it serves.
    pub fn start_relay(args: &[&str], env: &[(&str, &str)]) -> Certstream {
        Self::spawn(Self::command(&certstream_binary(), &["relay"], args, env))
    }

    /// [`start_relay`](Self::start_relay) on `port` of 127.0.0.1, which other relays may share (SO_REUSEPORT):
    /// the requests of this struct ([`get`](Self::get), [`stats`](Self::stats)) still go to this relay.
    pub fn start_relay_on(port: u16, args: &[&str], env: &[(&str, &str)]) -> Certstream {
        let listen = format!("127.0.0.1:{port}");
        let mut all = vec!["--listen", &listen];
        all.extend_from_slice(args);
        let mut relay = Self::start_relay(&all, env);
        relay.shares_port = true;
        relay
    }

    /// As [`start`](Self::start), with the open-files limit (soft and hard, like `prlimit --nofile=N:N`) set to
    /// `open_files` in the child.
    pub fn start_with_open_files(
        args: &[&str],
        env: &[(&str, &str)],
        open_files: u64,
    ) -> Certstream {
        use std::os::unix::process::CommandExt;
        let mut command = Self::command(&certstream_binary(), &[], args, env);
        let limit = libc::rlimit {
            rlim_cur: open_files,
            rlim_max: open_files,
        };
        // SAFETY: setrlimit is async-signal-safe; the closure touches nothing but its own copy of `limit`.
        unsafe {
            command.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        Self::spawn(command)
    }

    /// Spawns `command` with its stdout read by a thread (kept for failure messages) and waits until it serves.
    fn spawn(mut command: Command) -> Certstream {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn certstream");
        let stdout = child.stdout.take().expect("certstream stdout");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let lines = output.clone();
        // Drains the log for the whole run (a full pipe would block the server), reporting the listen address.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let line = strip_ansi(&line);
                if let Some(rest) = line
                    .split("listen=")
                    .nth(1)
                    .filter(|_| line.contains("serving"))
                {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = tx.send(addr);
                }
                if let Ok(mut lines) = lines.lock() {
                    lines.push(line);
                }
            }
        });
        // Owned before waiting, so a server that never reports its address is still killed (on drop).
        let mut server = Certstream {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            output,
            shares_port: false,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let addr = loop {
            if let Ok(addr) = rx.recv_timeout(Duration::from_millis(100)) {
                break addr;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "certstream exited ({status}) before serving:\n{}",
                    server.log_tail(30)
                );
            }
            assert!(
                Instant::now() < deadline,
                "certstream did not report its address within {STARTUP_TIMEOUT:?}:\n{}",
                server.log_tail(30)
            );
        };
        server.addr = addr
            .parse()
            .unwrap_or_else(|_| panic!("bad listen address {addr:?}"));
        server
    }

    /// `certstream SUBCOMMAND --listen 127.0.0.1:0 ARGS` with the environment described at
    /// [`start`](Self::start).
    fn command(program: &str, subcommand: &[&str], args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(program);
        command
            .args(subcommand)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("CERTSTREAM_RESOLVE", resolve_everything_to(closed_port()))
            // The tests poll `/stats` freely; the rate limit has its own test.
            .env("CERTSTREAM_OPS_RATE", "100000")
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            // The address and the lines tests look for are logged at info, whatever the developer's RUST_LOG;
            // CERTSTREAM_TEST_RUST_LOG asks for more.
            .env(
                "RUST_LOG",
                std::env::var("CERTSTREAM_TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null());
        command
    }

    /// As [`start`](Self::start), with the server's stdout and stderr both on `log` (`2>&1 | …`), which this
    /// helper does not read: the server listens on a port chosen here and is waited for through `/health`.
    pub fn start_logging_to(args: &[&str], env: &[(&str, &str)], log: PipeWriter) -> Certstream {
        let addr = SocketAddr::from(([127, 0, 0, 1], closed_port()));
        let listen = addr.to_string();
        let child = Self::command(&certstream_binary(), &[], args, env)
            .args(["--listen", &listen])
            .stderr(log.try_clone().expect("dup the log pipe"))
            .stdout(log)
            .spawn()
            .expect("spawn certstream");
        let mut server = Certstream {
            child,
            addr,
            output: Arc::default(),
            shares_port: false,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while server.health_within(Duration::from_secs(1)).is_none() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("certstream exited before serving: {status}");
            }
            assert!(Instant::now() < deadline, "certstream never served /health");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// How long `GET /health` took, if a `200` came back within `timeout`.
    pub fn health_within(&self, timeout: Duration) -> Option<Duration> {
        let started = Instant::now();
        let mut stream = TcpStream::connect_timeout(&self.addr, timeout).ok()?;
        let (response, ended) = exchange(&mut stream, get_request("/health").as_bytes(), timeout);
        ended.ok()?;
        let elapsed = started.elapsed();
        (response.starts_with(b"HTTP/1.1 200") && elapsed <= timeout).then_some(elapsed)
    }

    /// The process ID (benchmarks pin it and read its CPU time and memory).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A connection to this process: on a port shared with other relays, one the kernel gave to this one (the
    /// others are closed unused).
    pub fn connect(&self) -> TcpStream {
        let connect = || TcpStream::connect(self.addr).expect("connect");
        if !self.shares_port {
            return connect();
        }
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let stream = connect();
            // Whoever accepts it gives it an inode; then it is ours or another relay's.
            let inode = wait_until(
                "the connection accepted",
                STARTUP_TIMEOUT,
                || accepted_socket_inode(&stream),
                Option::is_some,
                |_| format!("{} never accepted by anyone", self.addr),
            );
            if inode.is_some_and(|inode| holds_socket(self.pid(), inode)) {
                return stream;
            }
            assert!(
                Instant::now() < deadline,
                "the kernel never gave this relay (pid {}) a connection to {}",
                self.pid(),
                self.addr
            );
        }
    }

    /// GET `path`: status and body.
    pub fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let (status, _, body) = http_request_on(self.connect(), &get_request(path));
        (status, body)
    }

    /// `/stats`.
    pub fn stats(&self) -> Value {
        let (status, body) = self.get("/stats");
        assert_eq!(status, 200, "/stats: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).expect("/stats is JSON")
    }

    /// `/stats` entry of the log whose description is `Mock '<name>' log`.
    pub fn log_stats(&self, name: &str) -> Value {
        let description = format!("Mock '{name}' log");
        let stats = self.stats();
        stats["logs"]
            .as_array()
            .and_then(|logs| {
                logs.iter()
                    .find(|l| l["description"] == description.as_str())
            })
            .cloned()
            .unwrap_or_else(|| panic!("{name} not in /stats: {stats}"))
    }

    /// Names (`r0`, `t1`, …) of the logs `/stats` shows, sorted.
    pub fn followed(&self) -> Vec<String> {
        followed_in(&self.stats())
    }

    /// Waits until `condition` holds on `/stats`, at most `timeout`; returns that `/stats`.
    pub fn wait_stats(
        &self,
        what: &str,
        timeout: Duration,
        condition: impl Fn(&Value) -> bool,
    ) -> Value {
        wait_until(
            what,
            timeout,
            || self.stats(),
            condition,
            |stats| format!("/stats: {stats}\nlog tail:\n{}", self.log_tail(30)),
        )
    }

    /// The last `n` lines the server logged.
    pub fn log_tail(&self, n: usize) -> String {
        let lines = self.output.lock().map(|l| l.clone()).unwrap_or_default();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits for the exit; returns whether it exited successfully and how long it took.
    pub fn terminate(self) -> (bool, Duration) {
        let started = Instant::now();
        self.send_sigterm();
        let (success, _) = self.wait_exit(STARTUP_TIMEOUT);
        (success, started.elapsed())
    }

    /// Sends SIGTERM, without waiting (the test watches what the server does meanwhile).
    pub fn send_sigterm(&self) {
        self.send_signal(libc::SIGTERM);
    }

    /// Sends `signal` (SIGHUP: reload the access tokens), without waiting.
    pub fn send_signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: a plain kill(2) of the child this struct started and still owns.
        unsafe {
            libc::kill(pid, signal);
        }
    }

    /// Waits (at most `timeout`, else fails the test) for the process to exit; returns whether it exited
    /// successfully and how long the wait took.
    pub fn wait_exit(mut self, timeout: Duration) -> (bool, Duration) {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return (status.success(), started.elapsed());
            }
            assert!(
                started.elapsed() < timeout,
                "certstream did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Certstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ … final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The mock names (sorted) of the logs a `/stats` document lists.
pub fn followed_in(stats: &Value) -> Vec<String> {
    let mut names: Vec<String> = stats["logs"]
        .as_array()
        .expect("logs array")
        .iter()
        .map(|l| mock_name(l["url"].as_str().expect("url")))
        .collect();
    names.sort();
    names
}

/// A log list file in a private temporary directory, replaced atomically; removed on drop.
pub struct ListFile {
    dir: PathBuf,
    /// The list file (inside the private directory).
    pub path: PathBuf,
}

impl Default for ListFile {
    fn default() -> Self {
        Self::new()
    }
}

impl ListFile {
    /// A new, not yet written, list file.
    pub fn new() -> ListFile {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "certstream-e2e-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("log_list.json");
        ListFile { dir, path }
    }

    /// The path, for `--log-list`.
    pub fn location(&self) -> &str {
        self.path.to_str().expect("UTF-8 temp path")
    }

    /// Replaces the file's content (write then rename, so the server never reads half a list).
    pub fn write(&self, bytes: &[u8]) {
        let tmp = self.dir.join("log_list.json.tmp");
        std::fs::write(&tmp, bytes).expect("write list");
        std::fs::rename(&tmp, &self.path).expect("rename list");
    }

    /// Writes `list` keeping only the logs named in `names`.
    pub fn write_only(&self, list: &Value, names: &[&str]) {
        self.write(&serde_json::to_vec(&only_logs(list, names)).expect("list JSON"));
    }

    /// Removes the file.
    pub fn remove(&self) {
        std::fs::remove_file(&self.path).expect("remove list");
    }
}

impl Drop for ListFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A copy of the v3 list `list` with only the logs named in `names` (by mock name).
pub fn only_logs(list: &Value, names: &[&str]) -> Value {
    let mut list = list.clone();
    let keep = |log: &Value| {
        let url = log["url"].as_str().or(log["submission_url"].as_str());
        url.is_some_and(|url| names.contains(&mock_name(url).as_str()))
    };
    if let Some(operators) = list["operators"].as_array_mut() {
        for operator in operators {
            for field in ["logs", "tiled_logs"] {
                if let Some(logs) = operator.get_mut(field).and_then(Value::as_array_mut) {
                    logs.retain(keep);
                }
            }
        }
    }
    list
}

/// One received `certificate_update`: index and leaf fingerprint.
pub type SeenEntry = (u64, String);

/// The source URL (the JSON string, quotes included) and the index of a `certificate_update` of the lite or full
/// stream, found without parsing the message: a benchmark client must keep up with the server on a shared core.
pub fn update_position(message: &[u8]) -> Option<(&[u8], u64)> {
    let value = |key: &[u8]| {
        let start = message.windows(key.len()).position(|w| w == key)? + key.len();
        let rest = &message[start..];
        let end = rest.iter().position(|b| matches!(b, b',' | b'}'))?;
        Some(&rest[..end])
    };
    let index = std::str::from_utf8(value(b"\"cert_index\":")?)
        .ok()?
        .parse()
        .ok()?;
    Some((value(b"\"url\":")?, index))
}

/// Reads `certificate_update` messages from a WebSocket client, sorted by mock log name.
pub struct Collector {
    client: WsClient,
    /// Entries received so far, by mock log name, in arrival order.
    pub by_log: BTreeMap<String, Vec<SeenEntry>>,
}

impl Collector {
    /// Connects to `path` (`/`, `/full-stream`) on `server`.
    pub fn connect(server: &Certstream, path: &str) -> Collector {
        let client = WsClient::connect(server.addr, path);
        client
            .stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        Collector {
            client,
            by_log: BTreeMap::new(),
        }
    }

    /// Reads messages until `done` holds for what was collected, at most `timeout`; false on timeout.
    pub fn read_until(
        &mut self,
        timeout: Duration,
        done: impl Fn(&BTreeMap<String, Vec<SeenEntry>>) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(&self.by_log) {
            if Instant::now() >= deadline {
                return false;
            }
            match self.client.read_frame() {
                Ok(frame) if frame.opcode == 1 => self.record(&frame.payload),
                Ok(frame) if frame.opcode == 8 => panic!("the server closed the stream"),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("stream read failed: {e}"),
            }
        }
        true
    }

    /// Reads messages until the server's close frame, at most `timeout`; returns the close code (`None`: no close
    /// frame in time, or the connection ended without one).
    pub fn read_until_closed(&mut self, timeout: Duration) -> Option<u16> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.client.read_frame() {
                Ok(frame) if frame.opcode == 1 => self.record(&frame.payload),
                Ok(frame) if frame.opcode == 8 => return frame.close_code(),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return None,
            }
        }
        None
    }

    /// Keeps reading for `duration` (to catch duplicates or stray messages).
    pub fn drain_for(&mut self, duration: Duration) {
        self.read_until(duration, |_| false);
    }

    fn record(&mut self, payload: &[u8]) {
        let message: Value = serde_json::from_slice(payload).expect("message is JSON");
        assert_eq!(message["message_type"], "certificate_update", "{message}");
        let data = &message["data"];
        let url = data["source"]["url"].as_str().expect("source.url");
        let index = data["cert_index"].as_u64().expect("cert_index");
        let fingerprint = data["leaf_cert"]["fingerprint"]
            .as_str()
            .expect("fingerprint")
            .to_owned();
        self.by_log
            .entry(mock_name(url))
            .or_default()
            .push((index, fingerprint));
    }

    /// The client itself (e.g. to read the close frame).
    pub fn client(&mut self) -> &mut WsClient {
        &mut self.client
    }
}

/// A certstream following a list file (empty for now) from `window` entries back, polling every 200 ms, with
/// a client on `path` already connected; writing a list into the file starts the pollers. `args` are added.
pub fn start_listening(
    path: &str,
    window: u64,
    args: &[&str],
    env: &[(&str, &str)],
    open_files: Option<u64>,
) -> (Certstream, Collector, ListFile) {
    let list = ListFile::new();
    let (server, collector) = start_listening_to(&list, path, window, args, env, open_files);
    (server, collector, list)
}

/// [`start_listening`] with a list file the test keeps (e.g. across two runs of the server); it is emptied first.
pub fn start_listening_to(
    list: &ListFile,
    path: &str,
    window: u64,
    args: &[&str],
    env: &[(&str, &str)],
    open_files: Option<u64>,
) -> (Certstream, Collector) {
    list.write(br#"{"version":"0","operators":[]}"#);
    let window = window.to_string();
    let mut all = vec![
        "--log-list",
        list.location(),
        "--log-list-refresh",
        "200ms",
        "--start-back",
        &window,
        "--poll-interval",
        "200ms",
        // The test client must never lose a message to its queue limit.
        "--ring-size",
        "100000",
    ];
    all.extend_from_slice(args);
    let server = match open_files {
        Some(limit) => Certstream::start_with_open_files(&all, env, limit),
        None => Certstream::start(&all, env),
    };
    let collector = Collector::connect(&server, path);
    server.wait_stats("the client", Duration::from_secs(10), |s| {
        s["clients"]["total"] == 1 && s["log_list"]["loads"].as_u64() >= Some(1)
    });
    (server, collector)
}

/// Collects until every log of `windows` has its whole window (parseable entries), at most `timeout`, then
/// checks each exactly (after a short drain, so a duplicate or stray index would be seen).
pub fn collect_windows(
    server: &Certstream,
    collector: &mut Collector,
    windows: &[(String, Vec<Expected>)],
    timeout: Duration,
) {
    let complete = collector.read_until(timeout, |by_log| {
        windows.iter().all(|(log, expected)| {
            let want = expected.iter().filter(|e| !e.2).count();
            by_log.get(log).map_or(0, Vec::len) >= want
        })
    });
    let counts: Vec<(String, usize)> = collector
        .by_log
        .iter()
        .map(|(log, received)| (log.clone(), received.len()))
        .collect();
    assert!(
        complete,
        "not every window arrived in time: {counts:?}\n/stats: {}\nlog tail:\n{}",
        server.stats()["logs"],
        server.log_tail(40)
    );
    // Anything extra (a duplicate, an index outside the window) would arrive right behind.
    collector.drain_for(Duration::from_millis(500));
    for (log, expected) in windows {
        let received = collector.by_log.get(log).map_or(&[][..], Vec::as_slice);
        assert_window(log, received, expected);
    }
}

/// Checks that `received` is exactly the parseable entries of `expected`, once each, in index order.
pub fn assert_window(log: &str, received: &[SeenEntry], expected: &[Expected]) {
    let want: Vec<SeenEntry> = expected
        .iter()
        .filter(|(_, _, unparseable)| !unparseable)
        .map(|(index, fingerprint, _)| (*index, fingerprint.clone()))
        .collect();
    if received != want {
        let first_difference = received
            .iter()
            .zip(&want)
            .position(|(a, b)| a != b)
            .unwrap_or(received.len().min(want.len()));
        panic!(
            "{log}: received {} messages, expected {}; first difference at position {first_difference}: \
             received {:?}, expected {:?}",
            received.len(),
            want.len(),
            received.get(first_difference),
            want.get(first_difference)
        );
    }
}

/// Runs `certstream ARGS`, expecting it to refuse to start: exit status 1 within [`STARTUP_TIMEOUT`]; returns
/// its stderr and how long it took.
pub fn refused_start(args: &[&str]) -> (String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(certstream_binary())
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("certstream runs");
    // Read meanwhile: a full pipe would hold the exit.
    let mut stderr_pipe = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut stderr = String::new();
        let _ = stderr_pipe.read_to_string(&mut stderr);
        stderr
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > STARTUP_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "certstream {args:?} started anyway: {}",
                reader.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    let stderr = reader.join().expect("stderr reader");
    assert_eq!(status.code(), Some(1), "certstream {args:?}: {stderr}");
    (stderr, took)
}

/// The `certstream` binary Cargo built beside the running test (`target/<profile>/certstream`).
pub fn certstream_binary() -> String {
    let test = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/certstream
    let profile_dir = test
        .parent()
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .expect("the test runs from target/<profile>/deps");
    let binary = profile_dir.join("certstream");
    assert!(
        binary.is_file(),
        "{} is missing: build it with `cargo build --profile <profile>` (cargo test builds it for the root package's tests)",
        binary.display()
    );
    binary.to_string_lossy().into_owned()
}
