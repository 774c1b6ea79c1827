//! Filter benchmark (prints numbers; not a test). Run: `cargo bench --bench filter` (`-- eval` or `-- fanout` for
//! one part).
//!
//! - eval: the registry's evaluation cost per message, over the corpus's 1,064 certificates, with 1, 100, 10,000 and
//!   100,000 distinct domain filters and with 1,000 keyword filters (the target: flat within 2× from 1 to 100,000).
//! - fanout: the real server in a forked child (pinned to CPU 0) publishing the corpus at 2,000 messages/s to 5,000
//!   WebSocket clients in this process, each with its own domain filter (50 of them on corpus domains, so some
//!   messages are delivered): the server's CPU and the client-messages/s delivered, against the count expected.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use certstream::config::Config;
use certstream::filter::{Filter, Limits, Registry, Selection};
use certstream::hub::Hub;
use certstream::message::Message;
use certstream::server;
use certstream_testkit::corpus;
use certstream_testkit::http::closed_port;
use certstream_testkit::process::{cpu_time, fork_server, pin_this_thread, stop_child};
use certstream_testkit::ws::parse_header;

const FANOUT_CLIENTS: usize = 5_000;
const FANOUT_RATE: u64 = 2_000;
const FANOUT_SECONDS: u64 = 10;
/// Clients of the fan-out whose filter is a corpus domain (the others' match nothing).
const MATCHING_CLIENTS: usize = 50;

/// The registrable-looking suffixes (last two labels) of the corpus names, most common first, then made-up ones:
/// filter `i` of a run is `domain(i)`.
fn domains(messages: &[Message], n: usize) -> Vec<String> {
    let mut counts = std::collections::HashMap::<String, usize>::new();
    for message in messages {
        for name in message.meta.all_domains.iter() {
            let labels: Vec<&str> = name.trim_start_matches("*.").rsplitn(3, '.').collect();
            if labels.len() >= 2 {
                *counts
                    .entry(format!("{}.{}", labels[1], labels[0]))
                    .or_default() += 1;
            }
        }
    }
    let mut real: Vec<(usize, String)> = counts.into_iter().map(|(d, c)| (c, d)).collect();
    real.sort_by(|a, b| b.cmp(a));
    real.into_iter()
        .map(|(_, d)| d)
        .chain((0..).map(|i| format!("host{i}.bench-{}.example", i % 1_000)))
        .take(n)
        .collect()
}

/// Corpus labels of at least 4 letters, then made-up words: 1,000 keywords.
fn keywords(messages: &[Message], n: usize) -> Vec<String> {
    let labels: BTreeSet<String> = messages
        .iter()
        .flat_map(|m| m.meta.all_domains.iter())
        .flat_map(|name| name.split('.').map(str::to_owned).collect::<Vec<_>>())
        .filter(|label| label.len() >= 4 && label.bytes().all(|b| b.is_ascii_lowercase()))
        .collect();
    labels
        .into_iter()
        .chain((0..).map(|i| format!("zq{i}x")))
        .take(n)
        .collect()
}

fn intern(registry: &Registry, parameter: &str, values: &[String]) -> Vec<Rc<Filter>> {
    values
        .iter()
        .map(|value| {
            Selection::from_query([(parameter, value.as_str())], registry)
                .expect("a valid filter")
                .filter
                .expect("a filter")
        })
        .collect()
}

/// The fastest of repeated rounds over `messages` (about a second in all), per message, and the matches per
/// round.
fn time_evaluation(
    registry: &Registry,
    filters: &[Rc<Filter>],
    messages: &[Message],
) -> (Duration, usize) {
    let mut seq = 0;
    let mut round = || {
        let started = Instant::now();
        let mut matched = 0;
        for message in messages {
            seq += 1;
            registry.evaluate(&message.meta, seq);
            // What the hub does per client (one compare), here for the matching count only on the first filters.
            matched += filters.iter().take(100).filter(|f| f.matches(seq)).count();
        }
        (started.elapsed(), matched)
    };
    let (_, matched) = round(); // warm-up, and the automata are built
    let budget = Instant::now();
    let mut fastest = Duration::MAX;
    while budget.elapsed() < Duration::from_secs(1) {
        fastest = fastest.min(round().0);
    }
    (fastest / messages.len() as u32, matched)
}

