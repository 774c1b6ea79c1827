//! The registry of a hub's distinct filters and their per-message evaluation.
//!
//! Each filter is an AND of groups (one per parameter given) and each group an OR of atoms (its values). Atoms are
//! shared between filters and indexed by kind: domains in a suffix table (every suffix of a name at a label
//! boundary is looked up), keywords in one Aho-Corasick automaton, issuers in another, regexes in one `RegexSet`,
//! and the two types. Per message each index runs once over the message's names (or issuer) and stamps the atoms
//! it matched with the message's sequence number; a filter becomes a candidate when an atom of its candidate group
//! matched, and only candidates check their other groups. The candidate group is the filter's most selective one
//! by a simple rank ([`selectivity`]): a dotted domain over a keyword or regex over an issuer or a TLD over a type,
//! so filters sharing a broad group (`domain=com`) are not all candidates of every message in it. The cost per
//! message is that of the indexes over one message plus the candidates, whatever the number of filters; the
//! automata and the set are rebuilt at the next message after a pattern was added, at most once per
//! [`FULL_BUILD_INTERVAL`]: patterns added in between are matched by a small matcher of their own until then, so a
//! stream of joins with new patterns costs small builds, not a full one per message. A pattern no filter uses any
//! more is left in the built matcher (it is candidate of nothing) and dropped at the next build: leaving never
//! rebuilds.
//!
//! A filter leaves the registry when its last client drops it: `Drop` queues it, the next `select` or `evaluate`
//! frees its slot and the atoms no other filter uses (counted in `Atom::users`: the built matchers hold atoms too).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::mem;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use aho_corasick::AhoCorasick;
use regex::{RegexBuilder, RegexSet, RegexSetBuilder};

use super::grammar::{self, CertType, Refusal, Spec};
use super::{Limits, Selection};
use crate::message::MessageMeta;

/// One value of one filter parameter, shared by every filter that has it.
#[derive(Default)]
struct Atom {
    /// The sequence number of the last message it matched.
    hit_at: Cell<u64>,
    /// The filters whose candidate group holds this atom (slot ids): they are the candidates when it matches. A set,
    /// so that the filters of a mass disconnect leave in O(1) each.
    first_of: RefCell<HashSet<usize>>,
    /// The filters holding this atom in any group; at 0 the registry forgets it.
    users: Cell<usize>,
}

impl Atom {
    fn used(atom: &Rc<Atom>) -> Rc<Atom> {
        atom.users.set(atom.users.get() + 1);
        atom.clone()
    }
}

/// Forgets `text`'s atom when the last filter using it left.
fn release(atoms: &mut HashMap<Box<str>, Rc<Atom>>, text: &str) {
    if let Some(atom) = atoms.get(text) {
        let users = atom.users.get().saturating_sub(1);
        atom.users.set(users);
        if users == 0 {
            atoms.remove(text);
        }
    }
}

/// One distinct filter, shared by its clients ([`super::Selection::filter`]).
pub struct Filter {
    id: usize,
    spec: Spec,
    /// The non-empty groups, the candidate group first.
    groups: Vec<Vec<Rc<Atom>>>,
    checked_at: Cell<u64>,
    matched_at: Cell<u64>,
    removals: Rc<RefCell<Vec<(usize, Spec)>>>,
}

impl Filter {
    /// Whether the message [`Registry::evaluate`] saw with sequence number `seq` matches.
    #[inline]
    pub fn matches(&self, seq: u64) -> bool {
        self.matched_at.get() == seq
    }

    /// The canonical filter.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    fn verify(&self, seq: u64) {
        if self.checked_at.replace(seq) == seq {
            return;
        }
        let rest = &self.groups[1..];
        if rest
            .iter()
            .all(|group| group.iter().any(|atom| atom.hit_at.get() == seq))
        {
            self.matched_at.set(seq);
        }
    }
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Filter").field(&self.spec).finish()
    }
}

impl Drop for Filter {
    fn drop(&mut self) {
        if let Some(first) = self.groups.first() {
            for atom in first {
                atom.first_of.borrow_mut().remove(&self.id);
            }
        }
        self.removals
            .borrow_mut()
            .push((self.id, mem::take(&mut self.spec)));
    }
}

/// The least time between two full builds of one kind's matcher (a full regex set takes milliseconds).
const FULL_BUILD_INTERVAL: Duration = Duration::from_millis(100);

