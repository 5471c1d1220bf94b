#include "job/job.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/sysinfo.h>
#include <unistd.h>

/* The length of the valid UTF-8 sequence at s[0..len), or 0 when it is not one. The table of
 * well-formed byte sequences is Unicode's (Table 3-7): the second byte's range after E0, ED, F0
 * and F4 excludes overlong forms, surrogates and code points above U+10FFFF. */
static size_t utf8_sequence(const unsigned char *s, size_t len)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;
    size_t n;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else
        return 0;
    if (len < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return n;
}

bool job_utf8_valid(const char *s, size_t len, size_t *ret_offset)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t n = utf8_sequence(p + i, len - i);
        if (n == 0) {
            if (ret_offset)
                *ret_offset = i;
            return false;
        }
        i += n;
    }
    return true;
}

/* proto3 `string` fields must hold UTF-8: a job stored with anything else would make every
 * Python, Go or Java client fail to decode GetJob and GetJobs, for every caller. */
static int check_string(const char *field, const char *s, size_t len, size_t max, jw_error *err)
{
    size_t off;
    if (len > max)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL, "%s is %zu bytes, the limit is %zu",
                            field, len, max);
    if (memchr(s, '\0', len) || strlen(s) != len)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "%s contains a NUL byte at position %zu", field, strlen(s));
    if (!job_utf8_valid(s, len, &off))
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "%s is not valid UTF-8 (byte 0x%02x at offset %zu)", field,
                            (unsigned char)s[off], off);
    return 0;
}

int64_t job_exec_args_max(uint64_t rlim_stack)
{
    const uint64_t stk_lim_max = 6ULL * 1024 * 1024; /* _STK_LIM / 4 * 3 */
    const uint64_t arg_max_floor = 128 * 1024;       /* ARG_MAX: 32 pages */
    uint64_t limit = rlim_stack / 4;
    if (limit > stk_lim_max)
        limit = stk_lim_max;
    if (limit < arg_max_floor)
        limit = arg_max_floor;
    return (int64_t)limit;
}

size_t job_argv_total_max(const job_host *host)
{
    size_t max = JOB_ARGV_TOTAL_MAX;
    if (host->exec_args_max > 0) {
        int64_t budget = host->exec_args_max - JOB_EXEC_RESERVE;
        if (budget < 0)
            budget = 0;
        if ((uint64_t)budget < max)
            max = (size_t)budget;
    }
    return max;
}

static int limits_validate(const job_limits *lim, const job_host *host, jw_error *err)
{
    int64_t cpu_max = 100LL * (host->ncpus > 0 ? host->ncpus : 1);
    if (lim->cpu_percent < 0 || lim->cpu_percent > cpu_max)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "limits.cpu_percent %" PRId32 " is out of range 1..%" PRId64
                            " (100 per CPU, %d CPUs)",
                            lim->cpu_percent, cpu_max, host->ncpus);
    if (lim->memory_bytes < 0 || (lim->memory_bytes > 0 && lim->memory_bytes < JOB_MEMORY_MIN) ||
        lim->memory_bytes > host->memory_bytes)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "limits.memory_bytes %" PRId64 " is out of range %lld..%" PRId64
                            " (4 MiB to the host's RAM)",
                            lim->memory_bytes, JOB_MEMORY_MIN, host->memory_bytes);
    if (lim->memory_high_bytes < 0 ||
        (lim->memory_high_bytes > 0 && lim->memory_high_bytes < JOB_MEMORY_MIN) ||
        lim->memory_high_bytes > host->memory_bytes)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "limits.memory_high_bytes %" PRId64 " is out of range %lld..%" PRId64,
                            lim->memory_high_bytes, JOB_MEMORY_MIN, host->memory_bytes);
    if (lim->memory_high_bytes > 0 && lim->memory_bytes > 0 &&
        lim->memory_high_bytes > lim->memory_bytes)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "limits.memory_high_bytes %" PRId64
                            " is above limits.memory_bytes %" PRId64,
                            lim->memory_high_bytes, lim->memory_bytes);
    if (lim->io_bps < 0 || (lim->io_bps > 0 && lim->io_bps < JOB_IO_BPS_MIN) ||
        lim->io_bps > JOB_IO_BPS_MAX)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "limits.io_bps %" PRId64 " is out of range %lld..%lld", lim->io_bps,
                            JOB_IO_BPS_MIN, JOB_IO_BPS_MAX);
    if (lim->pids_max < 0 || lim->pids_max > JOB_PIDS_MAX_MAX)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "limits.pids_max %" PRId32 " is out of range 1..%d", lim->pids_max,
                            JOB_PIDS_MAX_MAX);
    return 0;
}

