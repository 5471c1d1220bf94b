#include "rpc/rpc-internal.h"

#include "rpc/audit.h"
#include "rpc/codec.h"
#include "rpc/stdin.h"
#include "util/cleanup.h"
#include "util/defaults.h"
#include "util/log.h"
#include "util/misc.h"
#include "util/parse.h"

#include <arpa/inet.h>
#include <errno.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { TAG_NEW_CALL = 1, TAG_UNARY_DONE, TAG_SHUTDOWN };

static const char *const method_paths[] = {
    [AUTH_METHOD_CREATE_JOB] = "/jobworker.v1.JobService/CreateJob",
    [AUTH_METHOD_GET_JOB] = "/jobworker.v1.JobService/GetJob",
    [AUTH_METHOD_STOP_JOB] = "/jobworker.v1.JobService/StopJob",
    [AUTH_METHOD_GET_JOBS] = "/jobworker.v1.JobService/GetJobs",
    [AUTH_METHOD_GET_JOBS_STREAM] = "/jobworker.v1.JobService/GetJobsStream",
    [AUTH_METHOD_DELETE_JOB] = "/jobworker.v1.JobService/DeleteJob",
    [AUTH_METHOD_WRITE_STDIN] = "/jobworker.v1.JobService/WriteStdin",
    [AUTH_METHOD_GET_SERVER_INFO] = "/jobworker.v1.JobService/GetServerInfo",
};
#define N_METHODS    8 /* ARRAY_SIZE(method_paths); rpc-internal.h sizes methods[] */
#define SLOT_UNKNOWN N_METHODS

typedef struct rpc_slot {
    int kind; /* TAG_NEW_CALL; first member so a tag's kind can be read */
    rpc_server *srv;
    int method; /* auth_method, or SLOT_UNKNOWN */
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *payload;
    grpc_call_details details;
    grpc_completion_queue *bound_cq;
} rpc_slot;

typedef struct unary_call {
    int kind; /* TAG_UNARY_DONE */
    grpc_call *call;
    grpc_byte_buffer *resp;
    grpc_slice details;
    int cancelled;
} unary_call;

/* The identity of the verified peer certificate; false when it cannot be read. */
static bool peer_identity(grpc_call *call, auth_identity *ret)
{
    grpc_auth_context *ctx = grpc_call_auth_context(call);
    if (!ctx)
        return false;
    bool ok = false;
    grpc_auth_property_iterator it =
        grpc_auth_context_find_properties_by_name(ctx, GRPC_X509_PEM_CERT_PROPERTY_NAME);
    const grpc_auth_property *p = grpc_auth_property_iterator_next(&it);
    if (p && p->value && p->value_length > 0)
        ok = auth_identity_from_pem_cached(p->value, p->value_length, ret, NULL) == 0;
    grpc_auth_context_release(ctx);
    return ok;
}

/* ---- Unary calls ---- */

/* Answers a call on the shared queue: initial metadata, the message when code is OK, status.
 * Thread-safe for one call at a time (a StopJob is answered from the supervisor's thread). */
static void unary_finish(grpc_call *call, jw_code code, const char *msg,
                         const ProtobufCMessage *resp)
{
    unary_call *u = calloc(1, sizeof(*u));
    if (!u) {
        grpc_call_cancel(call, NULL);
        grpc_call_unref(call);
        return;
    }
    u->kind = TAG_UNARY_DONE;
    u->call = call;
    u->details = grpc_slice_from_copied_string(code == JW_OK ? "" : msg);
    grpc_op ops[4];
    memset(ops, 0, sizeof(ops));
    size_t n = 0;
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    n++;
    if (code == JW_OK && resp) {
        u->resp = codec_pack(resp);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = u->resp;
        n++;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)code;
    ops[n].data.send_status_from_server.status_details = &u->details;
    n++;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n].data.recv_close_on_server.cancelled = &u->cancelled;
    n++;
    grpc_call_error e = grpc_call_start_batch(call, ops, n, u, NULL);
    if (e != GRPC_CALL_OK) {
        log_error("start batch for a reply failed: %d", e);
        grpc_call_unref(call);
        if (u->resp)
            grpc_byte_buffer_destroy(u->resp);
        grpc_slice_unref(u->details);
        free(u);
    }
}

