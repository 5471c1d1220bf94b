#!/bin/bash
# shellcheck disable=SC2119 # start_server takes its own flags, not the script's arguments
# bench/profile.sh: where the time of the 1-follower throughput case goes (docs/performance.md).
#
#   BUILD=build/release bench/profile.sh [SIZE]      (default 1G)
#
# Runs `jobctl run pattern SIZE | pattern --check SIZE` against a fresh server twice: once to
# account CPU time per process and per server thread (/proc, exact), once under
# `perf record -e cpu-clock -g` on the server and on jobctl (sampled). cpu-clock because virtual
# machines often have no hardware counters (`perf stat -e instructions true` says
# <not supported>). Prints the accounting and the top symbols of each hot thread; the perf data
# stays in PERF_DIR (default build/<variant>/profile/) for `perf report -i`.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SIZE=${1:-1G}
SIZE_B=$(bytes "$SIZE")
PERF_DIR=${PERF_DIR:-$BUILD/profile}
mkdir -p "$PERF_DIR"
command -v perf >/dev/null || fail "perf is not installed (apt-get install linux-perf)"

say "machine: $(machine); load average $(loadavg)"
start_server

# thread_ticks: "tid comm ticks" of every server thread.
thread_ticks() {
    local t
    for t in /proc/"$SERVER_PID"/task/*; do
        echo "$(basename "$t") $(tr ' ' '_' <"$t/comm") $(awk '{print $14+$15}' "$t/stat")"
    done
}

run_once() {
    timeout -k 5 600 "$@" run "$PATTERN" "$SIZE" | timeout -k 5 600 "$PATTERN" --check "$SIZE"
    local st="${PIPESTATUS[*]}"
    [ "$st" = "0 0" ] || fail "jobctl run | pattern --check exited $st"
    drop_outputs
}

JC=("$BIN/jobctl" --server "127.0.0.1:$PORT" --server-name localhost --cert "$CERTS/admin.crt"
    --key "$CERTS/admin.key" --ca "$CERTS/ca.crt")

# 1. Exact accounting.
run_once "${JC[@]}" # warm-up: page cache, allocator
thread_ticks >"$T/threads0"
read -r s_self0 s_child0 < <(awk '{print $14+$15, $16+$17}' "/proc/$SERVER_PID/stat")
t=$EPOCHREALTIME
timeout -k 5 600 perf stat -x, -e task-clock -o "$T/jobctl.stat" "${JC[@]}" run "$PATTERN" "$SIZE" |
    timeout -k 5 600 perf stat -x, -e task-clock -o "$T/check.stat" "$PATTERN" --check "$SIZE"
st="${PIPESTATUS[*]}"
wall=$(since "$t")
[ "$st" = "0 0" ] || fail "jobctl run | pattern --check exited $st"
drop_outputs
thread_ticks >"$T/threads1"
read -r s_self1 s_child1 < <(awk '{print $14+$15, $16+$17}' "/proc/$SERVER_PID/stat")
per_gib() { calc "$1 * 1073741824 / $SIZE_B"; }
ms_of() { grep task-clock "$1" | cut -d, -f1; }
echo "== CPU seconds per GiB ($SIZE in $(printf '%.2f' "$wall") s wall, $(printf '%.0f' "$(mbps "$SIZE_B" "$wall")") MB/s)"
{
    echo "job (pattern, incl. job-init)|$(per_gib "($s_child1 - $s_child0) / $TICK")"
    echo "server, all threads|$(per_gib "($s_self1 - $s_self0) / $TICK")"
    # Threads that lived through the run; the stream thread came and went within it.
    join <(sort "$T/threads0") <(sort "$T/threads1") |
        awk -v tick="$TICK" '$5 - $3 > 0 {printf "  thread %s %s|%s\n", $1, $2, ($5 - $3) / tick}' |
        while IFS='|' read -r name v; do echo "$name|$(per_gib "$v")"; done
    echo "  stream thread (the rest)|$(per_gib "(($s_self1 - $s_self0) - $(join <(sort "$T/threads0") <(sort "$T/threads1") | awk '{s += $5 - $3} END{print s + 0}')) / $TICK")"
    echo "jobctl|$(per_gib "$(ms_of "$T/jobctl.stat") / 1000")"
    echo "pattern --check|$(per_gib "$(ms_of "$T/check.stat") / 1000")"
} | awk -F'|' '{printf "  %-40s %6.2f\n", $1, $2}'

# 2. Sampled profiles.
perf record -q -e cpu-clock -F 2000 -g -p "$SERVER_PID" -o "$PERF_DIR/server.data" \
    2>"$T/perf.err" &
PERF_PID=$!
BG_PIDS=("$PERF_PID")
sleep 0.5
timeout -k 5 600 perf record -q -e cpu-clock -F 2000 -g -o "$PERF_DIR/jobctl.data" \
    "${JC[@]}" run "$PATTERN" "$SIZE" 2>>"$T/perf.err" |
    timeout -k 5 600 "$PATTERN" --check "$SIZE" || fail "profiled run failed"
kill -INT "$PERF_PID"
wait "$PERF_PID"
# shellcheck disable=SC2034 # read by cleanup() in lib.sh
BG_PIDS=()
drop_outputs
stop_server

# top_syms DATA [perf report filters...]: the top symbols. (Debian's libcrypto has no symbols for
# its AES-GCM assembly: that shows as scattered libcrypto.so.3 addresses; see the split by
# library for its total.)
top_syms() {
    local data=$1
    shift
    perf report -i "$data" --no-children --percentage relative --sort dso,sym -g none --stdio \
        "$@" 2>/dev/null | grep -v '^#' | grep . | head -12 | sed 's/^/    /'
}
echo
echo "== server: samples per thread and library (perf, cpu-clock; the job is pattern)"
perf report -i "$PERF_DIR/server.data" --no-children --sort pid,dso -g none --stdio 2>/dev/null |
    grep -v '^#' | grep . | head -14 | sed 's/^/  /'
for tid in $(perf report -i "$PERF_DIR/server.data" --no-children --sort pid -g none --stdio \
    2>/dev/null | grep -v '^#' | grep . | head -3 | awk '{print $2}' | cut -d: -f1); do
    echo "  -- thread $tid: top symbols"
    top_syms "$PERF_DIR/server.data" --tid "$tid"
done
echo
echo "== jobctl: samples per library, then top symbols"
perf report -i "$PERF_DIR/jobctl.data" --no-children --comm jobctl --sort dso -g none --stdio \
    2>/dev/null | grep -v '^#' | grep . | head -6 | sed 's/^/    /'
echo "    ..."
top_syms "$PERF_DIR/jobctl.data" --comm jobctl
echo
echo "perf data: $PERF_DIR/{server,jobctl}.data (perf report -i FILE --children)"
