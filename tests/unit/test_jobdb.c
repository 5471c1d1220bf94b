/* The history database on a real SQLite file: records in and out, pages and filters, totals
 * and retention order, deletion, reopening, migration of a schema-1 file, and the refusal of a
 * damaged file and of a newer schema. Files are made and inspected with the sqlite3 tool. */
#include "db/jobdb.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct fixture {
    char dir[64];
    char path[128];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/jw-jobdb-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/jobs.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* Runs the sqlite3 tool on the file; returns its first output line (static buffer). */
static const char *sqlite_tool(const char *path, const char *sql)
{
    static char line[256];
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "sqlite3 '%s' '%s'", path, sql);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    line[0] = '\0';
    if (fgets(line, sizeof(line), p))
        line[strcspn(line, "\n")] = '\0';
    assert_int_equal(pclose(p), 0);
    return line;
}

static jobdb *open_ok(const char *path, bool want_created)
{
    jobdb *db = NULL;
    bool created = !want_created;
    jw_error err = JW_ERROR_INIT;
    jobdb_config cfg = {.path = path};
    assert_int_equal(jobdb_open(&cfg, &db, &created, &err), 0);
    assert_int_equal(created, want_created);
    return db;
}

static void make_record(jobdb_record *r, int i, const char *owner, job_status st)
{
    static char *args[] = {"-c", "echo hi"};
    memset(r, 0, sizeof(*r));
    snprintf(r->id, sizeof(r->id), "00000000-0000-4000-8000-%012d", i);
    r->command = "sh";
    r->args = args;
    r->nargs = 2;
    r->owner = (char *)owner;
    r->user = "nobody (65534:65534)";
    r->network = JOB_NETWORK_NONE;
    r->limits.cpu_percent = 50;
    r->limits.memory_bytes = 1 << 20;
    r->limits_enforced = true;
    r->timeout_seconds = 9;
    r->create_ns = 1000 * (int64_t)i;
    r->status = st;
    r->reason = job_status_is_final(st) ? JOB_REASON_EXITED : JOB_REASON_UNSPECIFIED;
    r->end_ns = job_status_is_final(st) ? 5000 - (int64_t)i : 0; /* later jobs ended earlier */
    r->output_bytes = 100 * (int64_t)i;
    r->stderr_bytes = (int64_t)i;
    r->stdin_pipe = i % 3 == 0;
    r->error = "";
}

