//! Filters and deduplication over real WebSocket connections to the server in this process: a filtered client
//! (WebSocket, server-sent events, NDJSON) receives exactly the matching messages, a bad filter is refused with 400 and its reason before any upgrade,
//! and a deduplicating client receives one copy of a certificate logged twice.

use std::sync::Arc;

use certstream::filter::{Limits, Registry, Selection};
use certstream::message::{Message, MessageMeta};
use certstream_ct::entry::EntryType;
use certstream_testkit::{
    HttpStreamClient, TestServer, WsClient, corpus, http_get, http_request, message,
    upgrade_request,
};

/// The messages a client of `query` (decoded pairs) must receive, in order.
fn expected<'a>(messages: &'a [Message], query: &[(&str, &str)]) -> Vec<&'a Message> {
    let registry = Registry::new(Limits::default());
    let filter = Selection::from_query(query.iter().copied(), &registry)
        .unwrap()
        .filter
        .unwrap();
    (1..)
        .zip(messages)
        .filter(|(seq, message)| {
            registry.evaluate(&message.meta, *seq);
            filter.matches(*seq)
        })
        .map(|(_, message)| message)
        .collect()
}

/// A message that every filter of the test selects: read after the others, it shows nothing else arrived.
fn sentinel() -> Message {
    Message {
        meta: MessageMeta {
            all_domains: vec!["sberbank.jccsmatrei.top".to_owned()].into(),
            entry_type: EntryType::Precert,
            ..MessageMeta::default()
        },
        frames: message(999_999),
    }
}

#[test]
fn a_filtered_client_receives_exactly_the_matching_messages() {
    let messages: Vec<Message> = corpus::messages().into_iter().take(400).collect();
    // Every message fits in the unfiltered client's queue: none is dropped while the test reads the others.
    let server = TestServer::start(|config| config.ring_size = 1024);
    let mut domain = WsClient::connect(server.addr, "/?domain=JCCSMATREI.top");
    let mut keyword = WsClient::connect(server.addr, "/domains-only?keyword=sberbank&type=precert");
    let mut everything = WsClient::connect(server.addr, "/");
    // The HTTP streams take the same filters.
    let mut sse = HttpStreamClient::get(server.addr, "/full-stream/sse?domain=jccsmatrei.top", &[]);
    let mut ndjson = HttpStreamClient::get(
        server.addr,
        "/domains-only/ndjson?keyword=SBERBANK&type=precert",
        &[],
    );
    assert_eq!((sse.status, ndjson.status), (200, 200));
    server.wait_for_clients(5);
    for message in &messages {
        server.publish(message.clone());
    }
    server.publish(sentinel());
    let by_domain = expected(&messages, &[("domain", "jccsmatrei.top")]);
    let by_keyword = expected(&messages, &[("keyword", "sberbank"), ("type", "precert")]);
    assert!(
        !by_domain.is_empty() && by_domain.len() < messages.len() && !by_keyword.is_empty(),
        "the filters select some messages: {} and {}",
        by_domain.len(),
        by_keyword.len()
    );
    for wanted in by_domain {
        assert_eq!(domain.read_data(), wanted.frames.lite.payload());
        let event = sse.next_data_event().expect("an event");
        assert_eq!(event.data.as_bytes(), wanted.frames.full.payload());
    }
    for wanted in by_keyword {
        assert_eq!(keyword.read_data(), wanted.frames.domains.payload());
        let line = ndjson.next_line().expect("a line");
        assert_eq!(line.as_bytes(), wanted.frames.domains.payload());
    }
    for wanted in &messages {
        assert_eq!(everything.read_data(), wanted.frames.lite.payload());
    }
    let sentinel = sentinel();
    assert_eq!(
        domain.read_data(),
        sentinel.frames.lite.payload(),
        "nothing else before"
    );
    assert_eq!(keyword.read_data(), sentinel.frames.domains.payload());
    let event = sse.next_data_event().expect("the sentinel");
    assert_eq!(event.data.as_bytes(), sentinel.frames.full.payload());
    let line = ndjson.next_line().expect("the sentinel");
    assert_eq!(line.as_bytes(), sentinel.frames.domains.payload());
    assert_eq!(everything.read_data(), sentinel.frames.lite.payload());
    let stats = server.stats();
    assert_eq!(stats["filtered_clients"], 4);
    assert_eq!(
        stats["filters"]["distinct"], 2,
        "equal filters are shared across transports"
    );
    assert_eq!(stats["filters"]["keywords"], 1);
}

