#include "client/format.h"

#include "util/cleanup.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int check(FILE *out)
{
    return ferror(out) ? -EIO : 0;
}

/* The enum names come from the descriptors protoc-c generated, so a value added to the proto
 * shows up here without an edit; only the common prefix is stripped. */
static const char *enum_short_name(const ProtobufCEnumDescriptor *d, int value, const char *prefix)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(d, value);
    if (!v)
        return NULL;
    size_t n = strlen(prefix);
    return strncmp(v->name, prefix, n) == 0 ? v->name + n : v->name;
}

const char *jw_fmt_status_name(int status)
{
    return enum_short_name(&jobworker__v1__job_status__descriptor, status, "JOB_STATUS_");
}

const char *jw_fmt_reason_name(int reason)
{
    return enum_short_name(&jobworker__v1__exit_reason__descriptor, reason, "EXIT_REASON_");
}

const char *jw_fmt_network_name(int network)
{
    return enum_short_name(&jobworker__v1__network_mode__descriptor, network, "NETWORK_MODE_");
}

/* Length (1-4) of the well-formed UTF-8 sequence at s, or 0 when s[0] does not start one:
 * overlong forms, surrogates and values above U+10FFFF are ill-formed (RFC 3629). */
static size_t utf8_seq(const unsigned char *s, size_t len, uint32_t *ret_cp)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        *ret_cp = c;
        return 1;
    }
    size_t n;
    uint32_t v;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        v = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        v = c & 0x0f;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        v = c & 0x07;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if (s[i] < lo || s[i] > hi)
            return 0;
        lo = 0x80;
        hi = 0xbf;
        v = (v << 6) | (s[i] & 0x3f);
    }
    *ret_cp = v;
    return n;
}

/* Code points a terminal could act on: C0, DEL and C1 (C1 arrives as UTF-8 too). */
static bool is_control(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f);
}

int jw_fmt_json_string(FILE *out, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    putc('"', out);
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = utf8_seq(p + i, len - i, &cp);
        if (n == 0) {
            fputs("\\ufffd", out);
            i++;
            continue;
        }
        if (cp == '"')
            fputs("\\\"", out);
        else if (cp == '\\')
            fputs("\\\\", out);
        else if (is_control(cp))
            fprintf(out, "\\u%04x", (unsigned)cp);
        else
            fwrite(p + i, 1, n, out);
        i += n;
    }
    putc('"', out);
    return check(out);
}

static void json_str(FILE *out, const char *key, const char *value)
{
    fprintf(out, "\"%s\":", key);
    value = value ? value : "";
    jw_fmt_json_string(out, value, strlen(value));
}

/* ,"key":[...] of strings, then a comma: the args and env of a job. */
static void json_strv(FILE *out, const char *key, char *const *v, size_t n)
{
    fprintf(out, ",\"%s\":[", key);
    for (size_t i = 0; i < n; i++) {
        if (i)
            putc(',', out);
        const char *a = v[i] ? v[i] : "";
        jw_fmt_json_string(out, a, strlen(a));
    }
    fputs("]", out);
}

static void json_enum(FILE *out, const char *key, const char *name, int value)
{
    if (name)
        fprintf(out, "\"%s\":\"%s\"", key, name);
    else
        fprintf(out, "\"%s\":\"%d\"", key, value);
}

