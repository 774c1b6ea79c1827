//! The RFC 6455 layer from the outside: the client-frame decoder and the opening handshake.

use certstream_testkit::raw_client_frame;
use certstream_ws::decode::{CloseFrame, Decoder, ErrorKind, Event, ProtocolError, unmask};
use certstream_ws::frame::Frame;
use certstream_ws::handshake::{accept_key, check_upgrade, switching_protocols, wants_upgrade};
use proptest::prelude::*;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const FIN: u8 = 0x80;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CONTINUATION: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// A masked client frame.
fn frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    raw_client_frame(first_byte, payload, Some(MASK))
}

/// Feeds `bytes` at once and collects events until more input is needed or an error occurs.
fn decode_all(max: usize, bytes: &[u8]) -> (Vec<Event>, Option<ProtocolError>) {
    let mut decoder = Decoder::new(max);
    decoder.extend(bytes);
    drain(&mut decoder)
}

fn drain(decoder: &mut Decoder) -> (Vec<Event>, Option<ProtocolError>) {
    let mut events = Vec::new();
    loop {
        match decoder.next_event() {
            Ok(Some(event)) => events.push(event),
            Ok(None) => return (events, None),
            Err(error) => return (events, Some(error)),
        }
    }
}

/// The error decoding `bytes` must produce (and no event before it).
fn expect_error(bytes: &[u8]) -> ProtocolError {
    let (events, error) = decode_all(1 << 16, bytes);
    assert!(events.is_empty(), "unexpected events {events:?}");
    error.expect("decoding should fail")
}

#[test]
fn fragmented_text_with_interleaved_control_frames() {
    let mut wire = frame(TEXT, b"Hel");
    wire.extend(frame(FIN | PING, b"are you there"));
    wire.extend(frame(CONTINUATION, b"lo "));
    wire.extend(frame(FIN | PONG, b""));
    wire.extend(frame(FIN | CONTINUATION, b"world"));
    wire.extend(frame(FIN | BINARY, &[0, 1, 2, 255]));
    let (events, error) = decode_all(1 << 16, &wire);
    assert_eq!(error, None);
    assert_eq!(
        events,
        vec![
            Event::Ping(b"are you there".to_vec()),
            Event::Pong(Vec::new()),
            Event::Text(b"Hello world".to_vec()),
            Event::Binary(vec![0, 1, 2, 255]),
        ]
    );
}

