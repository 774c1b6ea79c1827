//! Access tokens (`--auth-tokens FILE`, off by default): the token file, how a presented token is checked, and
//! the file's reload when it changes or on SIGHUP. Which routes need a token is [`Route::needs_token`].
//!
//! A stored token is kept only as its SHA-256 digest ([`Token`], whose `Debug` shows nothing of it). A presented
//! token is digested and compared with every stored digest, each comparison without an early exit, so the time
//! taken tells neither which token matched nor how many bytes did. Tokens are never logged, shown in `/stats` or
//! `/metrics`, or quoted in an error: a bad line of the file is named by its number.
//!
//! The file is watched by its [`FileStamp`] (inode, size, modification time), read every second by a thread of
//! its own, off the reactor; SIGHUP asks for a reload too. A reload that fails (unreadable, no token, a bad line) keeps the tokens in
//! force, is counted and logged (rate-limited); the file is tried again when it changes or on the next SIGHUP.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::query::Query;
use super::request::{Route, response_with};
use crate::log_throttle::LogThrottle;
use crate::metrics::{LabelledCount, Metric, Read, Report, StatusReporter};
use crate::operator_input::{self, FileStamp};

/// The query parameter that carries a token (`?token=…`), for clients that cannot set a header (a browser's
/// WebSocket). Stream options read from the query must leave it alone.
pub(crate) const TOKEN_PARAMETER: &str = "token";

/// Longest token accepted in the file, in bytes.
const MAX_TOKEN_LEN: usize = 256;

/// Largest token file read (thousands of tokens).
const MAX_TOKEN_FILE_BYTES: usize = 1 << 20;

/// Deadline of one read (or `stat`) of the token file.
const FILE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the token file's stamp is read, and the SIGHUP flag looked at.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// At most one warning line per interval for refused requests, and one for failed reloads.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The `WWW-Authenticate` challenge of every `401` (RFC 6750).
const CHALLENGE: &str = "WWW-Authenticate: Bearer realm=\"certstream\"";

/// One stored token, kept as its SHA-256 digest only.
struct Token([u8; 32]);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    fn of(token: &[u8]) -> Self {
        Self(Sha256::digest(token).into())
    }

    /// `1` when both digests are equal, else `0`, in the same time whichever bytes differ.
    fn matches(&self, other: &Token) -> u8 {
        let difference = self
            .0
            .iter()
            .zip(other.0)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        // `black_box`: the compiler may not turn the fold into a comparison that stops at the first difference.
        u8::from(std::hint::black_box(difference) == 0)
    }
}

/// The tokens of one version of the token file (never empty).
#[derive(Debug)]
struct Tokens(Vec<Token>);

/// Why a token file was refused. Never quotes a token.
#[derive(Debug, PartialEq, Eq)]
enum TokenFileError {
    /// No line holds a token.
    NoToken,
    /// Line `line` (from 1) holds something that cannot be a token.
    BadLine {
        /// The line number.
        line: usize,
        /// What is wrong with it.
        why: &'static str,
    },
}

impl fmt::Display for TokenFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoToken => f.write_str(
                "it holds no token (one token per line; blank lines and lines starting with # are ignored)",
            ),
            Self::BadLine { line, why } => write!(f, "line {line}: {why}"),
        }
    }
}