int jw_fmt_job_json(FILE *out, const Jobworker__V1__Job *job)
{
    static const Jobworker__V1__ResourceLimits no_limits = JOBWORKER__V1__RESOURCE_LIMITS__INIT;
    static const Jobworker__V1__ResourceUsage no_usage = JOBWORKER__V1__RESOURCE_USAGE__INIT;
    const Jobworker__V1__ResourceLimits *l = job->limits ? job->limits : &no_limits;
    const Jobworker__V1__ResourceUsage *u = job->usage ? job->usage : &no_usage;

    putc('{', out);
    json_str(out, "id", job->id);
    putc(',', out);
    json_str(out, "command", job->command);
    json_strv(out, "args", job->args, job->n_args);
    json_strv(out, "env", job->env, job->n_env);
    putc(',', out);
    json_enum(out, "status", jw_fmt_status_name(job->status), job->status);
    putc(',', out);
    json_enum(out, "reason", jw_fmt_reason_name(job->reason), job->reason);
    fprintf(out, ",\"exit_code\":%" PRId32 ",\"signal\":%" PRId32 ",\"pid\":%" PRId32 ",",
            job->exit_code, job->signal, job->pid);
    json_str(out, "owner", job->owner);
    putc(',', out);
    json_str(out, "error", job->error);
    fprintf(out,
            ",\"start_time_unix_ns\":%" PRId64 ",\"end_time_unix_ns\":%" PRId64
            ",\"timeout_seconds\":%" PRId32 ",\"limits_enforced\":%s,\"output_bytes\":%" PRId64
            ",\"stdout_bytes\":%" PRId64 ",\"stderr_bytes\":%" PRId64
            ",\"output_dropped_bytes\":%" PRId64 ",\"create_time_unix_ns\":%" PRId64
            ",\"queue_position\":%" PRId64 ",\"stdin\":%s",
            job->start_time_unix_ns, job->end_time_unix_ns, job->timeout_seconds,
            job->limits_enforced ? "true" : "false", job->output_bytes, job->stdout_bytes,
            job->stderr_bytes, job->output_dropped_bytes, job->create_time_unix_ns,
            job->queue_position, job->stdin ? "true" : "false");
    putc(',', out);
    json_enum(out, "network", jw_fmt_network_name(job->network), job->network);
    putc(',', out);
    json_str(out, "user", job->user);
    if (job->args_omitted > 0) /* only in listings, and only when the server cut them */
        fprintf(out, ",\"args_omitted\":%" PRId32, job->args_omitted);
    fprintf(out,
            ",\"limits\":{\"cpu_percent\":%" PRId32 ",\"memory_bytes\":%" PRId64
            ",\"io_bps\":%" PRId64 ",\"memory_high_bytes\":%" PRId64 ",\"pids_max\":%" PRId32 "}",
            l->cpu_percent, l->memory_bytes, l->io_bps, l->memory_high_bytes, l->pids_max);
    fprintf(out,
            ",\"usage\":{\"cpu_usec\":%" PRId64 ",\"memory_peak_bytes\":%" PRId64
            ",\"io_read_bytes\":%" PRId64 ",\"io_write_bytes\":%" PRId64 "}}",
            u->cpu_usec, u->memory_peak_bytes, u->io_read_bytes, u->io_write_bytes);
    return check(out);
}

int jw_fmt_jobs_json(FILE *out, const Jobworker__V1__Jobs *jobs)
{
    fputs("{\"jobs\":[", out);
    for (size_t i = 0; i < jobs->n_jobs; i++) {
        if (i)
            putc(',', out);
        jw_fmt_job_json(out, jobs->jobs[i]);
    }
    putc(']', out);
    if (jobs->jobs_omitted > 0)
        fprintf(out, ",\"jobs_omitted\":%" PRId32, jobs->jobs_omitted);
    putc('}', out);
    return check(out);
}

/* Writes s with every control character and invalid byte as \xNN; for $'...' quoting also
 * escapes the quote and the backslash. */
static void put_escaped(FILE *out, const char *s, bool ansi_c)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = utf8_seq(p + i, len - i, &cp);
        if (n == 0 || is_control(cp)) {
            size_t k = n ? n : 1;
            for (size_t j = 0; j < k; j++) {
                if (ansi_c && p[i + j] == '\n')
                    fputs("\\n", out);
                else if (ansi_c && p[i + j] == '\t')
                    fputs("\\t", out);
                else
                    fprintf(out, "\\x%02x", p[i + j]);
            }
            i += k;
            continue;
        }
        if (ansi_c && (cp == '\'' || cp == '\\'))
            putc('\\', out);
        fwrite(p + i, 1, n, out);
        i += n;
    }
}

int jw_fmt_sanitized(FILE *out, const char *s)
{
    put_escaped(out, s ? s : "", false);
    return check(out);
}

static bool needs_ansi_c(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = utf8_seq(p + i, len - i, &cp);
        if (n == 0 || is_control(cp))
            return true;
        i += n;
    }
    return false;
}

