//! The server in this process, on its own monoio thread with a publish handle, and numbered certstream-shaped
//! messages to publish.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use certstream::config::Config;
use certstream::cursor::ReplaySource;
use certstream::hub::Hub;
use certstream::message::{EncodedMessage, Message};
use certstream::server::{self, Server};

use crate::http::http_get;
use crate::wait::wait_until;
use certstream_ws::frame::Frame;
use serde_json::json;

enum Command {
    Publish(Box<Message>),
    Shutdown,
}

/// A real server on a background thread (its own monoio runtime), listening on 127.0.0.1 on a free port.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    commands: mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server with the default configuration changed by `tweak`.
    pub fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::launch(tweak, None)
    }

    /// Starts a server whose clients may start from a cursor or a time, replayed from `source` (e.g. a
    /// [`crate::replay::MemoryStream`]), as with JetStream.
    pub fn start_with_replay(
        tweak: impl FnOnce(&mut Config),
        source: impl ReplaySource + Send + 'static,
    ) -> Self {
        Self::launch(tweak, Some(Box::new(source)))
    }

    fn launch(
        tweak: impl FnOnce(&mut Config),
        source: Option<Box<dyn ReplaySource + Send>>,
    ) -> Self {
        let _ = server::raise_open_files_limit();
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            // The tests poll `/stats` freely; the rate limit has its own test (which sets it).
            ops_rate: 100_000,
            ..Config::default()
        };
        tweak(&mut config);
        let (commands, inbox) = mpsc::channel();
        let (addr_tx, addr_rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            crate::runtime::block_on(async move {
                let grace = config.shutdown_grace;
                let hub = Hub::configured(&config);
                let mut server = Server::bind(config, hub.clone()).expect("bind");
                if let Some(source) = source {
                    let source: std::rc::Rc<dyn ReplaySource + Send> = source.into();
                    server = server.with_replay_source(source);
                }
                addr_tx
                    .send(server.local_addr().expect("local addr"))
                    .unwrap();
                // The test thread cannot touch the single-threaded hub: it sends commands, polled here.
                let control = async move {
                    loop {
                        match inbox.try_recv() {
                            Ok(Command::Publish(message)) => {
                                hub.publish(&std::rc::Rc::new(*message))
                            }
                            Ok(Command::Shutdown) | Err(mpsc::TryRecvError::Disconnected) => {
                                // As `main`: what the clients that keep up were sent reaches them first.
                                let _ = monoio::time::timeout(grace, hub.flushed()).await;
                                return;
                            }
                            Err(mpsc::TryRecvError::Empty) => {
                                monoio::time::sleep(Duration::from_millis(1)).await
                            }
                        }
                    }
                };
                server.run(control).await;
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server did not start");
        Self {
            addr,
            commands,
            thread: Some(thread),
        }
    }

    /// Publishes `message` (or bare frames, without metadata) to the clients, as the publish step would.
    pub fn publish(&self, message: impl Into<Message>) {
        self.commands
            .send(Command::Publish(Box::new(message.into())))
            .expect("server thread gone");
    }

    /// `ws://127.0.0.1:port<path>`
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// The `/stats` document.
    pub fn stats(&self) -> serde_json::Value {
        let (status, _, body) = http_get(self.addr, "/stats");
        assert_eq!(status, 200, "/stats: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).expect("/stats is JSON")
    }

    /// Waits until `condition` holds on `/stats`, at most `timeout`; returns that `/stats`.
    pub fn wait_stats(
        &self,
        what: &str,
        timeout: Duration,
        condition: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        wait_until(
            what,
            timeout,
            || self.stats(),
            condition,
            |stats| format!("/stats: {stats}"),
        )
    }

    /// Waits until `/stats` reports `n` connected WebSocket clients.
    pub fn wait_for_clients(&self, n: u64) {
        self.wait_stats(&format!("{n} clients"), Duration::from_secs(30), |stats| {
            stats["clients"]["total"] == n
        });
    }

    /// Graceful shutdown, as `main` does it: what the clients that keep up were sent is flushed (at most the shutdown
    /// grace), then close 1001 to every WebSocket client and the end of every HTTP stream's body; waits for the
    /// server thread to finish.
    pub fn stop(mut self) -> Duration {
        let started = Instant::now();
        let _ = self.commands.send(Command::Shutdown);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("server thread panicked");
        }
        started.elapsed()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Message number `n` in the three stream variants, certstream-shaped (docs/wire-format.md §3), with non-ASCII text
/// in it.
pub fn message(n: u64) -> EncodedMessage {
    let domain = format!("host-{n}.example.com");
    let domains = json!([domain.clone(), format!("www.{domain}")]);
    let mut leaf = json!({
        "all_domains": domains,
        "extensions": {"basicConstraints": "CA:FALSE", "subjectAltName": format!("DNS:www.{domain}, DNS:{domain}")},
        "fingerprint": "AB:CD:EF",
        "is_ca": false,
        "issuer": {"C": "FR", "CN": "Autorité de test €", "L": null, "O": "Test", "OU": null, "ST": null,
                   "aggregated": "/C=FR/CN=Autorité de test €/O=Test", "emailAddress": null},
        "not_after": 1_800_000_000u64,
        "not_before": 1_700_000_000u64,
        "serial_number": format!("{n:X}"),
        "sha1": "AB:CD:EF",
        "sha256": "01:23:45",
        "signature_algorithm": "sha256, rsa",
        "subject": {"C": null, "CN": domain, "L": null, "O": null, "OU": null, "ST": null,
                    "aggregated": format!("/CN={domain}"), "emailAddress": null},
    });
    let data = |leaf: serde_json::Value, chain: Option<serde_json::Value>| {
        let mut data = json!({
            "cert_index": n,
            "cert_link": format!("https://ct.example.net/log/ct/v1/get-entries?start={n}&end={n}"),
            "leaf_cert": leaf,
            "seen": 1_732_000_000.125 + n as f64,
            "source": {"name": "Test log", "timestamp": 1_731_999_999.5, "type": "rfc6962",
                       "url": "https://ct.example.net/log/"},
            "update_type": "X509LogEntry",
        });
        if let Some(chain) = chain {
            data["chain"] = chain;
        }
        json!({"data": data, "message_type": "certificate_update"})
    };
    let lite = data(leaf.clone(), None);
    leaf["as_der"] = json!(format!("TUlJ{n}"));
    let full = data(leaf, Some(json!([])));
    let domains_only = json!({"data": domains, "message_type": "dns_entries"});
    let frame = |value: &serde_json::Value| Frame::text(&serde_json::to_vec(value).unwrap());
    EncodedMessage {
        lite: frame(&lite),
        full: frame(&full),
        domains: frame(&domains_only),
    }
}
