#include "util/parse.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int parse_int64(const char *s, int64_t min, int64_t max, int64_t *ret)
{
    if (!s || !*s || isspace((unsigned char)*s))
        return -EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno == ERANGE)
        return -ERANGE;
    if (*end != '\0')
        return -EINVAL;
    if (v < min || v > max)
        return -ERANGE;
    *ret = v;
    return 0;
}

int parse_size(const char *s, int64_t *ret)
{
    if (!s || !isdigit((unsigned char)*s))
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno == ERANGE)
        return -ERANGE;
    static const struct {
        const char *suffix;
        unsigned shift;
    } units[] = {
        {"", 0},     {"b", 0},  {"k", 10},  {"kb", 10},  {"kib", 10}, {"m", 20},  {"mb", 20},
        {"mib", 20}, {"g", 30}, {"gb", 30}, {"gib", 30}, {"t", 40},   {"tb", 40}, {"tib", 40},
    };
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcasecmp(end, units[i].suffix) != 0)
            continue;
        if (v > (unsigned long long)INT64_MAX >> units[i].shift)
            return -ERANGE;
        *ret = (int64_t)(v << units[i].shift);
        return 0;
    }
    return -EINVAL;
}

int parse_duration_ms(const char *s, int64_t *ret)
{
    if (!s || !isdigit((unsigned char)*s))
        return -EINVAL;
    int64_t total = 0;
    const char *p = s;
    while (*p) {
        if (!isdigit((unsigned char)*p))
            return -EINVAL;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (errno == ERANGE)
            return -ERANGE;
        int64_t mult;
        if (strncmp(end, "ms", 2) == 0) {
            mult = 1;
            end += 2;
        } else if (*end == 's' || *end == '\0') {
            mult = 1000;
            end += *end ? 1 : 0;
        } else if (*end == 'm') {
            mult = 60000;
            end++;
        } else if (*end == 'h') {
            mult = 3600000;
            end++;
        } else if (*end == 'd') {
            mult = 86400000;
            end++;
        } else {
            return -EINVAL;
        }
        if (v > (unsigned long long)(INT64_MAX / mult))
            return -ERANGE;
        if (total > INT64_MAX - (int64_t)v * mult)
            return -ERANGE;
        total += (int64_t)v * mult;
        p = end;
    }
    *ret = total;
    return 0;
}
