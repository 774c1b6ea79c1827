//! NATS JetStream benchmark (issue 11; prints numbers, not a test): mock CT logs → the real `certstream` binary
//! publishing to a real `nats-server -js` → relays (`certstream relay`) → WebSocket clients in this process, with
//! an ingester without NATS beside them in the same run as the baseline. Nothing is pinned: on the 2-vCPU VM the
//! mock and the clients (this process), the broker, the ingesters and the relays share both cores, so every line
//! also prints the CPU each process used.
//!
//! Run: `cargo bench --profile ci --bench nats` (all), or `-- latency`, `-- fanout`, `-- replay` for one part;
//! options `--seconds S` (measuring window), `--clients 500,1000`, `--history N`, `--poll-interval D`, `--path P`
//! (the fan-out clients' stream, default `/`: lite).
//!
//! - latency: 60 mock logs growing by 2,000 entries/s in total; one lite (`/`) client each at a relay, at the
//!   ingester publishing to JetStream (its own clients, served from the stream too) and at an ingester without NATS.
//!   Per message: *log → client* = receipt minus the instant the mock log made the entry visible (its tree grew past
//!   it; both on this process's CLOCK_MONOTONIC): polling (`--poll-interval`; tiled logs also wait for partial tiles
//!   to age), fetching, decoding, publishing, the broker, the relay, the client's socket; *seen → client* = receipt
//!   minus `data.seen` (the ingester's wall clock when it decoded the entry; same machine, same clock): everything
//!   after decoding, where NATS adds its part. That part is split at the stream by the benchmark's own ordered
//!   consumer: *seen → stored* (the broker's timestamp of the message) and *stored → client* (by the message's
//!   cursor). Entries made visible during the window (after a warm-up) are counted.
//! - fanout: the same live setup; `--clients` clients of the whole firehose (`--path`, default lite) on one ingester
//!   without NATS, on one relay, on two relays sharing one port (SO_REUSEPORT): client-messages/s delivered against
//!   what the source published in the window times the clients, each process's CPU (from /proc/<pid>/stat), idle
//!   and with clients, and each server's own `/stats` (clients, what its hub got, how far behind the stream it is,
//!   drops); the serving CPU beyond idle per client-message delivered is the cost per client, and the relay's over
//!   the ingester's is the ratio.
//! - replay: `--history` entries (60 fixed logs) published to the stream by an ingester as fast as it goes, then one
//!   client at a time reads `?cursor=0` (and `?since=0`) as fast as it can; an hour at 2,000/s (7.2 M messages,
//!   about 12 KB each in the stream) is extrapolated from that rate, not measured.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use certstream_testkit::load::{self, Load, percentile};
use certstream_testkit::nats::{NatsServer, stream_at, stream_size};
use certstream_testkit::raw_stream::cursor_of;
use certstream_testkit::{Certstream, Mock, WsClient, closed_port, update_position};
use serde_json::Value;

const RFC6962_LOGS: u32 = 30;
const TILED_LOGS: u32 = 30;
const LOGS: u32 = RFC6962_LOGS + TILED_LOGS;
/// Entries per second all logs together grow by (today's firehose).
const RATE: f64 = 2_000.0;
/// From the start of the processes to the measuring window: every poller started (jittered over one poll
/// interval) and the clients connected.
const WARM_UP: Duration = Duration::from_secs(6);
/// An hour of the firehose, for the replay extrapolation.
const HOUR: f64 = RATE * 3_600.0;

/// Benchmark settings from the command line.
struct Settings {
    /// The measuring window (default: 20 s for latency, 8 s per fan-out step).
    seconds: Option<u64>,
    clients: Vec<usize>,
    history: u64,
    poll_interval: String,
    /// The stream the fan-out clients read (`/`: lite).
    path: String,
}

