//! The golden messages, checked field by field against pyca/cryptography's reading of the same DER
//! (tests/python/crosscheck_certs.py). Needs the Python of `certstream_testkit::python`; without it the test fails, naming the
//! command that prepares it.

use std::process::Command;

#[test]
fn golden_certificates_agree_with_pyca_cryptography() {
    let python = certstream_testkit::python::interpreter();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/crosscheck_certs.py"
    );
    let output = Command::new(&python)
        .arg(script)
        .output()
        .expect("running the Python cross-check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "cross-check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("cross-checked 1161 certificates, 0 mismatches"),
        "{stdout}"
    );
}
