#include "client/client.h"

#include "auth/auth.h"

#include "util/cleanup.h"
#include "util/fileio.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define METHOD_PREFIX "/jobworker.v1.JobService/"

struct jw_client {
    grpc_channel *channel;
    int64_t timeout_ms;
    /* mu guards `call` and `cancelled`: jw_client_cancel() runs on another thread and may only
     * touch a call that is still referenced, so a call is published here for its whole life and
     * withdrawn before it is unreferenced. */
    pthread_mutex_t mu;
    pthread_cond_t cond; /* signalled on cancel; CLOCK_MONOTONIC, for the resume back-off */
    grpc_call *call;
    bool cancelled;
};

static void drop_grpc_log(gpr_log_func_args *args) {}

const char *jw_client_code_name(jw_code code)
{
    static const char *const names[] = {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    if ((unsigned)code < ARRAY_SIZE(names))
        return names[code];
    return "UNKNOWN";
}

int jw_client_read_pem(const char *path, const char *what, const char *hint, char **ret,
                       jw_error *err)
{
    if (!hint)
        hint = "";
    /* Erase mode: one of the files is the private key. The cap keeps a wrong path (a device, a
     * huge file) from making us allocate without bound; pipes (<(...)) work too. */
    _cleanup_erase_ char *buf = NULL;
    size_t len = 0;
    int r = read_file_alloc_at(AT_FDCWD, path, JW_CLIENT_PEM_MAX, READ_FILE_ERASE, &buf, &len);
    if (r == -EFBIG)
        return jw_error_set(err, JW_INVALID_ARGUMENT, r,
                            "cannot read %s '%s': larger than %d MiB%s", what, path,
                            JW_CLIENT_PEM_MAX / (1024 * 1024), hint);
    if (r == -ENOMEM)
        return jw_error_set(err, JW_INTERNAL, r, "cannot read %s '%s': out of memory", what, path);
    if (r < 0) {
        char ebuf[128];
        return jw_error_set(err, JW_INVALID_ARGUMENT, r, "cannot read %s '%s': %s%s", what, path,
                            jw_strerror(r, ebuf, sizeof(ebuf)), hint);
    }
    if (strlen(buf) != len || !strstr(buf, "-----BEGIN "))
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "cannot read %s '%s': not a PEM file (no '-----BEGIN' line)%s", what,
                            path, hint);
    *ret = TAKE_PTR(buf);
    return 0;
}

int jw_client_check_files(const jw_client_config *cfg, const char *cert, const char *key,
                          const char *ca, jw_error *err)
{
    /* gRPC would only fail the first call with "UNAVAILABLE: empty address list" (its
     * credentials cannot be built from a mismatched pair) or a handshake error; say which file
     * is wrong before connecting. */
    int r = auth_check_key_pair(cert, key, err);
    if (r == -EKEYREJECTED)
        return jw_error_set(err, JW_INVALID_ARGUMENT, r,
                            "the key '%s' does not match the certificate '%s'", cfg->key_path,
                            cfg->cert_path);
    if (r < 0)
        return jw_error_wrap(err, r, "client certificate '%s' and key '%s'", cfg->cert_path,
                             cfg->key_path);
    r = auth_check_ca_pem(cfg->ca_path, ca, NULL, err);
    if (r < 0)
        return r;
    return 0;
}

