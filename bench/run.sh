#!/bin/bash
# shellcheck disable=SC2119 # start_server takes its own flags, not the script's arguments
# make bench: measures jobworker against what users would use instead and prints ONE table.
#
# Each case runs BENCH_RUNS times (default 3; the cheap 1-follower case BENCH_TPUT_RUNS, default
# 5) and reports the median, beside a reference measured in the same run (runs of ours and of
# the reference are interleaved, so drift on a shared host hits both). Whatever is measured is
# checked too (byte-exact output through `pattern --check`, exit statuses, job states, job
# counts): a wrong answer prints FAIL and exits 1. A target that is not met prints MISS and the
# script still exits 0 (BENCH_STRICT=1: exit 3).
#
# Everything runs on 127.0.0.1: a fresh jobworker-server (own --data-dir under /tmp) per case,
# and a throwaway sshd on a loopback port with a temporary host key and authorized key. Every
# wait is bounded and everything started here is stopped on exit.
#
# Knobs (environment): BENCH_RUNS (3), BENCH_TPUT_RUNS (5), BENCH_SIZE (1G, output of the
# throughput cases), BENCH_FOLLOWERS (32), BENCH_JOBS (10000, jobs of the RSS/rate case),
# BENCH_BIG (4G, output of the RSS-while-streaming case), BENCH_LAT_N (1000 CreateJob calls per
# latency run), BENCH_ONLY (cases to run, default "1 2 3 4 7"; 3 includes 5, 4 includes 6),
# BENCH_SERVER_FLAGS (extra server flags; "--max-output 1M" shows a truncated stream FAIL).
# docs/performance.md explains the cases and the results.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=${BENCH_RUNS:-3}
TPUT_RUNS=${BENCH_TPUT_RUNS:-5}
SIZE=${BENCH_SIZE:-1G}
FOLLOWERS=${BENCH_FOLLOWERS:-32}
NJOBS=${BENCH_JOBS:-10000}
BIG=${BENCH_BIG:-4G}
LAT_N=${BENCH_LAT_N:-1000}
PROC_N=50 # whole-process jobctl/ssh invocations per run
SIZE_B=$(bytes "$SIZE")
BIG_B=$(bytes "$BIG")
START_TIME=$EPOCHREALTIME
LOAD_START=$(loadavg)

ROWS=()
MISSES=0
# row CASE OURS REFERENCE RATIO TARGET RESULT
row() {
    ROWS+=("$1|$2|$3|$4|$5|$6")
    [ "$6" = MISS ] && MISSES=$((MISSES + 1))
}
# verdict VALUE OP LIMIT -> PASS or MISS
verdict() {
    awk -v v="$1" -v l="$3" -v op="$2" \
        'BEGIN{ok = (op == ">=") ? v >= l : v <= l; print ok ? "PASS" : "MISS"}'
}

# follow ID SIZE N: N `jobctl stream --follow ID | pattern --check SIZE` in parallel; fails
# unless every one is byte-exact.
follow() {
    local id=$1 size=$2 n=$3 i pids=() st
    for i in $(seq "$n"); do
        (
            timeout -k 5 1200 "$BIN/jobctl" --server "127.0.0.1:$PORT" --server-name localhost \
                --cert "$CERTS/admin.crt" --key "$CERTS/admin.key" --ca "$CERTS/ca.crt" \
                stream --follow "$id" | timeout -k 5 1200 "$PATTERN" --check "$size"
            echo "${PIPESTATUS[*]}" >"$T/follower.$i"
        ) &
        pids+=($!)
    done
    BG_PIDS=("${pids[@]}") # killed by cleanup() if we are interrupted
    wait "${pids[@]}"
    # shellcheck disable=SC2034 # read by cleanup() in lib.sh
    BG_PIDS=()
    for i in $(seq "$n"); do
        st=$(cat "$T/follower.$i" 2>/dev/null)
        [ "$st" = "0 0" ] || fail "follower $i of $n: stream --follow | pattern --check exited '$st'"
        rm -f "$T/follower.$i"
    done
}

