#include "store/store.h"

#include "store/runs.h"

#include "util/cleanup.h"
#include "util/fileio.h"
#include "util/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

struct store_sub {
    store_job *job;
    store_wake_fn wake;
    void *userdata;
    bool armed;
    int64_t armed_offset;
    store_sub *prev, *next;
};

typedef struct final_waiter {
    store_final_fn fn;
    void *userdata;
    struct final_waiter *next;
} final_waiter;

struct store_job {
    atomic_int refs;
    store *owner_store;
    store_job *hash_next;

    /* Immutable after creation. */
    char id[UUID_STR_LEN];
    char *command;
    char **args;
    size_t nargs;
    char **env;
    size_t nenv;
    char *owner;
    job_limits limits;
    int64_t seq;       /* creation order in the history */
    int64_t create_ns; /* when it was recorded */
    store_job *readers_next;
    job_network network;
    int32_t timeout_seconds;
    bool limits_enforced;
    bool stdin_pipe; /* reads its stdin from WriteStdin */
    bool detached;   /* read back from the history: final, output complete, not live */
    /* Guarded by the store's lock. Off the table, the streams of a job share one object through
     * the readers table, so that the per-job stream cap counts all of them. */
    bool in_table;
    bool in_readers;

    /* Guarded by lock. */
    pthread_mutex_t lock;
    pthread_cond_t cond; /* broadcast on final state and output close */
    job_status status;
    job_reason reason;
    int32_t pid;
    int32_t exit_code, signal;
    int output_errno;       /* the first write that failed (ENOSPC...); 0 = none */
    int out_fd;             /* write end of the output file while the job may produce output */
    job_reason stop_reason; /* the first stop asked for; UNSPECIFIED = none */
    char *user;             /* who it runs as, for display; set once its uid is known */
    int64_t start_time_ns, end_time_ns;
    char *error;
    job_usage usage;
    int64_t output_size;
    int64_t stderr_bytes;  /* of output_size; the rest is stdout */
    job_stream cur_stream; /* the stream of the last run in the index (STDOUT at first) */
    int idx_fd;            /* the stream index while the job writes; -1 until its first run */
    int64_t output_dropped;
    int64_t output_errno_at; /* output_size when it failed */
    store_sub *subs;
    size_t n_subs;
    final_waiter *waiters; /* one-shot callbacks for the end, see store_job_on_final */
    size_t n_waiters;
    bool output_closed;
    bool saved_final;   /* its final record is durable (then it leaves the table) */
    bool record_failed; /* a write of its record failed: logged once */
    bool done_seen;     /* final and output closed was noticed (persist_final ran once) */
};

static final_waiter *take_waiters_if_done(store_job *job, bool removing);
static bool became_done(store_job *job);
static void call_waiters(store_job *job, final_waiter *w);

struct store {
    pthread_mutex_t lock;
    char *data_dir;
    char *output_dir;
    store_config cfg; /* the strings point to data_dir / nothing */
    size_t max_jobs;
    int64_t max_output_bytes;
    jobdb *db;
    store_job **order; /* insertion order: the live jobs */
    size_t n, cap;
    store_job **buckets;
    size_t n_buckets;
    store_stats stats; /* guarded by lock */
    /* Detached jobs that have subscribers, so that every stream of a finished job shares one
     * object (and the per-job stream cap counts them all). Guarded by lock. */
    store_job *readers[256];

    pthread_t sweeper;
    bool sweeper_started;
    pthread_mutex_t sweep_lock; /* one sweep at a time; guards stop */
    pthread_cond_t sweep_cond;
    bool sweep_stop;
};

static void table_remove(store *s, store_job *job, bool share);
static void forget(store *s, store_job *job, bool recorded);
static store_job **readers_slot(store *s, const char *id);
static int persist_final(store_job *job);
static int table_insert(store *s, store_job *job);
static int load_queued(store *s, jw_error *err);
static bool sweep_stopping(store *s);

static uint64_t hash_id(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static void *sweeper_main(void *arg);
static int mark_lost(store *s, jw_error *err);

/* A fresh history: output files left by a server that kept none belong to no record. */
static void remove_stale_output(store *s)
{
    DIR *d = opendir(s->output_dir);
    if (!d)
        return;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l > 4 &&
            (strcmp(de->d_name + l - 4, ".out") == 0 || strcmp(de->d_name + l - 4, ".idx") == 0) &&
            unlinkat(dirfd(d), de->d_name, 0) == 0)
            n++;
    }
    closedir(d);
    if (n)
        log_info("new job history: removed %zu output file(s) of jobs that no history knows", n);
}

int store_new(const store_config *cfg, store **ret, jw_error *err)
{
    if (!cfg->data_dir || !*cfg->data_dir)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL, "data directory is empty");
    store *s = calloc(1, sizeof(*s));
    if (!s)
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->sweep_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->sweep_cond, &ca);
    pthread_condattr_destroy(&ca);
    s->cfg = *cfg;
    s->cfg.data_dir = NULL;
    s->cfg.db_path = NULL;
    s->max_jobs = cfg->max_jobs;
    s->max_output_bytes = cfg->max_output_bytes;
    s->data_dir = strdup(cfg->data_dir);
    if (asprintf(&s->output_dir, "%s/output", cfg->data_dir) < 0)
        s->output_dir = NULL;
    s->n_buckets = 1024;
    s->buckets = calloc(s->n_buckets, sizeof(*s->buckets));
    if (!s->data_dir || !s->output_dir || !s->buckets) {
        store_free(s);
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    }
    int r = mkdir_p(s->output_dir, 0700);
    if (r < 0) {
        jw_error_errno_code(err, JW_INTERNAL, r, "create output directory '%s'", s->output_dir);
        store_free(s);
        return r;
    }
    _cleanup_free_ char *dbpath = NULL;
    if (!cfg->db_path && asprintf(&dbpath, "%s/jobs.db", cfg->data_dir) < 0) {
        store_free(s);
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    }
    jobdb_config dc = {.path = cfg->db_path ? cfg->db_path : dbpath, .sync = cfg->db_sync};
    bool created = false;
    r = jobdb_open(&dc, &s->db, &created, err);
    if (r == 0 && created)
        remove_stale_output(s);
    if (r == 0)
        r = mark_lost(s, err);
    if (r == 0)
        r = load_queued(s, err);
    if (r < 0) {
        store_free(s);
        return r;
    }
    /* The first sweep runs at once on the retention thread, not before the server listens:
     * after a long stop it may have a whole history to remove (1M jobs: ~50 s). */
    if (cfg->sweep_interval_ms > 0) {
        int e = pthread_create(&s->sweeper, NULL, sweeper_main, s);
        if (e) {
            store_free(s);
            return jw_error_errno_code(err, JW_INTERNAL, e, "start the retention thread");
        }
        s->sweeper_started = true;
    }
    *ret = s;
    return 0;
}

static void job_free(store_job *job)
{
    if (job->out_fd >= 0)
        close(job->out_fd);
    if (job->idx_fd >= 0)
        close(job->idx_fd);
    free(job->command);
    for (size_t i = 0; i < job->nargs; i++)
        free(job->args[i]);
    free(job->args);
    for (size_t i = 0; i < job->nenv; i++)
        free(job->env[i]);
    free(job->env);
    free(job->owner);
    free(job->user);
    free(job->error);
    for (final_waiter *w = job->waiters, *next; w; w = next) {
        next = w->next;
        free(w);
    }
    pthread_mutex_destroy(&job->lock);
    pthread_cond_destroy(&job->cond);
    free(job);
}

