/* The supervisor: entries for the jobs it owns, one epoll loop over their output pipes, pidfds and
 * cgroup.events, stops and timeouts, and a cleanup thread for what is slow.
 *
 * A job goes through three hands:
 *   1. the caller's (RPC) thread starts it (launch.c) and registers it with the loop;
 *   2. the loop thread appends its output, carries out stops and timeouts, and when job-init
 *      exits kills what is left of the job (cgroup.kill) and waits, as epoll events with a
 *      deadline, for the cgroup to empty and the output pipe to reach EOF;
 *   3. the cleanup thread reads the usage, removes the cgroup and the working directory (seconds
 *      for a tree of 100,000s of files), closes the job's fds and only then records its end.
 * The loop never blocks on anything but epoll_wait, so one job's end never stalls another job's
 * output. sv->lock guards the entry list, the stop state and the cleanup queue; no file I/O and
 * no signal is sent while it is held: actions are decided under the lock and carried out after.
 */
#include "spawn/supervisor.h"

#include "spawn/jobinit-proto.h"
#include "spawn/launch.h"
#include "spawn/uidpool.h"
#include "spawn/workdir.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/misc.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define OUTPUT_CHUNK (256 * 1024)
/* After job-init exited: how long the loop waits for the cgroup to empty and the output pipe to
 * reach EOF before it gives up on them and ends the job anyway. */
#define EMPTY_TIMEOUT_NS (5 * INT64_C(1000000000))
/* Re-read interval of a cgroup.events file that could not be added to the epoll. */
#define EVENTS_TICK_NS (50 * INT64_C(1000000))
/* At hand-over, output still buffered in the pipe is read up to this many chunks. */
#define FINAL_DRAIN_CHUNKS 8

enum { WATCH_WAKE, WATCH_OUT, WATCH_PID, WATCH_EVENTS };
enum { ACT_TERM = 1, ACT_KILL = 2 };

typedef struct sv_entry sv_entry;

typedef struct sv_watch {
    int kind;
    sv_entry *entry;
    int pipe; /* WATCH_OUT: 0 stdout, 1 stderr */
} sv_watch;

/* The job's output pipes, by index: stdout, stderr. */
#define N_PIPES 2
static const job_stream pipe_stream[N_PIPES] = {JOB_STREAM_STDOUT, JOB_STREAM_STDERR};
static const char *const pipe_name[N_PIPES] = {"stdout pipe", "stderr pipe"};

struct sv_entry {
    store_job *job;
    cgroup_job *cg;
    pid_t pid;
    int pidfd;
    int out_fd[N_PIPES]; /* read ends of its stdout and stderr */
    int in_fd;           /* write end of its stdin until a writer takes it; -1 = none */
    bool in_taken;       /* a writer took in_fd (one writer per job) */
    int st_fd;           /* job-init's status pipe: the EXITED record arrives here */
    int ev_fd; /* the cgroup's cgroup.events while the loop waits for it to empty; -1 otherwise */
    bool has_workdir; /* <work_root>/<id> exists and must be removed at the end */
    long uid, gid;    /* the job's credentials */
    bool uid_held;    /* uid came from sv->uids and goes back at the end */

    /* Guarded by sv->lock. */
    bool started;           /* registered with the loop (or handed to cleanup directly) */
    bool exited;            /* job-init was reaped: nothing left to signal */
    job_reason stop_reason; /* UNSPECIFIED = no stop asked */
    bool term_sent;
    bool killed;
    int64_t kill_at_ns;    /* monotonic; 0 = none */
    int64_t timeout_at_ns; /* monotonic; 0 = none */
    sv_entry *next;        /* sv->entries */
    sv_entry *cleanup_next;

    /* The loop thread's until the hand-over to the cleanup thread, then the cleanup thread's. */
    siginfo_t si;          /* job-init's own end */
    bool out_eof[N_PIPES]; /* the pipe reached EOF (or failed) */
    bool cg_empty;         /* the cgroup reads "populated 0" (or there is none) */
    bool ev_registered;    /* ev_fd is in the epoll; otherwise it is re-read every tick */
    int64_t drain_deadline_ns;
    bool logged_write_error;
    sv_entry *drain_next; /* sv->draining */
    sv_watch w_out[N_PIPES], w_pid, w_ev;
};