static void unary_done(unary_call *u)
{
    if (u->resp)
        grpc_byte_buffer_destroy(u->resp);
    grpc_slice_unref(u->details);
    grpc_call_unref(u->call);
    free(u);
}

/* Admins see the host pid (an operator can kill, perf or nsenter it); viewers get 0. */
static bool shows_host_pid(const auth_identity *caller)
{
    return caller && caller->role == AUTH_ROLE_ADMIN;
}

static void reply_job(rpc_server *srv, grpc_call *call, const ProtobufCMessageDescriptor *desc,
                      const auth_identity *caller, store_job *job)
{
    store_job_info info;
    Jobworker__V1__Job jm;
    Jobworker__V1__ResourceLimits lm;
    Jobworker__V1__ResourceUsage um;
    store_job_snapshot(job, &info);
    codec_job_view(&info, shows_host_pid(caller), &jm, &lm, &um);
    if (info.status == JOB_STATUS_QUEUED)
        jm.queue_position = service_queue_position(srv->cfg.svc, job);
    /* CreateJobRes, GetJobRes and StopJobRes share one shape: { Job job = 1; }. */
    Jobworker__V1__GetJobRes res;
    jobworker__v1__get_job_res__init(&res);
    res.base.descriptor = desc;
    res.job = &jm;
    unary_finish(call, JW_OK, NULL, &res.base);
}

/* A call as it arrived, handed from the worker to its handler. */
typedef struct rpc_incoming {
    grpc_call *call;
    grpc_byte_buffer *payload;
    const auth_identity *caller; /* NULL: the certificate could not be read */
} rpc_incoming;

