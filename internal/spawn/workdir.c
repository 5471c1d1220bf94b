#include "spawn/workdir.h"

#include "util/cleanup.h"
#include "util/rmtree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Whether uid:gid may traverse every directory from / down to path; on failure names the
 * directory that stops it. */
static bool user_can_reach(const char *path, uid_t uid, gid_t gid, char *ret_blocker, size_t size)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        struct stat st;
        const char *dir = buf[0] ? buf : "/";
        if (stat(dir, &st) == 0) {
            mode_t need = st.st_uid == uid ? S_IXUSR : st.st_gid == gid ? S_IXGRP : S_IXOTH;
            if (uid != 0 && !(st.st_mode & need)) {
                snprintf(ret_blocker, size, "%s (mode %04o)", dir, st.st_mode & 07777);
                return false;
            }
        }
        *p = saved;
        if (saved == '\0')
            return true;
    }
}

int workdir_root_prepare(const char *data_dir, const char *user_name, long uid, long gid,
                         char *ret_root, size_t size, jw_error *err)
{
    char root[PATH_MAX];
    int n = snprintf(root, sizeof(root), "%s/work", data_dir);
    if (n < 0 || (size_t)n >= sizeof(root) || (size_t)n >= size)
        return jw_error_set(err, JW_INTERNAL, -ENAMETOOLONG, "prepare '%s/work': %s", data_dir,
                            "File name too long");
    /* Traversable (0711) so that a job user reaches its own working directory, but can list
     * nothing; <data-dir>/output stays 0700. */
    if (chmod(data_dir, 0711) < 0 || (mkdir(root, 0711) < 0 && errno != EEXIST) ||
        chmod(root, 0711) < 0)
        return jw_error_errno_code(err, JW_INTERNAL, errno, "prepare '%s'", root);
    char blocker[PATH_MAX + 32];
    if (uid >= 0 && !user_can_reach(root, (uid_t)uid, (gid_t)gid, blocker, sizeof(blocker)))
        return jw_error_set(err, JW_FAILED_PRECONDITION, -EACCES,
                            "jobs run as '%s' but cannot reach their working directories under "
                            "'%s': '%s' is not traversable by that user; choose a --data-dir "
                            "whose parent directories are (e.g. chmod o+x)",
                            user_name ? user_name : "?", root, blocker);
    memcpy(ret_root, root, (size_t)n + 1);
    return 0;
}

int workdir_remove_stale(const char *root)
{
    int dfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    DIR *d = fdopendir(dfd);
    if (!d) {
        int r = -errno;
        close(dfd);
        return r;
    }
    int removed = 0, first = 0;
    for (struct dirent *de; (de = readdir(d));) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        int r = rm_tree_at(dirfd(d), de->d_name);
        if (r < 0 && first == 0)
            first = r;
        else if (r == 0)
            removed++;
    }
    closedir(d);
    return first < 0 ? first : removed;
}

int workdir_create(const char *root, const char *id, long uid, long gid, char *ret_path,
                   size_t size, jw_error *err)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/%s", root, id);
    if (n < 0 || (size_t)n >= sizeof(path) || (size_t)n >= size)
        return jw_error_set(err, JW_INTERNAL, -ENAMETOOLONG,
                            "create working directory '%s/%s': File name too long", root, id);
    if (mkdir(path, 0700) < 0)
        return jw_error_errno_code(err, JW_INTERNAL, errno, "create working directory '%s'", path);
    if (uid >= 0 && chown(path, (uid_t)uid, (gid_t)gid) < 0) {
        int r = errno;
        rmdir(path);
        return jw_error_errno_code(err, JW_INTERNAL, r, "chown working directory '%s'", path);
    }
    memcpy(ret_path, path, (size_t)n + 1);
    return 0;
}

int workdir_remove(const char *root, const char *id)
{
    _cleanup_close_ int dfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return errno == ENOENT ? 0 : -errno;
    return rm_tree_at(dfd, id);
}
