#include "db/jobdb.h"

#include "util/cleanup.h"
#include "util/log.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Reader connections opened at most; a reader beyond waits for one to be returned. */
#define JOBDB_READERS_MAX 8

/* The schema, one step per version. A step is applied in its own transaction together with
 * the new user_version, so a crash leaves the file at one version or the next. Never edit a
 * step that has shipped: add one. */
static const char *const migrations[JOBDB_SCHEMA_VERSION] = {
    /* 1: the job table; the partial index serves retention (oldest finished first, with the
     * bytes it frees) and the finished totals without touching the table. */
    "CREATE TABLE jobs ("
    " seq INTEGER PRIMARY KEY,"
    " id TEXT NOT NULL UNIQUE,"
    " command TEXT NOT NULL,"
    " args BLOB NOT NULL," /* every argument followed by a NUL (arguments never hold one) */
    " nargs INTEGER NOT NULL,"
    " owner TEXT NOT NULL,"
    " user TEXT NOT NULL,"
    " network INTEGER NOT NULL,"
    " cpu_percent INTEGER NOT NULL, memory_bytes INTEGER NOT NULL, io_bps INTEGER NOT NULL,"
    " memory_high_bytes INTEGER NOT NULL, pids_max INTEGER NOT NULL,"
    " limits_enforced INTEGER NOT NULL,"
    " timeout_seconds INTEGER NOT NULL,"
    " create_ns INTEGER NOT NULL,"
    " status INTEGER NOT NULL, reason INTEGER NOT NULL, pid INTEGER NOT NULL,"
    " start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,"
    " exit_code INTEGER NOT NULL, signal INTEGER NOT NULL, error TEXT NOT NULL,"
    " cpu_usec INTEGER NOT NULL, memory_peak_bytes INTEGER NOT NULL,"
    " io_read_bytes INTEGER NOT NULL, io_write_bytes INTEGER NOT NULL,"
    " output_bytes INTEGER NOT NULL, output_dropped INTEGER NOT NULL,"
    " output_errno INTEGER NOT NULL, output_errno_at INTEGER NOT NULL);"
    "CREATE INDEX jobs_final ON jobs(end_ns, output_bytes) WHERE status >= 3;",
    /* 2: the filters of the paged listing (by owner, by status), newest first. */
    "CREATE INDEX jobs_owner ON jobs(owner, seq);"
    "CREATE INDEX jobs_status ON jobs(status, seq);",
    /* 3: QUEUED (6) is not final: the final jobs are statuses 3..5, named as such so that the
     * queries that say the same use the partial index. */
    "DROP INDEX jobs_final;"
    "CREATE INDEX jobs_final ON jobs(end_ns, output_bytes) WHERE status BETWEEN 3 AND 5;",
    /* 4: stdout and stderr kept apart (output_bytes - stderr_bytes came from stdout), and
     * whether the job reads its stdin from WriteStdin. Older rows: all stdout, no stdin. */
    "ALTER TABLE jobs ADD COLUMN stderr_bytes INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE jobs ADD COLUMN stdin INTEGER NOT NULL DEFAULT 0;"
    /* and its extra environment, "NAME=VALUE" entries each followed by a NUL, as args */
    "ALTER TABLE jobs ADD COLUMN env BLOB NOT NULL DEFAULT x'';",
};

#define COLS                                                                                       \
    "seq, id, command, args, nargs, owner, user, network, cpu_percent, memory_bytes, io_bps, "     \
    "memory_high_bytes, pids_max, limits_enforced, timeout_seconds, create_ns, status, reason, "   \
    "pid, start_ns, end_ns, exit_code, signal, error, cpu_usec, memory_peak_bytes, "               \
    "io_read_bytes, io_write_bytes, output_bytes, output_dropped, output_errno, output_errno_at, " \
    "stderr_bytes, stdin, env"
#define COL_CREATE_NS 15 /* its index in COLS */
#define STATE_SET                                                                                  \
    "status = ?2, reason = ?3, pid = ?4, start_ns = ?5, end_ns = ?6, exit_code = ?7, signal = "    \
    "?8, "                                                                                         \
    "error = ?9, cpu_usec = ?10, memory_peak_bytes = ?11, io_read_bytes = ?12, "                   \
    "io_write_bytes = ?13, output_bytes = ?14, output_dropped = ?15, output_errno = ?16, "         \
    "output_errno_at = ?17, stderr_bytes = ?18, user = ?19"

