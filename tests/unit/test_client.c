/* jobctl's library side without a network: JSON escaping and documents, human formatting,
 * flag values, PEM reading and status names (internal/client). */
#include "client/client.h"
#include "client/format.h"
#include "client/options.h"
#include "util/rmtree.h"

#include "certfix.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Captures what a formatter writes; the caller frees the result. */
#define CAPTURE(call_with_out)                                                                     \
    ({                                                                                             \
        char *_buf = NULL;                                                                         \
        size_t _len = 0;                                                                           \
        FILE *out = open_memstream(&_buf, &_len);                                                  \
        assert_non_null(out);                                                                      \
        assert_int_equal(call_with_out, 0);                                                        \
        assert_int_equal(fclose(out), 0);                                                          \
        _buf;                                                                                      \
    })

static void check_json_string(const char *in, size_t len, const char *want)
{
    char *got = CAPTURE(jw_fmt_json_string(out, in, len));
    assert_string_equal(got, want);
    free(got);
}

static void test_json_string(void **state)
{
    (void)state;
    check_json_string("", 0, "\"\"");
    check_json_string("plain text", 10, "\"plain text\"");
    check_json_string("q\"b\\s/", 6, "\"q\\\"b\\\\s/\"");
    check_json_string("a\nb\tc\rd\x01\x1f", 9, "\"a\\u000ab\\u0009c\\u000dd\\u0001\\u001f\"");
    check_json_string("del\x7f", 4, "\"del\\u007f\"");
    /* A NUL inside the bytes is data, not the end. */
    check_json_string("a\0b", 3, "\"a\\u0000b\"");
    /* Valid UTF-8 passes through; C1 controls (U+009B is CSI) are escaped. */
    check_json_string("na\xc3\xafve \xe2\x82\xac \xf0\x9f\x98\x80", 15,
                      "\"na\xc3\xafve \xe2\x82\xac \xf0\x9f\x98\x80\"");
    check_json_string("\xc2\x9b", 2, "\"\\u009b\"");
    check_json_string("\xe2\x80\xa8", 3, "\"\xe2\x80\xa8\"");
    /* Each byte that is not part of a well-formed sequence becomes U+FFFD. */
    check_json_string("\xff", 1, "\"\\ufffd\"");
    check_json_string("a\x80z", 3, "\"a\\ufffdz\"");
    check_json_string("\xc0\xaf", 2, "\"\\ufffd\\ufffd\"");                       /* overlong '/' */
    check_json_string("\xe0\x80\xaf", 3, "\"\\ufffd\\ufffd\\ufffd\"");            /* overlong */
    check_json_string("\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\"");            /* surrogate */
    check_json_string("\xf4\x90\x80\x80", 4, "\"\\ufffd\\ufffd\\ufffd\\ufffd\""); /* > U+10FFFF */
    check_json_string("\xe2\x82", 2, "\"\\ufffd\\ufffd\"");   /* truncated at the end */
    check_json_string("\xe2\x82x", 3, "\"\\ufffd\\ufffdx\""); /* truncated in the middle */
}

static Jobworker__V1__ResourceLimits limits = JOBWORKER__V1__RESOURCE_LIMITS__INIT;
static Jobworker__V1__ResourceUsage usage = JOBWORKER__V1__RESOURCE_USAGE__INIT;
static char *args[] = {"-c", "echo 'hi'\n"};

static Jobworker__V1__Job sample_job(void)
{
    Jobworker__V1__Job job = JOBWORKER__V1__JOB__INIT;
    job.id = "6c45c51f-1dc9-4a4f-8669-0e24a5411be5";
    job.command = "sh";
    job.n_args = 2;
    job.args = args;
    limits.cpu_percent = 150;
    limits.memory_bytes = 64 << 20;
    limits.io_bps = 0;
    limits.memory_high_bytes = 48 << 20;
    limits.pids_max = 100;
    job.limits = &limits;
    job.status = JOBWORKER__V1__JOB_STATUS__JOB_STATUS_FAILED;
    job.reason = JOBWORKER__V1__EXIT_REASON__EXIT_REASON_OOM_KILLED;
    job.pid = 4242;
    job.start_time_unix_ns = INT64_C(1714564800123456789);
    job.end_time_unix_ns = INT64_C(1714564890623456789);
    job.exit_code = 0;
    job.signal = 9;
    job.error = "memory.max reached";
    job.owner = "alice";
    usage.cpu_usec = 1234567;
    usage.memory_peak_bytes = 64 << 20;
    usage.io_read_bytes = 1536;
    usage.io_write_bytes = INT64_C(5000000000);
    job.usage = &usage;
    job.output_bytes = 12;
    job.stdout_bytes = 9;
    job.stderr_bytes = 3;
    job.stdin = 1;
    job.output_dropped_bytes = 7;
    job.network = JOBWORKER__V1__NETWORK_MODE__NETWORK_MODE_NONE;
    job.user = "nobody (65534:65534)";
    static char *env[] = {"A=1", "B=x y"};
    job.env = env;
    job.n_env = 2;
    job.limits_enforced = 1;
    job.timeout_seconds = 90;
    return job;
}

