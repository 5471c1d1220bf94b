#!/bin/sh
# shellcheck source=../lib.sh disable=SC2034,SC2086,SC2046,SC2119 # SCENARIO is read by lib.sh; pid lists split on purpose
# memory: a job that touches 256 MiB under --max-memory=64M is OOM-killed and ends FAILED with
# reason OOM_KILLED, its memory_peak_bytes near the limit; a job that stays under it completes.
. /jw/lib.sh
SCENARIO=memory
LIMIT=$((64 * MIB))
if [ -x "$TESTBIN/memhog" ]; then
    HOG="$TESTBIN/memhog"
else
    fail memory "$TESTBIN/memhog missing (tests/bin/memhog.c not built)"
    exit 1
fi
server_up

if ! create --max-memory=64M -- "$HOG" 256 || ! wait_final "$JOB" 30; then
    fail memory.oom "$ERR"
else
    st=$(jf status) rs=$(jf reason) peak=$(jf memory_peak_bytes) lim=$(jf memory_bytes)
    # The kernel's own word that memory.max of this job's cgroup did the killing.
    kern=$(dmesg | grep -o "oom-kill:.*oom_memcg=$PARENT/job-$JOB,.*" | head -n 1)
    if [ "$st" != FAILED ] || [ "$rs" != OOM_KILLED ]; then
        fail memory.oom "256 MiB under 64M ended $st/$rs (exit $(jf exit_code), signal $(jf signal)), want FAILED/OOM_KILLED"
    elif [ "$lim" != "$LIMIT" ]; then
        fail memory.oom "limits.memory_bytes=$lim, want $LIMIT"
    elif ! is "${peak:-0} >= 0.75 * $LIMIT && ${peak:-0} <= $LIMIT + $MIB"; then
        fail memory.oom "memory_peak_bytes=${peak:-missing} ($(mib "${peak:-0}") MiB), want near the 64 MiB limit"
    elif [ -z "$kern" ]; then
        fail memory.oom "no kernel oom-kill record with oom_memcg=$PARENT/job-$JOB in dmesg: $(dmesg | grep -i oom | tail -n 2 | tr '\n' ' ')"
    else
        pass memory.oom "FAILED/OOM_KILLED (signal $(jf signal)), peak $(mib "$peak") MiB of 64 MiB; kernel: $(echo "$kern" | grep -o 'constraint=[A-Z_]*')"
    fi
fi

if ! create --max-memory=64M -- "$HOG" 16 || ! wait_final "$JOB" 30; then
    fail memory.under "$ERR"
else
    st=$(jf status) rs=$(jf reason) peak=$(jf memory_peak_bytes) out=$(output "$JOB")
    if [ "$st" != COMPLETED ] || [ "$rs" != EXITED ] || [ "$(jf exit_code)" != 0 ]; then
        fail memory.under "16 MiB under 64M ended $st/$rs exit $(jf exit_code), want COMPLETED/EXITED 0"
    elif ! is "${peak:-0} >= 16 * $MIB && ${peak:-0} < $LIMIT"; then
        fail memory.under "memory_peak_bytes=${peak:-missing}, want between 16 MiB and 64 MiB"
    elif [ "$out" != "memhog: touched 16 MiB" ]; then
        fail memory.under "output '$out', want 'memhog: touched 16 MiB'"
    else
        pass memory.under "COMPLETED exit 0, peak $(mib "$peak") MiB under a 64 MiB limit"
    fi
fi
finish
