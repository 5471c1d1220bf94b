#include "util/fileio.h"

#include "util/cleanup.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int write_full(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

ssize_t read_full(int fd, void *buf, size_t len)
{
    char *p = buf;
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, p + got, len - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

ssize_t read_file_at(int dirfd, const char *path, char *buf, size_t size)
{
    if (size == 0)
        return -EINVAL;
    _cleanup_close_ int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read_full(fd, buf, size);
    if (n < 0)
        return n;
    if ((size_t)n == size)
        return -EFBIG;
    buf[n] = '\0';
    return n;
}

void erase_free(void *p)
{
    if (!p)
        return;
    explicit_bzero(p, malloc_usable_size(p));
    free(p);
}

/* Moves the first len bytes of *buf into a new buffer of size bytes; with erase the old one is
 * zeroed before it is freed (realloc would leave a copy behind in freed memory). */
static int grow(char **buf, size_t len, size_t size, bool erase)
{
    if (!erase) {
        char *n = realloc(*buf, size);
        if (!n)
            return -ENOMEM;
        *buf = n;
        return 0;
    }
    char *n = malloc(size);
    if (!n)
        return -ENOMEM;
    if (*buf) {
        memcpy(n, *buf, len);
        erase_free(*buf);
    }
    *buf = n;
    return 0;
}

int read_file_alloc_at(int dirfd, const char *path, size_t max, unsigned flags, char **ret_buf,
                       size_t *ret_len)
{
    bool erase = flags & READ_FILE_ERASE;
    if (max >= SSIZE_MAX)
        return -EINVAL;
    int oflags = O_RDONLY | O_CLOEXEC | O_NOCTTY;
    if (flags & READ_FILE_REGULAR)
        oflags |= O_NONBLOCK;
    _cleanup_close_ int fd = openat(dirfd, path, oflags);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (S_ISDIR(st.st_mode))
        return -EISDIR;
    if ((flags & READ_FILE_REGULAR) && !S_ISREG(st.st_mode))
        return -EBADFD;
    /* st_size is a hint for the first allocation only: +1 to see EOF without another grow. */
    if (S_ISREG(st.st_mode) && (uintmax_t)st.st_size > max)
        return -EFBIG;
    size_t cap = S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size + 1 : 4096;
    if (cap > max + 1)
        cap = max + 1;

    char *buf = NULL;
    size_t len = 0;
    int r = grow(&buf, 0, cap + 1, erase);
    while (r == 0) {
        if (len == cap) {
            if (cap > max) {
                r = -EFBIG;
                break;
            }
            size_t ncap = cap > (max + 1) / 2 ? max + 1 : cap * 2;
            r = grow(&buf, len, ncap + 1, erase);
            if (r < 0)
                break;
            cap = ncap;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            break;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (r == 0 && len > max)
        r = -EFBIG;
    if (r < 0) {
        if (erase)
            erase_free(buf);
        else
            free(buf);
        return r;
    }
    buf[len] = '\0';
    *ret_buf = buf;
    if (ret_len)
        *ret_len = len;
    return 0;
}

int write_file_at(int dirfd, const char *path, const char *str)
{
    _cleanup_close_ int fd = openat(dirfd, path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t len = strlen(str);
    /* Kernel control files take the value in one write(); a short write is an error. */
    ssize_t n = write(fd, str, len);
    if (n < 0)
        return -errno;
    if ((size_t)n != len)
        return -EIO;
    return 0;
}

int mkdir_p(const char *path, unsigned mode)
{
    char buf[PATH_MAX];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof(buf))
        return -ENAMETOOLONG;
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}
