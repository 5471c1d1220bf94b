/* Small file helpers with full-length semantics. All return 0 (or a byte count) on success and
 * a negative errno on failure; every fd they open is O_CLOEXEC. */
#ifndef JW_UTIL_FILEIO_H
#define JW_UTIL_FILEIO_H

#include <stddef.h>
#include <sys/types.h>

/* write() until all of buf is written, retrying EINTR. */
int write_full(int fd, const void *buf, size_t len);
/* read() until len bytes or EOF, retrying EINTR; returns the byte count. */
ssize_t read_full(int fd, void *buf, size_t len);
/* Reads a whole small file into buf (NUL-terminated, at most size-1 bytes); returns its length.
 * -EFBIG when the file does not fit. */
ssize_t read_file_at(int dirfd, const char *path, char *buf, size_t size);
/* Flags of read_file_alloc_at(). */
enum {
    /* Key material: every intermediate buffer is zeroed (explicit_bzero) before it is freed,
     * also on failure, and the result must be freed with erase_free(). */
    READ_FILE_ERASE = 1 << 0,
    /* Only a regular file (after following symlinks) is read; anything else is -EBADFD without
     * a read, and opening a FIFO does not block. */
    READ_FILE_REGULAR = 1 << 1,
};

/* The one capped whole-file reader. Reads path (relative to dirfd, which may be AT_FDCWD) into
 * a new malloc'd buffer with a NUL appended, without trusting st_size, so pipes and files that
 * grow while read work too. The fd is O_CLOEXEC|O_NOCTTY. Errors: -EISDIR for a directory,
 * -EFBIG as soon as more than max bytes are seen (a huge file or /dev/zero is never read to
 * its end), -ENOMEM, or the errno of open/read. On success *ret_buf (owned by the caller:
 * free(), or erase_free() with READ_FILE_ERASE) and *ret_len (the byte count, the buffer may
 * contain NULs) are written; on failure neither is. ret_len may be NULL. */
int read_file_alloc_at(int dirfd, const char *path, size_t max, unsigned flags, char **ret_buf,
                       size_t *ret_len);
/* Zeroes a malloc'd buffer in full (malloc_usable_size) with explicit_bzero and frees it;
 * accepts NULL. Any malloc'd buffer may be given, not only read_file_alloc_at's. */
void erase_free(void *p);
static inline void erase_freep(void *p)
{
    erase_free(*(void **)p);
}
/* _cleanup_erase_ char *key = NULL;  zeroed and freed when key leaves scope. */
#define _cleanup_erase_ __attribute__((cleanup(erase_freep)))

/* Writes str to an existing file (O_WRONLY|O_TRUNC), as cgroup and proc files want: one write. */
int write_file_at(int dirfd, const char *path, const char *str);
/* mkdir -p with mode for every missing component. */
int mkdir_p(const char *path, unsigned mode);

#endif
