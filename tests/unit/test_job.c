/* Validation table and state machine of internal/job. */
#include "job/job.h"
#include "rpc/codec.h"

#include <errno.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

static const job_host host = {
    .ncpus = 2, .memory_bytes = 8LL << 30, .cgroups = true, .io_controller = true};

typedef struct vcase {
    const char *name;
    job_limits limits;
    int64_t timeout;
    bool ok;
    const char *msg_has; /* a substring the error must contain: the field and the value */
} vcase;

static const vcase limit_cases[] = {
    {"defaults", {0}, 0, true, NULL},
    {"cpu 1", {.cpu_percent = 1}, 0, true, NULL},
    {"cpu max", {.cpu_percent = 200}, 0, true, NULL},
    {"cpu above cpus", {.cpu_percent = 201}, 0, false, "cpu_percent 201"},
    {"cpu negative", {.cpu_percent = -5}, 0, false, "cpu_percent -5"},
    {"memory 4MiB", {.memory_bytes = 4 << 20}, 0, true, NULL},
    {"memory below 4MiB", {.memory_bytes = (4 << 20) - 1}, 0, false, "memory_bytes 4194303"},
    {"memory = RAM", {.memory_bytes = 8LL << 30}, 0, true, NULL},
    {"memory above RAM", {.memory_bytes = (8LL << 30) + 1}, 0, false, "memory_bytes 8589934593"},
    {"memory negative", {.memory_bytes = -1}, 0, false, "memory_bytes -1"},
    {"memory_high <= memory",
     {.memory_bytes = 64 << 20, .memory_high_bytes = 32 << 20},
     0,
     true,
     NULL},
    {"memory_high alone", {.memory_high_bytes = 32 << 20}, 0, true, NULL},
    {"memory_high above memory",
     {.memory_bytes = 32 << 20, .memory_high_bytes = 64 << 20},
     0,
     false,
     "memory_high_bytes 67108864 is above limits.memory_bytes 33554432"},
    {"memory_high negative", {.memory_high_bytes = -7}, 0, false, "memory_high_bytes -7"},
    {"memory_high tiny", {.memory_high_bytes = 100}, 0, false, "memory_high_bytes 100"},
    {"io ok", {.io_bps = 4 << 20}, 0, true, NULL},
    {"io too small", {.io_bps = 100}, 0, false, "io_bps 100"},
    {"io negative", {.io_bps = -1}, 0, false, "io_bps -1"},
    {"io too large", {.io_bps = (1LL << 50) + 1}, 0, false, "io_bps 1125899906842625"},
    {"pids ok", {.pids_max = 32}, 0, true, NULL},
    {"pids negative", {.pids_max = -1}, 0, false, "pids_max -1"},
    {"pids too large", {.pids_max = 4194305}, 0, false, "pids_max 4194305"},
    {"timeout ok", {0}, 60, true, NULL},
    {"timeout negative", {0}, -1, false, "timeout_seconds -1"},
    {"timeout too large", {0}, 366LL * 24 * 3600 + 1, false, "timeout_seconds 31622401"},
};

static void test_limits_table(void **state)
{
    (void)state;
    const char *args[] = {"1"};
    for (size_t i = 0; i < sizeof(limit_cases) / sizeof(limit_cases[0]); i++) {
        const vcase *c = &limit_cases[i];
        job_request req = {.command = "sleep",
                           .command_len = 5,
                           .args = args,
                           .nargs = 1,
                           .limits = c->limits,
                           .timeout_seconds = c->timeout};
        jw_error err = JW_ERROR_INIT;
        int r = job_request_validate(&req, &host, &err);
        if (c->ok) {
            if (r != 0)
                fail_msg("case '%s' rejected: %s", c->name, err.msg);
        } else {
            if (r == 0)
                fail_msg("case '%s' accepted", c->name);
            assert_int_equal(err.code, JW_INVALID_ARGUMENT);
            if (!strstr(err.msg, c->msg_has))
                fail_msg("case '%s': message '%s' lacks '%s'", c->name, err.msg, c->msg_has);
        }
    }
}

static void expect_invalid(const job_request *req, const char *has)
{
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(job_request_validate(req, &host, &err), -EINVAL);
    assert_int_equal(err.code, JW_INVALID_ARGUMENT);
    if (!strstr(err.msg, has))
        fail_msg("message '%s' lacks '%s'", err.msg, has);
}

