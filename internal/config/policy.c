/* The policy file: see policy.h for the format and its rules.
 *
 * inih does the INI syntax (key = value splitting, lines that are neither), but its build
 * options decide things that matter here: Debian's libinih 55 truncates section names to 49
 * bytes (owner names may have 1024), splits lines longer than 199 bytes into two lines (the
 * tail of a long comment would become a setting), treats indented lines as continuations of
 * the previous value, and knows only ';' as an inline comment. So the file is fed to inih
 * through policy_reader(), which takes one physical line at a time and (1) counts lines, so
 * every message has its line number whatever the handler's signature, (2) refuses NUL bytes
 * and over-long lines instead of splitting them, (3) drops leading whitespace and comments, so
 * inih never sees a continuation or a comment, and (4) handles section headers itself, keeping
 * the full name, and hands inih an empty line in their place.
 */
#include "config/policy.h"

#include "job/job.h"
#include "util/cleanup.h"
#include "util/fileio.h"
#include "util/parse.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { Q_RUNNING, Q_QUEUED, Q_MEMORY, Q_CPU, Q_N };
enum { C_MEMORY, C_MEMORY_HIGH, C_CPU, C_IO, C_PIDS, C_TIMEOUT, C_N };
enum { ROLE_ADMIN, ROLE_VIEWER, ROLE_N };

typedef enum { V_COUNT, V_PIDS, V_SIZE, V_RATE, V_SECONDS } value_kind;

typedef struct key_def {
    const char *key;
    value_kind kind;
} key_def;

static const key_def quota_keys[Q_N] = {
    [Q_RUNNING] = {"max-running", V_COUNT},
    [Q_QUEUED] = {"max-queued", V_COUNT},
    [Q_MEMORY] = {"max-memory", V_SIZE},
    [Q_CPU] = {"max-cpu", V_COUNT},
};
static const key_def ceiling_keys[C_N] = {
    [C_MEMORY] = {"memory", V_SIZE}, [C_MEMORY_HIGH] = {"memory-high", V_SIZE},
    [C_CPU] = {"cpu", V_COUNT},      [C_IO] = {"io", V_RATE},
    [C_PIDS] = {"pids", V_PIDS},     [C_TIMEOUT] = {"timeout", V_SECONDS},
};
static const char *const role_names[ROLE_N] = {[ROLE_ADMIN] = "admin", [ROLE_VIEWER] = "viewer"};

/* The quota keys one section sets; line 0 = not set there. */
typedef struct quota_set {
    int64_t v[Q_N];
    int line[Q_N];
} quota_set;

typedef struct owner_entry {
    char *name;
    int line; /* of its section header */
    quota_set q;
} owner_entry;

struct policy {
    policy_setting *settings;
    size_t n_settings;
    quota_set base;
    quota_set roles[ROLE_N];
    owner_entry *owners; /* sorted by name once parsed */
    size_t n_owners;
    policy_ceiling ceiling;
    char **allow;
    size_t n_allow;
};

typedef enum { S_NONE, S_SERVER, S_QUOTA, S_ROLE, S_OWNER, S_CEILING, S_ALLOW, S_N } section_kind;

/* Messages quote at most QUOTE_MAX bytes of a value, each escaped to at most 4 bytes. */
#define QUOTE_MAX 64
#define QUOTE_BUF (QUOTE_MAX * 4 + 4)

typedef struct parse_ctx {
    const char *name; /* for messages */
    const char *buf;
    size_t len, pos;
    int lineno; /* of the line last handed to inih */
    policy *p;
    jw_error *err;
    int r;        /* the first error, 0 while none */
    int err_line; /* its line */
    section_kind sec;
    size_t sec_index;               /* role or owner index */
    char sec_label[QUOTE_BUF + 16]; /* "[owner 'alice']" for messages */
    int sec_line[S_N];              /* first header line of each single section */
    int role_line[ROLE_N];          /* first header line of each role section */
    int ceiling_line[C_N];          /* line that set each ceiling */
    size_t owners_cap, settings_cap, allow_cap;
    char cur[POLICY_LINE_MAX + 1];
} parse_ctx;