/// A compiled matcher (an automaton or a regex set) and the atom of each of its pattern ids.
type Matcher<M> = (M, Vec<Rc<Atom>>);

/// The atoms of one kind, matched by a matcher of all of them built when one was added (at most once per
/// [`FULL_BUILD_INTERVAL`]) and one of those added since.
struct Patterns<M> {
    /// The atoms filters use.
    atoms: HashMap<Box<str>, Rc<Atom>>,
    /// All patterns at the last full build (some maybe no longer used); `None` while no pattern is.
    built: Option<Matcher<M>>,
    built_at: Option<Instant>,
    /// The patterns added since the last full build, and their matcher.
    added: Vec<Box<str>>,
    fresh: Option<Matcher<M>>,
    /// Whether `fresh` misses some of `added`.
    fresh_is_behind: bool,
}

impl<M> Default for Patterns<M> {
    fn default() -> Self {
        Self {
            atoms: HashMap::new(),
            built: None,
            built_at: None,
            added: Vec::new(),
            fresh: None,
            fresh_is_behind: false,
        }
    }
}

impl<M> Patterns<M> {
    fn atom(&mut self, text: &str) -> Rc<Atom> {
        let atom = self.atoms.entry(text.into()).or_insert_with(|| {
            self.added.push(text.into());
            self.fresh_is_behind = true;
            Rc::default()
        });
        Atom::used(atom)
    }

    /// Leaves the built matcher as it is: a pattern no filter uses matches for nobody.
    fn release(&mut self, texts: &[Box<str>]) {
        for text in texts {
            release(&mut self.atoms, text);
        }
        if self.atoms.is_empty() {
            self.built = None;
            self.added.clear();
            self.fresh = None;
        }
    }

    fn matchers(&self) -> impl Iterator<Item = &Matcher<M>> {
        self.built.iter().chain(&self.fresh)
    }

    fn rebuild(&mut self, now: Instant, build: impl Fn(&[&str]) -> Result<M, String>) {
        if self.added.is_empty() {
            return;
        }
        if self
            .built_at
            .is_none_or(|at| now.duration_since(at) >= FULL_BUILD_INTERVAL)
        {
            self.built_at = Some(now);
            self.added.clear();
            self.fresh = None;
            self.built = matcher(self.atoms.iter(), build);
        } else if mem::take(&mut self.fresh_is_behind) {
            // A pattern released and added again is listed twice.
            self.added.sort_unstable();
            self.added.dedup();
            let atoms = &self.atoms;
            let added = self
                .added
                .iter()
                .filter_map(|text| atoms.get_key_value(text));
            self.fresh = matcher(added, build);
        }
    }
}

/// The matcher of `patterns`; `None` if there are none (or they could not be built, logged).
fn matcher<'a, M>(
    patterns: impl Iterator<Item = (&'a Box<str>, &'a Rc<Atom>)>,
    build: impl Fn(&[&str]) -> Result<M, String>,
) -> Option<Matcher<M>> {
    let (texts, atoms): (Vec<&str>, Vec<Rc<Atom>>) =
        patterns.map(|(text, atom)| (&**text, atom.clone())).unzip();
    if texts.is_empty() {
        return None;
    }
    build(&texts)
        .inspect_err(|error| {
            // Each pattern was checked alone when a client asked for it; together they should build too.
            tracing::error!(%error, patterns = texts.len(), "filter patterns could not be built: those filters match nothing")
        })
        .ok()
        .map(|matcher| (matcher, atoms))
}

#[derive(Default)]
struct Index {
    interned: HashMap<Spec, Weak<Filter>>,
    slots: Vec<Weak<Filter>>,
    free: Vec<usize>,
    /// The suffix table: a `domain=` value → its atom.
    domains: HashMap<Box<str>, Rc<Atom>>,
    keywords: Patterns<AhoCorasick>,
    regexes: Patterns<RegexSet>,
    issuers: Patterns<AhoCorasick>,
    /// `type=cert`, `type=precert` (by [`CertType`] order).
    types: [Rc<Atom>; 2],
    candidates: Vec<usize>,
    name: String,
}

