#include "spawn/launch.h"

#include "spawn/jobinit-proto.h"
#include "util/cleanup.h"
#include "util/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define PIPE_SIZE        (1024 * 1024)
#define START_TIMEOUT_MS 10000
#define CHILD_STACK      (64 * 1024)
/* argv beyond the command's own arguments: job-init, its options and "--" */
#define ARGV_EXTRA 24

int launch_pidfd_signal(int pidfd, int sig)
{
    return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0 ? -errno : 0;
}

/* The job's whole environment: nothing of the server's leaks into jobs. */
/* Whether the request's env sets NAME (given with its '='). */
static bool env_sets(const launch_options *o, const char *name_eq)
{
    size_t n = strlen(name_eq);
    for (size_t i = 0; i < o->nenv; i++)
        if (strncmp(o->env[i], name_eq, n) == 0)
            return true;
    return false;
}

/* The base environment (PATH and LANG unless the request sets them, HOME, JOBWORKER_JOB_ID),
 * then the request's entries. */
static char **build_env(const launch_options *o, const char *home)
{
    size_t cap = 4 + o->nenv + 1, n = 0;
    char **env = calloc(cap, sizeof(char *));
    if (!env)
        return NULL;
    bool oom = false;
    if (!env_sets(o, "PATH="))
        oom |= !(env[n++] = strdup("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:"
                                   "/bin"));
    if (!env_sets(o, "LANG="))
        oom |= !(env[n++] = strdup("LANG=C.UTF-8"));
    char *home_var = NULL, *id_var = NULL;
    if (asprintf(&home_var, "HOME=%s", home) < 0)
        home_var = NULL;
    if (asprintf(&id_var, "JOBWORKER_JOB_ID=%s", o->id) < 0)
        id_var = NULL;
    oom |= !(env[n++] = home_var);
    oom |= !(env[n++] = id_var);
    for (size_t i = 0; !oom && i < o->nenv; i++)
        oom |= !(env[n++] = strdup(o->env[i]));
    if (oom) {
        for (size_t k = 0; k < cap; k++)
            free(env[k]);
        free(env);
        return NULL;
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

/* Fixed-size strings job-init's argv points into; they live as long as the argv. */
typedef struct argv_bufs {
    char hostname[32], uid[24], gid[24], tmp_size[24];
} argv_bufs;

/* job-init [--cgroup DIR --cgroup-rel REL] [--uid N --gid N] [--workdir DIR] --hostname NAME
 * [--tmp-size BYTES] [--net-none] -- COMMAND [ARGS...], NULL-terminated, in `argv` of nargs +
 * ARGV_EXTRA slots. */
static void build_argv(const launch_options *o, argv_bufs *b, const char **argv)
{
    size_t argc = 0;
    snprintf(b->hostname, sizeof(b->hostname), "job-%.8s", o->id);
    argv[argc++] = o->job_init_path;
    if (o->cgroup_path) {
        argv[argc++] = "--cgroup";
        argv[argc++] = o->cgroup_path;
        argv[argc++] = "--cgroup-rel";
        argv[argc++] = o->cgroup_rel_path;
    }
    if (o->uid >= 0) {
        snprintf(b->uid, sizeof(b->uid), "%ld", o->uid);
        snprintf(b->gid, sizeof(b->gid), "%ld", o->gid);
        argv[argc++] = "--uid";
        argv[argc++] = b->uid;
        argv[argc++] = "--gid";
        argv[argc++] = b->gid;
    }
    if (o->workdir) {
        argv[argc++] = "--workdir";
        argv[argc++] = o->workdir;
    }
    argv[argc++] = "--hostname";
    argv[argc++] = b->hostname;
    if (o->tmp_size > 0) {
        snprintf(b->tmp_size, sizeof(b->tmp_size), "%lld", (long long)o->tmp_size);
        argv[argc++] = "--tmp-size";
        argv[argc++] = b->tmp_size;
    }
    if (o->network == JOB_NETWORK_NONE)
        argv[argc++] = "--net-none";
    argv[argc++] = "--";
    argv[argc++] = o->command;
    for (size_t i = 0; i < o->nargs; i++)
        argv[argc++] = o->args[i];
    argv[argc] = NULL;
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
    int in_fd, out_w, err_w, st_w; /* all >= 10, so dup2 onto 0..3 cannot clobber a source */
    const char *path;
    char *const *argv;
    char *const *envp;
    struct rlimit nofile; /* rlim_cur 0 = keep the server's */
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
    /* The server raised its own open files limit; the job gets the usual one back. */
    if (a->nofile.rlim_cur)
        setrlimit(RLIMIT_NOFILE, &a->nofile);
    if (dup2(a->in_fd, 0) < 0 || dup2(a->out_w, 1) < 0 || dup2(a->err_w, 2) < 0 ||
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

/* SIGKILL and reap: job-init failed, hung or is not wanted any more. */
static void kill_and_reap(int pidfd)
{
    (void)launch_pidfd_signal(pidfd, SIGKILL);
    waitid((idtype_t)P_PIDFD, (id_t)pidfd, &(siginfo_t){0}, WEXITED);
}

/* clone() of job-init with every signal blocked. Returns the pid (and the pidfd) or -errno. */
static pid_t clone_job_init(const launch_options *o, const child_args *ca, int *ret_pidfd)
{
    void *stack = malloc(CHILD_STACK);
    if (!stack)
        return -ENOMEM;
    int flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS |
                CLONE_NEWIPC | SIGCHLD;
    if (o->network == JOB_NETWORK_NONE)
        flags |= CLONE_NEWNET;
    /* No handler of ours may run in the child while it shares our memory. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int pidfd = -1;
    pid_t pid = clone(child_main, (char *)stack + CHILD_STACK, flags, (void *)ca, &pidfd);
    int clone_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    free(stack);
    if (pid < 0)
        return -clone_errno;
    *ret_pidfd = pidfd;
    return pid;
}

/* A pipe whose ends are both close-on-exec; -errno. */
static int make_pipe(int fds[2])
{
    return pipe2(fds, O_CLOEXEC) < 0 ? -errno : 0;
}

int launch_job_init(const launch_options *o, launch_result *ret, jw_error *err)
{
    int outp[2] = {-1, -1}, errp[2] = {-1, -1}, stp[2] = {-1, -1}, inp[2] = {-1, -1};
    int r = make_pipe(outp);
    if (r == 0)
        r = make_pipe(errp);
    if (r == 0)
        r = make_pipe(stp);
    if (r == 0 && o->stdin_pipe)
        r = make_pipe(inp);
    _cleanup_close_ int out_r = outp[0], out_w0 = outp[1], err_r = errp[0], err_w0 = errp[1],
                        st_r = stp[0], st_w0 = stp[1], in_r0 = inp[0], in_w = inp[1];
    if (r < 0)
        return jw_error_errno_code(err, JW_RESOURCE_EXHAUSTED, -r, "create pipes");
    /* A pipe's inode belongs to its creator (root) with mode 0600, and opening /dev/stdout or
     * /dev/stderr (/proc/self/fd/N) re-opens it with a permission check, which a job user fails.
     * Write permission for others (0622) lets the job re-open its own output for writing, and
     * for nothing else: only a process that may ptrace a job process reaches the pipe through
     * /proc/<pid>/fd, the pipe has no other name, and reading stays the server's. Its stdin
     * pipe is readable the same way (0604: /dev/stdin), and writing it stays the server's. The
     * status pipe keeps 0600: job-init closes it before the command starts. */
    if (fchmod(out_w0, 0622) < 0 || fchmod(err_w0, 0622) < 0 ||
        (in_r0 >= 0 && fchmod(in_r0, 0604) < 0))
        return jw_error_errno_code(err, JW_INTERNAL, errno, "fchmod the job's pipes");
    /* Larger pipes only help throughput. */
    (void)fcntl(out_r, F_SETPIPE_SZ, PIPE_SIZE);
    (void)fcntl(err_r, F_SETPIPE_SZ, PIPE_SIZE);
    _cleanup_close_ int null0 = in_r0 >= 0 ? -1 : open("/dev/null", O_RDONLY | O_CLOEXEC);
    _cleanup_close_ int in_fd = dup_high(in_r0 >= 0 ? in_r0 : null0);
    _cleanup_close_ int out_w = dup_high(out_w0);
    _cleanup_close_ int err_w = dup_high(err_w0);
    _cleanup_close_ int st_w = dup_high(st_w0);
    if (in_fd < 0 || out_w < 0 || err_w < 0 || st_w < 0)
        return jw_error_errno_code(err, JW_RESOURCE_EXHAUSTED, errno, "duplicate job fds");

    _cleanup_free_ const char **argv = calloc(o->nargs + ARGV_EXTRA, sizeof(char *));
    char **env = build_env(o, o->workdir ? o->workdir : "/");
    if (!argv || !env) {
        free_env(env);
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    }
    argv_bufs bufs;
    build_argv(o, &bufs, argv);
    child_args ca = {.in_fd = in_fd,
                     .out_w = out_w,
                     .err_w = err_w,
                     .st_w = st_w,
                     .path = o->job_init_path,
                     .argv = (char *const *)argv,
                     .envp = env};
    if (o->nofile_soft > 0 && getrlimit(RLIMIT_NOFILE, &ca.nofile) == 0 &&
        (rlim_t)o->nofile_soft < ca.nofile.rlim_cur)
        ca.nofile.rlim_cur = (rlim_t)o->nofile_soft;
    else
        ca.nofile.rlim_cur = 0;
    int pidfd_int = -1;
    pid_t pid = clone_job_init(o, &ca, &pidfd_int);
    free_env(env);
    if (pid == -ENOMEM)
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    if (pid < 0)
        return jw_error_errno_code(err, JW_INTERNAL, -pid, "clone job-init");
    _cleanup_close_ int pidfd = pidfd_int;
    /* Only job-init holds the write ends now: its exit (or exec failure) is EOF here. And only
     * it holds the read end of its stdin: once it is gone, writes fail with EPIPE. */
    close(TAKE_FD(out_w));
    close(TAKE_FD(err_w));
    close(TAKE_FD(st_w));
    close(TAKE_FD(out_w0));
    close(TAKE_FD(err_w0));
    close(TAKE_FD(st_w0));
    close(TAKE_FD(in_fd));
    if (in_r0 >= 0)
        close(TAKE_FD(in_r0));

    jobinit_msg m;
    struct pollfd p = {.fd = st_r, .events = POLLIN};
    int pr = poll(&p, 1, START_TIMEOUT_MS);
    ssize_t n = pr > 0 ? read_full(st_r, &m, sizeof(m)) : -ETIMEDOUT;
    if (n == (ssize_t)sizeof(m) && m.kind == JOBINIT_MSG_STARTED) {
        if (fcntl(out_r, F_SETFL, O_NONBLOCK) < 0 || fcntl(err_r, F_SETFL, O_NONBLOCK) < 0 ||
            fcntl(st_r, F_SETFL, O_NONBLOCK) < 0 ||
            (in_w >= 0 && fcntl(in_w, F_SETFL, O_NONBLOCK) < 0)) {
            int e = errno;
            kill_and_reap(pidfd);
            return jw_error_errno_code(err, JW_INTERNAL, e, "set job pipes non-blocking");
        }
        *ret = (launch_result){.pid = pid,
                               .pidfd = TAKE_FD(pidfd),
                               .out_fd = TAKE_FD(out_r),
                               .err_fd = TAKE_FD(err_r),
                               .in_fd = TAKE_FD(in_w),
                               .status_fd = TAKE_FD(st_r)};
        return 0;
    }
    /* job-init failed (or hung): make sure it is gone and reaped. */
    kill_and_reap(pidfd);
    if (n != (ssize_t)sizeof(m) || m.kind != JOBINIT_MSG_FAILED) {
        if (n < 0)
            return jw_error_errno_code(err, JW_INTERNAL, (int)n, "job-init gave no start status");
        return jw_error_set(err, JW_INTERNAL, -EIO, "job-init gave no start status: short read");
    }
    if (m.stage == 0)
        return jw_error_errno_code(err, JW_INTERNAL, m.err, "exec job-init '%s'", o->job_init_path);
    *ret = (launch_result){
        .pid = 0, .pidfd = -1, .out_fd = -1, .err_fd = -1, .in_fd = -1, .status_fd = -1};
    char ebuf[128];
    const char *etext = jw_strerror(m.err, ebuf, sizeof(ebuf));
    if (m.stage == JOBINIT_STAGE_EXEC)
        snprintf(ret->start_error, sizeof(ret->start_error), "exec '%s': %s", o->command, etext);
    else
        snprintf(ret->start_error, sizeof(ret->start_error), "%s: %s", stage_text(m.stage), etext);
    return 0;
}

int launch_read_exit(int status_fd, int *ret_wstatus)
{
    jobinit_msg m;
    ssize_t n;
    do {
        n = read(status_fd, &m, sizeof(m));
    } while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof(m) || m.kind != JOBINIT_MSG_EXITED)
        return 0;
    *ret_wstatus = m.wstatus;
    return 1;
}
