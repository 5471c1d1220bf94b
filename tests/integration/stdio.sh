# shellcheck shell=bash disable=SC2016 # job scripts are single-quoted on purpose
# jobctl run like ssh (sourced by run.sh): stdout and stderr kept apart, stdin forwarded with
# its end of file, the merged stream for old clients, and resuming both streams after a cut.

start_server || exit 1

t_run_split_streams() {
    jc run sh -c 'echo out; echo err >&2' >"$T/io.out" 2>"$T/io.err" || return 1
    expect_eq "$(cat "$T/io.out")" out "(stdout)" || return 1
    expect_eq "$(cat "$T/io.err")" err "(stderr)" || return 1
    jc run --merge sh -c 'echo out; sleep 0.2; echo err >&2' >"$T/io.out" 2>"$T/io.err" || return 1
    expect_eq "$(cat "$T/io.out")" $'out\nerr' "(--merge: one stream, in order)" || return 1
    expect_eq "$(cat "$T/io.err")" "" "(--merge leaves stderr empty)" || return 1
    local id
    id=$(jc create sh -c 'printf a; sleep 0.2; printf bb >&2') || return 1
    wait_status "$id" COMPLETED || return 1
    expect_eq "$(jc -o json stream "$id" | tr '\n' ' ')" \
        '{"offset":0,"stream":"stdout","data":"YQ=="} {"offset":1,"stream":"stderr","data":"YmI="} ' || return 1
    expect_eq "$(jc stream --stderr --offset 1 "$id")" b "(--stderr --offset 1)" || return 1
    expect_contains "$(jc get "$id")" "3: stdout 1, stderr 2" || return 1
}
check "run and stream write the job's stdout to stdout and its stderr to stderr; --merge and -o json" t_run_split_streams

t_stdin_100m() {
    local want got
    head -c 100M /dev/urandom >"$T/io.rand"
    want=$(sha256sum <"$T/io.rand" | cut -d' ' -f1)
    got=$(jc run sha256sum <"$T/io.rand" | cut -d' ' -f1) || return 1
    expect_eq "$got" "$want" "(100 MiB from a file)" || return 1
    # shellcheck disable=SC2002 # a pipe on purpose, not a file
    got=$(cat "$T/io.rand" | jc run sha256sum | cut -d' ' -f1) || return 1
    expect_eq "$got" "$want" "(100 MiB from a pipe)" || return 1
    rm -f "$T/io.rand"
}
check "100 MiB through stdin (file and pipe) reach the job exactly" t_stdin_100m

t_stdin_eof_and_unread() {
    local out rc t0
    # The end of our stdin is end of file for the job, which goes on after it.
    out=$(printf abc | jc run sh -c 'cat; echo; echo after-eof') || return 1
    expect_eq "$out" $'abc\nafter-eof' || return 1
    # A job that never reads an endless stdin still ends when its command does.
    t0=$SECONDS
    out=$(yes | jc run sh -c 'sleep 0.3; echo done')
    rc=$?
    expect_eq "$rc:$out" "0:done" || return 1
    [ $((SECONDS - t0)) -le 10 ] || { echo "run took $((SECONDS - t0)) s" >&2; return 1; }
    # -n: the job's stdin is /dev/null whatever ours is.
    expect_eq "$(echo data | jc run -n sh -c 'cat; echo end')" end "(-n)" || return 1
    # create --stdin FILE.
    printf 'from a file' >"$T/io.in"
    local id
    id=$(jc create --stdin "$T/io.in" cat) || return 1
    wait_status "$id" COMPLETED || return 1
    expect_eq "$(jc stream "$id")" "from a file" || return 1
    expect_eq "$(json_field "$(jc -o json get "$id")" stdin)" true || return 1
}
check "stdin: end of file reaches the job; a job that never reads it ends; -n; create --stdin FILE" t_stdin_eof_and_unread

t_stdio_python() {
    py stdio
}
check "python client: merged stream byte-identical with stream tags, one stream by offset, WriteStdin rules" t_stdio_python

t_resume_both_streams() {
    local id pport ppid
    start_proxy "$T/proxy2.log" 3000000
    pport=$PROXY_PORT ppid=$PROXY_PID
    id=$(jc create sh -c "$TESTBIN/pattern 2M 31; $TESTBIN/pattern 2M 33 >&2; sleep 1; $TESTBIN/pattern 2M 32; $TESTBIN/pattern 2M 34 >&2") || return 1
    "$BIN/jobctl" --server "127.0.0.1:$pport" --server-name localhost --cert "$CERTS/admin.crt" \
        --key "$CERTS/admin.key" --ca "$CERTS/ca.crt" stream --follow "$id" >"$T/r2.out" 2>"$T/r2.err" || {
        cat "$T/r2.err" >&2
        kill "$ppid" 2>/dev/null
        return 1
    }
    kill "$ppid" 2>/dev/null
    grep -q "cut after" "$T/proxy2.log" || { echo "the proxy never cut the stream" >&2; return 1; }
    { "$TESTBIN/pattern" 2M 31; "$TESTBIN/pattern" 2M 32; } | cmp - "$T/r2.out" || return 1
    { "$TESTBIN/pattern" 2M 33; "$TESTBIN/pattern" 2M 34; } | cmp - "$T/r2.err"
}
check "stream --follow through a cut connection: stdout and stderr each exact" t_resume_both_streams

stop_server || fail "stdio server exit" "non-zero exit status"