static void test_job_json(void **state)
{
    (void)state;
    Jobworker__V1__Job job = sample_job();
    char *got = CAPTURE(jw_fmt_job_json(out, &job));
    assert_string_equal(
        got,
        "{\"id\":\"6c45c51f-1dc9-4a4f-8669-0e24a5411be5\",\"command\":\"sh\","
        "\"args\":[\"-c\",\"echo 'hi'\\u000a\"],\"env\":[\"A=1\",\"B=x y\"],\"status\":\"FAILED\","
        "\"reason\":\"OOM_KILLED\",\"exit_code\":0,\"signal\":9,\"pid\":4242,"
        "\"owner\":\"alice\",\"error\":\"memory.max reached\","
        "\"start_time_unix_ns\":1714564800123456789,\"end_time_unix_ns\":1714564890623456789,"
        "\"timeout_seconds\":90,\"limits_enforced\":true,\"output_bytes\":12,"
        "\"stdout_bytes\":9,\"stderr_bytes\":3,"
        "\"output_dropped_bytes\":7,\"create_time_unix_ns\":0,\"queue_position\":0,"
        "\"stdin\":true,"
        "\"network\":\"NONE\",\"user\":\"nobody (65534:65534)\","
        "\"limits\":{\"cpu_percent\":150,\"memory_bytes\":67108864,\"io_bps\":0,"
        "\"memory_high_bytes\":50331648,\"pids_max\":100},"
        "\"usage\":{\"cpu_usec\":1234567,\"memory_peak_bytes\":67108864,"
        "\"io_read_bytes\":1536,\"io_write_bytes\":5000000000}}");
    free(got);
}

static void test_job_json_defaults(void **state)
{
    (void)state;
    /* A job with nothing set still has every key; absent submessages are zeros. */
    Jobworker__V1__Job job = JOBWORKER__V1__JOB__INIT;
    job.status = 42; /* from a newer server */
    char *got = CAPTURE(jw_fmt_job_json(out, &job));
    assert_string_equal(
        got, "{\"id\":\"\",\"command\":\"\",\"args\":[],\"env\":[],\"status\":\"42\","
             "\"reason\":\"UNSPECIFIED\",\"exit_code\":0,\"signal\":0,\"pid\":0,\"owner\":\"\","
             "\"error\":\"\",\"start_time_unix_ns\":0,\"end_time_unix_ns\":0,"
             "\"timeout_seconds\":0,\"limits_enforced\":false,\"output_bytes\":0,"
             "\"stdout_bytes\":0,\"stderr_bytes\":0,"
             "\"output_dropped_bytes\":0,\"create_time_unix_ns\":0,\"queue_position\":0,"
             "\"stdin\":false,"
             "\"network\":\"UNSPECIFIED\",\"user\":\"\","
             "\"limits\":{\"cpu_percent\":0,\"memory_bytes\":0,\"io_bps\":0,"
             "\"memory_high_bytes\":0,\"pids_max\":0},"
             "\"usage\":{\"cpu_usec\":0,\"memory_peak_bytes\":0,\"io_read_bytes\":0,"
             "\"io_write_bytes\":0}}");
    free(got);

    Jobworker__V1__Jobs none = JOBWORKER__V1__JOBS__INIT;
    got = CAPTURE(jw_fmt_jobs_json(out, &none));
    assert_string_equal(got, "{\"jobs\":[]}");
    free(got);
}

static void test_enum_names(void **state)
{
    (void)state;
    assert_string_equal(jw_fmt_status_name(2), "RUNNING");
    assert_string_equal(jw_fmt_status_name(0), "UNSPECIFIED");
    assert_string_equal(jw_fmt_reason_name(3), "OOM_KILLED");
    assert_string_equal(jw_fmt_reason_name(7), "SERVER_SHUTDOWN");
    assert_string_equal(jw_fmt_reason_name(8), "SERVER_LOST");
    assert_null(jw_fmt_status_name(99));
    assert_null(jw_fmt_reason_name(-1));
}

