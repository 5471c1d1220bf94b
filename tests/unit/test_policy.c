/* internal/config/policy: the policy file's format, its errors (file, line and bad value in
 * every message), its caps, quota precedence and the executable allow-list. */
#include "config/policy.h"
#include "util/cleanup.h"
#include "util/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>

/* A growable string for generated files. */
typedef struct text {
    char *s;
    size_t len, cap;
} text;

__attribute__((format(printf, 2, 3))) static void text_add(text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    assert_true(n >= 0);
    if (t->len + (size_t)n + 1 > t->cap) {
        t->cap = (t->len + (size_t)n + 1) * 2;
        t->s = realloc(t->s, t->cap);
        assert_non_null(t->s);
    }
    va_start(ap, fmt);
    vsnprintf(t->s + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

static void make_tmpdir(char *buf, size_t size)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(buf, size, "%s/jw-test-policy-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(buf));
}

static void write_file(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write_full(fd, data, len), 0);
    close(fd);
}

/* Parses text that must be refused; checks the code, that *ret is untouched and that the
 * message has every one of the NULL-terminated strings. */
static void expect_error(const char *conf, int want_r, ...)
{
    jw_error err = JW_ERROR_INIT;
    policy *p = (policy *)&err; /* a sentinel: must not be written */
    int r = policy_parse("t.conf", conf, &p, &err);
    if (r != want_r || err.code != JW_INVALID_ARGUMENT)
        fail_msg("policy_parse of \"%s\" returned %d code %d (%s), want %d", conf, r, err.code,
                 err.msg, want_r);
    assert_ptr_equal(p, (policy *)&err);
    va_list ap;
    va_start(ap, want_r);
    for (const char *want; (want = va_arg(ap, const char *));)
        if (!strstr(err.msg, want))
            fail_msg("message \"%s\" lacks \"%s\" (file \"%s\")", err.msg, want, conf);
    va_end(ap);
}

static policy *parse_ok(const char *conf)
{
    jw_error err = JW_ERROR_INIT;
    policy *p = NULL;
    int r = policy_parse("t.conf", conf, &p, &err);
    if (r != 0)
        fail_msg("policy_parse of \"%s\" failed: %d %s", conf, r, err.msg);
    assert_non_null(p);
    return p;
}

#define QUOTA(p, owner, role)                                                                      \
    ({                                                                                             \
        policy_quota _q;                                                                           \
        memset(&_q, 0xa5, sizeof(_q));                                                             \
        policy_quota_for((p), (owner), (role), &_q);                                               \
        _q;                                                                                        \
    })

static const char full_conf[] = "# the server's policy\n"                         /* 1 */
                                "; another comment style\n"                       /* 2 */
                                "[server]\n"                                      /* 3 */
                                "max-running = 8\n"                               /* 4 */
                                "capacity-memory = 16G   # inline comment\n"      /* 5 */
                                "\n"                                              /* 6 */
                                "stop-grace=5s\n"                                 /* 7 */
                                "listen = 0.0.0.0:50051 ; other inline comment\n" /* 8 */
                                "[quota]            # defaults for every owner\n" /* 9 */
                                "max-running = 4\n"                               /* 10 */
                                "max-queued = 100\n"                              /* 11 */
                                "max-memory = 8G    # sum of memory.max\n"        /* 12 */
                                "max-cpu = 400\n"                                 /* 13 */
                                "[role admin]\n"                                  /* 14 */
                                "max-running = 6\n"                               /* 15 */
                                "max-cpu = 0\n"                                   /* 16 */
                                "[role viewer]\n"                                 /* 17 */
                                "max-queued = 7\n"                                /* 18 */
                                "[owner alice]\n"                                 /* 19 */
                                "    max-running = 10\n"                          /* 20 */
                                "    max-queued = 1000\n"                         /* 21 */
                                "[owner bob the builder]\n"                       /* 22 */
                                "max-memory = 1G\n"                               /* 23 */
                                "[ owner   carol  ]\n"                            /* 24 */
                                "[ceiling]\n"                                     /* 25 */
                                "memory = 4G\n"                                   /* 26 */
                                "memory-high = 3G\n"                              /* 27 */
                                "cpu = 200\n"                                     /* 28 */
                                "io = 100M\n"                                     /* 29 */
                                "pids = 1000\n"                                   /* 30 */
                                "timeout = 1h\n"                                  /* 31 */
                                "[allow]\n"                                       /* 32 */
                                "path = /usr/bin/           # a directory\n"      /* 33 */
                                "path = /opt/tools/run.sh   # one file\n"         /* 34 */
                                "path = /opt/tools/run.sh\n" /* 35: a repeat is harmless */
                                "path = /opt/a#b;c\n";       /* 36: no space: not a comment */

static void test_full_file(void **state)
{
    policy *p = parse_ok(full_conf);

    static const struct {
        const char *key, *value;
        int line;
    } settings[] = {
        {"max-running", "8", 4},
        {"capacity-memory", "16G", 5},
        {"stop-grace", "5s", 7},
        {"listen", "0.0.0.0:50051", 8},
    };
    assert_int_equal(policy_n_settings(p), ARRAY_SIZE(settings));
    for (size_t i = 0; i < ARRAY_SIZE(settings); i++) {
        const policy_setting *s = policy_setting_at(p, i);
        assert_non_null(s);
        assert_string_equal(s->key, settings[i].key);
        assert_string_equal(s->value, settings[i].value);
        assert_int_equal(s->line, settings[i].line);
    }
    assert_null(policy_setting_at(p, ARRAY_SIZE(settings)));

    const policy_ceiling *c = policy_ceilings(p);
    assert_int_equal(c->memory_bytes, 4LL << 30);
    assert_int_equal(c->memory_high_bytes, 3LL << 30);
    assert_int_equal(c->cpu_percent, 200);
    assert_int_equal(c->io_bps, 100LL << 20);
    assert_int_equal(c->pids_max, 1000);
    assert_int_equal(c->timeout_seconds, 3600);

    assert_int_equal(policy_n_owners(p), 3);
    assert_int_equal(policy_n_allow(p), 4);
    assert_true(policy_command_allowed(p, "/usr/bin/ls"));
    assert_true(policy_command_allowed(p, "/opt/tools/run.sh"));
    assert_true(policy_command_allowed(p, "/opt/a#b;c"));
    assert_false(policy_command_allowed(p, "/opt/tools/other"));

    /* Quotas: owner > role > [quota] > none, field by field. */
    policy_quota q = QUOTA(p, "alice", "admin");
    assert_int_equal(q.max_running, 10);       /* owner */
    assert_int_equal(q.max_queued, 1000);      /* owner */
    assert_int_equal(q.max_memory, 8LL << 30); /* [quota] */
    assert_int_equal(q.max_cpu, 0);            /* role admin sets 0 over [quota]'s 400 */
    q = QUOTA(p, "alice", "viewer");
    assert_int_equal(q.max_running, 10);
    assert_int_equal(q.max_queued, 1000); /* owner beats role viewer's 7 */
    assert_int_equal(q.max_cpu, 400);
    q = QUOTA(p, "bob the builder", "viewer");
    assert_int_equal(q.max_running, 4);        /* [quota] */
    assert_int_equal(q.max_queued, 7);         /* role viewer */
    assert_int_equal(q.max_memory, 1LL << 30); /* owner */
    assert_int_equal(q.max_cpu, 400);          /* [quota] */
    q = QUOTA(p, "carol", "admin");            /* an owner section with no key changes nothing */
    assert_int_equal(q.max_running, 6);
    assert_int_equal(q.max_queued, 100);
    q = QUOTA(p, "dave", NULL);
    assert_int_equal(q.max_running, 4);
    assert_int_equal(q.max_queued, 100);
    assert_int_equal(q.max_memory, 8LL << 30);
    assert_int_equal(q.max_cpu, 400);
    q = QUOTA(p, NULL, "nobody"); /* an unknown role has no role quota */
    assert_int_equal(q.max_running, 4);
    q = QUOTA(p, "alic", "admin"); /* no prefix match */
    assert_int_equal(q.max_running, 6);
    policy_free(p);
}

static void test_precedence_none(void **state)
{
    /* Nothing set anywhere: 0 (no limit) whatever the owner and role. */
    policy *p = parse_ok("[owner alice]\n[role admin]\n[quota]\n");
    policy_quota q = QUOTA(p, "alice", "admin");
    assert_int_equal(q.max_running, 0);
    assert_int_equal(q.max_queued, 0);
    assert_int_equal(q.max_memory, 0);
    assert_int_equal(q.max_cpu, 0);
    policy_free(p);

    /* Only the role: it applies to that role only. */
    p = parse_ok("[role viewer]\nmax-running = 2\n");
    assert_int_equal(QUOTA(p, "x", "viewer").max_running, 2);
    assert_int_equal(QUOTA(p, "x", "admin").max_running, 0);
    policy_free(p);

    /* Only the owner: it applies to that owner only. */
    p = parse_ok("[owner x]\nmax-cpu = 50\n");
    assert_int_equal(QUOTA(p, "x", "viewer").max_cpu, 50);
    assert_int_equal(QUOTA(p, "y", "viewer").max_cpu, 0);
    policy_free(p);
}

static void test_empty(void **state)
{
    static const char *const empties[] = {"", "\n\n", "# only a comment\n; and another\n",
                                          "\xEF\xBB\xBF", "  \t \r\n"};
    for (size_t i = 0; i < ARRAY_SIZE(empties); i++) {
        policy *p = parse_ok(empties[i]);
        assert_int_equal(policy_n_settings(p), 0);
        assert_int_equal(policy_n_owners(p), 0);
        assert_int_equal(policy_n_allow(p), 0);
        const policy_ceiling *c = policy_ceilings(p);
        assert_int_equal(c->memory_bytes | c->memory_high_bytes | c->io_bps | c->timeout_seconds |
                             c->cpu_percent | c->pids_max,
                         0);
        policy_quota q = QUOTA(p, "alice", "admin");
        assert_int_equal(q.max_running | q.max_queued | q.max_memory | q.max_cpu, 0);
        assert_true(policy_command_allowed(p, "/anything"));
        assert_true(policy_command_allowed(p, "relative"));
        policy_free(p);
    }
    policy *p = policy_new_empty();
    assert_non_null(p);
    assert_int_equal(policy_n_settings(p), 0);
    assert_int_equal(QUOTA(p, "a", "admin").max_running, 0);
    assert_int_equal(policy_ceilings(p)->memory_bytes, 0);
    assert_true(policy_command_allowed(p, "/bin/sh"));
    policy_free(p);
    policy_free(NULL);

    /* An empty file on disk too. */
    char dir[256], path[300];
    make_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/server.conf", dir);
    write_file(path, "", 0);
    jw_error err = JW_ERROR_INIT;
    p = NULL;
    assert_int_equal(policy_load(path, &p, &err), 0);
    assert_int_equal(policy_n_settings(p) + policy_n_owners(p) + policy_n_allow(p), 0);
    policy_free(p);
    unlink(path);
    rmdir(dir);
}

static void test_syntax(void **state)
{
    /* CRLF line ends, a BOM, tabs, ':' as the separator, indented keys (never continuations:
     * inih would give "max-queued = 5" to max-running), comments after a section header. */
    policy *p = parse_ok("\xEF\xBB\xBF[quota]\r\n"
                         "\tmax-running = 4\r\n"
                         "\tmax-queued = 5\r\n"
                         "max-cpu: 9\n"
                         "[ceiling] ; c\n"
                         "timeout = 1m30s\n");
    policy_quota q = QUOTA(p, "a", NULL);
    assert_int_equal(q.max_running, 4);
    assert_int_equal(q.max_queued, 5);
    assert_int_equal(q.max_cpu, 9);
    assert_int_equal(policy_ceilings(p)->timeout_seconds, 90);
    policy_free(p);

    /* A comment longer than inih's 200-byte default line is one line, not two: its tail must
     * not become "path = /" (which would allow everything... or here, anything under /). */
    text t = {0};
    text_add(&t, "[allow]\npath = /usr/bin/\n# ");
    for (int i = 0; i < 300; i++)
        text_add(&t, "x");
    text_add(&t, " path = /\n[quota]\n# ");
    for (int i = 0; i < 300; i++)
        text_add(&t, "y");
    text_add(&t, "max-running = 3\n");
    p = parse_ok(t.s);
    assert_int_equal(policy_n_allow(p), 1);
    assert_false(policy_command_allowed(p, "/sbin/reboot"));
    assert_int_equal(QUOTA(p, "a", NULL).max_running, 0);
    policy_free(p);
    free(t.s);

    /* A long path and a long [server] value fit in one line. */
    t = (text){0};
    text_add(&t, "[server]\ndata-dir = /");
    for (int i = 0; i < 3000; i++)
        text_add(&t, "d");
    text_add(&t, "\n[allow]\npath = /");
    for (int i = 0; i < 3000; i++)
        text_add(&t, "p");
    text_add(&t, "/\n");
    p = parse_ok(t.s);
    assert_int_equal(strlen(policy_setting_at(p, 0)->value), 3001);
    assert_int_equal(policy_n_allow(p), 1);
    policy_free(p);
    free(t.s);
}

static void test_errors(void **state)
{
    /* Sections. */
    expect_error("[quota]\n[bogus]\n", -EINVAL, "t.conf:2:", "'[bogus]'", NULL);
    expect_error("[server extra]\n", -EINVAL, "t.conf:1:", "'[server extra]'", NULL);
    expect_error("\n[quota\n", -EINVAL, "t.conf:2:", "'[quota'", NULL);
    expect_error("[quota] x\n", -EINVAL, "t.conf:1:", "'[quota] x'", NULL);
    expect_error("[role root]\n", -EINVAL, "t.conf:1:", "role 'root' is not admin or viewer", NULL);
    expect_error("[role]\n", -EINVAL, "t.conf:1:", "role ''", NULL);
    expect_error("[role Admin]\n", -EINVAL, "t.conf:1:", "'Admin'", NULL);
    expect_error("[owner ]\n", -EINVAL, "t.conf:1:", "owner name '' is empty", NULL);
    expect_error("[owner]\n", -EINVAL, "t.conf:1:", "owner name '' is empty", NULL);
    expect_error("[owner a\tb]\n", -EINVAL, "t.conf:1:", "'a\\x09b'", "printable", NULL);
    expect_error("[owner j\xc3\xb6rg]\n", -EINVAL, "t.conf:1:", "'j\\xc3\\xb6rg'", "printable",
                 NULL);
    expect_error("[quota]\n[quota]\n", -EINVAL, "t.conf:2:", "'[quota]' repeated",
                 "first at line 1", NULL);
    expect_error("[role admin]\n[role viewer]\n[role admin]\n", -EINVAL,
                 "t.conf:3:", "'[role admin]' repeated", "line 1", NULL);
    expect_error("[owner z]\n[owner b]\n[owner a]\n[owner b]\n[owner z]\n", -EINVAL,
                 "t.conf:4:", "section [owner 'b'] repeated", "first at line 2", NULL);

    /* Keys. */
    expect_error("max-running = 3\n", -EINVAL, "t.conf:1:", "'max-running' is outside any section",
                 NULL);
    expect_error("[quota]\nmax-runing = 3\n", -EINVAL, "t.conf:2:", "unknown key 'max-runing'",
                 "[quota]", NULL);
    expect_error("[role admin]\npath = /x\n", -EINVAL, "t.conf:2:", "'path'", "[role admin]", NULL);
    expect_error("[owner alice]\nmemory = 1G\n", -EINVAL, "t.conf:2:", "'memory'",
                 "[owner 'alice']", NULL);
    expect_error("[ceiling]\nmax-running = 1\n", -EINVAL, "t.conf:2:", "'max-running'", "[ceiling]",
                 NULL);
    expect_error("[allow]\nfile = /bin/sh\n", -EINVAL, "t.conf:2:", "'file'", "[allow]", NULL);
    expect_error("[quota]\nmax-running = 1\nmax-queued = 2\nmax-running = 3\n", -EINVAL,
                 "t.conf:4:", "duplicate key 'max-running'", "first at line 2", NULL);
    expect_error("[owner o]\nmax-cpu = 1\nmax-cpu = 1\n", -EINVAL, "t.conf:3:", "'max-cpu'", NULL);
    expect_error("[ceiling]\ncpu = 1\ncpu = 2\n", -EINVAL, "t.conf:3:", "duplicate key 'cpu'",
                 NULL);
    expect_error("[server]\nworkers = 1\nworkers = 2\n", -EINVAL,
                 "t.conf:3:", "duplicate key 'workers'", "first at line 2", NULL);
    expect_error("[server]\nMax_Running = 1\n", -EINVAL, "t.conf:2:", "'Max_Running'", NULL);
    expect_error("[server]\n= 1\n", -EINVAL, "t.conf:2:", "key ''", NULL);
    expect_error("[server]\n--workers = 1\n", -EINVAL, "t.conf:2:", "'--workers'", NULL);
    expect_error("[server]\n4workers = 1\n", -EINVAL, "t.conf:2:", "'4workers'", NULL);
    expect_error("[server]\nmax running = 1\n", -EINVAL, "t.conf:2:", "'max running'", NULL);

    /* Values. */
    expect_error("[quota]\n\nmax-running = -3\n", -EINVAL,
                 "t.conf:3: max-running: '-3' is not a number from 0 to 1000000", NULL);
    expect_error("[quota]\nmax-queued = 1000001\n", -EINVAL, "t.conf:2:", "'1000001'", NULL);
    expect_error("[quota]\nmax-queued =\n", -EINVAL, "t.conf:2:", "max-queued: ''", NULL);
    expect_error("[role viewer]\nmax-memory = 8Q\n", -EINVAL, "t.conf:2:", "max-memory: '8Q'",
                 NULL);
    expect_error("[owner a]\nmax-cpu = 4 00\n", -EINVAL, "t.conf:2:", "'4 00'", NULL);
    expect_error("[ceiling]\nmemory = -1G\n", -EINVAL, "t.conf:2:", "memory: '-1G'", NULL);
    expect_error("[ceiling]\nmemory-high = 99999999999T\n", -EINVAL, "t.conf:2:", "'99999999999T'",
                 NULL);
    expect_error("[ceiling]\ncpu = 1e3\n", -EINVAL, "t.conf:2:", "cpu: '1e3'", NULL);
    expect_error("[ceiling]\nio = 2000T\n", -EINVAL, "t.conf:2:", "io: '2000T'", NULL);
    expect_error("[ceiling]\npids = 5000000\n", -EINVAL, "t.conf:2:", "pids: '5000000'", NULL);
    expect_error("[ceiling]\ntimeout = 1500ms\n", -EINVAL, "t.conf:2:", "timeout: '1500ms'", NULL);
    expect_error("[ceiling]\ntimeout = 367d\n", -EINVAL, "t.conf:2:", "'367d'", NULL);
    expect_error("[ceiling]\ntimeout = soon\n", -EINVAL, "t.conf:2:", "'soon'", NULL);
    /* A bad value is escaped and cut in the message. */
    expect_error("[quota]\nmax-running = \x1b[31m"
                 "99999999999999999999999999999999999999999999"
                 "999999999999999999999999999999\n",
                 -EINVAL, "t.conf:2:", "'\\x1b[31m999", "...'", NULL);

    /* Allow paths. */
    expect_error("[allow]\npath = usr/bin/\n", -EINVAL,
                 "t.conf:2:", "'usr/bin/' is not an absolute path", NULL);
    expect_error("[allow]\npath =\n", -EINVAL, "t.conf:2:", "'' is not an absolute path", NULL);
    expect_error("[allow]\npath = /usr/bin/../sbin/\n", -EINVAL, "t.conf:2:", "'/usr/bin/../sbin/'",
                 NULL);
    expect_error("[allow]\npath = /usr/./bin/\n", -EINVAL, "t.conf:2:", "'/usr/./bin/'", NULL);
    expect_error("[allow]\npath = /usr//bin/\n", -EINVAL, "t.conf:2:", "'/usr//bin/'", NULL);
    expect_error("[allow]\npath = /usr/bin/..\n", -EINVAL, "t.conf:2:", "'/usr/bin/..'", NULL);
    expect_error("[allow]\npath = /usr/bin/.\n", -EINVAL, "t.conf:2:", "'/usr/bin/.'", NULL);

    /* Lines inih refuses, and the first error wins whoever finds it. */
    expect_error("[quota]\njust words\nmax-running = -1\n", -EINVAL,
                 "t.conf:2:", "'just words' is not a [section], a key = value or a comment", NULL);
    expect_error("[quota]\nmax-running = -1\njust words\n", -EINVAL, "t.conf:2:", "'-1'", NULL);
    expect_error("[quota]\njust words\n[bogus]\n", -EINVAL, "t.conf:2:", "'just words'", NULL);

    /* A line longer than POLICY_LINE_MAX, even a comment. */
    text t = {0};
    text_add(&t, "[quota]\n#");
    for (int i = 0; i < POLICY_LINE_MAX; i++)
        text_add(&t, "c");
    text_add(&t, "\n");
    expect_error(t.s, -EINVAL, "t.conf:2:", "line is longer than 8192 bytes", NULL);
    free(t.s);
}

static void test_owner_names(void **state)
{
    /* 1024 bytes is fine (and not cut to inih's 49-byte sections), 1025 is not. */
    char name[POLICY_OWNER_NAME_MAX + 2];
    memset(name, 'n', sizeof(name) - 1);
    name[POLICY_OWNER_NAME_MAX] = '\0';
    text t = {0};
    text_add(&t, "[owner %s]\nmax-running = 1\n", name);
    /* The same first 49 bytes, another owner. */
    name[60] = 'm';
    text_add(&t, "[owner %s]\nmax-running = 2\n", name);
    policy *p = parse_ok(t.s);
    assert_int_equal(policy_n_owners(p), 2);
    assert_int_equal(QUOTA(p, name, NULL).max_running, 2);
    name[60] = 'n';
    assert_int_equal(QUOTA(p, name, NULL).max_running, 1);
    name[49] = '\0';
    assert_int_equal(QUOTA(p, name, NULL).max_running, 0);
    policy_free(p);
    free(t.s);

    memset(name, 'n', sizeof(name) - 1);
    name[POLICY_OWNER_NAME_MAX + 1] = '\0';
    t = (text){0};
    text_add(&t, "[quota]\n[owner %s]\n", name);
    expect_error(t.s, -EINVAL, "t.conf:2:", "owner name 'nnnnnnnn", "...'",
                 "longer than 1024 bytes", NULL);
    free(t.s);
}

static void test_owner_cap(void **state)
{
    text t = {0};
    for (int i = 0; i < POLICY_OWNERS_MAX; i++)
        text_add(&t, "[owner user-%05d]\nmax-running = %d\n", i, i + 1);
    policy *p = parse_ok(t.s);
    assert_int_equal(policy_n_owners(p), POLICY_OWNERS_MAX);
    assert_int_equal(QUOTA(p, "user-00000", NULL).max_running, 1);
    assert_int_equal(QUOTA(p, "user-04711", NULL).max_running, 4712);
    assert_int_equal(QUOTA(p, "user-09999", NULL).max_running, 10000);
    assert_int_equal(QUOTA(p, "user-10000", NULL).max_running, 0);
    policy_free(p);

    text_add(&t, "[owner one-too-many]\n");
    expect_error(t.s, -EINVAL, "t.conf:20001:", "'one-too-many'", "more than 10000 owner", NULL);
    free(t.s);
}

static void test_allow_cap(void **state)
{
    text t = {0};
    text_add(&t, "[allow]\n");
    for (int i = 0; i < POLICY_ALLOW_MAX; i++)
        text_add(&t, "path = /opt/bin%d/\n", i);
    policy *p = parse_ok(t.s);
    assert_int_equal(policy_n_allow(p), POLICY_ALLOW_MAX);
    assert_true(policy_command_allowed(p, "/opt/bin999/x"));
    assert_false(policy_command_allowed(p, "/opt/bin1000/x"));
    policy_free(p);

    text_add(&t, "path = /last\n");
    expect_error(t.s, -EINVAL, "t.conf:1002:", "'/last'", "more than 1000 paths", NULL);
    free(t.s);

    /* The [server] keys have a cap too. */
    t = (text){0};
    text_add(&t, "[server]\n");
    for (int i = 0; i <= POLICY_SETTINGS_MAX; i++)
        text_add(&t, "k%d = v\n", i);
    expect_error(t.s, -EINVAL, "t.conf:1002:", "'k1000'", "more than 1000 keys", NULL);
    free(t.s);
}

static void test_allow_edges(void **state)
{
    policy *p = parse_ok("[allow]\npath = /usr/bin/\npath = /opt/tools/run.sh\n");
    static const struct {
        const char *path;
        bool allowed;
    } cases[] = {
        {"/usr/bin/ls", true},
        {"/usr/bin/sub/dir/tool", true},
        {"/opt/tools/run.sh", true},
        {"/usr/bin/../sbin/x", false},
        {"/usr/bin/./ls", false},
        {"/usr/bin/.", false},
        {"/usr/bin/..", false},
        {"/usr/bin//ls", false},
        {"//usr/bin/ls", false},
        {"/usr/binx", false},
        {"/usr/binx/ls", false},
        {"/usr/bin", false},
        {"/usr/bin/", false}, /* the directory itself is no command */
        {"/usr/bin/sub/", false},
        {"usr/bin/ls", false},
        {"ls", false},
        {"", false},
        {"/opt/tools/run.shx", false},
        {"/opt/tools/run.sh/x", false},
        {"/opt/tools/run", false},
        {"/opt/tools/", false},
        {"/opt/tools/other", false},
        {"/", false},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
        if (policy_command_allowed(p, cases[i].path) != cases[i].allowed)
            fail_msg("'%s' should be %s", cases[i].path, cases[i].allowed ? "allowed" : "refused");
    assert_false(policy_command_allowed(p, NULL));
    policy_free(p);

    /* "/" as a directory entry allows every clean absolute path, still no "..". */
    p = parse_ok("[allow]\npath = /\n");
    assert_true(policy_command_allowed(p, "/bin/sh"));
    assert_false(policy_command_allowed(p, "/bin/../bin/sh"));
    assert_false(policy_command_allowed(p, "sh"));
    policy_free(p);

    /* An [allow] section without paths allows anything, as no section does. */
    p = parse_ok("[allow]\n# nothing yet\n");
    assert_int_equal(policy_n_allow(p), 0);
    assert_true(policy_command_allowed(p, "/usr/bin/../sbin/x"));
    policy_free(p);
}

static void test_file_cap(void **state)
{
    char dir[256], path[300];
    make_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/server.conf", dir);

    /* Exactly 1 MiB (comment lines) is read. */
    size_t n = POLICY_FILE_MAX;
    char *buf = malloc(n + 2);
    assert_non_null(buf);
    for (size_t i = 0; i < n; i += 64) {
        memset(buf + i, 'c', 63);
        buf[i] = '#';
        buf[i + 63] = '\n';
    }
    write_file(path, buf, n);
    jw_error err = JW_ERROR_INIT;
    policy *p = NULL;
    assert_int_equal(policy_load(path, &p, &err), 0);
    policy_free(p);

    /* One byte more is refused, from a file and from memory. */
    buf[n] = '\n';
    write_file(path, buf, n + 1);
    p = (policy *)&err;
    assert_int_equal(policy_load(path, &p, &err), -EFBIG);
    assert_ptr_equal(p, (policy *)&err);
    assert_int_equal(err.code, JW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "1 MiB"));
    buf[n + 1] = '\0';
    err = (jw_error)JW_ERROR_INIT;
    assert_int_equal(policy_parse("big.conf", buf, &p, &err), -EFBIG);
    assert_ptr_equal(p, (policy *)&err);
    assert_non_null(strstr(err.msg, "big.conf"));
    assert_non_null(strstr(err.msg, "1 MiB"));
    free(buf);

    /* A NUL byte (only a file can carry one) is refused with its line. */
    static const char nul[] = "[quota]\nmax-running = 1\0 # hidden\n";
    write_file(path, nul, sizeof(nul) - 1);
    err = (jw_error)JW_ERROR_INIT;
    assert_int_equal(policy_load(path, &p, &err), -EINVAL);
    assert_ptr_equal(p, (policy *)&err);
    char want[400];
    snprintf(want, sizeof(want), "%s:2: line has a NUL byte", path);
    assert_string_equal(err.msg, want);

    /* A bad value in a file: the message names the path as given. */
    write_file(path, "[quota]\nmax-running = x\n", 24);
    assert_int_equal(policy_load(path, &p, &err), -EINVAL);
    snprintf(want, sizeof(want), "%s:2: max-running: 'x' is not a number", path);
    assert_non_null(strstr(err.msg, want));

    unlink(path);
    rmdir(dir);
}

static void test_load_errors(void **state)
{
    char dir[256], path[300];
    make_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/missing.conf", dir);

    jw_error err = JW_ERROR_INIT;
    policy *p = (policy *)&err;
    assert_int_equal(policy_load(path, &p, &err), -ENOENT);
    assert_ptr_equal(p, (policy *)&err);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "No such file"));

    /* A directory is not a policy file. */
    err = (jw_error)JW_ERROR_INIT;
    assert_true(policy_load(dir, &p, &err) < 0);
    assert_ptr_equal(p, (policy *)&err);
    assert_int_equal(err.code, JW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, dir));

    /* err may be NULL. */
    assert_int_equal(policy_load(path, &p, NULL), -ENOENT);
    assert_int_equal(policy_parse("x", "[bogus]\n", &p, NULL), -EINVAL);
    assert_ptr_equal(p, (policy *)&err);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_file),   cmocka_unit_test(test_precedence_none),
        cmocka_unit_test(test_empty),       cmocka_unit_test(test_syntax),
        cmocka_unit_test(test_errors),      cmocka_unit_test(test_owner_names),
        cmocka_unit_test(test_owner_cap),   cmocka_unit_test(test_allow_cap),
        cmocka_unit_test(test_allow_edges), cmocka_unit_test(test_file_cap),
        cmocka_unit_test(test_load_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
