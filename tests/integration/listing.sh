# shellcheck shell=bash
# Paged, filtered listing and DeleteJob through jobctl (sourced by run.sh; issue 11): usage
# errors of `list` and `delete`, 30 jobs of two owners in every state listed newest first,
# filters by status, owner and age alone and combined, pages followed by --all and --limit
# (the audit log counts the GetJobs calls), the stderr note of a listing cut at one page, DeleteJob
# of finished, running, unknown and malformed ids and by a viewer, and SERVER_LOST after a
# SIGKILL of the server. Runs its own server on a data directory of its own, since history now
# outlives a server.

LZ="$T/lz"
mkdir -p "$LZ"
LZ_DATA="$T/listing-data"

start_server --data-dir "$LZ_DATA" || exit 1

# ids_of LIST-ARGS...: the ids `jobctl -o json list` prints, one a line, in its order.
ids_of() {
    jc -o json list "$@" | $PY -c 'import json,sys; [print(j["id"]) for j in json.load(sys.stdin)["jobs"]]'
}

# created KIND...: the ids created with one of these kinds (see t_lz_setup), newest first.
created() {
    local k
    for k in "$@"; do grep " $k\$" "$LZ/created"; done | sort -k1,1nr | cut -d' ' -f2
}

# getjobs_calls: GetJobs calls the server audited so far (GetJobsStream excluded).
getjobs_calls() { grep -c 'method=GetJobs job=' "$T/audit.log"; }

t_lz_usage() {
    local out rc args want argv
    # Each is refused before any connection: exit 2, the message names the value.
    while IFS='|' read -r args want; do
        read -ra argv <<<"$args"
        out=$(jc list "${argv[@]}" 2>&1)
        rc=$?
        expect_eq "$rc" 2 "(list $args)" || return 1
        expect_contains "$out" "$want" || return 1
        expect_contains "$out" "(see 'jobctl list --help')" || return 1
    done <<'EOF'
--status bogus|invalid status 'bogus' for --status (expected initializing, running, completed, failed, stopped or queued)
--status running,,failed|invalid status '' for --status
--status unspecified|invalid status 'unspecified'
--limit 0|invalid value '0' for --limit
--limit -3|invalid value '-3' for --limit
--limit 5 --all|--limit and --all cannot be used together
--all --limit 5|--limit and --all cannot be used together
--since 5x|invalid value '5x' for --since
--since -1m|invalid value '-1m' for --since
--page-size 0|invalid value '0' for --page-size
--page-size 10001|invalid value '10001' for --page-size
--owner=|empty value for --owner
--limit|option '--limit' requires a value
extra|unexpected argument 'extra'
EOF
    out=$(jc list --status running,FAILED --status Stopped --help) || return 1
    expect_contains "$out" "--status S[,S...]" || return 1
    out=$(jc delete 2>&1)
    expect_eq "$?" 2 "(delete without an id)" || return 1
    expect_contains "$out" "expected exactly one job id" || return 1
    out=$(jc delete a b 2>&1)
    expect_eq "$?" 2 "(delete with two ids)" || return 1
    out=$("$BIN/jobctl" help delete) || return 1
    expect_contains "$out" "Usage: jobctl delete [options] ID" || return 1
    expect_contains "$("$BIN/jobctl" help)" "delete" || return 1
}
check "list/delete usage errors exit 2 naming the value, before connecting" t_lz_usage