int jw_fmt_shell_word(FILE *out, const char *s)
{
    s = s ? s : "";
    if (!*s) {
        fputs("''", out);
        return check(out);
    }
    /* The set of characters no POSIX shell treats specially anywhere in a word. */
    static const char safe[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "0123456789_@%+=:,./-";
    if (strspn(s, safe) == strlen(s)) {
        fputs(s, out);
    } else if (needs_ansi_c(s)) {
        fputs("$'", out);
        put_escaped(out, s, true);
        putc('\'', out);
    } else {
        putc('\'', out);
        for (const char *p = s; *p; p++) {
            if (*p == '\'')
                fputs("'\\''", out);
            else
                putc(*p, out);
        }
        putc('\'', out);
    }
    return check(out);
}

int jw_fmt_command_line(FILE *out, const char *command, char *const *args, size_t nargs)
{
    jw_fmt_shell_word(out, command);
    for (size_t i = 0; i < nargs; i++) {
        putc(' ', out);
        jw_fmt_shell_word(out, args[i]);
    }
    return check(out);
}

void jw_fmt_size(char *buf, size_t size, int64_t bytes)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (bytes < 1024) {
        snprintf(buf, size, "%" PRId64 " B", bytes);
        return;
    }
    unsigned u = 0;
    while (u + 1 < ARRAY_SIZE(units) && bytes >> (10 * (u + 1)) > 0)
        u++;
    int64_t unit = (int64_t)1 << (10 * u);
    if (bytes % unit == 0)
        snprintf(buf, size, "%" PRId64 " %s", bytes / unit, units[u]);
    else
        snprintf(buf, size, "%.1f %s", (double)bytes / (double)unit, units[u]);
}

void jw_fmt_duration_ns(char *buf, size_t size, int64_t ns)
{
    if (ns <= 0) {
        snprintf(buf, size, "0s");
    } else if (ns < 1000000) {
        snprintf(buf, size, "%" PRId64 "us", ns / 1000);
    } else if (ns < 1000000000) {
        snprintf(buf, size, "%" PRId64 "ms", ns / 1000000);
    } else if (ns < 60 * INT64_C(1000000000)) {
        snprintf(buf, size, "%" PRId64 ".%03" PRId64 "s", ns / 1000000000,
                 ns % 1000000000 / 1000000);
    } else {
        int64_t s = ns / 1000000000;
        if (s < 3600)
            snprintf(buf, size, "%" PRId64 "m%" PRId64 "s", s / 60, s % 60);
        else
            snprintf(buf, size, "%" PRId64 "h%" PRId64 "m%" PRId64 "s", s / 3600, s % 3600 / 60,
                     s % 60);
    }
}

static void fmt_time(char *buf, size_t size, int64_t unix_ns, bool millis)
{
    if (unix_ns == 0) {
        snprintf(buf, size, "-");
        return;
    }
    int64_t sec = unix_ns / 1000000000, rem = unix_ns % 1000000000;
    if (rem < 0) {
        sec--;
        rem += 1000000000;
    }
    time_t t = (time_t)sec;
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        snprintf(buf, size, "%" PRId64, unix_ns);
        return;
    }
    char date[64];
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
    if (millis)
        snprintf(buf, size, "%s.%03dZ", date, (int)(rem / 1000000));
    else
        snprintf(buf, size, "%sZ", date);
}

void jw_fmt_time_iso(char *buf, size_t size, int64_t unix_ns)
{
    fmt_time(buf, size, unix_ns, true);
}

void jw_fmt_time_iso_s(char *buf, size_t size, int64_t unix_ns)
{
    fmt_time(buf, size, unix_ns, false);
}

bool jw_fmt_status_is_final(int status)
{
    return status == JOBWORKER__V1__JOB_STATUS__JOB_STATUS_COMPLETED ||
           status == JOBWORKER__V1__JOB_STATUS__JOB_STATUS_FAILED ||
           status == JOBWORKER__V1__JOB_STATUS__JOB_STATUS_STOPPED;
}

static void put_enum(FILE *out, const char *name, int value)
{
    if (name)
        fputs(name, out);
    else
        fprintf(out, "%d", value);
}