/* ---- messages ---- */

typedef struct quoted {
    char s[QUOTE_BUF];
} quoted;

/* s escaped for a message: printable ASCII as is except \ and ', anything else as \xHH, cut to
 * QUOTE_MAX source bytes with "..." after. The file is operator input, but it ends up on a
 * terminal or in a journal. */
static const char *quote(quoted *q, const char *s, size_t n)
{
    char *o = q->s;
    size_t i;
    for (i = 0; i < n && i < QUOTE_MAX; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '\\' && ch != '\'')
            *o++ = (char)ch;
        else
            o += snprintf(o, 5, "\\x%02x", ch);
    }
    if (i < n)
        o = stpcpy(o, "...");
    *o = '\0';
    return q->s;
}

static const char *quote_str(quoted *q, const char *s)
{
    return quote(q, s, strlen(s));
}

/* Records the first error, "<name>:<line>: <message>", and returns ret. */
__attribute__((format(printf, 4, 5))) static int fail(parse_ctx *c, int line, int ret,
                                                      const char *fmt, ...)
{
    if (c->r < 0)
        return c->r;
    char msg[JW_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    c->r = ret;
    c->err_line = line;
    if (ret == -ENOMEM)
        return jw_error_set(c->err, JW_INTERNAL, ret, "%s:%d: out of memory", c->name, line);
    return jw_error_set(c->err, JW_INVALID_ARGUMENT, ret, "%s:%d: %s", c->name, line, msg);
}

/* ---- values ---- */

static int parse_value(parse_ctx *c, const char *key, value_kind kind, const char *value,
                       int64_t *ret)
{
    quoted q;
    int64_t v = 0;
    switch (kind) {
    case V_COUNT:
        if (parse_int64(value, 0, POLICY_COUNT_MAX, &v) < 0)
            return fail(c, c->lineno, -EINVAL, "%s: '%s' is not a number from 0 to %d", key,
                        quote_str(&q, value), POLICY_COUNT_MAX);
        break;
    case V_PIDS:
        if (parse_int64(value, 0, JOB_PIDS_MAX_MAX, &v) < 0)
            return fail(c, c->lineno, -EINVAL, "%s: '%s' is not a number from 0 to %d", key,
                        quote_str(&q, value), JOB_PIDS_MAX_MAX);
        break;
    case V_SIZE:
        if (parse_size(value, &v) < 0)
            return fail(c, c->lineno, -EINVAL,
                        "%s: '%s' is not a size (bytes with an optional K, M, G or T suffix)", key,
                        quote_str(&q, value));
        break;
    case V_RATE:
        if (parse_size(value, &v) < 0 || v > JOB_IO_BPS_MAX)
            return fail(c, c->lineno, -EINVAL,
                        "%s: '%s' is not a size of bytes per second up to 1024T", key,
                        quote_str(&q, value));
        break;
    case V_SECONDS:
        if (parse_duration_ms(value, &v) < 0 || v % 1000 != 0 || v / 1000 > JOB_TIMEOUT_MAX_SECONDS)
            return fail(c, c->lineno, -EINVAL,
                        "%s: '%s' is not a duration of whole seconds up to 366d (e.g. 90s, 1h)",
                        key, quote_str(&q, value));
        v /= 1000;
        break;
    }
    *ret = v;
    return 0;
}

static int lookup_key(const key_def *defs, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(defs[i].key, key) == 0)
            return (int)i;
    return -1;
}

static int unknown_key(parse_ctx *c, const char *key)
{
    quoted q;
    return fail(c, c->lineno, -EINVAL, "unknown key '%s' in %s", quote_str(&q, key), c->sec_label);
}

static int duplicate_key(parse_ctx *c, const char *key, int first)
{
    quoted q;
    return fail(c, c->lineno, -EINVAL, "duplicate key '%s' in %s (first at line %d)",
                quote_str(&q, key), c->sec_label, first);
}

