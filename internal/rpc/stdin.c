#include "rpc/stdin.h"

#include "rpc/audit.h"
#include "rpc/codec.h"
#include "util/log.h"

#include <errno.h>
#include <grpc/support/time.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* How often a waiting writer looks at its call, the job and the server's shutdown. */
#define POLL_MS 100

typedef struct stdin_writer {
    stream_registry *reg;
    grpc_call *call;
    grpc_completion_queue *cq;
    auth_identity caller;
    store_job *job;
    char job_id[UUID_STR_LEN];
    int fd; /* the job's stdin pipe, once taken */
    ProtobufCMessage *first;
    int64_t written;
    bool job_ended;
    int cancelled;
    bool init_pending, close_pending, gone;
    char tag_init, tag_close, tag_recv, tag_status;
} stdin_writer;

static gpr_timespec after_ms(int ms)
{
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

/* Waits up to ms for one event of the call; returns the tag that completed (NULL on timeout)
 * and notes the client's cancellation. */
static void *next_event(stdin_writer *w, int ms, bool *ok)
{
    grpc_event ev = grpc_completion_queue_next(
        w->cq, ms < 0 ? gpr_inf_future(GPR_CLOCK_REALTIME) : after_ms(ms), NULL);
    if (ev.type != GRPC_OP_COMPLETE)
        return NULL;
    *ok = ev.success;
    if (ev.tag == &w->tag_init) {
        w->init_pending = false;
    } else if (ev.tag == &w->tag_close) {
        w->close_pending = false;
        if (w->cancelled)
            w->gone = true;
    }
    return ev.tag;
}

/* Whether to give up waiting: the client went away or the server is shutting down. */
static int check_abort(stdin_writer *w, jw_error *err)
{
    if (w->gone)
        return jw_error_set(err, JW_CANCELLED, -ECANCELED, "the client cancelled WriteStdin");
    if (stream_registry_shutting_down(w->reg))
        return jw_error_set(err, JW_UNAVAILABLE, -ESHUTDOWN, "the server is shutting down");
    return 0;
}

/* Waits until the job runs and takes its pipe. */
static int take_pipe(stdin_writer *w, jw_error *err)
{
    service *svc = stream_registry_service(w->reg);
    for (;;) {
        int r = service_stdin_take(svc, w->job, &w->fd, err);
        if (r <= 0)
            return r;
        r = check_abort(w, err);
        if (r < 0)
            return r;
        bool ok;
        (void)next_event(w, POLL_MS, &ok);
    }
}

/* Writes all of buf into the pipe as the job reads it. 1 when the job has ended (EPIPE: the rest
 * is discarded), 0 when written, <0 on abort. */
static int write_pipe(stdin_writer *w, const uint8_t *buf, size_t len, jw_error *err)
{
    while (len > 0) {
        ssize_t n = write(w->fd, buf, len);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            w->written += n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EPIPE)
            return 1;
        if (n < 0 && errno != EAGAIN)
            return jw_error_errno_code(err, JW_INTERNAL, errno, "write the stdin of job '%s'",
                                       w->job_id);
        struct pollfd p = {.fd = w->fd, .events = POLLOUT};
        if (poll(&p, 1, POLL_MS) == 0) {
            int r = check_abort(w, err);
            if (r < 0)
                return r;
            bool ok;
            (void)next_event(w, 0, &ok);
        }
    }
    return 0;
}

/* Writes one message's data; refuses a message that names another job. */
static int write_chunk(stdin_writer *w, const ProtobufCMessage *m, jw_error *err)
{
    const Jobworker__V1__StdinChunk *c = (const Jobworker__V1__StdinChunk *)m;
    if (c->id && *c->id && strcmp(c->id, w->job_id) != 0)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "id '%.64s' in a later message is not job '%s' of the first", c->id,
                            w->job_id);
    return write_pipe(w, c->data.data, c->data.len, err);
}

/* Receives and writes messages until the client's stream ends. 1 when the job ended first. */
static int pump(stdin_writer *w, jw_error *err)
{
    int r = write_chunk(w, w->first, err);
    while (r == 0) {
        grpc_byte_buffer *bb = NULL;
        grpc_op op;
        memset(&op, 0, sizeof(op));
        op.op = GRPC_OP_RECV_MESSAGE;
        op.data.recv_message.recv_message = &bb;
        if (grpc_call_start_batch(w->call, &op, 1, &w->tag_recv, NULL) != GRPC_CALL_OK)
            return jw_error_set(err, JW_INTERNAL, -EIO, "receive the next stdin message");
        bool ok = false;
        void *tag;
        do
            tag = next_event(w, -1, &ok);
        while (tag != &w->tag_recv);
        if (!ok || (w->gone && !bb)) {
            if (bb)
                grpc_byte_buffer_destroy(bb);
            return jw_error_set(err, JW_CANCELLED, -ECANCELED, "the client cancelled WriteStdin");
        }
        if (!bb)
            return 0; /* the client's end of stream: EOF for the job */
        ProtobufCMessage *m = NULL;
        r = codec_unpack(&jobworker__v1__stdin_chunk__descriptor, bb, &m, err);
        grpc_byte_buffer_destroy(bb);
        if (r < 0)
            return r;
        r = write_chunk(w, m, err);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return r;
}

static void finish(stdin_writer *w, jw_error *err)
{
    grpc_slice details = grpc_slice_from_copied_string(err->code == JW_OK ? "" : err->msg);
    Jobworker__V1__WriteStdinRes res = JOBWORKER__V1__WRITE_STDIN_RES__INIT;
    res.bytes_written = w->written;
    res.job_ended = w->job_ended;
    grpc_byte_buffer *bb = err->code == JW_OK ? codec_pack(&res.base) : NULL;
    grpc_op ops[2];
    memset(ops, 0, sizeof(ops));
    size_t n = 0;
    if (bb) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = bb;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)err->code;
    ops[n++].data.send_status_from_server.status_details = &details;
    bool status_pending =
        !w->gone && grpc_call_start_batch(w->call, ops, n, &w->tag_status, NULL) == GRPC_CALL_OK;
    while (status_pending || w->init_pending || w->close_pending) {
        bool ok;
        void *tag = next_event(w, -1, &ok);
        if (!tag)
            break;
        if (tag == &w->tag_status)
            status_pending = false;
    }
    if (bb)
        grpc_byte_buffer_destroy(bb);
    grpc_slice_unref(details);
}

