#include "spawn/supervisor.h"

#include "spawn/jobinit-proto.h"
#include "util/cleanup.h"
#include "util/fileio.h"
#include "util/misc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define OUTPUT_CHUNK     (256 * 1024)
#define PIPE_SIZE        (1024 * 1024)
#define START_TIMEOUT_MS 10000
#define EMPTY_TIMEOUT_MS 5000

extern char **environ;

enum { WATCH_WAKE, WATCH_OUT, WATCH_PID };

typedef struct sv_entry sv_entry;

typedef struct sv_watch {
    int kind;
    sv_entry *entry;
} sv_watch;

struct sv_entry {
    store_job *job;
    cgroup_job *cg;
    pid_t pid;
    int pidfd;
    int out_fd;
    bool started;
    job_reason stop_reason; /* UNSPECIFIED = no stop asked */
    bool term_sent;
    bool killed;
    int64_t kill_at_ns;    /* monotonic; 0 = none */
    int64_t timeout_at_ns; /* monotonic; 0 = none */
    sv_watch w_out, w_pid;
    sv_entry *next;
};

struct supervisor {
    supervisor_config cfg;
    store *st;
    int epfd;
    int wakefd;
    sv_watch w_wake;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock;
    sv_entry *entries; /* guarded by lock */
    size_t n_entries;
    bool shutting_down;
    char *buf; /* the thread's read buffer */
};

static void sv_wake(supervisor *sv)
{
    uint64_t one = 1;
    ssize_t n = write(sv->wakefd, &one, sizeof(one));
    (void)n; /* EAGAIN means a wake is already pending */
}

static int pidfd_open_(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static void entry_free(sv_entry *e)
{
    if (!e)
        return;
    if (e->pidfd >= 0)
        close(e->pidfd);
    if (e->out_fd >= 0)
        close(e->out_fd);
    store_job_unref(e->job);
    free(e);
}

static void entry_unlink(supervisor *sv, sv_entry *e)
{
    pthread_mutex_lock(&sv->lock);
    for (sv_entry **p = &sv->entries; *p; p = &(*p)->next) {
        if (*p == e) {
            *p = e->next;
            sv->n_entries--;
            break;
        }
    }
    pthread_mutex_unlock(&sv->lock);
    sv_wake(sv);
}

/* Reads what the pipe holds now into the store. Returns 1 at EOF, 0 when drained, <0 on error. */
static int drain_output(supervisor *sv, sv_entry *e, bool once)
{
    for (;;) {
        ssize_t n = read(e->out_fd, sv->buf, OUTPUT_CHUNK);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? 0 : -errno;
        }
        if (n == 0)
            return 1;
        store_job_append(e->job, sv->buf, (size_t)n);
        if (once)
            return 0;
    }
}

static void hard_kill(supervisor *sv, sv_entry *e)
{
    e->killed = true;
    if (e->cg)
        cgroup_job_kill(e->cg);
    kill(-e->pid, SIGKILL);
}

/* The job's first process exited: kill what is left of it, collect its output to the end, read
 * its usage, remove its cgroup and record the final state. Runs on the supervisor thread. */
