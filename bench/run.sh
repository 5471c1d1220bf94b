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
# latency run of case 3, GetJob calls per server and run of case 9), BENCH_DB_LAT_N (500) and
# BENCH_DB_JOBS (800): CreateJob calls and creations per server and run of case 8,
# BENCH_HISTORY (1000000, finished jobs bulk-loaded for case 9), BENCH_HISTORY_REF (1000, the
# small history it is compared with), BENCH_ONLY (cases to run, default "1 2 3 4 7 8 9 10 11"; 3
# includes 5, 4 includes 6), BENCH_SERVER_FLAGS (extra server flags; "--max-output 1M" shows a
# truncated stream FAIL).
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
DB_LAT_N=${BENCH_DB_LAT_N:-500}
DB_JOBS=${BENCH_DB_JOBS:-800}
HIST=${BENCH_HISTORY:-1000000}
HIST_REF=${BENCH_HISTORY_REF:-1000}
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

# 8. The cost of the history database on job creation: CreateJob(true) p50 on a warm channel and
#    creations/s (4 threads) with the history in SQLite, --db-sync normal (the default) and full,
#    against the same build with --db :memory: (the same code, nothing on disk). Each run starts
#    the three servers side by side; the load generator alternates its CreateJob calls over them
#    (one on each per round, the order rotating), so that the host's load, which moves from
#    second to second here, hits the three alike. The creation rates are measured in 4 turns of
#    DB_JOBS/4 per server, in a rotating order. Medians over the runs (p50) and the turns (rate).
case8() {
    local modes=(memory normal full) r c p i m out per_rate list desc
    local -A c_p50 c_rate
    per_rate=$(((DB_JOBS + 3) / 4))
    for r in $(seq "$RUNS"); do
        list=
        for m in "${modes[@]}"; do
            case $m in
            memory) SERVER_ARGS=(--db :memory:) ;;
            *) SERVER_ARGS=(--db-sync "$m") ;;
            esac
            start_server
            save_server "$m"
            list+=${list:+,}127.0.0.1:$PORT
        done
        SERVER_ARGS=()
        CONN[0]=$list
        out=$(timeout -k 5 900 "$LOADGEN" "${CONN[@]}" create-latency "$DB_LAT_N" 10) ||
            fail "create-latency (history ${modes[*]})"
        i=0 desc=
        while read -r c p; do
            m=${modes[$i]}
            c_p50[$m]+=" $c"
            desc+=" $m $c us (p99 $p);"
            i=$((i + 1))
        done <<<"$out"
        [ "$i" = 3 ] || fail "create-latency answered '$out'"
        say "history, run $r/$RUNS, CreateJob p50:$desc"
        for c in 1 2 3 4; do
            for i in 0 1 2; do
                m=${modes[$(((i + c + r) % 3))]}
                use_server "$m"
                out=$(timeout -k 5 600 "$LOADGEN" "${CONN[@]}" create-rate 4 "$per_rate") ||
                    fail "create-rate (history $m)"
                c_rate[$m]+=" $out"
                say "history $m, run $r/$RUNS, turn $c/4: $out creations/s"
            done
        done
        for m in "${modes[@]}"; do
            use_server "$m"
            wait_no_children
            timeout -k 5 300 "$LOADGEN" "${CONN[@]}" wait-final $((DB_LAT_N + 10 + 4 * per_rate)) \
                120 >/dev/null || fail "history $m: job states"
            [ "$m" = memory ] || [ -s "$DATA/jobs.db" ] || fail "history $m: no $DATA/jobs.db"
            stop_server
        done
        BG_PIDS=()
    done
    local ref_p ref_r a b label
    ref_p=$(median_of "${c_p50[memory]}")
    ref_r=$(median_of "${c_rate[memory]}")
    for m in normal full; do
        a=$(median_of "${c_p50[$m]}")
        b=$(median_of "${c_rate[$m]}")
        label="   CreateJob p50, history db, sync $m"
        [ "$m" = normal ] && label="8. CreateJob p50, history db, sync $m"
        row "$label" "$(printf '%.0f us' "$a")" "$(printf ':memory: %.0f us' "$ref_p")" \
            "$(printf '%.2fx' "$(calc "$a / $ref_p")")" "<= 1.15x" \
            "$(verdict "$(calc "$a / $ref_p")" "<=" 1.15)"
        row "   creations/s, 4 threads, sync $m" "$(printf '%.0f /s' "$b")" \
            "$(printf ':memory: %.0f /s' "$ref_r")" "$(printf '%.2fx' "$(calc "$b / $ref_r")")" \
            ">= 500/s" "$(verdict "$b" ">=" 500)"
    done
}

