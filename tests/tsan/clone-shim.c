/* Linked into the ThreadSanitizer test binaries only (make test-tsan), never into the product.
 *
 * The supervisor starts job-init with clone(CLONE_VM | CLONE_VFORK): the child borrows the
 * parent's memory, including the spawning thread's TLS and with it TSan's per-thread state, until
 * it execs. TSan cannot model that:
 *  - it intercepts clone() as if it were fork() and runs its after-fork bookkeeping in the child,
 *    i.e. in the parent's memory: every other thread is marked dead, the fd table is reset, and
 *    the spawning thread is switched to "ignore everything" because the parent had threads;
 *  - the child's dup2() onto fds 0..3 and its other libc calls go through TSan's interceptors and
 *    rewrite the parent's view of those fd numbers (fd 3 is often the supervisor's epoll fd).
 * Either way TSan then reports races on correctly handed-over fds and memory, or dies with
 * "starting new threads after multi-threaded fork is not supported".
 *
 * This file defines clone() and the few calls such a child makes, which take precedence over
 * TSan's interceptors (the executable comes first in symbol lookup):
 *  - a CLONE_VM|CLONE_VFORK clone goes straight to glibc's __clone; the child marks itself in a
 *    thread-local flag (the spawning thread's TLS, which it shares; other threads are unaffected),
 *    ignores its own memory accesses and synchronization, and its dup2/dup3/close/write/execve/
 *    _exit become raw system calls that TSan never sees. The parent thread, suspended meanwhile,
 *    clears the flag and the ignores when it resumes;
 *  - everything else is forwarded to TSan's interceptor (RTLD_NEXT), unchanged.
 * It is compiled without -fsanitize=thread. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

int __clone(int (*fn)(void *), void *stack, int flags, void *arg, ...);

/* TSan's annotation API (no header declares these). */
void AnnotateIgnoreReadsBegin(const char *file, int line);
void AnnotateIgnoreReadsEnd(const char *file, int line);
void AnnotateIgnoreWritesBegin(const char *file, int line);
void AnnotateIgnoreWritesEnd(const char *file, int line);
void AnnotateIgnoreSyncBegin(const char *file, int line);
void AnnotateIgnoreSyncEnd(const char *file, int line);

/* Set only in a CLONE_VM|CLONE_VFORK child, which runs on its parent thread's TLS. */
static __thread volatile int in_vfork_child;

static void *next_symbol(const char *name)
{
    void *p = dlsym(RTLD_NEXT, name);
    if (!p)
        abort();
    return p;
}

/* Declares `real`, the next definition of `name` (TSan's interceptor), with the given type. */
#define FORWARD(type, name, ...)                                                                   \
    static type (*real)(__VA_ARGS__);                                                              \
    if (!real)                                                                                     \
        real = (type(*)(__VA_ARGS__))next_symbol(name);

/* A raw system call's result as libc would return it (errno is the parent's: harmless, the
 * parent is suspended and reads only clone's own errno when it resumes). */
static long raw_result(long r)
{
    if (r < 0) {
        errno = (int)-r;
        return -1;
    }
    return r;
}

static long raw_syscall(long nr, long a, long b, long c)
{
    long r;
    __asm__ volatile("syscall"
                     : "=a"(r)
                     : "a"(nr), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return raw_result(r);
}

int dup2(int oldfd, int newfd)
{
    if (in_vfork_child)
        return (int)raw_syscall(SYS_dup2, oldfd, newfd, 0);
    FORWARD(int, "dup2", int, int)
    return real(oldfd, newfd);
}

int dup3(int oldfd, int newfd, int flags)
{
    if (in_vfork_child)
        return (int)raw_syscall(SYS_dup3, oldfd, newfd, flags);
    FORWARD(int, "dup3", int, int, int)
    return real(oldfd, newfd, flags);
}

int close(int fd)
{
    if (in_vfork_child)
        return (int)raw_syscall(SYS_close, fd, 0, 0);
    FORWARD(int, "close", int)
    return real(fd);
}

ssize_t write(int fd, const void *buf, size_t n)
{
    if (in_vfork_child)
        return raw_syscall(SYS_write, fd, (long)buf, (long)n);
    FORWARD(ssize_t, "write", int, const void *, size_t)
    return real(fd, buf, n);
}

int execve(const char *path, char *const argv[], char *const envp[])
{
    if (in_vfork_child)
        return (int)raw_syscall(SYS_execve, (long)path, (long)argv, (long)envp);
    FORWARD(int, "execve", const char *, char *const *, char *const *)
    return real(path, argv, envp);
}

void _exit(int status)
{
    if (in_vfork_child) {
        for (;;)
            raw_syscall(SYS_exit_group, status, 0, 0);
    }
    FORWARD(void, "_exit", int)
    real(status);
    abort();
}

struct shim_arg {
    int (*fn)(void *);
    void *arg;
};

static int shim_child(void *p)
{
    struct shim_arg *a = p;
    in_vfork_child = 1;
    AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
    AnnotateIgnoreWritesBegin(__FILE__, __LINE__);
    AnnotateIgnoreSyncBegin(__FILE__, __LINE__);
    return a->fn(a->arg);
}

int clone(int (*fn)(void *), void *stack, int flags, void *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    pid_t *ptid = va_arg(ap, pid_t *);
    void *tls = va_arg(ap, void *);
    pid_t *ctid = va_arg(ap, pid_t *);
    va_end(ap);
    if ((flags & (CLONE_VM | CLONE_VFORK)) != (CLONE_VM | CLONE_VFORK)) {
        FORWARD(int, "clone", int (*)(void *), void *, int, void *, ...)
        return real(fn, stack, flags, arg, ptid, tls, ctid);
    }
    struct shim_arg a = {fn, arg};
    int pid = __clone(shim_child, stack, flags, &a, ptid, tls, ctid);
    if (in_vfork_child) {
        in_vfork_child = 0;
        AnnotateIgnoreSyncEnd(__FILE__, __LINE__);
        AnnotateIgnoreWritesEnd(__FILE__, __LINE__);
        AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
    }
    return pid;
}
