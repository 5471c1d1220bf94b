#!/bin/bash
# make demo: builds (done by make), makes dev certificates if missing, starts the server on
# 127.0.0.1, runs jobs through jobctl and shows what happened, then stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build/release}
BIN="$BUILD/bin"
PORT=${DEMO_PORT:-50051}
DATA=$(mktemp -d /tmp/jobworker-demo-XXXXXX)
chmod 711 "$DATA" # jobs run as nobody and reach their working directories below it
LOG="$DATA/server.log"

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$'; printf ' %q' "$@"; printf '\n'; "$@"; }

if [ ! -f certs/ca.crt ] || [ ! -f certs/admin.crt ] || [ ! -f certs/server.crt ]; then
    bold "generating development certificates into certs/"
    scripts/gen-certs.sh certs
fi

flags=()
if [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ] ||
    ! grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
    printf '\n\033[1;33mWARNING: this host has no cgroup v2 controllers (cgroup v1/hybrid).\n'
    printf 'The demo server runs with --no-cgroups: jobs run WITHOUT resource limits.\n'
    printf 'Real limits are demonstrated by the vm tier: make test-vm\033[0m\n'
    flags+=(--no-cgroups)
fi

bold "starting jobworker-server on 127.0.0.1:$PORT"
"$BIN/jobworker-server" --listen "127.0.0.1:$PORT" --data-dir "$DATA" "${flags[@]}" >"$LOG" 2>&1 &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do
    grep -q "listening on" "$LOG" && break
    kill -0 $SERVER 2>/dev/null || { cat "$LOG"; exit 1; }
    sleep 0.05
done
cat "$LOG"

export JOBCTL_SERVER="localhost:$PORT"
J="$BIN/jobctl"

bold "create a job that prints a line every 200 ms"
# $i is the job's, expanded by its shell.
# shellcheck disable=SC2016
TICKS='for i in 1 2 3 4 5; do echo "tick $i"; sleep 0.2; done'
# show's way of echoing the command, with the id that create prints kept for the next steps.
printf '$ %q create sh -c %q\n' "$J" "$TICKS"
ID=$("$J" create sh -c "$TICKS")
echo "$ID"

bold "list jobs"
show "$J" list

bold "follow its output from byte 0 until it ends"
show "$J" stream --follow "$ID"

bold "its final state"
show "$J" get "$ID"

bold "run = create + follow + exit with the job's exit code"
set +e
show "$J" run sh -c 'echo "working..."; exit 3'
echo "(jobctl run exited with $?)"
set -e

bold "stop a long job"
LONG=$("$J" create sleep 600)
echo "created $LONG"
show "$J" stop "$LONG"

bold "a viewer may read but not create"
show "$J" --cert certs/viewer.crt --key certs/viewer.key list
set +e
show "$J" --cert certs/viewer.crt --key certs/viewer.key create true
echo "(jobctl exited with $?)"
set -e

bold "a command that does not exist fails to start, with the reason"
set +e
show "$J" run no-such-command
echo "(jobctl run exited with $?)"
set -e

bold "audit trail (server log)"
grep audit "$LOG" | tail -6

bold "stopping the server"
kill -TERM $SERVER
wait $SERVER && echo "server exited cleanly"
trap 'rm -rf "$DATA"' EXIT
