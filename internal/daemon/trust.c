#include "daemon/trust.h"

#include "util/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* One path component: owner and mode acceptable for something the server trusts. */
static int check_one(const char *what, const char *path, const char *comp, bool is_target,
                     uid_t owner, jw_error *err)
{
    struct stat st;
    if (lstat(comp, &st) < 0)
        return jw_error_errno_code(err, JW_FAILED_PRECONDITION, errno, "%s '%s': stat '%s'", what,
                                   path, comp);
    if (st.st_uid != 0 && st.st_uid != owner)
        return jw_error_set(err, JW_FAILED_PRECONDITION, -EPERM,
                            "%s '%s': '%s' belongs to uid %u, not to root or the server's user "
                            "(uid %u), so that user could replace what the server trusts; fix: "
                            "chown %u '%s'",
                            what, path, comp, (unsigned)st.st_uid, (unsigned)owner, (unsigned)owner,
                            comp);
    if (!(st.st_mode & (S_IWGRP | S_IWOTH)))
        return 0;
    /* A root-owned sticky directory (/tmp) lets no one else rename or remove our entries. */
    if (!is_target && S_ISDIR(st.st_mode) && (st.st_mode & S_ISVTX) && st.st_uid == 0)
        return 0;
    return jw_error_set(err, JW_FAILED_PRECONDITION, -EPERM,
                        "%s '%s': '%s' is writable by %s (mode %04o), so another user could "
                        "replace what the server trusts; fix: chmod go-w '%s'",
                        what, path, comp, st.st_mode & S_IWOTH ? "everyone" : "its group",
                        (unsigned)(st.st_mode & 07777), comp);
}

int trust_check_path(const char *what, const char *path, uid_t owner, jw_error *err)
{
    char real[PATH_MAX];
    if (!realpath(path, real))
        return jw_error_errno_code(err, JW_FAILED_PRECONDITION, errno, "%s '%s'", what, path);
    int r = check_one(what, path, real, true, owner, err);
    if (r < 0)
        return r;
    /* Every directory above it, up to /. */
    char *slash;
    while ((slash = strrchr(real, '/'))) {
        if (slash == real) {
            if (real[1] == '\0')
                break;
            real[1] = '\0';
        } else {
            *slash = '\0';
        }
        r = check_one(what, path, real, false, owner, err);
        if (r < 0)
            return r;
    }
    return 0;
}

int trust_data_dir(const char *dir, uid_t owner, jw_error *err)
{
    int r = mkdir_p(dir, 0700);
    if (r < 0)
        return jw_error_errno_code(err, JW_FAILED_PRECONDITION, r, "create data directory '%s'",
                                   dir);
    return trust_check_path("data directory", dir, owner, err);
}

int trust_lock_data_dir(const char *dir, jw_error *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/jobworker.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return jw_error_errno_code(err, JW_FAILED_PRECONDITION, errno, "open lock file '%s'", path);
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(fd);
        if (e == EWOULDBLOCK)
            return jw_error_set(err, JW_FAILED_PRECONDITION, -EBUSY,
                                "data directory '%s' is in use by another jobworker-server "
                                "(pid %s holds '%s'); give each server its own --data-dir",
                                dir, pid[0] ? pid : "unknown", path);
        return jw_error_errno_code(err, JW_FAILED_PRECONDITION, e, "lock '%s'", path);
    }
    char pid[32];
    int len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
        int e = errno;
        close(fd);
        return jw_error_errno_code(err, JW_FAILED_PRECONDITION, e, "write lock file '%s'", path);
    }
    return fd;
}
