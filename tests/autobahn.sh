#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzingclient (every case) against examples/autobahn_echo.rs, which uses
# certstream's own WebSocket layer. Exits with the suite's status: 0 only when every case is OK, INFORMATIONAL or
# UNIMPLEMENTED (compression) and every close behaviour OK/INFORMATIONAL.
# Usage: bash tests/autobahn.sh  (from anywhere; MONOIO_FORCE_LEGACY_DRIVER=1 tests the epoll driver)
# The testsuite is not part of the repository: it is the offline Autobahn package at $AUTOBAHN_TOOL, by default
# ../shared/tools/autobahn beside the clone (where CI has it).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOL="${AUTOBAHN_TOOL:-$REPO/../shared/tools/autobahn}"
[[ -f $TOOL/run-fuzzingclient.sh ]] || {
    echo "autobahn: the Autobahn testsuite is not at $TOOL: put shared/ beside the repository, or run" \
        "AUTOBAHN_TOOL=/path/to/autobahn bash tests/autobahn.sh" >&2
    exit 1
}
ADDR=${AUTOBAHN_ADDR:-127.0.0.1:9002}
cd "$REPO"
export AUTOBAHN_HOME="${AUTOBAHN_HOME:-.autobahn}"

cargo build --profile ci --example autobahn_echo
./target/ci/examples/autobahn_echo "$ADDR" &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true' EXIT

status=0
bash "$TOOL/run-fuzzingclient.sh" "ws://$ADDR" || status=$?

# The server must have survived every case (a crash midway also shows up as MISSING cases above).
if ! kill -0 "$SERVER" 2>/dev/null; then
    echo "autobahn: the echo server died during the run" >&2
    status=1
fi
exit "$status"
