/* GetJobsStream: one thread and one completion queue per call.
 *
 * The thread reads the job's output file by offset and sends one DataChunk at a time; the
 * completion of a write is gRPC's flow control, so a slow reader only ever has one chunk in
 * flight and costs an offset, never a queue. When it has caught up it arms its store subscriber
 * and sleeps in grpc_completion_queue_next(); the store wakes it with an empty batch on the call
 * (the only cross-thread wake-up gRPC's C API offers).
 */
#include "rpc/rpc-internal.h"

#include "rpc/codec.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/misc.h"

#include <errno.h>
#include <grpc/support/time.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct rpc_stream {
    rpc_server *srv;
    grpc_call *call;
    grpc_completion_queue *cq;
    pthread_mutex_t call_lock; /* serialises grpc_call_start_batch on this call */
    rpc_incoming in;
    rpc_stream *prev, *next; /* srv->streams, under srv->lock */

    store_job *job;
    store_sub *sub;
    int fd;
    int64_t offset;
    bool follow;
    char job_id[UUID_STR_LEN];
    bool over_cap;

    bool no_more_wakes; /* under call_lock */
    int wakes_posted;   /* under call_lock */
    int wakes_seen;

    /* Distinct addresses serve as tags. */
    char tag_init, tag_close, tag_write, tag_status, tag_wake;
    bool init_pending, close_pending, write_pending, status_pending, status_sent;
    int cancelled;
    grpc_byte_buffer *out_bb;
    grpc_slice details;
};

static void stream_wake(void *userdata)
{
    rpc_stream *s = userdata;
    pthread_mutex_lock(&s->call_lock);
    if (!s->no_more_wakes &&
        grpc_call_start_batch(s->call, NULL, 0, &s->tag_wake, NULL) == GRPC_CALL_OK)
        s->wakes_posted++;
    pthread_mutex_unlock(&s->call_lock);
}

void rpc_streams_wake_all(rpc_server *srv)
{
    pthread_mutex_lock(&srv->lock);
    for (rpc_stream *s = srv->streams; s; s = s->next)
        stream_wake(s);
    pthread_mutex_unlock(&srv->lock);
}

static grpc_call_error start_batch(rpc_stream *s, const grpc_op *ops, size_t n, void *tag)
{
    pthread_mutex_lock(&s->call_lock);
    grpc_call_error e = grpc_call_start_batch(s->call, ops, n, tag, NULL);
    pthread_mutex_unlock(&s->call_lock);
    return e;
}

/* Stops wake-ups for good: after this, wakes_posted no longer changes. */
static void stop_wakes(rpc_stream *s)
{
    store_sub_free(s->sub);
    s->sub = NULL;
    pthread_mutex_lock(&s->call_lock);
    s->no_more_wakes = true;
    pthread_mutex_unlock(&s->call_lock);
}

static void send_status(rpc_stream *s, jw_code code, const char *msg)
{
    stop_wakes(s);
    s->details = grpc_slice_from_copied_string(code == JW_OK ? "" : msg);
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    op.data.send_status_from_server.status = (grpc_status_code)code;
    op.data.send_status_from_server.status_details = &s->details;
    s->status_sent = true;
    if (start_batch(s, &op, 1, &s->tag_status) == GRPC_CALL_OK)
        s->status_pending = true;
}

static int send_chunk(rpc_stream *s, int64_t size)
{
    size_t n = (size_t)(size - s->offset);
    if (n > s->srv->cfg.chunk_size)
        n = s->srv->cfg.chunk_size;
    uint8_t hdr[16], trl[16];
    size_t hl = codec_chunk_header(hdr, n);
    size_t tl = codec_chunk_trailer(trl, s->offset);
    grpc_slice slice = grpc_slice_malloc(hl + n + tl);
    uint8_t *p = GRPC_SLICE_START_PTR(slice);
    memcpy(p, hdr, hl);
    ssize_t got = pread(s->fd, p + hl, n, s->offset);
    if (got != (ssize_t)n) {
        grpc_slice_unref(slice);
        return got < 0 ? -errno : -EIO;
    }
    memcpy(p + hl + n, trl, tl);
    s->out_bb = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = s->out_bb;
    if (start_batch(s, &op, 1, &s->tag_write) != GRPC_CALL_OK) {
        grpc_byte_buffer_destroy(s->out_bb);
        s->out_bb = NULL;
        return -EIO;
    }
    s->write_pending = true;
    s->offset += (int64_t)n;
    return 0;
}

