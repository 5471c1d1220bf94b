/* isoprobe: what a job may do to the world around it, from the job's own point of view, without
 * forking (so that its own view of /proc is only itself and job-init). Runs each probe named on
 * the command line in order and prints one line per probe; it never fails on a refused action,
 * it reports it:
 *   ids               ids: uid=R/E/S gid=R/E/S groups=N
 *   procs             procs: 1(job-init) 2(isoprobe)      every pid in /proc with its comm
 *   signal PID        signal PID: ok | <errno name>       kill(PID, 0)
 *   ptrace PID        ptrace PID: ok | <errno name>       PTRACE_ATTACH (detaches on success)
 *   connect IP PORT   connect IP:PORT: ok | <errno name>  TCP connect, 2 s timeout
 *   write PATH        write PATH: ok | <errno name>       create (or truncate) PATH, write a line
 *   keyring           keyring: ok | <errno name>          add_key of a "user" key to the user
 *                                                         keyring (@u), the uid's own
 *   as UID GID CMD... drops to UID/GID (no supplementary group, no no_new_privs) and execs CMD:
 *                     the control that a setuid binary does work outside a job (last probe)
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *err_name(int e)
{
    const char *n = strerrorname_np(e);
    return n ? n : "E?";
}

static void probe_ids(void)
{
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    getresuid(&ru, &eu, &su);
    getresgid(&rg, &eg, &sg);
    printf("ids: uid=%u/%u/%u gid=%u/%u/%u groups=%d\n", ru, eu, su, rg, eg, sg,
           getgroups(0, NULL));
}

static void probe_procs(void)
{
    DIR *d = opendir("/proc");
    if (!d) {
        printf("procs: %s\n", err_name(errno));
        return;
    }
    printf("procs:");
    for (struct dirent *de; (de = readdir(d));) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        char path[300], comm[64] = "?";
        snprintf(path, sizeof(path), "/proc/%s/comm", de->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t n = read(fd, comm, sizeof(comm) - 1);
            comm[n > 0 ? n : 0] = '\0';
            comm[strcspn(comm, "\n")] = '\0';
            close(fd);
        }
        printf(" %s(%s)", de->d_name, comm);
    }
    closedir(d);
    printf("\n");
}

static void probe_signal(pid_t pid)
{
    int r = kill(pid, 0);
    printf("signal %d: %s\n", (int)pid, r == 0 ? "ok" : err_name(errno));
}

static void probe_ptrace(pid_t pid)
{
    long r = ptrace(PTRACE_ATTACH, pid, NULL, NULL);
    if (r == 0) {
        waitpid(pid, NULL, __WALL);
        ptrace(PTRACE_DETACH, pid, NULL, NULL);
    }
    printf("ptrace %d: %s\n", (int)pid, r == 0 ? "ok" : err_name(errno));
}

static void probe_connect(const char *ip, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    const char *res;
    int s = -1;
    if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1) {
        res = "bad address";
    } else if ((s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) {
        res = err_name(errno);
    } else if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        res = "ok";
    } else if (errno != EINPROGRESS) {
        res = err_name(errno);
    } else {
        struct pollfd p = {.fd = s, .events = POLLOUT};
        int e = 0;
        socklen_t len = sizeof(e);
        if (poll(&p, 1, 2000) != 1)
            res = "ETIMEDOUT";
        else if (getsockopt(s, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
            res = err_name(errno);
        else
            res = e ? err_name(e) : "ok";
    }
    if (s >= 0)
        close(s);
    printf("connect %s:%d: %s\n", ip, port, res);
}

static void probe_write(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int e = 0;
    if (fd < 0)
        e = errno;
    else if (write(fd, "isoprobe\n", 9) != 9 || close(fd) < 0)
        e = errno ? errno : EIO;
    printf("write %s: %s\n", path, e ? err_name(e) : "ok");
}

static void probe_keyring(void)
{
    /* KEY_SPEC_USER_KEYRING, without libkeyutils. */
    long r = syscall(SYS_add_key, "user", "jw-isoprobe", "secret", (size_t)6, -4);
    printf("keyring: %s\n", r >= 0 ? "ok" : err_name(errno));
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *p = argv[i];
        if (strcmp(p, "ids") == 0) {
            probe_ids();
        } else if (strcmp(p, "procs") == 0) {
            probe_procs();
        } else if (strcmp(p, "signal") == 0 && i + 1 < argc) {
            probe_signal((pid_t)atoi(argv[++i]));
        } else if (strcmp(p, "ptrace") == 0 && i + 1 < argc) {
            probe_ptrace((pid_t)atoi(argv[++i]));
        } else if (strcmp(p, "as") == 0 && i + 3 < argc) {
            gid_t g = (gid_t)atoi(argv[i + 2]);
            uid_t u = (uid_t)atoi(argv[i + 1]);
            if (setgroups(0, NULL) < 0 || setresgid(g, g, g) < 0 || setresuid(u, u, u) < 0) {
                printf("as: %s\n", err_name(errno));
                return 1;
            }
            execv(argv[i + 3], &argv[i + 3]);
            printf("as: exec %s: %s\n", argv[i + 3], err_name(errno));
            return 1;
        } else if (strcmp(p, "write") == 0 && i + 1 < argc) {
            probe_write(argv[++i]);
        } else if (strcmp(p, "keyring") == 0) {
            probe_keyring();
        } else if (strcmp(p, "connect") == 0 && i + 2 < argc) {
            probe_connect(argv[i + 1], atoi(argv[i + 2]));
            i += 2;
        } else {
            fprintf(stderr, "isoprobe: unknown probe '%s'\n", p);
            return 2;
        }
        fflush(stdout);
    }
    return 0;
}
