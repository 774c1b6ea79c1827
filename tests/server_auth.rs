//! Access tokens (`--auth-tokens`, `--auth-metrics`) with the real `certstream` binary: which routes need a token,
//! the `401` before any upgrade, a token by header and by query, reloads on change and on SIGHUP, a bad file at
//! start and at reload, the counters, and tokens never shown in the log or in `/stats`.
//!
//! Every server follows an empty log list: nothing is published, the tests look at the handshake and the routes.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use certstream_testkit::event_stream::HttpStreamClient;
use certstream_testkit::{
    Certstream, ListFile, WsClient, certstream_binary, http_request, upgrade_request,
};
use serde_json::Value;

const STREAMS: [&str; 3] = ["/", "/full-stream", "/domains-only"];
const CONTENT: [&str; 4] = [
    "/latest.json",
    "/example.json",
    "/full-stream/example.json",
    "/domains-only/example.json",
];

/// How long a change of the token file may take to be in force (the file is looked at every second).
const RELOADED_WITHIN: Duration = Duration::from_secs(10);

/// A server following no log, with the token file holding `tokens` (one a line) and `args`.
struct AuthServer {
    server: Certstream,
    /// The token file (a private temporary file; `write` replaces it atomically).
    tokens: ListFile,
    _list: ListFile,
}

impl AuthServer {
    fn start(tokens: &str, args: &[&str]) -> Self {
        let list = ListFile::new();
        list.write(br#"{"version":"0","operators":[]}"#);
        let file = ListFile::new();
        file.write(tokens.as_bytes());
        let mut all = vec![
            "--log-list",
            list.location(),
            "--auth-tokens",
            file.location(),
        ];
        all.extend_from_slice(args);
        Self {
            server: Certstream::start(&all, &[]),
            tokens: file,
            _list: list,
        }
    }

    /// GET `target` with extra header lines: status, head, body.
    fn get(&self, target: &str, headers: &str) -> (u16, String, Vec<u8>) {
        http_request(
            self.server.addr,
            &format!("GET {target} HTTP/1.1\r\nHost: t\r\n{headers}\r\n"),
        )
    }

    /// A WebSocket upgrade request on `target` with extra header lines: status and head of the answer.
    fn upgrade(&self, target: &str, headers: &str) -> (u16, String) {
        let (status, head, _) = http_request(self.server.addr, &upgrade_request(target, headers));
        (status, head)
    }

    /// `/stats`, with `token` when metrics are closed.
    fn stats_with(&self, token: &str) -> Value {
        let (status, _, body) = self.get("/stats", &bearer(token));
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).expect("/stats is JSON")
    }

    /// Whether `token` opens `/latest.json` (200) or is refused (401); anything else fails the test.
    fn accepts(&self, token: &str) -> bool {
        match self.get("/latest.json", &bearer(token)).0 {
            200 => true,
            401 => false,
            other => panic!("/latest.json answered {other}"),
        }
    }

