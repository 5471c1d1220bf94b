"""Interoperability check: a plain grpcio client with nothing but the .proto talks to the
server. Usage: pyclient.py GENDIR CERTDIR PORT SCENARIO. Exits non-zero on any mismatch."""
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
else:
    sys.exit("unknown scenario " + scenario)