/// Counters and gauges of the registry, for `/stats` and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterStats {
    /// Distinct filters held (clients with the same filter share one).
    pub filters: usize,
    /// Distinct `domain` values in the suffix table.
    pub domains: usize,
    /// Distinct `keyword` values in the keyword automaton.
    pub keywords: usize,
    /// Distinct `regex` values in the regex set.
    pub regexes: usize,
    /// Distinct `issuer` values in the issuer automaton.
    pub issuers: usize,
    /// Filters refused, by reason ([`Refusal::REASONS`] order).
    pub refused: [u64; Refusal::REASONS.len()],
}

/// The distinct filters of one hub, interned and indexed.
pub struct Registry {
    limits: Limits,
    index: RefCell<Index>,
    removals: Rc<RefCell<Vec<(usize, Spec)>>>,
    refused: [Cell<u64>; Refusal::REASONS.len()],
}

impl Registry {
    /// An empty registry within `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            index: RefCell::default(),
            removals: Rc::default(),
            refused: Default::default(),
        }
    }

    /// See [`Selection::from_query`].
    pub(super) fn select<'a>(
        &self,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Selection, Refusal> {
        self.try_select(pairs)
            .inspect_err(|refusal| self.count(refusal))
    }

    /// Whether `pairs` would be selected now, without interning anything (the live page's plain GET asks): each new
    /// regex is compiled alone, none is added to the set. A refusal is counted as in [`Self::select`].
    pub(super) fn check<'a>(
        &self,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), Refusal> {
        let checked = grammar::parse(pairs, &self.limits).and_then(|(spec, _)| {
            self.apply_removals();
            self.check_regexes(&spec.regexes, &self.index.borrow().regexes)
        });
        checked.inspect_err(|refusal| self.count(refusal))
    }

    fn count(&self, refusal: &Refusal) {
        let count = &self.refused[refusal.reason_index()];
        count.set(count.get() + 1);
    }

    fn try_select<'a>(
        &self,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Selection, Refusal> {
        let (spec, dedup) = grammar::parse(pairs, &self.limits)?;
        if spec.is_empty() {
            return Ok(Selection {
                filter: None,
                dedup,
            });
        }
        self.apply_removals();
        let mut index = self.index.borrow_mut();
        if let Some(filter) = index.interned.get(&spec).and_then(Weak::upgrade) {
            return Ok(Selection {
                filter: Some(filter),
                dedup,
            });
        }
        self.check_regexes(&spec.regexes, &index.regexes)?;
        let filter = index.insert(spec, &self.removals);
        Ok(Selection {
            filter: Some(filter),
            dedup,
        })
    }

    /// New regexes must compile within the size limit and fit in the server's count.
    fn check_regexes(
        &self,
        regexes: &[Box<str>],
        held: &Patterns<RegexSet>,
    ) -> Result<(), Refusal> {
        let new: Vec<&str> = regexes
            .iter()
            .filter(|regex| !held.atoms.contains_key(*regex))
            .map(|regex| &**regex)
            .collect();
        if held.atoms.len() + new.len() > self.limits.max_regexes {
            return Err(Refusal::TooManyRegexes {
                limit: self.limits.max_regexes,
            });
        }
        for regex in new {
            RegexBuilder::new(regex)
                .size_limit(self.limits.regex_size_limit)
                .build()
                .map_err(|error| match error {
                    regex::Error::CompiledTooBig(_) => Refusal::RegexTooBig {
                        limit: self.limits.regex_size_limit,
                    },
                    other => Refusal::BadRegex(other.to_string()),
                })?;
        }
        Ok(())
    }

    /// Evaluates every filter against one message; afterwards [`Filter::matches`]`(seq)` tells. `seq` must grow
    /// by message (from 1). Nothing is done while no filter is held.
    pub fn evaluate(&self, meta: &MessageMeta, seq: u64) {
        self.evaluate_at(meta, seq, Instant::now());
    }

    /// [`Registry::evaluate`] at `now` (when the last full build was is what decides on the next).
    fn evaluate_at(&self, meta: &MessageMeta, seq: u64, now: Instant) {
        self.apply_removals();
        let mut index = self.index.borrow_mut();
        if index.interned.is_empty() {
            return;
        }
        let index = &mut *index;
        let size_limit = self.limits.regex_size_limit;
        index.keywords.rebuild(now, case_insensitive_automaton);
        index.issuers.rebuild(now, case_insensitive_automaton);
        index.regexes.rebuild(now, |texts| {
            RegexSetBuilder::new(texts)
                .size_limit(size_limit.saturating_mul(texts.len()))
                .build()
                .map_err(|e| e.to_string())
        });
        let mut candidates = mem::take(&mut index.candidates);
        candidates.clear();
        let mut hit = |atom: &Atom| {
            if atom.hit_at.replace(seq) != seq {
                candidates.extend(atom.first_of.borrow().iter().copied());
            }
        };
        hit(&index.types[CertType::of(meta.entry_type) as usize]);
        for name in &meta.all_domains {
            if !index.domains.is_empty() {
                let normalized = &mut index.name;
                normalized.clear();
                let trimmed = name.strip_prefix("*.").unwrap_or(name);
                normalized.push_str(trimmed.strip_suffix('.').unwrap_or(trimmed));
                normalized.make_ascii_lowercase();
                let mut suffix = normalized.as_str();
                loop {
                    if let Some(atom) = index.domains.get(suffix) {
                        hit(atom);
                    }
                    match suffix.split_once('.') {
                        Some((_, parent)) => suffix = parent,
                        None => break,
                    }
                }
            }
            for (automaton, atoms) in index.keywords.matchers() {
                for found in automaton.find_overlapping_iter(name.as_str()) {
                    hit(&atoms[found.pattern().as_usize()]);
                }
            }
            for (set, atoms) in index.regexes.matchers() {
                for found in set.matches(name).iter() {
                    hit(&atoms[found]);
                }
            }
        }
        for (automaton, atoms) in index.issuers.matchers() {
            for found in automaton.find_overlapping_iter(&*meta.issuer) {
                hit(&atoms[found.pattern().as_usize()]);
            }
        }
        for &id in &candidates {
            if let Some(filter) = index.slots[id].upgrade() {
                filter.verify(seq);
            }
        }
        index.candidates = candidates;
    }

    /// Current counters and gauges.
    pub fn stats(&self) -> FilterStats {
        self.apply_removals();
        let index = self.index.borrow();
        FilterStats {
            filters: index.interned.len(),
            domains: index.domains.len(),
            keywords: index.keywords.atoms.len(),
            regexes: index.regexes.atoms.len(),
            issuers: index.issuers.atoms.len(),
            refused: self.refused.each_ref().map(Cell::get),
        }
    }

    /// Frees what filters dropped since the last call left behind.
    fn apply_removals(&self) {
        let removed = mem::take(&mut *self.removals.borrow_mut());
        if removed.is_empty() {
            return;
        }
        let mut index = self.index.borrow_mut();
        for (id, spec) in removed {
            index.slots[id] = Weak::new();
            index.free.push(id);
            // A client may have asked for the same filter again after the last one dropped it: that one stays.
            if index
                .interned
                .get(&spec)
                .is_some_and(|filter| filter.strong_count() == 0)
            {
                index.interned.remove(&spec);
            }
            for domain in &spec.domains {
                release(&mut index.domains, domain);
            }
            index.keywords.release(&spec.keywords);
            index.regexes.release(&spec.regexes);
            index.issuers.release(&spec.issuers);
        }
    }
}

