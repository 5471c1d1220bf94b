#!/bin/bash
# shellcheck disable=SC2119 # start_server takes its own flags, not the script's arguments
# valgrind tier: the real jobworker-server under memcheck, driven by the real jobctl and the
# Python grpcio client through a subset of the integration scenarios that reaches every RPC, the
# error paths (bad requests, refused roles and certificates), the job life cycle (exit,
# start failure, stop, timeout, streams that follow, resume or are cancelled) and two SIGHUP
# reloads of the TLS configuration, then SIGTERM with jobs still running. Requires: valgrind exits 0, i.e. no memcheck error and no definitely lost
# block (--errors-for-leak-kinds=definite). "Possibly lost" and "still reachable" blocks are
# reported in the log but do not fail. Third-party noise is suppressed by grpc.supp only.
#
# Usage: BUILD=build/release tests/valgrind/run.sh   (make test-valgrind)
set -u
source "$(dirname "$0")/../integration/lib.sh"
VG_DIR=$REPO/tests/valgrind

if ! command -v valgrind >/dev/null; then
    echo "valgrind: FAILED: valgrind is not installed (apt-get install valgrind)" >&2
    exit 1
fi
for b in jobworker-server jobctl job-init; do
    [ -x "$BIN/$b" ] || { echo "valgrind: $BIN/$b is missing: run make first" >&2; exit 1; }
done
"$REPO/scripts/gen-certs.sh" "$CERTS" >/dev/null || { echo "valgrind: gen-certs failed" >&2; exit 1; }
mkdir -p "$T/py" "$T/vg"
protoc -I"$REPO/proto" --python_out="$T/py" jobworker/v1/jobworker.proto ||
    { echo "valgrind: protoc failed" >&2; exit 1; }
py() { $PY "$REPO/tests/integration/pyclient.py" "$T/py" "$CERTS" "$PORT" "$@"; }

SHIM=$BUILD/valgrind/pidfd-shim.so
[ -f "$SHIM" ] || { echo "valgrind: $SHIM is missing: run make test-valgrind" >&2; exit 1; }
# One log per server process (%p). --trace-children=no: job-init and the jobs run natively.
# pidfd-shim.so stands in for pidfd_send_signal, which valgrind 3.19 does not implement.
export JW_SERVER_WRAPPER="env LD_PRELOAD=$SHIM valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,possible
    --errors-for-leak-kinds=definite --error-exitcode=99 --num-callers=40 --trace-children=no
    --child-silent-after-fork=yes --suppressions=$VG_DIR/grpc.supp --gen-suppressions=all
    --log-file=$T/vg/server.%p.log"
# shellcheck disable=SC2116,SC2086 # joins the lines into one: start_server reads one line
JW_SERVER_WRAPPER=$(echo $JW_SERVER_WRAPPER)
export JW_SERVER_START_SECONDS=120
started=$(date +%s)
start_server || { echo "valgrind: FAILED: the server did not start under valgrind" >&2; exit 1; }
echo "valgrind: server listening after $(($(date +%s) - started)) s under memcheck"

t_lifecycle() {
    local id json out
    id=$(jc create sh -c 'echo hello; echo oops >&2; exit 3') || return 1
    wait_status "$id" FAILED || return 1
    json=$(jc -o json get "$id")
    expect_eq "$(json_field "$json" exit_code)" 3 || return 1
    out=$(jc stream --merge "$id") || return 1
    expect_eq "$out" $'hello\noops' || return 1
    expect_eq "$(jc stream "$id" 2>/dev/null)" hello "(stdout alone)" || return 1
    # Standard input through WriteStdin, and a job's environment.
    # shellcheck disable=SC2016 # expanded by the job's shell
    out=$(printf 'fed' | jc run -e GREETING=hi sh -c 'cat; echo " $GREETING"') || return 1
    expect_eq "$out" "fed hi" || return 1
    expect_contains "$(jc list)" "$id" || return 1
    out=$(jc run /no/such/binary 2>&1)
    expect_eq "$?" 127 || return 1
    expect_contains "$out" "No such file or directory" || return 1
    id=$(jc create sleep 300) || return 1
    wait_status "$id" RUNNING || return 1
    json=$(jc -o json stop "$id") || return 1
    expect_eq "$(json_field "$json" status)" STOPPED || return 1
    id=$(jc create --timeout=1 sleep 300) || return 1
    wait_status "$id" FAILED || return 1
    expect_eq "$(json_field "$(jc -o json get "$id")" reason)" TIMED_OUT
}
check "create, get, list, stream (apart and merged), run with stdin and env, start failure, stop, timeout" t_lifecycle

