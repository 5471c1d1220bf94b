/* Pure formatters and parsers of cgroup v2 interface files. Nothing here touches the file system,
 * so every function is unit-tested and fuzzable on plain strings. */
#include "cgroup/cgroup-internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Parses a non-negative decimal integer of exactly `len` bytes; no sign, no blanks. The kernel
 * prints every counter we read as an unsigned decimal, so anything else means we misread. */
static int parse_u63(const char *s, size_t len, int64_t *ret)
{
    if (len == 0)
        return -EINVAL;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        int d = s[i] - '0';
        if (v > (INT64_MAX - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
    }
    *ret = v;
    return 0;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

int cgroup_parse_majmin(const char *s, unsigned *ret_major, unsigned *ret_minor)
{
    if (!s)
        return -EINVAL;
    const char *colon = strchr(s, ':');
    if (!colon)
        return -EINVAL;
    int64_t maj, min;
    /* Linux device numbers have 12 major and 20 minor bits. */
    if (parse_u63(s, (size_t)(colon - s), &maj) < 0 || maj > 0xfff)
        return -EINVAL;
    if (parse_u63(colon + 1, strlen(colon + 1), &min) < 0 || min > 0xfffff)
        return -EINVAL;
    *ret_major = (unsigned)maj;
    *ret_minor = (unsigned)min;
    return 0;
}

int cgroup_format_cpu_max(int32_t cpu_percent, char *buf, size_t size)
{
    if (cpu_percent < 0 || !buf)
        return -EINVAL;
    int n;
    if (cpu_percent == 0)
        n = snprintf(buf, size, "max %d", CGROUP_CPU_PERIOD_US);
    else
        /* 100 % is one full period per period, hence quota = percent * period / 100. The
         * multiplication is done in 64 bits: INT32_MAX % does not fit 32 bits of quota. */
        n = snprintf(buf, size, "%" PRId64 " %d",
                     (int64_t)cpu_percent * (CGROUP_CPU_PERIOD_US / 100), CGROUP_CPU_PERIOD_US);
    if (n < 0 || (size_t)n >= size)
        return -ENOBUFS;
    return 0;
}

int cgroup_format_io_max(const char *majmin, int64_t bps, char *buf, size_t size)
{
    unsigned maj, min;
    if (!buf || bps < 0 || cgroup_parse_majmin(majmin, &maj, &min) < 0)
        return -EINVAL;
    int n;
    if (bps == 0)
        n = snprintf(buf, size, "%u:%u rbps=max wbps=max", maj, min);
    else
        n = snprintf(buf, size, "%u:%u rbps=%" PRId64 " wbps=%" PRId64, maj, min, bps, bps);
    if (n < 0 || (size_t)n >= size)
        return -ENOBUFS;
    return 0;
}

int cgroup_parse_keyed(const char *text, const char *key, int64_t *ret)
{
    if (!text || !key || !*key)
        return -EINVAL;
    size_t klen = strlen(key);
    for (const char *line = text; *line;) {
        const char *eol = strchrnul(line, '\n');
        /* Only the line whose first word is exactly `key` counts: "oom_kill" must not match
         * "oom_group_kill", nor "usage_usec" a hypothetical "usage_usec_total". */
        if ((size_t)(eol - line) >= klen && memcmp(line, key, klen) == 0 &&
            (line + klen == eol || is_blank(line[klen]))) {
            const char *v = line + klen;
            while (v < eol && is_blank(*v))
                v++;
            const char *end = eol;
            while (end > v && (is_blank(end[-1]) || end[-1] == '\r'))
                end--;
            int64_t val;
            if (parse_u63(v, (size_t)(end - v), &val) < 0)
                return -EINVAL;
            *ret = val;
            return 0;
        }
        line = *eol ? eol + 1 : eol;
    }
    return -ENOENT;
}

/* Adds the value of "name=N" to *sum when `tok` (of length len) is that field. */
static int add_field(const char *tok, size_t len, const char *name, int64_t *sum)
{
    size_t nlen = strlen(name);
    if (len <= nlen || memcmp(tok, name, nlen) != 0 || tok[nlen] != '=')
        return 0;
    int64_t v;
    if (parse_u63(tok + nlen + 1, len - nlen - 1, &v) < 0)
        return -EINVAL;
    if (*sum > INT64_MAX - v)
        return -EINVAL;
    *sum += v;
    return 0;
}

int cgroup_parse_io_stat(const char *text, int64_t *ret_rbytes, int64_t *ret_wbytes)
{
    if (!text)
        return -EINVAL;
    int64_t rbytes = 0, wbytes = 0;
    /* Each line is "MAJ:MIN key=value key=value ..."; the first word is the device. */
    for (const char *line = text; *line;) {
        const char *eol = strchrnul(line, '\n');
        const char *p = line;
        bool first = true;
        while (p < eol) {
            while (p < eol && (is_blank(*p) || *p == '\r'))
                p++;
            const char *tok = p;
            while (p < eol && !is_blank(*p) && *p != '\r')
                p++;
            size_t len = (size_t)(p - tok);
            if (len == 0)
                break;
            if (first) {
                first = false;
                continue;
            }
            if (add_field(tok, len, "rbytes", &rbytes) < 0 ||
                add_field(tok, len, "wbytes", &wbytes) < 0)
                return -EINVAL;
        }
        line = *eol ? eol + 1 : eol;
    }
    *ret_rbytes = rbytes;
    *ret_wbytes = wbytes;
    return 0;
}

static const struct {
    const char *name;
    unsigned bit;
} controller_names[] = {
    {"cpu", CGROUP_CTRL_CPU},
    {"memory", CGROUP_CTRL_MEMORY},
    {"io", CGROUP_CTRL_IO},
    {"pids", CGROUP_CTRL_PIDS},
};

int cgroup_parse_controllers(const char *text, unsigned *ret_mask)
{
    if (!text)
        return -EINVAL;
    unsigned mask = 0;
    const char *p = text;
    while (*p) {
        p += strspn(p, " \t\r\n");
        size_t len = strcspn(p, " \t\r\n");
        if (len == 0)
            break;
        /* Controllers we do not manage (cpuset, hugetlb, rdma, misc) are ignored. */
        for (size_t i = 0; i < sizeof(controller_names) / sizeof(controller_names[0]); i++) {
            if (strlen(controller_names[i].name) == len &&
                memcmp(controller_names[i].name, p, len) == 0)
                mask |= controller_names[i].bit;
        }
        p += len;
    }
    *ret_mask = mask;
    return 0;
}

int cgroup_format_controllers(unsigned mask, const char *prefix, char *buf, size_t size)
{
    if (!buf || size == 0)
        return -EINVAL;
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(controller_names) / sizeof(controller_names[0]); i++) {
        if (!(mask & controller_names[i].bit))
            continue;
        int n = snprintf(buf + off, size - off, "%s%s%s", off ? " " : "", prefix ? prefix : "",
                         controller_names[i].name);
        if (n < 0 || (size_t)n >= size - off)
            return -ENOBUFS;
        off += (size_t)n;
    }
    return 0;
}

int cgroup_parse_proc_cgroup(const char *text, char *ret_path, size_t size)
{
    if (!text || !ret_path)
        return -EINVAL;
    /* Lines are "hierarchy-ID:controller-list:path"; the unified hierarchy is the one with ID 0
     * and an empty controller list. On hybrid hosts it sits among the v1 lines. */
    for (const char *line = text; *line;) {
        const char *eol = strchrnul(line, '\n');
        if (eol - line >= 3 && memcmp(line, "0::", 3) == 0) {
            const char *path = line + 3;
            size_t len = (size_t)(eol - path);
            if (len == 0 || path[0] != '/' || memchr(path, '\0', len))
                return -EINVAL;
            if (len >= size)
                return -ENAMETOOLONG;
            memcpy(ret_path, path, len);
            ret_path[len] = '\0';
            return 0;
        }
        line = *eol ? eol + 1 : eol;
    }
    return -ENOENT;
}

int cgroup_derive_parent(const char *proc_cgroup_text, char *ret_path, size_t size)
{
    char path[CGROUP_PATH_MAX];
    int r = cgroup_parse_proc_cgroup(proc_cgroup_text, path, sizeof(path));
    if (r < 0)
        return r;
    /* A server that already sits in our own leaf (it was re-executed, or an earlier manager in
     * this process moved it there) must reuse the parent, not nest a new one under the leaf. */
    size_t len = strlen(path);
    static const char leaf[] = "/" CGROUP_SUPERVISOR_LEAF;
    if (len >= sizeof(leaf) - 1 && strcmp(path + len - (sizeof(leaf) - 1), leaf) == 0) {
        path[len - (sizeof(leaf) - 1)] = '\0';
        if (path[0] == '\0')
            strcpy(path, "/");
    }
    /* The root cgroup cannot hold jobs beside the server's own leaf without us taking over the
     * whole hierarchy, so a server started in the root gets a subtree of its own. */
    const char *use = strcmp(path, "/") == 0 ? CGROUP_DEFAULT_PARENT : path;
    if (strlen(use) >= size)
        return -ENAMETOOLONG;
    strcpy(ret_path, use);
    return 0;
}

int cgroup_parse_int_or_max(const char *text, int64_t *ret)
{
    if (!text)
        return -EINVAL;
    size_t len = strlen(text);
    while (len > 0 && (text[len - 1] == '\n' || is_blank(text[len - 1]) || text[len - 1] == '\r'))
        len--;
    if (len == 3 && memcmp(text, "max", 3) == 0) {
        *ret = INT64_MAX;
        return 0;
    }
    return parse_u63(text, len, ret);
}
