//! The plain-HTTP endpoints (FORMAT.md §1): the live page, the latest messages, counters, health.

use crate::server::Shared;
use crate::server::http::{Route, response, response_with};
use crate::server::pretty::pretty_json;
use crate::server::stats::{metrics_text, stats_json};

/// The built-in live page served on `/` without an upgrade.
const PAGE: &str = include_str!("page.html");

const JSON: &str = "application/json";
/// Cross-origin reads only for the public data (`/example.json`, `/latest.json`): the same messages any web page can
/// already get from the streams, for dashboards on other origins. Operational routes (`/stats`, `/metrics`,
/// `/health`) and errors send no such header, so no other site's scripts can read them from a browser that can
/// reach the server (e.g. an operator's, inside a private network).
const PUBLIC_DATA: &str = "Access-Control-Allow-Origin: *\r\n";
const TEXT: &str = "text/plain; charset=utf-8";

/// The complete response to a request that is not a WebSocket upgrade of a stream path. `wants_upgrade`: it asked
/// for a WebSocket on a path that serves none, which gets an HTTP error, never `101`.
pub(super) fn respond(route: Route, method: &str, wants_upgrade: bool, shared: &Shared) -> Vec<u8> {
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return response_with(405, TEXT, "Allow: GET, HEAD\r\n", b"method not allowed\n");
    }
    let full = if wants_upgrade {
        match route {
            Route::NotFound => response(404, TEXT, b"not found\n"),
            _ => response(400, TEXT, b"not a WebSocket endpoint\n"),
        }
    } else {
        body_of(route, shared)
    };
    if head_only { strip_body(full) } else { full }
}

fn body_of(route: Route, shared: &Shared) -> Vec<u8> {
    match route {
        Route::Stream(crate::stream::StreamKind::Lite) => {
            response(200, "text/html; charset=utf-8", PAGE.as_bytes())
        }
        Route::Stream(_) => response_with(
            426,
            TEXT,
            "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
            b"this is a WebSocket endpoint: connect with a WebSocket client\n",
        ),
        Route::Example(kind) => match shared.hub.latest(kind) {
            Some(frame) => response_with(200, JSON, PUBLIC_DATA, &pretty_json(frame.payload())),
            None => response_with(200, JSON, PUBLIC_DATA, b"null"),
        },
        Route::Latest => {
            let recent = shared.hub.recent();
            let mut body = Vec::with_capacity(
                16 + recent.iter().map(|f| f.payload().len() + 1).sum::<usize>(),
            );
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
        Route::Stats => response(
            200,
            JSON,
            &stats_json(&shared.snapshot(), &shared.reporters.borrow()),
        ),
        Route::Metrics => response(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            &metrics_text(&shared.snapshot(), &shared.reporters.borrow()),
        ),
        Route::Health => response(200, TEXT, b"ok"),
        Route::NotFound => response(404, TEXT, b"not found\n"),
    }
}

/// A `HEAD` response: the `GET` head (with its `Content-Length`) and no body.
fn strip_body(mut full: Vec<u8>) -> Vec<u8> {
    if let Some(end) = full.windows(4).position(|w| w == b"\r\n\r\n") {
        full.truncate(end + 4);
    }
    full
}