store_job *store_job_ref(store_job *job)
{
    atomic_fetch_add(&job->refs, 1);
    return job;
}

void store_job_unref(store_job *job)
{
    if (job && atomic_fetch_sub(&job->refs, 1) == 1)
        job_free(job);
}

int store_check_space(store *s, int64_t min_free, jw_error *err)
{
    struct statvfs sv;
    if (statvfs(s->output_dir, &sv) < 0)
        return jw_error_errno_code(err, JW_INTERNAL, errno, "check free space of '%s'",
                                   s->output_dir);
    int64_t avail = (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
    if (avail < min_free)
        return jw_error_set(err, JW_RESOURCE_EXHAUSTED, -ENOSPC,
                            "no space left for job output in '%s' (%lld bytes free, %lld "
                            "needed): new jobs are refused until space is freed",
                            s->output_dir, (long long)avail, (long long)min_free);
    return 0;
}

void store_free(store *s)
{
    if (!s)
        return;
    if (s->sweeper_started) {
        pthread_mutex_lock(&s->sweep_lock);
        s->sweep_stop = true;
        pthread_cond_signal(&s->sweep_cond);
        pthread_mutex_unlock(&s->sweep_lock);
        pthread_join(s->sweeper, NULL);
    }
    for (size_t i = 0; i < s->n; i++)
        store_job_unref(s->order[i]);
    jobdb_close(s->db);
    free(s->order);
    free(s->buckets);
    free(s->data_dir);
    free(s->output_dir);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->sweep_lock);
    pthread_cond_destroy(&s->sweep_cond);
    free(s);
}

const char *store_output_dir(const store *s)
{
    return s->output_dir;
}

static void output_path(const store *s, const char *id, char *buf, size_t size)
{
    /* The data directory's path was checked to fit at start; a cut path would name nothing. */
    if (snprintf(buf, size, "%s/%s.out", s->output_dir, id) >= (int)size)
        buf[0] = '\0';
}

/* The output's stream index (store/runs.h), next to it. */
static void index_path(const store *s, const char *id, char *buf, size_t size)
{
    if (snprintf(buf, size, "%s/%s.idx", s->output_dir, id) >= (int)size)
        buf[0] = '\0';
}

/* Removes a job's output file and stream index. 0, or the first unlink's negative errno (a
 * missing file is no failure); *ret_path names the file that failed. */
static int unlink_output(const store *s, const char *id, char *ret_path, size_t size)
{
    char path[PATH_MAX];
    int r = 0;
    output_path(s, id, path, sizeof(path));
    if (unlink(path) < 0 && errno != ENOENT) {
        r = -errno;
        snprintf(ret_path, size, "%s", path);
    }
    index_path(s, id, path, sizeof(path));
    if (unlink(path) < 0 && errno != ENOENT && r == 0) {
        r = -errno;
        snprintf(ret_path, size, "%s", path);
    }
    return r;
}

static int table_grow(store *s)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        store_job **order = realloc(s->order, cap * sizeof(*order));
        if (!order)
            return -ENOMEM;
        s->order = order;
        s->cap = cap;
    }
    if (s->n + 1 > s->n_buckets) {
        size_t nb = s->n_buckets ? s->n_buckets * 2 : 1024;
        store_job **buckets = calloc(nb, sizeof(*buckets));
        if (!buckets)
            return -ENOMEM;
        for (size_t i = 0; i < s->n; i++) {
            store_job *j = s->order[i];
            size_t b = hash_id(j->id) % nb;
            j->hash_next = buckets[b];
            buckets[b] = j;
        }
        free(s->buckets);
        s->buckets = buckets;
        s->n_buckets = nb;
    }
    return 0;
}

static store_job *job_alloc(store *s)
{
    store_job *job = calloc(1, sizeof(*job));
    if (!job)
        return NULL;
    atomic_init(&job->refs, 1);
    pthread_mutex_init(&job->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&job->cond, &ca);
    pthread_condattr_destroy(&ca);
    job->out_fd = -1;
    job->idx_fd = -1;
    job->cur_stream = JOB_STREAM_STDOUT;
    job->owner_store = s;
    return job;
}

/* The record of a job as it is now; strings are borrowed from the job and from *in. */
static void record_of(const store_job *job, const store_job_info *in, jobdb_record *r)
{
    memset(r, 0, sizeof(*r));
    memcpy(r->id, job->id, sizeof(r->id));
    r->command = job->command;
    r->args = job->args;
    r->nargs = job->nargs;
    r->env = job->env;
    r->nenv = job->nenv;
    r->owner = job->owner;
    r->user = (char *)in->user;
    r->network = job->network;
    r->limits = job->limits;
    r->limits_enforced = job->limits_enforced;
    r->timeout_seconds = job->timeout_seconds;
    r->create_ns = job->create_ns;
    r->status = in->status;
    r->reason = in->reason;
    r->pid = in->pid;
    r->start_ns = in->start_time_ns;
    r->end_ns = in->end_time_ns;
    r->exit_code = in->exit_code;
    r->signal = in->signal;
    r->error = (char *)in->error;
    r->usage = in->usage;
    r->output_bytes = in->output_bytes;
    r->output_dropped = in->output_dropped;
    r->output_errno = in->output_errno;
    r->output_errno_at = in->output_errno_at;
    r->stderr_bytes = in->stderr_bytes;
    r->stdin_pipe = job->stdin_pipe;
}

/* A detached job from a record of the history; takes the record's strings. */
static store_job *job_from_record(store *s, jobdb_record *r)
{
    store_job *job = job_alloc(s);
    if (!job)
        return NULL;
    memcpy(job->id, r->id, sizeof(job->id));
    job->command = TAKE_PTR(r->command);
    job->args = TAKE_PTR(r->args);
    job->nargs = r->nargs;
    r->nargs = 0;
    job->env = TAKE_PTR(r->env);
    job->nenv = r->nenv;
    r->nenv = 0;
    job->owner = TAKE_PTR(r->owner);
    job->user = TAKE_PTR(r->user);
    job->network = r->network;
    job->limits = r->limits;
    job->limits_enforced = r->limits_enforced;
    job->timeout_seconds = r->timeout_seconds;
    job->stdin_pipe = r->stdin_pipe;
    job->stderr_bytes = r->stderr_bytes;
    job->seq = r->seq;
    job->create_ns = r->create_ns;
    job->detached = true;
    job->status = r->status;
    job->reason = r->reason;
    job->pid = r->pid;
    job->start_time_ns = r->start_ns;
    job->end_time_ns = r->end_ns;
    job->exit_code = r->exit_code;
    job->signal = r->signal;
    job->error = r->error && *r->error ? TAKE_PTR(r->error) : NULL;
    job->usage = r->usage;
    job->output_size = r->output_bytes;
    job->output_dropped = r->output_dropped;
    job->output_errno = r->output_errno;
    job->output_errno_at = r->output_errno_at;
    job->output_closed = true;
    job->saved_final = true;
    return job;
}

