# shellcheck shell=bash
# GetServerInfo and `jobctl info` (sourced by run.sh; part of issue 15): what the server was
# started with, the host, and jobs by status, for admin and viewer; JSON with every key.

start_server --max-running 3 --max-queued 77 --max-jobs 5000 || exit 1

t_info() {
    local json out id
    id=$(jc create true) || return 1
    wait_status "$id" COMPLETED || return 1
    json=$(jc -o json info) || return 1
    expect_eq "$(json_field "$json" max_running)" 3 || return 1
    expect_eq "$(json_field "$json" max_queued)" 77 || return 1
    expect_eq "$(json_field "$json" max_jobs)" 5000 || return 1
    expect_eq "$(json_field "$json" cpus)" "$(nproc)" || return 1
    expect_eq "$(json_field "$json" hostname)" "$(hostname)" || return 1
    expect_eq "$(json_field "$json" version)" "$(sed -n 's/^#define JW_VERSION "\(.*\)"/\1/p' "$REPO/internal/util/defaults.h")" || return 1
    $PY - "$json" <<'PYEOF' || return 1
import json, sys
d = json.loads(sys.argv[1])
done = [j["count"] for j in d["jobs"] if j["status"] == "COMPLETED"]
assert done and done[0] >= 1, d["jobs"]
assert d["uptime_seconds"] >= 0 and d["load1"] >= 0 and d["memory_available_bytes"] > 0, d
assert d["streams_open"] == 0, d
PYEOF
    local v
    v=$(json_field "$json" version)
    expect_eq "$("$BIN/jobctl" --version)" "jobctl $v" || return 1
    expect_eq "$("$BIN/jobworker-server" --version)" "jobworker-server $v" || return 1
    out=$(jc_as viewer info) || return 1
    expect_contains "$out" "capacity:        running 3," || return 1
    expect_contains "$out" "completed" || return 1
}
check "GetServerInfo: flags, host and jobs by status; jobctl info for admin and viewer" t_info

stop_server || fail "info server exit" "non-zero exit status"