# 10. Admission (issue 12). (a) CreateJob p50 of a server whose admission limits are all large
#     enough that nothing queues (--max-running 100000 and a memory/cpu capacity far above the
#     jobs'), against one with every limit off (0: the admission code runs, nothing is counted
#     against a limit), side by side as in case 8. (b) Dispatch: --max-running 16, 16 gate jobs
#     hold every slot while QUEUE_N `true` jobs are created (4 threads; all QUEUED), then the gate
#     opens (a file the gate jobs poll for) and the time until every job is COMPLETED gives the
#     starts per second the dispatcher reaches once capacity frees.
case10() {
    local r out a b n_q gate rate
    local p50s=() refs=() rates=()
    n_q=${BENCH_QUEUE_N:-10000}
    for r in $(seq "$RUNS"); do
        SERVER_ARGS=(--max-running 100000 --capacity-memory 1000G --capacity-cpu 100000000)
        start_server
        save_server admitted
        SERVER_ARGS=(--max-running 0 --capacity-memory 0 --capacity-cpu 0)
        start_server
        save_server open
        SERVER_ARGS=()
        CONN[0]=127.0.0.1:${SAVED_PORT[admitted]},127.0.0.1:${SAVED_PORT[open]}
        out=$(timeout -k 5 900 "$LOADGEN" "${CONN[@]}" create-latency "$DB_LAT_N" 10) ||
            fail "create-latency (admission)"
        a=$(sed -n '1s/ .*//p' <<<"$out") b=$(sed -n '2s/ .*//p' <<<"$out")
        p50s+=("$a") refs+=("$b")
        say "admission, run $r/$RUNS, CreateJob p50: limits large $a us, limits off $b us"
        for w in admitted open; do
            use_server "$w"
            wait_no_children
            stop_server
        done

        gate="$JOBBIN/queue-gate-$r"
        rm -f "$gate"
        SERVER_ARGS=(--max-running 16 --max-queued $((n_q + 10)))
        start_server
        SERVER_ARGS=()
        local g
        for g in $(seq 16); do
            "$BIN/jobctl" --server "127.0.0.1:$PORT" --server-name localhost \
                --cert "$CERTS/admin.crt" --key "$CERTS/admin.key" --ca "$CERTS/ca.crt" \
                create sh -c "while [ ! -e $gate ]; do sleep 0.01; done" >/dev/null ||
                fail "admission: gate job"
        done
        timeout -k 5 900 "$LOADGEN" "${CONN[@]}" create-rate 4 "$n_q" >/dev/null ||
            fail "admission: queueing $n_q jobs"
        local t0=$EPOCHREALTIME
        touch "$gate"
        timeout -k 5 1800 "$LOADGEN" "${CONN[@]}" wait-final $((n_q + 16)) 1700 >/dev/null ||
            fail "admission: $n_q queued jobs did not all complete"
        rate=$(calc "$n_q / $(since "$t0")")
        rates+=("$rate")
        say "admission, run $r/$RUNS: $n_q queued jobs started and completed at $(printf '%.0f' "$rate")/s once capacity freed"
        rm -f "$gate"
        wait_no_children
        stop_server
    done
    a=$(median_of "${p50s[*]}") b=$(median_of "${refs[*]}") rate=$(median_of "${rates[*]}")
    row "10. CreateJob p50, admission limits large" "$(printf '%.0f us' "$a")" \
        "$(printf 'limits off %.0f us' "$b")" "$(printf '%.2fx' "$(calc "$a / $b")")" "<= 1.05x" \
        "$(verdict "$(calc "$a / $b")" "<=" 1.05)"
    row "    queued jobs started/s, --max-running 16" "$(printf '%.0f /s' "$rate")" "-" "-" \
        ">= 500/s" "$(verdict "$rate" ">=" 500)"
}

