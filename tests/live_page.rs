//! The live page at `/` in a real browser: Debian's headless Chromium driven by Playwright (PyPI) through
//! `tests/python/live_page.py`, against the real binary fed by the mock CT logs, with access tokens on (the page,
//! opened as `/?token=…`, passes the token on to its stream and to `/stats`). The script checks the feed, the
//! filter box, the rate chart, the per-log table, the drop counters, pause, a phone-sized viewport and that nothing
//! fails (no console error, no failed or external request); it saves `target/test-artifacts/live-page.png` (and
//! `live-page-phone.png`).
//!
//! Without Chromium or the Python modules this test fails, naming what to install; it never skips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use certstream_testkit::python::{Client, script};
use certstream_testkit::{Certstream, ListFile, Mock};

/// Debian's `chromium` package; Playwright drives it (`executable_path`), never a browser of its own.
const CHROMIUM: &str = "/usr/bin/chromium";
const LOGS: usize = 2;
const TOKEN: &str = "live-page-token";

/// `target/test-artifacts`, where CI keeps what a test saves for people to look at.
fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

#[test]
fn the_live_page_works_in_a_real_browser() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: apt-get install chromium (`.ci/run` installs it)"
    );
    let python = certstream_testkit::python::interpreter();
    let mock = Mock::with_logs(1, 1, 50, &[]);
    let list = ListFile::new();
    list.write(&serde_json::to_vec(&mock.list()).expect("list JSON"));
    // The list file's private directory holds the token file too.
    let tokens = list.path.with_file_name("tokens");
    std::fs::write(&tokens, format!("{TOKEN}\n")).expect("write the token file");
    let server = Certstream::start(
        &[
            "--log-list",
            list.location(),
            "--auth-tokens",
            tokens.to_str().expect("UTF-8 path"),
            "--start-back",
            "20",
            "--poll-interval",
            "200ms",
        ],
        // The page's own polling of /stats under the default request budget, as an operator would see it.
        &[("CERTSTREAM_OPS_RATE", "20")],
    );
    server.wait_stats("entries from every log", Duration::from_secs(30), |s| {
        s["logs"].as_array().is_some_and(|logs| {
            logs.len() == LOGS && logs.iter().all(|log| log["delivered"].as_u64() > Some(0))
        })
    });

    let artifacts = artifacts();
    let started = Instant::now();
    let mut browser = Client::spawn(
        "live_page.py",
        Command::new(&python)
            .arg(script("live_page.py"))
            .arg(CHROMIUM)
            .arg(format!("http://{}", server.addr))
            .arg(TOKEN)
            .arg(LOGS.to_string())
            .arg(&artifacts),
    );
    // One line per check; every wait of the script is bounded (20 s), and each line here too (60 s).
    loop {
        let line = browser.take(1).remove(0);
        println!("{line}");
        if line.starts_with("PASS") {
            break;
        }
        assert!(
            line.starts_with("ok "),
            "{line}\nserver log:\n{}",
            server.log_tail(30)
        );
    }
    let screenshot = artifacts.join("live-page.png");
    assert!(
        screenshot.exists(),
        "{} was not saved",
        screenshot.display()
    );
    println!(
        "screenshot: {} ({:.1} s in the browser)",
        screenshot.display(),
        started.elapsed().as_secs_f64()
    );
}