/// The sub-benchmarks named on the command line (none: all) and the settings.
fn parse_args() -> (Vec<String>, Settings) {
    let mut settings = Settings {
        seconds: None,
        clients: vec![500, 1_000],
        history: 200_000,
        poll_interval: "1s".into(),
        path: "/".into(),
    };
    let mut parts = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_default();
        match arg.as_str() {
            "--seconds" => settings.seconds = Some(value().parse().expect("--seconds S")),
            "--clients" => {
                settings.clients = value()
                    .split(',')
                    .map(|n| n.trim().parse().expect("--clients N,M"))
                    .collect()
            }
            "--history" => settings.history = value().parse().expect("--history N"),
            "--poll-interval" => settings.poll_interval = value(),
            "--path" => settings.path = value(),
            // `cargo bench` adds `--bench`.
            flag if flag.starts_with('-') => {}
            part => parts.push(part.to_owned()),
        }
    }
    (parts, settings)
}

/// The options every server of the benchmark gets: room for the load clients.
const SERVER_ARGS: [&str; 4] = [
    "--max-connections",
    "100000",
    "--max-connections-per-ip",
    "100000",
];

/// An ingester following `mock`'s logs from their current size, publishing to `nats` when given.
fn start_ingester(
    mock: &Mock,
    nats: Option<&NatsServer>,
    settings: &Settings,
    args: &[&str],
) -> Certstream {
    let url = nats.map(NatsServer::url);
    let mut all = SERVER_ARGS.to_vec();
    all.extend([
        "--poll-interval",
        &settings.poll_interval,
        "--start-back",
        "0",
    ]);
    if let Some(url) = &url {
        all.extend(["--nats-url", url]);
    }
    all.extend_from_slice(args);
    let list = mock.list_url();
    Certstream::start(&all, &[("CUSTOM_LOG_LIST", list.as_str())])
}

/// A relay of `nats`'s stream, on `port` (shared with other relays) or a port of its own.
fn start_relay(nats: &NatsServer, port: Option<u16>) -> Certstream {
    let url = nats.url();
    let mut all = SERVER_ARGS.to_vec();
    all.extend(["--nats-url", &url]);
    match port {
        Some(port) => Certstream::start_relay_on(port, &all, &[]),
        None => Certstream::start_relay(&all, &[]),
    }
}

/// The live setup: logs growing at [`RATE`], the broker, an ingester publishing to it, one without it.
struct Live {
    mock: Mock,
    nats: NatsServer,
    ingester: Certstream,
    baseline: Certstream,
}

fn start_live(settings: &Settings) -> Live {
    let mock = Mock::firehose(RFC6962_LOGS, TILED_LOGS, RATE);
    let nats = NatsServer::start(&[]);
    let ingester = start_ingester(&mock, Some(&nats), settings, &[]);
    let baseline = start_ingester(&mock, None, settings, &[]);
    Live {
        mock,
        nats,
        ingester,
        baseline,
    }
}

fn wall_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The number after `"seen":` in a message.
fn seen_of(message: &[u8]) -> Option<f64> {
    let key = b"\"seen\":";
    let start = message.windows(key.len()).position(|w| w == key)? + key.len();
    let rest = &message[start..];
    let end = rest.iter().position(|b| matches!(b, b',' | b'}'))?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// One stream message as the benchmark's own JetStream consumer read it, Unix seconds: when the broker stored it
/// (the message's timestamp), its `data.seen`, when the consumer received it.
struct Stored {
    index: u64,
    stored: f64,
    seen: f64,
    received: f64,
}

/// An ordered consumer of `nats`'s stream from its end, on a thread of its own (like a relay's), recording every
/// message by sequence until `stop`.
fn stream_observer(nats: &NatsServer, stop: Arc<AtomicBool>) -> JoinHandle<HashMap<u64, Stored>> {
    use futures_util::StreamExt as _;
    let url = nats.url();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        runtime.block_on(async move {
            let consumer = stream_at(&url)
                .await
                .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                    deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::New,
                    ..Default::default()
                })
                .await
                .expect("an ordered consumer");
            let mut messages = consumer.messages().await.expect("the consumer's messages");
            let mut stored = HashMap::new();
            while !stop.load(Ordering::Relaxed) {
                let Ok(Some(message)) =
                    tokio::time::timeout(Duration::from_millis(50), messages.next()).await
                else {
                    continue;
                };
                let received = wall_seconds();
                let message = message.expect("a stream message");
                let info = message.info().expect("message info");
                let position = update_position(&message.payload);
                if let (Some((_, index)), Some(seen)) = (position, seen_of(&message.payload)) {
                    let at = info.published.unix_timestamp_nanos() as f64 / 1e9;
                    stored.insert(
                        info.stream_sequence,
                        Stored {
                            index,
                            stored: at,
                            seen,
                            received,
                        },
                    );
                }
            }
            stored
        })
    })
}

