#include "rpc/stream.h"

#include "rpc/audit.h"
#include "rpc/codec.h"
#include "util/defaults.h"
#include "util/log.h"
#include "util/misc.h"

#include <errno.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REFUSE_TIMEOUT_MS 2000

typedef struct rpc_stream rpc_stream;

struct stream_registry {
    stream_registry_config cfg;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* broadcast when a stream ends */
    bool shutting_down;
    int n_streams;
    rpc_stream *streams; /* live streams, for shutdown */
};

struct rpc_stream {
    stream_registry *reg;
    grpc_call *call;
    grpc_completion_queue *cq;
    grpc_byte_buffer *payload;
    auth_identity caller;
    bool caller_ok;
    pthread_mutex_t call_lock; /* serialises grpc_call_start_batch on this call */
    rpc_stream *prev, *next;   /* reg->streams, under reg->lock */

    service_stream *out;
    char job_id[UUID_STR_LEN];

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

int stream_registry_new(const stream_registry_config *cfg, stream_registry **ret, jw_error *err)
{
    stream_registry *reg = calloc(1, sizeof(*reg));
    if (!reg)
        return jw_error_errno(err, ENOMEM, "create stream registry");
    reg->cfg = *cfg;
    if (reg->cfg.max_streams <= 0)
        reg->cfg.max_streams = JW_DEFAULT_MAX_STREAMS;
    if (reg->cfg.max_streams_per_client <= 0)
        reg->cfg.max_streams_per_client = JW_DEFAULT_MAX_STREAMS_PER_CLIENT;
    if (reg->cfg.chunk_size == 0)
        reg->cfg.chunk_size = JW_DEFAULT_CHUNK_BYTES;
    pthread_mutex_init(&reg->lock, NULL);
    pthread_cond_init(&reg->cond, NULL);
    *ret = reg;
    return 0;
}

void stream_registry_free(stream_registry *reg)
{
    if (!reg)
        return;
    pthread_mutex_destroy(&reg->lock);
    pthread_cond_destroy(&reg->cond);
    free(reg);
}

int stream_registry_count(stream_registry *reg)
{
    pthread_mutex_lock(&reg->lock);
    int n = reg->n_streams;
    pthread_mutex_unlock(&reg->lock);
    return n;
}

bool stream_registry_wait_empty(stream_registry *reg, int timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    if (timeout_ms >= 0) {
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
        if (deadline.tv_nsec >= 1000000000) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000;
        }
    }
    pthread_mutex_lock(&reg->lock);
    while (reg->n_streams > 0) {
        int e = timeout_ms < 0 ? pthread_cond_wait(&reg->cond, &reg->lock)
                               : pthread_cond_timedwait(&reg->cond, &reg->lock, &deadline);
        if (e == ETIMEDOUT)
            break;
    }
    bool empty = reg->n_streams == 0;
    pthread_mutex_unlock(&reg->lock);
    return empty;
}

void rpc_drain_destroy_cq(grpc_completion_queue *cq)
{
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
}

int rpc_start_detached(void *(*fn)(void *), void *arg, jw_error *err)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_t t;
    int e = pthread_create(&t, &attr, fn, arg);
    pthread_attr_destroy(&attr);
    return e == 0 ? 0 : jw_error_errno(err, e, "start a call thread");
}

/* Answers a refused call on its own queue, from the worker that took it: no thread. The batch
 * does not wait for the client's half-close (a peer could withhold it to hold a worker): it
 * completes once the status is on its way, which flow control does not hold back; a batch that
 * still does not complete is cancelled after a short bound. */