static void test_records_pages_filters(void **state)
{
    fixture *f = *state;
    jobdb *db = open_ok(f->path, true);
    jw_error err = JW_ERROR_INIT;
    for (int i = 1; i <= 10; i++) {
        jobdb_record r;
        make_record(&r, i, i % 2 ? "alice" : "bob",
                    i <= 7 ? JOB_STATUS_COMPLETED : JOB_STATUS_RUNNING);
        int64_t seq = 0;
        assert_int_equal(jobdb_insert(db, &r, &seq, &err), 0);
        assert_int_equal(seq, i);
    }
    /* The same id twice is refused by the schema. */
    jobdb_record dup;
    make_record(&dup, 3, "x", JOB_STATUS_RUNNING);
    assert_true(jobdb_insert(db, &dup, NULL, &err) < 0);

    /* Every field comes back. */
    jobdb_record got;
    assert_int_equal(jobdb_get(db, "00000000-0000-4000-8000-000000000003", &got, &err), 0);
    assert_string_equal(got.command, "sh");
    assert_int_equal(got.nargs, 2);
    assert_string_equal(got.args[1], "echo hi");
    assert_string_equal(got.owner, "alice");
    assert_int_equal(got.network, JOB_NETWORK_NONE);
    assert_int_equal(got.limits.memory_bytes, 1 << 20);
    assert_true(got.limits_enforced);
    assert_int_equal(got.timeout_seconds, 9);
    assert_int_equal(got.status, JOB_STATUS_COMPLETED);
    assert_int_equal(got.output_bytes, 300);
    assert_int_equal(got.stderr_bytes, 3);
    assert_true(got.stdin_pipe);
    assert_int_equal(got.seq, 3);
    jobdb_record_clear(&got);
    assert_int_equal(jobdb_get(db, "00000000-0000-4000-8000-999999999999", &got, &err), -ENOENT);
    assert_int_equal(err.code, JW_NOT_FOUND);

    /* An update writes the state. */
    jobdb_record up;
    make_record(&up, 9, "alice", JOB_STATUS_FAILED);
    up.exit_code = 3;
    up.error = "boom";
    up.stderr_bytes = 77;
    up.stdin_pipe = false; /* immutable: an update keeps what the insert recorded */
    assert_int_equal(jobdb_update(db, &up, &err), 0);
    assert_int_equal(jobdb_get(db, up.id, &got, &err), 0);
    assert_int_equal(got.status, JOB_STATUS_FAILED);
    assert_int_equal(got.stderr_bytes, 77);
    assert_true(got.stdin_pipe);
    assert_int_equal(got.exit_code, 3);
    assert_string_equal(got.error, "boom");
    assert_string_equal(got.owner, "alice"); /* identity unchanged by an update */
    jobdb_record_clear(&got);
    jobdb_record ghost;
    make_record(&ghost, 77, "x", JOB_STATUS_FAILED);
    assert_int_equal(jobdb_update(db, &ghost, &err), -ENOENT);

    /* Pages, newest first, continued with before_seq. */
    jobdb_record *v = NULL;
    size_t n = 0;
    jobdb_query q = {.limit = 4};
    assert_int_equal(jobdb_list(db, &q, &v, &n, &err), 0);
    assert_int_equal(n, 4);
    assert_int_equal(v[0].seq, 10);
    assert_int_equal(v[3].seq, 7);
    q.before_seq = v[3].seq;
    for (size_t i = 0; i < n; i++)
        jobdb_record_clear(&v[i]);
    free(v);
    assert_int_equal(jobdb_list(db, &q, &v, &n, &err), 0);
    assert_int_equal(n, 4);
    assert_int_equal(v[0].seq, 6);
    for (size_t i = 0; i < n; i++)
        jobdb_record_clear(&v[i]);
    free(v);

    /* Filters: owner, status, creation time, together. */
    jobdb_query fq = {
        .limit = 100, .owner = "bob", .status_mask = 1u << JOB_STATUS_COMPLETED, .since_ns = 3000};
    assert_int_equal(jobdb_list(db, &fq, &v, &n, &err), 0);
    assert_int_equal(n, 2); /* bob's completed jobs created at or after 3000: 6 and 4 */
    assert_int_equal(v[0].seq, 6);
    assert_int_equal(v[1].seq, 4);
    for (size_t i = 0; i < n; i++)
        jobdb_record_clear(&v[i]);
    free(v);

    /* Totals and retention order count finished jobs only (1..7 and the failed 9). */
    int64_t jobs = 0, bytes = 0;
    assert_int_equal(jobdb_final_totals(db, &jobs, &bytes, &err), 0);
    assert_int_equal(jobs, 8);
    assert_int_equal(bytes, 100 * (1 + 2 + 3 + 4 + 5 + 6 + 7 + 9));
    jobdb_victim vic[3];
    assert_int_equal(jobdb_oldest_final(db, vic, 3, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_string_equal(vic[0].id, "00000000-0000-4000-8000-000000000009"); /* ended first */
    assert_string_equal(vic[1].id, "00000000-0000-4000-8000-000000000007");

    const char *ids[] = {vic[0].id, vic[1].id, "00000000-0000-4000-8000-999999999999"};
    assert_int_equal(jobdb_delete(db, ids, 3, &err), 0);
    assert_int_equal(jobdb_final_totals(db, &jobs, &bytes, &err), 0);
    assert_int_equal(jobs, 6);
    jobdb_close(db);

    /* Reopened: everything that was written is there. */
    db = open_ok(f->path, false);
    assert_int_equal(jobdb_get(db, "00000000-0000-4000-8000-000000000010", &got, &err), 0);
    assert_int_equal(got.status, JOB_STATUS_RUNNING);
    jobdb_record_clear(&got);
    jobdb_close(db);
    assert_string_equal(sqlite_tool(f->path, "PRAGMA journal_mode"), "wal");
    assert_string_equal(sqlite_tool(f->path, "SELECT count(*) FROM jobs"), "8");
}

static void test_migration_from_v1(void **state)
{
    fixture *f = *state;
    char cmd[512];
    const char *root = getenv("JW_REPO_ROOT");
    snprintf(cmd, sizeof(cmd), "sqlite3 '%s' < '%s/tests/integration/fixtures/jobs-v1.sql'",
             f->path, root ? root : ".");
    assert_int_equal(system(cmd), 0);
    jobdb *db = open_ok(f->path, false);
    jobdb_record got;
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(jobdb_get(db, "0b6f3d2e-5f43-4c1e-9d59-6b7f0e1a2c3d", &got, &err), 0);
    assert_string_equal(got.args[0], "from v1");
    /* v4: an old job's output counts as stdout, and it had no stdin. */
    assert_int_equal(got.stderr_bytes, 0);
    assert_false(got.stdin_pipe);
    jobdb_record_clear(&got);
    jobdb_close(db);
    assert_string_equal(sqlite_tool(f->path, "PRAGMA user_version"), "4");
    assert_string_equal(
        sqlite_tool(f->path, "SELECT count(*) FROM sqlite_master WHERE name = \"jobs_owner\""),
        "1");
}

static void test_newer_schema_refused(void **state)
{
    fixture *f = *state;
    jobdb_close(open_ok(f->path, true));
    sqlite_tool(f->path, "PRAGMA user_version = 7");
    jobdb *db = NULL;
    jw_error err = JW_ERROR_INIT;
    jobdb_config cfg = {.path = f->path};
    assert_true(jobdb_open(&cfg, &db, NULL, &err) < 0);
    assert_int_equal(err.code, JW_FAILED_PRECONDITION);
    assert_non_null(strstr(err.msg, "schema version 7, newer than this server's 4"));
    assert_string_equal(sqlite_tool(f->path, "PRAGMA user_version"), "7"); /* untouched */
}

static void test_garbage_refused(void **state)
{
    fixture *f = *state;
    FILE *fp = fopen(f->path, "w");
    assert_non_null(fp);
    for (int i = 0; i < 4096; i++)
        fputc(i * 7 + 3, fp);
    fclose(fp);
    jobdb *db = NULL;
    jw_error err = JW_ERROR_INIT;
    jobdb_config cfg = {.path = f->path};
    assert_true(jobdb_open(&cfg, &db, NULL, &err) < 0);
    assert_int_equal(err.code, JW_FAILED_PRECONDITION);
    assert_non_null(strstr(err.msg, "is not a usable SQLite database"));
    assert_non_null(strstr(err.msg, "move it away"));
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_size, 4096);
}

/* A clock stepped back: the new job is recorded at the newest creation time so far, and a
 * listing by creation time (which stops at the first older job, newest first) still finds it;
 * reopening keeps the newest time. */
static void test_creation_times_never_go_back(void **state)
{
    fixture *f = *state;
    jobdb *db = open_ok(f->path, true);
    jw_error err = JW_ERROR_INIT;
    jobdb_record r;
    make_record(&r, 5, "alice", JOB_STATUS_COMPLETED); /* created at 5000 */
    assert_int_equal(jobdb_insert(db, &r, NULL, &err), 0);
    make_record(&r, 2, "alice", JOB_STATUS_COMPLETED); /* 2000: the clock went back */
    assert_int_equal(jobdb_insert(db, &r, NULL, &err), 0);
    assert_int_equal(r.create_ns, 5000);
    jobdb_close(db);
    db = open_ok(f->path, false);
    make_record(&r, 1, "alice", JOB_STATUS_COMPLETED);
    assert_int_equal(jobdb_insert(db, &r, NULL, &err), 0);
    assert_int_equal(r.create_ns, 5000);
    make_record(&r, 8, "alice", JOB_STATUS_COMPLETED);
    assert_int_equal(jobdb_insert(db, &r, NULL, &err), 0);
    assert_int_equal(r.create_ns, 8000);

    jobdb_record *v = NULL;
    size_t n = 0;
    jobdb_query q = {.limit = 100, .since_ns = 5000};
    assert_int_equal(jobdb_list(db, &q, &v, &n, &err), 0);
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++)
        jobdb_record_clear(&v[i]);
    free(v);
    q.since_ns = 5001;
    assert_int_equal(jobdb_list(db, &q, &v, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].seq, 4);
    jobdb_record_clear(&v[0]);
    free(v);
    jobdb_close(db);
}