static void *writer_main(void *arg)
{
    stdin_writer *w = arg;
    pthread_setname_np(pthread_self(), "jw-stdin");
    jw_error err = JW_ERROR_INIT;
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_INITIAL_METADATA;
    w->init_pending = grpc_call_start_batch(w->call, &op, 1, &w->tag_init, NULL) == GRPC_CALL_OK;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &w->cancelled;
    w->close_pending = grpc_call_start_batch(w->call, &op, 1, &w->tag_close, NULL) == GRPC_CALL_OK;

    int r = take_pipe(w, &err);
    if (r == 0)
        r = pump(w, &err);
    if (r == 1) {
        w->job_ended = true; /* the rest is discarded, as ssh does */
        r = 0;
    }
    if (w->fd >= 0) {
        close(w->fd); /* end of file for the job */
        w->fd = -1;
    }
    if (r == 0)
        jw_error_set(&err, JW_OK, 0, "%s", "");
    finish(w, &err);
    audit_write(stream_registry_audit(w->reg), &w->caller, AUTH_METHOD_WRITE_STDIN, w->job_id,
                err.code, err.code == JW_OK ? NULL : err.msg);
    if (err.code != JW_OK && err.code != JW_CANCELLED)
        log_info("WriteStdin of job %s: %s", w->job_id, err.msg);
    protobuf_c_message_free_unpacked(w->first, NULL);
    store_job_unref(w->job);
    grpc_call_unref(w->call);
    rpc_drain_destroy_cq(w->cq);
    stream_registry_leave(w->reg);
    free(w);
    return NULL;
}

/* Decodes the first message and checks the call; *ret_job and *ret_first on success. */
static int stdin_open(stream_registry *reg, grpc_byte_buffer *payload, const auth_identity *caller,
                      char job_id[UUID_STR_LEN], store_job **ret_job, ProtobufCMessage **ret_first,
                      jw_error *err)
{
    int r = service_authorize(caller, AUTH_METHOD_WRITE_STDIN, err);
    ProtobufCMessage *m = NULL;
    if (r == 0)
        r = codec_unpack(&jobworker__v1__stdin_chunk__descriptor, payload, &m, err);
    if (r < 0)
        return r;
    if (!m)
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    const char *id = ((Jobworker__V1__StdinChunk *)m)->id;
    r = service_stdin_open(stream_registry_service(reg), caller, id, ret_job, err);
    if (r < 0) {
        protobuf_c_message_free_unpacked(m, NULL);
        return r;
    }
    snprintf(job_id, UUID_STR_LEN, "%s", id);
    *ret_first = m;
    return 0;
}

/* Starts the writer's thread; on failure nothing of it is left (the caller still owns job and
 * first). */
static int start_writer(stream_registry *reg, grpc_call *call, grpc_completion_queue *cq,
                        const auth_identity *caller, const char *job_id, store_job *job,
                        ProtobufCMessage *first, jw_error *err)
{
    int r = stream_registry_enter(reg, err);
    if (r < 0)
        return r;
    stdin_writer *w = calloc(1, sizeof(*w));
    if (!w) {
        stream_registry_leave(reg);
        return jw_error_errno(err, ENOMEM, "start WriteStdin");
    }
    *w = (stdin_writer){.reg = reg,
                        .call = call,
                        .cq = cq,
                        .caller = *caller,
                        .job = job,
                        .fd = -1,
                        .first = first};
    snprintf(w->job_id, sizeof(w->job_id), "%s", job_id);
    r = rpc_start_detached(writer_main, w, err);
    if (r == 0)
        return 0;
    free(w);
    stream_registry_leave(reg);
    return r;
}

void stdin_writer_take(stream_registry *reg, grpc_call *call, grpc_completion_queue *cq,
                       grpc_byte_buffer *payload, const auth_identity *caller)
{
    jw_error err = JW_ERROR_INIT;
    char job_id[UUID_STR_LEN] = "";
    ProtobufCMessage *first = NULL;
    store_job *job = NULL;
    int r = stdin_open(reg, payload, caller, job_id, &job, &first, &err);
    if (payload)
        grpc_byte_buffer_destroy(payload);
    if (r == 0) {
        r = start_writer(reg, call, cq, caller, job_id, job, first, &err);
        if (r == 0)
            return; /* the thread owns call, queue, job and message */
        protobuf_c_message_free_unpacked(first, NULL);
        store_job_unref(job);
    }
    stream_registry_refuse(reg, AUTH_METHOD_WRITE_STDIN, call, cq, caller, job_id, err.code,
                           err.msg);
}