    /// Waits until `token` is accepted (or refused, `accepted == false`).
    fn wait_accepts(&self, token: &str, accepted: bool) {
        let deadline = Instant::now() + RELOADED_WITHIN;
        while self.accepts(token) != accepted {
            assert!(
                Instant::now() < deadline,
                "{token} accepted should be {accepted}; log:\n{}",
                self.server.log_tail(20)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fails if any of `secrets` appears in the server's log or in `/stats` and `/metrics`.
    fn assert_never_shows(&self, secrets: &[&str], token: &str) {
        let log = self.server.log_tail(usize::MAX);
        let stats = self.stats_with(token).to_string();
        let (_, _, metrics) = self.get("/metrics", &bearer(token));
        let metrics = String::from_utf8(metrics).expect("UTF-8 metrics");
        for secret in secrets {
            assert!(!log.contains(secret), "{secret} in the log:\n{log}");
            assert!(!stats.contains(secret), "{secret} in /stats: {stats}");
            assert!(!metrics.contains(secret), "{secret} in /metrics");
        }
    }
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

fn assert_refused(status: u16, head: &str, what: &str, wrong: bool) {
    assert_eq!(status, 401, "{what}: {head}");
    assert!(
        head.contains("WWW-Authenticate: Bearer realm=\"certstream\""),
        "{what}: {head}"
    );
    assert_eq!(
        head.contains("error=\"invalid_token\""),
        wrong,
        "{what}: {head}"
    );
    assert!(!head.contains("Upgrade: websocket"), "{what}: {head}");
}

#[test]
fn streams_and_content_need_a_token_by_header_or_query_before_any_upgrade() {
    let server = AuthServer::start("# readers\n  alpha-token \n\nbeta-token\n", &[]);
    let mut missing = 0;
    let mut wrong = 0;
    for path in STREAMS {
        let (status, head) = server.upgrade(path, "");
        assert_refused(status, &head, path, false);
        missing += 1;
        for (target, headers) in [
            (path.to_owned(), bearer("gamma-token")),
            (format!("{path}?token=alpha-toke"), String::new()),
            (path.to_owned(), bearer("alpha-token-")),
        ] {
            let (status, head) = server.upgrade(&target, &headers);
            assert_refused(status, &head, &format!("{target} {headers}"), true);
            wrong += 1;
        }
        // A header wins over the query.
        let (status, head) = server.upgrade(&format!("{path}?token=alpha-token"), &bearer("nope"));
        assert_refused(status, &head, path, true);
        wrong += 1;
        WsClient::handshake_with(
            std::net::TcpStream::connect(server.server.addr).unwrap(),
            path,
            &bearer("alpha-token"),
        );
        WsClient::handshake_with(
            std::net::TcpStream::connect(server.server.addr).unwrap(),
            path,
            "authorization: bearer beta-token\r\n",
        );
        WsClient::connect(server.server.addr, &format!("{path}?token=beta-token"));
    }
    for path in CONTENT {
        let (status, head, body) = server.get(path, "");
        assert_refused(status, &head, path, false);
        assert_eq!(body.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
        missing += 1;
        let (status, head, _) = server.get(&format!("{path}?token=wrong"), "");
        assert_refused(status, &head, path, true);
        wrong += 1;
        assert_eq!(server.get(path, &bearer("beta-token")).0, 200, "{path}");
        assert_eq!(
            server.get(&format!("{path}?token=alpha-token"), "").0,
            200,
            "{path}"
        );
    }
    // Server-sent events and NDJSON are streams too, by path or by `Accept` on a stream path.
    for (target, accept) in [
        ("/sse", None),
        ("/full-stream/ndjson", None),
        ("/domains-only", Some("text/event-stream")),
        ("/", Some("application/x-ndjson")),
    ] {
        let accept: Vec<(&str, &str)> = accept.into_iter().map(|a| ("Accept", a)).collect();
        let refused = HttpStreamClient::get(server.server.addr, target, &accept);
        assert_refused(refused.status, &refused.head, target, false);
        missing += 1;
        let with_token = format!(
            "{target}{}token=alpha-token",
            if target.contains('?') { '&' } else { '?' }
        );
        let served = HttpStreamClient::get(server.server.addr, &with_token, &accept);
        assert_eq!(served.status, 200, "{target}: {}", served.head);
    }
    // A proxy's Basic credentials in front leave the query to speak.
    let basic = "Authorization: Basic dTpw\r\n";
    assert_eq!(server.get("/latest.json?token=alpha-token", basic).0, 200);
    // HEAD is refused the same way, without a body.
    let raw = certstream_testkit::raw_request(
        &server.server.addr.to_string(),
        "HEAD",
        "/latest.json",
        b"",
    );
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.starts_with("HTTP/1.1 401") && text.ends_with("\r\n\r\n"),
        "{text}"
    );
    missing += 1;

    // Open: /health, the live page (which hands its own ?token= on), a stream path without an upgrade, and
    // (without --auth-metrics) /stats and /metrics.
    assert_eq!(server.get("/health", "").0, 200);
    let (status, _, page) = server.get("/", "");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&page).contains("withToken(\"/\", query)"));
    assert_eq!(server.get("/full-stream", "").0, 426);
    assert_eq!(server.get("/metrics", "").0, 200);
    let stats = server.server.stats();
    assert_eq!(stats["auth"]["refused_missing"], missing, "{stats}");
    assert_eq!(stats["auth"]["refused_wrong"], wrong, "{stats}");
    assert_eq!(stats["auth"]["refused"], missing + wrong, "{stats}");
    assert_eq!(stats["auth"]["tokens"], 2, "{stats}");
    assert_eq!(stats["auth"]["reloads"], 0, "{stats}");
    let (_, _, metrics) = server.get("/metrics", "");
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains(&format!(
            "certstream_auth_refused_total{{reason=\"wrong\"}} {wrong}\n"
        )),
        "{metrics}"
    );
    assert!(metrics.contains("certstream_auth_tokens 2\n"), "{metrics}");
    assert!(
        server
            .server
            .log_tail(usize::MAX)
            .contains("request refused: 401"),
        "refusals are logged"
    );
    server.assert_never_shows(
        &["alpha-token", "beta-token", "gamma-token", "alpha-toke"],
        "alpha-token",
    );
}

#[test]
fn auth_metrics_closes_stats_and_metrics_but_never_health() {
    let server = AuthServer::start("ops-token\n", &["--auth-metrics"]);
    for path in ["/stats", "/metrics"] {
        let (status, head, _) = server.get(path, "");
        assert_refused(status, &head, path, false);
        let (status, head, _) = server.get(&format!("{path}?token=other"), "");
        assert_refused(status, &head, path, true);
        assert_eq!(server.get(path, &bearer("ops-token")).0, 200, "{path}");
        assert_eq!(server.get(&format!("{path}?token=ops-token"), "").0, 200);
    }
    assert_eq!(server.get("/health", "").0, 200);
    let stats = server.stats_with("ops-token");
    assert_eq!(stats["auth"]["refused_missing"], 2, "{stats}");
    assert_eq!(stats["auth"]["refused_wrong"], 2, "{stats}");
}

#[test]
fn a_changed_token_file_is_in_force_within_seconds_and_a_bad_one_keeps_the_tokens() {
    let server = AuthServer::start("old-token\n", &[]);
    assert!(server.accepts("old-token"));
    assert!(!server.accepts("new-token"));

    // Replaced (a new file renamed over it).
    server.tokens.write(b"new-token\nnext-token\n");
    server.wait_accepts("new-token", true);
    assert!(!server.accepts("old-token"), "the old token is refused");
    let stats = server.server.stats();
    assert_eq!(stats["auth"]["reloads"], 1, "{stats}");
    assert_eq!(stats["auth"]["tokens"], 2, "{stats}");

    // Bad versions keep the tokens in force, each counted: a bad line, no token, rewritten in place.
    for (failures, bad) in [(1, "new-token\nsecret with-space\n"), (2, "# none\n\n")] {
        std::fs::write(&server.tokens.path, bad).unwrap();
        server
            .server
            .wait_stats("a failed reload", RELOADED_WITHIN, |s| {
                s["auth"]["reload_failures"] == failures
            });
        assert!(server.accepts("new-token") && server.accepts("next-token"));
    }
    let log = server.server.log_tail(usize::MAX);
    assert!(log.contains("access tokens not reloaded"), "{log}");
    assert!(log.contains("line 2"), "the bad line is named: {log}");
    // Removed: a failure too.
    server.tokens.remove();
    server
        .server
        .wait_stats("a failed reload", RELOADED_WITHIN, |s| {
            s["auth"]["reload_failures"] == 3
        });
    assert!(server.accepts("new-token"));
    // Back: in force again.
    server.tokens.write(b"last-token\n");
    server.wait_accepts("last-token", true);
    assert!(!server.accepts("new-token"));
    let stats = server.server.stats();
    assert_eq!(stats["auth"]["reloads"], 2, "{stats}");
    assert_eq!(stats["auth"]["tokens"], 1, "{stats}");
    assert!(
        server
            .server
            .log_tail(usize::MAX)
            .contains("access tokens reloaded")
    );
    server.assert_never_shows(
        &[
            "old-token",
            "new-token",
            "next-token",
            "last-token",
            "with-space",
        ],
        "last-token",
    );
}

#[test]
fn sighup_reloads_a_file_whose_stamp_did_not_change() {
    let server = AuthServer::start("token-aaaa\n", &[]);
    let path = &server.tokens.path;
    let before = std::fs::metadata(path).unwrap().modified().unwrap();
    // Same inode, same size, same modification time: only SIGHUP tells the server.
    std::fs::write(path, "token-bbbb\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(before)
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        server.accepts("token-aaaa"),
        "an unchanged stamp is not reloaded"
    );
    server.server.send_signal(libc::SIGHUP);
    server.wait_accepts("token-bbbb", true);
    assert!(!server.accepts("token-aaaa"));
    assert_eq!(server.server.stats()["auth"]["reloads"], 1);
    // SIGHUP did not stop the server; SIGTERM still does, cleanly.
    let (success, _) = server.server.terminate();
    assert!(success);
}

#[test]
fn a_bad_token_file_stops_the_start_naming_the_file_and_line_never_the_token() {
    let file = ListFile::new();
    let cases: [(&[u8], &str); 4] = [
        (b"fine-token\nsecret\x07token\n", "line 2"),
        (b"# only a comment\n\n", "no token"),
        (b"fine-token\n\xffsecret-bytes\n", "line 2"),
        (&[b's'; 257], "line 1"),
    ];
    let run = |path: &str| {
        let output = Command::new(certstream_binary())
            .args(["--listen", "127.0.0.1:0", "--auth-tokens", path])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("run certstream");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
            all,
        )
    };
    for (content, reason) in cases {
        file.write(content);
        let (success, stderr, all) = run(file.location());
        assert!(!success, "{stderr}");
        assert!(stderr.contains(file.location()), "{stderr}");
        assert!(stderr.contains(reason), "{reason}: {stderr}");
        assert!(!all.contains("secret") && !all.contains("sss"), "{all}");
    }
    let missing: PathBuf = file.path.with_file_name("missing-tokens");
    let (success, stderr, _) = run(missing.to_str().unwrap());
    assert!(
        !success && stderr.contains("missing-tokens") && stderr.contains("cannot read"),
        "{stderr}"
    );
}

