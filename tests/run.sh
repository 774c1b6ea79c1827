#!/usr/bin/env bash
# The whole test suite: formatting and lint gates, the Rust tests (unit, golden files, end-to-end over loopback
# with the real Python clients; `tests/operations.rs` runs promtool), the WebSocket tests again on monoio's epoll
# driver, the Debian package (`tests/package.sh`), and the Autobahn testsuite.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use (nats-server; promtool; the package test's tools; the headless browser of
# tests/live_page.rs), installed only when missing and only where we may (root with apt-get); elsewhere the tests
# that need one fail, naming the package.
missing=()
for tool in nats-server:nats-server promtool:prometheus help2man:help2man systemd-analyze:systemd strace:strace \
    setpriv:util-linux curl:curl chromium:chromium; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Real client libraries for the end-to-end tests, in a private virtualenv (pip returns at once when they are there;
# the tests name the same command in `crates/testkit/src/python.rs` when it is missing).
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/python-requirements.txt
export CERTSTREAM_TEST_PYTHON="$PWD/.venv/bin/python"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# Documentation links resolve (the library crates' public docs, the server's for contributors).
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --document-private-items --profile ci
cargo test --workspace --profile ci
# The WebSocket, poller and end-to-end tests again on monoio's epoll driver (where io_uring is unavailable, e.g.
# Docker; relays: the broker's thread wakes the reactor); the spawned binaries inherit the variable.
MONOIO_FORCE_LEGACY_DRIVER=1 cargo test --profile ci --test server_ws --test server_guards --test server_python --test server_http \
    --test server_sse --test server_cursor --test server_filter --test server_limits --test poll_rfc6962 --test e2e_stream --test e2e_log_list --test poll_tiled \
    --test e2e_overload --test e2e_hostile_http --test e2e_resume --test server_auth --test e2e_relay
# The Debian package: built (test profile, already compiled above), installed, run as its unit would, stopped,
# removed and purged (needs root; `.ci/run` installs what it uses).
bash tests/package.sh
# The Autobahn testsuite against the echo example built on the same RFC 6455 module, on both drivers.
bash tests/autobahn.sh
MONOIO_FORCE_LEGACY_DRIVER=1 bash tests/autobahn.sh
