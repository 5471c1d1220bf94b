#!/bin/sh
# shellcheck source=../lib.sh disable=SC2034,SC2086,SC2046,SC2119,SC2016,SC2012,SC2153 # SCENARIO is read by lib.sh; pid lists split on purpose; job scripts are single-quoted on purpose
# isolation: what a job, running as the job user (nobody), can reach around it. Its command sees
# fds 0 1 2 only, no capability in any set, NoNewPrivs 1, uid/gid 65534 with no supplementary
# group; it cannot see host processes (its /proc lists job-init and itself), cannot signal or
# ptrace the server, cannot read the server's key or the output directory, cannot change its
# cgroup's limits, create a child cgroup or move itself out of its cgroup; a setuid-root binary
# does not make it root (the same binary does outside a job); with network none (a second
# server with --default-network none: jobctl has no per-job network flag) it has only lo and
# cannot reach the server's port, which the same probe reaches with the host network.
. /jw/lib.sh
SCENARIO=isolation
PROBE=$TESTBIN/isoprobe
SUID=/opt/jobworker/suid/isoprobe
Z=0000000000000000

# run_job NAME [CREATE OPTIONS --] CMD...: runs a job to completion; OUT holds its output. The
# job must complete (exit 0): probes report refusals in their output.
run_job() {
    n=$1
    shift
    OUT=
    if ! create "$@" || ! wait_final "$JOB" 20; then
        fail "$n" "$ERR"
        return 1
    fi
    OUT=$(output "$JOB")
    if [ "$(jf status)" != COMPLETED ]; then
        fail "$n" "job ended $(jf status)/$(jf reason) exit $(jf exit_code) error '$(jf error)': $(echo "$OUT" | tr '\n' ' ')"
        return 1
    fi
}
# line PREFIX: the rest of OUT's first line starting with PREFIX.
line() { echo "$OUT" | sed -n "s/^$1//p" | head -n 1; }
status_field() { echo "$OUT" | awk -v k="$1:" '$1 == k { $1 = ""; sub(/^[ \t]+/, ""); print; exit }'; }

# A setuid-root copy of the probe on the initramfs root, which honours setuid bits.
mkdir -p "${SUID%/*}"
cp "$PROBE" "$SUID" && chown 0:0 "$SUID" && chmod 4755 "$SUID"
# Control: run as nobody outside a job (no no_new_privs), it does become root.
SUID_CONTROL=$("$PROBE" as 65534 65534 "$SUID" ids 2>&1)

server_up --job-user nobody # this scenario checks the fixed-user mode; 95-identity the default
info "isolation: server pid $SERVER_PID; $(ls -d /proc/[0-9]* | wc -l) processes on the host"

# --- fds: the hygiene helper lists its own fds without forking.
if run_job isolation.fds -- "$TESTBIN/hygiene"; then
    fds=$(line 'fds: ')
    if [ "$fds" = "0 1 2" ]; then
        pass isolation.fds "fds: $fds"
    else
        fail isolation.fds "the job's command has fds '$fds', want '0 1 2'"
    fi
fi

# --- credentials and capabilities, from the exec'd command's own /proc/self/status.
if run_job isolation.caps -- cat /proc/self/status; then
    bad=
    caps=
    for c in CapInh CapPrm CapEff CapBnd CapAmb; do
        v=$(status_field "$c")
        caps="$caps $c=$v"
        [ "$v" = "$Z" ] || bad="$bad $c=$v"
    done
    if [ -n "$bad" ]; then
        fail isolation.caps "capabilities left:$bad (want all $Z)"
    else
        pass isolation.caps "$caps"
    fi
    nnp=$(status_field NoNewPrivs)
    if [ "$nnp" = 1 ]; then
        pass isolation.nnp "NoNewPrivs 1"
    else
        fail isolation.nnp "NoNewPrivs '$nnp', want 1"
    fi
    uid=$(status_field Uid | tr -s ' \t' ' ')
    gid=$(status_field Gid | tr -s ' \t' ' ')
    groups=$(status_field Groups)
    user=$(jf user)
    if [ "$uid" != "65534 65534 65534 65534" ] || [ "$gid" != "65534 65534 65534 65534" ]; then
        fail isolation.ids "Uid '$uid' Gid '$gid', want 65534 (real, effective, saved, fs)"
    elif [ -n "$groups" ]; then
        fail isolation.ids "supplementary groups '$groups', want none"
    elif [ "$user" != "nobody (65534:65534)" ]; then
        fail isolation.ids "Job.user is '$user', want 'nobody (65534:65534)'"
    else
        pass isolation.ids "Uid $uid, Gid $gid, no supplementary group; Job.user '$user'"
    fi