static void put_limit_size(FILE *out, const char *label, int64_t v, const char *suffix)
{
    char b[32];
    if (v <= 0) {
        fprintf(out, "%s unlimited", label);
        return;
    }
    jw_fmt_size(b, sizeof(b), v);
    fprintf(out, "%s %s%s", label, b, suffix);
}

/* Keys are padded to the longest one ("limits enforced:") plus a space. */
#define KEY(out, k) fprintf(out, "%-17s", k ":")

int jw_fmt_job_human(FILE *out, const Jobworker__V1__Job *job, int64_t now_ns)
{
    static const Jobworker__V1__ResourceLimits no_limits = JOBWORKER__V1__RESOURCE_LIMITS__INIT;
    static const Jobworker__V1__ResourceUsage no_usage = JOBWORKER__V1__RESOURCE_USAGE__INIT;
    const Jobworker__V1__ResourceLimits *l = job->limits ? job->limits : &no_limits;
    const Jobworker__V1__ResourceUsage *u = job->usage ? job->usage : &no_usage;
    char b[64];

    KEY(out, "id");
    jw_fmt_sanitized(out, job->id);
    putc('\n', out);

    KEY(out, "command");
    jw_fmt_command_line(out, job->command, job->args, job->n_args);
    putc('\n', out);

    for (size_t i = 0; i < job->n_env; i++) {
        fprintf(out, "%-17s", i == 0 ? "environment:" : "");
        jw_fmt_sanitized(out, job->env[i] ? job->env[i] : "");
        putc('\n', out);
    }

    KEY(out, "status");
    put_enum(out, jw_fmt_status_name(job->status), job->status);
    putc('\n', out);

    if (job->queue_position > 0) {
        KEY(out, "queue position");
        fprintf(out, "%" PRId64 " (1 = starts next)\n", job->queue_position);
    }

    KEY(out, "reason");
    put_enum(out, jw_fmt_reason_name(job->reason), job->reason);
    putc('\n', out);

    KEY(out, "exit code");
    if (job->reason == JOBWORKER__V1__EXIT_REASON__EXIT_REASON_EXITED)
        fprintf(out, "%" PRId32 "\n", job->exit_code);
    else
        fputs("-\n", out);

    KEY(out, "signal");
    if (job->signal > 0 && sigabbrev_np(job->signal))
        fprintf(out, "%" PRId32 " (SIG%s)\n", job->signal, sigabbrev_np(job->signal));
    else if (job->signal != 0)
        fprintf(out, "%" PRId32 "\n", job->signal);
    else
        fputs("-\n", out);

    KEY(out, "pid");
    if (job->pid > 0)
        fprintf(out, "%" PRId32 "\n", job->pid);
    else
        fputs("-\n", out);

    KEY(out, "owner");
    if (job->owner && *job->owner)
        jw_fmt_sanitized(out, job->owner);
    else
        putc('-', out);
    putc('\n', out);

    KEY(out, "runs as");
    if (job->user && *job->user)
        jw_fmt_sanitized(out, job->user);
    else
        putc('-', out);
    putc('\n', out);

    KEY(out, "network");
    put_enum(out, jw_fmt_network_name(job->network), job->network);
    putc('\n', out);

    KEY(out, "stdin");
    fputs(job->stdin ? "a pipe fed by WriteStdin\n" : "/dev/null\n", out);

    if (job->create_time_unix_ns != 0) {
        KEY(out, "created");
        jw_fmt_time_iso(b, sizeof(b), job->create_time_unix_ns);
        fprintf(out, "%s\n", b);
        /* Time queued: until it started, or until now while it waits. */
        int64_t q,
            until =
                job->start_time_unix_ns
                    ? job->start_time_unix_ns
                    : (job->status == JOBWORKER__V1__JOB_STATUS__JOB_STATUS_QUEUED ? now_ns : 0);
        if (until && !__builtin_sub_overflow(until, job->create_time_unix_ns, &q) && q >= 0) {
            KEY(out, "queued");
            jw_fmt_duration_ns(b, sizeof(b), q);
            fprintf(out, "%s%s\n", b, job->start_time_unix_ns ? "" : " (waiting)");
        }
    }
    KEY(out, "started");
    jw_fmt_time_iso(b, sizeof(b), job->start_time_unix_ns);
    fprintf(out, "%s\n", b);
    KEY(out, "ended");
    jw_fmt_time_iso(b, sizeof(b), job->end_time_unix_ns);
    fprintf(out, "%s\n", b);

    /* Times come from the server: a hostile or broken reply must not overflow the subtraction. */
    int64_t d;
    KEY(out, "duration");
    if (job->start_time_unix_ns != 0 && job->end_time_unix_ns != 0 &&
        !__builtin_sub_overflow(job->end_time_unix_ns, job->start_time_unix_ns, &d)) {
        jw_fmt_duration_ns(b, sizeof(b), d);
        fprintf(out, "%s\n", b);
    } else if (job->start_time_unix_ns != 0 && !jw_fmt_status_is_final(job->status) &&
               !__builtin_sub_overflow(now_ns, job->start_time_unix_ns, &d)) {
        jw_fmt_duration_ns(b, sizeof(b), d);
        fprintf(out, "%s (running)\n", b);
    } else {
        fputs("-\n", out);
    }

    KEY(out, "timeout");
    if (job->timeout_seconds > 0) {
        jw_fmt_duration_ns(b, sizeof(b), (int64_t)job->timeout_seconds * 1000000000);
        fprintf(out, "%s\n", b);
    } else {
        fputs("none\n", out);
    }

    KEY(out, "limits");
    if (l->cpu_percent > 0)
        fprintf(out, "cpu %" PRId32 "%%, ", l->cpu_percent);
    else
        fputs("cpu unlimited, ", out);
    put_limit_size(out, "memory", l->memory_bytes, "");
    fputs(", ", out);
    put_limit_size(out, "memory high", l->memory_high_bytes, "");
    fputs(", ", out);
    put_limit_size(out, "io", l->io_bps, "/s");
    if (l->pids_max > 0)
        fprintf(out, ", pids %" PRId32 "\n", l->pids_max);
    else
        fputs(", pids unlimited\n", out);

    KEY(out, "limits enforced");
    fputs(job->limits_enforced ? "yes\n" : "no\n", out);

    KEY(out, "usage");
    /* A server's number, not ours: clamp before scaling (INT64 overflow is undefined). */
    int64_t cpu = u->cpu_usec;
    cpu = cpu > INT64_MAX / 1000   ? INT64_MAX / 1000
          : cpu < INT64_MIN / 1000 ? INT64_MIN / 1000
                                   : cpu;
    jw_fmt_duration_ns(b, sizeof(b), cpu * 1000);
    fprintf(out, "cpu %s, ", b);
    jw_fmt_size(b, sizeof(b), u->memory_peak_bytes);
    fprintf(out, "memory peak %s, ", b);
    jw_fmt_size(b, sizeof(b), u->io_read_bytes);
    fprintf(out, "io read %s, ", b);
    jw_fmt_size(b, sizeof(b), u->io_write_bytes);
    fprintf(out, "io write %s\n", b);

    KEY(out, "output bytes");
    fprintf(out, "%" PRId64, job->output_bytes);
    if (job->output_bytes >= 1024) {
        jw_fmt_size(b, sizeof(b), job->output_bytes);
        fprintf(out, " (%s)", b);
    }
    if (job->stderr_bytes > 0)
        fprintf(out, ": stdout %" PRId64 ", stderr %" PRId64, job->stdout_bytes, job->stderr_bytes);
    if (job->output_dropped_bytes > 0)
        fprintf(out, ", %" PRId64 " more dropped at the server's output cap",
                job->output_dropped_bytes);
    putc('\n', out);

    if (job->error && *job->error) {
        KEY(out, "error");
        jw_fmt_sanitized(out, job->error);
        putc('\n', out);
    }
    return check(out);
}

