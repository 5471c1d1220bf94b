"""Interoperability check: a plain grpcio client with nothing but the .proto talks to the
server. Usage: pyclient.py GENDIR CERTDIR PORT SCENARIO [ARGS]. Exits non-zero on any mismatch.
Scenarios: interop, no-client-cert, cert:NAME, bad-requests, big-message, stop-race ROUNDS,
churn CLIENTS SECONDS."""
import sys
import time

sys.path.insert(0, sys.argv[1])
import grpc  # noqa: E402
from jobworker.v1 import jobworker_pb2 as pb  # noqa: E402

certs, port, scenario = sys.argv[2], sys.argv[3], sys.argv[4]
SVC = "/jobworker.v1.JobService/"


def channel(who=None):
    ca = open(f"{certs}/ca.crt", "rb").read()
    if who:
        creds = grpc.ssl_channel_credentials(ca, open(f"{certs}/{who}.key", "rb").read(),
                                             open(f"{certs}/{who}.crt", "rb").read())
    else:
        creds = grpc.ssl_channel_credentials(ca)
    return grpc.secure_channel(f"localhost:{port}", creds)


def unary(ch, method, req, resp):
    return ch.unary_unary(SVC + method, request_serializer=req.SerializeToString,
                          response_deserializer=resp.FromString)(req, timeout=10)


def stream(ch, req):
    call = ch.unary_stream(SVC + "GetJobsStream", request_serializer=req.SerializeToString,
                           response_deserializer=pb.DataChunk.FromString)
    return call(req, timeout=20)


def expect_code(fn, code):
    try:
        fn()
    except grpc.RpcError as e:
        if e.code() != code:
            sys.exit(f"expected {code}, got {e.code()}: {e.details()}")
        return e.details()
    sys.exit(f"expected {code}, the call succeeded")


