//! The `mock-ct-log` binary: it announces its address, exits when its stdin closes (its parent died), and refuses
//! bad flags.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn announces_its_address_and_exits_when_stdin_closes() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mock-ct-log"))
        .args(["--listen", "127.0.0.1:0", "--rfc6962", "1", "--tiled", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn mock-ct-log");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the address line");
    assert!(line.starts_with("listening http://127.0.0.1:"), "{line:?}");
    drop(child.stdin.take());
    let deadline = Instant::now() + TIMEOUT;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("mock still running after stdin closed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bad_flags_are_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_mock-ct-log"))
        .args(["--fault", "429@nosuchlog"])
        .stdin(Stdio::null())
        .output()
        .expect("run mock-ct-log");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("nosuchlog"));
}