static void finalize(supervisor *sv, sv_entry *e)
{
    siginfo_t si = {0};
    if (waitid((idtype_t)P_PIDFD, (id_t)e->pidfd, &si, WEXITED) < 0)
        si.si_code = 0;
    epoll_ctl(sv->epfd, EPOLL_CTL_DEL, e->pidfd, NULL);

    /* Leftover processes (background children, double forks) die with the job. With a cgroup
     * that includes those that left the process group; without one only the group is reached. */
    drain_output(sv, e, false);
    cgroup_usage cu = {0};
    if (e->cg) {
        cgroup_job_kill(e->cg);
        cgroup_job_wait_empty(e->cg, EMPTY_TIMEOUT_MS);
        /* Every writer is gone now, so the pipe reaches EOF. */
        while (drain_output(sv, e, false) == 0) {
            struct pollfd p = {.fd = e->out_fd, .events = POLLIN};
            if (poll(&p, 1, 100) <= 0)
                break;
        }
        cgroup_job_read_usage(e->cg, &cu);
        cgroup_job_destroy(e->cg);
        e->cg = NULL;
    } else {
        kill(-e->pid, SIGKILL);
        drain_output(sv, e, false);
    }
    epoll_ctl(sv->epfd, EPOLL_CTL_DEL, e->out_fd, NULL);

    job_usage usage = {.cpu_usec = cu.cpu_usec,
                       .memory_peak_bytes = cu.memory_peak,
                       .io_read_bytes = cu.io_read_bytes,
                       .io_write_bytes = cu.io_write_bytes};
    int exit_code = 0, sig = 0;
    job_reason reason;
    char error[256] = "";
    if (si.si_code == CLD_EXITED) {
        exit_code = si.si_status;
        reason = JOB_REASON_EXITED;
    } else {
        sig = si.si_status;
        reason = JOB_REASON_SIGNALED;
    }
    pthread_mutex_lock(&sv->lock);
    job_reason stop_reason = e->stop_reason;
    pthread_mutex_unlock(&sv->lock);
    if (stop_reason != JOB_REASON_UNSPECIFIED) {
        reason = stop_reason;
        if (reason == JOB_REASON_TIMED_OUT) {
            store_job_info info;
            store_job_snapshot(e->job, &info);
            snprintf(error, sizeof(error), "timed out after %d s", (int)info.timeout_seconds);
        }
    } else if (cu.oom_kills > 0) {
        reason = JOB_REASON_OOM_KILLED;
        snprintf(error, sizeof(error),
                 "killed by the OOM killer (%lld kill(s), peak memory %lld bytes)",
                 (long long)cu.oom_kills, (long long)cu.memory_peak);
    }
    /* Release everything of the job's before announcing its end, so that whoever waits for
     * the end finds no fd and no entry of it left. */
    close(e->pidfd);
    e->pidfd = -1;
    close(e->out_fd);
    e->out_fd = -1;
    entry_unlink(sv, e);
    store_job_finish(e->job, reason, exit_code, sig, error, &usage, now_realtime_ns());
    store_job_close_output(e->job);
    entry_free(e);
}

/* Applies stops, grace-period kills and timeouts; returns the epoll timeout in ms. */
static int run_deadlines(supervisor *sv)
{
    int64_t now = now_monotonic_ns();
    int64_t next = -1;
    pthread_mutex_lock(&sv->lock);
    for (sv_entry *e = sv->entries; e; e = e->next) {
        if (!e->started)
            continue;
        if (e->stop_reason == JOB_REASON_UNSPECIFIED && e->timeout_at_ns && now >= e->timeout_at_ns)
            e->stop_reason = JOB_REASON_TIMED_OUT;
        if (e->stop_reason != JOB_REASON_UNSPECIFIED && !e->term_sent) {
            e->term_sent = true;
            kill(-e->pid, SIGTERM);
            e->kill_at_ns = now + sv->cfg.stop_grace_ms * 1000000;
        }
        if (e->kill_at_ns && !e->killed && now >= e->kill_at_ns)
            hard_kill(sv, e);
        int64_t d = 0;
        if (e->kill_at_ns && !e->killed)
            d = e->kill_at_ns;
        else if (!e->term_sent && e->timeout_at_ns)
            d = e->timeout_at_ns;
        if (d && (next < 0 || d < next))
            next = d;
    }
    pthread_mutex_unlock(&sv->lock);
    if (next < 0)
        return -1;
    int64_t ms = (next - now + 999999) / 1000000;
    return ms < 0 ? 0 : ms > 60000 ? 60000 : (int)ms;
}

static void *sv_thread(void *arg)
{
    supervisor *sv = arg;
    struct epoll_event evs[64];
    for (;;) {
        pthread_mutex_lock(&sv->lock);
        bool done = sv->shutting_down && sv->n_entries == 0;
        pthread_mutex_unlock(&sv->lock);
        if (done)
            break;
        int timeout = run_deadlines(sv);
        int n = epoll_wait(sv->epfd, evs, (int)ARRAY_SIZE(evs), timeout);
        if (n < 0 && errno != EINTR)
            break;
        /* Output first, exits second: an exit may free its entry. */
        for (int i = 0; i < n; i++) {
            sv_watch *w = evs[i].data.ptr;
            if (w->kind == WATCH_WAKE) {
                uint64_t v;
                ssize_t r = read(sv->wakefd, &v, sizeof(v));
                (void)r;
            } else if (w->kind == WATCH_OUT) {
                if (drain_output(sv, w->entry, true) != 0)
                    epoll_ctl(sv->epfd, EPOLL_CTL_DEL, w->entry->out_fd, NULL);
            }
        }
        for (int i = 0; i < n; i++) {
            sv_watch *w = evs[i].data.ptr;
            if (w->kind == WATCH_PID)
                finalize(sv, w->entry);
        }
    }
    return NULL;
}

