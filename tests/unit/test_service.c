/* The service layer's decision tables, without gRPC: role x method, request x validation,
 * job state x StopJob, and stream bookkeeping, over a real store, supervisor and job-init
 * (no cgroups on this host: limits are the vm tier's). */
#include "service/service.h"
#include "util/defaults.h"
#include "util/misc.h"

#include <errno.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct fixture {
    char dir[64];
    store *st;
    supervisor *sv;
    service *svc;
} fixture;

static const auth_identity admin = {.cn = "alice", .role = AUTH_ROLE_ADMIN};
static const auth_identity viewer = {.cn = "victor", .role = AUTH_ROLE_VIEWER};
static const auth_identity nobody = {.cn = "mallory", .role = AUTH_ROLE_NONE, .why = "no OU"};

/* Admission settings and policy of the next fixture (the capacity test sets them). */
static jobqueue_capacity next_capacity;
static const char *next_policy;

static int setup_with(void **state, bool cgroups, int64_t grace_ms, int streams_per_job)
{
    fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/jw-service-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    jw_error err = JW_ERROR_INIT;
    store_config sc = {.data_dir = f->dir, .max_jobs = 1000};
    assert_int_equal(store_new(&sc, &f->st, &err), 0);
    const char *ji = getenv("JW_JOB_INIT");
    supervisor_config svc = {.job_init_path = ji ? ji : "build/release/bin/job-init",
                             .stop_grace_ms = grace_ms,
                             .job_uid = -1,
                             .job_gid = -1};
    assert_int_equal(supervisor_new(&svc, f->st, &f->sv, &err), 0);
    service_config cfg = {.st = f->st,
                          .sv = f->sv,
                          .defaults = {.cpu_percent = 100, .memory_bytes = 512LL << 20},
                          .default_network = JOB_NETWORK_NONE,
                          .job_user_display = "nobody (65534:65534)",
                          .max_streams_per_job = streams_per_job,
                          .capacity = next_capacity,
                          .policy_name = "test.conf"};
    if (next_policy)
        assert_int_equal(policy_parse("test.conf", next_policy, &cfg.policy, &err), 0);
    assert_int_equal(job_host_probe(&cfg.host), 0);
    cfg.host.cgroups = cgroups;
    assert_int_equal(service_new(&cfg, &f->svc, &err), 0);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_with(state, false, 100, 2);
}

/* Limits are resolved as on a host with cgroups; the supervisor runs without them here. */
static int setup_cgroups(void **state)
{
    return setup_with(state, true, 100, 2);
}

static int setup_long_grace(void **state)
{
    return setup_with(state, false, 2000, 2);
}

/* Limits resolved as with cgroups; memory capacity 100 MiB; alice may queue 2 jobs. */
static int setup_capacity(void **state)
{
    next_capacity = (jobqueue_capacity){.memory_bytes = 100 << 20};
    next_policy = "[owner alice]\nmax-queued = 2\n[ceiling]\npids = 50\ntimeout = 1h\n"
                  "[allow]\npath = /bin/\npath = /usr/bin/\n";
    int r = setup_with(state, true, 100, 2);
    next_capacity = (jobqueue_capacity){0};
    next_policy = NULL;
    return r;
}