static void test_command_rules(void **state)
{
    (void)state;
    job_request req = {.command = "", .command_len = 0};
    expect_invalid(&req, "command is empty");

    /* A NUL inside the command: the wire length is longer than strlen. */
    req.command = "ab\0cd";
    req.command_len = 5;
    expect_invalid(&req, "command contains a NUL byte at position 2");

    size_t big = JOB_COMMAND_MAX + 1;
    char *cmd = malloc(big + 1);
    memset(cmd, 'x', big);
    cmd[big] = '\0';
    req.command = cmd;
    req.command_len = big;
    expect_invalid(&req, "command is 4097 bytes, the limit is 4096");
    free(cmd);
}

static void test_args_rules(void **state)
{
    (void)state;
    /* The kernel's MAX_ARG_STRLEN (131072) counts the NUL: 131071 bytes is the longest argument
     * execve takes, 131072 used to pass validation and fail at exec with E2BIG. */
    assert_int_equal(JOB_ARG_MAX, 131071);
    char *big = malloc(131072 + 1);
    memset(big, 'a', 131072);
    big[131072] = '\0';
    const char *args[] = {"ok", big};
    job_request req = {.command = "echo", .command_len = 4, .args = args, .nargs = 2};
    expect_invalid(&req, "args[1] is 131072 bytes, the limit is 131071");
    expect_invalid(&req, "MAX_ARG_STRLEN");

    big[131071] = '\0'; /* exactly the limit is fine */
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(job_request_validate(&req, &host, &err), 0);

    const char *nul_args[] = {"a", "b\0c"};
    size_t lens[] = {1, 3};
    job_request nreq = {
        .command = "echo", .command_len = 4, .args = nul_args, .args_len = lens, .nargs = 2};
    expect_invalid(&nreq, "args[1] contains a NUL byte at position 1");

    /* Total argv over 1 MiB from arguments each under the single limit. */
    size_t n = 9;
    const char **many = calloc(n, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        many[i] = big;
    job_request treq = {.command = "echo", .command_len = 4, .args = many, .nargs = n};
    expect_invalid(&treq, "the limit is 1048576");
    free(many);

    job_request creq = {
        .command = "echo", .command_len = 4, .args = args, .nargs = JOB_ARGC_MAX + 1};
    expect_invalid(&creq, "args has 4097 entries");
    free(big);
}

/* Exactly JOB_ARGV_TOTAL_MAX passes, one byte more does not; a host with a small stack limit
 * lowers the cap to what its execve accepts minus the server's reserve. */
static void test_argv_total(void **state)
{
    (void)state;
    /* "echo\0" + 7 args of 131071+1 + one filler arg: exactly 1 MiB with the NULs. */
    size_t used = 5 + 7 * 131072;
    size_t filler = JOB_ARGV_TOTAL_MAX - used - 1;
    char *big = malloc(131072);
    memset(big, 'b', 131071);
    big[131071] = '\0';
    char *fill = malloc(filler + 2);
    memset(fill, 'f', filler + 1);
    fill[filler] = '\0';
    const char *args[8] = {big, big, big, big, big, big, big, fill};
    job_request req = {.command = "echo", .command_len = 4, .args = args, .nargs = 8};
    jw_error err = JW_ERROR_INIT;
    if (job_request_validate(&req, &host, &err) != 0)
        fail_msg("a request of exactly %d bytes was refused: %s", JOB_ARGV_TOTAL_MAX, err.msg);
    fill[filler] = 'f';
    fill[filler + 1] = '\0';
    expect_invalid(&req, "command and args are 1048577 bytes together");

    /* The kernel's budget: a quarter of the stack limit, between 128 KiB and 6 MiB. */
    assert_int_equal(job_exec_args_max(8ULL << 20), 2LL << 20);
    assert_int_equal(job_exec_args_max(~0ULL), 6LL << 20);
    assert_int_equal(job_exec_args_max(64 << 10), 128 << 10);
    job_host small = host;
    small.exec_args_max = job_exec_args_max(2ULL << 20); /* ulimit -s 2048: 512 KiB */
    assert_int_equal(job_argv_total_max(&small), (512 - 128) * 1024);
    fill[filler] = '\0';
    assert_int_equal(job_request_validate(&req, &small, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "the limit is 393216"));
    small.exec_args_max = job_exec_args_max(8ULL << 20);
    assert_int_equal(job_argv_total_max(&small), JOB_ARGV_TOTAL_MAX);
    free(fill);
    free(big);
}

typedef struct ucase {
    const char *bytes;
    size_t len;
    bool ok;
    size_t bad_offset;
} ucase;

#define U(s, ok, off)                                                                              \
    {                                                                                              \
        s, sizeof(s) - 1, ok, off                                                                  \
    }

static const ucase utf8_cases[] = {
    U("", true, 0),
    U("plain ascii", true, 0),
    U("caf\xc3\xa9", true, 0),        /* U+00E9 */
    U("\xe2\x82\xac", true, 0),       /* U+20AC */
    U("\xef\xbf\xbf", true, 0),       /* U+FFFF */
    U("\xf0\x9f\x98\x80", true, 0),   /* U+1F600 */
    U("\xf4\x8f\xbf\xbf", true, 0),   /* U+10FFFF, the last code point */
    U("\xed\x9f\xbf", true, 0),       /* U+D7FF, just below the surrogates */
    U("\xee\x80\x80", true, 0),       /* U+E000, just above */
    U("ab\xff", false, 2),            /* never valid */
    U("\xfe", false, 0),              /* never valid */
    U("a\x80", false, 1),             /* a lone continuation byte */
    U("\xc0\xaf", false, 0),          /* overlong '/' */
    U("\xc1\xbf", false, 0),          /* overlong */
    U("\xe0\x80\xaf", false, 0),      /* overlong, 3 bytes */
    U("\xe0\x9f\xbf", false, 0),      /* overlong U+07FF */
    U("\xf0\x80\x80\xaf", false, 0),  /* overlong, 4 bytes */
    U("\xf0\x8f\xbf\xbf", false, 0),  /* overlong U+FFFF */
    U("\xed\xa0\x80", false, 0),      /* U+D800, a surrogate */
    U("\xed\xbf\xbf", false, 0),      /* U+DFFF */
    U("x\xf4\x90\x80\x80", false, 1), /* U+110000 */
    U("\xf5\x80\x80\x80", false, 0),  /* above U+10FFFF */
    U("ok\xe2\x82", false, 2),        /* truncated at the end */
    U("\xe2\x28\xa1", false, 0),      /* bad continuation */
    U("\xc3\xa9\xc3", false, 2),      /* truncated after a valid one */
};

static void test_utf8(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(utf8_cases) / sizeof(utf8_cases[0]); i++) {
        const ucase *c = &utf8_cases[i];
        size_t off = 12345;
        bool ok = job_utf8_valid(c->bytes, c->len, &off);
        if (ok != c->ok)
            fail_msg("case %zu: valid=%d, expected %d", i, ok, c->ok);
        if (!ok && off != c->bad_offset)
            fail_msg("case %zu: offset %zu, expected %zu", i, off, c->bad_offset);
    }
}

