/* jobctl's rendering of what a server sends (internal/client/format.h): the input is a `Jobs`
 * message as GetJobs returns it; every job is rendered as JSON (-o json), as the human view of
 * `jobctl get`, and the list as the table of `jobctl list`. A server is trusted by jobctl, but the
 * strings in a job (command, args, owner, error) come from other users.
 *
 * Properties, as format.h documents them: JSON output is valid JSON and valid UTF-8 with no raw
 * control character; human text is valid UTF-8 with no control character (C0, DEL, C1) but the
 * line feeds (and the table's padding) the format itself writes. */
#include "fuzz.h"

#include "client/format.h"

#include <ctype.h>

/* ---- A strict JSON validator (RFC 8259), enough to check one document. ---- */

typedef struct json_in {
    const char *p, *end;
    int depth;
} json_in;

static int json_value(json_in *j);

static void json_ws(json_in *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int json_lit(json_in *j, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0)
        return 0;
    j->p += n;
    return 1;
}

static int json_string(json_in *j)
{
    if (j->p >= j->end || *j->p != '"')
        return 0;
    for (j->p++; j->p < j->end; j->p++) {
        unsigned char c = (unsigned char)*j->p;
        if (c == '"') {
            j->p++;
            return 1;
        }
        if (c < 0x20)
            return 0;
        if (c != '\\')
            continue;
        if (++j->p >= j->end)
            return 0;
        if (*j->p == 'u') {
            for (int k = 0; k < 4; k++)
                if (++j->p >= j->end || !isxdigit((unsigned char)*j->p))
                    return 0;
        } else if (!*j->p || !strchr("\"\\/bfnrt", *j->p)) {
            return 0;
        }
    }
    return 0;
}

static int json_number(json_in *j)
{
    const char *s = j->p;
    if (j->p < j->end && *j->p == '-')
        j->p++;
    if (j->p >= j->end || !isdigit((unsigned char)*j->p))
        return 0;
    if (*j->p == '0')
        j->p++;
    else
        while (j->p < j->end && isdigit((unsigned char)*j->p))
            j->p++;
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (j->p >= j->end || !isdigit((unsigned char)*j->p))
            return 0;
        while (j->p < j->end && isdigit((unsigned char)*j->p))
            j->p++;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (j->p >= j->end || !isdigit((unsigned char)*j->p))
            return 0;
        while (j->p < j->end && isdigit((unsigned char)*j->p))
            j->p++;
    }
    return j->p > s;
}

static int json_container(json_in *j, char open, char close)
{
    if (++j->depth > 64)
        return 0;
    j->p++; /* open */
    json_ws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++;
        j->depth--;
        return 1;
    }
    for (;;) {
        json_ws(j);
        if (open == '{') {
            if (!json_string(j))
                return 0;
            json_ws(j);
            if (j->p >= j->end || *j->p != ':')
                return 0;
            j->p++;
        }
        if (!json_value(j))
            return 0;
        json_ws(j);
        if (j->p >= j->end)
            return 0;
        if (*j->p == close) {
            j->p++;
            j->depth--;
            return 1;
        }
        if (*j->p != ',')
            return 0;
        j->p++;
    }
}

static int json_value(json_in *j)
{
    json_ws(j);
    if (j->p >= j->end)
        return 0;
    switch (*j->p) {
    case '{': return json_container(j, '{', '}');
    case '[': return json_container(j, '[', ']');
    case '"': return json_string(j);
    case 't': return json_lit(j, "true");
    case 'f': return json_lit(j, "false");
    case 'n': return json_lit(j, "null");
    default: return json_number(j);
    }
}

static int json_valid(const char *s, size_t len)
{
    json_in j = {s, s + len, 0};
    if (!json_value(&j))
        return 0;
    json_ws(&j);
    return j.p == j.end;
}

/* ---- The checks. ---- */

static void check_json(const char *s, size_t len)
{
    FUZZ_CHECK(strlen(s) == len); /* no NUL byte in the output */
    FUZZ_CHECK(fuzz_utf8_valid((const unsigned char *)s, len, NULL));
    for (size_t i = 0; i < len; i++)
        FUZZ_CHECK((unsigned char)s[i] >= 0x20 && s[i] != 0x7f);
    int c1 = 0;
    fuzz_utf8_valid((const unsigned char *)s, len, &c1);
    FUZZ_CHECK(!c1);
    FUZZ_CHECK(json_valid(s, len));
}

static void check_text(const char *s, size_t len)
{
    FUZZ_CHECK(strlen(s) == len);
    int c1 = 0;
    FUZZ_CHECK(fuzz_utf8_valid((const unsigned char *)s, len, &c1));
    FUZZ_CHECK(!c1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        FUZZ_CHECK(c == '\n' || (c >= 0x20 && c != 0x7f));
    }
}

typedef int (*render_fn)(FILE *out, const void *msg, int64_t now);

static int render_job_json(FILE *out, const void *m, int64_t now)
{
    return jw_fmt_job_json(out, m);
}
static int render_jobs_json(FILE *out, const void *m, int64_t now)
{
    return jw_fmt_jobs_json(out, m);
}
static int render_job_human(FILE *out, const void *m, int64_t now)
{
    return jw_fmt_job_human(out, m, now);
}
static int render_jobs_table(FILE *out, const void *m, int64_t now)
{
    return jw_fmt_jobs_table(out, m);
}

static void render(render_fn fn, const void *msg, int64_t now, int json)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    if (!out)
        abort();
    FUZZ_CHECK(fn(out, msg, now) == 0);
    FUZZ_CHECK(fclose(out) == 0);
    if (json)
        check_json(buf, len);
    else
        check_text(buf, len);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Jobworker__V1__Jobs *jobs = jobworker__v1__jobs__unpack(NULL, size, data);
    if (!jobs)
        return 0;
    /* "Now" for durations of running jobs: fixed, so a crash reproduces. */
    const int64_t now = 1700000000LL * 1000000000LL;
    render(render_jobs_json, jobs, now, 1);
    render(render_jobs_table, jobs, now, 0);
    for (size_t i = 0; i < jobs->n_jobs && i < 16; i++) {
        render(render_job_json, jobs->jobs[i], now, 1);
        render(render_job_human, jobs->jobs[i], now, 0);
    }
    jobworker__v1__jobs__free_unpacked(jobs, NULL);
    return 0;
}