static int teardown(void **state)
{
    fixture *f = *state;
    service_shutdown(f->svc);
    supervisor_shutdown(f->sv);
    service_free(f->svc);
    supervisor_free(f->sv);
    store_free(f->st);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static store_job *create(fixture *f, const char *script)
{
    const char *args[] = {"-c", script};
    job_request req = {.command = "sh", .command_len = 2, .args = args, .nargs = 2};
    store_job *job = NULL;
    jw_error err = JW_ERROR_INIT;
    if (service_create_job(f->svc, &admin, &req, &job, &err) < 0)
        fail_msg("create: %s", err.msg);
    return job;
}

static void wait_final(store_job *job)
{
    assert_int_equal(store_job_wait_final(job, 30000), 0);
}

/* Written on the supervisor's thread, read here: calls is the release/acquire point. */
typedef struct stop_seen {
    atomic_int calls;
    int result;
    jw_code code;
    job_status status;
} stop_seen;

static void on_stopped(store_job *job, void *userdata)
{
    stop_seen *s = userdata;
    jw_error err = JW_ERROR_INIT;
    s->result = service_stop_result(job, &err);
    s->code = err.code;
    s->status = store_job_status(job);
    atomic_fetch_add(&s->calls, 1);
}

/* Role x method: who may call what, and the code of a refusal. Every refused call changes
 * nothing: no job is created, none is stopped. */
static void test_roles_by_method(void **state)
{
    fixture *f = *state;
    store_job *job = create(f, "sleep 30");
    const char *id = store_job_id(job);
    const auth_identity *callers[] = {NULL, &nobody, &viewer, &admin};
    /* Expected codes per caller, for CreateJob, GetJob, StopJob, GetJobs, GetJobsStream,
     * DeleteJob, WriteStdin, GetServerInfo. */
    const jw_code want[4][8] = {
        {JW_UNAUTHENTICATED, JW_UNAUTHENTICATED, JW_UNAUTHENTICATED, JW_UNAUTHENTICATED,
         JW_UNAUTHENTICATED, JW_UNAUTHENTICATED, JW_UNAUTHENTICATED, JW_UNAUTHENTICATED},
        {JW_PERMISSION_DENIED, JW_PERMISSION_DENIED, JW_PERMISSION_DENIED, JW_PERMISSION_DENIED,
         JW_PERMISSION_DENIED, JW_PERMISSION_DENIED, JW_PERMISSION_DENIED, JW_PERMISSION_DENIED},
        {JW_PERMISSION_DENIED, JW_OK, JW_PERMISSION_DENIED, JW_OK, JW_OK, JW_PERMISSION_DENIED,
         JW_PERMISSION_DENIED, JW_OK},
        {JW_OK, JW_OK, JW_OK, JW_OK, JW_OK, JW_OK, JW_OK, JW_OK},
    };
    for (int c = 0; c < 4; c++) {
        for (int m = 0; m <= AUTH_METHOD_GET_SERVER_INFO; m++) {
            jw_error err = JW_ERROR_INIT;
            int r = service_authorize(callers[c], (auth_method)m, &err);
            assert_int_equal(r < 0 ? err.code : JW_OK, want[c][m]);
            if (r < 0)
                assert_true(strlen(err.msg) > 0);
        }
        size_t before = store_count(f->st);
        const char *args[] = {"-c", "true"};
        job_request req = {.command = "sh", .command_len = 2, .args = args, .nargs = 2};
        jw_error err = JW_ERROR_INIT;
        store_job *got = NULL;
        int r = service_create_job(f->svc, callers[c], &req, &got, &err);
        assert_int_equal(r < 0 ? err.code : JW_OK, want[c][AUTH_METHOD_CREATE_JOB]);
        if (r == 0) {
            wait_final(got);
            store_job_unref(got);
        } else {
            assert_int_equal(store_count(f->st), before);
        }
        r = service_get_job(f->svc, callers[c], id, &got, &err);
        assert_int_equal(r < 0 ? err.code : JW_OK, want[c][AUTH_METHOD_GET_JOB]);
        if (r == 0)
            store_job_unref(got);
        store_job **jobs = NULL;
        size_t n = 0;
        char next[SERVICE_PAGE_TOKEN_MAX];
        service_list_req lr = {0};
        r = service_list_jobs(f->svc, callers[c], &lr, &jobs, &n, next, &err);
        assert_int_equal(r < 0 ? err.code : JW_OK, want[c][AUTH_METHOD_GET_JOBS]);
        for (size_t i = 0; r == 0 && i < n; i++)
            store_job_unref(jobs[i]);
        free(jobs);
        service_info si;
        r = service_server_info(f->svc, callers[c], &si, &err);
        assert_int_equal(r < 0 ? err.code : JW_OK, want[c][AUTH_METHOD_GET_SERVER_INFO]);
        if (r == 0) {
            assert_string_equal(si.version, JW_VERSION);
            assert_true(si.jobs[JOB_STATUS_RUNNING] >= 1); /* the sleep */
            assert_true(si.uptime_s >= 0 && si.start_time_ns > 0);
        }
        if (want[c][AUTH_METHOD_WRITE_STDIN] != JW_OK) {
            r = service_stdin_open(f->svc, callers[c], id, &got, &err);
            assert_int_equal(err.code, want[c][AUTH_METHOD_WRITE_STDIN]);
            assert_true(r < 0);
        }
        if (want[c][AUTH_METHOD_DELETE_JOB] != JW_OK) {
            /* Refused before the job is looked at: the running job stays. */
            r = service_delete_job(f->svc, callers[c], id, &got, &err);
            assert_int_equal(err.code, want[c][AUTH_METHOD_DELETE_JOB]);
            assert_true(r < 0);
        }
        if (want[c][AUTH_METHOD_STOP_JOB] != JW_OK) {
            r = service_stop_job(f->svc, callers[c], id, NULL, NULL, &got, &err);
            assert_int_equal(err.code, want[c][AUTH_METHOD_STOP_JOB]);
            assert_true(r < 0);
            assert_int_equal(store_job_status(job), JOB_STATUS_RUNNING);
            assert_int_equal(store_job_stop_reason(job), JOB_REASON_UNSPECIFIED);
        }
    }
    store_job *stopped = NULL;
    jw_error err = JW_ERROR_INIT;
    stop_seen seen = {0};
    assert_int_equal(service_stop_job(f->svc, &admin, id, on_stopped, &seen, &stopped, &err), 1);
    wait_final(job);
    for (int i = 0; i < 500 && seen.calls == 0; i++)
        usleep(2000);
    assert_int_equal(seen.calls, 1);
    store_job_unref(stopped);
    store_job_unref(job);
}

/* Request x validation: the service validates before anything is created and resolves what the
 * request leaves out. */
static void test_create_rules(void **state)
{
    fixture *f = *state;
    jw_error err = JW_ERROR_INIT;
    store_job *job = NULL;
    job_request empty = {.command = "", .command_len = 0};
    assert_true(service_create_job(f->svc, &admin, &empty, &job, &err) < 0);
    assert_int_equal(err.code, JW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "command"));
    /* Without cgroups a request that names a limit is refused: nothing would enforce it. */
    job_request lim = {.command = "true", .command_len = 4, .limits = {.memory_bytes = 64 << 20}};
    assert_true(service_create_job(f->svc, &admin, &lim, &job, &err) < 0);
    assert_int_equal(err.code, JW_FAILED_PRECONDITION);
    job_request badnet = {.command = "true", .command_len = 4, .network = 7};
    assert_true(service_create_job(f->svc, &admin, &badnet, &job, &err) < 0);
    assert_int_equal(err.code, JW_INVALID_ARGUMENT);
    assert_int_equal(store_count(f->st), 0);

    /* A valid request: owner from the certificate, defaults resolved, nothing pretended. */
    job_request ok = {.command = "true", .command_len = 4};
    assert_int_equal(service_create_job(f->svc, &admin, &ok, &job, &err), 0);
    wait_final(job);
    store_job_info info;
    store_job_snapshot(job, &info);
    assert_string_equal(info.owner, "alice");
    assert_int_equal(info.network, JOB_NETWORK_NONE);
    assert_false(info.limits_enforced);
    assert_int_equal(info.limits.memory_bytes, 0);
    assert_string_equal(info.user, "nobody (65534:65534)");
    assert_int_equal(info.status, JOB_STATUS_COMPLETED);
    store_job_unref(job);

    /* A command that does not exist is the job's own failure: the call succeeds, the job says. */
    job_request missing = {.command = "/nonexistent/cmd", .command_len = 16};
    assert_int_equal(service_create_job(f->svc, &admin, &missing, &job, &err), 0);
    wait_final(job);
    store_job_snapshot(job, &info);
    assert_int_equal(info.status, JOB_STATUS_FAILED);
    assert_int_equal(info.reason, JOB_REASON_START_FAILED);
    assert_non_null(strstr(info.error, "/nonexistent/cmd"));
    store_job_unref(job);
}

