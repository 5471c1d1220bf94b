# shellcheck shell=bash
# Admission through the real binaries (sourced by run.sh; issue 12): --max-running holds the
# number of job processes (sampled from /proc, not the API) and every job completes FIFO; a second
# owner's job starts within two admissions of a first owner's hundred; a queued job stops without
# ever running; `jobctl run` of a queued job waits and says so once; the queue survives SIGTERM
# and SIGKILL of the server and runs after the restart in its order. Memory and cpu capacity
# need enforced limits: unit test_service and the vm tier test them.

QD="$T/queue"
mkdir -p "$QD"

# procs_matching MARK: the job processes `sh -c 'sleep 0.2' MARK` running now.
procs_matching() { pgrep -c -f "^sh -c sleep 0.2 $1\$" || true; }

# with_server FN FLAGS...: runs FN against a server started with FLAGS, stopped afterwards
# whatever FN returned (so that a failure does not leave the next test without a server).
with_server() {
    local fn=$1 rc
    shift
    stop_stale_server
    start_server "$@" || return 1
    "$fn"
    rc=$?
    stop_server || rc=1
    return "$rc"
}

# starts_in_order SLACK_NS ID...: the jobs (oldest first) all COMPLETED, none started more than
# SLACK_NS before a job created before it. Admission is exactly FIFO (unit test_queue); with
# several dispatchers starting jobs at once, start times may cross by a launch's jitter.
starts_in_order() {
    local slack=$1
    shift
    # One listing for all of them (a GetJob each is too slow under the sanitizers).
    jc -o json list --all | $PY -c '
import json, sys
slack, ids = int(sys.argv[1]), sys.argv[2:]
jobs = {j["id"]: j for j in json.load(sys.stdin)["jobs"]}
latest = 0
for i in ids:
    j = jobs.get(i)
    if j is None or j["status"] != "COMPLETED":
        sys.exit("job %s is %s, not COMPLETED" % (i, j and j["status"]))
    st = int(j["start_time_unix_ns"])
    if st + slack < latest:
        sys.exit("job %s started %d ms before a job created before it" % (i, (latest - st) // 1000000))
    latest = max(latest, st)
' "$slack" "$@"
}

t_q_cap_body() {
    local ids=() max=0 n id
    # The sampler watches the processes while the 200 jobs are created and run.
    (
        m=0
        for _ in $(seq 1500); do
            c=$(procs_matching "qcap-mark")
            [ "$c" -gt "$m" ] && m=$c && echo "$m" >"$QD/max"
            [ -e "$QD/done" ] && break
            sleep 0.02
        done
    ) &
    local sampler=$!
    # Four blockers hold the slots while the 200 are queued, so that they then run 4 at a time
    # however slowly this host creates them.
    local blockers=() b
    for _ in 1 2 3 4; do
        b=$(jc create sleep 600) || return 1
        blockers+=("$b")
    done
    for _ in $(seq 200); do
        id=$(jc create sh -c 'sleep 0.2' qcap-mark) || return 1
        ids+=("$id")
    done
    expect_eq "$(json_field "$(jc -o json get "${ids[0]}")" status)" QUEUED "(the first of 200 behind 4 blockers)" || return 1
    for b in "${blockers[@]}"; do jc stop "$b" >/dev/null || return 1; done
    for _ in $(seq 600); do
        n=$(jc list --status queued,initializing,running --limit 1000 | grep -c qcap-mark)
        [ "$n" = 0 ] && break
        sleep 0.1
    done
    touch "$QD/done"
    wait "$sampler"
    max=$(cat "$QD/max" 2>/dev/null || echo 0)
    echo "    figure: 200 jobs of 0.2 s under --max-running 4: at most $max job processes at once"
    [ "$max" -ge 2 ] || { echo "the sampler saw $max job processes: it did not watch them" >&2; return 1; }
    [ "$max" -le 4 ] || { echo "$max job processes at once under --max-running 4" >&2; return 1; }
    starts_in_order 1000000000 "${ids[@]}"
}
t_q_cap() { with_server t_q_cap_body --max-running 4; }
check "queue: 200 jobs under --max-running 4 never run more than 4 processes, all complete, FIFO" t_q_cap

t_q_fair_body() {
    local ids=() id b after blocker bj bcreate bstart
    # A blocker holds the one slot while alice queues 100 jobs and oscar 1: the order in which
    # they start does not depend on how fast the jobs are created.
    blocker=$(jc create sleep 600) || return 1
    wait_status "$blocker" RUNNING || return 1
    for _ in $(seq 100); do
        id=$(jc create sh -c 'true' qfair-a) || return 1
        ids+=("$id")
    done
    b=$(jc_as admin2 create sh -c 'true' qfair-b) || return 1
    bj=$(jc -o json get "$b")
    expect_eq "$(json_field "$bj" status)" QUEUED || return 1
    # alice has the turn: her first job, then oscar's.
    expect_eq "$(json_field "$bj" queue_position)" 2 "(oscar's position)" || return 1
    expect_contains "$(jc get "$b")" "queue position" || return 1
    jc stop "$blocker" >/dev/null || return 1
    wait_status "$b" COMPLETED || return 1
    bj=$(jc -o json get "$b")
    bcreate=$(json_field "$bj" create_time_unix_ns)
    bstart=$(json_field "$bj" start_time_unix_ns)
    # alice's jobs that started between oscar's submission and its start: at most 2.
    after=$(jc -o json list --all | $PY -c '
import json, sys
lo, hi, ids = int(sys.argv[1]), int(sys.argv[2]), set(sys.argv[3:])
jobs = [j for j in json.load(sys.stdin)["jobs"] if j["id"] in ids]
if len(jobs) != len(ids):
    sys.exit("%d of alice'"'"'s 100 jobs listed" % len(jobs))
print(sum(1 for j in jobs if lo < int(j["start_time_unix_ns"]) < hi))
' "$bcreate" "$bstart" "${ids[@]}") || return 1
    echo "    figure: oscar's job started after $after of alice's (of 100 queued)"
    [ "$after" -le 2 ] || { echo "oscar's job waited for $after of alice's jobs" >&2; return 1; }
}
t_q_fair() { with_server t_q_fair_body --max-running 1; }
check "queue: a second owner's job starts within 2 admissions of another's 100 queued jobs" t_q_fair

t_q_stop_and_run_body() {
    local blocker q out
    blocker=$(jc create sleep 30) || return 1
    wait_status "$blocker" RUNNING || return 1
    q=$(jc create sh -c 'echo never >/dev/null' qstop) || return 1
    expect_eq "$(json_field "$(jc -o json get "$q")" status)" QUEUED || return 1
    expect_eq "$(json_field "$(jc -o json get "$q")" queue_position)" 1 || return 1
    expect_contains "$(jc list --status queued)" "$q" || return 1
    out=$(jc -o json stop "$q") || return 1
    expect_eq "$(json_field "$out" status)" STOPPED || return 1
    expect_eq "$(json_field "$out" start_time_unix_ns)" 0 || return 1
    expect_contains "$(json_field "$out" error)" "never ran" || return 1

    # jobctl run of a job that must wait: one line on stderr, then its output and status.
    jc run sh -c 'echo from-queue; exit 3' >"$QD/run.out" 2>"$QD/run.err" &
    local runner=$!
    sleep 0.5
    jc stop "$blocker" >/dev/null || return 1
    wait "$runner"
    expect_eq "$?" 3 "(run's exit status)" || return 1
    expect_eq "$(cat "$QD/run.out")" from-queue || return 1
    expect_eq "$(grep -c 'is queued (position 1)' "$QD/run.err")" 1
}
t_q_stop_and_run() { with_server t_q_stop_and_run_body --max-running 1; }
check "queue: a queued job stops without running; jobctl run of a queued job waits and says so once" t_q_stop_and_run

t_q_restart_body() {
    local d="$QD/data-restart" sig blocker ids id j
    for sig in TERM KILL; do
        rm -rf "$d"
        mkdir -p "$d"
        chmod 700 "$d"
        stop_stale_server
        start_server --data-dir "$d" --max-running 1 || return 1
        blocker=$(jc create sleep 30) || return 1
        wait_status "$blocker" RUNNING || return 1
        ids=()
        for j in 1 2 3; do
            id=$(jc create sh -c "echo q$j" qrestart) || return 1
            ids+=("$id")
        done
        if [ "$sig" = TERM ]; then
            stop_server || return 1
        else
            kill -KILL "$SERVER_PID"
            for _ in $(seq 100); do [ -s "$T/server.rc" ] && break; sleep 0.05; done
        fi
        expect_eq "$(sqlite3 "$d/jobs.db" "SELECT count(*) FROM jobs WHERE status = 6")" 3 "(QUEUED rows after SIG$sig)" || return 1
        start_server --data-dir "$d" --max-running 1 || return 1
        grep -q "3 queued job(s) from before the restart wait again" "$T/server.log" ||
            { echo "no restore line in the log" >&2; return 1; }
        for id in "${ids[@]}"; do wait_status "$id" COMPLETED || return 1; done
        starts_in_order 0 "${ids[@]}" || return 1
        for j in 1 2 3; do
            expect_eq "$(jc stream "${ids[$((j - 1))]}")" "q$j" || return 1
        done
        if [ "$sig" = TERM ]; then
            expect_eq "$(json_field "$(jc -o json get "$blocker")" reason)" SERVER_SHUTDOWN || return 1
        else
            expect_eq "$(json_field "$(jc -o json get "$blocker")" reason)" SERVER_LOST || return 1
        fi
        stop_server || return 1
    done
}
t_q_restart() {
    t_q_restart_body
    local rc=$?
    [ -z "$SERVER_PID" ] || stop_server
    return "$rc"
}
check "queue: queued jobs survive SIGTERM and SIGKILL of the server and run after the restart in order" t_q_restart