/* Checks the request and sets the stream up; on error fills err. */
static int stream_open(rpc_stream *s, jw_error *err)
{
    rpc_server *srv = s->srv;
    int r = rpc_authorize(&s->in, AUTH_METHOD_GET_JOBS_STREAM, err);
    if (r < 0)
        return r;
    if (s->over_cap)
        return jw_error_set(err, JW_RESOURCE_EXHAUSTED, -EBUSY,
                            "the server already serves %d streams, its limit (--max-streams)",
                            srv->cfg.max_streams);
    ProtobufCMessage *m = NULL;
    r = codec_unpack(&jobworker__v1__get_jobs_stream_req__descriptor, s->in.payload, &m, err);
    if (r < 0)
        return r;
    Jobworker__V1__GetJobsStreamReq *req = (Jobworker__V1__GetJobsStreamReq *)m;
    s->follow = req->follow;
    s->offset = req->offset;
    if (!*req->id)
        r = jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL, "id is empty");
    else if (!uuid_is_valid(req->id))
        r = jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL, "id '%.64s' is not a job id (a UUID)",
                         req->id);
    else if (req->offset < 0)
        r = jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL, "offset %" PRId64 " is negative",
                         req->offset);
    else if (!(s->job = store_lookup(srv->cfg.st, req->id)))
        r = jw_error_set(err, JW_NOT_FOUND, -ENOENT, "job '%s' not found", req->id);
    if (s->job)
        snprintf(s->job_id, sizeof(s->job_id), "%s", req->id);
    protobuf_c_message_free_unpacked(m, NULL);
    if (r < 0)
        return r;

    int64_t size;
    bool closed;
    store_job_output_state(s->job, &size, &closed);
    if (closed && s->offset > size)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "offset %" PRId64 " is beyond the end of the output (%" PRId64
                            " bytes)",
                            s->offset, size);
    if (store_job_n_subs(s->job) >= (size_t)srv->cfg.max_streams_per_job)
        return jw_error_set(err, JW_RESOURCE_EXHAUSTED, -EBUSY,
                            "job '%s' already has %d streams, the limit per job", s->job_id,
                            srv->cfg.max_streams_per_job);
    s->fd = store_job_open_output(s->job);
    if (s->fd < 0)
        return jw_error_set(err, JW_INTERNAL, s->fd, "open output of job '%s': %s", s->job_id,
                            strerror(-s->fd));
    r = store_sub_new(s->job, stream_wake, s, &s->sub);
    if (r < 0)
        return jw_error_set(err, JW_INTERNAL, r, "out of memory");
    return 0;
}

