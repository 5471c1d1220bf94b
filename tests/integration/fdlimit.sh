# shellcheck shell=bash
# The listener at the open files limit (sourced by run.sh; issue 10 item 6). gRPC core 1.51 stops
# accepting for good after one accept4() fails with EMFILE, while the process looks healthy: the
# server must notice the dead listener and exit non-zero so that its supervisor restarts it, and
# must not mistake a busy listener for a dead one.

FL="$T/fl"
mkdir -p "$FL"

# fl_flood PORT N HOLD: opens up to N plain TCP connections to the port (no TLS), holds them HOLD
# seconds, closes them, and prints how many connected.
fl_flood() {
    timeout 60 "$PY" - "$@" <<'EOF'
import socket, sys, time
port, n, hold = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
socks = []
for _ in range(n):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", port))
    except OSError:
        s.close()
        break
    socks.append(s)
time.sleep(hold)
for s in socks:
    s.close()
print(len(socks))
EOF
}

# fl_wait_exit SECONDS: waits until the server has exited; its exit status is in $T/server.rc.
fl_wait_exit() {
    for _ in $(seq $(($1 * 10))); do
        [ -s "$T/server.rc" ] && return 0
        sleep 0.1
    done
    return 1
}

t_fl_dead_listener() {
    local n rc out
    JW_SERVER_WRAPPER="prlimit --nofile=128:128" start_server || return 1
    jc --timeout 10s list >/dev/null || { echo "no answer before the flood" >&2; return 1; }
    n=$(fl_flood "$PORT" 200 3) || { echo "flood failed" >&2; return 1; }
    [ "$n" -ge 150 ] || { echo "only $n connections" >&2; return 1; }
    if ! fl_wait_exit 12; then
        # The failure mode: the process runs, but nobody can talk to it any more.
        out=$(jc --timeout 3s list 2>&1)
        rc=$?
        echo "server still running 12 s after the flood; jobctl list: rc $rc: $out" >&2
        stop_server
        return 1
    fi
    SERVER_PID=
    rc=$(cat "$T/server.rc")
    expect_eq "$rc" 3 "(exit status after a dead listener)" || return 1
    out=$(cat "$SERVER_LOG")
    expect_contains "$out" "open files: " || return 1
    expect_contains "$out" "the gRPC listener on port $PORT stopped accepting connections" || return 1
    expect_contains "$out" "LimitNOFILE=" || return 1
    [ "$(grep -c "stopped accepting connections" "$SERVER_LOG")" -eq 1 ] ||
        { echo "the dead listener was logged more than once" >&2; return 1; }
}
check "open files limit 128, 200 plain TCP connects: dead listener detected, exit 3 with the fix in the log" t_fl_dead_listener

t_fl_busy_not_dead() {
    local pids=() p bad=0
    start_server || return 1
    for _ in $(seq 50); do
        (
            end=$((SECONDS + 8))
            while [ "$SECONDS" -lt "$end" ]; do
                # In a subshell of its own: jc execs jobctl in a background job.
                (jc --timeout 20s list >/dev/null) || exit 1
            done
        ) &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || bad=$((bad + 1)); done
    expect_eq "$bad" 0 "(clients that failed)" || return 1
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "server exited under load" >&2; return 1; }
    if grep -q "stopped accepting connections" "$SERVER_LOG"; then
        echo "false positive: a busy listener was taken for dead" >&2
        return 1
    fi
    stop_server
}
check "50 concurrent clients for 8 s: the listener watch stays quiet" t_fl_busy_not_dead
