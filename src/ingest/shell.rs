//! The I/O shell around a [`Follower`], the same for both log kinds: it runs the follower's requests (each in its
//! own task, over the log's own HTTP pool partition, with the request deadline and a byte bound per answer), its
//! timers and the stop (which cancels the requests in flight), and delivers the entries the follower hands out to
//! the sink in turns ([`super::pacing`]: only while the hub admits messages, a few milliseconds at a time; and while
//! it does not, nothing more is requested while an answer is still awaited), each entry inside the panic boundary
//! ([`deliver_entry`]). The status's next index and counts move with every entry, so a poller restarted after a
//! panic resumes exactly after the last entry handled.
//!
//! What differs between the kinds ([`LogKind`]) is only how an answer is decoded and how an entry is built from it.

use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use certstream_ct::get_entries::body_limit;

use super::follower::{Action, Answer, FetchError, Follower, Page, PlanKind, Ready, Request};
use super::pacing::Turn;
use super::politeness::parse_retry_after;
use super::{
    LogTarget, MAX_TREE_HEAD_BYTES, PollerContext, SharedStatus, Start, StopOnDrop, StopToken,
    deliver_entry,
};
use crate::http::HttpClient;
use crate::log_throttle::LogThrottle;
use crate::redact;
use certstream_ct::entry::LogEntry;

/// The poller was asked to stop.
pub(crate) struct Stopped;

/// What a log kind adds to the shell: its plan, the URLs of its requests, its decoder and its delivery.
pub(crate) trait LogKind: 'static {
    /// A decoded answer's entries.
    type Page: Page + 'static;
    const PLAN: PlanKind;

    /// Where `request` is sent.
    fn url(target: &LogTarget, request: Request) -> String;

    /// Decodes and checks a 200 answer to `request` (a tree head is verified with the log's key); may yield.
    async fn decode(
        target: &LogTarget,
        request: Request,
        body: Bytes,
    ) -> Result<Answer<Self::Page>, FetchError>;

    /// Delivers `ready`'s entries from `ready.from` on, in order and in turns.
    async fn deliver(
        &self,
        delivery: &mut Delivery<'_>,
        follower: &mut Follower<Self::Page>,
        ready: &Ready<Self::Page>,
    ) -> Result<(), Stopped>;
}

/// Follows the log `target` as `kind` until `stop` is requested (or, for a read-only log, until every entry up to
/// its final tree size has been delivered), delivering entries to `ctx.sink` and keeping `status` current.
///
/// Starts after a random delay of up to one poll interval, where `start` says ([`Start`]).
pub(crate) async fn run<K: LogKind>(
    kind: K,
    ctx: PollerContext,
    target: Rc<LogTarget>,
    status: SharedStatus,
    stop: StopToken,
    start: Start,
) {
    let mut follower = Follower::<K::Page>::new(
        &target.read_url,
        K::PLAN,
        &ctx.options,
        target.final_tree_size,
        start,
        rand::random(),
        Instant::now(),
    );
    // Ends the fetches still in flight whenever this returns (stop, panic), instead of leaving them detached.
    let fetches = StopOnDrop(StopToken::default());
    let (answers, answered) = flume::unbounded();
    let skip_warnings = LogThrottle::new(Duration::from_secs(1));
    loop {
        let held = !ctx.sink.gate().is_none_or(|gate| gate.admits());
        let action = if held && follower.in_flight() {
            // Clients that keep up are behind (or the broker's buffer is full): what is in flight is enough until
            // they catch up.
            Action::Wait
        } else {
            follower.poll(Instant::now())
        };
        let wake = match action {
            Action::Done => {
                tracing::info!(log = %redact::location(&target.read_url), size = ?follower.position(), "read-only log fully delivered; poller done");
                return;
            }
            Action::Fetch(id, request) => {
                let max_body = match request {
                    Request::TreeHead => MAX_TREE_HEAD_BYTES,
                    _ => body_limit(request.entries(), ctx.options.get_entries_bytes_per_entry),
                };
                let answer = fetch::<K>(
                    ctx.http.clone(),
                    target.clone(),
                    request,
                    ctx.options.request_timeout,
                    max_body,
                );
                let (answers, cancel) = (answers.clone(), fetches.0.clone());
                monoio::spawn(async move {
                    monoio::select! {
                        result = answer => {
                            let _ = answers.send((id, result));
                        }
                        _ = cancel.stopped() => {}
                    }
                });
                // A pass of the reactor over I/O before the next request, so that this one is on its way first:
                // pipelined requests reach the log in index order.
                if !stop.sleep(Duration::ZERO).await {
                    return;
                }
                continue;
            }
            Action::Sleep(at) => Some(at),
            Action::Wait => None,
        };
        let timer = async {
            match wake {
                Some(at) => monoio::time::sleep(at.saturating_duration_since(Instant::now())).await,
                None => std::future::pending().await,
            }
        };
        let answer = monoio::select! {
            answer = answered.recv_async() => answer.ok(),
            _ = timer => None,
            _ = stop.stopped() => return,
        };
        let Some((id, result)) = answer else {
            continue;
        };
        let ready = follower.handle(id, result, Instant::now());
        let mut delivery = Delivery {
            ctx: &ctx,
            target: &target,
            status: &status,
            stop: &stop,
            skip_warnings: &skip_warnings,
            turn: None,
            processed: 0,
        };
        for ready in &ready {
            let delivered = kind.deliver(&mut delivery, &mut follower, ready).await;
            follower.processed(std::mem::take(&mut delivery.processed));
            if delivered.is_err() {
                return;
            }
            if ready.skipped_after > 0 {
                status.borrow_mut().skipped += ready.skipped_after;
            }
        }
        delivery.end().await;
        follower.sync(&mut status.borrow_mut(), Instant::now());
    }
}

