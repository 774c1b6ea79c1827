#!/usr/bin/env bash
# The Debian package, installed and run as the service would be: build it (test profile), check its file list and
# its unit (`systemd-analyze verify`), `dpkg -i`, start the service's ExecStart with the unit's environment file,
# user-less identity and limits (or `systemctl start` where systemd runs), fed by the mock CT log; /health answers,
# a WebSocket upgrade is accepted, every system call it makes is one the unit's SystemCallFilter allows, SIGTERM
# ends it with status 0 within TimeoutStopSec and saves the resume state; `dpkg -r` leaves only the conffile and
# the state, `dpkg --purge` nothing.
#
# It installs and purges the package `certstream` (refusing to start where it is installed or its files exist).
# Run as root on a Debian-like machine (dpkg, systemd-analyze, strace, setpriv, curl, help2man; `.ci/run` installs
# them). The profile is `ci`, which the test suite has already built: the release profile's fat LTO would add
# minutes and package the same files.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "package test: $*" >&2
    exit 1
}
[ "$(id -u)" = 0 ] || fail "needs root (dpkg -i)"
for tool in dpkg dpkg-deb systemd-analyze strace setpriv prlimit curl help2man; do
    command -v "$tool" >/dev/null || fail "$tool is missing: apt-get install systemd strace util-linux curl help2man"
done

PROFILE=ci
UNIT=/usr/lib/systemd/system/certstream.service
ENV_FILE=/etc/default/certstream
STATE_DIR=/var/lib/certstream
work=$(mktemp -d)
mock_pid=
server_pid=
installing=false
cleanup() {
    if [ -n "$server_pid" ]; then
        # The server is strace's child: ending strace alone would leave it running.
        kill $(pgrep -P "$server_pid") "$server_pid" 2>/dev/null || true
    fi
    [ -z "$mock_pid" ] || kill "$mock_pid" 2>/dev/null || true
    rm -rf "$work" /run/systemd/system/certstream.service.d
    if $installing; then
        dpkg --purge certstream >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

# --- build and inspect ---------------------------------------------------------------------------------------
deb=$(bash packaging/build-deb.sh --profile "$PROFILE" | tail -n 1)
[ -f "$deb" ] || fail "no package built ($deb)"
dpkg-deb -c "$deb" | awk '{print $6}' | grep -v '/$' | sort > "$work/files"
cat > "$work/expected" <<'EOF'
./etc/default/certstream
./usr/bin/certstream
./usr/lib/systemd/system/certstream.service
./usr/share/doc/certstream/README.md
./usr/share/doc/certstream/copyright
./usr/share/man/man1/certstream.1.gz
EOF
diff -u "$work/expected" "$work/files" || fail "the package's file list changed (above)"
[ "$(dpkg-deb -f "$deb" Package)" = certstream ] || fail "package name"
conffiles=$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)
grep -qx "$ENV_FILE" <<< "$conffiles" || fail "$ENV_FILE is not a conffile"
echo "package: $deb, $(stat -c %s "$deb") bytes"

# --- install ---------------------------------------------------------------------------------------------------
# Never over an operator's installation or state.
! dpkg -s certstream >/dev/null 2>&1 || fail "certstream is installed here: the test would replace it (dpkg --purge certstream)"
for path in "$ENV_FILE" "$STATE_DIR" /var/lib/private/certstream; do
    [ ! -e "$path" ] || fail "$path exists: the test would replace it"
done
installing=true
systemd_runs=false
[ -d /run/systemd/system ] && systemd_runs=true
if $systemd_runs; then
    # The postinst would start the service with the defaults, following the real CT logs: not from a test.
    mkdir -p /run/systemd/system/certstream.service.d
    printf '[Unit]\nConditionPathExists=/nonexistent\n' > /run/systemd/system/certstream.service.d/hold.conf
fi
dpkg -i "$deb" >/dev/null
[ -x /usr/bin/certstream ] || fail "/usr/bin/certstream not installed"
man -w certstream >/dev/null 2>&1 || ! command -v man >/dev/null || fail "man certstream: no page"
if command -v man >/dev/null; then
    systemd-analyze verify "$UNIT" || fail "systemd-analyze verify $UNIT"
