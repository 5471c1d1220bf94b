#!/bin/bash
# Runs each cmocka unit binary given as an argument; prints one summary line and fails if any
# binary failed or ran no test.
set -u
pass=0
fail=0
failed=()
for t in "$@"; do
    out=$("$t" 2>&1)
    rc=$?
    echo "$out" | sed "s|^|[$(basename "$t")] |"
    n=$(echo "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    if [ "$rc" -ne 0 ] || [ -z "$n" ] || [ "$n" -eq 0 ]; then
        fail=$((fail + 1))
        failed+=("$(basename "$t")")
    else
        pass=$((pass + n))
    fi
done
echo "unit: $pass passed, $fail failed"
if [ "$fail" -ne 0 ]; then
    echo "unit: failing binaries: ${failed[*]}" >&2
    exit 1
fi
