#!/bin/bash
# Integration tier: the real jobworker-server and jobctl over mutual TLS on 127.0.0.1, with
# freshly generated certificates. Prints one PASS/FAIL line per test and a summary line.
set -u
source "$(dirname "$0")/lib.sh"

for b in jobworker-server jobctl job-init; do
    [ -x "$BIN/$b" ] || { echo "integration: $BIN/$b is missing: run make first" >&2; exit 1; }
done
"$REPO/scripts/gen-certs.sh" "$CERTS" >/dev/null || { echo "integration: gen-certs failed" >&2; exit 1; }
mkdir -p "$T/py"
protoc -I"$REPO/proto" --python_out="$T/py" jobworker/v1/jobworker.proto ||
    { echo "integration: protoc failed" >&2; exit 1; }
py() { $PY "$REPO/tests/integration/pyclient.py" "$T/py" "$CERTS" "$PORT" "$@"; }

# The summary and the exit status of the run.
finish() {
    echo "integration: $PASSED passed, $FAILED failed"
    if [ "$FAILED" -ne 0 ]; then
        echo "integration: failed: ${FAILED_NAMES[*]}" >&2
        echo "---- server log ----" >&2
        tail -30 "$T/server.log" >&2
        exit 1
    fi
}

# JW_IT_GROUP=NAME runs only tests/integration/NAME.sh (for development; refused in CI).
if [ -n "${JW_IT_GROUP:-}" ]; then
    # shellcheck source=/dev/null # one of the group files below, named at run time
    source "$REPO/tests/integration/$JW_IT_GROUP.sh"
    finish
    exit 0
fi

start_server || exit 1

# ---- admin: every RPC through jobctl ----

t_admin_rpcs() {
    local id json out
    id=$(jc create sh -c 'echo hello; echo oops >&2; exit 3') || return 1
    [[ "$id" =~ ^[0-9a-f-]{36}$ ]] || { echo "create printed '$id'" >&2; return 1; }
    wait_status "$id" FAILED || return 1
    json=$(jc -o json get "$id")
    expect_eq "$(json_field "$json" exit_code)" 3 || return 1
    expect_eq "$(json_field "$json" reason)" EXITED || return 1
    expect_eq "$(json_field "$json" owner)" alice || return 1
    expect_eq "$(json_field "$json" output_bytes)" 11 || return 1
    out=$(jc stream --merge "$id") || return 1
    expect_eq "$out" $'hello\noops' || return 1
    expect_eq "$(jc stream "$id" 2>/dev/null)" hello "(stdout alone)" || return 1
    expect_eq "$(jc stream "$id" 2>&1 >/dev/null)" oops "(stderr alone)" || return 1
    expect_eq "$(json_field "$(jc -o json get "$id")" stderr_bytes)" 5 || return 1
    out=$(jc get "$id") || return 1
    expect_contains "$out" "FAILED" || return 1
    out=$(jc list) || return 1
    expect_contains "$out" "$id" || return 1
    expect_contains "$(jc -o json list)" "\"id\":\"$id\"" || return 1
}
check "admin create/get/list/stream" t_admin_rpcs

t_stop() {
    local id json
    id=$(jc create sleep 300) || return 1
    wait_status "$id" RUNNING || return 1
    json=$(jc -o json stop "$id") || return 1
    expect_eq "$(json_field "$json" status)" STOPPED || return 1
    expect_eq "$(json_field "$json" reason)" STOPPED || return 1
    # Stopping a finished job is idempotent.
    json=$(jc -o json stop "$id") || return 1
    expect_eq "$(json_field "$json" status)" STOPPED
}
check "admin stop" t_stop

t_run_exit_codes() {
    local out rc
    out=$(jc run sh -c 'echo hi; exit 7')
    rc=$?
    expect_eq "$out" hi || return 1
    expect_eq "$rc" 7 || return 1
    jc run sh -c 'kill -TERM $$' >/dev/null 2>&1
    expect_eq "$?" 143 || return 1
    out=$(jc run /no/such/binary 2>&1)
    rc=$?
    expect_eq "$rc" 127 || return 1
    expect_contains "$out" "exec '/no/such/binary': No such file or directory"
}
check "jobctl run exit codes" t_run_exit_codes