int jw_client_new(const jw_client_config *cfg, jw_client **ret, jw_error *err)
{
    _cleanup_free_ char *cert = NULL, *ca = NULL;
    _cleanup_erase_ char *key = NULL;
    int r;

    if (!cfg->server || !*cfg->server)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL, "no server address given");
    /* Certificate first: when nothing was generated yet, that is the file the user should be
     * told about. */
    r = jw_client_read_pem(cfg->cert_path, "client certificate", cfg->cert_hint, &cert, err);
    if (r < 0)
        return r;
    r = jw_client_read_pem(cfg->key_path, "client key", cfg->key_hint, &key, err);
    if (r < 0)
        return r;
    r = jw_client_read_pem(cfg->ca_path, "CA certificate", cfg->ca_hint, &ca, err);
    if (r < 0)
        return r;
    r = jw_client_check_files(cfg, cert, key, ca, err);
    if (r < 0)
        return r;

    _cleanup_free_ jw_client *c = calloc(1, sizeof(*c));
    if (!c)
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    pthread_condattr_t ca_attr;
    pthread_condattr_init(&ca_attr);
    pthread_condattr_setclock(&ca_attr, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cond, &ca_attr);
    pthread_condattr_destroy(&ca_attr);
    pthread_mutex_init(&c->mu, NULL);
    c->timeout_ms = cfg->timeout_ms;

    grpc_init();
    /* Every failure reaches the caller as a status with gRPC's message; its own log lines
     * (e.g. "Handshake failed") would only repeat it on stderr. GRPC_VERBOSITY or GRPC_TRACE
     * in the environment keep them for debugging. */
    if (!getenv("GRPC_VERBOSITY") && !getenv("GRPC_TRACE"))
        gpr_set_log_function(drop_grpc_log);
    grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
    /* gRPC copies the PEM strings, so ours are wiped and freed on return. */
    grpc_channel_credentials *creds = grpc_ssl_credentials_create_ex(ca, &pair, NULL, NULL);
    if (!creds) {
        grpc_shutdown();
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cond);
        return jw_error_set(err, JW_INTERNAL, -EINVAL, "cannot create TLS credentials from '%s'",
                            cfg->cert_path);
    }

    grpc_arg args[4];
    size_t nargs = 0;
    args[nargs].type = GRPC_ARG_INTEGER;
    args[nargs].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[nargs].value.integer = JW_CLIENT_MAX_RECV_BYTES;
    nargs++;
    /* gRPC's default reconnect back-off (1 s growing to 120 s) would keep the channel failing
     * fast long after a restarted server is back; resuming a stream needs a channel that
     * retries about as often as we do. */
    args[nargs].type = GRPC_ARG_INTEGER;
    args[nargs].key = (char *)GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS;
    args[nargs].value.integer = JW_CLIENT_BACKOFF_FIRST_MS;
    nargs++;
    args[nargs].type = GRPC_ARG_INTEGER;
    args[nargs].key = (char *)GRPC_ARG_MAX_RECONNECT_BACKOFF_MS;
    args[nargs].value.integer = JW_CLIENT_BACKOFF_MAX_MS / 2;
    nargs++;
    if (cfg->server_name && *cfg->server_name) {
        args[nargs].type = GRPC_ARG_STRING;
        args[nargs].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
        args[nargs].value.string = (char *)cfg->server_name;
        nargs++;
    }
    grpc_channel_args chargs = {.num_args = nargs, .args = args};
    /* A bad target yields a "lame" channel whose calls fail with a message, never NULL. */
    c->channel = grpc_channel_create(cfg->server, creds, &chargs);
    grpc_channel_credentials_release(creds);
    if (!c->channel) {
        grpc_shutdown();
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cond);
        return jw_error_set(err, JW_INTERNAL, -EINVAL, "cannot create a channel to '%s'",
                            cfg->server);
    }
    *ret = TAKE_PTR(c);
    return 0;
}

jw_client *jw_client_free(jw_client *c)
{
    if (!c)
        return NULL;
    grpc_channel_destroy(c->channel);
    grpc_shutdown();
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cond);
    free(c);
    return NULL;
}