static void refuse_call(stream_registry *reg, auth_method method, grpc_call *call,
                        grpc_completion_queue *cq, const auth_identity *caller, const char *job_id,
                        jw_code code, const char *msg)
{
    grpc_slice details = grpc_slice_from_copied_string(msg);
    grpc_op ops[2];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[1].data.send_status_from_server.status = (grpc_status_code)code;
    ops[1].data.send_status_from_server.status_details = &details;
    char tag;
    if (grpc_call_start_batch(call, ops, 2, &tag, NULL) == GRPC_CALL_OK) {
        gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                             gpr_time_from_millis(REFUSE_TIMEOUT_MS, GPR_TIMESPAN));
        /* Skip a shutdown wake that may have been posted while the stream was registered. */
        for (;;) {
            grpc_event ev = grpc_completion_queue_next(cq, deadline, NULL);
            if (ev.type == GRPC_QUEUE_TIMEOUT) {
                grpc_call_cancel(call, NULL);
                deadline = gpr_inf_future(GPR_CLOCK_REALTIME);
                continue;
            }
            if (ev.type != GRPC_OP_COMPLETE || ev.tag == &tag)
                break;
        }
    }
    grpc_call_unref(call);
    grpc_slice_unref(details);
    rpc_drain_destroy_cq(cq);
    audit_write(reg->cfg.audit, caller, method, job_id, code, msg);
}

static void refuse(stream_registry *reg, grpc_call *call, grpc_completion_queue *cq,
                   const auth_identity *caller, const char *job_id, jw_code code, const char *msg)
{
    refuse_call(reg, AUTH_METHOD_GET_JOBS_STREAM, call, cq, caller, job_id, code, msg);
}

void stream_registry_refuse(stream_registry *reg, auth_method method, grpc_call *call,
                            grpc_completion_queue *cq, const auth_identity *caller,
                            const char *job_id, jw_code code, const char *msg)
{
    refuse_call(reg, method, call, cq, caller, job_id, code, msg);
}

int stream_registry_enter(stream_registry *reg, jw_error *err)
{
    int r = 0;
    pthread_mutex_lock(&reg->lock);
    if (reg->shutting_down)
        r = jw_error_set(err, JW_UNAVAILABLE, -ESHUTDOWN, "the server is shutting down");
    else if (reg->n_streams >= reg->cfg.max_streams)
        r = jw_error_set(err, JW_RESOURCE_EXHAUSTED, -EBUSY,
                         "the server already serves %d streams, its limit (--max-streams)",
                         reg->cfg.max_streams);
    else
        reg->n_streams++;
    pthread_mutex_unlock(&reg->lock);
    return r;
}

void stream_registry_leave(stream_registry *reg)
{
    pthread_mutex_lock(&reg->lock);
    reg->n_streams--;
    pthread_cond_broadcast(&reg->cond);
    pthread_mutex_unlock(&reg->lock);
}

bool stream_registry_shutting_down(stream_registry *reg)
{
    pthread_mutex_lock(&reg->lock);
    bool r = reg->shutting_down;
    pthread_mutex_unlock(&reg->lock);
    return r;
}

FILE *stream_registry_audit(stream_registry *reg)
{
    return reg->cfg.audit;
}

service *stream_registry_service(stream_registry *reg)
{
    return reg->cfg.svc;
}

static void stream_wake(void *userdata)
{
    rpc_stream *s = userdata;
    pthread_mutex_lock(&s->call_lock);
    if (!s->no_more_wakes &&
        grpc_call_start_batch(s->call, NULL, 0, &s->tag_wake, NULL) == GRPC_CALL_OK)
        s->wakes_posted++;
    pthread_mutex_unlock(&s->call_lock);
}

