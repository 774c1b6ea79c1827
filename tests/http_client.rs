//! The HTTP client against hand-written local servers (127.0.0.1 only) that misbehave on purpose: idle closes,
//! slow answers, chunking, gzip, oversize and truncated bodies, resets, TLS with a test CA, DNS fallbacks.
//! Run on both monoio drivers: `cargo test --test http_client` and `MONOIO_FORCE_LEGACY_DRIVER=1 cargo test ...`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use certstream::http::{DEFAULT_USER_AGENT, HttpClient, HttpClientConfig, HttpError};
use certstream_testkit::http::{
    After, Handler, Request, SERVER_IO_TIMEOUT, ScriptedServer, read_request, respond,
    serve_requests,
};
use certstream_testkit::runtime::block_on;

/// Serves HTTPS with `config`, each connection's requests answered by `handler`.
fn serve_tls(handler: Arc<Handler>, config: Arc<rustls::ServerConfig>) -> ScriptedServer {
    ScriptedServer::accept(move |_, stream| {
        let Ok(connection) = rustls::ServerConnection::new(config.clone()) else {
            return;
        };
        serve_requests(rustls::StreamOwned::new(connection, stream), &*handler);
    })
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

fn client() -> HttpClient {
    client_with(|_| {})
}

fn client_with(tweak: impl FnOnce(&mut HttpClientConfig)) -> HttpClient {
    let mut config = HttpClientConfig {
        timeout: Duration::from_secs(5),
        ..HttpClientConfig::default()
    };
    tweak(&mut config);
    HttpClient::new(config).expect("client")
}

/// Echoes the path as the body, so a response can be matched to its request.
fn echo_path(req: &Request, w: &mut dyn Write) -> After {
    respond(w, 200, "Content-Type: text/plain\r\n", req.path.as_bytes());
    After::KeepOpen
}

#[test]
fn keep_alive_reuses_one_connection_and_sends_identity_headers() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let server = ScriptedServer::serve(move |req, w| {
        log.lock().unwrap().push(req.head.clone());
        echo_path(req, w)
    });
    let client = client();
    block_on(async {
        for i in 0..20 {
            let path = format!("/ct/v1/get-entries?start={i}&end={i}");
            let resp = client.get(&server.url(&path)).await.expect("get");
            assert_eq!(resp.status, 200);
            assert_eq!(resp.body, path.as_bytes());
            assert_eq!(resp.header("content-type"), Some("text/plain"));
        }
    });
    assert_eq!(
        server.connections(),
        1,
        "20 sequential requests share one keep-alive connection"
    );
    let heads = seen.lock().unwrap();
    assert!(heads[0].contains("accept-encoding: gzip, identity"));
    assert!(heads[0].contains(&format!(
        "user-agent: {}",
        DEFAULT_USER_AGENT.to_ascii_lowercase()
    )));
    assert!(
        DEFAULT_USER_AGENT.starts_with("certstream-rs/")
            && DEFAULT_USER_AGENT.contains("+https://")
    );
    assert!(heads[0].contains(&format!("host: {}", server.addr)));
}

