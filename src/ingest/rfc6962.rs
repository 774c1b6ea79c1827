//! RFC 6962 logs (docs/ct-protocols.md §1.1–1.2, §4): what the [`shell`] and the
//! [`follower`](super::follower) need to know of `get-sth` and `get-entries`.
//!
//! - Tree heads are verified with the log's key; a bad one is an error and never used.
//! - Only the requested entries are read from a `get-entries` body, which must fit what was asked for, and they
//!   are base64-decoded a piece at a time, yielding between pieces.
//! - The only thing ever skipped is an entry that does not decode (bad base64 in its item included: the JSON
//!   framing gives its boundaries), and that is logged and counted, never costing its neighbours or a retry.

use std::rc::Rc;

use bytes::Bytes;
use certstream_ct::entry::{Chain, decode_rfc6962};
use certstream_ct::get_entries::{GetEntriesError, RawEntry, scan_get_entries};
use certstream_ct::tree_head::SignedTreeHead;

use super::follower::{Answer, FetchError, Follower, Page, PlanKind, Ready, Request};
use super::pacing::yield_now;
use super::shell::{self, Delivery, LogKind, Stopped};
use super::{LogTarget, PollerContext, SharedStatus, Start, StopToken};

/// Entries base64-decoded per step (~0.2 ms for real entries): a 1,000-entry page never holds the reactor long.
const DECODE_PIECE: usize = 100;

/// Follows the RFC 6962 log `target` until `stop` is requested (or, for a read-only log, until every entry up to
/// its final tree size has been delivered), delivering entries to `ctx.sink` and keeping `status` current; from
/// where `start` says.
pub async fn run(
    ctx: PollerContext,
    target: Rc<LogTarget>,
    status: SharedStatus,
    stop: StopToken,
    start: Start,
) {
    shell::run(Rfc6962, ctx, target, status, stop, start).await;
}

/// One item of a get-entries page: its entry, or why its base64 does not decode.
type PageItem = Result<RawEntry, GetEntriesError>;

impl Page for Vec<PageItem> {
    fn len(&self) -> u64 {
        self.len() as u64
    }

    fn truncate(&mut self, len: u64) {
        Vec::truncate(self, usize::try_from(len).unwrap_or(usize::MAX));
    }
}

/// The RFC 6962 kind of log.
pub(crate) struct Rfc6962;

impl LogKind for Rfc6962 {
    type Page = Vec<PageItem>;
    const PLAN: PlanKind = PlanKind::Pages;

    fn url(target: &LogTarget, request: Request) -> String {
        let base = &target.read_url;
        match request {
            Request::TreeHead => format!("{base}ct/v1/get-sth"),
            Request::Entries { start, end } => {
                format!("{base}ct/v1/get-entries?start={start}&end={end}")
            }
            Request::Tile { .. } => unreachable!("the page plan asks for no tiles"),
        }
    }

    async fn decode(
        target: &LogTarget,
        request: Request,
        body: Bytes,
    ) -> Result<Answer<Self::Page>, FetchError> {
        let Request::Entries { start, end } = request else {
            return SignedTreeHead::from_json(&body)
                .and_then(|sth| sth.verify(&target.key))
                .map(|head| Answer::TreeHead(head.tree_size))
                .map_err(FetchError::TreeHead);
        };
        let requested = usize::try_from(request.entries()).unwrap_or(usize::MAX);
        let page = scan_get_entries(&body, requested).map_err(FetchError::Body)?;
        if page.is_empty() {
            return Err(FetchError::NoEntries { start, end });
        }
        let mut entries = Vec::with_capacity(page.len());
        for piece in (0..page.len()).step_by(DECODE_PIECE) {
            entries.extend(page.decode(piece..piece + DECODE_PIECE));
            yield_now().await;
        }
        Ok(Answer::Entries(entries))
    }

    async fn deliver(
        &self,
        delivery: &mut Delivery<'_>,
        _follower: &mut Follower<Self::Page>,
        ready: &Ready<Self::Page>,
    ) -> Result<(), Stopped> {
        for (index, item) in (ready.first..).zip(&ready.page) {
            if index < ready.from {
                continue;
            }
            delivery.admit().await?;
            match item
                .as_ref()
                .map(|raw| decode_rfc6962(&raw.leaf_input, &raw.extra_data))
            {
                Ok(Ok(entry)) => {
                    let chain: &[&[u8]] = match &entry.chain {
                        Chain::Certificates(certificates) => certificates,
                        Chain::Fingerprints(_) => &[],
                    };
                    delivery.entry(index, &entry, chain);
                }
                Ok(Err(error)) => delivery.skip(index, &error),
                Err(error) => delivery.skip(index, error),
            }
        }
        Ok(())
    }
}