enum {
    ST_INSERT,
    ST_UPDATE,
    ST_GET,
    ST_DELETE,
    ST_TOTALS,
    ST_OLDEST,
    ST_BY_STATUS,
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_MAX,
};

static const char *const stmt_sql[ST_MAX] = {
    [ST_INSERT] = "INSERT INTO jobs (" COLS ") VALUES (NULL, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "
                  "?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, "
                  "?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35)",
    [ST_UPDATE] = "UPDATE jobs SET " STATE_SET " WHERE id = ?1",
    [ST_GET] = "SELECT " COLS " FROM jobs WHERE id = ?1",
    [ST_DELETE] = "DELETE FROM jobs WHERE id = ?1",
    /* Without ANALYZE statistics the planner would take the range on jobs_status and read the
     * table for every row (4x slower with 1M jobs); the partial index covers the query. */
    [ST_TOTALS] = "SELECT count(*), total(output_bytes) FROM jobs INDEXED BY jobs_final "
                  "WHERE status BETWEEN 3 AND 5",
    [ST_OLDEST] =
        "SELECT id, end_ns, output_bytes FROM jobs WHERE status BETWEEN 3 AND 5 ORDER BY end_ns "
        "LIMIT ?1",
    /* The jobs_status index holds (status, seq): counting a status reads its range only. */
    [ST_BY_STATUS] = "SELECT status, count(*) FROM jobs GROUP BY status",
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
};

typedef struct conn {
    sqlite3 *h;
    sqlite3_stmt *st[ST_MAX];
    struct conn *next;
} conn;

struct jobdb {
    char *path;
    bool memory; /* ":memory:": one connection serves reads and writes */
    pthread_mutex_t wlock;
    conn *writer;
    pthread_mutex_t plock;
    pthread_cond_t pcond;
    conn *idle; /* reader connections not in use */
    size_t n_readers;
    jobdb_sync sync;
    int64_t last_create_ns; /* of the newest record (under wlock): creation times never go back */
};

/* Fills err from a failed SQLite call on h: a full disk is RESOURCE_EXHAUSTED (-ENOSPC), any
 * other failure UNAVAILABLE (-EIO) with SQLite's own words. */
static int db_fail(const jobdb *db, sqlite3 *h, int rc, jw_error *err, const char *what)
{
    int ext = h ? sqlite3_extended_errcode(h) : rc;
    const char *msg = h ? sqlite3_errmsg(h) : sqlite3_errstr(rc);
    if ((rc & 0xff) == SQLITE_FULL || (ext & 0xff) == SQLITE_FULL)
        return jw_error_set(err, JW_RESOURCE_EXHAUSTED, -ENOSPC,
                            "job database '%s': %s: %s (the disk is full)", db->path, what, msg);
    if ((rc & 0xff) == SQLITE_NOTADB || (rc & 0xff) == SQLITE_CORRUPT)
        return jw_error_set(err, JW_FAILED_PRECONDITION, -EUCLEAN,
                            "job database '%s' is not a usable SQLite database (%s: %s): move it "
                            "away to start with an empty history, or restore it from a backup",
                            db->path, what, msg);
    return jw_error_set(err, JW_UNAVAILABLE, -EIO, "job database '%s': %s: %s (SQLite code %d)",
                        db->path, what, msg, ext);
}

static void conn_free(conn *c)
{
    if (!c)
        return;
    for (int i = 0; i < ST_MAX; i++)
        sqlite3_finalize(c->st[i]);
    sqlite3_close_v2(c->h);
    free(c);
}

static int exec_sql(const jobdb *db, sqlite3 *h, const char *sql, jw_error *err, const char *what)
{
    char *emsg = NULL;
    int rc = sqlite3_exec(h, sql, NULL, NULL, &emsg);
    sqlite3_free(emsg);
    return rc == SQLITE_OK ? 0 : db_fail(db, h, rc, err, what);
}

