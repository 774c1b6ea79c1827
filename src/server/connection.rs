//! One upgraded WebSocket connection: a reader that feeds the client's bytes to its `ws::session::Session` and acts
//! on what the session decides, and a writer that drains the client's ring with vectored writes, polled together
//! by the connection's task.

use std::cell::RefCell;
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;

use super::batch::{Batch, write_batch};
use super::guard::{Guard, PartialBytes, Reason};
use super::limits::Slot;
use crate::hub::ClientHandle;
use certstream_ws::frame::Frame;
use certstream_ws::session::{Action, CloseCause, Session};

/// Largest client message accepted; a longer one closes the connection with 1009 (docs/wire-format.md §7.4).
pub(crate) const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

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
    /// A final close frame is queued (the reply to the peer's close, or the session failed the connection).
    CloseQueued,
    /// The peer answered our close: the handshake is complete.
    CloseReplied,
}

/// Why the writer stopped.
enum WriteEnd {
    /// The socket failed, or a write made no progress within the stall timeout.
    Failed,
    /// A close frame was written; `complete` when the peer's close had already been received.
    CloseSent { complete: bool },
}

/// What a connection needs besides its socket: the server-wide guard, the write stall timeout, the keepalive idle.
pub(crate) struct Rules {
    pub guard: Rc<Guard>,
    pub write_stall_timeout: Duration,
    pub tcp_keepalive: Option<Duration>,
}

/// TCP keepalive probes, once the idle time passed: every 10 s, 6 unanswered ones end the connection.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_PROBES: u32 = 6;

impl Rules {
    /// Turns on TCP keepalive for a stream client: a peer that vanished without a FIN or RST (power loss, NAT
    /// timeout) is found and closed; a silent but present client answers the probes and stays
    /// (docs/wire-format.md §7.2).
    pub(crate) fn keep_alive(&self, stream: &TcpStream) {
        if let Some(idle) = self.tcp_keepalive {
            let _ = stream.set_tcp_keepalive(
                Some(idle),
                Some(KEEPALIVE_INTERVAL),
                Some(KEEPALIVE_PROBES),
            );
        }
    }
}

/// Serves an upgraded connection until it closes. `session` already holds the bytes that arrived after the
/// request head; `slot` counts the connection as open until then.
///
/// A plain function returning the future (not an `async fn`): the future then holds each value once, where an
/// `async fn` would keep its arguments next to the locals they are moved into. Every idle client's task is this
/// future, so its size is memory per client.
pub(crate) fn serve(
    stream: TcpStream,
    session: Session,
    client: ClientHandle,
    rules: &Rules,
    slot: Slot,
) -> impl Future<Output = ()> + use<> {
    rules.keep_alive(&stream);
    let (mut reader, mut writer) = stream.into_split();
    let stall = rules.write_stall_timeout;
    // Built here, not inside the future: a value moved into the future and then wrapped there would be held twice.
    let session = RefCell::new(session);
    let partial = PartialBytes::new(rules.guard.clone());
    async move {
        let mut reading = pin!(read_loop(&mut reader, &session, &client, &partial));
        let mut writing = pin!(write_loop(&mut writer, &session, &client, stall));
        monoio::select! {
            end = &mut reading => match end {
                ReadEnd::Gone | ReadEnd::CloseReplied => {}
                ReadEnd::CloseQueued => {
                    let _ = Box::pin(monoio::time::timeout(CLOSE_FLUSH, &mut writing)).await;
                }
            },
            end = &mut writing => match end {
                WriteEnd::Failed | WriteEnd::CloseSent { complete: true } => {}
                WriteEnd::CloseSent { complete: false } => {
                    // Our close (shutdown) is out: leave the hub so shutdown need not wait for a reply a client
                    // that stopped reading will never send, and give the others time to answer.
                    client.leave();
                    let _ = Box::pin(monoio::time::timeout(CLOSE_REPLY, &mut reading)).await;
                }
            },
        }
        drop(slot);
    }
}

/// Reads client bytes into the session and acts on its decisions: queues pongs and close frames, ends when the
/// handshake completes, the peer vanishes or the session fails the connection (a deadline or a budget).
async fn read_loop(
    reader: &mut OwnedReadHalf<TcpStream>,
    session: &RefCell<Session>,
    client: &ClientHandle,
    partial: &PartialBytes,
) -> ReadEnd {
    let mut buf = Vec::with_capacity(SMALL_READ);
    loop {
        if let Some(end) = act(session, client, partial) {
            return end;
        }
        let guard = partial.guard();
        let wanted = if buf.len() == buf.capacity() && buf.capacity() < LARGE_READ {
            LARGE_READ
        } else {
            SMALL_READ
        };
        if buf.capacity() != wanted {
            buf = Vec::with_capacity(wanted);
        }
        buf.clear();
        let deadline = session.borrow().deadline();
        let (result, returned) = match deadline {
            None => reader.read(buf).await,
            // Boxed: the timer is only needed while a message is unfinished, not in every idle task.
            Some(deadline) => match Box::pin(read_until(reader, buf, deadline)).await {
                Some(read) => read,
                None => {
                    let action = session.borrow_mut().check_deadline(Instant::now());
                    return match action {
                        Some(Action::Close { frame, cause }) => close(client, guard, frame, cause),
                        _ => ReadEnd::Gone,
                    };
                }
            },
        };
        buf = returned;
        match result {
            Ok(n) if n > 0 => session.borrow_mut().receive(&buf, Instant::now()),
            Err(error) if error.raw_os_error() == Some(libc::ETIMEDOUT) => {
                guard.count(Reason::KeepaliveTimeout);
                return ReadEnd::Gone;
            }
            _ => return ReadEnd::Gone,
        }
    }
}

