/* Error objects that carry a status and a message up to the edge that reports them.
 *
 * Library functions that can fail return int (0 or a count on success, a negative errno on
 * failure) and, where the message must reach a user, take a `jw_error *err` as their last
 * argument. `err` may be NULL when the caller does not want the message. The status codes are
 * numerically gRPC's, so rpc maps them one to one; nothing here includes gRPC.
 */
#ifndef JW_UTIL_ERROR_H
#define JW_UTIL_ERROR_H

#include <stddef.h>

typedef enum {
    JW_OK = 0,
    JW_CANCELLED = 1,
    JW_UNKNOWN = 2,
    JW_INVALID_ARGUMENT = 3,
    JW_NOT_FOUND = 5,
    JW_ALREADY_EXISTS = 6,
    JW_PERMISSION_DENIED = 7,
    JW_RESOURCE_EXHAUSTED = 8,
    JW_FAILED_PRECONDITION = 9,
    JW_UNIMPLEMENTED = 12,
    JW_INTERNAL = 13,
    JW_UNAVAILABLE = 14,
    JW_UNAUTHENTICATED = 16,
} jw_code;

#define JW_ERROR_MSG_MAX 512

typedef struct jw_error {
    jw_code code;
    char msg[JW_ERROR_MSG_MAX];
} jw_error;

#define JW_ERROR_INIT                                                                              \
    {                                                                                              \
        JW_OK,                                                                                     \
        {                                                                                          \
            0                                                                                      \
        }                                                                                          \
    }

/* Sets code and the formatted message (if err is not NULL) and returns `ret`, which should be a
 * negative errno, so that `return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL, "...")` works. */
int jw_error_set(jw_error *err, jw_code code, int ret, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Sets err from a failed system call: the code comes from jw_code_from_errno(errnum) and the
 * formatted message gets ": <errno text>" appended (strerror_r, so it is thread-safe). errnum
 * may be given as errno or as a negative errno; returns the negative errno. */
int jw_error_errno(jw_error *err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same with an explicit code, where the caller knows better than the errno mapping. */
int jw_error_errno_code(jw_error *err, jw_code code, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The one place errno values map to status codes: resource shortages (ENOMEM, EMFILE, ENFILE,
 * ENOSPC, EDQUOT, EAGAIN, E2BIG) are RESOURCE_EXHAUSTED, ESHUTDOWN is UNAVAILABLE, ECANCELED
 * is CANCELLED, ETIMEDOUT is UNAVAILABLE; everything else is the server's own failure, INTERNAL.
 * A server-side EACCES or ENOENT is not the client's PERMISSION_DENIED or NOT_FOUND. */
jw_code jw_code_from_errno(int errnum);
/* strerror_r into buf; always returns a usable string. */
const char *jw_strerror(int errnum, char *buf, size_t size);

/* Prefixes context to an error that is already set: "context: old message". Returns `ret`. */
int jw_error_wrap(jw_error *err, int ret, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The canonical upper-case name of a status code, e.g. "INVALID_ARGUMENT". */
const char *jw_code_name(jw_code code);

#endif