int job_limits_validate(const job_limits *lim, const job_host *host, jw_error *err)
{
    return limits_validate(lim, host, err);
}

static bool limits_any(const job_limits *l)
{
    return l->cpu_percent || l->memory_bytes || l->io_bps || l->memory_high_bytes || l->pids_max;
}

/* Names the server sets itself and a request may not: HOME is the job's working directory and
 * JOBWORKER_JOB_ID its identity; PATH and LANG are only defaults. */
static const char *const env_reserved[] = {"HOME", "JOBWORKER_JOB_ID"};

/* One "NAME=VALUE" entry of the request's env (already checked as a string). */
static int check_env_entry(size_t i, const char *e, const job_request *req, jw_error *err)
{
    const char *eq = strchr(e, '=');
    size_t nlen = eq ? (size_t)(eq - e) : strlen(e);
    if (!eq)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "env[%zu] '%.64s' is not NAME=VALUE (no '=')", i, e);
    if (nlen == 0)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL, "env[%zu] has an empty name", i);
    if (nlen > JOB_ENV_NAME_MAX)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "env[%zu]: the name is %zu bytes, the limit is %d", i, nlen,
                            JOB_ENV_NAME_MAX);
    for (size_t k = 0; k < nlen; k++) {
        char c = e[k];
        bool ok = c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                  (k > 0 && c >= '0' && c <= '9');
        if (!ok)
            return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                                "env[%zu]: name '%.*s' is not a variable name (letters, digits "
                                "and '_', not starting with a digit)",
                                i, (int)nlen, e);
    }
    for (size_t k = 0; k < sizeof(env_reserved) / sizeof(env_reserved[0]); k++)
        if (strlen(env_reserved[k]) == nlen && memcmp(env_reserved[k], e, nlen) == 0)
            return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                                "env[%zu]: %s is set by the server and cannot be changed", i,
                                env_reserved[k]);
    for (size_t k = 0; k < i; k++)
        if (strncmp(req->env[k], e, nlen + 1) == 0)
            return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                                "env[%zu]: %.*s is already set by env[%zu]", i, (int)nlen, e, k);
    return 0;
}

/* The env entries; adds their bytes (with NULs) to *total. */
static int check_env(const job_request *req, size_t *total, jw_error *err)
{
    if (req->nenv > JOB_ENV_MAX)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "env has %zu entries, the limit is %d", req->nenv, JOB_ENV_MAX);
    for (size_t i = 0; i < req->nenv; i++) {
        size_t len = req->env_len ? req->env_len[i] : strlen(req->env[i]);
        char field[32];
        snprintf(field, sizeof(field), "env[%zu]", i);
        int r = check_string(field, req->env[i], len, JOB_ENV_ENTRY_MAX, err);
        if (r == 0)
            r = check_env_entry(i, req->env[i], req, err);
        if (r < 0)
            return r;
        *total += len + 1;
    }
    return 0;
}

int job_request_validate(const job_request *req, const job_host *host, jw_error *err)
{
    int r;
    if (!req->command || req->command_len == 0 || req->command[0] == '\0')
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL, "command is empty");
    r = check_string("command", req->command, req->command_len, JOB_COMMAND_MAX, err);
    if (r < 0)
        return r;
    if (req->nargs > JOB_ARGC_MAX)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "args has %zu entries, the limit is %d", req->nargs, JOB_ARGC_MAX);
    size_t total = req->command_len + 1;
    for (size_t i = 0; i < req->nargs; i++) {
        size_t len = req->args_len ? req->args_len[i] : strlen(req->args[i]);
        char field[32];
        snprintf(field, sizeof(field), "args[%zu]", i);
        r = check_string(field, req->args[i], len, JOB_ARG_MAX, err);
        if (r < 0) {
            if (len > JOB_ARG_MAX)
                jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                             "%s is %zu bytes, the limit is %d (the kernel's MAX_ARG_STRLEN of "
                             "131072 counts the terminating NUL)",
                             field, len, JOB_ARG_MAX);
            return r;
        }
        total += len + 1;
    }
    size_t total_max = job_argv_total_max(host);
    if (total > total_max)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "command and args are %zu bytes together (each counted with its "
                            "terminating NUL), the limit is %zu",
                            total, total_max);
    r = check_env(req, &total, err);
    if (r < 0)
        return r;
    if (total > total_max)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "command, args and env are %zu bytes together (each counted with "
                            "its terminating NUL), the limit is %zu",
                            total, total_max);
    if (req->timeout_seconds < 0 || req->timeout_seconds > JOB_TIMEOUT_MAX_SECONDS)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "timeout_seconds %" PRId64 " is out of range 0..%d",
                            req->timeout_seconds, JOB_TIMEOUT_MAX_SECONDS);
    if (req->network < JOB_NETWORK_DEFAULT || req->network > JOB_NETWORK_NONE)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "network %d is not a known mode (0 default, 1 host, 2 none)",
                            req->network);
    r = limits_validate(&req->limits, host, err);
    if (r < 0)
        return r;
    if (!host->cgroups && limits_any(&req->limits))
        return jw_error_set(err, JW_FAILED_PRECONDITION, -EINVAL,
                            "limits were requested but the server runs with --no-cgroups: no "
                            "limit can be enforced on this host");
    if (!host->io_controller && req->limits.io_bps > 0)
        return jw_error_set(err, JW_FAILED_PRECONDITION, -EINVAL,
                            "limits.io_bps %" PRId64
                            " was requested but the io controller or a whole-disk device is "
                            "not available on this host",
                            req->limits.io_bps);
    return 0;
}