void jw_client_cancel(jw_client *c)
{
    pthread_mutex_lock(&c->mu);
    c->cancelled = true;
    if (c->call)
        grpc_call_cancel(c->call, NULL);
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

bool jw_client_cancelled(jw_client *c)
{
    pthread_mutex_lock(&c->mu);
    bool r = c->cancelled;
    pthread_mutex_unlock(&c->mu);
    return r;
}

static int set_cancelled(jw_error *err)
{
    return jw_error_set(err, JW_CANCELLED, -EINTR, "interrupted");
}

/* Publishes `call` for jw_client_cancel(); refuses when a cancel already happened. */
static int call_publish(jw_client *c, grpc_call *call, jw_error *err)
{
    pthread_mutex_lock(&c->mu);
    bool cancelled = c->cancelled;
    if (!cancelled)
        c->call = call;
    pthread_mutex_unlock(&c->mu);
    return cancelled ? set_cancelled(err) : 0;
}

static void call_withdraw(jw_client *c)
{
    pthread_mutex_lock(&c->mu);
    c->call = NULL;
    pthread_mutex_unlock(&c->mu);
}

static grpc_byte_buffer *pack_message(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    grpc_slice s = grpc_slice_malloc(n);
    protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

static ProtobufCMessage *unpack_message(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d)
{
    grpc_byte_buffer_reader reader;
    if (!grpc_byte_buffer_reader_init(&reader, bb))
        return NULL;
    grpc_slice s = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    ProtobufCMessage *m =
        protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
    grpc_slice_unref(s);
    return m;
}

/* Turns a finished call's status into our convention (see client.h). */
static int status_to_error(jw_client *c, grpc_status_code status, grpc_slice details,
                           const char *method, jw_error *err)
{
    if (status == GRPC_STATUS_OK)
        return 0;
    if (status == GRPC_STATUS_CANCELLED && jw_client_cancelled(c))
        return set_cancelled(err);
    size_t len = GRPC_SLICE_LENGTH(details);
    if (len == 0)
        return jw_error_set(err, (jw_code)status, -EREMOTEIO, "%s failed without details", method);
    if (len > JW_ERROR_MSG_MAX)
        len = JW_ERROR_MSG_MAX;
    return jw_error_set(err, (jw_code)status, -EREMOTEIO, "%.*s", (int)len,
                        (const char *)GRPC_SLICE_START_PTR(details));
}

/* One call on a fresh pluck queue; the only event source besides gRPC's own threads. */
typedef struct rpc {
    grpc_completion_queue *cq;
    grpc_call *call;
    const char *method; /* short name, for messages */
} rpc;

static int rpc_open(jw_client *c, rpc *x, const char *method, bool with_deadline, jw_error *err)
{
    char path[128];
    snprintf(path, sizeof(path), METHOD_PREFIX "%s", method);
    gpr_timespec deadline = gpr_inf_future(GPR_CLOCK_MONOTONIC);
    if (with_deadline && c->timeout_ms > 0)
        deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                gpr_time_from_millis(c->timeout_ms, GPR_TIMESPAN));
    x->method = method;
    x->cq = grpc_completion_queue_create_for_pluck(NULL);
    /* The method slice is copied by gRPC, so a stack buffer is fine. */
    grpc_slice mslice = grpc_slice_from_copied_string(path);
    x->call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, x->cq, mslice,
                                       NULL, deadline, NULL);
    grpc_slice_unref(mslice);
    if (!x->call) {
        grpc_completion_queue_destroy(x->cq);
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "cannot create a %s call", method);
    }
    int r = call_publish(c, x->call, err);
    if (r < 0) {
        grpc_call_unref(x->call);
        grpc_completion_queue_destroy(x->cq);
        return r;
    }
    return 0;
}

static void rpc_close(jw_client *c, rpc *x)
{
    call_withdraw(c);
    grpc_call_unref(x->call);
    /* Every tag started on this queue has been plucked, so it is empty and can go. */
    grpc_completion_queue_shutdown(x->cq);
    grpc_completion_queue_destroy(x->cq);
}

/* Starts a batch and, when `wait`, plucks its tag. Returns the event's success flag (0/1) or a
 * negative errno when the batch could not even start (then its tag never completes). */