/* Display width, counted in code points: cells hold sanitized text, which is valid UTF-8. */
static size_t text_width(const char *s)
{
    size_t w = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        w += (*p & 0xc0) != 0x80;
    return w;
}

/* Cuts s after `width` code points, ending it with "..." when something was cut. */
static void truncate_width(char *s, size_t width)
{
    if (text_width(s) <= width)
        return;
    size_t w = 0;
    for (unsigned char *p = (unsigned char *)s; *p; p++) {
        if ((*p & 0xc0) == 0x80)
            continue;
        if (w == width - 3) {
            strcpy((char *)p, "...");
            return;
        }
        w++;
    }
}

enum { COL_ID, COL_STATUS, COL_REASON, COL_OWNER, COL_STARTED, COL_COMMAND, NCOLS };

static char *cell_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *cell_printf(const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    return n < 0 ? NULL : s;
}

/* Renders one row's cells with a memory stream so the escaping helpers can be reused. */
static int fill_row(char **cells, const Jobworker__V1__Job *job)
{
    char b[64];
    size_t len;
    FILE *m;

    m = open_memstream(&cells[COL_ID], &len);
    if (!m)
        return -ENOMEM;
    jw_fmt_sanitized(m, job->id);
    if (fclose(m) != 0)
        return -ENOMEM;

    const char *st = jw_fmt_status_name(job->status);
    cells[COL_STATUS] = st ? strdup(st) : cell_printf("%d", job->status);

    switch (job->reason) {
    case JOBWORKER__V1__EXIT_REASON__EXIT_REASON_UNSPECIFIED:
        cells[COL_REASON] = strdup("-");
        break;
    case JOBWORKER__V1__EXIT_REASON__EXIT_REASON_EXITED:
        cells[COL_REASON] = cell_printf("exit %" PRId32, job->exit_code);
        break;
    case JOBWORKER__V1__EXIT_REASON__EXIT_REASON_SIGNALED:
        cells[COL_REASON] = cell_printf("signal %" PRId32, job->signal);
        break;
    default: {
        const char *r = jw_fmt_reason_name(job->reason);
        cells[COL_REASON] = r ? strdup(r) : cell_printf("%d", job->reason);
    }
    }

    m = open_memstream(&cells[COL_OWNER], &len);
    if (!m)
        return -ENOMEM;
    if (job->owner && *job->owner)
        jw_fmt_sanitized(m, job->owner);
    else
        putc('-', m);
    if (fclose(m) != 0)
        return -ENOMEM;

    jw_fmt_time_iso_s(b, sizeof(b), job->start_time_unix_ns);
    cells[COL_STARTED] = strdup(b);

    m = open_memstream(&cells[COL_COMMAND], &len);
    if (!m)
        return -ENOMEM;
    jw_fmt_command_line(m, job->command, job->args, job->n_args);
    if (job->args_omitted > 0)
        fprintf(m, " ...(+%" PRId32 " args)", job->args_omitted);
    if (fclose(m) != 0)
        return -ENOMEM;
    truncate_width(cells[COL_COMMAND], JW_FMT_COMMAND_WIDTH);

    for (int i = 0; i < NCOLS; i++)
        if (!cells[i])
            return -ENOMEM;
    return 0;
}

