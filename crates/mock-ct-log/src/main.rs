//! `mock-ct-log`: the mock CT log server of the test suite and benchmarks (see the library's documentation).

use std::io::Write as _;
use std::process::ExitCode;

use mock_ct_log::{MockServer, parse_options};

fn run() -> Result<(), String> {
    let options = parse_options(std::env::args().skip(1))?;
    let watch_stdin = !options.ignore_stdin;
    let mock = MockServer::start(options)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening http://{}", mock.addr)
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("stdout: {e}"))?;
    drop(stdout);
    if watch_stdin {
        // Whoever started us holds our stdin: when they die, so do we.
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        std::process::exit(0);
    }
    loop {
        std::thread::park();
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mock-ct-log: {e}");
            ExitCode::FAILURE
        }
    }
}
