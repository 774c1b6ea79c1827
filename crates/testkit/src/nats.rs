//! A real `nats-server` with JetStream, started by the test on 127.0.0.1 (a free port, a private store directory),
//! stopped and restarted on the same port and store, killed on drop. It is never skipped: without the binary the
//! test fails, saying how to install it.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
    /// Starts `nats-server -js` with `args` added (e.g. `--user`, `--pass`) and waits until it takes clients.
    pub fn start(args: &[&str]) -> NatsServer {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let store = std::env::temp_dir().join(format!(
            "certstream-nats-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&store).expect("nats store dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut server = NatsServer {
            child: None,
            port,
            store,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        server.resume();
        server
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
        let store = self.store.to_str().expect("UTF-8 temp path").to_owned();
        let port = self.port.to_string();
        let child = Command::new("nats-server")
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
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on port {} within {START_TIMEOUT:?}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