static int handle_create(rpc_server *srv, rpc_incoming *in, char *job_id, jw_error *err)
{
    ProtobufCMessage *m = NULL;
    int r = codec_unpack(&jobworker__v1__create_job_req__descriptor, in->payload, &m, err);
    if (r < 0)
        return r;
    job_request jr;
    codec_job_request_from_pb((Jobworker__V1__CreateJobReq *)m, &jr);
    store_job *job = NULL;
    r = service_create_job(srv->cfg.svc, in->caller, &jr, &job, err);
    if (r == 0) {
        snprintf(job_id, UUID_STR_LEN, "%s", store_job_id(job));
        reply_job(srv, in->call, &jobworker__v1__create_job_res__descriptor, in->caller, job);
        store_job_unref(job);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return r;
}

/* Decodes a request whose only field is `string id = 1` (GetJobReq, StopJobReq). */
static int decode_id(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *payload,
                     char *ret_id, size_t size, jw_error *err)
{
    ProtobufCMessage *m = NULL;
    int r = codec_unpack(desc, payload, &m, err);
    if (r < 0)
        return r;
    const char *id = ((Jobworker__V1__GetJobReq *)m)->id; /* same layout for StopJobReq */
    /* Longer than any job id: kept long enough to be refused with its own text. */
    snprintf(ret_id, size, "%s", id);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

#define ID_ARG_MAX 128

static int handle_get(rpc_server *srv, rpc_incoming *in, char *job_id, jw_error *err)
{
    char id[ID_ARG_MAX];
    int r = service_authorize(in->caller, AUTH_METHOD_GET_JOB, err);
    if (r == 0)
        r = decode_id(&jobworker__v1__get_job_req__descriptor, in->payload, id, sizeof(id), err);
    store_job *job = NULL;
    if (r == 0)
        r = service_get_job(srv->cfg.svc, in->caller, id, &job, err);
    if (r < 0)
        return r;
    snprintf(job_id, UUID_STR_LEN, "%.36s", id);
    reply_job(srv, in->call, &jobworker__v1__get_job_res__descriptor, in->caller, job);
    store_job_unref(job);
    return 0;
}

static int handle_info(rpc_server *srv, rpc_incoming *in, jw_error *err)
{
    service_info si;
    int r = service_server_info(srv->cfg.svc, in->caller, &si, err);
    if (r < 0)
        return r;
    Jobworker__V1__ServerInfo m = JOBWORKER__V1__SERVER_INFO__INIT;
    Jobworker__V1__ResourceLimits lim = JOBWORKER__V1__RESOURCE_LIMITS__INIT;
    char build[256];
    snprintf(build, sizeof(build), "%s, gRPC core %s", si.build, grpc_version_string());
    m.version = si.version;
    m.build = build;
    m.hostname = si.hostname;
    m.start_time_unix_ns = si.start_time_ns;
    m.uptime_seconds = si.uptime_s;
    m.limits_enforced = si.host.cgroups;
    m.cgroup = si.cgroup;
    lim.cpu_percent = si.defaults.cpu_percent;
    lim.memory_bytes = si.defaults.memory_bytes;
    lim.io_bps = si.defaults.io_bps;
    lim.memory_high_bytes = si.defaults.memory_high_bytes;
    lim.pids_max = si.defaults.pids_max;
    m.default_limits = &lim;
    m.default_network = (Jobworker__V1__NetworkMode)si.default_network;
    m.cpus = si.host.ncpus;
    m.memory_bytes = si.host.memory_bytes;
    m.max_running = si.capacity.max_running;
    m.capacity_memory_bytes = si.capacity.memory_bytes;
    m.capacity_cpu_percent = si.capacity.cpu_percent;
    m.max_queued = si.capacity.max_queued;
    m.max_jobs = si.max_jobs;
    m.max_output_bytes = si.max_output_bytes;
    m.max_streams = si.max_streams;
    m.max_streams_per_job = si.max_streams_per_job;
    m.max_streams_per_client = si.max_streams_per_client;
    m.load1 = si.load[0];
    m.load5 = si.load[1];
    m.load15 = si.load[2];
    m.memory_available_bytes = si.memory_available;
    m.cpu_pressure = si.pressure[0];
    m.memory_pressure = si.pressure[1];
    m.io_pressure = si.pressure[2];
    Jobworker__V1__JobCount counts[JOB_STATUS_MAX];
    Jobworker__V1__JobCount *cp[JOB_STATUS_MAX];
    for (int st = 1; st <= JOB_STATUS_MAX; st++) {
        jobworker__v1__job_count__init(&counts[st - 1]);
        counts[st - 1].status = (Jobworker__V1__JobStatus)st;
        counts[st - 1].count = si.jobs[st];
        cp[st - 1] = &counts[st - 1];
    }
    m.n_jobs = JOB_STATUS_MAX;
    m.jobs = cp;
    m.running = si.queue.running;
    m.queued = si.queue.queued;
    m.reserved_memory_bytes = si.queue.memory_bytes;
    m.reserved_cpu_percent = si.queue.cpu_percent;
    m.streams_open = stream_registry_count(srv->streams);
    unary_finish(in->call, JW_OK, NULL, &m.base);
    return 0;
}

/* A StopJob that waits for its job's end without holding a thread. */
typedef struct pending_stop {
    rpc_server *srv;
    grpc_call *call;
    auth_identity caller;
} pending_stop;

static void stop_answer(rpc_server *srv, grpc_call *call, const auth_identity *caller,
                        store_job *job)
{
    jw_error err = JW_ERROR_INIT;
    int r = service_stop_result(job, &err);
    audit_write(srv->cfg.audit, caller, AUTH_METHOD_STOP_JOB, store_job_id(job),
                r < 0 ? err.code : JW_OK, r < 0 ? err.msg : NULL);
    if (r < 0)
        unary_finish(call, err.code, err.msg, NULL);
    else
        reply_job(srv, call, &jobworker__v1__stop_job_res__descriptor, caller, job);
}

/* store_final_fn: runs once on the thread that completed the job, maybe before
 * service_stop_job has returned to handle_stop. It owns the reference that call returned. */
static void stop_done(store_job *job, void *userdata)
{
    pending_stop *ps = userdata;
    rpc_server *srv = ps->srv;
    stop_answer(srv, ps->call, &ps->caller, job);
    store_job_unref(job);
    free(ps);
    pthread_mutex_lock(&srv->lock);
    srv->pending_stops--;
    pthread_cond_broadcast(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
}

/* Returns 1 when the answer was handed to stop_done (or already sent), <0 on error. */
static int handle_stop(rpc_server *srv, rpc_incoming *in, char *job_id, jw_error *err)
{
    char id[ID_ARG_MAX];
    int r = service_authorize(in->caller, AUTH_METHOD_STOP_JOB, err);
    if (r == 0)
        r = decode_id(&jobworker__v1__stop_job_req__descriptor, in->payload, id, sizeof(id), err);
    if (r < 0)
        return r;
    pending_stop *ps = calloc(1, sizeof(*ps));
    if (!ps)
        return jw_error_errno(err, ENOMEM, "stop job '%s'", id);
    ps->srv = srv;
    ps->call = in->call;
    if (in->caller) /* always, once authorized */
        ps->caller = *in->caller;
    pthread_mutex_lock(&srv->lock);
    srv->pending_stops++;
    pthread_mutex_unlock(&srv->lock);
    store_job *job = NULL;
    r = service_stop_job(srv->cfg.svc, in->caller, id, stop_done, ps, &job, err);
    if (r == 1)
        return 1; /* stop_done answers, audits, frees ps and drops the job (maybe already) */
    pthread_mutex_lock(&srv->lock);
    srv->pending_stops--;
    pthread_cond_broadcast(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
    free(ps);
    if (r < 0)
        return r;
    snprintf(job_id, UUID_STR_LEN, "%.36s", id);
    stop_answer(srv, in->call, in->caller, job); /* final already */
    store_job_unref(job);
    return 1;
}

/* One job of a listing: its snapshot (the message borrows its strings) and message. */
typedef struct list_entry {
    store_job_info info;
    Jobworker__V1__Job jm;
    Jobworker__V1__ResourceLimits lm;
    Jobworker__V1__ResourceUsage um;
} list_entry;

/* A page of GetJobs holds at most LIST_RESPONSE_MAX bytes (gRPC clients accept 4 MiB by
 * default), whatever the jobs hold: each job's args are cut to LIST_ARGS_MAX bytes of whole args,
 * and a page that would grow past the cap ends early, its next_page_token continuing after the
 * last job sent. Memory per call is bounded by the page, not by the history. */
#define LIST_RESPONSE_MAX (2 * 1024 * 1024)
#define LIST_ARGS_MAX     1024

static int handle_list(rpc_server *srv, rpc_incoming *in, jw_error *err)
{
    int r = service_authorize(in->caller, AUTH_METHOD_GET_JOBS, err);
    if (r < 0)
        return r;
    ProtobufCMessage *m = NULL;
    r = codec_unpack(&jobworker__v1__get_jobs_req__descriptor, in->payload, &m, err);
    if (r < 0)
        return r;
    Jobworker__V1__GetJobsReq *req = (Jobworker__V1__GetJobsReq *)m;
    _Static_assert(sizeof(*req->status) == sizeof(int), "a proto enum is an int");
    service_list_req lr = {.page_size = req->page_size,
                           .page_token = req->page_token,
                           .statuses = (const int *)req->status,
                           .n_statuses = req->n_status,
                           .owner = req->owner,
                           .since_ns = req->since_unix_ns};
    store_job **jobs = NULL;
    size_t n = 0;
    char next[SERVICE_PAGE_TOKEN_MAX];
    r = service_list_jobs(srv->cfg.svc, in->caller, &lr, &jobs, &n, next, err);
    protobuf_c_message_free_unpacked(m, NULL);
    if (r < 0)
        return r;
    list_entry *e = calloc(n ? n : 1, sizeof(*e));
    Jobworker__V1__Job **jp = calloc(n ? n : 1, sizeof(*jp));
    size_t kept = 0, bytes = 0, encode = n;
    if (!e || !jp) {
        r = jw_error_errno_code(err, JW_INTERNAL, ENOMEM, "list jobs");
        encode = 0; /* nothing to encode; the references are dropped below */
    }
    for (size_t k = 0; e && jp && k < encode; k++) {
        list_entry *x = &e[kept];
        store_job_snapshot(jobs[k], &x->info);
        codec_job_view(&x->info, shows_host_pid(in->caller), &x->jm, &x->lm, &x->um);
        if (x->info.status == JOB_STATUS_QUEUED)
            x->jm.queue_position = service_queue_position(srv->cfg.svc, jobs[k]);
        codec_job_cut_args(&x->jm, LIST_ARGS_MAX);
        x->jm.n_env = 0; /* listings leave the environment out: GetJob has it */
        size_t sz = protobuf_c_message_get_packed_size(&x->jm.base) + 8; /* tag and length */
        if (bytes + sz > LIST_RESPONSE_MAX && kept > 0) {
            snprintf(next, sizeof(next), "v1.%lld", (long long)e[kept - 1].info.seq);
            break;
        }
        bytes += sz;
        jp[kept++] = &x->jm;
    }
    if (r == 0) {
        Jobworker__V1__Jobs res;
        jobworker__v1__jobs__init(&res);
        res.n_jobs = kept;
        res.jobs = jp;
        res.next_page_token = next;
        unary_finish(in->call, JW_OK, NULL, &res.base);
    }
    for (size_t i = 0; i < n; i++)
        store_job_unref(jobs[i]);
    free(jobs);
    free(jp);
    free(e);
    return r;
}

static int handle_delete(rpc_server *srv, rpc_incoming *in, char *job_id, jw_error *err)
{
    char id[ID_ARG_MAX];
    int r = service_authorize(in->caller, AUTH_METHOD_DELETE_JOB, err);
    if (r == 0)
        r = decode_id(&jobworker__v1__delete_job_req__descriptor, in->payload, id, sizeof(id), err);
    store_job *job = NULL;
    if (r == 0 && uuid_is_valid(id)) /* the audit line names the job a refused delete tried */
        snprintf(job_id, UUID_STR_LEN, "%.36s", id);
    if (r == 0)
        r = service_delete_job(srv->cfg.svc, in->caller, id, &job, err);
    if (r < 0)
        return r;
    snprintf(job_id, UUID_STR_LEN, "%.36s", id);
    reply_job(srv, in->call, &jobworker__v1__delete_job_res__descriptor, in->caller, job);
    store_job_unref(job);
    return 0;
}

/* Runs one unary call: decode, call the service, audit, answer. Authorization comes first, in
 * each handler, before anything is decoded. */
static void dispatch(rpc_server *srv, auth_method method, rpc_incoming *in)
{
    jw_error err = JW_ERROR_INIT;
    char job_id[UUID_STR_LEN] = "";
    int r;
    switch (method) {
    case AUTH_METHOD_CREATE_JOB: r = handle_create(srv, in, job_id, &err); break;
    case AUTH_METHOD_GET_JOB: r = handle_get(srv, in, job_id, &err); break;
    case AUTH_METHOD_STOP_JOB: r = handle_stop(srv, in, job_id, &err); break;
    case AUTH_METHOD_GET_JOBS: r = handle_list(srv, in, &err); break;
    case AUTH_METHOD_DELETE_JOB: r = handle_delete(srv, in, job_id, &err); break;
    case AUTH_METHOD_GET_SERVER_INFO: r = handle_info(srv, in, &err); break;
    default: r = jw_error_set(&err, JW_UNIMPLEMENTED, -ENOSYS, "unknown method"); break;
    }
    if (r == 1)
        return; /* answered and audited on its own (StopJob) */
    if (r < 0 && err.code == JW_OK)
        jw_error_errno_code(&err, JW_INTERNAL, r, "%s", auth_method_name(method));
    audit_write(srv->cfg.audit, in->caller, method, job_id, r < 0 ? err.code : JW_OK,
                r < 0 ? err.msg : NULL);
    if (r < 0)
        unary_finish(in->call, err.code, err.msg, NULL);
}

/* ---- New calls ---- */

static int slot_request(rpc_slot *slot)
{
    rpc_server *srv = slot->srv;
    grpc_metadata_array_init(&slot->md);
    slot->payload = NULL;
    slot->call = NULL;
    grpc_call_error e;
    if (slot->method == SLOT_UNKNOWN) {
        grpc_call_details_init(&slot->details);
        e = grpc_server_request_call(srv->server, &slot->call, &slot->details, &slot->md, srv->cq,
                                     srv->cq, slot);
    } else {
        grpc_completion_queue *bound = srv->cq;
        if (slot->method == AUTH_METHOD_GET_JOBS_STREAM ||
            slot->method == AUTH_METHOD_WRITE_STDIN) {
            slot->bound_cq = grpc_completion_queue_create_for_next(NULL);
            bound = slot->bound_cq;
        }
        e = grpc_server_request_registered_call(srv->server, srv->methods[slot->method],
                                                &slot->call, &slot->deadline, &slot->md,
                                                &slot->payload, bound, srv->cq, slot);
    }
    return e == GRPC_CALL_OK ? 0 : -EIO;
}

static void handle_new_call(rpc_slot *slot, bool ok)
{
    rpc_server *srv = slot->srv;
    grpc_call *call = slot->call;
    grpc_byte_buffer *payload = slot->payload;
    grpc_completion_queue *bound_cq = slot->bound_cq;
    grpc_call_details details = slot->details;
    grpc_metadata_array_destroy(&slot->md);
    slot->bound_cq = NULL;
    if (!ok) {
        /* The server is shutting down and failed this request. */
        if (bound_cq)
            rpc_drain_destroy_cq(bound_cq);
        if (slot->method == SLOT_UNKNOWN)
            grpc_call_details_destroy(&details);
        return;
    }
    pthread_mutex_lock(&srv->lock);
    if (!srv->shutting_down && slot_request(slot) < 0)
        log_error("could not request the next %s call",
                  slot->method == SLOT_UNKNOWN ? "unknown" : auth_method_name(slot->method));
    pthread_mutex_unlock(&srv->lock);

    if (slot->method == SLOT_UNKNOWN) {
        char path[256];
        size_t len = GRPC_SLICE_LENGTH(details.method);
        snprintf(path, sizeof(path), "%.*s", (int)(len > 200 ? 200 : len),
                 (const char *)GRPC_SLICE_START_PTR(details.method));
        grpc_call_details_destroy(&details);
        char msg[300];
        snprintf(msg, sizeof(msg), "method '%s' is not implemented", path);
        unary_finish(call, JW_UNIMPLEMENTED, msg, NULL);
        return;
    }
    auth_identity id;
    bool id_ok = peer_identity(call, &id);
    int method = slot->method;
    if (method == AUTH_METHOD_GET_JOBS_STREAM) {
        /* Streams answer on their own queue, even refusals; the registry owns call and queue. */
        stream_registry_take(srv->streams, call, bound_cq, payload, id_ok ? &id : NULL);
    } else if (method == AUTH_METHOD_WRITE_STDIN) {
        /* The same for the writers of a job's stdin (the first message is the payload). */
        stdin_writer_take(srv->streams, call, bound_cq, payload, id_ok ? &id : NULL);
    } else {
        rpc_incoming in = {.call = call, .payload = payload, .caller = id_ok ? &id : NULL};
        dispatch(srv, (auth_method)method, &in);
        if (payload)
            grpc_byte_buffer_destroy(payload);
    }
}

static void *worker(void *arg)
{
    rpc_server *srv = arg;
    pthread_setname_np(pthread_self(), "jw-rpc");
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(srv->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        int kind = *(int *)ev.tag;
        if (kind == TAG_NEW_CALL) {
            handle_new_call(ev.tag, ev.success);
        } else if (kind == TAG_UNARY_DONE) {
            unary_done(ev.tag);
        } else if (kind == TAG_SHUTDOWN) {
            pthread_mutex_lock(&srv->lock);
            srv->shutdown_notified = true;
            pthread_cond_broadcast(&srv->cond);
            pthread_mutex_unlock(&srv->lock);
        }
    }
    return NULL;
}

/* gRPC reports a failed bind only in its own log; try the address first so a busy port gives a
 * precise "address already in use". */
static int probe_bind(const char *addr, jw_error *err)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof(host))
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "listen address '%s' is not HOST:PORT", addr);
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    char *h = host;
    if (h[0] == '[' && h[strlen(h) - 1] == ']') {
        h[strlen(h) - 1] = '\0';
        h++;
    }
    /* getaddrinfo takes "99999" and wraps it to another port; gRPC too. Only 0..65535. */
    int64_t port;
    if (parse_int64(colon + 1, 0, 65535, &port) < 0)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "listen address '%s': port '%s' is not a number in 0..65535", addr,
                            colon + 1);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                    *res = NULL;
    int gr = getaddrinfo(h, colon + 1, &hints, &res);
    if (gr != 0)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL, "listen address '%s': %s", addr,
                            gai_strerror(gr));
    int r = 0;
    for (struct addrinfo *ai = res; ai && r == 0; ai = ai->ai_next) {
        _cleanup_close_ int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        char ebuf[128];
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1) < 0)
            r = jw_error_set(err, JW_UNAVAILABLE, -errno, "listen on '%s': %s", addr,
                             errno == EADDRINUSE ? "address already in use"
                                                 : jw_strerror(errno, ebuf, sizeof(ebuf)));
    }
    freeaddrinfo(res);
    return r;
}

