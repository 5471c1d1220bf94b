/* job-init: the first program of every job. It runs inside the job's cgroup before any user code,
 * cleans up what it inherited, and execs the job's command. See internal/spawn/jobinit-proto.h
 * for the protocol with the server. It is single-threaded and tiny on purpose.
 */
#include "spawn/jobinit-proto.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static void fail(jobinit_stage stage, int err)
{
    jobinit_status st = {.stage = stage, .err = err};
    ssize_t n;
    do {
        n = write(JOBINIT_STATUS_FD, &st, sizeof(st));
    } while (n < 0 && errno == EINTR);
    _exit(JOBINIT_EXIT_FAILED);
}

static int write_str(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, s, strlen(s));
    int r = n < 0 ? -errno : 0;
    close(fd);
    return r;
}

/* Joins the job's cgroup (unless the server already placed us there) and verifies from
 * /proc/self/cgroup that we are in it, so no user code can run outside its limits. */
static int join_cgroup(const char *dir, const char *rel)
{
    char path[4096];
    char buf[8192];
    snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
    int r = write_str(path, "0");
    if (r < 0)
        return r;
    int fd = open("/proc/self/cgroup", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -EIO;
    buf[n] = '\0';
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "0::", 3) == 0)
            return strcmp(line + 3, rel) == 0 ? 0 : -EPERM;
    }
    return -ENOENT;
}

static int setup_process(void)
{
    /* Only 0, 1, 2 and the status fd survive; the status fd closes at exec. */
    if (syscall(SYS_close_range, JOBINIT_STATUS_FD + 1, ~0U, 0) < 0) {
        for (int fd = JOBINIT_STATUS_FD + 1; fd < 65536; fd++)
            close(fd);
    }
    if (fcntl(JOBINIT_STATUS_FD, F_SETFD, FD_CLOEXEC) < 0)
        return -errno;

    sigset_t all;
    sigemptyset(&all);
    if (sigprocmask(SIG_SETMASK, &all, NULL) < 0)
        return -errno;
    /* Every disposition to default, through the raw system call: glibc's signal() refuses its
     * two internal real-time signals, and glibc's posix_spawn leaves them ignored in the child,
     * which exec would carry over into the job. */
    struct {
        void (*handler)(int);
        unsigned long flags;
        void (*restorer)(void);
        uint64_t mask;
    } dfl = {SIG_DFL, 0, NULL, 0};
    for (int sig = 1; sig <= 64; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        if (syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof(dfl.mask)) < 0)
            return -errno;
    }
    /* The server's posix_spawn already made us a session leader; setsid() then fails with
     * EPERM, which is fine. Any other outcome means we are not in our own session. */
    if (setsid() < 0 && errno != EPERM)
        return -errno;
    if (getsid(0) != getpid())
        return -EPERM;
    int r = write_str("/proc/self/oom_score_adj", "0");
    if (r < 0)
        return r;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -errno;
    umask(022);
    return 0;
}

int main(int argc, char **argv)
{
    const char *cg_dir = NULL, *cg_rel = NULL;
    int i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if (strcmp(argv[i], "--cgroup") == 0 && i + 1 < argc)
            cg_dir = argv[++i];
        else if (strcmp(argv[i], "--cgroup-rel") == 0 && i + 1 < argc)
            cg_rel = argv[++i];
        else
            fail(JOBINIT_STAGE_ARGS, EINVAL);
    }
    if (i >= argc || (cg_dir && !cg_rel))
        fail(JOBINIT_STAGE_ARGS, EINVAL);

    if (cg_dir) {
        int r = join_cgroup(cg_dir, cg_rel);
        if (r < 0)
            fail(JOBINIT_STAGE_CGROUP, -r);
    }
    int r = setup_process();
    if (r < 0)
        fail(JOBINIT_STAGE_SETUP, -r);

    execvp(argv[i], &argv[i]);
    fail(JOBINIT_STAGE_EXEC, errno);
    return JOBINIT_EXIT_FAILED;
}
