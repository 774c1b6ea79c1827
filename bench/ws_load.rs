//! Load benchmark of the WebSocket fan-out (prints numbers; not a test). Run: `cargo bench --bench ws_load`.
//!
//! The server runs in a forked child process (the real `Server`, pinned to CPU 0 like `taskset -c 0`) with a
//! benchmark publisher; the load clients run in this process on one monoio thread pinned to CPU 1. Measured:
//! delivered client-messages/s and MB/s with 10, 100, 1,000 and 5,000 lite clients (publisher as fast as the rings
//! drain), publish→receipt latency (p50/p99; both sides read CLOCK_MONOTONIC), RSS per idle client with 10,000
//! clients, and SIGTERM→exit time with 1,000 clients. Phase names as arguments run only those phases:
//! `cargo bench --bench ws_load -- idle fanout` (idle, shutdown, fanout, latency).

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use certstream::config::Config;
use certstream::hub::Hub;
use certstream::message::EncodedMessage;
use certstream::server;
use certstream_testkit::http::{closed_port, http_get};
use certstream_testkit::load::{self, Load, Seen, percentile};
use certstream_testkit::process::{
    cpu_time, fork_server, memory_resident_kib, pin_this_thread, stop_child,
};
use certstream_testkit::runtime::block_on;
use certstream_ws::frame::Frame;

/// Payload size of a benchmark message (a typical lite `certificate_update` is 1-2 KB).
const PAYLOAD: usize = 1024;

/// What the child server's publisher does.
#[derive(Clone, Copy)]
enum Publisher {
    /// Nothing (idle clients, shutdown).
    Idle,
    /// Nothing, but once `clients` are connected, print the allocator's view of the heap (live bytes per client, to
    /// tell live state from fragmentation in the RSS figure).
    ReportHeap { clients: usize },
    /// Once `clients` are connected, publish `messages` as fast as the client rings drain.
    Saturate { clients: usize, messages: u64 },
    /// Once `clients` are connected, publish `messages` at `per_second`.
    Paced {
        clients: usize,
        messages: u64,
        per_second: u64,
    },
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime with a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Forks the server process; returns its pid.
fn spawn_server(port: u16, publisher: Publisher) -> libc::pid_t {
    let config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        max_connections: 100_000,
        max_connections_per_ip: 100_000,
        ..Config::default()
    };
    fork_server(config, move |hub| publish(hub, publisher))
}

fn frames_now() -> EncodedMessage {
    let mut payload = format!("{} ", monotonic_ns()).into_bytes();
    payload.resize(PAYLOAD, b'x');
    let frame = Frame::text(&payload);
    EncodedMessage {
        lite: frame.clone(),
        full: frame.clone(),
        domains: frame,
    }
}

