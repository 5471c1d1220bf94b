#include "rpc/codec.h"

#include "util/cleanup.h"

#include <errno.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>
#include <string.h>

int codec_unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb,
                 ProtobufCMessage **ret, jw_error *err)
{
    grpc_slice s = grpc_empty_slice();
    if (bb) {
        grpc_byte_buffer_reader reader;
        if (!grpc_byte_buffer_reader_init(&reader, bb))
            return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL, "request could not be read");
        s = grpc_byte_buffer_reader_readall(&reader);
        grpc_byte_buffer_reader_destroy(&reader);
    }
    size_t len = GRPC_SLICE_LENGTH(s);
    const uint8_t *p = GRPC_SLICE_START_PTR(s);
    int r = 0;
    if (desc == &jobworker__v1__create_job_req__descriptor)
        r = codec_check_create_strings(p, len, err);
    ProtobufCMessage *m = NULL;
    if (r == 0) {
        m = protobuf_c_message_unpack(desc, NULL, len, p);
        if (!m)
            r = jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                             "request is not a valid %s message (%zu bytes)", desc->name, len);
    }
    grpc_slice_unref(s);
    if (r < 0)
        return r;
    *ret = m;
    return 0;
}

grpc_byte_buffer *codec_pack(const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    grpc_slice s = grpc_slice_malloc(n);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

static int read_varint(const uint8_t *buf, size_t len, size_t *pos, uint64_t *ret)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*pos >= len)
            return -EINVAL;
        uint8_t b = buf[(*pos)++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *ret = v;
            return 0;
        }
    }
    return -EINVAL;
}

int codec_check_create_strings(const uint8_t *buf, size_t len, jw_error *err)
{
    size_t pos = 0, nargs = 0;
    while (pos < len) {
        uint64_t key, v;
        if (read_varint(buf, len, &pos, &key) < 0)
            return 0; /* malformed: protobuf-c's unpack reports it */
        uint64_t field = key >> 3;
        switch (key & 7) {
        case 0:
            if (read_varint(buf, len, &pos, &v) < 0)
                return 0;
            break;
        case 1: pos += 8; break;
        case 5: pos += 4; break;
        case 2:
            if (read_varint(buf, len, &pos, &v) < 0 || v > len - pos)
                return 0;
            if (field == 1 && memchr(buf + pos, '\0', v))
                return jw_error_set(
                    err, JW_INVALID_ARGUMENT, -EINVAL,
                    "command contains a NUL byte at position %zu",
                    (size_t)((const uint8_t *)memchr(buf + pos, '\0', v) - (buf + pos)));
            if (field == 2) {
                if (memchr(buf + pos, '\0', v))
                    return jw_error_set(
                        err, JW_INVALID_ARGUMENT, -EINVAL,
                        "args[%zu] contains a NUL byte at position %zu", nargs,
                        (size_t)((const uint8_t *)memchr(buf + pos, '\0', v) - (buf + pos)));
                nargs++;
            }
            pos += v;
            break;
        default: return 0;
        }
    }
    return 0;
}

void codec_job_request_from_pb(const Jobworker__V1__CreateJobReq *req, job_request *ret)
{
    *ret = (job_request){
        .command = req->command,
        .command_len = strlen(req->command),
        .args = (const char *const *)req->args,
        .nargs = req->n_args,
        .timeout_seconds = req->timeout_seconds,
        .network = (int)req->network,
        .stdin_pipe = req->stdin,
        .env = (const char *const *)req->env,
        .nenv = req->n_env,
    };
    if (req->limits) {
        ret->limits.cpu_percent = req->limits->cpu_percent;
        ret->limits.memory_bytes = req->limits->memory_bytes;
        ret->limits.io_bps = req->limits->io_bps;
        ret->limits.memory_high_bytes = req->limits->memory_high_bytes;
        ret->limits.pids_max = req->limits->pids_max;
    }
}

void codec_job_view(const store_job_info *info, bool admin_view, Jobworker__V1__Job *job,
                    Jobworker__V1__ResourceLimits *limits, Jobworker__V1__ResourceUsage *usage)
{
    jobworker__v1__job__init(job);
    jobworker__v1__resource_limits__init(limits);
    jobworker__v1__resource_usage__init(usage);
    job->id = (char *)info->id;
    job->command = (char *)info->command;
    job->n_args = info->nargs;
    job->args = (char **)info->args;
    limits->cpu_percent = info->limits.cpu_percent;
    limits->memory_bytes = info->limits.memory_bytes;
    limits->io_bps = info->limits.io_bps;
    limits->memory_high_bytes = info->limits.memory_high_bytes;
    limits->pids_max = info->limits.pids_max;
    job->limits = limits;
    job->status = (Jobworker__V1__JobStatus)info->status;
    job->pid = admin_view ? info->pid : 0;
    if (admin_view) {
        job->n_env = info->nenv;
        job->env = (char **)info->env;
    }
    job->start_time_unix_ns = info->start_time_ns;
    job->end_time_unix_ns = info->end_time_ns;
    job->exit_code = info->exit_code;
    job->signal = info->signal;
    job->reason = (Jobworker__V1__ExitReason)info->reason;
    job->error = (char *)info->error;
    job->owner = (char *)info->owner;
    usage->cpu_usec = info->usage.cpu_usec;
    usage->memory_peak_bytes = info->usage.memory_peak_bytes;
    usage->io_read_bytes = info->usage.io_read_bytes;
    usage->io_write_bytes = info->usage.io_write_bytes;
    job->usage = usage;
    job->output_bytes = info->output_bytes;
    job->stdout_bytes = info->stdout_bytes;
    job->stderr_bytes = info->stderr_bytes;
    job->stdin = info->stdin_pipe;
    job->output_dropped_bytes = info->output_dropped;
    job->network = (Jobworker__V1__NetworkMode)info->network;
    job->user = (char *)info->user;
    job->limits_enforced = info->limits_enforced;
    job->timeout_seconds = info->timeout_seconds;
    job->create_time_unix_ns = info->create_ns;
}

static size_t put_varint(uint8_t *buf, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        buf[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    buf[n++] = (uint8_t)v;
    return n;
}

size_t codec_chunk_header(uint8_t *buf, size_t data_len)
{
    buf[0] = (1 << 3) | 2; /* field 1 (data), length-delimited */
    return 1 + put_varint(buf + 1, data_len);
}

size_t codec_chunk_trailer(uint8_t *buf, int64_t offset, int stream)
{
    size_t n = 0;
    if (offset != 0) {           /* proto3 omits default values */
        buf[n++] = (2 << 3) | 0; /* field 2 (offset), varint */
        n += put_varint(buf + n, (uint64_t)offset);
    }
    if (stream != 0) {
        buf[n++] = (3 << 3) | 0; /* field 3 (stream), varint */
        n += put_varint(buf + n, (uint64_t)stream);
    }
    return n;
}

void codec_job_cut_args(Jobworker__V1__Job *job, size_t max_bytes)
{
    size_t total = 0, keep = 0;
    while (keep < job->n_args) {
        size_t len = strlen(job->args[keep]);
        if (total + len > max_bytes)
            break;
        total += len;
        keep++;
    }
    job->args_omitted = (int32_t)(job->n_args - keep);
    job->n_args = keep;
}
