//! Fault injection: which requests fail and how, per log or for all logs, decided deterministically from the
//! seed and per-(fault, log) request counters. Set from `--fault` specs or replaced at runtime by
//! `POST /_mock/faults` (a JSON array of [`Fault`]).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::entries::unit;
use crate::stats::Endpoint;

/// Default `Retry-After` seconds of a 429.
const DEFAULT_RETRY_AFTER_S: u64 = 1;
/// Default delay of a slow response.
const DEFAULT_SLOW_MS: u64 = 1000;
/// Default distance a tree head goes backwards.
const DEFAULT_BACKWARDS_BY: u64 = 10;
/// Default size of a `huge_cert` certificate or a `huge_chain` chain certificate / issuer.
const DEFAULT_HUGE_BYTES: u64 = 256 << 10;
/// Default tree size a `jump` claims: 2^63.
const DEFAULT_JUMP_TO: u64 = 1 << 63;

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultKind {
    /// 429 Too Many Requests with Retry-After (`retry_after` seconds, as an HTTP-date when `http_date`).
    #[serde(rename = "429")]
    TooManyRequests,
    /// 500 Internal Server Error.
    #[serde(rename = "500")]
    ServerError,
    /// The response is delayed by `ms`.
    #[serde(rename = "slow")]
    Slow,
    /// Content-Length promises the whole body, half is sent, then the connection closes.
    #[serde(rename = "truncate")]
    Truncate,
    /// 200 with a body of random bytes.
    #[serde(rename = "garbage")]
    Garbage,
    /// The connection closes without a response.
    #[serde(rename = "reset")]
    Reset,
    /// Every request to the log gets 503.
    #[serde(rename = "down")]
    Down,
    /// get-sth / checkpoint serve an older head (`by` entries smaller, one second older), correctly signed.
    #[serde(rename = "backwards")]
    Backwards,
    /// Some indices' leaf certificate (and a precert's TBS) are bytes no X.509 parser accepts.
    #[serde(rename = "unparseable")]
    Unparseable,
    // Hostile HTTP (a log attacking the client): absurd headers, desync and injection, huge bodies.
    /// 429 whose Retry-After is absurd, in turn: negative, garbage, year 300000000000, 2^64−1 seconds, year 9999.
    #[serde(rename = "absurd-429")]
    AbsurdRetryAfter,
    /// The real response, then at once a forged one in the same write (its Content-Length is shorter than what
    /// was sent): the forged one stays on the connection.
    #[serde(rename = "trailing")]
    Trailing,
    /// The real response, then an unsolicited forged one `ms` (default 20) later on the same connection.
    #[serde(rename = "unsolicited")]
    Unsolicited,
    /// get-entries: the requested entries followed by `entries` (default 1.5 M) tiny ones (~60 MB).
    #[serde(rename = "tiny-entries")]
    TinyEntries,
    // Hostile entries and tree heads (per index like `unparseable`, except `jump`).
    /// Some indices' certificate (a precert's TBS and pre-certificate too) is empty: u24 length 0, the record's
    /// boundaries intact.
    #[serde(rename = "empty_cert")]
    EmptyCert,
    /// get-entries: some indices' `leaf_input` is not base64 (the item's JSON intact). Tiles have no base64:
    /// tiled logs serve those indices unchanged.
    #[serde(rename = "bad_base64")]
    BadBase64,
    /// Some indices' certificate is `bytes` bytes of DER-framed garbage (a precert's TBS too).
    #[serde(rename = "huge_cert")]
    HugeCert,
    /// Some indices carry one more chain certificate (tiled logs: one more issuer, served at `issuer/<hex>`) of
    /// `bytes` bytes of DER-framed garbage, different for every index.
    #[serde(rename = "huge_chain")]
    HugeChain,
    /// get-sth / checkpoint claim a tree of `to` entries (2^63 by default), correctly signed, and entries up to
    /// it are served.
    #[serde(rename = "jump")]
    Jump,
}

