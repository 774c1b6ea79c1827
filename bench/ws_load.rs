//! Load benchmark of the WebSocket fan-out (prints numbers; not a test). Run: `cargo bench --bench ws_load`.
//!
//! The server runs in a forked child process (the real `Server`, pinned to CPU 0 like `taskset -c 0`) with a
//! benchmark publisher; the load clients run in this process on one monoio thread pinned to CPU 1. Measured:
//! delivered client-messages/s and MB/s with 10, 100, 1,000 and 5,000 lite clients (publisher as fast as the rings
//! drain), publish→receipt latency (p50/p99; both sides read CLOCK_MONOTONIC), RSS per idle client with 10,000
//! clients, and SIGTERM→exit time with 1,000 clients. Phase names as arguments run only those phases:
//! `cargo bench --bench ws_load -- idle fanout` (idle, shutdown, fanout, latency).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use certstream::config::Config;
use certstream::hub::Hub;
use certstream::message::EncodedMessage;
use certstream::server;
use certstream_testkit::http::{closed_port, http_get};
use certstream_testkit::process::{
    cpu_time, fork_server, memory_resident_kib, pin_this_thread, stop_child,
};
use certstream_testkit::runtime::block_on;
use certstream_testkit::ws::parse_header;
use certstream_ws::frame::Frame;
use monoio::io::AsyncWriteRentExt;

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

/// What the load clients saw.
#[derive(Default)]
struct Seen {
    frames: Cell<u64>,
    bytes: Cell<u64>,
    first: Cell<Option<Instant>>,
    last: Cell<Option<Instant>>,
    latencies_us: RefCell<Vec<u32>>,
    connected: Cell<usize>,
    closes: Cell<usize>,
    done: Cell<usize>,
    /// CPU use (server, load clients) while frames flowed, as fractions of one core.
    cpu: Cell<Option<(f64, f64)>>,
}

const UPGRADE: &[u8] =
    b"GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Size of the receive buffer all load clients share.
const RECV_BUF: usize = 256 * 1024;

thread_local! {
    /// One receive buffer for every load client (they all run on this thread): a client waits for readability and
    /// then copies what the socket holds into it, so the kernel always copies into the same cache-hot memory instead
    /// of into thousands of per-client buffers. Only a frame cut by a read boundary is kept per client.
    static RECV: RefCell<Vec<u8>> = RefCell::new(vec![0; RECV_BUF]);
}

/// One load client: upgrade, then count frames (and sample latency, once per read) until `expect` frames or a close.
async fn client(addr: SocketAddr, expect: u64, seen: Rc<Seen>) {
    let Ok(mut stream) = monoio::net::TcpStream::connect_addr(addr).await else {
        return;
    };
    let (result, _) = stream.write_all(UPGRADE).await;
    if result.is_err() {
        return;
    }
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    let mut carry: Vec<u8> = Vec::new();
    let mut upgraded = false;
    let mut got = 0u64;
    loop {
        if stream.readable(false).await.is_err() {
            return;
        }
        let outcome = RECV.with_borrow_mut(|buf| {
            // SAFETY: recv into an owned buffer of `buf.len()` bytes; MSG_DONTWAIT never blocks the runtime.
            let n =
                unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            if n == 0
                || (n < 0
                    && std::io::Error::last_os_error().kind() != std::io::ErrorKind::WouldBlock)
            {
                return Err(());
            }
            let Ok(n) = usize::try_from(n) else {
                return Ok(false); // spurious readiness
            };
            let mut data = &buf[..n];
            // A frame cut by the previous read boundary: complete it from the front of this read, on its own.
            while (!upgraded || !carry.is_empty()) && !data.is_empty() {
                let take = if upgraded {
                    carry_missing(&carry).min(data.len())
                } else {
                    data.len()
                };
                carry.extend_from_slice(&data[..take]);
                data = &data[take..];
                let (consumed, closed) =
                    count_frames(&carry, &mut upgraded, &mut got, expect, &seen);
                carry.drain(..consumed);
                if closed {
                    return Ok(true);
                }
            }
            if !carry.is_empty() {
                return Ok(false);
            }
            let (consumed, closed) = count_frames(data, &mut upgraded, &mut got, expect, &seen);
            carry.extend_from_slice(&data[consumed..]);
            Ok(closed)
        });
        if outcome != Ok(false) {
            return;
        }
    }
}

/// Bytes still missing from the partial frame in `carry` (up to a complete header when even that is cut).
fn carry_missing(carry: &[u8]) -> usize {
    match parse_header(carry) {
        Some((_, header, len)) => (header + len).saturating_sub(carry.len()),
        None => 10 - carry.len().min(10),
    }
}