fn eval(messages: &[Message]) {
    println!(
        "\n== evaluation per message ({} corpus messages per round, fastest round)",
        messages.len()
    );
    for n in [1, 100, 10_000, 100_000] {
        let registry = Registry::new(Limits::default());
        let values = domains(messages, n);
        let started = Instant::now();
        let filters = intern(&registry, "domain", &values);
        let built = started.elapsed();
        let (per_message, matched) = time_evaluation(&registry, &filters, messages);
        println!(
            "{n:>7} domain filters: {:>7.0} ns/message (interning them: {built:.1?}; first 100 filters matched {matched} times per round)",
            per_message.as_nanos()
        );
    }
    let registry = Registry::new(Limits::default());
    let filters = intern(&registry, "keyword", &keywords(messages, 1_000));
    let (per_message, matched) = time_evaluation(&registry, &filters, messages);
    println!(
        "  1,000 keyword filters: {:>7.0} ns/message (first 100 matched {matched} times per round)",
        per_message.as_nanos()
    );
    // A mass disconnect: clients whose filters share their candidate value leave at once.
    let registry = Registry::new(Limits::default());
    let filters: Vec<Rc<Filter>> = (0..100_000)
        .map(|i| {
            let keyword = format!("k{i}");
            let query = [("domain", "shared.example"), ("keyword", keyword.as_str())];
            Selection::from_query(query, &registry)
                .expect("a valid filter")
                .filter
                .expect("a filter")
        })
        .collect();
    let started = Instant::now();
    drop(filters);
    let left = registry.stats().filters;
    println!(
        "100,000 filters sharing a candidate value dropped in {:.1?} ({left} left)",
        started.elapsed()
    );
}

/// Publishes `messages` in a loop at `FANOUT_RATE` once `clients` are connected, for `FANOUT_SECONDS`.
async fn paced_publisher(hub: Hub, clients: usize) {
    let messages: Vec<Rc<Message>> = corpus::messages().into_iter().map(Rc::new).collect();
    while hub.client_count() < clients {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let total = FANOUT_RATE * (FANOUT_SECONDS + 1);
    let mut published = 0u64;
    while published < total {
        let due = (started.elapsed().as_secs_f64() * FANOUT_RATE as f64) as u64;
        while published < due.min(total) {
            hub.publish(&messages[published as usize % messages.len()]);
            published += 1;
        }
        monoio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn fanout(messages: &[Message]) {
    let port = closed_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let config = Config {
        listen: addr,
        max_connections: 100_000,
        max_connections_per_ip: 100_000,
        ..Config::default()
    };
    let pid = fork_server(config, |hub| paced_publisher(hub, FANOUT_CLIENTS));
    pin_this_thread(1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The filters: the 50 most common corpus domains, then made-up ones.
    let filters = domains(messages, FANOUT_CLIENTS);
    let matching = &filters[..MATCHING_CLIENTS];
    let mut clients: Vec<(TcpStream, Vec<u8>)> = filters
        .iter()
        .enumerate()
        .map(|(i, domain)| {
            let domain = if i < MATCHING_CLIENTS { domain.clone() } else { format!("c{i}.{domain}") };
            let mut stream = TcpStream::connect(addr).expect("connect");
            let request = format!(
                "GET /?domain={domain} HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).expect("upgrade request");
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte).expect("upgrade response");
                head.push(byte[0]);
            }
            assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
            stream.set_nonblocking(true).unwrap();
            (stream, Vec::new())
        })
        .collect();
    // What the clients should get per corpus round: each message once per matching client.
    let registry = Registry::new(Limits::default());
    let interned = intern(&registry, "domain", matching);
    let per_round: usize = (1..)
        .zip(messages)
        .map(|(seq, message)| {
            registry.evaluate(&message.meta, seq);
            interned.iter().filter(|f| f.matches(seq)).count()
        })
        .sum();
    let expected = per_round as f64 / messages.len() as f64 * FANOUT_RATE as f64;
    let mut buf = vec![0u8; 256 * 1024];
    let mut frames = 0u64;
    let mut read_all = |clients: &mut Vec<(TcpStream, Vec<u8>)>| {
        let mut got = 0u64;
        for (stream, carry) in clients.iter_mut() {
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                carry.extend_from_slice(&buf[..n]);
                let mut pos = 0;
                while let Some((opcode, header, len)) = parse_header(&carry[pos..]) {
                    if carry.len() - pos < header + len {
                        break;
                    }
                    got += u64::from(opcode == 1);
                    pos += header + len;
                }
                carry.drain(..pos);
            }
        }
        got
    };
    // Wait for the flow, then measure whole seconds.
    let started = Instant::now();
    while read_all(&mut clients) == 0 && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let (since, cpu_before) = (Instant::now(), cpu_time(pid as u32));
    while since.elapsed() < Duration::from_secs(FANOUT_SECONDS - 1) {
        frames += read_all(&mut clients);
        std::thread::sleep(Duration::from_millis(5));
    }
    let wall = since.elapsed().as_secs_f64();
    let cpu = (cpu_time(pid as u32) - cpu_before).as_secs_f64();
    println!(
        "\n== fan-out: {FANOUT_CLIENTS} clients, each its own domain filter ({MATCHING_CLIENTS} on corpus domains), {FANOUT_RATE} messages/s for {wall:.1} s"
    );
    println!(
        "server CPU {cpu:.2} s ({:.1} % of one core); delivered {:.0} client-msgs/s (expected {expected:.0})",
        100.0 * cpu / wall,
        frames as f64 / wall
    );
    drop(clients);
    stop_child(pid);
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` probes bench binaries
    }
    let _ = server::raise_open_files_limit();
    let parts: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |part: &str| parts.is_empty() || parts.iter().any(|p| p == part);
    let messages = corpus::messages();
    if wants("eval") {
        eval(&messages);
    }
    if wants("fanout") {
        fanout(&messages);
    }
}
