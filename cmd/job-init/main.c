/* job-init: PID 1 of every job. It runs inside the job's cgroup and namespaces before any user
 * code, mounts the job's own /proc, forks the command with the job's credentials, forwards
 * SIGTERM/SIGINT to it, reaps orphans, and reports the command's end to the server. See
 * internal/spawn/jobinit-proto.h for the protocol. It is single-threaded and small on purpose.
 */
#include "cgroup/cgroup.h"
#include "spawn/jobinit-proto.h"
#include "util/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct options {
    const char *cg_dir, *cg_rel;
    long uid, gid; /* -1 = keep */
    const char *workdir;
    const char *hostname;
    unsigned long long tmp_size; /* bytes of each private tmpfs; 0 = no private tmpfs */
    int workdir_fd;              /* O_PATH fd of workdir, opened before the tmpfs mounts */
    int net_none;
    char **argv; /* the command */
} options;

static void send_msg(jobinit_msg m)
{
    ssize_t n;
    do {
        n = write(JOBINIT_STATUS_FD, &m, sizeof(m));
    } while (n < 0 && errno == EINTR);
}

static void fail(jobinit_stage stage, int err)
{
    send_msg((jobinit_msg){.kind = JOBINIT_MSG_FAILED, .stage = stage, .err = err});
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

/* Joins the job's cgroup and verifies from /proc/self/cgroup that we are in it, so no user code
 * can run outside its limits. The "0::" line is parsed by the server's own (fuzzed) parser. */
static int join_cgroup(const char *dir, const char *rel)
{
    char path[4096];
    char buf[8192];
    char cur[4096];
    snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
    int r = write_str(path, "0");
    if (r < 0)
        return r;
    int fd = open("/proc/self/cgroup", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read_full(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return n < 0 ? (int)n : -EIO;
    buf[n] = '\0';
    r = cgroup_parse_proc_cgroup(buf, cur, sizeof(cur));
    if (r < 0)
        return r;
    return strcmp(cur, rel) == 0 ? 0 : -EPERM;
}

/* Every disposition to default through the raw system call: glibc's signal() refuses its two
 * internal real-time signals, which a clone()d child may have inherited as ignored. */
static int reset_signals(void)
{
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
    return 0;
}

/* The job's own /tmp, /var/tmp and /dev/shm (systemd's PrivateTmp): empty tmpfs mounts, mode
 * 1777, nosuid and nodev, each capped at o->tmp_size bytes (their pages are also charged to the
 * job's memory cgroup, so memory.max bounds them together with the job's own memory). Nothing a
 * job writes there is seen by another job or outlives it: the mounts live only in the job's mount
 * namespace, which dies with job-init. A directory the host does not have is skipped. */
static int mount_private_tmp(const options *o)
{
    static const char *const dirs[] = {"/tmp", "/var/tmp", "/dev/shm"};
    char data[64];
    snprintf(data, sizeof(data), "mode=1777,size=%llu", o->tmp_size);
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        if (mount("tmpfs", dirs[i], "tmpfs", MS_NOSUID | MS_NODEV, data) < 0 && errno != ENOENT)
            return -errno;
    }
    return 0;
}

#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442 /* the same number on every architecture */
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

/* mount_setattr(2)'s argument (Linux 5.12), spelled out so that job-init does not depend on the C
 * library's headers having it. */
typedef struct ro_mount_attr {
    uint64_t attr_set, attr_clr, propagation, userns_fd;
} ro_mount_attr;

static int set_mount_attr(const char *path, unsigned flags, uint64_t set, uint64_t clr)
{
    ro_mount_attr a = {.attr_set = set, .attr_clr = clr};
    if (syscall(SYS_mount_setattr, AT_FDCWD, path, flags, &a, sizeof(a)) < 0)
        return -errno;
    return 0;
}

/* A read-only view of the host's file system for the job (systemd's ProtectSystem=strict, but
 * stricter: /dev and /sys are read-only too, so the host's /dev/mqueue is not a shared
 * world-writable place). Every mount of the job's private tree becomes read-only in one atomic
 * mount_setattr(AT_RECURSIVE); only the working directory, bind-mounted onto itself first, is
 * made writable again. What job-init mounts afterwards (/proc, the private tmpfs mounts) is new
 * and writable. Files a job leaves in a world-writable host directory (/run/lock, /var/crash, a
 * directory of the operator's) would otherwise be found by the next job with the same uid.
 * Device nodes stay usable: writing to a character device or a pipe is not a write to the file
 * system that holds its node (/dev/null, /dev/tty, /dev/stdout keep working).
 *
 * Only the job's own copies of the mounts change: the host and the server do not see it. A root
 * job keeps CAP_SYS_ADMIN and can undo it. On a kernel without mount_setattr (before 5.12) the
 * job is refused rather than started without the protection (systemd falls back to a walk that
 * remounts each mount of /proc/self/mountinfo; jobworker does not), with a line in the job's
 * output naming the requirement. */
static int make_host_readonly(const char *workdir)
{
    if (workdir && mount(workdir, workdir, NULL, MS_BIND, NULL) < 0)
        return -errno;
    int r = set_mount_attr("/", AT_RECURSIVE, MOUNT_ATTR_RDONLY, 0);
    if (r == -ENOSYS) {
        static const char msg[] = "job-init: a read-only view of the host's file system needs "
                                  "mount_setattr(2), Linux 5.12 or later\n";
        ssize_t n = write(STDERR_FILENO, msg, sizeof(msg) - 1);
        (void)n;
    }
    if (r < 0)
        return r;
    if (workdir)
        r = set_mount_attr(workdir, 0, 0, MOUNT_ATTR_RDONLY);
    return r;
}

/* In the job's namespaces: a private, read-only mount tree in which the working directory is
 * writable, with a /proc of the job's PID namespace, private temporary directories, the job's
 * hostname, and a loopback interface that is up when the job has no network. */
static int setup_namespaces(options *o)
{
    if (getpid() != 1)
        return -EINVAL; /* the server always starts us in a new PID namespace */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return -errno;
    int r = make_host_readonly(o->workdir);
    if (r < 0)
        return r;
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return -errno;
    /* The working directory may lie under one of the directories covered next (a data directory
     * in /tmp): it is held open from here (its writable bind mount) and entered with fchdir(). */
    if (o->workdir) {
        o->workdir_fd = open(o->workdir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (o->workdir_fd < 0)
            return -errno;
    }
    if (o->tmp_size > 0) {
        r = mount_private_tmp(o);
        if (r < 0)
            return r;
    }
    if (o->hostname && sethostname(o->hostname, strlen(o->hostname)) < 0)
        return -errno;
    if (o->net_none) {
        int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (s < 0)
            return -errno;
        struct ifreq ifr = {0};
        snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
        r = ioctl(s, SIOCGIFFLAGS, &ifr);
        if (r == 0) {
            ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
            r = ioctl(s, SIOCSIFFLAGS, &ifr);
        }
        r = r < 0 ? -errno : 0;
        close(s);
        if (r < 0)
            return r;
    }
    return 0;
}

/* The command's credentials: no supplementary groups, the job's gid and uid, and for a user
 * other than root no capability in any set (bounding, ambient, inheritable, permitted,
 * effective). Runs in the forked child, before exec. */
static int drop_credentials(const options *o)
{
    if (o->uid < 0)
        return 0;
    if (setgroups(0, NULL) < 0)
        return -errno;
    if (setresgid((gid_t)o->gid, (gid_t)o->gid, (gid_t)o->gid) < 0)
        return -errno;
    if (o->uid != 0) {
        for (int cap = 0; cap <= CAP_LAST_CAP + 32; cap++)
            if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
                return -errno;
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
            return -errno;
    }
    if (setresuid((uid_t)o->uid, (uid_t)o->uid, (uid_t)o->uid) < 0)
        return -errno;
    if (o->uid != 0) {
        cap_t none = cap_init();
        if (!none)
            return -ENOMEM;
        int r = cap_set_proc(none) < 0 ? -errno : 0;
        cap_free(none);
        if (r < 0)
            return r;
    }
    return 0;
}

#if defined(__x86_64__)
#define KEYS_ARCH        AUDIT_ARCH_X86_64
#define KEYS_NR_MASK     (~0x40000000u) /* x32 calls are x86_64's numbers with this bit */
#define KEYS_COMPAT_ARCH AUDIT_ARCH_I386
#define KEYS_COMPAT_NR   286u, 287u, 288u /* add_key, request_key, keyctl through int 0x80 */
#elif defined(__aarch64__)
#define KEYS_ARCH        AUDIT_ARCH_AARCH64
#define KEYS_NR_MASK     (~0u)
#define KEYS_COMPAT_ARCH AUDIT_ARCH_ARM
#define KEYS_COMPAT_NR   309u, 310u, 311u
#else
#error "job-init: add this architecture's audit arch and key system call numbers"
#endif

/* No kernel keyrings for jobs, as Docker's and Podman's default seccomp profiles do: add_key,
 * request_key and keyctl fail with EPERM. Keyrings are not covered by any namespace the job has:
 * the user keyring (@u), the user session keyring (@us) and the persistent keyring belong to the
 * uid and outlive the job, so a job could leave keys for the next job that gets its uid from the
 * pool (or share them with every job of one --job-user, and host processes of that user), and
 * the session keyring the job inherits is the server's. The filter is installed after
 * no_new_privs and stays on every process of the job, root jobs included. */
static int deny_keyrings(void)
{
    enum { DENY = SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA) };
    static const uint32_t compat[] = {KEYS_COMPAT_NR};
    struct sock_filter f[] = {
        /* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        /* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, KEYS_ARCH, 0, 7), /* else to 9 */
        /* 2 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        /* 3 */ BPF_STMT(BPF_ALU | BPF_AND | BPF_K, KEYS_NR_MASK),
        /* 4 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_add_key, 3, 0), /* to 8 */
        /* 5 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_request_key, 2, 0),
        /* 6 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_keyctl, 1, 0),
        /* 7 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        /* 8 */ BPF_STMT(BPF_RET | BPF_K, DENY),
        /* The compatible 32-bit system calls of the same kernel. */
        /* 9 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, KEYS_COMPAT_ARCH, 0, 4), /* else to 14 */
        /* 10 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        /* 11 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, compat[0], 3, 0), /* to 15 */
        /* 12 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, compat[1], 2, 0),
        /* 13 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, compat[2], 1, 0),
        /* 14 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        /* 15 */ BPF_STMT(BPF_RET | BPF_K, DENY),
    };
    struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
        return -errno;
    return 0;
}

/* The forked command: its own session and process group, default signals, the job's
 * credentials and directory, no_new_privs; then exec. Failures go to the exec pipe. */
static void run_command(const options *o, int exec_pipe)
{
    int stage = JOBINIT_STAGE_SETUP, r = 0;
    sigset_t none;
    sigemptyset(&none);
    if (setsid() < 0 || sigprocmask(SIG_SETMASK, &none, NULL) < 0)
        r = -errno;
    if (r == 0)
        r = reset_signals();
    if (r == 0) {
        stage = JOBINIT_STAGE_CREDENTIALS;
        r = drop_credentials(o);
    }
    /* fchdir() checks search permission with the job's credentials, as chdir() would. */
    if (r == 0 && o->workdir_fd >= 0 && fchdir(o->workdir_fd) < 0)
        r = -errno;
    if (o->workdir_fd >= 0)
        close(o->workdir_fd);
    if (r == 0) {
        stage = JOBINIT_STAGE_SETUP;
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
            r = -errno;
        if (r == 0)
            r = deny_keyrings();
    }
    if (r == 0) {
        umask(022);
        execvp(o->argv[0], o->argv);
        stage = JOBINIT_STAGE_EXEC;
        r = -errno;
    }
    int32_t rec[2] = {stage, -r};
    ssize_t n = write(exec_pipe, rec, sizeof(rec));
    (void)n;
    _exit(JOBINIT_EXIT_FAILED);
}

static void on_signal(int sig)
{
    (void)sig; /* taken by sigwaitinfo; a handler only keeps PID 1 from dropping the signal */
}

static void parse_args(int argc, char **argv, options *o)
{
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        } else if (strcmp(a, "--net-none") == 0) {
            o->net_none = 1;
            continue;
        } else if (!v) { /* NOLINT(bugprone-branch-clone): no value, and below no such option */
            fail(JOBINIT_STAGE_ARGS, EINVAL);
        } else if (strcmp(a, "--cgroup") == 0) {
            o->cg_dir = v;
        } else if (strcmp(a, "--cgroup-rel") == 0) {
            o->cg_rel = v;
        } else if (strcmp(a, "--uid") == 0) {
            o->uid = strtol(v, NULL, 10);
        } else if (strcmp(a, "--gid") == 0) {
            o->gid = strtol(v, NULL, 10);
        } else if (strcmp(a, "--workdir") == 0) {
            o->workdir = v;
        } else if (strcmp(a, "--hostname") == 0) {
            o->hostname = v;
        } else if (strcmp(a, "--tmp-size") == 0) {
            char *end;
            errno = 0;
            o->tmp_size = strtoull(v, &end, 10);
            if (errno || *end || end == v)
                fail(JOBINIT_STAGE_ARGS, EINVAL);
        } else {
            fail(JOBINIT_STAGE_ARGS, EINVAL);
        }
        i++;
    }
    if (i >= argc || (o->cg_dir && !o->cg_rel) || (o->uid >= 0) != (o->gid >= 0))
        fail(JOBINIT_STAGE_ARGS, EINVAL);
    o->argv = &argv[i];
}