static void test_create_resolves_defaults(void **state)
{
    fixture *f = *state;
    jw_error err = JW_ERROR_INIT;
    store_job *job = NULL;
    job_request req = {.command = "true",
                       .command_len = 4,
                       .limits = {.memory_bytes = 64 << 20},
                       .network = JOB_NETWORK_HOST};
    assert_int_equal(service_create_job(f->svc, &admin, &req, &job, &err), 0);
    wait_final(job);
    store_job_info info;
    store_job_snapshot(job, &info);
    assert_true(info.limits_enforced);
    assert_int_equal(info.limits.memory_bytes, 64 << 20);
    assert_int_equal(info.limits.cpu_percent, 100); /* the default fills what was left out */
    assert_int_equal(info.network, JOB_NETWORK_HOST);
    store_job_unref(job);
}

static store_job *create_mem(fixture *f, const char *script, int64_t memory, jw_error *err)
{
    const char *args[] = {"-c", script};
    job_request req = {.command = "/bin/sh",
                       .command_len = 7,
                       .args = args,
                       .nargs = 2,
                       .limits = {.memory_bytes = memory}};
    store_job *job = NULL;
    return service_create_job(f->svc, &admin, &req, &job, err) < 0 ? NULL : job;
}

static jobqueue_stats wait_running(fixture *f, int64_t n)
{
    jobqueue_stats qs;
    for (int i = 0; i < 500; i++) {
        service_queue_stats(f->svc, &qs);
        if (qs.running == n)
            break;
        usleep(10 * 1000);
    }
    assert_int_equal(qs.running, n);
    return qs;
}