typedef struct sv_action {
    sv_entry *entry;
    int act; /* ACT_* */
} sv_action;

struct supervisor {
    supervisor_config cfg;
    store *st;
    uid_pool *uids; /* NULL: every job runs as cfg.job_uid */
    int epfd;
    int wakefd;
    sv_watch w_wake;
    pthread_t thread, cleanup_thread;
    bool thread_started, cleanup_started;

    pthread_mutex_t lock;
    pthread_cond_t cleanup_cond;
    sv_entry *entries; /* guarded by lock */
    size_t n_entries;
    bool shutting_down;
    sv_entry *cleanup_head, **cleanup_tail; /* guarded by lock: FIFO for the cleanup thread */
    bool cleanup_quit;

    /* The loop thread's own. */
    char *buf;
    sv_entry *draining; /* job-init exited; waiting for an empty cgroup and output EOF */
    sv_action *actions;
    size_t actions_cap;
};

static void sv_wake(supervisor *sv)
{
    uint64_t one = 1;
    ssize_t n = write(sv->wakefd, &one, sizeof(one));
    (void)n; /* EAGAIN means a wake is already pending */
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void entry_free(sv_entry *e)
{
    if (!e)
        return;
    close_fd(&e->pidfd);
    for (int i = 0; i < N_PIPES; i++)
        close_fd(&e->out_fd[i]);
    close_fd(&e->in_fd);
    close_fd(&e->st_fd);
    close_fd(&e->ev_fd);
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

static void epoll_del(supervisor *sv, sv_entry *e, int fd, const char *what)
{
    if (fd >= 0 && epoll_ctl(sv->epfd, EPOLL_CTL_DEL, fd, NULL) < 0)
        log_error_errno(-errno, "job %s: remove the %s from the supervisor's epoll: %m",
                        store_job_id(e->job), what);
}

/* Called with sv->lock held. */
static void queue_cleanup_locked(supervisor *sv, sv_entry *e)
{
    e->cleanup_next = NULL;
    *sv->cleanup_tail = e;
    sv->cleanup_tail = &e->cleanup_next;
    pthread_cond_signal(&sv->cleanup_cond);
}

/* ---- The loop thread ---- */

static void append_output(sv_entry *e, int p, const char *buf, size_t n)
{
    int r = store_job_append(e->job, pipe_stream[p], buf, n);
    /* The store counted the bytes as dropped; say why once per job. */
    if (r < 0 && r != -EBADF && !e->logged_write_error) {
        e->logged_write_error = true;
        log_error_errno(r,
                        "job %s: write output: %m; output that cannot be written is counted as "
                        "dropped",
                        store_job_id(e->job));
    }
}

/* Reads what output pipe p holds now into the store, at most max_chunks reads. Returns 1 at EOF
 * (or on a read error, which is logged), 0 when drained or max_chunks were read. */
static int drain_output(supervisor *sv, sv_entry *e, int p, int max_chunks)
{
    for (int i = 0; i < max_chunks;) {
        ssize_t n = read(e->out_fd[p], sv->buf, OUTPUT_CHUNK);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return 0;
            log_error_errno(-errno, "job %s: read its %s: %m", store_job_id(e->job), pipe_name[p]);
            return 1;
        }
        if (n == 0)
            return 1;
        append_output(e, p, sv->buf, (size_t)n);
        i++;
    }
    return 0;
}

/* Both output pipes reached EOF. */
static bool output_eof(const sv_entry *e)
{
    for (int i = 0; i < N_PIPES; i++)
        if (!e->out_eof[i])
            return false;
    return true;
}

/* SIGKILL to job-init ends its PID namespace, so every process of the job dies with it;
 * cgroup.kill is the same for the cgroup. The pidfd makes this safe against pid reuse. Runs on
 * the loop thread without the lock. */
static void hard_kill(sv_entry *e)
{
    if (e->cg) {
        int r = cgroup_job_kill(e->cg);
        if (r < 0)
            log_error_errno(r, "job %s: kill cgroup '%s': %m", store_job_id(e->job),
                            cgroup_job_path(e->cg));
    }
    int r = launch_pidfd_signal(e->pidfd, SIGKILL);
    if (r < 0 && r != -ESRCH)
        log_error_errno(r, "job %s: SIGKILL to job-init (pid %d): %m", store_job_id(e->job),
                        (int)e->pid);
}

static int grow_actions(supervisor *sv, size_t n)
{
    if (n <= sv->actions_cap)
        return 0;
    size_t cap = sv->actions_cap ? sv->actions_cap * 2 : 16;
    while (cap < n)
        cap *= 2;
    sv_action *a = realloc(sv->actions, cap * sizeof(*a));
    if (!a)
        return -ENOMEM;
    sv->actions = a;
    sv->actions_cap = cap;
    return 0;
}

/* Applies stops, grace-period kills and timeouts: decided under the lock, signals sent after.
 * Returns the next deadline (monotonic ns), or 0 for none. */
static int64_t run_deadlines(supervisor *sv, int64_t now)
{
    int64_t next = 0;
    size_t n_act = 0;
    pthread_mutex_lock(&sv->lock);
    /* Entries stay valid after the unlock: only this thread hands a started entry over to be
     * freed. */
    if (grow_actions(sv, sv->n_entries) < 0) {
        pthread_mutex_unlock(&sv->lock);
        log_error("supervisor: out of memory for %zu stop actions, retrying", sv->n_entries);
        return now + EVENTS_TICK_NS;
    }
    for (sv_entry *e = sv->entries; e; e = e->next) {
        if (!e->started || e->exited)
            continue;
        int act = 0;
        if (e->stop_reason == JOB_REASON_UNSPECIFIED && e->timeout_at_ns && now >= e->timeout_at_ns)
            e->stop_reason = JOB_REASON_TIMED_OUT;
        if (e->stop_reason != JOB_REASON_UNSPECIFIED && !e->term_sent) {
            e->term_sent = true;
            e->kill_at_ns = now + sv->cfg.stop_grace_ms * 1000000;
            act |= ACT_TERM;
        }
        if (e->kill_at_ns && !e->killed && now >= e->kill_at_ns) {
            e->killed = true;
            act |= ACT_KILL;
        }
        if (act)
            sv->actions[n_act++] = (sv_action){e, act};
        int64_t d = 0;
        if (e->kill_at_ns && !e->killed)
            d = e->kill_at_ns;
        else if (!e->term_sent && e->timeout_at_ns)
            d = e->timeout_at_ns;
        if (d && (next == 0 || d < next))
            next = d;
    }
    pthread_mutex_unlock(&sv->lock);

    for (size_t i = 0; i < n_act; i++) {
        sv_entry *e = sv->actions[i].entry;
        if (sv->actions[i].act & ACT_TERM) {
            /* job-init forwards it to the command's process group. */
            int r = launch_pidfd_signal(e->pidfd, SIGTERM);
            if (r < 0 && r != -ESRCH)
                log_error_errno(r, "job %s: SIGTERM to job-init (pid %d): %m", store_job_id(e->job),
                                (int)e->pid);
        }
        if (sv->actions[i].act & ACT_KILL)
            hard_kill(e);
    }
    return next;
}

/* job-init exited: reap it, kill what is left of the job and start waiting, as events with a
 * deadline, for the cgroup to empty and the output pipe to reach EOF. */
static void job_init_exited(supervisor *sv, sv_entry *e)
{
    const char *id = store_job_id(e->job);
    if (waitid((idtype_t)P_PIDFD, (id_t)e->pidfd, &e->si, WEXITED | WNOHANG) < 0) {
        log_error_errno(-errno, "job %s: reap job-init (pid %d): %m", id, (int)e->pid);
        e->si.si_code = 0;
    }
    epoll_del(sv, e, e->pidfd, "pidfd");
    pthread_mutex_lock(&sv->lock);
    e->exited = true;
    pthread_mutex_unlock(&sv->lock);

    e->cg_empty = true;
    if (e->cg) {
        /* Leftover processes (background children, double forks) die with the job, including
         * those that left its process group. */
        int r = cgroup_job_kill(e->cg);
        if (r < 0)
            log_error_errno(r, "job %s: kill cgroup '%s': %m", id, cgroup_job_path(e->cg));
        e->ev_fd = cgroup_job_events_open(e->cg);
        if (e->ev_fd < 0) {
            log_error_errno(e->ev_fd, "job %s: open '%s/cgroup.events': %m", id,
                            cgroup_job_path(e->cg));
            e->ev_fd = -1;
        } else {
            struct epoll_event ev = {.events = EPOLLPRI, .data.ptr = &e->w_ev};
            e->ev_registered = epoll_ctl(sv->epfd, EPOLL_CTL_ADD, e->ev_fd, &ev) == 0;
            if (!e->ev_registered)
                log_warning_errno(-errno,
                                  "job %s: watch '%s/cgroup.events': %m; re-reading it every "
                                  "%d ms instead",
                                  id, cgroup_job_path(e->cg), (int)(EVENTS_TICK_NS / 1000000));
            /* Read after the registration: a change after this read raises an event. */
            r = cgroup_events_populated(e->ev_fd);
            if (r < 0)
                log_error_errno(r,
                                "job %s: read '%s/cgroup.events': %m; not waiting for it to "
                                "empty",
                                id, cgroup_job_path(e->cg));
            e->cg_empty = r <= 0;
        }
    }
    /* Without a cgroup, job-init's end took its PID namespace with it: nothing of the job is
     * left, and the pipe reaches EOF as soon as the kernel has reaped the last writer. */
    e->drain_deadline_ns = now_monotonic_ns() + EMPTY_TIMEOUT_NS;
    e->drain_next = sv->draining;
    sv->draining = e;
}

static void on_events(supervisor *sv, sv_entry *e)
{
    int r = cgroup_events_populated(e->ev_fd);
    if (r < 0)
        log_error_errno(r, "job %s: read '%s/cgroup.events': %m; not waiting for it to empty",
                        store_job_id(e->job), cgroup_job_path(e->cg));
    if (r <= 0) {
        e->cg_empty = true;
        epoll_del(sv, e, e->ev_fd, "cgroup.events");
        e->ev_registered = false;
        close_fd(&e->ev_fd);
    }
}

/* The loop is done with the entry: it goes to the cleanup thread, with nothing of it left in the
 * epoll. */
static void hand_over(supervisor *sv, sv_entry *e)
{
    for (int i = 0; i < N_PIPES; i++) {
        if (!e->out_eof[i]) {
            drain_output(sv, e, i, FINAL_DRAIN_CHUNKS);
            epoll_del(sv, e, e->out_fd[i], pipe_name[i]);
            e->out_eof[i] = true;
        }
    }
    if (e->ev_fd >= 0) {
        if (e->ev_registered)
            epoll_del(sv, e, e->ev_fd, "cgroup.events");
        close_fd(&e->ev_fd);
    }
    pthread_mutex_lock(&sv->lock);
    queue_cleanup_locked(sv, e);
    pthread_mutex_unlock(&sv->lock);
}

/* Hands over every draining entry that is done or past its deadline. Returns the next deadline
 * (monotonic ns), or 0 for none. */
static int64_t advance_draining(supervisor *sv, int64_t now)
{
    int64_t next = 0;
    for (sv_entry **p = &sv->draining; *p;) {
        sv_entry *e = *p;
        if (!e->cg_empty && e->ev_fd >= 0 && !e->ev_registered &&
            cgroup_events_populated(e->ev_fd) == 0)
            e->cg_empty = true;
        bool eof = output_eof(e);
        bool done = e->cg_empty && eof;
        if (!done && now >= e->drain_deadline_ns) {
            log_warning(
                "job %s: %s%s%s after %d s, ending the job anyway", store_job_id(e->job),
                e->cg_empty ? "" : "its cgroup is not empty", !e->cg_empty && !eof ? " and " : "",
                eof ? "" : "its output pipes are still open", (int)(EMPTY_TIMEOUT_NS / 1000000000));
            done = true;
        }
        if (done) {
            *p = e->drain_next;
            hand_over(sv, e);
            continue;
        }
        int64_t d = e->drain_deadline_ns;
        if (e->ev_fd >= 0 && !e->ev_registered && now + EVENTS_TICK_NS < d)
            d = now + EVENTS_TICK_NS;
        if (next == 0 || d < next)
            next = d;
        p = &e->drain_next;
    }
    return next;
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
        int64_t now = now_monotonic_ns();
        int64_t next = run_deadlines(sv, now);
        int64_t d = advance_draining(sv, now);
        if (d && (next == 0 || d < next))
            next = d;
        int timeout = -1;
        if (next) {
            int64_t ms = (next - now + 999999) / 1000000;
            timeout = ms < 0 ? 0 : ms > 60000 ? 60000 : (int)ms;
        }
        int n = epoll_wait(sv->epfd, evs, (int)ARRAY_SIZE(evs), timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            /* Not expected with a valid epoll fd; leaving would strand every job. */
            log_error_errno(-errno, "supervisor: epoll_wait: %m, retrying");
            usleep(10000);
            continue;
        }
        /* Output first, exits second, so that output read in this round precedes the end. */
        for (int i = 0; i < n; i++) {
            sv_watch *w = evs[i].data.ptr;
            if (w->kind == WATCH_WAKE) {
                uint64_t v;
                ssize_t r = read(sv->wakefd, &v, sizeof(v));
                (void)r;
            } else if (w->kind == WATCH_OUT) {
                sv_entry *e = w->entry;
                int p = w->pipe;
                if (!e->out_eof[p] && drain_output(sv, e, p, 1) != 0) {
                    e->out_eof[p] = true;
                    epoll_del(sv, e, e->out_fd[p], pipe_name[p]);
                }
            } else if (w->kind == WATCH_EVENTS) {
                if (w->entry->ev_fd >= 0)
                    on_events(sv, w->entry);
            }
        }
        for (int i = 0; i < n; i++) {
            sv_watch *w = evs[i].data.ptr;
            if (w->kind == WATCH_PID)
                job_init_exited(sv, w->entry);
        }
    }
    return NULL;
}

