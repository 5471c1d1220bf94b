#include "service/service.h"

#include "service/info.h"

#include "spawn/jobinit-proto.h"
#include "util/defaults.h"
#include "util/log.h"
#include "util/misc.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_MAX_STREAMS_PER_JOB JW_DEFAULT_MAX_STREAMS_PER_JOB

struct service {
    service_config cfg;
    jobqueue *queue;
    pthread_t dispatchers[SERVICE_DISPATCHERS];
    size_t n_dispatchers;
    pthread_mutex_t lock; /* guards poked and stop */
    pthread_cond_t cond;
    bool poked, stop;
    pthread_rwlock_t policy_lock; /* guards cfg.policy (swapped on SIGHUP) */
    int64_t start_ns;             /* realtime, for GetServerInfo's uptime */
};

struct service_stream {
    store_job *job;
    store_sub *sub;
    store_cursor *cur;
    job_stream chunk_stream; /* of the last SEND */
    bool follow;
    char job_id[UUID_STR_LEN];
};

/* ---- admission: what a started job reserved is released at its end ---- */

static void poke(service *svc)
{
    pthread_mutex_lock(&svc->lock);
    svc->poked = true;
    pthread_cond_signal(&svc->cond);
    pthread_mutex_unlock(&svc->lock);
}

static void job_ended(store_job *job, void *userdata)
{
    service *svc = userdata;
    store_job_info info;
    store_job_snapshot(job, &info);
    jobqueue_release(svc->queue, info.owner, info.limits.memory_bytes, info.limits.cpu_percent);
    poke(svc);
}

/* Called once a job holding reserved resources is started (or failed to): they are released at
 * its end. */
static void release_at_end(service *svc, store_job *job)
{
    int r = store_job_on_final(job, job_ended, svc);
    if (r == 1)
        job_ended(job, svc);
    else if (r < 0) {
        /* Only with 1024 stop calls waiting on it, or out of memory: release now, which
         * overcommits by this one job until it ends. */
        log_error_errno(r,
                        "job %s: cannot wait for its end to free its share of the capacity "
                        "(%m): freed now",
                        store_job_id(job));
        job_ended(job, svc);
    }
}

static void quota_of(service *svc, const char *owner, auth_role role, jobqueue_quota *ret)
{
    *ret = (jobqueue_quota){0};
    pthread_rwlock_rdlock(&svc->policy_lock);
    if (svc->cfg.policy) {
        policy_quota q;
        policy_quota_for(svc->cfg.policy, owner,
                         role == AUTH_ROLE_NONE ? NULL : auth_role_name(role), &q);
        *ret = (jobqueue_quota){.max_running = q.max_running,
                                .max_queued = q.max_queued,
                                .memory_bytes = q.max_memory,
                                .cpu_percent = q.max_cpu};
    }
    pthread_rwlock_unlock(&svc->policy_lock);
}

/* The policy's ceilings and allow-list against a validated request with its effective limits.
 * A job without a timeout gets the timeout ceiling as its timeout. */
static int check_policy(service *svc, const job_request *req, const job_limits *eff,
                        int32_t *timeout, jw_error *err)
{
    pthread_rwlock_rdlock(&svc->policy_lock);
    const policy *p = svc->cfg.policy;
    const char *file = svc->cfg.policy_name ? svc->cfg.policy_name : "the policy";
    int r = 0;
    if (p) {
        const policy_ceiling *c = policy_ceilings(p);
        struct {
            const char *what, *key;
            int64_t asked, ceiling;
        } checks[] = {
            {"memory_bytes", "memory", eff->memory_bytes, c->memory_bytes},
            {"memory_high_bytes", "memory-high", eff->memory_high_bytes, c->memory_high_bytes},
            {"io_bps", "io", eff->io_bps, c->io_bps},
            {"cpu_percent", "cpu", eff->cpu_percent, c->cpu_percent},
            {"pids_max", "pids", eff->pids_max, c->pids_max},
            {"timeout_seconds", "timeout", *timeout, c->timeout_seconds},
        };
        for (size_t i = 0; r == 0 && i < sizeof(checks) / sizeof(checks[0]); i++)
            if (checks[i].ceiling > 0 && checks[i].asked > checks[i].ceiling)
                r = jw_error_set(err, JW_PERMISSION_DENIED, -EPERM,
                                 "%s %lld is above the ceiling %lld ([ceiling] %s in %s)",
                                 checks[i].what, (long long)checks[i].asked,
                                 (long long)checks[i].ceiling, checks[i].key, file);
        if (r == 0 && *timeout == 0 && c->timeout_seconds > 0)
            *timeout = (int32_t)c->timeout_seconds;
        if (r == 0 && policy_n_allow(p) > 0 && !policy_command_allowed(p, req->command))
            r = jw_error_set(err, JW_PERMISSION_DENIED, -EPERM,
                             "command '%.256s' is not allowed by [allow] in %s (give an "
                             "absolute path under an allowed directory or to an allowed file)",
                             req->command, file);
    }
    pthread_rwlock_unlock(&svc->policy_lock);
    return r;
}

