#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/fuzz_targets/ for SECONDS each (default 60); exits non-zero on a crash.
# Usage: bench/fuzz.sh [SECONDS]
# New targets: `cargo fuzz add <name>` (creates fuzz/fuzz_targets/<name>.rs and its [[bin]] entry); this loop finds them.
set -euo pipefail
seconds="${1:-60}"
cd "$(dirname "$0")/.."
corpus_root="${CERTSTREAM_CORPUS:-$PWD/tests/corpus}"

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

# Seeds from real CT data, in the entry_decoders input format (see its header comment).
seed_entry_decoders() {
    local dir=fuzz/corpus/entry_decoders
    mkdir -p "$dir"
    [ -n "$(ls -A "$dir")" ] && return 0
    python3 - "$corpus_root" "$dir" <<'PY'
import base64, json, struct, sys
root, out = sys.argv[1], sys.argv[2]
live = json.load(open(f"{root}/rfc6962/live_ct.json"))
for i, item in enumerate(live[:8]):
    leaf, extra = base64.b64decode(item["leaf_input"]), base64.b64decode(item["extra_data"])
    open(f"{out}/rfc6962-{i}", "wb").write(b"\x00" + struct.pack(">H", len(leaf)) + leaf + extra)
tile = open(f"{root}/tiled/navigli2025h2/tile/data/000", "rb").read()
open(f"{out}/tile-000-head", "wb").write(b"\x01\x00\x00" + tile[:2715 * 2])
body = json.dumps({"entries": [{"leaf_input": e["leaf_input"], "extra_data": e["extra_data"]} for e in live[:2]]})
open(f"{out}/get-entries", "wb").write(b"\x02" + body.encode())
open(f"{out}/get-entries-escaped", "wb").write(b"\x02" + body.replace("/", "\\/").encode())
PY
}

# Seeds for cert_formatter: every certificate (leaf and chain) of the first live entries, as plain DER.
seed_cert_formatter() {
    local dir=fuzz/corpus/cert_formatter
    mkdir -p "$dir"
    [ -n "$(ls -A "$dir")" ] && return 0
    python3 - "$corpus_root" "$dir" <<'PY'
import base64, json, sys
root, out = sys.argv[1], sys.argv[2]
for i, item in enumerate(json.load(open(f"{root}/rfc6962/live_ct.json"))[:8]):
    extra = base64.b64decode(item["extra_data"])
    pos, n = 3, 0
    while pos + 3 <= len(extra):  # x509 entries: the chain certificates; precerts: the pre-certificate first
        length = int.from_bytes(extra[pos:pos + 3], "big")
        cert = extra[pos + 3:pos + 3 + length]
        if cert[:1] == b"\x30":
            open(f"{out}/live-{i}-{n}", "wb").write(cert)
        pos, n = pos + 3 + length, n + 1
PY
}

status=0
for source in fuzz/fuzz_targets/*.rs; do
    target="$(basename "$source" .rs)"
    if ! cargo +nightly fuzz list --fuzz-dir fuzz | grep -x "$target" >/dev/null; then
        echo "fuzz target $target has no [[bin]] entry in fuzz/Cargo.toml (use \`cargo fuzz add $target\`)" >&2
        status=1
        continue
    fi
    if declare -F "seed_$target" >/dev/null; then "seed_$target"; fi
    echo "=== $target: ${seconds}s"
    log="fuzz/artifacts/$target.log"
    mkdir -p fuzz/artifacts
    if cargo +nightly fuzz run --fuzz-dir fuzz "$target" -- -max_total_time="$seconds" >"$log" 2>&1; then
        echo "=== $target: ok, $(grep -Eo '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1)s"
    else
        tail -n 40 "$log" >&2
        echo "=== $target: CRASH or build failure (full log: $log; reproducer in fuzz/artifacts/$target/)" >&2
        status=1
    fi
done
exit "$status"