t_binary_output() {
    local id
    id=$(jc create "$TESTBIN/pattern" 3M 11) || return 1
    wait_status "$id" COMPLETED || return 1
    jc stream "$id" | "$TESTBIN/pattern" --check 3M 11 || return 1
    # Every byte value, no trailing newline.
    # shellcheck disable=SC2016 # the loop is the job's shell script
    jc run sh -c 'i=0; while [ $i -lt 256 ]; do printf "\\$(printf %o $i)"; i=$((i+1)); done' >"$T/all.bin" || return 1
    $PY -c 'import sys; d=open(sys.argv[1],"rb").read(); sys.exit(0 if d==bytes(range(256)) else "got %d bytes"%len(d))' "$T/all.bin"
}
check "binary output byte-exact" t_binary_output

# ---- viewer ----

t_viewer() {
    local id before out
    id=$(jc create sleep 300) || return 1
    jc_as viewer get "$id" >/dev/null || return 1
    jc_as viewer list >/dev/null || return 1
    jc_as viewer stream "$id" >/dev/null || return 1
    before=$(jc -o json list | $PY -c 'import json,sys; print(len(json.load(sys.stdin)["jobs"]))')
    out=$(jc_as viewer create true 2>&1) && { echo "viewer create succeeded" >&2; return 1; }
    expect_contains "$out" "PERMISSION_DENIED" || return 1
    out=$(jc_as viewer stop "$id" 2>&1) && { echo "viewer stop succeeded" >&2; return 1; }
    expect_contains "$out" "PERMISSION_DENIED" || return 1
    # No side effect: no new job, the target still runs.
    expect_eq "$(jc -o json list | $PY -c 'import json,sys; print(len(json.load(sys.stdin)["jobs"]))')" "$before" || return 1
    expect_eq "$(json_field "$(jc -o json get "$id")" status)" RUNNING || return 1
    jc stop "$id" >/dev/null
}
check "viewer reads, writes denied without side effect" t_viewer

t_no_role_certs() {
    local who cn m out n before id
    # A running job for the denied stops to aim at.
    id=$(jc create sleep 300) || return 1
    wait_status "$id" RUNNING || return 1
    for who in noou:carol twoou:frank caseou:grace spaceou:heidi issuerou:judy; do
        cn=${who#*:}
        who=${who%%:*}
        [ -f "$CERTS/$who.crt" ] || { echo "fixture $who missing" >&2; return 1; }
        n=$(jc list | wc -l)
        before=$(grep -c "cn=\"$cn\"" "$T/audit.log")
        out=$(jc_as "$who" create true 2>&1) && { echo "$who could create" >&2; return 1; }
        expect_contains "$out" PERMISSION_DENIED "($who)" || return 1
        out=$(jc_as "$who" stop "$id" 2>&1) && { echo "$who could stop" >&2; return 1; }
        expect_contains "$out" PERMISSION_DENIED "($who)" || return 1
        # No role reads nothing either.
        out=$(jc_as "$who" list 2>&1) && { echo "$who could list" >&2; return 1; }
        expect_contains "$out" PERMISSION_DENIED "($who)" || return 1
        # Zero side effects: no new job, the target still runs.
        expect_eq "$(jc list | wc -l)" "$n" "($who created a job)" || return 1
        expect_eq "$(json_field "$(jc -o json get "$id")" status)" RUNNING "($who stopped it)" || return 1
        # Every decision is in the audit log, under the certificate's CN.
        for m in CreateJob StopJob GetJobs; do
            grep -q "cn=\"$cn\" role=none method=$m job=- outcome=PERMISSION_DENIED" "$T/audit.log" ||
                { echo "no PERMISSION_DENIED audit line for $cn $m" >&2; return 1; }
        done
        expect_eq "$(grep -c "cn=\"$cn\"" "$T/audit.log")" "$((before + 3))" "(audit lines of $cn)" || return 1
    done
    jc stop "$id" >/dev/null
}
check "no/unknown/two/Admin/' admin' OU or OU only in issuer -> PERMISSION_DENIED, zero side effects, audited" t_no_role_certs

