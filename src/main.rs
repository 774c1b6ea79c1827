//! The `certstream` binary: flags and environment → configuration → runtime → log list → pollers → publisher →
//! outputs (the hub) → server.

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
        let server = Server::bind(config, hub.clone())?;
        let ctrl_c = monoio::utils::CtrlC::new().map_err(std::io::Error::other)?;
        server.add_reporter(reporter);
        server.add_reporter(Rc::new(hub.gate()));
        // With a stream, every client is served from it (an ingester's like a relay's: the same bytes, with
        // cursors); the feed ends only if the broker's thread is gone, and then so does the server.
        let feed_ended = match &nats {
            Some(nats) => {
                server.add_reporter(nats.clone());
                let reader = Rc::new(nats.reader());
                server.add_reporter(reader.clone());
                let hub = hub.clone();
                Some(monoio::spawn(async move { reader.feed(hub).await }))
            }
            None => None,
        };
        let supervisor = match mode {
            Mode::Relay => None,
            Mode::Ingest => {
                let http = Rc::new(
                    HttpClient::new(ingest.http_client_config()).map_err(std::io::Error::other)?,
                );
                let broker = nats.as_ref().map(|nats| Rc::new(nats.publisher()));
                let (outputs, gate): (Vec<Rc<dyn Output>>, Gate) = match &broker {
                    Some(broker) => {
                        server.add_reporter(broker.clone());
                        (vec![broker.clone()], Gate::room(broker.clone()))
                    }
                    None => (vec![Rc::new(hub.clone())], Gate::new(hub.gate())),
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
        let stopping = async move {
            let signalled = match feed_ended {
                Some(feed_ended) => {
                    let stopped = pin!(ctrl_c);
                    let feed_ended = pin!(feed_ended);
                    matches!(select(stopped, feed_ended).await, Either::Left(_))
                }
                None => {
                    ctrl_c.await;
                    true
                }
            };
            if !signalled {
                tracing::error!("the NATS client's thread has stopped: stopping");
            }
            if let Some((supervisor, broker)) = &supervisor {
                // Nothing is published from here on, so the positions saved are exactly what was published
                // (a restart with the state file delivers every index once across the two runs).
                supervisor.shutdown();
                // What the broker acknowledges by then is saved as done; the rest is fetched again at restart.
                if let Some(broker) = broker
                    && !broker.drained().await
                {
                    tracing::warn!(
                        "the NATS broker did not acknowledge everything within --nats-drain-timeout"
                    );
                }
                supervisor.save_state().await;
            }
            // What the clients that keep up were sent reaches them before the close frames discard it.
            let _ = monoio::time::timeout(shutdown_grace, hub.flushed()).await;
        };
        server.run(stopping).await;
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