/// Runs `request`, its body capped at `max_body`: a 200 answer decoded by `K`, or why not.
async fn fetch<K: LogKind>(
    http: Rc<HttpClient>,
    target: Rc<LogTarget>,
    request: Request,
    timeout: Duration,
    max_body: usize,
) -> Result<Answer<K::Page>, FetchError> {
    let url = K::url(&target, request);
    let response = http
        .get_limited(&url, &[], timeout, max_body)
        .await
        .map_err(FetchError::Http)?;
    match response.status {
        200 => K::decode(&target, request, response.body).await,
        429 => {
            Err(FetchError::RateLimited(response.retry_after().and_then(
                |value| parse_retry_after(value, SystemTime::now()),
            )))
        }
        status => Err(FetchError::Status(status)),
    }
}

/// Delivery of the entries of one answer: turns, the status, skipped entries.
pub(crate) struct Delivery<'a> {
    pub(crate) ctx: &'a PollerContext,
    pub(crate) target: &'a LogTarget,
    status: &'a SharedStatus,
    pub(crate) stop: &'a StopToken,
    skip_warnings: &'a LogThrottle,
    turn: Option<Turn>,
    /// Entries handled since the follower was last told.
    processed: u64,
}

impl Delivery<'_> {
    /// Waits, if need be, until one more entry may be delivered: within the current turn, or in a new one once the
    /// hub admits messages (the old turn ends first, letting every other ready task run).
    pub(crate) async fn admit(&mut self) -> Result<(), Stopped> {
        if self
            .turn
            .as_ref()
            .is_some_and(|turn| turn.may_continue(Instant::now()))
        {
            return Ok(());
        }
        self.end().await;
        monoio::select! {
            turn = Turn::begin(self.ctx.sink.gate()) => {
                self.turn = Some(turn);
                Ok(())
            }
            _ = self.stop.stopped() => Err(Stopped),
        }
    }

    /// Ends the current turn, if any.
    async fn end(&mut self) {
        if let Some(turn) = self.turn.take() {
            turn.end().await;
        }
    }

    /// Hands entry `index` to the sink with its issuer `chain`.
    pub(crate) fn entry(&mut self, index: u64, entry: &LogEntry<'_>, chain: &[&[u8]]) {
        let delivered = deliver_entry(self.ctx, self.target, self.status, index, entry, chain);
        let mut status = self.status.borrow_mut();
        status.delivered += u64::from(delivered);
        self.handled(&mut status, index);
    }

    /// Skips the undecodable entry at `index`: counted, logged at most once a second.
    pub(crate) fn skip(&mut self, index: u64, error: &dyn fmt::Display) {
        if let Some(held_back) = self.skip_warnings.allow(Instant::now()) {
            tracing::warn!(log = %redact::location(&self.target.read_url), index, %error, held_back, "skipping undecodable entry");
        }
        let mut status = self.status.borrow_mut();
        status.skipped += 1;
        self.handled(&mut status, index);
    }

    /// An entry goes out with a shortened chain (an issuer stayed unavailable).
    pub(crate) fn incomplete_chain(&mut self) {
        self.status.borrow_mut().incomplete_chains += 1;
    }

    fn handled(&mut self, status: &mut super::LogStatus, index: u64) {
        status.next_index = index + 1;
        self.processed += 1;
    }
}