t_refused_certs() {
    local before who
    before=$(audit_lines)
    py no-client-cert || return 1
    for who in untrusted expired selfsigned notyet serveronly; do
        py "cert:$who" || { echo "certificate $who was not refused" >&2; return 1; }
    done
    # No handler ran: nothing reached the audit log.
    expect_eq "$(audit_lines)" "$before" "(audit lines)"
}
check "no cert / untrusted CA / expired / self-signed / not yet valid / serverAuth-only refused, no handler ran" t_refused_certs

t_tls_versions() {
    local out
    out=$(openssl s_client -connect "127.0.0.1:$PORT" -tls1_2 -cert "$CERTS/admin.crt" \
        -key "$CERTS/admin.key" -CAfile "$CERTS/ca.crt" </dev/null 2>&1)
    # A refused handshake ends with "Cipher is (NONE)"; a completed one names the cipher.
    if echo "$out" | grep -q "^New, TLSv1.2"; then
        echo "TLS 1.2 was negotiated" >&2
        return 1
    fi
    expect_contains "$out" "Cipher is (NONE)" || return 1
    out=$(openssl s_client -connect "127.0.0.1:$PORT" -tls1_3 -cert "$CERTS/admin.crt" \
        -key "$CERTS/admin.key" -CAfile "$CERTS/ca.crt" -alpn h2 </dev/null 2>&1)
    expect_contains "$out" "TLSv1.3" || return 1
    expect_contains "$out" "Verify return code: 0 (ok)"
}
check "TLS 1.2 refused, TLS 1.3 accepted" t_tls_versions

# ---- bad requests ----

t_bad_requests() {
    local out
    out=$(jc get 00000000-0000-4000-8000-000000000000 2>&1) && return 1
    expect_contains "$out" "NOT_FOUND" || return 1
    out=$(jc get not-a-uuid 2>&1) && return 1
    expect_contains "$out" "INVALID_ARGUMENT" || return 1
    expect_contains "$out" "not-a-uuid" || return 1
    out=$(jc create --max-memory=1K true 2>&1) && return 1
    expect_contains "$out" "INVALID_ARGUMENT: limits.memory_bytes 1024" || return 1
    out=$(jc create --max-cpu=100000 true 2>&1) && return 1
    expect_contains "$out" "limits.cpu_percent 100000" || return 1
    if ! host_has_cgroup2_controllers; then
        out=$(jc create --max-cpu=50 true 2>&1) && return 1
        expect_contains "$out" "FAILED_PRECONDITION" || return 1
    fi
    out=$(jc create --timeout=-5 true 2>&1) && return 1
    out=$(jc stream 00000000-0000-4000-8000-000000000000 2>&1) && return 1
    expect_contains "$out" "NOT_FOUND"
}
check "unknown id NOT_FOUND, bad limits INVALID_ARGUMENT naming the field" t_bad_requests

t_python_interop() {
    py interop
}
check "python grpcio client: create, get, list, stream, offset, errors" t_python_interop

# ---- streams ----