/// The Retry-After values an `absurd-429` sends, in turn.
pub const ABSURD_RETRY_AFTER: [&str; 5] = [
    "-5",
    "soon, maybe",
    "Sun, 06 Nov 300000000000 08:49:37 GMT",
    "18446744073709551615",
    "Fri, 31 Dec 9999 23:59:59 GMT",
];
/// Default delay of an `unsolicited` forged response.
const DEFAULT_UNSOLICITED_MS: u64 = 20;
/// Default number of tiny entries a `tiny-entries` get-entries answer appends.
const DEFAULT_TINY_ENTRIES: u64 = 1_500_000;

impl FaultKind {
    /// The name used in specs and stats.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::TooManyRequests => "429",
            FaultKind::ServerError => "500",
            FaultKind::Slow => "slow",
            FaultKind::Truncate => "truncate",
            FaultKind::Garbage => "garbage",
            FaultKind::Reset => "reset",
            FaultKind::Down => "down",
            FaultKind::Backwards => "backwards",
            FaultKind::Unparseable => "unparseable",
            FaultKind::AbsurdRetryAfter => "absurd-429",
            FaultKind::Trailing => "trailing",
            FaultKind::Unsolicited => "unsolicited",
            FaultKind::TinyEntries => "tiny-entries",
            FaultKind::EmptyCert => "empty_cert",
            FaultKind::BadBase64 => "bad_base64",
            FaultKind::HugeCert => "huge_cert",
            FaultKind::HugeChain => "huge_chain",
            FaultKind::Jump => "jump",
        }
    }

    /// Faults decided per entry index rather than per request.
    fn per_entry(self) -> bool {
        matches!(
            self,
            FaultKind::Unparseable
                | FaultKind::EmptyCert
                | FaultKind::BadBase64
                | FaultKind::HugeCert
                | FaultKind::HugeChain
        )
    }
}

/// One fault rule. Trigger: `every` N matching requests (or indices, for `unparseable`), else with probability
/// `p`, else always.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// What goes wrong.
    pub kind: FaultKind,
    /// Only this log (all logs when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// Only this endpoint kind (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Endpoint>,
    /// Probability per matching request (or index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<f64>,
    /// Every Nth matching request (or every index ≡ N−1 mod N).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<u64>,
    /// 429: Retry-After seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// 429: send Retry-After as an HTTP-date instead of delay-seconds.
    #[serde(default)]
    pub http_date: bool,
    /// slow: delay in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
    /// backwards: how many entries smaller the old head is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<u64>,
    /// tiny-entries: how many tiny entries follow the requested ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<u64>,
    /// huge_cert, huge_chain: size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// jump: the tree size claimed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u64>,
}

/// What the entry faults make of one entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryFaults {
    /// The certificate is DER no X.509 parser accepts.
    pub unparseable: bool,
    /// The certificate is empty.
    pub empty_cert: bool,
    /// The get-entries item's `leaf_input` is not base64.
    pub bad_base64: bool,
    /// The certificate is this many bytes of garbage.
    pub huge_cert: Option<usize>,
    /// One more chain certificate of this many bytes.
    pub huge_chain: Option<usize>,
}

impl Fault {
    /// Parses a CLI spec `KIND[@LOG][,key=value…]`, e.g. `429@r0,every=3,retry_after=2,http_date=true`; keys
    /// are [`Fault`]'s fields.
    pub fn parse_spec(spec: &str) -> Result<Fault, String> {
        let mut parts = spec.split(',');
        let head = parts.next().unwrap_or_default();
        let (kind, log) = match head.split_once('@') {
            Some((kind, log)) => (kind, Some(log)),
            None => (head, None),
        };
        let mut map = Map::new();
        map.insert("kind".into(), Value::String(kind.into()));
        if let Some(log) = log {
            map.insert("log".into(), Value::String(log.into()));
        }
        for part in parts {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("fault spec {spec:?}: {part:?} is not key=value"))?;
            let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
            map.insert(key.into(), value);
        }
        serde_json::from_value(Value::Object(map)).map_err(|e| format!("fault spec {spec:?}: {e}"))
    }
}