int rpc_server_start(const rpc_server_config *cfg, rpc_server **ret, jw_error *err)
{
    int r = probe_bind(cfg->listen_addr, err);
    if (r < 0)
        return r;

    rpc_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    srv->cfg = *cfg;
    if (srv->cfg.workers <= 0)
        srv->cfg.workers = JW_DEFAULT_WORKERS;
    srv->tag_shutdown = TAG_SHUTDOWN;
    pthread_mutex_init(&srv->lock, NULL);
    pthread_cond_init(&srv->cond, NULL);
    stream_registry_config src = {.svc = cfg->svc,
                                  .max_streams = cfg->max_streams,
                                  .max_streams_per_client = cfg->max_streams_per_client,
                                  .chunk_size = cfg->chunk_size,
                                  .audit = cfg->audit};
    r = stream_registry_new(&src, &srv->streams, err);
    if (r < 0) {
        pthread_mutex_destroy(&srv->lock);
        pthread_cond_destroy(&srv->cond);
        free(srv);
        return r;
    }

    grpc_init();
    grpc_arg args[] = {
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ALLOW_REUSEPORT, .value.integer = 0},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_KEEPALIVE_TIME_MS, .value.integer = 30000},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_KEEPALIVE_TIMEOUT_MS, .value.integer = 10000},
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
         .value.integer = 10000},
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
         .value.integer = 10000},
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         .value.integer = 4 * 1024 * 1024},
    };
    grpc_channel_args cargs = {.num_args = ARRAY_SIZE(args), .args = args};
    srv->server = grpc_server_create(&cargs, NULL);
    srv->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(srv->server, srv->cq, NULL);
    for (int m = 0; m < N_METHODS; m++)
        srv->methods[m] = grpc_server_register_method(srv->server, method_paths[m], NULL,
                                                      GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);

    grpc_server_credentials *creds = NULL;
    r = rpc_creds_new(srv, &creds, err);
    if (r < 0)
        goto fail;
    srv->port = grpc_server_add_http2_port(srv->server, cfg->listen_addr, creds);
    grpc_server_credentials_release(creds);
    if (srv->port == 0) {
        r = jw_error_set(err, JW_UNAVAILABLE, -EADDRNOTAVAIL,
                         "listen on '%s' failed (address in use, or bad certificate/key)",
                         cfg->listen_addr);
        goto fail;
    }
    grpc_server_start(srv->server);

    srv->n_slots = N_METHODS + 1;
    srv->slots = calloc((size_t)srv->n_slots, sizeof(*srv->slots));
    srv->workers = calloc((size_t)srv->cfg.workers, sizeof(pthread_t));
    if (!srv->slots || !srv->workers) {
        r = jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
        goto fail;
    }
    pthread_mutex_lock(&srv->lock);
    for (int i = 0; i < srv->n_slots; i++) {
        srv->slots[i] = (rpc_slot){.kind = TAG_NEW_CALL, .srv = srv, .method = i};
        slot_request(&srv->slots[i]);
    }
    pthread_mutex_unlock(&srv->lock);
    for (int i = 0; i < srv->cfg.workers; i++) {
        r = -pthread_create(&srv->workers[i], NULL, worker, srv);
        if (r < 0) {
            jw_error_errno_code(err, JW_INTERNAL, r, "start worker thread");
            goto fail_started;
        }
        srv->n_workers++;
    }
    /* gRPC 1.51 never accepts again after an EMFILE; without the watch nothing would tell. */
    r = listenwatch_start(&(listenwatch_config){.port = srv->port}, &srv->watch);
    if (r < 0)
        log_warning_errno(-r, "start the listener watch: %m, ignoring");
    *ret = srv;
    return 0;

