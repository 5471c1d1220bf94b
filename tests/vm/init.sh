#!/bin/sh
# shellcheck source=lib.sh
# Guest side of the vm tier, run by busybox init (PID 1) as its sysinit action: mounts the
# kernel file systems and cgroup2, loads brd, brings up lo, runs every selected scenario in its
# own shell with a time limit, reports through /dev/ttyS1, and powers off.
export PATH=/opt/jobworker/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
. /jw/lib.sh

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
mount -t tmpfs -o mode=1777 tmp /tmp
mount -t tmpfs -o mode=0755 data /var/lib/jobworker
# The results port: no echo, no \n -> \r\n translation.
stty -F "$RESULT_PORT" raw -echo 2>/dev/null
emit "VMTEST-INFO guest init after $(cut -d' ' -f1 /proc/uptime)s (kernel $(uname -r))"

ip link set lo up
hostname jwvm
while read -r mod params; do
    [ -n "$mod" ] || continue
    # shellcheck disable=SC2086 # params are module parameters, split on purpose
    insmod "/lib/modules/$mod" $params || emit "VMTEST-INFO insmod $mod failed"
done </lib/modules/load.list

# What systemd does on a real host: the root cgroup hands every controller to its children.
echo "+cpu +memory +io +pids" >/sys/fs/cgroup/cgroup.subtree_control ||
    emit "VMTEST-INFO cannot enable controllers at the cgroup root"

want=$(sed -n 's/.* jw\.scenarios=\([^ ]*\).*/\1/p' /proc/cmdline)
shell=$(sed -n 's/.* jw\.shell=\([^ ]*\).*/\1/p' /proc/cmdline)
: >"$RESULTS_FILE"
for f in /jw/scenarios/*.sh; do
    name=$(basename "$f" .sh)
    name=${name#[0-9][0-9]-}
    case ",$want," in
    *,all,* | *,"$name",*) ;;
    *) continue ;;
    esac
    emit "VMTEST-BEGIN $name"
    before=$(grep -Ec "^VMTEST $name(\.[^ ]*)? (PASS|FAIL)" "$RESULTS_FILE")
    t0=$(uptime_s)
    echo "==== scenario $name ===="
    timeout -s KILL "$SCENARIO_TIMEOUT" sh "$f"
    rc=$?
    after=$(grep -Ec "^VMTEST $name(\.[^ ]*)? (PASS|FAIL)" "$RESULTS_FILE")
    fails=$(grep -Ec "^VMTEST $name(\.[^ ]*)? FAIL" "$RESULTS_FILE")
    if [ "$rc" = 137 ]; then
        fail "$name" "scenario killed after ${SCENARIO_TIMEOUT}s"
    elif [ "$rc" != 0 ] && [ "$fails" = 0 ]; then
        fail "$name" "scenario exited with status $rc and reported no failure"
    elif [ "$after" = "$before" ]; then
        fail "$name" "scenario reported no result"
    fi
    # Every scenario ends by stopping its servers, which must leave no job cgroup behind. (Not
    # checked when a server still runs: the scenario failed half-way and said so.)
    left=$(for d in "$CG"/jobworker*/job-*; do [ -d "$d" ] && printf '%s ' "$d"; done)
    if [ -z "$(servers_alive)" ] && [ -n "$left" ]; then
        fail "$name.leftover" "job cgroups left after the scenario's servers exited: $left"
    fi
    # Safety net so one scenario's leftovers cannot spoil the next.
    reap_servers
    emit "VMTEST-INFO $name took $(awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }')s"
done
emit "VMTEST-DONE"
if [ "$shell" = 1 ]; then
    SCENARIO=shell
    if server_start shell "$PORT" "$PARENT" --io-device /dev/ram0; then
        echo "jw.shell=1: scenarios done; a server runs (pid $SERVER_PID, log $SERVER_LOG)"
    else
        echo "jw.shell=1: scenarios done; the server did not start: $SERVER_ERR"
    fi
    echo "JOBCTL_* are set: try 'jobctl run -- cat /proc/self/cgroup'; 'poweroff -f' to quit"
    setsid cttyhack sh -l
fi
sync
poweroff -f
