#include "store/store.h"

#include "util/cleanup.h"
#include "util/fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
    char *owner;
    char *user;
    job_network network;
    job_limits limits;
    bool limits_enforced;
    int32_t timeout_seconds;

    /* Guarded by lock. */
    pthread_mutex_t lock;
    pthread_cond_t cond; /* broadcast on final state and output close */
    job_status status;
    job_reason reason;
    int32_t pid;
    int64_t start_time_ns, end_time_ns;
    int32_t exit_code, signal;
    char *error;
    job_usage usage;
    int64_t output_size;
    int64_t output_dropped;
    int output_errno;        /* the first write that failed (ENOSPC...); 0 = none */
    int64_t output_errno_at; /* output_size when it failed */
    bool output_closed;
    int out_fd; /* write end of the output file while the job may produce output */
    store_sub *subs;
    size_t n_subs;
    job_reason stop_reason; /* the first stop asked for; UNSPECIFIED = none */
    final_waiter *waiters;  /* one-shot callbacks for the end, see store_job_on_final */
    size_t n_waiters;
};

static final_waiter *take_waiters_if_done(store_job *job, bool removing);
static void call_waiters(store_job *job, final_waiter *w);

struct store {
    pthread_mutex_t lock;
    char *data_dir;
    char *output_dir;
    size_t max_jobs;
    int64_t max_output_bytes;
    store_job **order; /* insertion order */
    size_t n, cap;
    store_job **buckets;
    size_t n_buckets;
};

static uint64_t hash_id(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

int store_new(const store_config *cfg, store **ret, jw_error *err)
{
    if (!cfg->data_dir || !*cfg->data_dir)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL, "data directory is empty");
    store *s = calloc(1, sizeof(*s));
    if (!s)
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
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
    /* The table lives in memory only: output left by an earlier run belongs to no job. */
    DIR *d = opendir(s->output_dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            size_t l = strlen(de->d_name);
            if (l > 4 && strcmp(de->d_name + l - 4, ".out") == 0)
                unlinkat(dirfd(d), de->d_name, 0);
        }
        closedir(d);
    }
    *ret = s;
    return 0;
}