void service_set_policy(service *svc, policy *p)
{
    pthread_rwlock_wrlock(&svc->policy_lock);
    policy *old = svc->cfg.policy;
    svc->cfg.policy = p;
    pthread_rwlock_unlock(&svc->policy_lock);
    policy_free(old);
}

/* Ends a queued job that will never run. */
static void end_unstarted(store_job *job, job_reason reason, const char *why)
{
    store_job_finish(job, reason, 0, 0, why, NULL, now_realtime_ns());
    store_job_close_output(job);
}

/* Starts a job the queue handed out (its resources reserved); takes the queue's reference. */
static void start_queued(service *svc, store_job *job)
{
    jw_error err = JW_ERROR_INIT;
    if (store_job_stop_reason(job) != JOB_REASON_UNSPECIFIED) {
        /* Stopped while the dispatcher took it: it never runs. */
        end_unstarted(job, JOB_REASON_STOPPED, "stopped while queued; it never ran");
    } else if (store_job_dequeue(job, &err) < 0) {
        if (store_job_status(job) == JOB_STATUS_QUEUED) {
            log_error("%s: the job fails without running", err.msg);
            end_unstarted(job, JOB_REASON_START_FAILED, err.msg);
        }
    } else if (supervisor_start_job(svc->cfg.sv, job, &err) < 0) {
        /* Not the job's fault, but the client was told it is queued: it ends FAILED. */
        log_error("job %s: start after the queue: %s", store_job_id(job), err.msg);
        store_job_finish(job, JOB_REASON_START_FAILED, JOBINIT_EXIT_FAILED, 0, err.msg, NULL,
                         now_realtime_ns());
        store_job_close_output(job);
    }
    release_at_end(svc, job);
    store_job_unref(job);
}

static void *dispatcher_main(void *arg)
{
    service *svc = arg;
    pthread_mutex_lock(&svc->lock);
    while (!svc->stop) {
        while (!svc->poked && !svc->stop)
            pthread_cond_wait(&svc->cond, &svc->lock);
        svc->poked = false;
        while (!svc->stop) {
            pthread_mutex_unlock(&svc->lock);
            store_job *job = jobqueue_next(svc->queue);
            pthread_mutex_lock(&svc->lock);
            if (!job)
                break;
            /* Another dispatcher may take the next one while this one starts it. */
            svc->poked = true;
            pthread_cond_signal(&svc->cond);
            pthread_mutex_unlock(&svc->lock);
            start_queued(svc, job);
            pthread_mutex_lock(&svc->lock);
        }
    }
    pthread_mutex_unlock(&svc->lock);
    return NULL;
}

/* Queues again the jobs a previous server accepted and never started, oldest first. */
static int restore_queue(service *svc, jw_error *err)
{
    store_job **v = NULL;
    size_t n = store_queued_jobs(svc->cfg.st, &v);
    int r = 0;
    for (size_t i = 0; i < n; i++) {
        store_job_info info;
        store_job_snapshot(v[i], &info);
        /* The role is not recorded: the owner's own and the default quotas apply. */
        jobqueue_quota q;
        quota_of(svc, info.owner, AUTH_ROLE_NONE, &q);
        if (r == 0 && jobqueue_enqueue(svc->queue, v[i], info.owner, &q, info.limits.memory_bytes,
                                       info.limits.cpu_percent) == 0)
            continue; /* the queue holds this reference */
        r = jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
        store_job_unref(v[i]);
    }
    free(v);
    return r;
}

