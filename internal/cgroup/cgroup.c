/* cgroup v2 manager: the parent subtree, per-job leaves, limits, kill, usage and removal.
 *
 * Every file is reached with *at() calls from a directory descriptor taken once, so a job's
 * operations cannot be redirected by renames above it and never rebuild long paths. Values are
 * written newline-terminated in a single write(), exactly like `echo value > file`, which every
 * cgroup interface file accepts.
 */
#include "cgroup/cgroup-internal.h"

#include "util/cleanup.h"
#include "util/fileio.h"
#include "util/misc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/magic.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#define NO_CGROUPS_HINT "start the server with --no-cgroups to run jobs without limits"
/* How long remove_stale waits for a killed leftover to empty before it gives up on it. */
#define STALE_WAIT_MS 5000
/* rmdir() retries: the kernel reports EBUSY for a moment after the last task left while it
 * finishes tearing the css down. 1 + 2 + 4 + ... capped at 50 ms, about 1 s in total. */
#define RMDIR_TRIES        25
#define RMDIR_MAX_SLEEP_MS 50
/* Rounds of the SIGKILL fallback; each round signals only pids it has not seen, so this only
 * bounds a fork storm that outruns us (pids.max bounds that in practice). */
#define KILL_ROUNDS 256
/* Sub-cgroups a job may have created (when it was allowed to) are removed up to this depth. */
#define RMTREE_MAX_DEPTH 16
/* A cgroup.events poll never sleeps longer than this, so a missed notification (or a fake tree,
 * whose regular files never signal POLLPRI) costs at most this much latency. */
#define EVENTS_POLL_SLICE_MS 100

struct cgroup_manager {
    char *root;        /* the cgroup2 mount, without trailing '/' */
    char *parent_rel;  /* "/jobworker" */
    char *parent_path; /* root + parent_rel */
    int parent_fd;
    unsigned controllers;
    bool fake_fs;
    size_t n_io;
    char io_devs[CGROUP_MAX_IO_DEVICES][CGROUP_MAJMIN_MAX];
};

struct cgroup_job {
    char *name;     /* "job-<name>", the directory's name in the parent */
    char *path;     /* absolute */
    char *rel_path; /* relative to the mount */
    int dirfd;
    int parent_fd; /* our own duplicate, so that a job may outlive its manager */
    bool fake_fs;
};

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static jw_code code_for_errno(int r)
{
    switch (-r) {
    case EEXIST: return JW_ALREADY_EXISTS;
    case ENOSPC:
    case EAGAIN:
    case ENOMEM:
    case EMFILE:
    case ENFILE: return JW_RESOURCE_EXHAUSTED;
    case EACCES:
    case EPERM:
    case EROFS:
    case ENOENT:
    case ENODEV:
    case EOPNOTSUPP:
    case EBUSY: return JW_FAILED_PRECONDITION;
    default: return JW_INTERNAL;
    }
}

/* Opens an interface file for writing. In a fake tree the file is created (and truncated) as the
 * kernel would have created it empty at mkdir. */
static int cg_open_write(int dirfd, const char *file, bool fake_fs)
{
    int flags = O_WRONLY | O_CLOEXEC | (fake_fs ? O_CREAT | O_TRUNC : 0);
    int fd = openat(dirfd, file, flags, 0644);
    return fd < 0 ? -errno : fd;
}

/* One write() of "value\n": the kernel parses each write() on its own. */
static int cg_write_fd(int fd, const char *value)
{
    char buf[256];
    int n = snprintf(buf, sizeof(buf), "%s\n", value);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return -ENOBUFS;
    ssize_t w = write(fd, buf, (size_t)n);
    if (w < 0)
        return -errno;
    return w == n ? 0 : -EIO;
}

static int cg_write(int dirfd, const char *file, const char *value, bool fake_fs)
{
    _cleanup_close_ int fd = cg_open_write(dirfd, file, fake_fs);
    if (fd < 0)
        return fd;
    return cg_write_fd(fd, value);
}

/* Reads a whole interface file into a fresh NUL-terminated buffer. Interface files report no
 * size, so the buffer grows; 1 MiB is far beyond any file read here. */
