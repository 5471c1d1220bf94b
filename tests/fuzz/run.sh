#!/bin/bash
# Runs the fuzz targets of tests/fuzz (see docs/testing.md). Called by tests/fuzz/fuzz.mk.
#
#   run.sh have-libfuzzer CC          exit 0 when CC can link a -fsanitize=fuzzer program
#   run.sh replay BINDIR TARGET...    every file of tests/fuzz/corpus/TARGET through BINDIR/fuzz_TARGET
#   run.sh fuzz FUZZ_BUILD SECONDS TARGET...
#                                     fuzz each target for SECONDS with libFuzzer, on a scratch
#                                     corpus seeded from the committed one
#
# Every mode prints one summary line and exits non-zero on any crash, leak or violated property.
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CORPUS=$HERE/corpus
DICTS=$HERE/dict
# Make sanitizer reports abort with a stack, whatever the caller's environment says about leaks.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}abort_on_error=1:detect_leaks=1:symbolize=1
export UBSAN_OPTIONS=${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}print_stacktrace=1:halt_on_error=1

mode=${1:-}
shift || true

is_libfuzzer() {
    # A libFuzzer binary answers -help=1 with its flag list.
    "$1" -help=1 2>&1 | grep -q -- '-max_total_time'
}

case "$mode" in
have-libfuzzer)
    cc=${1:-clang}
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return 0; }' >"$tmp/t.c"
    "$cc" -fsanitize=fuzzer,address,undefined -o "$tmp/t" "$tmp/t.c" >/dev/null 2>&1
    ;;

replay)
    bindir=$1
    shift
    ntargets=0 ninputs=0 failed=()
    scratch=$(mktemp -d)
    log=$scratch/log
    trap 'rm -rf "$scratch"' EXIT
    for t in "$@"; do
        bin=$bindir/fuzz_$t
        dir=$CORPUS/$t
        n=$(find "$dir" -maxdepth 1 -type f 2>/dev/null | wc -l)
        if [ "$n" -eq 0 ]; then
            echo "fuzz-replay: $t: no corpus in $dir" >&2
            failed+=("$t")
            continue
        fi
        start=$(date +%s.%N)
        if is_libfuzzer "$bin"; then
            # -runs=0: execute the corpus, mutate nothing; nothing is added to the corpus.
            # A crashing input is already in the corpus: keep libFuzzer from writing a copy of it
            # into the current directory.
            "$bin" -runs=0 -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$scratch/" "$dir" \
                >"$log" 2>&1
        else
            "$bin" "$dir" >"$log" 2>&1
        fi
        rc=$?
        ms=$(echo "$start $(date +%s.%N)" | awk '{printf "%d", ($2 - $1) * 1000}')
        ntargets=$((ntargets + 1))
        ninputs=$((ninputs + n))
        if [ "$rc" -ne 0 ]; then
            echo "fuzz-replay: $t: FAILED (exit $rc) on its corpus of $n inputs:"
            tail -40 "$log" | sed "s|^|[fuzz_$t] |"
            failed+=("$t")
        else
            echo "fuzz-replay: $t: $n inputs ok (${ms} ms)"
        fi
    done
    echo "fuzz-replay: $ntargets targets, $ninputs inputs, ${#failed[@]} failed"
    if [ "${#failed[@]}" -ne 0 ]; then
        echo "fuzz-replay: failing targets: ${failed[*]}" >&2
        exit 1
    fi
    ;;

fuzz)
    build=$1 seconds=$2
    shift 2
    failed=() total_execs=0
    for t in "$@"; do
        bin=$build/libfuzzer/fuzz_$t
        work=$build/work/$t
        art=$build/artifacts/$t
        mkdir -p "$work" "$art"
        dict=()
        [ -f "$DICTS/$t.dict" ] && dict=(-dict="$DICTS/$t.dict")
        before=$(find "$CORPUS/$t" -maxdepth 1 -type f | wc -l)
        log=$build/fuzz-$t.log
        # New inputs go to the scratch corpus (first directory); the committed one is only read.
        "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
            -print_final_stats=1 -close_fd_mask=1 -artifact_prefix="$art/" "${dict[@]}" \
            "$work" "$CORPUS/$t" >"$log" 2>&1
        rc=$?
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
        after=$(find "$work" -maxdepth 1 -type f | wc -l)
        total_execs=$((total_execs + ${execs:-0}))
        if [ "$rc" -ne 0 ]; then
            # shellcheck disable=SC2012 # newest file of a libFuzzer artifact dir (crash-<sha1> names)
            echo "fuzz: $t: CRASH (exit $rc) after ${execs:-?} execs; reproducer:" \
                "$(ls -t "$art" 2>/dev/null | head -1 | sed "s|^|$art/|")"
            grep -E 'ERROR|SUMMARY|property violated|runtime error' "$log" | head -5 | sed "s|^|[fuzz_$t] |"
            echo "fuzz: full log in $log"
            failed+=("$t")
        else
            echo "fuzz: $t: ${execs:-?} execs in ${seconds} s (${rate:-?}/s), ${cov:-cov: ?}," \
                "corpus $before seeds + $after new in $work"
        fi
    done
    echo "fuzz: $# targets, $total_execs execs, ${#failed[@]} crashed"
    if [ "${#failed[@]}" -ne 0 ]; then
        echo "fuzz: crashing targets: ${failed[*]}" >&2
        exit 1
    fi
    ;;

*)
    echo "usage: $0 have-libfuzzer CC | replay BINDIR TARGET... | fuzz FUZZ_BUILD SECONDS TARGET..." >&2
    exit 2
    ;;
esac