# 11. Standard input and the stream index: SIZE through `pattern | jobctl run cat | pattern
#     --check` against the same through ssh; and SIZE of output split between stdout and stderr
#     (pattern --split: 64 KiB blocks alternating, every block a run in the stream index) against
#     the same SIZE all on stdout (no index), each stream checked byte for byte.
case11() {
    start_server
    local r t st in_ours=() in_ssh=() split=() plain=() half
    half=$((SIZE_B / 2))
    for r in $(seq "$RUNS"); do
        t=$EPOCHREALTIME
        timeout -k 5 600 "$PATTERN" "$SIZE" 11 |
            timeout -k 5 600 "$BIN/jobctl" --server "127.0.0.1:$PORT" --server-name localhost \
                --cert "$CERTS/admin.crt" --key "$CERTS/admin.key" --ca "$CERTS/ca.crt" run cat |
            timeout -k 5 600 "$PATTERN" --check "$SIZE" 11
        st="${PIPESTATUS[*]}"
        in_ours+=("$(mbps "$SIZE_B" "$(since "$t")")")
        [ "$st" = "0 0 0" ] || fail "stdin: pattern | jobctl run cat | pattern --check exited $st"
        drop_outputs

        t=$EPOCHREALTIME
        timeout -k 5 600 "$PATTERN" "$SIZE" 11 |
            timeout -k 5 600 "${SSH[@]}" "$SSH_USER@127.0.0.1" cat |
            timeout -k 5 600 "$PATTERN" --check "$SIZE" 11
        st="${PIPESTATUS[*]}"
        in_ssh+=("$(mbps "$SIZE_B" "$(since "$t")")")
        [ "$st" = "0 0 0" ] || fail "stdin reference: pattern | ssh cat | pattern --check exited $st"

        t=$EPOCHREALTIME
        timeout -k 5 600 "$BIN/jobctl" --server "127.0.0.1:$PORT" --server-name localhost \
            --cert "$CERTS/admin.crt" --key "$CERTS/admin.key" --ca "$CERTS/ca.crt" \
            run -n "$PATTERN" --split "$half" 21 22 \
            > >(timeout -k 5 600 "$PATTERN" --check "$half" 21 >"$T/split.out" 2>&1; echo $? >"$T/split.out.st") \
            2> >(timeout -k 5 600 "$PATTERN" --check "$half" 22 >"$T/split.err" 2>&1; echo $? >"$T/split.err.st")
        st=$?
        # The two checkers end right after their input does (bounded: 60 s).
        local w
        for w in $(seq 1200); do
            [ -s "$T/split.out.st" ] && [ -s "$T/split.err.st" ] && break
            sleep 0.05
        done
        split+=("$(mbps "$SIZE_B" "$(since "$t")")")
        if [ "$st" != 0 ] || [ "$(cat "$T/split.out.st" 2>/dev/null)" != 0 ] ||
            [ "$(cat "$T/split.err.st" 2>/dev/null)" != 0 ]; then
            fail "split output: run exited $st, stdout check: $(cat "$T/split.out"), stderr check: $(cat "$T/split.err")"
        fi
        rm -f "$T/split.out.st" "$T/split.err.st"
        drop_outputs

        t=$EPOCHREALTIME
        timeout -k 5 600 "$BIN/jobctl" --server "127.0.0.1:$PORT" --server-name localhost \
            --cert "$CERTS/admin.crt" --key "$CERTS/admin.key" --ca "$CERTS/ca.crt" \
            run -n "$PATTERN" "$SIZE" | timeout -k 5 600 "$PATTERN" --check "$SIZE"
        st="${PIPESTATUS[*]}"
        plain+=("$(mbps "$SIZE_B" "$(since "$t")")")
        [ "$st" = "0 0" ] || fail "stdout-only output exited $st"
        drop_outputs
        say "stdin/stderr, run $r/$RUNS: stdin ${in_ours[-1]} MB/s (ssh ${in_ssh[-1]} MB/s);" \
            "output split stdout/stderr ${split[-1]} MB/s, all stdout ${plain[-1]} MB/s"
    done
    stop_server
    local a b
    a=$(median "${in_ours[@]}") b=$(median "${in_ssh[@]}")
    row "11. stdin, $SIZE through run cat" "$(printf '%.0f MB/s' "$a")" \
        "$(printf 'ssh %.0f MB/s' "$b")" "$(printf '%.2fx' "$(calc "$a / $b")")" ">= 1x ssh" \
        "$(verdict "$(calc "$a / $b")" ">=" 1)"
    a=$(median "${split[@]}") b=$(median "${plain[@]}")
    row "    output split stdout/stderr, $SIZE" "$(printf '%.0f MB/s' "$a")" \
        "$(printf 'all stdout %.0f MB/s' "$b")" "$(printf '%.2fx' "$(calc "$a / $b")")" "-" "info"
}