/* Logs the first failed write of a job's record (the job goes on; the write is retried). */
static void note_record_failure(store_job *job, const jw_error *err)
{
    store *s = job->owner_store;
    pthread_mutex_lock(&job->lock);
    bool first = !job->record_failed;
    job->record_failed = true;
    pthread_mutex_unlock(&job->lock);
    pthread_mutex_lock(&s->lock);
    s->stats.record_failures++;
    pthread_mutex_unlock(&s->lock);
    if (first)
        log_error("job %s: its record could not be written: %s; it is kept in memory and the "
                  "write is retried",
                  job->id, err->msg);
}

/* Writes the job's current state to the history. */
static int save_state(store_job *job)
{
    store_job_info in;
    store_job_snapshot(job, &in);
    jobdb_record r;
    record_of(job, &in, &r);
    jw_error err = JW_ERROR_INIT;
    int ret = jobdb_update(job->owner_store->db, &r, &err);
    if (ret < 0)
        note_record_failure(job, &err);
    return ret;
}

/* The job is final and its output closed: record it for good, then it leaves the table (it is
 * read back from the history from now on). On failure it stays, and the sweep retries. */
static int persist_final(store_job *job)
{
    int r = save_state(job);
    if (r < 0)
        return r;
    pthread_mutex_lock(&job->lock);
    job->saved_final = true;
    pthread_mutex_unlock(&job->lock);
    table_remove(job->owner_store, job, true);
    return 0;
}

int store_job_new(store *s, const store_job_spec *spec, store_job **ret, jw_error *err)
{
    const char *command = spec->command, *owner = spec->owner;
    const char *const *args = spec->args;
    size_t nargs = spec->nargs;
    store_job *job = job_alloc(s);
    if (!job)
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    job->status = spec->queued ? JOB_STATUS_QUEUED : JOB_STATUS_INITIALIZING;
    job->limits = spec->limits;
    job->limits_enforced = spec->limits_enforced;
    job->timeout_seconds = spec->timeout_seconds;
    job->network = spec->network;
    job->stdin_pipe = spec->stdin_pipe;
    job->command = strdup(command);
    job->owner = strdup(owner ? owner : "");
    job->user = strdup(spec->user ? spec->user : "");
    job->args = calloc(nargs ? nargs : 1, sizeof(char *));
    job->env = calloc(spec->nenv ? spec->nenv : 1, sizeof(char *));
    bool oom = !job->command || !job->owner || !job->args || !job->user || !job->env;
    for (size_t i = 0; !oom && i < nargs; i++) {
        job->args[i] = strdup(args[i]);
        if (!job->args[i])
            oom = true;
        else
            job->nargs++;
    }
    for (size_t i = 0; !oom && i < spec->nenv; i++) {
        job->env[i] = strdup(spec->env[i]);
        if (!job->env[i])
            oom = true;
        else
            job->nenv++;
    }
    int r = oom ? -ENOMEM : uuid4_new(job->id);
    if (r < 0) {
        job_free(job);
        return jw_error_errno_code(err, JW_INTERNAL, r, "create job");
    }
    job->create_ns = now_realtime_ns();

    pthread_mutex_lock(&s->lock);
    bool full = s->max_jobs && s->n >= s->max_jobs;
    pthread_mutex_unlock(&s->lock);
    if (full) {
        job_free(job);
        return jw_error_set(err, JW_RESOURCE_EXHAUSTED, -ENOSPC,
                            "the server holds %zu unfinished jobs, its limit (--max-jobs)",
                            s->max_jobs);
    }

    char path[PATH_MAX];
    output_path(s, job->id, path, sizeof(path));
    job->out_fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    if (job->out_fd < 0) {
        r = jw_error_errno(err, errno, "create output file '%s'", path);
        job_free(job);
        return r;
    }

    /* In the table before it is in the history: whoever finds the job by id (a listing reads
     * the history) finds this object, not a copy that never ends. */
    r = table_insert(s, job);
    if (r < 0) {
        unlink(path);
        job_free(job);
        return jw_error_set(err, JW_INTERNAL, r, "out of memory");
    }

    /* Recorded before the client hears of it: an acknowledged job is never forgotten. A
     * failure takes the job out again; nobody was told of it. */
    store_job_info in;
    store_job_snapshot(job, &in);
    jobdb_record rec;
    record_of(job, &in, &rec);
    int64_t seq = 0;
    r = jobdb_insert(s->db, &rec, &seq, err);
    if (r < 0) {
        forget(s, job, false);
        store_job_unref(job);
        return r;
    }
    pthread_mutex_lock(&job->lock);
    job->seq = seq;
    job->create_ns = rec.create_ns;
    pthread_mutex_unlock(&job->lock);
    *ret = job;
    return 0;
}

