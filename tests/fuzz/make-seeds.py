#!/usr/bin/env python3
"""Writes the synthetic seed corpora of tests/fuzz/corpus/ (everything except certificates).

Usage: tests/fuzz/make-seeds.py [CORPUS_DIR]   (default: tests/fuzz/corpus next to this file)

The protobuf seeds are encoded by hand from jobworker.proto's field numbers, so that malformed
and borderline wire forms (NUL bytes in strings, repeated singular fields, truncated varints,
group wire types) can be written as easily as good ones. Files are named after what they hold;
re-running overwrites them and leaves every other file (e.g. inputs libFuzzer found) alone.
"""
import os
import struct
import sys


def varint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def key(field, wt):
    return varint(field << 3 | wt)


def f_varint(field, v):
    return key(field, 0) + varint(v)


def f_bytes(field, b):
    if isinstance(b, str):
        b = b.encode()
    return key(field, 2) + varint(len(b)) + b


def limits(cpu=0, mem=0, io=0, high=0, pids=0):
    m = b""
    for f, v in ((1, cpu), (2, mem), (3, io), (4, high), (5, pids)):
        if v:
            m += f_varint(f, v)
    return m


def create(command=None, args=(), lim=None, timeout=0, network=0):
    m = b""
    if command is not None:
        m += f_bytes(1, command)
    for a in args:
        m += f_bytes(2, a)
    if lim is not None:
        m += f_bytes(3, lim)
    if timeout:
        m += f_varint(4, timeout)
    if network:
        m += f_varint(5, network)
    return m


UUID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def job(**kw):
    m = b""
    order = [("id", 1, "s"), ("command", 2, "s"), ("args", 3, "r"), ("limits", 4, "m"),
             ("status", 5, "v"), ("pid", 6, "v"), ("start", 7, "v"), ("end", 8, "v"),
             ("exit_code", 9, "v"), ("signal", 10, "v"), ("reason", 11, "v"),
             ("error", 12, "s"), ("owner", 13, "s"), ("usage", 14, "m"), ("output", 15, "v"),
             ("enforced", 16, "v"), ("timeout", 17, "v"), ("dropped", 18, "v"),
             ("network", 19, "v"), ("user", 20, "s")]
    for name, field, kind in order:
        if name not in kw:
            continue
        v = kw[name]
        if kind == "s" or kind == "m":
            m += f_bytes(field, v)
        elif kind == "r":
            for a in v:
                m += f_bytes(field, a)
        else:
            m += f_varint(field, v)
    return m


def jobs(*js):
    return b"".join(f_bytes(1, j) for j in js)