static void check_word(const char *in, const char *want)
{
    char *got = CAPTURE(jw_fmt_shell_word(out, in));
    assert_string_equal(got, want);
    free(got);
}

static void test_shell_word(void **state)
{
    (void)state;
    check_word("", "''");
    check_word("/usr/bin/env", "/usr/bin/env");
    check_word("--max=5,a:b@c%d+e", "--max=5,a:b@c%d+e");
    check_word("a b", "'a b'");
    check_word("it's", "'it'\\''s'");
    check_word("$HOME", "'$HOME'");
    check_word("*", "'*'");
    check_word("na\xc3\xafve", "'na\xc3\xafve'");
    check_word("a\nb", "$'a\\nb'");
    check_word("\x1b[31m'x'\\", "$'\\x1b[31m\\'x\\'\\\\'");
    check_word("\xc2\x9b", "$'\\xc2\\x9b'");
    check_word("bad\xff", "$'bad\\xff'");

    char *got = CAPTURE(jw_fmt_command_line(out, "sh", args, 2));
    assert_string_equal(got, "sh -c $'echo \\'hi\\'\\n'");
    free(got);

    got = CAPTURE(jw_fmt_sanitized(out, "ok \x1b]0;title\x07 \xff \xc3\xa9"));
    assert_string_equal(got, "ok \\x1b]0;title\\x07 \\xff \xc3\xa9");
    free(got);
}

static void test_small_renderers(void **state)
{
    (void)state;
    char b[64];
    static const struct {
        int64_t v;
        const char *want;
    } sizes[] = {
        {0, "0 B"},
        {512, "512 B"},
        {1023, "1023 B"},
        {1024, "1 KiB"},
        {1536, "1.5 KiB"},
        {64 << 20, "64 MiB"},
        {3 * 1024 * 1024 + 5, "3.0 MiB"},
        {INT64_C(3) << 29, "1.5 GiB"},
        {INT64_C(1) << 40, "1 TiB"},
        {INT64_MAX, "8.0 EiB"},
    };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        jw_fmt_size(b, sizeof(b), sizes[i].v);
        assert_string_equal(b, sizes[i].want);
    }

    static const struct {
        int64_t ns;
        const char *want;
    } durations[] = {
        {0, "0s"},
        {-5, "0s"},
        {500000, "500us"},
        {15000000, "15ms"},
        {1234000000, "1.234s"},
        {59999000000, "59.999s"},
        {90000000000, "1m30s"},
        {INT64_C(7205) * 1000000000, "2h0m5s"},
    };
    for (size_t i = 0; i < sizeof(durations) / sizeof(durations[0]); i++) {
        jw_fmt_duration_ns(b, sizeof(b), durations[i].ns);
        assert_string_equal(b, durations[i].want);
    }

    jw_fmt_time_iso(b, sizeof(b), INT64_C(1714564800123456789));
    assert_string_equal(b, "2024-05-01T12:00:00.123Z");
    jw_fmt_time_iso_s(b, sizeof(b), INT64_C(1714564800123456789));
    assert_string_equal(b, "2024-05-01T12:00:00Z");
    jw_fmt_time_iso(b, sizeof(b), 0);
    assert_string_equal(b, "-");
}

