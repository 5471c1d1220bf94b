# shellcheck shell=bash disable=SC2034 # BIN, TESTBIN, PY... are used by the files that source this
# Shared helpers of the integration tier: a server on 127.0.0.1 with fresh certificates, the real
# jobctl, and pass/fail bookkeeping. Sourced by run.sh.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-build/release}
case "$BUILD" in /*) ;; *) BUILD="$REPO/$BUILD" ;; esac
BIN="$BUILD/bin"
source "$REPO/tests/job-visible.sh"
TESTBIN=$(job_visible_dir "$BUILD/testbin") || { echo "integration: cannot copy $BUILD/testbin" >&2; exit 1; }
PY=/usr/bin/python3
# `jobctl run` forwards its stdin when that is a pipe or a file: the tier's own stdin (whatever
# started it) is not the jobs' business. A test that feeds a job pipes into that jobctl.
exec </dev/null

# Sanitizer builds (ASan's quarantine and shadow memory) make the server's RSS meaningless: the
# RSS bounds are then reported, not judged.
SANITIZED=
ldd "$BIN/jobworker-server" 2>/dev/null | grep -Eq 'lib(asan|tsan|ubsan)' && SANITIZED=1
rss_kib() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"; }

if [ -n "${JW_IT_GROUP:-}" ] && [ -n "${CI:-}" ]; then
    echo "integration: JW_IT_GROUP is for development; CI runs every group" >&2
    exit 1
fi
T=$(mktemp -d /tmp/jw-it-XXXXXX)
chmod 711 "$T" # jobs run as nobody and must reach their working directories under $T/data
CERTS="$T/certs"
PASSED=0
FAILED=0
FAILED_NAMES=()
SERVER_PID=
PORT=

cleanup() {
    # Keep the last server log for post-mortems.
    cat "$T"/server-*.log >"$BUILD/integration-server.log" 2>/dev/null
    [ -n "$SERVER_PID" ] && kill -KILL "$SERVER_PID" 2>/dev/null
    pkill -KILL -f "$T/" 2>/dev/null
    rm -rf "$T"
    job_visible_cleanup "$TESTBIN"
}
trap cleanup EXIT

pass() {
    PASSED=$((PASSED + 1))
    echo "PASS $1"
}

fail() {
    FAILED=$((FAILED + 1))
    FAILED_NAMES+=("$1")
    echo "FAIL $1: $2"
}

# check NAME COMMAND...: runs the command (a test function) with a time limit.
check() {
    local name=$1
    shift
    local out rc
    # The test runs in a subshell that a watchdog kills after 120 s.
    # shellcheck disable=SC2030 # set in the test's own subshell on purpose: jc_as compares it
    {
        TEST_BASHPID=$BASHPID
        "$@"
    } >"$T/check.out" 2>&1 &
    local pid=$!
    (sleep 120 && kill -KILL "$pid" 2>/dev/null && echo "timed out after 120 s" >>"$T/check.out") &
    local dog=$!
    wait "$pid"
    rc=$?
    kill "$dog" 2>/dev/null
    wait "$dog" 2>/dev/null
    out=$(cat "$T/check.out")
    if [ "$rc" -eq 0 ]; then
        pass "$name"
    else
        fail "$name" "$(echo "$out" | tail -5 | tr '\n' '|')"
    fi
}

# A TCP port nobody listens on.
free_port() {
    $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

host_has_cgroup2_controllers() {
    [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ] &&
        grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null
}

# start_server [EXTRA FLAGS...]: starts the server on a fresh port, waits until it accepts.
# JW_SERVER_WRAPPER (e.g. "valgrind --leak-check=full ...", split on blanks) prefixes the server
# command; JW_SERVER_START_SECONDS (default 5) is how long to wait for it to listen.
start_server() {
    PORT=$(free_port)
    local flags=() wrapper=()
    read -ra wrapper <<<"${JW_SERVER_WRAPPER:-}"
    host_has_cgroup2_controllers || flags+=(--no-cgroups)
    rm -f "$T/server.rc" "$T/server.pid"
    # Servers that name no --data-dir share $T/data and start with an empty history (as every
    # server did before durable jobs), so that one group's jobs do not weigh on another's
    # listings and timings. The groups that test the history name directories of their own.
    local a own_dir='' admission=''
    for a in "$@"; do
        [ "$a" = --data-dir ] && own_dir=1
        case $a in --max-running* | --config*) admission=1 ;; esac
    done
    # Groups that run many jobs at once test other things than admission: no admission limits
    # unless the test sets them (the defaults, CPUs x 4 running and the host's memory, would
    # queue them here).
    [ -n "$admission" ] || flags+=(--max-running 0 --capacity-memory 0 --capacity-cpu 0)
    [ -n "$own_dir" ] || rm -rf "$T/data/jobs.db" "$T/data/jobs.db-wal" "$T/data/jobs.db-shm" "$T/data/output"
    # Each server gets its own log; server.log always names the current one.
    SERVER_LOG="$T/server-$PORT.log"
    ln -sf "$SERVER_LOG" "$T/server.log"
    # A keeper subshell records the server's exit status, so tests running in subshells can
    # check it too.
    (
        "${wrapper[@]}" "$BIN/jobworker-server" --listen "127.0.0.1:$PORT" \
            --cert "$CERTS/server.crt" --key "$CERTS/server.key" --ca "$CERTS/ca.crt" \
            --data-dir "$T/data" \
            --audit-log "$T/audit.log" --log-level debug "${flags[@]}" "$@" >>"$SERVER_LOG" 2>&1 &
        echo $! >"$T/server.pid"
        wait $!
        echo $? >"$T/server.rc"
    ) &
    for _ in $(seq 100); do
        [ -s "$T/server.pid" ] && break
        sleep 0.01
    done
    SERVER_PID=$(cat "$T/server.pid")
    for _ in $(seq $((${JW_SERVER_START_SECONDS:-5} * 20))); do
        if grep -q "listening on" "$SERVER_LOG" 2>/dev/null; then
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "server did not start:" >&2
    cat "$SERVER_LOG" >&2
    return 1
}

# stop_stale_server: the server of a test that the watchdog killed (its own stop never ran)
# would hold the data directory's lock; stop it.
stop_stale_server() {
    local p
    p=$(cat "$T/server.pid" 2>/dev/null) || return 0
    kill -0 "$p" 2>/dev/null || return 0
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 300); do
        kill -0 "$p" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null
}

# stop_server: SIGTERM, then the server's exit status (waits up to 30 s).
stop_server() {
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 300); do
        if [ -s "$T/server.rc" ]; then
            SERVER_PID=
            return "$(cat "$T/server.rc")"
        fi
        sleep 0.1
    done
    echo "server did not exit within 30 s of SIGTERM" >&2
    return 1
}

# jc [ROLE] ARGS...: the real jobctl as admin (default) or viewer/other certificate names.
jc_as() {
    local who=$1 crt
    shift
    crt="$CERTS/$who.crt"
    # A leaf signed by an intermediate is presented with its chain.
    [ -f "$CERTS/$who-chain.crt" ] && crt="$CERTS/$who-chain.crt"
    # In a subshell (a background job, a command substitution) exec, so that $! and signals
    # reach jobctl itself rather than a bash wrapper.
    local ex=
    # shellcheck disable=SC2031 # read in the same subshell that set it (see check)
    [ "$BASHPID" != "${TEST_BASHPID:-$$}" ] && ex="exec"
    $ex "$BIN/jobctl" --server "127.0.0.1:$PORT" --server-name localhost --cert "$crt" \
        --key "$CERTS/$who.key" --ca "$CERTS/ca.crt" "$@"
}
jc() { jc_as admin "$@"; }

# json_field JSON KEY: the value of a top-level scalar key of jobctl's one-line JSON.
json_field() {
    $PY -c 'import json,sys; v=json.loads(sys.argv[1])[sys.argv[2]]; print(v if not isinstance(v,bool) else str(v).lower())' "$1" "$2"
}

# start_proxy LOG CUT_BYTES: the cutting proxy (proxy.py) in front of the server on a free port,
# which it sets in PROXY_PORT (PROXY_PID its pid), once it listens (bounded: 2.5 s).
start_proxy() {
    PROXY_PORT=$(free_port)
    $PY "$REPO/tests/integration/proxy.py" "$PROXY_PORT" "$PORT" "$2" >"$1" 2>&1 &
    PROXY_PID=$!
    for _ in $(seq 50); do grep -q listening "$1" && break; sleep 0.05; done
}

# wait_status ID STATUS...: polls until the job has one of the statuses (10 s).
wait_status() {
    local id=$1
    shift
    local s
    for _ in $(seq 200); do
        s=$(json_field "$(jc -o json get "$id")" status)
        for want in "$@"; do
            [ "$s" = "$want" ] && return 0
        done
        sleep 0.05
    done
    echo "job $id is $s, wanted $*" >&2
    return 1
}

audit_lines() { wc -l <"$T/audit.log" 2>/dev/null || echo 0; }

expect_eq() {
    if [ "$1" != "$2" ]; then
        echo "expected '$2', got '$1' ${3:-}" >&2
        return 1
    fi
}

expect_contains() {
    if [[ "$1" != *"$2"* ]]; then
        echo "expected to find '$2' in: $1" >&2
        return 1
    fi
}
