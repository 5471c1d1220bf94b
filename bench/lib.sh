# shellcheck shell=bash disable=SC2034
# Shared helpers of bench/run.sh and bench/profile.sh (sourced): the binaries, a scratch
# directory, fresh jobworker servers on 127.0.0.1, a throwaway sshd, arithmetic in awk, and a
# cleanup that stops everything started here.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1
BUILD=${BUILD:-build/release}
case "$BUILD" in /*) ;; *) BUILD="$REPO/$BUILD" ;; esac
BIN="$BUILD/bin"
LOADGEN="$BUILD/bench/loadgen"

for f in "$BIN/jobworker-server" "$BIN/jobctl" "$BIN/job-init" "$BUILD/testbin/pattern" "$LOADGEN"; do
    if ! [ -x "$f" ]; then
        echo "bench: $f is missing; run 'make bench'" >&2
        exit 1
    fi
done
# Jobs have a private /tmp: with the build tree below it, they run a copy of the helper.
source "$REPO/tests/job-visible.sh"
JOBBIN=$(job_visible_dir "$BUILD/testbin") || exit 1
PATTERN="$JOBBIN/pattern"

# sshd is the reference for throughput and latency; `make bench` installs it through
# scripts/deps.txt, a direct run of this script does it here.
if ! [ -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null; then
    "$REPO/scripts/install-deps.sh" || {
        echo "bench: sshd/ssh missing and could not be installed" >&2
        exit 1
    }
fi

T=$(mktemp -d /tmp/jw-bench-XXXXXX)
# Jobs run as an unprivileged user (--job-user, default nobody) whose working directory lives
# under the data dir: the parents must be traversable (not listable).
chmod 711 "$T"
SERVER_PID=
SSHD_PID=
MASTER_PID=
BG_PIDS=()

cleanup() {
    local p
    for p in "${BG_PIDS[@]}"; do
        kill -KILL "$p" 2>/dev/null
    done
    if [ -n "$SERVER_PID" ]; then
        kill -KILL "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    [ -n "$MASTER_PID" ] && kill -TERM "$MASTER_PID" 2>/dev/null
    [ -n "$SSHD_PID" ] && kill -TERM "$SSHD_PID" 2>/dev/null
    rm -rf "$T"
    job_visible_cleanup "$JOBBIN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "bench: $*" >&2; }

fail() {
    echo "FAIL: $*"
    [ -s "$T/server.log" ] && tail -5 "$T/server.log" | sed 's/^/  server: /' >&2
    exit 1
}

# --- arithmetic (awk; bash has no floats) ------------------------------------------------------

# Seconds since an $EPOCHREALTIME value.
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.6f", b-a}'; }
median() {
    printf '%s\n' "$@" | sort -g |
        awk '{a[NR]=$1} END{if (NR%2) print a[(NR+1)/2]; else printf "%.6g\n", (a[NR/2]+a[NR/2+1])/2}'
}
calc() { awk "BEGIN{printf \"%.6g\", $*}"; }
bytes() { numfmt --from=iec "$1"; } # 1G -> 1073741824
mbps() { calc "$1 / $2 / 1e6"; }    # bytes, seconds -> MB/s (10^6 bytes)

rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/{print $2}' "/proc/$1/status"; }
# CPU ticks of a process and of its reaped descendants (utime+stime+cutime+cstime).
cpu_ticks() { awk '{print $14+$15+$16+$17}' "/proc/$1/stat"; }
# CPU ticks of this shell's reaped children (cutime+cstime).
child_ticks() { awk '{print $16+$17}' /proc/$$/stat; }
TICK=$(getconf CLK_TCK)

machine() {
    echo "$(nproc) CPUs ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)), kernel $(uname -r)"
}
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# --- the jobworker server ----------------------------------------------------------------------

CERTS="$T/certs"
"$REPO/scripts/gen-certs.sh" "$CERTS" >"$T/gen-certs.log" 2>&1 ||
    fail "gen-certs: $(tail -3 "$T/gen-certs.log")"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

CG_FLAGS=()
if ! { [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ] &&
    grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; }; then
    CG_FLAGS=(--no-cgroups)
fi

SERVER_N=0
SERVER_ARGS=() # extra flags of the next servers (a case sets and resets them)
SERVER_DATA=   # an existing data dir for the next servers, kept by stop_server; "" = a fresh one
# start_server [ENV=VALUE...]: a fresh server on a free port with a fresh data dir (or
# SERVER_DATA); sets SERVER_PID, PORT, DATA, CONN (the connection arguments of the load
# generator) and START_S (seconds from exec until the port accepts connections, polled every
# 10 ms; the history database is opened, checked and swept before the server listens).
# BENCH_SERVER_FLAGS (split on blanks) adds flags, e.g. "--max-output 1M" to see the byte checks
# turn a truncated stream into FAIL. Admission limits are off (every case but 10, which sets its
# own, measures what it measured before the queue existed); SERVER_ARGS come after and win.
start_server() {
    SERVER_N=$((SERVER_N + 1))
    PORT=$(free_port)
    DATA=${SERVER_DATA:-$T/data-$SERVER_N}
    rm -f "$T/server.log"
    local extra=()
    read -ra extra <<<"${BENCH_SERVER_FLAGS:-}"
    local t0=$EPOCHREALTIME
    env "$@" "$BIN/jobworker-server" --listen "127.0.0.1:$PORT" --cert "$CERTS/server.crt" \
        --key "$CERTS/server.key" --ca "$CERTS/ca.crt" --data-dir "$DATA" \
        --audit-log "$T/audit-$SERVER_N.log" --max-output 8G --log-level warning \
        --max-running 0 --capacity-memory 0 --capacity-cpu 0 \
        "${CG_FLAGS[@]}" "${SERVER_ARGS[@]}" "${extra[@]}" >"$T/server.log" 2>&1 &
    SERVER_PID=$!
    local i
    for i in $(seq 6000); do
        # The "listening" line is an info message; a TCP connect tells as well.
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            START_S=$(since "$t0")
            CONN=("127.0.0.1:$PORT" "$CERTS/admin.crt" "$CERTS/admin.key" "$CERTS/ca.crt" localhost)
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.01
    done
    fail "the server did not start: $(tail -3 "$T/server.log")"
}

# Several servers side by side: save_server NAME after start_server, use_server NAME to make it
# the current one again (SERVER_PID, PORT, DATA, CONN; stop_server stops the current one).
# Saved servers are killed by cleanup() if the bench fails.
declare -A SAVED_PID SAVED_PORT SAVED_DATA
save_server() {
    SAVED_PID[$1]=$SERVER_PID SAVED_PORT[$1]=$PORT SAVED_DATA[$1]=$DATA
    BG_PIDS+=("$SERVER_PID")
}
use_server() {
    SERVER_PID=${SAVED_PID[$1]} PORT=${SAVED_PORT[$1]} DATA=${SAVED_DATA[$1]}
    CONN=("127.0.0.1:$PORT" "$CERTS/admin.crt" "$CERTS/admin.key" "$CERTS/ca.crt" localhost)
}

# stop_server: SIGTERM (30 s, then SIGKILL) and remove its data dir (not one given as SERVER_DATA).
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null
    local i
    for i in $(seq 300); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=
    case $DATA in "$T"/data-*) rm -rf "$DATA" ;; esac
}

# jc ARGS...: jobctl against the current server (the caller adds `timeout` where it may hang).
jc() {
    "$BIN/jobctl" --server "127.0.0.1:$PORT" --server-name localhost --cert "$CERTS/admin.crt" \
        --key "$CERTS/admin.key" --ca "$CERTS/ca.crt" "$@"
}

json_field() {
    python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"
}

# expect_job ID BYTES: the job COMPLETED with exit 0 and exactly BYTES of output, none dropped.
expect_job() {
    local j
    j=$(jc -o json get "$1") || fail "get $1"
    [ "$(json_field "$j" status)" = COMPLETED ] || fail "job $1: $j"
    [ "$(json_field "$j" exit_code)" = 0 ] || fail "job $1: $j"
    [ "$(json_field "$j" output_bytes)" = "$2" ] || fail "job $1 has output_bytes != $2: $j"
    [ "$(json_field "$j" output_dropped_bytes)" = 0 ] || fail "job $1 dropped output: $j"
}

# The GiB outputs of finished jobs go as soon as they are checked.
drop_outputs() { rm -f "$DATA"/output/*.out; }

# wait_no_children: the server has reaped every job process (30 s).
wait_no_children() {
    local i
    for i in $(seq 600); do
        [ -z "$(cat /proc/"$SERVER_PID"/task/*/children 2>/dev/null | tr -d ' \n')" ] && return 0
        sleep 0.05
    done
    fail "the server still has job processes after 30 s"
}