fi

# --- processes: the probe is exec'd by job-init, so its /proc shows job-init and itself only;
# the server's pid (a host pid) is neither visible nor signalable nor traceable.
if run_job isolation.procs -- "$PROBE" procs signal "$SERVER_PID" ptrace "$SERVER_PID"; then
    procs=$(line 'procs: ')
    sig=$(line "signal $SERVER_PID: ")
    ptr=$(line "ptrace $SERVER_PID: ")
    others=$(echo "$procs" | tr ' ' '\n' | grep -v -e '^1(job-init)$' -e '^[0-9]*(isoprobe)$' | grep -c .)
    if [ "$others" != 0 ] || [ "$(echo "$procs" | wc -w)" != 2 ]; then
        fail isolation.procs "the job sees processes other than job-init and itself: $procs"
    else
        pass isolation.procs "the job's /proc lists: $procs (the host has $(ls -d /proc/[0-9]* | wc -l))"
    fi
    if [ -z "$sig" ] || [ "$sig" = ok ] || [ -z "$ptr" ] || [ "$ptr" = ok ]; then
        fail isolation.server "server pid $SERVER_PID from inside the job: kill -0 '$sig', ptrace '$ptr' (want both refused)"
    elif ! alive "$SERVER_PID"; then
        fail isolation.server "the server died"
    else
        pass isolation.server "server pid $SERVER_PID from inside the job: kill -0 $sig, PTRACE_ATTACH $ptr"
    fi
fi

# --- setuid: a setuid-root binary stays nobody inside the job (no_new_privs).
if run_job isolation.setuid -- "$SUID" ids; then
    ids=$(line 'ids: ')
    case "$SUID_CONTROL" in
    "ids: uid=65534/0/0 "*) ;;
    *)
        fail isolation.setuid "control: $SUID run as nobody outside a job printed '$SUID_CONTROL', want euid 0: this mount ignores setuid and the check proves nothing"
        ids=
        ;;
    esac
    if [ -z "$ids" ]; then
        :
    elif [ "${ids%% gid=*}" = "uid=65534/65534/65534" ]; then
        pass isolation.setuid "setuid-root $SUID in the job: $ids (outside a job as nobody: ${SUID_CONTROL#ids: })"
    else
        fail isolation.setuid "setuid-root $SUID in the job gave '$ids': privileges gained"
    fi
fi