/* ---- The cleanup thread ---- */

/* Gives the job's uid back once nothing of the job can still use it or own something in its
 * name: its processes are gone (its PID namespace died with job-init, and its cgroup, when it has
 * one, is empty) and its working directory was removed. Otherwise the uid is kept out of use for
 * the rest of the server's life, so that the next job to get it cannot reach what is left. */
static void release_uid(supervisor *sv, sv_entry *e, bool gone)
{
    if (!e->uid_held)
        return;
    e->uid_held = false;
    if (!gone) {
        log_error("job %s: uid %ld not given back for reuse: its cgroup was not empty or its "
                  "working directory could not be removed at its end; the uid stays unused until "
                  "the server restarts",
                  store_job_id(e->job), e->uid);
        return;
    }
    int r = uid_pool_release(sv->uids, (uint32_t)e->uid);
    if (r < 0)
        log_error_errno(r, "job %s: give back uid %ld: %m", store_job_id(e->job), e->uid);
}

/* Everything slow of a job's end, then the end itself: usage, cgroup and working directory
 * removal, the final state. */
static void finish_entry(supervisor *sv, sv_entry *e)
{
    const char *id = store_job_id(e->job);
    cgroup_usage cu = {0};
    if (e->cg) {
        int r = cgroup_job_read_usage(e->cg, &cu);
        if (r < 0) {
            log_warning_errno(r, "job %s: read the usage of cgroup '%s': %m, reporting zeros", id,
                              cgroup_job_path(e->cg));
            cu = (cgroup_usage){0};
        }
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s", cgroup_job_path(e->cg));
        r = cgroup_job_destroy(e->cg);
        e->cg = NULL;
        if (r < 0)
            log_error_errno(r, "job %s: remove cgroup '%s': %m", id, path);
    }
    bool gone = e->cg_empty;
    if (e->has_workdir) {
        int r = workdir_remove(sv->cfg.work_root, id);
        if (r < 0) {
            log_error_errno(r, "job %s: remove working directory '%s/%s': %m", id,
                            sv->cfg.work_root, id);
            gone = false;
        }
    }
    release_uid(sv, e, gone);

    job_usage usage = {.cpu_usec = cu.cpu_usec,
                       .memory_peak_bytes = cu.memory_peak,
                       .io_read_bytes = cu.io_read_bytes,
                       .io_write_bytes = cu.io_write_bytes};
    int exit_code = 0, sig = 0, wstatus = 0;
    job_reason reason;
    char error[256] = "";
    /* The command's own wait status, from job-init; without one (job-init was killed), job-init's
     * status stands for the job. */
    if (launch_read_exit(e->st_fd, &wstatus) == 1) {
        if (WIFEXITED(wstatus)) {
            exit_code = WEXITSTATUS(wstatus);
            reason = JOB_REASON_EXITED;
        } else {
            sig = WTERMSIG(wstatus);
            reason = JOB_REASON_SIGNALED;
        }
    } else if (e->si.si_code == CLD_EXITED) {
        exit_code = e->si.si_status;
        reason = JOB_REASON_EXITED;
    } else {
        sig = e->si.si_status;
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
    /* Output that could not be stored is part of the job's record, not only of the log. */
    store_job_info oi;
    store_job_snapshot(e->job, &oi);
    if (oi.output_errno && !error[0]) {
        char ebuf[128];
        snprintf(error, sizeof(error),
                 "output after byte %lld could not be stored: %s (%lld bytes dropped)",
                 (long long)oi.output_errno_at, jw_strerror(oi.output_errno, ebuf, sizeof(ebuf)),
                 (long long)oi.output_dropped);
    }
    /* Release everything of the job's before announcing its end, so that whoever waits for
     * the end finds no cgroup, no working directory, no fd and no entry of it left. */
    close_fd(&e->pidfd);
    for (int i = 0; i < N_PIPES; i++)
        close_fd(&e->out_fd[i]);
    pthread_mutex_lock(&sv->lock);
    close_fd(&e->in_fd); /* unless a writer took it */
    pthread_mutex_unlock(&sv->lock);
    close_fd(&e->st_fd);
    close_fd(&e->ev_fd);
    entry_unlink(sv, e);
    store_job_finish(e->job, reason, exit_code, sig, error, &usage, now_realtime_ns());
    store_job_close_output(e->job);
    entry_free(e);
}

static void *cleanup_thread(void *arg)
{
    supervisor *sv = arg;
    pthread_setname_np(pthread_self(), "jw-sv-cleanup");
    pthread_mutex_lock(&sv->lock);
    for (;;) {
        while (!sv->cleanup_head && !sv->cleanup_quit)
            pthread_cond_wait(&sv->cleanup_cond, &sv->lock);
        sv_entry *e = sv->cleanup_head;
        if (!e)
            break; /* asked to quit and nothing is left */
        sv->cleanup_head = e->cleanup_next;
        if (!sv->cleanup_head)
            sv->cleanup_tail = &sv->cleanup_head;
        pthread_mutex_unlock(&sv->lock);
        finish_entry(sv, e);
        pthread_mutex_lock(&sv->lock);
    }
    pthread_mutex_unlock(&sv->lock);
    return NULL;
}

/* ---- Lifecycle ---- */

int supervisor_new(const supervisor_config *cfg, store *st, supervisor **ret, jw_error *err)
{
    supervisor *sv = calloc(1, sizeof(*sv));
    if (!sv)
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    sv->cfg = *cfg;
    if (sv->cfg.stop_grace_ms <= 0)
        sv->cfg.stop_grace_ms = 100;
    if (sv->cfg.tmp_size <= 0)
        sv->cfg.tmp_size = SUPERVISOR_DEFAULT_TMP_SIZE;
    sv->st = st;
    if (cfg->job_uid_count > 0) {
        int q = uid_pool_new(cfg->job_uid_first, cfg->job_uid_count, &sv->uids, err);
        if (q < 0) {
            free(sv);
            return q;
        }
    }
    pthread_mutex_init(&sv->lock, NULL);
    pthread_cond_init(&sv->cleanup_cond, NULL);
    sv->cleanup_tail = &sv->cleanup_head;
    sv->buf = malloc(OUTPUT_CHUNK);
    sv->epfd = epoll_create1(EPOLL_CLOEXEC);
    sv->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int r = 0;
    if (!sv->buf || sv->epfd < 0 || sv->wakefd < 0) {
        r = sv->buf ? -errno : -ENOMEM;
        goto fail;
    }
    sv->w_wake.kind = WATCH_WAKE;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &sv->w_wake};
    if (epoll_ctl(sv->epfd, EPOLL_CTL_ADD, sv->wakefd, &ev) < 0) {
        r = -errno;
        goto fail;
    }
    r = -pthread_create(&sv->cleanup_thread, NULL, cleanup_thread, sv);
    if (r < 0)
        goto fail;
    sv->cleanup_started = true;
    r = -pthread_create(&sv->thread, NULL, sv_thread, sv);
    if (r < 0)
        goto fail;
    sv->thread_started = true;
    *ret = sv;
    return 0;
fail:
    jw_error_errno_code(err, JW_INTERNAL, r, "start supervisor");
    supervisor_free(sv);
    return r;
}

