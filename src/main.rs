//! The `certstream` binary: flags and environment → configuration → runtime → log list → pollers → pipeline →
//! hub → server.

use std::process::ExitCode;
use std::rc::Rc;

use certstream::config::{Command, HELP};
use certstream::ingest::pipeline::{CHAIN_CACHE_CAPACITY, Pipeline};
use certstream::ingest::supervisor::{Supervisor, http_client};
use certstream::server::{self, Server};

fn main() -> ExitCode {
    let config = match Command::parse(std::env::args().skip(1), |name| std::env::var(name).ok()) {
        Ok(Command::Run(config)) => *config,
        Ok(Command::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("certstream {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("certstream: {error}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        // Colours only on a terminal: journald and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    if let Err(error) = server::raise_open_files_limit() {
        tracing::warn!(%error, "could not raise the open files limit");
    }
    let result = server::block_on(async move {
        let ingest = config.ingest.clone();
        let server = Server::bind(config)?;
        let ctrl_c = monoio::utils::CtrlC::new().map_err(std::io::Error::other)?;
        let http = Rc::new(http_client(&ingest).map_err(std::io::Error::other)?);
        let pipeline = Rc::new(Pipeline::new(server.hub(), CHAIN_CACHE_CAPACITY));
        let supervisor = Rc::new(Supervisor::new(ingest, http, pipeline.clone()));
        server.add_reporter(pipeline);
        server.add_reporter(Rc::new(server.hub().gate()));
        server.add_reporter(supervisor.clone());
        monoio::spawn(supervisor.clone().run());
        tracing::info!(listen = %server.local_addr()?, legacy_driver = monoio::utils::is_legacy(), "serving");
        server.run(ctrl_c).await;
        supervisor.shutdown();
        Ok::<_, std::io::Error>(())
    });
    match result.and_then(|inner| inner) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("certstream: {error}");
            ExitCode::FAILURE
        }
    }
}
