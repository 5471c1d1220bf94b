/* The job table and output log: ids, state changes, append/read by offset, output cap, and
 * subscribers under concurrent writers and readers. */
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct fixture {
    char dir[64];
    store *st;
} fixture;

static int setup_cap(void **state, int64_t cap)
{
    fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/jw-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    store_config cfg = {.data_dir = f->dir, .max_jobs = 100, .max_output_bytes = cap};
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(store_new(&cfg, &f->st, &err), 0);
    *state = f;
    return 0;
}
static int setup(void **state)
{
    return setup_cap(state, 0);
}
static int setup_capped(void **state)
{
    return setup_cap(state, 1000);
}

static int teardown(void **state)
{
    fixture *f = *state;
    store_free(f->st);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static store_job *new_job(store *st, const char *cmd)
{
    const char *args[] = {"a", "b"};
    job_limits lim = {.cpu_percent = 50};
    store_job *job = NULL;
    jw_error err = JW_ERROR_INIT;
    store_job_spec spec = {.command = cmd,
                           .args = args,
                           .nargs = 2,
                           .limits = lim,
                           .limits_enforced = true,
                           .timeout_seconds = 7,
                           .owner = "alice",
                           .network = JOB_NETWORK_NONE,
                           .user = "nobody (65534:65534)"};
    assert_int_equal(store_job_new(st, &spec, &job, &err), 0);
    return job;
}

static void test_create_lookup_list(void **state)
{
    fixture *f = *state;
    store_job *a = new_job(f->st, "one");
    store_job *b = new_job(f->st, "two");
    assert_true(uuid_is_valid(store_job_id(a)));
    assert_string_not_equal(store_job_id(a), store_job_id(b));
    assert_int_equal(store_job_id(a)[14], '4'); /* version 4 */

    store_job *found = store_lookup(f->st, store_job_id(b));
    assert_ptr_equal(found, b);
    store_job_unref(found);
    assert_null(store_lookup(f->st, "00000000-0000-4000-8000-000000000000"));

    store_job **all = NULL;
    size_t n = 0;
    int64_t next = -1;
    store_query q = {.limit = 10};
    assert_int_equal(store_list(f->st, &q, &all, &n, &next, NULL), 0);
    assert_int_equal(n, 2);
    assert_int_equal(next, 0);
    assert_ptr_equal(all[0], b); /* newest first; live jobs are the live objects */
    assert_ptr_equal(all[1], a);
    for (size_t i = 0; i < n; i++)
        store_job_unref(all[i]);
    free(all);

    store_job_info info;
    store_job_snapshot(a, &info);
    assert_string_equal(info.command, "one");
    assert_int_equal(info.nargs, 2);
    assert_string_equal(info.args[1], "b");
    assert_string_equal(info.owner, "alice");
    assert_int_equal(info.limits.cpu_percent, 50);
    assert_int_equal(info.timeout_seconds, 7);
    assert_int_equal(info.status, JOB_STATUS_INITIALIZING);
    assert_int_equal(info.network, JOB_NETWORK_NONE);
    assert_string_equal(info.user, "nobody (65534:65534)");

    store_job_remove(f->st, b);
    assert_int_equal(store_count(f->st), 1);
    assert_null(store_lookup(f->st, store_job_id(b)));
    store_job_unref(a);
    store_job_unref(b);
}

static void test_max_jobs(void **state)
{
    fixture *f = *state;
    for (int i = 0; i < 100; i++)
        store_job_unref(new_job(f->st, "x"));
    store_job *job = NULL;
    jw_error err = JW_ERROR_INIT;
    job_limits lim = {0};
    store_job_spec spec = {.command = "x", .limits = lim};
    assert_int_equal(store_job_new(f->st, &spec, &job, &err), -ENOSPC);
    assert_int_equal(err.code, JW_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(err.msg, "100"));
}

static void test_state_changes(void **state)
{
    fixture *f = *state;
    store_job *job = new_job(f->st, "x");
    assert_int_equal(store_job_set_running(job, 42, 1000), 0);
    assert_int_equal(store_job_set_running(job, 43, 1001), -EINVAL);
    job_usage u = {.cpu_usec = 5};
    assert_int_equal(store_job_finish(job, JOB_REASON_EXITED, 0, 0, NULL, &u, 2000), 0);
    assert_int_equal(store_job_finish(job, JOB_REASON_STOPPED, 0, 0, NULL, &u, 3000), -EINVAL);
    store_job_info info;
    store_job_snapshot(job, &info);
    assert_int_equal(info.status, JOB_STATUS_COMPLETED);
    assert_int_equal(info.pid, 42);
    assert_int_equal(info.end_time_ns, 2000);
    assert_int_equal(info.usage.cpu_usec, 5);
    /* Final but output not closed yet: waiting times out. */
    assert_int_equal(store_job_wait_final(job, 10), -ETIMEDOUT);
    store_job_close_output(job);
    assert_int_equal(store_job_wait_final(job, 10), 0);
    store_job_unref(job);
}

typedef struct final_seen {
    int calls;
    job_status status;
} final_seen;

static void on_final(store_job *job, void *userdata)
{
    final_seen *fs = userdata;
    fs->calls++;
    fs->status = store_job_status(job); /* no store lock is held: this must not deadlock */
}

/* The end of a job is an event: callbacks fire once, only when the job is final and its output
 * closed, and a removed job tells its waiters that no end will come. */
static void test_final_callbacks_and_stop_requests(void **state)
{
    fixture *f = *state;
    store_job *job = new_job(f->st, "x");
    final_seen a = {0}, b = {0};
    assert_int_equal(store_job_stop_reason(job), JOB_REASON_UNSPECIFIED);
    assert_true(store_job_request_stop(job, JOB_REASON_STOPPED));
    assert_true(store_job_request_stop(job, JOB_REASON_TIMED_OUT)); /* the first reason wins */
    assert_int_equal(store_job_stop_reason(job), JOB_REASON_STOPPED);
    assert_int_equal(store_job_on_final(job, on_final, &a), 0);
    assert_int_equal(store_job_on_final(job, on_final, &b), 0);
    assert_int_equal(store_job_set_running(job, 42, 1000), 0);
    assert_int_equal(store_job_finish(job, JOB_REASON_STOPPED, 0, 9, NULL, NULL, 2000), 0);
    assert_int_equal(a.calls, 0); /* final, but the output is still open */
    store_job_close_output(job);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
    assert_int_equal(a.status, JOB_STATUS_STOPPED);
    store_job_close_output(job); /* idempotent: no second call */
    assert_int_equal(a.calls, 1);
    assert_int_equal(store_job_on_final(job, on_final, &a), 1); /* already final: not called */
    assert_int_equal(a.calls, 1);
    assert_false(store_job_request_stop(job, JOB_REASON_STOPPED));
    store_job_unref(job);

    /* The cap on pending callbacks. */
    store_job *busy = new_job(f->st, "y");
    final_seen many = {0};
    for (int i = 0; i < STORE_MAX_FINAL_WAITERS; i++)
        assert_int_equal(store_job_on_final(busy, on_final, &many), 0);
    assert_int_equal(store_job_on_final(busy, on_final, &many), -EBUSY);
    /* Removal of a job that never started calls every waiter with the job not final. */
    store_job_remove(f->st, busy);
    assert_int_equal(many.calls, STORE_MAX_FINAL_WAITERS);
    assert_int_equal(many.status, JOB_STATUS_INITIALIZING);
    store_job_unref(busy);
}

static void test_output_roundtrip(void **state)
{
    fixture *f = *state;
    store_job *job = new_job(f->st, "x");
    uint8_t all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    assert_int_equal(store_job_append(job, JOB_STREAM_STDOUT, all, 256), 0);
    assert_int_equal(store_job_append(job, JOB_STREAM_STDOUT, all, 10), 0);
    int64_t size;
    bool closed;
    store_job_output_state(job, &size, &closed);
    assert_int_equal(size, 266);
    assert_false(closed);
    int fd = store_job_open_output(job);
    assert_true(fd >= 0);
    uint8_t got[300];
    assert_int_equal(pread(fd, got, sizeof(got), 0), 266);
    assert_memory_equal(got, all, 256);
    assert_memory_equal(got + 256, all, 10);
    close(fd);
    store_job_close_output(job);
    assert_int_equal(store_job_append(job, JOB_STREAM_STDOUT, all, 1), -EBADF);
    store_job_unref(job);
}

static void test_output_cap(void **state)
{
    fixture *f = *state; /* cap 1000 */
    store_job *job = new_job(f->st, "x");
    char buf[600];
    memset(buf, 'z', sizeof(buf));
    assert_int_equal(store_job_append(job, JOB_STREAM_STDOUT, buf, 600), 0);
    assert_int_equal(store_job_append(job, JOB_STREAM_STDOUT, buf, 600), 0);
    assert_int_equal(store_job_append(job, JOB_STREAM_STDOUT, buf, 600), 0);
    store_job_info info;
    store_job_snapshot(job, &info);
    assert_int_equal(info.output_bytes, 1000);
    assert_int_equal(info.output_dropped, 800);
    store_job_unref(job);
}

static int wakes;
static void count_wake(void *p)
{
    (void)p;
    __atomic_fetch_add(&wakes, 1, __ATOMIC_SEQ_CST);
}

static void test_subscriber_arm(void **state)
{
    fixture *f = *state;
    store_job *job = new_job(f->st, "x");
    store_sub *sub = NULL;
    wakes = 0;
    assert_int_equal(store_sub_new(job, count_wake, NULL, &sub), 0);
    assert_int_equal(store_job_n_subs(job), 1);
    assert_int_equal(store_sub_arm(sub, 0), 0); /* nothing yet: armed */
    store_job_append(job, JOB_STREAM_STDOUT, "ab", 2);
    assert_int_equal(wakes, 1);
    store_job_append(job, JOB_STREAM_STDOUT, "cd", 2);
    assert_int_equal(wakes, 1);                 /* one wake per arm */
    assert_int_equal(store_sub_arm(sub, 2), 1); /* bytes beyond 2 exist: read now */
    assert_int_equal(store_sub_arm(sub, 4), 0);
    store_job_close_output(job);
    assert_int_equal(wakes, 2); /* the end wakes too */
    assert_int_equal(store_sub_arm(sub, 4), 1);
    store_sub_free(sub);
    assert_int_equal(store_job_n_subs(job), 0);
    store_job_unref(job);
}

/* One writer appends 4 MiB in odd-sized pieces while 8 readers follow by offset, each sleeping
 * on its subscriber when caught up; every reader must see the exact byte sequence. */
typedef struct reader {
    store_job *job;
    pthread_mutex_t m;
    pthread_cond_t c;
    bool woken;
    int64_t got;
    int bad;
} reader;

static void reader_wake(void *p)
{
    reader *r = p;
    pthread_mutex_lock(&r->m);
    r->woken = true;
    pthread_cond_signal(&r->c);
    pthread_mutex_unlock(&r->m);
}

#define TOTAL (4 << 20)
static uint8_t byte_at(int64_t i)
{
    return (uint8_t)((i * 7 + (i >> 9)) & 0xff);
}

static void *reader_main(void *p)
{
    reader *r = p;
    store_sub *sub = NULL;
    store_sub_new(r->job, reader_wake, r, &sub);
    int fd = store_job_open_output(r->job);
    uint8_t buf[8192];
    for (;;) {
        int64_t size;
        bool closed;
        store_job_output_state(r->job, &size, &closed);
        while (r->got < size) {
            size_t n = size - r->got < (int64_t)sizeof(buf) ? (size_t)(size - r->got) : sizeof(buf);
            ssize_t k = pread(fd, buf, n, r->got);
            if (k <= 0) {
                r->bad++;
                break;
            }
            for (ssize_t i = 0; i < k; i++)
                if (buf[i] != byte_at(r->got + i))
                    r->bad++;
            r->got += k;
        }
        if (closed && r->got >= size)
            break;
        pthread_mutex_lock(&r->m);
        r->woken = false;
        pthread_mutex_unlock(&r->m);
        if (store_sub_arm(sub, r->got) == 1)
            continue;
        pthread_mutex_lock(&r->m);
        while (!r->woken)
            pthread_cond_wait(&r->c, &r->m);
        pthread_mutex_unlock(&r->m);
    }
    close(fd);
    store_sub_free(sub);
    return NULL;
}

static void test_concurrent_readers(void **state)
{
    fixture *f = *state;
    store_job *job = new_job(f->st, "x");
    enum { NR = 8 };
    reader rs[NR];
    pthread_t th[NR];
    for (int i = 0; i < NR; i++) {
        rs[i] = (reader){.job = job};
        pthread_mutex_init(&rs[i].m, NULL);
        pthread_cond_init(&rs[i].c, NULL);
        pthread_create(&th[i], NULL, reader_main, &rs[i]);
    }
    static uint8_t chunk[70000];
    int64_t off = 0;
    size_t step = 1;
    while (off < TOTAL) {
        size_t n = step;
        if (off + (int64_t)n > TOTAL)
            n = (size_t)(TOTAL - off);
        for (size_t i = 0; i < n; i++)
            chunk[i] = byte_at(off + (int64_t)i);
        assert_int_equal(store_job_append(job, JOB_STREAM_STDOUT, chunk, n), 0);
        off += (int64_t)n;
        step = step * 3 % 65521 + 1;
    }
    store_job_close_output(job);
    for (int i = 0; i < NR; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(rs[i].got, TOTAL);
        assert_int_equal(rs[i].bad, 0);
    }
    assert_int_equal(store_job_n_subs(job), 0);
    store_job_unref(job);
}

/* Output files in a data directory without a history belong to no job: a new history removes
 * them. An existing history leaves files alone. */
static void test_stale_output_removed(void **state)
{
    (void)state;
    char dir[64] = "/tmp/jw-store-XXXXXX", path[256], cmd[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/output", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/output/old.out", dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
    store *st = NULL;
    store_config cfg = {.data_dir = dir};
    assert_int_equal(store_new(&cfg, &st, NULL), 0);
    assert_int_equal(access(path, F_OK), -1);
    store_free(st);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(store_new(&cfg, &st, NULL), 0);
    assert_int_equal(access(path, F_OK), 0);
    store_free(st);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* A write that fails for real (RLIMIT_FSIZE: EFBIG past the limit, after a partial write) counts
 * as dropped, the file keeps exactly output_size bytes, and appends work again afterwards. */
static void test_append_write_failure_counts_as_dropped(void **state)
{
    fixture *f = *state;
    store_job *job = new_job(f->st, "w");
    char a[600], b[600], c[100];
    memset(a, 'a', sizeof(a));
    memset(b, 'b', sizeof(b));
    memset(c, 'c', sizeof(c));
    assert_int_equal(store_job_append(job, JOB_STREAM_STDOUT, a, sizeof(a)), 0);

    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*old_xfsz)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = {.rlim_cur = 1000, .rlim_max = old.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    int r = store_job_append(job, JOB_STREAM_STDOUT, b, sizeof(b)); /* 400 bytes fit, then EFBIG */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_xfsz);
    assert_int_equal(r, -EFBIG);

    store_job_info info;
    store_job_snapshot(job, &info);
    assert_int_equal(info.output_bytes, 600);
    assert_int_equal(info.output_dropped, 600);

    /* The next append lands right after the stored bytes. */
    assert_int_equal(store_job_append(job, JOB_STREAM_STDOUT, c, sizeof(c)), 0);
    store_job_snapshot(job, &info);
    assert_int_equal(info.output_bytes, 700);
    assert_int_equal(info.output_dropped, 600);
    int fd = store_job_open_output(job);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, 700);
    char got[700];
    assert_int_equal(pread(fd, got, sizeof(got), 0), 700);
    close(fd);
    assert_memory_equal(got, a, 600);
    assert_memory_equal(got + 600, c, 100);
    store_job_unref(job);
}

/* A job that ends: durable, out of the table, read back detached; a job left running when the
 * store goes away (a crash) is FAILED/SERVER_LOST at the next start with its output. */
static void test_history_restart(void **state)
{
    fixture *f = *state;
    store_job *done = new_job(f->st, "done");
    store_job *live = new_job(f->st, "live");
    char done_id[UUID_STR_LEN], live_id[UUID_STR_LEN];
    snprintf(done_id, sizeof(done_id), "%s", store_job_id(done));
    snprintf(live_id, sizeof(live_id), "%s", store_job_id(live));
    assert_int_equal(store_job_set_running(done, 10, 100), 0);
    assert_int_equal(store_job_append(done, JOB_STREAM_STDOUT, "hello", 5), 0);
    assert_int_equal(store_job_finish(done, JOB_REASON_EXITED, 0, 0, NULL, NULL, 200), 0);
    assert_int_equal(store_count(f->st), 2); /* output still open */
    store_job_close_output(done);
    assert_int_equal(store_count(f->st), 1); /* durable: left the table */
    store_job *again = store_lookup(f->st, done_id);
    assert_non_null(again);
    assert_ptr_not_equal(again, done); /* read back from the history */
    store_job_info info;
    store_job_snapshot(again, &info);
    assert_int_equal(info.status, JOB_STATUS_COMPLETED);
    assert_int_equal(info.output_bytes, 5);
    assert_string_equal(info.command, "done");
    assert_string_equal(info.args[1], "b");
    int64_t size = 0;
    bool closed = false;
    store_job_output_state(again, &size, &closed);
    assert_int_equal(size, 5);
    assert_true(closed);
    store_job_unref(again);

    assert_int_equal(store_job_set_running(live, 11, 100), 0);
    assert_int_equal(store_job_append(live, JOB_STREAM_STDOUT, "abc", 3), 0);
    assert_int_equal(store_job_append(live, JOB_STREAM_STDERR, "de", 2), 0);
    /* The store goes away without the job ending: what a kill -9 leaves. */
    store_free(f->st);
    store_job_unref(live);
    store_job_unref(done);
    store_config cfg = {.data_dir = f->dir, .max_jobs = 100};
    assert_int_equal(store_new(&cfg, &f->st, NULL), 0);
    store_stats stats;
    store_get_stats(f->st, &stats);
    assert_int_equal(stats.lost_at_start, 1);
    again = store_lookup(f->st, live_id);
    assert_non_null(again);
    store_job_snapshot(again, &info);
    assert_int_equal(info.status, JOB_STATUS_FAILED);
    assert_int_equal(info.reason, JOB_REASON_SERVER_LOST);
    assert_int_equal(info.output_bytes, 5);
    assert_int_equal(info.stderr_bytes, 2); /* from the stream index: the record had 0 */
    assert_non_null(strstr(info.error, "server went away"));
    int fd = store_job_open_output(again);
    assert_true(fd >= 0);
    char buf[8] = {0};
    assert_int_equal(read(fd, buf, sizeof(buf)), 5);
    assert_memory_equal(buf, "abcde", 5);
    close(fd);
    store_job_unref(again);
    again = store_lookup(f->st, done_id);
    assert_non_null(again);
    assert_int_equal(store_job_status(again), JOB_STATUS_COMPLETED);
    store_job_unref(again);
}

static store_job *finished_job(store *st, const char *out, int64_t end_ns)
{
    store_job *job = new_job(st, "f");
    assert_int_equal(store_job_set_running(job, 1, end_ns - 1), 0);
    if (out)
        assert_int_equal(store_job_append(job, JOB_STREAM_STDOUT, out, strlen(out)), 0);
    assert_int_equal(store_job_finish(job, JOB_REASON_EXITED, 0, 0, NULL, NULL, end_ns), 0);
    store_job_close_output(job);
    return job;
}

static bool known(store *st, const char *id)
{
    store_job *j = store_lookup(st, id);
    store_job_unref(j);
    return j != NULL;
}

static void wait_first_sweep(store *st)
{
    store_stats ss = {0};
    for (int i = 0; i < 1000 && ss.sweeps == 0; i++) {
        store_get_stats(st, &ss);
        if (ss.sweeps == 0)
            usleep(10 * 1000);
    }
    assert_int_equal(ss.sweeps, 1);
}

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* The sweep removes the oldest-ended finished jobs, record and output, past each limit; a
 * running job is never removed. */
static void test_retention(void **state)
{
    fixture *f = *state;
    store_free(f->st);
    store_config cfg = {.data_dir = f->dir, .retain_jobs = 3};
    assert_int_equal(store_new(&cfg, &f->st, NULL), 0);
    char ids[6][UUID_STR_LEN];
    store_job *running = new_job(f->st, "r");
    for (int i = 0; i < 6; i++) {
        store_job *j = finished_job(f->st, "0123456789", 1000 + i);
        snprintf(ids[i], sizeof(ids[i]), "%s", store_job_id(j));
        store_job_unref(j);
    }
    store_sweep_stats st;
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(store_sweep(f->st, 2000, &st, &err), 0);
    assert_int_equal(st.removed_jobs, 3);
    assert_int_equal(st.removed_bytes, 30);
    for (int i = 0; i < 6; i++)
        assert_int_equal(known(f->st, ids[i]), i >= 3);
    char path[256];
    snprintf(path, sizeof(path), "%s/output/%s.out", f->dir, ids[0]);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof(path), "%s/output/%s.out", f->dir, ids[5]);
    assert_int_equal(access(path, F_OK), 0);
    assert_true(known(f->st, store_job_id(running)));
    store_free(f->st);

    /* Bytes: 30 kept, at most 15 allowed: the two oldest go, in the sweep the retention thread
     * runs just after start. */
    cfg = (store_config){
        .data_dir = f->dir, .retain_output_bytes = 15, .sweep_interval_ms = 3600 * 1000};
    assert_int_equal(store_new(&cfg, &f->st, NULL), 0);
    wait_first_sweep(f->st);
    assert_false(known(f->st, ids[3]));
    assert_false(known(f->st, ids[4]));
    assert_true(known(f->st, ids[5]));
    store_free(f->st);

    /* Age: ended before now - age. The running job (now SERVER_LOST, ended at the restart)
     * goes too once it is old enough. */
    cfg = (store_config){.data_dir = f->dir, .retain_age_ns = 60LL * 1000000000};
    assert_int_equal(store_new(&cfg, &f->st, NULL), 0);
    store_sweep_stats st2;
    assert_int_equal(store_sweep(f->st, now_ns(), &st2, &err), 0);
    assert_false(known(f->st, ids[5]));               /* ended at 1005, long before now */
    assert_true(known(f->st, store_job_id(running))); /* ended just now */
    store_job_unref(running);
}

