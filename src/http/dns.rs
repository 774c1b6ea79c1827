//! Host name resolution that never blocks the reactor.
//!
//! `getaddrinfo` is blocking, and monoio's `TcpStream::connect(host)` would run it on the reactor thread. Each
//! lookup here runs on a short-lived `std::thread` and hands its result back over a `flume` channel, whose async
//! receiver is woken across threads by monoio's `sync` feature. A thread per lookup (not
//! `monoio::spawn_blocking`) keeps the client independent of how the runtime was built: `spawn_blocking` panics
//! unless the runtime has a thread pool attached. Lookups are rare (cached per host for a TTL), so a thread
//! spawn per lookup costs nothing measurable.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::HttpError;

/// Resolved addresses of one `(host, port)`, in the resolver's order.
pub(crate) type Addrs = Rc<[SocketAddr]>;

struct Cached {
    addrs: Addrs,
    expires: Instant,
}

/// A per-client DNS cache in front of the system resolver, with fixed overrides (like curl's `--resolve`).
pub(crate) struct Resolver {
    ttl: Duration,
    overrides: HashMap<(String, u16), Addrs>,
    cache: RefCell<HashMap<(String, u16), Cached>>,
}

impl Resolver {
    /// A resolver caching answers for `ttl`; `overrides` answer their `(host, port)` without any lookup.
    pub(crate) fn new(ttl: Duration, overrides: HashMap<(String, u16), Addrs>) -> Self {
        Self {
            ttl,
            overrides,
            cache: RefCell::new(HashMap::new()),
        }
    }

    /// The addresses to try, in order, for `host:port`. IP literals need no lookup. When a refresh fails, the
    /// expired answer is used rather than failing the request (a log host's address rarely changes).
    pub(crate) async fn resolve(&self, host: &str, port: u16) -> Result<Addrs, HttpError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Rc::from([SocketAddr::new(ip, port)]));
        }
        let key = (host.to_string(), port);
        if let Some(addrs) = self.overrides.get(&key) {
            return Ok(addrs.clone());
        }
        let now = Instant::now();
        if let Some(c) = self.cache.borrow().get(&key).filter(|c| c.expires > now) {
            return Ok(c.addrs.clone());
        }
        match lookup_off_thread(host, port).await {
            Ok(addrs) => {
                let addrs: Addrs = Rc::from(addrs);
                let cached = Cached {
                    addrs: addrs.clone(),
                    expires: Instant::now() + self.ttl,
                };
                self.cache.borrow_mut().insert(key, cached);
                Ok(addrs)
            }
            Err(source) => match self.cache.borrow().get(&key) {
                Some(stale) => {
                    tracing::warn!(host, error = %source, "DNS refresh failed, using the expired answer");
                    Ok(stale.addrs.clone())
                }
                None => Err(HttpError::Dns {
                    host: host.to_string(),
                    source,
                }),
            },
        }
    }
}

/// Runs `getaddrinfo` on its own thread and awaits the answer without blocking the reactor.
async fn lookup_off_thread(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let (tx, rx) = flume::bounded(1);
    let name = host.to_string();
    std::thread::Builder::new()
        .name("certstream-dns".into())
        .spawn(move || {
            let answer = (name.as_str(), port)
                .to_socket_addrs()
                .map(Iterator::collect::<Vec<_>>);
            // The request may have timed out and dropped the receiver: nobody wants the answer then.
            let _ = tx.send(answer);
        })?;
    let addrs = rx
        .recv_async()
        .await
        .map_err(|_| io::Error::other("resolver thread exited without an answer"))??;
    if addrs.is_empty() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "no addresses"));
    }
    Ok(addrs)
}