/// One message as a latency client received it.
struct Arrival {
    index: u64,
    /// From a tiled log (else RFC 6962).
    tiled: bool,
    at: Instant,
    /// Receipt minus `data.seen`, seconds.
    since_seen: f64,
    /// Receipt, Unix seconds.
    wall: f64,
    /// The message's `cursor` (its stream sequence), when it has one.
    cursor: Option<u64>,
}

/// A client of `/` on `addr` on a thread of its own, recording every `certificate_update` until `stop`.
fn latency_client(addr: std::net::SocketAddr, stop: Arc<AtomicBool>) -> JoinHandle<Vec<Arrival>> {
    let mut client = WsClient::connect(addr, "/");
    client
        .stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("read timeout");
    std::thread::spawn(move || {
        let mut arrivals = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match client.read_frame() {
                Ok(frame) if frame.opcode == 1 => {
                    let (at, wall) = (Instant::now(), wall_seconds());
                    let position = update_position(&frame.payload);
                    if let (Some((url, index)), Some(seen)) = (position, seen_of(&frame.payload)) {
                        arrivals.push(Arrival {
                            index,
                            tiled: !url.windows(9).any(|w| w == b"/rfc6962/"),
                            at,
                            since_seen: wall - seen,
                            wall,
                            cursor: cursor_of(&frame.payload),
                        });
                    }
                }
                Ok(frame) if frame.opcode == 8 => panic!("the server closed the stream"),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("stream read failed: {e}"),
            }
        }
        arrivals
    })
}

/// `p50 … p99 … max …` of `delays` in milliseconds.
fn spread(mut delays: Vec<f64>) -> String {
    delays.sort_by(f64::total_cmp);
    format!(
        "p50 {:>7.1} ms, p99 {:>7.1} ms, max {:>7.1} ms",
        percentile(&delays, 0.50) * 1e3,
        percentile(&delays, 0.99) * 1e3,
        delays.last().copied().unwrap_or_default() * 1e3
    )
}