static int quota_key(parse_ctx *c, quota_set *qs, const char *key, const char *value)
{
    int i = lookup_key(quota_keys, Q_N, key);
    if (i < 0)
        return unknown_key(c, key);
    if (qs->line[i])
        return duplicate_key(c, key, qs->line[i]);
    int r = parse_value(c, key, quota_keys[i].kind, value, &qs->v[i]);
    if (r < 0)
        return r;
    qs->line[i] = c->lineno;
    return 0;
}

static int ceiling_key(parse_ctx *c, const char *key, const char *value)
{
    int i = lookup_key(ceiling_keys, C_N, key);
    if (i < 0)
        return unknown_key(c, key);
    if (c->ceiling_line[i])
        return duplicate_key(c, key, c->ceiling_line[i]);
    int64_t v = 0; /* parse_value() writes it on success only */
    int r = parse_value(c, key, ceiling_keys[i].kind, value, &v);
    if (r < 0)
        return r;
    policy_ceiling *ce = &c->p->ceiling;
    switch (i) {
    case C_MEMORY: ce->memory_bytes = v; break;
    case C_MEMORY_HIGH: ce->memory_high_bytes = v; break;
    case C_CPU:
        ce->cpu_percent = (int32_t)v; /* at most POLICY_COUNT_MAX */
        break;
    case C_IO: ce->io_bps = v; break;
    case C_PIDS:
        ce->pids_max = (int32_t)v; /* at most JOB_PIDS_MAX_MAX */
        break;
    default: ce->timeout_seconds = v; break;
    }
    c->ceiling_line[i] = c->lineno;
    return 0;
}

/* An absolute path without "//" and without "." or ".." components; a trailing '/' is fine. */
static bool path_is_clean(const char *s)
{
    if (s[0] != '/' || strstr(s, "//"))
        return false;
    for (const char *p = s; *p;) {
        const char *comp = p + 1;
        const char *end = strchrnul(comp, '/');
        size_t n = (size_t)(end - comp);
        if ((n == 1 && comp[0] == '.') || (n == 2 && comp[0] == '.' && comp[1] == '.'))
            return false;
        p = end;
    }
    return true;
}

/* Grows *arr (of *cap elements of size) so that one more fits after n. */
static int grow(void *arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 16;
    void *a = reallocarray(*(void **)arr, ncap, size);
    if (!a)
        return -ENOMEM;
    *(void **)arr = a;
    *cap = ncap;
    return 0;
}

static int allow_key(parse_ctx *c, const char *key, const char *value)
{
    quoted q;
    policy *p = c->p;
    if (strcmp(key, "path") != 0)
        return unknown_key(c, key);
    if (value[0] != '/')
        return fail(c, c->lineno, -EINVAL, "path: '%s' is not an absolute path",
                    quote_str(&q, value));
    if (!path_is_clean(value))
        return fail(c, c->lineno, -EINVAL, "path: '%s' has a '.' or '..' component or '//'",
                    quote_str(&q, value));
    if (p->n_allow >= POLICY_ALLOW_MAX)
        return fail(c, c->lineno, -EINVAL, "path: '%s': more than %d paths in [allow]",
                    quote_str(&q, value), POLICY_ALLOW_MAX);
    if (grow(&p->allow, &c->allow_cap, p->n_allow, sizeof(*p->allow)) < 0)
        return fail(c, c->lineno, -ENOMEM, "out of memory");
    p->allow[p->n_allow] = strdup(value);
    if (!p->allow[p->n_allow])
        return fail(c, c->lineno, -ENOMEM, "out of memory");
    p->n_allow++;
    return 0;
}