static void test_utf8_request(void **state)
{
    (void)state;
    const char *args[] = {"a", "b", "hello\xff"};
    job_request req = {.command = "echo", .command_len = 4, .args = args, .nargs = 3};
    expect_invalid(&req, "args[2] is not valid UTF-8 (byte 0xff at offset 5)");

    const char *good[] = {"caf\xc3\xa9", "\xf0\x9f\x98\x80"};
    job_request ok = {.command = "echo", .command_len = 4, .args = good, .nargs = 2};
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(job_request_validate(&ok, &host, &err), 0);

    job_request creq = {.command = "ec\xed\xa0\x80"
                                   "ho",
                        .command_len = 7};
    expect_invalid(&creq, "command is not valid UTF-8 (byte 0xed at offset 2)");
    creq.command = "\xc0\xaf"
                   "bin/sh";
    creq.command_len = 8;
    expect_invalid(&creq, "command is not valid UTF-8 (byte 0xc0 at offset 0)");
}

/* The Job message as callers get it (rpc/codec): the host pid of job-init for admins, 0 for
 * viewers (docs/api.md, "Job.pid"); everything else the same. */
/* The extra environment: NAME=VALUE with a variable name, no NUL, caps on entries and bytes,
 * HOME and JOBWORKER_JOB_ID the server's, no name twice; PATH and LANG may be changed. */
