#!/bin/sh
# shellcheck source=../lib.sh disable=SC2034,SC2086,SC2046,SC2119 # SCENARIO is read by lib.sh; pid lists split on purpose
# pids: a fork bomb under --max-pids=32 is contained (pids.current never above 32, pids.events
# counts refused forks, the server stays responsive), and `jobctl stop` kills every process of it
# and removes its cgroup.
. /jw/lib.sh
SCENARIO=pids
# The bomb waits a second so that a missing pids.max can be caught before it goes off.
BOMB='sleep 1; b() { b | b & }; b; wait; sleep 1004'
server_up

if ! create --max-pids=32 -- sh -c "$BOMB" || ! wait_running "$JOB" 10; then
    fail pids "$ERR"
    server_stop
    exit 1
fi
ID=$JOB
D=$(cgdir "$ID")
pmax=$(cat "$D/pids.max" 2>/dev/null)
if [ "$pmax" != 32 ]; then
    stop "$ID"
    fail pids "pids.max of the job is '$pmax', want 32 (bomb stopped before it went off)"
    server_stop
    exit 1
fi

# Watch it for 3 s.
peak=0
t0=$(uptime_s)
while is "$(since "$t0") < 3"; do
    c=$(cat "$D/pids.current" 2>/dev/null)
    [ -n "$c" ] && [ "$c" -gt "$peak" ] && peak=$c
    sleep 0.1
done
events=$(keyed "$D/pids.events" max)
procs=$(procs_of "$D")
nprocs=$(count $procs)
t1=$(uptime_s)
responsive=no
get "$ID" && [ "$(jf status)" = RUNNING ] && responsive=yes
getsec=$(since "$t1")

t1=$(uptime_s)
stop "$ID" || fail pids "$ERR"
wait_final "$ID" 15 || fail pids "$ERR"
final="$(jf status)/$(jf reason)"
gone=yes
wait_gone "$D" 10 || gone=no
stopsec=$(since "$t1")
# shellcheck disable=SC2086
left=$(alive_of $procs | tr '\n' ' ')

if [ "$peak" -gt 32 ]; then
    fail pids "pids.current reached $peak under pids.max 32"
elif ! is "${events:-0} > 0"; then
    fail pids "pids.events max=${events:-missing}: the bomb never hit the limit (peak $peak)"
elif [ "$responsive" != yes ]; then
    fail pids "server did not answer GetJob during the bomb: $ERR"
elif [ "$final" != STOPPED/STOPPED ]; then
    fail pids "after stop the job is $final, want STOPPED/STOPPED"
elif [ -n "$left" ]; then
    fail pids "processes of the job alive after stop: $left"
elif [ "$gone" != yes ]; then
    fail pids "$D still exists 10s after stop: cgroup.events '$(tr '\n' ' ' <"$D/cgroup.events")', procs '$(procs_of "$D")'"
else
    pass pids "pids.current peaked at $peak/32, pids.events max=$events, GetJob during the bomb ${getsec}s; stop killed $nprocs processes and removed the cgroup in ${stopsec}s"
fi
finish
