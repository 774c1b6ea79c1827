//! One upgraded WebSocket connection: a reader that decodes client frames and a writer that drains the client's
//! ring with vectored writes, polled together by the connection's task.

use std::cell::RefCell;
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::time::Duration;

use monoio::buf::IoVecBuf;
use monoio::io::{AsyncReadRent, AsyncWriteRent, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;

use super::limits::Slot;
use crate::hub::{ClientHandle, CloseState};
use crate::ws::decode::{Decoder, Event};
use crate::ws::frame::{Frame, OpCode};

/// Largest client message accepted; a longer one closes the connection with 1009 (FORMAT.md §3).
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

/// Data frames written per `writev` at most (well under `IOV_MAX` = 1024, control frames included).
const MAX_FRAMES_PER_WRITE: usize = 256;

/// How long the close frame we queued may take to leave, once the connection is ending anyway.
const CLOSE_FLUSH: Duration = Duration::from_secs(5);

/// How long we wait for the peer's close reply after sending ours.
const CLOSE_REPLY: Duration = Duration::from_secs(5);

/// Read buffer size: clients send almost nothing, and an idle connection keeps one buffer in its pending read.
const SMALL_READ: usize = 64;

/// Read buffer size after a read filled the small one (a client sending a large message).
const LARGE_READ: usize = 16 * 1024;

/// Why the reader stopped.
enum ReadEnd {
    /// The peer vanished (EOF or socket error); nothing more can be sent.
    Gone,
    /// A final close frame is queued (the peer's close, or a protocol violation).
    CloseQueued,
    /// The peer answered our close: the handshake is complete.
    CloseReplied,
}

/// Why the writer stopped.
enum WriteEnd {
    /// The socket failed, or a write made no progress within the stall timeout.
    Failed,
    /// The close frame was written.
    CloseSent,
}

/// Serves an upgraded connection until it closes. `decoder` already holds the bytes that arrived after the request
/// head; `slot` counts the connection as open until then.
///
/// A plain function returning the future (not an `async fn`): the future then holds each value once, where an
/// `async fn` would keep its arguments next to the locals they are moved into. Every idle client's task is this
/// future, so its size is memory per client.
pub fn serve(
    stream: TcpStream,
    mut decoder: Decoder,
    client: ClientHandle,
    write_stall_timeout: Duration,
    slot: Slot,
) -> impl Future<Output = ()> {
    let (mut reader, mut writer) = stream.into_split();
    async move {
        let mut reading = pin!(read_loop(&mut reader, &mut decoder, &client));
        let mut writing = pin!(write_loop(&mut writer, &client, write_stall_timeout));
        monoio::select! {
            end = &mut reading => match end {
                ReadEnd::Gone => {}
                ReadEnd::CloseQueued | ReadEnd::CloseReplied => {
                    let _ = Box::pin(monoio::time::timeout(CLOSE_FLUSH, &mut writing)).await;
                }
            },
            end = &mut writing => match end {
                WriteEnd::Failed => {}
                WriteEnd::CloseSent => {
                    if client.close_state() == CloseState::ServerInitiated {
                        let _ = Box::pin(monoio::time::timeout(CLOSE_REPLY, &mut reading)).await;
                    }
                }
            },
        }
        drop(slot);
    }
}

/// Reads and decodes client frames: answers pings, completes or fails the closing handshake, ignores data.
async fn read_loop(
    reader: &mut OwnedReadHalf<TcpStream>,
    decoder: &mut Decoder,
    client: &ClientHandle,
) -> ReadEnd {
    let mut buf = Vec::with_capacity(SMALL_READ);
    loop {
        loop {
            match decoder.next_event() {
                Ok(None) => break,
                Ok(Some(Event::Ping(payload))) => client.queue_pong(Frame::pong(&payload)),
                Ok(Some(Event::Pong(_) | Event::Text(_) | Event::Binary(_))) => {}
                Ok(Some(Event::Close(close))) => {
                    if client.close_state() == CloseState::ServerInitiated {
                        return ReadEnd::CloseReplied;
                    }
                    // Echo the peer's status code (RFC 6455 §5.5.1); an empty close gets an empty close.
                    let reply = match close {
                        Some(close) => Frame::close(close.code, ""),
                        None => Frame::new(OpCode::Close, b""),
                    };
                    client.close_final(reply);
                    return ReadEnd::CloseQueued;
                }
                Err(error) => {
                    tracing::debug!(%error, "closing a WebSocket client that violated the protocol");
                    client.close_final(Frame::close(error.close_code(), &error.to_string()));
                    return ReadEnd::CloseQueued;
                }
            }
        }
        let wanted = if buf.len() == buf.capacity() && buf.capacity() < LARGE_READ {
            LARGE_READ
        } else {
            SMALL_READ
        };
        if buf.capacity() != wanted {
            buf = Vec::with_capacity(wanted);
        }
        buf.clear();
        let (result, returned) = reader.read(buf).await;
        buf = returned;
        match result {
            Ok(n) if n > 0 => decoder.extend(&buf),
            _ => return ReadEnd::Gone,
        }
    }
}

/// Waits for queued frames and writes them, many per system call, until the close frame is out.
async fn write_loop(
    writer: &mut OwnedWriteHalf<TcpStream>,
    client: &ClientHandle,
    stall: Duration,
) -> WriteEnd {
    loop {
        client.work().await;
        let mut batch = Batch::spare();
        let closing = client.take_batch(&mut batch.frames, MAX_FRAMES_PER_WRITE);
        batch.point_at_frames();
        // Boxed: the in-flight write (op + stall timer) would otherwise be part of every idle connection's task.
        match Box::pin(write_batch(writer, batch, stall)).await {
            Some((batch, whole)) => {
                client.batch_written(whole);
                batch.recycle();
            }
            None => return WriteEnd::Failed,
        }
        if closing {
            return WriteEnd::CloseSent;
        }
    }
}

/// Writes a whole batch, and tells whether it took a single write (the socket had room for all of it); `None` if
/// the socket fails or a write makes no progress within `stall`.
async fn write_batch(
    writer: &mut OwnedWriteHalf<TcpStream>,
    mut batch: Batch,
    stall: Duration,
) -> Option<(Batch, bool)> {
    let mut writes = 0u32;
    while !batch.is_empty() {
        writes += 1;
        match monoio::time::timeout(stall, writer.writev(batch)).await {
            Ok((Ok(written), returned)) if written > 0 => {
                batch = returned;
                batch.advance(written);
            }
            Ok(_) => return None,
            Err(_) => {
                tracing::info!(
                    seconds = stall.as_secs(),
                    "closing a WebSocket client whose writes made no progress"
                );
                return None;
            }
        }
    }
    Some((batch, writes <= 1))
}

/// Spare batches kept for reuse at most; more are freed when they come back (after a burst of many writers).
const SPARE_BATCHES: usize = 64;

thread_local! {
    /// Batches of writes not in flight. A writer borrows one per write and gives it back, so the frame and `iovec`
    /// arrays are reused instead of allocated per write, and an idle client holds none.
    static SPARES: RefCell<Vec<Batch>> = const { RefCell::new(Vec::new()) };
}

/// Frames on their way to the socket, with the `iovec`s that point into them: the frame bytes are written straight
/// from the shared buffers, never copied.
#[derive(Default)]
struct Batch {
    frames: Vec<Rc<Frame>>,
    iovecs: Vec<libc::iovec>,
    /// First `iovec` not yet completely written.
    first: usize,
}

impl Batch {
    /// An empty batch, reused when one is spare.
    fn spare() -> Self {
        SPARES.with_borrow_mut(Vec::pop).unwrap_or_default()
    }

    /// Points one `iovec` at each frame.
    fn point_at_frames(&mut self) {
        self.iovecs.clear();
        self.iovecs
            .extend(self.frames.iter().map(|frame| libc::iovec {
                iov_base: frame.wire().as_ptr() as *mut libc::c_void,
                iov_len: frame.wire().len(),
            }));
        self.first = 0;
    }

    fn is_empty(&self) -> bool {
        self.first >= self.iovecs.len()
    }

    /// Skips `written` bytes: whole `iovec`s first, then a prefix of the next one.
    fn advance(&mut self, mut written: usize) {
        while let Some(iovec) = self.iovecs.get_mut(self.first) {
            if written < iovec.iov_len {
                // SAFETY: `written` < `iov_len`, so the new base stays inside the same frame buffer.
                iovec.iov_base = unsafe { iovec.iov_base.cast::<u8>().add(written) }.cast();
                iovec.iov_len -= written;
                return;
            }
            written -= iovec.iov_len;
            self.first += 1;
        }
    }

    /// Releases the frames and keeps the arrays for the next write (up to [`SPARE_BATCHES`] spares).
    fn recycle(mut self) {
        self.frames.clear();
        self.iovecs.clear();
        SPARES.with_borrow_mut(|spares| {
            if spares.len() < SPARE_BATCHES {
                spares.push(self);
            }
        });
    }
}

// SAFETY: every `iovec` points into a frame buffer owned by `frames` (an `Rc<Frame>` holding immutable `Bytes`), so
// the memory stays valid and unchanged while the runtime owns the batch; the `iovec` array itself is a `Vec` that is
// not resized while the batch is in flight, so its pointer is stable.
unsafe impl IoVecBuf for Batch {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iovecs[self.first..].as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        self.iovecs.len() - self.first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_advance_walks_frames_and_partial_frames() {
        let frames: Vec<Rc<Frame>> = ["ab", "cdef", "g"]
            .iter()
            .map(|s| Rc::new(Frame::text(s.as_bytes())))
            .collect();
        let mut batch = Batch {
            frames,
            ..Batch::default()
        };
        batch.point_at_frames();
        assert_eq!(batch.read_iovec_len(), 3);
        batch.advance(3); // the first frame (2 header + 2 payload) minus one byte
        assert_eq!(batch.read_iovec_len(), 3);
        assert_eq!(batch.iovecs[0].iov_len, 1);
        batch.advance(1 + 6);
        assert_eq!(batch.read_iovec_len(), 1);
        batch.advance(3);
        assert!(batch.is_empty());
        assert_eq!(batch.read_iovec_len(), 0);
        batch.recycle();
        let spare = Batch::spare();
        assert!(
            spare.frames.is_empty() && spare.frames.capacity() >= 3,
            "the arrays are reused, emptied"
        );
    }

    /// Every idle client's task is the `serve` future: its size is memory per client (the budget is 4 KiB
    /// per idle client, everything included).
    #[test]
    fn an_idle_connection_task_stays_small() {
        crate::server::block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let stream = TcpStream::connect_addr(addr).await.unwrap();
            let hub = crate::hub::Hub::new(8);
            let limits = Rc::new(super::super::limits::Limits::new(10, 10));
            let task = serve(
                stream,
                Decoder::new(MAX_CLIENT_MESSAGE),
                hub.join(crate::stream::StreamKind::Lite),
                Duration::from_secs(1),
                limits.admit(addr.ip()),
            );
            let size = std::mem::size_of_val(&task);
            assert!(size <= 640, "the connection future takes {size} bytes");
        })
        .unwrap();
    }
}
