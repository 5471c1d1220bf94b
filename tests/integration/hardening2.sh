# shellcheck shell=bash
# Hardening, round two (sourced by run.sh; issue 10, items 5, 13, 14 and 15): invalid UTF-8 in a
# request, arguments at the kernel's exec limits, jobctl with files that do not belong together,
# and a server certificate that clients would refuse. Runs its own server.

H2="$T/h2"
mkdir -p "$H2"

# h2_py SCENARIO: grpcio with requests built by hand, so that strings can carry bytes a protobuf
# library refuses to serialize. bad-utf8: each invalid request is INVALID_ARGUMENT with the
# field, byte and offset, none is stored, and every job still decodes in Python.
h2_py() {
    $PY - "$T/py" "$CERTS" "$PORT" "$@" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import grpc
from jobworker.v1 import jobworker_pb2 as pb

certs, port, mode = sys.argv[2], sys.argv[3], sys.argv[4]
ca = open(f"{certs}/ca.crt", "rb").read()
creds = grpc.ssl_channel_credentials(ca, open(f"{certs}/admin.key", "rb").read(),
                                     open(f"{certs}/admin.crt", "rb").read())
ch = grpc.secure_channel(f"localhost:{port}", creds)
SVC = "/jobworker.v1.JobService/"


def field(num, data):
    n, out = len(data), bytearray([num << 3 | 2])
    while n >= 0x80:
        out.append(n & 0x7f | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out) + data


def njobs():
    # Decoding every job in Python is the point: a stored invalid string would fail it.
    return len(ch.unary_unary(SVC + "GetJobs", request_serializer=pb.EmptyRequest.SerializeToString,
                              response_deserializer=pb.Jobs.FromString)(pb.EmptyRequest(), timeout=10).jobs)


create = ch.unary_unary(SVC + "CreateJob", request_serializer=lambda b: b,
                        response_deserializer=pb.CreateJobRes.FromString)
if mode == "bad-utf8":
    # (command, args, the message the server must give)
    cases = [
        (b"echo", [b"a", b"b", b"hello\xff"], "args[2] is not valid UTF-8 (byte 0xff at offset 5)"),
        (b"ec\xed\xa0\x80ho", [], "command is not valid UTF-8 (byte 0xed at offset 2)"),   # surrogate
        (b"echo", [b"\xc0\xaf"], "args[0] is not valid UTF-8 (byte 0xc0 at offset 0)"),     # overlong
        (b"echo", [b"x\xf4\x90\x80\x80"], "args[0] is not valid UTF-8 (byte 0xf4 at offset 1)"),  # > U+10FFFF
        (b"echo", [b"ok", b"cut\xe2\x82"], "args[1] is not valid UTF-8 (byte 0xe2 at offset 3)"),
    ]
    before = njobs()
    for cmd, args, want in cases:
        msg = field(1, cmd) + b"".join(field(2, a) for a in args)
        try:
            r = create(msg, timeout=10)
            sys.exit(f"{cmd!r} {args!r} was accepted: job {r.job.id}")
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.INVALID_ARGUMENT or want not in e.details():
                sys.exit(f"{cmd!r} {args!r}: {e.code()} '{e.details()}', wanted '{want}'")
    after = njobs()
    if after != before:
        sys.exit(f"refused requests created jobs: {before} before, {after} after")
    # Valid UTF-8 beyond ASCII is accepted and comes back unchanged.
    word = "caf\u00e9 \U0001F600 \uffff \U0010FFFF"
    r = create(field(1, b"echo") + field(2, word.encode()), timeout=10)
    got = ch.unary_unary(SVC + "GetJob", request_serializer=pb.GetJobReq.SerializeToString,
                         response_deserializer=pb.GetJobRes.FromString)(pb.GetJobReq(id=r.job.id), timeout=10)
    if list(got.job.args) != [word]:
        sys.exit(f"args came back as {list(got.job.args)!r}")
    print(f"{len(cases)} invalid requests refused, none stored; {njobs()} jobs decode in Python")
elif mode == "arg-131072":
    # No exec'd client can pass this argument on its own command line: hence grpcio.
    before = njobs()
    msg = field(1, b"sh") + field(2, b"-c") + field(2, b"true") + field(2, b"a" * 131072)
    try:
        r = create(msg, timeout=10)
        sys.exit(f"a 131072-byte argument was accepted: job {r.job.id} {pb.JobStatus.Name(r.job.status)} '{r.job.error}'")
    except grpc.RpcError as e:
        want = "args[2] is 131072 bytes, the limit is 131071"
        if e.code() != grpc.StatusCode.INVALID_ARGUMENT or want not in e.details():
            sys.exit(f"{e.code()} '{e.details()}', wanted INVALID_ARGUMENT '{want}'")
    if njobs() != before:
        sys.exit("the refused request created a job")
EOF
}

