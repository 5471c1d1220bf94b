#include "util/rmtree.h"

#include "util/cleanup.h"

#include <dirent.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One directory on the path from the top of the tree down to the one being emptied. */
typedef struct frame {
    char *name; /* its name in the directory above */
    dev_t dev;
    ino_t ino;
    char **subdirs; /* subdirectories found by the scan, still to visit */
    size_t n_subdirs, next, cap_subdirs;
} frame;

typedef struct walk {
    frame *stack;
    size_t depth, cap; /* stack[depth - 1] is the current directory */
    dev_t root_dev;
    int first; /* the first error, 0 if none */
    size_t failed;
} walk;

static void walk_fail(walk *w, int r)
{
    if (w->first == 0)
        w->first = r;
    w->failed++;
}

static void frame_release(frame *f)
{
    free(f->name);
    for (size_t i = f->next; i < f->n_subdirs; i++)
        free(f->subdirs[i]);
    free(f->subdirs);
}

static int frame_add_subdir(frame *f, const char *name)
{
    if (f->n_subdirs == f->cap_subdirs) {
        size_t ncap = f->cap_subdirs ? 2 * f->cap_subdirs : 8;
        char **n = realloc(f->subdirs, ncap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        f->subdirs = n;
        f->cap_subdirs = ncap;
    }
    char *copy = strdup(name);
    if (!copy)
        return -ENOMEM;
    f->subdirs[f->n_subdirs++] = copy;
    return 0;
}

/* Makes the directory open as fd (called name in its parent) the new current frame. Takes name
 * whether or not it succeeds. */
static int walk_push(walk *w, int fd, char *name)
{
    struct stat st;
    if (fstat(fd, &st) < 0) {
        free(name);
        return -errno;
    }
    if (w->depth == w->cap) {
        size_t ncap = w->cap ? 2 * w->cap : 16;
        frame *n = realloc(w->stack, ncap * sizeof(*n));
        if (!n) {
            free(name);
            return -ENOMEM;
        }
        w->stack = n;
        w->cap = ncap;
    }
    w->stack[w->depth++] = (frame){.name = name, .dev = st.st_dev, .ino = st.st_ino};
    return 0;
}

/* Reads the current directory once: everything but directories is unlinked right away, the
 * names of subdirectories are kept for the walk to visit. Unlinking while reading is allowed;
 * an entry already gone is fine. */
static void walk_scan(walk *w, int fd)
{
    frame *f = &w->stack[w->depth - 1];
    int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        walk_fail(w, -errno);
        if (dfd >= 0)
            close(dfd);
        return;
    }
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno != 0)
                walk_fail(w, -errno);
            break;
        }
        const char *n = de->d_name;
        if (n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0')))
            continue;
        bool is_dir = de->d_type == DT_DIR;
        if (de->d_type == DT_UNKNOWN) {
            struct stat st;
            if (fstatat(fd, n, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno != ENOENT)
                    walk_fail(w, -errno);
                continue;
            }
            is_dir = S_ISDIR(st.st_mode);
        }
        if (!is_dir) {
            if (unlinkat(fd, n, 0) == 0 || errno == ENOENT)
                continue;
            if (errno != EISDIR) {
                walk_fail(w, -errno);
                continue;
            }
            /* It became a directory since it was listed: visit it like the others. */
        }
        int r = frame_add_subdir(f, n);
        if (r < 0)
            walk_fail(w, r);
    }
    closedir(d);
}

int rm_tree_at_count(int parent, const char *name, size_t *ret_failed)
{
    walk w = {0};

    /* Anything but a directory, a symlink to one included, goes with one unlink. */
    if (unlinkat(parent, name, 0) == 0 || errno == ENOENT)
        goto out;
    if (errno != EISDIR && errno != EPERM) {
        walk_fail(&w, -errno);
        goto out;
    }
    int cur = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (cur < 0) {
        if (errno != ENOENT)
            walk_fail(&w, -errno);
        goto out;
    }
    char *top = strdup(name);
    int r = top ? walk_push(&w, cur, top) : -ENOMEM;
    if (r < 0) {
        close(cur);
        walk_fail(&w, r);
        goto out;
    }
    assert(w.stack && w.depth == 1); /* walk_push succeeded */
    w.root_dev = w.stack[0].dev;
    walk_scan(&w, cur);

    while (w.depth > 0) {
        frame *f = &w.stack[w.depth - 1];
        if (f->next < f->n_subdirs) {
            char *child = f->subdirs[f->next];
            f->subdirs[f->next++] = NULL;
            int fd = openat(cur, child, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0) {
                /* Gone, or replaced by something that is not a directory since the scan. */
                if (errno == ENOTDIR || errno == ELOOP) {
                    if (unlinkat(cur, child, 0) < 0 && errno != ENOENT)
                        walk_fail(&w, -errno);
                } else if (errno != ENOENT) {
                    walk_fail(&w, -errno);
                }
                free(child);
                continue;
            }
            struct stat st;
            if (fstat(fd, &st) < 0 || st.st_dev != w.root_dev) {
                walk_fail(&w, st.st_dev != w.root_dev ? -EXDEV : -errno);
                close(fd);
                free(child);
                continue;
            }
            r = walk_push(&w, fd, child);
            if (r < 0) {
                walk_fail(&w, r);
                close(fd);
                continue;
            }
            close(cur);
            cur = fd;
            walk_scan(&w, cur);
            continue;
        }

        /* This directory is as empty as it gets: go up and remove it there. */
        int up;
        if (w.depth == 1) {
            up = parent;
        } else {
            const frame *p = &w.stack[w.depth - 2];
            up = openat(cur, "..", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            struct stat st;
            if (up < 0 || fstat(up, &st) < 0 || st.st_dev != p->dev || st.st_ino != p->ino) {
                /* Moved while we were in it: stop rather than remove in the wrong place. */
                walk_fail(&w, up < 0 ? -errno : -ESTALE);
                if (up >= 0)
                    close(up);
                break;
            }
        }
        close(cur);
        cur = up;
        if (unlinkat(cur, f->name, AT_REMOVEDIR) < 0 && errno != ENOENT)
            walk_fail(&w, -errno);
        frame_release(f);
        w.depth--;
    }
    if (w.depth > 0)
        close(cur);

out:
    while (w.depth > 0)
        frame_release(&w.stack[--w.depth]);
    free(w.stack);
    if (ret_failed)
        *ret_failed = w.failed;
    return w.first;
}

int rm_tree_at(int parent, const char *name)
{
    return rm_tree_at_count(parent, name, NULL);
}