static int server_key(parse_ctx *c, const char *key, const char *value)
{
    quoted q;
    policy *p = c->p;
    /* A long flag without its "--": so no leading '-' either. */
    if (!(key[0] >= 'a' && key[0] <= 'z') ||
        strspn(key, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(key))
        return fail(c, c->lineno, -EINVAL,
                    "[server] key '%s' is not a flag name without its '--' (a lower-case letter, "
                    "then lower-case letters, digits and '-')",
                    quote_str(&q, key));
    /* Linear: at most POLICY_SETTINGS_MAX keys. */
    for (size_t i = 0; i < p->n_settings; i++)
        if (strcmp(p->settings[i].key, key) == 0)
            return duplicate_key(c, key, p->settings[i].line);
    if (p->n_settings >= POLICY_SETTINGS_MAX)
        return fail(c, c->lineno, -EINVAL, "'%s': more than %d keys in [server]",
                    quote_str(&q, key), POLICY_SETTINGS_MAX);
    if (grow(&p->settings, &c->settings_cap, p->n_settings, sizeof(*p->settings)) < 0)
        return fail(c, c->lineno, -ENOMEM, "out of memory");
    _cleanup_free_ char *k = strdup(key);
    _cleanup_free_ char *v = strdup(value);
    if (!k || !v)
        return fail(c, c->lineno, -ENOMEM, "out of memory");
    p->settings[p->n_settings++] =
        (policy_setting){.key = TAKE_PTR(k), .value = TAKE_PTR(v), .line = c->lineno};
    return 0;
}

/* inih's handler: one key = value line of the current section (tracked by policy_reader; inih's
 * own section argument is always "" since it never sees a header). Returns 1 to go on, 0 on an
 * error, which is recorded in c. */
static int policy_handler(void *user, const char *section, const char *key, const char *value)
{
    parse_ctx *c = user;
    quoted q;
    int r;
    if (c->r < 0)
        return 0;
    switch (c->sec) {
    case S_SERVER: r = server_key(c, key, value); break;
    case S_QUOTA: r = quota_key(c, &c->p->base, key, value); break;
    case S_ROLE: r = quota_key(c, &c->p->roles[c->sec_index], key, value); break;
    case S_OWNER: r = quota_key(c, &c->p->owners[c->sec_index].q, key, value); break;
    case S_CEILING: r = ceiling_key(c, key, value); break;
    case S_ALLOW: r = allow_key(c, key, value); break;
    default:
        r = fail(c, c->lineno, -EINVAL, "key '%s' is outside any section", quote_str(&q, key));
        break;
    }
    return r >= 0;
}

/* ---- lines and sections ---- */

static int single_section(parse_ctx *c, section_kind kind, const char *label)
{
    if (c->sec_line[kind])
        return fail(c, c->lineno, -EINVAL, "section '%s' repeated (first at line %d)", label,
                    c->sec_line[kind]);
    c->sec_line[kind] = c->lineno;
    c->sec = kind;
    snprintf(c->sec_label, sizeof(c->sec_label), "%s", label);
    return 0;
}

static int owner_section(parse_ctx *c, const char *name)
{
    quoted q;
    policy *p = c->p;
    size_t n = strlen(name);
    if (n == 0)
        return fail(c, c->lineno, -EINVAL, "owner name '' is empty");
    if (n > POLICY_OWNER_NAME_MAX)
        return fail(c, c->lineno, -EINVAL, "owner name '%s' is longer than %d bytes",
                    quote(&q, name, n), POLICY_OWNER_NAME_MAX);
    /* auth reports a CN as printable ASCII (anything else replaced by '?'), so an owner with
     * another byte would never match: say so instead of ignoring the section. */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || (unsigned char)name[i] >= 0x7f)
            return fail(c, c->lineno, -EINVAL,
                        "owner name '%s' has a byte that is not printable ASCII",
                        quote(&q, name, n));
    if (p->n_owners >= POLICY_OWNERS_MAX)
        return fail(c, c->lineno, -EINVAL, "[owner '%s']: more than %d owner sections",
                    quote(&q, name, n), POLICY_OWNERS_MAX);
    if (grow(&p->owners, &c->owners_cap, p->n_owners, sizeof(*p->owners)) < 0)
        return fail(c, c->lineno, -ENOMEM, "out of memory");
    char *dup = strdup(name);
    if (!dup)
        return fail(c, c->lineno, -ENOMEM, "out of memory");
    p->owners[p->n_owners] = (owner_entry){.name = dup, .line = c->lineno};
    c->sec = S_OWNER;
    c->sec_index = p->n_owners++;
    snprintf(c->sec_label, sizeof(c->sec_label), "[owner '%s']", quote(&q, name, n));
    return 0;
}