int main(int argc, char **argv)
{
    options o = {.uid = -1, .gid = -1, .workdir_fd = -1};
    /* If the server dies (even by SIGKILL), the job dies with it, and with job-init its whole
     * PID namespace: no job outlives the server that could report or stop it. A restarted
     * server also removes leftover cgroups. */
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    parse_args(argc, argv, &o);

    if (o.cg_dir) {
        int r = join_cgroup(o.cg_dir, o.cg_rel);
        if (r < 0)
            fail(JOBINIT_STAGE_CGROUP, -r);
    }
    /* Only 0, 1, 2 and the status fd survive; the status fd never reaches the command. */
    if (syscall(SYS_close_range, JOBINIT_STATUS_FD + 1, ~0U, 0) < 0) {
        for (int fd = JOBINIT_STATUS_FD + 1; fd < 65536; fd++)
            close(fd);
    }
    if (fcntl(JOBINIT_STATUS_FD, F_SETFD, FD_CLOEXEC) < 0)
        fail(JOBINIT_STAGE_SETUP, errno);
    int r = reset_signals();
    if (r < 0)
        fail(JOBINIT_STAGE_SETUP, -r);
    r = setup_namespaces(&o);
    if (r < 0)
        fail(JOBINIT_STAGE_NAMESPACE, -r);
    if (setsid() < 0 && errno != EPERM)
        fail(JOBINIT_STAGE_SETUP, errno);
    r = write_str("/proc/self/oom_score_adj", "0");
    if (r < 0)
        fail(JOBINIT_STAGE_SETUP, -r);

    /* SIGTERM/SIGINT are forwarded, SIGCHLD reaps. PID 1 only receives signals it handles, so
     * each gets a (no-op) handler, and all three stay blocked for sigwaitinfo. */
    sigset_t waitset;
    sigemptyset(&waitset);
    sigaddset(&waitset, SIGTERM);
    sigaddset(&waitset, SIGINT);
    sigaddset(&waitset, SIGCHLD);
    sigprocmask(SIG_SETMASK, &waitset, NULL);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);

    int ep[2];
    if (pipe2(ep, O_CLOEXEC) < 0)
        fail(JOBINIT_STAGE_FORK, errno);
    pid_t child = fork();
    if (child < 0)
        fail(JOBINIT_STAGE_FORK, errno);
    if (child == 0) {
        close(ep[0]);
        close(JOBINIT_STATUS_FD);
        run_command(&o, ep[1]);
    }
    close(ep[1]);
    if (o.workdir_fd >= 0)
        close(o.workdir_fd);
    int32_t rec[2];
    ssize_t n;
    do {
        n = read(ep[0], rec, sizeof(rec));
    } while (n < 0 && errno == EINTR);
    close(ep[0]);
    if (n == (ssize_t)sizeof(rec)) {
        waitpid(child, NULL, 0);
        fail((jobinit_stage)rec[0], rec[1]);
    }
    send_msg((jobinit_msg){.kind = JOBINIT_MSG_STARTED});

    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(&waitset, &si);
        if (sig == SIGTERM || sig == SIGINT) {
            kill(-child, sig);
            continue;
        }
        if (sig != SIGCHLD)
            continue;
        /* Reap every child: the command, and orphans reparented to us. */
        for (;;) {
            int ws;
            pid_t p = waitpid(-1, &ws, WNOHANG);
            if (p <= 0)
                break;
            if (p == child) {
                send_msg((jobinit_msg){.kind = JOBINIT_MSG_EXITED, .wstatus = ws});
                /* As PID 1 leaves, the kernel kills what remains in the namespace. */
                _exit(WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws));
            }
        }
    }
}