static void put_row(FILE *out, char *const *cells, const size_t *widths)
{
    for (int i = 0; i < NCOLS; i++) {
        fputs(cells[i], out);
        if (i + 1 < NCOLS)
            fprintf(out, "%*s", (int)(widths[i] - text_width(cells[i]) + 2), "");
    }
    putc('\n', out);
}

int jw_fmt_jobs_table(FILE *out, const Jobworker__V1__Jobs *jobs)
{
    static char *const header[NCOLS] = {"ID",    "STATUS",  "REASON/EXIT",
                                        "OWNER", "STARTED", "COMMAND"};
    size_t n = jobs->n_jobs;
    _cleanup_free_ char **cells = calloc(n * NCOLS + 1, sizeof(char *));
    if (!cells)
        return -ENOMEM;
    int r = 0;
    for (size_t i = 0; i < n && r == 0; i++)
        r = fill_row(cells + i * NCOLS, jobs->jobs[i]);
    if (r == 0) {
        size_t widths[NCOLS];
        for (int c = 0; c < NCOLS; c++) {
            widths[c] = text_width(header[c]);
            for (size_t i = 0; i < n; i++) {
                size_t w = text_width(cells[i * NCOLS + c]);
                if (w > widths[c])
                    widths[c] = w;
            }
        }
        put_row(out, header, widths);
        for (size_t i = 0; i < n; i++)
            put_row(out, cells + i * NCOLS, widths);
        if (jobs->jobs_omitted > 0)
            fprintf(out,
                    "(%" PRId32 " older job(s) not shown: a listing holds at most 2 MiB; "
                    "jobctl get ID shows any job)\n",
                    jobs->jobs_omitted);
        r = check(out);
    }
    for (size_t i = 0; i < n * NCOLS; i++)
        free(cells[i]);
    return r;
}