impl Tokens {
    /// Parses a token file: one token per line, surrounding whitespace trimmed, blank lines and lines starting with
    /// `#` ignored. A token is at most [`MAX_TOKEN_LEN`] bytes of UTF-8 without whitespace or control characters
    /// (it must fit an `Authorization: Bearer` header).
    fn parse(file: &[u8]) -> Result<Self, TokenFileError> {
        let mut tokens = Vec::new();
        for (index, line) in file.split(|&byte| byte == b'\n').enumerate() {
            let bad = |why| TokenFileError::BadLine {
                line: index + 1,
                why,
            };
            let line = std::str::from_utf8(line)
                .map_err(|_| bad("not UTF-8"))?
                .trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.len() > MAX_TOKEN_LEN {
                return Err(bad("longer than 256 bytes"));
            }
            if line.chars().any(char::is_control) {
                return Err(bad("holds a control character"));
            }
            if line.chars().any(char::is_whitespace) {
                return Err(bad("holds whitespace (one token per line)"));
            }
            tokens.push(Token::of(line.as_bytes()));
        }
        if tokens.is_empty() {
            return Err(TokenFileError::NoToken);
        }
        Ok(Self(tokens))
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether `presented` is one of the tokens. Every stored token is compared, whatever matched before.
    fn accepts(&self, presented: &[u8]) -> bool {
        let presented = Token::of(presented);
        let matched = self
            .0
            .iter()
            .fold(0u8, |acc, stored| acc | stored.matches(&presented));
        matched == 1
    }
}

/// The token a request presents: the `Authorization: Bearer` header's, else the first `?token=` value; `None`
/// when it presents none (an empty one is none). Another scheme's header (`Basic`, from a proxy in front) leaves the
/// query to speak. A query that does not decode presents no token through it.
fn presented_token<'a>(target: &str, headers: &'a [httparse::Header<'_>]) -> Option<Cow<'a, [u8]>> {
    let header = headers
        .iter()
        .find(|header| header.name.eq_ignore_ascii_case("authorization"))
        .and_then(|header| bearer(header.value));
    if let Some(token) = header {
        return Some(Cow::Borrowed(token));
    }
    let query = Query::of(target).ok()?;
    let token = query.values(TOKEN_PARAMETER).next()?;
    (!token.is_empty()).then(|| Cow::Owned(token.as_bytes().to_vec()))
}

/// The token of an `Authorization` value `Bearer <token>` (the scheme in any case, RFC 7235).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    let scheme = value.get(..SCHEME.len())?;
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    Some(value[SCHEME.len()..].trim_ascii()).filter(|token| !token.is_empty())
}

/// Why a request was refused `401`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    Missing,
    Wrong,
}

/// The access policy of a server started with `--auth-tokens`: the tokens in force, the file they come from, and
/// the counters of `/stats` and `/metrics`.
pub(crate) struct Access {
    /// The token file, as the operator named it.
    location: String,
    /// `--auth-metrics`: `/stats` and `/metrics` need a token too.
    protect_metrics: bool,
    tokens: RefCell<Tokens>,
    /// The file's stamp when it was loaded at start (the watcher's first reference).
    loaded_stamp: Option<FileStamp>,
    refused_missing: Cell<u64>,
    refused_wrong: Cell<u64>,
    reloads: Cell<u64>,
    reload_failures: Cell<u64>,
    refused_log: LogThrottle,
    reload_log: LogThrottle,
}

/// Set by the SIGHUP handler, taken by the watcher thread ([`spawn_watcher`]).
static HANGUP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_hangup(_signal: libc::c_int) {
    HANGUP.store(true, Ordering::Relaxed);
}

impl Access {
    /// Reads the token file at start-up. Nothing is served yet, so the bounded read ([`operator_input`]) runs on
    /// this thread. A file that cannot be read, holds no token or has a bad line is an error naming the file.
    pub(crate) fn load(path: &Path, protect_metrics: bool) -> io::Result<Self> {
        let location = path.to_string_lossy().into_owned();
        let loaded_stamp = FileStamp::of(&location).ok();
        let tokens = read_tokens(&location)
            .map_err(|reason| io::Error::other(format!("--auth-tokens {location}: {reason}")))?;
        tracing::info!(token_file = %location, tokens = tokens.len(), protect_metrics, "access tokens loaded: the streams and the latest messages need one");
        Ok(Self {
            location,
            protect_metrics,
            tokens: RefCell::new(tokens),
            loaded_stamp,
            refused_missing: Cell::new(0),
            refused_wrong: Cell::new(0),
            reloads: Cell::new(0),
            reload_failures: Cell::new(0),
            refused_log: LogThrottle::new(LOG_INTERVAL),
            reload_log: LogThrottle::new(LOG_INTERVAL),
        })
    }