t_streams() {
    local id pids=() i
    id=$(jc create sh -c "sleep 0.5; $TESTBIN/pattern 1M 21") || return 1
    for i in 1 2 3; do
        jc stream --follow "$id" >"$T/f$i.out" &
        pids+=($!)
    done
    jc stream --follow "$id" >/dev/null &
    local cpid=$!
    sleep 0.3
    kill -TERM "$cpid"
    for p in "${pids[@]}"; do wait "$p" || { echo "a follower failed" >&2; return 1; }; done
    wait "$cpid"
    "$TESTBIN/pattern" 1M 21 >"$T/expect.out"
    for i in 1 2 3; do
        cmp -s "$T/f$i.out" "$T/expect.out" || { echo "follower $i differs" >&2; return 1; }
    done
    jc stream --offset 300000 "$id" >"$T/tail.out" || return 1
    tail -c +300001 "$T/expect.out" | cmp - "$T/tail.out"
}
check "followers byte-exact, a cancelled follower, offset resume" t_streams

t_refusals() {
    local out who
    out=$(jc_as viewer create true 2>&1) && return 1
    expect_contains "$out" PERMISSION_DENIED || return 1
    for who in noou twoou; do
        out=$(jc_as "$who" create true 2>&1) && return 1
        expect_contains "$out" PERMISSION_DENIED || return 1
    done
    jc_as viewer list >/dev/null || return 1
    py no-client-cert || return 1
    for who in untrusted expired selfsigned; do
        py "cert:$who" || return 1
    done
    out=$(jc get not-a-uuid 2>&1) && return 1
    expect_contains "$out" INVALID_ARGUMENT || return 1
    out=$(jc get 00000000-0000-4000-8000-000000000000 2>&1) && return 1
    expect_contains "$out" NOT_FOUND || return 1
    out=$(jc create --max-memory=1K true 2>&1) && return 1
    expect_contains "$out" INVALID_ARGUMENT || return 1
    # Create with NUL bytes, garbage bytes, an unknown method, stream with an offset.
    py interop
}
check "refused roles and certificates, bad requests, grpcio interop" t_refusals

t_reload() {
    local n i
    n=$(grep -c "SIGHUP: reloaded the TLS configuration" "$SERVER_LOG")
    for i in 1 2; do
        kill -HUP "$SERVER_PID" || return 1
        for _ in $(seq 200); do
            [ "$(grep -c "SIGHUP: reloaded the TLS configuration" "$SERVER_LOG")" -ge $((n + i)) ] &&
                break
            sleep 0.05
        done
    done
    expect_eq "$(grep -c "SIGHUP: reloaded the TLS configuration" "$SERVER_LOG")" $((n + 2)) || return 1
    jc run true
}
check "SIGHUP reloads the TLS configuration twice, calls still served" t_reload

t_shutdown() {
    local i
    for i in 1 2; do
        jc create sh -c 'trap "" TERM; sleep 300' >/dev/null || return 1
    done
    jc create sleep 300 >/dev/null || return 1
    jc stream --follow "$(jc create sleep 300)" >/dev/null 2>&1 &
    sleep 1
    stop_server
    local rc=$?
    [ "$rc" -eq 0 ] || { echo "server (valgrind) exit status $rc" >&2; return 1; }
}
check "SIGTERM with running jobs and a live stream: exit 0 under memcheck" t_shutdown

# The verdict: every server log must end with a leak summary and show no error.
logs=("$T"/vg/server.*.log)
definite=0 errors=0 possible=0
for log in "${logs[@]}"; do
    [ -f "$log" ] || continue
    if ! grep -q "ERROR SUMMARY" "$log"; then
        fail "valgrind log $(basename "$log")" "no ERROR SUMMARY (the server did not exit normally)"
        continue
    fi
    d=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' "$log" | tr -d , | tail -1)
    p=$(sed -n 's/.*possibly lost: \([0-9,]*\) bytes.*/\1/p' "$log" | tr -d , | tail -1)
    e=$(sed -n 's/.*ERROR SUMMARY: \([0-9,]*\) errors.*/\1/p' "$log" | tr -d , | tail -1)
    definite=$((definite + ${d:-0}))
    possible=$((possible + ${p:-0}))
    errors=$((errors + ${e:-0}))
done
mkdir -p "$BUILD/valgrind"
rm -f "$BUILD"/valgrind/server.*.log
cp "${logs[@]}" "$BUILD/valgrind/" 2>/dev/null
echo "valgrind: ${#logs[@]} server run(s): $errors memcheck error(s), $definite bytes definitely lost," \
    "$possible bytes possibly lost (not an error); logs in $BUILD/valgrind/"
if [ "$errors" -ne 0 ] || [ "$definite" -ne 0 ]; then
    FAILED=$((FAILED + 1))
    FAILED_NAMES+=("memcheck")
    for log in "${logs[@]}"; do
        grep -q "ERROR SUMMARY: 0 errors" "$log" || sed -n '/^==[0-9]*== [A-Z].*\(Invalid\|uninitialised\|definitely lost\|Mismatched\|overlap\|Syscall param\)/,/^==[0-9]*== $/p' "$log" | head -80
    done
fi
echo "valgrind: $PASSED passed, $FAILED failed ($(($(date +%s) - started)) s)"
[ "$FAILED" -eq 0 ] || { echo "valgrind: failed: ${FAILED_NAMES[*]}" >&2; exit 1; }