/* DeleteJob at the store: running refused, finished removed with its output, unknown NOT_FOUND. */
static void test_delete(void **state)
{
    fixture *f = *state;
    store_job *run = new_job(f->st, "r");
    assert_int_equal(store_job_set_running(run, 1, 1), 0);
    jw_error err = JW_ERROR_INIT;
    store_job *gone = NULL;
    assert_int_equal(store_job_delete(f->st, store_job_id(run), &gone, &err), -EBUSY);
    assert_int_equal(err.code, JW_FAILED_PRECONDITION);
    assert_non_null(strstr(err.msg, "RUNNING"));
    assert_true(known(f->st, store_job_id(run)));

    store_job *fin = finished_job(f->st, "xyz", 50);
    char id[UUID_STR_LEN], path[256];
    snprintf(id, sizeof(id), "%s", store_job_id(fin));
    store_job_unref(fin);
    /* A reader that opened the output before the delete reads it to the end. */
    store_job *rd = store_lookup(f->st, id);
    int fd = store_job_open_output(rd);
    assert_true(fd >= 0);
    assert_int_equal(store_job_delete(f->st, id, &gone, &err), 0);
    assert_string_equal(store_job_id(gone), id);
    store_job_unref(gone);
    assert_false(known(f->st, id));
    snprintf(path, sizeof(path), "%s/output/%s.out", f->dir, id);
    assert_int_equal(access(path, F_OK), -1);
    char buf[4];
    assert_int_equal(read(fd, buf, sizeof(buf)), 3);
    close(fd);
    store_job_unref(rd);
    assert_int_equal(store_job_delete(f->st, id, NULL, &err), -ENOENT);
    assert_int_equal(err.code, JW_NOT_FOUND);
    store_job_unref(run);
}