static int conn_open(jobdb *db, bool create, conn **ret, jw_error *err)
{
    conn *c = calloc(1, sizeof(*c));
    if (!c)
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE |
                (create ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(db->path, &c->h, flags, NULL);
    if (rc != SQLITE_OK) {
        db_fail(db, c->h, rc, err, "open");
        conn_free(c);
        return -EIO;
    }
    sqlite3_busy_timeout(c->h, 10000);
    const char *sync =
        db->sync == JOBDB_SYNC_FULL ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL";
    int r = exec_sql(db, c->h, sync, err, "set the sync mode");
    if (r < 0) {
        conn_free(c);
        return r;
    }
    *ret = c;
    return 0;
}

static int conn_prepare(jobdb *db, conn *c, jw_error *err)
{
    for (int i = 0; i < ST_MAX; i++) {
        int rc =
            sqlite3_prepare_v3(c->h, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &c->st[i], NULL);
        if (rc != SQLITE_OK)
            return db_fail(db, c->h, rc, err, "prepare a statement");
    }
    return 0;
}

/* A row of one integer from a PRAGMA. */
static int pragma_int(jobdb *db, sqlite3 *h, const char *sql, int64_t *ret, jw_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(h, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *ret = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        }
    }
    int r = rc == SQLITE_OK ? 0 : db_fail(db, h, rc, err, sql);
    sqlite3_finalize(st);
    return r;
}

