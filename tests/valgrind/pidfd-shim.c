/* LD_PRELOADed into the server by the valgrind tier only (tests/valgrind/run.sh), never shipped.
 *
 * Valgrind 3.19 (Debian 12) does not implement pidfd_send_signal (syscall 424): under memcheck
 * it fails with ENOSYS, so no job could be stopped and a server with running jobs could never
 * shut down. This syscall() wrapper turns pidfd_send_signal(pidfd, sig, NULL, 0) into
 * kill(pid, sig), the pid read from /proc/self/fdinfo/<pidfd>; every other call is passed on.
 * The pid-reuse safety that pidfds give is not needed in a test run, and memory is what this
 * tier checks. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

long syscall(long nr, ...);

/* The pid a pidfd refers to; -2 when pidfd is not open, <= 0 when the process is gone. */
static pid_t pidfd_pid(int pidfd)
{
    char path[64], line[128];
    snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pidfd);
    FILE *f = fopen(path, "re");
    if (!f)
        return -2;
    pid_t pid = -1;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "Pid:", 4) == 0) {
            pid = (pid_t)strtol(line + 4, NULL, 10);
            break;
        }
    }
    fclose(f);
    return pid;
}

long syscall(long nr, ...)
{
    va_list ap;
    va_start(ap, nr);
    long a[6];
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    if (nr == SYS_pidfd_send_signal && a[2] == 0 && a[3] == 0) {
        pid_t pid = pidfd_pid((int)a[0]);
        if (pid == -2) { /* not an open fd */
            errno = EBADF;
            return -1;
        }
        if (pid <= 0) { /* "Pid: -1" or 0: the process is gone (reaped, or not in our pidns) */
            errno = ESRCH;
            return -1;
        }
        return kill(pid, (int)a[1]);
    }
    static long (*real)(long, ...);
    if (!real)
        real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
    return real(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}
