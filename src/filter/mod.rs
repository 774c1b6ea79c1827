//! Server-side filters of the streams (README "Filters"; docs/wire-format.md §2), without I/O.
//!
//! A client's query parameters (`domain`, `keyword`, `regex`, `type`, `issuer`) parse into one canonical [`Spec`]
//! ([`grammar`]): values of one parameter OR, different parameters AND. The hub's [`Registry`] interns specs, so
//! clients with the same filter share one [`Filter`] and one evaluation per message, and evaluates all distinct
//! filters at once per message through indexes whose cost does not grow with their number ([`registry`]).

mod grammar;
mod matcher;
mod registry;

pub use grammar::{CertType, Refusal, Spec};
pub use matcher::SpecMatcher;
pub use registry::{Filter, FilterStats, Registry};

use std::rc::Rc;

/// The bounds of what clients may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of the filter parameters (`name=value`, decoded) of one client.
    pub max_filter_bytes: usize,
    /// Values of one client's filter, all parameters together (each comma-separated value counts).
    pub max_values: usize,
    /// Distinct regexes the server holds at once, all clients together. With `regex_size_limit` it bounds the
    /// regex set the reactor compiles when a regex is added (at most their product, 3.2 MiB by default).
    pub max_regexes: usize,
    /// Bytes one regex may take once compiled (`regex::RegexBuilder::size_limit`).
    pub regex_size_limit: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_filter_bytes: 2048,
            max_values: 64,
            max_regexes: 100,
            regex_size_limit: 32 << 10,
        }
    }
}

/// What one stream client asked for: which messages (none: all) and whether to drop repeated certificates.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// The client's interned filter; `None` takes every message.
    pub filter: Option<Rc<Filter>>,
    /// `dedup=1`: skip a certificate this client was already offered (the hub's deduplication window).
    pub dedup: bool,
}

impl Selection {
    /// The selection of a stream request's query parameters (`name`, `value`, decoded), its filter interned in
    /// `registry`; a refusal is counted there.
    pub fn from_query<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        registry: &Registry,
    ) -> Result<Self, Refusal> {
        registry.select(pairs)
    }

    /// Whether [`Self::from_query`] would accept `pairs` now, without interning a filter (nothing to rebuild): for
    /// a request that asks but does not stream. A refusal is counted in `registry`.
    pub fn check_query<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        registry: &Registry,
    ) -> Result<(), Refusal> {
        registry.check(pairs)
    }
}