/* Damage SQLite can see without reading every row twice: PRAGMA quick_check. */
static int check_file(jobdb *db, sqlite3 *h, jw_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(h, "PRAGMA quick_check(1)", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    int r = 0;
    if (rc == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        if (!v || strcmp(v, "ok") != 0)
            r = jw_error_set(err, JW_FAILED_PRECONDITION, -EUCLEAN,
                             "job database '%s' is damaged (SQLite's quick check: %s): move it "
                             "away to start with an empty history, or restore it from a backup",
                             db->path, v ? v : "no answer");
    } else if ((rc & 0xff) == SQLITE_NOTADB || (rc & 0xff) == SQLITE_CORRUPT) {
        r = jw_error_set(err, JW_FAILED_PRECONDITION, -EUCLEAN,
                         "job database '%s' is not a usable SQLite database (%s): move it away "
                         "to start with an empty history, or restore it from a backup",
                         db->path, sqlite3_errmsg(h));
    } else {
        r = db_fail(db, h, rc, err, "check the file");
    }
    sqlite3_finalize(st);
    return r;
}

static int newest_create_ns(jobdb *db, int64_t *ret, jw_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(
        db->writer->h, "SELECT create_ns FROM jobs ORDER BY seq DESC LIMIT 1", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    *ret = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_fail(db, db->writer->h, rc, err, "read");
}

static int migrate(jobdb *db, sqlite3 *h, jw_error *err)
{
    int64_t v = 0;
    int r = pragma_int(db, h, "PRAGMA user_version", &v, err);
    if (r < 0)
        return r;
    if (v > JOBDB_SCHEMA_VERSION || v < 0)
        return jw_error_set(err, JW_FAILED_PRECONDITION, -EPROTO,
                            "job database '%s' has schema version %lld, newer than this server's "
                            "%d: it was written by a newer jobworker; run that version, or move "
                            "the file away to start with an empty history",
                            db->path, (long long)v, JOBDB_SCHEMA_VERSION);
    int64_t from = v;
    for (; v < JOBDB_SCHEMA_VERSION; v++) {
        char sql[2048];
        snprintf(sql, sizeof(sql), "BEGIN IMMEDIATE; %s PRAGMA user_version = %lld; COMMIT;",
                 migrations[v], (long long)v + 1);
        r = exec_sql(db, h, sql, err, "migrate the schema");
        if (r < 0) {
            (void)sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
            return jw_error_wrap(err, r, "schema version %lld to %lld", (long long)v,
                                 (long long)v + 1);
        }
    }
    if (from > 0 && from < JOBDB_SCHEMA_VERSION)
        log_info("job database '%s' migrated from schema version %lld to %d", db->path,
                 (long long)from, JOBDB_SCHEMA_VERSION);
    return 0;
}

int jobdb_open(const jobdb_config *cfg, jobdb **ret, bool *ret_created, jw_error *err)
{
    if (!cfg->path || !*cfg->path)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL, "job database path is empty");
    jobdb *db = calloc(1, sizeof(*db));
    if (!db)
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    pthread_mutex_init(&db->wlock, NULL);
    pthread_mutex_init(&db->plock, NULL);
    pthread_cond_init(&db->pcond, NULL);
    db->sync = cfg->sync;
    db->memory = strcmp(cfg->path, ":memory:") == 0;
    db->path = strdup(cfg->path);
    if (!db->path) {
        jobdb_close(db);
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    }
    struct stat stt;
    bool created = db->memory || (stat(db->path, &stt) < 0 && errno == ENOENT);
    char wal[PATH_MAX];
    snprintf(wal, sizeof(wal), "%s-wal", db->path);
    bool unclean = !db->memory && stat(wal, &stt) == 0;

    int r = conn_open(db, true, &db->writer, err);
    if (r == 0 && !db->memory) {
        /* WAL: readers never block the writer or wait for it. */
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(db->writer->h, "PRAGMA journal_mode = WAL", -1, &st, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            const char *m = (const char *)sqlite3_column_text(st, 0);
            if (!m || strcmp(m, "wal") != 0)
                r = jw_error_set(err, JW_FAILED_PRECONDITION, -EINVAL,
                                 "job database '%s': cannot use WAL mode (got '%s'): put the "
                                 "data directory on a local file system",
                                 db->path, m ? m : "");
        } else {
            sqlite3_finalize(st);
            st = NULL;
            /* The first read of a file that is not a database fails here. */
            r = check_file(db, db->writer->h, err);
            if (r == 0)
                r = db_fail(db, db->writer->h, rc, err, "set WAL mode");
        }
        sqlite3_finalize(st);
    }
    /* The whole file is checked only when the last server did not close it: a WAL file is
     * left behind by a crash, kill -9 or power loss (a clean close checkpoints and removes it).
     * Reading 1M jobs' pages takes ~1 s warm and most of a cold start. */
    if (r == 0 && !created && unclean)
        r = check_file(db, db->writer->h, err);
    if (r == 0)
        r = migrate(db, db->writer->h, err);
    if (r == 0)
        r = newest_create_ns(db, &db->last_create_ns, err);
    if (r == 0)
        r = conn_prepare(db, db->writer, err);
    if (r < 0) {
        jobdb_close(db);
        return r;
    }
    if (ret_created)
        *ret_created = created;
    *ret = db;
    return 0;
}

void jobdb_close(jobdb *db)
{
    if (!db)
        return;
    while (db->idle) {
        conn *c = db->idle;
        db->idle = c->next;
        conn_free(c);
    }
    conn_free(db->writer);
    pthread_mutex_destroy(&db->wlock);
    pthread_mutex_destroy(&db->plock);
    pthread_cond_destroy(&db->pcond);
    free(db->path);
    free(db);
}

const char *jobdb_path(const jobdb *db)
{
    return db->path;
}

void jobdb_record_clear(jobdb_record *r)
{
    if (!r)
        return;
    free(r->command);
    for (size_t i = 0; i < r->nargs && r->args; i++)
        free(r->args[i]);
    free(r->args);
    for (size_t i = 0; i < r->nenv && r->env; i++)
        free(r->env[i]);
    free(r->env);
    free(r->owner);
    free(r->user);
    free(r->error);
    memset(r, 0, sizeof(*r));
}

/* ---- connections ---- */

static conn *writer_take(jobdb *db)
{
    pthread_mutex_lock(&db->wlock);
    return db->writer;
}

static void writer_give(jobdb *db)
{
    pthread_mutex_unlock(&db->wlock);
}

/* A reader connection of the pool (opened on demand), or the writer for an in-memory db. */
static int reader_take(jobdb *db, conn **ret, jw_error *err)
{
    if (db->memory) {
        *ret = writer_take(db);
        return 0;
    }
    pthread_mutex_lock(&db->plock);
    while (!db->idle && db->n_readers >= JOBDB_READERS_MAX)
        pthread_cond_wait(&db->pcond, &db->plock);
    conn *c = db->idle;
    if (c) {
        db->idle = c->next;
        pthread_mutex_unlock(&db->plock);
        *ret = c;
        return 0;
    }
    db->n_readers++;
    pthread_mutex_unlock(&db->plock);
    c = NULL;
    int r = conn_open(db, false, &c, err);
    if (r == 0 && c) {
        r = conn_prepare(db, c, err);
        if (r < 0)
            conn_free(c);
    }
    if (r < 0 || !c) {
        pthread_mutex_lock(&db->plock);
        db->n_readers--;
        pthread_cond_signal(&db->pcond);
        pthread_mutex_unlock(&db->plock);
        return r < 0 ? r : -EIO;
    }
    *ret = c;
    return 0;
}

static void reader_give(jobdb *db, conn *c)
{
    if (db->memory) {
        writer_give(db);
        return;
    }
    pthread_mutex_lock(&db->plock);
    c->next = db->idle;
    db->idle = c;
    pthread_cond_signal(&db->pcond);
    pthread_mutex_unlock(&db->plock);
}

/* ---- rows ---- */

/* Binds the state columns (status .. stderr_bytes, in COLS order) from parameter `first` on:
 * ?17..?33 in ST_INSERT, ?2..?18 in ST_UPDATE (STATE_SET). */
static void bind_state(sqlite3_stmt *st, int first, const jobdb_record *r)
{
    int k = first;
    sqlite3_bind_int(st, k++, r->status);
    sqlite3_bind_int(st, k++, r->reason);
    sqlite3_bind_int(st, k++, r->pid);
    sqlite3_bind_int64(st, k++, r->start_ns);
    sqlite3_bind_int64(st, k++, r->end_ns);
    sqlite3_bind_int(st, k++, r->exit_code);
    sqlite3_bind_int(st, k++, r->signal);
    sqlite3_bind_text(st, k++, r->error ? r->error : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, k++, r->usage.cpu_usec);
    sqlite3_bind_int64(st, k++, r->usage.memory_peak_bytes);
    sqlite3_bind_int64(st, k++, r->usage.io_read_bytes);
    sqlite3_bind_int64(st, k++, r->usage.io_write_bytes);
    sqlite3_bind_int64(st, k++, r->output_bytes);
    sqlite3_bind_int64(st, k++, r->output_dropped);
    sqlite3_bind_int(st, k++, r->output_errno);
    sqlite3_bind_int64(st, k++, r->output_errno_at);
    sqlite3_bind_int64(st, k, r->stderr_bytes);
}

/* Strings joined, each followed by a NUL (none holds one): the args and env columns. */
static char *strv_pack(char *const *v, size_t n, size_t *ret_len)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += strlen(v[i]) + 1;
    char *blob = malloc(len ? len : 1);
    if (!blob)
        return NULL;
    char *p = blob;
    for (size_t i = 0; i < n; i++)
        p = stpcpy(p, v[i]) + 1;
    *ret_len = len;
    return blob;
}

