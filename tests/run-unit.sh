#!/bin/bash
# Runs each cmocka unit binary given as an argument; prints one summary line and fails if any
# binary failed or ran no test.
set -u
BUILD=${BUILD:-build/release}
export JW_JOB_INIT=${JW_JOB_INIT:-$BUILD/bin/job-init}
export JW_TESTBIN=${JW_TESTBIN:-$BUILD/testbin}
export JW_REPO_ROOT=${JW_REPO_ROOT:-$(pwd)}
pass=0
fail=0
failed=()
for t in "$@"; do
    out=$("$t" 2>&1)
    rc=$?
    echo "$out" | sed "s|^|[$(basename "$t")] |"
    n=$(echo "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    f=$(echo "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    pass=$((pass + ${n:-0}))
    if [ "$rc" -ne 0 ] || [ -z "$n" ] || [ "$n" -eq 0 ]; then
        fail=$((fail + ${f:-1}))
        failed+=("$(basename "$t")")
    fi
done
echo "unit: $pass passed, $fail failed"
if [ "$fail" -ne 0 ]; then
    echo "unit: failing binaries: ${failed[*]}" >&2
    exit 1
fi