static void job_free(store_job *job)
{
    if (job->out_fd >= 0)
        close(job->out_fd);
    free(job->command);
    for (size_t i = 0; i < job->nargs; i++)
        free(job->args[i]);
    free(job->args);
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
    for (size_t i = 0; i < s->n; i++)
        store_job_unref(s->order[i]);
    free(s->order);
    free(s->buckets);
    free(s->data_dir);
    free(s->output_dir);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

const char *store_output_dir(const store *s)
{
    return s->output_dir;
}

static void output_path(const store *s, const char *id, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%s.out", s->output_dir, id);
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

int store_job_new(store *s, const store_job_spec *spec, store_job **ret, jw_error *err)
{
    const char *command = spec->command, *owner = spec->owner;
    const char *const *args = spec->args;
    size_t nargs = spec->nargs;
    store_job *job = calloc(1, sizeof(*job));
    if (!job)
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    atomic_init(&job->refs, 1);
    pthread_mutex_init(&job->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&job->cond, &ca);
    pthread_condattr_destroy(&ca);
    job->out_fd = -1;
    job->owner_store = s;
    job->status = JOB_STATUS_INITIALIZING;
    job->limits = spec->limits;
    job->limits_enforced = spec->limits_enforced;
    job->timeout_seconds = spec->timeout_seconds;
    job->network = spec->network;
    job->command = strdup(command);
    job->owner = strdup(owner ? owner : "");
    job->user = strdup(spec->user ? spec->user : "");
    job->args = calloc(nargs ? nargs : 1, sizeof(char *));
    bool oom = !job->command || !job->owner || !job->args || !job->user;
    for (size_t i = 0; !oom && i < nargs; i++) {
        job->args[i] = strdup(args[i]);
        if (!job->args[i])
            oom = true;
        else
            job->nargs++;
    }
    int r = oom ? -ENOMEM : uuid4_new(job->id);
    if (r < 0) {
        job_free(job);
        return jw_error_errno_code(err, JW_INTERNAL, r, "create job");
    }

    char path[PATH_MAX];
    output_path(s, job->id, path, sizeof(path));
    job->out_fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    if (job->out_fd < 0) {
        r = -errno;
        job_free(job);
        return jw_error_errno_code(err, JW_INTERNAL, r, "create output file '%s'", path);
    }

    pthread_mutex_lock(&s->lock);
    if (s->max_jobs && s->n >= s->max_jobs) {
        pthread_mutex_unlock(&s->lock);
        unlink(path);
        job_free(job);
        return jw_error_set(err, JW_RESOURCE_EXHAUSTED, -ENOSPC,
                            "the server holds %zu jobs, its limit (--max-jobs)", s->max_jobs);
    }
    r = table_grow(s);
    if (r < 0) {
        pthread_mutex_unlock(&s->lock);
        unlink(path);
        job_free(job);
        return jw_error_set(err, JW_INTERNAL, r, "out of memory");
    }
    size_t b = hash_id(job->id) % s->n_buckets;
    job->hash_next = s->buckets[b];
    s->buckets[b] = job;
    s->order[s->n++] = store_job_ref(job);
    pthread_mutex_unlock(&s->lock);

    *ret = job;
    return 0;
}

void store_job_remove(store *s, store_job *job)
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
    pthread_mutex_unlock(&s->lock);
    char path[PATH_MAX];
    output_path(s, job->id, path, sizeof(path));
    unlink(path);
    /* Whoever waits for this job's end learns that it will not come: the job is not final. */
    pthread_mutex_lock(&job->lock);
    final_waiter *w = take_waiters_if_done(job, true);
    pthread_mutex_unlock(&job->lock);
    call_waiters(job, w);
    if (found)
        store_job_unref(job);
}

store_job *store_lookup(store *s, const char *id)
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

int store_list(store *s, store_job ***ret, size_t *ret_n)
{
    pthread_mutex_lock(&s->lock);
    store_job **v = malloc((s->n ? s->n : 1) * sizeof(*v));
    if (!v) {
        pthread_mutex_unlock(&s->lock);
        return -ENOMEM;
    }
    for (size_t i = 0; i < s->n; i++)
        v[i] = store_job_ref(s->order[i]);
    *ret_n = s->n;
    pthread_mutex_unlock(&s->lock);
    *ret = v;
    return 0;
}

size_t store_count(store *s)
{
    pthread_mutex_lock(&s->lock);
    size_t n = s->n;
    pthread_mutex_unlock(&s->lock);
    return n;
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
    job->status = to;
    job->reason = reason;
    job->exit_code = exit_code;
    job->signal = sig;
    free(job->error);
    job->error = e;
    if (usage)
        job->usage = *usage;
    job->end_time_ns = end_time_ns;
    if (!job->start_time_ns)
        job->start_time_ns = end_time_ns;
    pthread_cond_broadcast(&job->cond);
    final_waiter *w = take_waiters_if_done(job, false);
    pthread_mutex_unlock(&job->lock);
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
    ret->owner = job->owner;
    ret->limits = job->limits;
    ret->limits_enforced = job->limits_enforced;
    ret->timeout_seconds = job->timeout_seconds;
    ret->network = job->network;
    ret->user = job->user;
    pthread_mutex_lock(&job->lock);
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
    ret->output_dropped = job->output_dropped;
    ret->output_errno = job->output_errno;
    ret->output_errno_at = job->output_errno_at;
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

int store_job_append(store_job *job, const void *buf, size_t len)
{
    int64_t cap = job->owner_store->max_output_bytes;
    pthread_mutex_lock(&job->lock);
    int fd = job->out_fd;
    int64_t size = job->output_size;
    pthread_mutex_unlock(&job->lock);
    if (fd < 0)
        return -EBADF;

    size_t keep = len;
    if (cap > 0 && size + (int64_t)len > cap)
        keep = size >= cap ? 0 : (size_t)(cap - size);
    /* The write happens outside the lock: there is one writer, and readers only look at
     * output_size, which grows after the bytes are in the file. */
    int r = keep ? write_full(fd, buf, keep) : 0;
    if (r < 0) {
        /* Bytes that could not be written (ENOSPC, EFBIG...) are dropped like those past the cap.
         * A partial write is cut off again so that the file stays exactly output_size long and
         * the next append (O_APPEND) lands where readers expect it. */
        (void)ftruncate(fd, size);
        keep = 0;
    }

    pthread_mutex_lock(&job->lock);
    if (r < 0 && job->output_errno == 0) {
        job->output_errno = -r;
        job->output_errno_at = job->output_size;
    }
    job->output_size += (int64_t)keep;
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
    job->output_closed = true;
    wake_subs(job);
    pthread_cond_broadcast(&job->cond);
    final_waiter *w = take_waiters_if_done(job, false);
    pthread_mutex_unlock(&job->lock);
    call_waiters(job, w);
}

int store_job_open_output(store_job *job)
{
    char path[PATH_MAX];
    output_path(job->owner_store, job->id, path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
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
    pthread_mutex_lock(&job->lock);
    sub->next = job->subs;
    if (job->subs)
        job->subs->prev = sub;
    job->subs = sub;
    job->n_subs++;
    pthread_mutex_unlock(&job->lock);
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
    pthread_mutex_lock(&job->lock);
    if (sub->prev)
        sub->prev->next = sub->next;
    else
        job->subs = sub->next;
    if (sub->next)
        sub->next->prev = sub->prev;
    job->n_subs--;
    pthread_mutex_unlock(&job->lock);
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