#[test]
fn idle_connection_closed_by_server_is_retried_transparently() {
    // Answers with keep-alive, then closes: exactly what a server's idle timeout does.
    let server = ScriptedServer::serve(|req, w| {
        echo_path(req, w);
        After::Close
    });
    let client = client();
    block_on(async {
        for i in 0..5 {
            let path = format!("/r{i}");
            let resp = client
                .get(&server.url(&path))
                .await
                .expect("retry on a fresh connection");
            assert_eq!(resp.body, path.as_bytes());
            monoio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    // Each request after the first tries the dead idle connection, then opens a new one.
    assert_eq!(server.connections(), 5);
}

#[test]
fn timed_out_request_never_leaks_into_the_next_one() {
    let server = ScriptedServer::serve(|req, w| {
        if req.path == "/slow" {
            thread::sleep(Duration::from_millis(600));
        }
        echo_path(req, w)
    });
    let client = client();
    block_on(async {
        // Warm a keep-alive connection, so the slow request runs on a *reused* one (the hard case).
        assert_eq!(
            client.get(&server.url("/fast1")).await.expect("fast1").body,
            "/fast1".as_bytes()
        );
        let started = Instant::now();
        let err = client
            .get_with(&server.url("/slow"), &[], Duration::from_millis(150))
            .await
            .unwrap_err();
        assert!(
            matches!(err, HttpError::Timeout(d) if d == Duration::from_millis(150)),
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "the deadline fired on time"
        );
        // Give the server time to write the slow body onto the abandoned connection.
        monoio::time::sleep(Duration::from_millis(700)).await;
        let resp = client.get(&server.url("/fast2")).await.expect("fast2");
        assert_eq!(
            resp.body,
            "/fast2".as_bytes(),
            "not the abandoned request's body"
        );
    });
    assert_eq!(
        server.connections(),
        2,
        "the timed-out connection was dropped, not reused"
    );
}

#[test]
fn dropped_request_future_drops_its_connection() {
    let server = ScriptedServer::serve(|req, w| {
        if req.path == "/slow" {
            thread::sleep(Duration::from_millis(300));
        }
        echo_path(req, w)
    });
    let client = client();
    block_on(async {
        assert_eq!(
            client.get(&server.url("/a")).await.expect("a").body,
            "/a".as_bytes()
        );
        let slow_url = server.url("/slow");
        let slow = client.get(&slow_url);
        monoio::select! {
            _ = slow => panic!("the slow request should lose the race"),
            _ = monoio::time::sleep(Duration::from_millis(50)) => {}
        }
        monoio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            client.get(&server.url("/b")).await.expect("b").body,
            "/b".as_bytes()
        );
    });
    assert_eq!(server.connections(), 2);
}

/// A hostile server: `/hostile` is answered, then `forge_after` later (or in the same write) a forged response
/// nobody asked for follows on the same connection; every other path gets its own path back.
fn serve_forging(forge_after: Option<Duration>) -> ScriptedServer {
    ScriptedServer::serve(move |req, w| {
        if req.path != "/hostile" {
            return echo_path(req, w);
        }
        let forged = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged";
        match forge_after {
            None => {
                // Content-Length covers "/hostile"; the forged response rides behind it.
                let mut out = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n/hostile".to_vec();
                out.extend_from_slice(forged);
                let _ = w.write_all(&out);
            }
            Some(delay) => {
                echo_path(req, w);
                let _ = w.flush();
                thread::sleep(delay);
                let _ = w.write_all(forged);
            }
        }
        After::KeepOpen
    })
}

#[test]
fn bytes_after_a_response_close_the_connection() {
    let server = serve_forging(None);
    let client = client();
    block_on(async {
        for path in ["/hostile", "/next", "/hostile", "/after"] {
            let resp = client.get(&server.url(path)).await.expect("get");
            assert_eq!(resp.body, path.as_bytes(), "{path} got another answer");
        }
    });
    assert_eq!(client.counts().leftover, 2);
    assert_eq!(
        server.connections(),
        3,
        "each hostile exchange cost its connection"
    );
}

#[test]
fn unsolicited_response_on_an_idle_connection_is_never_read_as_an_answer() {
    let server = serve_forging(Some(Duration::from_millis(20)));
    let client = client();
    block_on(async {
        for round in 0..3 {
            let resp = client.get(&server.url("/hostile")).await.expect("hostile");
            assert_eq!(resp.body, "/hostile".as_bytes());
            // The forged response arrives while the connection is idle.
            monoio::time::sleep(Duration::from_millis(80)).await;
            let path = format!("/next{round}");
            let resp = client.get(&server.url(&path)).await.expect("next");
            assert_eq!(
                resp.body,
                path.as_bytes(),
                "the forged response was taken as the answer"
            );
        }
    });
    assert_eq!(client.counts().unsolicited, 3);
}

#[test]
fn another_partition_never_shares_a_connection_with_a_hostile_one() {
    let server = serve_forging(Some(Duration::from_millis(30)));
    let shared = client();
    let (hostile, victim) = (
        shared.partitioned("hostile log"),
        shared.partitioned("victim log"),
    );
    block_on(async {
        for round in 0..3 {
            let resp = hostile.get(&server.url("/hostile")).await.expect("hostile");
            assert_eq!(resp.body, "/hostile".as_bytes());
            // At once, before the forged bytes arrive: nothing on the socket yet to warn a shared pool.
            let path = format!("/victim{round}");
            let resp = victim.get(&server.url(&path)).await.expect("victim");
            assert_eq!(
                resp.body,
                path.as_bytes(),
                "the victim read the hostile log's forged response"
            );
            monoio::time::sleep(Duration::from_millis(60)).await;
        }
    });
}

/// A log that left the list never asks its pool partition again: its idle connection is closed once it expires,
/// when any other partition returns a connection, instead of holding a descriptor forever.
#[test]
fn expired_idle_connections_are_closed_even_if_their_partition_never_asks_again() {
    let (ended, ends) = std::sync::mpsc::channel();
    let server = ScriptedServer::accept(move |n, mut stream| {
        if read_request(&mut stream, &mut Vec::new()).is_some() {
            respond(&mut stream, 200, "", b"ok");
        }
        // Ok(0): the client closed the connection (a timeout is an error).
        let closed_by_client = matches!(stream.read(&mut [0u8; 64]), Ok(0));
        let _ = ended.send((n, closed_by_client));
    });
    let addr = server.addr;
    let shared = client_with(|config| config.idle_timeout = Duration::from_millis(100));
    let (departed, staying) = (
        shared.partitioned("departed log"),
        shared.partitioned("staying log"),
    );
    block_on(async {
        departed.get(&format!("http://{addr}/a")).await.expect("a");
        monoio::time::sleep(Duration::from_millis(200)).await;
        staying.get(&format!("http://{addr}/b")).await.expect("b");
    });
    assert_eq!(
        ends.recv_timeout(SERVER_IO_TIMEOUT - Duration::from_secs(1)),
        Ok((0, true)),
        "the departed log's expired connection is closed"
    );
}

#[test]
fn chunked_body_with_extensions_and_trailers_keeps_framing() {
    let server = ScriptedServer::serve(|req, w| {
        if req.path == "/chunked" {
            let parts: [&[u8]; 4] = [
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n",
                b"1\r\n \r\n6\r\nwor",
                b"ld!\r\n0\r\n",
                b"X-Trailer: yes\r\n\r\n",
            ];
            for part in parts {
                let _ = w.write_all(part);
                let _ = w.flush();
                thread::sleep(Duration::from_millis(10));
            }
            return After::KeepOpen;
        }
        echo_path(req, w)
    });
    let client = client();
    block_on(async {
        let resp = client.get(&server.url("/chunked")).await.expect("chunked");
        assert_eq!(resp.body, "hello world!".as_bytes());
        let resp = client.get(&server.url("/after")).await.expect("after");
        assert_eq!(
            resp.body,
            "/after".as_bytes(),
            "the chunked body was consumed exactly"
        );
    });
    assert_eq!(server.connections(), 1);
}

#[test]
fn gzip_bodies_are_decoded_asked_or_not() {
    let payload = br#"{"tree_size":12345,"timestamp":1}"#.repeat(100);
    let body = payload.clone();
    let server = ScriptedServer::serve(move |req, w| {
        if req.path == "/gzip-chunked" {
            let gz = gzip(&body);
            let (a, b) = gz.split_at(gz.len() / 2);
            let mut out =
                b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
                    .to_vec();
            for part in [a, b] {
                out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                out.extend_from_slice(part);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            let _ = w.write_all(&out);
        } else {
            // Gzip whatever the request asked for: a client must decode it anyway (docs/ct-protocols.md §2.6).
            respond(w, 200, "Content-Encoding: gzip\r\n", &gzip(&body));
        }
        After::KeepOpen
    });
    let client = client();
    block_on(async {
        let asked = client.get(&server.url("/asked")).await.expect("asked");
        assert_eq!(asked.body, payload.as_slice());
        let unasked = client
            .get_with(
                &server.url("/unasked"),
                &[("Accept-Encoding", "identity")],
                Duration::from_secs(5),
            )
            .await
            .expect("unasked");
        assert_eq!(unasked.body, payload.as_slice());
        let chunked = client
            .get(&server.url("/gzip-chunked"))
            .await
            .expect("gzip chunked");
        assert_eq!(chunked.body, payload.as_slice());
    });
}

#[test]
fn bodies_over_the_cap_are_refused() {
    let server = ScriptedServer::serve(|req, w| {
        let big = vec![b'x'; 2000];
        match req.path.as_str() {
            "/length" => respond(w, 200, "", &big),
            "/gzip" => respond(w, 200, "Content-Encoding: gzip\r\n", &gzip(&big)),
            "/chunked" => {
                let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                for _ in 0..4 {
                    out.extend_from_slice(b"1f4\r\n");
                    out.extend_from_slice(&big[..500]);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
                let _ = w.write_all(&out);
            }
            "/eof" => {
                let _ = w.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
                let _ = w.write_all(&big);
                return After::Close;
            }
            _ => respond(w, 200, "", &big[..1000]),
        }
        After::KeepOpen
    });
    let client = client_with(|c| c.max_body_size = 1000);
    block_on(async {
        for path in ["/length", "/gzip", "/chunked", "/eof"] {
            let err = client.get(&server.url(path)).await.unwrap_err();
            assert!(
                matches!(err, HttpError::BodyTooLarge { limit: 1000 }),
                "{path}: {err}"
            );
            assert!(err.to_string().contains("1000-byte cap"));
        }
        let ok = client
            .get(&server.url("/exactly-the-cap"))
            .await
            .expect("a body of exactly the cap is fine");
        assert_eq!(ok.body.len(), 1000);
    });
}

#[test]
fn read_to_eof_body_and_http10_are_not_reused() {
    let server = ScriptedServer::serve(|req, w| {
        let _ = w.write_all(
            format!(
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nbody of {}",
                req.path
            )
            .as_bytes(),
        );
        After::Close
    });
    let client = client();
    block_on(async {
        for path in ["/one", "/two"] {
            let resp = client.get(&server.url(path)).await.expect("eof body");
            assert_eq!(resp.body, format!("body of {path}").as_bytes());
        }
    });
    assert_eq!(
        server.connections(),
        2,
        "a read-to-EOF connection is never put back"
    );
}

#[test]
fn connection_cut_mid_body_is_an_error_and_the_next_request_is_clean() {
    // First connection: half a body, then a reset (closing with unread request bytes makes the kernel send RST).
    // Second connection: a clean close mid-body. Third: a good answer.
    let server = ScriptedServer::accept(|i, mut stream| {
        if i == 2 {
            if read_request(&mut stream, &mut Vec::new()).is_some() {
                respond(&mut stream, 200, "", b"whole");
            }
            return;
        }
        let _ = stream.read_exact(&mut [0u8; 8]);
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly a part");
        thread::sleep(Duration::from_millis(50));
        if i == 1 {
            let _ = stream.read(&mut [0u8; 4096]);
        }
    });
    let addr = server.addr;
    let client = client();
    block_on(async {
        let url = format!("http://{addr}/x");
        let reset = client.get(&url).await.unwrap_err();
        assert!(
            matches!(reset, HttpError::Io(_) | HttpError::Protocol(_)),
            "reset: {reset}"
        );
        let cut = client.get(&url).await.unwrap_err();
        assert!(
            matches!(&cut, HttpError::Protocol(m) if m.contains("11 of 1000")),
            "cut: {cut}"
        );
        assert_eq!(
            client.get(&url).await.expect("fresh connection").body,
            "whole".as_bytes()
        );
    });
}

#[test]
fn malformed_responses_are_protocol_errors() {
    let server = ScriptedServer::serve(|req, w| {
        let raw: &[u8] = match req.path.as_str() {
            "/garbage" => b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
            "/bad-chunk" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        };
        let _ = w.write_all(raw);
        After::Close
    });
    let client = client();
    block_on(async {
        for path in ["/garbage", "/bad-chunk", "/two-lengths"] {
            let err = client.get(&server.url(path)).await.unwrap_err();
            assert!(matches!(err, HttpError::Protocol(_)), "{path}: {err}");
        }
        let bad_agent = HttpClientConfig {
            user_agent: "x\r\nInjected: 1".into(),
            ..HttpClientConfig::default()
        };
        assert!(matches!(
            HttpClient::new(bad_agent),
            Err(HttpError::InvalidHeader { .. })
        ));
        let err = client.get("ftp://example.com/").await.unwrap_err();
        assert!(matches!(err, HttpError::InvalidUrl { .. }), "{err}");
        let err = client
            .get_with(
                &server.url("/"),
                &[("X-Bad", "a\r\nb")],
                Duration::from_secs(1),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::InvalidHeader { .. }), "{err}");
    });
}

#[test]
fn localhost_resolves_off_thread() {
    let server = ScriptedServer::serve(echo_path);
    let client = client();
    block_on(async {
        let url = format!("http://localhost:{}/named", server.addr.port());
        assert_eq!(
            client.get(&url).await.expect("localhost").body,
            "/named".as_bytes()
        );
        let err = client
            .get("http://no-such-host.invalid/")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, HttpError::Dns { host, .. } if host == "no-such-host.invalid"),
            "{err}"
        );
    });
}

/// An address with nothing listening.
fn closed_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], certstream_testkit::closed_port()))
}

