#include "service/service.h"

#include "util/defaults.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_MAX_STREAMS_PER_JOB JW_DEFAULT_MAX_STREAMS_PER_JOB

struct service {
    service_config cfg;
};

struct service_stream {
    store_job *job;
    store_sub *sub;
    int fd;
    int64_t offset;
    bool follow;
    char job_id[UUID_STR_LEN];
};

int service_new(const service_config *cfg, service **ret, jw_error *err)
{
    service *svc = calloc(1, sizeof(*svc));
    if (!svc)
        return jw_error_errno(err, ENOMEM, "create service");
    svc->cfg = *cfg;
    if (svc->cfg.max_streams_per_job <= 0)
        svc->cfg.max_streams_per_job = DEFAULT_MAX_STREAMS_PER_JOB;
    *ret = svc;
    return 0;
}

void service_free(service *svc)
{
    free(svc);
}

int service_authorize(const auth_identity *caller, auth_method method, jw_error *err)
{
    if (!caller) /* mutual TLS verified a certificate, yet it could not be parsed */
        return jw_error_set(err, JW_UNAUTHENTICATED, -EACCES, "no usable client certificate");
    if (auth_role_allows(caller->role, method))
        return 0;
    if (caller->role == AUTH_ROLE_NONE)
        return jw_error_set(err, JW_PERMISSION_DENIED, -EACCES,
                            "certificate '%s' grants no role: %s", caller->cn, caller->why);
    return jw_error_set(err, JW_PERMISSION_DENIED, -EACCES, "role %s may not call %s",
                        auth_role_name(caller->role), auth_method_name(method));
}

int service_create_job(service *svc, const auth_identity *caller, const job_request *req,
                       store_job **ret, jw_error *err)
{
    int r = service_authorize(caller, AUTH_METHOD_CREATE_JOB, err);
    if (r < 0)
        return r;
    r = job_request_validate(req, &svc->cfg.host, err);
    if (r < 0)
        return r;
    r = store_check_space(svc->cfg.st, SERVICE_MIN_FREE_BYTES, err);
    if (r < 0)
        return r;
    /* Without cgroups nothing is enforced, and the job says so instead of showing defaults. */
    job_limits eff = {0};
    if (svc->cfg.host.cgroups) {
        eff = req->limits;
        job_limits_resolve(&eff, &svc->cfg.defaults);
    }
    store_job_spec spec = {
        .command = req->command,
        .args = req->args,
        .nargs = req->nargs,
        .limits = eff,
        .limits_enforced = svc->cfg.host.cgroups,
        .timeout_seconds = (int32_t)req->timeout_seconds,
        .owner = caller->cn,
        .network = req->network != JOB_NETWORK_DEFAULT ? (job_network)req->network
                                                       : svc->cfg.default_network,
        .user = svc->cfg.job_user_display,
    };
    store_job *job = NULL;
    r = store_job_new(svc->cfg.st, &spec, &job, err);
    if (r < 0)
        return r;
    r = supervisor_start_job(svc->cfg.sv, job, err);
    if (r < 0) {
        /* Not the job's fault (no cgroup, no fd...): the supervisor left nothing behind, and
         * the job goes too, so the failed call changed nothing. */
        store_job_remove(svc->cfg.st, job);
        store_job_unref(job);
        return r;
    }
    *ret = job;
    return 0;
}

static int find_job(service *svc, const char *id, store_job **ret, jw_error *err)
{
    if (!id || !*id)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL, "id is empty");
    if (!uuid_is_valid(id))
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "id '%.64s' is not a job id (a UUID)", id);
    store_job *job = store_lookup(svc->cfg.st, id);
    if (!job)
        return jw_error_set(err, JW_NOT_FOUND, -ENOENT, "job '%s' not found", id);
    *ret = job;
    return 0;
}

int service_get_job(service *svc, const auth_identity *caller, const char *id, store_job **ret,
                    jw_error *err)
{
    int r = service_authorize(caller, AUTH_METHOD_GET_JOB, err);
    if (r < 0)
        return r;
    return find_job(svc, id, ret, err);
}

