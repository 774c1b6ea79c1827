//! The query string of a request target: `name=value` pairs, percent-decoded, in their order. Stream options
//! (filters, deduplication, the access token) are read from it.

use std::fmt;

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
}