#[test]
fn every_resolved_address_is_tried_in_order() {
    let server = ScriptedServer::serve(echo_path);
    let refused = closed_port();
    let client = client_with(|c| {
        c.resolve_overrides.insert(
            ("multi.test".into(), 80),
            vec![refused, refused, server.addr],
        );
        c.resolve_overrides
            .insert(("dead.test".into(), 80), vec![refused, closed_port()]);
    });
    block_on(async {
        let resp = client
            .get("http://multi.test/third-address")
            .await
            .expect("third address answers");
        assert_eq!(resp.body, "/third-address".as_bytes());
        let err = client.get("http://dead.test/").await.unwrap_err();
        assert!(matches!(&err, HttpError::Connect { tried: 2, .. }), "{err}");
    });
}

/// A test CA and a server certificate for `ct.test` signed by it.
struct TestPki {
    ca: rustls::pki_types::CertificateDer<'static>,
    server: Arc<rustls::ServerConfig>,
}

fn test_pki() -> TestPki {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "certstream test CA");
    let ca =
        rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().expect("key"))
            .expect("ca");
    let leaf_key = rcgen::KeyPair::generate().expect("key");
    let leaf_params =
        rcgen::CertificateParams::new(vec!["ct.test".to_string()]).expect("leaf params");
    let leaf = leaf_params.signed_by(&leaf_key, &ca).expect("leaf");
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).expect("key der");
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .expect("server config");
    TestPki {
        ca: ca.der().clone(),
        server: Arc::new(server),
    }
}