void stream_registry_shutdown(stream_registry *reg)
{
    pthread_mutex_lock(&reg->lock);
    reg->shutting_down = true;
    for (rpc_stream *s = reg->streams; s; s = s->next)
        stream_wake(s);
    pthread_mutex_unlock(&reg->lock);
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
    service_stream_stop_wakes(s->out);
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

/* The DataChunk's wire form is written by hand around the bytes, which are pread straight into
 * the slice: one copy from the page cache to the socket's buffer. */
static int send_chunk(rpc_stream *s, size_t n)
{
    uint8_t hdr[16], trl[16];
    size_t hl = codec_chunk_header(hdr, n);
    size_t tl = codec_chunk_trailer(trl, service_stream_offset(s->out),
                                    (int)service_stream_chunk_stream(s->out));
    grpc_slice slice = grpc_slice_malloc(hl + n + tl);
    uint8_t *p = GRPC_SLICE_START_PTR(slice);
    memcpy(p, hdr, hl);
    int r = service_stream_read(s->out, p + hl, n);
    if (r < 0) {
        grpc_slice_unref(slice);
        return r;
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
    return 0;
}

static void stream_free(rpc_stream *s)
{
    stream_registry *reg = s->reg;
    service_stream_free(s->out);
    if (s->payload)
        grpc_byte_buffer_destroy(s->payload);
    if (s->out_bb)
        grpc_byte_buffer_destroy(s->out_bb);
    if (s->status_sent)
        grpc_slice_unref(s->details);
    grpc_call_unref(s->call);
    rpc_drain_destroy_cq(s->cq);
    pthread_mutex_destroy(&s->call_lock);

    pthread_mutex_lock(&reg->lock);
    if (s->prev)
        s->prev->next = s->next;
    else if (reg->streams == s)
        reg->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    reg->n_streams--;
    pthread_cond_broadcast(&reg->cond);
    pthread_mutex_unlock(&reg->lock);
    free(s);
}

static void *stream_thread(void *arg)
{
    rpc_stream *s = arg;
    stream_registry *reg = s->reg;
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

    jw_code outcome = JW_OK;
    bool client_gone = false;
    for (;;) {
        if (!s->status_sent) {
            pthread_mutex_lock(&reg->lock);
            bool shutting = reg->shutting_down;
            pthread_mutex_unlock(&reg->lock);
            if (client_gone) {
                outcome = JW_CANCELLED;
                stop_wakes(s);
                s->status_sent = true; /* nothing can be sent to a cancelled call */
                s->details = grpc_empty_slice();
            } else if (shutting && !s->write_pending) {
                outcome = JW_UNAVAILABLE;
                send_status(s, JW_UNAVAILABLE, "the server is shutting down");
            } else if (!s->write_pending) {
                size_t n = 0;
                service_stream_step step =
                    service_stream_next(s->out, reg->cfg.chunk_size, &n, &err);
                if (step == SERVICE_STREAM_SEND) {
                    if (send_chunk(s, n) < 0) {
                        outcome = JW_INTERNAL;
                        snprintf(err.msg, sizeof(err.msg), "reading the job's output failed");
                        send_status(s, JW_INTERNAL, err.msg);
                    }
                    continue;
                }
                if (step == SERVICE_STREAM_END) {
                    outcome = err.code;
                    send_status(s, err.code, err.msg);
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
    audit_write(reg->cfg.audit, s->caller_ok ? &s->caller : NULL, AUTH_METHOD_GET_JOBS_STREAM,
                s->job_id, outcome,
                outcome == JW_OK ? NULL
                : err.msg[0]     ? err.msg
                                 : jw_code_name(outcome));
    stream_free(s);
    return NULL;
}

/* Decodes and checks the request and opens the job's output; fills err on failure. */
static int stream_open(stream_registry *reg, rpc_stream *s, jw_error *err)
{
    ProtobufCMessage *m = NULL;
    int r = codec_unpack(&jobworker__v1__get_jobs_stream_req__descriptor, s->payload, &m, err);
    if (r < 0)
        return r;
    Jobworker__V1__GetJobsStreamReq *req = (Jobworker__V1__GetJobsStreamReq *)m;
    service_stream_req sr = {
        .id = req->id, .offset = req->offset, .follow = req->follow, .select = req->stream};
    r = service_stream_open(reg->cfg.svc, s->caller_ok ? &s->caller : NULL, &sr, stream_wake, s,
                            &s->out, s->job_id, err);
    protobuf_c_message_free_unpacked(m, NULL);
    return r;
}

/* Live streams of one client (by certificate CN); called under reg->lock. The list is at most
 * --max-streams long, and this runs once per new stream. */
static int client_streams(stream_registry *reg, const char *cn)
{
    int n = 0;
    for (rpc_stream *s = reg->streams; s; s = s->next)
        n += strcmp(s->caller.cn, cn) == 0;
    return n;
}

/* Links a new stream into the registry, or says why not (shutting down, over the cap). */
static int registry_add(stream_registry *reg, rpc_stream *s, jw_error *err)
{
    int r = 0;
    pthread_mutex_lock(&reg->lock);
    if (reg->shutting_down) {
        r = jw_error_set(err, JW_UNAVAILABLE, -ESHUTDOWN, "the server is shutting down");
    } else if (reg->n_streams >= reg->cfg.max_streams) {
        r = jw_error_set(err, JW_RESOURCE_EXHAUSTED, -EBUSY,
                         "the server already serves %d streams, its limit (--max-streams)",
                         reg->cfg.max_streams);
    } else if (client_streams(reg, s->caller.cn) >= reg->cfg.max_streams_per_client) {
        /* One certificate cannot take every slot from everyone else. */
        r = jw_error_set(err, JW_RESOURCE_EXHAUSTED, -EBUSY,
                         "client '%s' already has %d streams open, the limit per client "
                         "(--max-streams-per-client)",
                         s->caller.cn, reg->cfg.max_streams_per_client);
    } else {
        s->next = reg->streams;
        if (reg->streams)
            reg->streams->prev = s;
        reg->streams = s;
        reg->n_streams++;
    }
    pthread_mutex_unlock(&reg->lock);
    return r;
}

/* Frees a stream whose thread never started; its call and queue were handed to refuse(). */
static void discard_unstarted(rpc_stream *s)
{
    stream_registry *reg = s->reg;
    service_stream_free(s->out);
    pthread_mutex_lock(&reg->lock);
    if (s->prev)
        s->prev->next = s->next;
    else if (reg->streams == s)
        reg->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    reg->n_streams--;
    pthread_cond_broadcast(&reg->cond);
    pthread_mutex_unlock(&reg->lock);
    pthread_mutex_destroy(&s->call_lock);
    free(s);
}

static int start_thread(rpc_stream *s, jw_error *err)
{
    int r = rpc_start_detached(stream_thread, s, err);
    if (r < 0)
        log_error("%s", err->msg);
    return r;
}

void stream_registry_take(stream_registry *reg, grpc_call *call, grpc_completion_queue *cq,
                          grpc_byte_buffer *payload, const auth_identity *caller)
{
    jw_error err = JW_ERROR_INIT;
    int r = service_authorize(caller, AUTH_METHOD_GET_JOBS_STREAM, &err);
    if (r < 0) {
        if (payload)
            grpc_byte_buffer_destroy(payload);
        refuse(reg, call, cq, caller, "", err.code, err.msg);
        return;
    }
    rpc_stream *s = calloc(1, sizeof(*s));
    if (!s) {
        if (payload)
            grpc_byte_buffer_destroy(payload);
        jw_error_errno(&err, ENOMEM, "start stream");
        refuse(reg, call, cq, caller, "", err.code, err.msg);
        return;
    }
    s->reg = reg;
    s->call = call;
    s->cq = cq;
    s->caller = *caller;
    s->caller_ok = true;
    pthread_mutex_init(&s->call_lock, NULL);
    r = registry_add(reg, s, &err);
    if (r < 0) {
        pthread_mutex_destroy(&s->call_lock);
        free(s);
        if (payload)
            grpc_byte_buffer_destroy(payload);
        refuse(reg, call, cq, caller, "", err.code, err.msg);
        return;
    }
    /* Request errors (bad id, unknown job, offset) are answered here too, without a thread. */
    s->payload = payload;
    r = stream_open(reg, s, &err);
    if (s->payload) {
        grpc_byte_buffer_destroy(s->payload);
        s->payload = NULL;
    }
    if (r == 0)
        r = start_thread(s, &err);
    if (r < 0) {
        char job_id[UUID_STR_LEN];
        memcpy(job_id, s->job_id, sizeof(job_id));
        discard_unstarted(s);
        refuse(reg, call, cq, caller, job_id, err.code, err.msg);
    }
}