/* ---- GetServerInfo ---- */

int jw_fmt_server_info_json(FILE *out, const Jobworker__V1__ServerInfo *si)
{
    static const Jobworker__V1__ResourceLimits no_limits = JOBWORKER__V1__RESOURCE_LIMITS__INIT;
    const Jobworker__V1__ResourceLimits *l = si->default_limits ? si->default_limits : &no_limits;
    putc('{', out);
    json_str(out, "version", si->version);
    putc(',', out);
    json_str(out, "build", si->build);
    putc(',', out);
    json_str(out, "hostname", si->hostname);
    fprintf(out,
            ",\"start_time_unix_ns\":%" PRId64 ",\"uptime_seconds\":%" PRId64
            ",\"limits_enforced\":%s,",
            si->start_time_unix_ns, si->uptime_seconds, si->limits_enforced ? "true" : "false");
    json_str(out, "cgroup", si->cgroup);
    fprintf(out,
            ",\"default_limits\":{\"cpu_percent\":%" PRId32 ",\"memory_bytes\":%" PRId64
            ",\"io_bps\":%" PRId64 ",\"memory_high_bytes\":%" PRId64 ",\"pids_max\":%" PRId32 "},",
            l->cpu_percent, l->memory_bytes, l->io_bps, l->memory_high_bytes, l->pids_max);
    json_enum(out, "default_network", jw_fmt_network_name(si->default_network),
              si->default_network);
    fprintf(out,
            ",\"cpus\":%" PRId32 ",\"memory_bytes\":%" PRId64 ",\"max_running\":%" PRId64
            ",\"capacity_memory_bytes\":%" PRId64 ",\"capacity_cpu_percent\":%" PRId64
            ",\"max_queued\":%" PRId64 ",\"max_jobs\":%" PRId64 ",\"max_output_bytes\":%" PRId64
            ",\"max_streams\":%" PRId64 ",\"max_streams_per_job\":%" PRId64
            ",\"max_streams_per_client\":%" PRId64
            ",\"load1\":%.2f,\"load5\":%.2f,\"load15\":%.2f,\"memory_available_bytes\":%" PRId64
            ",\"cpu_pressure\":%.2f,\"memory_pressure\":%.2f,\"io_pressure\":%.2f,\"jobs\":[",
            si->cpus, si->memory_bytes, si->max_running, si->capacity_memory_bytes,
            si->capacity_cpu_percent, si->max_queued, si->max_jobs, si->max_output_bytes,
            si->max_streams, si->max_streams_per_job, si->max_streams_per_client, si->load1,
            si->load5, si->load15, si->memory_available_bytes, si->cpu_pressure,
            si->memory_pressure, si->io_pressure);
    for (size_t i = 0; i < si->n_jobs; i++) {
        fputs(i ? ",{" : "{", out);
        json_enum(out, "status", jw_fmt_status_name(si->jobs[i]->status), si->jobs[i]->status);
        fprintf(out, ",\"count\":%" PRId64 "}", si->jobs[i]->count);
    }
    fprintf(out,
            "],\"running\":%" PRId64 ",\"queued\":%" PRId64 ",\"reserved_memory_bytes\":%" PRId64
            ",\"reserved_cpu_percent\":%" PRId64 ",\"streams_open\":%" PRId64 "}",
            si->running, si->queued, si->reserved_memory_bytes, si->reserved_cpu_percent,
            si->streams_open);
    return check(out);
}

/* "N (SIZE)" or "no limit" for a byte cap. */
static void put_cap_bytes(FILE *out, int64_t v)
{
    char b[32];
    if (v <= 0) {
        fputs("no limit", out);
        return;
    }
    jw_fmt_size(b, sizeof(b), v);
    fputs(b, out);
}

