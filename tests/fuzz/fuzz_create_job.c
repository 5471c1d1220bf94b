/* CreateJob decoding and validation, on the path the server takes (internal/rpc/server.c
 * handle_create): the request bytes arrive in a gRPC byte buffer, codec_unpack runs
 * codec_check_create_strings and protobuf-c's unpack, the message becomes a job_request and
 * job_request_validate judges it against the host. A request that passes is then turned into the
 * cgroup files the job would get.
 *
 * Properties checked beyond "no sanitizer report":
 *  - the NUL check and protobuf-c agree: when unpack succeeds, the command and every arg have
 *    exactly the length they have on the wire (an independent scanner of the wire form, written
 *    to protobuf-c's rules, gives those lengths), so no string was silently truncated;
 *  - a request is INVALID_ARGUMENT or FAILED_PRECONDITION when refused, with a message;
 *  - a request that validates holds only strict UTF-8 in command and args (checked by a second,
 *    decoding implementation: each code point in its shortest form, no surrogate, at most
 *    U+10FFFF), so no client fails to decode the Job later;
 *  - a request that validates formats into valid cpu.max / io.max text that parses back. */
#include "fuzz.h"

#include "cgroup/cgroup.h"
#include "job/job.h"
#include "rpc/codec.h"

#include <errno.h>
#include <grpc/byte_buffer.h>
#include <grpc/slice.h>
#include <limits.h>

/* What protobuf-c will make of fields 1 (command) and 2 (args) of the top-level message. */
typedef struct wire_view {
    int sure;           /* 0 when the scanner met something it does not model */
    size_t command_len; /* length of the last field-1 occurrence (the one protobuf-c keeps) */
    size_t nargs;
    size_t *args_len; /* nargs entries */
} wire_view;

/* protobuf-c's tag reader: at most 5 bytes, tag 0 in a one-byte key is invalid. */
static size_t scan_tag(const uint8_t *p, size_t len, uint32_t *tag, unsigned *wt)
{
    if (len == 0 || (p[0] & 0xf8) == 0)
        return 0;
    *wt = p[0] & 7;
    uint32_t t = (p[0] & 0x7f) >> 3;
    if (!(p[0] & 0x80)) {
        *tag = t;
        return 1;
    }
    unsigned shift = 4;
    size_t max = len > 5 ? 5 : len;
    for (size_t i = 1; i < max; i++) {
        t |= (uint32_t)(p[i] & 0x7f) << shift;
        if (!(p[i] & 0x80)) {
            *tag = t;
            return i + 1;
        }
        shift += 7;
    }
    return 0;
}

static void scan_wire(const uint8_t *p, size_t len, wire_view *w)
{
    size_t pos = 0;
    w->sure = 1;
    w->command_len = 0;
    w->nargs = 0;
    w->args_len = malloc((len / 2 + 1) * sizeof(size_t));
    if (!w->args_len)
        abort();
    while (pos < len) {
        uint32_t tag;
        unsigned wt;
        size_t n = scan_tag(p + pos, len - pos, &tag, &wt);
        if (n == 0)
            goto unsure;
        pos += n;
        if (wt == 0) {
            size_t i = 0;
            while (i < 10 && pos + i < len && (p[pos + i] & 0x80))
                i++;
            if (i == 10 || pos + i >= len)
                goto unsure;
            pos += i + 1;
            if (tag == 1 || tag == 2)
                goto unsure;
        } else if (wt == 1 || wt == 5) {
            size_t k = wt == 1 ? 8 : 4;
            if (len - pos < k || tag == 1 || tag == 2)
                goto unsure;
            pos += k;
        } else if (wt == 2) {
            uint64_t v = 0;
            size_t i;
            for (i = 0; i < 5 && pos + i < len; i++) {
                v |= (uint64_t)(p[pos + i] & 0x7f) << (7 * i);
                if (!(p[pos + i] & 0x80))
                    break;
            }
            if (i == 5 || pos + i >= len)
                goto unsure;
            pos += i + 1;
            if (v > INT_MAX || v > len - pos)
                goto unsure;
            if (tag == 1)
                w->command_len = (size_t)v;
            else if (tag == 2)
                w->args_len[w->nargs++] = (size_t)v;
            pos += (size_t)v;
        } else {
            goto unsure;
        }
    }
    return;
unsure:
    w->sure = 0;
}

static void check_cgroup_files(const job_limits *eff)
{
    char buf[128];
    long long quota = -1, period = -1, rbps = -1, wbps = -1;
    unsigned maj = 0, min = 0;
    FUZZ_CHECK(cgroup_format_cpu_max(eff->cpu_percent, buf, sizeof(buf)) == 0);
    if (eff->cpu_percent == 0) {
        FUZZ_CHECK(strcmp(buf, "max 100000") == 0);
    } else {
        /* The kernel refuses a quota below 1 ms. */
        FUZZ_CHECK(sscanf(buf, "%lld %lld", &quota, &period) == 2);
        FUZZ_CHECK(period == CGROUP_CPU_PERIOD_US && quota >= 1000);
        FUZZ_CHECK(quota == (long long)eff->cpu_percent * (CGROUP_CPU_PERIOD_US / 100));
    }
    FUZZ_CHECK(cgroup_format_io_max("259:0", eff->io_bps, buf, sizeof(buf)) == 0);
    if (eff->io_bps == 0) {
        FUZZ_CHECK(strcmp(buf, "259:0 rbps=max wbps=max") == 0);
    } else {
        FUZZ_CHECK(sscanf(buf, "%u:%u rbps=%lld wbps=%lld", &maj, &min, &rbps, &wbps) == 4);
        FUZZ_CHECK(maj == 259 && min == 0 && rbps == eff->io_bps && wbps == eff->io_bps);
    }
}

