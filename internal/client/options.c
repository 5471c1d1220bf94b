#include "client/options.h"

#include "util/parse.h"

#include <errno.h>
#include <string.h>

static int invalid(const char *opt, const char *s, int r, const char *expected, jw_error *err)
{
    if (r == -ERANGE)
        return jw_error_set(err, JW_INVALID_ARGUMENT, r, "value '%s' for %s is out of range", s,
                            opt);
    return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                        "invalid value '%s' for %s (expected %s)", s, opt, expected);
}

int jw_opt_cpu_percent(const char *opt, const char *s, int32_t *ret, jw_error *err)
{
    char buf[32];
    size_t len = strlen(s);
    /* A trailing '%' reads naturally ("--max-cpu=50%") and changes nothing. */
    if (len > 0 && len < sizeof(buf) && s[len - 1] == '%') {
        memcpy(buf, s, len - 1);
        buf[len - 1] = '\0';
    } else if (len < sizeof(buf)) {
        memcpy(buf, s, len + 1);
    } else {
        return invalid(opt, s, -EINVAL, "a percentage like 150", err);
    }
    int64_t v;
    int r = parse_int64(buf, 0, INT32_MAX, &v);
    if (r < 0)
        return invalid(opt, s, r, "a percentage like 150", err);
    *ret = (int32_t)v;
    return 0;
}

int jw_opt_size(const char *opt, const char *s, int64_t *ret, jw_error *err)
{
    int64_t v;
    int r = parse_size(s, &v);
    if (r < 0)
        return invalid(opt, s, r, "a size like 512K, 64M or 2G", err);
    *ret = v;
    return 0;
}

int jw_opt_count32(const char *opt, const char *s, int32_t *ret, jw_error *err)
{
    int64_t v;
    int r = parse_int64(s, 0, INT32_MAX, &v);
    if (r < 0)
        return invalid(opt, s, r, "a non-negative integer", err);
    *ret = (int32_t)v;
    return 0;
}

int jw_opt_offset(const char *opt, const char *s, int64_t *ret, jw_error *err)
{
    int64_t v;
    int r = parse_int64(s, 0, INT64_MAX, &v);
    if (r < 0)
        return invalid(opt, s, r, "a non-negative byte offset", err);
    *ret = v;
    return 0;
}

int jw_opt_duration_ms(const char *opt, const char *s, int64_t *ret, jw_error *err)
{
    int64_t v;
    int r = parse_duration_ms(s, &v);
    if (r < 0)
        return invalid(opt, s, r, "a duration like 30s, 2m, 1h30m or plain seconds", err);
    *ret = v;
    return 0;
}

int jw_opt_duration_s32(const char *opt, const char *s, int32_t *ret, jw_error *err)
{
    int64_t ms = 0;
    int r = jw_opt_duration_ms(opt, s, &ms, err);
    if (r < 0)
        return r;
    int64_t sec = ms / 1000 + (ms % 1000 != 0);
    if (sec > INT32_MAX)
        return invalid(opt, s, -ERANGE, "", err);
    *ret = (int32_t)sec;
    return 0;
}