/// Counts the complete frames at the start of `data` (after the upgrade response, the first time); returns the bytes
/// consumed and whether a close frame arrived.
fn count_frames(
    data: &[u8],
    upgraded: &mut bool,
    got: &mut u64,
    expect: u64,
    seen: &Seen,
) -> (usize, bool) {
    let mut pos = 0;
    if !*upgraded {
        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
            return (0, false);
        };
        assert!(data.starts_with(b"HTTP/1.1 101"), "upgrade refused");
        *upgraded = true;
        pos = end + 4;
        seen.connected.set(seen.connected.get() + 1);
    }
    let (mut frames, mut bytes, mut sample) = (0u64, 0u64, None);
    let mut closed = false;
    while let Some((opcode, header, len)) = parse_header(&data[pos..]) {
        if data.len() - pos < header + len {
            break;
        }
        let payload = &data[pos + header..pos + header + len];
        pos += header + len;
        match opcode {
            1 => {
                frames += 1;
                bytes += (header + len) as u64;
                if sample.is_none() {
                    sample = Some(
                        payload
                            .iter()
                            .take_while(|b| b.is_ascii_digit())
                            .fold(0u64, |acc, b| acc * 10 + u64::from(b - b'0')),
                    );
                }
            }
            8 => {
                seen.closes.set(seen.closes.get() + 1);
                closed = true;
                break;
            }
            _ => {}
        }
    }
    if frames > 0 {
        let now = Instant::now();
        seen.frames.set(seen.frames.get() + frames);
        seen.bytes.set(seen.bytes.get() + bytes);
        if seen.first.get().is_none() {
            seen.first.set(Some(now));
        }
        seen.last.set(Some(now));
        if let Some(sent) = sample {
            seen.latencies_us
                .borrow_mut()
                .push((monotonic_ns().saturating_sub(sent) / 1000) as u32);
        }
        let before = *got;
        *got += frames;
        if before < expect && *got >= expect {
            seen.done.set(seen.done.get() + 1);
        }
    }
    (pos, closed)
}

/// Runs `clients` load clients until `until` says stop (checked every 10 ms) or `limit` passes.
fn run_clients(
    addr: SocketAddr,
    server_pid: libc::pid_t,
    clients: usize,
    expect: u64,
    limit: Duration,
    until: impl Fn(&Seen) -> bool,
) -> Rc<Seen> {
    let seen = Rc::new(Seen::default());
    let seen_inner = seen.clone();
    block_on(async move {
        for _ in 0..clients {
            monoio::spawn(client(addr, expect, seen_inner.clone()));
        }
        let started = Instant::now();
        let mut last_frames = 0;
        let mut idle_since = Instant::now();
        let own_pid = std::process::id() as libc::pid_t;
        let mut flowing_since = None;
        while !until(&seen_inner) && started.elapsed() < limit {
            monoio::time::sleep(Duration::from_millis(10)).await;
            if flowing_since.is_none() && seen_inner.frames.get() > 0 {
                flowing_since = Some((
                    Instant::now(),
                    cpu_time(server_pid as u32).as_secs_f64(),
                    cpu_time(own_pid as u32).as_secs_f64(),
                ));
            }
            // Stop early once frames stopped flowing for 3 s (e.g. some were dropped).
            if seen_inner.frames.get() != last_frames {
                last_frames = seen_inner.frames.get();
                idle_since = Instant::now();
            } else if last_frames > 0 && idle_since.elapsed() > Duration::from_secs(3) {
                break;
            }
        }
        if let Some((since, server, own)) = flowing_since {
            let wall = since.elapsed().as_secs_f64();
            seen_inner.cpu.set(Some((
                (cpu_time(server_pid as u32).as_secs_f64() - server) / wall,
                (cpu_time(own_pid as u32).as_secs_f64() - own) / wall,
            )));
        }
    });
    seen
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

fn percentile(sorted: &[u32], p: f64) -> u32 {
    sorted
        .get(((sorted.len() as f64 - 1.0) * p) as usize)
        .copied()
        .unwrap_or(0)
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
        block_on(async move {
            for _ in 0..clients {
                monoio::spawn(client(addr, u64::MAX, seen_inner.clone()));
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
        block_on(async move {
            for _ in 0..clients {
                monoio::spawn(client(addr, u64::MAX, seen_inner.clone()));
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
        let seen = run_clients(addr, pid, clients, messages, Duration::from_secs(60), |s| {
            s.done.get() == clients
        });
        let dropped = stats(addr)["messages_dropped"].as_u64().unwrap_or(0);
        stop_child(pid);
        let secs = match (seen.first.get(), seen.last.get()) {
            (Some(first), Some(last)) => (last - first).as_secs_f64().max(1e-9),
            _ => f64::NAN,
        };
        let mut latencies = seen.latencies_us.take();
        latencies.sort_unstable();
        let (server_cpu, client_cpu) = seen.cpu.get().unwrap_or((f64::NAN, f64::NAN));
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
        let seen = run_clients(addr, pid, clients, messages, Duration::from_secs(60), |s| {
            s.done.get() == clients
        });
        stop_child(pid);
        let mut latencies = seen.latencies_us.take();
        latencies.sort_unstable();
        println!(
            "latency at {per_second} messages/s to {clients} clients: p50 {} µs, p99 {} µs ({} samples)",
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            latencies.len()
        );
    }
}