else
    systemd-analyze verify --man=no "$UNIT" || fail "systemd-analyze verify $UNIT"
fi

# --- run as the unit would -------------------------------------------------------------------------------------
unit_value() { sed -n "s/^$1=//p" "$UNIT" | tail -n 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
mock_port=$(free_port)
cargo build --profile "$PROFILE" -p mock-ct-log --quiet
"target/$PROFILE/mock-ct-log" --listen "127.0.0.1:$mock_port" --rfc6962 1 --tiled 1 --rate 50 --ignore-stdin \
    > "$work/mock.log" 2>&1 &
mock_pid=$!
# What the test changes of the defaults: where to listen and which logs (the mock's, on loopback: the service must
# never reach the real CT logs from a test).
overrides=("WEBSOCKET_LISTEN=127.0.0.1:$port" "CUSTOM_LOG_LIST=http://127.0.0.1:$mock_port/log_list.json"
    "CERTSTREAM_START_BACK=20" "CERTSTREAM_POLL_INTERVAL=200ms")
stop_timeout=$(unit_value TimeoutStopSec)
stop_timeout=${stop_timeout%s}
if $systemd_runs; then
    rm /run/systemd/system/certstream.service.d/hold.conf
    printf '[Service]\n' > /run/systemd/system/certstream.service.d/test.conf
    printf 'Environment=%s\n' "${overrides[@]}" >> /run/systemd/system/certstream.service.d/test.conf
    systemctl daemon-reload
    systemctl start certstream
else
    # systemd is not PID 1 here: the unit's ExecStart, with its EnvironmentFile (the same KEY=VALUE lines), a
    # uid with no account (as DynamicUser=yes), its StateDirectory and its limits. strace lists the system calls.
    exec_start=$(unit_value ExecStart)
    # The unit's limits, or this machine's hard limit where a container keeps even root below them.
    nofile=$(unit_value LimitNOFILE)
    prlimit --nofile="$nofile" true 2>/dev/null || nofile=$(ulimit -Hn)
    memlock=$(unit_value LimitMEMLOCK)
    memlock=$(( ${memlock%M} * 1024 * 1024 ))
    prlimit --memlock="$memlock" true 2>/dev/null || memlock=$(( $(ulimit -Hl) * 1024 ))
    echo "limits: LimitNOFILE=$nofile, LimitMEMLOCK=$memlock bytes"
    dynamic_uid=61184
    mkdir -p "$STATE_DIR"
    chown "$dynamic_uid:$dynamic_uid" "$STATE_DIR"
    chmod 0700 "$STATE_DIR"
    # strace runs as that uid and writes its list here.
    chmod 0755 "$work"
    install -o "$dynamic_uid" -m 0600 /dev/null "$work/syscalls"
    mapfile -t environment < <(grep -E '^[A-Za-z_][A-Za-z0-9_]*=' "$ENV_FILE")
    env -i PATH=/usr/bin:/bin "${environment[@]}" "${overrides[@]}" \
        prlimit --nofile="$nofile" --memlock="$memlock" -- \
        setpriv --reuid=$dynamic_uid --regid=$dynamic_uid --clear-groups --no-new-privs -- \
        strace -f -qq -c -U name -o "$work/syscalls" $exec_start > "$work/server.log" 2>&1 &
    server_pid=$!
fi

healthy=false
for _ in $(seq 100); do
    if curl -fsS --max-time 1 "http://127.0.0.1:$port/health" >/dev/null 2>&1; then
        healthy=true
        break
    fi
    sleep 0.1
done
$healthy || { cat "$work/server.log" 2>/dev/null; fail "no /health on 127.0.0.1:$port"; }
# The head of the answer only (the frames that follow it are binary); curl ends at --max-time.
curl -sS --http1.1 --max-time 2 -D "$work/upgrade" -o /dev/null -H 'Connection: Upgrade' -H 'Upgrade: websocket' \
    -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' \
    "http://127.0.0.1:$port/" 2>/dev/null || true
upgrade=$(tr -d '\r' < "$work/upgrade")
grep -q '^HTTP/1.1 101' <<< "$upgrade" || fail "no WebSocket upgrade: $upgrade"
grep -qi '^Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=' <<< "$upgrade" || fail "bad accept key: $upgrade"
# Certificates flow from the mock (the state then has a position to save).
for _ in $(seq 100); do
    delivered=$(curl -fsS --max-time 1 "http://127.0.0.1:$port/stats" |
        python3 -c 'import json,sys; print(sum(l["delivered"] for l in json.load(sys.stdin)["logs"]))')
    [ "$delivered" -gt 0 ] && break
    sleep 0.1
done
[ "$delivered" -gt 0 ] || fail "nothing delivered from the mock"

started=$(date +%s%N)
if $systemd_runs; then
    systemctl stop certstream
    [ "$(systemctl show -p ExecMainStatus --value certstream)" = 0 ] || fail "the service did not exit 0"
else
    # strace's child is the server.
    server=$(pgrep -P "$server_pid" -x certstream) || fail "no certstream under strace"
    kill -TERM "$server"
    status=0
    # Within TimeoutStopSec, or the test ends it the way systemd would.
    timeout "$stop_timeout" tail -s 0.05 --pid="$server_pid" -f /dev/null || fail "still running after ${stop_timeout}s"
    wait "$server_pid" || status=$?
    server_pid=
    [ "$status" = 0 ] || { cat "$work/server.log"; fail "exit status $status after SIGTERM"; }
fi
stopped_ms=$(( ($(date +%s%N) - started) / 1000000 ))
echo "graceful stop in ${stopped_ms} ms (TimeoutStopSec=${stop_timeout}s)"
[ -s "$STATE_DIR/state.json" ] || fail "no resume state saved in $STATE_DIR/state.json"

if ! $systemd_runs; then
    # Every system call made is one the unit allows: @system-service (its groups expanded) and the io_uring calls,
    # none of @privileged.
    expand() {
        systemd-analyze syscall-filter "$1" | tail -n +2 | sed 's/^ *//; /^#/d; /^$/d' | while read -r name; do
            case $name in
            @*) expand "$name" ;;
            *) echo "$name" ;;
            esac
        done
    }
    allowed=$( (expand @system-service; printf '%s\n' io_uring_setup io_uring_enter io_uring_register) | sort -u)
    denied=$(expand @privileged | sort -u)
    made=$(awk 'NR > 2 && $NF ~ /^[a-z_0-9]+$/ && $NF != "total" {print $NF}' "$work/syscalls" | sort -u)
    # strace's own start (before the server's execve) is not the server's: execve is what the unit runs anyway.
    for call in $made; do
        grep -qx "$call" <<< "$allowed" || fail "system call $call is not in the unit's SystemCallFilter"
        ! grep -qx "$call" <<< "$denied" || fail "system call $call is denied by the unit (@privileged)"
    done
    echo "system calls made, all allowed:" $made
fi

# --- remove and purge ------------------------------------------------------------------------------------------
kill "$mock_pid" 2>/dev/null || true
mock_pid=
dpkg -r certstream >/dev/null
for path in /usr/bin/certstream "$UNIT" /usr/share/man/man1/certstream.1.gz /usr/share/doc/certstream; do
    [ ! -e "$path" ] || fail "$path left after dpkg -r"
done
[ -f "$ENV_FILE" ] || fail "dpkg -r removed the conffile $ENV_FILE (only --purge may)"
[ -s "$STATE_DIR/state.json" ] || fail "dpkg -r removed the resume state"
dpkg --purge certstream >/dev/null
for path in "$ENV_FILE" "$STATE_DIR" /var/lib/private/certstream; do
    [ ! -e "$path" ] || fail "$path left after dpkg --purge"
done
dpkg -s certstream >/dev/null 2>&1 && fail "certstream still known to dpkg after --purge"
echo "package test: ok"
