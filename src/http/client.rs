//! The HTTP/1.1 client the CT pollers use: keep-alive with one idle connection per origin, a deadline on every
//! request, gzip, a body cap, and never a reused connection whose last request did not finish cleanly.
//!
//! HTTP/1.1 has no request IDs: a response belongs to a request only by its place on the connection. So a
//! connection is reused only if nothing arrived on it since its last response, checked on the socket right
//! before the next request is written (bytes after a response, or unsolicited ones, close it and are counted),
//! and each CT log gets its own pool partition ([`HttpClient::partitioned`]): whatever a log's server sends can
//! only ever be read as that log's answer.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls::pki_types::CertificateDer;

use super::connection::{Connection, SocketState};
use super::dns::{Addrs, Resolver};
use super::url::Target;
use super::wire::{self, ResponseHeadError};
use super::{HttpError, Response};
use crate::log_throttle::LogThrottle;

/// The default `User-Agent`: static-ct-api logs rate-limit clients whose agent names no contact URL.
pub const DEFAULT_USER_AGENT: &str = concat!(
    "certstream-rs/",
    env!("CARGO_PKG_VERSION"),
    " (+https://github.com/certstream/certstream)"
);

/// The default deadline of a whole request ([`HttpClientConfig::timeout`]); the pollers use it for theirs too.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How an [`HttpClient`] behaves. `Default` is right for polling CT logs.
#[derive(Debug, Clone)]
pub struct HttpClientConfig {
    /// Sent on every request; should name the project and a contact URL.
    pub user_agent: String,
    /// Deadline of a whole request: DNS, connect, TLS, request, and the full body.
    pub timeout: Duration,
    /// Bound on one TCP connect attempt, so one black-holed address leaves time for the next.
    pub connect_timeout: Duration,
    /// Largest body accepted, both as received and once decompressed.
    pub max_body_size: usize,
    /// An idle connection older than this is closed instead of reused (servers close idle ones anyway).
    pub idle_timeout: Duration,
    /// How long a DNS answer is reused.
    pub dns_ttl: Duration,
    /// Trust the compiled-in Mozilla roots (webpki-roots).
    pub use_webpki_roots: bool,
    /// Additional trusted root certificates (DER), e.g. a private or test CA.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Fixed answers for `(host, port)`, tried in order, bypassing DNS (like curl's `--resolve`).
    pub resolve_overrides: HashMap<(String, u16), Vec<SocketAddr>>,
}

impl Default for HttpClientConfig {
    fn default() -> Self {
        Self {
            user_agent: DEFAULT_USER_AGENT.to_string(),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: Duration::from_secs(10),
            max_body_size: 64 * 1024 * 1024,
            idle_timeout: Duration::from_secs(50),
            dns_ttl: Duration::from_secs(300),
            use_webpki_roots: true,
            extra_roots: Vec::new(),
            resolve_overrides: HashMap::new(),
        }
    }
}

/// At most one warning per this interval about connections closed for desync.
const DESYNC_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// One extra request header.
pub type Header<'a> = (&'a str, &'a str);

/// Where an idle connection may be reused: same scheme, host and port.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Origin {
    tls: bool,
    host: String,
    port: u16,
}

/// An idle connection's slot: the pool partition (one per CT log) and the origin.
type PoolKey = (Rc<str>, Origin);

struct Idle {
    conn: Connection,
    since: Instant,
}

/// What servers sent beyond what was asked for, and what it cost them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpCounts {
    /// Connections closed: bytes followed a response (e.g. a Content-Length shorter than what was sent).
    pub leftover: u64,
    /// Connections closed: bytes arrived on an idle connection, unasked (e.g. a second, unsolicited response).
    pub unsolicited: u64,
    /// Responses refused because their body was larger than the request's limit.
    pub body_too_large: u64,
}

struct Inner {
    config: HttpClientConfig,
    tls: monoio_rustls::TlsConnector,
    resolver: Resolver,
    idle: RefCell<HashMap<PoolKey, Idle>>,
    counts: Cell<HttpCounts>,
    desync_warnings: LogThrottle,
}

/// An HTTP/1.1 client for a single monoio thread (cheap to clone; clones share connections and the DNS cache).
///
/// The runtime must be built with `enable_timer()`: every request runs under a deadline.
#[derive(Clone)]
pub struct HttpClient {
    inner: Rc<Inner>,
    /// Idle connections are only reused by requests of the same partition.
    partition: Rc<str>,
}

