//! The mock run in-process (as the test kit runs it): dropping it ends its open connections too, so a client that
//! keeps a connection alive cannot go on talking to a mock its test has dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use mock_ct_log::{MockServer, parse_options};

#[test]
fn dropping_the_mock_ends_its_keep_alive_connections() {
    let args = ["--listen", "127.0.0.1:0", "--rfc6962", "1", "--tiled", "0"];
    let mock = MockServer::start(parse_options(args.map(String::from)).expect("options"))
        .expect("mock starts");
    let mut client = TcpStream::connect(&mock.addr).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    client
        .write_all(b"GET /log_list.json HTTP/1.1\r\nHost: mock\r\n\r\n")
        .expect("request");
    let mut first = [0u8; 12];
    client.read_exact(&mut first).expect("a response starts");
    assert_eq!(&first, b"HTTP/1.1 200");
    drop(mock);
    // Drain the rest of the response; then the connection must end, well before the mock's 120 s idle timeout.
    let mut rest = Vec::new();
    let ended = client.read_to_end(&mut rest);
    assert!(ended.is_ok(), "the connection stayed open: {ended:?}");
}