static int rpc_batch(rpc *x, const grpc_op *ops, size_t n, void *tag, bool wait, jw_error *err)
{
    grpc_call_error e = grpc_call_start_batch(x->call, ops, n, tag, NULL);
    if (e != GRPC_CALL_OK)
        return jw_error_set(err, JW_INTERNAL, -EPROTO, "%s: grpc_call_start_batch failed (%d)",
                            x->method, (int)e);
    if (!wait)
        return 1;
    grpc_event ev =
        grpc_completion_queue_pluck(x->cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    return ev.type == GRPC_OP_COMPLETE && ev.success;
}

static int rpc_pluck(rpc *x, void *tag)
{
    grpc_event ev =
        grpc_completion_queue_pluck(x->cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    return ev.type == GRPC_OP_COMPLETE && ev.success;
}

static int unary_call(jw_client *c, const char *method, const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *res_desc, ProtobufCMessage **ret,
                      jw_error *err)
{
    rpc x;
    int r = rpc_open(c, &x, method, true, err);
    if (r < 0)
        return r;

    grpc_byte_buffer *send = pack_message(req);
    grpc_byte_buffer *recv = NULL;
    grpc_metadata_array initial_md, trailing_md;
    grpc_metadata_array_init(&initial_md);
    grpc_metadata_array_init(&trailing_md);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();

    /* One batch with every op of the call: the client side allows it, and one pluck then
     * covers the whole exchange, bounded by the call's deadline. */
    grpc_op ops[6];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing_md;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    r = rpc_batch(&x, ops, ARRAY_SIZE(ops), (void *)1, true, err);
    grpc_byte_buffer_destroy(send);

    if (r >= 0) {
        r = status_to_error(c, status, details, method, err);
        if (r == 0) {
            ProtobufCMessage *m = recv ? unpack_message(recv, res_desc) : NULL;
            if (!m)
                r = jw_error_set(err, JW_INTERNAL, -EREMOTEIO, "%s: cannot decode the server's %s",
                                 method, res_desc->short_name);
            else
                *ret = m;
        }
    }
    if (recv)
        grpc_byte_buffer_destroy(recv);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&initial_md);
    grpc_metadata_array_destroy(&trailing_md);
    rpc_close(c, &x);
    return r;
}

void jw_job_free(Jobworker__V1__Job *job)
{
    if (job)
        jobworker__v1__job__free_unpacked(job, NULL);
}

void jw_jobs_free(Jobworker__V1__Jobs *jobs)
{
    if (jobs)
        jobworker__v1__jobs__free_unpacked(jobs, NULL);
}

/* CreateJobRes, GetJobRes and StopJobRes each carry one job: detach it (protobuf-c allocates
 * every submessage separately) and free the envelope. */
#define TAKE_JOB(res, type, free_fn, method, ret_job, err)                                         \
    ({                                                                                             \
        /* NOLINTNEXTLINE(bugprone-macro-parentheses): a type cannot be parenthesised */           \
        type *_res = (type *)(res);                                                                \
        Jobworker__V1__Job *_job = TAKE_PTR(_res->job);                                            \
        free_fn(_res, NULL);                                                                       \
        _job ? (*(ret_job) = _job, 0)                                                              \
             : jw_error_set(err, JW_INTERNAL, -EREMOTEIO, "%s: the server's response has no job",  \
                            method);                                                               \
    })

int jw_client_create_job(jw_client *c, const Jobworker__V1__CreateJobReq *req,
                         Jobworker__V1__Job **ret_job, jw_error *err)
{
    ProtobufCMessage *res = NULL;
    int r = unary_call(c, "CreateJob", &req->base, &jobworker__v1__create_job_res__descriptor, &res,
                       err);
    if (r < 0)
        return r;
    return TAKE_JOB(res, Jobworker__V1__CreateJobRes, jobworker__v1__create_job_res__free_unpacked,
                    "CreateJob", ret_job, err);
}

int jw_client_get_job(jw_client *c, const char *id, Jobworker__V1__Job **ret_job, jw_error *err)
{
    Jobworker__V1__GetJobReq req = JOBWORKER__V1__GET_JOB_REQ__INIT;
    req.id = (char *)id;
    ProtobufCMessage *res = NULL;
    int r = unary_call(c, "GetJob", &req.base, &jobworker__v1__get_job_res__descriptor, &res, err);
    if (r < 0)
        return r;
    return TAKE_JOB(res, Jobworker__V1__GetJobRes, jobworker__v1__get_job_res__free_unpacked,
                    "GetJob", ret_job, err);
}

int jw_client_stop_job(jw_client *c, const char *id, Jobworker__V1__Job **ret_job, jw_error *err)
{
    Jobworker__V1__StopJobReq req = JOBWORKER__V1__STOP_JOB_REQ__INIT;
    req.id = (char *)id;
    ProtobufCMessage *res = NULL;
    int r =
        unary_call(c, "StopJob", &req.base, &jobworker__v1__stop_job_res__descriptor, &res, err);
    if (r < 0)
        return r;
    return TAKE_JOB(res, Jobworker__V1__StopJobRes, jobworker__v1__stop_job_res__free_unpacked,
                    "StopJob", ret_job, err);
}

int jw_client_server_info(jw_client *c, Jobworker__V1__ServerInfo **ret, jw_error *err)
{
    Jobworker__V1__GetServerInfoReq req = JOBWORKER__V1__GET_SERVER_INFO_REQ__INIT;
    ProtobufCMessage *res = NULL;
    int r = unary_call(c, "GetServerInfo", &req.base, &jobworker__v1__server_info__descriptor, &res,
                       err);
    if (r < 0)
        return r;
    *ret = (Jobworker__V1__ServerInfo *)res;
    return 0;
}

int jw_client_delete_job(jw_client *c, const char *id, Jobworker__V1__Job **ret_job, jw_error *err)
{
    Jobworker__V1__DeleteJobReq req = JOBWORKER__V1__DELETE_JOB_REQ__INIT;
    req.id = (char *)id;
    ProtobufCMessage *res = NULL;
    int r = unary_call(c, "DeleteJob", &req.base, &jobworker__v1__delete_job_res__descriptor, &res,
                       err);
    if (r < 0)
        return r;
    return TAKE_JOB(res, Jobworker__V1__DeleteJobRes, jobworker__v1__delete_job_res__free_unpacked,
                    "DeleteJob", ret_job, err);
}

int jw_client_list_jobs(jw_client *c, const jw_client_list_req *req, Jobworker__V1__Jobs **ret_jobs,
                        jw_error *err)
{
    static const jw_client_list_req no_query = {0};
    if (!req)
        req = &no_query;
    Jobworker__V1__GetJobsReq greq = JOBWORKER__V1__GET_JOBS_REQ__INIT;
    greq.page_size = req->page_size;
    if (req->page_token)
        greq.page_token = (char *)req->page_token;
    greq.status = (Jobworker__V1__JobStatus *)req->statuses;
    greq.n_status = req->n_statuses;
    if (req->owner)
        greq.owner = (char *)req->owner;
    greq.since_unix_ns = req->since_unix_ns;
    ProtobufCMessage *res = NULL;
    int r = unary_call(c, "GetJobs", &greq.base, &jobworker__v1__jobs__descriptor, &res, err);
    if (r < 0)
        return r;
    /* unary_call() returns 0 only with a message; said here for the static analyzer, which
     * cannot see that jw_error_set() returns its negative errno. */
    if (!res) {
        jw_error_set(err, JW_INTERNAL, -EPROTO, "GetJobs: no response");
        return -EPROTO;
    }
    *ret_jobs = (Jobworker__V1__Jobs *)res;
    return 0;
}

int jw_jobs_append(Jobworker__V1__Jobs *dst, Jobworker__V1__Jobs **src)
{
    Jobworker__V1__Jobs *s = *src;
    /* protobuf-c's default allocator is malloc/free, so the array it unpacked can grow with
     * realloc and is still freed correctly by free_unpacked. */
    if (s->n_jobs > 0) {
        if (s->n_jobs > SIZE_MAX / sizeof(*dst->jobs) - dst->n_jobs)
            return -ENOMEM;
        Jobworker__V1__Job **jobs =
            realloc(dst->jobs, (dst->n_jobs + s->n_jobs) * sizeof(*dst->jobs));
        if (!jobs)
            return -ENOMEM;
        memcpy(jobs + dst->n_jobs, s->jobs, s->n_jobs * sizeof(*jobs));
        dst->jobs = jobs;
        dst->n_jobs += s->n_jobs;
        s->n_jobs = 0; /* the jobs belong to dst now */
    }
    /* Swapping the strings keeps each owned by a message that frees it. */
    char *token = dst->next_page_token;
    dst->next_page_token = s->next_page_token;
    s->next_page_token = token;
    if (s->jobs_omitted > INT32_MAX - dst->jobs_omitted)
        dst->jobs_omitted = INT32_MAX;
    else if (s->jobs_omitted > 0)
        dst->jobs_omitted += s->jobs_omitted;
    jw_jobs_free(s);
    *src = NULL;
    return 0;
}

static bool has_token(const Jobworker__V1__Jobs *jobs)
{
    return jobs->next_page_token && jobs->next_page_token[0];
}

int jw_client_list_jobs_all(jw_client *c, const jw_client_list_req *req, int64_t limit,
                            Jobworker__V1__Jobs **ret_jobs, jw_error *err)
{
    static const jw_client_list_req no_query = {0};
    jw_client_list_req q = req ? *req : no_query;
    _cleanup_jobs_ Jobworker__V1__Jobs *all = NULL;
    for (;;) {
        if (limit > 0) {
            int64_t left = limit - (int64_t)(all ? all->n_jobs : 0);
            int32_t most = q.page_size > 0 ? q.page_size : JW_CLIENT_PAGE_SIZE_MAX;
            q.page_size = left < most ? (int32_t)left : most;
        }
        _cleanup_jobs_ Jobworker__V1__Jobs *page = NULL;
        int r = jw_client_list_jobs(c, &q, &page, err);
        if (r < 0)
            return r;
        const char *sent = q.page_token ? q.page_token : "";
        if (has_token(page) && strcmp(page->next_page_token, sent) == 0)
            return jw_error_set(err, JW_INTERNAL, -EPROTO,
                                "GetJobs: the server answered page token '%s' with the same token",
                                sent);
        /* A server that sends more than was asked for must not break the limit. */
        if (limit > 0 && page->n_jobs > (size_t)q.page_size) {
            for (size_t i = (size_t)q.page_size; i < page->n_jobs; i++)
                jobworker__v1__job__free_unpacked(page->jobs[i], NULL);
            page->n_jobs = (size_t)q.page_size;
        }
        if (!all) {
            all = TAKE_PTR(page);
        } else {
            r = jw_jobs_append(all, &page);
            if (r < 0)
                return jw_error_set(err, JW_INTERNAL, r, "GetJobs: out of memory after %zu jobs",
                                    all->n_jobs);
        }
        if (!has_token(all) || (limit > 0 && (int64_t)all->n_jobs >= limit))
            break;
        /* `all` owns the token until the next page is appended, after the call. */
        q.page_token = all->next_page_token;
    }
    *ret_jobs = TAKE_PTR(all);
    return 0;
}

/* One GetJobsStream call from *offset. *ret_established tells whether the server answered the
 * call at all (initial metadata or a message arrived), *ret_progress whether a byte arrived. */
static int stream_once(jw_client *c, const jw_client_stream_req *req, int64_t *offset,
                       jw_client_output_fn fn, void *userdata, bool *ret_established,
                       bool *ret_progress, jw_error *err)
{
    rpc x;
    int r = rpc_open(c, &x, "GetJobsStream", false, err);
    if (r < 0)
        return r;

    Jobworker__V1__GetJobsStreamReq sreq = JOBWORKER__V1__GET_JOBS_STREAM_REQ__INIT;
    sreq.id = (char *)req->id;
    sreq.follow = req->follow;
    sreq.offset = *offset;
    sreq.stream = (Jobworker__V1__OutputStream)req->select;
    grpc_byte_buffer *send = pack_message(&sreq.base);
    grpc_metadata_array initial_md, trailing_md;
    grpc_metadata_array_init(&initial_md);
    grpc_metadata_array_init(&trailing_md);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    jw_error local = JW_ERROR_INIT; /* a failure of ours, which wins over the status */
    int local_r = 0;
    bool status_started = false;

    grpc_op ops[4];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial_md;
    r = rpc_batch(&x, ops, 4, (void *)1, false, &local);
    grpc_byte_buffer_destroy(send);
    if (r < 0) {
        local_r = r;
        goto out;
    }

    grpc_op st;
    memset(&st, 0, sizeof(st));
    st.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    st.data.recv_status_on_client.trailing_metadata = &trailing_md;
    st.data.recv_status_on_client.status = &status;
    st.data.recv_status_on_client.status_details = &details;
    r = rpc_batch(&x, &st, 1, (void *)2, false, &local);
    if (r < 0) {
        /* Tag 1 was started and must be collected before the queue goes away. */
        grpc_call_cancel(x.call, NULL);
        rpc_pluck(&x, (void *)1);
        local_r = r;
        goto out;
    }
    status_started = true;

    /* Initial metadata arrives when the server accepted the call (a server may send it only
     * with its first message, which is fine: we would wait for that message anyway). */
    if (rpc_pluck(&x, (void *)1))
        *ret_established = true;

    /* Messages one at a time: the next RECV_MESSAGE is only started once the previous chunk
     * was written out, so a slow stdout slows the server's sending through flow control instead
     * of buffering here. */
    for (;;) {
        grpc_byte_buffer *recv = NULL;
        grpc_op rop;
        memset(&rop, 0, sizeof(rop));
        rop.op = GRPC_OP_RECV_MESSAGE;
        rop.data.recv_message.recv_message = &recv;
        r = rpc_batch(&x, &rop, 1, (void *)3, true, &local);
        if (r < 0) {
            local_r = r;
            grpc_call_cancel(x.call, NULL);
            break;
        }
        if (!recv)
            break; /* end of stream or failure: the status tells which */
        *ret_established = true;
        Jobworker__V1__DataChunk *chunk = (Jobworker__V1__DataChunk *)unpack_message(
            recv, &jobworker__v1__data_chunk__descriptor);
        grpc_byte_buffer_destroy(recv);
        if (!chunk) {
            local_r = jw_error_set(&local, JW_INTERNAL, -EREMOTEIO,
                                   "GetJobsStream: cannot decode a DataChunk from the server");
            grpc_call_cancel(x.call, NULL);
            break;
        }
        if (chunk->offset != *offset) {
            local_r = jw_error_set(&local, (jw_code)GRPC_STATUS_DATA_LOSS, -EREMOTEIO,
                                   "output chunk of %zu bytes starts at offset %lld, expected "
                                   "offset %lld",
                                   chunk->data.len, (long long)chunk->offset, (long long)*offset);
            jobworker__v1__data_chunk__free_unpacked(chunk, NULL);
            grpc_call_cancel(x.call, NULL);
            break;
        }
        if (chunk->data.len > 0) {
            r = fn(userdata, (int)chunk->stream, chunk->data.data, chunk->data.len, &local);
            if (r < 0) {
                local_r = r;
                jobworker__v1__data_chunk__free_unpacked(chunk, NULL);
                grpc_call_cancel(x.call, NULL);
                break;
            }
            *offset += (int64_t)chunk->data.len;
            *ret_progress = true;
        }
        jobworker__v1__data_chunk__free_unpacked(chunk, NULL);
    }

out:
    if (status_started)
        rpc_pluck(&x, (void *)2);
    if (local_r < 0) {
        r = local_r;
        if (err)
            *err = local;
    } else if (status_started) {
        r = status_to_error(c, status, details, "GetJobsStream", err);
    }
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&initial_md);
    grpc_metadata_array_destroy(&trailing_md);
    rpc_close(c, &x);
    return r;
}