static int cg_read(int dirfd, const char *file, char **ret)
{
    _cleanup_close_ int fd = openat(dirfd, file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t cap = 4096, len = 0;
    _cleanup_free_ char *buf = malloc(cap);
    if (!buf)
        return -ENOMEM;
    for (;;) {
        if (len + 1 >= cap) {
            if (cap >= 1024 * 1024)
                return -EFBIG;
            char *nb = realloc(buf, cap * 2);
            if (!nb)
                return -ENOMEM;
            buf = nb;
            cap *= 2;
        }
        ssize_t n = read_full(fd, buf + len, cap - 1 - len);
        if (n < 0)
            return (int)n;
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    *ret = TAKE_PTR(buf);
    return 0;
}

static int cg_read_keyed(int dirfd, const char *file, const char *key, int64_t *ret)
{
    _cleanup_free_ char *text = NULL;
    int r = cg_read(dirfd, file, &text);
    if (r < 0)
        return r;
    return cgroup_parse_keyed(text, key, ret);
}

static int cg_read_controllers(int dirfd, const char *file, unsigned *ret)
{
    _cleanup_free_ char *text = NULL;
    int r = cg_read(dirfd, file, &text);
    if (r < 0)
        return r;
    return cgroup_parse_controllers(text, ret);
}

/* Removes directory `name` under parent_fd: its sub-cgroups first (a real cgroupfs refuses to
 * remove a cgroup with children), in a fake tree its regular files too, and retries EBUSY for a
 * bounded time. A missing directory counts as removed. */
static int rm_tree(int parent_fd, const char *name, bool fake_fs, int depth)
{
    if (depth > RMTREE_MAX_DEPTH)
        return -ELOOP;
    int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        int r = -errno;
        close(fd);
        return r;
    }
    int r = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno != 0 && r == 0)
                r = -errno;
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        int q = 0;
        if (S_ISDIR(st.st_mode))
            q = rm_tree(dirfd(d), de->d_name, fake_fs, depth + 1);
        else if (fake_fs && unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT)
            q = -errno;
        if (q < 0 && r == 0)
            r = q;
    }
    closedir(d);

    long delay = 1;
    for (int i = 0;; i++) {
        if (unlinkat(parent_fd, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
            return 0;
        if (errno != EBUSY || i + 1 >= RMDIR_TRIES)
            return r < 0 ? r : -errno;
        sleep_ms(delay);
        delay = delay * 2 > RMDIR_MAX_SLEEP_MS ? RMDIR_MAX_SLEEP_MS : delay * 2;
    }
}

static bool pid_seen(const pid_t *pids, size_t n, pid_t pid)
{
    for (size_t i = 0; i < n; i++)
        if (pids[i] == pid)
            return true;
    return false;
}

/* SIGKILL for every process listed in cgroup.procs, for kernels without cgroup.kill. A process
 * may fork while we read, so the list is read again until a round finds no pid it has not
 * signalled yet: a signalled process cannot fork any more, so that round saw every survivor.
 * (Like every pid-based kill this trusts that a pid read from cgroup.procs is not reused before
 * kill(); pids are only reused after a full wrap, and the kernels that lack cgroup.kill lack the
 * pidfd machinery that would close that gap as well.) */
static int kill_procs(int dirfd)
{
    _cleanup_free_ pid_t *seen = NULL;
    size_t n_seen = 0, cap = 0;
    pid_t self = getpid();
    for (int round = 0; round < KILL_ROUNDS; round++) {
        int fd = openat(dirfd, "cgroup.procs", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        _cleanup_fclose_ FILE *f = fdopen(fd, "re");
        if (!f) {
            int r = -errno;
            close(fd);
            return r;
        }
        bool found_new = false;
        char line[32];
        while (fgets(line, sizeof(line), f)) {
            int64_t v;
            /* pid 0 or -1 would make kill() hit our process group or every process. */
            if (cgroup_parse_int_or_max(line, &v) < 0 || v <= 1 || v > INT32_MAX ||
                (pid_t)v == self)
                continue;
            pid_t pid = (pid_t)v;
            if (pid_seen(seen, n_seen, pid))
                continue;
            if (kill(pid, SIGKILL) < 0 && errno != ESRCH)
                return -errno;
            if (n_seen == cap) {
                size_t ncap = cap ? cap * 2 : 64;
                pid_t *np = realloc(seen, ncap * sizeof(*np));
                if (!np)
                    return -ENOMEM;
                seen = np;
                cap = ncap;
            }
            seen[n_seen++] = pid;
            found_new = true;
        }
        if (ferror(f))
            return -EIO;
        if (!found_new)
            return 0;
    }
    return -EBUSY;
}

static int kill_dirfd(int dirfd)
{
    /* cgroup.kill is never created in a fake tree: its absence selects the fallback. */
    _cleanup_close_ int fd = openat(dirfd, "cgroup.kill", O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT)
            return -errno;
        return kill_procs(dirfd);
    }
    return cg_write_fd(fd, "1");
}

static int populated_fd(int fd)
{
    char buf[512];
    if (lseek(fd, 0, SEEK_SET) < 0)
        return -errno;
    ssize_t n = read_full(fd, buf, sizeof(buf) - 1);
    if (n < 0)
        return (int)n;
    buf[n] = '\0';
    int64_t v;
    int r = cgroup_parse_keyed(buf, "populated", &v);
    if (r < 0)
        return r;
    return v != 0;
}

static int wait_empty_dirfd(int dirfd, int timeout_ms)
{
    _cleanup_close_ int fd = openat(dirfd, "cgroup.events", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int64_t deadline = now_monotonic_ns() + (int64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000;
    for (;;) {
        /* Reading re-arms the notification, so a change after this read wakes the poll. */
        int r = populated_fd(fd);
        if (r <= 0)
            return r;
        int64_t left_ns = deadline - now_monotonic_ns();
        if (left_ns <= 0)
            return -ETIMEDOUT;
        /* Rounded up, so that -ETIMEDOUT never comes before timeout_ms has passed. */
        int64_t left_ms = (left_ns + 999999) / 1000000;
        struct pollfd p = {.fd = fd, .events = POLLPRI};
        int slice = left_ms < EVENTS_POLL_SLICE_MS ? (int)left_ms : EVENTS_POLL_SLICE_MS;
        if (poll(&p, 1, slice) < 0 && errno != EINTR)
            return -errno;
    }
}

/* ---- The manager ---- */

void cgroup_manager_free(cgroup_manager *m)
{
    if (!m)
        return;
    if (m->parent_fd >= 0)
        close(m->parent_fd);
    free(m->root);
    free(m->parent_rel);
    free(m->parent_path);
    free(m);
}

static void cgroup_manager_freep(cgroup_manager **m)
{
    cgroup_manager_free(*m);
}

/* "/a//b/" -> "/a/b". Rejects relative paths, "." and ".." components and the root itself. */
static int normalize_parent(const char *in, char *out, size_t size)
{
    if (!in || in[0] != '/')
        return -EINVAL;
    size_t o = 0;
    const char *p = in;
    while (*p) {
        p += strspn(p, "/");
        size_t len = strcspn(p, "/");
        if (len == 0)
            break;
        if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return -EINVAL;
        if (o + 1 + len >= size)
            return -ENAMETOOLONG;
        out[o++] = '/';
        memcpy(out + o, p, len);
        o += len;
        p += len;
    }
    if (o == 0)
        return -EINVAL;
    out[o] = '\0';
    return 0;
}

static int check_cgroup2(int root_fd, const char *root, jw_error *err)
{
    struct statfs sfs;
    if (fstatfs(root_fd, &sfs) < 0)
        return jw_error_errno_code(err, JW_INTERNAL, errno, "statfs '%s'", root);
    if (sfs.f_type == CGROUP2_SUPER_MAGIC)
        return 0;
    /* systemd's legacy and hybrid layouts mount a tmpfs at /sys/fs/cgroup with one v1
     * hierarchy per controller (and, hybrid, a controller-less cgroup2 at unified/). */
    if (sfs.f_type == TMPFS_MAGIC || sfs.f_type == CGROUP_SUPER_MAGIC)
        return jw_error_set(err, JW_FAILED_PRECONDITION, -EOPNOTSUPP,
                            "cgroup v2 is not mounted at '%s' (found a cgroup v1/hybrid layout); "
                            "boot with systemd.unified_cgroup_hierarchy=1, or " NO_CGROUPS_HINT,
                            root);
    return jw_error_set(err, JW_FAILED_PRECONDITION, -EOPNOTSUPP,
                        "'%s' is not a cgroup v2 mount (file system type 0x%llx); mount one "
                        "there (mount -t cgroup2 none '%s'), or " NO_CGROUPS_HINT,
                        root, (unsigned long long)sfs.f_type, root);
}

static int missing_controllers_error(jw_error *err, unsigned missing, const char *where,
                                     const char *listed, const char *fix)
{
    char names[64];
    cgroup_format_controllers(missing, NULL, names, sizeof(names));
    return jw_error_set(err, JW_FAILED_PRECONDITION, -EOPNOTSUPP,
                        "the cgroup v2 controllers '%s' are not available in '%s' (it lists "
                        "'%s'); %s, or " NO_CGROUPS_HINT,
                        names, where, listed, fix);
}

/* Makes sure the parent can enable `wanted`: a child of the root gets them enabled in the root's
 * subtree_control, a deeper parent must have been delegated them. Returns the usable mask. */
static int prepare_grandparent(cgroup_manager *m, int root_fd, unsigned root_avail,
                               unsigned *ret_avail, jw_error *err)
{
    unsigned wanted = CGROUP_CTRL_REQUIRED | (root_avail & CGROUP_CTRL_IO);
    const char *slash = strrchr(m->parent_rel, '/');
    char ebuf[128];
    int r;

    if (slash == m->parent_rel) {
        unsigned enabled = 0;
        r = cg_read_controllers(root_fd, "cgroup.subtree_control", &enabled);
        if (r < 0)
            return jw_error_errno_code(err, code_for_errno(r), r,
                                       "read '%s/cgroup.subtree_control'", m->root);
        unsigned missing = wanted & ~enabled;
        if (missing) {
            char value[64];
            cgroup_format_controllers(missing, "+", value, sizeof(value));
            r = cg_write(root_fd, "cgroup.subtree_control", value, m->fake_fs);
            if (r < 0)
                return jw_error_set(err, code_for_errno(r), r,
                                    "write '%s' to '%s/cgroup.subtree_control': %s; run the "
                                    "server as root, or " NO_CGROUPS_HINT,
                                    value, m->root, jw_strerror(r, ebuf, sizeof(ebuf)));
        }
        *ret_avail = wanted;
        return 0;
    }

    _cleanup_free_ char *gp = strndup(m->parent_rel, (size_t)(slash - m->parent_rel));
    if (!gp)
        return jw_error_set(err, JW_RESOURCE_EXHAUSTED, -ENOMEM, "out of memory");
    _cleanup_close_ int gp_fd = openat(root_fd, gp + 1, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (gp_fd < 0) {
        r = -errno;
        return jw_error_errno_code(err, code_for_errno(r), r,
                                   "cgroup parent '%s': its parent '%s%s' cannot be opened",
                                   m->parent_rel, m->root, gp);
    }
    _cleanup_free_ char *text = NULL;
    r = cg_read(gp_fd, "cgroup.subtree_control", &text);
    if (r < 0)
        return jw_error_errno_code(err, code_for_errno(r), r, "read '%s%s/cgroup.subtree_control'",
                                   m->root, gp);
    unsigned enabled = 0;
    cgroup_parse_controllers(text, &enabled);
    if ((enabled & CGROUP_CTRL_REQUIRED) != CGROUP_CTRL_REQUIRED) {
        _cleanup_free_ char *where = NULL;
        if (asprintf(&where, "%s%s/cgroup.subtree_control", m->root, gp) < 0)
            return jw_error_set(err, JW_RESOURCE_EXHAUSTED, -ENOMEM, "out of memory");
        text[strcspn(text, "\n")] = '\0';
        return missing_controllers_error(
            err, CGROUP_CTRL_REQUIRED & ~enabled, where, text,
            "delegate them to the parent (enable them in that file, or run the server as a "
            "systemd unit with Delegate=yes), choose another cgroup parent");
    }
    *ret_avail = wanted & enabled;
    return 0;
}

static int resolve_io_devices(cgroup_manager *m, const cgroup_config *cfg, jw_error *err)
{
    if (!(m->controllers & CGROUP_CTRL_IO)) {
        if (cfg->n_io_devices > 0)
            return jw_error_set(err, JW_FAILED_PRECONDITION, -EOPNOTSUPP,
                                "io devices are configured but the io controller is not "
                                "available in '%s'",
                                m->root);
        return 0;
    }
    if (cfg->n_io_devices == 0)
        return cgroup_detect_io_devices(cfg->sys_root, m->io_devs, CGROUP_MAX_IO_DEVICES, &m->n_io,
                                        err);
    if (!cfg->io_devices)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL, "io device list is missing");
    for (size_t i = 0; i < cfg->n_io_devices; i++) {
        char majmin[CGROUP_MAJMIN_MAX];
        int r = cgroup_resolve_io_device(cfg->sys_root, cfg->io_devices[i], majmin, sizeof(majmin),
                                         err);
        if (r < 0)
            return r;
        /* Two partitions of one disk name that disk once. */
        bool dup = false;
        for (size_t j = 0; j < m->n_io; j++)
            dup = dup || strcmp(m->io_devs[j], majmin) == 0;
        if (dup)
            continue;
        if (m->n_io >= CGROUP_MAX_IO_DEVICES)
            return jw_error_set(err, JW_INVALID_ARGUMENT, -E2BIG,
                                "more than %d io devices configured", CGROUP_MAX_IO_DEVICES);
        memcpy(m->io_devs[m->n_io++], majmin, sizeof(majmin));
    }
    return 0;
}

static int read_self_parent(char *ret, size_t size, jw_error *err)
{
    _cleanup_free_ char *text = NULL;
    int r = cg_read(AT_FDCWD, "/proc/self/cgroup", &text);
    if (r < 0)
        return jw_error_errno_code(err, JW_INTERNAL, r, "read '/proc/self/cgroup'");
    r = cgroup_derive_parent(text, ret, size);
    if (r == -ENOENT)
        return jw_error_set(err, JW_FAILED_PRECONDITION, -EOPNOTSUPP,
                            "'/proc/self/cgroup' has no cgroup v2 entry; boot with "
                            "systemd.unified_cgroup_hierarchy=1, or " NO_CGROUPS_HINT);
    if (r < 0)
        return jw_error_errno_code(err, JW_INTERNAL, r, "parse '/proc/self/cgroup'");
    return 0;
}

int cgroup_manager_new(const cgroup_config *cfg, cgroup_manager **ret, jw_error *err)
{
    static const cgroup_config defaults;
    if (!ret)
        return -EINVAL;
    if (!cfg)
        cfg = &defaults;
    if (cfg->fake_fs && !cfg->skip_fs_check)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "fake_fs requires skip_fs_check: a real cgroupfs must not be treated "
                            "as a plain directory tree");

    const char *root = cfg->root ? cfg->root : CGROUP_DEFAULT_ROOT;
    if (root[0] != '/')
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "cgroup root '%s' is not an absolute path", root);

    _cleanup_(cgroup_manager_freep) cgroup_manager *m = calloc(1, sizeof(*m));
    if (!m)
        return jw_error_set(err, JW_RESOURCE_EXHAUSTED, -ENOMEM, "out of memory");
    m->parent_fd = -1;
    m->fake_fs = cfg->fake_fs;
    m->root = strdup(root);
    if (!m->root)
        return jw_error_set(err, JW_RESOURCE_EXHAUSTED, -ENOMEM, "out of memory");
    for (size_t len = strlen(m->root); len > 1 && m->root[len - 1] == '/'; len--)
        m->root[len - 1] = '\0';

    _cleanup_close_ int root_fd = open(m->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root_fd < 0) {
        int r = -errno;
        if (r == -ENOENT)
            return jw_error_set(err, JW_FAILED_PRECONDITION, r,
                                "cgroup v2 is not mounted at '%s' (no such directory); mount it "
                                "(mount -t cgroup2 none '%s'), or " NO_CGROUPS_HINT,
                                m->root, m->root);
        return jw_error_errno_code(err, code_for_errno(r), r, "open '%s'", m->root);
    }
    int r;
    if (!cfg->skip_fs_check) {
        r = check_cgroup2(root_fd, m->root, err);
        if (r < 0)
            return r;
    }

    _cleanup_free_ char *avail_text = NULL;
    char ebuf[128];
    r = cg_read(root_fd, "cgroup.controllers", &avail_text);
    if (r < 0)
        return jw_error_set(
            err, JW_FAILED_PRECONDITION, r,
            "read '%s/cgroup.controllers': %s; '%s' is not a cgroup v2 root, or " NO_CGROUPS_HINT,
            m->root, jw_strerror(r, ebuf, sizeof(ebuf)), m->root);
    unsigned root_avail = 0;
    cgroup_parse_controllers(avail_text, &root_avail);
    if ((root_avail & CGROUP_CTRL_REQUIRED) != CGROUP_CTRL_REQUIRED) {
        _cleanup_free_ char *where = NULL;
        if (asprintf(&where, "%s/cgroup.controllers", m->root) < 0)
            return jw_error_set(err, JW_RESOURCE_EXHAUSTED, -ENOMEM, "out of memory");
        avail_text[strcspn(avail_text, "\n")] = '\0';
        /* On a v2 host a controller is missing when it is disabled on the kernel command line
         * or still bound to a v1 hierarchy mounted beside it. */
        return missing_controllers_error(
            err, CGROUP_CTRL_REQUIRED & ~root_avail, where, avail_text,
            "boot with systemd.unified_cgroup_hierarchy=1 and without cgroup_disable= for them, "
            "and do not mount them as cgroup v1 hierarchies");
    }

    char parent[CGROUP_PATH_MAX];
    if (cfg->parent) {
        r = normalize_parent(cfg->parent, parent, sizeof(parent));
        if (r < 0)
            return jw_error_set(err, JW_INVALID_ARGUMENT, r,
                                "cgroup parent '%s' is not an absolute path below the root of "
                                "the cgroup v2 mount, such as '" CGROUP_DEFAULT_PARENT "'",
                                cfg->parent);
    } else {
        r = read_self_parent(parent, sizeof(parent), err);
        if (r < 0)
            return r;
    }
    m->parent_rel = strdup(parent);
    if (!m->parent_rel || asprintf(&m->parent_path, "%s%s", m->root, parent) < 0) {
        m->parent_path = NULL;
        return jw_error_set(err, JW_RESOURCE_EXHAUSTED, -ENOMEM, "out of memory");
    }

    r = prepare_grandparent(m, root_fd, root_avail, &m->controllers, err);
    if (r < 0)
        return r;
    /* Devices are resolved before anything is created, so a typo there changes nothing. */
    r = resolve_io_devices(m, cfg, err);
    if (r < 0)
        return r;

    bool created = mkdirat(root_fd, parent + 1, 0755) == 0;
    if (!created && errno != EEXIST) {
        r = -errno;
        return jw_error_errno_code(err, code_for_errno(r), r, "create cgroup '%s'", m->parent_path);
    }
    m->parent_fd = openat(root_fd, parent + 1, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (m->parent_fd < 0) {
        r = -errno;
        jw_error_errno_code(err, code_for_errno(r), r, "open '%s'", m->parent_path);
        goto undo;
    }

    if (cfg->move_self) {
        /* The no-internal-processes rule: once the parent distributes controllers to its
         * children it may hold no process itself, so the server moves into a leaf first. */
        if (mkdirat(m->parent_fd, CGROUP_SUPERVISOR_LEAF, 0755) < 0 && errno != EEXIST) {
            r = -errno;
            jw_error_errno_code(err, code_for_errno(r), r,
                                "create cgroup '%s/" CGROUP_SUPERVISOR_LEAF "'", m->parent_path);
            goto undo;
        }
        r = cg_write(m->parent_fd, CGROUP_SUPERVISOR_LEAF "/cgroup.procs", "0", m->fake_fs);
        if (r < 0) {
            jw_error_errno_code(err, code_for_errno(r), r,
                                "move the server into '%s/" CGROUP_SUPERVISOR_LEAF "'",
                                m->parent_path);
            goto undo;
        }
        /* From here on the server lives inside the parent, which therefore stays. */
        created = false;
    }

    char value[64];
    cgroup_format_controllers(m->controllers, "+", value, sizeof(value));
    r = cg_write(m->parent_fd, "cgroup.subtree_control", value, m->fake_fs);
    if (r < 0) {
        if (r == -EBUSY)
            jw_error_set(err, JW_FAILED_PRECONDITION, r,
                         "write '%s' to '%s/cgroup.subtree_control': %s; the cgroup still holds "
                         "processes (a cgroup that hands controllers to children may hold none): "
                         "choose a cgroup parent without processes, or " NO_CGROUPS_HINT,
                         value, m->parent_path, jw_strerror(r, ebuf, sizeof(ebuf)));
        else
            jw_error_errno_code(err, code_for_errno(r), r,
                                "write '%s' to '%s/cgroup.subtree_control'", value, m->parent_path);
        goto undo;
    }

    *ret = TAKE_PTR(m);
    return 0;

undo:
    if (created)
        (void)rm_tree(root_fd, parent + 1, m->fake_fs, 0);
    return r;
}

unsigned cgroup_manager_controllers(const cgroup_manager *m)
{
    return m ? m->controllers : 0;
}

size_t cgroup_manager_n_io_devices(const cgroup_manager *m)
{
    return m ? m->n_io : 0;
}

const char *cgroup_manager_io_device(const cgroup_manager *m, size_t i)
{
    return m && i < m->n_io ? m->io_devs[i] : NULL;
}

const char *cgroup_manager_parent_path(const cgroup_manager *m)
{
    return m ? m->parent_path : NULL;
}

/* Kills, drains and removes one leftover job directory. */
static int remove_one_stale(cgroup_manager *m, const char *name, jw_error *err)
{
    _cleanup_close_ int fd =
        openat(m->parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int r = -errno;
        if (r == -ENOENT)
            return 0;
        return jw_error_errno_code(err, code_for_errno(r), r, "open '%s/%s'", m->parent_path, name);
    }
    int r = kill_dirfd(fd);
    if (r < 0)
        return jw_error_errno_code(err, code_for_errno(r), r, "kill the processes of '%s/%s'",
                                   m->parent_path, name);
    r = wait_empty_dirfd(fd, STALE_WAIT_MS);
    if (r < 0)
        return jw_error_errno_code(err, code_for_errno(r), r, "wait for '%s/%s' to empty",
                                   m->parent_path, name);
    r = rm_tree(m->parent_fd, name, m->fake_fs, 0);
    if (r < 0)
        return jw_error_errno_code(err, code_for_errno(r), r, "remove '%s/%s'", m->parent_path,
                                   name);
    return 1;
}

static void free_names(char ***names)
{
    if (!*names)
        return;
    for (char **p = *names; *p; p++)
        free(*p);
    free(*names);
}

int cgroup_manager_remove_stale(cgroup_manager *m, jw_error *err)
{
    if (!m)
        return -EINVAL;
    int fd = openat(m->parent_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return jw_error_errno_code(err, code_for_errno(-errno), errno, "open '%s'", m->parent_path);
    DIR *d = fdopendir(fd);
    if (!d) {
        int r = -errno;
        close(fd);
        return jw_error_errno_code(err, code_for_errno(r), r, "read '%s'", m->parent_path);
    }
    /* The names are collected first: removing entries while readdir() walks them may skip some. */
    _cleanup_(free_names) char **names = NULL;
    size_t n = 0;
    int r = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            r = -errno;
            break;
        }
        if (strncmp(de->d_name, CGROUP_JOB_PREFIX, strlen(CGROUP_JOB_PREFIX)) != 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
            continue;
        char **nn = realloc(names, (n + 2) * sizeof(*nn));
        if (!nn) {
            r = -ENOMEM;
            break;
        }
        names = nn;
        names[n + 1] = NULL;
        if (!(names[n] = strdup(de->d_name))) {
            r = -ENOMEM;
            break;
        }
        n++;
    }
    closedir(d);
    if (r < 0)
        return jw_error_errno_code(err, code_for_errno(r), r, "read '%s'", m->parent_path);

    /* Every leftover is attempted even after one failed; the first failure is reported. */
    int removed = 0, first_err = 0;
    jw_error first = JW_ERROR_INIT;
    for (size_t i = 0; i < n; i++) {
        jw_error e = JW_ERROR_INIT;
        r = remove_one_stale(m, names[i], &e);
        if (r > 0)
            removed++;
        else if (r < 0 && first_err == 0) {
            first_err = r;
            first = e;
        }
    }
    if (first_err < 0) {
        if (err)
            *err = first;
        return first_err;
    }
    return removed;
}

/* ---- Jobs ---- */

static bool valid_job_name(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > CGROUP_JOB_NAME_MAX || name[0] == '.')
        return false;
    return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == len;
}

static void job_free(cgroup_job *cg)
{
    if (!cg)
        return;
    if (cg->dirfd >= 0)
        close(cg->dirfd);
    if (cg->parent_fd >= 0)
        close(cg->parent_fd);
    free(cg->name);
    free(cg->path);
    free(cg->rel_path);
    free(cg);
}

static void job_freep(cgroup_job **cg)
{
    job_free(*cg);
}

static int check_limits(const cgroup_manager *m, const cgroup_limits *lim, jw_error *err)
{
    if (lim->cpu_percent < 0)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "cpu_percent %" PRId32 " is negative", lim->cpu_percent);
    if (lim->memory_max < 0)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL, "memory_max %" PRId64 " is negative",
                            lim->memory_max);
    if (lim->memory_high < 0)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "memory_high %" PRId64 " is negative", lim->memory_high);
    if (lim->io_bps < 0)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL, "io_bps %" PRId64 " is negative",
                            lim->io_bps);
    if (lim->pids_max < 0)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL, "pids_max %" PRId32 " is negative",
                            lim->pids_max);
    /* Never pretend a limit is applied. */
    if (lim->io_bps > 0 && !(m->controllers & CGROUP_CTRL_IO))
        return jw_error_set(err, JW_FAILED_PRECONDITION, -EOPNOTSUPP,
                            "io_bps %" PRId64 " asked for but the io controller is not available",
                            lim->io_bps);
    if (lim->io_bps > 0 && m->n_io == 0)
        return jw_error_set(err, JW_FAILED_PRECONDITION, -EOPNOTSUPP,
                            "io_bps %" PRId64 " asked for but the server found no disk to apply "
                            "io.max to; configure the io devices",
                            lim->io_bps);
    return 0;
}