# 10 COMPLETED jobs, a pause of 5 s, then 20 jobs of every kind: alice's COMPLETED ("ok"),
# FAILED ("fail"), RUNNING ("run") and STOPPED ("stop"), and kate's COMPLETED (kate is an admin
# too: the "revoked" certificate, valid while the server has no --crl). $LZ/created lists
# "SEQ ID KIND" in creation order; $LZ/cutoff is a time between the two batches (Unix ms), 1 s
# after the first and 4 s before the second: a --since computed from it in the shell may reach
# jobctl up to 4 s late (a loaded host, a sanitizer build) and still select the second batch.
LZ_KINDS=(ok fail kate run ok fail kate stop ok fail kate run ok fail kate stop ok fail kate run)
t_lz_setup() {
    local i id k seq=0 t0 out
    : >"$LZ/created"
    for i in $(seq 10); do
        id=$(jc create true "lz-old-$i") || return 1
        seq=$((seq + 1))
        echo "$seq $id old" >>"$LZ/created"
    done
    t0=$(date +%s%3N)
    echo $((t0 + 1000)) >"$LZ/cutoff"
    sleep 5
    for k in "${LZ_KINDS[@]}"; do
        case $k in
        ok) id=$(jc create true "lz-$seq") ;;
        fail) id=$(jc create sh -c 'exit 3' "lz-$seq") ;;
        kate) id=$(jc_as revoked create true "lz-$seq") ;;
        run | stop) id=$(jc create sleep 300) ;;
        esac
        [ -n "$id" ] || return 1
        seq=$((seq + 1))
        echo "$seq $id $k" >>"$LZ/created"
    done
    for id in $(created stop); do
        wait_status "$id" RUNNING || return 1
        jc stop "$id" >/dev/null || return 1
    done
    # Until every job is in its final (or running) state.
    for _ in $(seq 200); do
        out=$(jc -o json list | $PY -c 'import json,sys
jobs=json.load(sys.stdin)["jobs"]
print(len(jobs), sum(j["status"] in ("INITIALIZING",) for j in jobs))')
        [ "$out" = "30 0" ] && return 0
        sleep 0.1
    done
    echo "listing never settled: '$out' (jobs, initializing)" >&2
    return 1
}
check "listing setup: 30 jobs of two owners in every state" t_lz_setup

t_lz_order() {
    local out
    # Default: one page, newest first, and nothing on stderr when it holds every job.
    expect_eq "$(ids_of 2>"$LZ/err")" "$(created old ok fail kate run stop)" "(newest first)" || return 1
    expect_eq "$(cat "$LZ/err")" "" "(stderr of a complete listing)" || return 1
    jc list >"$LZ/table" 2>"$LZ/err" || return 1
    expect_eq "$(wc -l <"$LZ/table")" 31 "(table lines)" || return 1
    expect_eq "$(sed -n 2p "$LZ/table" | cut -d' ' -f1)" "$(created old ok fail kate run stop | head -1)" || return 1
    expect_eq "$(cat "$LZ/err")" "" || return 1
    out=$(jc list --status failed)
    expect_contains "$out" "exit 3" || return 1
}
check "list: 30 jobs newest first, table and JSON agree, no note when complete" t_lz_order

t_lz_pages() {
    local all before out
    all=$(created old ok fail kate run stop)
    # --all follows every page: 30 jobs in pages of 7 are five GetJobs calls.
    before=$(getjobs_calls)
    expect_eq "$(ids_of --all --page-size 7)" "$all" "(--all --page-size 7)" || return 1
    expect_eq "$(($(getjobs_calls) - before))" 5 "(GetJobs calls of --all --page-size 7)" || return 1
    # The table of several pages has one header and every job.
    jc list --all --page-size 4 >"$LZ/table" 2>"$LZ/err" || return 1
    expect_eq "$(wc -l <"$LZ/table")" 31 "(table lines of --all)" || return 1
    expect_eq "$(grep -c '^ID ' "$LZ/table")" 1 "(headers)" || return 1
    expect_eq "$(cat "$LZ/err")" "" "(stderr of --all)" || return 1
    # --limit N: the newest N, one page of N.
    before=$(getjobs_calls)
    expect_eq "$(ids_of --limit 10 2>"$LZ/err")" "$(echo "$all" | head -10)" "(--limit 10)" || return 1
    expect_eq "$(($(getjobs_calls) - before))" 1 "(GetJobs calls of --limit 10)" || return 1
    expect_eq "$(cat "$LZ/err")" "" "(stderr of --limit)" || return 1
    # ... in pages of 4, 4 and 2: never more than still wanted.
    before=$(getjobs_calls)
    expect_eq "$(ids_of --limit 10 --page-size 4)" "$(echo "$all" | head -10)" "(--limit 10 --page-size 4)" || return 1
    expect_eq "$(($(getjobs_calls) - before))" 3 "(GetJobs calls of --limit 10 --page-size 4)" || return 1
    expect_eq "$(ids_of --limit 30)" "$all" "(--limit 30)" || return 1
    expect_eq "$(ids_of --limit 1000)" "$all" "(--limit 1000)" || return 1
    # Without --limit/--all one page only, and stderr says that more exist and how to see them.
    out=$(jc list --page-size 7 2>"$LZ/err") || return 1
    expect_eq "$(echo "$out" | wc -l)" 8 "(lines of one page of 7)" || return 1
    expect_eq "$(cat "$LZ/err")" "jobctl: more jobs match than the 7 shown: --limit N lists the newest N, --all every one" || return 1
    expect_eq "$(ids_of --page-size 7 2>/dev/null)" "$(echo "$all" | head -7)" "(one page of 7, JSON)" || return 1
}
check "list --all/--limit follow pages (GetJobs calls counted), one page by default with a note" t_lz_pages