/* Waits up to ms for the channel to become READY, asking it to connect, and returns as soon as
 * it is: a restarted server is used at once instead of after a fixed delay. There is no way to
 * interrupt a connectivity watch, so it waits in slices and checks for a cancel in between.
 * Returns -EINTR when cancelled, else 0 (ready or not: the next call will tell). */
static int wait_for_channel(jw_client *c, int64_t ms)
{
    gpr_timespec end =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    int r = 0;
    for (;;) {
        if (jw_client_cancelled(c)) {
            r = -EINTR;
            break;
        }
        grpc_connectivity_state st = grpc_channel_check_connectivity_state(c->channel, 1);
        gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
        if (st == GRPC_CHANNEL_READY || gpr_time_cmp(now, end) >= 0)
            break;
        gpr_timespec slice = gpr_time_add(now, gpr_time_from_millis(100, GPR_TIMESPAN));
        if (gpr_time_cmp(slice, end) > 0)
            slice = end;
        grpc_channel_watch_connectivity_state(c->channel, st, slice, cq, (void *)4);
        /* Completes on a state change or at the slice's deadline, whichever comes first. */
        grpc_completion_queue_pluck(cq, (void *)4, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    }
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
    return r;
}

/* Sleeps for ms unless cancelled first; -EINTR when cancelled. */
static int backoff_wait(jw_client *c, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&c->mu);
    while (!c->cancelled) {
        if (pthread_cond_timedwait(&c->cond, &c->mu, &ts) == ETIMEDOUT)
            break;
    }
    bool cancelled = c->cancelled;
    pthread_mutex_unlock(&c->mu);
    return cancelled ? -EINTR : 0;
}

