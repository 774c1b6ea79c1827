//! The query string of a request target: `name=value` pairs, percent-decoded, in their order. Stream options
//! (filters, deduplication, the access token, where to start) are read from it.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cursor::ReplayStart;

/// Most parameters accepted in one query string (the request head is bounded too, `MAX_REQUEST_HEAD_LEN`).
pub(crate) const MAX_QUERY_PARAMETERS: usize = 64;

/// A parsed query string.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

/// Why a query string was refused (answered `400` with this text).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum QueryError {
    /// A `%` not followed by two hex digits, or bytes that do not decode to UTF-8.
    BadEncoding,
    /// More than [`MAX_QUERY_PARAMETERS`] parameters.
    TooManyParameters,
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadEncoding => f.write_str("the query string is not valid percent-encoded UTF-8"),
            Self::TooManyParameters => write!(
                f,
                "the query string has more than {MAX_QUERY_PARAMETERS} parameters"
            ),
        }
    }
}

impl Query {
    /// The query of a request target (what follows the first `?`; none is an empty query). Empty pieces
    /// (`a=1&&b=2`) are skipped; a name without `=` has an empty value; `+` is a space.
    pub(crate) fn of(target: &str) -> Result<Self, QueryError> {
        let Some((_, query)) = target.split_once('?') else {
            return Ok(Self::default());
        };
        let mut pairs = Vec::new();
        for piece in query.split('&').filter(|piece| !piece.is_empty()) {
            if pairs.len() == MAX_QUERY_PARAMETERS {
                return Err(QueryError::TooManyParameters);
            }
            let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
            pairs.push((decode(name)?, decode(value)?));
        }
        Ok(Self { pairs })
    }

    /// Every value given for `name`, in order (a parameter may be repeated).
    pub(crate) fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every `(name, value)` pair, in order (a parameter may be repeated).
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }
}

fn decode(encoded: &str) -> Result<String, QueryError> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let digits = bytes.get(i + 1..i + 3).ok_or(QueryError::BadEncoding)?;
                // `from_str_radix` alone would take a sign (`%+1`).
                if !digits.iter().all(u8::is_ascii_hexdigit) {
                    return Err(QueryError::BadEncoding);
                }
                let hex = std::str::from_utf8(digits).map_err(|_| QueryError::BadEncoding)?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| QueryError::BadEncoding)?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| QueryError::BadEncoding)
}

/// The latest `?since=` accepted: the end of the year 9999, in Unix seconds (later ones are no time at all).
const MAX_SINCE_SECONDS: u64 = 253_402_300_799;

/// Where a stream request asks to start: `?cursor=N` (after cursor `N`) or `?since=T` (the messages stored at or
/// after Unix time `T`); `None`: live. `Err`: the one-line reason it is refused (answered `400`).
pub(crate) fn replay_start(query: &Query) -> Result<Option<ReplayStart>, String> {
    let cursor = single_value(query, "cursor")?;
    let since = single_value(query, "since")?;
    match (cursor, since) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err("cursor and since: give one of them".into()),
        (Some(cursor), None) => Ok(Some(ReplayStart::After(parse_cursor(cursor)?))),
        (None, Some(since)) => Ok(Some(ReplayStart::Since(parse_since(since)?))),
    }
}

fn single_value<'a>(query: &'a Query, name: &'a str) -> Result<Option<&'a str>, String> {
    let mut values = query.values(name);
    let first = values.next();
    match values.next() {
        Some(_) => Err(format!("{name}: given more than once")),
        None => Ok(first),
    }
}