/* A header line, comments and outer whitespace already gone: "[kind]" or "[kind arg]". */
static int section_begin(parse_ctx *c, char *line)
{
    quoted q, header;
    size_t n = strlen(line);
    quote(&header, line, n);
    if (n < 2 || line[n - 1] != ']')
        return fail(c, c->lineno, -EINVAL, "'%s' is not a section header: no ']' at its end",
                    header.s);
    line[n - 1] = '\0';
    char *kind = line + 1;
    kind += strspn(kind, " \t");
    char *arg = kind + strcspn(kind, " \t");
    if (*arg) {
        *arg++ = '\0';
        arg += strspn(arg, " \t");
    }
    char *end = arg + strlen(arg);
    while (end > arg && (end[-1] == ' ' || end[-1] == '\t'))
        *--end = '\0';

    static const struct {
        const char *name;
        section_kind kind;
    } singles[] = {
        {"server", S_SERVER},
        {"quota", S_QUOTA},
        {"ceiling", S_CEILING},
        {"allow", S_ALLOW},
    };
    for (size_t i = 0; i < ARRAY_SIZE(singles); i++) {
        if (strcmp(kind, singles[i].name) != 0 || *arg)
            continue;
        char label[32];
        snprintf(label, sizeof(label), "[%s]", singles[i].name);
        return single_section(c, singles[i].kind, label);
    }
    if (strcmp(kind, "role") == 0) {
        for (size_t i = 0; i < ROLE_N; i++) {
            if (strcmp(arg, role_names[i]) != 0)
                continue;
            if (c->role_line[i])
                return fail(c, c->lineno, -EINVAL,
                            "section '[role %s]' repeated (first at line %d)", role_names[i],
                            c->role_line[i]);
            c->role_line[i] = c->lineno;
            c->sec = S_ROLE;
            c->sec_index = i;
            snprintf(c->sec_label, sizeof(c->sec_label), "[role %s]", role_names[i]);
            return 0;
        }
        return fail(c, c->lineno, -EINVAL, "role '%s' is not admin or viewer", quote_str(&q, arg));
    }
    if (strcmp(kind, "owner") == 0)
        return owner_section(c, arg);
    return fail(c, c->lineno, -EINVAL,
                "unknown section '%s' (expected server, quota, role admin|viewer, owner NAME, "
                "ceiling or allow)",
                header.s);
}

/* Copies line (n bytes) to out without leading whitespace, comment and trailing whitespace. A
 * comment starts with '#' or ';' at the start or after whitespace. */
static void compact_line(char *out, const char *line, size_t n)
{
    size_t i = 0, o = 0;
    while (i < n && isspace((unsigned char)line[i]))
        i++;
    for (; i < n; i++) {
        if ((line[i] == '#' || line[i] == ';') && (o == 0 || isspace((unsigned char)out[o - 1])))
            break;
        out[o++] = line[i];
    }
    while (o > 0 && isspace((unsigned char)out[o - 1]))
        o--;
    out[o] = '\0';
}

/* inih's reader (fgets-like): hands inih the next physical line, compacted (see the top of the
 * file), or NULL at the end or once an error is recorded. */
static char *policy_reader(char *str, int num, void *stream)
{
    parse_ctx *c = stream;
    if (c->r < 0 || c->pos >= c->len)
        return NULL;
    const char *line = c->buf + c->pos;
    size_t rest = c->len - c->pos;
    const char *nl = memchr(line, '\n', rest);
    size_t n = nl ? (size_t)(nl - line) : rest;
    c->pos += nl ? n + 1 : n;
    c->lineno++;
    if (n > POLICY_LINE_MAX) {
        fail(c, c->lineno, -EINVAL, "line is longer than %d bytes", POLICY_LINE_MAX);
        return NULL;
    }
    if (memchr(line, '\0', n)) {
        fail(c, c->lineno, -EINVAL, "line has a NUL byte");
        return NULL;
    }
    if (c->lineno == 1 && n >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
        line += 3;
        n -= 3;
    }
    compact_line(c->cur, line, n);
    if (c->cur[0] == '[') {
        if (section_begin(c, c->cur) < 0)
            return NULL;
        c->cur[0] = '\0';
    }
    size_t m = strlen(c->cur);
    if (num < 1 || m >= (size_t)num) {
        /* Not reached: raise_ini_limits() makes inih's buffer larger than any line. */
        fail(c, c->lineno, -EINVAL, "line is longer than the INI parser's %d bytes", num);
        return NULL;
    }
    memcpy(str, c->cur, m + 1);
    return str;
}