static void test_env_rules(void **state)
{
    (void)state;
    const char *ok[] = {"A=1", "_x9=", "PATH=/opt/bin", "LANG=de_DE.UTF-8", "EMPTY="};
    job_request req = {.command = "true", .command_len = 4, .env = ok, .nenv = 5};
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(job_request_validate(&req, &host, &err), 0);
    struct {
        const char *entry, *has;
    } bad[] = {
        {"NOEQUALS", "env[1] 'NOEQUALS' is not NAME=VALUE (no '=')"},
        {"=x", "env[1] has an empty name"},
        {"1A=x", "env[1]: name '1A' is not a variable name"},
        {"A-B=x", "env[1]: name 'A-B' is not a variable name"},
        {"HOME=/root", "env[1]: HOME is set by the server and cannot be changed"},
        {"JOBWORKER_JOB_ID=x", "env[1]: JOBWORKER_JOB_ID is set by the server"},
        {"A=2", "env[1]: A is already set by env[0]"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *two[] = {"A=1", bad[i].entry};
        job_request r = {.command = "true", .command_len = 4, .env = two, .nenv = 2};
        expect_invalid(&r, bad[i].has);
    }
    const char *nul[] = {"A=x"};
    size_t nul_len[] = {4}; /* "A=x\0" on the wire */
    job_request nr = {
        .command = "true", .command_len = 4, .env = nul, .env_len = nul_len, .nenv = 1};
    expect_invalid(&nr, "env[0] contains a NUL byte");
    char *big = malloc(JOB_ENV_ENTRY_MAX + 2);
    memset(big, 'v', JOB_ENV_ENTRY_MAX + 1);
    big[0] = 'B';
    big[1] = '=';
    big[JOB_ENV_ENTRY_MAX + 1] = '\0';
    const char *bigv[] = {big};
    job_request br = {.command = "true", .command_len = 4, .env = bigv, .nenv = 1};
    expect_invalid(&br, "env[0] is 32769 bytes, the limit is 32768");
    free(big);
    const char *many[JOB_ENV_MAX + 1];
    for (size_t i = 0; i <= JOB_ENV_MAX; i++)
        many[i] = "X=1";
    job_request mr = {.command = "true", .command_len = 4, .env = many, .nenv = JOB_ENV_MAX + 1};
    expect_invalid(&mr, "env has 257 entries, the limit is 256");
}

static void test_codec_job_view(void **state)
{
    (void)state;
    const char *args[] = {"1"};
    const char *env[] = {"TOKEN=secret"};
    store_job_info info = {.id = "00000000-0000-4000-8000-000000000001",
                           .command = "sleep",
                           .args = args,
                           .nargs = 1,
                           .env = env,
                           .nenv = 1,
                           .owner = "alice",
                           .user = "nobody (65534:65534)",
                           .status = JOB_STATUS_RUNNING,
                           .pid = 4242,
                           .start_time_ns = 7};
    Jobworker__V1__Job admin, viewer;
    Jobworker__V1__ResourceLimits la, lv;
    Jobworker__V1__ResourceUsage ua, uv;
    codec_job_view(&info, true, &admin, &la, &ua);
    codec_job_view(&info, false, &viewer, &lv, &uv);
    assert_int_equal(admin.pid, 4242);
    assert_int_equal(viewer.pid, 0);
    assert_int_equal(admin.n_env, 1); /* the environment: admins only */
    assert_string_equal(admin.env[0], "TOKEN=secret");
    assert_int_equal(viewer.n_env, 0);
    assert_string_equal(viewer.id, info.id);
    assert_int_equal(viewer.status, JOB_STATUS_RUNNING);
    assert_int_equal(viewer.start_time_unix_ns, 7);
    assert_string_equal(viewer.owner, "alice");
}

static void test_no_cgroups(void **state)
{
    (void)state;
    job_host h = host;
    h.cgroups = false;
    job_request req = {.command = "true", .command_len = 4};
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(job_request_validate(&req, &h, &err), 0);
    req.limits.memory_bytes = 64 << 20;
    assert_int_equal(job_request_validate(&req, &h, &err), -EINVAL);
    assert_int_equal(err.code, JW_FAILED_PRECONDITION);
    assert_non_null(strstr(err.msg, "--no-cgroups"));

    h.cgroups = true;
    h.io_controller = false;
    req.limits = (job_limits){.io_bps = 1 << 20};
    assert_int_equal(job_request_validate(&req, &h, &err), -EINVAL);
    assert_int_equal(err.code, JW_FAILED_PRECONDITION);
    assert_non_null(strstr(err.msg, "io_bps 1048576"));
}

static void test_resolve(void **state)
{
    (void)state;
    job_limits def = {
        .cpu_percent = 100, .memory_bytes = 512 << 20, .memory_high_bytes = 256 << 20};
    job_limits l = {.memory_bytes = 64 << 20};
    job_limits_resolve(&l, &def);
    assert_int_equal(l.cpu_percent, 100);
    assert_int_equal(l.memory_bytes, 64 << 20);
    /* The inherited memory.high is clamped to the smaller explicit memory.max. */
    assert_int_equal(l.memory_high_bytes, 64 << 20);
    assert_int_equal(l.io_bps, 0);
    assert_int_equal(l.pids_max, 0);
}

static void test_state_machine(void **state)
{
    (void)state;
    const job_status all[] = {JOB_STATUS_UNSPECIFIED, JOB_STATUS_INITIALIZING, JOB_STATUS_RUNNING,
                              JOB_STATUS_COMPLETED,   JOB_STATUS_FAILED,       JOB_STATUS_STOPPED};
    /* allowed[from][to] */
    const bool allowed[6][6] = {
        [JOB_STATUS_UNSPECIFIED] = {[JOB_STATUS_INITIALIZING] = true},
        [JOB_STATUS_INITIALIZING] =
            {[JOB_STATUS_RUNNING] = true, [JOB_STATUS_FAILED] = true, [JOB_STATUS_STOPPED] = true},
        [JOB_STATUS_RUNNING] = {[JOB_STATUS_COMPLETED] = true,
                                [JOB_STATUS_FAILED] = true,
                                [JOB_STATUS_STOPPED] = true},
    };
    for (size_t f = 0; f < 6; f++)
        for (size_t t = 0; t < 6; t++)
            if (job_status_can_transition(all[f], all[t]) != allowed[f][t])
                fail_msg("%s -> %s", job_status_name(all[f]), job_status_name(all[t]));
    assert_true(job_status_is_final(JOB_STATUS_COMPLETED));
    assert_true(job_status_is_final(JOB_STATUS_STOPPED));
    assert_false(job_status_is_final(JOB_STATUS_RUNNING));

    assert_int_equal(job_status_for_reason(JOB_REASON_EXITED, 0), JOB_STATUS_COMPLETED);
    assert_int_equal(job_status_for_reason(JOB_REASON_EXITED, 3), JOB_STATUS_FAILED);
    assert_int_equal(job_status_for_reason(JOB_REASON_SIGNALED, 0), JOB_STATUS_FAILED);
    assert_int_equal(job_status_for_reason(JOB_REASON_OOM_KILLED, 0), JOB_STATUS_FAILED);
    assert_int_equal(job_status_for_reason(JOB_REASON_STOPPED, 0), JOB_STATUS_STOPPED);
    assert_int_equal(job_status_for_reason(JOB_REASON_TIMED_OUT, 0), JOB_STATUS_FAILED);
    assert_int_equal(job_status_for_reason(JOB_REASON_START_FAILED, 127), JOB_STATUS_FAILED);
    assert_int_equal(job_status_for_reason(JOB_REASON_SERVER_SHUTDOWN, 0), JOB_STATUS_FAILED);
    assert_string_equal(job_reason_name(JOB_REASON_OOM_KILLED), "OOM_KILLED");
    assert_string_equal(job_status_name(JOB_STATUS_RUNNING), "RUNNING");
}

static void test_host_probe(void **state)
{
    (void)state;
    job_host h = {0};
    assert_int_equal(job_host_probe(&h), 0);
    assert_true(h.ncpus >= 1);
    assert_true(h.memory_bytes >= 64LL << 20);
    assert_true(h.exec_args_max >= 128 << 10 && h.exec_args_max <= 6 << 20);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limits_table),   cmocka_unit_test(test_command_rules),
        cmocka_unit_test(test_args_rules),     cmocka_unit_test(test_argv_total),
        cmocka_unit_test(test_utf8),           cmocka_unit_test(test_utf8_request),
        cmocka_unit_test(test_codec_job_view), cmocka_unit_test(test_no_cgroups),
        cmocka_unit_test(test_resolve),        cmocka_unit_test(test_state_machine),
        cmocka_unit_test(test_host_probe),     cmocka_unit_test(test_env_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