static int table_insert(store *s, store_job *job)
{
    pthread_mutex_lock(&s->lock);
    int r = table_grow(s);
    if (r == 0) {
        size_t b = hash_id(job->id) % s->n_buckets;
        job->hash_next = s->buckets[b];
        s->buckets[b] = job;
        s->order[s->n++] = store_job_ref(job);
        job->in_table = true;
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

int store_job_dequeue(store_job *job, jw_error *err)
{
    pthread_mutex_lock(&job->lock);
    if (job->status != JOB_STATUS_QUEUED) {
        pthread_mutex_unlock(&job->lock);
        return jw_error_set(err, JW_FAILED_PRECONDITION, -EINVAL, "job %s is %s, not QUEUED",
                            job->id, job_status_name(job->status));
    }
    job->status = JOB_STATUS_INITIALIZING;
    pthread_mutex_unlock(&job->lock);
    /* Durable before anything starts: a job the history shows QUEUED after a crash never ran,
     * so running it after the restart never runs it twice. */
    int r = save_state(job);
    if (r < 0) {
        pthread_mutex_lock(&job->lock);
        job->status = JOB_STATUS_QUEUED;
        pthread_mutex_unlock(&job->lock);
        jw_error_set(err, JW_UNAVAILABLE, r, "cannot record that job %s starts", job->id);
    }
    return r;
}

/* Jobs the history shows QUEUED were accepted and never started: they wait again, in the table
 * in the order they were accepted (store_queued_jobs hands them to the caller). */
static int load_queued(store *s, jw_error *err)
{
    jobdb_query q = {.limit = 256, .status_mask = 1u << JOB_STATUS_QUEUED};
    store_job **all = NULL; /* newest first */
    size_t n_all = 0;
    int r = 0;
    for (;;) {
        jobdb_record *v = NULL;
        size_t n = 0;
        r = jobdb_list(s->db, &q, &v, &n, err);
        if (r < 0) {
            r = jw_error_wrap(err, r, "find queued jobs");
            break;
        }
        if (n) {
            store_job **grown = realloc(all, (n_all + n) * sizeof(*all));
            if (!grown)
                r = jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
            else
                all = grown;
        }
        for (size_t i = 0; r == 0 && all && i < n; i++) {
            q.before_seq = v[i].seq;
            store_job *job = job_from_record(s, &v[i]);
            if (!job) {
                r = jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
                break;
            }
            all[n_all++] = job;
            job->detached = false;
            job->output_closed = false;
            job->saved_final = false;
            char path[PATH_MAX];
            output_path(s, job->id, path, sizeof(path));
            job->out_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
            if (job->out_fd < 0)
                r = jw_error_errno(err, errno, "open output file '%s'", path);
            else
                job->output_size = lseek(job->out_fd, 0, SEEK_END);
        }
        for (size_t i = 0; i < n; i++)
            jobdb_record_clear(&v[i]);
        free(v);
        if (r < 0 || n < q.limit)
            break;
    }
    for (size_t i = n_all; r == 0 && i > 0; i--) {
        r = table_insert(s, all[i - 1]);
        if (r < 0)
            r = jw_error_set(err, JW_INTERNAL, r, "out of memory");
    }
    for (size_t i = 0; i < n_all; i++)
        store_job_unref(all[i]); /* the table holds the ones it took */
    free(all);
    if (r == 0 && n_all)
        log_info("%zu queued job(s) from before the restart wait again, in their order", n_all);
    return r;
}

size_t store_queued_jobs(store *s, store_job ***ret)
{
    *ret = NULL;
    pthread_mutex_lock(&s->lock);
    size_t n = 0;
    store_job **v = s->n ? calloc(s->n, sizeof(*v)) : NULL;
    for (size_t i = 0; v && i < s->n; i++) {
        store_job *j = s->order[i];
        pthread_mutex_lock(&j->lock);
        if (j->status == JOB_STATUS_QUEUED)
            v[n++] = store_job_ref(j);
        pthread_mutex_unlock(&j->lock);
    }
    pthread_mutex_unlock(&s->lock);
    /* The table keeps the order jobs were accepted in. */
    *ret = v;
    return n;
}

/* Takes the job out of the table (if it is there) and drops the table's reference. With `share`,
 * streams still open on it keep it as the job's shared object in the readers table, so streams
 * opened from the history later join them (and their cap) instead of counting apart. */
static void table_remove(store *s, store_job *job, bool share)
{
    pthread_mutex_lock(&s->lock);
    size_t b = hash_id(job->id) % s->n_buckets;
    for (store_job **p = &s->buckets[b]; *p; p = &(*p)->hash_next) {
        if (*p == job) {
            *p = job->hash_next;
            break;
        }
    }
    bool found = false;
    for (size_t i = 0; i < s->n; i++) {
        if (s->order[i] == job) {
            memmove(&s->order[i], &s->order[i + 1], (s->n - i - 1) * sizeof(*s->order));
            s->n--;
            found = true;
            break;
        }
    }
    job->in_table = false;
    if (share) {
        pthread_mutex_lock(&job->lock);
        bool streamed = job->n_subs > 0;
        pthread_mutex_unlock(&job->lock);
        store_job **p = readers_slot(s, job->id);
        if (streamed && !*p && !job->in_readers) {
            *p = job;
            job->in_readers = true;
        }
    }
    pthread_mutex_unlock(&s->lock);
    if (found)
        store_job_unref(job);
}

/* Takes a job that never started out of the table, with its output and (when it was
 * recorded) its record; whoever waits for its end learns that it will not come. */
static void forget(store *s, store_job *job, bool recorded)
{
    store_job_ref(job);
    table_remove(s, job, false);
    char path[PATH_MAX];
    (void)unlink_output(s, job->id, path, sizeof(path)); /* it never ran: nothing to keep */
    const char *id = job->id;
    jw_error err = JW_ERROR_INIT;
    if (recorded && jobdb_delete(s->db, &id, 1, &err) < 0)
        log_error("job %s never started, but its record could not be removed: %s", job->id,
                  err.msg);
    pthread_mutex_lock(&job->lock);
    final_waiter *w = take_waiters_if_done(job, true);
    pthread_mutex_unlock(&job->lock);
    call_waiters(job, w);
    store_job_unref(job);
}

void store_job_remove(store *s, store_job *job)
{
    forget(s, job, true);
}

static store_job *table_lookup(store *s, const char *id)
{
    store_job *found = NULL;
    pthread_mutex_lock(&s->lock);
    for (store_job *j = s->buckets[hash_id(id) % s->n_buckets]; j; j = j->hash_next) {
        if (strcmp(j->id, id) == 0) {
            found = store_job_ref(j);
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return found;
}

/* Called with s->lock held. */
static store_job **readers_slot(store *s, const char *id)
{
    store_job **p = &s->readers[hash_id(id) % ARRAY_SIZE(s->readers)];
    while (*p && strcmp((*p)->id, id) != 0)
        p = &(*p)->readers_next;
    return p;
}

static store_job *readers_lookup(store *s, const char *id)
{
    pthread_mutex_lock(&s->lock);
    store_job *j = *readers_slot(s, id);
    if (j)
        store_job_ref(j);
    pthread_mutex_unlock(&s->lock);
    return j;
}

/* Takes the job's shared object out of the readers table: any object (a deleted job: later
 * lookups find nothing), or only `only` (its last stream ended). Called with s->lock held. */
static void readers_unlink_locked(store *s, const store_job *only, const char *id)
{
    store_job **p = readers_slot(s, id);
    if (*p && (!only || *p == only)) {
        store_job *j = *p;
        *p = j->readers_next;
        j->in_readers = false;
        j->readers_next = NULL;
    }
}

static void readers_unlink(store *s, const char *id)
{
    pthread_mutex_lock(&s->lock);
    readers_unlink_locked(s, NULL, id);
    pthread_mutex_unlock(&s->lock);
}

/* The job from the history, detached; NULL when unknown (or unreadable: logged). */
static store_job *history_lookup(store *s, const char *id)
{
    store_job *shared = readers_lookup(s, id);
    if (shared)
        return shared;
    jobdb_record r;
    jw_error err = JW_ERROR_INIT;
    int ret = jobdb_get(s->db, id, &r, &err);
    if (ret < 0) {
        if (ret != -ENOENT)
            log_error("read job %s: %s", id, err.msg);
        return NULL;
    }
    store_job *job = job_from_record(s, &r);
    jobdb_record_clear(&r);
    return job;
}

store_job *store_lookup(store *s, const char *id)
{
    /* The table first: a job leaves it only after its final record is written. */
    store_job *job = table_lookup(s, id);
    return job ? job : history_lookup(s, id);
}

int store_list(store *s, const store_query *q, store_job ***ret, size_t *ret_n,
               int64_t *ret_next_seq, jw_error *err)
{
    size_t limit = q->limit ? q->limit : 1;
    /* One row more than the page: whether another page exists, so the last page has no token. */
    jobdb_query dq = {.before_seq = q->before_seq,
                      .limit = limit + 1,
                      .status_mask = q->status_mask,
                      .owner = q->owner,
                      .since_ns = q->since_ns};
    jobdb_record *recs = NULL;
    size_t n = 0;
    int r = jobdb_list(s->db, &dq, &recs, &n, err);
    if (r < 0)
        return r;
    size_t total = n;
    bool more = n > limit;
    if (more)
        n = limit;
    store_job **v = calloc(n ? n : 1, sizeof(*v));
    size_t k = 0;
    for (size_t i = 0; v && i < n; i++) {
        store_job *job = NULL;
        /* A job the history shows unfinished is live: report its live state. One that ended
         * between the query and now has left the table: read it again. */
        if (!job_status_is_final(recs[i].status)) {
            job = table_lookup(s, recs[i].id);
            if (!job)
                job = history_lookup(s, recs[i].id);
            if (job && q->status_mask && !(q->status_mask & (1u << store_job_status(job)))) {
                store_job_unref(job);
                continue;
            }
            if (job) {
                pthread_mutex_lock(&job->lock);
                job->seq = recs[i].seq;
                pthread_mutex_unlock(&job->lock);
            }
        }
        if (!job)
            job = job_from_record(s, &recs[i]);
        if (!job) {
            r = jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
            break;
        }
        v[k++] = job;
    }
    if (!v)
        r = jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    *ret_next_seq = more ? recs[n - 1].seq : 0;
    for (size_t i = 0; i < total; i++)
        jobdb_record_clear(&recs[i]);
    free(recs);
    if (r < 0) {
        for (size_t i = 0; i < k; i++)
            store_job_unref(v[i]);
        free(v);
        return r;
    }
    *ret = v;
    *ret_n = k;
    return 0;
}

const char *store_db_library_version(void)
{
    return jobdb_library_version();
}

size_t store_count(store *s)
{
    pthread_mutex_lock(&s->lock);
    size_t n = s->n;
    pthread_mutex_unlock(&s->lock);
    return n;
}

int store_count_by_status(store *s, int64_t ret[JOB_STATUS_MAX + 1], jw_error *err)
{
    int r = jobdb_count_by_status(s->db, ret, err);
    if (r < 0)
        return r;
    int64_t live[JOB_STATUS_MAX + 1] = {0};
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n; i++) {
        store_job *job = s->order[i];
        pthread_mutex_lock(&job->lock);
        job_status st = job->status;
        pthread_mutex_unlock(&job->lock);
        if (st >= 0 && st <= JOB_STATUS_MAX)
            live[st]++;
    }
    pthread_mutex_unlock(&s->lock);
    for (int st = 0; st <= JOB_STATUS_MAX; st++)
        if (!job_status_is_final((job_status)st))
            ret[st] = live[st];
    return 0;
}

int store_job_delete(store *s, const char *id, store_job **ret, jw_error *err)
{
    store_job *job = store_lookup(s, id);
    if (!job)
        return jw_error_set(err, JW_NOT_FOUND, -ENOENT, "job %s not found", id);
    pthread_mutex_lock(&job->lock);
    job_status st = job->status;
    bool closed = job->output_closed;
    pthread_mutex_unlock(&job->lock);
    if (!job_status_is_final(st) || !closed) {
        store_job_unref(job);
        return jw_error_set(err, JW_FAILED_PRECONDITION, -EBUSY,
                            "job %s is %s: stop it first (jobctl stop %s), then delete it", id,
                            job_status_name(st), id);
    }
    char path[PATH_MAX];
    int u = unlink_output(s, job->id, path, sizeof(path));
    if (u < 0) {
        int e = -u;
        pthread_mutex_lock(&s->lock);
        s->stats.unlink_failures++;
        pthread_mutex_unlock(&s->lock);
        log_error_errno(-e, "delete job %s: remove its output '%s': %m", id, path);
        store_job_unref(job);
        return jw_error_errno_code(err, JW_INTERNAL, e, "remove output file '%s'", path);
    }
    const char *idp = job->id;
    int r = jobdb_delete(s->db, &idp, 1, err);
    if (r < 0) {
        store_job_unref(job);
        return r;
    }
    table_remove(s, job, false);
    readers_unlink(s, id);
    if (ret)
        *ret = job;
    else
        store_job_unref(job);
    return 0;
}

void store_get_stats(store *s, store_stats *ret)
{
    pthread_mutex_lock(&s->lock);
    *ret = s->stats;
    ret->unsaved_now = 0;
    for (size_t i = 0; i < s->n; i++) {
        store_job *j = s->order[i];
        pthread_mutex_lock(&j->lock);
        if (job_status_is_final(j->status) && j->output_closed && !j->saved_final)
            ret->unsaved_now++;
        pthread_mutex_unlock(&j->lock);
    }
    pthread_mutex_unlock(&s->lock);
}

const char *store_job_id(const store_job *job)
{
    return job->id;
}

int store_job_set_running(store_job *job, pid_t pid, int64_t start_time_ns)
{
    pthread_mutex_lock(&job->lock);
    if (!job_status_can_transition(job->status, JOB_STATUS_RUNNING)) {
        pthread_mutex_unlock(&job->lock);
        return -EINVAL;
    }
    job->status = JOB_STATUS_RUNNING;
    job->pid = pid;
    job->start_time_ns = start_time_ns;
    pthread_mutex_unlock(&job->lock);
    /* A failure is logged and counted; the final record carries this state too. */
    (void)save_state(job);
    return 0;
}

/* Called with job->lock held: the waiters to call now that the job is final and its output
 * closed (or it is being removed), detached from the job. */
static final_waiter *take_waiters_if_done(store_job *job, bool removing)
{
    if (!removing && !(job_status_is_final(job->status) && job->output_closed))
        return NULL;
    final_waiter *w = job->waiters;
    job->waiters = NULL;
    job->n_waiters = 0;
    return w;
}

/* Called with job->lock held: true exactly once, when the job is first both final and closed. */
static bool became_done(store_job *job)
{
    if (job->detached || job->done_seen || !job_status_is_final(job->status) || !job->output_closed)
        return false;
    job->done_seen = true;
    return true;
}

/* Calls and frees detached waiters; no lock is held. */
static void call_waiters(store_job *job, final_waiter *w)
{
    while (w) {
        final_waiter *next = w->next;
        w->fn(job, w->userdata);
        free(w);
        w = next;
    }
}

int store_job_on_final(store_job *job, store_final_fn fn, void *userdata)
{
    final_waiter *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->fn = fn;
    w->userdata = userdata;
    pthread_mutex_lock(&job->lock);
    int r = 0;
    if (job_status_is_final(job->status) && job->output_closed)
        r = 1;
    else if (job->n_waiters >= STORE_MAX_FINAL_WAITERS)
        r = -EBUSY;
    if (r != 0) {
        pthread_mutex_unlock(&job->lock);
        free(w);
        return r;
    }
    w->next = job->waiters;
    job->waiters = w;
    job->n_waiters++;
    pthread_mutex_unlock(&job->lock);
    return 0;
}

bool store_job_request_stop(store_job *job, job_reason reason)
{
    pthread_mutex_lock(&job->lock);
    bool live = !job_status_is_final(job->status);
    if (live && job->stop_reason == JOB_REASON_UNSPECIFIED)
        job->stop_reason = reason;
    pthread_mutex_unlock(&job->lock);
    return live;
}

job_reason store_job_stop_reason(store_job *job)
{
    pthread_mutex_lock(&job->lock);
    job_reason r = job->stop_reason;
    pthread_mutex_unlock(&job->lock);
    return r;
}

int store_job_finish(store_job *job, job_reason reason, int exit_code, int sig, const char *error,
                     const job_usage *usage, int64_t end_time_ns)
{
    job_status to = job_status_for_reason(reason, exit_code);
    char *e = error && *error ? strdup(error) : NULL;
    pthread_mutex_lock(&job->lock);
    if (!job_status_can_transition(job->status, to)) {
        pthread_mutex_unlock(&job->lock);
        free(e);
        return -EINVAL;
    }
    bool never_started = job->status == JOB_STATUS_QUEUED; /* its start time stays 0 */
    job->status = to;
    job->reason = reason;
    job->exit_code = exit_code;
    job->signal = sig;
    free(job->error);
    job->error = e;
    if (usage)
        job->usage = *usage;
    job->end_time_ns = end_time_ns;
    if (!job->start_time_ns && !never_started)
        job->start_time_ns = end_time_ns;
    pthread_cond_broadcast(&job->cond);
    bool done = became_done(job);
    final_waiter *w = take_waiters_if_done(job, false);
    pthread_mutex_unlock(&job->lock);
    if (done)
        (void)persist_final(job); /* before anyone hears of the end */
    call_waiters(job, w);
    return 0;
}

void store_job_snapshot(store_job *job, store_job_info *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->id = job->id;
    ret->command = job->command;
    ret->args = (const char *const *)job->args;
    ret->nargs = job->nargs;
    ret->env = (const char *const *)job->env;
    ret->nenv = job->nenv;
    ret->owner = job->owner;
    ret->limits = job->limits;
    ret->limits_enforced = job->limits_enforced;
    ret->timeout_seconds = job->timeout_seconds;
    ret->network = job->network;
    ret->stdin_pipe = job->stdin_pipe;
    pthread_mutex_lock(&job->lock);
    ret->seq = job->seq;
    ret->create_ns = job->create_ns;
    ret->status = job->status;
    ret->reason = job->reason;
    ret->pid = job->pid;
    ret->start_time_ns = job->start_time_ns;
    ret->end_time_ns = job->end_time_ns;
    ret->exit_code = job->exit_code;
    ret->signal = job->signal;
    if (job->error)
        snprintf(ret->error, sizeof(ret->error), "%s", job->error);
    ret->usage = job->usage;
    ret->output_bytes = job->output_size;
    ret->stderr_bytes = job->stderr_bytes;
    ret->stdout_bytes = job->output_size - job->stderr_bytes;
    ret->output_dropped = job->output_dropped;
    ret->output_errno = job->output_errno;
    ret->output_errno_at = job->output_errno_at;
    snprintf(ret->user_buf, sizeof(ret->user_buf), "%s", job->user ? job->user : "");
    ret->user = ret->user_buf;
    pthread_mutex_unlock(&job->lock);
}

void store_job_set_user(store_job *job, const char *user)
{
    char *u = strdup(user);
    if (!u)
        return; /* the display keeps the server's default: nothing else depends on it */
    pthread_mutex_lock(&job->lock);
    free(job->user);
    job->user = u;
    pthread_mutex_unlock(&job->lock);
}

job_status store_job_status(store_job *job)
{
    pthread_mutex_lock(&job->lock);
    job_status s = job->status;
    pthread_mutex_unlock(&job->lock);
    return s;
}

int store_job_wait_final(store_job *job, int timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    if (timeout_ms >= 0) {
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
        if (deadline.tv_nsec >= 1000000000) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000;
        }
    }
    int r = 0;
    pthread_mutex_lock(&job->lock);
    while (!(job_status_is_final(job->status) && job->output_closed)) {
        int e = timeout_ms < 0 ? pthread_cond_wait(&job->cond, &job->lock)
                               : pthread_cond_timedwait(&job->cond, &job->lock, &deadline);
        if (e == ETIMEDOUT) {
            r = -ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&job->lock);
    return r;
}

/* Called with job->lock held. Disarms each armed subscriber that now has something to read. */
static void wake_subs(store_job *job)
{
    for (store_sub *s = job->subs; s; s = s->next) {
        if (s->armed && (job->output_closed || job->output_size > s->armed_offset)) {
            s->armed = false;
            s->wake(s->userdata);
        }
    }
}

/* Starts a run of `stream` at log offset `size` in the job's stream index, creating the index
 * with its first run. The supervisor is the only writer. 0 or a negative errno. */
static int start_run(store_job *job, int *idx_fd, job_stream stream, int64_t size,
                     int64_t stdout_before)
{
    if (*idx_fd < 0) {
        char path[PATH_MAX];
        index_path(job->owner_store, job->id, path, sizeof(path));
        *idx_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (*idx_fd < 0)
            return -errno;
    }
    struct stat st;
    if (fstat(*idx_fd, &st) < 0)
        return -errno;
    output_run run = {.log_off = size, .stdout_before = stdout_before, .stream = stream};
    int r = runs_append(*idx_fd, &run);
    if (r < 0)
        (void)ftruncate(*idx_fd, st.st_size); /* no torn record stays behind */
    return r;
}

int store_job_append(store_job *job, job_stream stream, const void *buf, size_t len)
{
    int64_t cap = job->owner_store->max_output_bytes;
    pthread_mutex_lock(&job->lock);
    int fd = job->out_fd;
    int idx_fd = job->idx_fd;
    int64_t size = job->output_size;
    int64_t stdout_before = job->output_size - job->stderr_bytes;
    job_stream cur = job->cur_stream;
    pthread_mutex_unlock(&job->lock);
    if (fd < 0)
        return -EBADF;

    size_t keep = len;
    if (cap > 0 && size + (int64_t)len > cap)
        keep = size >= cap ? 0 : (size_t)(cap - size);
    /* The writes happen outside the lock: there is one writer, and readers only look at
     * output_size, which grows after the bytes (and the run that holds them) are in the files. */
    int r = 0;
    if (keep && stream != cur) {
        r = start_run(job, &idx_fd, stream, size, stdout_before);
        if (r == 0)
            cur = stream;
    }
    if (r == 0 && keep)
        r = write_full(fd, buf, keep);
    if (r < 0) {
        /* Bytes that could not be written (ENOSPC, EFBIG...) are dropped like those past the cap.
         * A partial write is cut off again so that the file stays exactly output_size long and
         * the next append (O_APPEND) lands where readers expect it. A run started for them stays:
         * it is empty until bytes of its stream come. */
        (void)ftruncate(fd, size);
        keep = 0;
    }

    pthread_mutex_lock(&job->lock);
    if (r < 0 && job->output_errno == 0) {
        job->output_errno = -r;
        job->output_errno_at = job->output_size;
    }
    job->idx_fd = idx_fd;
    job->cur_stream = cur;
    job->output_size += (int64_t)keep;
    if (stream == JOB_STREAM_STDERR)
        job->stderr_bytes += (int64_t)keep;
    job->output_dropped += (int64_t)(len - keep);
    wake_subs(job);
    pthread_mutex_unlock(&job->lock);
    return r;
}

void store_job_close_output(store_job *job)
{
    pthread_mutex_lock(&job->lock);
    if (job->out_fd >= 0) {
        close(job->out_fd);
        job->out_fd = -1;
    }
    if (job->idx_fd >= 0) {
        close(job->idx_fd);
        job->idx_fd = -1;
    }
    job->output_closed = true;
    wake_subs(job);
    pthread_cond_broadcast(&job->cond);
    bool done = became_done(job);
    final_waiter *w = take_waiters_if_done(job, false);
    pthread_mutex_unlock(&job->lock);
    if (done)
        (void)persist_final(job); /* before anyone hears of the end */
    call_waiters(job, w);
}

int store_job_open_output(store_job *job)
{
    char path[PATH_MAX];
    output_path(job->owner_store, job->id, path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    /* A job recorded just before the server died may have no output file: it is empty. */
    if (fd < 0 && errno == ENOENT && job->detached)
        fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* ---- Cursors ---- */

struct store_cursor {
    store_job *job;
    int out_fd;
    int idx_fd;     /* -1 while the job has no stream index */
    bool idx_final; /* no index appears any more (the output was complete at open) */
    job_stream select;
    int64_t pos;   /* log offset of the next byte */
    int64_t off;   /* the same in the cursor's terms */
    size_t n_runs; /* runs known */
    size_t run_i;  /* the run that holds pos */
    output_run run;
    int64_t run_end; /* where run_i ends: the next run's start, INT64_MAX while it is the last */
};

/* Learns of runs started since the last look (and of the index, once it exists). */
static int cursor_refresh(store_cursor *c)
{
    if (c->idx_fd < 0 && !c->idx_final) {
        char path[PATH_MAX];
        index_path(c->job->owner_store, c->job->id, path, sizeof(path));
        c->idx_fd = open(path, O_RDONLY | O_CLOEXEC);
        if (c->idx_fd < 0 && errno != ENOENT)
            return -errno;
    }
    size_t n = runs_count(c->idx_fd);
    if (n <= c->n_runs)
        return 0;
    c->n_runs = n;
    if (c->run_i + 1 < n) {
        output_run next;
        int r = runs_get(c->idx_fd, c->run_i + 1, &next);
        if (r < 0)
            return r;
        c->run_end = next.log_off;
    }
    return 0;
}

static int cursor_load_run(store_cursor *c, size_t i)
{
    c->run_i = i;
    c->run_end = INT64_MAX;
    int r = runs_get(c->idx_fd, i, &c->run);
    if (r == 0 && i + 1 < c->n_runs) {
        output_run next;
        r = runs_get(c->idx_fd, i + 1, &next);
        if (r == 0)
            c->run_end = next.log_off;
    }
    return r;
}

int store_cursor_open(store_job *job, job_stream select, int64_t offset, store_cursor **ret,
                      jw_error *err)
{
    pthread_mutex_lock(&job->lock);
    int64_t size = job->output_size, stderr_bytes = job->stderr_bytes;
    bool closed = job->output_closed;
    pthread_mutex_unlock(&job->lock);
    int64_t total = select == JOB_STREAM_STDOUT   ? size - stderr_bytes
                    : select == JOB_STREAM_STDERR ? stderr_bytes
                                                  : size;
    if (closed && offset > total)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "offset %" PRId64 " is beyond the end of the %s (%" PRId64 " bytes)",
                            offset,
                            select == JOB_STREAM_STDOUT   ? "job's stdout"
                            : select == JOB_STREAM_STDERR ? "job's stderr"
                                                          : "output",
                            total);
    store_cursor *c = calloc(1, sizeof(*c));
    if (!c)
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    c->job = store_job_ref(job);
    c->idx_fd = -1;
    c->idx_final = closed;
    c->select = select;
    c->off = offset;
    int r = c->out_fd = store_job_open_output(job);
    if (r >= 0) {
        /* A finished job's index, if any, is there now: open it once for good. */
        c->idx_final = false;
        r = cursor_refresh(c);
        c->idx_final = closed;
    }
    size_t i = 0;
    if (r >= 0)
        r = select == JOB_STREAM_BOTH ? runs_find_log(c->idx_fd, c->n_runs, offset, &i)
                                      : runs_find_stream(c->idx_fd, c->n_runs, select, offset, &i);
    if (r >= 0)
        r = cursor_load_run(c, i);
    if (r < 0) {
        jw_error_errno_code(err, JW_INTERNAL, -r, "open the output of job '%s'", job->id);
        store_cursor_free(c);
        return r;
    }
    if (select == JOB_STREAM_BOTH)
        c->pos = offset;
    else if (c->run.stream == select)
        c->pos = c->run.log_off + (offset - runs_before(&c->run, select));
    else
        c->pos = c->run.log_off; /* the end of the stream so far: its next run comes later */
    *ret = c;
    return 0;
}

void store_cursor_free(store_cursor *c)
{
    if (!c)
        return;
    if (c->out_fd >= 0)
        close(c->out_fd);
    if (c->idx_fd >= 0)
        close(c->idx_fd);
    store_job_unref(c->job);
    free(c);
}

int store_cursor_avail(store_cursor *c, int64_t size, size_t max, size_t *ret_n,
                       job_stream *ret_stream)
{
    *ret_n = 0;
    for (;;) {
        if (c->run_end == INT64_MAX) {
            int r = cursor_refresh(c);
            if (r < 0)
                return r;
        }
        if (c->pos >= c->run_end) {
            int r = cursor_load_run(c, c->run_i + 1);
            if (r < 0)
                return r;
            continue;
        }
        int64_t end = c->run_end < size ? c->run_end : size;
        if (c->pos >= end)
            return 0;
        if (c->select != JOB_STREAM_BOTH && c->run.stream != c->select) {
            c->pos = end; /* the other stream's bytes */
            continue;
        }
        uint64_t n = (uint64_t)(end - c->pos);
        *ret_n = n > max ? max : (size_t)n;
        *ret_stream = c->run.stream;
        return 0;
    }
}

int store_cursor_read(store_cursor *c, void *buf, size_t n)
{
    ssize_t got = pread(c->out_fd, buf, n, c->pos);
    if (got != (ssize_t)n)
        return got < 0 ? -errno : -EIO;
    c->pos += (int64_t)n;
    c->off += (int64_t)n;
    return 0;
}

int64_t store_cursor_offset(const store_cursor *c)
{
    return c->off;
}

int64_t store_cursor_log_pos(const store_cursor *c)
{
    return c->pos;
}

void store_job_output_state(store_job *job, int64_t *ret_size, bool *ret_closed)
{
    pthread_mutex_lock(&job->lock);
    if (ret_size)
        *ret_size = job->output_size;
    if (ret_closed)
        *ret_closed = job->output_closed;
    pthread_mutex_unlock(&job->lock);
}

int store_sub_new(store_job *job, store_wake_fn wake, void *userdata, store_sub **ret)
{
    store_sub *sub = calloc(1, sizeof(*sub));
    if (!sub)
        return -ENOMEM;
    sub->job = store_job_ref(job);
    sub->wake = wake;
    sub->userdata = userdata;
    /* Under the store's lock, so that a job leaving the table sees this stream (table_remove). */
    store *s = job->owner_store;
    pthread_mutex_lock(&s->lock);
    pthread_mutex_lock(&job->lock);
    sub->next = job->subs;
    if (job->subs)
        job->subs->prev = sub;
    job->subs = sub;
    job->n_subs++;
    pthread_mutex_unlock(&job->lock);
    store_job **p = readers_slot(s, job->id);
    if (!job->in_table && !*p && !job->in_readers) {
        *p = job;
        job->in_readers = true;
    }
    pthread_mutex_unlock(&s->lock);
    *ret = sub;
    return 0;
}

int store_sub_arm(store_sub *sub, int64_t offset)
{
    store_job *job = sub->job;
    int ready;
    pthread_mutex_lock(&job->lock);
    ready = job->output_closed || job->output_size > offset;
    sub->armed = !ready;
    sub->armed_offset = offset;
    pthread_mutex_unlock(&job->lock);
    return ready;
}

void store_sub_free(store_sub *sub)
{
    if (!sub)
        return;
    store_job *job = sub->job;
    store *s = job->owner_store;
    pthread_mutex_lock(&s->lock);
    pthread_mutex_lock(&job->lock);
    if (sub->prev)
        sub->prev->next = sub->next;
    else
        job->subs = sub->next;
    if (sub->next)
        sub->next->prev = sub->prev;
    bool last = --job->n_subs == 0;
    pthread_mutex_unlock(&job->lock);
    if (last)
        readers_unlink_locked(s, job, job->id);
    pthread_mutex_unlock(&s->lock);
    store_job_unref(job);
    free(sub);
}

size_t store_job_n_subs(store_job *job)
{
    pthread_mutex_lock(&job->lock);
    size_t n = job->n_subs;
    pthread_mutex_unlock(&job->lock);
    return n;
}

/* ---- restart, retention ---- */

/* Jobs the history shows unfinished ran under a server that is gone: they died with it (its
 * death signal) and are recorded FAILED/SERVER_LOST with the output they left. */
static int mark_lost(store *s, jw_error *err)
{
    int64_t now = now_realtime_ns();
    size_t lost = 0;
    for (;;) {
        jobdb_query q = {.limit = 256,
                         .status_mask =
                             (1u << JOB_STATUS_INITIALIZING) | (1u << JOB_STATUS_RUNNING)};
        jobdb_record *v = NULL;
        size_t n = 0;
        int r = jobdb_list(s->db, &q, &v, &n, err);
        if (r < 0)
            return jw_error_wrap(err, r, "find jobs left unfinished");
        for (size_t i = 0; r == 0 && i < n; i++) {
            jobdb_record *x = &v[i];
            char path[PATH_MAX];
            output_path(s, x->id, path, sizeof(path));
            struct stat st;
            x->output_bytes = stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
            x->stderr_bytes = 0;
            index_path(s, x->id, path, sizeof(path));
            int idx = open(path, O_RDONLY | O_CLOEXEC);
            if (idx >= 0) {
                /* A run started just before the crash may lie past the log's end. */
                if (runs_stderr_total(idx, x->output_bytes, &x->stderr_bytes) < 0 ||
                    x->stderr_bytes > x->output_bytes)
                    x->stderr_bytes = 0;
                close(idx);
            }
            x->status = JOB_STATUS_FAILED;
            x->reason = JOB_REASON_SERVER_LOST;
            x->end_ns = now;
            if (!x->start_ns)
                x->start_ns = now;
            free(x->error);
            x->error = strdup("the server went away while the job ran; its processes ended "
                              "with it");
            r = jobdb_update(s->db, x, err);
            if (r == 0)
                lost++;
        }
        for (size_t i = 0; i < n; i++)
            jobdb_record_clear(&v[i]);
        free(v);
        if (r < 0)
            return jw_error_wrap(err, r, "record a job left unfinished");
        if (n < q.limit)
            break;
    }
    s->stats.lost_at_start = (int64_t)lost;
    if (lost)
        log_warning("%zu job(s) were unfinished when the last server stopped: recorded as "
                    "FAILED (SERVER_LOST), their output is kept",
                    lost);
    return 0;
}

/* Finished jobs whose final record failed to be written: try again. */
static int64_t retry_unsaved(store *s)
{
    store_job **v = NULL;
    size_t n = 0;
    pthread_mutex_lock(&s->lock);
    if (s->n)
        v = calloc(s->n, sizeof(*v));
    for (size_t i = 0; v && i < s->n; i++) {
        store_job *j = s->order[i];
        pthread_mutex_lock(&j->lock);
        if (j->done_seen && !j->saved_final)
            v[n++] = store_job_ref(j);
        pthread_mutex_unlock(&j->lock);
    }
    pthread_mutex_unlock(&s->lock);
    int64_t saved = 0;
    for (size_t i = 0; i < n; i++) {
        if (persist_final(v[i]) == 0) {
            saved++;
            log_info("job %s: its final record is written now", v[i]->id);
        }
        store_job_unref(v[i]);
    }
    free(v);
    return saved;
}

#define SWEEP_BATCH 256

int store_sweep(store *s, int64_t now_ns, store_sweep_stats *ret, jw_error *err)
{
    memset(ret, 0, sizeof(*ret));
    ret->saved = retry_unsaved(s);
    int64_t jobs = 0, bytes = 0;
    int r = jobdb_final_totals(s->db, &jobs, &bytes, err);
    if (r < 0)
        return r;
    const store_config *c = &s->cfg;
    int64_t cutoff = c->retain_age_ns > 0 ? now_ns - c->retain_age_ns : INT64_MIN;
    jobdb_victim v[SWEEP_BATCH];
    const char *ids[SWEEP_BATCH];
    for (;;) {
        size_t n = 0, k = 0;
        r = jobdb_oldest_final(s->db, v, SWEEP_BATCH, &n, err);
        if (r < 0)
            break;
        bool over = true;
        for (; k < n; k++) {
            over = v[k].end_ns < cutoff || (c->retain_jobs > 0 && jobs > c->retain_jobs) ||
                   (c->retain_output_bytes > 0 && bytes > c->retain_output_bytes);
            if (!over)
                break;
            char path[PATH_MAX];
            int u = unlink_output(s, v[k].id, path, sizeof(path));
            if (u < 0) {
                /* The record goes anyway: a file that stays would stop retention for good. */
                if (ret->unlink_failed++ == 0)
                    log_error_errno(u, "retention: remove '%s': %m (left on disk)", path);
            }
            ids[k] = v[k].id;
            readers_unlink(s, v[k].id);
            jobs--;
            bytes -= v[k].output_bytes;
            ret->removed_jobs++;
            ret->removed_bytes += v[k].output_bytes;
        }
        if (k > 0) {
            r = jobdb_delete(s->db, ids, k, err);
            if (r < 0)
                break;
        }
        if (!over || n < SWEEP_BATCH || sweep_stopping(s))
            break;
    }
    if (ret->unlink_failed) {
        pthread_mutex_lock(&s->lock);
        s->stats.unlink_failures += ret->unlink_failed;
        pthread_mutex_unlock(&s->lock);
    }
    if (ret->removed_jobs)
        log_info("retention: removed %lld finished job(s) and %lld bytes of output; %lld "
                 "job(s) and %lld bytes kept",
                 (long long)ret->removed_jobs, (long long)ret->removed_bytes, (long long)jobs,
                 (long long)bytes);
    return r;
}

static bool sweep_stopping(store *s)
{
    pthread_mutex_lock(&s->sweep_lock);
    bool stop = s->sweep_stop;
    pthread_mutex_unlock(&s->sweep_lock);
    return stop;
}

/* Sweeps at start, then every sweep_interval_ms. */
static void *sweeper_main(void *arg)
{
    store *s = arg;
    pthread_mutex_lock(&s->sweep_lock);
    for (bool first = true; !s->sweep_stop; first = false) {
        if (!first) {
            struct timespec t;
            clock_gettime(CLOCK_MONOTONIC, &t);
            int64_t ns = t.tv_nsec + (s->cfg.sweep_interval_ms % 1000) * 1000000;
            t.tv_sec += (time_t)(s->cfg.sweep_interval_ms / 1000 + ns / 1000000000);
            t.tv_nsec = (long)(ns % 1000000000);
            while (!s->sweep_stop &&
                   pthread_cond_timedwait(&s->sweep_cond, &s->sweep_lock, &t) != ETIMEDOUT)
                ;
            if (s->sweep_stop)
                break;
        }
        pthread_mutex_unlock(&s->sweep_lock);
        store_sweep_stats st;
        jw_error err = JW_ERROR_INIT;
        if (store_sweep(s, now_realtime_ns(), &st, &err) < 0)
            log_warning("retention sweep%s: %s", first ? " at start" : "", err.msg);
        pthread_mutex_lock(&s->lock);
        s->stats.sweeps++;
        pthread_mutex_unlock(&s->lock);
        pthread_mutex_lock(&s->sweep_lock);
    }
    pthread_mutex_unlock(&s->sweep_lock);
    return NULL;
}