fn latency(settings: &Settings) {
    let live = start_live(settings);
    let relay = start_relay(&live.nats, None);
    let stop = Arc::new(AtomicBool::new(false));
    let observer = stream_observer(&live.nats, stop.clone());
    let clients = [
        ("relay client", latency_client(relay.addr, stop.clone())),
        (
            "ingester's own client (NATS)",
            latency_client(live.ingester.addr, stop.clone()),
        ),
        (
            "ingester without NATS",
            latency_client(live.baseline.addr, stop.clone()),
        ),
    ];
    let window_start = Instant::now() + WARM_UP;
    let seconds = settings.seconds.unwrap_or(20);
    let window_end = window_start + Duration::from_secs(seconds);
    let pids = [
        ("relay", relay.pid()),
        ("ingester (NATS)", live.ingester.pid()),
        ("ingester without NATS", live.baseline.pid()),
        ("nats-server", live.nats.pid().expect("nats-server runs")),
    ];
    std::thread::sleep(WARM_UP);
    let cpu_before = cpu_of(&pids);
    std::thread::sleep(window_end - Instant::now());
    let cpu = cpu_since(&pids, cpu_before, seconds as f64);
    // Entries visible by the end of the window may still be on their way: a poll interval and a margin more.
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    let in_window = |index: u64| {
        live.mock
            .visible_at(index)
            .is_some_and(|at| at >= window_start && at < window_end)
    };
    let expected = (1_000_000..)
        .take_while(|&i| live.mock.visible_at(i).is_some_and(|at| at < window_end))
        .filter(|&i| in_window(i))
        .count() as u64
        * u64::from(LOGS);
    println!(
        "\n== latency: {LOGS} logs growing by {RATE} entries/s in total, poll interval {}, entries made visible during \
         {} s (after {} s of warm-up), one lite client per server",
        settings.poll_interval,
        seconds,
        WARM_UP.as_secs()
    );
    let stored = observer.join().expect("stream observer");
    let window: Vec<&Stored> = stored.values().filter(|s| in_window(s.index)).collect();
    println!(
        "the stream, read by the benchmark's own ordered consumer ({} messages)\n    seen → stored:           {}\n    \
         stored → that consumer:  {}",
        window.len(),
        spread(window.iter().map(|s| s.stored - s.seen).collect()),
        spread(window.iter().map(|s| s.received - s.stored).collect())
    );
    for (name, client) in clients {
        let arrivals = client.join().expect("latency client");
        let from_stream: Vec<f64> = arrivals
            .iter()
            .filter(|a| in_window(a.index))
            .filter_map(|a| Some(a.wall - stored.get(&a.cursor?)?.stored))
            .collect();
        let (mut from_log, mut from_seen) = (Vec::new(), Vec::new());
        let mut by_kind = [Vec::new(), Vec::new()];
        for arrival in arrivals.iter().filter(|a| in_window(a.index)) {
            let visible = live.mock.visible_at(arrival.index).expect("a grown entry");
            let delay = arrival.at.duration_since(visible).as_secs_f64();
            from_log.push(delay);
            by_kind[usize::from(arrival.tiled)].push(delay);
            from_seen.push(arrival.since_seen);
        }
        println!(
            "{name:<29} {:>6}/{expected} received\n    log → client:  {}\n    seen → client: {}",
            from_log.len(),
            spread(from_log),
            spread(from_seen)
        );
        if !from_stream.is_empty() {
            println!("    stored in the stream → client: {}", spread(from_stream));
        }
        let [rfc6962, tiled] = by_kind;
        println!(
            "    log → client, RFC 6962 logs: {}\n    log → client, tiled logs:    {}",
            spread(rfc6962),
            spread(tiled)
        );
    }
    print_cpu(&cpu);
    println!("relay /stats stream: {}", relay.stats()["stream"]);
}