# --- files and cgroup: the job user cannot read the server's key or list the output directory,
# cannot raise its memory.max, create a child cgroup, or move itself to the root or the parent.
CG_SCRIPT='
try() { what=$1; shift; if r=$( { "$@"; } 2>&1 ); then echo "$what: ok"; else echo "$what: refused: $r"; fi; }
me=/sys/fs/cgroup/jobworker/job-$JOBWORKER_JOB_ID
try key cat /opt/jobworker/certs/server.key
try outputs ls /var/lib/jobworker/main/output
try memory.max sh -c "echo max > $me/memory.max"
try mkdir mkdir $me/escape
try root sh -c "echo \$\$ > /sys/fs/cgroup/cgroup.procs"
try parent sh -c "echo \$\$ > /sys/fs/cgroup/jobworker/cgroup.procs"
echo "memory.max now: $(cat $me/memory.max)"
echo "cgroup now: $(cat /proc/self/cgroup)"
'
if run_job isolation.cgroup --max-memory=64M -- sh -c "$CG_SCRIPT"; then
    ok=$(echo "$OUT" | grep ': ok$' | cut -d: -f1 | tr '\n' ' ')
    mm=$(line 'memory.max now: ')
    cgl=$(line 'cgroup now: ')
    if [ -n "$ok" ]; then
        fail isolation.cgroup "the job user could: $ok($(echo "$OUT" | tr '\n' '|'))"
    elif [ "$(echo "$OUT" | grep -c ': refused: ')" != 6 ]; then
        fail isolation.cgroup "unexpected probe output: $(echo "$OUT" | tr '\n' '|')"
    elif [ "$mm" != 67108864 ] || [ "$cgl" != "0::$PARENT/job-$JOB" ]; then
        fail isolation.cgroup "after the attempts memory.max is '$mm' (want 67108864) and the job is in '$cgl' (want 0::$PARENT/job-$JOB)"
    else
        pass isolation.cgroup "server key, output dir, memory.max, mkdir in its cgroup, moves to / and $PARENT all refused ($(line 'memory.max: refused: ' | sed 's/.*: //')); memory.max still $mm, still in $cgl"
    fi
fi

# --- network: host network reaches the server's port on 127.0.0.1 (the control).
NET_SCRIPT='echo "netns: $(readlink /proc/self/ns/net)"; echo "links: $(ip -o link | cut -d: -f2 | tr -d " " | tr "\n" " ")"; echo "routes: $(ip route | tr "\n" ";")"; exec '"$PROBE"' connect 127.0.0.1 "$1"'
HOST_NETNS=$(readlink /proc/self/ns/net)
if run_job isolation.network -- sh -c "$NET_SCRIPT" sh "$PORT"; then
    host_conn=$(line "connect 127.0.0.1:$PORT: ")
    host_ns=$(line 'netns: ')
    host_net=$(jf network)
fi
server_stop
[ "$SERVER_RC" = 0 ] || fail isolation.shutdown "server exit status $SERVER_RC after SIGTERM, want 0"

# --- network none: a server whose jobs default to their own network namespace.
JSON=
NPORT=50052
if ! server_start none "$NPORT" /jobworker-none --default-network none; then
    fail isolation.network "server with --default-network none does not start: $SERVER_ERR"
elif run_job isolation.network -- sh -c "$NET_SCRIPT" sh "$NPORT"; then
    conn=$(line "connect 127.0.0.1:$NPORT: ")
    ns=$(line 'netns: ')
    links=$(line 'links: ')
    routes=$(line 'routes: ')
    if [ "$host_conn" != ok ] || [ "$host_ns" != "$HOST_NETNS" ] || [ "$host_net" != HOST ]; then
        fail isolation.network "control: a host-network job (network '$host_net', $host_ns, host $HOST_NETNS) could not connect to 127.0.0.1:$PORT ('$host_conn'): the check below proves nothing"
    elif [ "$(jf network)" != NONE ]; then
        fail isolation.network "Job.network is '$(jf network)' on a --default-network none server, want NONE"
    elif [ "$ns" = "$HOST_NETNS" ]; then
        fail isolation.network "network none job shares the host's network namespace $ns"
    elif [ "$conn" = ok ] || [ -z "$conn" ]; then
        fail isolation.network "network none job connected to the server's port 127.0.0.1:$NPORT ('$conn')"
    elif [ "$links" != "lo " ] || [ -n "$routes" ]; then
        fail isolation.network "network none job has links '$links' and routes '$routes', want lo only and no route"
    else
        pass isolation.network "network none: own $ns, links: $links, no route, connect 127.0.0.1:$NPORT $conn; host network control: connect 127.0.0.1:$PORT $host_conn"
    fi
fi
finish