void supervisor_shutdown(supervisor *sv)
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
        /* The loop leaves once no entry is left: every job, including those that were still
         * starting, has been finished by the cleanup thread. */
        pthread_join(sv->thread, NULL);
        sv->thread_started = false;
    }
    if (sv->cleanup_started) {
        pthread_mutex_lock(&sv->lock);
        sv->shutting_down = true;
        sv->cleanup_quit = true;
        pthread_cond_signal(&sv->cleanup_cond);
        pthread_mutex_unlock(&sv->lock);
        pthread_join(sv->cleanup_thread, NULL);
        sv->cleanup_started = false;
    }
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
    free(sv->actions);
    uid_pool_free(sv->uids);
    pthread_cond_destroy(&sv->cleanup_cond);
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

/* ---- Starting (the caller's thread) ---- */

/* Registers a started job's output pipes and pidfd with the loop. On failure nothing stays
 * registered. */
static int watch_entry(supervisor *sv, sv_entry *e)
{
    int fds[N_PIPES + 1] = {e->out_fd[0], e->out_fd[1], e->pidfd};
    sv_watch *ws[N_PIPES + 1] = {&e->w_out[0], &e->w_out[1], &e->w_pid};
    for (int i = 0; i < N_PIPES + 1; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = ws[i]};
        if (epoll_ctl(sv->epfd, EPOLL_CTL_ADD, fds[i], &ev) < 0) {
            int r = -errno;
            while (i-- > 0)
                (void)epoll_ctl(sv->epfd, EPOLL_CTL_DEL, fds[i], NULL);
            return r;
        }
    }
    return 0;
}