/* Streams of one job share one object, so the per-job stream cap counts them all: a stream
 * opened while the job was live keeps that object as the one later lookups find once the job
 * has left the table, and only after the last stream ends is the job read back anew. */
static void test_streams_share_one_object(void **state)
{
    fixture *f = *state;
    store_job *job = new_job(f->st, "s");
    assert_int_equal(store_job_set_running(job, 1, 1), 0);
    store_sub *sub = NULL;
    assert_int_equal(store_sub_new(job, count_wake, NULL, &sub), 0);
    assert_int_equal(store_job_finish(job, JOB_REASON_EXITED, 0, 0, NULL, NULL, 2), 0);
    store_job_close_output(job); /* final record written: the job leaves the table */
    store_job *again = store_lookup(f->st, store_job_id(job));
    assert_ptr_equal(again, job);
    store_sub *sub2 = NULL;
    assert_int_equal(store_sub_new(again, count_wake, NULL, &sub2), 0);
    assert_int_equal(store_job_n_subs(job), 2);
    store_job_unref(again);
    store_sub_free(sub);
    store_sub_free(sub2);
    store_job *later = store_lookup(f->st, store_job_id(job));
    assert_non_null(later);
    assert_ptr_not_equal(later, job);
    assert_int_equal(store_job_status(later), JOB_STATUS_COMPLETED);
    /* A detached object is shared the same way. */
    store_sub *sub3 = NULL;
    assert_int_equal(store_sub_new(later, count_wake, NULL, &sub3), 0);
    store_job *third = store_lookup(f->st, store_job_id(job));
    assert_ptr_equal(third, later);
    store_job_unref(third);
    store_sub_free(sub3);
    store_job_unref(later);
    store_job_unref(job);
}

