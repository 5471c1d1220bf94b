# shellcheck shell=bash
# The policy file through the real binaries (sourced by run.sh; issue 12): --check-config on a
# good file and on broken ones (the line in the message); a server started with --config takes
# its [server] settings (a flag wins over the file), refuses over the max-queued quota, above a
# ceiling and outside the allow-list, naming each; SIGHUP with a changed file applies the new
# quota, SIGHUP with a broken file keeps the old policy and says why.

PD="$T/policy"
mkdir -p "$PD"

t_pol_check() {
    local out
    cat >"$PD/good.conf" <<'EOF'
# a comment
[server]
max-running = 1
[quota]
max-queued = 5
[owner alice]
max-queued = 1   # alice may queue one job
[ceiling]
timeout = 1h
[allow]
path = /bin/
path = /usr/bin/
EOF
    out=$("$BIN/jobworker-server" --config "$PD/good.conf" --check-config) || return 1
    expect_contains "$out" "good (1 [server] setting(s), 1 owner section(s), 2 allowed path(s))" || return 1
    printf '[server]\nmax-running = 1\n\n[quota]\nmax-queued = lots\n' >"$PD/bad.conf"
    out=$("$BIN/jobworker-server" --config "$PD/bad.conf" --check-config 2>&1)
    expect_eq "$?" 2 "(--check-config of a bad value)" || return 1
    expect_contains "$out" "bad.conf:5: max-queued: 'lots'" || return 1
    printf '[server]\nmax-runing = 3\n' >"$PD/typo.conf"
    out=$("$BIN/jobworker-server" --config "$PD/typo.conf" --check-config 2>&1)
    expect_eq "$?" 2 "(--check-config of an unknown setting)" || return 1
    expect_contains "$out" "typo.conf:2, [server] max-runing" || return 1
    printf '[bogus]\n' >"$PD/section.conf"
    out=$("$BIN/jobworker-server" --config "$PD/section.conf" --check-config 2>&1)
    expect_eq "$?" 2 "(--check-config of an unknown section)" || return 1
    expect_contains "$out" "section.conf:1" || return 1
    out=$("$BIN/jobworker-server" --config "$PD/none.conf" --check-config 2>&1)
    expect_eq "$?" 2 "(--check-config of a missing file)" || return 1
    expect_contains "$out" "none.conf" || return 1
}
check "policy: --check-config passes a good file and names the line of a broken one" t_pol_check

t_pol_serve_body() {
    local blocker q out
    grep -q "admission: at most 1 job(s) running" "$T/server.log" ||
        { echo "the file's max-running did not apply" >&2; return 1; }
    blocker=$(jc create /bin/sleep 30) || return 1
    wait_status "$blocker" RUNNING || return 1
    expect_eq "$(json_field "$(jc -o json get "$blocker")" timeout_seconds)" 3600 "(the ceiling as timeout)" || return 1
    q=$(jc create /bin/true) || return 1
    expect_eq "$(json_field "$(jc -o json get "$q")" status)" QUEUED || return 1
    out=$(jc create /bin/true 2>&1) && { echo "a second queued job of alice was accepted" >&2; return 1; }
    expect_contains "$out" "RESOURCE_EXHAUSTED" || return 1
    expect_contains "$out" "owner 'alice' has 1 jobs waiting, its max-queued quota" || return 1
    out=$(jc create --timeout 2h /bin/true 2>&1) && { echo "a timeout above the ceiling was accepted" >&2; return 1; }
    expect_contains "$out" "PERMISSION_DENIED" || return 1
    expect_contains "$out" "timeout_seconds 7200 is above the ceiling 3600 ([ceiling] timeout in $PD/serve.conf)" || return 1
    out=$(jc create /sbin/ip link 2>&1) && { echo "a command outside the allow-list ran" >&2; return 1; }
    expect_contains "$out" "command '/sbin/ip' is not allowed by [allow]" || return 1

    # SIGHUP with a bigger quota: a second queued job is accepted.
    sed -i 's/^max-queued = 1 .*/max-queued = 3/' "$PD/serve.conf"
    kill -HUP "$SERVER_PID"
    for _ in $(seq 50); do grep -q "SIGHUP: reloaded the policy" "$T/server.log" && break; sleep 0.1; done
    jc create /bin/true >/dev/null || return 1
    # SIGHUP with a broken file: the old policy stays.
    printf '[quota]\nmax-queued = -1\n' >"$PD/serve.conf"
    kill -HUP "$SERVER_PID"
    for _ in $(seq 50); do grep -q "SIGHUP: policy not reloaded" "$T/server.log" && break; sleep 0.1; done
    grep -q "SIGHUP: policy not reloaded, the previous one stays in force: .*serve.conf:2" "$T/server.log" ||
        { echo "no refusal of the broken file in the log" >&2; return 1; }
    jc create /bin/true >/dev/null || return 1
    out=$(jc create /bin/true 2>&1) && { echo "the quota of 3 did not hold after a broken reload" >&2; return 1; }
    expect_contains "$out" "its max-queued quota" || return 1
    jc stop "$blocker" >/dev/null
}
t_pol_serve() {
    cp "$PD/good.conf" "$PD/serve.conf"
    # --max-queued on the command line; max-running from the file.
    stop_stale_server
    start_server --config "$PD/serve.conf" --max-queued 100 || return 1
    t_pol_serve_body
    local rc=$?
    stop_server || rc=1
    return "$rc"
}
check "policy: quotas, ceilings and the allow-list from --config refuse naming each; SIGHUP applies a changed file and keeps the old policy over a broken one" t_pol_serve