void job_limits_resolve(job_limits *lim, const job_limits *defaults)
{
    if (!lim->cpu_percent)
        lim->cpu_percent = defaults->cpu_percent;
    if (!lim->memory_bytes)
        lim->memory_bytes = defaults->memory_bytes;
    if (!lim->io_bps)
        lim->io_bps = defaults->io_bps;
    if (!lim->memory_high_bytes)
        lim->memory_high_bytes = defaults->memory_high_bytes;
    if (!lim->pids_max)
        lim->pids_max = defaults->pids_max;
    /* A default memory.high above an explicitly smaller memory.max would be rejected by
     * validation of the request; clamp the inherited value instead of failing the job. */
    if (lim->memory_bytes && lim->memory_high_bytes > lim->memory_bytes)
        lim->memory_high_bytes = lim->memory_bytes;
}

bool job_status_is_final(job_status s)
{
    return s == JOB_STATUS_COMPLETED || s == JOB_STATUS_FAILED || s == JOB_STATUS_STOPPED;
}

bool job_status_can_transition(job_status from, job_status to)
{
    switch (from) {
    case JOB_STATUS_UNSPECIFIED: return to == JOB_STATUS_INITIALIZING || to == JOB_STATUS_QUEUED;
    case JOB_STATUS_QUEUED:
        return to == JOB_STATUS_INITIALIZING || to == JOB_STATUS_STOPPED || to == JOB_STATUS_FAILED;
    case JOB_STATUS_INITIALIZING:
        return to == JOB_STATUS_RUNNING || to == JOB_STATUS_FAILED || to == JOB_STATUS_STOPPED;
    case JOB_STATUS_RUNNING:
        return to == JOB_STATUS_COMPLETED || to == JOB_STATUS_FAILED || to == JOB_STATUS_STOPPED;
    case JOB_STATUS_COMPLETED:
    case JOB_STATUS_FAILED:
    case JOB_STATUS_STOPPED: return false;
    }
    return false;
}

job_status job_status_for_reason(job_reason reason, int exit_code)
{
    if (reason == JOB_REASON_STOPPED)
        return JOB_STATUS_STOPPED;
    if (reason == JOB_REASON_EXITED && exit_code == 0)
        return JOB_STATUS_COMPLETED;
    return JOB_STATUS_FAILED;
}

const char *job_status_name(job_status s)
{
    static const char *const names[] = {"UNSPECIFIED", "INITIALIZING", "RUNNING", "COMPLETED",
                                        "FAILED",      "STOPPED",      "QUEUED"};
    return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "UNSPECIFIED";
}

const char *job_reason_name(job_reason r)
{
    static const char *const names[] = {"UNSPECIFIED",  "EXITED",          "SIGNALED",
                                        "OOM_KILLED",   "STOPPED",         "TIMED_OUT",
                                        "START_FAILED", "SERVER_SHUTDOWN", "SERVER_LOST"};
    return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "UNSPECIFIED";
}

int job_host_probe(job_host *ret)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    struct sysinfo si;
    if (n < 1)
        return -errno;
    if (sysinfo(&si) < 0)
        return -errno;
    struct rlimit rl;
    if (getrlimit(RLIMIT_STACK, &rl) < 0)
        return -errno;
    ret->ncpus = (int)n;
    ret->memory_bytes = (int64_t)si.totalram * si.mem_unit;
    /* The jobs inherit the server's stack limit: job-init and the command are exec'd with it. */
    ret->exec_args_max = job_exec_args_max(rl.rlim_cur);
    return 0;
}