# 1. Output throughput, 1 follower: `jobctl run pattern SIZE | pattern --check SIZE` against the
#    same command over ssh and against a bare pipe. Also the CPU time all processes spent per
#    GiB (server and job, or sshd and its session; client; checker), which contention on a
#    shared host disturbs far less than wall time.
case1() {
    start_server
    local r t st ours=() ssh=() pipe=() cpu_ours=() cpu_ssh=() s0 c0
    for r in $(seq "$TPUT_RUNS"); do
        s0=$(cpu_ticks "$SERVER_PID")
        c0=$(child_ticks)
        t=$EPOCHREALTIME
        timeout -k 5 600 "$BIN/jobctl" --server "127.0.0.1:$PORT" --server-name localhost \
            --cert "$CERTS/admin.crt" --key "$CERTS/admin.key" --ca "$CERTS/ca.crt" \
            run "$PATTERN" "$SIZE" | timeout -k 5 600 "$PATTERN" --check "$SIZE"
        st="${PIPESTATUS[*]}"
        ours+=("$(mbps "$SIZE_B" "$(since "$t")")")
        [ "$st" = "0 0" ] || fail "1 follower: jobctl run | pattern --check exited $st"
        cpu_ours+=("$(calc "($(cpu_ticks "$SERVER_PID") - $s0 + $(child_ticks) - $c0) / $TICK * 1073741824 / $SIZE_B")")
        drop_outputs

        s0=$(cpu_ticks "$SSHD_PID")
        c0=$(child_ticks)
        t=$EPOCHREALTIME
        timeout -k 5 600 "${SSH[@]}" "$SSH_USER@127.0.0.1" "$PATTERN" "$SIZE" |
            timeout -k 5 600 "$PATTERN" --check "$SIZE"
        st="${PIPESTATUS[*]}"
        ssh+=("$(mbps "$SIZE_B" "$(since "$t")")")
        [ "$st" = "0 0" ] || fail "ssh reference: ssh | pattern --check exited $st"
        cpu_ssh+=("$(calc "($(cpu_ticks "$SSHD_PID") - $s0 + $(child_ticks) - $c0) / $TICK * 1073741824 / $SIZE_B")")

        t=$EPOCHREALTIME
        head -c "$SIZE" /dev/zero | cat >/dev/null
        st="${PIPESTATUS[*]}"
        pipe+=("$(mbps "$SIZE_B" "$(since "$t")")")
        [ "$st" = "0 0" ] || fail "pipe reference exited $st"
        say "1 follower, run $r/$TPUT_RUNS: jobworker ${ours[-1]} MB/s (${cpu_ours[-1]} CPU-s/GiB)," \
            "ssh ${ssh[-1]} MB/s (${cpu_ssh[-1]} CPU-s/GiB), pipe ${pipe[-1]} MB/s"
    done
    # Every job of this server ran `pattern SIZE` and COMPLETED with exit 0.
    timeout -k 5 120 "$LOADGEN" "${CONN[@]}" wait-final "$TPUT_RUNS" 60 >/dev/null ||
        fail "1 follower: job states"
    stop_server
    ONE=$(median "${ours[@]}")
    local s p r1 r2 co cs
    s=$(median "${ssh[@]}")
    p=$(median "${pipe[@]}")
    r1=$(calc "$ONE / $s")
    r2=$(calc "$ONE / $p")
    row "1. output, 1 follower, $SIZE" "$(printf '%.0f MB/s' "$ONE")" "$(printf 'ssh %.0f MB/s' "$s")" \
        "$(printf '%.2fx' "$r1")" ">= 3x ssh" "$(verdict "$r1" ">=" 3)"
    row "" "" "$(printf 'pipe %.0f MB/s' "$p")" "$(printf '%.3fx' "$r2")" ">= 1/3 pipe" \
        "$(verdict "$r2" ">=" 0.3333)"
    co=$(median "${cpu_ours[@]}")
    cs=$(median "${cpu_ssh[@]}")
    row "   CPU-s per GiB, all processes" "$(printf '%.2f s' "$co")" "$(printf 'ssh %.2f s' "$cs")" \
        "$(printf '%.2fx' "$(calc "$co / $cs")")" "-" "info"
}

# 2. Aggregate throughput of FOLLOWERS `jobctl stream --follow` of one job writing SIZE, each
#    checked byte for byte; from CreateJob to the end of the last follower.
case2() {
    start_server
    local r t id agg=()
    for r in $(seq "$RUNS"); do
        t=$EPOCHREALTIME
        id=$(jc create "$PATTERN" "$SIZE") || fail "create"
        follow "$id" "$SIZE" "$FOLLOWERS"
        agg+=("$(mbps "$(calc "$SIZE_B * $FOLLOWERS")" "$(since "$t")")")
        expect_job "$id" "$SIZE_B"
        drop_outputs
        say "$FOLLOWERS followers, run $r/$RUNS: ${agg[-1]} MB/s aggregate, all byte-exact"
    done
    stop_server
    local a ratio
    a=$(median "${agg[@]}")
    ratio=$(calc "$a / $ONE")
    row "2. output, $FOLLOWERS followers (aggregate)" "$(printf '%.0f MB/s' "$a")" \
        "$(printf '1 follower %.0f MB/s' "$ONE")" "$(printf '%.2fx' "$ratio")" ">= 1x" \
        "$(verdict "$ratio" ">=" 1)"
}

