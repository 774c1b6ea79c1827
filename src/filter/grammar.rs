//! The filter grammar: query parameters → one canonical [`Spec`], or the one-line reason it is refused.

use std::fmt;

use certstream_ct::entry::EntryType;

use super::Limits;

/// Parameters the server reads itself, next to the filter parameters; anything else is refused.
const SERVER_PARAMETERS: [&str; 5] = ["dedup", "token", "last_event_id", "cursor", "since"];

/// One filter, canonical: every list lowercased (regexes excepted), sorted and deduplicated, so equal filters
/// compare equal whatever the order, case or repetition of their values.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Spec {
    /// `domain=`: names without a leading `*.` or a trailing dot.
    pub domains: Vec<Box<str>>,
    /// `keyword=`.
    pub keywords: Vec<Box<str>>,
    /// `regex=`, as given.
    pub regexes: Vec<Box<str>>,
    /// `issuer=`.
    pub issuers: Vec<Box<str>>,
    /// `type=`.
    pub types: Vec<CertType>,
}

/// `type=cert` or `type=precert`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CertType {
    /// A final certificate (`X509LogEntry`).
    Cert,
    /// A precertificate (`PrecertLogEntry`).
    Precert,
}

impl CertType {
    /// The type of an entry.
    pub fn of(entry: EntryType) -> Self {
        match entry {
            EntryType::X509 => Self::Cert,
            EntryType::Precert => Self::Precert,
        }
    }
}

impl Spec {
    /// Whether the spec selects anything less than everything (an empty spec is no filter).
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
            && self.keywords.is_empty()
            && self.regexes.is_empty()
            && self.issuers.is_empty()
            && self.types.is_empty()
    }

    /// Every value, all parameters together.
    pub fn value_count(&self) -> usize {
        self.domains.len()
            + self.keywords.len()
            + self.regexes.len()
            + self.issuers.len()
            + self.types.len()
    }
}