static void test_job_human(void **state)
{
    (void)state;
    Jobworker__V1__Job job = sample_job();
    char *got = CAPTURE(jw_fmt_job_human(out, &job, 0));
    assert_string_equal(got, "id:              6c45c51f-1dc9-4a4f-8669-0e24a5411be5\n"
                             "command:         sh -c $'echo \\'hi\\'\\n'\n"
                             "environment:     A=1\n"
                             "                 B=x y\n"
                             "status:          FAILED\n"
                             "reason:          OOM_KILLED\n"
                             "exit code:       -\n"
                             "signal:          9 (SIGKILL)\n"
                             "pid:             4242\n"
                             "owner:           alice\n"
                             "runs as:         nobody (65534:65534)\n"
                             "network:         NONE\n"
                             "stdin:           a pipe fed by WriteStdin\n"
                             "started:         2024-05-01T12:00:00.123Z\n"
                             "ended:           2024-05-01T12:01:30.623Z\n"
                             "duration:        1m30s\n"
                             "timeout:         1m30s\n"
                             "limits:          cpu 150%, memory 64 MiB, memory high 48 MiB, io "
                             "unlimited, pids 100\n"
                             "limits enforced: yes\n"
                             "usage:           cpu 1.234s, memory peak 64 MiB, io read 1.5 KiB, "
                             "io write 4.7 GiB\n"
                             "output bytes:    12: stdout 9, stderr 3, 7 more dropped at the "
                             "server's output cap\n"
                             "error:           memory.max reached\n");
    free(got);

    /* A running job: no exit, the duration so far, no error line. */
    Jobworker__V1__Job run = JOBWORKER__V1__JOB__INIT;
    run.id = "x";
    run.command = "sleep";
    run.status = JOBWORKER__V1__JOB_STATUS__JOB_STATUS_RUNNING;
    run.start_time_unix_ns = 1000000000;
    got = CAPTURE(jw_fmt_job_human(out, &run, 3500000000));
    assert_non_null(strstr(got, "\nexit code:       -\n"));
    assert_non_null(strstr(got, "\nended:           -\n"));
    assert_non_null(strstr(got, "\nduration:        2.500s (running)\n"));
    assert_non_null(strstr(got, "\nlimits:          cpu unlimited, memory unlimited, memory high "
                                "unlimited, io unlimited, pids unlimited\n"));
    assert_non_null(strstr(got, "\nlimits enforced: no\n"));
    assert_null(strstr(got, "error:"));
    free(got);
}

static void test_jobs_table(void **state)
{
    (void)state;
    Jobworker__V1__Job a = sample_job();
    Jobworker__V1__Job b = JOBWORKER__V1__JOB__INIT;
    b.id = "short";
    b.command = "echo";
    char *many[40];
    char nums[40][4];
    for (int i = 0; i < 40; i++) {
        snprintf(nums[i], sizeof(nums[i]), "%d", i);
        many[i] = nums[i];
    }
    b.args = many;
    b.n_args = 40;
    b.status = JOBWORKER__V1__JOB_STATUS__JOB_STATUS_COMPLETED;
    b.reason = JOBWORKER__V1__EXIT_REASON__EXIT_REASON_EXITED;
    b.exit_code = 3;
    Jobworker__V1__Job *list[] = {&a, &b};
    Jobworker__V1__Jobs jobs = JOBWORKER__V1__JOBS__INIT;
    jobs.jobs = list;
    jobs.n_jobs = 2;
    char *got = CAPTURE(jw_fmt_jobs_table(out, &jobs));
    assert_string_equal(got, "ID                                    STATUS     REASON/EXIT  OWNER  "
                             "STARTED               "
                             "COMMAND\n"
                             "6c45c51f-1dc9-4a4f-8669-0e24a5411be5  FAILED     OOM_KILLED   alice  "
                             "2024-05-01T12:00:00Z  "
                             "sh -c $'echo \\'hi\\'\\n'\n"
                             "short                                 COMPLETED  exit 3       -      "
                             "-                     "
                             "echo 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16...\n");
    free(got);
}

static void test_options(void **state)
{
    (void)state;
    jw_error err = JW_ERROR_INIT;
    int32_t i32 = -1;
    int64_t i64 = -1;

    assert_int_equal(jw_opt_cpu_percent("--max-cpu", "150", &i32, &err), 0);
    assert_int_equal(i32, 150);
    assert_int_equal(jw_opt_cpu_percent("--max-cpu", "50%", &i32, &err), 0);
    assert_int_equal(i32, 50);
    assert_int_equal(jw_opt_cpu_percent("--max-cpu", "1.5", &i32, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "'1.5' for --max-cpu"));
    assert_int_equal(jw_opt_cpu_percent("--max-cpu", "%", &i32, &err), -EINVAL);
    assert_int_equal(jw_opt_cpu_percent("--max-cpu", "-5", &i32, &err), -ERANGE);
    assert_int_equal(jw_opt_cpu_percent("--max-cpu", "3000000000", &i32, &err), -ERANGE);
    assert_int_equal(i32, 50); /* untouched on failure */

    assert_int_equal(jw_opt_size("--max-memory", "64M", &i64, &err), 0);
    assert_int_equal(i64, 64 << 20);
    assert_int_equal(jw_opt_size("--max-memory", "1G", &i64, &err), 0);
    assert_int_equal(i64, 1 << 30);
    assert_int_equal(jw_opt_size("--max-memory", "12Q", &i64, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "invalid value '12Q' for --max-memory"));

    assert_int_equal(jw_opt_count32("--max-pids", "100", &i32, &err), 0);
    assert_int_equal(i32, 100);
    assert_int_equal(jw_opt_count32("--max-pids", "1e3", &i32, &err), -EINVAL);

    assert_int_equal(jw_opt_offset("--offset", "0", &i64, &err), 0);
    assert_int_equal(i64, 0);
    assert_int_equal(jw_opt_offset("--offset", "-1", &i64, &err), -ERANGE);

    static const struct {
        const char *in;
        int r;
        int32_t want;
    } secs[] = {
        {"30", 0, 30},      {"30s", 0, 30},   {"2m", 0, 120},     {"1h", 0, 3600},
        {"1m30s", 0, 90},   {"500ms", 0, 1},  {"1001ms", 0, 2},   {"0", 0, 0},
        {"1x", -EINVAL, 0}, {"", -EINVAL, 0}, {"-1", -EINVAL, 0}, {"600000h", -ERANGE, 0},
    };
    for (size_t k = 0; k < sizeof(secs) / sizeof(secs[0]); k++) {
        i32 = -1;
        assert_int_equal(jw_opt_duration_s32("--timeout", secs[k].in, &i32, &err), secs[k].r);
        if (secs[k].r == 0)
            assert_int_equal(i32, secs[k].want);
        else
            assert_int_equal(i32, -1);
    }
}

