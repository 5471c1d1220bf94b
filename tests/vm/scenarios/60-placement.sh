#!/bin/sh
# shellcheck source=../lib.sh disable=SC2034,SC2086,SC2046,SC2119 # SCENARIO is read by lib.sh; pid lists split on purpose
# placement: a job's own /proc/self/cgroup is 0::/jobworker/job-<id> (it never ran elsewhere:
# job-init is placed before it execs), the server sits in /jobworker/supervisor, jobs are its
# siblings, and /jobworker itself holds no process (no-internal-processes rule).
. /jw/lib.sh
SCENARIO=placement
server_up

scg=$(sed -n 's/^0:://p' "/proc/$SERVER_PID/cgroup")
if [ "$scg" = "$PARENT/supervisor" ]; then
    pass placement.server "server pid $SERVER_PID in $scg"
else
    fail placement.server "server pid $SERVER_PID is in '$scg', want $PARENT/supervisor"
fi

# A long job and a short one side by side.
if ! create -- sleep 1006 || ! wait_running "$JOB" 10; then
    fail placement "$ERR"
    server_stop
    exit 1
fi
A=$JOB
apid=$(jf pid)
if ! create -- cat /proc/self/cgroup || ! wait_final "$JOB" 10; then
    fail placement "$ERR"
    server_stop
    exit 1
fi
B=$JOB
bout=$(output "$B")
acg=$(sed -n 's/^0:://p' "/proc/$apid/cgroup" 2>/dev/null)
parent_procs=$(procs_of "$CGP")
subtree=$(cat "$CGP/cgroup.subtree_control" 2>/dev/null)
listing=$(for d in "$CGP"/supervisor "$CGP"/job-*; do [ -e "$d" ] && printf '%s ' "${d##*/}"; done)

if [ "$bout" != "0::$PARENT/job-$B" ]; then
    fail placement.job "job $B printed '$bout' for /proc/self/cgroup, want '0::$PARENT/job-$B'"
elif [ "$acg" != "$PARENT/job-$A" ]; then
    fail placement.job "job $A (pid '$apid') is in '$acg', want $PARENT/job-$A"
elif [ "$(dirname "$acg")" != "$(dirname "$scg")" ]; then
    fail placement.job "job cgroup $acg is not a sibling of the server's $scg"
elif [ -n "$parent_procs" ]; then
    fail placement.job "$CGP holds processes itself: $parent_procs"
else
    pass placement.job "job sees '$bout'; running job pid $apid in $acg, sibling of $scg; $PARENT holds no process; subtree_control '$subtree'"
fi

miss=
for c in cpu memory io pids; do
    case " $subtree " in *" $c "*) ;; *) miss="$miss $c" ;; esac
done
if [ -n "$miss" ]; then
    fail placement.controllers "$PARENT/cgroup.subtree_control is '$subtree', missing:$miss"
else
    pass placement.controllers "$PARENT delegates '$subtree' to jobs; children: $listing"
fi
stop "$A" || fail placement "$ERR"
wait_final "$A" 10 || fail placement "$ERR"
finish
