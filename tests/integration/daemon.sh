# shellcheck shell=bash
# The daemon's own defences (sourced by run.sh; issue 10): what it trusts must be its own, one
# server per data directory, a port that exists, one client cannot hold every stream slot, and
# an audit record is one line whatever the client sends.

DZ="$T/dz"
mkdir -p "$DZ"

# server_refuses DATA_DIR EXPECTED [FLAGS...]: the real server exits non-zero within 10 s and
# its log contains EXPECTED.
server_refuses() {
    local dir=$1 want=$2 rc
    shift 2
    timeout 10 "$BIN/jobworker-server" --listen "127.0.0.1:$(free_port)" --no-cgroups \
        --cert "$CERTS/server.crt" --key "$CERTS/server.key" --ca "$CERTS/ca.crt" \
        --data-dir "$dir" "$@" >"$DZ/refused.log" 2>&1
    rc=$?
    if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]; then
        echo "server did not refuse (rc $rc)" >&2
        return 1
    fi
    expect_contains "$(cat "$DZ/refused.log")" "$want"
}

# A data directory a job user owns, or one below a directory anyone may write, would let a job
# replace the staged TLS material: the server refuses both and names the fix.
t_dz_data_dir_trust() {
    local d="$DZ/owned"
    mkdir -p "$d/data"
    chmod 711 "$d"
    chown nobody "$d/data"
    server_refuses "$d/data" "belongs to uid $(id -u nobody)" || return 1
    expect_contains "$(cat "$DZ/refused.log")" "chown 0 '$d/data'" || return 1
    [ ! -e "$d/data/tls" ] || { echo "a refused server staged TLS files" >&2; return 1; }
    chown root "$d/data"
    chmod 777 "$d"
    server_refuses "$d/data" "'$d' is writable by everyone (mode 0777)" || return 1
    chmod 711 "$d"
    # A root-owned sticky directory (like /tmp) is fine for a child the server owns.
    local s="$DZ/sticky"
    mkdir -p "$s" && chmod 1777 "$s" && mkdir -p "$s/data"
    timeout 3 "$BIN/jobworker-server" --listen "127.0.0.1:$(free_port)" --no-cgroups \
        --cert "$CERTS/server.crt" --key "$CERTS/server.key" --ca "$CERTS/ca.crt" \
        --data-dir "$s/data" >"$DZ/sticky.log" 2>&1
    expect_contains "$(cat "$DZ/sticky.log")" "listening on"
}
check "data directory owned by a job user or below a world-writable directory: refused with the fix" t_dz_data_dir_trust

# OpenSSH's rule for the TLS files: not writable by group or others, nor the directories above.
t_dz_tls_file_trust() {
    local c="$DZ/certs"
    mkdir -p "$c" && cp "$CERTS/server.crt" "$CERTS/server.key" "$CERTS/ca.crt" "$c/"
    chmod 600 "$c/server.key"
    chmod g+w "$c/server.key"
    server_refuses "$DZ/d1" "--key '$c/server.key': '$c/server.key' is writable by its group" \
        --key "$c/server.key" || return 1
    chmod g-w "$c/server.key"
    chmod o+w "$c"
    server_refuses "$DZ/d1" "--cert '$c/server.crt': '$c' is writable by everyone" \
        --cert "$c/server.crt" || return 1
    chmod o-w "$c"
}
check "group-writable --key or world-writable directory above --cert: refused, naming the path" t_dz_tls_file_trust

t_dz_bad_port() {
    server_refuses "$DZ/d2" "port '99999' is not a number in 0..65535" --listen 127.0.0.1:99999
}
check "--listen 127.0.0.1:99999 is refused instead of listening on another port" t_dz_bad_port