static void format_int_or_max(int64_t v, char *buf, size_t size)
{
    if (v == 0)
        snprintf(buf, size, "max");
    else
        snprintf(buf, size, "%" PRId64, v);
}

int cgroup_job_create(cgroup_manager *m, const char *name, const cgroup_limits *lim,
                      cgroup_job **ret, jw_error *err)
{
    static const cgroup_limits no_limits;
    if (!m || !ret)
        return -EINVAL;
    if (!name || !valid_job_name(name))
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "job cgroup name '%s' is not 1 to %d characters of [A-Za-z0-9_.-] "
                            "not starting with '.'",
                            name ? name : "(null)", CGROUP_JOB_NAME_MAX);
    if (!lim)
        lim = &no_limits;
    int r = check_limits(m, lim, err);
    if (r < 0)
        return r;

    /* Every value is formatted before the directory exists. */
    struct {
        const char *file;
        char value[64];
    } w[5];
    size_t nw = 0;
    r = cgroup_format_cpu_max(lim->cpu_percent, w[nw].value, sizeof(w[nw].value));
    if (r < 0)
        return jw_error_errno_code(err, JW_INTERNAL, r, "format cpu.max for %" PRId32 " %%",
                                   lim->cpu_percent);
    w[nw++].file = "cpu.max";
    format_int_or_max(lim->memory_max, w[nw].value, sizeof(w[nw].value));
    w[nw++].file = "memory.max";
    /* memory.high only when asked: without swap, reclaim at memory.high can throttle a job
     * forever instead of letting memory.max end it. */
    if (lim->memory_high > 0) {
        format_int_or_max(lim->memory_high, w[nw].value, sizeof(w[nw].value));
        w[nw++].file = "memory.high";
    }
    /* An OOM kill takes the whole job down, never one random process of it. */
    snprintf(w[nw].value, sizeof(w[nw].value), "1");
    w[nw++].file = "memory.oom.group";
    format_int_or_max(lim->pids_max, w[nw].value, sizeof(w[nw].value));
    w[nw++].file = "pids.max";

    char io_values[CGROUP_MAX_IO_DEVICES][64];
    size_t n_io = lim->io_bps > 0 ? m->n_io : 0;
    for (size_t i = 0; i < n_io; i++) {
        r = cgroup_format_io_max(m->io_devs[i], lim->io_bps, io_values[i], sizeof(io_values[i]));
        if (r < 0)
            return jw_error_errno_code(err, JW_INTERNAL, r, "format io.max for '%s'",
                                       m->io_devs[i]);
    }

    _cleanup_(job_freep) cgroup_job *cg = calloc(1, sizeof(*cg));
    if (!cg)
        return jw_error_set(err, JW_RESOURCE_EXHAUSTED, -ENOMEM, "out of memory");
    cg->dirfd = -1;
    cg->parent_fd = -1;
    cg->fake_fs = m->fake_fs;
    if (asprintf(&cg->name, CGROUP_JOB_PREFIX "%s", name) < 0) {
        cg->name = NULL;
        return jw_error_set(err, JW_RESOURCE_EXHAUSTED, -ENOMEM, "out of memory");
    }
    if (asprintf(&cg->path, "%s/%s", m->parent_path, cg->name) < 0) {
        cg->path = NULL;
        return jw_error_set(err, JW_RESOURCE_EXHAUSTED, -ENOMEM, "out of memory");
    }
    if (asprintf(&cg->rel_path, "%s/%s", m->parent_rel, cg->name) < 0) {
        cg->rel_path = NULL;
        return jw_error_set(err, JW_RESOURCE_EXHAUSTED, -ENOMEM, "out of memory");
    }
    cg->parent_fd = fcntl(m->parent_fd, F_DUPFD_CLOEXEC, 3);
    if (cg->parent_fd < 0)
        return jw_error_errno_code(err, code_for_errno(-errno), errno, "dup");

    if (mkdirat(cg->parent_fd, cg->name, 0755) < 0) {
        /* An existing directory is somebody else's: it is not ours to remove. */
        r = -errno;
        return jw_error_errno_code(err, code_for_errno(r), r, "create cgroup '%s'", cg->path);
    }
    cg->dirfd = openat(cg->parent_fd, cg->name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cg->dirfd < 0) {
        r = -errno;
        jw_error_errno_code(err, code_for_errno(r), r, "open '%s'", cg->path);
        goto undo;
    }

    for (size_t i = 0; i < nw; i++) {
        r = cg_write(cg->dirfd, w[i].file, w[i].value, cg->fake_fs);
        if (r < 0) {
            jw_error_errno_code(err, code_for_errno(r), r, "write '%s' to '%s/%s'", w[i].value,
                                cg->path, w[i].file);
            goto undo;
        }
    }
    /* With swap on the host, memory.max alone would let a job grow past it by swapping: a memory
     * limit means no swap. Kernels or hosts without swap accounting have no such file. */
    if (lim->memory_max > 0 && !cg->fake_fs) {
        r = cg_write(cg->dirfd, "memory.swap.max", "0", false);
        if (r < 0 && r != -ENOENT) {
            jw_error_errno_code(err, code_for_errno(r), r, "write '0' to '%s/memory.swap.max'",
                                cg->path);
            goto undo;
        }
    }
    if (n_io > 0) {
        /* One write per device on one descriptor: the kernel takes one device per write. */
        _cleanup_close_ int fd = cg_open_write(cg->dirfd, "io.max", cg->fake_fs);
        if (fd < 0) {
            r = fd;
            jw_error_errno_code(err, code_for_errno(r), r, "open '%s/io.max'", cg->path);
            goto undo;
        }
        for (size_t i = 0; i < n_io; i++) {
            r = cg_write_fd(fd, io_values[i]);
            if (r < 0) {
                jw_error_errno_code(err, code_for_errno(r), r, "write '%s' to '%s/io.max'",
                                    io_values[i], cg->path);
                goto undo;
            }
        }
    }

    *ret = TAKE_PTR(cg);
    return 0;