int service_stop_job(service *svc, const auth_identity *caller, const char *id, store_final_fn done,
                     void *userdata, store_job **ret, jw_error *err)
{
    int r = service_authorize(caller, AUTH_METHOD_STOP_JOB, err);
    if (r < 0)
        return r;
    store_job *job = NULL;
    r = find_job(svc, id, &job, err);
    if (r < 0)
        return r;
    r = supervisor_stop_job(svc->cfg.sv, job, JOB_REASON_STOPPED, err);
    if (r == 0)
        r = store_job_on_final(job, done, userdata);
    if (r == -EBUSY)
        r = jw_error_set(err, JW_RESOURCE_EXHAUSTED, -EBUSY,
                         "job '%s' already has %d stop calls waiting for its end", id,
                         STORE_MAX_FINAL_WAITERS);
    else if (r < 0 && err && err->code == JW_OK)
        r = jw_error_errno(err, r, "stop job '%s'", id);
    if (r < 0) {
        store_job_unref(job);
        return r;
    }
    *ret = job;
    return r == 1 ? 0 : 1; /* on_final: 1 = final already, 0 = registered */
}

int service_stop_result(store_job *job, jw_error *err)
{
    if (!job_status_is_final(store_job_status(job)))
        return jw_error_set(err, JW_NOT_FOUND, -ENOENT, "job '%s' was removed while starting",
                            store_job_id(job));
    return 0;
}

int service_list_jobs(service *svc, const auth_identity *caller, const service_list_req *req,
                      store_job ***ret, size_t *ret_n, char next_token[SERVICE_PAGE_TOKEN_MAX],
                      jw_error *err)
{
    int r = service_authorize(caller, AUTH_METHOD_GET_JOBS, err);
    if (r < 0)
        return r;
    if (req->page_size < 0 || req->page_size > SERVICE_PAGE_MAX)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "page_size %lld is out of range: 1 to %d (0 = %d)",
                            (long long)req->page_size, SERVICE_PAGE_MAX, SERVICE_PAGE_DEFAULT);
    store_query q = {.limit = req->page_size ? (size_t)req->page_size : SERVICE_PAGE_DEFAULT,
                     .owner = req->owner,
                     .since_ns = req->since_ns};
    if (service_page_token_parse(req->page_token, &q.before_seq) < 0)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "page_token '%.64s' is not one this server gave out (use "
                            "next_page_token of the previous page)",
                            req->page_token);
    if (req->n_statuses > SERVICE_LIST_STATUS_MAX)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "status lists %zu values, at most %d", req->n_statuses,
                            SERVICE_LIST_STATUS_MAX);
    for (size_t i = 0; i < req->n_statuses; i++) {
        int st = req->statuses[i];
        if (st < JOB_STATUS_INITIALIZING || st > JOB_STATUS_STOPPED)
            return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                                "status %d is not a job status (1 INITIALIZING to 5 STOPPED)", st);
        q.status_mask |= 1u << st;
    }
    if (req->owner && strlen(req->owner) > SERVICE_OWNER_MAX)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "owner is %zu bytes long, at most %d", strlen(req->owner),
                            SERVICE_OWNER_MAX);
    if (req->since_ns < 0)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL, "since_unix_ns %lld is negative",
                            (long long)req->since_ns);
    int64_t next = 0;
    r = store_list(svc->cfg.st, &q, ret, ret_n, &next, err);
    if (r < 0)
        return r;
    next_token[0] = '\0';
    if (next > 0)
        snprintf(next_token, SERVICE_PAGE_TOKEN_MAX, "v1.%lld", (long long)next);
    return 0;
}

int service_delete_job(service *svc, const auth_identity *caller, const char *id, store_job **ret,
                       jw_error *err)
{
    int r = service_authorize(caller, AUTH_METHOD_DELETE_JOB, err);
    if (r < 0)
        return r;
    if (!id || !*id)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL, "id is empty");
    if (!uuid_is_valid(id))
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "id '%.64s' is not a job id (a UUID)", id);
    return store_job_delete(svc->cfg.st, id, ret, err);
}

/* ---- Streams ---- */

