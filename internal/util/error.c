#include "util/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

jw_code jw_code_from_errno(int errnum)
{
    switch (errnum < 0 ? -errnum : errnum) {
    case ENOMEM:
    case EMFILE:
    case ENFILE:
    case ENOSPC:
    case EDQUOT:
    case EAGAIN:
    case E2BIG: return JW_RESOURCE_EXHAUSTED;
    case ESHUTDOWN:
    case ETIMEDOUT: return JW_UNAVAILABLE;
    case ECANCELED: return JW_CANCELLED;
    default: return JW_INTERNAL;
    }
}

const char *jw_strerror(int errnum, char *buf, size_t size)
{
    /* GNU strerror_r: returns either buf or a static string. */
    return strerror_r(errnum < 0 ? -errnum : errnum, buf, size);
}

static int error_errno_v(jw_error *err, jw_code code, int errnum, const char *fmt, va_list ap)
{
    int e = errnum < 0 ? -errnum : errnum;
    if (e == 0)
        e = EIO; /* a caller that lost errno still reports a failure */
    if (!err)
        return -e;
    char ebuf[128];
    const char *text = jw_strerror(e, ebuf, sizeof(ebuf));
    err->code = code;
    int n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    if (n >= 0 && (size_t)n < sizeof(err->msg))
        snprintf(err->msg + n, sizeof(err->msg) - (size_t)n, ": %s", text);
    return -e;
}

int jw_error_errno(jw_error *err, int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = error_errno_v(err, jw_code_from_errno(errnum), errnum, fmt, ap);
    va_end(ap);
    return r;
}

int jw_error_errno_code(jw_error *err, jw_code code, int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = error_errno_v(err, code, errnum, fmt, ap);
    va_end(ap);
    return r;
}

int jw_error_set(jw_error *err, jw_code code, int ret, const char *fmt, ...)
{
    if (!err)
        return ret;
    va_list ap;
    va_start(ap, fmt);
    err->code = code;
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return ret;
}

int jw_error_wrap(jw_error *err, int ret, const char *fmt, ...)
{
    if (!err)
        return ret;
    char prefix[JW_ERROR_MSG_MAX];
    char old[JW_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof(old));
    if (err->code == JW_OK)
        err->code = JW_INTERNAL;
    /* Truncation is acceptable: the start of the message carries the context. */
    size_t pl = strnlen(prefix, sizeof(err->msg) - 3);
    memcpy(err->msg, prefix, pl);
    memcpy(err->msg + pl, ": ", 2);
    size_t room = sizeof(err->msg) - pl - 3;
    size_t ol = strnlen(old, room);
    memcpy(err->msg + pl + 2, old, ol);
    err->msg[pl + 2 + ol] = '\0';
    return ret;
}

const char *jw_code_name(jw_code code)
{
    switch (code) {
    case JW_OK: return "OK";
    case JW_CANCELLED: return "CANCELLED";
    case JW_UNKNOWN: return "UNKNOWN";
    case JW_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case JW_NOT_FOUND: return "NOT_FOUND";
    case JW_ALREADY_EXISTS: return "ALREADY_EXISTS";
    case JW_PERMISSION_DENIED: return "PERMISSION_DENIED";
    case JW_RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case JW_FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case JW_UNIMPLEMENTED: return "UNIMPLEMENTED";
    case JW_INTERNAL: return "INTERNAL";
    case JW_UNAVAILABLE: return "UNAVAILABLE";
    case JW_UNAUTHENTICATED: return "UNAUTHENTICATED";
    }
    return "UNKNOWN";
}
