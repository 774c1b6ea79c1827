//! Echo server for the Autobahn fuzzingclient, built on certstream's own WebSocket layer
//! (`certstream::ws`): `autobahn_echo 127.0.0.1:9002`.
//!
//! One task per connection; every text and binary message is echoed, pings are answered, and the server closes
//! TCP after the close handshake. Nothing a peer sends can panic it: errors end only that peer's task.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use certstream::ws::decode::{CLOSE_NORMAL, Decoder, Event};
use certstream::ws::frame::{OpCode, put_header};
use certstream::ws::handshake::{check_upgrade, switching_protocols};
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
    let fused = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .with_entries(1024)
        .build();
    let result = match fused {
        Ok(mut rt) => rt.block_on(serve(addr)),
        // The io_uring probe can pass and the ring still fail to build (ENOMEM): fall back to epoll by hand.
        Err(_) => match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
        {
            Ok(mut rt) => rt.block_on(serve(addr)),
            Err(error) => Err(error),
        },
    };
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
    let mut decoder = Decoder::new(MAX_MESSAGE_LEN);
    decoder.extend(&first_frames);
    let mut buf = Vec::with_capacity(READ_BUFFER_LEN);
    let mut out = Vec::new();
    loop {
        let close_code = drain_events(&mut decoder, &mut out);
        if !out.is_empty() {
            let (result, written) = stream.write_all(std::mem::take(&mut out)).await;
            result?;
            out = written;
            out.clear();
        }
        if close_code.is_some() {
            return linger_close(stream, buf).await;
        }
        buf.clear();
        let (result, filled) = stream.read(buf).await;
        buf = filled;
        if result? == 0 {
            return Ok(());
        }
        decoder.extend(&buf);
    }
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

/// Answers every decoded event into `out`; returns the close code once the connection is to be closed.
fn drain_events(decoder: &mut Decoder, out: &mut Vec<u8>) -> Option<u16> {
    loop {
        let (opcode, payload) = match decoder.next_event() {
            Ok(None) => return None,
            Ok(Some(Event::Text(payload))) => (OpCode::Text, payload),
            Ok(Some(Event::Binary(payload))) => (OpCode::Binary, payload),
            Ok(Some(Event::Ping(payload))) => (OpCode::Pong, payload),
            Ok(Some(Event::Pong(_))) => continue,
            Ok(Some(Event::Close(frame))) => {
                let code = frame.map_or(CLOSE_NORMAL, |f| f.code);
                push_frame(out, OpCode::Close, &code.to_be_bytes());
                return Some(code);
            }
            Err(error) => {
                let code = error.close_code();
                push_frame(out, OpCode::Close, &code.to_be_bytes());
                return Some(code);
            }
        };
        push_frame(out, opcode, &payload);
    }
}

fn push_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    put_header(out, opcode, payload.len());
    out.extend_from_slice(payload);
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
