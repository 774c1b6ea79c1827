//! Just enough URL parsing for CT log endpoints: `http(s)://host[:port]/path?query`.

use super::HttpError;

/// A parsed request target: where to connect and what to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `true` for `https://`.
    pub tls: bool,
    /// Host name or IP literal, without IPv6 brackets, lowercased.
    pub host: String,
    /// TCP port (explicit, or 80/443).
    pub port: u16,
    /// Path and query as sent in the request line; never empty (at least `/`).
    pub path_and_query: String,
}

impl Target {
    /// Parses an absolute `http://` or `https://` URL. User info is refused; a fragment is dropped.
    pub fn parse(url: &str) -> Result<Self, HttpError> {
        let bad = |reason| HttpError::InvalidUrl {
            url: url.to_string(),
            reason,
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("missing scheme"))?;
        let tls = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return Err(bad("scheme is not http or https"));
        };
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let path_start = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(path_start);
        if authority.contains('@') {
            return Err(bad("user info is not supported"));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| bad("bad host or port"))?;
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(bad("path contains spaces or control characters"));
        }
        let path_and_query = match path.strip_prefix('?') {
            Some(_) => format!("/{path}"),
            None if path.is_empty() => "/".to_string(),
            None => path.to_string(),
        };
        Ok(Self {
            tls,
            host: host.to_ascii_lowercase(),
            port: port.unwrap_or(if tls { 443 } else { 80 }),
            path_and_query,
        })
    }

    /// The value of the `Host` header: the port only when it is not the scheme's default.
    pub(crate) fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default_port = if self.tls { 443 } else { 80 };
        if self.port == default_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`; `None` when malformed.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return None;
        }
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let valid_host = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
    if !valid_host {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|&p| p != 0)?),
        None => None,
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ct_urls() {
        let t =
            Target::parse("https://ct.googleapis.com/logs/us1/argon2026h2/ct/v1/get-sth").unwrap();
        assert!(t.tls);
        assert_eq!((t.host.as_str(), t.port), ("ct.googleapis.com", 443));
        assert_eq!(t.path_and_query, "/logs/us1/argon2026h2/ct/v1/get-sth");
        assert_eq!(t.host_header(), "ct.googleapis.com");

        let t = Target::parse("HTTP://127.0.0.1:8080?start=0&end=31#frag").unwrap();
        assert!(!t.tls);
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 8080));
        assert_eq!(t.path_and_query, "/?start=0&end=31");
        assert_eq!(t.host_header(), "127.0.0.1:8080");

        let t = Target::parse("http://[::1]:81/x").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 81));
        assert_eq!(t.host_header(), "[::1]:81");
        assert_eq!(
            Target::parse("https://Example.COM").unwrap().path_and_query,
            "/"
        );
    }

    #[test]
    fn refuses_bad_urls() {
        for url in [
            "ftp://x/",
            "example.com/x",
            "http://",
            "http://u:p@host/",
            "http://host:99999/",
            "http://host:0/",
            "http://host:/",
            "http://[zz]/",
            "http://ho st/",
            "http://host/a b",
        ] {
            assert!(
                matches!(Target::parse(url), Err(HttpError::InvalidUrl { .. })),
                "{url}"
            );
        }
    }
}