# 3. CreateJob(true) round trip on a warm channel against posix_spawn(/bin/true) + waitpid.
# 5. Whole-process `jobctl create true` (TLS handshake included) against `ssh` over a
#    ControlMaster connection running `true`; a fresh ssh connection is shown for scale.
case3_5() {
    start_server
    local r out p50=() p99=() s50=() s99=() total=0
    for r in $(seq "$RUNS"); do
        out=$(timeout -k 5 600 "$LOADGEN" "${CONN[@]}" create-latency "$LAT_N" 50) ||
            fail "create-latency"
        total=$((total + LAT_N + 50))
        p50+=("${out% *}")
        p99+=("${out#* }")
        out=$(timeout -k 5 600 "$LOADGEN" spawn-latency "$LAT_N" /bin/true) || fail "spawn-latency"
        s50+=("${out% *}")
        s99+=("${out#* }")
        say "CreateJob, run $r/$RUNS: p50 ${p50[-1]} us, p99 ${p99[-1]} us;" \
            "posix_spawn+wait p50 ${s50[-1]} us, p99 ${s99[-1]} us"
    done
    local j50 j99 k50 k99 ratio
    j50=$(median "${p50[@]}")
    j99=$(median "${p99[@]}")
    k50=$(median "${s50[@]}")
    k99=$(median "${s99[@]}")
    ratio=$(calc "$j50 / $k50")
    row "3. CreateJob(true), warm channel, p50" "$(printf '%.0f us' "$j50")" \
        "$(printf 'spawn+wait %.0f us' "$k50")" "$(printf '%.2fx' "$ratio")" "<= 3x" \
        "$(verdict "$ratio" "<=" 3)"
    row "   CreateJob(true), warm channel, p99" "$(printf '%.0f us' "$j99")" \
        "$(printf 'spawn+wait %.0f us' "$k99")" "$(printf '%.2fx' "$(calc "$j99 / $k99")")" "-" "info"

    local jp=() sp=() fp=() ids="$T/ids"
    : >"$ids"
    for r in $(seq "$RUNS"); do
        out=$(timeout -k 5 600 "$LOADGEN" time-cmd "$PROC_N" "$ids" -- "$BIN/jobctl" \
            --server "127.0.0.1:$PORT" --server-name localhost --cert "$CERTS/admin.crt" \
            --key "$CERTS/admin.key" --ca "$CERTS/ca.crt" create true) || fail "jobctl create true"
        total=$((total + PROC_N))
        jp+=("${out% *}")
        out=$(timeout -k 5 600 "$LOADGEN" time-cmd "$PROC_N" /dev/null -- "${SSH_MUX[@]}" \
            "$SSH_USER@127.0.0.1" true) || fail "ssh (ControlMaster) true"
        sp+=("${out% *}")
        out=$(timeout -k 5 600 "$LOADGEN" time-cmd 10 /dev/null -- "${SSH[@]}" \
            "$SSH_USER@127.0.0.1" true) || fail "ssh true"
        fp+=("${out% *}")
        say "whole process, run $r/$RUNS (p50): jobctl create ${jp[-1]} us," \
            "ssh via ControlMaster ${sp[-1]} us, ssh new connection ${fp[-1]} us"
    done
    local n
    n=$(grep -cE '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' "$ids")
    [ "$n" = $((RUNS * PROC_N)) ] ||
        fail "jobctl create printed $n job ids, expected $((RUNS * PROC_N))"
    timeout -k 5 300 "$LOADGEN" "${CONN[@]}" wait-final "$total" 120 >/dev/null ||
        fail "CreateJob: job states"
    stop_server
    local a b c
    a=$(median "${jp[@]}")
    b=$(median "${sp[@]}")
    c=$(median "${fp[@]}")
    ratio=$(calc "$a / $b")
    row "5. jobctl create true, whole process" "$(printf '%.1f ms' "$(calc "$a / 1000")")" \
        "$(printf 'ssh ControlMaster %.1f ms' "$(calc "$b / 1000")")" "$(printf '%.2fx' "$ratio")" \
        "<= 1/10" "$(verdict "$ratio" "<=" 0.1)"
    row "" "" "$(printf 'ssh new conn. %.1f ms' "$(calc "$c / 1000")")" \
        "$(printf '%.2fx' "$(calc "$a / $c")")" "-" "info"
}

