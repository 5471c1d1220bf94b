#!/bin/bash
# Runs the ThreadSanitizer unit binaries given as arguments through tests/run-unit.sh and prints
# one "tsan:" summary line. Fails when a test fails or TSan reports anything (TSan exits the
# binary with status 66 at the first report: halt_on_error=1 in TSAN_OPTIONS).
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=$("$here/../run-unit.sh" "$@" 2>&1)
rc=$?
echo "$out"
reports=$(echo "$out" | grep -c 'WARNING: ThreadSanitizer' || true)
summary=$(echo "$out" | sed -n 's/^unit: //p' | tail -1)
if [ "$rc" -ne 0 ] || [ "$reports" -ne 0 ]; then
    echo "tsan: FAILED: ${summary:-no summary}, $reports ThreadSanitizer report(s)"
    exit 1
fi
echo "tsan: ${summary}, no ThreadSanitizer report ($*)"