# A full data disk: bytes that cannot be stored are counted as dropped, the job's record and its
# readers say why, the log says it once, and new jobs are refused until space is freed.
t_dz_disk_full() {
    local d="$DZ/full" fport pid id json out log
    mkdir -p "$d"
    mount -t tmpfs -o size=3m,mode=0700 jw-it-full "$d" || { echo "cannot mount a tmpfs" >&2; return 1; }
    fport=$(free_port)
    log="$DZ/full.log"
    "$BIN/jobworker-server" --listen "127.0.0.1:$fport" --no-cgroups --cert "$CERTS/server.crt" \
        --key "$CERTS/server.key" --ca "$CERTS/ca.crt" --data-dir "$d" >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do grep -q "listening on" "$log" && break; sleep 0.05; done
    fj() { "$BIN/jobctl" --server "127.0.0.1:$fport" --server-name localhost \
        --cert "$CERTS/admin.crt" --key "$CERTS/admin.key" --ca "$CERTS/ca.crt" "$@"; }
    id=$(fj create sh -c 'head -c 5000000 /dev/zero; echo tail') || { kill "$pid"; umount "$d"; return 1; }
    for _ in $(seq 100); do
        json=$(fj -o json get "$id")
        [ "$(json_field "$json" status)" = COMPLETED ] && break
        sleep 0.1
    done
    local rc=0
    expect_eq "$(json_field "$json" status)" COMPLETED || rc=1
    [ "$(json_field "$json" output_dropped_bytes)" -gt 1000000 ] ||
        { echo "dropped bytes not counted: $json" >&2; rc=1; }
    expect_contains "$(json_field "$json" error)" "could not be stored: No space left on device" || rc=1
    out=$(fj stream "$id" 2>&1 >/dev/null) && { echo "stream ended OK on lost output" >&2; rc=1; }
    expect_contains "$out" "RESOURCE_EXHAUSTED: output of job $id after byte" || rc=1
    expect_contains "$out" "No space left on device" || rc=1
    out=$(fj create true 2>&1) && { echo "create accepted on a full disk" >&2; rc=1; }
    expect_contains "$out" "RESOURCE_EXHAUSTED: no space left for job output in '$d/output'" || rc=1
    # Once per job in the log (audit lines, which go to the log here, aside).
    [ "$(grep -v ' audit ' "$log" | grep -c "job $id.*No space left")" -eq 1 ] ||
        { echo "expected one log line for the job: $(grep "job $id" "$log")" >&2; rc=1; }
    # Space freed: jobs are accepted again.
    : >"$d/output/$id.out"
    fj create true >/dev/null || { echo "create refused after space was freed" >&2; rc=1; }
    kill "$pid"
    wait "$pid"
    umount "$d" || rc=1
    return "$rc"
}
check "full data disk: dropped output counted and explained to GetJob, readers and the log; creates refused until space is freed" t_dz_disk_full