/// What a request's faults call for.
#[derive(Default)]
pub struct Decision {
    /// Sleep this long before answering.
    pub delay_ms: u64,
    /// Replace the response.
    pub action: Option<Action>,
    /// Serve a tree head this many entries older.
    pub backwards_by: Option<u64>,
    /// After the response, send a forged one: at once (`Some(0)`) or this many milliseconds later.
    pub forge_after_ms: Option<u64>,
    /// get-entries: append this many tiny entries.
    pub tiny_entries: Option<u64>,
    /// Serve a tree head claiming this size.
    pub jump_to: Option<u64>,
    /// Every fault that triggered (for the stats).
    pub triggered: Vec<FaultKind>,
}

/// A replaced response.
pub enum Action {
    /// 429 with Retry-After.
    TooManyRequests {
        /// Seconds.
        retry_after: u64,
        /// As an HTTP-date.
        http_date: bool,
    },
    /// 500.
    ServerError,
    /// Half the body, then close.
    Truncate,
    /// 200 with random bytes.
    Garbage,
    /// Close without answering.
    Reset,
    /// 503.
    Down,
    /// 429 with this (absurd) Retry-After value.
    AbsurdRetryAfter(&'static str),
}

/// The active faults with their counters.
pub struct FaultSet {
    /// Bumped on every replacement, so caches of generated data never outlive the faults they were built with.
    pub generation: u64,
    faults: Vec<Fault>,
    /// Resolved `log` of each fault.
    log_numbers: Vec<Option<usize>>,
    /// Matching requests so far, per fault and log.
    counters: Vec<Vec<AtomicU64>>,
    seed: u64,
}

impl FaultSet {
    /// Checks `faults` against the log names and readies their counters.
    pub fn new(
        faults: Vec<Fault>,
        log_names: &[String],
        seed: u64,
        generation: u64,
    ) -> Result<Self, String> {
        let mut log_numbers = Vec::with_capacity(faults.len());
        for fault in &faults {
            let kind = fault.kind.name();
            if fault.p.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
                return Err(format!("fault {kind}: p must be within 0..=1"));
            }
            if fault.every == Some(0) {
                return Err(format!("fault {kind}: every must be at least 1"));
            }
            if fault.p.is_some() && fault.every.is_some() {
                return Err(format!("fault {kind}: give p or every, not both"));
            }
            let number = match &fault.log {
                None => None,
                Some(name) => Some(
                    log_names
                        .iter()
                        .position(|n| n == name)
                        .ok_or_else(|| format!("fault {kind}: no log named {name:?}"))?,
                ),
            };
            log_numbers.push(number);
        }
        let counters = faults
            .iter()
            .map(|_| log_names.iter().map(|_| AtomicU64::new(0)).collect())
            .collect();
        Ok(Self {
            generation,
            faults,
            log_numbers,
            counters,
            seed,
        })
    }

    /// The rules as configured.
    pub fn faults(&self) -> &[Fault] {
        &self.faults
    }