# median_of "N N N": the median of a blank-separated list.
median_of() {
    local v
    read -ra v <<<"$1"
    median "${v[@]}"
}

# bulk_history DIR ROWS: DIR becomes a data dir whose history holds ROWS finished jobs
# (COMPLETED, exit 0, no output), job k created k ms after a start ROWS ms + 10 min ago, so
# that retention by age (7 days) keeps them all. The schema is the real one: a server creates it
# on the empty dir and stops; then the sqlite3 tool inserts every row in one transaction. The
# ids are loadgen's bulk_id(): UUID-shaped and scattered like random ones, so the id index is
# built in random order as it would be by real jobs. Sets BULK_S (seconds of the load).
bulk_history() {
    local dir=$1 rows=$2 t0 t got
    mkdir -p "$dir"
    SERVER_DATA=$dir
    start_server
    stop_server
    SERVER_DATA=
    [ -s "$dir/jobs.db" ] || fail "bulk history: the server made no $dir/jobs.db"
    t0=$(((${EPOCHREALTIME/./} / 1000 - rows - 600000) * 1000000))
    t=$EPOCHREALTIME
    # A 256 MiB page cache keeps the random-order id index in memory during the load (2.5x
    # faster than SQLite's default 2 MiB); synchronous=OFF for this load only.
    sqlite3 -bail -cmd "PRAGMA cache_size = -262144" -cmd "PRAGMA synchronous = OFF" \
        "$dir/jobs.db" >"$T/sqlite.log" 2>&1 <<SQL || fail "bulk history: $(tail -3 "$T/sqlite.log")"
BEGIN;
WITH RECURSIVE c(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM c WHERE k < $rows)
INSERT INTO jobs (seq, id, command, args, nargs, owner, user, network, cpu_percent,
    memory_bytes, io_bps, memory_high_bytes, pids_max, limits_enforced, timeout_seconds,
    create_ns, status, reason, pid, start_ns, end_ns, exit_code, signal, error, cpu_usec,
    memory_peak_bytes, io_read_bytes, io_write_bytes, output_bytes, output_dropped, output_errno,
    output_errno_at)
SELECT k, printf('%08x-%04x-4%03x-8%03x-%012x', (k * 2654435761) % 4294967296, k % 65536,
        k % 4096, k % 4096, k),
    'true', x'', 0, 'admin', 'dynamic (1879048192-1879113727)', 1, 100, 536870912, 0, 0, 0, 1, 0,
    $t0 + k * 1000000, 3, 1, 1000 + k % 30000, $t0 + k * 1000000 + 200000,
    $t0 + k * 1000000 + 700000, 0, 0, '', 700, 1048576, 0, 0, 0, 0, 0, 0
FROM c;
COMMIT;
SQL
    BULK_S=$(since "$t")
    got=$(sqlite3 "$dir/jobs.db" "SELECT count(*) || ' ' || max(seq) FROM jobs") ||
        fail "bulk history: cannot read $dir/jobs.db"
    [ "$got" = "$rows $rows" ] || fail "bulk history: $dir/jobs.db holds '$got', expected $rows"
}