fail_started:
    rpc_server_begin_shutdown(srv);
    rpc_server_free(srv);
    return r;
fail:
    if (srv->server) {
        grpc_server_start(srv->server);
        grpc_server_shutdown_and_notify(srv->server, srv->cq, &srv->tag_shutdown);
        grpc_server_cancel_all_calls(srv->server);
        while (grpc_completion_queue_next(srv->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).tag !=
               &srv->tag_shutdown)
            ;
        grpc_server_destroy(srv->server);
    }
    if (srv->cq)
        rpc_drain_destroy_cq(srv->cq);
    grpc_shutdown();
    rpc_creds_free(srv);
    stream_registry_free(srv->streams);
    free(srv->slots);
    free(srv->workers);
    pthread_mutex_destroy(&srv->lock);
    pthread_cond_destroy(&srv->cond);
    free(srv);
    return r;
}

int rpc_server_port(const rpc_server *srv)
{
    return srv->port;
}

bool rpc_server_listener_died(const rpc_server *srv)
{
    return listenwatch_fired(srv->watch);
}

void rpc_server_begin_shutdown(rpc_server *srv)
{
    /* A listener that gRPC closes, and a queue nobody accepts from, are no longer news. */
    listenwatch_stop(srv->watch);
    pthread_mutex_lock(&srv->lock);
    if (srv->shutting_down) {
        pthread_mutex_unlock(&srv->lock);
        return;
    }
    srv->shutting_down = true;
    grpc_server_shutdown_and_notify(srv->server, srv->cq, &srv->tag_shutdown);
    pthread_mutex_unlock(&srv->lock);
    stream_registry_shutdown(srv->streams);
}

