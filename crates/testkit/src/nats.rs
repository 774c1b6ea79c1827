//! A real `nats-server` with JetStream, started by the test on 127.0.0.1 (a free port, a private store directory),
//! stopped and restarted on the same port and store, killed on drop. It is never skipped: without the binary the
//! test fails, saying how to install it. Beside it, what a test reads or sets up in the stream directly, with
//! `async-nats` ([`stream_contents`], [`last_sequence`], [`create_stream`], [`delete_stream`]).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use certstream::broker::wire;

/// Bound on the server's start.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `nats-server -js`.
pub struct NatsServer {
    child: Option<Child>,
    /// Its client port on 127.0.0.1.
    pub port: u16,
    store: PathBuf,
    args: Vec<String>,
}

impl NatsServer {
    /// Starts `nats-server -js` with `args` added (e.g. `--user`, `--pass`) and waits until it takes clients. A
    /// free port can be taken by another test between choosing it and the server's bind: then another is chosen.
    pub fn start(args: &[&str]) -> NatsServer {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let store = std::env::temp_dir().join(format!(
            "certstream-nats-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&store).expect("nats store dir");
        let mut server = NatsServer {
            child: None,
            port: 0,
            store,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        for _ in 0..5 {
            server.port = TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .expect("a free port")
                .port();
            if server.launch() {
                return server;
            }
        }
        panic!("nats-server could not listen on a free port in 5 tries");
    }

    /// `nats://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's process ID (benchmarks read its CPU time), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (SIGKILL: a crash, not a shutdown) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store, and waits until it takes clients.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "the NATS server is running");
        assert!(
            self.launch(),
            "nats-server could not listen again on port {}",
            self.port
        );
    }

    /// Runs the server on `self.port`; true once it answers there as NATS (its `INFO` line), false if it exited
    /// first (the port was taken).
    fn launch(&mut self) -> bool {
        let store = self.store.to_str().expect("UTF-8 temp path").to_owned();
        let port = self.port.to_string();
        let mut child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port, "-sd", &store])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run nats-server ({e}): these tests need a real one, \
                     `apt-get install nats-server`"
                )
            });
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if answers_as_nats(self.port) {
                self.child = Some(child);
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on port {} within {START_TIMEOUT:?}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether what listens on `port` greets as a NATS server does (another process may hold the port).
fn answers_as_nats(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut greeting = [0; 4];
    std::io::Read::read_exact(&mut stream, &mut greeting).is_ok() && &greeting == b"INFO"
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// Bound on every exchange with the stream through `async-nats`.
const STREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// The stream certstream publishes to by default.
pub const STREAM: &str = "CERTSTREAM";

/// One message of the stream, as certstream published it.
#[derive(Debug)]
pub struct StoredEntry {
    /// Its stream sequence (the cursor clients see).
    pub sequence: u64,
    /// `Certstream-Log-Id`.
    pub log_id: String,
    /// `Certstream-Index`.
    pub index: u64,
    /// `Nats-Msg-Id`.
    pub message_id: String,
    /// `Certstream-Entry-Type`.
    pub entry_type: String,
    /// The three payload lines.
    pub payload: Vec<u8>,
}

/// Runs `future` on a tokio runtime of its own (what `async-nats` needs), failing the test after
/// [`STREAM_TIMEOUT`].
fn with_nats<F: std::future::Future>(what: &str, future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime
        .block_on(async { tokio::time::timeout(STREAM_TIMEOUT, future).await })
        .unwrap_or_else(|_| panic!("{what}: no answer from NATS within {STREAM_TIMEOUT:?}"))
}

/// The stream [`STREAM`] on `url`.
pub async fn stream_at(url: &str) -> jetstream::stream::Stream {
    let client = async_nats::connect(url).await.expect("connect to NATS");
    jetstream::new(client)
        .get_stream(STREAM)
        .await
        .expect("the stream")
}

/// Everything in the stream [`STREAM`] on `url`, in stream order (it must start at sequence 1: nothing expired).
pub fn stream_contents(url: &str) -> Vec<StoredEntry> {
    with_nats("reading the stream", async {
        let mut stream = stream_at(url).await;
        let state = stream.info().await.expect("stream info").state.clone();
        assert_eq!(state.first_sequence, 1, "nothing expired");
        let mut stored = Vec::new();
        for sequence in 1..=state.last_sequence {
            let message = stream
                .get_raw_message(sequence)
                .await
                .expect("stream message");
            assert_eq!(message.subject.as_str(), "certstream.entries");
            let header = |name: &str| {
                message
                    .headers
                    .get(name)
                    .unwrap_or_else(|| panic!("header {name}"))
                    .as_str()
                    .to_owned()
            };
            stored.push(StoredEntry {
                sequence,
                log_id: header(wire::LOG_ID_HEADER),
                index: header(wire::INDEX_HEADER).parse().expect("index"),
                message_id: header("Nats-Msg-Id"),
                entry_type: header(wire::ENTRY_TYPE_HEADER),
                payload: message.payload.to_vec(),
            });
        }
        stored
    })
}

/// The last sequence of the stream [`STREAM`] on `url` (0 while it is empty).
pub fn last_sequence(url: &str) -> u64 {
    with_nats("asking the stream's state", async {
        let mut stream = stream_at(url).await;
        stream
            .info()
            .await
            .expect("stream info")
            .state
            .last_sequence
    })
}

/// The messages and bytes the stream [`STREAM`] on `url` holds.
pub fn stream_size(url: &str) -> (u64, u64) {
    with_nats("asking the stream's state", async {
        let mut stream = stream_at(url).await;
        let state = stream.info().await.expect("stream info").state.clone();
        (state.messages, state.bytes)
    })
}

/// Creates the stream [`STREAM`] on `url` with `subjects` and `retention`, as another tool would have.
pub fn create_stream(url: &str, subjects: &[&str], retention: jetstream::stream::RetentionPolicy) {
    with_nats("creating the stream", async {
        let client = async_nats::connect(url).await.expect("connect to NATS");
        jetstream::new(client)
            .create_stream(jetstream::stream::Config {
                name: STREAM.into(),
                subjects: subjects.iter().map(|s| s.to_string()).collect(),
                retention,
                ..Default::default()
            })
            .await
            .expect("create the stream");
    })
}

/// Deletes the stream [`STREAM`] on `url` (with its messages and consumers), as an operator would.
pub fn delete_stream(url: &str) {
    with_nats("deleting the stream", async {
        let client = async_nats::connect(url).await.expect("connect to NATS");
        jetstream::new(client)
            .delete_stream(STREAM)
            .await
            .expect("delete the stream");
    })
}

/// Checks that `start` (an ingester or a relay started with the URL it is given, answering its refusal's stderr)
/// refuses a NATS server's wrong password, naming the server without the password.
pub fn assert_refuses_wrong_credentials(start: impl Fn(&str) -> String) {
    let nats = NatsServer::start(&["--user", "certstream", "--pass", "right"]);
    let error = start(&format!("nats://certstream:wrong@127.0.0.1:{}", nats.port));
    assert!(
        error.contains(&format!("NATS at nats://***@127.0.0.1:{}", nats.port)),
        "{error}"
    );
    assert!(error.to_lowercase().contains("authorization"), "{error}");
    assert!(
        !error.contains("wrong"),
        "the password is not shown: {error}"
    );
}
