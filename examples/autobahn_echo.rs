//! Echo server for the Autobahn fuzzingclient, built on certstream's own WebSocket layer
//! (`certstream::ws`): `autobahn_echo 127.0.0.1:9002`.
//!
//! One task per connection; every text and binary message is echoed, and everything else (pings, pongs, the close
//! handshake, protocol errors, the control-frame budget and the message deadline) is decided by the production
//! `ws::session::Session` with the server's default limits, so the Autobahn run tests the server's own code path.
//! The server closes TCP after the close handshake. Nothing a peer sends can panic it: errors end only that peer's
//! task.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use certstream::config::Config;
use certstream_ws::frame::put_header;
use certstream_ws::handshake::{check_upgrade, switching_protocols};
use certstream_ws::session::{Action, Session, SessionLimits};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};

/// Autobahn's 9.x cases send messages of up to 16 MiB.
const MAX_MESSAGE_LEN: usize = 16 << 20;
/// Largest request head accepted.
const MAX_HEAD_LEN: usize = 8 << 10;
const READ_BUFFER_LEN: usize = 64 << 10;
/// How long to wait for the peer's FIN after our close frame before dropping the socket.
const LINGER: Duration = Duration::from_secs(2);

fn main() {
    let Some(addr) = std::env::args()
        .nth(1)
        .and_then(|a| a.parse::<SocketAddr>().ok())
    else {
        eprintln!("usage: autobahn_echo HOST:PORT (e.g. 127.0.0.1:9002)");
        std::process::exit(2);
    };
    // The server's own runtime: io_uring, or epoll where io_uring is missing or fails to build.
    let result = certstream::server::block_on(serve(addr)).and_then(|served| served);
    if let Err(error) = result {
        eprintln!("autobahn_echo: {error}");
        std::process::exit(1);
    }
}

async fn serve(addr: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    eprintln!(
        "autobahn_echo listening on {addr} (legacy driver: {})",
        monoio::utils::is_legacy()
    );
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                monoio::spawn(async move {
                    if let Err(error) = connection(stream).await {
                        eprintln!("connection: {error}");
                    }
                });
            }
            // Running out of descriptors or a peer resetting before accept must not stop the server.
            Err(error) => eprintln!("accept: {error}"),
        }
    }
}

async fn connection(mut stream: TcpStream) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let Some(first_frames) = handshake(&mut stream).await? else {
        return Ok(());
    };
    let defaults = Config::default();
    let limits = SessionLimits {
        max_message_len: MAX_MESSAGE_LEN,
        control_frames_per_second: defaults.control_frames_per_second,
        message_timeout: defaults.message_timeout,
    };
    let mut session = Session::new(limits, &first_frames, Instant::now());
    let mut buf = Vec::with_capacity(READ_BUFFER_LEN);
    let mut out = Vec::new();
    loop {
        let end = answer(&mut session, &mut out);
        if !out.is_empty() {
            let (result, written) = stream.write_all(std::mem::take(&mut out)).await;
            result?;
            out = written;
            out.clear();
        }
        if let Some(end) = end {
            if let End::CloseWritten = end {
                // The peer's reply, if any, is read and dropped while lingering.
                session.close_sent();
            }
            return linger_close(stream, buf).await;
        }
        buf.clear();
        let read = match session.deadline() {
            None => stream.read(buf).await,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                match monoio::time::timeout(left, stream.read(buf)).await {
                    Ok(read) => read,
                    Err(_) => {
                        if let Some(Action::Close { frame, .. }) =
                            session.check_deadline(Instant::now())
                        {
                            let (result, _) = stream.write_all(frame.wire().to_vec()).await;
                            result?;
                        }
                        return Ok(());
                    }
                }
            }
        };
        let (result, filled) = read;
        buf = filled;
        if result? == 0 {
            return Ok(());
        }
        session.receive(&buf, Instant::now());
    }
}

/// How a batch of actions ended the conversation.
enum End {
    /// A close frame was put into the output (our reply, or a failure).
    CloseWritten,
    /// The peer answered a close of ours.
    HandshakeDone,
}

/// Carries out the session's decisions into `out`: echoes messages, sends pongs and close frames.
fn answer(session: &mut Session, out: &mut Vec<u8>) -> Option<End> {
    while let Some(action) = session.next_action(Instant::now()) {
        match action {
            Action::Message { opcode, payload } => {
                put_header(out, opcode, payload.len());
                out.extend_from_slice(&payload);
            }
            Action::Pong(frame) => out.extend_from_slice(frame.wire()),
            Action::Close { frame, .. } => {
                out.extend_from_slice(frame.wire());
                return Some(End::CloseWritten);
            }
            Action::Closed => return Some(End::HandshakeDone),
        }
    }
    None
}

/// Reads and answers the upgrade request. Returns the bytes that followed the head (the first frames), or `None`
/// when the request was refused or the peer left.
async fn handshake(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(1024);
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        let (response, rest) = match request.parse(&head) {
            Ok(httparse::Status::Complete(len)) => {
                let checked = check_upgrade(
                    request.method.unwrap_or(""),
                    request.version.unwrap_or(0),
                    request.headers,
                );
                match checked {
                    Ok(upgrade) => (
                        switching_protocols(&upgrade),
                        head.get(len..).map(<[u8]>::to_vec),
                    ),
                    Err(error) => (error.response(), None),
                }
            }
            Ok(httparse::Status::Partial) if head.len() <= MAX_HEAD_LEN => {
                let chunk = Vec::with_capacity(4096);
                let (result, chunk) = stream.read(chunk).await;
                if result? == 0 {
                    return Ok(None);
                }
                head.extend_from_slice(&chunk);
                continue;
            }
            _ => (
                b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
                    .to_vec(),
                None,
            ),
        };
        let (result, _) = stream.write_all(response).await;
        result?;
        return Ok(rest);
    }
}

/// The server closes TCP first: send FIN, then read (and discard) until the peer's FIN or a timeout, so unread
/// input does not turn the close into a reset that could destroy our close frame in flight.
async fn linger_close(mut stream: TcpStream, mut buf: Vec<u8>) -> io::Result<()> {
    stream.shutdown().await?;
    let drain = async {
        loop {
            buf.clear();
            let (result, filled) = stream.read(buf).await;
            buf = filled;
            if !matches!(result, Ok(n) if n > 0) {
                return;
            }
        }
    };
    let _ = monoio::time::timeout(LINGER, drain).await;
    Ok(())
}