/* A job is findable by id from the moment a listing can show it: a lister that looks up every
 * unfinished job it sees and waits for its end (as StopJob does) is always woken, even when the
 * listing caught the job in the middle of its creation. */
typedef struct race_state {
    store *st;
    atomic_bool done;
    int registered, immediate;
    char failure[160]; /* the lister's first failure: cmocka may only fail on the main thread */
    char last[2][UUID_STR_LEN]; /* the jobs already waited on (a listing shows the newest two) */
    int fired;                  /* guarded by lock */
    pthread_mutex_t lock;
} race_state;

static void race_fired(store_job *job, void *userdata)
{
    (void)job;
    race_state *rs = userdata;
    pthread_mutex_lock(&rs->lock);
    rs->fired++;
    pthread_mutex_unlock(&rs->lock);
}

static void *race_lister(void *p)
{
    race_state *rs = p;
    while (!rs->done) {
        store_query q = {.limit = 2};
        store_job **v = NULL;
        size_t n = 0;
        int64_t next = 0;
        jw_error err = JW_ERROR_INIT;
        if (store_list(rs->st, &q, &v, &n, &next, &err) < 0) {
            snprintf(rs->failure, sizeof(rs->failure), "store_list: %.140s", err.msg);
            break;
        }
        for (size_t i = 0; i < n; i++) {
            const char *id = store_job_id(v[i]);
            /* Once per job: StopJob's 1024-waiter cap is not what this test is about. */
            bool seen = strcmp(id, rs->last[0]) == 0 || strcmp(id, rs->last[1]) == 0;
            if (!seen && !job_status_is_final(store_job_status(v[i]))) {
                memcpy(rs->last[1], rs->last[0], UUID_STR_LEN);
                snprintf(rs->last[0], UUID_STR_LEN, "%s", id);
                store_job *job = store_lookup(rs->st, id);
                int r = job ? store_job_on_final(job, race_fired, rs) : -ENOENT;
                if (r == 0)
                    rs->registered++;
                else if (r == 1)
                    rs->immediate++;
                else if (!rs->failure[0])
                    snprintf(rs->failure, sizeof(rs->failure), "job %s: lookup or wait: %d", id, r);
                store_job_unref(job);
            }
            store_job_unref(v[i]);
        }
        free(v);
    }
    return NULL;
}