/* jobctl list's flags: --status, --since, --limit and --page-size. */
static void test_list_options(void **state)
{
    (void)state;
    jw_error err = JW_ERROR_INIT;
    uint32_t mask = 0;

    assert_int_equal(jw_opt_status_mask("--status", "running", &mask, &err), 0);
    assert_int_equal(mask, 1u << JOBWORKER__V1__JOB_STATUS__JOB_STATUS_RUNNING);
    assert_int_equal(
        jw_opt_status_mask("--status", "Completed,FAILED,stopped,initializing,failed", &mask, &err),
        0);
    assert_int_equal(mask, (1u << JOBWORKER__V1__JOB_STATUS__JOB_STATUS_COMPLETED) |
                               (1u << JOBWORKER__V1__JOB_STATUS__JOB_STATUS_FAILED) |
                               (1u << JOBWORKER__V1__JOB_STATUS__JOB_STATUS_STOPPED) |
                               (1u << JOBWORKER__V1__JOB_STATUS__JOB_STATUS_INITIALIZING));
    /* A bad name is named, with the valid ones; the mask is untouched. */
    static const struct {
        const char *in, *named;
    } bad[] = {
        {"runing", "'runing'"},
        {"running,finished", "'finished'"},
        {"", "''"},
        {"running,", "''"},
        {",running", "''"},
        {"unspecified", "'unspecified'"},
        {"JOB_STATUS_RUNNING", "'JOB_STATUS_RUNNING'"},
        {"running ", "'running '"},
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        mask = 7;
        assert_int_equal(jw_opt_status_mask("--status", bad[k].in, &mask, &err), -EINVAL);
        assert_int_equal(mask, 7);
        assert_int_equal(err.code, JW_INVALID_ARGUMENT);
        char want[128];
        snprintf(want, sizeof(want),
                 "invalid status %s for --status (expected initializing, "
                 "running, completed, failed, stopped or queued)",
                 bad[k].named);
        assert_string_equal(err.msg, want);
    }

    const int64_t now = 1700000000LL * 1000000000LL;
    int64_t since = -1;
    assert_int_equal(jw_opt_since("--since", "10m", now, &since, &err), 0);
    assert_int_equal(since, now - 600LL * 1000000000LL);
    assert_int_equal(jw_opt_since("--since", "2h", now, &since, &err), 0);
    assert_int_equal(since, now - 7200LL * 1000000000LL);
    assert_int_equal(jw_opt_since("--since", "7d", now, &since, &err), 0);
    assert_int_equal(since, now - 7 * 86400LL * 1000000000LL);
    assert_int_equal(jw_opt_since("--since", "1h30m", now, &since, &err), 0);
    assert_int_equal(since, now - 5400LL * 1000000000LL);
    assert_int_equal(jw_opt_since("--since", "0", now, &since, &err), 0);
    assert_int_equal(since, now);
    /* Before 1970, or too far back for int64 ns: any time (0). */
    assert_int_equal(jw_opt_since("--since", "500000h", now, &since, &err), 0);
    assert_int_equal(since, 0);
    assert_int_equal(jw_opt_since("--since", "100000000000h", now, &since, &err), 0);
    assert_int_equal(since, 0);
    since = -1;
    assert_int_equal(jw_opt_since("--since", "10x", now, &since, &err), -EINVAL);
    assert_string_equal(err.msg,
                        "invalid value '10x' for --since (expected a duration like 10m, 2h or 7d)");
    assert_int_equal(jw_opt_since("--since", "-5m", now, &since, &err), -EINVAL);
    assert_int_equal(jw_opt_since("--since", "", now, &since, &err), -EINVAL);
    assert_int_equal(since, -1);

    int64_t v = -1;
    assert_int_equal(jw_opt_int_range("--limit", "1", 1, INT64_MAX, "N", &v, &err), 0);
    assert_int_equal(v, 1);
    assert_int_equal(jw_opt_int_range("--page-size", "10000", 1, 10000, "N", &v, &err), 0);
    assert_int_equal(v, 10000);
    v = -1;
    static const char *const bad_n[] = {
        "0", "-1", "10001", "1e3", "", " 5", "5 ", "x", "99999999999999999999"};
    for (size_t k = 0; k < sizeof(bad_n) / sizeof(bad_n[0]); k++) {
        assert_int_equal(jw_opt_int_range("--page-size", bad_n[k], 1, 10000,
                                          "a number from 1 to 10000", &v, &err),
                         -EINVAL);
        assert_non_null(strstr(err.msg, "for --page-size (expected a number from 1 to 10000)"));
    }
    assert_int_equal(v, -1);
}