# --- the reference sshd ------------------------------------------------------------------------

SSH_USER=$(id -un)
# start_sshd: sshd on a free loopback port with a temporary host key and authorized key; sets
# SSH (a fresh connection per command) and SSH_MUX (through a ControlMaster connection).
start_sshd() {
    local d="$T/ssh" i f port
    mkdir -p "$d"
    ssh-keygen -q -t ed25519 -N '' -f "$d/hostkey" || fail "ssh-keygen"
    ssh-keygen -q -t ed25519 -N '' -f "$d/userkey" || fail "ssh-keygen"
    cp "$d/userkey.pub" "$d/authorized_keys"
    chmod 600 "$d/authorized_keys"
    : >"$d/empty"
    port=$(free_port)
    cat >"$d/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $d/hostkey
PidFile $d/sshd.pid
AuthorizedKeysFile $d/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
PrintLastLog no
UseDNS no
MaxSessions 200
MaxStartups 200
EOF
    [ "$(id -u)" = 0 ] && mkdir -p /run/sshd
    /usr/sbin/sshd -t -f "$d/sshd_config" || fail "sshd -t rejected the temporary config"
    # The remote command runs as `$SHELL -c CMD`, and bash sources ~/.bashrc for ssh sessions: a
    # host's interactive dotfiles (pyenv, nvm, ...) would make the reference look slow. As root,
    # sshd runs in a private mount namespace where ~/.bashrc is an empty file, i.e. what a fresh
    # Debian account has; elsewhere the dotfiles are left as they are (and the log says so).
    SSH_MASKED=no
    local masks=""
    for f in "$HOME/.bashrc" "$HOME/.zshenv"; do
        [ -f "$f" ] && masks+="mount --bind '$d/empty' '$f' && "
    done
    if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null &&
        unshare -m --propagation private true 2>/dev/null; then
        unshare -m --propagation private sh -c \
            "${masks}exec /usr/sbin/sshd -D -f '$d/sshd_config' -E '$d/sshd.log'" &
        SSHD_PID=$!
        SSH_MASKED=yes
    else
        /usr/sbin/sshd -D -f "$d/sshd_config" -E "$d/sshd.log" &
        SSHD_PID=$!
    fi
    SSH=(ssh -F /dev/null -p "$port" -i "$d/userkey" -o IdentitiesOnly=yes -o BatchMode=yes
        -o ConnectTimeout=10 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
        -o LogLevel=ERROR)
    for i in $(seq 100); do
        "${SSH[@]}" "$SSH_USER@127.0.0.1" true 2>/dev/null && break
        kill -0 "$SSHD_PID" 2>/dev/null || fail "sshd did not start: $(tail -3 "$d/sshd.log")"
        sleep 0.1
    done
    [ "$i" -lt 100 ] || fail "cannot ssh to the temporary sshd: $(tail -3 "$d/sshd.log")"
    # The ControlMaster connection of the whole-process latency case.
    "${SSH[@]}" -o ControlMaster=yes -o ControlPath="$d/cm" -o ControlPersist=no -N \
        "$SSH_USER@127.0.0.1" &
    MASTER_PID=$!
    for i in $(seq 100); do
        "${SSH[@]}" -o ControlPath="$d/cm" -O check "$SSH_USER@127.0.0.1" 2>/dev/null && break
        sleep 0.05
    done
    [ "$i" -lt 100 ] || fail "the ssh ControlMaster did not come up"
    SSH_MUX=("${SSH[@]}" -o ControlPath="$d/cm" -o ControlMaster=no)
    say "sshd on 127.0.0.1:$port ($(ssh -V 2>&1); dotfiles masked: $SSH_MASKED)"
}