/* The whole-file check runs when the last user left a WAL file behind (it did not close the
 * database: a crash, kill -9, power loss). A damaged index page is then refused with what to do;
 * after a clean close the open does not read the whole file. */
static void test_damage_found_after_unclean_stop(void **state)
{
    fixture *f = *state;
    jobdb *db = open_ok(f->path, true);
    jw_error err = JW_ERROR_INIT;
    for (int i = 1; i <= 50; i++) {
        jobdb_record r;
        make_record(&r, i, "alice", JOB_STATUS_COMPLETED);
        assert_int_equal(jobdb_insert(db, &r, NULL, &err), 0);
    }
    jobdb_close(db);
    char wal[160];
    snprintf(wal, sizeof(wal), "%s-wal", f->path);
    assert_int_equal(access(wal, F_OK), -1); /* a clean close removes it */
    long page = atol(sqlite_tool(f->path, "PRAGMA page_size"));
    long root = atol(sqlite_tool(f->path, "SELECT rootpage FROM sqlite_master WHERE name = "
                                          "\"jobs_status\""));
    assert_true(page > 0 && root > 1);
    FILE *fp = fopen(f->path, "r+");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, (root - 1) * page, SEEK_SET), 0);
    for (long i = 0; i < page; i++)
        fputc(0xa5, fp);
    assert_int_equal(fclose(fp), 0);

    db = open_ok(f->path, false); /* clean stop: not checked */
    jobdb_record got;
    assert_int_equal(jobdb_get(db, "00000000-0000-4000-8000-000000000007", &got, &err), 0);
    jobdb_record_clear(&got);
    jobdb_close(db);

    fp = fopen(wal, "w"); /* as a server killed with its database open leaves it */
    assert_non_null(fp);
    assert_int_equal(fclose(fp), 0);
    jobdb_config cfg = {.path = f->path};
    assert_true(jobdb_open(&cfg, &db, NULL, &err) < 0);
    assert_int_equal(err.code, JW_FAILED_PRECONDITION);
    assert_non_null(strstr(err.msg, "is damaged"));
    assert_non_null(strstr(err.msg, "move it away"));
}

/* ":memory:" serves reads and writes from one connection. */
static void test_memory(void **state)
{
    (void)state;
    jobdb *db = open_ok(":memory:", true);
    jobdb_record r, got;
    make_record(&r, 1, "alice", JOB_STATUS_COMPLETED);
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(jobdb_insert(db, &r, NULL, &err), 0);
    assert_int_equal(jobdb_get(db, r.id, &got, &err), 0);
    jobdb_record_clear(&got);
    jobdb_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_records_pages_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_from_v1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_creation_times_never_go_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damage_found_after_unclean_stop, setup, teardown),
        cmocka_unit_test(test_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
