#include "client/options.h"

#include "jobworker/v1/jobworker.pb-c.h"
#include "util/parse.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

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

int jw_opt_int_range(const char *opt, const char *s, int64_t min, int64_t max, const char *expected,
                     int64_t *ret, jw_error *err)
{
    int64_t v;
    /* Out of range is reported as a wrong value: `expected` says which values are right. */
    if (parse_int64(s, min, max, &v) < 0)
        return invalid(opt, s, -EINVAL, expected, err);
    *ret = v;
    return 0;
}

/* A JobStatus value's name without "JOB_STATUS_". */
static const char *status_short_name(const ProtobufCEnumValue *v)
{
    static const char prefix[] = "JOB_STATUS_";
    return strncmp(v->name, prefix, strlen(prefix)) == 0 ? v->name + strlen(prefix) : v->name;
}

/* The names a user may give, taken from the descriptor so that a status added to the proto is
 * accepted without an edit here: "initializing, running, completed, failed or stopped". */
static void status_names(char *buf, size_t size)
{
    const ProtobufCEnumDescriptor *d = &jobworker__v1__job_status__descriptor;
    size_t total = 0, listed = 0, len = 0;
    for (unsigned i = 0; i < d->n_values; i++)
        total += d->values[i].value != 0;
    buf[0] = '\0';
    for (unsigned i = 0; i < d->n_values; i++) {
        if (d->values[i].value == 0)
            continue;
        char name[64];
        snprintf(name, sizeof(name), "%s", status_short_name(&d->values[i]));
        for (char *c = name; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        const char *sep = listed == 0 ? "" : listed + 1 == total ? " or " : ", ";
        int n = snprintf(buf + len, size - len, "%s%s", sep, name);
        if (n < 0 || (size_t)n >= size - len)
            break;
        len += (size_t)n;
        listed++;
    }
}

int jw_opt_status_mask(const char *opt, const char *s, uint32_t *ret, jw_error *err)
{
    const ProtobufCEnumDescriptor *d = &jobworker__v1__job_status__descriptor;
    uint32_t mask = 0;
    for (const char *p = s;; p++) {
        size_t n = strcspn(p, ",");
        int value = -1;
        for (unsigned i = 0; i < d->n_values && n > 0; i++) {
            const char *name = status_short_name(&d->values[i]);
            if (d->values[i].value > 0 && d->values[i].value < 32 && strlen(name) == n &&
                strncasecmp(name, p, n) == 0)
                value = d->values[i].value;
        }
        if (value < 0) {
            char names[256];
            status_names(names, sizeof(names));
            return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                                "invalid status '%.*s' for %s (expected %s)", (int)n, p, opt,
                                names);
        }
        mask |= 1u << value;
        p += n;
        if (*p == '\0')
            break;
    }
    *ret = mask;
    return 0;
}

int jw_opt_since(const char *opt, const char *s, int64_t now_ns, int64_t *ret, jw_error *err)
{
    int64_t ms;
    int r = parse_duration_ms(s, &ms);
    if (r < 0)
        return invalid(opt, s, r, "a duration like 10m, 2h or 7d", err);
    int64_t ns;
    if (__builtin_mul_overflow(ms, (int64_t)1000000, &ns) || ns >= now_ns)
        *ret = 0;
    else
        *ret = now_ns - ns;
    return 0;
}