/* Jobs whose memory.max sum passes the capacity wait; one above it is refused at once and
 * leaves nothing; a queued job stops without running; the owner's max-queued quota refuses. */
static void test_capacity_and_queue(void **state)
{
    fixture *f = *state;
    jw_error err = JW_ERROR_INIT;
    store_job *a = create_mem(f, "sleep 30", 60 << 20, &err);
    assert_non_null(a);
    assert_int_equal(store_job_status(a), JOB_STATUS_RUNNING);
    store_job_info ai;
    store_job_snapshot(a, &ai);
    assert_int_equal(ai.timeout_seconds, 3600); /* the ceiling, for a job that asked none */

    /* The policy's ceilings and allow-list refuse before anything exists. */
    size_t n0 = store_count(f->st);
    const char *sargs[] = {"-c", "true"};
    job_request big = {.command = "/bin/sh",
                       .command_len = 7,
                       .args = sargs,
                       .nargs = 2,
                       .limits = {.pids_max = 51}};
    store_job *none = NULL;
    assert_int_equal(service_create_job(f->svc, &admin, &big, &none, &err), -EPERM);
    assert_int_equal(err.code, JW_PERMISSION_DENIED);
    assert_non_null(strstr(err.msg, "pids_max 51 is above the ceiling 50 ([ceiling] pids in "
                                    "test.conf)"));
    job_request bare = {.command = "sh", .command_len = 2, .args = sargs, .nargs = 2};
    assert_int_equal(service_create_job(f->svc, &admin, &bare, &none, &err), -EPERM);
    assert_non_null(strstr(err.msg, "command 'sh' is not allowed by [allow] in test.conf"));
    job_request other = {.command = "/sbin/true", .command_len = 10};
    assert_int_equal(service_create_job(f->svc, &admin, &other, &none, &err), -EPERM);
    job_request slow = {.command = "/bin/true", .command_len = 9, .timeout_seconds = 3601};
    assert_int_equal(service_create_job(f->svc, &admin, &slow, &none, &err), -EPERM);
    assert_non_null(strstr(err.msg, "timeout_seconds 3601"));
    assert_int_equal(store_count(f->st), n0);
    store_job *b = create_mem(f, "echo b", 60 << 20, &err);
    assert_non_null(b);
    assert_int_equal(store_job_status(b), JOB_STATUS_QUEUED); /* 120 MiB > 100 MiB */
    assert_int_equal(service_queue_position(f->svc, b), 1);
    size_t before = store_count(f->st);
    assert_null(create_mem(f, "true", 200 << 20, &err));
    assert_int_equal(err.code, JW_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(err.msg, "209715200"));
    assert_non_null(strstr(err.msg, "--capacity-memory"));
    assert_int_equal(store_count(f->st), before); /* nothing of it exists */

    store_job *c = create_mem(f, "echo c", 10 << 20, &err); /* fits, but b waits: FIFO */
    assert_non_null(c);
    assert_int_equal(store_job_status(c), JOB_STATUS_QUEUED);
    assert_null(create_mem(f, "true", 10 << 20, &err)); /* alice's third queued job */
    assert_non_null(strstr(err.msg, "max-queued quota"));

    /* Stopping the queued b ends it STOPPED, never started; c stays queued behind a. */
    store_job *got = NULL;
    assert_int_equal(service_stop_job(f->svc, &admin, store_job_id(b), NULL, NULL, &got, &err), 0);
    store_job_info info;
    store_job_snapshot(got, &info);
    assert_int_equal(info.status, JOB_STATUS_STOPPED);
    assert_int_equal(info.start_time_ns, 0);
    store_job_unref(got);
    /* c fits beside a (70 MiB): it starts once the dispatcher runs. */
    wait_final(c);
    assert_int_equal(store_job_status(c), JOB_STATUS_COMPLETED);
    jobqueue_stats qs = wait_running(f, 1); /* released by the end callback, just after */
    assert_int_equal(qs.memory_bytes, 60 << 20);

    /* A waits-for-memory job starts when a ends. */
    store_job *d = create_mem(f, "echo d", 50 << 20, &err);
    assert_non_null(d);
    assert_int_equal(store_job_status(d), JOB_STATUS_QUEUED);
    got = NULL;
    stop_seen seen = {0};
    int r = service_stop_job(f->svc, &admin, store_job_id(a), on_stopped, &seen, &got, &err);
    assert_int_equal(r, 1); /* answered at a's end */
    wait_final(d);
    assert_int_equal(store_job_status(d), JOB_STATUS_COMPLETED);
    wait_final(a);
    for (int i = 0; i < 500 && atomic_load(&seen.calls) == 0; i++)
        usleep(10 * 1000);
    assert_int_equal(atomic_load(&seen.calls), 1);
    store_job_unref(got);
    qs = wait_running(f, 0); /* every reservation was released */
    assert_int_equal(qs.memory_bytes, 0);
    store_job_unref(a);
    store_job_unref(b);
    store_job_unref(c);
    store_job_unref(d);
}

