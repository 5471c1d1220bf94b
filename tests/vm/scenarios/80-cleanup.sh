#!/bin/sh
# shellcheck source=../lib.sh disable=SC2034,SC2086,SC2046,SC2119 # SCENARIO is read by lib.sh; pid lists split on purpose
# cleanup: SIGTERM to the server with jobs running (one of them escaped its session) leaves no
# job cgroup and no job process, and the server exits 0. After SIGKILL of the server its jobs'
# cgroups are left over; the restarted server finds them, kills what is in them and removes them.
. /jw/lib.sh
SCENARIO=cleanup

# start_jobs N: one plain sleeper, one that escapes its session, one busy loop under 10 % CPU;
# sets IDS and PROCS (every pid in their cgroups once all sleepers run).
start_jobs() {
    IDS=
    PROCS=
    create -- sleep "$1" && wait_running "$JOB" 10 || return 1
    IDS=$JOB
    # shellcheck disable=SC2016 # $0 is the inner shell's
    create -- sh -c 'setsid sh -c "sleep $0 &"; sleep $0' "$1" && wait_running "$JOB" 10 || return 1
    IDS="$IDS $JOB"
    create --max-cpu=10 -- sh -c 'while :; do :; done' && wait_running "$JOB" 10 || return 1
    IDS="$IDS $JOB"
    t0=$(uptime_s)
    while [ "$(count $(pids_running "sleep $1"))" -lt 3 ]; do
        if is "$(since "$t0") > 10"; then
            ERR="want 3 'sleep $1' processes, have: $(pids_running "sleep $1" | tr '\n' ' ')"
            return 1
        fi
        sleep 0.1
    done
    for id in $IDS; do PROCS="$PROCS $(procs_of "$(cgdir "$id")")"; done
}

# --- SIGTERM with jobs running.
server_up
if ! start_jobs 1008; then
    fail cleanup.sigterm "$ERR"
else
    nprocs=$(count $PROCS)
    server_stop TERM 20
    # shellcheck disable=SC2086
    left=$(alive_of $PROCS | tr '\n' ' ')
    cgs=$(job_cgroups | tr '\n' ' ')
    if [ "$SERVER_RC" != 0 ]; then
        fail cleanup.sigterm "server exit status after SIGTERM: $SERVER_RC, want 0"
    elif [ -n "$cgs" ]; then
        fail cleanup.sigterm "job cgroups left after the server exited: $cgs"
    elif [ -n "$left" ] || [ -n "$(pids_running "sleep 1008")" ]; then
        fail cleanup.sigterm "job processes alive after the server exited: $left $(pids_running "sleep 1008" | tr '\n' ' ')"
    else
        pass cleanup.sigterm "3 jobs ($nprocs processes) stopped, server exited 0 ${SERVER_STOP_S}s after SIGTERM; no job cgroup or process left"
    fi
fi
server_stop KILL 5 # only if the above failed half-way

# --- SIGKILL, then restart.
JSON=
server_up
if ! start_jobs 1009; then
    fail cleanup.restart "$ERR"
    server_stop
    exit 1
fi
server_stop KILL 5
stale=$(job_cgroups | tr '\n' ' ')
# shellcheck disable=SC2086
stale_procs=$(alive_of $PROCS | tr '\n' ' ')
t1=$(uptime_s)
server_up
t0=$(uptime_s)
while [ -n "$(job_cgroups)" ] && is "$(since "$t0") < 10"; do sleep 0.1; done
sec=$(since "$t1")
cgs=$(job_cgroups | tr '\n' ' ')
# shellcheck disable=SC2086
left=$(alive_of $PROCS | tr '\n' ' ')
if [ -z "$stale" ]; then
    fail cleanup.restart "no job cgroup was left over after SIGKILL of the server: nothing to recover (procs alive: '$stale_procs')"
elif [ -n "$cgs" ]; then
    fail cleanup.restart "leftover job cgroups still there after restart: $cgs"
elif [ -n "$left" ] || [ -n "$(pids_running "sleep 1009")" ]; then
    fail cleanup.restart "processes of the killed server's jobs alive after restart: $left $(pids_running "sleep 1009" | tr '\n' ' ')"
elif ! create -- true || ! wait_final "$JOB" 10 || [ "$(jf status)" != COMPLETED ]; then
    fail cleanup.restart "after recovery a new job does not complete: $ERR $(jf status)"
else
    pass cleanup.restart "$(count $stale) leftover cgroups with $(count $stale_procs) live processes removed within ${sec}s of restart; new jobs run"
fi
finish
