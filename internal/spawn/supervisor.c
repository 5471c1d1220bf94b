#include "spawn/supervisor.h"

#include "spawn/jobinit-proto.h"
#include "util/cleanup.h"
#include "util/fileio.h"
#include "util/misc.h"
#include "util/rmtree.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
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
#define CHILD_STACK      (64 * 1024)

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
    int st_fd;        /* job-init's status pipe: the EXITED record arrives here */
    bool has_workdir; /* <work_root>/<id> exists and must be removed at the end */
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

static void remove_workdir(supervisor *sv, const char *id);

static void entry_free(sv_entry *e)
{
    if (!e)
        return;
    if (e->pidfd >= 0)
        close(e->pidfd);
    if (e->out_fd >= 0)
        close(e->out_fd);
    if (e->st_fd >= 0)
        close(e->st_fd);
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

static int pidfd_signal(int pidfd, int sig)
{
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

/* SIGKILL to job-init ends its PID namespace, so every process of the job dies with it;
 * cgroup.kill is the same for the cgroup. The pidfd makes this safe against pid reuse. */
static void hard_kill(supervisor *sv, sv_entry *e)
{
    e->killed = true;
    if (e->cg)
        cgroup_job_kill(e->cg);
    pidfd_signal(e->pidfd, SIGKILL);
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
        /* job-init is gone, and with it its PID namespace: nothing of the job is left. */
        while (drain_output(sv, e, false) == 0) {
            struct pollfd p = {.fd = e->out_fd, .events = POLLIN};
            if (poll(&p, 1, 100) <= 0)
                break;
        }
    }
    if (e->has_workdir)
        remove_workdir(sv, store_job_id(e->job));
    epoll_ctl(sv->epfd, EPOLL_CTL_DEL, e->out_fd, NULL);

    job_usage usage = {.cpu_usec = cu.cpu_usec,
                       .memory_peak_bytes = cu.memory_peak,
                       .io_read_bytes = cu.io_read_bytes,
                       .io_write_bytes = cu.io_write_bytes};
    int exit_code = 0, sig = 0;
    job_reason reason;
    char error[256] = "";
    /* The command's own wait status, from job-init; without one (job-init was killed), job-init's
     * status stands for the job. */
    jobinit_msg m;
    ssize_t n = read(e->st_fd, &m, sizeof(m));
    if (n == (ssize_t)sizeof(m) && m.kind == JOBINIT_MSG_EXITED) {
        if (WIFEXITED(m.wstatus)) {
            exit_code = WEXITSTATUS(m.wstatus);
            reason = JOB_REASON_EXITED;
        } else {
            sig = WTERMSIG(m.wstatus);
            reason = JOB_REASON_SIGNALED;
        }
    } else if (si.si_code == CLD_EXITED) {
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
    close(e->st_fd);
    e->st_fd = -1;
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
            pidfd_signal(e->pidfd, SIGTERM); /* job-init forwards it to the command */
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
    pthread_setname_np(pthread_self(), "jw-supervisor");
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

void supervisor_shutdown(supervisor *sv)
{
    if (!sv || !sv->thread_started)
        return;
    pthread_mutex_lock(&sv->lock);
    sv->shutting_down = true;
    for (sv_entry *e = sv->entries; e; e = e->next)
        if (e->stop_reason == JOB_REASON_UNSPECIFIED)
            e->stop_reason = JOB_REASON_SERVER_SHUTDOWN;
    pthread_mutex_unlock(&sv->lock);
    sv_wake(sv);
    /* The thread leaves once no entry is left, including jobs that were still starting. */
    pthread_join(sv->thread, NULL);
    sv->thread_started = false;
}

void supervisor_free(supervisor *sv)
{
    if (!sv)
        return;
    supervisor_shutdown(sv);
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

/* The job's whole environment: nothing of the server's leaks into jobs. */
static char **build_env(const char *id, const char *home)
{
    char **env = calloc(5, sizeof(char *));
    if (!env)
        return NULL;
    env[0] = strdup("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    env[1] = strdup("LANG=C.UTF-8");
    if (asprintf(&env[2], "HOME=%s", home) < 0)
        env[2] = NULL;
    if (asprintf(&env[3], "JOBWORKER_JOB_ID=%s", id) < 0)
        env[3] = NULL;
    for (int i = 0; i < 4; i++) {
        if (!env[i]) {
            for (int k = 0; k < 4; k++)
                free(env[k]);
            free(env);
            return NULL;
        }
    }
    return env;
}

static void free_env(char **env)
{
    if (!env)
        return;
    for (size_t i = 0; env[i]; i++)
        free(env[i]);
    free(env);
}

/* <work_root>/<id>, owned by the job's user, 0700. */
static int create_workdir(supervisor *sv, const char *id, char *path, size_t size, jw_error *err)
{
    snprintf(path, size, "%s/%s", sv->cfg.work_root, id);
    if (mkdir(path, 0700) < 0)
        return jw_error_set(err, JW_INTERNAL, -errno, "create working directory '%s': %s", path,
                            strerror(errno));
    if (sv->cfg.job_uid >= 0 && chown(path, (uid_t)sv->cfg.job_uid, (gid_t)sv->cfg.job_gid) < 0) {
        int r = -errno;
        rmdir(path);
        return jw_error_set(err, JW_INTERNAL, r, "chown working directory '%s': %s", path,
                            strerror(-r));
    }
    return 0;
}

/* The job user owns what is inside: remove it without following any of its symlinks. */
static void remove_workdir(supervisor *sv, const char *id)
{
    int dfd = open(sv->cfg.work_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return;
    rm_tree_at(dfd, id);
    close(dfd);
}

static const char *stage_text(int32_t stage)
{
    switch (stage) {
    case JOBINIT_STAGE_ARGS: return "job-init arguments";
    case JOBINIT_STAGE_CGROUP: return "join the job's cgroup";
    case JOBINIT_STAGE_SETUP: return "set up the job's process";
    case JOBINIT_STAGE_NAMESPACE: return "set up the job's namespaces";
    case JOBINIT_STAGE_CREDENTIALS: return "take the job's credentials";
    case JOBINIT_STAGE_FORK: return "fork the command";
    default: return "start job";
    }
}

/* What the clone()d child needs; it shares our memory until it execs (CLONE_VM|CLONE_VFORK). */
typedef struct child_args {
    int null_fd, out_w, st_w; /* all >= 10, so dup2 onto 0..3 cannot clobber a source */
    const char *path;
    char *const *argv;
    char *const *envp;
} child_args;

/* Runs in the child on its own stack, sharing the parent's memory while the parent is suspended:
 * only system calls, no allocation, no locks. Signals stay blocked through execve; job-init
 * sets its own mask. */
static int child_main(void *arg)
{
    const child_args *a = arg;
    /* The job dies with the server, even by SIGKILL: set here, before execve, so that there is no
     * window in which job-init could be orphaned. It fires when the thread that called clone()
     * exits, an RPC worker, which lives until after every job was stopped at shutdown. */
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (dup2(a->null_fd, 0) < 0 || dup2(a->out_w, 1) < 0 || dup2(a->out_w, 2) < 0 ||
        dup2(a->st_w, JOBINIT_STATUS_FD) < 0)
        _exit(JOBINIT_EXIT_FAILED);
    execve(a->path, a->argv, a->envp);
    jobinit_msg m = {.kind = JOBINIT_MSG_FAILED, .stage = 0, .err = errno};
    ssize_t n = write(JOBINIT_STATUS_FD, &m, sizeof(m));
    (void)n;
    _exit(JOBINIT_EXIT_FAILED);
}

static int dup_high(int fd)
{
    return fcntl(fd, F_DUPFD_CLOEXEC, 10);
}

/* Starts job-init in the job's new namespaces and waits for its verdict on the status pipe. On
 * success returns 0 with the pid, its pidfd, the output pipe's read end and the status pipe's
 * read end. When the job itself could not start (exec failed...) returns 0 with *ret_pid 0 and
 * the reason in start_error. */
static int spawn_job_init(supervisor *sv, store_job *job, cgroup_job *cg, const char *workdir,
                          pid_t *ret_pid, int *ret_pidfd, int *ret_out, int *ret_st,
                          char *start_error, size_t errsize, jw_error *err)
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
    _cleanup_close_ int out_r = outp[0], out_w0 = outp[1], st_r = stp[0], st_w0 = stp[1];
    (void)fcntl(out_r, F_SETPIPE_SZ, PIPE_SIZE); /* a larger pipe only helps throughput */
    _cleanup_close_ int null0 = open("/dev/null", O_RDONLY | O_CLOEXEC);
    _cleanup_close_ int null_fd = null0 >= 0 ? dup_high(null0) : -1;
    _cleanup_close_ int out_w = dup_high(out_w0);
    _cleanup_close_ int st_w = dup_high(st_w0);
    if (null_fd < 0 || out_w < 0 || st_w < 0)
        return jw_error_set(err, JW_RESOURCE_EXHAUSTED, -EMFILE, "duplicate job fds: %s",
                            strerror(errno));

    char hostname[32], uid[24], gid[24], rel[4096] = "";
    snprintf(hostname, sizeof(hostname), "job-%.8s", info.id);
    size_t argc = 0;
    const char **argv = calloc(info.nargs + 24, sizeof(char *));
    char **env = build_env(info.id, workdir ? workdir : "/");
    void *stack = malloc(CHILD_STACK);
    if (!argv || !env || !stack) {
        free(argv);
        free_env(env);
        free(stack);
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
    if (sv->cfg.job_uid >= 0) {
        snprintf(uid, sizeof(uid), "%ld", sv->cfg.job_uid);
        snprintf(gid, sizeof(gid), "%ld", sv->cfg.job_gid);
        argv[argc++] = "--uid";
        argv[argc++] = uid;
        argv[argc++] = "--gid";
        argv[argc++] = gid;
    }
    if (workdir) {
        argv[argc++] = "--workdir";
        argv[argc++] = workdir;
    }
    argv[argc++] = "--hostname";
    argv[argc++] = hostname;
    if (info.network == JOB_NETWORK_NONE)
        argv[argc++] = "--net-none";
    argv[argc++] = "--";
    argv[argc++] = info.command;
    for (size_t i = 0; i < info.nargs; i++)
        argv[argc++] = info.args[i];
    argv[argc] = NULL;

    child_args ca = {.null_fd = null_fd,
                     .out_w = out_w,
                     .st_w = st_w,
                     .path = sv->cfg.job_init_path,
                     .argv = (char *const *)argv,
                     .envp = env};
    int flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS |
                CLONE_NEWIPC | SIGCHLD;
    if (info.network == JOB_NETWORK_NONE)
        flags |= CLONE_NEWNET;
    /* No handler of ours may run in the child while it shares our memory. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int pidfd_int = -1;
    pid_t pid = clone(child_main, (char *)stack + CHILD_STACK, flags, &ca, &pidfd_int);
    int clone_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    free(stack);
    free_env(env);
    free(argv);
    if (pid < 0)
        return jw_error_set(err, JW_INTERNAL, -clone_errno, "clone job-init: %s",
                            strerror(clone_errno));
    _cleanup_close_ int pidfd = pidfd_int;
    close(TAKE_FD(out_w));
    close(TAKE_FD(st_w));
    close(TAKE_FD(out_w0));
    close(TAKE_FD(st_w0));

    jobinit_msg m;
    struct pollfd p = {.fd = st_r, .events = POLLIN};
    int pr = poll(&p, 1, START_TIMEOUT_MS);
    ssize_t n = pr > 0 ? read_full(st_r, &m, sizeof(m)) : -ETIMEDOUT;
    if (n == (ssize_t)sizeof(m) && m.kind == JOBINIT_MSG_STARTED) {
        if (fcntl(out_r, F_SETFL, O_NONBLOCK) < 0 || fcntl(st_r, F_SETFL, O_NONBLOCK) < 0) {
            int r = -errno;
            pidfd_signal(pidfd, SIGKILL);
            waitid((idtype_t)P_PIDFD, (id_t)pidfd, &(siginfo_t){0}, WEXITED);
            return jw_error_set(err, JW_INTERNAL, r, "set job pipes non-blocking: %s",
                                strerror(-r));
        }
        *ret_pid = pid;
        *ret_pidfd = TAKE_FD(pidfd);
        *ret_out = TAKE_FD(out_r);
        *ret_st = TAKE_FD(st_r);
        return 0;
    }
    /* job-init failed (or hung): make sure it is gone and reaped. */
    pidfd_signal(pidfd, SIGKILL);
    waitid((idtype_t)P_PIDFD, (id_t)pidfd, &(siginfo_t){0}, WEXITED);
    if (n != (ssize_t)sizeof(m) || m.kind != JOBINIT_MSG_FAILED)
        return jw_error_set(err, JW_INTERNAL, n < 0 ? (int)n : -EIO,
                            "job-init gave no start status: %s",
                            n < 0 ? strerror((int)-n) : "short read");
    if (m.stage == 0)
        return jw_error_set(err, JW_INTERNAL, -m.err, "exec job-init '%s': %s",
                            sv->cfg.job_init_path, strerror(m.err));
    if (m.stage == JOBINIT_STAGE_EXEC)
        snprintf(start_error, errsize, "exec '%s': %s", info.command, strerror(m.err));
    else
        snprintf(start_error, errsize, "%s: %s", stage_text(m.stage), strerror(m.err));
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
    e->st_fd = -1;
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

    char workdir[PATH_MAX];
    if (sv->cfg.work_root) {
        r = create_workdir(sv, info.id, workdir, sizeof(workdir), err);
        if (r < 0)
            goto fail;
        e->has_workdir = true;
    }

    char start_error[256] = "";
    pid_t pid = 0;
    r = spawn_job_init(sv, job, e->cg, e->has_workdir ? workdir : NULL, &pid, &e->pidfd, &e->out_fd,
                       &e->st_fd, start_error, sizeof(start_error), err);
    if (r < 0)
        goto fail;
    if (pid == 0) {
        if (e->has_workdir)
            remove_workdir(sv, info.id);
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
    job_reason asked = store_job_stop_reason(job); /* a stop that came while starting */
    struct epoll_event ev_out = {.events = EPOLLIN, .data.ptr = &e->w_out};
    struct epoll_event ev_pid = {.events = EPOLLIN, .data.ptr = &e->w_pid};
    pthread_mutex_lock(&sv->lock);
    if (info.timeout_seconds > 0)
        e->timeout_at_ns = now_monotonic_ns() + (int64_t)info.timeout_seconds * 1000000000;
    e->started = true;
    if (e->stop_reason == JOB_REASON_UNSPECIFIED)
        e->stop_reason = asked;
    /* Registration happens under the lock so the thread never sees a half-registered entry;
     * epoll_ctl itself is thread-safe. */
    epoll_ctl(sv->epfd, EPOLL_CTL_ADD, e->out_fd, &ev_out);
    epoll_ctl(sv->epfd, EPOLL_CTL_ADD, e->pidfd, &ev_pid);
    pthread_mutex_unlock(&sv->lock);
    sv_wake(sv);
    return 0;

fail:
    if (e->has_workdir)
        remove_workdir(sv, info.id);
    if (e->cg) {
        cgroup_job_kill(e->cg);
        cgroup_job_destroy(e->cg);
        e->cg = NULL;
    }
    entry_unlink(sv, e);
    entry_free(e);
    return r;
}

/* Marks the job's entry for stopping; false when the supervisor has no entry for it. */
static bool mark_stop(supervisor *sv, store_job *job, job_reason reason)
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
    return found;
}

int supervisor_stop_job(supervisor *sv, store_job *job, job_reason reason, jw_error *err)
{
    /* The stop is recorded on the job first, then on its entry. A job whose entry is not linked
     * yet reads the record when its start completes (supervisor_start_job links the entry
     * before it starts anything), so a stop is never lost and nobody polls. */
    if (!store_job_request_stop(job, reason))
        return 0;
    if (mark_stop(sv, job, reason))
        sv_wake(sv);
    return 0;
}