static void test_get_ids(void **state)
{
    fixture *f = *state;
    jw_error err = JW_ERROR_INIT;
    store_job *job = NULL;
    assert_int_equal(service_get_job(f->svc, &viewer, "", &job, &err), -EINVAL);
    assert_int_equal(err.code, JW_INVALID_ARGUMENT);
    assert_string_equal(err.msg, "id is empty");
    assert_int_equal(service_get_job(f->svc, &viewer, "x'y", &job, &err), -EINVAL);
    assert_int_equal(err.code, JW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "'x'y'"));
    const char *unknown = "0b7f2c1e-1111-4222-8333-444455556666";
    assert_int_equal(service_get_job(f->svc, &viewer, unknown, &job, &err), -ENOENT);
    assert_int_equal(err.code, JW_NOT_FOUND);
    assert_non_null(strstr(err.msg, unknown));
}

/* StopJob x job state: a running job is answered when it is final, through the callback, and no
 * thread waits; a final job is answered at once; an unknown one is NOT_FOUND. */
static void test_stop_by_state(void **state)
{
    fixture *f = *state;
    store_job *job = create(f, "sleep 30");
    stop_seen seen = {0};
    store_job *ref = NULL;
    jw_error err = JW_ERROR_INIT;
    int64_t t0 = now_monotonic_ns();
    assert_int_equal(
        service_stop_job(f->svc, &admin, store_job_id(job), on_stopped, &seen, &ref, &err), 1);
    assert_true((now_monotonic_ns() - t0) / 1000000 < 1000);
    wait_final(job);
    for (int i = 0; i < 500 && seen.calls == 0; i++)
        usleep(2000);
    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.result, 0);
    assert_int_equal(seen.status, JOB_STATUS_STOPPED);
    store_job_unref(ref);

    /* Final already: 0, and the callback is not called. */
    stop_seen again = {0};
    assert_int_equal(
        service_stop_job(f->svc, &admin, store_job_id(job), on_stopped, &again, &ref, &err), 0);
    assert_int_equal(again.calls, 0);
    assert_int_equal(service_stop_result(ref, &err), 0);
    store_job_unref(ref);
    store_job_unref(job);

    const char *unknown = "0b7f2c1e-1111-4222-8333-444455556666";
    assert_int_equal(service_stop_job(f->svc, &admin, unknown, on_stopped, &again, &ref, &err),
                     -ENOENT);
    assert_int_equal(err.code, JW_NOT_FOUND);
    assert_int_equal(again.calls, 0);
}

/* The bug of issue 9: stops of jobs that ignore SIGTERM cost their callers nothing. Eight stops
 * return at once; the jobs end after the grace period (2 s here), killed. */