/// How one attempt on one connection ended.
enum Attempt {
    Done(Response),
    /// A reused connection turned out to be closed before any response byte: retry on a fresh one.
    Stale(HttpError),
    Failed(HttpError),
}

impl HttpClient {
    /// Builds a client (TLS 1.2/1.3 with the ring provider, the configured roots).
    pub fn new(config: HttpClientConfig) -> Result<Self, HttpError> {
        let tls_setup = |e: rustls::Error| HttpError::Tls {
            host: "(client setup)".into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        };
        if config.user_agent.bytes().any(|b| b.is_ascii_control()) {
            return Err(HttpError::InvalidHeader {
                name: "User-Agent".into(),
            });
        }
        let mut roots = rustls::RootCertStore::empty();
        if config.use_webpki_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for cert in &config.extra_roots {
            roots.add(cert.clone()).map_err(tls_setup)?;
        }
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(tls_setup)?
        .with_root_certificates(roots)
        .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let overrides = config
            .resolve_overrides
            .iter()
            .map(|(k, v)| (k.clone(), Addrs::from(v.as_slice())))
            .collect();
        let resolver = Resolver::new(config.dns_ttl, overrides);
        let inner = Inner {
            config,
            tls: tls.into(),
            resolver,
            idle: RefCell::new(HashMap::new()),
            counts: Cell::default(),
            desync_warnings: LogThrottle::new(DESYNC_WARNING_INTERVAL),
        };
        Ok(Self {
            inner: Rc::new(inner),
            partition: Rc::from(""),
        })
    }

    /// A client sharing this one's configuration, DNS cache and counters, whose idle connections serve only
    /// its own requests: one per CT log, so that bytes a log's server sends can never be read as the answer to
    /// another log's request on the same host:port.
    pub fn partitioned(&self, partition: &str) -> HttpClient {
        HttpClient {
            inner: self.inner.clone(),
            partition: Rc::from(partition),
        }
    }

    /// What servers sent beyond what was asked for, so far.
    pub fn counts(&self) -> HttpCounts {
        self.inner.counts.get()
    }

    /// `GET url` with the configured deadline.
    pub async fn get(&self, url: &str) -> Result<Response, HttpError> {
        self.get_with(url, &[], self.inner.config.timeout).await
    }