int supervisor_new(const supervisor_config *cfg, store *st, supervisor **ret, jw_error *err)
{
    supervisor *sv = calloc(1, sizeof(*sv));
    if (!sv)
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    sv->cfg = *cfg;
    if (sv->cfg.stop_grace_ms <= 0)
        sv->cfg.stop_grace_ms = 100;
    sv->st = st;
    pthread_mutex_init(&sv->lock, NULL);
    sv->buf = malloc(OUTPUT_CHUNK);
    sv->epfd = epoll_create1(EPOLL_CLOEXEC);
    sv->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int r = 0;
    if (!sv->buf || sv->epfd < 0 || sv->wakefd < 0) {
        r = -errno;
        goto fail;
    }
    sv->w_wake.kind = WATCH_WAKE;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &sv->w_wake};
    if (epoll_ctl(sv->epfd, EPOLL_CTL_ADD, sv->wakefd, &ev) < 0) {
        r = -errno;
        goto fail;
    }
    r = -pthread_create(&sv->thread, NULL, sv_thread, sv);
    if (r < 0)
        goto fail;
    sv->thread_started = true;
    *ret = sv;
    return 0;
fail:
    jw_error_set(err, JW_INTERNAL, r, "start supervisor: %s", strerror(-r));
    supervisor_free(sv);
    return r;
}

void supervisor_free(supervisor *sv)
{
    if (!sv)
        return;
    if (sv->thread_started) {
        pthread_mutex_lock(&sv->lock);
        sv->shutting_down = true;
        for (sv_entry *e = sv->entries; e; e = e->next)
            if (e->stop_reason == JOB_REASON_UNSPECIFIED)
                e->stop_reason = JOB_REASON_SERVER_SHUTDOWN;
        pthread_mutex_unlock(&sv->lock);
        sv_wake(sv);
        pthread_join(sv->thread, NULL);
    }
    if (sv->epfd >= 0)
        close(sv->epfd);
    if (sv->wakefd >= 0)
        close(sv->wakefd);
    free(sv->buf);
    pthread_mutex_destroy(&sv->lock);
    free(sv);
}

size_t supervisor_n_active(supervisor *sv)
{
    pthread_mutex_lock(&sv->lock);
    size_t n = sv->n_entries;
    pthread_mutex_unlock(&sv->lock);
    return n;
}

static char **build_env(const supervisor *sv, const char *id)
{
    static const char *const defaults[] = {
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME=/",
        "LANG=C.UTF-8",
        NULL,
    };
    const char *const *base = sv->cfg.env ? sv->cfg.env : defaults;
    size_t n = 0;
    while (base[n])
        n++;
    char **env = calloc(n + 2, sizeof(char *));
    if (!env)
        return NULL;
    for (size_t i = 0; i < n; i++)
        env[i] = (char *)base[i];
    if (asprintf(&env[n], "JOBWORKER_JOB_ID=%s", id) < 0) {
        free(env);
        return NULL;
    }
    return env;
}

/* The last entry of build_env's array is the only one it allocated. */
static void free_env(char **env)
{
    if (!env)
        return;
    size_t n = 0;
    while (env[n])
        n++;
    if (n)
        free(env[n - 1]);
    free(env);
}

static const char *stage_text(int32_t stage)
{
    switch (stage) {
    case JOBINIT_STAGE_ARGS: return "job-init arguments";
    case JOBINIT_STAGE_CGROUP: return "join the job's cgroup";
    case JOBINIT_STAGE_SETUP: return "set up the job's process";
    default: return "start job";
    }
}

/* posix_spawn()s job-init with fds 0/1/2/3 in place and waits for its verdict on the status
 * pipe. On success returns 0 with the pid, its pidfd and the output pipe's read end. When the
 * job itself could not start (exec failed...) returns 0 with *ret_pid 0 and the reason in
 * start_error. */
