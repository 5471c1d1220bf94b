/* The listener watch (see listenwatch.h for what it decides and why). */
#include "rpc/listenwatch.h"

#include "util/log.h"
#include "util/misc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Fifty looks per window: a live listener empties its queue within milliseconds of a wake-up, so
 * fifty non-empty, never shrinking looks in a row do not happen while anyone accepts. A look is
 * a getsockopt() and an fstat() per listener. */
#define LW_DEFAULT_INTERVAL_MS 100
#define LW_DEFAULT_STUCK_MS    5000
#define LW_FD_COUNT_EVERY_MS   1000
#define LW_MAX_LISTENERS       4 /* gRPC binds one socket per resolved address: v4 and v6 */

typedef struct lw_listener {
    int fd;
    ino_t ino;           /* the socket's inode: the fd number may be reused by anyone */
    unsigned prev;       /* accept queue at the previous look */
    int64_t stuck_since; /* monotonic ns of the first look of a non-empty, never shrinking queue;
                          * 0 when not stuck */
    int stuck_looks;     /* looks since then: a stopped process or a suspended VM makes time pass
                          * without anyone, the watch included, getting a chance to accept */
} lw_listener;

struct listenwatch {
    listenwatch_config cfg;
    int dir_fd; /* /proc/self/fd, read again and again with getdents64: no allocation */
    lw_listener listeners[LW_MAX_LISTENERS];
    int n_listeners;
    bool missing_logged;
    bool fd_warned;
    int fd_peak;
    int64_t next_fd_count;

    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */
    bool stop;
    atomic_bool fired;
};

/* Calls fn(fd, arg) for every open fd of the process but the directory's own; returns how many
 * there were, or a negative errno. */
static int for_each_fd(listenwatch *w, void (*fn)(listenwatch *w, int fd), int *ret_count)
{
    char buf[4096] __attribute__((aligned(8)));
    int n = 0;
    if (lseek(w->dir_fd, 0, SEEK_SET) < 0)
        return -errno;
    for (;;) {
        ssize_t len = getdents64(w->dir_fd, buf, sizeof(buf));
        if (len < 0)
            return -errno;
        if (len == 0)
            break;
        for (ssize_t off = 0; off < len;) {
            struct dirent64 *de = (struct dirent64 *)(void *)(buf + off);
            off += de->d_reclen;
            if (de->d_name[0] < '0' || de->d_name[0] > '9')
                continue;
            int fd = (int)strtol(de->d_name, NULL, 10);
            if (fd == w->dir_fd)
                continue;
            n++;
            if (fn)
                fn(w, fd);
        }
    }
    if (ret_count)
        *ret_count = n;
    return 0;
}

static void consider_fd(listenwatch *w, int fd)
{
    if (w->n_listeners >= LW_MAX_LISTENERS)
        return;
    int v = 0;
    socklen_t vlen = sizeof(v);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &vlen) < 0 || !v)
        return;
    vlen = sizeof(v);
    if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &v, &vlen) < 0 || v != IPPROTO_TCP)
        return;
    struct sockaddr_storage ss = {0};
    socklen_t slen = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &slen) < 0)
        return;
    int port;
    if (ss.ss_family == AF_INET)
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    else if (ss.ss_family == AF_INET6)
        port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    else
        return;
    struct stat st;
    if (port != w->cfg.port || fstat(fd, &st) < 0)
        return;
    w->listeners[w->n_listeners++] = (lw_listener){.fd = fd, .ino = st.st_ino};
}

static void find_listeners(listenwatch *w)
{
    w->n_listeners = 0;
    int r = for_each_fd(w, consider_fd, NULL);
    if (r < 0)
        log_warning_errno(-r, "listener watch: read /proc/self/fd: %m, ignoring");
    if (w->n_listeners == 0 && !w->missing_logged) {
        log_debug("listener watch: no listening socket of port %d found yet", w->cfg.port);
        w->missing_logged = true;
    }
}

/* The fd still is the socket found, or the listener list must be found again. */
static bool listener_valid(const lw_listener *l)
{
    struct stat st;
    return fstat(l->fd, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_ino == l->ino;
}

/* The accept queue of a LISTEN socket: for a listener TCP_INFO's tcpi_unacked is sk_ack_backlog,
 * the connections the kernel completed that nobody accepted yet. */
static int accept_queue(int fd, unsigned *ret)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        return -errno;
    if (ti.tcpi_state != TCP_LISTEN)
        return -ENOTCONN;
    *ret = ti.tcpi_unacked;
    return 0;
}

static void count_fds(listenwatch *w, int *ret_open, unsigned long long *ret_limit)
{
    int n = -1;
    struct rlimit rl = {0};
    if (for_each_fd(w, NULL, &n) < 0)
        n = -1;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        rl.rlim_cur = 0;
    if (n > w->fd_peak)
        w->fd_peak = n;
    *ret_open = n;
    *ret_limit = (unsigned long long)rl.rlim_cur;
}