static void test_listed_while_created(void **state)
{
    fixture *f = *state;
    race_state rs = {.st = f->st, .lock = PTHREAD_MUTEX_INITIALIZER};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, race_lister, &rs), 0);
    for (int i = 0; i < 3000; i++) {
        store_job *job = new_job(f->st, "r");
        assert_int_equal(store_job_set_running(job, 1, 1), 0);
        assert_int_equal(store_job_finish(job, JOB_REASON_EXITED, 0, 0, NULL, NULL, 2), 0);
        store_job_close_output(job);
        store_job_unref(job);
    }
    rs.done = true;
    assert_int_equal(pthread_join(t, NULL), 0);
    if (rs.failure[0])
        fail_msg("%s", rs.failure);
    /* Every job has ended, so every registered wait has been answered. */
    pthread_mutex_lock(&rs.lock);
    int fired = rs.fired;
    pthread_mutex_unlock(&rs.lock);
    print_message("listed unfinished and waited on: %d, final at lookup: %d\n", rs.registered,
                  rs.immediate);
    assert_true(rs.registered > 0);
    assert_int_equal(fired, rs.registered);
}

/* Reads what a cursor gives now, checking each piece's stream against `want_streams` (one
 * character per byte: 'o' stdout, 'e' stderr). */
static void cursor_read_all(store_job *job, job_stream select, int64_t offset, const char *want,
                            const char *want_streams)
{
    int64_t size;
    store_job_output_state(job, &size, NULL);
    store_cursor *c = NULL;
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(store_cursor_open(job, select, offset, &c, &err), 0);
    char buf[64] = {0}, streams[64] = {0};
    size_t len = 0, n;
    job_stream from;
    while (store_cursor_avail(c, size, 2, &n, &from) == 0 && n > 0) {
        assert_int_equal(store_cursor_read(c, buf + len, n), 0);
        memset(streams + len, from == JOB_STREAM_STDERR ? 'e' : 'o', n);
        len += n;
    }
    assert_string_equal(buf, want);
    assert_string_equal(streams, want_streams);
    assert_int_equal(store_cursor_offset(c), offset + (int64_t)len);
    store_cursor_free(c);
}

