#!/bin/bash
# Runs each cmocka unit binary given as an argument; prints one summary line and fails if any
# binary failed, ran no test or hung.
#
# Every binary runs under `timeout`, so a deadlock fails the tier instead of hanging CI: SIGTERM
# to its process group after the limit, SIGKILL UNIT_KILL_AFTER (10) seconds later. The limit is
# UNIT_TIMEOUT seconds when set; otherwise 120 s (the slowest release binary takes ~10 s on a
# shared 2-core host), times 3 for a binary linked with ASan/UBSan and times 5 for one linked
# with TSan (make test-tsan runs its binaries through this script too).
set -u
BUILD=${BUILD:-build/release}
export JW_JOB_INIT=${JW_JOB_INIT:-$BUILD/bin/job-init}
export JW_TESTBIN=${JW_TESTBIN:-$BUILD/testbin}
export JW_REPO_ROOT=${JW_REPO_ROOT:-$(pwd)}
UNIT_BASE_TIMEOUT=120
KILL_AFTER=${UNIT_KILL_AFTER:-10}

if ! command -v timeout >/dev/null; then
    echo "unit: FAILED: timeout(1) (coreutils) is not installed" >&2
    exit 1
fi

# limit_for BINARY: the time limit in seconds for one binary.
limit_for() {
    if [ -n "${UNIT_TIMEOUT:-}" ]; then
        echo "$UNIT_TIMEOUT"
        return
    fi
    local libs
    libs=$(ldd "$1" 2>/dev/null)
    case "$libs" in
    *libtsan*) echo $((UNIT_BASE_TIMEOUT * 5)) ;;
    *libasan* | *libubsan*) echo $((UNIT_BASE_TIMEOUT * 3)) ;;
    *) echo "$UNIT_BASE_TIMEOUT" ;;
    esac
}

pass=0
fail=0
failed=()
for t in "$@"; do
    name=$(basename "$t")
    limit=$(limit_for "$t")
    started=$SECONDS
    out=$(timeout --kill-after="$KILL_AFTER" "$limit" "$t" 2>&1)
    rc=$?
    # 124: SIGTERM at the limit; 137 (128 + SIGKILL): still alive KILL_AFTER seconds later (or
    # killed by something else, hence the elapsed time check).
    if { [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; } && [ $((SECONDS - started)) -ge "$limit" ]; then
        out+=$'\n'"unit: $name timed out after $limit s (exit $rc)"
    fi
    # shellcheck disable=SC2001 # prefixes every line, which ${var//} cannot anchor
    echo "$out" | sed "s|^|[$name] |"
    n=$(echo "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    f=$(echo "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    pass=$((pass + ${n:-0}))
    if [ "$rc" -ne 0 ] || [ -z "$n" ] || [ "$n" -eq 0 ]; then
        fail=$((fail + ${f:-1}))
        failed+=("$name")
    fi
done
echo "unit: $pass passed, $fail failed"
if [ "$fail" -ne 0 ]; then
    echo "unit: failing binaries: ${failed[*]}" >&2
    exit 1
fi