int service_new(const service_config *cfg, service **ret, jw_error *err)
{
    service *svc = calloc(1, sizeof(*svc));
    if (!svc) {
        policy_free(cfg->policy);
        return jw_error_errno(err, ENOMEM, "create service");
    }
    svc->cfg = *cfg;
    svc->start_ns = now_realtime_ns();
    if (svc->cfg.max_streams_per_job <= 0)
        svc->cfg.max_streams_per_job = DEFAULT_MAX_STREAMS_PER_JOB;
    pthread_mutex_init(&svc->lock, NULL);
    pthread_cond_init(&svc->cond, NULL);
    pthread_rwlock_init(&svc->policy_lock, NULL);
    int r = jobqueue_new(&cfg->capacity, &svc->queue);
    if (r < 0) {
        service_free(svc);
        return jw_error_errno(err, -r, "create the job queue");
    }
    r = restore_queue(svc, err);
    if (r < 0) {
        service_free(svc);
        return r;
    }
    for (size_t i = 0; i < SERVICE_DISPATCHERS; i++) {
        int e = pthread_create(&svc->dispatchers[i], NULL, dispatcher_main, svc);
        if (e) {
            service_free(svc);
            return jw_error_errno(err, e, "start the dispatcher threads");
        }
        svc->n_dispatchers++;
    }
    poke(svc);
    *ret = svc;
    return 0;
}

void service_shutdown(service *svc)
{
    if (!svc || !svc->n_dispatchers)
        return;
    pthread_mutex_lock(&svc->lock);
    svc->stop = true;
    pthread_cond_broadcast(&svc->cond);
    pthread_mutex_unlock(&svc->lock);
    for (size_t i = 0; i < svc->n_dispatchers; i++)
        pthread_join(svc->dispatchers[i], NULL);
    svc->n_dispatchers = 0;
}

void service_free(service *svc)
{
    if (!svc)
        return;
    service_shutdown(svc);
    if (svc->queue) {
        /* Jobs still waiting stay QUEUED in the history; the queue's references go. */
        store_job **v = NULL;
        size_t n = store_queued_jobs(svc->cfg.st, &v);
        for (size_t i = 0; i < n; i++) {
            store_job_info info;
            store_job_snapshot(v[i], &info);
            if (jobqueue_cancel(svc->queue, v[i], info.owner))
                store_job_unref(v[i]);
            store_job_unref(v[i]);
        }
        free(v);
        jobqueue_free(svc->queue);
    }
    pthread_mutex_destroy(&svc->lock);
    pthread_cond_destroy(&svc->cond);
    pthread_rwlock_destroy(&svc->policy_lock);
    policy_free(svc->cfg.policy);
    free(svc);
}

void service_set_capacity(service *svc, const jobqueue_capacity *cap)
{
    jobqueue_set_capacity(svc->queue, cap);
    poke(svc);
}

int64_t service_queue_position(service *svc, store_job *job)
{
    store_job_info info;
    store_job_snapshot(job, &info);
    if (info.status != JOB_STATUS_QUEUED)
        return 0;
    return jobqueue_position(svc->queue, job, info.owner);
}