#[test]
fn seven_sixteen_and_sixty_four_bit_lengths() {
    for len in [0, 1, 125, 126, 127, 0xFFFF, 0x10000, 200_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let (events, error) = decode_all(1 << 20, &frame(FIN | BINARY, &payload));
        assert_eq!(error, None, "len {len}");
        assert_eq!(events, vec![Event::Binary(payload)], "len {len}");
    }
    // A non-minimal length encoding is tolerated: 5 bytes announced in 64 bits.
    let mut wire = vec![FIN | TEXT, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 5];
    wire.extend_from_slice(&MASK);
    wire.extend(b"hello".iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    assert_eq!(
        decode_all(16, &wire),
        (vec![Event::Text(b"hello".to_vec())], None)
    );
}

#[test]
fn unmasked_client_frame_is_a_protocol_error() {
    let error = expect_error(&raw_client_frame(FIN | TEXT, b"hi", None));
    assert_eq!(error.kind(), ErrorKind::Unmasked);
    assert_eq!(error.close_code(), 1002);
}

#[test]
fn reserved_bits_are_a_protocol_error() {
    for rsv in [0x40, 0x20, 0x10, 0x70] {
        let error = expect_error(&frame(FIN | rsv | TEXT, b"hi"));
        assert_eq!(error.kind(), ErrorKind::ReservedBits, "rsv {rsv:#x}");
        assert_eq!(error.close_code(), 1002);
    }
}

#[test]
fn reserved_opcodes_are_a_protocol_error() {
    for opcode in (3..=7).chain(0xB..=0xF) {
        let error = expect_error(&frame(FIN | opcode, b""));
        assert_eq!(error.kind(), ErrorKind::ReservedOpcode(opcode));
        assert_eq!(error.close_code(), 1002);
    }
}

#[test]
fn sixty_four_bit_length_with_msb_set_fails_from_the_header_alone() {
    let mut decoder = Decoder::new(usize::MAX);
    decoder.extend(&[FIN | BINARY, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1]);
    let error = decoder.next_event().expect_err("MSB set");
    assert_eq!(error.kind(), ErrorKind::LengthMsbSet);
    assert_eq!(error.close_code(), 1002);
}

#[test]
fn control_frame_rules() {
    let error = expect_error(&frame(PING, b"x"));
    assert_eq!(
        (error.kind(), error.close_code()),
        (ErrorKind::FragmentedControl, 1002)
    );
    let error = expect_error(&frame(FIN | PING, &[b'x'; 126]));
    assert_eq!(
        (error.kind(), error.close_code()),
        (ErrorKind::ControlTooLong, 1002)
    );
    let (events, error) = decode_all(16, &frame(FIN | PING, &[b'x'; 125]));
    assert_eq!((events, error), (vec![Event::Ping(vec![b'x'; 125])], None));
}

#[test]
fn fragmentation_sequence_rules() {
    let error = expect_error(&frame(FIN | CONTINUATION, b"orphan"));
    assert_eq!(
        (error.kind(), error.close_code()),
        (ErrorKind::UnexpectedContinuation, 1002)
    );
    let mut wire = frame(TEXT, b"first");
    wire.extend(frame(FIN | TEXT, b"second"));
    let error = expect_error(&wire);
    assert_eq!(
        (error.kind(), error.close_code()),
        (ErrorKind::ExpectedContinuation, 1002)
    );
}

#[test]
fn oversize_message_fails_with_1009_before_its_payload_arrives() {
    let max = 64 * 1024;
    // Only the header of a frame announcing max + 1 bytes: the error comes without the payload being sent.
    let header = &frame(FIN | TEXT, &vec![b'a'; max + 1])[..10]; // 64-bit length, no mask key yet
    let mut decoder = Decoder::new(max);
    decoder.extend(header);
    let error = decoder.next_event().expect_err("too big");
    assert_eq!(
        (error.kind(), error.close_code()),
        (ErrorKind::MessageTooBig, 1009)
    );

    // Exactly at the limit is fine.
    let (events, error) = decode_all(max, &frame(FIN | BINARY, &vec![1; max]));
    assert_eq!((events.len(), error), (1, None));

    // The limit applies to the whole message: the second fragment's header pushes it over.
    let mut decoder = Decoder::new(max);
    decoder.extend(&frame(BINARY, &vec![1; max - 10]));
    assert_eq!(decoder.next_event(), Ok(None));
    decoder.extend(&frame(FIN | CONTINUATION, &[2; 11])[..4]);
    assert_eq!(decoder.next_event().map_err(|e| e.close_code()), Err(1009));
}

#[test]
fn invalid_utf8_fails_at_the_first_bad_fragment() {
    // "κόσμε" then a fragment starting with 0xF4 0x90 (beyond U+10FFFF); the third fragment is never sent.
    let mut decoder = Decoder::new(1 << 16);
    decoder.extend(&frame(TEXT, "κόσμε".as_bytes()));
    assert_eq!(decoder.next_event(), Ok(None));
    decoder.extend(&frame(CONTINUATION, &[0xF4, 0x90, 0x80, 0x80]));
    let error = decoder.next_event().expect_err("invalid UTF-8");
    assert_eq!(
        (error.kind(), error.close_code()),
        (ErrorKind::InvalidUtf8, 1007)
    );
    // The error is sticky.
    decoder.extend(&frame(FIN | CONTINUATION, b"edited"));
    assert_eq!(decoder.next_event(), Err(error));
}

#[test]
fn invalid_utf8_split_across_fragments_fails_at_the_byte_that_breaks_it() {
    // 0xCE starts a valid 2-byte sequence: the first fragment is acceptable on its own.
    let mut decoder = Decoder::new(1 << 16);
    decoder.extend(&frame(TEXT, &[b'a', 0xCE]));
    assert_eq!(decoder.next_event(), Ok(None));
    // 0x41 cannot continue it.
    decoder.extend(&frame(CONTINUATION, &[0x41]));
    assert_eq!(decoder.next_event().map_err(|e| e.close_code()), Err(1007));

    // A code point split across fragments is valid.
    let mut wire = frame(TEXT, &[b'a', 0xCE]);
    wire.extend(frame(FIN | CONTINUATION, &[0xBA, b'b']));
    assert_eq!(
        decode_all(16, &wire),
        (vec![Event::Text("aκb".as_bytes().to_vec())], None)
    );

    // A message that ends inside a code point is invalid.
    assert_eq!(
        expect_error(&frame(FIN | TEXT, &[b'a', 0xCE])).close_code(),
        1007
    );
}

#[test]
fn invalid_utf8_inside_one_frame_fails_before_the_frame_completes() {
    // Autobahn 6.4.3: one frame whose bytes arrive in chops; the bad bytes are in the middle.
    let payload = [&b"hello"[..], &[0xF4, 0x90, 0x80, 0x80], b"world"].concat();
    let wire = frame(FIN | TEXT, &payload);
    let mut decoder = Decoder::new(1 << 16);
    decoder.extend(&wire[..6 + 5]);
    assert_eq!(decoder.next_event(), Ok(None));
    decoder.extend(&wire[6 + 5..6 + 7]);
    assert_eq!(decoder.next_event().map_err(|e| e.close_code()), Err(1007));
}

#[test]
fn close_code_validation_table() {
    let valid = [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ];
    for code in valid {
        let payload = [&u16::to_be_bytes(code)[..], b"bye"].concat();
        let (events, error) = decode_all(16, &frame(FIN | CLOSE, &payload));
        assert_eq!(error, None, "code {code}");
        assert_eq!(
            events,
            vec![Event::Close(Some(CloseFrame {
                code,
                reason: "bye".into()
            }))]
        );
    }
    let invalid: [u16; 13] = [
        0, 999, 1004, 1005, 1006, 1012, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ];
    for code in invalid {
        let error = expect_error(&frame(FIN | CLOSE, &code.to_be_bytes()));
        assert_eq!(
            (error.kind(), error.close_code()),
            (ErrorKind::InvalidCloseCode(code), 1002),
            "code {code}"
        );
    }
    let error = expect_error(&frame(FIN | CLOSE, &[0x03]));
    assert_eq!(
        (error.kind(), error.close_code()),
        (ErrorKind::CloseTooShort, 1002)
    );
    let error = expect_error(&frame(FIN | CLOSE, &[0x03, 0xE8, 0xED, 0xA0, 0x80]));
    assert_eq!(
        (error.kind(), error.close_code()),
        (ErrorKind::InvalidCloseReason, 1007)
    );
}

#[test]
fn nothing_is_decoded_after_a_close() {
    let mut wire = frame(FIN | CLOSE, b"");
    wire.extend(frame(FIN | TEXT, b"late"));
    let mut decoder = Decoder::new(16);
    decoder.extend(&wire);
    assert_eq!(decoder.next_event(), Ok(Some(Event::Close(None))));
    assert_eq!(decoder.next_event(), Ok(None));
    decoder.extend(&frame(FIN | TEXT, b"later"));
    assert_eq!(decoder.next_event(), Ok(None));
}

/// A conversation touching every decoder state: fragments, interleaved control frames, 16-bit lengths, close.
fn conversation() -> Vec<u8> {
    let mut wire = frame(TEXT, "héllo ".as_bytes());
    wire.extend(frame(FIN | PING, b"ping"));
    wire.extend(frame(CONTINUATION, &"wörld ".as_bytes()[..2]));
    wire.extend(frame(FIN | CONTINUATION, &"wörld ".as_bytes()[2..]));
    wire.extend(frame(
        FIN | BINARY,
        &(0..300).map(|i| i as u8).collect::<Vec<_>>(),
    ));
    wire.extend(frame(FIN | TEXT, b""));
    wire.extend(frame(FIN | PONG, b"pong"));
    wire.extend(frame(FIN | CLOSE, &[0x03, 0xE8, b'o', b'k']));
    wire
}

#[test]
fn a_stream_split_at_every_byte_boundary_decodes_identically() {
    let wire = conversation();
    let (whole, error) = decode_all(1024, &wire);
    assert_eq!(error, None);
    assert_eq!(whole.len(), 6);
    for split in 0..=wire.len() {
        let mut decoder = Decoder::new(1024);
        decoder.extend(&wire[..split]);
        let (mut events, error) = drain(&mut decoder);
        assert_eq!(error, None, "split {split}");
        decoder.extend(&wire[split..]);
        let (rest, error) = drain(&mut decoder);
        assert_eq!(error, None, "split {split}");
        events.extend(rest);
        assert_eq!(events, whole, "split {split}");
    }
    // And one byte at a time.
    let mut decoder = Decoder::new(1024);
    let mut events = Vec::new();
    for byte in &wire {
        decoder.extend(std::slice::from_ref(byte));
        let (new, error) = drain(&mut decoder);
        assert_eq!(error, None);
        events.extend(new);
    }
    assert_eq!(events, whole);
}

#[test]
fn ping_and_pong_frames_carry_the_payload() {
    assert_eq!(
        Frame::pong(b"abc").wire().as_ref(),
        &[0x8A, 3, b'a', b'b', b'c']
    );
    assert_eq!(Frame::ping(b"").wire().as_ref(), &[0x89, 0]);
}

fn header<'a>(name: &'a str, value: &'a str) -> httparse::Header<'a> {
    httparse::Header {
        name,
        value: value.as_bytes(),
    }
}

/// The headers of a valid upgrade request, with `name` replaced by `value` (or removed when `value` is `None`).
fn request_with(name: &str, value: Option<&'static str>) -> Vec<httparse::Header<'static>> {
    let base = [
        ("Host", "example.com"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    base.iter()
        .filter_map(|&(n, v)| match (n.eq_ignore_ascii_case(name), value) {
            (false, _) => Some(header(n, v)),
            (true, Some(replacement)) => Some(header(n, replacement)),
            (true, None) => None,
        })
        .collect()
}

#[test]
fn accept_key_matches_the_rfc_example() {
    assert_eq!(
        accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn valid_request_is_accepted_and_answered_with_101() {
    let upgrade = check_upgrade("GET", 1, &request_with("", None)).expect("valid request");
    assert_eq!(upgrade.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    let response = String::from_utf8(switching_protocols(&upgrade)).expect("ASCII");
    assert!(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(response.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(
        response.contains("\r\nUpgrade: websocket\r\n")
            && response.contains("\r\nConnection: Upgrade\r\n")
    );
    assert!(response.ends_with("\r\n\r\n"));
}

#[test]
fn offered_extensions_are_never_echoed() {
    let mut headers = request_with("", None);
    headers.push(header(
        "Sec-WebSocket-Extensions",
        "permessage-deflate; client_max_window_bits",
    ));
    headers.push(header("Sec-WebSocket-Protocol", "chat"));
    let upgrade = check_upgrade("GET", 1, &headers).expect("extensions are ignored, not refused");
    let response = String::from_utf8(switching_protocols(&upgrade))
        .expect("ASCII")
        .to_ascii_lowercase();
    assert!(!response.contains("sec-websocket-extensions"));
    assert!(!response.contains("sec-websocket-protocol"));
}

#[test]
fn token_lists_and_case_are_accepted() {
    for (name, value) in [
        ("Connection", "keep-alive, Upgrade"),
        ("Connection", "upgrade"),
        ("Upgrade", "h2c, WebSocket"),
        ("Upgrade", " websocket "),
    ] {
        let headers = request_with(name, Some(value));
        assert!(check_upgrade("GET", 1, &headers).is_ok(), "{name}: {value}");
    }
    let mut headers = request_with("Connection", Some("keep-alive"));
    headers.push(header("connection", "Upgrade"));
    assert!(
        check_upgrade("GET", 1, &headers).is_ok(),
        "tokens spread over two Connection headers"
    );
}

#[test]
fn bad_requests_get_400() {
    let cases: Vec<(&str, &str, u8, Vec<httparse::Header<'static>>)> = vec![
        ("POST", "method", 1, request_with("", None)),
        ("GET", "HTTP/1.0", 0, request_with("", None)),
        ("GET", "no Host", 1, request_with("Host", None)),
        ("GET", "no Upgrade", 1, request_with("Upgrade", None)),
        (
            "GET",
            "Upgrade: h2c",
            1,
            request_with("Upgrade", Some("h2c")),
        ),
        ("GET", "no Connection", 1, request_with("Connection", None)),
        (
            "GET",
            "Connection: keep-alive",
            1,
            request_with("Connection", Some("keep-alive")),
        ),
        ("GET", "no key", 1, request_with("Sec-WebSocket-Key", None)),
        (
            "GET",
            "key not base64",
            1,
            request_with("Sec-WebSocket-Key", Some("not base64!")),
        ),
        (
            "GET",
            "key of 15 bytes",
            1,
            request_with("Sec-WebSocket-Key", Some("AAAAAAAAAAAAAAAAAAAA")),
        ),
        (
            "GET",
            "no version",
            1,
            request_with("Sec-WebSocket-Version", None),
        ),
    ];
    for (method, what, version, headers) in cases {
        let error = check_upgrade(method, version, &headers).expect_err(what);
        assert_eq!(error.status(), 400, "{what}");
        let response = String::from_utf8(error.response()).expect("ASCII");
        assert!(
            response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{what}"
        );
        let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{what}"
        );
    }
    let mut headers = request_with("", None);
    headers.push(header("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAA=="));
    assert_eq!(
        check_upgrade("GET", 1, &headers).map_err(|e| e.status()),
        Err(400),
        "two keys"
    );
}

#[test]
fn other_versions_get_426_naming_version_13() {
    for version in ["8", "12", "14", "13, 8"] {
        let error = check_upgrade(
            "GET",
            1,
            &request_with("Sec-WebSocket-Version", Some(version)),
        )
        .expect_err(version);
        assert_eq!(error.status(), 426);
        let response = String::from_utf8(error.response()).expect("ASCII");
        assert!(response.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(response.contains("\r\nSec-WebSocket-Version: 13\r\n"));
    }
}

#[test]
fn wants_upgrade_looks_only_at_the_upgrade_header() {
    assert!(wants_upgrade(&[header("upgrade", "WebSocket")]));
    assert!(wants_upgrade(&[header("Upgrade", "foo, websocket")]));
    assert!(!wants_upgrade(&[header("Upgrade", "h2c")]));
    assert!(!wants_upgrade(&[header("Connection", "Upgrade")]));
    assert!(!wants_upgrade(&[]));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512),
                                   cuts in proptest::collection::vec(0usize..512, 0..8),
                                   max in 0usize..300) {
        let mut decoder = Decoder::new(max);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
        cuts.push(bytes.len());
        cuts.sort_unstable();
        let mut start = 0;
        for cut in cuts {
            decoder.extend(&bytes[start..cut]);
            start = cut;
            let (_, error) = drain(&mut decoder);
            if let Some(error) = error {
                prop_assert!([1002, 1007, 1009].contains(&error.close_code()));
                prop_assert_eq!(decoder.next_event(), Err(error));
                break;
            }
        }
    }

    #[test]
    fn masked_frames_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..2000),
                                mask in any::<[u8; 4]>(), split in 0usize..2100) {
        let wire = raw_client_frame(FIN | BINARY, &payload, Some(mask));
        let split = split.min(wire.len());
        let mut decoder = Decoder::new(4096);
        decoder.extend(&wire[..split]);
        let (mut events, error) = drain(&mut decoder);
        prop_assert_eq!(error, None);
        decoder.extend(&wire[split..]);
        events.extend(drain(&mut decoder).0);
        prop_assert_eq!(events, vec![Event::Binary(payload)]);
    }

    #[test]
    fn word_unmasking_matches_bytewise(data in proptest::collection::vec(any::<u8>(), 0..100),
                                       mask in any::<[u8; 4]>(), phase in 0usize..8) {
        let mut fast = data.clone();
        unmask(&mut fast, mask, phase);
        let slow: Vec<u8> = data.iter().enumerate().map(|(i, b)| b ^ mask[(phase + i) % 4]).collect();
        prop_assert_eq!(fast, slow);
    }
}