    /// The `401` for a request to `route` that needs a token (`streaming`: it asks for a stream) and presents none
    /// or a wrong one (counted, logged rate-limited with `peer`); `None` when it may be served.
    pub(crate) fn refusal(
        &self,
        route: Route,
        streaming: bool,
        target: &str,
        headers: &[httparse::Header<'_>],
        peer: SocketAddr,
    ) -> Option<Vec<u8>> {
        if !route.needs_token(streaming, self.protect_metrics) {
            return None;
        }
        let refusal = match presented_token(target, headers) {
            None => Refusal::Missing,
            Some(token) if self.tokens.borrow().accepts(&token) => return None,
            Some(_) => Refusal::Wrong,
        };
        let (counter, challenge, body): (_, _, &[u8]) = match refusal {
            Refusal::Missing => (
                &self.refused_missing,
                format!("{CHALLENGE}\r\n"),
                b"an access token is needed: Authorization: Bearer TOKEN, or ?token=TOKEN\n",
            ),
            Refusal::Wrong => (
                &self.refused_wrong,
                format!("{CHALLENGE}, error=\"invalid_token\"\r\n"),
                b"the access token is not valid\n",
            ),
        };
        counter.set(counter.get() + 1);
        if let Some(held_back) = self.refused_log.allow(Instant::now()) {
            tracing::warn!(%peer, ?route, ?refusal, held_back, "request refused: 401");
        }
        Some(response_with(
            401,
            "text/plain; charset=utf-8",
            &challenge,
            body,
        ))
    }

    /// Reloads the token file whenever its stamp changes or SIGHUP arrives, for as long as the server runs.
    /// SIGHUP's handler is installed here, after the runtime's own (which would stop the server on SIGHUP).
    pub(crate) async fn watch(self: Rc<Self>) {
        if let Err(error) = reload_on_hangup() {
            tracing::warn!(%error, "SIGHUP cannot reload the access tokens: the file is still watched");
        }
        let versions = match spawn_watcher(self.location.clone(), self.loaded_stamp) {
            Ok(versions) => versions,
            Err(error) => {
                tracing::error!(%error, "the access-token file cannot be watched: its tokens stay as loaded");
                return;
            }
        };
        while let Ok(version) = versions.recv_async().await {
            self.put_in_force(version);
        }
    }

    /// Puts a new version of the token file in force, or counts and logs why it cannot be.
    fn put_in_force(&self, version: Result<Tokens, String>) {
        match version {
            Ok(tokens) => {
                self.reloads.set(self.reloads.get() + 1);
                tracing::info!(token_file = %self.location, tokens = tokens.len(), "access tokens reloaded");
                *self.tokens.borrow_mut() = tokens;
            }
            Err(reason) => {
                self.reload_failures.set(self.reload_failures.get() + 1);
                if let Some(held_back) = self.reload_log.allow(Instant::now()) {
                    tracing::warn!(token_file = %self.location, %reason, held_back, "access tokens not reloaded: the previous tokens stay in force");
                }
            }
        }
    }
}

/// Reads the token file at `location` (bounded in bytes and time): its tokens, or why it cannot be used.
fn read_tokens(location: &str) -> Result<Tokens, String> {
    let bytes = operator_input::read_capped(location, MAX_TOKEN_FILE_BYTES, FILE_TIMEOUT)
        .map_err(|error| format!("cannot read it: {error}"))?;
    Tokens::parse(&bytes).map_err(|error| error.to_string())
}

/// The watcher thread: every [`WATCH_INTERVAL`] it reads the file's stamp and takes the SIGHUP flag, and on a
/// change (a file that cannot be stat'ed is one: the read says why) or a SIGHUP sends the file's new version. A
/// thread of its own, one `stat` or read at a time: a hung mount blocks it alone, never the reactor nor the
/// other operator files' reads. It ends when the server (the receiver) is gone.
fn spawn_watcher(
    location: String,
    mut seen: Option<FileStamp>,
) -> io::Result<flume::Receiver<Result<Tokens, String>>> {
    let (versions, received) = flume::bounded(1);
    std::thread::Builder::new()
        .name("auth-tokens".into())
        .spawn(move || {
            while !versions.is_disconnected() {
                std::thread::sleep(WATCH_INTERVAL);
                let hangup = HANGUP.swap(false, Ordering::Relaxed);
                let stamp = FileStamp::of(&location).ok();
                if hangup || stamp != seen {
                    seen = stamp;
                    if versions.send(read_tokens(&location)).is_err() {
                        return;
                    }
                }
            }
        })?;
    Ok(received)
}

/// Installs the SIGHUP handler that sets [`HANGUP`].
fn reload_on_hangup() -> io::Result<()> {
    // SAFETY: a zeroed `sigaction` is a valid empty one; the handler only stores to an atomic, which is
    // async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_hangup as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGHUP, &action, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

const METRICS: &[Metric<Access>] = &[
    Metric {
        name: "certstream_auth_refused_total",
        kind: crate::metrics::Kind::Counter,
        help: "Requests refused 401 for want of a valid access token, by reason (missing, wrong).",
        stats: "auth",
        read: Read::PerLabel {
            label: "reason",
            total: Some("refused"),
            read: |a| {
                vec![
                    LabelledCount {
                        label: "missing",
                        key: "refused_missing",
                        count: a.refused_missing.get(),
                    },
                    LabelledCount {
                        label: "wrong",
                        key: "refused_wrong",
                        count: a.refused_wrong.get(),
                    },
                ]
            },
        },
    },
    Metric::counter(
        "certstream_auth_reloads_total",
        "auth.reloads",
        "Reloads of the access-token file that put new tokens in force.",
        |a| a.reloads.get(),
    ),
    Metric::counter(
        "certstream_auth_reload_failures_total",
        "auth.reload_failures",
        "Reloads of the access-token file that failed (the previous tokens stayed in force).",
        |a| a.reload_failures.get(),
    ),
    Metric::gauge(
        "certstream_auth_tokens",
        "auth.tokens",
        "Access tokens in force.",
        |a| a.tokens.borrow().len() as u64,
    ),
];

impl StatusReporter for Access {
    fn report(&self, out: &mut Report<'_>) {
        out.metrics(METRICS, self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_error(file: &str) -> TokenFileError {
        Tokens::parse(file.as_bytes()).unwrap_err()
    }

    #[test]
    fn a_token_file_is_one_token_per_line_with_comments_and_blanks() {
        let tokens =
            Tokens::parse(b"# readers\n  alpha-1  \n\n\t\r\nbeta_2\r\n# gamma\n  # indented\n")
                .unwrap();
        assert_eq!(tokens.len(), 2);
        assert!(tokens.accepts(b"alpha-1") && tokens.accepts(b"beta_2"));
        for refused in [
            &b"alpha-1 "[..],
            b"alpha",
            b"gamma",
            b"# readers",
            b"",
            b"beta_2\r",
        ] {
            assert!(!tokens.accepts(refused), "{refused:?}");
        }
    }

    #[test]
    fn bad_files_are_refused_naming_the_line_never_the_token() {
        assert_eq!(file_error(""), TokenFileError::NoToken);
        assert_eq!(file_error("# only\n\n   \n"), TokenFileError::NoToken);
        let long = "s".repeat(MAX_TOKEN_LEN + 1);
        assert!(Tokens::parse("s".repeat(MAX_TOKEN_LEN).as_bytes()).is_ok());
        for (file, line) in [
            (format!("ok\n{long}\n"), 2),
            ("ok\n\nse\u{7}cret\n".to_owned(), 3),
            ("secret\u{1b}[0m\n".to_owned(), 1),
            ("two tokens\n".to_owned(), 1),
            ("ok\nse\u{85}cret\n".to_owned(), 2),
        ] {
            let error = Tokens::parse(file.as_bytes()).unwrap_err();
            assert!(
                matches!(error, TokenFileError::BadLine { line: l, .. } if l == line),
                "{file:?}: {error:?}"
            );
            let shown = error.to_string();
            assert!(shown.starts_with(&format!("line {line}: ")), "{shown}");
            assert!(
                !shown.contains("secret") && !shown.contains("sss"),
                "{shown}"
            );
        }
        assert!(matches!(
            Tokens::parse(b"ok\n\xff\xfe\n"),
            Err(TokenFileError::BadLine { line: 2, .. })
        ));
    }

    #[test]
    fn debug_output_shows_no_token() {
        let tokens = Tokens::parse(b"hunter2-secret\n").unwrap();
        let shown = format!("{tokens:?}");
        assert_eq!(shown, "Tokens([Token(<redacted>)])");
    }

    #[test]
    fn comparison_checks_every_token_and_every_byte() {
        let tokens = Tokens::parse(b"first\nsecond\nthird\n").unwrap();
        assert!(tokens.accepts(b"third"), "a match after misses");
        assert!(tokens.accepts(b"first"), "a match before misses");
        for wrong in [&b"firs"[..], b"firstt", b"First", b"thirc", b"xhird"] {
            assert!(!tokens.accepts(wrong), "{wrong:?}");
        }
        let a = Token::of(b"a");
        assert_eq!(a.matches(&Token::of(b"a")), 1);
        assert_eq!(a.matches(&Token::of(b"b")), 0);
    }

    fn header<'a>(name: &'a str, value: &'a [u8]) -> httparse::Header<'a> {
        httparse::Header { name, value }
    }

    #[test]
    fn a_token_is_presented_by_header_or_by_query() {
        fn presented(target: &str, headers: &[httparse::Header<'_>]) -> Option<Vec<u8>> {
            presented_token(target, headers).map(Cow::into_owned)
        }
        let none: &[httparse::Header<'_>] = &[];
        assert_eq!(presented("/", none), None);
        assert_eq!(presented("/?token=", none), None);
        assert_eq!(
            presented("/?domain=x&token=a%2Bb&token=second", none),
            Some(b"a+b".to_vec())
        );
        let bearer = [header("Authorization", b"Bearer  tok-1 ")];
        assert_eq!(presented("/?token=other", &bearer), Some(b"tok-1".to_vec()));
        let lower = [header("authorization", b"bearer tok-2")];
        assert_eq!(presented("/", &lower), Some(b"tok-2".to_vec()));
        for value in [&b"Basic dTpw"[..], b"Bearer", b"Bearer   ", b"Bearertok"] {
            let other = [header("Authorization", value)];
            assert_eq!(presented("/", &other), None, "{value:?}: no bearer token");
            assert_eq!(
                presented("/?token=q", &other),
                Some(b"q".to_vec()),
                "{value:?}: the query speaks"
            );
        }
        assert_eq!(presented("/?token=%zz", none), None);
    }

    #[test]
    fn which_routes_need_a_token() {
        use crate::message::StreamKind;
        for kind in StreamKind::ALL {
            assert!(Route::Stream(kind).needs_token(true, false));
            assert!(
                !Route::Stream(kind).needs_token(false, false),
                "the page, or 426"
            );
            assert!(Route::Example(kind).needs_token(false, false));
        }
        assert!(Route::Latest.needs_token(false, false));
        for route in [Route::Stats, Route::Metrics] {
            assert!(!route.needs_token(false, false));
            assert!(route.needs_token(false, true));
        }
        for route in [Route::Health, Route::NotFound] {
            assert!(!route.needs_token(false, true));
            assert!(!route.needs_token(true, true));
        }
    }
}
