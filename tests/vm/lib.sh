# shellcheck shell=sh disable=SC2034,SC2120 # variables are used by the scripts that source this
# Shared helpers of the vm tier's guest side (busybox sh). Sourced by init.sh and every scenario.
#
# Results protocol (host: tests/vm/run.sh), one line each on the results port /dev/ttyS1:
#   VMTEST <name> PASS <figure>     VMTEST <name> FAIL <reason>
#   VMTEST-DIAG <text>  (context for the failure above)   VMTEST-INFO <text>
#   VMTEST-BEGIN <scenario>          VMTEST-DONE (last line of a complete run)
# Everything is also echoed to the console (ttyS0, the host's console.log).

RESULT_PORT=/dev/ttyS1
RESULTS_FILE=/tmp/vmtest.results
SCENARIO_TIMEOUT=90
CG=/sys/fs/cgroup
PARENT=/jobworker
CGP=$CG$PARENT
BIN=/opt/jobworker/bin
TESTBIN=/opt/jobworker/testbin
CERTS=/opt/jobworker/certs
PORT=50051
SRV=127.0.0.1:$PORT
JC_ERR=/tmp/jobctl.err
MIB=1048576
# For an interactive shell (jw.shell=1) and anything that relies on the environment.
export JOBCTL_SERVER=$SRV JOBCTL_CERT=$CERTS/admin.crt JOBCTL_KEY=$CERTS/admin.key JOBCTL_CA=$CERTS/ca.crt

# ---- results -----------------------------------------------------------------------------------
emit() {
    echo "$*"
    echo "$*" >>"$RESULTS_FILE"
    echo "$*" >"$RESULT_PORT"
}
pass() {
    n=$1
    shift
    emit "VMTEST $n PASS $*"
}
# fail NAME REASON...: reports, then adds the server's last log lines and the last job JSON.
fail() {
    n=$1
    shift
    emit "VMTEST $n FAIL $*"
    FAILED=1
    [ -n "${JSON:-}" ] && diag "last job: $JSON"
    if [ -n "${SERVER_LOG:-}" ] && [ -s "$SERVER_LOG" ]; then
        diag "server log ($SERVER_LOG), last lines:"
        tail -n 12 "$SERVER_LOG" | while IFS= read -r l; do diag "  $l"; done
        echo "==== $SERVER_LOG (last 100 lines) ===="
        tail -n 100 "$SERVER_LOG"
    fi
    return 0
}
diag() { emit "VMTEST-DIAG $*"; }
# trace TEXT: a time-stamped line on the console only (console.log on the host), for debugging.
trace() { echo "[$(uptime_s)] $*" >/dev/console; }
info() { emit "VMTEST-INFO $*"; }

# ---- numbers and time ----------------------------------------------------------------------------
uptime_s() { cut -d' ' -f1 /proc/uptime; }
# since T: seconds elapsed since uptime T, one decimal.
since() { awk -v a="$1" -v b="$(uptime_s)" 'BEGIN { printf "%.2f", b - a }'; }
# calc EXPR [FORMAT]: awk arithmetic.
calc() { awk "BEGIN { printf \"${2:-%.1f}\", $1 }"; }
# is EXPR: true when the awk expression holds, e.g. is "$a <= 1.2 * $b".
is() { awk "BEGIN { exit !($1) }"; }
mib() { calc "$1 / $MIB"; }

