//! One filter evaluated on its own, message by message: what a resuming client's missed messages are checked with
//! ([`crate::hub::Hub::join_resuming`]). Evaluating the shared [`super::Registry`] instead would run every client's
//! filters (the whole `RegexSet`) once per missed message; this costs one filter's values per message.

use regex::{Regex, RegexBuilder};

use super::grammar::normalize_domain;
use super::{CertType, Spec};
use crate::message::MessageMeta;

/// A [`Spec`] with its regexes compiled (within the same size limit as the registry's).
#[derive(Debug)]
pub struct SpecMatcher {
    spec: Spec,
    regexes: Vec<Regex>,
}

impl SpecMatcher {
    /// Compiles `spec`'s regexes, each within `regex_size_limit` bytes; `None` if one does not compile (it was
    /// checked when the client's filter was interned, so this does not happen short of a changed limit).
    pub fn new(spec: &Spec, regex_size_limit: usize) -> Option<Self> {
        let regexes = spec
            .regexes
            .iter()
            .map(|text| RegexBuilder::new(text).size_limit(regex_size_limit).build())
            .collect::<Result<_, _>>()
            .ok()?;
        Some(Self {
            spec: spec.clone(),
            regexes,
        })
    }

    /// Whether the filter selects a message with `meta`: every non-empty group has a value that matches.
    pub fn matches(&self, meta: &MessageMeta) -> bool {
        let spec = &self.spec;
        let names: Vec<String> = meta
            .all_domains
            .iter()
            .map(|n| normalize_domain(n))
            .collect();
        let domain = |d: &str| {
            names
                .iter()
                .any(|n| n == d || n.strip_suffix(d).is_some_and(|head| head.ends_with('.')))
        };
        // Keywords are looked for in the names as logged (a `*.` or a trailing dot included), as the automaton does.
        let keyword = |k: &str| {
            meta.all_domains
                .iter()
                .any(|n| n.to_ascii_lowercase().contains(k))
        };
        let issuer = meta.issuer.to_ascii_lowercase();
        let any = |values: &[Box<str>], test: &dyn Fn(&str) -> bool| {
            values.is_empty() || values.iter().any(|v| test(v))
        };
        any(&spec.domains, &domain)
            && any(&spec.keywords, &keyword)
            && (self.regexes.is_empty()
                || self
                    .regexes
                    .iter()
                    .any(|r| meta.all_domains.iter().any(|n| r.is_match(n))))
            && any(&spec.issuers, &|i| issuer.contains(i))
            && (spec.types.is_empty() || spec.types.contains(&CertType::of(meta.entry_type)))
    }
}
