# shellcheck shell=bash
# Durable jobs (issue 11; sourced by run.sh): the history survives SIGTERM and kill -9 of the
# server, acknowledged jobs are never lost, retention removes the oldest finished jobs, the
# database is migrated forward and a damaged or newer one is refused. Each test runs its own
# server on its own data directory.

HD="$T/hist"

# kill_server: SIGKILL, then wait for the keeper to record the exit.
kill_server() {
    kill -KILL "$SERVER_PID" 2>/dev/null
    for _ in $(seq 100); do
        [ -s "$T/server.rc" ] && { SERVER_PID=; return 0; }
        sleep 0.05
    done
    echo "server did not die on SIGKILL" >&2
    return 1
}

# A finished job, a running one and a failed one; restart; all three are listed with their
# final state and their output streams byte-exact from 0 and from the middle.
hist_restart() {
    local how=$1 done_id run_id bad_id json
    rm -rf "$HD"
    start_server --data-dir "$HD" || return 1
    done_id=$(jc create "$TESTBIN/pattern" 300000 7) || return 1
    bad_id=$(jc create sh -c 'echo broken; exit 4') || return 1
    run_id=$(jc create sh -c "$TESTBIN/pattern 100000 9; exec sleep 100") || return 1
    wait_status "$done_id" COMPLETED || return 1
    wait_status "$bad_id" FAILED || return 1
    for _ in $(seq 100); do
        [ "$(json_field "$(jc -o json get "$run_id")" output_bytes)" = 100000 ] && break
        sleep 0.05
    done
    if [ "$how" = kill ]; then kill_server || return 1; else stop_server || return 1; fi
    start_server --data-dir "$HD" || return 1

    json=$(jc -o json get "$done_id") || return 1
    expect_eq "$(json_field "$json" status)" COMPLETED || return 1
    expect_eq "$(json_field "$json" output_bytes)" 300000 || return 1
    json=$(jc -o json get "$bad_id") || return 1
    expect_eq "$(json_field "$json" exit_code)" 4 || return 1
    json=$(jc -o json get "$run_id") || return 1
    expect_eq "$(json_field "$json" status)" FAILED || return 1
    if [ "$how" = kill ]; then
        expect_eq "$(json_field "$json" reason)" SERVER_LOST || return 1
        expect_contains "$(json_field "$json" error)" "server went away" || return 1
    else
        expect_eq "$(json_field "$json" reason)" SERVER_SHUTDOWN || return 1
    fi
    expect_eq "$(json_field "$json" output_bytes)" 100000 || return 1
    local list
    list=$(jc -o json list) || return 1
    for id in "$done_id" "$bad_id" "$run_id"; do
        expect_contains "$list" "\"id\":\"$id\"" || return 1
    done
    jc stream "$done_id" | "$TESTBIN/pattern" --check 300000 7 || { echo "output differs" >&2; return 1; }
    jc stream --offset 150000 "$done_id" >"$T/hist.tail" || return 1
    "$TESTBIN/pattern" 300000 7 | tail -c 150000 | cmp - "$T/hist.tail" || return 1
    jc stream "$run_id" | "$TESTBIN/pattern" --check 100000 9 || { echo "lost job's output differs" >&2; return 1; }
    jc stream --offset 99999 "$run_id" >"$T/hist.tail" || return 1
    "$TESTBIN/pattern" 100000 9 | tail -c 1 | cmp - "$T/hist.tail" || return 1
    expect_eq "$(jc stream "$bad_id")" "broken" || return 1
    expect_eq "$(jc -o json stream "$bad_id")" '{"offset":0,"stream":"stdout","data":"YnJva2VuCg=="}' || return 1
    stop_server
}
t_hist_restart_term() { hist_restart term; }
t_hist_restart_kill() { hist_restart kill; }
check "history: after SIGTERM and a restart every job is listed with its final state and its output streams byte-exact from 0 and from the middle" t_hist_restart_term
check "history: after kill -9 a running job is FAILED/SERVER_LOST with its output kept; finished jobs unchanged" t_hist_restart_kill