# The contract says next_page_token is "" on the last page, also when that page is exactly
# full: otherwise --all makes one more call for an empty page and a one-page listing of exactly
# all the jobs says that more exist.
t_lz_full_last_page() {
    local before
    before=$(getjobs_calls)
    expect_eq "$(ids_of --all --page-size 10)" "$(created old ok fail kate run stop)" "(--all --page-size 10)" || return 1
    expect_eq "$(($(getjobs_calls) - before))" 3 "(GetJobs calls for 30 jobs in pages of 10)" || return 1
    jc list --page-size 30 >/dev/null 2>"$LZ/err" || return 1
    expect_eq "$(cat "$LZ/err")" "" "(stderr of a page holding exactly every job)"
}
check "an exactly full last page ends the listing: no extra GetJobs call, no note of more jobs" t_lz_full_last_page

t_lz_filters() {
    local since
    expect_eq "$(ids_of --status running)" "$(created run)" "(running)" || return 1
    expect_eq "$(ids_of --status RUNNING,stopped)" "$(created run stop)" "(RUNNING,stopped)" || return 1
    expect_eq "$(ids_of --status Failed)" "$(created fail)" "(failed)" || return 1
    expect_eq "$(ids_of --status completed --status failed)" "$(created old ok kate fail)" "(repeated --status)" || return 1
    expect_eq "$(ids_of --status initializing)" "" "(initializing)" || return 1
    expect_eq "$(jc list --status initializing | wc -l)" 1 "(an empty table is its header)" || return 1
    expect_eq "$(ids_of --owner kate)" "$(created kate)" "(owner kate)" || return 1
    expect_eq "$(ids_of --owner alice)" "$(created old ok fail run stop)" "(owner alice)" || return 1
    expect_eq "$(ids_of --owner nobody)" "" "(owner nobody)" || return 1
    # --since: back to a moment between the two batches (see t_lz_setup).
    since="$(($(date +%s%3N) - $(cat "$LZ/cutoff")))ms"
    expect_eq "$(ids_of --since "$since")" "$(created ok fail kate run stop)" "(--since $since)" || return 1
    expect_eq "$(ids_of --since 1h)" "$(created old ok fail kate run stop)" "(--since 1h)" || return 1
    expect_eq "$(ids_of --since 7d)" "$(created old ok fail kate run stop)" "(--since 7d)" || return 1
    expect_eq "$(ids_of --since 0)" "" "(--since 0)" || return 1
    # Combined, and across pages.
    since="$(($(date +%s%3N) - $(cat "$LZ/cutoff")))ms"
    expect_eq "$(ids_of --since "$since" --status completed --owner alice)" "$(created ok)" "(combined)" || return 1
    expect_eq "$(ids_of --status completed --all --page-size 3)" "$(created old ok kate)" "(completed, pages of 3)" || return 1
    expect_eq "$(ids_of --owner alice --limit 4 --page-size 3)" "$(created old ok fail run stop | head -4)" "(alice, --limit 4)" || return 1
    # A viewer lists with the same filters.
    expect_eq "$(jc_as viewer -o json list --status running --owner alice | $PY -c 'import json,sys; print(len(json.load(sys.stdin)["jobs"]))')" 3 "(viewer)" || return 1
}
check "list --status/--owner/--since alone, combined and across pages; viewer too" t_lz_filters