# ---- processes -------------------------------------------------------------------------------------
# alive PID: the process exists and is not a zombie.
alive() {
    [ -r "/proc/$1/stat" ] || return 1
    st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
# pids_running "ARGV JOINED BY SPACES": pids of live processes with exactly that command line.
pids_running() { ps -o pid,args | awk -v s="$1" 'NR > 1 { p = $1; $1 = ""; sub(/^ /, ""); if ($0 == s) print p }'; }
# alive_of PIDS...: prints the ones still alive.
alive_of() { for p in "$@"; do alive "$p" && echo "$p"; done; }
count() { echo $#; }

# ---- cgroups -----------------------------------------------------------------------------------
cgdir() { echo "$CGP/job-$1"; }
# keyed FILE KEY: value of KEY in a flat-keyed cgroup file (cpu.stat, memory.events, ...).
keyed() { awk -v k="$2" '$1 == k { print $2; f = 1 } END { if (!f) print "" }' "$1" 2>/dev/null; }
procs_of() { tr '\n' ' ' <"$1/cgroup.procs" 2>/dev/null; }
job_cgroups() { ls -d "$CGP"/job-* 2>/dev/null; }
# wait_gone PATH SECONDS: until PATH does not exist.
wait_gone() {
    t0=$(uptime_s)
    while [ -e "$1" ]; do
        is "$(since "$t0") > $2" && return 1
        sleep 0.1
    done
    return 0
}
# wait_file PATH SECONDS
wait_file() {
    t0=$(uptime_s)
    until [ -e "$1" ]; do
        is "$(since "$t0") > $2" && return 1
        sleep 0.1
    done
    return 0
}

# ---- the server --------------------------------------------------------------------------------
# port_listening PORT: a LISTEN socket on 127.0.0.1:PORT (or any address) exists.
port_listening() {
    hex=$(printf '%04X' "$1")
    grep -Eq "^ *[0-9]+: [0-9A-F]+:$hex [0-9A-F]+:0000 0A " /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
# server_start NAME PORT PARENT [ARGS...]: starts jobworker-server with real cgroups under PARENT
# and waits until it listens. Sets SERVER_PID, SERVER_LOG, SRV; on failure sets SERVER_ERR and
# returns 1.
server_start() {
    name=$1 port=$2 parent=$3
    shift 3
    SERVER_LOG=/tmp/${SCENARIO:-x}.server-$name.log
    SRV=127.0.0.1:$port
    mkdir -p "/var/lib/jobworker/$name"
    echo "---- server $name started at $(uptime_s)s" >>"$SERVER_LOG"
    log0=$(wc -l <"$SERVER_LOG")
    # No admission limits unless a scenario sets them: the VM's 1 GiB would hold one job of the
    # default 512M at a time, and the scenarios test limits, not queueing (flags after win).
    "$BIN/jobworker-server" --listen "$SRV" --cert "$CERTS/server.crt" --key "$CERTS/server.key" \
        --ca "$CERTS/ca.crt" --data-dir "/var/lib/jobworker/$name" --cgroup-root "$CG" \
        --cgroup-parent "$parent" --log-level debug --max-running 0 --capacity-memory 0 \
        --capacity-cpu 0 "$@" </dev/null >>"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    echo "$SERVER_PID" >>/tmp/servers.pids
    t0=$(uptime_s)
    until port_listening "$port"; do
        if ! alive "$SERVER_PID"; then
            wait "$SERVER_PID"
            SERVER_ERR="server exited with status $? before listening: $(tail -n +$((log0 + 1)) "$SERVER_LOG" | tail -n 3 | tr '\n' ' ')"
            return 1
        fi
        if is "$(since "$t0") > 20"; then
            SERVER_ERR="server not listening on $SRV after 20s"
            return 1
        fi
        sleep 0.1
    done
    SERVER_START_S=$(since "$t0")
    return 0
}
# server_up: the standard server of most scenarios (port 50051, /jobworker, io on /dev/ram0).
# Reports FAIL for SCENARIO and exits the scenario when it cannot start.
server_up() {
    if ! server_start main "$PORT" "$PARENT" --io-device /dev/ram0 "$@"; then
        fail "$SCENARIO" "cannot start jobworker-server: $SERVER_ERR"
        exit 1
    fi
}
# server_stop [SIGNAL] [SECONDS]: signals the server (TERM) and waits for it to exit; sets
# SERVER_RC (the exit status, or "timeout" after SIGKILL) and SERVER_STOP_S.
server_stop() {
    sig=${1:-TERM} lim=${2:-15}
    [ -n "${SERVER_PID:-}" ] || return 0
    t0=$(uptime_s)
    kill -"$sig" "$SERVER_PID" 2>/dev/null
    while alive "$SERVER_PID"; do
        if is "$(since "$t0") > $lim"; then
            kill -KILL "$SERVER_PID" 2>/dev/null
            wait "$SERVER_PID" 2>/dev/null
            SERVER_RC=timeout
            SERVER_PID=
            return 1
        fi
        sleep 0.05
    done
    wait "$SERVER_PID" 2>/dev/null
    SERVER_RC=$?
    SERVER_STOP_S=$(since "$t0")
    SERVER_PID=
    return 0
}
# finish: the end of a scenario: SIGTERM to its server, which must exit 0 within 15 s (it stops
# its jobs and removes their cgroups first; init.sh then checks that none is left).
finish() {
    [ -n "${SERVER_PID:-}" ] || exit 0
    if ! server_stop TERM 15; then
        fail "$SCENARIO.shutdown" "server still running 15s after SIGTERM (killed)"
    elif [ "$SERVER_RC" != 0 ]; then
        fail "$SCENARIO.shutdown" "server exit status $SERVER_RC after SIGTERM, want 0"
    fi
    exit 0
}
# servers_alive: pids of servers started by this scenario that still run.
servers_alive() {
    [ -f /tmp/servers.pids ] || return 0
    while read -r p; do
        alive "$p" && echo "$p"
    done </tmp/servers.pids
}
# reap_servers: init.sh's safety net after each scenario: kills its servers, then empties and
# removes any job cgroup they left, so that the next scenario starts clean.
reap_servers() {
    for p in $(servers_alive); do kill -KILL "$p" 2>/dev/null; done
    : >/tmp/servers.pids
    for d in "$CG"/jobworker*/job-*; do
        [ -d "$d" ] || continue
        echo 1 >"$d/cgroup.kill" 2>/dev/null
        for _ in 1 2 3 4 5 6 7 8 9 10; do rmdir "$d" 2>/dev/null && break; sleep 0.1; done
    done
}

# ---- jobctl --------------------------------------------------------------------------------
# jc ARGS...: jobctl as admin against $SRV; stderr goes to $JC_ERR.
jc() {
    _t=$(uptime_s)
    "$BIN/jobctl" --server "$SRV" --cert "$CERTS/admin.crt" --key "$CERTS/admin.key" \
        --ca "$CERTS/ca.crt" "$@" 2>"$JC_ERR"
    _rc=$?
    trace "jobctl $* -> $_rc ($(since "$_t")s)"
    return $_rc
}
jc_err() { tr '\n' ' ' <"$JC_ERR"; }
# create [OPTIONS] -- CMD [ARGS...]: sets JOB to the new id; on failure sets ERR, returns 1.
create() {
    JOB=$(jc create "$@") || {
        ERR="jobctl create $* failed: $(jc_err)"
        return 1
    }
    JOB=$(echo "$JOB" | tr -d ' \r\n')
    if [ -z "$JOB" ] || [ "$(echo "$JOB" | tr -d 'A-Za-z0-9_-')" != "" ]; then
        ERR="jobctl create printed no usable id: '$JOB'"
        return 1
    fi
    JSON=
    return 0
}
# get ID: JSON=the job's one-line JSON.
get() {
    JSON=$(jc -o json get "$1") || {
        ERR="jobctl get $1 failed: $(jc_err)"
        return 1
    }
}
# jf KEY [JSON]: a field of the job JSON (strings unquoted; nested keys are unique).
jf() {
    printf '%s\n' "${2:-$JSON}" |
        sed -n 's/.*"'"$1"'":[ ]*\("\([^"\\]\|\\.\)*"\|[^,}]*\).*/\1/p' | sed 's/^"\(.*\)"$/\1/'
}
# wait_status ID SECONDS STATUS...: polls until the job's status is one of STATUS; JSON holds it.
wait_status() {
    id=$1 lim=$2
    shift 2
    t0=$(uptime_s)
    while :; do
        get "$id" || return 1
        st=$(jf status)
        for s in "$@"; do [ "$st" = "$s" ] && return 0; done
        if is "$(since "$t0") > $lim"; then
            ERR="job $id still $st after ${lim}s (wanted: $*)"
            return 1
        fi
        sleep 0.2
    done
}
wait_final() { wait_status "$1" "$2" COMPLETED FAILED STOPPED; }
# wait_running ID SECONDS: the job is RUNNING and its cgroup has a process.
wait_running() {
    wait_status "$1" "$2" RUNNING COMPLETED FAILED STOPPED || return 1
    if [ "$(jf status)" != RUNNING ]; then
        ERR="job $1 ended early: status $(jf status) reason $(jf reason) exit $(jf exit_code) error '$(jf error)'"
        return 1
    fi
    d=$(cgdir "$1")
    t0=$(uptime_s)
    until [ -n "$(procs_of "$d")" ]; do
        if is "$(since "$t0") > $2"; then
            ERR="job $1 RUNNING but $d has no process (exists: $([ -d "$d" ] && echo yes || echo no))"
            return 1
        fi
        sleep 0.1
    done
    return 0
}
# stop ID: jobctl stop; ERR on failure.
stop() {
    jc stop "$1" >/dev/null || {
        ERR="jobctl stop $1 failed: $(jc_err)"
        return 1
    }
}
# output ID: the job's whole output so far, stdout and stderr merged (jobctl stream --merge).
output() { jc stream --merge "$1"; }
FAILED=