/// One read that must complete by `deadline`; `None` when it did not.
async fn read_until(
    reader: &mut OwnedReadHalf<TcpStream>,
    buf: Vec<u8>,
    deadline: Instant,
) -> Option<(std::io::Result<usize>, Vec<u8>)> {
    let left = deadline.saturating_duration_since(Instant::now());
    monoio::time::timeout(left, reader.read(buf)).await.ok()
}

/// Carries out what the session decided on the bytes received so far, and enforces the server-wide budget of
/// partial-message bytes; `Some` when the reader is done.
fn act(
    session: &RefCell<Session>,
    client: &ClientHandle,
    partial: &PartialBytes,
) -> Option<ReadEnd> {
    let guard = partial.guard();
    let mut session = session.borrow_mut();
    let now = Instant::now();
    while let Some(action) = session.next_action(now) {
        match action {
            Action::Message { .. } => {}
            Action::Pong(pong) => client.queue_pong(pong),
            Action::Close { frame, cause } => return Some(close(client, guard, frame, cause)),
            Action::Closed => return Some(ReadEnd::CloseReplied),
        }
    }
    if partial.hold_within_budget(session.buffered_bytes()) {
        return None;
    }
    guard.count(Reason::PartialMessageBudget);
    let action = session.fail(
        CloseCause::ServerLimit,
        "server busy: too many unfinished messages",
    );
    partial.hold_within_budget(session.buffered_bytes());
    if let Action::Close { frame, .. } = action {
        client.queue_close(frame);
    }
    Some(ReadEnd::CloseQueued)
}

/// Queues the close frame the session decided on, counting the protective ones.
fn close(client: &ClientHandle, guard: &Guard, frame: Frame, cause: CloseCause) -> ReadEnd {
    if let Some(reason) = Reason::of(cause) {
        guard.count(reason);
    }
    client.queue_close(frame);
    ReadEnd::CloseQueued
}

/// Waits for queued frames and writes them, many per system call, until a close frame is out.
async fn write_loop(
    writer: &mut OwnedWriteHalf<TcpStream>,
    session: &RefCell<Session>,
    client: &ClientHandle,
    stall: Duration,
) -> WriteEnd {
    loop {
        client.work().await;
        // Boxed: the in-flight write (op + stall timer) would otherwise be part of every idle connection's task; the
        // batch is built in its own block so that no slot of the task's future keeps room for it across the write.
        let (closing, write) = {
            let mut batch = Batch::spare();
            let closing = client.take_batch(&mut batch.frames, MAX_FRAMES_PER_WRITE);
            batch.point_at_frames();
            // A batch that carries the close frame is written whole; any other gives way to a close queued
            // meanwhile.
            let give_way = (!closing).then_some(&**client);
            (
                closing,
                Box::pin(write_batch(writer, batch, give_way, stall)),
            )
        };
        match write.await {
            Some((batch, whole)) => {
                client.batch_written(whole);
                batch.recycle();
            }
            None => return WriteEnd::Failed,
        }
        if closing {
            let complete = session.borrow_mut().close_sent();
            return WriteEnd::CloseSent { complete };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every idle client's task is the `serve` future: its size is memory per client (the budget is 4 KiB
    /// per idle client, everything included).
    #[test]
    fn an_idle_connection_task_stays_small() {
        crate::runtime::block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let stream = TcpStream::connect_addr(addr).await.unwrap();
            let hub = crate::hub::Hub::new(8);
            let limits = Rc::new(super::super::limits::Limits::new(10, 10, usize::MAX));
            let config = crate::config::Config::default();
            let rules = Rules {
                guard: Rc::new(Guard::new(1 << 20)),
                write_stall_timeout: Duration::from_secs(1),
                tcp_keepalive: config.tcp_keepalive,
            };
            let task = serve(
                stream,
                Session::new(super::super::session_limits(&config), &[], Instant::now()),
                hub.join(crate::message::StreamKind::Lite, Default::default()),
                &rules,
                limits.admit(addr.ip()).expect("within the limits"),
            );
            let size = std::mem::size_of_val(&task);
            // 616 bytes before the session (close state, control-frame budget, message deadline: +72) and the
            // connection's share of the partial-message budget.
            assert!(size <= 768, "the connection future takes {size} bytes");
        })
        .unwrap();
    }
}