undo:
    /* Nothing half-created: the directory goes, even though the error above is what counts. */
    (void)rm_tree(cg->parent_fd, cg->name, cg->fake_fs, 0);
    return r;
}

const char *cgroup_job_path(const cgroup_job *cg)
{
    return cg ? cg->path : NULL;
}

const char *cgroup_job_rel_path(const cgroup_job *cg)
{
    return cg ? cg->rel_path : NULL;
}

int cgroup_job_dirfd(const cgroup_job *cg)
{
    return cg ? cg->dirfd : -EBADF;
}

int cgroup_job_kill(cgroup_job *cg)
{
    if (!cg)
        return -EINVAL;
    return kill_dirfd(cg->dirfd);
}

int cgroup_job_populated(cgroup_job *cg)
{
    if (!cg)
        return -EINVAL;
    _cleanup_close_ int fd = openat(cg->dirfd, "cgroup.events", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    return populated_fd(fd);
}

int cgroup_job_events_open(const cgroup_job *cg)
{
    if (!cg)
        return -EINVAL;
    int fd = openat(cg->dirfd, "cgroup.events", O_RDONLY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int cgroup_events_populated(int events_fd)
{
    if (events_fd < 0)
        return -EBADF;
    return populated_fd(events_fd);
}

int cgroup_job_wait_empty(cgroup_job *cg, int timeout_ms)
{
    if (!cg)
        return -EINVAL;
    return wait_empty_dirfd(cg->dirfd, timeout_ms);
}

/* A missing file or key reads as 0; anything else that goes wrong is an error. */
static int read_key_or_zero(int dirfd, const char *file, const char *key, int64_t *ret)
{
    int r = cg_read_keyed(dirfd, file, key, ret);
    if (r == -ENOENT) {
        *ret = 0;
        return 0;
    }
    return r;
}

int cgroup_job_read_usage(cgroup_job *cg, cgroup_usage *ret)
{
    if (!cg || !ret)
        return -EINVAL;
    cgroup_usage u = {0};
    int r = read_key_or_zero(cg->dirfd, "cpu.stat", "usage_usec", &u.cpu_usec);
    if (r < 0)
        return r;
    r = read_key_or_zero(cg->dirfd, "cpu.stat", "nr_throttled", &u.nr_throttled);
    if (r < 0)
        return r;
    r = read_key_or_zero(cg->dirfd, "memory.events", "oom_kill", &u.oom_kills);
    if (r < 0)
        return r;

    _cleanup_free_ char *text = NULL;
    r = cg_read(cg->dirfd, "memory.peak", &text);
    if (r == 0)
        r = cgroup_parse_int_or_max(text, &u.memory_peak);
    if (r < 0 && r != -ENOENT) /* memory.peak exists since Linux 5.19 */
        return r;
    free(TAKE_PTR(text));

    r = cg_read(cg->dirfd, "io.stat", &text);
    if (r == 0)
        r = cgroup_parse_io_stat(text, &u.io_read_bytes, &u.io_write_bytes);
    if (r < 0 && r != -ENOENT) /* no io controller */
        return r;

    *ret = u;
    return 0;
}

int cgroup_job_destroy(cgroup_job *cg)
{
    if (!cg)
        return 0;
    /* The directory descriptor is closed first; an open descriptor does not keep a cgroup
     * alive, but there is no reason to hold it across the retries. */
    close(cg->dirfd);
    cg->dirfd = -1;
    int r = rm_tree(cg->parent_fd, cg->name, cg->fake_fs, 0);
    job_free(cg);
    return r;
}
