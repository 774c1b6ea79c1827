//! The Python interpreter of the tests that run real clients (PyPI `certstream`, `websockets`) or pyca/cryptography.
//! Without it these tests fail, naming the command that prepares it: they never skip.

use std::path::Path;
use std::process::Command;

/// The one command that prepares the interpreter, run from the repository (`tests/run.sh` runs it too).
pub const PREPARE: &str =
    "python3 -m venv .venv && .venv/bin/pip install -r tests/python-requirements.txt";

/// What `tests/python-requirements.txt` installs, as the tests import it.
const MODULES: &str = "certstream, websockets, cryptography";

/// `$CERTSTREAM_TEST_PYTHON`, else the repository's `.venv/bin/python`, checked to import the test modules.
pub fn interpreter() -> String {
    let python = match std::env::var("CERTSTREAM_TEST_PYTHON") {
        Ok(python) => python,
        Err(_) => {
            let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
            assert!(
                venv.exists(),
                "the Python test clients are not prepared: run `{PREPARE}` in the repository \
                 (or set CERTSTREAM_TEST_PYTHON to a Python that has tests/python-requirements.txt)"
            );
            venv.to_string_lossy().into_owned()
        }
    };
    match Command::new(&python)
        .args(["-c", &format!("import {MODULES}")])
        .output()
    {
        Ok(output) if output.status.success() => python,
        Ok(output) => panic!(
            "{python} cannot import {MODULES}: run `{PREPARE}` in the repository\n{}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(error) => panic!("cannot run {python} ({error}): run `{PREPARE}` in the repository"),
    }
}