static void test_stop_storm_does_not_block(void **state)
{
    fixture *f = *state;
    enum { N = 8 };
    store_job *jobs[N], *refs[N];
    stop_seen seen[N];
    memset(seen, 0, sizeof(seen));
    for (int i = 0; i < N; i++)
        jobs[i] = create(f, "trap '' TERM; echo ready; sleep 100");
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < 1000; k++) {
            int64_t size;
            store_job_output_state(jobs[i], &size, NULL);
            if (size > 0)
                break;
            usleep(5000);
        }
    }
    int64_t t0 = now_monotonic_ns();
    for (int i = 0; i < N; i++) {
        jw_error err = JW_ERROR_INIT;
        assert_int_equal(service_stop_job(f->svc, &admin, store_job_id(jobs[i]), on_stopped,
                                          &seen[i], &refs[i], &err),
                         1);
    }
    int64_t ms = (now_monotonic_ns() - t0) / 1000000;
    assert_true(ms < 500); /* today's blocking stop took the grace period per call */
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i].calls, 0);
    for (int i = 0; i < N; i++)
        wait_final(jobs[i]);
    assert_true((now_monotonic_ns() - t0) / 1000000 >= 2000); /* the grace was honoured */
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < 500 && seen[i].calls == 0; k++)
            usleep(2000);
        assert_int_equal(seen[i].calls, 1);
        assert_int_equal(seen[i].status, JOB_STATUS_STOPPED);
        store_job_info info;
        store_job_snapshot(jobs[i], &info);
        assert_int_equal(info.signal, 9);
        store_job_unref(refs[i]);
        store_job_unref(jobs[i]);
    }
}

static void wake_count(void *userdata)
{
    atomic_fetch_add((atomic_int *)userdata, 1);
}

static void test_stream_bookkeeping(void **state)
{
    fixture *f = *state;
    store_job *done = create(f, "printf hello");
    wait_final(done);
    const char *id = store_job_id(done);
    char job_id[UUID_STR_LEN] = "";
    jw_error err = JW_ERROR_INIT;
    service_stream *s = NULL;
    atomic_int wakes = 0;

    service_stream_req neg = {.id = id, .offset = -1};
    assert_int_equal(
        service_stream_open(f->svc, &viewer, &neg, wake_count, &wakes, &s, job_id, &err), -EINVAL);
    assert_int_equal(err.code, JW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "-1"));
    service_stream_req past = {.id = id, .offset = 6};
    assert_int_equal(
        service_stream_open(f->svc, &viewer, &past, wake_count, &wakes, &s, job_id, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "beyond the end"));
    assert_string_equal(job_id, id);
    service_stream_req none = {.id = id, .offset = 0};
    assert_int_equal(
        service_stream_open(f->svc, &nobody, &none, wake_count, &wakes, &s, job_id, &err), -EACCES);
    assert_int_equal(err.code, JW_PERMISSION_DENIED);

    /* A finished job: its bytes in chunks of at most `max`, then the end. */
    service_stream_req from1 = {.id = id, .offset = 1, .follow = true};
    assert_int_equal(
        service_stream_open(f->svc, &viewer, &from1, wake_count, &wakes, &s, job_id, &err), 0);
    size_t n = 0;
    char buf[8];
    assert_int_equal(service_stream_next(s, 3, &n, &err), SERVICE_STREAM_SEND);
    assert_int_equal(n, 3);
    assert_int_equal(service_stream_offset(s), 1);
    assert_int_equal(service_stream_read(s, buf, n), 0);
    assert_memory_equal(buf, "ell", 3);
    assert_int_equal(service_stream_next(s, 3, &n, &err), SERVICE_STREAM_SEND);
    assert_int_equal(n, 1);
    assert_int_equal(service_stream_read(s, buf, n), 0);
    assert_int_equal(service_stream_next(s, 3, &n, &err), SERVICE_STREAM_END);
    assert_int_equal(err.code, JW_OK);

    /* The per-job cap (2 here) counts open streams of the job. */
    service_stream *s2 = NULL, *s3 = NULL;
    assert_int_equal(
        service_stream_open(f->svc, &viewer, &none, wake_count, &wakes, &s2, job_id, &err), 0);
    assert_int_equal(
        service_stream_open(f->svc, &viewer, &none, wake_count, &wakes, &s3, job_id, &err), -EBUSY);
    assert_int_equal(err.code, JW_RESOURCE_EXHAUSTED);
    service_stream_free(s2);
    service_stream_free(s);
    store_job_unref(done);

    /* A running job: caught up means WAIT, and the subscriber is woken when output arrives. */
    store_job *live = create(f, "sleep 2; echo x");
    service_stream_req follow = {.id = store_job_id(live), .offset = 0, .follow = true};
    assert_int_equal(
        service_stream_open(f->svc, &admin, &follow, wake_count, &wakes, &s, job_id, &err), 0);
    assert_int_equal(service_stream_next(s, 64, &n, &err), SERVICE_STREAM_WAIT);
    service_stream_req nofollow = {.id = store_job_id(live), .offset = 0};
    assert_int_equal(
        service_stream_open(f->svc, &admin, &nofollow, wake_count, &wakes, &s2, job_id, &err), 0);
    assert_int_equal(service_stream_next(s2, 64, &n, &err), SERVICE_STREAM_END);
    service_stream_free(s2);
    /* The job prints its line after 2 s and ends; the armed subscriber was woken. */
    wait_final(live);
    assert_true(wakes >= 1);
    assert_int_equal(service_stream_next(s, 64, &n, &err), SERVICE_STREAM_SEND);
    assert_int_equal(n, 2);
    service_stream_free(s);
    store_job_unref(live);
}

