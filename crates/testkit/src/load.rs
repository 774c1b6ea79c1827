//! Many WebSocket load clients on one monoio thread, counting what they receive (benchmarks of the fan-out).
//!
//! A client upgrades, then counts text frames and bytes without decoding them, optionally sampling the first frame
//! of each read through [`Load::sample`] (e.g. a latency). Every client of the thread reads into one shared buffer:
//! thousands of clients cost the kernel one cache-hot copy target instead of thousands of buffers.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::AsyncWriteRentExt;

use crate::runtime::block_on;
use crate::ws::parse_header;

/// Reads a value from a received text frame's payload (e.g. its latency, in µs).
pub type Sampler = fn(&[u8]) -> Option<u32>;

/// What the load clients of one run connect to and look for.
pub struct Load {
    /// The server.
    pub addr: SocketAddr,
    /// The upgrade request, for the path given to [`Load::new`].
    request: Vec<u8>,
    /// Frames after which a client counts as done (`u64::MAX`: never).
    pub expect: u64,
    /// Called on the first text frame of each read; what it returns goes to [`Seen::samples`].
    pub sample: Option<Sampler>,
    /// The sockets of the clients still running, shut down when the run ends (a dropped runtime would leave its
    /// tasks' sockets open, connected clients that no longer read).
    open: RefCell<Vec<RawFd>>,
}

impl Load {
    /// Clients of `path` (`/`, `/full-stream?cursor=0`, …) on `addr`, done after `expect` frames, not sampling.
    pub fn new(addr: SocketAddr, path: &str, expect: u64) -> Load {
        let request = crate::ws::upgrade_request(path, "");
        Load {
            addr,
            request: request.into_bytes(),
            expect,
            sample: None,
            open: RefCell::default(),
        }
    }
}

/// What the load clients saw, all of them together.
#[derive(Default)]
pub struct Seen {
    /// Text frames received.
    pub frames: Cell<u64>,
    /// Bytes of those frames, headers included.
    pub bytes: Cell<u64>,
    /// When the first text frame arrived.
    pub first: Cell<Option<Instant>>,
    /// When the latest text frame arrived.
    pub last: Cell<Option<Instant>>,
    /// What [`Load::sample`] returned.
    pub samples: RefCell<Vec<u32>>,
    /// Clients whose upgrade succeeded.
    pub connected: Cell<usize>,
    /// Close frames received.
    pub closes: Cell<usize>,
    /// Clients that received [`Load::expect`] frames.
    pub done: Cell<usize>,
}

/// Size of the receive buffer all load clients share.
const RECV_BUF: usize = 256 * 1024;

thread_local! {
    /// One receive buffer for every load client (they all run on this thread): a client waits for readability and
    /// then copies what the socket holds into it. Only a frame cut by a read boundary is kept per client.
    static RECV: RefCell<Vec<u8>> = RefCell::new(vec![0; RECV_BUF]);
}

/// Runs `clients` load clients on a new runtime on this thread; `tick` is called every 10 ms with what they saw so
/// far and ends the run by returning true. The clients have disconnected when it returns.
pub fn run_clients(load: Load, clients: usize, mut tick: impl FnMut(&Seen) -> bool) -> Rc<Seen> {
    let seen = Rc::new(Seen::default());
    let load = Rc::new(load);
    let seen_inner = seen.clone();
    block_on(async move {
        for _ in 0..clients {
            monoio::spawn(client(load.clone(), seen_inner.clone()));
        }
        while !tick(&seen_inner) {
            monoio::time::sleep(Duration::from_millis(10)).await;
        }
        disconnect(&load).await;
    });
    seen
}

/// Shuts down the sockets of `load`'s running clients and waits (at most 10 s) until every client has ended.
pub async fn disconnect(load: &Load) {
    for &fd in load.open.borrow().iter() {
        // SAFETY: shutdown of a socket its client still owns (a client removes its fd before closing it).
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !load.open.borrow().is_empty() && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Keeps a running client's socket in [`Load::open`] until the client ends.
struct Registered<'a> {
    load: &'a Load,
    fd: RawFd,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.load.open.borrow_mut().retain(|&fd| fd != self.fd);
    }
}

/// One load client: upgrade, then count frames (and sample once per read) until a close or the end of the runtime.
pub async fn client(load: Rc<Load>, seen: Rc<Seen>) {
    let Ok(mut stream) = monoio::net::TcpStream::connect_addr(load.addr).await else {
        return;
    };
    let (result, _) = stream.write_all(load.request.clone()).await;
    if result.is_err() {
        return;
    }
    let fd = stream.as_raw_fd();
    load.open.borrow_mut().push(fd);
    // Declared after `stream`, so dropped (unregistered) before the socket is closed.
    let _registered = Registered { load: &load, fd };
    let mut carry: Vec<u8> = Vec::new();
    let mut state = ClientState::default();
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
            while (!state.upgraded || !carry.is_empty()) && !data.is_empty() {
                let take = if state.upgraded {
                    carry_missing(&carry).min(data.len())
                } else {
                    data.len()
                };
                carry.extend_from_slice(&data[..take]);
                data = &data[take..];
                let (consumed, closed) = count_frames(&carry, &mut state, &load, &seen);
                carry.drain(..consumed);
                if closed {
                    return Ok(true);
                }
            }
            if !carry.is_empty() {
                return Ok(false);
            }
            let (consumed, closed) = count_frames(data, &mut state, &load, &seen);
            carry.extend_from_slice(&data[consumed..]);
            Ok(closed)
        });
        if outcome != Ok(false) {
            return;
        }
    }
}

/// One client's progress.
#[derive(Default)]
struct ClientState {
    upgraded: bool,
    frames: u64,
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
fn count_frames(data: &[u8], state: &mut ClientState, load: &Load, seen: &Seen) -> (usize, bool) {
    let mut pos = 0;
    if !state.upgraded {
        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
            return (0, false);
        };
        assert!(
            data.starts_with(b"HTTP/1.1 101"),
            "upgrade refused: {}",
            String::from_utf8_lossy(data)
        );
        state.upgraded = true;
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
                    sample = load.sample.and_then(|sample| sample(payload));
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
        if let Some(sample) = sample {
            seen.samples.borrow_mut().push(sample);
        }
        let before = state.frames;
        state.frames += frames;
        if before < load.expect && state.frames >= load.expect {
            seen.done.set(seen.done.get() + 1);
        }
    }
    (pos, closed)
}

/// The value at quantile `p` (0..=1) of `sorted` (nearest rank); the default when it is empty.
pub fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