    /// Decides the faults of one request to `endpoint` of log `log`.
    pub fn decide(&self, log: usize, endpoint: Endpoint) -> Decision {
        let mut decision = Decision::default();
        for (i, fault) in self.faults.iter().enumerate() {
            let applies = match fault.kind {
                kind if kind.per_entry() => false,
                FaultKind::Backwards | FaultKind::Jump => endpoint.serves_tree_head(),
                FaultKind::TinyEntries => endpoint == Endpoint::GetEntries,
                _ => true,
            };
            if !applies || !self.matches(i, log) || fault.endpoint.is_some_and(|e| e != endpoint) {
                continue;
            }
            let Some(counter) = self.counters.get(i).and_then(|c| c.get(log)) else {
                continue;
            };
            let count = counter.fetch_add(1, Ordering::Relaxed) + 1;
            if !self.triggers(i, fault, log, count) {
                continue;
            }
            decision.triggered.push(fault.kind);
            let action = match fault.kind {
                FaultKind::Slow => {
                    decision.delay_ms += fault.ms.unwrap_or(DEFAULT_SLOW_MS);
                    continue;
                }
                FaultKind::Backwards => {
                    decision.backwards_by = Some(fault.by.unwrap_or(DEFAULT_BACKWARDS_BY));
                    continue;
                }
                FaultKind::Trailing => {
                    decision.forge_after_ms = Some(0);
                    continue;
                }
                FaultKind::Unsolicited => {
                    decision.forge_after_ms = Some(fault.ms.unwrap_or(DEFAULT_UNSOLICITED_MS));
                    continue;
                }
                FaultKind::TinyEntries => {
                    decision.tiny_entries = Some(fault.entries.unwrap_or(DEFAULT_TINY_ENTRIES));
                    continue;
                }
                FaultKind::AbsurdRetryAfter => {
                    let turn = (count - 1) % ABSURD_RETRY_AFTER.len() as u64;
                    Action::AbsurdRetryAfter(ABSURD_RETRY_AFTER[turn as usize])
                }
                FaultKind::Jump => {
                    decision.jump_to = Some(fault.to.unwrap_or(DEFAULT_JUMP_TO));
                    continue;
                }
                FaultKind::TooManyRequests => Action::TooManyRequests {
                    retry_after: fault.retry_after.unwrap_or(DEFAULT_RETRY_AFTER_S),
                    http_date: fault.http_date,
                },
                FaultKind::ServerError => Action::ServerError,
                FaultKind::Truncate => Action::Truncate,
                FaultKind::Garbage => Action::Garbage,
                FaultKind::Reset => Action::Reset,
                FaultKind::Down => Action::Down,
                FaultKind::Unparseable
                | FaultKind::EmptyCert
                | FaultKind::BadBase64
                | FaultKind::HugeCert
                | FaultKind::HugeChain => continue,
            };
            // The first replacing fault wins.
            decision.action.get_or_insert(action);
        }
        decision
    }

    /// What the entry faults make of entry `index` of log `log`.
    pub fn entry_faults(&self, log: usize, index: u64) -> EntryFaults {
        let mut faults = EntryFaults::default();
        let size = |fault: &Fault| fault.bytes.unwrap_or(DEFAULT_HUGE_BYTES) as usize;
        for (i, fault) in self.faults.iter().enumerate() {
            if !fault.kind.per_entry()
                || !self.matches(i, log)
                || !self.triggers(i, fault, log, index + 1)
            {
                continue;
            }
            match fault.kind {
                FaultKind::Unparseable => faults.unparseable = true,
                FaultKind::EmptyCert => faults.empty_cert = true,
                FaultKind::BadBase64 => faults.bad_base64 = true,
                FaultKind::HugeCert => faults.huge_cert = Some(size(fault)),
                FaultKind::HugeChain => faults.huge_chain = Some(size(fault)),
                _ => {}
            }
        }
        faults
    }

    /// The largest size a `jump` fault makes log `log` claim: entries are served up to it.
    pub fn claimed_size(&self, log: usize) -> Option<u64> {
        self.faults
            .iter()
            .enumerate()
            .filter(|(i, fault)| fault.kind == FaultKind::Jump && self.matches(*i, log))
            .map(|(_, fault)| fault.to.unwrap_or(DEFAULT_JUMP_TO))
            .max()
    }

    fn matches(&self, fault: usize, log: usize) -> bool {
        self.log_numbers
            .get(fault)
            .is_some_and(|only| only.is_none_or(|only| only == log))
    }