async fn publish(hub: Hub, publisher: Publisher) {
    let (clients, messages) = match publisher {
        Publisher::Idle => return,
        Publisher::ReportHeap { clients } => return report_heap(hub, clients).await,
        Publisher::Saturate { clients, messages }
        | Publisher::Paced {
            clients, messages, ..
        } => (clients, messages),
    };
    while hub.client_count() < clients {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    monoio::time::sleep(Duration::from_millis(100)).await;
    let mut published = 0;
    while published < messages {
        match publisher {
            Publisher::Paced { per_second, .. } => {
                hub.publish(&frames_now().into());
                published += 1;
                monoio::time::sleep(Duration::from_nanos(1_000_000_000 / per_second)).await;
            }
            _ => {
                // Fill every ring up to its 256 frames, never beyond (measure delivery, not drops). The wait is a timer,
                // not a busy yield: monoio only reaps I/O completions once its run queue is empty.
                let queued = hub.stats().max_queued as u64;
                if queued < 128 {
                    for _ in 0..(256 - queued).min(messages - published) {
                        hub.publish(&frames_now().into());
                        published += 1;
                    }
                }
                // monoio's timer rounds this up to its 1 ms resolution.
                monoio::time::sleep(Duration::from_micros(100)).await;
            }
        }
    }
}

/// Bytes the allocator has handed out and not yet been given back (glibc `mallinfo2`).
fn heap_in_use() -> usize {
    // SAFETY: plain glibc query, no arguments.
    let info = unsafe { libc::mallinfo2() };
    info.uordblks + info.hblkhd
}

async fn report_heap(hub: Hub, clients: usize) {
    let before = heap_in_use();
    while hub.client_count() < clients {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    monoio::time::sleep(Duration::from_millis(300)).await;
    let after = heap_in_use();
    println!(
        "idle: server heap in use {} KiB → {} KiB: {:.0} live bytes per idle client",
        before / 1024,
        after / 1024,
        after.saturating_sub(before) as f64 / clients as f64
    );
}

/// Runs `clients` load clients until `until` says stop (checked every 10 ms), `limit` passes or frames stopped
/// flowing for 3 s (e.g. some were dropped); returns what they saw and the CPU use (server, load clients) while
/// frames flowed, as fractions of one core.
fn run_clients(
    addr: SocketAddr,
    server_pid: libc::pid_t,
    clients: usize,
    expect: u64,
    limit: Duration,
    until: impl Fn(&Seen) -> bool,
) -> (Rc<Seen>, (f64, f64)) {
    let mut load = Load::new(addr, "/", expect);
    load.sample = Some(latency_us);
    let started = Instant::now();
    let mut last_frames = 0;
    let mut idle_since = Instant::now();
    let own_pid = std::process::id();
    let cpu = || {
        (
            cpu_time(server_pid as u32).as_secs_f64(),
            cpu_time(own_pid).as_secs_f64(),
        )
    };
    let mut flowing_since = None;
    let seen = load::run_clients(load, clients, |seen| {
        if flowing_since.is_none() && seen.frames.get() > 0 {
            flowing_since = Some((Instant::now(), cpu()));
        }
        if seen.frames.get() != last_frames {
            last_frames = seen.frames.get();
            idle_since = Instant::now();
        }
        until(seen)
            || started.elapsed() >= limit
            || (last_frames > 0 && idle_since.elapsed() > Duration::from_secs(3))
    });
    let used = flowing_since.map_or((f64::NAN, f64::NAN), |(since, (server, own))| {
        let wall = since.elapsed().as_secs_f64();
        let (server_now, own_now) = cpu();
        ((server_now - server) / wall, (own_now - own) / wall)
    });
    (seen, used)
}

/// Publish→receipt latency of a benchmark frame (its payload starts with the CLOCK_MONOTONIC publish time, ns).
fn latency_us(payload: &[u8]) -> Option<u32> {
    let sent = payload
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0u64, |acc, b| acc * 10 + u64::from(b - b'0'));
    Some((monotonic_ns().saturating_sub(sent) / 1000) as u32)
}

fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn stats(addr: SocketAddr) -> serde_json::Value {
    let (_, _, body) = http_get(addr, "/stats");
    serde_json::from_slice(&body).expect("/stats JSON")
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` probes bench binaries
    }
    let _ = server::raise_open_files_limit();
    println!(
        "ws_load: server pinned to CPU 0, load clients pinned to CPU 1, {PAYLOAD}-byte lite messages"
    );
    pin_this_thread(1);
    // Optional phase names (idle, shutdown, fanout, latency) run only those phases.
    let phases: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |phase: &str| phases.is_empty() || phases.iter().any(|p| p == phase);

    if wanted("idle") {
        let clients = 10_000;
        let port = closed_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let pid = spawn_server(port, Publisher::ReportHeap { clients });
        wait_listening(addr);
        std::thread::sleep(Duration::from_millis(200));
        let before = memory_resident_kib(pid as u32);
        let after = Rc::new(Cell::new(0u64));
        let after_inner = after.clone();
        let seen = Rc::new(Seen::default());
        let seen_inner = seen.clone();
        let load = Rc::new(Load::new(addr, "/", u64::MAX));
        block_on(async move {
            for _ in 0..clients {
                monoio::spawn(load::client(load.clone(), seen_inner.clone()));
            }
            let deadline = Instant::now() + Duration::from_secs(60);
            while seen_inner.connected.get() < clients && Instant::now() < deadline {
                monoio::time::sleep(Duration::from_millis(20)).await;
            }
            monoio::time::sleep(Duration::from_millis(500)).await;
            after_inner.set(memory_resident_kib(pid as u32));
        });
        stop_child(pid);
        let per_client = (after.get().saturating_sub(before)) as f64 * 1024.0 / clients as f64;
        println!(
            "idle: {} clients connected, server RSS {before} KiB → {} KiB: {per_client:.0} bytes per idle client",
            seen.connected.get(),
            after.get()
        );
    }

    if wanted("shutdown") {
        let clients = 1_000;
        let port = closed_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let pid = spawn_server(port, Publisher::Idle);
        wait_listening(addr);
        let seen = Rc::new(Seen::default());
        let seen_inner = seen.clone();
        let elapsed = Rc::new(Cell::new(Duration::ZERO));
        let elapsed_inner = elapsed.clone();
        let load = Rc::new(Load::new(addr, "/", u64::MAX));
        block_on(async move {
            for _ in 0..clients {
                monoio::spawn(load::client(load.clone(), seen_inner.clone()));
            }
            while seen_inner.connected.get() < clients {
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
            monoio::time::sleep(Duration::from_millis(200)).await;
            let started = Instant::now();
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            // Reap without blocking the clients' runtime: they must read their close frames meanwhile.
            loop {
                let mut status = 0;
                // SAFETY: reaping our own child without blocking.
                if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
                    break;
                }
                monoio::time::sleep(Duration::from_micros(200)).await;
            }
            elapsed_inner.set(started.elapsed());
        });
        println!(
            "shutdown: SIGTERM → exit in {:.1} ms with {clients} clients, {} close frames received",
            elapsed.get().as_secs_f64() * 1000.0,
            seen.closes.get()
        );
    }
    for clients in [10usize, 100, 1_000, 5_000]
        .into_iter()
        .filter(|_| wanted("fanout"))
    {
        let messages = (2_000_000 / clients as u64).clamp(500, 200_000);
        let port = closed_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let pid = spawn_server(port, Publisher::Saturate { clients, messages });
        wait_listening(addr);
        let (seen, (server_cpu, client_cpu)) =
            run_clients(addr, pid, clients, messages, Duration::from_secs(60), |s| {
                s.done.get() == clients
            });
        let dropped = stats(addr)["messages_dropped"].as_u64().unwrap_or(0);
        stop_child(pid);
        let secs = match (seen.first.get(), seen.last.get()) {
            (Some(first), Some(last)) => (last - first).as_secs_f64().max(1e-9),
            _ => f64::NAN,
        };
        let mut latencies = seen.samples.take();
        latencies.sort_unstable();
        println!(
            "{clients:>5} clients: {:>10.0} client-messages/s, {:>7.1} MB/s, delivered {}/{} (dropped {dropped}), \
             latency p50 {} µs p99 {} µs (saturated); CPU: server {:.0} %, clients {:.0} %; {:.2} M client-messages \
             per server CPU-second",
            seen.frames.get() as f64 / secs,
            seen.bytes.get() as f64 / secs / 1e6,
            seen.frames.get(),
            messages * clients as u64,
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            server_cpu * 100.0,
            client_cpu * 100.0,
            seen.frames.get() as f64 / secs / server_cpu / 1e6,
        );
    }

    if wanted("latency") {
        let (clients, messages, per_second) = (1_000, 1_000, 200);
        let port = closed_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let pid = spawn_server(
            port,
            Publisher::Paced {
                clients,
                messages,
                per_second,
            },
        );
        wait_listening(addr);
        let (seen, _) = run_clients(addr, pid, clients, messages, Duration::from_secs(60), |s| {
            s.done.get() == clients
        });
        stop_child(pid);
        let mut latencies = seen.samples.take();
        latencies.sort_unstable();
        println!(
            "latency at {per_second} messages/s to {clients} clients: p50 {} µs, p99 {} µs ({} samples)",
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            latencies.len()
        );
    }
}