# The data directory deleted under a running server. gRPC's file watcher used to log eight lines a
# second, forever, about the staged TLS files it could no longer read. Now: one error with the
# fix, the server keeps serving with the TLS material it holds, and once the directory is back
# a SIGHUP stages the files again (one line says so) and the CRL is in force for new handshakes.
t_dz_data_dir_deleted() {
    local d="$DZ/deleted" dport pid log n new lines rc=0
    mkdir -p "$d"
    dport=$(free_port)
    log="$DZ/deleted.log"
    "$BIN/jobworker-server" --listen "127.0.0.1:$dport" --no-cgroups --cert "$CERTS/server.crt" \
        --key "$CERTS/server.key" --ca "$CERTS/ca.crt" --crl "$CERTS/crl.pem" \
        --data-dir "$d/data" >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do grep -q "listening on" "$log" && break; sleep 0.05; done
    dj() { "$BIN/jobctl" --server "127.0.0.1:$dport" --server-name localhost \
        --cert "$CERTS/$1.crt" --key "$CERTS/$1.key" --ca "$CERTS/ca.crt" list >/dev/null 2>&1; }
    n=$(wc -l <"$log")
    rm -rf "$d/data"
    sleep 4
    # Everything logged in those 4 s (no client called, so no audit line either).
    new=$(tail -n +"$((n + 1))" "$log")
    lines=$(printf '%s' "$new" | grep -c '')
    [ "$lines" -eq 1 ] ||
        { echo "$lines log lines in 4 s after deleting the data directory: $(head -3 <<<"$new" | cut -c1-200)" >&2; rc=1; }
    grep -q "ERROR tls: the staged TLS files in '$d/data/tls' are gone .*fix: restart the server, or recreate '$d/data' and send SIGHUP" <<<"$new" ||
        { echo "no error line naming the directory and the fix" >&2; rc=1; }
    dj admin || { echo "admin refused once the data directory was gone" >&2; rc=1; }
    # Back: a SIGHUP stages the files there again.
    mkdir -m 0711 "$d/data"
    kill -HUP "$pid"
    for _ in $(seq 50); do grep -q "are back" "$log" && break; sleep 0.1; done
    expect_eq "$(grep -c "tls: the staged TLS files in '$d/data/tls' are back (generation 2)" "$log")" 1 "(lines saying the files are back)" || rc=1
    [ -L "$d/data/tls/current" ] || { echo "nothing staged in the recreated directory" >&2; rc=1; }
    # gRPC takes the new generation at its next poll (1 s): revocation holds again.
    for _ in $(seq 50); do dj revoked || break; sleep 0.1; done
    dj revoked && { echo "revoked certificate accepted after the reload" >&2; rc=1; }
    dj admin || { echo "admin refused after the reload" >&2; rc=1; }
    kill "$pid"
    wait "$pid" || { echo "server exit status $?" >&2; rc=1; }
    expect_eq "$(grep -c "staged TLS files in" "$log")" 2 "(TLS stage lines in all)" || rc=1
    return "$rc"
}
check "data directory deleted under the server: one log line with the fix (not 8 a second), still serving, SIGHUP stages the files again" t_dz_data_dir_deleted

# ---- a server of our own for the rest ----

start_server --max-streams-per-client 2 || exit 1

# A second server on the same data directory would delete the first's output and working
# directories at start: it is refused, naming the holder, and the first one's job survives.
t_dz_second_server() {
    local id out
    id=$(jc create sh -c 'echo before; sleep 2; echo after') || return 1
    wait_status "$id" RUNNING || return 1
    server_refuses "$T/data" "is in use by another jobworker-server (pid $SERVER_PID" || return 1
    wait_status "$id" COMPLETED || return 1
    out=$(jc stream "$id") || return 1
    expect_eq "$out" $'before\nafter'
}
check "second server on the same --data-dir refused, naming the holder's pid; first server's job intact" t_dz_second_server

# One certificate holds at most --max-streams-per-client streams; others are still served.
t_dz_streams_per_client() {
    local id p1 p2 out
    id=$(jc create sh -c 'sleep 30') || return 1
    wait_status "$id" RUNNING || return 1
    jc stream --follow "$id" >/dev/null 2>&1 &
    p1=$!
    jc stream --follow "$id" >/dev/null 2>&1 &
    p2=$!
    sleep 1
    out=$(jc stream --follow "$id" 2>&1) && { echo "third stream of one client accepted" >&2; return 1; }
    expect_contains "$out" "RESOURCE_EXHAUSTED: client 'alice' already has 2 streams open" || return 1
    # Another identity is not affected.
    jc_as viewer stream "$id" >/dev/null || { echo "viewer's stream refused" >&2; return 1; }
    jc stop "$id" >/dev/null || return 1
    wait "$p1" "$p2"
    return 0
}
check "--max-streams-per-client: a third stream of one certificate refused, another client served" t_dz_streams_per_client

# Job.pid: the host pid for admins (an operator can kill, perf or nsenter it), 0 for viewers.
t_dz_pid_by_role() {
    local id a v
    id=$(jc create sleep 5) || return 1
    wait_status "$id" RUNNING || return 1
    a=$(json_field "$(jc -o json get "$id")" pid)
    v=$(json_field "$(jc_as viewer -o json get "$id")" pid)
    [ "$a" -gt 1 ] || { echo "admin sees pid '$a'" >&2; return 1; }
    expect_eq "$v" 0 "(viewer's pid)" || return 1
    expect_contains "$(jc_as viewer -o json list)" '"pid":0' || return 1
    jc stop "$id" >/dev/null
}
check "Job.pid: host pid for admins, 0 for viewers (GetJob and GetJobs)" t_dz_pid_by_role