int jw_client_write_stdin(jw_client *c, const char *id, int fd, int64_t *ret_written,
                          bool *ret_job_ended, jw_error *err)
{
    rpc x;
    int r = rpc_open(c, &x, "WriteStdin", false, err);
    if (r < 0)
        return r;
    grpc_metadata_array initial_md, trailing_md;
    grpc_metadata_array_init(&initial_md);
    grpc_metadata_array_init(&trailing_md);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_byte_buffer *recv = NULL;
    jw_error local = JW_ERROR_INIT;
    int local_r = 0;
    uint8_t *buf = malloc(JW_CLIENT_STDIN_CHUNK);

    /* The answer may come before the end of our stream (the job ended): wait for it last. */
    grpc_op ops[4];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[1].data.recv_initial_metadata.recv_initial_metadata = &initial_md;
    ops[2].op = GRPC_OP_RECV_MESSAGE;
    ops[2].data.recv_message.recv_message = &recv;
    ops[3].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[3].data.recv_status_on_client.trailing_metadata = &trailing_md;
    ops[3].data.recv_status_on_client.status = &status;
    ops[3].data.recv_status_on_client.status_details = &details;
    r = buf ? rpc_batch(&x, ops, 4, (void *)1, false, &local)
            : jw_error_set(&local, JW_INTERNAL, -ENOMEM, "out of memory");
    if (r < 0) {
        local_r = r;
        goto out;
    }
    /* One message at a time: the next read waits until gRPC took the previous one, which flow
     * control holds back while the job does not read. The first names the job, even empty. */
    for (bool first = true;;) {
        ssize_t n = read(fd, buf, JW_CLIENT_STDIN_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            local_r = jw_error_errno_code(&local, JW_INTERNAL, errno, "read stdin");
            grpc_call_cancel(x.call, NULL);
            break;
        }
        if (n == 0 && !first)
            break;
        Jobworker__V1__StdinChunk chunk = JOBWORKER__V1__STDIN_CHUNK__INIT;
        chunk.id = first ? (char *)id : (char *)"";
        chunk.data.data = buf;
        chunk.data.len = (size_t)n;
        grpc_byte_buffer *send = pack_message(&chunk.base);
        grpc_op op;
        memset(&op, 0, sizeof(op));
        op.op = GRPC_OP_SEND_MESSAGE;
        op.data.send_message.send_message = send;
        r = rpc_batch(&x, &op, 1, (void *)2, true, &local);
        grpc_byte_buffer_destroy(send);
        if (r <= 0) {
            local_r = r < 0 ? r : 0; /* 0: the call is over, its status says why */
            break;
        }
        first = false;
        if (n == 0)
            break;
    }
    if (local_r == 0) {
        grpc_op op;
        memset(&op, 0, sizeof(op));
        op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT; /* end of file for the job */
        (void)rpc_batch(&x, &op, 1, (void *)3, true, &local);
    }
    rpc_pluck(&x, (void *)1);
    if (local_r == 0) {
        r = status_to_error(c, status, details, "WriteStdin", &local);
        if (r == 0) {
            Jobworker__V1__WriteStdinRes *res =
                recv ? (Jobworker__V1__WriteStdinRes *)unpack_message(
                           recv, &jobworker__v1__write_stdin_res__descriptor)
                     : NULL;
            if (!res) {
                r = jw_error_set(&local, JW_INTERNAL, -EREMOTEIO,
                                 "WriteStdin: cannot decode the server's WriteStdinRes");
            } else {
                if (ret_written)
                    *ret_written = res->bytes_written;
                if (ret_job_ended)
                    *ret_job_ended = res->job_ended;
                jobworker__v1__write_stdin_res__free_unpacked(res, NULL);
            }
        }
        local_r = r;
    }
out:
    free(buf);
    if (recv)
        grpc_byte_buffer_destroy(recv);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&initial_md);
    grpc_metadata_array_destroy(&trailing_md);
    rpc_close(c, &x);
    if (local_r < 0 && err)
        *err = local;
    return local_r;
}