def procs_with(markers, settle=2.0):
    """Live processes (host /proc) whose command line contains one of markers, after waiting up
    to settle seconds for them to go: ["pid: cmdline", ...]."""
    import os
    deadline = time.monotonic() + settle
    while True:
        left = []
        for p in os.listdir("/proc"):
            if not p.isdigit() or int(p) == os.getpid():
                continue
            try:
                cmd = open(f"/proc/{p}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if any(m in cmd for m in markers):
                left.append(f"{p}: {cmd.strip()}")
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


if scenario == "interop":
    ch = channel("admin")
    r = unary(ch, "CreateJob", pb.CreateJobReq(command="sh", args=["-c", "printf 'a\\0b'; exit 4"]),
              pb.CreateJobRes)
    jid = r.job.id
    assert r.job.owner == "alice", r.job.owner
    assert r.job.command == "sh" and list(r.job.args) == ["-c", "printf 'a\\0b'; exit 4"]
    data = b"".join(c.data for c in stream(ch, pb.GetJobsStreamReq(id=jid, follow=True)))
    assert data == b"a\0b", data
    g = unary(ch, "GetJob", pb.GetJobReq(id=jid), pb.GetJobRes)
    assert g.job.status == pb.JOB_STATUS_FAILED and g.job.exit_code == 4, g.job
    assert g.job.reason == pb.EXIT_REASON_EXITED and g.job.output_bytes == 3
    ids = [j.id for j in unary(ch, "GetJobs", pb.EmptyRequest(), pb.Jobs).jobs]
    assert jid in ids
    chunks = list(stream(ch, pb.GetJobsStreamReq(id=jid, offset=1)))
    assert b"".join(c.data for c in chunks) == b"\0b" and chunks[0].offset == 1, chunks
    d = expect_code(lambda: unary(ch, "Nope", pb.EmptyRequest(), pb.Jobs),
                    grpc.StatusCode.UNIMPLEMENTED)
    assert "Nope" in d, d
    d = expect_code(lambda: list(stream(ch, pb.GetJobsStreamReq(id="00000000-0000-4000-8000-000000000000"))),
                    grpc.StatusCode.NOT_FOUND)
    d = expect_code(lambda: unary(ch, "CreateJob", pb.CreateJobReq(command="echo", args=["a\0b"]),
                                  pb.CreateJobRes), grpc.StatusCode.INVALID_ARGUMENT)
    assert "args[0] contains a NUL byte" in d, d
    # Garbage bytes as a request.
    raw = ch.unary_unary(SVC + "GetJob")
    d = expect_code(lambda: raw(b"\xff\xff\xff\xff", timeout=5), grpc.StatusCode.INVALID_ARGUMENT)
    print("interop ok")
elif scenario == "no-client-cert":
    ch = channel(None)
    expect_code(lambda: unary(ch, "GetJobs", pb.EmptyRequest(), pb.Jobs), grpc.StatusCode.UNAVAILABLE)
    print("refused")
elif scenario.startswith("cert:"):
    ch = channel(scenario[5:])
    expect_code(lambda: unary(ch, "GetJobs", pb.EmptyRequest(), pb.Jobs), grpc.StatusCode.UNAVAILABLE)
    print("refused")
elif scenario == "bad-requests":
    # A representative set of validation rules (tests/unit/test_job.c has every rule) through
    # the real server: each is INVALID_ARGUMENT naming the field and the value, and none
    # creates a job.
    ch = channel("admin")
    before = len(unary(ch, "GetJobs", pb.EmptyRequest(), pb.Jobs).jobs)
    L = pb.ResourceLimits
    arg_max = "a" * (128 * 1024 - 1)  # the kernel's MAX_ARG_STRLEN counts the NUL
    cases = [
        (pb.CreateJobReq(command=""), "command is empty"),
        (pb.CreateJobReq(command="x" * 4097), "command is 4097 bytes, the limit is 4096"),
        (pb.CreateJobReq(command="ec\0ho"), "command contains a NUL byte at position 2"),
        (pb.CreateJobReq(command="echo", args=["ok", arg_max + "a"]),
         "args[1] is 131072 bytes, the limit is 131071"),
        (pb.CreateJobReq(command="echo", args=["a"] * 4097), "args has 4097 entries, the limit is 4096"),
        # 5 + 8 * 131072 bytes with their NULs, each argument within its own limit.
        (pb.CreateJobReq(command="echo", args=[arg_max] * 8),
         "command and args are 1048581 bytes together"),
        (pb.CreateJobReq(command="true", limits=L(cpu_percent=-5)), "limits.cpu_percent -5 is out of range"),
        (pb.CreateJobReq(command="true", limits=L(memory_bytes=4194303)),
         "limits.memory_bytes 4194303 is out of range 4194304.."),
        (pb.CreateJobReq(command="true", limits=L(memory_bytes=1 << 50)),
         "limits.memory_bytes 1125899906842624 is out of range"),
        (pb.CreateJobReq(command="true", limits=L(memory_bytes=64 << 20, memory_high_bytes=128 << 20)),
         "limits.memory_high_bytes 134217728 is above limits.memory_bytes 67108864"),
        (pb.CreateJobReq(command="true", limits=L(memory_high_bytes=100)),
         "limits.memory_high_bytes 100 is out of range"),
        (pb.CreateJobReq(command="true", limits=L(io_bps=100)),
         "limits.io_bps 100 is out of range 4096..1125899906842624"),
        (pb.CreateJobReq(command="true", limits=L(io_bps=(1 << 50) + 1)),
         "limits.io_bps 1125899906842625 is out of range"),
        (pb.CreateJobReq(command="true", limits=L(pids_max=-1)), "limits.pids_max -1 is out of range 1..4194304"),
        (pb.CreateJobReq(command="true", limits=L(pids_max=4194305)), "limits.pids_max 4194305 is out of range"),
        (pb.CreateJobReq(command="true", timeout_seconds=-1), "timeout_seconds -1 is out of range 0..31622400"),
        (pb.CreateJobReq(command="true", timeout_seconds=31622401), "timeout_seconds 31622401 is out of range"),
        (pb.CreateJobReq(command="true", network=7), "network 7 is not a known mode"),
    ]
    for req, want in cases:
        d = expect_code(lambda: unary(ch, "CreateJob", req, pb.CreateJobRes), grpc.StatusCode.INVALID_ARGUMENT)
        if want not in d:
            sys.exit(f"CreateJob: message '{d[:200]}' lacks '{want}'")
    for method, req in (("GetJob", pb.GetJobReq), ("StopJob", pb.StopJobReq)):
        d = expect_code(lambda: unary(ch, method, req(id=""), pb.GetJobRes), grpc.StatusCode.INVALID_ARGUMENT)
        assert "id is empty" in d, (method, d)
        d = expect_code(lambda: unary(ch, method, req(id="not-a-uuid"), pb.GetJobRes),
                        grpc.StatusCode.INVALID_ARGUMENT)
        assert "id 'not-a-uuid' is not a job id" in d, (method, d)
    d = expect_code(lambda: list(stream(ch, pb.GetJobsStreamReq(id="zz"))), grpc.StatusCode.INVALID_ARGUMENT)
    assert "id 'zz' is not a job id" in d, d
    after = len(unary(ch, "GetJobs", pb.EmptyRequest(), pb.Jobs).jobs)
    if after != before:
        sys.exit(f"bad requests created jobs: {before} before, {after} after")
    # Stream offsets: negative, and beyond the end of a finished job's output.
    jid = unary(ch, "CreateJob", pb.CreateJobReq(command="printf", args=["abc"]), pb.CreateJobRes).job.id
    assert b"".join(c.data for c in stream(ch, pb.GetJobsStreamReq(id=jid, follow=True))) == b"abc"
    d = expect_code(lambda: list(stream(ch, pb.GetJobsStreamReq(id=jid, offset=-1))),
                    grpc.StatusCode.INVALID_ARGUMENT)
    assert "offset -1 is negative" in d, d
    d = expect_code(lambda: list(stream(ch, pb.GetJobsStreamReq(id=jid, offset=4))),
                    grpc.StatusCode.INVALID_ARGUMENT)
    assert "offset 4 is beyond the end of the output (3 bytes)" in d, d
    assert list(stream(ch, pb.GetJobsStreamReq(id=jid, offset=3))) == [], "offset == size is empty and OK"
    print(f"{len(cases)} CreateJob, 4 id and 3 stream rules rejected with field and value; no job created")
elif scenario == "big-message":
    # A CreateJob of 5 MiB: gRPC's 4 MiB receive limit answers RESOURCE_EXHAUSTED before any
    # handler; the server stays healthy (a normal call on the same and on a new channel works).
    ch = channel("admin")
    req = pb.CreateJobReq(command="echo", args=["x" * (5 << 20)])
    size = req.ByteSize()
    d = expect_code(lambda: unary(ch, "CreateJob", req, pb.CreateJobRes), grpc.StatusCode.RESOURCE_EXHAUSTED)
    # Just over the limit too, on a unary call that takes an id.
    d2 = expect_code(lambda: unary(ch, "GetJob", pb.GetJobReq(id="y" * ((4 << 20) + 1)), pb.GetJobRes),
                     grpc.StatusCode.RESOURCE_EXHAUSTED)
    r = unary(ch, "CreateJob", pb.CreateJobReq(command="echo", args=["still-alive"]), pb.CreateJobRes)
    out = b"".join(c.data for c in stream(ch, pb.GetJobsStreamReq(id=r.job.id, follow=True)))
    assert out == b"still-alive\n", out
    ch2 = channel("admin")
    unary(ch2, "GetJobs", pb.EmptyRequest(), pb.Jobs)
    print(f"{size}-byte CreateJob: RESOURCE_EXHAUSTED ({d}); 4 MiB+1 GetJob: RESOURCE_EXHAUSTED ({d2}); "
          "then served on the same and a new channel")
elif scenario == "stop-race":
    # StopJob racing the job's start, ROUNDS times: one thread creates the job while another
    # polls GetJobs for it (it is listed from INITIALIZING on) and stops it the moment it shows,
    # after a delay of 0..48 ms that varies by round. Even rounds run a long sleep and the
    # creator stops it too as soon as CreateJob answers (two racing stops; it must end
    # STOPPED); odd rounds sleep about 0.02 s, so the stop races the job's own end (STOPPED or
    # COMPLETED). Every StopJob must answer a final state, all answers and GetJob must agree,
    # and no process of any job may remain.
    import os
    import threading
    rounds = int(sys.argv[5])
    nonce = "%06d" % (os.getpid() % 1000000)
    ch_a, ch_b = channel("admin"), channel("admin")
    final = {pb.JOB_STATUS_COMPLETED, pb.JOB_STATUS_FAILED, pb.JOB_STATUS_STOPPED}
    name = pb.JobStatus.Name
    seen_init = seen_running = seen_final = 0
    outcomes = {}
    markers = []

    def key(j):
        return (j.status, j.reason, j.exit_code, j.signal, j.end_time_unix_ns)

    for i in range(rounds):
        marker = f"{nonce}{i:03d}"
        markers.append(marker)
        # Even rounds sleep long (must end STOPPED), odd rounds end by themselves after
        # about 0.02 s (STOPPED or COMPLETED, whichever wins).
        arg = f"1000.{marker}" if i % 2 == 0 else f"0.02{marker}"
        res = {}
        go = threading.Barrier(2)

        def creator():
            go.wait()
            try:
                res["create"] = unary(ch_a, "CreateJob", pb.CreateJobReq(command="sleep", args=[arg]),
                                      pb.CreateJobRes).job
                if i % 2 == 0:
                    res["stop_a"] = unary(ch_a, "StopJob", pb.StopJobReq(id=res["create"].id),
                                          pb.StopJobRes).job
            except grpc.RpcError as e:
                res["err_a"] = f"{e.code()}: {e.details()}"

        def stopper():
            go.wait()
            # Spread the stops over the whole start: from before the job is listed to after a
            # short job may have completed.
            time.sleep((i // 2 % 5) * 0.012)
            t_end = time.monotonic() + 10
            try:
                while time.monotonic() < t_end and "err_a" not in res:
                    for j in unary(ch_b, "GetJobs", pb.EmptyRequest(), pb.Jobs).jobs:
                        if list(j.args) == [arg]:
                            res["listed"] = j.status
                            res["stop_b"] = unary(ch_b, "StopJob", pb.StopJobReq(id=j.id), pb.StopJobRes).job
                            return
            except grpc.RpcError as e:
                res["err_b"] = f"{e.code()}: {e.details()}"

        ts = [threading.Thread(target=creator), threading.Thread(target=stopper)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        for k in ("err_a", "err_b"):
            if k in res:
                sys.exit(f"round {i}: {k}: {res[k]}")
        if "create" not in res:
            sys.exit(f"round {i}: CreateJob did not answer")
        jid = res["create"].id
        got = unary(ch_a, "GetJob", pb.GetJobReq(id=jid), pb.GetJobRes).job
        if got.status not in final:
            sys.exit(f"round {i}: job {jid} is {name(got.status)} after two stops")
        for k in ("stop_a", "stop_b"):
            if k in res:
                s = res[k]
                if s.status not in final:
                    sys.exit(f"round {i}: {k} answered OK with the non-final state {name(s.status)} "
                             f"(job {jid} listed as {name(res.get('listed', 0))}; now {name(got.status)})")
                if key(s) != key(got):
                    sys.exit(f"round {i}: {k} answered {key(s)}, GetJob says {key(got)}")
        if i % 2 == 0 and got.status != pb.JOB_STATUS_STOPPED:
            sys.exit(f"round {i}: a 1000 s sleeper ended {name(got.status)}, not STOPPED")
        if res.get("listed") == pb.JOB_STATUS_INITIALIZING:
            seen_init += 1
        elif res.get("listed") == pb.JOB_STATUS_RUNNING:
            seen_running += 1
        elif res.get("listed") in final:
            seen_final += 1
        outcomes[name(got.status)] = outcomes.get(name(got.status), 0) + 1
    # No process of any round is left (the host's /proc shows every job's processes).
    left = procs_with(markers)
    if left:
        sys.exit("processes of stopped jobs remain: " + "; ".join(left))
    print(f"{rounds} rounds: final states {outcomes}; the racing stop saw the job INITIALIZING "
          f"{seen_init} times, RUNNING {seen_running}, already final {seen_final}; every stop answered a final state; "
          "no process left")
elif scenario == "churn":
    # CLIENTS clients, each on its own connection, churning create -> follow -> stop for SECONDS:
    # the stream must deliver the job's first line, end OK after the stop, and the stop must
    # answer STOPPED. Prints the counts; any failure exits non-zero.
    import os
    import threading
    clients, seconds = int(sys.argv[5]), float(sys.argv[6])
    nonce = "%06d" % (os.getpid() % 1000000)
    deadline = time.monotonic() + seconds
    done = [0] * clients
    errors = []
    lock = threading.Lock()

    def client(n):
        ch = channel("admin")
        k = 0
        try:
            while time.monotonic() < deadline and not errors:
                arg = f"1000.{nonce}{n:03d}{k:05d}"
                hello = f"hello {n} {k}\n".encode()
                j = unary(ch, "CreateJob", pb.CreateJobReq(command="sh", args=[
                    "-c", 'echo "hello $1 $2"; exec sleep "$0"', arg, str(n), str(k)]), pb.CreateJobRes).job
                if j.status != pb.JOB_STATUS_RUNNING:
                    raise AssertionError(f"job {j.id} is {pb.JobStatus.Name(j.status)}: {j.error}")
                call = stream(ch, pb.GetJobsStreamReq(id=j.id, follow=True))
                data = b""
                for c in call:
                    data += c.data
                    if data.endswith(b"\n"):
                        break
                if data != hello:
                    raise AssertionError(f"job {j.id}: first line {data!r}, want {hello!r}")
                s = unary(ch, "StopJob", pb.StopJobReq(id=j.id), pb.StopJobRes).job
                if s.status != pb.JOB_STATUS_STOPPED:
                    raise AssertionError(f"job {j.id}: stop answered {pb.JobStatus.Name(s.status)}")
                rest = b"".join(c.data for c in call)  # the follow stream ends OK after the stop
                if rest:
                    raise AssertionError(f"job {j.id}: unexpected output after the first line: {rest!r}")
                k += 1
        except Exception as e:  # noqa: BLE001 (any failure counts)
            with lock:
                errors.append(f"client {n} round {k}: {type(e).__name__}: "
                              f"{e.code().name + ' ' + e.details() if isinstance(e, grpc.RpcError) else e}")
        finally:
            done[n] = k
            ch.close()

    ts = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join(seconds + 60)
    took = time.monotonic() - t0
    total = sum(done)
    print(f"{clients} clients, {took:.1f} s: {total} create/follow/stop cycles "
          f"({total / took:.1f}/s, min per client {min(done)}), {len(errors)} failures")
    if errors:
        sys.exit("\n".join(errors[:10]))
    if min(done) < 1:
        sys.exit("a client completed no cycle")
    left = procs_with([f"1000.{nonce}"])
    if left:
        sys.exit(f"{len(left)} processes of stopped jobs remain: " + "; ".join(left[:5]))
    print("no process of any churned job left")
else:
    sys.exit("unknown scenario " + scenario)
