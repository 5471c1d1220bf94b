#!/bin/sh
# shellcheck source=../lib.sh disable=SC2034,SC2016 # SCENARIO is read by lib.sh; job scripts are single-quoted on purpose
# private-tmp: every job has its own /tmp, /var/tmp and /dev/shm (tmpfs, 1777, nosuid, nodev,
# 64 MiB each). Job A writes a file into each and keeps running; job B, at the same time and as
# the same user, sees empty directories; once A has ended the host has none of A's files. Their
# pages count against the job's memory.max: a 32 MiB job cannot keep 48 MiB in /tmp.
. /jw/lib.sh
SCENARIO=private-tmp
MARK=jw-private-tmp-$$

server_up
mkdir -p /var/tmp /dev/shm

A_SCRIPT='for d in /tmp /var/tmp /dev/shm; do echo a >$d/'$MARK' || exit 1; done
echo written; awk '"'"'$2 ~ /^\/(tmp|var\/tmp|dev\/shm)$/ { print $2, $3, $4 }'"'"' /proc/self/mounts; sleep 60'
B_SCRIPT='for d in /tmp /var/tmp /dev/shm; do echo "$d $(ls -A $d | wc -l) $(stat -c %a $d)"; done'
if ! create -- sh -c "$A_SCRIPT" || ! wait_running "$JOB" 10; then
    fail private-tmp.shared "$ERR"
else
    A=$JOB
    t0=$(uptime_s)
    until output "$A" | grep -q '^written$'; do
        is "$(since "$t0") > 10" && break
        sleep 0.1
    done
    mounts=$(output "$A" | grep '^/' | tr '\n' '|')
    if ! create -- sh -c "$B_SCRIPT" || ! wait_final "$JOB" 20; then
        fail private-tmp.shared "$ERR"
    else
        b=$(output "$JOB" | tr '\n' '|')
        if [ "$b" != "/tmp 0 1777|/var/tmp 0 1777|/dev/shm 0 1777|" ]; then
            fail private-tmp.shared "job B, running beside A, sees '$b' (want three empty 1777 directories)"
        elif [ "$(echo "$mounts" | grep -o 'tmpfs rw,nosuid,nodev[^|]*size=65536k' | wc -l)" != 3 ]; then
            fail private-tmp.shared "job A's temporary directories are mounted as '$mounts' (want tmpfs rw,nosuid,nodev,size=65536k on each)"
        else
            pass private-tmp.shared "A wrote into /tmp, /var/tmp, /dev/shm; B at the same time: $b; A's mounts: $mounts"
        fi
    fi
    stop "$A" && wait_final "$A" 20
    left=
    for d in /tmp /var/tmp /dev/shm; do [ -e "$d/$MARK" ] && left="$left $d/$MARK"; done
    if [ -n "$left" ]; then
        fail private-tmp.host "job A's files are on the host after its end:$left"
    else
        pass private-tmp.host "after A's end no $MARK in the host's /tmp, /var/tmp, /dev/shm"
    fi
fi

# Memory: tmpfs pages are charged to the job's cgroup.
if ! create --max-memory=32M -- sh -c 'dd if=/dev/zero of=/tmp/f bs=1M count=48 2>/dev/null; echo "kept $(($(stat -c %s /tmp/f) / 1048576)) MiB"' ||
    ! wait_final "$JOB" 30; then
    fail private-tmp.memory "$ERR"
else
    out=$(output "$JOB")
    kept=$(echo "$out" | sed -n 's/^kept \([0-9]*\) MiB$/\1/p')
    if [ "$(jf reason)" = OOM_KILLED ] || { [ -n "$kept" ] && [ "$kept" -lt 32 ]; }; then
        pass private-tmp.memory "48 MiB into /tmp under memory.max 32M: $(jf status)/$(jf reason) $out"
    else
        fail private-tmp.memory "48 MiB into /tmp under memory.max 32M ended $(jf status)/$(jf reason) with '$out'"
    fi
fi
finish