t_lz_delete() {
    local a b run fail out rc json before
    a=$(created old | tail -1)
    b=$(created old | tail -2 | head -1)
    run=$(created run | head -1)
    fail=$(created fail | head -1)
    # A finished job: its record and output go; get and stream say NOT_FOUND.
    out=$(jc delete "$a") || return 1
    expect_eq "$out" "deleted $a" || return 1
    out=$(jc get "$a" 2>&1)
    rc=$?
    expect_eq "$rc" 1 "(get of a deleted job)" || return 1
    expect_contains "$out" "NOT_FOUND" || return 1
    out=$(jc stream "$a" 2>&1)
    rc=$?
    expect_eq "$rc" 1 "(stream of a deleted job)" || return 1
    expect_contains "$out" "NOT_FOUND" || return 1
    expect_eq "$(ids_of --all)" "$(created old ok fail kate run stop | grep -v "$a")" "(listing after the delete)" || return 1
    grep -q "cn=\"alice\" role=admin method=DeleteJob job=$a outcome=OK" "$T/audit.log" ||
        { echo "no audit line of the DeleteJob" >&2; return 1; }
    # Again: NOT_FOUND.
    out=$(jc delete "$a" 2>&1)
    expect_eq "$?" 1 "(second delete)" || return 1
    expect_contains "$out" "NOT_FOUND" || return 1
    # -o json prints the job as it was.
    json=$(jc -o json delete "$fail") || return 1
    expect_eq "$(json_field "$json" id)" "$fail" || return 1
    expect_eq "$(json_field "$json" status)/$(json_field "$json" reason)/$(json_field "$json" exit_code)" FAILED/EXITED/3 || return 1
    # A running job is refused and keeps running.
    out=$(jc delete "$run" 2>&1)
    expect_eq "$?" 1 "(delete of a running job)" || return 1
    expect_contains "$out" "FAILED_PRECONDITION" || return 1
    expect_eq "$(json_field "$(jc -o json get "$run")" status)" RUNNING || return 1
    # A viewer may not delete; the job stays, output and all.
    before=$(jc stream "$b" | wc -c)
    out=$(jc_as viewer delete "$b" 2>&1)
    expect_eq "$?" 1 "(viewer delete)" || return 1
    expect_contains "$out" "PERMISSION_DENIED" || return 1
    jc get "$b" >/dev/null || return 1
    expect_eq "$(jc stream "$b" | wc -c)" "$before" "(output after a refused delete)" || return 1
    # Unknown and malformed ids.
    out=$(jc delete 00000000-0000-4000-8000-000000000000 2>&1)
    expect_eq "$?" 1 "(unknown id)" || return 1
    expect_contains "$out" "NOT_FOUND" || return 1
    out=$(jc delete not-a-uuid 2>&1)
    expect_eq "$?" 1 "(malformed id)" || return 1
    expect_contains "$out" "INVALID_ARGUMENT" || return 1
}
check "delete: finished job gone (get/stream NOT_FOUND), running refused, viewer denied, unknown/bad id" t_lz_delete

# The server dies (SIGKILL) under a running job and starts again on the same data directory:
# jobctl shows the job FAILED with reason SERVER_LOST, in get and in list.
lz_lost_checks() {
    local id=$1 before=$2 out
    wait_status "$id" FAILED || return 1
    out=$(jc get "$id") || return 1
    expect_contains "$out" "reason:          SERVER_LOST" || return 1
    out=$(jc list --status failed) || return 1
    expect_contains "$(echo "$out" | grep "^$id ")" "SERVER_LOST" || return 1
    expect_eq "$(json_field "$(jc -o json get "$id")" reason)" SERVER_LOST || return 1
    expect_eq "$(ids_of --all | wc -l)" "$before" "(jobs listed after the restart)"
}
t_lz_server_lost() {
    local id before rc
    id=$(jc create sleep 300) || return 1
    wait_status "$id" RUNNING || return 1
    before=$(ids_of --all | wc -l)
    kill -KILL "$SERVER_PID"
    for _ in $(seq 100); do
        [ -s "$T/server.rc" ] && break
        sleep 0.1
    done
    start_server --data-dir "$LZ_DATA" || return 1
    lz_lost_checks "$id" "$before"
    rc=$?
    # This server was started in the test's subshell: stop it here, pass or fail.
    stop_server || { echo "restarted server exit status $?" >&2; return 1; }
    return "$rc"
}
check "SIGKILL of the server under a running job: after the restart it is FAILED/SERVER_LOST in get and list" t_lz_server_lost

# The last test stops its own server; stop this group's if that test failed first.
[ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null && { stop_server || fail "listing server exit" "non-zero exit status"; }