#[test]
fn https_with_a_test_ca_keeps_alive_and_survives_timeouts() {
    let pki = test_pki();
    let handler: Arc<Handler> = Arc::new(|req: &Request, w: &mut dyn Write| {
        if req.path == "/slow" {
            thread::sleep(Duration::from_millis(400));
        }
        respond(
            w,
            200,
            "Content-Encoding: gzip\r\n",
            &gzip(req.path.as_bytes()),
        );
        After::KeepOpen
    });
    let server = serve_tls(handler, pki.server.clone());
    let port = server.addr.port();
    let trusting = client_with(|c| {
        c.use_webpki_roots = false;
        c.extra_roots.push(pki.ca.clone());
        c.resolve_overrides
            .insert(("ct.test".into(), port), vec![server.addr]);
    });
    let untrusting = client_with(|c| {
        c.resolve_overrides
            .insert(("ct.test".into(), port), vec![server.addr]);
    });
    block_on(async {
        let url = |path: &str| format!("https://ct.test:{port}{path}");
        for i in 0..3 {
            let path = format!("/tls{i}");
            assert_eq!(
                trusting.get(&url(&path)).await.expect("https").body,
                path.as_bytes()
            );
        }
        // A timeout on a reused TLS connection: the case that panics monoio-http-client.
        let err = trusting
            .get_with(&url("/slow"), &[], Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::Timeout(_)), "{err}");
        monoio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            trusting
                .get(&url("/after"))
                .await
                .expect("after timeout")
                .body,
            "/after".as_bytes()
        );

        let err = untrusting.get(&url("/x")).await.unwrap_err();
        assert!(matches!(err, HttpError::Tls { .. }), "{err}");
        assert!(
            err.to_string().contains("UnknownIssuer"),
            "the cause is readable: {err}"
        );

        // The certificate is for ct.test, not for the IP.
        let err = trusting
            .get(&format!("https://{}/x", server.addr))
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::Tls { .. }), "{err}");
    });
    // 1 for the three requests, 1 after the timeout, 1 refused by the untrusting client, 1 by the IP-name mismatch.
    assert_eq!(server.connections(), 4);
}