/* A reference UTF-8 check written differently from job_utf8_valid: decode, then judge the code
 * point. */
static int utf8_reference(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n = c < 0x80             ? 1
                   : (c & 0xe0) == 0xc0 ? 2
                   : (c & 0xf0) == 0xe0 ? 3
                   : (c & 0xf8) == 0xf0 ? 4
                                        : 0;
        if (n == 0 || len - i < n)
            return 0;
        uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1f) : n == 3 ? (c & 0x0f) : (c & 0x07);
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += n;
    }
    return 1;
}

static void run_validation(const Jobworker__V1__CreateJobReq *req, const job_host *host)
{
    /* Exactly as handle_create builds it. */
    job_request jr;
    codec_job_request_from_pb(req, &jr);
    jw_error err = JW_ERROR_INIT;
    int r = job_request_validate(&jr, host, &err);
    if (r < 0) {
        FUZZ_CHECK(r == -EINVAL);
        FUZZ_CHECK(err.code == JW_INVALID_ARGUMENT || err.code == JW_FAILED_PRECONDITION);
        FUZZ_CHECK(err.msg[0] != '\0');
        return;
    }
    FUZZ_CHECK(r == 0);
    FUZZ_CHECK(jr.command_len > 0 && jr.command_len <= JOB_COMMAND_MAX);
    FUZZ_CHECK(jr.nargs <= JOB_ARGC_MAX);
    FUZZ_CHECK(utf8_reference((const unsigned char *)jr.command, jr.command_len));
    for (size_t i = 0; i < jr.nargs; i++)
        FUZZ_CHECK(utf8_reference((const unsigned char *)jr.args[i], strlen(jr.args[i])));
    FUZZ_CHECK(jr.timeout_seconds >= 0 && jr.timeout_seconds <= JOB_TIMEOUT_MAX_SECONDS);
    FUZZ_CHECK(jr.network >= JOB_NETWORK_DEFAULT && jr.network <= JOB_NETWORK_NONE);
    if (!host->cgroups)
        return;
    /* Server defaults as the server's flags could set them; the effective limits must still be
     * something the cgroup files can express. */
    static const job_limits defaults = {.cpu_percent = 100,
                                        .memory_bytes = 512LL << 20,
                                        .memory_high_bytes = 1LL << 30,
                                        .pids_max = 1024};
    job_limits eff = jr.limits;
    job_limits_resolve(&eff, &defaults);
    FUZZ_CHECK(eff.memory_high_bytes <= eff.memory_bytes || eff.memory_bytes == 0);
    check_cgroup_files(&eff);
}

static grpc_byte_buffer *make_buffer(const uint8_t *data, size_t size)
{
    /* Two slices when there is something to split: the reader must join them. */
    size_t cut = size / 2;
    grpc_slice s[2] = {grpc_slice_from_copied_buffer((const char *)data, cut),
                       grpc_slice_from_copied_buffer((const char *)data + cut, size - cut)};
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(s, 2);
    grpc_slice_unref(s[0]);
    grpc_slice_unref(s[1]);
    return bb;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    grpc_byte_buffer *bb = size ? make_buffer(data, size) : NULL;
    ProtobufCMessage *m = NULL;
    jw_error err = JW_ERROR_INIT;
    int r = codec_unpack(&jobworker__v1__create_job_req__descriptor, bb, &m, &err);
    if (bb)
        grpc_byte_buffer_destroy(bb);

    /* The pure NUL check alone must agree with the whole decode on refusals. */
    jw_error err2 = JW_ERROR_INIT;
    int nul = codec_check_create_strings(data, size, &err2);
    FUZZ_CHECK(nul == 0 || nul == -EINVAL);
    if (nul < 0) {
        FUZZ_CHECK(r == nul);
        FUZZ_CHECK(err2.code == JW_INVALID_ARGUMENT && strstr(err2.msg, "NUL byte"));
    }
    if (r < 0) {
        FUZZ_CHECK(r == -EINVAL && err.code == JW_INVALID_ARGUMENT && err.msg[0]);
        return 0;
    }
    FUZZ_CHECK(m != NULL);

    Jobworker__V1__CreateJobReq *req = (Jobworker__V1__CreateJobReq *)m;
    FUZZ_CHECK(req->command != NULL);
    wire_view w;
    scan_wire(data, size, &w);
    if (w.sure) {
        FUZZ_CHECK(strlen(req->command) == w.command_len);
        FUZZ_CHECK(req->n_args == w.nargs);
        for (size_t i = 0; i < req->n_args; i++)
            FUZZ_CHECK(strlen(req->args[i]) == w.args_len[i]);
    }
    free(w.args_len);

    static const job_host hosts[] = {
        {.ncpus = 4, .memory_bytes = 8LL << 30, .cgroups = true, .io_controller = true},
        {.ncpus = 1, .memory_bytes = 1LL << 30, .cgroups = true, .io_controller = false},
        {.ncpus = 2, .memory_bytes = 4LL << 30, .cgroups = false, .io_controller = false},
    };
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++)
        run_validation(req, &hosts[i]);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}