static void stream_free(rpc_stream *s)
{
    rpc_server *srv = s->srv;
    store_sub_free(s->sub);
    if (s->fd >= 0)
        close(s->fd);
    store_job_unref(s->job);
    if (s->in.payload)
        grpc_byte_buffer_destroy(s->in.payload);
    if (s->out_bb)
        grpc_byte_buffer_destroy(s->out_bb);
    if (s->status_sent)
        grpc_slice_unref(s->details);
    grpc_call_unref(s->call);
    grpc_completion_queue_shutdown(s->cq);
    while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(s->cq);
    pthread_mutex_destroy(&s->call_lock);

    pthread_mutex_lock(&srv->lock);
    if (s->prev)
        s->prev->next = s->next;
    else if (srv->streams == s)
        srv->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    srv->n_streams--;
    pthread_cond_broadcast(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
    free(s);
}

static void *stream_thread(void *arg)
{
    rpc_stream *s = arg;
    rpc_server *srv = s->srv;
    jw_error err = JW_ERROR_INIT;
    pthread_setname_np(pthread_self(), "jw-stream");

    grpc_op ops[1];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    s->init_pending = start_batch(s, ops, 1, &s->tag_init) == GRPC_CALL_OK;
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[0].data.recv_close_on_server.cancelled = &s->cancelled;
    s->close_pending = start_batch(s, ops, 1, &s->tag_close) == GRPC_CALL_OK;

    int r = stream_open(s, &err);
    jw_code outcome = JW_OK;
    if (r < 0) {
        outcome = err.code;
        send_status(s, err.code, err.msg);
    }

    bool client_gone = false;
    for (;;) {
        if (!s->status_sent) {
            bool shutting;
            pthread_mutex_lock(&srv->lock);
            shutting = srv->shutting_down;
            pthread_mutex_unlock(&srv->lock);
            if (client_gone) {
                outcome = JW_CANCELLED;
                stop_wakes(s);
                s->status_sent = true; /* nothing can be sent to a cancelled call */
                s->details = grpc_empty_slice();
            } else if (shutting && !s->write_pending) {
                outcome = JW_UNAVAILABLE;
                send_status(s, JW_UNAVAILABLE, "the server is shutting down");
            } else if (!s->write_pending) {
                int64_t size;
                bool closed;
                store_job_output_state(s->job, &size, &closed);
                if (s->offset < size) {
                    r = send_chunk(s, size);
                    if (r < 0) {
                        outcome = JW_INTERNAL;
                        send_status(s, JW_INTERNAL, "reading the job's output failed");
                    }
                    continue;
                }
                store_job_info info;
                store_job_snapshot(s->job, &info);
                if (info.output_dropped > 0) {
                    /* Nothing past the cap is kept: say so instead of ending as if complete. */
                    char msg[256];
                    snprintf(msg, sizeof(msg),
                             "output of job %s reached the server's cap of %" PRId64
                             " bytes (--max-output); %" PRId64 " bytes after it were not kept%s",
                             s->job_id, size, info.output_dropped,
                             closed ? "" : " (the job is still running)");
                    outcome = JW_RESOURCE_EXHAUSTED;
                    snprintf(err.msg, sizeof(err.msg), "%s", msg);
                    send_status(s, JW_RESOURCE_EXHAUSTED, msg);
                } else if (closed || !s->follow) {
                    send_status(s, JW_OK, NULL);
                } else if (store_sub_arm(s->sub, s->offset) == 1) {
                    continue;
                }
            }
        }
        /* status_sent implies stop_wakes() ran, under call_lock, so wakes_posted is final. */
        if (s->status_sent && !s->init_pending && !s->close_pending && !s->write_pending &&
            !s->status_pending && s->wakes_seen == s->wakes_posted)
            break;
        grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE)
            break;
        if (ev.tag == &s->tag_init) {
            s->init_pending = false;
        } else if (ev.tag == &s->tag_close) {
            s->close_pending = false;
            if (s->cancelled)
                client_gone = true;
        } else if (ev.tag == &s->tag_write) {
            s->write_pending = false;
            grpc_byte_buffer_destroy(s->out_bb);
            s->out_bb = NULL;
            if (!ev.success)
                client_gone = true;
        } else if (ev.tag == &s->tag_status) {
            s->status_pending = false;
        } else if (ev.tag == &s->tag_wake) {
            s->wakes_seen++;
        }
    }
    rpc_audit(srv, s->in.id_ok ? &s->in.id : NULL, AUTH_METHOD_GET_JOBS_STREAM, s->job_id, outcome,
              outcome == JW_OK ? NULL
              : err.msg[0]     ? err.msg
                               : jw_code_name(outcome));
    stream_free(s);
    return NULL;
}

void rpc_stream_start(rpc_server *srv, rpc_incoming *in)
{
    rpc_stream *s = calloc(1, sizeof(*s));
    if (!s) {
        grpc_call_cancel(in->call, NULL);
        grpc_call_unref(in->call);
        if (in->payload)
            grpc_byte_buffer_destroy(in->payload);
        grpc_completion_queue_shutdown(in->bound_cq);
        while (grpc_completion_queue_next(in->bound_cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
                   .type != GRPC_QUEUE_SHUTDOWN)
            ;
        grpc_completion_queue_destroy(in->bound_cq);
        return;
    }
    s->srv = srv;
    s->call = in->call;
    s->cq = in->bound_cq;
    s->in = *in;
    s->fd = -1;
    pthread_mutex_init(&s->call_lock, NULL);

    pthread_mutex_lock(&srv->lock);
    bool over = srv->n_streams >= srv->cfg.max_streams;
    s->next = srv->streams;
    if (srv->streams)
        srv->streams->prev = s;
    srv->streams = s;
    srv->n_streams++;
    pthread_mutex_unlock(&srv->lock);
    s->over_cap = over; /* the thread itself refuses the call, on its own queue */

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_t t;
    int r = pthread_create(&t, &attr, stream_thread, s);
    pthread_attr_destroy(&attr);
    if (r != 0) {
        log_error("start stream thread: %s", strerror(r));
        grpc_call_cancel(s->call, NULL);
        stream_free(s);
    }
}