int supervisor_start_job(supervisor *sv, store_job *job, jw_error *err)
{
    sv_entry *e = calloc(1, sizeof(*e));
    if (!e)
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    e->job = store_job_ref(job);
    e->pidfd = -1;
    e->in_fd = -1;
    e->st_fd = -1;
    e->ev_fd = -1;
    for (int i = 0; i < N_PIPES; i++) {
        e->out_fd[i] = -1;
        e->w_out[i] = (sv_watch){WATCH_OUT, e, i};
    }
    e->w_pid = (sv_watch){WATCH_PID, e, 0};
    e->w_ev = (sv_watch){WATCH_EVENTS, e, 0};

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

    e->uid = sv->cfg.job_uid;
    e->gid = sv->cfg.job_gid;
    if (sv->uids) {
        uint32_t uid;
        r = uid_pool_acquire(sv->uids, &uid, err);
        if (r < 0)
            goto fail;
        e->uid = e->gid = (long)uid;
        e->uid_held = true;
        log_debug("job %s: runs as uid %ld, gid %ld", info.id, e->uid, e->gid);
        char who[64];
        snprintf(who, sizeof(who), "dynamic (%ld:%ld)", e->uid, e->gid);
        store_job_set_user(job, who);
    }

    char workdir[PATH_MAX];
    if (sv->cfg.work_root) {
        r = workdir_create(sv->cfg.work_root, info.id, e->uid, e->gid, workdir, sizeof(workdir),
                           err);
        if (r < 0)
            goto fail;
        e->has_workdir = true;
    }

    launch_options lo = {.job_init_path = sv->cfg.job_init_path,
                         .id = info.id,
                         .command = info.command,
                         .args = info.args,
                         .nargs = info.nargs,
                         .network = info.network,
                         .cgroup_path = e->cg ? cgroup_job_path(e->cg) : NULL,
                         .cgroup_rel_path = e->cg ? cgroup_job_rel_path(e->cg) : NULL,
                         .uid = e->uid,
                         .gid = e->gid,
                         .workdir = e->has_workdir ? workdir : NULL,
                         .tmp_size = sv->cfg.tmp_size,
                         .nofile_soft = sv->cfg.job_nofile_soft,
                         .stdin_pipe = info.stdin_pipe,
                         .env = info.env,
                         .nenv = info.nenv};
    launch_result lr;
    r = launch_job_init(&lo, &lr, err);
    if (r < 0)
        goto fail;
    if (lr.pid == 0) {
        /* The job's own failure: nothing of it ran, so its directory is empty and quick to go. */
        release_uid(sv, e, !e->has_workdir || workdir_remove(sv->cfg.work_root, info.id) == 0);
        r = cgroup_job_destroy(e->cg);
        if (r < 0)
            log_error_errno(r, "job %s: remove its cgroup: %m", info.id);
        e->cg = NULL;
        entry_unlink(sv, e);
        entry_free(e);
        store_job_finish(job, JOB_REASON_START_FAILED, JOBINIT_EXIT_FAILED, 0, lr.start_error, NULL,
                         now_realtime_ns());
        store_job_close_output(job);
        return 0;
    }

    e->pid = lr.pid;
    e->pidfd = lr.pidfd;
    e->out_fd[0] = lr.out_fd;
    e->out_fd[1] = lr.err_fd;
    e->st_fd = lr.status_fd;
    pthread_mutex_lock(&sv->lock);
    e->in_fd = lr.in_fd; /* before RUNNING: a writer waits for that, then takes it */
    pthread_mutex_unlock(&sv->lock);
    store_job_set_running(job, lr.pid, now_realtime_ns());
    job_reason asked = store_job_stop_reason(job); /* a stop that came while starting */
    pthread_mutex_lock(&sv->lock);
    if (info.timeout_seconds > 0)
        e->timeout_at_ns = now_monotonic_ns() + (int64_t)info.timeout_seconds * 1000000000;
    if (e->stop_reason == JOB_REASON_UNSPECIFIED)
        e->stop_reason = asked;
    /* Registration happens under the lock so the loop never sees a half-registered entry
     * (epoll_ctl is no file I/O: it only links the fds into the epoll). */
    r = watch_entry(sv, e);
    e->started = true;
    if (r < 0) {
        /* The loop cannot watch the job: it ends now, as if killed, through the cleanup thread. */
        e->exited = true;
        e->killed = true;
    }
    pthread_mutex_unlock(&sv->lock);
    if (r < 0) {
        log_error_errno(r,
                        "job %s: add its pipe and pidfd to the supervisor's epoll: %m; "
                        "killing it",
                        info.id);
        if (e->cg)
            (void)cgroup_job_kill(e->cg);
        (void)launch_pidfd_signal(e->pidfd, SIGKILL);
        if (waitid((idtype_t)P_PIDFD, (id_t)e->pidfd, &e->si, WEXITED) < 0)
            e->si.si_code = 0;
        pthread_mutex_lock(&sv->lock);
        queue_cleanup_locked(sv, e);
        pthread_mutex_unlock(&sv->lock);
        return 0;
    }
    sv_wake(sv);
    return 0;

fail:
    /* Nothing of the job runs: job-init, if it was started, was killed and reaped. */
    release_uid(sv, e, !e->has_workdir || workdir_remove(sv->cfg.work_root, info.id) == 0);
    if (e->cg) {
        (void)cgroup_job_kill(e->cg);
        int q = cgroup_job_destroy(e->cg);
        if (q < 0)
            log_error_errno(q, "job %s: remove its cgroup: %m", info.id);
        e->cg = NULL;
    }
    entry_unlink(sv, e);
    entry_free(e);
    return r;
}

/* ---- Standard input (any thread) ---- */

int supervisor_take_stdin(supervisor *sv, store_job *job, int *ret_fd)
{
    int r = -ENOENT;
    pthread_mutex_lock(&sv->lock);
    for (sv_entry *e = sv->entries; e; e = e->next) {
        if (e->job != job)
            continue;
        if (e->in_fd >= 0) {
            *ret_fd = e->in_fd;
            e->in_fd = -1;
            e->in_taken = true;
            r = 0;
        } else {
            r = e->in_taken ? -EBUSY : -EAGAIN;
        }
        break;
    }
    pthread_mutex_unlock(&sv->lock);
    return r;
}

/* ---- Stopping (any thread) ---- */

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