# h2_wait ID STATUS: like wait_status, for jobs whose JSON is too long for one argv string (the
# kernel's MAX_ARG_STRLEN is the subject here): the JSON goes through a pipe.
h2_wait() {
    local s
    for _ in $(seq 200); do
        s=$(jc -o json get "$1" | $PY -c 'import json,sys; print(json.load(sys.stdin)["status"])')
        [ "$s" = "$2" ] && return 0
        sleep 0.05
    done
    echo "job $1 is $s, wanted $2" >&2
    jc get "$1" | cut -c1-200 >&2
    return 1
}

# h2_check NAME FUNC: check, then how long it took.
h2_check() {
    local t0=$SECONDS
    check "$@"
    echo "    took $((SECONDS - t0)) s"
}

start_server || exit 1

t_h2_utf8() {
    local out
    out=$(h2_py bad-utf8) || { echo "$out" >&2; return 1; }
    echo "$out"
    # jobctl still lists every job.
    jc list >/dev/null
}
h2_check "invalid UTF-8 in command/args: INVALID_ARGUMENT naming field, byte and offset; nothing stored" t_h2_utf8

t_h2_arg_limits() {
    local a out id filler script='echo "$#"'
    a=$($PY -c 'print("a" * 131071)')
    # The longest argument execve takes runs to completion.
    # shellcheck disable=SC2016 # the job's shell expands it
    id=$(jc create sh -c 'printf %s "${#0}"' "$a") || return 1
    h2_wait "$id" COMPLETED || return 1
    expect_eq "$(jc stream "$id")" 131071 || return 1
    # One byte more is refused before anything is created, naming the argument and the limit.
    h2_py arg-131072 || return 1
    # Exactly the total cap (1 MiB with every NUL: "sh", "-c", the script, 7 arguments of 131071
    # bytes and a filler) really execs.
    filler=$((1048576 - 3 - 3 - ${#script} - 1 - 7 * 131072 - 1))
    local f
    f=$($PY -c "print('f' * $filler)")
    id=$(jc create sh -c "$script" "$a" "$a" "$a" "$a" "$a" "$a" "$a" "$f") || return 1
    h2_wait "$id" COMPLETED || return 1
    expect_eq "$(jc stream "$id")" 7 || return 1
    out=$(jc create sh -c "$script" "$a" "$a" "$a" "$a" "$a" "$a" "$a" "${f}f" 2>&1) &&
        { echo "1 MiB + 1 byte was accepted" >&2; return 1; }
    expect_contains "$out" "command and args are 1048577 bytes together" || return 1
    expect_contains "$out" "the limit is 1048576"
}
h2_check "argument of 131071 bytes runs, 131072 is INVALID_ARGUMENT; exactly 1 MiB of argv runs, 1 more byte refused" t_h2_arg_limits

t_h2_jobctl_files() {
    local out rc
    out=$("$BIN/jobctl" --server "127.0.0.1:$PORT" --server-name localhost --cert "$CERTS/admin.crt" \
        --key "$CERTS/viewer.key" --ca "$CERTS/ca.crt" list 2>&1)
    rc=$?
    expect_eq "$rc" 1 || return 1
    expect_contains "$out" "the key '$CERTS/viewer.key' does not match the certificate '$CERTS/admin.crt'" || return 1
    [[ "$out" != *UNAVAILABLE* ]] || { echo "still UNAVAILABLE: $out" >&2; return 1; }
    # Missing, unreadable or wrong files are named.
    out=$("$BIN/jobctl" --server "127.0.0.1:$PORT" --cert "$H2/nope.crt" --key "$CERTS/admin.key" \
        --ca "$CERTS/ca.crt" list 2>&1) && return 1
    expect_contains "$out" "cannot read client certificate '$H2/nope.crt': No such file or directory" || return 1
    out=$("$BIN/jobctl" --server "127.0.0.1:$PORT" --cert "$CERTS/admin.crt" --key "$H2" \
        --ca "$CERTS/ca.crt" list 2>&1) && return 1
    expect_contains "$out" "cannot read client key '$H2': Is a directory" || return 1
    out=$("$BIN/jobctl" --server "127.0.0.1:$PORT" --cert "$CERTS/admin.crt" --key "$CERTS/admin.key" \
        --ca "$H2/nope-ca.crt" list 2>&1) && return 1
    expect_contains "$out" "cannot read CA certificate '$H2/nope-ca.crt': No such file or directory" || return 1
    out=$("$BIN/jobctl" --server "127.0.0.1:$PORT" --cert "$CERTS/admin.crt" --key "$CERTS/admin.key" \
        --ca "$CERTS/admin.key" list 2>&1) && return 1
    expect_contains "$out" "CA file '$CERTS/admin.key' holds no certificate" || return 1
    out=$("$BIN/jobctl" --server "127.0.0.1:$PORT" --cert "$CERTS/admin.key" --key "$CERTS/admin.key" \
        --ca "$CERTS/ca.crt" list 2>&1) && return 1
    expect_contains "$out" "client certificate '$CERTS/admin.key'" || return 1
    # The matching pair still works.
    jc list >/dev/null
}
h2_check "jobctl: mismatched key and certificate named before connecting; missing/wrong files named" t_h2_jobctl_files

stop_server || echo "hardening2: server exit status $?" >&2

# h2_server_refuses NAME CERT KEY WANT: the real server, given CERT/KEY as its certificate,
# exits non-zero within 10 s and says WANT.
h2_server_refuses() {
    local name=$1 out rc flags=()
    host_has_cgroup2_controllers || flags+=(--no-cgroups)
    out=$(timeout 10 "$BIN/jobworker-server" --listen "127.0.0.1:$(free_port)" --cert "$2" --key "$3" \
        --ca "$CERTS/ca.crt" --data-dir "$H2/data-$name" --audit-log "$H2/audit-$name.log" \
        "${flags[@]}" 2>&1)
    rc=$?
    if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]; then
        echo "$name: server exit status $rc: $out" >&2
        return 1
    fi
    expect_contains "$out" "$4" "($name)"
}

t_h2_server_cert() {
    h2_server_refuses expired "$CERTS/expired.crt" "$CERTS/expired.key" \
        "server certificate '$CERTS/expired.crt' has expired: notAfter 2021-01-01T00:00:00Z" || return 1
    h2_server_refuses notyet "$CERTS/notyet.crt" "$CERTS/notyet.key" \
        "server certificate '$CERTS/notyet.crt' is not valid yet: notBefore 2090-01-01T00:00:00Z" || return 1
    # admin.crt carries extendedKeyUsage clientAuth only: no client would accept it.
    h2_server_refuses clientonly "$CERTS/admin.crt" "$CERTS/admin.key" \
        "server certificate '$CERTS/admin.crt' has an extendedKeyUsage without serverAuth"
}
h2_check "server refuses to start with an expired, not yet valid or non-serverAuth certificate" t_h2_server_cert
