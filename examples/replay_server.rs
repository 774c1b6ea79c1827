//! The real server with a scripted publisher instead of the CT pollers, for trying and testing external clients.
//!
//! ```text
//! cargo run --example replay_server -- [--listen ADDR] [--rate N] [--count N] [--wait-clients N] [--file PATH]
//! ```
//! Publishes `--count` messages (default 1000) at `--rate` per second (default 10), after `--wait-clients`
//! WebSocket clients are connected (default 0), then keeps serving until SIGINT/SIGTERM. Without `--file` the
//! messages are numbered, certstream-shaped `certificate_update`s (`host-<n>.example.com`) in the three stream
//! variants; with `--file`, every non-empty line of the file is one message, sent as is on all three streams.
//! Every other server option (`--ring-size`, `--max-connections`, …) is accepted as by the `certstream` binary.

use std::time::Duration;

use certstream::config::Command;
use certstream::hub::Hub;
use certstream::message::EncodedMessage;
use certstream::server::Server;
use certstream_ws::frame::Frame;
use serde_json::json;

struct Script {
    rate: u64,
    count: u64,
    wait_clients: usize,
    lines: Option<Vec<String>>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut script = Script {
        rate: 10,
        count: 1000,
        wait_clients: 0,
        lines: None,
    };
    let mut server_args = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--rate" => script.rate = value()?.parse()?,
            "--count" => script.count = value()?.parse()?,
            "--wait-clients" => script.wait_clients = value()?.parse()?,
            "--file" => {
                let text = std::fs::read_to_string(value()?)?;
                script.lines = Some(
                    text.lines()
                        .filter(|l| !l.trim().is_empty())
                        .map(str::to_owned)
                        .collect(),
                );
            }
            _ => server_args.push(arg),
        }
    }
    let config = match Command::parse(server_args, |name| std::env::var(name).ok())? {
        Command::Run(config) => *config,
        _ => {
            println!(
                "replay_server [--rate N] [--count N] [--wait-clients N] [--file PATH] [certstream options]"
            );
            return Ok(());
        }
    };
    certstream::runtime::block_on(async move {
        let hub = Hub::configured(&config);
        let server = Server::bind(config, hub.clone())?;
        println!("listening on {}", server.local_addr()?);
        monoio::spawn(replay(hub, script));
        let ctrl_c = monoio::utils::CtrlC::new().map_err(std::io::Error::other)?;
        server.run(ctrl_c).await;
        Ok::<_, std::io::Error>(())
    })??;
    Ok(())
}

async fn replay(hub: Hub, script: Script) {
    while hub.client_count() < script.wait_clients {
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
    let pause = Duration::from_nanos(1_000_000_000 / script.rate.max(1));
    for n in 0..script.count {
        let frames = match &script.lines {
            Some(lines) if lines.is_empty() => return,
            Some(lines) => {
                let frame = Frame::text(lines[n as usize % lines.len()].as_bytes());
                EncodedMessage {
                    lite: frame.clone(),
                    full: frame.clone(),
                    domains: frame,
                }
            }
            None => numbered(n),
        };
        hub.publish(&frames.into());
        monoio::time::sleep(pause).await;
    }
}

/// Message `n` in the three variants: a certificate_update shaped like docs/wire-format.md §3 (lite without `chain`
/// and `as_der`), and its dns_entries.
fn numbered(n: u64) -> EncodedMessage {
    let domain = format!("host-{n}.example.com");
    let name = |cn: &str| {
        json!({"C": null, "CN": cn, "L": null, "O": null, "OU": null, "ST": null,
               "aggregated": format!("/CN={cn}"), "emailAddress": null})
    };
    let mut leaf = json!({
        "all_domains": [domain, format!("www.{domain}")],
        "extensions": {},
        "fingerprint": "00:11:22",
        "is_ca": false,
        "issuer": name("Replay CA"),
        "not_after": 1_800_000_000u64,
        "not_before": 1_700_000_000u64,
        "serial_number": format!("{n:X}"),
        "sha1": "00:11:22",
        "sha256": "33:44:55",
        "signature_algorithm": "sha256, rsa",
        "subject": name(&domain),
    });
    let seen = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let message = |leaf: &serde_json::Value, chain: Option<serde_json::Value>| {
        let mut data = json!({
            "cert_index": n,
            "cert_link": format!("https://replay.invalid/ct/v1/get-entries?start={n}&end={n}"),
            "leaf_cert": leaf,
            "seen": seen,
            "source": {"name": "Replay log", "timestamp": seen, "type": "rfc6962", "url": "https://replay.invalid/"},
            "update_type": "X509LogEntry",
        });
        if let Some(chain) = chain {
            data["chain"] = chain;
        }
        Frame::text(
            &serde_json::to_vec(&json!({"data": data, "message_type": "certificate_update"}))
                .unwrap_or_default(),
        )
    };
    let lite = message(&leaf, None);
    leaf["as_der"] = json!("");
    let full = message(&leaf, Some(json!([])));
    let domains = json!({"data": [domain, format!("www.{domain}")], "message_type": "dns_entries"});
    EncodedMessage {
        lite,
        full,
        domains: Frame::text(&serde_json::to_vec(&domains).unwrap_or_default()),
    }
}