/// Whether `text` is a plain decimal number: a cursor, where an event id is expected (`Last-Event-ID`).
pub(crate) fn is_cursor(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// A message's cursor, given by a client.
pub(crate) fn parse_cursor(text: &str) -> Result<u64, String> {
    if !is_cursor(text) {
        return Err("cursor: expected the cursor of a message (a whole number)".into());
    }
    text.parse()
        .map_err(|_| "cursor: out of range (not the cursor of a message)".into())
}

/// Unix seconds, whole or with a decimal fraction (`1700000000`, `1700000000.25`); no sign, exponent or NaN.
fn parse_since(text: &str) -> Result<SystemTime, String> {
    const EXPECTED: &str = "since: expected Unix seconds (like 1700000000 or 1700000000.5)";
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    if !is_cursor(whole) || !is_cursor(fraction) {
        return Err(EXPECTED.into());
    }
    let out_of_range = || "since: out of range (after the year 9999)".to_owned();
    let seconds: u64 = whole.parse().map_err(|_| out_of_range())?;
    if seconds > MAX_SINCE_SECONDS {
        return Err(out_of_range());
    }
    // Nanoseconds: the first nine digits of the fraction (finer ones are no instant of a stream).
    let nanos = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(9)
        .fold(0u32, |nanos, digit| nanos * 10 + u32::from(digit - b'0'));
    Ok(UNIX_EPOCH + Duration::new(seconds, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(target: &str) -> Vec<(String, String)> {
        Query::of(target).unwrap().pairs
    }

    #[test]
    fn pairs_are_decoded_in_order() {
        assert_eq!(pairs("/"), vec![]);
        assert_eq!(pairs("/?"), vec![]);
        assert_eq!(
            pairs("/?domain=a.example&&keyword=pay%20pal&flag&x=1+2&domain=%C3%A9.example"),
            vec![
                ("domain".into(), "a.example".into()),
                ("keyword".into(), "pay pal".into()),
                ("flag".into(), String::new()),
                ("x".into(), "1 2".into()),
                ("domain".into(), "é.example".into()),
            ]
        );
        let query = Query::of("/?domain=a&type=cert&domain=b").unwrap();
        assert_eq!(
            query.pairs().collect::<Vec<_>>(),
            [("domain", "a"), ("type", "cert"), ("domain", "b")]
        );
    }

    #[test]
    fn bad_encodings_and_too_many_parameters_are_refused() {
        for bad in [
            "/?a=%", "/?a=%4", "/?a=%zz", "/?a=%ff", "/?%C3=1", "/?a=%+1",
        ] {
            assert_eq!(Query::of(bad), Err(QueryError::BadEncoding), "{bad}");
        }
        let many = format!("/?{}", vec!["a=1"; MAX_QUERY_PARAMETERS + 1].join("&"));
        assert_eq!(Query::of(&many), Err(QueryError::TooManyParameters));
        let most = format!("/?{}", vec!["a=1"; MAX_QUERY_PARAMETERS].join("&"));
        assert_eq!(
            Query::of(&most).unwrap().pairs().count(),
            MAX_QUERY_PARAMETERS
        );
    }

    fn start(target: &str) -> Result<Option<ReplayStart>, String> {
        replay_start(&Query::of(target).unwrap())
    }

    #[test]
    fn a_start_is_a_cursor_or_a_time_and_anything_else_is_refused_with_its_reason() {
        assert_eq!(start("/?domain=a.example"), Ok(None));
        assert_eq!(start("/?cursor=0"), Ok(Some(ReplayStart::After(0))));
        assert_eq!(
            start("/?cursor=18446744073709551615"),
            Ok(Some(ReplayStart::After(u64::MAX)))
        );
        let at = |seconds, nanos| {
            Ok(Some(ReplayStart::Since(
                UNIX_EPOCH + Duration::new(seconds, nanos),
            )))
        };
        assert_eq!(start("/?since=1700000000"), at(1_700_000_000, 0));
        assert_eq!(
            start("/?since=1700000000.25"),
            at(1_700_000_000, 250_000_000)
        );
        assert_eq!(start("/?since=1.0000000019"), at(1, 1));
        assert_eq!(start("/?since=253402300799"), at(MAX_SINCE_SECONDS, 0));
        for (target, reason) in [
            ("/?cursor=", "cursor: expected"),
            ("/?cursor=-1", "cursor: expected"),
            ("/?cursor=%2B1", "cursor: expected"),
            ("/?cursor=1.5", "cursor: expected"),
            ("/?cursor=0x10", "cursor: expected"),
            ("/?cursor=18446744073709551616", "cursor: out of range"),
            ("/?cursor=1&cursor=2", "cursor: given more than once"),
            ("/?since=", "since: expected"),
            ("/?since=NaN", "since: expected"),
            ("/?since=inf", "since: expected"),
            ("/?since=-1", "since: expected"),
            ("/?since=1e9", "since: expected"),
            ("/?since=1.", "since: expected"),
            ("/?since=.5", "since: expected"),
            ("/?since=1.2.3", "since: expected"),
            ("/?since=253402300800", "since: out of range"),
            ("/?since=9467107200000000000", "since: out of range"),
            ("/?since=99999999999999999999999", "since: out of range"),
            ("/?cursor=1&since=1", "cursor and since: give one of them"),
        ] {
            let refused = start(target).unwrap_err();
            assert!(refused.starts_with(reason), "{target}: {refused}");
            assert!(!refused.contains('\n'), "one line");
        }
    }
}
