//! The `certstream` binary: flags and environment → configuration → server.

fn main() {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("--version") | Some("-V") => println!("certstream {}", env!("CARGO_PKG_VERSION")),
        _ => print!("{}", HELP),
    }
}

const HELP: &str = "certstream: streams every new Certificate Transparency log entry as JSON over WebSocket

Usage: certstream [--listen ADDR]

Options:
  --listen ADDR   address to serve on, Go style (:8080, 127.0.0.1:8080, [::]:8080) [env WEBSOCKET_LISTEN]
  --help          this text
  --version       the version
";
