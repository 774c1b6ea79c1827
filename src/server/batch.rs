//! What a client's writer hands to one `writev`: the queued frames it took from its ring and the `iovec`s that
//! point into them, so the shared frame bytes go to the socket without a copy. A WebSocket client writes the frames
//! whole; an HTTP stream (server-sent events, NDJSON) writes their payloads between its own framing bytes
//! ([`Piece`]).

use std::cell::RefCell;
use std::ops::Range;
use std::time::Duration;

use monoio::buf::IoVecBuf;
use monoio::io::{AsyncWriteRent, OwnedWriteHalf};
use monoio::net::TcpStream;

use crate::hub::{Client, Queued};

/// Writes a whole batch, and tells whether it took a single write (the socket had room for all of it); `None` if
/// the socket fails or a write makes no progress within `stall`. Once a close frame is queued for `give_way`, the
/// frames not yet started are dropped: the close overtakes them at the next frame boundary (WebSocket only, where
/// each frame is one `iovec`).
pub(super) async fn write_batch(
    writer: &mut OwnedWriteHalf<TcpStream>,
    mut batch: Batch,
    give_way: Option<&Client>,
    stall: Duration,
) -> Option<(Batch, bool)> {
    let mut writes = 0u32;
    while !batch.is_empty() {
        writes += 1;
        match monoio::time::timeout(stall, writer.writev(batch)).await {
            Ok((Ok(written), returned)) if written > 0 => {
                batch = returned;
                batch.advance(written);
                if give_way.is_some_and(Client::is_closing) {
                    batch.drop_unstarted();
                }
            }
            Ok(_) => return None,
            Err(_) => {
                tracing::info!(
                    seconds = stall.as_secs(),
                    "closing a client whose writes made no progress"
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

/// One stretch of bytes of an HTTP stream's batch, in the order they are written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Piece {
    /// Bytes of [`Batch::framing`].
    Framing(Range<usize>),
    /// The payload of frame number `n` of [`Batch::frames`].
    Payload(usize),
    /// Constant bytes.
    Static(&'static [u8]),
}

/// Frames on their way to the socket, with the `iovec`s that point into them: the frame bytes are written straight
/// from the shared buffers, never copied.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) frames: Vec<Queued>,
    /// The bytes an HTTP stream writes around the payloads (chunk sizes, event fields); empty for WebSocket.
    pub(super) framing: Vec<u8>,
    /// What an HTTP stream writes, in order (empty for WebSocket).
    pub(super) pieces: Vec<Piece>,
    iovecs: Vec<libc::iovec>,
    /// First `iovec` not yet completely written.
    first: usize,
}

impl Batch {
    /// An empty batch, reused when one is spare.
    pub(super) fn spare() -> Self {
        // No spare: a new, empty one.
        SPARES.with_borrow_mut(Vec::pop).unwrap_or_default()
    }

    /// Points one `iovec` at each whole frame (WebSocket).
    pub(super) fn point_at_frames(&mut self) {
        self.iovecs.clear();
        self.iovecs.extend(
            self.frames
                .iter()
                .map(|queued| iovec_of(queued.frame.wire())),
        );
        self.first = 0;
    }

    /// Points one `iovec` at each of [`Batch::pieces`] (HTTP streams); `framing` must not change afterwards.
    pub(super) fn point_at_pieces(&mut self) {
        self.iovecs.clear();
        for piece in &self.pieces {
            let bytes = match piece {
                Piece::Framing(range) => &self.framing[range.clone()],
                Piece::Payload(n) => self.frames[*n].frame.payload(),
                Piece::Static(bytes) => bytes,
            };
            if !bytes.is_empty() {
                self.iovecs.push(iovec_of(bytes));
            }
        }
        self.first = 0;
    }

    pub(super) fn is_empty(&self) -> bool {
        self.first >= self.iovecs.len()
    }

    /// Skips `written` bytes: whole `iovec`s first, then a prefix of the next one.
    fn advance(&mut self, mut written: usize) {
        while let Some(iovec) = self.iovecs.get_mut(self.first) {
            if written < iovec.iov_len {
                // SAFETY: `written` < `iov_len`, so the new base stays inside the same buffer.
                iovec.iov_base = unsafe { iovec.iov_base.cast::<u8>().add(written) }.cast();
                iovec.iov_len -= written;
                return;
            }
            written -= iovec.iov_len;
            self.first += 1;
        }
    }

    /// Forgets the frames not yet started (the one partly written, if any, is finished: a frame cannot be cut).
    fn drop_unstarted(&mut self) {
        let started = self
            .iovecs
            .get(self.first)
            .zip(self.frames.get(self.first))
            .is_some_and(|(iovec, queued)| iovec.iov_len < queued.frame.wire().len());
        self.iovecs.truncate(self.first + usize::from(started));
    }

    /// Releases the frames and keeps the arrays for the next write (up to [`SPARE_BATCHES`] spares).
    pub(super) fn recycle(mut self) {
        self.frames.clear();
        self.framing.clear();
        self.pieces.clear();
        self.iovecs.clear();
        SPARES.with_borrow_mut(|spares| {
            if spares.len() < SPARE_BATCHES {
                spares.push(self);
            }
        });
    }
}

fn iovec_of(bytes: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    }
}

// SAFETY: every `iovec` points into a frame buffer owned by `frames` (an `Rc<Frame>` holding immutable `Bytes`), into
// `framing` (not changed while the batch is in flight) or into a `'static` constant, so the memory stays valid and
// unchanged while the runtime owns the batch; the `iovec` array itself is a `Vec` that is not resized while the batch
// is in flight, so its pointer is stable.
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
    use std::rc::Rc;

    use super::*;
    use certstream_ws::frame::Frame;

    fn queued(text: &str) -> Queued {
        Queued {
            frame: Rc::new(Frame::text(text.as_bytes())),
            seq: 1,
            cursor: None,
        }
    }

    #[test]
    fn batch_advance_walks_frames_and_partial_frames() {
        let frames: Vec<Queued> = ["ab", "cdef", "g"].into_iter().map(queued).collect();
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

    #[test]
    fn pieces_point_at_framing_payloads_and_constants_in_order() {
        let mut batch = Batch {
            frames: vec![queued("{\"a\":1}")],
            framing: b"8\r\n".to_vec(),
            pieces: vec![
                Piece::Framing(0..3),
                Piece::Payload(0),
                Piece::Static(b""),
                Piece::Static(b"\n\r\n"),
            ],
            ..Batch::default()
        };
        batch.point_at_pieces();
        let written: Vec<u8> = batch.iovecs[batch.first..]
            .iter()
            // SAFETY: the iovecs point into the batch's live buffers, as `IoVecBuf` requires.
            .flat_map(|iovec| unsafe {
                std::slice::from_raw_parts(iovec.iov_base.cast::<u8>(), iovec.iov_len)
            })
            .copied()
            .collect();
        assert_eq!(written, b"8\r\n{\"a\":1}\n\r\n");
        assert_eq!(batch.read_iovec_len(), 3, "empty pieces take no iovec");
    }
}
