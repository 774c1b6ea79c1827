//! The `certstream` binary: flags and environment → configuration → runtime → log list → pollers → publisher →
//! outputs (the hub; with `--nats-url` the broker, and the stream's reader feeds the hub) → server. As
//! `certstream relay`: the stream's reader → the hub → the server, without pollers.

use std::cell::Cell;
use std::io::Write as _;
use std::pin::pin;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use certstream::broker::Nats;
use certstream::config::{self, Command, Mode};
use certstream::http::HttpClient;
use certstream::hub::Hub;
use certstream::ingest::resume::StateFile;
use certstream::ingest::supervisor::Supervisor;
use certstream::logging::LogOutput;
use certstream::publish::{Gate, Output, Publisher};
use certstream::server::{self, Server};
use futures_util::future::{Either, select};

fn main() -> ExitCode {
    let config = match Command::parse(std::env::args().skip(1), |name| std::env::var(name).ok()) {
        Ok(Command::Run(config)) => *config,
        Ok(Command::Help) => {
            let _ = std::io::stdout().write_all(config::help().as_bytes());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            let _ = writeln!(
                std::io::stdout(),
                "certstream {}",
                env!("CARGO_PKG_VERSION")
            );
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            report(&error);
            return ExitCode::from(2);
        }
    };
    let log = match LogOutput::stdout(config.log_buffer) {
        Ok(log) => log,
        Err(error) => {
            report(&error);
            return ExitCode::FAILURE;
        }
    };
    tracing_subscriber::fmt()
        // Colours only on a terminal: journald and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(config::DEFAULT_LOG_FILTER)),
        )
        .with_writer(log.clone())
        .init();
    certstream::panic_boundary::report_panics_through_the_log();
    if let Err(error) = server::raise_open_files_limit() {
        tracing::warn!(%error, "could not raise the open files limit");
    }
    if config.mode == Mode::Relay && config.sets_ingester_options() {
        tracing::warn!(
            "a relay ignores the options of the CT logs, of resume and of publishing to the stream \
             (--log-list, --state-file, --nats-max-age, --nats-buffer-bytes, ...)"
        );
    }
    // Connected and the stream checked before anything is served: a broker that cannot take the messages (or, for
    // a relay, has no stream) stops the start, named.
    let nats = match Nats::connect(&config.nats, config.mode) {
        Ok(nats) => nats.map(Rc::new),
        Err(error) => {
            report(&error);
            log.flush(Duration::from_millis(200));
            return ExitCode::FAILURE;
        }
    };
    let reporter = Rc::new(log.clone());
    let result = certstream::runtime::block_on(async move {
        let hub = Hub::configured(&config);
        let mode = config.mode;
        let ingest = config.ingest.clone();
        let shutdown_grace = config.shutdown_grace;
        // Read (and checked writable) before anything is served: a bad state file stops the start, named.
        let state = match (&ingest.state_file, mode) {
            (Some(path), Mode::Ingest) => Some(Rc::new(
                StateFile::open(path.clone(), ingest.ignore_bad_state_file)
                    .await
                    .map_err(std::io::Error::other)?,
            )),
            _ => None,
        };
        // With a stream, every client is served from it (an ingester's like a relay's: the same bytes, with
        // cursors), and may start from a cursor; the feed ends only if the broker's thread is gone, and then so
        // does the server.
        let reader = nats.as_ref().map(|nats| Rc::new(nats.reader()));
        let mut server = Server::bind(config, hub.clone())?;
        if let Some(reader) = &reader {
            server = server.with_replay_source(reader.clone());
        }
        let ctrl_c = monoio::utils::CtrlC::new().map_err(std::io::Error::other)?;
        server.add_reporter(reporter);
        server.add_reporter(Rc::new(hub.gate()));
        if let Some(nats) = &nats {
            server.add_reporter(nats.clone());
        }
        let stop_feed = Rc::new(Cell::new(false));
        let feed_ended = reader.clone().map(|reader| {
            server.add_reporter(reader.clone());
            let (hub, stop) = (hub.clone(), stop_feed.clone());
            monoio::spawn(async move { reader.feed(hub, stop).await })
        });
        let supervisor = match mode {
            Mode::Relay => None,
            Mode::Ingest => {
                let http = Rc::new(
                    HttpClient::new(ingest.http_client_config()).map_err(std::io::Error::other)?,
                );
                let broker = nats.as_ref().map(|nats| Rc::new(nats.publisher()));
                // With a broker the hub is fed from the stream, but ingestion still waits for the clients that keep
                // up: the stream's limits must not remove what this instance's clients have not read yet.
                let gate = Gate::new(hub.gate());
                let (outputs, gate): (Vec<Rc<dyn Output>>, Gate) = match &broker {
                    Some(broker) => {
                        server.add_reporter(broker.clone());
                        (vec![broker.clone()], gate.with_room(broker.clone()))
                    }
                    None => (vec![Rc::new(hub.clone())], gate),
                };
                let publisher = Rc::new(Publisher::new(ingest.build_limits, outputs, Some(gate)));
                let mut supervisor = Supervisor::new(ingest, http.clone(), publisher.clone());
                if let Some(state) = state {
                    server.add_reporter(state.clone());
                    supervisor = supervisor.with_state_file(state);
                }
                if let Some(broker) = &broker {
                    supervisor = supervisor.with_durable_positions(broker.clone());
                }
                let supervisor = Rc::new(supervisor);
                server.add_reporter(publisher);
                server.add_reporter(supervisor.clone());
                server.add_reporter(http);
                monoio::spawn(supervisor.clone().run());
                Some((supervisor, broker))
            }
        };
        tracing::info!(listen = %server.local_addr()?, ?mode, legacy_driver = monoio::utils::is_legacy(), "serving");
        let broker_thread_gone = Rc::new(Cell::new(false));
        let stopping = {
            let broker_thread_gone = broker_thread_gone.clone();
            async move {
                if let Some(feed_ended) = feed_ended {
                    if let Either::Right(_) = select(pin!(ctrl_c), pin!(feed_ended)).await {
                        tracing::error!(
                            "the stream's reader has stopped (the NATS client's thread is gone)"
                        );
                        broker_thread_gone.set(true);
                    }
                } else {
                    ctrl_c.await;
                }
                if let Some((supervisor, broker)) = &supervisor {
                    // Nothing is published from here on, so the positions saved are exactly what was published
                    // (a restart with the state file delivers every index once across the two runs).
                    supervisor.shutdown();
                    // What the broker acknowledges by then is saved as done; the rest is fetched again at restart.
                    if let Some(broker) = broker {
                        if !broker.drained().await {
                            tracing::warn!(
                                "the NATS broker did not acknowledge everything within --nats-drain-timeout"
                            );
                        }
                        // The clients are served from the stream: they get what it acknowledged, within the grace.
                        if let Some(reader) = reader.as_ref().filter(|_| !broker_thread_gone.get())
                        {
                            let acked = broker.last_acked_sequence();
                            let _ = monoio::time::timeout(shutdown_grace, async {
                                while reader.cursor() < acked {
                                    monoio::time::sleep(Duration::from_millis(5)).await;
                                }
                            })
                            .await;
                        }
                    }
                    supervisor.save_state().await;
                }
                stop_feed.set(true);
                // What the clients that keep up were sent reaches them before the close frames discard it.
                let _ = monoio::time::timeout(shutdown_grace, hub.flushed()).await;
            }
        };
        server.run(stopping).await;
        if broker_thread_gone.get() {
            // Exit 1: a service manager restarts a server whose stream reader is gone.
            return Err(std::io::Error::other(
                "stopped: the stream's reader is gone (the NATS client's thread stopped)",
            ));
        }
        Ok::<_, std::io::Error>(())
    });
    let code = match result.and_then(|inner| inner) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            report(&error);
            ExitCode::FAILURE
        }
    };
    // The last lines (shutdown) get a moment to reach a live reader; a stalled one cannot hold the exit.
    log.flush(Duration::from_millis(200));
    code
}

/// A fatal error on stderr; a closed or broken stderr must not turn it into a panic.
fn report(error: &dyn std::fmt::Display) {
    let _ = writeln!(std::io::stderr(), "certstream: {error}");
}
