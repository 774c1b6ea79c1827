//! Filter semantics (README "Filters") against real certificates: the corpus's 1,064 entries and certificates
//! built here for what the corpus lacks (IDNs, uppercase, trailing dots, IP addresses). One row per filter.

use certstream::filter::{Limits, Registry, Selection, SpecMatcher};
use certstream::message::Message;
use certstream_testkit::corpus;
use certstream_testkit::der::{CertSpec, ext, implicit, name, seq, utf8};

/// How many of `messages` the filter of `query` (`a=1&b=2`, already decoded) selects, evaluated both ways: in the
/// registry (live messages) and on its own (a resuming client's missed messages), which must agree.
fn matching(registry: &Registry, messages: &[Message], query: &str) -> usize {
    let pairs: Vec<(&str, &str)> = query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap())
        .collect();
    let selection = Selection::from_query(pairs, registry).expect(query);
    let filter = selection.filter.expect("a filter");
    let alone = SpecMatcher::new(filter.spec(), Limits::default().regex_size_limit).expect(query);
    (1..)
        .zip(messages)
        .filter(|(seq, message)| {
            registry.evaluate(&message.meta, *seq);
            let matched = filter.matches(*seq);
            assert_eq!(
                alone.matches(&message.meta),
                matched,
                "{query}: {:?}",
                message.meta
            );
            matched
        })
        .count()
}

#[test]
fn filters_select_the_corpus_certificates_they_describe() {
    let messages = corpus::messages();
    assert_eq!(messages.len(), 1_064);
    // Counted independently of the server (a script over the entries' all_domains, issuer and type).
    let table = [
        // A wildcard entry `*.secret-sierra-7014…` matches its base name; so does a deeper name.
        ("domain=secret-sierra-7014.staging.herokuspace.com", 2),
        ("domain=herokuspace.com", 3),
        ("domain=*.herokuspace.com.", 3),
        ("domain=HerokuSpace.COM", 3),
        // Suffixes match at label boundaries only.
        ("domain=erokuspace.com", 0),
        ("domain=com", 156),
        ("keyword=sberbank", 33),
        ("keyword=SberBank", 33),
        ("type=cert", 26),
        ("type=precert", 1_064 - 26),
        ("type=cert,precert", 1_064),
        ("issuer=zerossl", 8),
        ("regex=^pochta", 19),
        // Different parameters AND; values of one parameter OR (repeated or comma-separated).
        ("domain=top&keyword=sber", 60),
        ("domain=jccsmatrei.top,herokuspace.com", 95),
        ("domain=jccsmatrei.top&domain=herokuspace.com", 95),
        ("type=cert&issuer=let's encrypt", 18),
    ];
    let registry = Registry::new(Limits::default());
    for (query, expected) in table {
        assert_eq!(matching(&registry, &messages, query), expected, "{query}");
    }
}

#[test]
fn names_match_whatever_their_case_wildcard_or_trailing_dot_and_ip_addresses_are_not_names() {
    const SAN: &str = "2.5.29.17";
    let dns = |name: &str| implicit(2, name.as_bytes());
    let ip = implicit(7, &[192, 0, 2, 1]);
    let spec = CertSpec {
        subject: name(&[("2.5.4.3", utf8("Shop.EXAMPLE.com."))]),
        extensions: vec![ext(
            SAN,
            false,
            &seq(&[dns("*.xn--bcher-kva.example"), dns("Shop.EXAMPLE.com."), ip]),
        )],
        ..CertSpec::default()
    };
    let message = corpus::message_of_certificate(&spec.der());
    assert!(
        message
            .meta
            .all_domains
            .iter()
            .all(|n| !n.contains("192.0.2")),
        "IP SANs are not in all_domains: {:?}",
        message.meta.all_domains
    );
    let messages = [message];
    let registry = Registry::new(Limits::default());
    for (query, expected) in [
        ("domain=shop.example.com", 1),
        ("domain=example.com.", 1),
        ("domain=xn--bcher-kva.example", 1),
        ("domain=*.xn--bcher-kva.example", 1),
        ("domain=www.xn--bcher-kva.example", 0),
        ("keyword=BCHER", 1),
        ("keyword=shop.example.com.", 1),
        ("regex=^Shop\\.", 1),
        ("regex=^shop\\.", 0),
        ("domain=192.0.2.1", 0),
        ("keyword=192.0.2", 0),
        ("issuer=test ca", 1),
    ] {
        assert_eq!(matching(&registry, &messages, query), expected, "{query}");
    }
    let unicode = Selection::from_query([("domain", "bücher.example")], &registry).unwrap_err();
    assert!(unicode.to_string().contains("xn--"), "{unicode}");
}