/* The strings of a packed column: at most `max` of them. false when out of memory. */
static bool strv_unpack(const char *blob, size_t blen, size_t max, char ***ret, size_t *ret_n)
{
    char **v = calloc(max ? max : 1, sizeof(char *));
    *ret = v;
    *ret_n = 0;
    if (!v)
        return false;
    size_t off = 0;
    for (size_t k = 0; k < max && off < blen; k++) {
        size_t l = strnlen(blob + off, blen - off);
        v[k] = strndup(blob + off, l);
        if (!v[k])
            return false;
        (*ret_n)++;
        off += l + 1;
    }
    return true;
}

/* How many strings a packed column holds. */
static size_t strv_count(const char *blob, size_t blen)
{
    size_t n = 0;
    for (size_t off = 0; off < blen; off += strnlen(blob + off, blen - off) + 1)
        n++;
    return n;
}

int jobdb_insert(jobdb *db, jobdb_record *r, int64_t *ret_seq, jw_error *err)
{
    size_t alen = 0, elen = 0;
    _cleanup_free_ char *args = strv_pack(r->args, r->nargs, &alen);
    _cleanup_free_ char *env = strv_pack(r->env, r->nenv, &elen);
    if (!args || !env)
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");

    conn *c = writer_take(db);
    /* In seq order creation times never decrease (a clock stepped back reads as the newest time
     * recorded), so a listing by creation time can stop at the first older job. */
    if (r->create_ns < db->last_create_ns)
        r->create_ns = db->last_create_ns;
    sqlite3_stmt *st = c->st[ST_INSERT];
    sqlite3_bind_text(st, 2, r->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, r->command, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 4, args, (int)alen, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, (int64_t)r->nargs);
    sqlite3_bind_text(st, 6, r->owner ? r->owner : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, r->user ? r->user : "", -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 8, r->network);
    sqlite3_bind_int(st, 9, r->limits.cpu_percent);
    sqlite3_bind_int64(st, 10, r->limits.memory_bytes);
    sqlite3_bind_int64(st, 11, r->limits.io_bps);
    sqlite3_bind_int64(st, 12, r->limits.memory_high_bytes);
    sqlite3_bind_int(st, 13, r->limits.pids_max);
    sqlite3_bind_int(st, 14, r->limits_enforced);
    sqlite3_bind_int(st, 15, r->timeout_seconds);
    sqlite3_bind_int64(st, 16, r->create_ns);
    bind_state(st, 17, r);
    sqlite3_bind_int(st, 34, r->stdin_pipe);
    sqlite3_bind_blob(st, 35, env, (int)elen, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int ret = 0;
    if (rc != SQLITE_DONE) {
        ret = db_fail(db, c->h, rc, err, "record the new job");
    } else {
        db->last_create_ns = r->create_ns;
        if (ret_seq)
            *ret_seq = sqlite3_last_insert_rowid(c->h);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    writer_give(db);
    return ret;
}

int jobdb_update(jobdb *db, const jobdb_record *r, jw_error *err)
{
    conn *c = writer_take(db);
    sqlite3_stmt *st = c->st[ST_UPDATE];
    sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
    bind_state(st, 2, r);                                                 /* ?2..?18 */
    sqlite3_bind_text(st, 19, r->user ? r->user : "", -1, SQLITE_STATIC); /* ?19 */
    int rc = sqlite3_step(st);
    int ret = 0;
    if (rc != SQLITE_DONE)
        ret = db_fail(db, c->h, rc, err, "record the job's state");
    else if (sqlite3_changes(c->h) == 0)
        ret = jw_error_set(err, JW_NOT_FOUND, -ENOENT, "job %s is not recorded", r->id);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    writer_give(db);
    return ret;
}

static char *col_strdup(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return strdup(t ? (const char *)t : "");
}

/* Fills r from a row of COLS; -ENOMEM leaves r cleared. */
static int row_read(sqlite3_stmt *st, jobdb_record *r)
{
    memset(r, 0, sizeof(*r));
    int i = 0;
    r->seq = sqlite3_column_int64(st, i++);
    const unsigned char *id = sqlite3_column_text(st, i++);
    snprintf(r->id, sizeof(r->id), "%s", id ? (const char *)id : "");
    r->command = col_strdup(st, i++);
    const char *blob = sqlite3_column_blob(st, i);
    size_t blen = (size_t)sqlite3_column_bytes(st, i++);
    size_t nargs = (size_t)sqlite3_column_int64(st, i++);
    bool oom = !r->command || !strv_unpack(blob, blen, nargs, &r->args, &r->nargs);
    r->owner = col_strdup(st, i++);
    r->user = col_strdup(st, i++);
    r->network = (job_network)sqlite3_column_int(st, i++);
    r->limits.cpu_percent = sqlite3_column_int(st, i++);
    r->limits.memory_bytes = sqlite3_column_int64(st, i++);
    r->limits.io_bps = sqlite3_column_int64(st, i++);
    r->limits.memory_high_bytes = sqlite3_column_int64(st, i++);
    r->limits.pids_max = sqlite3_column_int(st, i++);
    r->limits_enforced = sqlite3_column_int(st, i++) != 0;
    r->timeout_seconds = sqlite3_column_int(st, i++);
    r->create_ns = sqlite3_column_int64(st, i++);
    r->status = (job_status)sqlite3_column_int(st, i++);
    r->reason = (job_reason)sqlite3_column_int(st, i++);
    r->pid = sqlite3_column_int(st, i++);
    r->start_ns = sqlite3_column_int64(st, i++);
    r->end_ns = sqlite3_column_int64(st, i++);
    r->exit_code = sqlite3_column_int(st, i++);
    r->signal = sqlite3_column_int(st, i++);
    r->error = col_strdup(st, i++);
    r->usage.cpu_usec = sqlite3_column_int64(st, i++);
    r->usage.memory_peak_bytes = sqlite3_column_int64(st, i++);
    r->usage.io_read_bytes = sqlite3_column_int64(st, i++);
    r->usage.io_write_bytes = sqlite3_column_int64(st, i++);
    r->output_bytes = sqlite3_column_int64(st, i++);
    r->output_dropped = sqlite3_column_int64(st, i++);
    r->output_errno = sqlite3_column_int(st, i++);
    r->output_errno_at = sqlite3_column_int64(st, i++);
    r->stderr_bytes = sqlite3_column_int64(st, i++);
    r->stdin_pipe = sqlite3_column_int(st, i++) != 0;
    blob = sqlite3_column_blob(st, i);
    blen = (size_t)sqlite3_column_bytes(st, i++);
    if (!strv_unpack(blob, blen, strv_count(blob, blen), &r->env, &r->nenv))
        oom = true;
    if (oom || !r->owner || !r->user || !r->error) {
        jobdb_record_clear(r);
        return -ENOMEM;
    }
    return 0;
}

/* A reader connection and one of its prepared statements; reader_end() resets the statement and
 * gives the connection back. */
static int reader_begin(jobdb *db, int which, conn **ret_c, sqlite3_stmt **ret_st, jw_error *err)
{
    int r = reader_take(db, ret_c, err);
    if (r == 0)
        *ret_st = (*ret_c)->st[which];
    return r;
}

static void reader_end(jobdb *db, conn *c, sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    reader_give(db, c);
}

int jobdb_get(jobdb *db, const char *id, jobdb_record *ret, jw_error *err)
{
    conn *c = NULL;
    sqlite3_stmt *st = NULL;
    int r = reader_begin(db, ST_GET, &c, &st, err);
    if (r < 0)
        return r;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        r = row_read(st, ret) < 0 ? jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory") : 0;
    else if (rc == SQLITE_DONE)
        r = jw_error_set(err, JW_NOT_FOUND, -ENOENT, "job %s not found", id);
    else
        r = db_fail(db, c->h, rc, err, "read a job");
    reader_end(db, c, st);
    return r;
}

int jobdb_delete(jobdb *db, const char *const *ids, size_t n, jw_error *err)
{
    conn *c = writer_take(db);
    int rc = sqlite3_step(c->st[ST_BEGIN]);
    sqlite3_reset(c->st[ST_BEGIN]);
    int r = rc == SQLITE_DONE ? 0 : db_fail(db, c->h, rc, err, "begin a deletion");
    for (size_t i = 0; r == 0 && i < n; i++) {
        sqlite3_stmt *st = c->st[ST_DELETE];
        sqlite3_bind_text(st, 1, ids[i], -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
            r = db_fail(db, c->h, rc, err, "delete a job");
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    if (r == 0) {
        rc = sqlite3_step(c->st[ST_COMMIT]);
        sqlite3_reset(c->st[ST_COMMIT]);
        if (rc != SQLITE_DONE)
            r = db_fail(db, c->h, rc, err, "commit a deletion");
    }
    if (r < 0 && !sqlite3_get_autocommit(c->h)) {
        sqlite3_step(c->st[ST_ROLLBACK]);
        sqlite3_reset(c->st[ST_ROLLBACK]);
    }
    writer_give(db);
    return r;
}

int jobdb_list(jobdb *db, const jobdb_query *q, jobdb_record **ret, size_t *ret_n, jw_error *err)
{
    size_t limit = q->limit ? q->limit : 1;
    char sql[1024];
    /* Built from fixed pieces only; every value is bound. */
    int n = snprintf(sql, sizeof(sql), "SELECT " COLS " FROM jobs WHERE 1");
    if (q->before_seq > 0)
        n += snprintf(sql + n, sizeof(sql) - (size_t)n, " AND seq < ?1");
    if (q->owner && *q->owner)
        n += snprintf(sql + n, sizeof(sql) - (size_t)n, " AND owner = ?2");
    if (q->status_mask) {
        n += snprintf(sql + n, sizeof(sql) - (size_t)n, " AND status IN (");
        bool first = true;
        for (int s = 0; s < 32; s++) {
            if (q->status_mask & (1u << s)) {
                n += snprintf(sql + n, sizeof(sql) - (size_t)n, "%s%d", first ? "" : ",", s);
                first = false;
            }
        }
        n += snprintf(sql + n, sizeof(sql) - (size_t)n, ")");
    }
    snprintf(sql + n, sizeof(sql) - (size_t)n, " ORDER BY seq DESC LIMIT ?4");

    jobdb_record *v = calloc(limit, sizeof(*v));
    if (!v)
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    conn *c;
    int r = reader_take(db, &c, err);
    if (r < 0) {
        free(v);
        return r;
    }
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->h, sql, -1, &st, NULL);
    size_t got = 0;
    if (rc != SQLITE_OK) {
        r = db_fail(db, c->h, rc, err, "list jobs");
    } else {
        if (q->before_seq > 0)
            sqlite3_bind_int64(st, 1, q->before_seq);
        if (q->owner && *q->owner)
            sqlite3_bind_text(st, 2, q->owner, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, (int64_t)limit);
        while (got < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            /* Newest first, and creation times never decrease with seq (jobdb_insert): the
             * first job created before `since` ends the page, with no scan of older rows. */
            if (q->since_ns > 0 && sqlite3_column_int64(st, COL_CREATE_NS) < q->since_ns) {
                rc = SQLITE_DONE;
                break;
            }
            if (row_read(st, &v[got]) < 0) {
                r = jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
                break;
            }
            got++;
        }
        if (r == 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
            r = db_fail(db, c->h, rc, err, "list jobs");
    }
    sqlite3_finalize(st);
    reader_give(db, c);
    if (r < 0) {
        for (size_t i = 0; i < got; i++)
            jobdb_record_clear(&v[i]);
        free(v);
        return r;
    }
    *ret = v;
    *ret_n = got;
    return 0;
}

int jobdb_final_totals(jobdb *db, int64_t *ret_jobs, int64_t *ret_output_bytes, jw_error *err)
{
    conn *c = NULL;
    sqlite3_stmt *st = NULL;
    int r = reader_begin(db, ST_TOTALS, &c, &st, err);
    if (r < 0)
        return r;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *ret_jobs = sqlite3_column_int64(st, 0);
        *ret_output_bytes = (int64_t)sqlite3_column_double(st, 1);
    } else {
        r = db_fail(db, c->h, rc, err, "count finished jobs");
    }
    reader_end(db, c, st);
    return r;
}

const char *jobdb_library_version(void)
{
    return sqlite3_libversion();
}

int jobdb_count_by_status(jobdb *db, int64_t ret[JOB_STATUS_MAX + 1], jw_error *err)
{
    conn *c = NULL;
    sqlite3_stmt *st = NULL;
    int r = reader_begin(db, ST_BY_STATUS, &c, &st, err);
    if (r < 0)
        return r;
    for (int i = 0; i <= JOB_STATUS_MAX; i++)
        ret[i] = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int status = sqlite3_column_int(st, 0);
        if (status >= 0 && status <= JOB_STATUS_MAX)
            ret[status] = sqlite3_column_int64(st, 1);
    }
    if (rc != SQLITE_DONE)
        r = db_fail(db, c->h, rc, err, "count jobs by status");
    reader_end(db, c, st);
    return r;
}

int jobdb_oldest_final(jobdb *db, jobdb_victim *ret, size_t max, size_t *ret_n, jw_error *err)
{
    conn *c = NULL;
    sqlite3_stmt *st = NULL;
    int r = reader_begin(db, ST_OLDEST, &c, &st, err);
    if (r < 0)
        return r;
    sqlite3_bind_int64(st, 1, (int64_t)max);
    size_t n = 0;
    int rc = SQLITE_DONE;
    while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *id = sqlite3_column_text(st, 0);
        snprintf(ret[n].id, sizeof(ret[n].id), "%s", id ? (const char *)id : "");
        ret[n].end_ns = sqlite3_column_int64(st, 1);
        ret[n].output_bytes = sqlite3_column_int64(st, 2);
        n++;
    }
    if (n < max && rc != SQLITE_DONE)
        r = db_fail(db, c->h, rc, err, "find the oldest finished jobs");
    reader_end(db, c, st);
    *ret_n = n;
    return r;
}