/* Debian's libinih reads its limits from globals (INI_RUNTIME_OPTIONS): its line buffer is 200
 * bytes by default. Set once, before the first parse, and only ever raised. */
static pthread_once_t ini_limits_once = PTHREAD_ONCE_INIT;
static void raise_ini_limits(void)
{
    if (ini_max_line < POLICY_LINE_MAX + 3)
        ini_max_line = POLICY_LINE_MAX + 3;
    if (ini_initial_alloc < POLICY_LINE_MAX + 3)
        ini_initial_alloc = POLICY_LINE_MAX + 3;
}

/* Line n (1-based) of buf, for the message of a syntax error that inih found. */
static const char *line_at(const char *buf, size_t len, int n, size_t *ret_len)
{
    const char *p = buf, *end = buf + len;
    for (int i = 1; i < n && p < end; i++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        p = nl ? nl + 1 : end;
    }
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
    while (l > 0 && isspace((unsigned char)*p)) {
        p++;
        l--;
    }
    while (l > 0 && isspace((unsigned char)p[l - 1]))
        l--;
    *ret_len = l;
    return p;
}

static int cmp_owner(const void *a, const void *b)
{
    const owner_entry *x = a, *y = b;
    int r = strcmp(x->name, y->name);
    return r ? r : (x->line > y->line) - (x->line < y->line);
}

static int cmp_owner_key(const void *key, const void *elem)
{
    return strcmp(key, ((const owner_entry *)elem)->name);
}

/* Sorts the owners for policy_quota_for()'s binary search and refuses a name that appears
 * twice (reported at the earliest repeat). */
static int owners_finish(parse_ctx *c)
{
    policy *p = c->p;
    if (p->n_owners == 0)
        return 0;
    qsort(p->owners, p->n_owners, sizeof(*p->owners), cmp_owner);
    const owner_entry *dup = NULL;
    for (size_t i = 1; i < p->n_owners; i++)
        if (strcmp(p->owners[i - 1].name, p->owners[i].name) == 0 &&
            (!dup || p->owners[i].line < dup->line))
            dup = &p->owners[i];
    if (!dup) /* dup - 1 is its first occurrence: sorted by name, then line */
        return 0;
    quoted q;
    return fail(c, dup->line, -EINVAL, "section [owner '%s'] repeated (first at line %d)",
                quote_str(&q, dup->name), dup[-1].line);
}

static int parse_buf(const char *name, const char *buf, size_t len, policy **ret, jw_error *err)
{
    _cleanup_free_ parse_ctx *c = calloc(1, sizeof(*c));
    if (!c)
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "%s: out of memory", name);
    c->p = policy_new_empty();
    if (!c->p)
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "%s: out of memory", name);
    c->name = name;
    c->buf = buf;
    c->len = len;
    c->err = err;

    pthread_once(&ini_limits_once, raise_ini_limits);
    int ir = ini_parse_stream(policy_reader, c, policy_handler, c);
    /* ir is the first line inih refused: a syntax error or a line our handler failed on. Ours
     * stop the reading, so a syntax error before them comes first. */
    if (ir > 0 && (c->r == 0 || ir < c->err_line)) {
        c->r = 0;
        size_t l;
        const char *text = line_at(buf, len, ir, &l);
        quoted q;
        fail(c, ir, -EINVAL, "'%s' is not a [section], a key = value or a comment",
             quote(&q, text, l));
    } else if (ir < 0 && c->r == 0) {
        fail(c, c->lineno, -ENOMEM, "out of memory");
    }
    if (c->r == 0)
        owners_finish(c);
    if (c->r < 0) {
        policy_free(c->p);
        return c->r;
    }
    *ret = c->p;
    return 0;
}