impl Index {
    fn insert(&mut self, spec: Spec, removals: &Rc<RefCell<Vec<(usize, Spec)>>>) -> Rc<Filter> {
        let id = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Weak::new());
            self.slots.len() - 1
        });
        let domains = &mut self.domains;
        let mut groups: Vec<Vec<Rc<Atom>>> = [
            spec.domains
                .iter()
                .map(|d| Atom::used(domains.entry(d.clone()).or_default()))
                .collect(),
            spec.keywords
                .iter()
                .map(|k| self.keywords.atom(k))
                .collect(),
            spec.regexes.iter().map(|r| self.regexes.atom(r)).collect(),
            spec.issuers.iter().map(|i| self.issuers.atom(i)).collect(),
            // Never forgotten: no use count.
            spec.types
                .iter()
                .map(|t| self.types[*t as usize].clone())
                .collect(),
        ]
        .into_iter()
        .filter(|group: &Vec<Rc<Atom>>| !group.is_empty())
        .collect();
        // The first group of the most selective kind (a non-empty spec has one group at least).
        let candidate_group = selectivity(&spec)
            .into_iter()
            .filter(|&rank| rank > 0)
            .enumerate()
            .max_by_key(|&(position, rank)| (rank, std::cmp::Reverse(position)))
            .map_or(0, |(position, _)| position);
        groups.swap(0, candidate_group);
        for atom in &groups[0] {
            atom.first_of.borrow_mut().insert(id);
        }
        let filter = Rc::new(Filter {
            id,
            spec: spec.clone(),
            groups,
            checked_at: Cell::new(0),
            matched_at: Cell::new(0),
            removals: removals.clone(),
        });
        self.slots[id] = Rc::downgrade(&filter);
        self.interned.insert(spec, Rc::downgrade(&filter));
        filter
    }
}

