//! The server: one listener, HTTP/1.1 request heads, routing, stream clients fed by the [`Hub`] (WebSocket, and
//! server-sent events or NDJSON over chunked HTTP), server pings, optional heartbeats, connection limits and graceful
//! shutdown, all on one monoio thread.
//!
//! Panic policy ([`crate::panic_boundary`]): each connection runs inside a panic boundary: a panic is logged and
//! ends that connection only (its hub membership and connection slot are released by their `Drop`), and the
//! server keeps serving.

mod auth;
mod batch;
mod connection;
mod event_stream;
mod guard;
mod limits;
mod pretty;
mod query;
mod rate;
mod request;
mod routes;
mod stats;

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use monoio::io::AsyncWriteRentExt;
use monoio::net::{ListenerOpts, TcpListener, TcpStream};

use crate::config::Config;
use crate::cursor::{ReplaySource, ReplayStart};
use crate::filter::Selection;
use crate::hub::{CatchUp, ClientHandle, Hub, Resume};
use crate::message::StreamKind;
use crate::metrics::StatusReporter;
use crate::panic_boundary::CatchUnwind;
use certstream_ws::frame::Frame;
use certstream_ws::handshake;
use certstream_ws::session::{Session, SessionLimits};

pub use event_stream::Format;
pub use request::Route;

/// Accept backlog: bursts of thousands of connects must not be refused by the kernel.
const BACKLOG: i32 = 4096;

/// A bound server, ready to [`run`](Server::run). Create it inside the runtime that will run it.
pub struct Server {
    listener: TcpListener,
    shared: Rc<Shared>,
}

/// What every connection task shares.
pub(crate) struct Shared {
    config: Config,
    hub: Hub,
    limits: Rc<limits::Limits>,
    ops: routes::OpsRoutes,
    rules: connection::Rules,
    /// `Some` with `--auth-tokens`: who may be served the streams and the latest messages.
    access: Option<Rc<auth::Access>>,
    http_stream_clients: event_stream::HttpStreamClients,
    reporters: RefCell<Vec<Rc<dyn StatusReporter>>>,
    /// `Some` with JetStream: where clients that start from a cursor or a time are replayed from.
    replay_source: RefCell<Option<Rc<dyn ReplaySource>>>,
}

impl Shared {
    fn snapshot(&self) -> stats::Snapshot {
        stats::Snapshot {
            uptime_seconds: self.hub.uptime().as_secs_f64(),
            hub: self.hub.stats(),
            http_stream_clients: self.http_stream_clients.get(),
            connections: self.limits.stats(),
            rate_limited: self.ops.rate_limited(),
            guard: self.rules.guard.stats(),
        }
    }

    /// Renders `/stats` or `/metrics` with `render` over the server's own counters and every added reporter.
    fn render_status<T>(&self, render: impl FnOnce(&[&dyn StatusReporter]) -> T) -> T {
        let own = self.snapshot();
        let added = self.reporters.borrow();
        let all: Vec<&dyn StatusReporter> = std::iter::once(&own as &dyn StatusReporter)
            .chain(added.iter().map(|reporter| &**reporter))
            .collect();
        render(&all)
    }
}