static int spawn_job_init(supervisor *sv, store_job *job, cgroup_job *cg, pid_t *ret_pid,
                          int *ret_pidfd, int *ret_out, char *start_error, size_t errsize,
                          jw_error *err)
{
    store_job_info info;
    store_job_snapshot(job, &info);

    int outp[2] = {-1, -1}, stp[2] = {-1, -1};
    if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(stp, O_CLOEXEC) < 0) {
        int r = -errno;
        for (int i = 0; i < 2; i++) {
            if (outp[i] >= 0)
                close(outp[i]);
        }
        return jw_error_set(err, JW_RESOURCE_EXHAUSTED, r, "create pipes: %s", strerror(-r));
    }
    _cleanup_close_ int out_r = outp[0], out_w = outp[1], st_r = stp[0], st_w = stp[1];
    (void)fcntl(out_r, F_SETPIPE_SZ, PIPE_SIZE); /* a larger pipe only helps throughput */

    size_t argc = 0;
    const char **argv = calloc(info.nargs + 10, sizeof(char *));
    char **env = build_env(sv, info.id);
    char rel[4096] = "";
    if (!argv || !env) {
        free(argv);
        free_env(env);
        env = NULL;
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    }
    argv[argc++] = sv->cfg.job_init_path;
    if (cg) {
        snprintf(rel, sizeof(rel), "%s", cgroup_job_rel_path(cg));
        argv[argc++] = "--cgroup";
        argv[argc++] = cgroup_job_path(cg);
        argv[argc++] = "--cgroup-rel";
        argv[argc++] = rel;
    }
    argv[argc++] = "--";
    argv[argc++] = info.command;
    for (size_t i = 0; i < info.nargs; i++)
        argv[argc++] = info.args[i];
    argv[argc] = NULL;

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out_w, 1);
    posix_spawn_file_actions_adddup2(&fa, out_w, 2);
    posix_spawn_file_actions_adddup2(&fa, st_w, JOBINIT_STATUS_FD);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr,
                             POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSID);
    pid_t pid = 0;
    int r = -posix_spawn(&pid, sv->cfg.job_init_path, &fa, &attr, (char *const *)argv, env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    free_env(env);
    env = NULL;
    free(argv);
    if (r < 0)
        return jw_error_set(err, JW_INTERNAL, r, "spawn '%s': %s", sv->cfg.job_init_path,
                            strerror(-r));
    close(TAKE_FD(out_w));
    close(TAKE_FD(st_w));

    _cleanup_close_ int pidfd = pidfd_open_(pid);
    if (pidfd < 0) {
        r = -errno;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return jw_error_set(err, JW_INTERNAL, r, "pidfd_open %d: %s", pid, strerror(-r));
    }

    jobinit_status st;
    struct pollfd p = {.fd = st_r, .events = POLLIN};
    int pr = poll(&p, 1, START_TIMEOUT_MS);
    ssize_t n = pr > 0 ? read_full(st_r, &st, sizeof(st)) : -ETIMEDOUT;
    if (n == 0) {
        if (fcntl(out_r, F_SETFL, O_NONBLOCK) < 0) {
            r = -errno;
            kill(pid, SIGKILL);
            waitid((idtype_t)P_PIDFD, (id_t)pidfd, &(siginfo_t){0}, WEXITED);
            return jw_error_set(err, JW_INTERNAL, r, "set output pipe non-blocking: %s",
                                strerror(-r));
        }
        *ret_pid = pid;
        *ret_pidfd = TAKE_FD(pidfd);
        *ret_out = TAKE_FD(out_r);
        return 0;
    }
    /* job-init failed (or hung): make sure it is gone and reaped. */
    kill(pid, SIGKILL);
    waitid((idtype_t)P_PIDFD, (id_t)pidfd, &(siginfo_t){0}, WEXITED);
    if (n != (ssize_t)sizeof(st))
        return jw_error_set(err, JW_INTERNAL, n < 0 ? (int)n : -EIO,
                            "job-init gave no start status: %s",
                            n < 0 ? strerror((int)-n) : "short read");
    if (st.stage == JOBINIT_STAGE_EXEC)
        snprintf(start_error, errsize, "exec '%s': %s", info.command, strerror(st.err));
    else
        snprintf(start_error, errsize, "%s: %s", stage_text(st.stage), strerror(st.err));
    *ret_pid = 0;
    return 0;
}