int jw_client_stream(jw_client *c, const jw_client_stream_req *req, jw_client_output_fn fn,
                     void *userdata, int64_t *ret_offset, jw_error *err)
{
    jw_error e = JW_ERROR_INIT;
    int64_t offset = req->offset;
    bool ever_established = false;
    int failures = 0;
    int r;

    if (offset < 0)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL, "invalid offset %lld",
                            (long long)offset);
    for (;;) {
        bool established = false, progress = false;
        e = (jw_error)JW_ERROR_INIT;
        r = stream_once(c, req, &offset, fn, userdata, &established, &progress, &e);
        ever_established = ever_established || established;
        /* Resume only what was really running: a server that is down at the start fails fast,
         * and only UNAVAILABLE means "the transport broke", every other status is an answer. */
        if (r != -EREMOTEIO || e.code != JW_UNAVAILABLE || !req->follow || !ever_established)
            break;
        if (progress)
            failures = 0;
        if (failures >= req->max_retries) {
            if (req->max_retries > 0)
                jw_error_wrap(&e, r,
                              "stream of job '%s' broke at offset %lld, %d reconnects failed",
                              req->id, (long long)offset, failures);
            break;
        }
        int64_t delay = (int64_t)JW_CLIENT_BACKOFF_FIRST_MS << (failures < 16 ? failures : 16);
        if (delay > JW_CLIENT_BACKOFF_MAX_MS)
            delay = JW_CLIENT_BACKOFF_MAX_MS;
        failures++;
        /* A fixed pause first, so a server that is up but answers UNAVAILABLE (shutting down)
         * is not hammered; then up to `delay` for the transport to come back. */
        if (backoff_wait(c, JW_CLIENT_BACKOFF_FIRST_MS) < 0 || wait_for_channel(c, delay) < 0) {
            r = set_cancelled(&e);
            break;
        }
    }
    if (ret_offset)
        *ret_offset = offset;
    if (r < 0 && err)
        *err = e;
    return r;
}