# Crash consistency: a client floods CreateJob while the server is killed at random moments;
# after each restart every acknowledged id is present and final, and none is listed twice.
t_hist_crash() {
    local acked=0 ids list n uniq missing
    rm -rf "$HD"
    : >"$T/hist.acked"
    for _ in $(seq 20); do
        start_server --data-dir "$HD" || return 1
        (
            for _ in $(seq 200); do
                id=$(jc create true 2>/dev/null) || break
                echo "$id" >>"$T/hist.acked"
            done
        ) &
        local flood=$! before
        before=$(wc -l <"$T/hist.acked")
        # At least one acknowledged create per round, however slow the host (bounded: 30 s),
        # then the kill at a random moment of the flood.
        for _ in $(seq 300); do
            [ "$(wc -l <"$T/hist.acked")" -gt "$before" ] && break
            sleep 0.1
        done
        sleep "0.$((RANDOM % 9 + 1))"
        kill_server || return 1
        wait "$flood"
    done
    start_server --data-dir "$HD" || return 1
    acked=$(wc -l <"$T/hist.acked")
    [ "$acked" -ge 20 ] || { echo "only $acked creates were acknowledged in 20 rounds" >&2; return 1; }
    list=$(jc -o json list --all) || return 1
    ids=$(grep -o '"id":"[0-9a-f-]*"' <<<"$list" | cut -d'"' -f4)
    n=$(wc -l <<<"$ids")
    uniq=$(sort -u <<<"$ids" | wc -l)
    [ "$n" -eq "$uniq" ] || { echo "$n listed, $uniq distinct" >&2; return 1; }
    missing=$(sort -u "$T/hist.acked" | comm -23 - <(sort -u <<<"$ids") | wc -l)
    [ "$missing" -eq 0 ] || { echo "$missing of $acked acknowledged jobs are missing" >&2; return 1; }
    if grep -q '"status":"\(RUNNING\|INITIALIZING\)"' <<<"$list"; then
        echo "a job is not final after the restarts" >&2
        return 1
    fi
    echo "20 kill -9 rounds: $acked acknowledged creates, all listed once and final ($n jobs)"
    stop_server
}
check "history: 20 kill -9 during a CreateJob flood lose no acknowledged job and list none twice" t_hist_crash
sed -n 's/^20 kill.*/    figure: &/p' "$T/check.out"

# Retention by count, then by output bytes, then by age; the sweep runs at start and on its
# interval, never removes a running job, and logs what it removed.
t_hist_retention() {
    local ids=() id list keep
    rm -rf "$HD"
    start_server --data-dir "$HD" --retain-jobs 3 --retain-interval 200ms || return 1
    local runner
    runner=$(jc create sleep 100) || return 1
    for _ in 1 2 3 4 5 6; do
        id=$(jc create sh -c "head -c 400 /dev/zero") || return 1
        wait_status "$id" COMPLETED || return 1
        ids+=("$id")
    done
    for _ in $(seq 50); do
        list=$(jc -o json list)
        [ "$(grep -o '"status":"COMPLETED"' <<<"$list" | wc -l)" -eq 3 ] && break
        sleep 0.1
    done
    for id in "${ids[@]:0:3}"; do
        if grep -q "$id" <<<"$list"; then echo "old job $id kept past --retain-jobs 3" >&2; return 1; fi
        [ ! -e "$HD/output/$id.out" ] || { echo "output of $id kept" >&2; return 1; }
    done
    for id in "${ids[@]:3:3}" "$runner"; do
        expect_contains "$list" "$id" || return 1
    done
    grep -q "retention: removed" "$T/server.log" || { echo "nothing logged" >&2; return 1; }
    stop_server

    # Bytes: 3 jobs of 400 bytes (the running one was stopped by the shutdown: 0 bytes), at
    # most 1000 bytes kept: the sweep at start leaves the newest two.
    start_server --data-dir "$HD" --retain-output 1000 --retain-interval 200ms || return 1
    list=$(jc -o json list) || return 1
    keep=$(grep -o '"output_bytes":"\?400' <<<"$list" | wc -l)
    expect_eq "$keep" 2 || return 1
    expect_contains "$list" "${ids[5]}" || return 1
    stop_server

    # Age: everything finished more than 1 s ago goes; a running job stays.
    start_server --data-dir "$HD" --retain-age 1s --retain-interval 200ms || return 1
    runner=$(jc create sleep 100) || return 1
    sleep 1.6
    list=$(jc -o json list) || return 1
    expect_eq "$(grep -o '"id":' <<<"$list" | wc -l)" 1 || return 1
    expect_contains "$list" "$runner" || return 1
    stop_server
}
check "history: retention by count, output bytes and age removes the oldest finished jobs and their output, never a running one" t_hist_retention