int supervisor_start_job(supervisor *sv, store_job *job, jw_error *err)
{
    sv_entry *e = calloc(1, sizeof(*e));
    if (!e)
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    e->job = store_job_ref(job);
    e->pidfd = -1;
    e->out_fd = -1;
    e->w_out = (sv_watch){WATCH_OUT, e};
    e->w_pid = (sv_watch){WATCH_PID, e};

    pthread_mutex_lock(&sv->lock);
    if (sv->shutting_down) {
        pthread_mutex_unlock(&sv->lock);
        entry_free(e);
        return jw_error_set(err, JW_UNAVAILABLE, -ESHUTDOWN, "the server is shutting down");
    }
    e->next = sv->entries;
    sv->entries = e;
    sv->n_entries++;
    pthread_mutex_unlock(&sv->lock);

    store_job_info info;
    store_job_snapshot(job, &info);
    int r;
    if (sv->cfg.cgroups) {
        cgroup_limits lim = {
            .cpu_percent = info.limits.cpu_percent,
            .memory_max = info.limits.memory_bytes,
            .memory_high = info.limits.memory_high_bytes,
            .io_bps = info.limits.io_bps,
            .pids_max = info.limits.pids_max,
        };
        r = cgroup_job_create(sv->cfg.cgroups, info.id, &lim, &e->cg, err);
        if (r < 0)
            goto fail;
    }

    char start_error[256] = "";
    pid_t pid = 0;
    r = spawn_job_init(sv, job, e->cg, &pid, &e->pidfd, &e->out_fd, start_error,
                       sizeof(start_error), err);
    if (r < 0)
        goto fail;
    if (pid == 0) {
        cgroup_job_destroy(e->cg);
        e->cg = NULL;
        entry_unlink(sv, e);
        entry_free(e);
        store_job_finish(job, JOB_REASON_START_FAILED, JOBINIT_EXIT_FAILED, 0, start_error, NULL,
                         now_realtime_ns());
        store_job_close_output(job);
        return 0;
    }

    e->pid = pid;
    store_job_set_running(job, pid, now_realtime_ns());
    struct epoll_event ev_out = {.events = EPOLLIN, .data.ptr = &e->w_out};
    struct epoll_event ev_pid = {.events = EPOLLIN, .data.ptr = &e->w_pid};
    pthread_mutex_lock(&sv->lock);
    if (info.timeout_seconds > 0)
        e->timeout_at_ns = now_monotonic_ns() + (int64_t)info.timeout_seconds * 1000000000;
    e->started = true;
    /* Registration happens under the lock so the thread never sees a half-registered entry;
     * epoll_ctl itself is thread-safe. */
    epoll_ctl(sv->epfd, EPOLL_CTL_ADD, e->out_fd, &ev_out);
    epoll_ctl(sv->epfd, EPOLL_CTL_ADD, e->pidfd, &ev_pid);
    pthread_mutex_unlock(&sv->lock);
    sv_wake(sv);
    return 0;

fail:
    if (e->cg) {
        cgroup_job_kill(e->cg);
        cgroup_job_destroy(e->cg);
        e->cg = NULL;
    }
    entry_unlink(sv, e);
    entry_free(e);
    return r;
}

int supervisor_stop_job(supervisor *sv, store_job *job, job_reason reason, jw_error *err)
{
    bool found = false;
    pthread_mutex_lock(&sv->lock);
    for (sv_entry *e = sv->entries; e; e = e->next) {
        if (e->job == job) {
            found = true;
            if (e->stop_reason == JOB_REASON_UNSPECIFIED)
                e->stop_reason = reason;
            break;
        }
    }
    pthread_mutex_unlock(&sv->lock);
    if (!found)
        return 0; /* already final, or finishing right now: wait below covers the latter */
    sv_wake(sv);
    int timeout = (int)sv->cfg.stop_grace_ms + EMPTY_TIMEOUT_MS + START_TIMEOUT_MS;
    int r = store_job_wait_final(job, timeout);
    if (r < 0)
        return jw_error_set(err, JW_INTERNAL, r, "job '%s' did not stop within %d ms",
                            store_job_id(job), timeout);
    return 0;
}