/* A Jobs message as the client gets it: packed and unpacked by protobuf-c. */
static Jobworker__V1__Jobs *unpacked_jobs(const char *const *ids, size_t n, const char *token,
                                          int32_t omitted)
{
    Jobworker__V1__Job js[8];
    Jobworker__V1__Job *ptrs[8];
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++) {
        js[i] = (Jobworker__V1__Job)JOBWORKER__V1__JOB__INIT;
        js[i].id = (char *)ids[i];
        js[i].command = "true";
        ptrs[i] = &js[i];
    }
    Jobworker__V1__Jobs jobs = JOBWORKER__V1__JOBS__INIT;
    jobs.jobs = ptrs;
    jobs.n_jobs = n;
    jobs.next_page_token = (char *)token;
    jobs.jobs_omitted = omitted;
    uint8_t buf[4096];
    size_t len = jobworker__v1__jobs__get_packed_size(&jobs);
    assert_true(len <= sizeof(buf));
    jobworker__v1__jobs__pack(&jobs, buf);
    Jobworker__V1__Jobs *m = jobworker__v1__jobs__unpack(NULL, len, buf);
    assert_non_null(m);
    return m;
}

static void test_jobs_append(void **state)
{
    (void)state;
    static const char *const p1[] = {"c", "b"}, *const p2[] = {"a"};
    Jobworker__V1__Jobs *all = unpacked_jobs(p1, 2, "t1", 0);
    Jobworker__V1__Jobs *page = unpacked_jobs(p2, 1, "t2", 3);
    assert_int_equal(jw_jobs_append(all, &page), 0);
    assert_null(page);
    assert_int_equal(all->n_jobs, 3);
    assert_string_equal(all->jobs[0]->id, "c");
    assert_string_equal(all->jobs[1]->id, "b");
    assert_string_equal(all->jobs[2]->id, "a");
    assert_string_equal(all->next_page_token, "t2");
    assert_int_equal(all->jobs_omitted, 3);

    /* An empty last page: no job added, no token left. */
    page = unpacked_jobs(NULL, 0, "", 0);
    assert_int_equal(jw_jobs_append(all, &page), 0);
    assert_int_equal(all->n_jobs, 3);
    assert_string_equal(all->next_page_token, "");

    /* Appending to an empty first page (its jobs array is NULL). */
    Jobworker__V1__Jobs *empty = unpacked_jobs(NULL, 0, "t0", 0);
    page = unpacked_jobs(p1, 2, "", 0);
    assert_int_equal(jw_jobs_append(empty, &page), 0);
    assert_int_equal(empty->n_jobs, 2);
    assert_string_equal(empty->jobs[1]->id, "b");
    assert_string_equal(empty->next_page_token, "");

    /* The merged table and JSON are those of one listing. */
    char *got = CAPTURE(jw_fmt_jobs_json(out, all));
    assert_non_null(strstr(got, "{\"jobs\":[{\"id\":\"c\","));
    assert_non_null(strstr(got, "},{\"id\":\"a\","));
    free(got);
    jw_jobs_free(all);
    jw_jobs_free(empty); /* ASan/valgrind: nothing leaked, nothing freed twice */
}