    /// Trigger for the `count`th matching event (1-based).
    fn triggers(&self, i: usize, fault: &Fault, log: usize, count: u64) -> bool {
        match (fault.every, fault.p) {
            (Some(every), _) => count.is_multiple_of(every),
            (None, Some(p)) => unit(&[self.seed, i as u64, log as u64, count]) < p,
            (None, None) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["r0".into(), "t0".into()]
    }

    #[test]
    fn specs_parse_into_rules() {
        let fault =
            Fault::parse_spec("429@r0,every=3,retry_after=2,http_date=true,endpoint=get-entries")
                .expect("valid spec");
        assert_eq!(fault.kind, FaultKind::TooManyRequests);
        assert_eq!(fault.log.as_deref(), Some("r0"));
        assert_eq!(
            (fault.every, fault.retry_after, fault.http_date),
            (Some(3), Some(2), true)
        );
        assert_eq!(fault.endpoint, Some(Endpoint::GetEntries));
        for bad in ["nope", "429,every", "429,colour=red", "slow,ms=fast"] {
            assert!(Fault::parse_spec(bad).is_err(), "{bad}");
        }
        for bad in ["429,p=1.5", "429,every=0", "429,p=0.5,every=2", "429@x9"] {
            let fault = Fault::parse_spec(bad).expect("parses");
            assert!(FaultSet::new(vec![fault], &names(), 1, 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn probabilities_are_deterministic_and_about_right() {
        let rule = || vec![Fault::parse_spec("500,p=0.25").expect("valid")];
        let outcomes = |set: &FaultSet| -> Vec<bool> {
            (0..4000)
                .map(|_| set.decide(0, Endpoint::GetSth).action.is_some())
                .collect()
        };
        let a = outcomes(&FaultSet::new(rule(), &names(), 7, 0).expect("valid"));
        let b = outcomes(&FaultSet::new(rule(), &names(), 7, 0).expect("valid"));
        let c = outcomes(&FaultSet::new(rule(), &names(), 8, 0).expect("valid"));
        assert_eq!(a, b, "same seed, same outcomes");
        assert_ne!(a, c, "another seed, other outcomes");
        let hits = a.iter().filter(|hit| **hit).count();
        assert!((800..1200).contains(&hits), "{hits} of 4000 at p = 0.25");
    }

    #[test]
    fn backwards_touches_only_tree_heads() {
        let set = FaultSet::new(
            vec![Fault::parse_spec("backwards,by=3").expect("valid")],
            &names(),
            1,
            0,
        )
        .expect("valid");
        assert_eq!(set.decide(1, Endpoint::Checkpoint).backwards_by, Some(3));
        assert_eq!(set.decide(1, Endpoint::DataTile).backwards_by, None);
    }

    #[test]
    fn hostile_http_faults_decide_what_they_say() {
        let rules = [
            "absurd-429@r0",
            "trailing@t0",
            "unsolicited@r0,ms=35",
            "tiny-entries,entries=7",
        ]
        .map(|spec| Fault::parse_spec(spec).expect("valid"));
        let set = FaultSet::new(rules.to_vec(), &names(), 1, 0).expect("valid");
        let sent: Vec<&str> = (0..ABSURD_RETRY_AFTER.len() + 1)
            .map(|_| match set.decide(0, Endpoint::GetSth).action {
                Some(Action::AbsurdRetryAfter(value)) => value,
                _ => panic!("absurd-429 replaces the response"),
            })
            .collect();
        assert_eq!(sent[..5], ABSURD_RETRY_AFTER, "every value in turn");
        assert_eq!(sent[5], ABSURD_RETRY_AFTER[0], "then again");
        let entries = set.decide(0, Endpoint::GetEntries);
        assert_eq!(
            (entries.forge_after_ms, entries.tiny_entries),
            (Some(35), Some(7))
        );
        let tile = set.decide(1, Endpoint::DataTile);
        assert_eq!(
            (tile.forge_after_ms, tile.tiny_entries),
            (Some(0), None),
            "tiny-entries: get-entries only"
        );
    }
}