/* The stream index: each stream alone at its own offsets, the merged log with each piece's
 * stream, runs found after the cursor opened, offsets past a stream's end refused, and the
 * index removed with the job. A job that only writes stdout has no index. */
static void test_output_streams(void **state)
{
    fixture *f = *state;
    store_job *plain = new_job(f->st, "plain");
    assert_int_equal(store_job_set_running(plain, 1, 1), 0);
    assert_int_equal(store_job_append(plain, JOB_STREAM_STDOUT, "xyz", 3), 0);
    char path[512];
    snprintf(path, sizeof(path), "%s/output/%s.idx", f->dir, store_job_id(plain));
    assert_int_equal(access(path, F_OK), -1);
    cursor_read_all(plain, JOB_STREAM_STDERR, 0, "", "");
    cursor_read_all(plain, JOB_STREAM_BOTH, 1, "yz", "oo");

    store_job *job = new_job(f->st, "mixed");
    assert_int_equal(store_job_set_running(job, 1, 1), 0);
    assert_int_equal(store_job_append(job, JOB_STREAM_STDERR, "E1", 2), 0); /* a run at 0 */
    assert_int_equal(store_job_append(job, JOB_STREAM_STDOUT, "ooo", 3), 0);
    /* A live cursor on stderr learns of the next run when it comes. */
    store_cursor *live = NULL;
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(store_cursor_open(job, JOB_STREAM_STDERR, 2, &live, &err), 0);
    size_t n = 0;
    job_stream from;
    assert_int_equal(store_cursor_avail(live, 5, 64, &n, &from), 0);
    assert_int_equal(n, 0);
    assert_int_equal(store_job_append(job, JOB_STREAM_STDERR, "EEE", 3), 0);
    assert_int_equal(store_job_append(job, JOB_STREAM_STDOUT, "p", 1), 0);
    assert_int_equal(store_cursor_avail(live, 9, 64, &n, &from), 0);
    assert_int_equal(n, 3);
    assert_int_equal(from, JOB_STREAM_STDERR);
    store_cursor_free(live);
    assert_int_equal(store_job_append(job, JOB_STREAM_STDERR, "Z", 1), 0);
    assert_int_equal(store_job_finish(job, JOB_REASON_EXITED, 0, 0, NULL, NULL, 2), 0);
    store_job_close_output(job);

    store_job_info info;
    store_job_snapshot(job, &info);
    assert_int_equal(info.stdout_bytes, 4);
    assert_int_equal(info.stderr_bytes, 6);
    cursor_read_all(job, JOB_STREAM_BOTH, 0, "E1oooEEEpZ", "eeoooeeeoe");
    cursor_read_all(job, JOB_STREAM_BOTH, 4, "oEEEpZ", "oeeeoe");
    cursor_read_all(job, JOB_STREAM_STDOUT, 0, "ooop", "oooo");
    cursor_read_all(job, JOB_STREAM_STDOUT, 3, "p", "o");
    cursor_read_all(job, JOB_STREAM_STDOUT, 4, "", "");
    cursor_read_all(job, JOB_STREAM_STDERR, 0, "E1EEEZ", "eeeeee");
    cursor_read_all(job, JOB_STREAM_STDERR, 1, "1EEEZ", "eeeee");
    cursor_read_all(job, JOB_STREAM_STDERR, 5, "Z", "e");
    store_cursor *c = NULL;
    assert_int_equal(store_cursor_open(job, JOB_STREAM_STDERR, 7, &c, &err), -EINVAL);
    assert_int_equal(err.code, JW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "offset 7 is beyond the end of the job's stderr (6 bytes)"));

    /* Read back from the history after it left the table: the same. */
    char id[UUID_STR_LEN];
    snprintf(id, sizeof(id), "%s", store_job_id(job));
    store_job_unref(job);
    store_job *again = store_lookup(f->st, id);
    assert_non_null(again);
    store_job_snapshot(again, &info);
    assert_int_equal(info.stderr_bytes, 6);
    cursor_read_all(again, JOB_STREAM_STDERR, 2, "EEEZ", "eeee");
    store_job_unref(again);

    snprintf(path, sizeof(path), "%s/output/%s.idx", f->dir, id);
    assert_int_equal(access(path, F_OK), 0);
    assert_int_equal(store_job_delete(f->st, id, NULL, &err), 0);
    assert_int_equal(access(path, F_OK), -1);
    store_job_unref(plain);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_lookup_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_jobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_final_callbacks_and_stop_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_cap, setup_capped, teardown),
        cmocka_unit_test_setup_teardown(test_subscriber_arm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_readers, setup, teardown),
        cmocka_unit_test(test_stale_output_removed),
        cmocka_unit_test_setup_teardown(test_history_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_streams_share_one_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listed_while_created, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_streams, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_write_failure_counts_as_dropped, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
