//! static-ct-api logs (docs/ct-protocols.md §2, §4): what the [`shell`] and the
//! [`follower`](super::follower) need to know of checkpoints, data tiles and issuers.
//!
//! Each entry's issuer fingerprints are resolved through the shared [`IssuerCache`] before the entry goes to the
//! sink. Policies where the spec is silent:
//! - A record whose boundaries are known but whose content is bad (an empty certificate, a wrong `leaf_index`, …)
//!   is skipped alone, logged and counted in `skipped`, like an undecodable RFC 6962 entry: it costs neither its
//!   neighbours nor a retry.
//! - A response whose framing is broken (records cannot be located) or that holds the wrong number of records is
//!   an error, counted in `broken_tiles` and retried with backoff; the follower gives up on it after
//!   [`TILE_ATTEMPTS`](super::follower::TILE_ATTEMPTS) bad answers for that tile (counted per tile, so two broken
//!   tiles in the pipeline are each given up).
//! - An issuer that fails [`ISSUER_ATTEMPTS`](super::follower::ISSUER_ATTEMPTS) times (429s excepted), or once
//!   when it is over the chain certificate byte budget, is given up on for this log for a while: entries are then
//!   delivered with the chain up to that issuer and counted in `incomplete_chains`, so one missing issuer cannot
//!   stall a log.

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use certstream_ct::checkpoint::Checkpoint;
use certstream_ct::entry::{Chain, LogEntry};
use certstream_ct::tile::{TileError, data_tile_entries, tile_path};

use super::follower::{Answer, FetchError, Follower, Page, PlanKind, Ready, Request};
use super::issuers::{Fingerprint, IssuerCache};
use super::shell::{self, Delivery, LogKind, Stopped};
use super::{LogTarget, PollerContext, SharedStatus, Start, StopToken};

/// Follows one tiled log until `stop` (or, for a read-only log, until its final size is delivered), from where
/// `start` says.
pub async fn run(
    ctx: PollerContext,
    issuers: Rc<IssuerCache>,
    target: Rc<LogTarget>,
    status: SharedStatus,
    stop: StopToken,
    start: Start,
) {
    shell::run(Tiled { issuers }, ctx, target, status, stop, start).await;
}

/// A data tile's answer: its first `records` records can be located.
pub(crate) struct TilePage {
    body: Bytes,
    tile: u64,
    records: u64,
}

impl Page for TilePage {
    fn len(&self) -> u64 {
        self.records
    }

    fn truncate(&mut self, len: u64) {
        self.records = self.records.min(len);
    }
}

/// The static-ct-api kind of log, resolving issuers through the cache all tiled logs share.
pub(crate) struct Tiled {
    issuers: Rc<IssuerCache>,
}

impl LogKind for Tiled {
    type Page = TilePage;
    const PLAN: PlanKind = PlanKind::Tiles;

    fn url(target: &LogTarget, request: Request) -> String {
        let base = &target.read_url;
        match request {
            Request::TreeHead => format!("{base}checkpoint"),
            Request::Tile { tile, width } => format!("{base}tile/data/{}", tile_path(tile, width)),
            Request::Entries { .. } => unreachable!("the tile plan asks for no get-entries"),
        }
    }

    async fn decode(
        target: &LogTarget,
        request: Request,
        body: Bytes,
    ) -> Result<Answer<Self::Page>, FetchError> {
        let Request::Tile { tile, .. } = request else {
            return Checkpoint::parse(&body)
                .and_then(|checkpoint| checkpoint.verify(&target.origin, &target.key))
                .map(|head| Answer::TreeHead(head.tree_size))
                .map_err(FetchError::TreeHead);
        };
        let expected = request.entries();
        let mut found = 0;
        let mut problem = None;
        for item in data_tile_entries(&body, tile) {
            match item {
                Ok(_) | Err(TileError::Record { .. }) => found += 1,
                Err(error @ TileError::Framing(_)) => {
                    problem = Some(FetchError::Framing(error));
                    break;
                }
            }
        }
        if problem.is_none() && found != expected {
            problem = Some(FetchError::Records { found, expected });
        }
        let page = TilePage {
            body,
            tile,
            records: found.min(expected),
        };
        Ok(match problem {
            None => Answer::Entries(page),
            Some(problem) => Answer::Broken(page, problem),
        })
    }

    async fn deliver(
        &self,
        delivery: &mut Delivery<'_>,
        follower: &mut Follower<Self::Page>,
        ready: &Ready<Self::Page>,
    ) -> Result<(), Stopped> {
        let page = &ready.page;
        let records = data_tile_entries(&page.body, page.tile)
            .take(usize::try_from(page.records).unwrap_or(usize::MAX));
        for item in records {
            let (index, record) = match item {
                Ok(tile_entry) => (tile_entry.index, Ok(tile_entry)),
                Err(TileError::Record { index, error }) => (index, Err(error)),
                // Not within the records counted when the answer was decoded.
                Err(TileError::Framing(_)) => break,
            };
            if index < ready.from {
                continue;
            }
            delivery.admit().await?;
            match record {
                Ok(tile_entry) => {
                    let chain = self.chain_of(delivery, follower, &tile_entry.entry).await?;
                    // Fetching an issuer let others publish meanwhile: admission is asked again.
                    delivery.admit().await?;
                    let ders: Vec<&[u8]> = chain.iter().map(|der| der.as_ref()).collect();
                    delivery.entry(index, &tile_entry.entry, &ders);
                }
                Err(error) => delivery.skip(index, &error),
            }
        }
        Ok(())
    }
}

impl Tiled {
    /// The entry's issuer chain as DER, issuer first: up to the first issuer this log could not serve lately.
    async fn chain_of(
        &self,
        delivery: &mut Delivery<'_>,
        follower: &mut Follower<TilePage>,
        entry: &LogEntry<'_>,
    ) -> Result<Vec<Bytes>, Stopped> {
        let fingerprints: &[Fingerprint] = match &entry.chain {
            Chain::Fingerprints(fingerprints) => fingerprints,
            Chain::Certificates(_) => &[],
        };
        loop {
            let now = Instant::now();
            let usable = follower.usable_issuers(fingerprints, now);
            let wanted = fingerprints.get(..usable).unwrap_or(fingerprints);
            if let Some(chain) = self.issuers.cached(wanted) {
                if usable < fingerprints.len() {
                    delivery.incomplete_chain();
                }
                return Ok(chain);
            }
            let wait = follower
                .issuer_request_at(now)
                .saturating_duration_since(now);
            if !delivery.stop.sleep(wait).await {
                return Err(Stopped);
            }
            let resolve = self.issuers.resolve(
                &delivery.ctx.http,
                &delivery.target.read_url,
                wanted,
                delivery.ctx.options.request_timeout,
            );
            let result = monoio::select! {
                result = resolve => result,
                _ = delivery.stop.stopped() => return Err(Stopped),
            };
            // Cached now on success: the next round returns it.
            follower.issuer_answered(result.map(drop), Instant::now());
        }
    }
}