static void check_fd_use(listenwatch *w)
{
    int n;
    unsigned long long lim;
    count_fds(w, &n, &lim);
    if (n < 0 || lim == 0 || lim == RLIM_INFINITY)
        return;
    unsigned long long used = (unsigned long long)n;
    if (!w->fd_warned && used * 10 > lim * 9) {
        log_warning("open files: %d of the limit %llu are in use; at the limit new connections "
                    "fail and gRPC stops accepting for good: raise the limit (systemd "
                    "LimitNOFILE=) or look for a connection flood",
                    n, lim);
        w->fd_warned = true;
    } else if (w->fd_warned && used * 4 < lim * 3) {
        w->fd_warned = false;
    }
}

static void listener_died(listenwatch *w, unsigned queue)
{
    int n;
    unsigned long long lim;
    count_fds(w, &n, &lim);
    log_error("the gRPC listener on port %d stopped accepting connections (accept queue stuck at "
              "%u for %.1f s; likely accept4() failed with EMFILE: open files limit %llu, %d open "
              "now, %d at the most seen) - exiting so that a supervisor restarts the server; "
              "raise the open files limit (systemd LimitNOFILE=, ulimit -n) and check for a "
              "connection flood",
              w->cfg.port, queue, w->cfg.stuck_ms / 1000.0, lim, n, w->fd_peak);
    atomic_store(&w->fired, true);
    if (w->cfg.on_dead)
        w->cfg.on_dead(w->cfg.arg);
    else
        kill(getpid(), SIGTERM);
}

/* One look at every listener; true when one of them is dead. */
static bool look(listenwatch *w, int64_t now, unsigned *ret_queue)
{
    for (int i = 0; i < w->n_listeners; i++)
        if (!listener_valid(&w->listeners[i])) {
            find_listeners(w);
            break;
        }
    for (int i = 0; i < w->n_listeners; i++) {
        lw_listener *l = &w->listeners[i];
        unsigned q = 0;
        if (accept_queue(l->fd, &q) < 0) {
            l->stuck_since = 0;
            l->stuck_looks = 0;
            continue;
        }
        /* A queue that became empty or shrank was accepted from: the listener lives. */
        if (q == 0 || q < l->prev) {
            l->stuck_since = 0;
            l->stuck_looks = 0;
        } else if (l->stuck_since == 0) {
            l->stuck_since = now;
        } else {
            l->stuck_looks++;
        }
        l->prev = q;
        if (l->stuck_since != 0 && now - l->stuck_since >= (int64_t)w->cfg.stuck_ms * 1000000 &&
            l->stuck_looks >= w->cfg.stuck_ms / w->cfg.interval_ms) {
            *ret_queue = q;
            return true;
        }
    }
    return false;
}

static void *watch_main(void *arg)
{
    listenwatch *w = arg;
    find_listeners(w);
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    pthread_mutex_lock(&w->lock);
    while (!w->stop) {
        deadline.tv_nsec += (long)w->cfg.interval_ms * 1000000L;
        deadline.tv_sec += deadline.tv_nsec / 1000000000L;
        deadline.tv_nsec %= 1000000000L;
        while (!w->stop && pthread_cond_timedwait(&w->cond, &w->lock, &deadline) != ETIMEDOUT)
            ;
        if (w->stop)
            break;
        pthread_mutex_unlock(&w->lock);
        int64_t now = now_monotonic_ns();
        if (now >= w->next_fd_count) {
            check_fd_use(w);
            w->next_fd_count = now + (int64_t)LW_FD_COUNT_EVERY_MS * 1000000;
        }
        unsigned q = 0;
        bool dead = look(w, now, &q);
        if (dead)
            listener_died(w, q);
        pthread_mutex_lock(&w->lock);
        if (dead)
            break;
        /* After a long stall (a suspended VM), do not make up for the missed looks. */
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec > deadline.tv_sec + 1)
            deadline = t;
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

int listenwatch_start(const listenwatch_config *cfg, listenwatch **ret)
{
    if (cfg->port <= 0 || cfg->port > 65535 || cfg->interval_ms < 0 || cfg->stuck_ms < 0)
        return -EINVAL;
    listenwatch *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->cfg = *cfg;
    if (w->cfg.interval_ms == 0)
        w->cfg.interval_ms = LW_DEFAULT_INTERVAL_MS;
    if (w->cfg.stuck_ms == 0)
        w->cfg.stuck_ms = LW_DEFAULT_STUCK_MS;
    atomic_init(&w->fired, false);
    w->dir_fd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w->dir_fd < 0) {
        int r = -errno;
        free(w);
        return r;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&w->lock, NULL);
    int r = -pthread_create(&w->thread, NULL, watch_main, w);
    if (r < 0) {
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
        close(w->dir_fd);
        free(w);
        return r;
    }
    w->started = true;
    *ret = w;
    return 0;
}

bool listenwatch_fired(const listenwatch *w)
{
    return w && atomic_load(&w->fired);
}

void listenwatch_stop(listenwatch *w)
{
    if (!w || !w->started)
        return;
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    w->started = false;
}

void listenwatch_free(listenwatch *w)
{
    if (!w)
        return;
    listenwatch_stop(w);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    close(w->dir_fd);
    free(w);
}