t_followers() {
    local id i pids=()
    id=$(jc create sh -c "sleep 0.5; $TESTBIN/pattern 8M 21; sleep 0.3; $TESTBIN/pattern 8M 22") || return 1
    for i in $(seq 20); do
        jc stream --follow "$id" >"$T/f$i.out" &
        pids+=($!)
    done
    # A follower that cancels midway (Ctrl-C) must not disturb the others.
    jc stream --follow "$id" >"$T/cancel.out" &
    local cpid=$!
    # Cancel midway: once it streams (under ASan on a busy host a jobctl takes over 0.7 s just to
    # start, and a signal before it blocks SIGTERM kills it with 143 instead of its 130).
    for _ in $(seq 200); do
        [ -s "$T/cancel.out" ] && break
        sleep 0.05
    done
    # SIGTERM, since a background job of a non-interactive shell has SIGINT ignored.
    kill -TERM "$cpid"
    wait "$cpid"
    local crc=$?
    for p in "${pids[@]}"; do wait "$p" || { echo "a follower failed" >&2; return 1; }; done
    "$TESTBIN/pattern" 8M 21 >"$T/expect.out"
    "$TESTBIN/pattern" 8M 22 >>"$T/expect.out"
    for i in $(seq 20); do
        cmp -s "$T/f$i.out" "$T/expect.out" || { echo "follower $i differs" >&2; return 1; }
    done
    expect_eq "$crc" 130 "(cancelled follower exit code)"
}
check "20 concurrent followers byte-exact, a cancelled one disturbs nobody" t_followers

t_offset_resume() {
    local id
    id=$(jc create "$TESTBIN/pattern" 1M 9) || return 1
    wait_status "$id" COMPLETED || return 1
    "$TESTBIN/pattern" 1M 9 | tail -c +300001 >"$T/tail.expect"
    jc stream --offset 300000 "$id" >"$T/tail.out" || return 1
    cmp "$T/tail.out" "$T/tail.expect"
}
check "stream with offset resumes exactly" t_offset_resume

t_busy_port() {
    local out
    out=$(timeout 10 "$BIN/jobworker-server" --listen "127.0.0.1:$PORT" --cert "$CERTS/server.crt" \
        --key "$CERTS/server.key" --ca "$CERTS/ca.crt" --data-dir "$T/data2" --no-cgroups 2>&1) &&
        { echo "second server started" >&2; return 1; }
    expect_contains "$out" "address already in use"
}
check "second server on a busy port fails" t_busy_port

t_audit() {
    grep -q 'cn="alice" role=admin method=CreateJob job=[0-9a-f-]\{36\} outcome=OK' "$T/audit.log" || return 1
    grep -q 'cn="bob" role=viewer method=CreateJob job=- outcome=PERMISSION_DENIED' "$T/audit.log" || return 1
    grep -q 'method=GetJobsStream .* outcome=OK' "$T/audit.log"
}
check "audit log records caller, role, method, job, outcome" t_audit

t_shutdown() {
    local ids=() pids=() i
    for i in 1 2 3; do
        ids+=("$(jc create sh -c 'trap "" TERM; sleep 300')")
    done
    for i in "${ids[@]}"; do
        wait_status "$i" RUNNING || return 1
        pids+=("$(json_field "$(jc -o json get "$i")" pid)")
    done
    stop_server || { echo "server exit code $?" >&2; return 1; }
    sleep 0.2
    for p in "${pids[@]}"; do
        if [ -e "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status"; then
            echo "job process $p survived the shutdown" >&2
            return 1
        fi
    done
}
check "SIGTERM with running jobs exits 0 and leaves no job process" t_shutdown

# Further groups, each with its own server.
source "$REPO/tests/integration/streaming.sh"
[ -f "$REPO/tests/integration/security.sh" ] && source "$REPO/tests/integration/security.sh"
source "$REPO/tests/integration/hardening.sh"
source "$REPO/tests/integration/daemon.sh"
source "$REPO/tests/integration/stopstorm.sh"
source "$REPO/tests/integration/hardening2.sh"
source "$REPO/tests/integration/fdlimit.sh"
source "$REPO/tests/integration/isolation.sh"
source "$REPO/tests/integration/history.sh"
source "$REPO/tests/integration/listing.sh"
source "$REPO/tests/integration/queue.sh"
source "$REPO/tests/integration/policy.sh"
source "$REPO/tests/integration/stdio.sh"
source "$REPO/tests/integration/env.sh"
source "$REPO/tests/integration/info.sh"

finish
