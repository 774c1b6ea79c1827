mod e2e_support;
use certstream::ct::get_entries::{parse_get_entries, parse_get_entries_upto, scan_get_entries};
use e2e_support::{Mock, request};
use std::time::Instant;
#[test]
fn timing() {
    let mock = Mock::start(&["--rfc6962", "1", "--tiled", "0", "--rate", "0", "--start-size", "2000", "--page-cap", "1000"]);
    let (s, body) = request(&mock.addr, "GET", "/rfc6962/r0/ct/v1/get-entries?start=0&end=999", b"");
    assert_eq!(s, 200);
    for _ in 0..3 {
        let t = Instant::now();
        let n = parse_get_entries_upto(&body, 1000).unwrap().len();
        eprintln!("upto: {} entries {} bytes in {:?}", n, body.len(), t.elapsed());
        let t = Instant::now();
        let page = scan_get_entries(&body, 1000).unwrap();
        let scan = t.elapsed();
        let t = Instant::now();
        let _ = page.decode(0..100).unwrap();
        eprintln!("scan {:?}, decode 100 {:?}", scan, t.elapsed());
    }
    mock.set_faults(r#"[{"kind":"tiny-entries"}]"#);
    let (s, body) = request(&mock.addr, "GET", "/rfc6962/r0/ct/v1/get-entries?start=0&end=999", b"");
    assert_eq!(s, 200);
    let t = Instant::now();
    let n = parse_get_entries_upto(&body, 1000).unwrap().len();
    eprintln!("tiny upto: {} entries {} bytes in {:?}", n, body.len(), t.elapsed());
    let t = Instant::now();
    let n = parse_get_entries(&body).unwrap().len();
    eprintln!("tiny full: {} entries in {:?}", n, t.elapsed());
}