void rpc_server_free(rpc_server *srv)
{
    if (!srv)
        return;
    listenwatch_free(TAKE_PTR(srv->watch));
    rpc_server_begin_shutdown(srv);
    /* Give streams a moment to send their UNAVAILABLE status, then cut what remains. */
    if (!stream_registry_wait_empty(srv->streams, 2000))
        log_debug("rpc: %d stream(s) left; cancelling all calls",
                  stream_registry_count(srv->streams));
    grpc_server_cancel_all_calls(srv->server);
    stream_registry_wait_empty(srv->streams, -1);
    /* A StopJob still waiting is answered when its job ends, which the caller made happen
     * (supervisor_shutdown) before this; its answer must be on the queue before it shuts. */
    pthread_mutex_lock(&srv->lock);
    while (srv->pending_stops > 0 || !srv->shutdown_notified)
        pthread_cond_wait(&srv->cond, &srv->lock);
    pthread_mutex_unlock(&srv->lock);
    log_debug("rpc: all calls done; destroying the server");
    grpc_server_destroy(srv->server);
    grpc_completion_queue_shutdown(srv->cq);
    for (int i = 0; i < srv->n_workers; i++)
        pthread_join(srv->workers[i], NULL);
    grpc_completion_queue_destroy(srv->cq);
    for (int i = 0; i < srv->n_slots; i++)
        if (srv->slots[i].bound_cq)
            rpc_drain_destroy_cq(srv->slots[i].bound_cq);
    log_debug("rpc: queues drained; grpc_shutdown");
    grpc_shutdown();
    rpc_creds_free(srv);
    stream_registry_free(srv->streams);
    free(srv->slots);
    free(srv->workers);
    pthread_mutex_destroy(&srv->lock);
    pthread_cond_destroy(&srv->cond);
    free(srv);
}
