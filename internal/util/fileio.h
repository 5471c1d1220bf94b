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
/* Writes str to an existing file (O_WRONLY|O_TRUNC), as cgroup and proc files want: one write. */
int write_file_at(int dirfd, const char *path, const char *str);
/* mkdir -p with mode for every missing component. */
int mkdir_p(const char *path, unsigned mode);

#endif
