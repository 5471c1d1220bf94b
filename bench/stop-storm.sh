#!/bin/bash
# make bench-stop-storm (or bench/stop-storm.sh): the user-level view of issue 9. A server with
# --stop-grace 5s on 127.0.0.1 (fresh certificates, scratch data dir), eight jobs that ignore
# SIGTERM, eight `jobctl stop` in parallel in the background, then `jobctl list`, timed. Prints
# the list latency of each round, its median, and the idle list latency for comparison.
#
# Knobs (environment): STORM_RUNS (3 rounds), STORM_JOBS (8), STORM_GRACE (5s),
# STORM_DELAY (0.2: seconds between launching the stops and the list). Every wait is bounded
# and everything started here is stopped on exit.
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1
BUILD=${BUILD:-build/release}
case "$BUILD" in /*) ;; *) BUILD="$REPO/$BUILD" ;; esac
BIN="$BUILD/bin"
RUNS=${STORM_RUNS:-3}
JOBS=${STORM_JOBS:-8}
GRACE=${STORM_GRACE:-5s}
DELAY=${STORM_DELAY:-0.2}

for b in jobworker-server jobctl job-init; do
    [ -x "$BIN/$b" ] || { echo "stop-storm: $BIN/$b is missing: run make first" >&2; exit 1; }
done

T=$(mktemp -d /tmp/jw-storm-XXXXXX)
chmod 711 "$T" # jobs run as nobody and reach their working directories below it
SERVER_PID=
STOP_PIDS=()
cleanup() {
    local p
    for p in "${STOP_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    [ -n "$SERVER_PID" ] && kill -KILL "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$REPO/scripts/gen-certs.sh" "$T/certs" >"$T/gen-certs.log" 2>&1 ||
    { echo "stop-storm: gen-certs failed: $(tail -3 "$T/gen-certs.log")" >&2; exit 1; }
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
flags=()
if ! { [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ] &&
    grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; }; then
    flags=(--no-cgroups)
fi
SERVER=("$BIN/jobworker-server" --listen "127.0.0.1:$PORT" --cert "$T/certs/server.crt"
    --key "$T/certs/server.key" --ca "$T/certs/ca.crt" --data-dir "$T/data" --stop-grace "$GRACE"
    "${flags[@]}")
"${SERVER[@]}" >"$T/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 200); do
    grep -q "listening on" "$T/server.log" && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
done
grep -q "listening on" "$T/server.log" ||
    { echo "stop-storm: the server did not start: $(tail -3 "$T/server.log")" >&2; exit 1; }

JC=("$BIN/jobctl" --server "127.0.0.1:$PORT" --server-name localhost --cert "$T/certs/admin.crt"
    --key "$T/certs/admin.key" --ca "$T/certs/ca.crt")
echo "stop-storm: server: ${SERVER[*]}"
echo "stop-storm: jobctl: ${JC[*]}"

# timed_list: seconds that `jobctl list` takes (bounded: 60 s).
timed_list() {
    local t0=$EPOCHREALTIME
    timeout 60 "${JC[@]}" list >/dev/null || { echo "stop-storm: jobctl list failed" >&2; return 1; }
    awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.3f", b-a}'
}

idle=$(timed_list) || exit 1
echo "stop-storm: idle: jobctl list took $idle s"
lats=()
for run in $(seq "$RUNS"); do
    ids=()
    for _ in $(seq "$JOBS"); do
        # shellcheck disable=SC2016 # the job's own shell script
        id=$(timeout 30 "${JC[@]}" create sh -c 'trap "" TERM; sleep 100') ||
            { echo "stop-storm: create failed" >&2; exit 1; }
        ids+=("$id")
    done
    STOP_PIDS=()
    for id in "${ids[@]}"; do
        timeout 120 "${JC[@]}" -o json stop "$id" >"$T/stop-$id.json" 2>&1 &
        STOP_PIDS+=($!)
    done
    sleep "$DELAY"
    lat=$(timed_list) || exit 1
    lats+=("$lat")
    bad=0
    for p in "${STOP_PIDS[@]}"; do wait "$p" || bad=$((bad + 1)); done
    STOP_PIDS=()
    stopped=$(cat "$T"/stop-*.json | grep -c '"status":"STOPPED"')
    rm -f "$T"/stop-*.json
    echo "stop-storm: round $run: $JOBS jobctl stop in the background, jobctl list took $lat s" \
        "($stopped/$JOBS stops answered STOPPED, $bad failed)"
    if [ "$bad" -ne 0 ] || [ "$stopped" -ne "$JOBS" ]; then
        echo "stop-storm: FAIL: a stop did not answer STOPPED" >&2
        exit 1
    fi
done
med=$(printf '%s\n' "${lats[@]}" | sort -g |
    awk '{a[NR]=$1} END{if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}')
echo "stop-storm: jobctl list during $JOBS stops (grace $GRACE): median $med s of $RUNS (${lats[*]}); idle $idle s"