/// How rarely each group of `spec` may match, in index order (domain, keyword, regex, issuer, type; 0 for an empty
/// group): the candidate group is the rarest. A rough rank, not a measure: a domain with a dot names a site; a keyword
/// or regex some names; an issuer one of a few CAs, a TLD a large share of names; a type half of everything.
fn selectivity(spec: &Spec) -> [u8; 5] {
    let rank = |values: &[Box<str>], rank: u8| if values.is_empty() { 0 } else { rank };
    let domains = if spec.domains.iter().all(|d| d.contains('.')) {
        4
    } else {
        2
    };
    [
        rank(&spec.domains, domains),
        rank(&spec.keywords, 3),
        rank(&spec.regexes, 3),
        rank(&spec.issuers, 2),
        if spec.types.is_empty() { 0 } else { 1 },
    ]
}

fn case_insensitive_automaton(patterns: &[&str]) -> Result<AhoCorasick, String> {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(patterns)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use certstream_ct::entry::EntryType;
    use proptest::prelude::*;

    use super::*;
    use crate::filter::grammar::normalize_domain;

    fn meta(names: &[&str], issuer: &str, entry_type: EntryType) -> MessageMeta {
        MessageMeta {
            entry_type,
            issuer: issuer.into(),
            all_domains: names.iter().map(|n| n.to_string()).collect(),
            ..MessageMeta::default()
        }
    }

    fn select(registry: &Registry, query: &[(&str, &str)]) -> Option<Rc<Filter>> {
        registry
            .select(query.iter().copied())
            .expect("a valid filter")
            .filter
    }

    /// The definition of the README, one filter at a time: what the indexes must agree with.
    fn naive(spec: &Spec, meta: &MessageMeta) -> bool {
        let names = &meta.all_domains;
        let domain = |d: &str| {
            names
                .iter()
                .map(|n| normalize_domain(n))
                .any(|n| n == d || n.strip_suffix(d).is_some_and(|head| head.ends_with('.')))
        };
        let keyword = |k: &str| names.iter().any(|n| n.to_ascii_lowercase().contains(k));
        let regex = |r: &str| {
            let regex = regex::Regex::new(r).unwrap();
            names.iter().any(|n| regex.is_match(n))
        };
        let issuer = |i: &str| meta.issuer.to_ascii_lowercase().contains(i);
        let group = |values: &[Box<str>], test: &dyn Fn(&str) -> bool| {
            values.is_empty() || values.iter().any(|v| test(v))
        };
        group(&spec.domains, &domain)
            && group(&spec.keywords, &keyword)
            && group(&spec.regexes, &regex)
            && group(&spec.issuers, &issuer)
            && (spec.types.is_empty() || spec.types.contains(&CertType::of(meta.entry_type)))
    }

    #[test]
    fn clients_with_the_same_filter_share_one_and_it_leaves_with_the_last() {
        let registry = Registry::new(Limits::default());
        let a = select(
            &registry,
            &[("domain", "Example.com"), ("keyword", "pay,shop")],
        )
        .unwrap();
        let b = select(
            &registry,
            &[
                ("keyword", "shop"),
                ("keyword", "PAY"),
                ("domain", "*.example.com."),
            ],
        )
        .unwrap();
        assert!(Rc::ptr_eq(&a, &b), "the same filter, written differently");
        let other = select(&registry, &[("domain", "example.org")]).unwrap();
        assert_eq!(
            (
                registry.stats().filters,
                registry.stats().domains,
                registry.stats().keywords
            ),
            (2, 2, 2)
        );
        assert!(
            select(&registry, &[("dedup", "1")]).is_none(),
            "no filter parameter, no filter"
        );
        drop((a, other));
        assert_eq!(registry.stats().filters, 1, "b still holds it");
        drop(b);
        let stats = registry.stats();
        assert_eq!((stats.filters, stats.domains, stats.keywords), (0, 0, 0));
    }

    #[test]
    fn candidates_come_from_the_first_group_and_the_other_groups_are_verified() {
        let registry = Registry::new(Limits::default());
        let shop = select(
            &registry,
            &[
                ("domain", "example.com"),
                ("keyword", "shop"),
                ("type", "precert"),
            ],
        )
        .unwrap();
        let any_pay = select(&registry, &[("keyword", "pay")]).unwrap();
        let certs = select(&registry, &[("type", "cert")]).unwrap();
        let by_issuer = select(
            &registry,
            &[("issuer", "let's encrypt"), ("regex", "^[a-z]+[0-9]+\\.")],
        )
        .unwrap();
        let cases = [
            (
                meta(&["shop.example.com"], "", EntryType::Precert),
                [true, false, false, false],
            ),
            (
                meta(&["shop.example.com"], "", EntryType::X509),
                [false, false, true, false],
            ),
            (
                meta(
                    &["SHOP.Example.COM.", "pay.example.net"],
                    "",
                    EntryType::Precert,
                ),
                [true, true, false, false],
            ),
            (
                meta(&["shop.notexample.com"], "", EntryType::Precert),
                [false, false, false, false],
            ),
            (
                meta(
                    &["www1.x.org"],
                    "/C=US/O=Let's Encrypt/CN=R11",
                    EntryType::Precert,
                ),
                [false, false, false, true],
            ),
            (
                meta(
                    &["www.x.org"],
                    "/C=US/O=Let's Encrypt/CN=R11",
                    EntryType::Precert,
                ),
                [false, false, false, false],
            ),
        ];
        for (seq, (meta, expected)) in (1..).zip(cases) {
            registry.evaluate(&meta, seq);
            let got = [&shop, &any_pay, &certs, &by_issuer].map(|f| f.matches(seq));
            assert_eq!(got, expected, "{:?}", meta.all_domains);
        }
    }

    #[test]
    fn regexes_are_bounded_in_size_and_number_and_refusals_are_counted() {
        let registry = Registry::new(Limits {
            max_regexes: 2,
            regex_size_limit: 10_000,
            ..Limits::default()
        });
        let refused = |query: &[(&str, &str)]| registry.select(query.iter().copied()).unwrap_err();
        assert!(matches!(refused(&[("regex", "(")]), Refusal::BadRegex(_)));
        assert_eq!(
            refused(&[("regex", "\\w{1000}")]),
            Refusal::RegexTooBig { limit: 10_000 }
        );
        let one = select(&registry, &[("regex", "^a")]);
        let two = select(&registry, &[("regex", "^b"), ("type", "cert")]);
        assert_eq!(
            refused(&[("regex", "^c")]),
            Refusal::TooManyRegexes { limit: 2 }
        );
        assert!(
            select(&registry, &[("regex", "^a"), ("keyword", "x")]).is_some(),
            "a regex held already"
        );
        assert_eq!(
            refused(&[("nope", "1")]),
            Refusal::UnknownParameter("nope".into())
        );
        drop(one);
        assert!(
            select(&registry, &[("regex", "^c")]).is_some(),
            "room again once ^a is gone"
        );
        let stats = registry.stats();
        assert_eq!(stats.refused, [1, 0, 1, 1, 0, 0, 1]);
        drop(two);
    }

    fn one_name(name: &str) -> MessageMeta {
        meta(&[name], "/O=Let's Encrypt", EntryType::X509)
    }

    /// The compiled matchers hold their atoms too: a departed filter's keywords, regexes and issuers must still be
    /// freed (and its regex slot given back) once a message was evaluated in between.
    #[test]
    fn patterns_of_departed_filters_are_freed_after_a_message() {
        let registry = Registry::new(Limits {
            max_regexes: 1,
            ..Limits::default()
        });
        let filter = select(
            &registry,
            &[("regex", "^a"), ("keyword", "pay"), ("issuer", "encrypt")],
        );
        registry.evaluate(&one_name("a.example"), 1);
        drop(filter);
        registry.evaluate(&one_name("b.example"), 2);
        let stats = registry.stats();
        assert_eq!(
            (stats.filters, stats.keywords, stats.regexes, stats.issuers),
            (0, 0, 0, 0),
            "atoms of a departed filter are still held"
        );
        assert!(
            registry.select([("regex", "^b")]).is_ok(),
            "the regex slot of a departed filter is never given back"
        );
    }

    /// Distinct filters sharing a broad group (a TLD) are not all candidates of every message in it: each filter's
    /// candidates come from its most selective group.
    #[test]
    fn candidates_come_from_the_most_selective_group() {
        let registry = Registry::new(Limits::default());
        let filters: Vec<_> = (0..20_000)
            .map(|i| {
                select(
                    &registry,
                    &[("domain", "com"), ("keyword", &format!("zz{i}q"))],
                )
            })
            .collect();
        registry.evaluate(&one_name("www.example.com"), 1);
        let candidates = registry.index.borrow().candidates.len();
        assert!(
            candidates < 100,
            "{candidates} candidates verified for one message that none of the {} filters matches",
            filters.len()
        );
        registry.evaluate(&one_name("zz7q.example.com"), 2);
        let matching: Vec<_> = filters.iter().flatten().filter(|f| f.matches(2)).collect();
        assert_eq!(matching.len(), 1);
        assert_eq!(&*matching[0].spec().keywords[0], "zz7q");
    }

    /// A mass disconnect of clients whose filters share a candidate atom frees them all (its cost, O(1) per filter
    /// where it was O(filters), is measured by `cargo bench --bench filter -- eval`).
    #[test]
    fn filters_sharing_a_candidate_atom_all_leave() {
        let registry = Registry::new(Limits::default());
        let filters: Vec<_> = (0..1_000)
            .map(|i| {
                select(
                    &registry,
                    &[("domain", "shared.example"), ("keyword", &format!("k{i}"))],
                )
            })
            .collect();
        drop(filters);
        let stats = registry.stats();
        assert_eq!((stats.filters, stats.domains, stats.keywords), (0, 0, 0));
    }

    /// Leaving never rebuilds a matcher (a stale pattern matches for nobody); the next addition rebuilds it
    /// without the departed patterns.
    #[test]
    fn leaving_does_not_rebuild_and_the_next_addition_compacts() {
        let registry = Registry::new(Limits::default());
        let built = |registry: &Registry| {
            let index = registry.index.borrow();
            let (_, atoms) = index.keywords.built.as_ref().expect("built");
            atoms.len()
        };
        let pay = select(&registry, &[("keyword", "pay")]).unwrap();
        let mail = select(&registry, &[("keyword", "mail")]).unwrap();
        let shop = select(&registry, &[("keyword", "shop")]).unwrap();
        registry.evaluate(&one_name("pay.example"), 1);
        drop((pay, mail));
        registry.evaluate(&one_name("shop.pay.example"), 2);
        assert!(shop.matches(2));
        assert!(registry.index.borrow().keywords.added.is_empty());
        assert_eq!(built(&registry), 3, "not rebuilt when filters left");
        let shop_again = select(&registry, &[("keyword", "shop"), ("type", "cert")]).unwrap();
        registry.evaluate(&one_name("shop.example"), 3);
        assert_eq!(built(&registry), 3, "a known keyword added nothing");
        let pay = select(&registry, &[("keyword", "pay")]).unwrap();
        std::thread::sleep(FULL_BUILD_INTERVAL);
        registry.evaluate(&one_name("pay.shop.mail.example"), 4);
        assert_eq!(built(&registry), 2, "rebuilt with shop and pay only");
        assert!(pay.matches(4) && shop.matches(4) && shop_again.matches(4));
        assert_eq!(registry.stats().keywords, 2);
    }

    /// A pattern added soon after a full build is matched by a matcher of its own until the next one.
    #[test]
    fn patterns_added_between_full_builds_match_at_once() {
        let registry = Registry::new(Limits::default());
        let lengths = |registry: &Registry| {
            let index = registry.index.borrow();
            let length =
                |m: &Option<Matcher<RegexSet>>| m.as_ref().map_or(0, |(_, atoms)| atoms.len());
            (length(&index.regexes.built), length(&index.regexes.fresh))
        };
        // A virtual clock: the 100 ms between full builds must not depend on how busy the machine is.
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let www = select(&registry, &[("regex", "^www")]).unwrap();
        registry.evaluate_at(&one_name("www.example"), 1, at(0));
        let api = select(&registry, &[("regex", "^api")]).unwrap();
        registry.evaluate_at(&one_name("api.example"), 2, at(1));
        assert!(api.matches(2) && !www.matches(2));
        assert_eq!(lengths(&registry), (1, 1), "^api matched alone");
        let mail = select(&registry, &[("regex", "^mail"), ("keyword", "x")]).unwrap();
        registry.evaluate_at(&one_name("mail.x.example"), 3, at(2));
        assert!(mail.matches(3) && !api.matches(3));
        assert_eq!(lengths(&registry), (1, 2));
        registry.evaluate_at(&one_name("www.api.example"), 4, at(0) + FULL_BUILD_INTERVAL);
        assert!(www.matches(4) && !api.matches(4));
        assert_eq!(
            lengths(&registry),
            (3, 0),
            "one full build once the interval passed"
        );
    }

    /// The plain GET of the live page checks a query like a join would, without interning it.
    #[test]
    fn a_query_is_checked_without_being_interned() {
        let registry = Registry::new(Limits {
            max_regexes: 1,
            ..Limits::default()
        });
        assert_eq!(
            registry.check([("regex", "^a"), ("keyword", "pay")]),
            Ok(())
        );
        let stats = registry.stats();
        assert_eq!((stats.filters, stats.keywords, stats.regexes), (0, 0, 0));
        assert!(
            registry.index.borrow().regexes.added.is_empty(),
            "nothing to rebuild"
        );
        assert!(matches!(
            registry.check([("regex", "(")]),
            Err(Refusal::BadRegex(_))
        ));
        let held = select(&registry, &[("regex", "^a")]);
        assert_eq!(registry.check([("regex", "^a"), ("type", "cert")]), Ok(()));
        assert_eq!(
            registry.check([("regex", "^b")]),
            Err(Refusal::TooManyRegexes { limit: 1 })
        );
        assert_eq!(registry.stats().refused, [0, 0, 1, 0, 0, 0, 1]);
        drop(held);
    }

    fn name() -> impl Strategy<Value = String> {
        let label = prop::sample::select(vec![
            "a",
            "b",
            "pay",
            "example",
            "com",
            "xn--bcher-kva",
            "PAY",
        ]);
        (
            prop::collection::vec(label, 1..4),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(labels, wild, dot)| {
                format!(
                    "{}{}{}",
                    if wild { "*." } else { "" },
                    labels.join("."),
                    if dot { "." } else { "" }
                )
            })
    }

    fn query() -> impl Strategy<Value = Vec<(&'static str, String)>> {
        let param = prop_oneof![
            name().prop_map(|n| ("domain", n)),
            prop::sample::select(vec!["pa", "ex", "com", "B"])
                .prop_map(|k| ("keyword", k.to_owned())),
            prop::sample::select(vec!["^a\\.", "com$", "^(pay|b)"])
                .prop_map(|r| ("regex", r.to_owned())),
            prop::sample::select(vec!["encrypt", "digicert"])
                .prop_map(|i| ("issuer", i.to_owned())),
            prop::sample::select(vec!["cert", "precert"]).prop_map(|t| ("type", t.to_owned())),
        ];
        prop::collection::vec(param, 1..5)
    }

    proptest! {
        #[test]
        fn indexed_evaluation_equals_the_naive_one(
            queries in prop::collection::vec(query(), 1..30),
            messages in prop::collection::vec(
                (prop::collection::vec(name(), 0..4), any::<bool>(), any::<bool>()),
                1..20,
            ),
            leave_every in 2usize..5,
        ) {
            let registry = Registry::new(Limits::default());
            let mut filters: Vec<Rc<Filter>> = queries
                .iter()
                .filter_map(|q| select(&registry, &q.iter().map(|(n, v)| (*n, v.as_str())).collect::<Vec<_>>()))
                .collect();
            for (seq, (names, precert, encrypt)) in (1..).zip(&messages) {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                let issuer = if *encrypt { "/O=Let's Encrypt/CN=R3" } else { "/O=DigiCert Inc" };
                let entry_type = if *precert { EntryType::Precert } else { EntryType::X509 };
                let meta = meta(&names, issuer, entry_type);
                registry.evaluate(&meta, seq);
                for filter in &filters {
                    prop_assert_eq!(filter.matches(seq), naive(filter.spec(), &meta), "{:?} on {:?}", filter.spec(), names);
                }
                // Clients leave as messages go by: what remains must still be evaluated right.
                if (seq as usize).is_multiple_of(leave_every) && !filters.is_empty() {
                    filters.remove(0);
                }
            }
        }
    }
}
