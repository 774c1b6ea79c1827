#!/usr/bin/env bash
# Builds the Debian package: target/debian/certstream_VERSION-1_ARCH.deb (the path is printed last).
#
#   bash packaging/build-deb.sh                 # release profile (fat LTO: a few minutes), what you install
#   bash packaging/build-deb.sh --profile ci    # the test suite's profile (no LTO): the same package, built fast
#
# Needs help2man (`apt-get install help2man`) for the man page; installs cargo-deb (pinned) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
profile=release
if [ "${1:-}" = "--profile" ] && [ -n "${2:-}" ]; then
    profile=$2
elif [ $# -gt 0 ]; then
    echo "usage: $0 [--profile PROFILE]" >&2
    exit 2
fi

command -v help2man >/dev/null || { echo "help2man is required: apt-get install help2man" >&2; exit 1; }
if ! cargo deb --version 2>/dev/null | grep -qF "$CARGO_DEB_VERSION"; then
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --quiet
fi

cargo build --profile "$profile" --bin certstream --quiet
out=target/$profile
# The man page from `--help` and `--version` (sections as --help has them). cargo-deb reads the assets under
# `target/release/` from the directory of the profile it packages.
help2man --no-info --no-discard-stderr --section 1 --name "stream Certificate Transparency logs as JSON over WebSocket" \
    "$out/certstream" | gzip -9n > "$out/certstream.1.gz"
# Stripped: the package is for running it; a backtrace needs a build from source anyway.
cargo deb --no-build --profile "$profile" --strip --quiet