void service_queue_stats(service *svc, jobqueue_stats *ret)
{
    jobqueue_get_stats(svc->queue, ret);
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
    int32_t timeout = (int32_t)req->timeout_seconds;
    r = check_policy(svc, req, &eff, &timeout, err);
    if (r < 0)
        return r;
    store_job_spec spec = {
        .command = req->command,
        .args = req->args,
        .nargs = req->nargs,
        .limits = eff,
        .limits_enforced = svc->cfg.host.cgroups,
        .timeout_seconds = timeout,
        .owner = caller->cn,
        .network = req->network != JOB_NETWORK_DEFAULT ? (job_network)req->network
                                                       : svc->cfg.default_network,
        .user = svc->cfg.job_user_display,
        .stdin_pipe = req->stdin_pipe,
        .env = req->env,
        .nenv = req->nenv,
    };
    jobqueue_quota quota;
    quota_of(svc, caller->cn, caller->role, &quota);
    bool now = false;
    r = jobqueue_admit(svc->queue, caller->cn, &quota, eff.memory_bytes, eff.cpu_percent, &now,
                       err);
    if (r < 0)
        return r;
    spec.queued = !now;
    store_job *job = NULL;
    r = store_job_new(svc->cfg.st, &spec, &job, err);
    if (r < 0) {
        if (now) {
            jobqueue_release(svc->queue, caller->cn, eff.memory_bytes, eff.cpu_percent);
            poke(svc); /* a job queued meanwhile may fit in what this one gives back */
        }
        return r;
    }
    if (!now) {
        if (jobqueue_enqueue(svc->queue, store_job_ref(job), caller->cn, &quota, eff.memory_bytes,
                             eff.cpu_percent) < 0) {
            store_job_unref(job);
            store_job_remove(svc->cfg.st, job);
            store_job_unref(job);
            return jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
        }
        poke(svc); /* capacity may have freed since the admission */
        *ret = job;
        return 0;
    }
    r = supervisor_start_job(svc->cfg.sv, job, err);
    if (r < 0) {
        /* Not the job's fault (no cgroup, no fd...): the supervisor left nothing behind, and
         * the job goes too, so the failed call changed nothing. */
        jobqueue_release(svc->queue, caller->cn, eff.memory_bytes, eff.cpu_percent);
        poke(svc);
        store_job_remove(svc->cfg.st, job);
        store_job_unref(job);
        return r;
    }
    release_at_end(svc, job);
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

/* The caller may call `method`, and the job exists: *ret is a new reference. */
static int authorized_job(service *svc, const auth_identity *caller, auth_method method,
                          const char *id, store_job **ret, jw_error *err)
{
    int r = service_authorize(caller, method, err);
    return r < 0 ? r : find_job(svc, id, ret, err);
}

int service_get_job(service *svc, const auth_identity *caller, const char *id, store_job **ret,
                    jw_error *err)
{
    return authorized_job(svc, caller, AUTH_METHOD_GET_JOB, id, ret, err);
}

int service_stop_job(service *svc, const auth_identity *caller, const char *id, store_final_fn done,
                     void *userdata, store_job **ret, jw_error *err)
{
    store_job *job = NULL;
    int r = authorized_job(svc, caller, AUTH_METHOD_STOP_JOB, id, &job, err);
    if (r < 0)
        return r;
    store_job_info info;
    store_job_snapshot(job, &info);
    if (info.status == JOB_STATUS_QUEUED && jobqueue_cancel(svc->queue, job, info.owner)) {
        /* Off the queue before it started: it ends STOPPED without ever running. */
        end_unstarted(job, JOB_REASON_STOPPED, "stopped while queued; it never ran");
        store_job_unref(job); /* the queue's */
        poke(svc);
    }
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
        if (st < JOB_STATUS_INITIALIZING || st > JOB_STATUS_QUEUED)
            return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                                "status %d is not a job status (1 INITIALIZING to 6 QUEUED)", st);
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

/* ---- GetServerInfo ---- */

int service_server_info(service *svc, const auth_identity *caller, service_info *ret, jw_error *err)
{
    int r = service_authorize(caller, AUTH_METHOD_GET_SERVER_INFO, err);
    if (r < 0)
        return r;
    memset(ret, 0, sizeof(*ret));
    r = store_count_by_status(svc->cfg.st, ret->jobs, err);
    if (r < 0)
        return r;
    snprintf(ret->version, sizeof(ret->version), "%s", JW_VERSION);
    snprintf(ret->build, sizeof(ret->build), "%s %s, SQLite %s", JW_COMPILER, __VERSION__,
             store_db_library_version());
    if (gethostname(ret->hostname, sizeof(ret->hostname) - 1) < 0)
        ret->hostname[0] = '\0';
    snprintf(ret->cgroup, sizeof(ret->cgroup), "%s",
             svc->cfg.cgroup_path ? svc->cfg.cgroup_path : "");
    ret->start_time_ns = svc->start_ns;
    ret->uptime_s = (now_realtime_ns() - svc->start_ns) / 1000000000;
    ret->host = svc->cfg.host;
    ret->defaults = svc->cfg.defaults;
    ret->default_network = svc->cfg.default_network;
    jobqueue_get_capacity(svc->queue, &ret->capacity);
    jobqueue_get_stats(svc->queue, &ret->queue);
    ret->max_jobs = svc->cfg.max_jobs;
    ret->max_output_bytes = svc->cfg.max_output_bytes;
    ret->max_streams = svc->cfg.max_streams;
    ret->max_streams_per_job = svc->cfg.max_streams_per_job;
    ret->max_streams_per_client = svc->cfg.max_streams_per_client;
    service_read_load(ret->load, &ret->memory_available, ret->pressure);
    return 0;
}

/* ---- Standard input ---- */

int service_stdin_open(service *svc, const auth_identity *caller, const char *id, store_job **ret,
                       jw_error *err)
{
    store_job *job = NULL;
    int r = authorized_job(svc, caller, AUTH_METHOD_WRITE_STDIN, id, &job, err);
    if (r < 0)
        return r;
    store_job_info info;
    store_job_snapshot(job, &info);
    if (!info.stdin_pipe)
        r = jw_error_set(err, JW_FAILED_PRECONDITION, -EINVAL,
                         "job '%s' was created without stdin (CreateJob with stdin; jobctl create "
                         "--stdin FILE, or jobctl run with a pipe)",
                         id);
    else if (job_status_is_final(info.status))
        r = jw_error_set(err, JW_FAILED_PRECONDITION, -ESRCH, "job '%s' has ended (%s)", id,
                         job_status_name(info.status));
    if (r < 0) {
        store_job_unref(job);
        return r;
    }
    *ret = job;
    return 0;
}

int service_stdin_take(service *svc, store_job *job, int *ret_fd, jw_error *err)
{
    job_status st = store_job_status(job);
    if (st == JOB_STATUS_QUEUED || st == JOB_STATUS_INITIALIZING)
        return 1;
    int r = supervisor_take_stdin(svc->cfg.sv, job, ret_fd);
    if (r == -EAGAIN)
        return job_status_is_final(store_job_status(job))
                   ? jw_error_set(err, JW_FAILED_PRECONDITION, -ESRCH, "job '%s' has ended",
                                  store_job_id(job))
                   : 1;
    if (r == -EBUSY)
        return jw_error_set(err, JW_FAILED_PRECONDITION, -EBUSY,
                            "job '%s' already has a writer of its stdin (one per job)",
                            store_job_id(job));
    if (r < 0)
        return jw_error_set(err, JW_FAILED_PRECONDITION, -ESRCH,
                            "job '%s' has ended before its stdin was written", store_job_id(job));
    return 0;
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
    if (req->select < JOB_STREAM_BOTH || req->select > JOB_STREAM_STDERR)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "stream %d is not an output stream (0 both, 1 stdout, 2 stderr)",
                            req->select);
    service_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return jw_error_errno(err, ENOMEM, "open stream");
    s->follow = req->follow;
    r = find_job(svc, req->id, &s->job, err);
    if (r < 0)
        goto fail;
    snprintf(s->job_id, sizeof(s->job_id), "%s", req->id);
    snprintf(ret_job_id, UUID_STR_LEN, "%s", req->id);

    if (store_job_n_subs(s->job) >= (size_t)svc->cfg.max_streams_per_job) {
        r = jw_error_set(err, JW_RESOURCE_EXHAUSTED, -EBUSY,
                         "job '%s' already has %d streams, the limit per job", s->job_id,
                         svc->cfg.max_streams_per_job);
        goto fail;
    }
    r = store_cursor_open(s->job, (job_stream)req->select, req->offset, &s->cur, err);
    if (r < 0)
        goto fail;
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
    store_cursor_free(s->cur);
    store_job_unref(s->job);
    free(s);
}

service_stream_step service_stream_next(service_stream *s, size_t max, size_t *ret_n, jw_error *err)
{
    for (;;) {
        int64_t size;
        bool closed;
        store_job_output_state(s->job, &size, &closed);
        int r = store_cursor_avail(s->cur, size, max, ret_n, &s->chunk_stream);
        if (r < 0) {
            jw_error_errno_code(err, JW_INTERNAL, -r, "read the output index of job %s", s->job_id);
            return SERVICE_STREAM_END;
        }
        if (*ret_n > 0)
            return SERVICE_STREAM_SEND;
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
        if (s->sub && store_sub_arm(s->sub, store_cursor_log_pos(s->cur)) == 0)
            return SERVICE_STREAM_WAIT;
        if (!s->sub) {
            jw_error_set(err, JW_CANCELLED, -ECANCELED, "stream of job %s was stopped", s->job_id);
            return SERVICE_STREAM_END;
        }
    }
}

int64_t service_stream_offset(const service_stream *s)
{
    return store_cursor_offset(s->cur);
}

job_stream service_stream_chunk_stream(const service_stream *s)
{
    return s->chunk_stream;
}

int service_stream_read(service_stream *s, void *buf, size_t n)
{
    return store_cursor_read(s->cur, buf, n);
}