# GetJobs is bounded whatever the history holds: large args are cut from listings (GetJob keeps
# them), and a page that would pass 2 MiB ends early with a token for the rest. Before, 40 jobs with 120 KB
# args made every `jobctl list` fail (the answer exceeded the client's 4 MiB) and concurrent
# listings grew the server by hundreds of MB.
t_dz_list_bounded() {
    local rss0 rss1 first i pids=()
    rss0=$(rss_kib "$SERVER_PID")
    first=$($PY - "$T/py" "$CERTS" "$PORT" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import grpc
from jobworker.v1 import jobworker_pb2 as pb
certs, port = sys.argv[2], sys.argv[3]
creds = grpc.ssl_channel_credentials(open(f"{certs}/ca.crt", "rb").read(),
                                     open(f"{certs}/admin.key", "rb").read(),
                                     open(f"{certs}/admin.crt", "rb").read())
ch = grpc.secure_channel(f"localhost:{port}", creds)
create = ch.unary_unary("/jobworker.v1.JobService/CreateJob",
                        request_serializer=pb.CreateJobReq.SerializeToString,
                        response_deserializer=pb.CreateJobRes.FromString)
# 600 jobs whose 4000-byte command cannot start: 2.4 MB of listing on their own; then the
# newest, 40 jobs with 120 KB of args each.
for i in range(600):
    create(pb.CreateJobReq(command="/nonexistent/" + "c" * 3986), timeout=30)
ids = [create(pb.CreateJobReq(command="true", args=["a", "x" * 120000]), timeout=30).job.id
       for _ in range(40)]
print(ids[0])
EOF
) || return 1
    for i in 1 2 3 4 5 6 7 8; do
        jc_as viewer -o json list >"$DZ/list.$i" 2>&1 &
        pids+=($!)
    done
    wait "${pids[@]}" || { echo "a concurrent listing failed: $(head -c 300 "$DZ/list.1")" >&2; return 1; }
    rss1=$(rss_kib "$SERVER_PID")
    # (grep, not expect_contains: the listing is megabytes long)
    grep -q '"args":\["a"\],' "$DZ/list.1" || { echo "big args not cut" >&2; return 1; }
    grep -q '"args_omitted":1' "$DZ/list.1" || { echo "no args_omitted" >&2; return 1; }
    [ "$(wc -c <"$DZ/list.1")" -lt 4194304 ] || { echo "listing over 4 MiB" >&2; return 1; }
    # The job itself still has every byte of its args.
    [ "$(jc -o json get "$first" | wc -c)" -gt 120000 ] || { echo "GetJob lost args" >&2; return 1; }
    jc list >"$DZ/list.human" 2>"$DZ/list.human.err" || return 1
    grep -q -- '...(+1 args)' "$DZ/list.human" || { echo "no args mark" >&2; return 1; }
    # jobctl shows that one page and says that more exist; --all follows the pages to the
    # oldest of the 640 jobs, each once.
    grep -q "^jobctl: more jobs match than the [0-9]* shown" "$DZ/list.human.err" ||
        { echo "no note of more jobs: $(cat "$DZ/list.human.err")" >&2; return 1; }
    jc -o json list --all >"$DZ/list.all" || return 1
    $PY -c 'import json,sys
ids=[j["id"] for j in json.load(open(sys.argv[1]))["jobs"]]
assert len(ids) == len(set(ids)) and len(ids) >= 640, "%d jobs, %d distinct" % (len(ids), len(set(ids)))
assert sys.argv[2] in ids, "jobctl list --all misses a job"' "$DZ/list.all" "$first" || return 1
    # The first page (asked for 1000) stops short of 2 MiB; its token continues where it ended.
    $PY - "$T/py" "$CERTS" "$PORT" <<'EOF' || return 1
import sys
sys.path.insert(0, sys.argv[1])
import grpc
from jobworker.v1 import jobworker_pb2 as pb
certs, port = sys.argv[2], sys.argv[3]
creds = grpc.ssl_channel_credentials(open(f"{certs}/ca.crt", "rb").read(),
                                     open(f"{certs}/viewer.key", "rb").read(),
                                     open(f"{certs}/viewer.crt", "rb").read())
ch = grpc.secure_channel(f"localhost:{port}", creds)
get_jobs = ch.unary_unary("/jobworker.v1.JobService/GetJobs",
                          request_serializer=pb.GetJobsReq.SerializeToString,
                          response_deserializer=pb.Jobs.FromString)
first = get_jobs(pb.GetJobsReq(), timeout=30)
assert first.next_page_token, "a page cut at 2 MiB has a next_page_token"
assert 40 < len(first.jobs) < 640, f"first page holds {len(first.jobs)} jobs"
assert first.ByteSize() <= 2 * 1024 * 1024, f"first page is {first.ByteSize()} bytes"
seen, req, pages = [j.id for j in first.jobs], pb.GetJobsReq(page_token=first.next_page_token), 1
while req.page_token:
    page = get_jobs(req, timeout=30)
    seen += [j.id for j in page.jobs]
    req.page_token = page.next_page_token
    pages += 1
    assert pages < 50
assert len(seen) == len(set(seen)), "a job listed twice"
assert len(seen) >= 640, f"{len(seen)} jobs over {pages} pages"
print(f"first page {len(first.jobs)} jobs in {first.ByteSize()} bytes; {len(seen)} jobs in {pages} pages")
EOF
    echo "8 concurrent listings of 640 jobs (40 with 120 KB args): server VmRSS $rss0 KiB before, $rss1 KiB after${SANITIZED:+ (not judged: sanitizer build)}"
    [ -n "$SANITIZED" ] || [ $((rss1 - rss0)) -lt 65536 ] || { echo "server grew by $((rss1 - rss0)) KiB" >&2; return 1; }
}
check "GetJobs bounded: args cut in listings, a page ends before 2 MiB and its token continues, 8 concurrent listings cheap" t_dz_list_bounded

