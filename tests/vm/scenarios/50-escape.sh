#!/bin/sh
# shellcheck source=../lib.sh disable=SC2034,SC2086,SC2046,SC2119 # SCENARIO is read by lib.sh; pid lists split on purpose
# escape: a job whose processes leave its session and process group (setsid, double fork) is
# still stopped whole: after `jobctl stop` none of its processes exists, the cgroup is empty and
# then removed.
. /jw/lib.sh
SCENARIO=escape
ESC='setsid sh -c "sleep 1005 &"; (sleep 1005 &); sleep 1005'
server_up

if ! create -- sh -c "$ESC" || ! wait_running "$JOB" 10; then
    fail escape "$ERR"
    server_stop
    exit 1
fi
ID=$JOB
D=$(cgdir "$ID")
# Wait for the three sleepers.
t0=$(uptime_s)
while [ "$(count $(pids_running "sleep 1005"))" -lt 3 ] && is "$(since "$t0") < 10"; do sleep 0.1; done
sleepers=$(pids_running "sleep 1005" | tr '\n' ' ')
procs=$(procs_of "$D")
# How far they escaped: distinct sessions and parents among them.
sessions=$(for p in $sleepers; do sed 's/^.*) //' "/proc/$p/stat" | cut -d' ' -f4; done | sort -u | wc -l)
orphans=$(for p in $sleepers; do sed 's/^.*) //' "/proc/$p/stat" | cut -d' ' -f2; done | grep -cx 1)
incg=0
for p in $sleepers; do
    case " $procs " in *" $p "*) incg=$((incg + 1)) ;; esac
done

t1=$(uptime_s)
stop "$ID" || fail escape "$ERR"
wait_final "$ID" 15 || fail escape "$ERR"
final="$(jf status)/$(jf reason)"
populated=$(keyed "$D/cgroup.events" populated)
gone=yes
wait_gone "$D" 10 || gone=no
sec=$(since "$t1")
# shellcheck disable=SC2086
left=$(alive_of $sleepers $procs | sort -u | tr '\n' ' ')
still=$(pids_running "sleep 1005" | tr '\n' ' ')

if [ "$(count $sleepers)" -lt 3 ]; then
    fail escape "expected 3 'sleep 1005' processes before stop, found: '$sleepers' (cgroup procs: $procs)"
elif [ "$incg" != 3 ]; then
    fail escape "only $incg of the sleepers ($sleepers) are in $D (procs: $procs)"
elif [ "$final" != STOPPED/STOPPED ]; then
    fail escape "after stop the job is $final, want STOPPED/STOPPED"
elif [ -n "$left" ] || [ -n "$still" ]; then
    fail escape "alive after stop: ${left}${still:+ sleep 1005: $still}"
elif [ "$gone" != yes ]; then
    fail escape "$D still exists 10s after stop (populated ${populated:-?}, procs '$(procs_of "$D")')"
else
    pass escape "3 sleepers in $sessions sessions ($orphans reparented to init) killed; cgroup ${populated:+populated $populated, }removed ${sec}s after stop"
fi
finish