static void free_jobs(store_job **jobs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        store_job_unref(jobs[i]);
    free(jobs);
}

/* GetJobs: every bad field is named; pages follow each other newest first without a gap or a
 * repeat; filters apply. */
static void test_list_pages_and_rules(void **state)
{
    fixture *f = *state;
    char ids[5][UUID_STR_LEN];
    for (int i = 0; i < 5; i++) {
        store_job *j = create(f, "true");
        wait_final(j);
        snprintf(ids[i], sizeof(ids[i]), "%s", store_job_id(j));
        store_job_unref(j);
    }
    store_job *run = create(f, "sleep 30");
    store_job **jobs = NULL;
    size_t n = 0;
    char next[SERVICE_PAGE_TOKEN_MAX];
    jw_error err = JW_ERROR_INIT;
    static const int bad_status[] = {2, 9};
    const struct {
        service_list_req req;
        const char *want;
    } bad[] = {
        {{.page_size = -1}, "page_size -1"},
        {{.page_size = 10001}, "page_size 10001"},
        {{.page_token = "abc"}, "page_token 'abc'"},
        {{.page_token = "v1.0"}, "page_token 'v1.0'"},
        {{.page_token = "v1.12x"}, "page_token 'v1.12x'"},
        {{.statuses = bad_status, .n_statuses = 2}, "status 9"},
        {{.since_ns = -5}, "since_unix_ns -5"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(service_list_jobs(f->svc, &viewer, &bad[i].req, &jobs, &n, next, &err),
                         -EINVAL);
        assert_int_equal(err.code, JW_INVALID_ARGUMENT);
        assert_non_null(strstr(err.msg, bad[i].want));
    }

    /* Pages of 2: run, 4, 3 | 2, 1 ... newest first, each job once. */
    service_list_req req = {.page_size = 2};
    const char *want[] = {store_job_id(run), ids[4], ids[3], ids[2], ids[1], ids[0]};
    size_t seen = 0;
    for (int page = 0; page < 10; page++) {
        assert_int_equal(service_list_jobs(f->svc, &viewer, &req, &jobs, &n, next, &err), 0);
        for (size_t i = 0; i < n; i++)
            assert_string_equal(store_job_id(jobs[i]), want[seen++]);
        free_jobs(jobs, n);
        if (!next[0])
            break;
        char *tok = strdup(next);
        free((char *)req.page_token);
        req.page_token = tok;
    }
    free((char *)req.page_token);
    assert_int_equal(seen, 6);

    /* Status filter: the running job is reported with its live state. */
    service_list_req running = {.statuses = (const int[]){JOB_STATUS_RUNNING}, .n_statuses = 1};
    assert_int_equal(service_list_jobs(f->svc, &viewer, &running, &jobs, &n, next, &err), 0);
    assert_int_equal(n, 1);
    assert_ptr_equal(jobs[0], run);
    assert_string_equal(next, "");
    free_jobs(jobs, n);
    service_list_req other = {.owner = "someone-else"};
    assert_int_equal(service_list_jobs(f->svc, &viewer, &other, &jobs, &n, next, &err), 0);
    assert_int_equal(n, 0);
    free_jobs(jobs, n);

    /* DeleteJob: a malformed id, an unknown one, a running one, then a finished one. */
    store_job *gone = NULL;
    assert_int_equal(service_delete_job(f->svc, &admin, "nope", &gone, &err), -EINVAL);
    assert_int_equal(err.code, JW_INVALID_ARGUMENT);
    assert_int_equal(
        service_delete_job(f->svc, &admin, "00000000-0000-4000-8000-000000000000", &gone, &err),
        -ENOENT);
    assert_int_equal(err.code, JW_NOT_FOUND);
    assert_int_equal(service_delete_job(f->svc, &admin, store_job_id(run), &gone, &err), -EBUSY);
    assert_int_equal(err.code, JW_FAILED_PRECONDITION);
    assert_int_equal(service_delete_job(f->svc, &admin, ids[2], &gone, &err), 0);
    store_job_unref(gone);
    assert_int_equal(service_get_job(f->svc, &viewer, ids[2], &gone, &err), -ENOENT);
    stop_seen seen_stop = {0};
    store_job *stopped = NULL;
    assert_int_equal(
        service_stop_job(f->svc, &admin, store_job_id(run), on_stopped, &seen_stop, &stopped, &err),
        1);
    wait_final(run);
    for (int i = 0; i < 500 && seen_stop.calls == 0; i++)
        usleep(2000);
    store_job_unref(stopped);
    store_job_unref(run);
}

/* WriteStdin's rules: only a job created with stdin, one writer, not after the end; the pipe
 * carries the bytes and its close is the job's end of file. */
static void test_stdin_rules(void **state)
{
    fixture *f = *state;
    jw_error err = JW_ERROR_INIT;
    store_job *plain = create(f, "sleep 30");
    store_job *got = NULL;
    assert_true(service_stdin_open(f->svc, &admin, store_job_id(plain), &got, &err) < 0);
    assert_int_equal(err.code, JW_FAILED_PRECONDITION);
    assert_non_null(strstr(err.msg, "was created without stdin"));
    assert_true(service_stdin_open(f->svc, &admin, "nope", &got, &err) < 0);
    assert_int_equal(err.code, JW_INVALID_ARGUMENT);

    const char *args[] = {"-c", "wc -c"};
    job_request req = {
        .command = "sh", .command_len = 2, .args = args, .nargs = 2, .stdin_pipe = true};
    store_job *job = NULL;
    assert_int_equal(service_create_job(f->svc, &admin, &req, &job, &err), 0);
    assert_int_equal(service_stdin_open(f->svc, &admin, store_job_id(job), &got, &err), 0);
    int fd = -1, r;
    for (int i = 0; i < 500 && (r = service_stdin_take(f->svc, got, &fd, &err)) == 1; i++)
        usleep(10 * 1000);
    assert_int_equal(r, 0);
    assert_true(fd >= 0);
    int again = -1;
    assert_true(service_stdin_take(f->svc, got, &again, &err) < 0);
    assert_int_equal(err.code, JW_FAILED_PRECONDITION);
    assert_non_null(strstr(err.msg, "already has a writer"));
    assert_int_equal(write(fd, "12345", 5), 5);
    close(fd); /* EOF: wc ends */
    wait_final(job);
    store_job_info info;
    store_job_snapshot(job, &info);
    assert_int_equal(info.status, JOB_STATUS_COMPLETED);
    assert_true(info.stdin_pipe);
    store_cursor *c = NULL;
    assert_int_equal(store_cursor_open(job, JOB_STREAM_STDOUT, 0, &c, &err), 0);
    char buf[16] = {0};
    size_t n = 0;
    job_stream from;
    assert_int_equal(store_cursor_avail(c, info.output_bytes, sizeof(buf) - 1, &n, &from), 0);
    assert_int_equal(store_cursor_read(c, buf, n), 0);
    assert_string_equal(buf, "5\n");
    store_cursor_free(c);
    store_job_unref(got);
    /* Ended: no writer any more. */
    assert_true(service_stdin_open(f->svc, &admin, store_job_id(job), &got, &err) < 0);
    assert_int_equal(err.code, JW_FAILED_PRECONDITION);
    assert_non_null(strstr(err.msg, "has ended"));
    store_job_unref(job);
    store_job *stopped = NULL;
    stop_seen seen = {0};
    assert_int_equal(
        service_stop_job(f->svc, &admin, store_job_id(plain), on_stopped, &seen, &stopped, &err),
        1);
    wait_final(plain);
    for (int i = 0; i < 500 && atomic_load(&seen.calls) == 0; i++)
        usleep(2000);
    assert_int_equal(atomic_load(&seen.calls), 1);
    store_job_unref(stopped);
    store_job_unref(plain);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roles_by_method, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_resolves_defaults, setup_cgroups, teardown),
        cmocka_unit_test_setup_teardown(test_capacity_and_queue, setup_capacity, teardown),
        cmocka_unit_test_setup_teardown(test_get_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_by_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_storm_does_not_block, setup_long_grace, teardown),
        cmocka_unit_test_setup_teardown(test_stream_bookkeeping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_pages_and_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stdin_rules, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