# A request id carrying a newline cannot forge a second audit record (ESC and quotes escaped too).
t_dz_audit_one_line() {
    local before after new
    before=$(audit_lines)
    $PY - "$T/py" "$CERTS" "$PORT" <<'EOF' || return 1
import sys
sys.path.insert(0, sys.argv[1])
import grpc
from jobworker.v1 import jobworker_pb2 as pb
certs, port = sys.argv[2], sys.argv[3]
creds = grpc.ssl_channel_credentials(open(f"{certs}/ca.crt", "rb").read(),
                                     open(f"{certs}/admin.key", "rb").read(),
                                     open(f"{certs}/admin.crt", "rb").read())
ch = grpc.secure_channel(f"localhost:{port}", creds)
get = ch.unary_unary("/jobworker.v1.JobService/GetJob",
                     request_serializer=pb.GetJobReq.SerializeToString,
                     response_deserializer=pb.GetJobRes.FromString)
forged = 'x\n2026-01-01T00:00:00.000Z audit cn="root" role=admin method=StopJob job=y outcome=OK\x1b[2K"'
try:
    get(pb.GetJobReq(id=forged), timeout=10)
    sys.exit("GetJob of a forged id succeeded")
except grpc.RpcError as e:
    if e.code() != grpc.StatusCode.INVALID_ARGUMENT:
        sys.exit(f"unexpected {e.code()}")
EOF
    after=$(audit_lines)
    expect_eq "$((after - before))" 1 "(audit lines added by one call)" || return 1
    new=$(tail -1 "$T/audit.log")
    expect_contains "$new" "msg=\"id 'x\\x0a2026-01-01T00:00:00.000Z audit cn=\\x22root\\x22" || return 1
    if grep -q $'\x1b' "$T/audit.log"; then
        echo "an ESC byte reached the audit log" >&2
        return 1
    fi
}
check "audit: an id with a newline, ESC and quotes stays one escaped record" t_dz_audit_one_line

stop_server