/* ---- API ---- */

int policy_parse(const char *name, const char *text, policy **ret, jw_error *err)
{
    size_t len = strnlen(text, (size_t)POLICY_FILE_MAX + 1);
    if (len > POLICY_FILE_MAX)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EFBIG,
                            "%s: larger than %d bytes (1 MiB), refusing", name, POLICY_FILE_MAX);
    return parse_buf(name, text, len, ret, err);
}

int policy_load(const char *path, policy **ret, jw_error *err)
{
    _cleanup_free_ char *buf = NULL;
    size_t len = 0;
    int r = read_file_alloc_at(AT_FDCWD, path, POLICY_FILE_MAX, READ_FILE_REGULAR, &buf, &len);
    if (r == -EFBIG)
        return jw_error_set(err, JW_INVALID_ARGUMENT, r,
                            "policy file '%s' is larger than %d bytes (1 MiB), refusing", path,
                            POLICY_FILE_MAX);
    if (r == -EBADFD || r == -EISDIR)
        return jw_error_set(err, JW_INVALID_ARGUMENT, r, "policy file '%s' is not a regular file",
                            path);
    if (r < 0)
        return jw_error_errno(err, r, "read policy file '%s'", path);
    return parse_buf(path, buf, len, ret, err);
}

policy *policy_new_empty(void)
{
    return calloc(1, sizeof(policy));
}

void policy_free(policy *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_settings; i++) {
        free((char *)p->settings[i].key);
        free((char *)p->settings[i].value);
    }
    free(p->settings);
    for (size_t i = 0; i < p->n_owners; i++)
        free(p->owners[i].name);
    free(p->owners);
    for (size_t i = 0; i < p->n_allow; i++)
        free(p->allow[i]);
    free(p->allow);
    free(p);
}

size_t policy_n_settings(const policy *p)
{
    return p->n_settings;
}

const policy_setting *policy_setting_at(const policy *p, size_t i)
{
    return i < p->n_settings ? &p->settings[i] : NULL;
}

static void quota_apply(policy_quota *q, const quota_set *s)
{
    if (s->line[Q_RUNNING])
        q->max_running = s->v[Q_RUNNING];
    if (s->line[Q_QUEUED])
        q->max_queued = s->v[Q_QUEUED];
    if (s->line[Q_MEMORY])
        q->max_memory = s->v[Q_MEMORY];
    if (s->line[Q_CPU])
        q->max_cpu = s->v[Q_CPU];
}

void policy_quota_for(const policy *p, const char *owner, const char *role, policy_quota *ret)
{
    policy_quota q = {0};
    quota_apply(&q, &p->base);
    for (size_t i = 0; role && i < ROLE_N; i++)
        if (strcmp(role, role_names[i]) == 0)
            quota_apply(&q, &p->roles[i]);
    if (owner && p->n_owners) {
        const owner_entry *o =
            bsearch(owner, p->owners, p->n_owners, sizeof(*p->owners), cmp_owner_key);
        if (o)
            quota_apply(&q, &o->q);
    }
    *ret = q;
}

const policy_ceiling *policy_ceilings(const policy *p)
{
    return &p->ceiling;
}

bool policy_command_allowed(const policy *p, const char *path)
{
    if (p->n_allow == 0)
        return true;
    if (!path || !path_is_clean(path) || path[strlen(path) - 1] == '/')
        return false;
    for (size_t i = 0; i < p->n_allow; i++) {
        const char *e = p->allow[i];
        size_t n = strlen(e);
        if (e[n - 1] == '/' ? strncmp(path, e, n) == 0 : strcmp(path, e) == 0)
            return true;
    }
    return false;
}

size_t policy_n_owners(const policy *p)
{
    return p->n_owners;
}

size_t policy_n_allow(const policy *p)
{
    return p->n_allow;
}