# A full disk under the history: jobs that end while the database cannot be written stay
# visible, the failure is logged once, and the record is written once space returns.
t_hist_disk_full() {
    local d="$T/histfull" id json rc=0
    mkdir -p "$d"
    mount -t tmpfs -o size=2m,mode=0700 jw-it-hist "$d" || { echo "cannot mount a tmpfs" >&2; return 1; }
    start_server --data-dir "$d" --retain-interval 200ms || { umount "$d"; return 1; }
    id=$(jc create sh -c 'sleep 1; echo done') || rc=1
    # Fill the disk completely while the job runs.
    head -c 4M /dev/zero >"$d/filler" 2>/dev/null
    [ "$rc" -eq 0 ] && { wait_status "$id" COMPLETED || rc=1; }
    json=$(jc create true 2>&1) && { echo "create accepted on a full disk" >&2; rc=1; }
    expect_contains "$json" "RESOURCE_EXHAUSTED" || rc=1
    rm -f "$d/filler"
    sleep 0.5
    jc create true >/dev/null || { echo "create refused after space returned" >&2; rc=1; }
    stop_server || rc=1
    start_server --data-dir "$d" || rc=1
    expect_eq "$(json_field "$(jc -o json get "$id")" status)" COMPLETED || rc=1
    stop_server || rc=1
    umount "$d" || rc=1
    return "$rc"
}
check "history: a full disk refuses new jobs, loses no finished job's record, and recovers when space returns" t_hist_disk_full

# Migration and refusal: a schema-1 database is upgraded and its jobs listed; a damaged file
# and a newer schema make the server refuse to start with what to do, and change nothing.
t_hist_schema() {
    local d="$T/histdb" log
    rm -rf "$d"
    mkdir -p "$d"
    chmod 700 "$d"
    sqlite3 "$d/jobs.db" <"$REPO/tests/integration/fixtures/jobs-v1.sql" || return 1
    # The fixture's job ended long ago: no age limit, or the sweep at start would remove it.
    start_server --data-dir "$d" --retain-age 0 || return 1
    grep -q "job database .* migrated from schema version 1 to 4" "$T/server.log" ||
        { echo "no migration line in the log" >&2; return 1; }
    expect_contains "$(jc list)" "0b6f3d2e-5f43-4c1e-9d59-6b7f0e1a2c3d" || return 1
    expect_eq "$(json_field "$(jc -o json get 0b6f3d2e-5f43-4c1e-9d59-6b7f0e1a2c3d)" command)" echo || return 1
    stop_server || return 1
    expect_eq "$(sqlite3 "$d/jobs.db" 'PRAGMA user_version')" 4 || return 1

    sqlite3 "$d/jobs.db" 'PRAGMA user_version = 99' || return 1
    log=$(timeout 10 "$BIN/jobworker-server" --listen "127.0.0.1:$(free_port)" --no-cgroups \
        --cert "$CERTS/server.crt" --key "$CERTS/server.key" --ca "$CERTS/ca.crt" \
        --data-dir "$d" 2>&1) && { echo "server started on a newer schema" >&2; return 1; }
    expect_contains "$log" "schema version 99, newer than this server's 4" || return 1
    expect_eq "$(sqlite3 "$d/jobs.db" 'PRAGMA user_version')" 99 || return 1

    rm -f "$d"/jobs.db*
    head -c 8192 /dev/urandom >"$d/jobs.db"
    cp "$d/jobs.db" "$T/hist.garbage"
    log=$(timeout 10 "$BIN/jobworker-server" --listen "127.0.0.1:$(free_port)" --no-cgroups \
        --cert "$CERTS/server.crt" --key "$CERTS/server.key" --ca "$CERTS/ca.crt" \
        --data-dir "$d" 2>&1) && { echo "server started on a garbage database" >&2; return 1; }
    expect_contains "$log" "is not a usable SQLite database" || return 1
    expect_contains "$log" "move it away" || return 1
    cmp "$d/jobs.db" "$T/hist.garbage" || { echo "the damaged file was changed" >&2; return 1; }
}
check "history: a schema-1 database is migrated; a newer schema or a damaged file is refused with what to do" t_hist_schema