def seeds():
    s = {}
    # ---- create_job: CreateJobReq as the server receives it ----
    c = s.setdefault("create_job", {})
    c["empty"] = b""
    c["echo-hello"] = create("echo", ["hello"])
    c["sh-c"] = create("sh", ["-c", "echo hi; echo oops >&2; exit 3"])
    c["absolute-path"] = create("/bin/true")
    c["empty-arg"] = create("printf", ["%s\\n", ""])
    c["limits-all"] = create("sleep", ["1"], limits(250, 64 << 20, 1 << 20, 32 << 20, 64), 30, 2)
    c["limits-cpu-only"] = create("true", [], limits(cpu=50))
    c["limits-negative"] = create("true", [], limits(-1, -1, -1, -1, -1))
    c["limits-too-small"] = create("true", [], limits(mem=1024, io=1))
    c["limits-high-above-max"] = create("true", [], limits(mem=8 << 20, high=16 << 20))
    c["limits-huge"] = create("true", [], limits(1 << 31, 1 << 62, 1 << 62, 1 << 62, 1 << 31))
    c["timeout-negative"] = create("true", [], None, -5)
    c["timeout-max"] = create("true", [], None, 366 * 24 * 3600 + 1)
    c["network-host"] = create("true", [], None, 0, 1)
    c["network-unknown"] = create("true", [], None, 0, 77)
    c["nul-in-command"] = create("ec\0ho", ["x"])
    c["nul-in-arg"] = create("echo", ["ok", "a\0b"])
    c["nul-at-end"] = create("echo\0")
    c["command-twice"] = create("first") + create("second\0x")
    c["command-twice-ok"] = create("fir\0st") + create("second")
    c["many-args"] = create("echo", [str(i) for i in range(200)])
    c["long-command"] = create("x" * 4097)
    c["utf8-and-controls"] = create("echo", ["\u00e9\u202e", "\x1b[31mred", "\r\n"])
    # Strict UTF-8 (issue 10, item 5): each invalid form once, and the valid edges.
    c["utf8-invalid-byte"] = create("echo", ["a", "b", b"hello\xff"])
    c["utf8-surrogate-command"] = create(b"ec\xed\xa0\x80ho")
    c["utf8-overlong"] = create("echo", [b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf"])
    c["utf8-above-max"] = create("echo", [b"\xf4\x90\x80\x80"])
    c["utf8-truncated"] = create("echo", [b"ok\xe2\x82"])
    c["utf8-edges-valid"] = create("echo", ["\ud7ff\ue000\uffff\U0010ffff\U0001f600"])
    c["arg-131072"] = create("echo", ["a" * 131072])
    c["arg-131071"] = create("echo", ["a" * 131071])
    c["unknown-fields"] = create("true") + f_varint(99, 5) + f_bytes(100, "x") + \
        key(101, 5) + b"abcd" + key(102, 1) + b"abcdefgh"
    c["group-wiretype"] = create("true") + key(7, 3) + key(7, 4)
    c["truncated-length"] = f_bytes(1, "echo")[:-2]
    c["overlong-varint"] = key(4, 0) + b"\xff" * 10 + b"\x01"
    c["nonminimal-key"] = b"\x8a\x00\x04echo" + b"\x92\x80\x00\x02hi"
    c["length-too-big"] = key(2, 2) + varint(1 << 40) + b"abc"
    c["args-wrong-wiretype"] = create("echo") + f_varint(2, 1)
    c["limits-garbage"] = create("true") + f_bytes(3, b"\xff\xff")
    # ---- rpc_messages: selector byte, then the message ----
    r = s.setdefault("rpc_messages", {})
    r["get-valid"] = b"\x00" + f_bytes(1, UUID)
    r["get-empty"] = b"\x00"
    r["get-not-uuid"] = b"\x00" + f_bytes(1, "not-a-uuid")
    r["get-uuid-upper"] = b"\x00" + f_bytes(1, UUID.upper())
    r["get-nul"] = b"\x00" + f_bytes(1, UUID[:10] + "\0" + UUID[11:])
    r["get-garbage"] = b"\x00\xff\xff\xff"
    r["stop-valid"] = b"\x01" + f_bytes(1, UUID)
    r["stop-path"] = b"\x01" + f_bytes(1, "../../etc/passwd")
    r["stream-follow"] = b"\x02" + f_bytes(1, UUID) + f_varint(2, 1) + f_varint(3, 300000)
    r["stream-negative-offset"] = b"\x02" + f_bytes(1, UUID) + f_varint(3, -1)
    r["stream-bool-2"] = b"\x02" + f_bytes(1, UUID) + f_varint(2, 2)
    r["empty-request"] = b"\x03"
    r["empty-request-unknown"] = b"\x03" + f_bytes(1, "x") + f_varint(2, 7)
    r["chunk-empty"] = b"\x04"
    r["chunk-offset-0"] = b"\x04" + struct.pack("<q", 0) + b"hello\n"
    r["chunk-offset-1"] = b"\x04" + struct.pack("<q", 1) + bytes(range(256))
    r["chunk-offset-neg"] = b"\x04" + struct.pack("<q", -1) + b"x"
    r["chunk-offset-max"] = b"\x04" + struct.pack("<q", (1 << 63) - 1) + b"\0" * 200
    # ---- cgroup_parse: interface files as the kernel writes them, and broken ones ----
    g = s.setdefault("cgroup_parse", {})
    g["cpu.stat"] = (b"usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\n"
                     b"nr_periods 10\nnr_throttled 4\nthrottled_usec 5000\n"
                     b"nr_bursts 0\nburst_usec 0\n")
    g["memory.events"] = b"low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n"
    g["memory.events-group-first"] = b"oom_group_kill 3\noom_kill 1\n"
    g["cgroup.events"] = b"populated 1\nfrozen 0\n"
    g["cgroup.events-crlf"] = b"populated 0\r\nfrozen 0\r\n"
    g["io.stat"] = (b"8:0 rbytes=1048576 wbytes=4096 rios=10 wios=1 dbytes=0 dios=0\n"
                    b"259:0 rbytes=90 wbytes=10 rios=1 wios=1 dbytes=0 dios=0\n")
    g["io.stat-overflow"] = b"8:0 rbytes=9223372036854775807\n8:1 rbytes=1\n"
    g["io.stat-bad"] = b"8:0 rbytes=12x wbytes=-1\n"
    g["cgroup.controllers"] = b"cpuset cpu io memory hugetlb pids rdma misc\n"
    g["subtree_control"] = b"cpu memory pids\n"
    g["proc-cgroup-v2"] = b"0::/system.slice/jobworker.service/supervisor\n"
    g["proc-cgroup-root"] = b"0::/\n"
    g["proc-cgroup-hybrid"] = (b"12:cpu,cpuacct:/\n11:memory:/user.slice\n1:name=systemd:/x\n"
                               b"0::/user.slice/session-1.scope\n")
    g["proc-cgroup-v1"] = b"4:pids:/\n3:memory:/\n"
    g["proc-cgroup-relative"] = b"0::relative\n"
    g["proc-cgroup-long"] = b"0::/" + b"a" * 5000 + b"\n"
    g["memory.peak"] = b"4194304\n"
    g["pids.max"] = b"max\n"
    g["int-overflow"] = b"9223372036854775808\n"
    g["int-max"] = b"9223372036854775807"
    g["majmin"] = b"8:0"
    g["majmin-max"] = b"4095:1048575"
    g["majmin-too-big"] = b"4096:0"
    g["majmin-sign"] = b"+8:-0"
    g["empty"] = b""
    g["blank-lines"] = b"\n\n \t\n"
    g["keyed-no-value"] = b"usage_usec\nnr_throttled \n"
    # ---- util_parse: sizes, durations, integers ----
    u = s.setdefault("util_parse", {})
    for name, v in [("size-plain", "1048576"), ("size-64M", "64M"), ("size-1GiB", "1GiB"),
                    ("size-kb", "4kb"), ("size-T", "8T"), ("size-overflow", "8388608T"),
                    ("size-space", "64 M"), ("dur-1m30s", "1m30s"), ("dur-ms", "250ms"),
                    ("dur-h", "2h"), ("dur-mixed", "1h2m3s4ms"), ("dur-trailing", "5x"),
                    ("int-neg", "-5"), ("int-max", "9223372036854775807"),
                    ("int-min", "-9223372036854775808"), ("int-over", "9223372036854775808"),
                    ("int-plus", "+7"), ("int-space", " 7"), ("int-hex", "0x10"),
                    ("empty", "")]:
        u[name] = v.encode()
    # ---- client_format: Jobs as a server returns them ----
    f = s.setdefault("client_format", {})
    lim = limits(150, 256 << 20, 1 << 20, 128 << 20, 100)
    usage = f_varint(1, 1500000) + f_varint(2, 50 << 20) + f_varint(3, 4096) + f_varint(4, 8192)
    running = job(id=UUID, command="sleep", args=["300"], limits=lim, status=2, pid=4242,
                  start=1700000000 * 10**9 - 5 * 10**9, owner="alice", enforced=1,
                  network=2, user="nobody (65534:65534)")
    failed = job(id=UUID, command="sh", args=["-c", "exit 3"], status=4, reason=1, exit_code=3,
                 start=1, end=2 * 10**9, owner="alice", usage=usage, output=11)
    oom = job(id=UUID, command="/usr/bin/memhog", status=4, reason=3, signal=9, error="oom",
              owner="bob", timeout=30, dropped=5)
    hostile = job(id="\x1b]0;pwned\x07", command="\x1b[2J", args=["a b", "'q'", "\u202e",
                  "\xc2\x85"], owner="eve\r\nforged", error="\x9b31m", status=99, reason=-1,
                  signal=64)
    f["empty"] = b""
    f["running"] = jobs(running)
    f["three"] = jobs(running, failed, oom)
    f["hostile-strings"] = jobs(hostile)
    f["invalid-utf8"] = jobs(job(id=UUID, command=b"\xff\xfe\xc0\xaf", args=[b"\xed\xa0\x80",
                                                                          b"\xf4\x90\x80\x80"]))
    f["nul-in-strings"] = jobs(job(id=UUID, command="a\0b", owner="x\0y"))
    # Pending: reproduce signed overflow in jw_fmt_job_human (the duration end - start of a
    # finished job, now - start of a running one); they move to the corpus once format.c is fixed.
    s.setdefault("pending/client_format", {})["running-start-min"] = jobs(
        job(id=UUID, command="sleep", status=2, start=-(1 << 63) + 1))
    s.setdefault("pending/client_format", {})["extreme-numbers"] = jobs(job(id=UUID, status=3, start=-1, end=(1 << 63) - 1,
                                    limits=limits(1 << 31, (1 << 63) - 1, -1, -1, -1),
                                    output=-1, timeout=-1))
    f["long-command"] = jobs(job(id=UUID, command="x" * 300, args=["y" * 100] * 5))
    return s


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus")
    n = 0
    for target, files in seeds().items():
        # "pending/<target>" seeds reproduce open product bugs: they live beside the corpus (in
        # tests/fuzz/pending/) and are not replayed until the bug is fixed and they are moved.
        if target.startswith("pending/"):
            d = os.path.join(out, "..", target)
        else:
            d = os.path.join(out, target)
        os.makedirs(d, exist_ok=True)
        for name, data in files.items():
            with open(os.path.join(d, name), "wb") as fh:
                fh.write(data)
            n += 1
    print("make-seeds: wrote %d synthetic seeds under %s" % (n, out))


if __name__ == "__main__":
    main()