/// Why a filter was refused: the `400` body says it in one line; `/stats` counts it by [`Refusal::reason_index`].
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A parameter that is neither a filter nor one the server reads.
    UnknownParameter(String),
    /// A value that is not valid for its parameter.
    BadValue {
        /// The parameter.
        parameter: &'static str,
        /// The value, as given.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A regex that does not compile.
    BadRegex(String),
    /// A regex larger, compiled, than the limit.
    RegexTooBig {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The filter parameters are longer than the limit.
    TooLong {
        /// Bytes of the filter parameters.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// More values than the limit.
    TooManyValues {
        /// The values given.
        values: usize,
        /// The limit.
        limit: usize,
    },
    /// The server already holds its maximum of distinct regexes.
    TooManyRegexes {
        /// The limit.
        limit: usize,
    },
}

impl Refusal {
    /// Every reason, in the order of [`Refusal::reason_index`] (the `reason` label of the refusal counter).
    pub const REASONS: [&'static str; 7] = [
        "unknown_parameter",
        "bad_value",
        "bad_regex",
        "regex_too_big",
        "too_long",
        "too_many_values",
        "too_many_regexes",
    ];

    /// The index of this refusal's reason in [`Refusal::REASONS`].
    pub fn reason_index(&self) -> usize {
        match self {
            Self::UnknownParameter(_) => 0,
            Self::BadValue { .. } => 1,
            Self::BadRegex(_) => 2,
            Self::RegexTooBig { .. } => 3,
            Self::TooLong { .. } => 4,
            Self::TooManyValues { .. } => 5,
            Self::TooManyRegexes { .. } => 6,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownParameter(name) => write!(
                f,
                "unknown parameter {name:?}: filters are domain, keyword, regex, type and issuer (and dedup)"
            ),
            Self::BadValue {
                parameter,
                value,
                why,
            } => write!(f, "{parameter}={value:?}: {why}"),
            // The regex crate's message spans several lines (the pattern and a caret): one line here.
            Self::BadRegex(error) => {
                write!(
                    f,
                    "regex: {}",
                    error.split_whitespace().collect::<Vec<_>>().join(" ")
                )
            }
            Self::RegexTooBig { limit } => {
                write!(
                    f,
                    "regex: larger than {limit} bytes once compiled (Unicode classes are large: \\w takes ~64 KiB, (?-u)\\w or [a-z0-9_] a few)"
                )
            }
            Self::TooLong { bytes, limit } => write!(
                f,
                "the filter is {bytes} bytes long, more than the limit of {limit}"
            ),
            Self::TooManyValues { values, limit } => write!(
                f,
                "the filter has {values} values, more than the limit of {limit}"
            ),
            Self::TooManyRegexes { limit } => write!(
                f,
                "this server already holds its maximum of {limit} distinct regexes: use domain or keyword"
            ),
        }
    }
}

/// Parses the query parameters into a canonical spec and the `dedup` choice. Checks everything but the regexes'
/// compilation and the server-wide regex count (the registry's).
pub(super) fn parse<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    limits: &Limits,
) -> Result<(Spec, bool), Refusal> {
    let mut spec = Spec::default();
    let mut dedup = false;
    let mut bytes = 0;
    let mut values = 0;
    for (name, value) in pairs {
        match name {
            "domain" | "keyword" | "regex" | "issuer" | "type" => {}
            "dedup" => {
                dedup = parse_dedup(value)?;
                continue;
            }
            _ if SERVER_PARAMETERS.contains(&name) => continue,
            _ => return Err(Refusal::UnknownParameter(name.to_owned())),
        }
        bytes += name.len() + 1 + value.len();
        if bytes > limits.max_filter_bytes {
            return Err(Refusal::TooLong {
                bytes,
                limit: limits.max_filter_bytes,
            });
        }
        // A regex may hold commas (`a{1,3}`), and so do issuers' names (`/O=Entrust, Inc.`): only a repeated
        // parameter ORs those. Elsewhere the spaces around a comma are not part of the values (`a, b`).
        let pieces: Vec<&str> = if name == "regex" || name == "issuer" {
            vec![value]
        } else {
            value.split(',').map(str::trim).collect()
        };
        for piece in pieces {
            values += 1;
            if values > limits.max_values {
                return Err(Refusal::TooManyValues {
                    values,
                    limit: limits.max_values,
                });
            }
            match name {
                "domain" => spec.domains.push(parse_domain(piece)?),
                "keyword" => spec.keywords.push(lowercase("keyword", piece)?),
                "issuer" => spec.issuers.push(lowercase("issuer", piece)?),
                "regex" => spec.regexes.push(non_empty("regex", piece)?.into()),
                _ => spec.types.push(parse_type(piece)?),
            }
        }
    }
    for list in [
        &mut spec.domains,
        &mut spec.keywords,
        &mut spec.regexes,
        &mut spec.issuers,
    ] {
        list.sort_unstable();
        list.dedup();
    }
    spec.types.sort_unstable();
    spec.types.dedup();
    Ok((spec, dedup))
}

fn non_empty<'a>(parameter: &'static str, value: &'a str) -> Result<&'a str, Refusal> {
    if value.is_empty() {
        return Err(Refusal::BadValue {
            parameter,
            value: String::new(),
            why: "empty value",
        });
    }
    Ok(value)
}

fn lowercase(parameter: &'static str, value: &str) -> Result<Box<str>, Refusal> {
    Ok(non_empty(parameter, value)?.to_ascii_lowercase().into())
}

fn parse_dedup(value: &str) -> Result<bool, Refusal> {
    match value {
        "1" | "true" | "on" => Ok(true),
        "0" | "false" | "off" => Ok(false),
        _ => Err(Refusal::BadValue {
            parameter: "dedup",
            value: value.to_owned(),
            why: "expected 1, true or on (or 0, false, off)",
        }),
    }
}

fn parse_type(value: &str) -> Result<CertType, Refusal> {
    match value.to_ascii_lowercase().as_str() {
        "cert" => Ok(CertType::Cert),
        "precert" => Ok(CertType::Precert),
        _ => Err(Refusal::BadValue {
            parameter: "type",
            value: value.to_owned(),
            why: "expected cert or precert",
        }),
    }
}

/// A `domain=` value as the suffix table keys it: lowercase ASCII, without a leading `*.` or a trailing dot.
fn parse_domain(value: &str) -> Result<Box<str>, Refusal> {
    let bad = |why| Refusal::BadValue {
        parameter: "domain",
        value: value.to_owned(),
        why,
    };
    if !value.is_ascii() {
        return Err(bad(
            "internationalized names are logged in their ASCII form: give the xn-- form",
        ));
    }
    let name = normalize_domain(value);
    if name.is_empty() {
        return Err(bad("empty name"));
    }
    let valid_label = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !name.split('.').all(valid_label) {
        return Err(bad(
            "not a DNS name (letters, digits, '-', '_' in dot-separated labels)",
        ));
    }
    Ok(name.into())
}

/// A name as domain filters compare it: ASCII-lowercased, a leading `*.` and a trailing dot removed.
pub(super) fn normalize_domain(name: &str) -> String {
    let name = name.strip_prefix("*.").unwrap_or(name);
    let name = name.strip_suffix('.').unwrap_or(name);
    name.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(query: &[(&str, &str)]) -> Result<(Spec, bool), Refusal> {
        parse(query.iter().copied(), &Limits::default())
    }

    #[test]
    fn issuers_keep_their_commas_and_spaces_around_commas_are_dropped() {
        let (spec, _) = parsed(&[
            ("issuer", "GoDaddy.com, Inc."),
            ("keyword", "pay, shop"),
            ("domain", "a.example , b.example"),
        ])
        .unwrap();
        assert_eq!(spec.issuers, ["godaddy.com, inc.".into()]);
        assert_eq!(spec.keywords, ["pay".into(), "shop".into()]);
        assert_eq!(spec.domains, ["a.example".into(), "b.example".into()]);
    }

    #[test]
    fn values_are_canonical() {
        let (spec, dedup) = parsed(&[
            ("domain", "*.Example.COM."),
            ("keyword", "Pay,shop"),
            ("domain", "a.example.org,example.com"),
            ("regex", "a{1,3}"),
            ("type", "Precert,cert,precert"),
            ("issuer", "Let's Encrypt"),
            ("dedup", "on"),
            ("token", "secret"),
        ])
        .unwrap();
        let texts = |list: &[Box<str>]| list.iter().map(|v| v.to_string()).collect::<Vec<_>>();
        assert_eq!(texts(&spec.domains), ["a.example.org", "example.com"]);
        assert_eq!(texts(&spec.keywords), ["pay", "shop"]);
        assert_eq!(
            texts(&spec.regexes),
            ["a{1,3}"],
            "a regex is not split at commas"
        );
        assert_eq!(texts(&spec.issuers), ["let's encrypt"]);
        assert_eq!(spec.types, [CertType::Cert, CertType::Precert]);
        assert!(dedup);
        assert!(parsed(&[]).unwrap().0.is_empty());
    }

    #[test]
    fn bad_filters_are_refused_with_a_reason() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("domian", "example.com")], "unknown parameter \"domian\""),
            (&[("domain", "")], "domain=\"\": empty name"),
            (&[("domain", "*.")], "empty name"),
            (&[("domain", "a..b")], "not a DNS name"),
            (&[("domain", "exa mple.com")], "not a DNS name"),
            (&[("domain", "bücher.example")], "give the xn-- form"),
            (&[("keyword", "a,,b")], "keyword=\"\": empty value"),
            (&[("type", "x509")], "expected cert or precert"),
            (&[("dedup", "yes please")], "expected 1, true or on"),
        ];
        for (query, reason) in cases {
            let refusal = parsed(query).unwrap_err();
            assert!(refusal.to_string().contains(reason), "{query:?}: {refusal}");
            assert!(!refusal.to_string().contains('\n'), "one line: {refusal}");
        }
    }

    #[test]
    fn the_length_and_value_limits_hold() {
        let limits = Limits {
            max_filter_bytes: 25,
            max_values: 3,
            ..Limits::default()
        };
        let long = [("domain", "abcdefghijk.example")];
        assert_eq!(
            parse(long.iter().copied(), &limits),
            Err(Refusal::TooLong {
                bytes: 26,
                limit: 25
            })
        );
        let many = [("keyword", "a,b"), ("type", "cert,x")];
        assert_eq!(
            parse(many.iter().copied(), &limits),
            Err(Refusal::TooManyValues {
                values: 4,
                limit: 3
            })
        );
        assert!(parse([("keyword", "a,b"), ("type", "cert")], &limits).is_ok());
    }
}