# 9. A server with HIST finished jobs in its history (bulk-loaded) against one with HIST_REF
#    (the same load, the same build), side by side, the load generator alternating its calls over
#    the two (as in case 8): GetJob p50 of random existing ids, one page of GetJobs p50 (1000 =
#    the default page, and 100); then 4 threads of GetJob/GetJobs on each; peak RSS (VmHWM:
#    start-up and all those calls); the start time with the file in the page cache (a restart)
#    and, in the first run, evicted from it (a reboot). Every answer is checked: the right job,
#    COMPLETED; each page exactly the newest jobs, newest first. The data dirs are kept between
#    runs; --retain-jobs 0.
case9() {
    local r i w out list nrows
    local -A dir rows h_g50 h_l1k h_l100 h_rss0 h_rss1 h_hwm h_st h_cold
    dir[ref]="$T/hist-ref" rows[ref]=$HIST_REF
    dir[big]="$T/hist-big" rows[big]=$HIST
    bulk_history "${dir[ref]}" "$HIST_REF"
    bulk_history "${dir[big]}" "$HIST"
    local bulk=$BULK_S
    say "bulk load of $HIST jobs: $(printf '%.1f' "$bulk") s," \
        "$(du -m "${dir[big]}/jobs.db" | cut -f1) MB"
    SERVER_ARGS=(--retain-jobs 0)
    local order=(ref big)
    for r in $(seq "$RUNS"); do
        if [ "$r" = 1 ]; then
            # A cold start: this database file, and nothing else, dropped from the page cache.
            sync "${dir[big]}/jobs.db"
            dd if="${dir[big]}/jobs.db" iflag=nocache count=0 status=none
            SERVER_DATA=${dir[big]}
            start_server
            h_cold[big]=$START_S
            stop_server
            say "history of $HIST jobs: cold start $START_S s"
        fi
        for i in 0 1; do
            w=${order[$(((i + r) % 2))]}
            SERVER_DATA=${dir[$w]}
            start_server
            save_server "$w"
            h_st[$w]+=" $START_S"
        done
        SERVER_DATA=
        sleep 0.3
        for w in ref big; do
            h_rss0[$w]+=" $(rss_kib "${SAVED_PID[$w]}")"
        done
        # Both servers in one list, big first.
        list=127.0.0.1:${SAVED_PORT[big]},127.0.0.1:${SAVED_PORT[ref]}
        nrows=${rows[big]},${rows[ref]}
        CONN[0]=$list
        out=$(timeout -k 5 600 "$LOADGEN" "${CONN[@]}" get-latency "$LAT_N" 20 "$nrows") ||
            fail "GetJob, histories of $nrows jobs"
        h_g50[big]+=" $(sed -n '1s/ .*//p' <<<"$out")" h_g50[ref]+=" $(sed -n '2s/ .*//p' <<<"$out")"
        out=$(timeout -k 5 600 "$LOADGEN" "${CONN[@]}" list-latency 100 5 1000 "$nrows") ||
            fail "GetJobs page 1000, histories of $nrows jobs"
        h_l1k[big]+=" $(sed -n '1s/ .*//p' <<<"$out")" h_l1k[ref]+=" $(sed -n '2s/ .*//p' <<<"$out")"
        out=$(timeout -k 5 600 "$LOADGEN" "${CONN[@]}" list-latency 300 10 100 "$nrows") ||
            fail "GetJobs page 100, histories of $nrows jobs"
        h_l100[big]+=" $(sed -n '1s/ .*//p' <<<"$out")" h_l100[ref]+=" $(sed -n '2s/ .*//p' <<<"$out")"
        for w in "${order[@]}"; do
            use_server "$w"
            out=$(timeout -k 5 300 "$LOADGEN" "${CONN[@]}" read-load 4 4000 "${rows[$w]}") ||
                fail "read load, ${rows[$w]} jobs"
            h_rss1[$w]+=" $(rss_kib "$SERVER_PID")"
            h_hwm[$w]+=" $(hwm_kib "$SERVER_PID")"
            say "history of ${rows[$w]} jobs, run $r/$RUNS: start ${h_st[$w]##* } s, GetJob" \
                "p50 ${h_g50[$w]##* } us, GetJobs p50 ${h_l1k[$w]##* } us (1000)," \
                "${h_l100[$w]##* } us (100); $out calls/s with 4 threads; RSS" \
                "${h_rss0[$w]##* } KiB after start, ${h_rss1[$w]##* } KiB after the load, peak" \
                "${h_hwm[$w]##* } KiB"
            stop_server
        done
        BG_PIDS=()
    done
    SERVER_ARGS=()
    local a b x
    a=$(median_of "${h_g50[big]}")
    b=$(median_of "${h_g50[ref]}")
    x=$(calc "$a / $b")
    row "9. GetJob p50, $HIST-job history" "$(printf '%.0f us' "$a")" \
        "$(printf '%s jobs %.0f us' "$HIST_REF" "$b")" "$(printf '%.2fx' "$x")" "<= 2x" \
        "$(verdict "$x" "<=" 2)"
    a=$(median_of "${h_l1k[big]}")
    b=$(median_of "${h_l1k[ref]}")
    x=$(calc "$a / $b")
    row "   GetJobs p50, page of 1000" "$(printf '%.0f us' "$a")" \
        "$(printf '%s jobs %.0f us' "$HIST_REF" "$b")" "$(printf '%.2fx' "$x")" "<= 2x" \
        "$(verdict "$x" "<=" 2)"
    a=$(median_of "${h_l100[big]}")
    b=$(median_of "${h_l100[ref]}")
    x=$(calc "$a / $b")
    row "   GetJobs p50, page of 100" "$(printf '%.0f us' "$a")" \
        "$(printf '%s jobs %.0f us' "$HIST_REF" "$b")" "$(printf '%.2fx' "$x")" "<= 2x" \
        "$(verdict "$x" "<=" 2)"
    a=$(median_of "${h_hwm[big]}")
    b=$(median_of "${h_hwm[ref]}")
    row "   server peak RSS (VmHWM)" "$(printf '%.1f MiB' "$(calc "$a / 1024")")" \
        "$(printf '%s jobs %.1f MiB' "$HIST_REF" "$(calc "$b / 1024")")" \
        "$(printf '%.2fx' "$(calc "$a / $b")")" "<= 64 MiB" \
        "$(verdict "$(calc "$a / 1024")" "<=" 64)"
    row "   server RSS after start / after load" \
        "$(printf '%.1f / %.1f MiB' "$(calc "$(median_of "${h_rss0[big]}") / 1024")" \
            "$(calc "$(median_of "${h_rss1[big]}") / 1024")")" \
        "$(printf '%s jobs %.1f / %.1f MiB' "$HIST_REF" \
            "$(calc "$(median_of "${h_rss0[ref]}") / 1024")" \
            "$(calc "$(median_of "${h_rss1[ref]}") / 1024")")" "-" "-" "info"
    a=$(median_of "${h_st[big]}")
    b=$(median_of "${h_st[ref]}")
    row "   server start, warm / cold page cache" "$(printf '%.2f / %.2f s' "$a" "${h_cold[big]}")" \
        "$(printf '%s jobs %.2f s' "$HIST_REF" "$b")" "$(printf '%.0fx' "$(calc "$a / $b")")" "-" \
        "info"
    row "   bulk load of $HIST jobs (sqlite3)" "$(printf '%.1f s' "$bulk")" "-" "-" "-" "info"
    rm -rf "${dir[big]}" "${dir[ref]}"
}

say "machine: $(machine); load average $LOAD_START"
start_sshd
for c in ${BENCH_ONLY:-1 2 3 4 7 8 9 10 11}; do
    CASE_T=$EPOCHREALTIME
    case $c in
    1) case1 ;;
    2)
        [ -n "${ONE:-}" ] || case1
        case2
        ;;
    3) case3_5 ;;
    4) case4_6 ;;
    7) case7 ;;
    8) case8 ;;
    9) case9 ;;
    10) case10 ;;
    11) case11 ;;
    *) fail "BENCH_ONLY: unknown case $c" ;;
    esac
    say "case $c: $(printf '%.0f' "$(since "$CASE_T")") s"
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