#[test]
fn a_bad_filter_is_refused_with_400_and_its_reason_before_the_upgrade() {
    let server = TestServer::start(|config| {
        config.subscriptions.filter_limits.max_values = 4;
        config.subscriptions.filter_limits.max_regexes = 1;
    });
    let cases = [
        ("/?domian=example.com", "unknown parameter \"domian\""),
        ("/full-stream?type=x509", "expected cert or precert"),
        ("/domains-only?regex=(", "regex:"),
        ("/?keyword=a,b,c,d,e", "5 values, more than the limit of 4"),
        ("/?domain=b%C3%BCcher.example", "xn--"),
        ("/?domain=%zz", "percent-encoded"),
    ];
    for (target, reason) in cases {
        let (status, _, body) = http_request(server.addr, &upgrade_request(target, ""));
        let body = String::from_utf8(body).unwrap();
        assert_eq!(status, 400, "{target}: {body}");
        assert!(body.contains(reason), "{target}: {body}");
        assert_eq!(body.lines().count(), 1, "one line: {body}");
        // The live page asks the same without an upgrade.
        let (status, _, plain) = http_get(server.addr, target);
        assert_eq!((status, plain), (400, body.into_bytes()), "{target}");
    }
    let _held = WsClient::connect(server.addr, "/?regex=%5Ewww%5C.");
    let (status, _, body) = http_request(server.addr, &upgrade_request("/?regex=%5Eapi%5C.", ""));
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("maximum of 1 distinct regexes"));
    let (status, _, page) = http_get(server.addr, "/?domain=example.com&dedup=1");
    assert_eq!(
        status, 200,
        "a valid filter on the page's path gets the page"
    );
    let page = String::from_utf8(page).unwrap();
    assert!(
        page.contains("id=\"query\"") && page.contains("fetch(withToken(\"/\", next))"),
        "the filter box"
    );
    let stats = server.stats();
    let refused = &stats["filters_refused"];
    assert_eq!(refused["unknown_parameter"], 2);
    assert_eq!(
        refused["bad_value"], 4,
        "type and the IDN, twice each: {refused}"
    );
    assert_eq!(refused["bad_regex"], 2);
    assert_eq!(refused["too_many_values"], 2);
    assert_eq!(refused["too_many_regexes"], 1);
    let (_, _, metrics) = http_get(server.addr, "/metrics");
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(metrics.contains("certstream_filters_refused_total{reason=\"too_many_regexes\"} 1\n"));
    assert!(
        metrics.contains("certstream_filter_regexes 1\n"),
        "{metrics}"
    );
}

#[test]
fn dedup_sends_a_certificate_logged_twice_once() {
    let certificate = corpus::messages().swap_remove(0);
    // The same certificate from a second log: another log ID and index, other frames, the same fingerprint.
    let from_log = |log: &str, n: u64| Message {
        meta: MessageMeta {
            log_id: Arc::from(log),
            index: n,
            ..certificate.meta.clone()
        },
        frames: message(n),
    };
    let other = corpus::messages().swap_remove(1);
    assert_ne!(other.meta.fingerprint, certificate.meta.fingerprint);
    let server = TestServer::start(|_| {});
    let mut dedup = WsClient::connect(server.addr, "/?dedup=1");
    let mut plain = WsClient::connect(server.addr, "/");
    server.wait_for_clients(2);
    server.publish(from_log("log A", 1));
    server.publish(from_log("log B", 2));
    server.publish(Message {
        frames: message(3),
        ..other
    });
    assert_eq!(dedup.read_data(), message(1).lite.payload());
    assert_eq!(
        dedup.read_data(),
        message(3).lite.payload(),
        "the copy from log B is skipped"
    );
    for n in 1..=3 {
        assert_eq!(plain.read_data(), message(n).lite.payload());
    }
    let stats = server.stats();
    assert_eq!(stats["dedup"]["skipped"], 1);
    assert_eq!(stats["dedup"]["clients"], 1);
    assert_eq!(stats["dedup"]["fingerprints"], 2);
}
