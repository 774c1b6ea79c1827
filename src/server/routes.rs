//! The plain-HTTP endpoints (docs/wire-format.md §2): the live page, the latest messages, counters, health.
//!
//! The expensive routes (`/stats`, `/metrics`, `/latest.json`, the example routes) each serve at most
//! `--ops-rate` requests a second server-wide (`429` with `Retry-After` beyond it, counted). `/latest.json` and the
//! example routes are built at most once per published message and shared by every request until the next one;
//! the hub keeps them within `--max-latest-bytes`.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::log_throttle::LogThrottle;
use crate::message::StreamKind;
use crate::metrics::{metrics_text, stats_json};
use crate::server::Shared;
use crate::server::pretty::pretty_json;
use crate::server::rate::TokenBucket;
use crate::server::request::{Route, response, response_with};

/// The built-in live page served on `/` without an upgrade.
const PAGE: &str = include_str!("page.html");

const JSON: &str = "application/json";
/// Cross-origin reads only for the public data (`/example.json`, `/latest.json`): the same messages any web page can
/// already get from the streams, for dashboards on other origins. Operational routes (`/stats`, `/metrics`,
/// `/health`) and errors send no such header, so no other site's scripts can read them from a browser that can
/// reach the server (e.g. an operator's, inside a private network).
const PUBLIC_DATA: &str = "Access-Control-Allow-Origin: *\r\n";
const TEXT: &str = "text/plain; charset=utf-8";

/// The expensive routes' request budgets and built bodies, shared by every request.
pub(super) struct OpsRoutes {
    /// One bucket per expensive route: `/stats`, `/metrics`, `/latest.json`, the example routes.
    buckets: [TokenBucket; 4],
    rate_limited: Cell<u64>,
    rate_limited_log: LogThrottle,
    latest: BuiltOnce,
    examples: [BuiltOnce; 3],
}

impl OpsRoutes {
    pub(super) fn new(per_second: usize) -> Self {
        let now = Instant::now();
        Self {
            buckets: std::array::from_fn(|_| TokenBucket::new(per_second, now)),
            rate_limited: Cell::new(0),
            rate_limited_log: LogThrottle::new(Duration::from_secs(10)),
            latest: BuiltOnce::default(),
            examples: Default::default(),
        }
    }

    /// Requests answered `429` since start.
    pub(super) fn rate_limited(&self) -> u64 {
        self.rate_limited.get()
    }

    /// `Err(retry_after)` when `route` is over its budget (counted, logged rate-limited).
    fn admit(&self, route: Route) -> Result<(), Duration> {
        let bucket = match route {
            Route::Stats => &self.buckets[0],
            Route::Metrics => &self.buckets[1],
            Route::Latest => &self.buckets[2],
            Route::Example(_) => &self.buckets[3],
            _ => return Ok(()),
        };
        let now = Instant::now();
        bucket.take(now).inspect_err(|_| {
            self.rate_limited.set(self.rate_limited.get() + 1);
            if let Some(held_back) = self.rate_limited_log.allow(now) {
                tracing::warn!(
                    ?route,
                    held_back,
                    "operational route over its request rate: 429"
                );
            }
        })
    }
}

/// A response built at most once per published message, then shared (a `Bytes` clone per request).
#[derive(Default)]
struct BuiltOnce(RefCell<Option<(u64, Bytes)>>);

impl BuiltOnce {
    fn get_or_build(&self, published: u64, build: impl FnOnce() -> Vec<u8>) -> Bytes {
        let mut cached = self.0.borrow_mut();
        match &*cached {
            Some((at, response)) if *at == published => response.clone(),
            _ => {
                let response = Bytes::from(build());
                *cached = Some((published, response.clone()));
                response
            }
        }
    }
}

/// The complete response to a request that is not served as a stream (a WebSocket upgrade of a stream path, or a
/// GET of one as server-sent events or NDJSON). `wants_upgrade`: it asked for a WebSocket on a path that serves none,
/// which gets an HTTP error, never `101`.
pub(super) fn respond(route: Route, method: &str, wants_upgrade: bool, shared: &Shared) -> Bytes {
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return response_with(405, TEXT, "Allow: GET, HEAD\r\n", b"method not allowed\n").into();
    }
    let full = if wants_upgrade {
        match route {
            Route::NotFound => response(404, TEXT, b"not found\n").into(),
            _ => response(400, TEXT, b"not a WebSocket endpoint\n").into(),
        }
    } else if let Err(retry_after) = shared.ops.admit(route) {
        let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        response_with(
            429,
            TEXT,
            &format!("Retry-After: {seconds}\r\n"),
            b"too many requests on this route, retry later\n",
        )
        .into()
    } else {
        body_of(route, shared)
    };
    if head_only { strip_body(full) } else { full }
}

fn body_of(route: Route, shared: &Shared) -> Bytes {
    let published = shared.hub.published();
    match route {
        Route::Stream(StreamKind::Lite) => {
            response(200, "text/html; charset=utf-8", PAGE.as_bytes()).into()
        }
        Route::Stream(_) => response_with(
            426,
            TEXT,
            "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
            b"this is a WebSocket endpoint: connect with a WebSocket client\n",
        )
        .into(),
        // A GET is served as a stream before it gets here.
        Route::Sse(_) | Route::Ndjson(_) => response_with(
            405,
            TEXT,
            "Allow: GET\r\n",
            b"this stream is served to GET requests only\n",
        )
        .into(),
        Route::Example(kind) => {
            shared.ops.examples[example_index(kind)].get_or_build(published, || {
                match shared.hub.latest(kind) {
                    Some(frame) => {
                        response_with(200, JSON, PUBLIC_DATA, &pretty_json(frame.payload()))
                    }
                    None => response_with(200, JSON, PUBLIC_DATA, b"null"),
                }
            })
        }
        Route::Latest => shared
            .ops
            .latest
            .get_or_build(published, || latest_json(&shared.hub.recent())),
        Route::Stats => match shared.render_status(stats_json) {
            Ok(body) => response(200, JSON, &body).into(),
            // Serializing a JSON value into memory cannot fail; if it ever did, say so rather than serve `{}`.
            Err(error) => {
                tracing::error!(%error, "/stats could not be serialized");
                response(500, TEXT, b"stats unavailable\n").into()
            }
        },
        Route::Metrics => response(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            &shared.render_status(metrics_text),
        )
        .into(),
        Route::Health => response(200, TEXT, b"ok").into(),
        Route::NotFound => response(404, TEXT, b"not found\n").into(),
    }
}

fn example_index(kind: StreamKind) -> usize {
    match kind {
        StreamKind::Lite => 0,
        StreamKind::Full => 1,
        StreamKind::DomainsOnly => 2,
    }
}

/// The `/latest.json` response: `{"messages":[…]}`, newest first.
fn latest_json(recent: &[certstream_ws::frame::Frame]) -> Vec<u8> {
    let mut body =
        Vec::with_capacity(16 + recent.iter().map(|f| f.payload().len() + 1).sum::<usize>());
    body.extend_from_slice(b"{\"messages\":[");
    for (i, frame) in recent.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(frame.payload());
    }
    body.extend_from_slice(b"]}");
    response_with(200, JSON, PUBLIC_DATA, &body)
}

/// A `HEAD` response: the `GET` head (with its `Content-Length`) and no body.
pub(super) fn strip_body(full: Bytes) -> Bytes {
    match full.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) => full.slice(..end + 4),
        None => full,
    }
}