int service_stream_open(service *svc, const auth_identity *caller, const service_stream_req *req,
                        store_wake_fn wake, void *userdata, service_stream **ret,
                        char ret_job_id[UUID_STR_LEN], jw_error *err)
{
    int r = service_authorize(caller, AUTH_METHOD_GET_JOBS_STREAM, err);
    if (r < 0)
        return r;
    if (req->id && *req->id && uuid_is_valid(req->id) && req->offset < 0)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL, "offset %" PRId64 " is negative",
                            req->offset);
    service_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return jw_error_errno(err, ENOMEM, "open stream");
    s->fd = -1;
    s->offset = req->offset;
    s->follow = req->follow;
    r = find_job(svc, req->id, &s->job, err);
    if (r < 0)
        goto fail;
    snprintf(s->job_id, sizeof(s->job_id), "%s", req->id);
    snprintf(ret_job_id, UUID_STR_LEN, "%s", req->id);

    int64_t size;
    bool closed;
    store_job_output_state(s->job, &size, &closed);
    if (closed && s->offset > size) {
        r = jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                         "offset %" PRId64 " is beyond the end of the output (%" PRId64 " bytes)",
                         s->offset, size);
        goto fail;
    }
    if (store_job_n_subs(s->job) >= (size_t)svc->cfg.max_streams_per_job) {
        r = jw_error_set(err, JW_RESOURCE_EXHAUSTED, -EBUSY,
                         "job '%s' already has %d streams, the limit per job", s->job_id,
                         svc->cfg.max_streams_per_job);
        goto fail;
    }
    s->fd = store_job_open_output(s->job);
    if (s->fd < 0) {
        r = jw_error_errno_code(err, JW_INTERNAL, s->fd, "open output of job '%s'", s->job_id);
        goto fail;
    }
    r = store_sub_new(s->job, wake, userdata, &s->sub);
    if (r < 0) {
        r = jw_error_errno_code(err, JW_INTERNAL, r, "subscribe to job '%s'", s->job_id);
        goto fail;
    }
    *ret = s;
    return 0;
fail:
    service_stream_free(s);
    return r;
}

void service_stream_stop_wakes(service_stream *s)
{
    if (!s)
        return;
    store_sub_free(s->sub);
    s->sub = NULL;
}

void service_stream_free(service_stream *s)
{
    if (!s)
        return;
    store_sub_free(s->sub);
    if (s->fd >= 0)
        close(s->fd);
    store_job_unref(s->job);
    free(s);
}

service_stream_step service_stream_next(service_stream *s, size_t max, size_t *ret_n, jw_error *err)
{
    for (;;) {
        int64_t size;
        bool closed;
        store_job_output_state(s->job, &size, &closed);
        if (s->offset < size) {
            uint64_t n = (uint64_t)(size - s->offset);
            *ret_n = n > max ? max : (size_t)n;
            return SERVICE_STREAM_SEND;
        }
        store_job_info info;
        store_job_snapshot(s->job, &info);
        if (info.output_dropped > 0 && info.output_errno) {
            char ebuf[128];
            jw_error_set(err, JW_RESOURCE_EXHAUSTED, -info.output_errno,
                         "output of job %s after byte %" PRId64 " could not be stored on the "
                         "server (%s); %" PRId64 " bytes were dropped%s",
                         s->job_id, info.output_errno_at,
                         jw_strerror(info.output_errno, ebuf, sizeof(ebuf)), info.output_dropped,
                         closed ? "" : " (the job is still running)");
            return SERVICE_STREAM_END;
        }
        if (info.output_dropped > 0) {
            /* Nothing past the cap is kept: say so instead of ending as if complete. */
            jw_error_set(err, JW_RESOURCE_EXHAUSTED, -ENOSPC,
                         "output of job %s reached the server's cap of %" PRId64
                         " bytes (--max-output); %" PRId64 " bytes after it were not kept%s",
                         s->job_id, size, info.output_dropped,
                         closed ? "" : " (the job is still running)");
            return SERVICE_STREAM_END;
        }
        if (closed || !s->follow) {
            jw_error_set(err, JW_OK, 0, "%s", "");
            return SERVICE_STREAM_END;
        }
        /* 1: bytes or the end arrived between the check and the arm: look again. */
        if (s->sub && store_sub_arm(s->sub, s->offset) == 0)
            return SERVICE_STREAM_WAIT;
        if (!s->sub) {
            jw_error_set(err, JW_CANCELLED, -ECANCELED, "stream of job %s was stopped", s->job_id);
            return SERVICE_STREAM_END;
        }
    }
}

int64_t service_stream_offset(const service_stream *s)
{
    return s->offset;
}

int service_stream_read(service_stream *s, void *buf, size_t n)
{
    ssize_t got = pread(s->fd, buf, n, s->offset);
    if (got != (ssize_t)n)
        return got < 0 ? -errno : -EIO;
    s->offset += (int64_t)n;
    return 0;
}