static void write_file(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static void test_read_pem(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_client.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    jw_error err = JW_ERROR_INIT;
    char *pem = NULL;

    snprintf(path, sizeof(path), "%s/missing.crt", dir);
    assert_int_equal(
        jw_client_read_pem(path, "client certificate", " (run x or pass --cert)", &pem, &err),
        -ENOENT);
    char want[512];
    snprintf(want, sizeof(want),
             "cannot read client certificate '%s': No such file or directory (run x or pass "
             "--cert)",
             path);
    assert_string_equal(err.msg, want);
    assert_null(pem);

    assert_int_equal(jw_client_read_pem(dir, "CA certificate", NULL, &pem, &err), -EISDIR);

    snprintf(path, sizeof(path), "%s/text", dir);
    write_file(path, "hello\n", 6);
    assert_int_equal(jw_client_read_pem(path, "client key", NULL, &pem, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "not a PEM file"));

    /* Larger than the cap: refused without reading it all. */
    snprintf(path, sizeof(path), "%s/big", dir);
    write_file(path, "-----BEGIN ", 11);
    assert_int_equal(truncate(path, JW_CLIENT_PEM_MAX + 1), 0);
    assert_int_equal(jw_client_read_pem(path, "client key", NULL, &pem, &err), -EFBIG);
    assert_non_null(strstr(err.msg, "larger than 1 MiB"));

    /* Exactly at the cap is fine. */
    assert_int_equal(truncate(path, JW_CLIENT_PEM_MAX), 0);
    assert_int_equal(jw_client_read_pem(path, "client key", NULL, &pem, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "not a PEM file")); /* the NULs make it so */

    snprintf(path, sizeof(path), "%s/ok.crt", dir);
    const char ok[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    write_file(path, ok, sizeof(ok) - 1);
    assert_int_equal(jw_client_read_pem(path, "client certificate", NULL, &pem, &err), 0);
    assert_string_equal(pem, ok);
    free(pem);

    assert_int_equal(rm_tree_at(AT_FDCWD, dir), 0);
}

/* A certificate and a key that do not belong together used to reach gRPC, whose first call then
 * failed with "UNAVAILABLE: empty address list"; now jw_client_new refuses them, naming both. */
static void test_client_files(void **state)
{
    (void)state;
    char root[PATH_MAX], dir[] = "/tmp/test_client_certs.XXXXXX";
    certfix_find_repo_root(root, sizeof(root));
    if (!certfix_has_script(root))
        skip();
    assert_non_null(mkdtemp(dir));
    char certs[sizeof(dir) + 8];
    snprintf(certs, sizeof(certs), "%s/c", dir);
    assert_int_equal(certfix_gen_certs(root, certs), 0);
    char crt[256], key[256], other[256], ca[256], want[1024];
    snprintf(crt, sizeof(crt), "%s/admin.crt", certs);
    snprintf(key, sizeof(key), "%s/admin.key", certs);
    snprintf(other, sizeof(other), "%s/viewer.key", certs);
    snprintf(ca, sizeof(ca), "%s/ca.crt", certs);
    jw_client_config cfg = {
        .server = "127.0.0.1:1", .cert_path = crt, .key_path = other, .ca_path = ca};
    jw_client *c = NULL;
    jw_error err = JW_ERROR_INIT;

    assert_int_equal(jw_client_new(&cfg, &c, &err), -EKEYREJECTED);
    assert_null(c);
    assert_int_equal(err.code, JW_INVALID_ARGUMENT);
    snprintf(want, sizeof(want), "the key '%s' does not match the certificate '%s'", other, crt);
    assert_string_equal(err.msg, want);

    /* The key given as the certificate, a key as the CA bundle: each named. */
    cfg.key_path = key;
    cfg.cert_path = key;
    assert_int_equal(jw_client_new(&cfg, &c, &err), -EINVAL);
    assert_non_null(strstr(err.msg, key));
    assert_non_null(strstr(err.msg, "not a PEM X.509 certificate"));
    cfg.cert_path = crt;
    cfg.ca_path = key;
    assert_int_equal(jw_client_new(&cfg, &c, &err), -EINVAL);
    snprintf(want, sizeof(want), "CA file '%s' holds no certificate", key);
    assert_string_equal(err.msg, want);

    cfg.ca_path = ca;
    assert_int_equal(jw_client_new(&cfg, &c, &err), 0);
    assert_non_null(c);
    c = jw_client_free(c);
    certfix_rm_rf(dir);
}

static void test_code_names(void **state)
{
    (void)state;
    assert_string_equal(jw_client_code_name(JW_OK), "OK");
    assert_string_equal(jw_client_code_name((jw_code)4), "DEADLINE_EXCEEDED");
    assert_string_equal(jw_client_code_name(JW_PERMISSION_DENIED), "PERMISSION_DENIED");
    assert_string_equal(jw_client_code_name((jw_code)15), "DATA_LOSS");
    assert_string_equal(jw_client_code_name(JW_UNAUTHENTICATED), "UNAUTHENTICATED");
    assert_string_equal(jw_client_code_name((jw_code)99), "UNKNOWN");
}

/* jobctl info's two forms of one ServerInfo. */
static void test_server_info(void **state)
{
    (void)state;
    Jobworker__V1__ServerInfo si = JOBWORKER__V1__SERVER_INFO__INIT;
    Jobworker__V1__ResourceLimits lim = JOBWORKER__V1__RESOURCE_LIMITS__INIT;
    lim.cpu_percent = 100;
    lim.memory_bytes = 512 << 20;
    si.version = "0.6.0";
    si.build = "gcc 12.2.0, SQLite 3.40.1, gRPC core 29.0.0";
    si.hostname = "h\x01st";
    si.uptime_seconds = 90;
    si.limits_enforced = 1;
    si.cgroup = "/sys/fs/cgroup/jobworker";
    si.default_limits = &lim;
    si.default_network = JOBWORKER__V1__NETWORK_MODE__NETWORK_MODE_NONE;
    si.cpus = 2;
    si.memory_bytes = INT64_C(2) << 30;
    si.max_running = 8;
    si.max_queued = 10000;
    si.load1 = 0.5;
    si.memory_available_bytes = INT64_C(1) << 30;
    si.cpu_pressure = -1;
    Jobworker__V1__JobCount running = JOBWORKER__V1__JOB_COUNT__INIT, done = running;
    running.status = JOBWORKER__V1__JOB_STATUS__JOB_STATUS_RUNNING;
    running.count = 3;
    done.status = JOBWORKER__V1__JOB_STATUS__JOB_STATUS_COMPLETED;
    done.count = 40;
    Jobworker__V1__JobCount *jobs[] = {&running, &done};
    si.jobs = jobs;
    si.n_jobs = 2;
    si.running = 3;
    si.streams_open = 1;
    char *got = CAPTURE(jw_fmt_server_info_human(out, &si));
    assert_non_null(
        strstr(got, "version:         0.6.0 (gcc 12.2.0, SQLite 3.40.1, gRPC core 29.0.0)\n"));
    assert_non_null(strstr(got, "host:            h\\x01st, 2 CPUs, 2 GiB RAM\n"));
    assert_non_null(
        strstr(got, "limits:          enforced (cgroup v2: /sys/fs/cgroup/jobworker)\n"));
    assert_non_null(
        strstr(got, "capacity:        running 8, memory no limit, cpu no limit, queued 10000\n"));
    assert_non_null(strstr(got, "no pressure information"));
    assert_non_null(strstr(got, "jobs:            3 running, 40 completed\n"));
    free(got);
    got = CAPTURE(jw_fmt_server_info_json(out, &si));
    assert_non_null(strstr(got, "\"hostname\":\"h\\u0001st\""));
    assert_non_null(strstr(got, "\"default_network\":\"NONE\""));
    assert_non_null(strstr(got, "\"jobs\":[{\"status\":\"RUNNING\",\"count\":3},"
                                "{\"status\":\"COMPLETED\",\"count\":40}]"));
    assert_non_null(strstr(got, "\"cpu_pressure\":-1.00"));
    free(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_string),       cmocka_unit_test(test_job_json),
        cmocka_unit_test(test_job_json_defaults), cmocka_unit_test(test_enum_names),
        cmocka_unit_test(test_shell_word),        cmocka_unit_test(test_small_renderers),
        cmocka_unit_test(test_server_info),       cmocka_unit_test(test_job_human),
        cmocka_unit_test(test_jobs_table),        cmocka_unit_test(test_options),
        cmocka_unit_test(test_read_pem),          cmocka_unit_test(test_code_names),
        cmocka_unit_test(test_client_files),      cmocka_unit_test(test_list_options),
        cmocka_unit_test(test_jobs_append),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