/// CPU time so far of each named process.
fn cpu_of(pids: &[(&'static str, u32)]) -> Vec<(&'static str, u32, f64)> {
    pids.iter()
        .map(|&(name, pid)| (name, pid, certstream_testkit::cpu_time(pid).as_secs_f64()))
        .collect()
}

/// CPU use of each process since `before`, over `wall` seconds, as a fraction of one core.
fn cpu_since(
    pids: &[(&'static str, u32)],
    before: Vec<(&'static str, u32, f64)>,
    wall: f64,
) -> Vec<(&'static str, f64)> {
    cpu_of(pids)
        .into_iter()
        .zip(before)
        .map(|((name, _, now), (_, _, then))| (name, (now - then) / wall))
        .collect()
}

fn print_cpu(cpu: &[(&str, f64)]) {
    let parts: Vec<String> = cpu
        .iter()
        .map(|(name, share)| format!("{name} {:.1} %", share * 100.0))
        .collect();
    println!("CPU (% of one core): {}", parts.join(", "));
}

/// What `clients` clients of the servers' port received over a window of `seconds`, once all connected and a
/// second passed, the CPU of `pids` over the same window, and each server's view of it (its `/stats`: with
/// [`Certstream::start_relay_on`] a request reaches the very relay even on a shared port).
struct Delivery {
    connected: usize,
    client_messages_per_second: f64,
    /// Messages/s `published` counted in the window, times the clients: what full delivery would be.
    offered_per_second: f64,
    megabytes_per_second: f64,
    cpu: Vec<(&'static str, f64)>,
    /// Per server, from its `/stats`.
    servers: Vec<ServerView>,
}

/// One server's `/stats` over a window.
struct ServerView {
    clients: u64,
    /// Messages/s its hub got.
    hub_per_second: f64,
    /// How far behind the stream it was at the end (`null` without a stream).
    pending: Value,
    /// Messages dropped from its client queues.
    dropped: u64,
    /// Its stream reader's consumer restarts so far (`null` without a stream).
    restarts: Value,
}

/// `/stats` counters of each server at the start of a window: messages published to its hub, dropped.
fn counters(servers: &[&Certstream]) -> Vec<(u64, u64)> {
    servers
        .iter()
        .map(|server| {
            let stats = server.stats();
            let count = |key: &str| stats[key].as_u64().unwrap_or(0);
            (count("messages_published"), count("messages_dropped"))
        })
        .collect()
}

/// The window's start: when, frames and bytes received, `published`, the servers' counters, CPU times.
type WindowStart = (
    Instant,
    u64,
    u64,
    u64,
    Vec<(u64, u64)>,
    Vec<(&'static str, u32, f64)>,
);

fn deliver(
    servers: &[&Certstream],
    published: impl Fn() -> u64,
    path: &str,
    clients: usize,
    seconds: u64,
    pids: &[(&'static str, u32)],
) -> Delivery {
    let started = Instant::now();
    let mut connected_at = None;
    let mut window: Option<WindowStart> = None;
    let mut result = None;
    load::run_clients(
        Load::new(servers[0].addr, path, u64::MAX),
        clients,
        |seen| {
            let all_in =
                seen.connected.get() == clients || started.elapsed() > Duration::from_secs(20);
            if connected_at.is_none() && all_in {
                connected_at = Some(Instant::now());
            }
            match (&window, connected_at) {
                (None, Some(at)) if at.elapsed() >= Duration::from_secs(1) => {
                    let (frames, bytes) = (seen.frames.get(), seen.bytes.get());
                    let (source, counts) = (published(), counters(servers));
                    window = Some((Instant::now(), frames, bytes, source, counts, cpu_of(pids)));
                    false
                }
                (Some((since, ..)), _) if since.elapsed() >= Duration::from_secs(seconds) => {
                    let Some((since, frames, bytes, source, counts, cpu_before)) = window.take()
                    else {
                        return true;
                    };
                    let wall = since.elapsed().as_secs_f64();
                    let (frames, bytes) = (seen.frames.get() - frames, seen.bytes.get() - bytes);
                    let cpu = cpu_since(pids, cpu_before, wall);
                    let servers = servers
                        .iter()
                        .zip(counts)
                        .map(|(server, (hub_before, dropped_before))| {
                            let stats = server.stats();
                            let count = |key: &str| stats[key].as_u64().unwrap_or(0);
                            ServerView {
                                clients: stats["clients"]["total"].as_u64().unwrap_or(0),
                                hub_per_second: count("messages_published")
                                    .saturating_sub(hub_before)
                                    as f64
                                    / wall,
                                pending: stats["stream"]["pending"].clone(),
                                dropped: count("messages_dropped").saturating_sub(dropped_before),
                                restarts: stats["stream"]["consumer_restarts"].clone(),
                            }
                        })
                        .collect();
                    result = Some(Delivery {
                        connected: seen.connected.get(),
                        client_messages_per_second: frames as f64 / wall,
                        offered_per_second: (published() - source) as f64 / wall * clients as f64,
                        megabytes_per_second: bytes as f64 / wall / 1e6,
                        cpu,
                        servers,
                    });
                    true
                }
                _ => false,
            }
        },
    );
    result.expect("a measured window")
}

/// One fan-out configuration's idle CPU and deliveries, per client count; `published` counts the messages its
/// servers get. Returns the CPU cost (µs of the serving processes' CPU beyond idle, per client-message delivered)
/// at each client count.
fn fanout_case(
    name: &str,
    servers: &[(&'static str, &Certstream)],
    published: &dyn Fn() -> u64,
    live: &Live,
    settings: &Settings,
) -> Vec<f64> {
    let own = std::process::id();
    let serving: Vec<(&'static str, u32)> = servers.iter().map(|(n, s)| (*n, s.pid())).collect();
    let servers: Vec<&Certstream> = servers.iter().map(|(_, s)| *s).collect();
    let servers = servers.as_slice();
    let background = [
        ("ingester (NATS)", live.ingester.pid()),
        ("ingester without NATS", live.baseline.pid()),
        ("nats-server", live.nats.pid().expect("nats-server runs")),
        ("mock + clients (bench)", own),
    ];
    let mut pids = serving.clone();
    pids.extend(
        background
            .into_iter()
            .filter(|(_, pid)| !serving.iter().any(|(_, p)| p == pid)),
    );
    let seconds = settings.seconds.unwrap_or(8);
    let before = cpu_of(&pids);
    std::thread::sleep(Duration::from_secs(3));
    let idle = cpu_since(&pids, before, 3.0);
    let idle_serving: f64 = idle[..serving.len()].iter().map(|(_, c)| c).sum();
    println!("\n-- {name}: idle (no client)");
    print_cpu(&idle);
    let mut costs = Vec::new();
    for &clients in &settings.clients {
        let delivery = deliver(servers, published, &settings.path, clients, seconds, &pids);
        let serving_cpu: f64 = delivery.cpu[..serving.len()].iter().map(|(_, c)| c).sum();
        let cost = (serving_cpu - idle_serving) / delivery.client_messages_per_second * 1e6;
        let source = live.ingester.stats()["stream"].clone();
        let each = |part: &dyn Fn(&ServerView) -> String| {
            let parts: Vec<String> = delivery.servers.iter().map(part).collect();
            parts.join(" + ")
        };
        println!(
            "{clients:>5} clients ({} connected: {}): {:>9.0} client-msgs/s ({:.0} MB/s) of {:.0} offered by the \
             source; serving CPU {:.1} % ({:.1} % beyond idle): {cost:.2} µs per client-message",
            delivery.connected,
            each(&|s| s.clients.to_string()),
            delivery.client_messages_per_second,
            delivery.megabytes_per_second,
            delivery.offered_per_second,
            serving_cpu * 100.0,
            (serving_cpu - idle_serving) * 100.0
        );
        println!(
            "      per server: hub {} msgs/s, stream pending {} at the end, consumer restarts {}, dropped {}; the \
             ingester publishing to NATS: stream pending {}, consumer restarts {}",
            each(&|s| format!("{:.0}", s.hub_per_second)),
            each(&|s| s.pending.to_string()),
            each(&|s| s.restarts.to_string()),
            each(&|s| s.dropped.to_string()),
            source["pending"],
            source["consumer_restarts"]
        );
        print_cpu(&delivery.cpu);
        costs.push(cost);
        // The clients are gone; let the servers see it before the next count.
        std::thread::sleep(Duration::from_secs(1));
    }
    costs
}

fn fanout(settings: &Settings) {
    let live = start_live(settings);
    println!(
        "\n== fan-out: {LOGS} logs growing by {RATE} entries/s in total, clients of the whole firehose on {}, {} s \
         windows; every process runs throughout (mock and clients in this process)",
        settings.path,
        settings.seconds.unwrap_or(8)
    );
    // Every poller started and the stream flows.
    std::thread::sleep(WARM_UP);
    let published =
        |server: &Certstream| server.stats()["messages_published"].as_u64().unwrap_or(0);
    let baseline = fanout_case(
        "ingester without NATS",
        &[("ingester without NATS", &live.baseline)],
        &|| published(&live.baseline),
        &live,
        settings,
    );
    // What the relays get: what the ingester publishes to its own clients, from the stream.
    let streamed = || published(&live.ingester);
    let relay = start_relay(&live.nats, None);
    let one = fanout_case("1 relay", &[("relay", &relay)], &streamed, &live, settings);
    drop(relay);
    let port = closed_port();
    let pair = [
        start_relay(&live.nats, Some(port)),
        start_relay(&live.nats, Some(port)),
    ];
    let two = fanout_case(
        "2 relays on one port (SO_REUSEPORT)",
        &[("relay #1", &pair[0]), ("relay #2", &pair[1])],
        &streamed,
        &live,
        settings,
    );
    println!("\ncost per client-message, relay ÷ ingester without NATS (same run):");
    for (i, clients) in settings.clients.iter().enumerate() {
        println!(
            "{clients:>5} clients: 1 relay {:.2}×, 2 relays {:.2}×",
            one[i] / baseline[i],
            two[i] / baseline[i]
        );
    }
}

/// One client reading `path` of `addr` until it has `expect` messages (or nothing came for 5 s, or 5 minutes
/// passed): messages, seconds from connecting to the first message, messages/s from the first to the last.
fn read_history(addr: std::net::SocketAddr, path: &str, expect: u64) -> (u64, f64, f64) {
    let started = Instant::now();
    let mut last_frames = (0, Instant::now());
    let seen = load::run_clients(Load::new(addr, path, expect), 1, |seen| {
        if seen.frames.get() != last_frames.0 {
            last_frames = (seen.frames.get(), Instant::now());
        }
        seen.done.get() == 1
            || last_frames.1.elapsed() > Duration::from_secs(5)
            || started.elapsed() > Duration::from_secs(300)
    });
    let (first, last) = (
        seen.first.get().unwrap_or(started),
        seen.last.get().unwrap_or(started),
    );
    let frames = seen.frames.get();
    (
        frames,
        (first - started).as_secs_f64(),
        frames as f64 / (last - first).as_secs_f64().max(1e-9),
    )
}

fn replay(settings: &Settings) {
    let per_log = settings.history.div_ceil(u64::from(LOGS));
    let history = per_log * u64::from(LOGS);
    let mock = Mock::fixed(
        RFC6962_LOGS as usize,
        TILED_LOGS as usize,
        1_000_000,
        &[],
        &["--page-cap", "256"],
    );
    let nats = NatsServer::start(&[]);
    let started = Instant::now();
    let per_log_text = per_log.to_string();
    let ingester = start_ingester(
        &mock,
        Some(&nats),
        settings,
        &[
            "--start-back",
            &per_log_text,
            "--nats-max-bytes",
            "16000000000",
        ],
    );
    ingester.wait_stats("the history in the stream", Duration::from_secs(600), |s| {
        s["nats"]["acked"].as_u64() >= Some(history)
    });
    let published = started.elapsed().as_secs_f64();
    let (messages, bytes) = stream_size(&nats.url());
    println!(
        "\n== replay: {messages} messages ({:.2} GB, {:.1} KB each: full, lite and domains-only payloads) published to \
         JetStream by an ingester in {published:.1} s ({:.0}/s, from its start)",
        bytes as f64 / 1e9,
        bytes as f64 / messages as f64 / 1e3,
        messages as f64 / published
    );
    let relay = start_relay(&nats, None);
    let nats_pid = nats.pid().expect("nats-server runs");
    for (name, server, path) in [
        ("relay, lite `/?cursor=0`", &relay, "/?cursor=0"),
        (
            "relay, full `/full-stream?cursor=0`",
            &relay,
            "/full-stream?cursor=0",
        ),
        ("relay, lite `/?since=0`", &relay, "/?since=0"),
        ("ingester, lite `/?cursor=0`", &ingester, "/?cursor=0"),
    ] {
        let pids = [
            ("serving", server.pid()),
            ("nats-server", nats_pid),
            ("client (bench)", std::process::id()),
        ];
        let (before, started) = (cpu_of(&pids), Instant::now());
        let (frames, first, rate) = read_history(server.addr, path, messages);
        let cpu = cpu_since(&pids, before, started.elapsed().as_secs_f64());
        println!(
            "{name:<36} {frames}/{messages} messages, first after {:.0} ms, {rate:>8.0} messages/s: an hour at \
             {RATE}/s ({:.1} M) in {:.0} s (extrapolated)",
            first * 1e3,
            HOUR / 1e6,
            HOUR / rate
        );
        print_cpu(&cpu);
    }
    let stats: Value = relay.stats();
    println!("relay /stats stream: {}", stats["stream"]);
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` probes bench binaries
    }
    let _ = certstream::server::raise_open_files_limit();
    let (parts, settings) = parse_args();
    let wants = |part: &str| parts.is_empty() || parts.iter().any(|p| p == part);
    if wants("latency") {
        latency(&settings);
    }
    if wants("fanout") {
        fanout(&settings);
    }
    if wants("replay") {
        replay(&settings);
    }
}