static void put_cap(FILE *out, int64_t v)
{
    if (v <= 0)
        fputs("no limit", out);
    else
        fprintf(out, "%" PRId64, v);
}

int jw_fmt_server_info_human(FILE *out, const Jobworker__V1__ServerInfo *si)
{
    char b[64];
    KEY(out, "version");
    jw_fmt_sanitized(out, si->version);
    fputs(" (", out);
    jw_fmt_sanitized(out, si->build);
    fputs(")\n", out);
    KEY(out, "host");
    jw_fmt_sanitized(out, si->hostname);
    fprintf(out, ", %" PRId32 " CPUs, ", si->cpus);
    jw_fmt_size(b, sizeof(b), si->memory_bytes);
    fprintf(out, "%s RAM\n", b);
    KEY(out, "uptime");
    jw_fmt_duration_ns(b, sizeof(b), si->uptime_seconds * INT64_C(1000000000));
    fprintf(out, "%s\n", b);
    KEY(out, "limits");
    if (si->limits_enforced) {
        fputs("enforced (cgroup v2: ", out);
        jw_fmt_sanitized(out, si->cgroup);
        fputs(")\n", out);
    } else {
        fputs("NOT enforced (--no-cgroups)\n", out);
    }
    if (si->default_limits) {
        const Jobworker__V1__ResourceLimits *l = si->default_limits;
        KEY(out, "default limits");
        fprintf(out, "cpu %" PRId32 "%%, memory ", l->cpu_percent);
        put_cap_bytes(out, l->memory_bytes);
        fprintf(out, ", pids ");
        put_cap(out, l->pids_max);
        fputs(", io ", out);
        put_cap_bytes(out, l->io_bps);
        fputs(l->io_bps > 0 ? "/s\n" : "\n", out);
    }
    KEY(out, "network");
    put_enum(out, jw_fmt_network_name(si->default_network), si->default_network);
    putc('\n', out);
    KEY(out, "capacity");
    fputs("running ", out);
    put_cap(out, si->max_running);
    fputs(", memory ", out);
    put_cap_bytes(out, si->capacity_memory_bytes);
    fputs(", cpu ", out);
    if (si->capacity_cpu_percent > 0)
        fprintf(out, "%" PRId64 "%%", si->capacity_cpu_percent);
    else
        fputs("no limit", out);
    fputs(", queued ", out);
    put_cap(out, si->max_queued);
    putc('\n', out);
    KEY(out, "in use");
    fprintf(out, "%" PRId64 " running, %" PRId64 " queued, memory ", si->running, si->queued);
    jw_fmt_size(b, sizeof(b), si->reserved_memory_bytes);
    fprintf(out, "%s, cpu %" PRId64 "%%, %" PRId64 " streams open\n", b, si->reserved_cpu_percent,
            si->streams_open);
    KEY(out, "caps");
    fputs("jobs ", out);
    put_cap(out, si->max_jobs);
    fputs(", output ", out);
    put_cap_bytes(out, si->max_output_bytes);
    fprintf(out, " per job, streams %" PRId64 " (%" PRId64 " per job, %" PRId64 " per client)\n",
            si->max_streams, si->max_streams_per_job, si->max_streams_per_client);
    KEY(out, "load");
    fprintf(out, "%.2f %.2f %.2f, memory available ", si->load1, si->load5, si->load15);
    jw_fmt_size(b, sizeof(b), si->memory_available_bytes);
    fputs(b, out);
    if (si->cpu_pressure >= 0)
        fprintf(out, ", pressure cpu %.2f%% memory %.2f%% io %.2f%%", si->cpu_pressure,
                si->memory_pressure, si->io_pressure);
    else
        fputs(", no pressure information (/proc/pressure)", out);
    putc('\n', out);
    KEY(out, "jobs");
    for (size_t i = 0; i < si->n_jobs; i++) {
        const char *name = jw_fmt_status_name(si->jobs[i]->status);
        if (i)
            fputs(", ", out);
        fprintf(out, "%" PRId64 " ", si->jobs[i]->count);
        if (name) {
            for (const char *p = name; *p; p++)
                putc(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p, out);
        } else {
            fprintf(out, "%d", si->jobs[i]->status);
        }
    }
    putc('\n', out);
    return check(out);
}