    /// `GET url` with extra headers (e.g. `If-None-Match`) and an explicit deadline for the whole exchange.
    ///
    /// The connection is owned by this future: if the deadline fires, an error occurs, or the caller drops the
    /// future, the connection is closed and never handed to another request.
    pub async fn get_with(
        &self,
        url: &str,
        headers: &[Header<'_>],
        timeout: Duration,
    ) -> Result<Response, HttpError> {
        self.get_limited(url, headers, timeout, self.inner.config.max_body_size)
            .await
    }

    /// [`get_with`](Self::get_with) refusing a body larger than `max_body` (received or decoded; never more
    /// than the configured `max_body_size`): for answers whose sensible size the caller knows.
    pub(crate) async fn get_limited(
        &self,
        url: &str,
        headers: &[Header<'_>],
        timeout: Duration,
        max_body: usize,
    ) -> Result<Response, HttpError> {
        let target = Target::parse(url)?;
        let request = self.request_bytes(&target, headers)?;
        let max_body = max_body.min(self.inner.config.max_body_size);
        let exchange = self.execute(&target, request, max_body);
        let result = match monoio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(HttpError::Timeout(timeout)),
        };
        if matches!(result, Err(HttpError::BodyTooLarge { .. })) {
            self.count(|c| c.body_too_large += 1);
        }
        result
    }

    /// The request head. A caller-supplied `User-Agent` or `Accept-Encoding` replaces the default one.
    fn request_bytes(&self, target: &Target, headers: &[Header<'_>]) -> Result<Vec<u8>, HttpError> {
        let mut req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: */*\r\n",
            target.path_and_query,
            target.host_header()
        );
        let supplied = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        if !supplied("user-agent") {
            req.push_str(&format!("User-Agent: {}\r\n", self.inner.config.user_agent));
        }
        if !supplied("accept-encoding") {
            req.push_str("Accept-Encoding: gzip, identity\r\n");
        }
        for (name, value) in headers {
            let token = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
            if !token || value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(HttpError::InvalidHeader {
                    name: name.to_string(),
                });
            }
            req.push_str(&format!("{name}: {value}\r\n"));
        }
        req.push_str("\r\n");
        Ok(req.into_bytes())
    }

    async fn execute(
        &self,
        target: &Target,
        request: Vec<u8>,
        max_body: usize,
    ) -> Result<Response, HttpError> {
        let origin = (
            self.partition.clone(),
            Origin {
                tls: target.tls,
                host: target.host.clone(),
                port: target.port,
            },
        );
        // Nothing may be awaited between this check and writing the request: a byte that arrives after the
        // request was written can be its answer, one that arrived before cannot.
        if let Some(conn) = self.take_idle(&origin) {
            match self.attempt(conn, &origin, request.clone(), max_body).await {
                Attempt::Done(response) => return Ok(response),
                Attempt::Failed(e) => return Err(e),
                Attempt::Stale(e) => {
                    tracing::debug!(host = %origin.1.host, error = %e, "reused connection was stale, retrying")
                }
            }
        }
        let addrs = self
            .inner
            .resolver
            .resolve(&target.host, target.port)
            .await?;
        let config = &self.inner.config;
        let conn =
            Connection::open(target, &addrs, config.connect_timeout, &self.inner.tls).await?;
        match self.attempt(conn, &origin, request, max_body).await {
            Attempt::Done(response) => Ok(response),
            Attempt::Stale(e) | Attempt::Failed(e) => Err(e),
        }
    }

    /// One request/response exchange. On success the connection goes back to the idle slot if it may be reused;
    /// on any failure it is dropped here.
    async fn attempt(
        &self,
        mut conn: Connection,
        origin: &PoolKey,
        request: Vec<u8>,
        max_body: usize,
    ) -> Attempt {
        if let Err(e) = conn.write_all(request).await {
            return Attempt::Stale(HttpError::Io(e));
        }
        let head = match wire::read_head(&mut conn, max_body).await {
            Ok(head) => head,
            Err(ResponseHeadError::Closed(e)) => return Attempt::Stale(HttpError::Io(e)),
            Err(ResponseHeadError::Failed(e)) => return Attempt::Failed(e),
        };
        let body = match wire::read_body(&mut conn, &head, max_body).await {
            Ok(body) => body,
            Err(e) => return Attempt::Failed(e),
        };
        if head.keep_alive {
            let state = if conn.is_drained() {
                conn.socket_state()
            } else {
                SocketState::Unsolicited
            };
            match state {
                SocketState::Quiet => {
                    let now = Instant::now();
                    let mut pool = self.inner.idle.borrow_mut();
                    // Expired connections are closed here too, not only when their partition asks again: a log
                    // that left the list never does, and its connection would keep a descriptor forever.
                    let idle_timeout = self.inner.config.idle_timeout;
                    pool.retain(|_, idle| now.saturating_duration_since(idle.since) < idle_timeout);
                    pool.insert(origin.clone(), Idle { conn, since: now });
                }
                SocketState::Unsolicited => {
                    self.desync(&origin.1, |c| c.leftover += 1, "bytes after a response")
                }
                SocketState::Closed => {}
            }
        }
        Attempt::Done(Response {
            status: head.status,
            headers: head.headers,
            body: Bytes::from(body),
        })
    }

    /// The idle connection of `origin`, if it is young enough and nothing arrived on it since its last response.
    fn take_idle(&self, origin: &PoolKey) -> Option<Connection> {
        let idle = self.inner.idle.borrow_mut().remove(origin)?;
        if idle.since.elapsed() >= self.inner.config.idle_timeout {
            return None;
        }
        match idle.conn.socket_state() {
            SocketState::Quiet => Some(idle.conn),
            SocketState::Closed => None,
            SocketState::Unsolicited => {
                self.desync(
                    &origin.1,
                    |c| c.unsolicited += 1,
                    "unsolicited bytes on an idle connection",
                );
                None
            }
        }
    }

    fn count(&self, count: impl FnOnce(&mut HttpCounts)) {
        let mut counts = self.inner.counts.get();
        count(&mut counts);
        self.inner.counts.set(counts);
    }

    /// Counts (and logs, rate-limited) a connection closed because its server sent more than was asked for.
    fn desync(&self, origin: &Origin, count: impl FnOnce(&mut HttpCounts), what: &str) {
        self.count(count);
        if let Some(held_back) = self.inner.desync_warnings.allow(Instant::now()) {
            tracing::warn!(
                host = %origin.host,
                port = origin.port,
                partition = %self.partition,
                held_back,
                "{what}: connection closed, not reused"
            );
        }
    }
}