impl Server {
    /// Reads the access-token file (with `--auth-tokens`) and binds the listening socket; the server's clients are
    /// `hub`'s.
    pub fn bind(config: Config, hub: Hub) -> io::Result<Self> {
        let access = match &config.auth_tokens {
            Some(path) => Some(Rc::new(auth::Access::load(path, config.auth_metrics)?)),
            None => None,
        };
        // Relays share a port (the kernel spreads the connections); an ingester started twice must fail instead.
        let opts = ListenerOpts::new()
            .backlog(BACKLOG)
            .reuse_addr(true)
            .reuse_port(config.mode == crate::config::Mode::Relay);
        let listener = TcpListener::bind_with_config(config.listen, &opts)?;
        let descriptor_room = client_descriptor_room(config.descriptor_reserve);
        let shared = Rc::new(Shared {
            hub,
            limits: Rc::new(limits::Limits::new(
                config.max_connections,
                config.max_connections_per_ip,
                descriptor_room,
            )),
            ops: routes::OpsRoutes::new(config.ops_rate),
            rules: connection::Rules {
                guard: Rc::new(guard::Guard::new(config.partial_message_budget)),
                write_stall_timeout: config.write_stall_timeout,
                tcp_keepalive: config.tcp_keepalive,
            },
            reporters: RefCell::new(
                access
                    .iter()
                    .map(|access| access.clone() as Rc<dyn StatusReporter>)
                    .collect(),
            ),
            access,
            http_stream_clients: Default::default(),
            replay_source: RefCell::new(None),
            config,
        });
        Ok(Self { listener, shared })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Lets clients start from a cursor or a time (`?cursor=`, `?since=`, a numeric `Last-Event-ID`), replayed
    /// from `source` (JetStream); without one such requests are answered `400`.
    pub fn with_replay_source(self, source: Rc<dyn ReplaySource>) -> Self {
        *self.shared.replay_source.borrow_mut() = Some(source);
        self
    }

    /// Adds a component's section to `/stats` and `/metrics`.
    pub fn add_reporter(&self, reporter: Rc<dyn StatusReporter>) {
        self.shared.reporters.borrow_mut().push(reporter);
    }

    /// Serves until `shutdown` resolves, then stops accepting, sends close 1001 to every client and waits (at most
    /// the configured grace period) for the closing handshakes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server { listener, shared } = self;
        monoio::spawn(ping_loop(shared.hub.clone(), shared.config.ping_interval));
        if let Some(interval) = shared.config.heartbeat {
            monoio::spawn(heartbeat_loop(shared.hub.clone(), interval));
        }
        if let Some(access) = &shared.access {
            monoio::spawn(access.clone().watch());
        }
        monoio::select! {
            _ = shutdown => {}
            _ = accept_loop(&listener, &shared) => {}
        }
        drop(listener);
        let started = Instant::now();
        let hub = &shared.hub;
        let clients = hub.client_count();
        hub.close_all(Frame::close(1001, "server shutting down"));
        let complete = monoio::time::timeout(shared.config.shutdown_grace, hub.all_left())
            .await
            .is_ok();
        tracing::info!(
            clients,
            complete,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "shutdown: close frames sent"
        );
    }
}

