//! How operators' locations (list URLs, file paths, log URLs) are shown in `/stats`, `/metrics` and the log: a
//! URL without its credentials (`user:pass@`), query string (often a token) or fragment; a file path as its file
//! name only. Every such location goes through [`location`], and every error text that may quote one through
//! [`urls_in`], so what an operator puts in a URL or path never reaches a page anyone can read.

use std::path::Path;

/// Stands in for what was removed.
const HIDDEN: &str = "***";

/// `location` as it may be shown: a URL (`scheme://…`) without credentials, query or fragment, or a path's last
/// component.
pub fn location(location: &str) -> String {
    let Some((scheme, rest)) = location.split_once("://") else {
        return Path::new(location).file_name().map_or_else(
            || HIDDEN.to_owned(),
            |name| name.to_string_lossy().into_owned(),
        );
    };
    let (rest, query) = match rest.find(['?', '#']) {
        Some(at) => (&rest[..at], rest[at..].starts_with('?')),
        None => (rest, false),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let mut out = format!("{scheme}://");
    if let Some((_, host)) = authority.rsplit_once('@') {
        out.push_str(HIDDEN);
        out.push('@');
        out.push_str(host);
    } else {
        out.push_str(authority);
    }
    out.push_str(path);
    if query {
        out.push('?');
        out.push_str(HIDDEN);
    }
    out
}

/// `text` with every `http://` or `https://` URL in it shown as [`location`] shows it. A URL ends at whitespace
/// or a quote.
pub fn urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = find_url(rest) {
        out.push_str(&rest[..start]);
        let url = &rest[start..];
        let end = url
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>'))
            .unwrap_or(url.len());
        out.push_str(&location(&url[..end]));
        rest = &url[end..];
    }
    out.push_str(rest);
    out
}

/// Where the first http(s) URL in `text` starts (schemes in any case).
fn find_url(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    [lower.find("http://"), lower.find("https://")]
        .into_iter()
        .flatten()
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_query_and_fragment() {
        assert_eq!(
            location("https://user:pass@lists.example:8443/v3/list.json?token=s3cret#x"),
            "https://***@lists.example:8443/v3/list.json?***"
        );
        assert_eq!(location("http://a@b@host/x#frag"), "http://***@host/x");
        assert_eq!(location("https://host?key=1"), "https://host?***");
        let plain = "http://127.0.0.1:9/log_list.json";
        assert_eq!(location(plain), plain);
    }

    #[test]
    fn paths_show_their_file_name_only() {
        assert_eq!(
            location("/home/ops/secret-dir/log_list.json"),
            "log_list.json"
        );
        assert_eq!(location("relative/list.json"), "list.json");
        assert_eq!(location("list.json"), "list.json");
        assert_eq!(location("/"), "***");
    }

    #[test]
    fn urls_inside_error_texts_are_redacted() {
        assert_eq!(
            urls_in(
                "log list fetch failed: invalid URL \"https://u:p@h/l.json?t=1\": user info is not supported"
            ),
            "log list fetch failed: invalid URL \"https://***@h/l.json?***\": user info is not supported"
        );
        assert_eq!(
            urls_in("HTTPS://h/x?token=1 answered HTTP 404, see http://o/p"),
            "HTTPS://h/x?*** answered HTTP 404, see http://o/p"
        );
        assert_eq!(urls_in("no URL here"), "no URL here");
    }
}