#[test]
fn a_python_websockets_client_gets_through_with_its_authorization_header() {
    let python = certstream_testkit::python::interpreter();
    let server = AuthServer::start("py-token\n", &[]);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/ws_receive.py");
    let url = |path: &str| format!("ws://{}{path}", server.server.addr);
    let connect = |url: String, authorization: Option<&str>| {
        let mut command = Command::new(&python);
        command.arg(&script).arg(url).arg("0").args(authorization);
        let output = command.output().expect("run python");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (
            output.status.success() && stdout.starts_with("OPEN"),
            stderr,
        )
    };
    for path in STREAMS {
        let (open, stderr) = connect(url(path), Some("Bearer py-token"));
        assert!(open, "{path}: {stderr}");
        let (open, stderr) = connect(url(&format!("{path}?token=py-token")), None);
        assert!(open, "{path}?token: {stderr}");
        let (open, stderr) = connect(url(path), None);
        assert!(
            !open && stderr.contains("401"),
            "{path} without a token: {stderr}"
        );
        let (open, stderr) = connect(url(path), Some("Bearer not-it"));
        assert!(
            !open && stderr.contains("401"),
            "{path} with a wrong token: {stderr}"
        );
    }
    server.assert_never_shows(&["py-token", "not-it"], "py-token");
}