async fn accept_loop(listener: &TcpListener, shared: &Rc<Shared>) {
    loop {
        match listener.accept().await {
            // A refused connection is closed here, before any read: it holds neither a descriptor nor a task.
            Ok((stream, peer)) => {
                if let Ok(slot) = shared.limits.admit(peer.ip()) {
                    monoio::spawn(connection_task(handle(stream, peer, slot, shared.clone())));
                }
            }
            Err(error) => {
                // Typically EMFILE: back off instead of spinning; established clients keep being served.
                shared.limits.accept_failed(&error);
                monoio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What to do with a parsed request head.
enum Action {
    Respond(Bytes),
    /// Serve a stream: the client joins the hub (from `start` when it gave one), then `transport` carries the
    /// messages.
    Stream {
        kind: StreamKind,
        selection: Selection,
        start: Option<ReplayStart>,
        transport: Transport,
    },
}

/// How a stream client is served.
enum Transport {
    /// WebSocket; the `101 Switching Protocols` response to send.
    WebSocket(Vec<u8>),
    /// A chunked HTTP response; server-sent events resume after the client's `Last-Event-ID`, when it gave one.
    Http {
        format: Format,
        last_event_id: Option<String>,
    },
}

/// One accepted connection: read the request head, then answer over HTTP or hand the upgraded connection to its
/// own task. The request phase (head buffer, parser, deadline timer, response write) needs far more state than a
/// long-lived WebSocket connection; spawning the WebSocket phase as a new task frees it instead of sizing every
/// client's task for it.
async fn handle(mut stream: TcpStream, peer: SocketAddr, slot: limits::Slot, shared: Rc<Shared>) {
    let _ = stream.set_nodelay(true);
    let (buf, head_len) =
        match request::read_head(&mut stream, shared.config.request_head_timeout).await {
            Ok(head) => head,
            Err(error) => {
                if let Some(response) = error.response() {
                    request::respond_and_close(stream, response.into(), &shared).await;
                }
                return;
            }
        };
    let action = {
        let mut headers = [httparse::EMPTY_HEADER; request::MAX_REQUEST_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => decide(&request, peer, &shared),
            _ => bad_request(),
        }
    };
    let Action::Stream {
        kind,
        selection,
        start,
        transport,
    } = action
    else {
        if let Action::Respond(response) = action {
            request::respond_and_close(stream, response, &shared).await;
        }
        return;
    };
    // Joined (and filled with what it missed, when resuming) before the response starts or the 101 goes out: a
    // client sees every message published after its response.
    let (client, resume, catch_up) = match join(&shared, kind, selection, start, &transport) {
        Ok(joined) => joined,
        Err(response) => return request::respond_and_close(stream, response, &shared).await,
    };
    match transport {
        Transport::Http { format, .. } => {
            let start = event_stream::response_start(format, resume);
            let stall = shared.config.write_stall_timeout;
            match monoio::time::timeout(stall, stream.write_all(start)).await {
                Ok((Ok(_), _)) => {}
                _ => return,
            }
            drop(buf);
            spawn_connection(
                event_stream::serve(stream, format, client, shared, slot),
                catch_up,
            );
        }
        Transport::WebSocket(response) => {
            let stall = shared.config.write_stall_timeout;
            match monoio::time::timeout(stall, stream.write_all(response)).await {
                Ok((Ok(_), _)) => {}
                _ => return,
            }
            // The session keeps the bytes that followed the head (the first frames); the head buffer is freed now
            // rather than held for the connection's lifetime.
            let session = Session::new(
                session_limits(&shared.config),
                // `read_head` returns a head length within `buf`.
                &buf[head_len..],
                Instant::now(),
            );
            spawn_connection(
                connection::serve(stream, session, client, &shared.rules, slot),
                catch_up,
            );
        }
    }
}

/// Joins a stream client to the hub: from its start (a cursor or a time) with its catch-up when it is not live at
/// once, a server-sent events client resuming from the replay history, else live. NDJSON and WebSocket have no
/// event ids: without a start their clients cannot resume, so they do not keep the replay history filling. `Err`:
/// the `503` answered when no replay can be opened.
fn join(
    shared: &Shared,
    kind: StreamKind,
    selection: Selection,
    start: Option<ReplayStart>,
    transport: &Transport,
) -> Result<(ClientHandle, Resume, Option<CatchUp>), Bytes> {
    let hub = &shared.hub;
    let Some(start) = start else {
        return Ok(match transport {
            Transport::Http {
                format: Format::Sse,
                last_event_id,
            } => {
                let (client, resume) = hub.join_resuming(kind, selection, last_event_id.as_deref());
                (client, resume, None)
            }
            _ => (hub.join(kind, selection), Resume::Live, None),
        });
    };
    // `decide` refused a start without a source; kept as a 503 should that ever change.
    let source = shared.replay_source.borrow().clone();
    let joined = match source {
        Some(source) => hub.join_from(kind, selection, start, &*source),
        None => Err("no replay source".into()),
    };
    match joined {
        Ok((client, catch_up)) => Ok((client, Resume::Replayed, catch_up)),
        Err(reason) => {
            let reason = reason.replace(['\r', '\n'], " ");
            let body = format!("cannot replay from the stream now: {reason}\n");
            Err(request::response(503, "text/plain; charset=utf-8", body.as_bytes()).into())
        }
    }
}

/// Spawns a connection's task; with a catch-up, the catch-up runs in the same task until the connection ends (then
/// its replay is dropped with it).
fn spawn_connection(connection: impl Future<Output = ()> + 'static, catch_up: Option<CatchUp>) {
    let Some(catch_up) = catch_up else {
        monoio::spawn(connection_task(connection));
        return;
    };
    monoio::spawn(connection_task(async move {
        let catch_up = async move {
            catch_up.run().await;
            // The client stays until its connection ends (after the close, when its replay ended).
            std::future::pending::<()>().await
        };
        monoio::select! {
            _ = connection => {}
            _ = catch_up => {}
        }
    }));
}

/// The per-connection WebSocket rules of this configuration.
fn session_limits(config: &Config) -> SessionLimits {
    SessionLimits {
        max_message_len: connection::MAX_CLIENT_MESSAGE,
        control_frames_per_second: config.control_frames_per_second,
        message_timeout: config.message_timeout,
    }
}

fn bad_request() -> Action {
    Action::Respond(request::response(400, "text/plain", b"bad request\n").into())
}

/// What a request head asks for. Every stream, whatever its transport (WebSocket upgrade, server-sent events,
/// NDJSON), is decided here, so what applies to all of them (the access token) is checked in one place.
fn decide(request: &httparse::Request<'_, '_>, peer: SocketAddr, shared: &Shared) -> Action {
    // A complete parse sets all three; answered as unparseable should httparse ever not.
    let (Some(method), Some(path), Some(version)) = (request.method, request.path, request.version)
    else {
        return bad_request();
    };
    let route = Route::of(path);
    let wants_upgrade = handshake::wants_upgrade(request.headers);
    let accepted_format = match route {
        Route::Stream(_) if !wants_upgrade => Format::accepted(request.headers),
        _ => None,
    };
    // Before anything is served or upgraded.
    let streaming = wants_upgrade || accepted_format.is_some();
    let refusal = shared
        .access
        .as_ref()
        .and_then(|access| access.refusal(route, streaming, path, request.headers, peer));
    if let Some(refused) = refusal {
        let refused = refused.into();
        let head_only = method == "HEAD";
        return Action::Respond(if head_only {
            routes::strip_body(refused)
        } else {
            refused
        });
    }
    // A stream's query is checked with or without an upgrade: the live page asks with a plain GET whether a
    // filter is valid before it connects.
    let has_source = shared.replay_source.borrow().is_some();
    let (selection, start) = match route {
        Route::Stream(_) | Route::Sse(_) | Route::Ndjson(_) => {
            let interned = streaming || matches!(route, Route::Sse(_) | Route::Ndjson(_));
            match stream_query(path, &shared.hub, interned, has_source) {
                Ok(asked) => asked,
                Err(reason) => return refused(&reason),
            }
        }
        _ => (Selection::default(), None),
    };
    let http_stream = match route {
        Route::Stream(kind) if wants_upgrade => {
            return match handshake::check_upgrade(method, version, request.headers) {
                Ok(upgrade) => Action::Stream {
                    kind,
                    selection,
                    start,
                    transport: Transport::WebSocket(handshake::switching_protocols(&upgrade)),
                },
                Err(error) => Action::Respond(error.response().into()),
            };
        }
        Route::Stream(kind) => accepted_format.map(|format| (kind, format)),
        Route::Sse(kind) if !wants_upgrade => Some((kind, Format::Sse)),
        Route::Ndjson(kind) if !wants_upgrade => Some((kind, Format::Ndjson)),
        _ => None,
    };
    match http_stream {
        Some((kind, format)) if method == "GET" => {
            let asked = Asked { selection, start };
            http_stream_action(kind, asked, format, version, request, has_source)
        }
        _ => Action::Respond(routes::respond(route, method, wants_upgrade, shared)),
    }
}

/// A `400` with its one-line reason.
fn refused(reason: &str) -> Action {
    Action::Respond(
        request::response(
            400,
            "text/plain; charset=utf-8",
            format!("{reason}\n").as_bytes(),
        )
        .into(),
    )
}

/// What a stream request's query asks for.
struct Asked {
    selection: Selection,
    start: Option<ReplayStart>,
}

/// A GET of a stream as server-sent events or NDJSON: chunked, so HTTP/1.1 only.
///
/// A server-sent events client's `Last-Event-ID` that is a cursor (a plain number, with a replay source) is where
/// it starts: the header wins over the query's `cursor` or `since`, for it is the later position (`EventSource`
/// reconnects to the same URL with it); the `last_event_id` parameter with either is refused.
fn http_stream_action(
    kind: StreamKind,
    Asked {
        selection,
        mut start,
    }: Asked,
    format: Format,
    version: u8,
    request: &httparse::Request<'_, '_>,
    has_source: bool,
) -> Action {
    if version != 1 {
        return Action::Respond(
            request::response(505, "text/plain", b"streams over HTTP need HTTP/1.1\n").into(),
        );
    }
    let last_event_id = match format {
        Format::Sse => match last_event_id(request) {
            Ok(None) => None,
            Ok(Some((_, LastEventIdFrom::Query))) if start.is_some() => {
                return refused("cursor or since with last_event_id: give one of them");
            }
            Ok(Some((id, _))) if has_source && query::is_cursor(&id) => {
                match query::parse_cursor(&id) {
                    Ok(cursor) => start = Some(ReplayStart::After(cursor)),
                    Err(reason) => return refused(&reason),
                }
                None
            }
            Ok(Some((id, _))) => Some(id),
            Err(error) => return refused(&error.to_string()),
        },
        // NDJSON has no event ids: nothing to resume from.
        Format::Ndjson => None,
    };
    Action::Stream {
        kind,
        selection,
        start,
        transport: Transport::Http {
            format,
            last_event_id,
        },
    }
}

/// Where a `Last-Event-ID` was given.
enum LastEventIdFrom {
    Header,
    Query,
}

/// The id of the last event a reconnecting SSE client got: the `Last-Event-ID` header, or the `last_event_id`
/// query parameter for clients that cannot set headers. An empty one is a fresh start (what `EventSource` sends
/// when the events it got had no id); a longer one than ours is cut (and then not ours).
fn last_event_id(
    request: &httparse::Request<'_, '_>,
) -> Result<Option<(String, LastEventIdFrom)>, query::QueryError> {
    let header = request
        .headers
        .iter()
        .find(|header| header.name.eq_ignore_ascii_case("last-event-id"))
        .map(|header| String::from_utf8_lossy(header.value).trim().to_owned());
    let id = match header {
        Some(id) => Some((id, LastEventIdFrom::Header)),
        None => query::Query::of(request.path.unwrap_or_default())?
            .values("last_event_id")
            .next()
            .map(|id| (id.to_owned(), LastEventIdFrom::Query)),
    };
    Ok(id.filter(|(id, _)| !id.is_empty()).map(|(id, from)| {
        let id = id
            .chars()
            .take(event_stream::MAX_LAST_EVENT_ID_LEN)
            .collect();
        (id, from)
    }))
}

/// The selection and start a stream request's query asks for, or the one-line reason it is refused. Unless
/// `interned` (the request streams), the query is only checked: the default selection, no filter added to the
/// hub's registry.
fn stream_query(
    target: &str,
    hub: &Hub,
    interned: bool,
    has_source: bool,
) -> Result<(Selection, Option<ReplayStart>), String> {
    let query = query::Query::of(target).map_err(|error| error.to_string())?;
    let start = query::replay_start(&query)?;
    if start.is_some() && !has_source {
        return Err("cursor and since need JetStream (--nats-url)".into());
    }
    let selected = if interned {
        Selection::from_query(query.pairs(), hub.filters())
    } else {
        Selection::check_query(query.pairs(), hub.filters()).map(|()| Selection::default())
    };
    Ok((selected.map_err(|refusal| refusal.to_string())?, start))
}

async fn ping_loop(hub: Hub, interval: Duration) {
    loop {
        monoio::time::sleep(interval).await;
        hub.ping_all_and_shrink_idle_rings();
    }
}

async fn heartbeat_loop(hub: Hub, interval: Duration) {
    loop {
        monoio::time::sleep(interval).await;
        // A clock set before 1970 stamps 0.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let json = format!(
            "{{\"message_type\":\"heartbeat\",\"timestamp\":{}.{:06}}}",
            now.as_secs(),
            now.subsec_micros()
        );
        hub.broadcast(Frame::text(json.as_bytes()));
    }
}

/// Runs a connection future inside a panic boundary: a panic ends that connection only (see the module docs).
async fn connection_task(connection: impl Future<Output = ()>) {
    if let Err(panicked) = CatchUnwind::new(connection).await {
        tracing::error!(%panicked, "a connection task panicked; that connection is closed, the server keeps running");
    }
}

/// How many connections clients may hold without eating into the descriptors reserved for the CT logs
/// ([`limits`] module docs): the open-files limit and the descriptors open now are read once, here.
fn client_descriptor_room(reserve: usize) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc call with a valid pointer to an owned struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0
        || limit.rlim_cur == libc::RLIM_INFINITY
    {
        return usize::MAX;
    }
    // The listing's own descriptor is counted too: one more kept free.
    let open = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
    let room = limits::descriptor_room(limit.rlim_cur, open, reserve);
    tracing::info!(
        open_files_limit = limit.rlim_cur,
        open_now = open,
        reserve,
        room,
        "descriptors: clients are refused beyond `room` connections"
    );
    if room == 0 {
        tracing::warn!(
            "the open-files limit leaves no descriptor for clients: raise it or lower --fd-reserve"
        );
    }
    room
}

/// Raises the soft limit of open files to the hard limit (every client is a file descriptor); returns the new limit.
pub fn raise_open_files_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls with a valid pointer to an owned struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}