#[test]
fn unsolicited_tls_record_on_an_idle_connection_is_seen_on_the_socket() {
    let pki = test_pki();
    let handler: Arc<Handler> = Arc::new(|req: &Request, w: &mut dyn Write| {
        respond(w, 200, "", req.path.as_bytes());
        if req.path == "/hostile" {
            let _ = w.flush();
            thread::sleep(Duration::from_millis(20));
            let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged");
        }
        After::KeepOpen
    });
    let server = serve_tls(handler, pki.server.clone());
    let port = server.addr.port();
    let client = client_with(|c| {
        c.use_webpki_roots = false;
        c.extra_roots.push(pki.ca.clone());
        c.resolve_overrides
            .insert(("ct.test".into(), port), vec![server.addr]);
    });
    block_on(async {
        let url = |path: &str| format!("https://ct.test:{port}{path}");
        for path in ["/a", "/b", "/hostile"] {
            assert_eq!(
                client.get(&url(path)).await.expect("https").body,
                path.as_bytes()
            );
        }
        monoio::time::sleep(Duration::from_millis(80)).await;
        let resp = client.get(&url("/next")).await.expect("https");
        assert_eq!(
            resp.body,
            "/next".as_bytes(),
            "the forged record was read as the answer"
        );
    });
    assert_eq!(client.counts().unsolicited, 1);
    assert_eq!(
        server.connections(),
        2,
        "reused until the forgery (session tickets are no alarm)"
    );
}

#[test]
fn reports_the_driver_in_use() {
    let legacy = block_on(async { monoio::utils::is_legacy() });
    eprintln!(
        "monoio driver: {}",
        if legacy { "legacy (epoll)" } else { "io_uring" }
    );
    if std::env::var_os("MONOIO_FORCE_LEGACY_DRIVER").is_some() {
        assert!(
            legacy,
            "MONOIO_FORCE_LEGACY_DRIVER must select the epoll driver"
        );
    }
}