# 4. Job creations per second, 4 client threads, and
# 6. server RSS after NJOBS finished jobs against RSS after start (a fresh server per run).
case4_6() {
    local r out rate=() per=() after=() start=() rss0 rss1
    for r in $(seq "$RUNS"); do
        start_server
        sleep 0.3
        rss0=$(rss_kib "$SERVER_PID")
        out=$(timeout -k 5 600 "$LOADGEN" "${CONN[@]}" create-rate 4 "$NJOBS") || fail "create-rate"
        rate+=("$out")
        wait_no_children
        sleep 0.3
        rss1=$(rss_kib "$SERVER_PID")
        timeout -k 5 300 "$LOADGEN" "${CONN[@]}" wait-final "$NJOBS" 120 >/dev/null ||
            fail "create-rate: job states"
        per+=("$(calc "($rss1 - $rss0) * 1024 / $NJOBS")")
        start+=("$rss0")
        after+=("$rss1")
        say "creation rate, run $r/$RUNS: $out jobs/s; RSS $rss0 KiB at start," \
            "$rss1 KiB after $NJOBS jobs (${per[-1]} B/job)"
        stop_server
    done
    local m p a b
    m=$(median "${rate[@]}")
    row "4. job creations/s, 4 client threads" "$(printf '%.0f /s' "$m")" "-" "-" ">= 500/s" \
        "$(verdict "$m" ">=" 500)"
    p=$(median "${per[@]}")
    a=$(median "${after[@]}")
    b=$(median "${start[@]}")
    row "6. RSS after $NJOBS finished jobs" \
        "$(printf '%.1f MiB, %+.0f B/job' "$(calc "$a / 1024")" "$p")" \
        "$(printf 'start %.1f MiB' "$(calc "$b / 1024")")" "$(printf '%.2fx' "$(calc "$a / $b")")" \
        "<= 2048 B/job" "$(verdict "$p" "<=" 2048)"
}

# 7. Server RSS while one job writes BIG to 4 followers (all byte-exact): the peak (VmHWM) over
#    the RSS before the job, on a fresh server per run.
case7() {
    local r t id rss0 hwm growth=() before=() peak=()
    for r in $(seq "$RUNS"); do
        start_server
        sleep 0.3
        rss0=$(rss_kib "$SERVER_PID")
        t=$EPOCHREALTIME
        id=$(jc create "$PATTERN" "$BIG") || fail "create"
        follow "$id" "$BIG" 4
        expect_job "$id" "$BIG_B"
        hwm=$(hwm_kib "$SERVER_PID")
        growth+=("$(calc "($hwm - $rss0) / 1024")")
        before+=("$rss0")
        peak+=("$hwm")
        say "$BIG to 4 followers, run $r/$RUNS: RSS before $rss0 KiB, peak $hwm KiB" \
            "(+${growth[-1]} MiB), $(mbps "$(calc "$BIG_B * 4")" "$(since "$t")") MB/s aggregate"
        stop_server
    done
    local g a b
    g=$(median "${growth[@]}")
    a=$(median "${peak[@]}")
    b=$(median "${before[@]}")
    row "7. RSS, 1 job writes $BIG to 4 followers" \
        "$(printf 'peak %.1f MiB, %+.1f MiB' "$(calc "$a / 1024")" "$g")" \
        "$(printf 'before %.1f MiB' "$(calc "$b / 1024")")" "$(printf '%.2fx' "$(calc "$a / $b")")" \
        "growth <= 16 MiB" "$(verdict "$g" "<=" 16)"
}

say "machine: $(machine); load average $LOAD_START"
start_sshd
for c in ${BENCH_ONLY:-1 2 3 4 7}; do
    case $c in
    1) case1 ;;
    2)
        [ -n "${ONE:-}" ] || case1
        case2
        ;;
    3) case3_5 ;;
    4) case4_6 ;;
    7) case7 ;;
    *) fail "BENCH_ONLY: unknown case $c" ;;
    esac
done

ELAPSED=$(since "$START_TIME")
{
    echo "jobworker benchmark: $(machine); median of $RUNS runs ($TPUT_RUNS for case 1);" \
        "load average $LOAD_START at start, $(loadavg) at end"
    # Aligned columns (awk rather than column(1), which is not in every base install).
    printf '%s\n' "case|ours|reference|ratio|target|result" "${ROWS[@]}" |
        awk -F'|' '{ for (i = 1; i <= NF; i++) { c[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) }
                     n = NR; if (NF > nf) nf = NF }
             END { for (r = 1; r <= n; r++) { line = ""
                     for (i = 1; i <= nf; i++) line = line sprintf(i < nf ? "%-" w[i] "s  " : "%s", c[r, i])
                     sub(/ +$/, "", line); print line } }'
    echo "ratio = ours / reference. $MISSES target(s) missed. Every output byte-exact, every" \
        "exit status and job state checked. $(printf '%.0f' "$ELAPSED") s."
} | tee "$BUILD/bench-results.txt"
if [ "${BENCH_STRICT:-0}" = 1 ] && [ "$MISSES" -gt 0 ]; then
    exit 3
fi
exit 0
