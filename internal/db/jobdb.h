/* The job history database: every job's record, durable across restarts.
 *
 * The only module that includes sqlite3.h. Its interface is records in, records and pages out,
 * so that another backend (a shared database server for several hosts) could replace it
 * without touching the store. One SQLite file in WAL mode, a versioned schema with forward
 * migrations (PRAGMA user_version), one writer connection behind a mutex and a small pool of
 * reader connections, so that reads (GetJob, GetJobs, the retention sweep) never wait for a
 * write and never block one.
 *
 * Durability (docs/api.md, "History"): a call that returned 0 is in the database file or its
 * WAL before it returns, so it survives a crash of the process (kill -9) in every sync mode.
 * JOBDB_SYNC_FULL also survives power loss (every commit fsyncs the WAL); JOBDB_SYNC_NORMAL
 * (the default) may lose the last commits on power loss, never consistency.
 */
#ifndef JW_DB_JOBDB_H
#define JW_DB_JOBDB_H

#include "job/job.h"
#include "util/error.h"
#include "util/misc.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The schema this build writes; older files are migrated forward at open, newer ones refused. */
#define JOBDB_SCHEMA_VERSION 4

typedef struct jobdb jobdb;

typedef enum {
    JOBDB_SYNC_NORMAL = 0, /* survives a process crash; power loss may lose the last commits */
    JOBDB_SYNC_FULL = 1,   /* every commit reaches the disk before it returns */
} jobdb_sync;

typedef struct jobdb_config {
    const char *path; /* the database file; ":memory:" keeps history in memory only */
    jobdb_sync sync;
} jobdb_config;

/* One job as recorded. Strings are owned by the record when it comes out of jobdb
 * (jobdb_record_clear frees them) and borrowed when it goes in. */
typedef struct jobdb_record {
    int64_t seq; /* creation order, assigned by jobdb_insert; 0 going in */
    char id[UUID_STR_LEN];
    char *command;
    char **args;
    size_t nargs;
    char *owner;
    char *user;
    job_network network;
    job_limits limits;
    bool limits_enforced;
    int32_t timeout_seconds;
    job_status status;
    job_reason reason;
    int32_t pid;
    int64_t create_ns, start_ns, end_ns;
    int32_t exit_code, signal;
    char *error;
    job_usage usage;
    int64_t output_bytes, output_dropped;
    int32_t output_errno;
    int64_t output_errno_at;
    int64_t stderr_bytes; /* of output_bytes; the rest came from stdout */
    bool stdin_pipe;      /* created with stdin (immutable) */
    char **env;           /* its extra environment (immutable) */
    size_t nenv;
} jobdb_record;

void jobdb_record_clear(jobdb_record *r);

/* Opens (creating when missing) and migrates the database. Refuses, with a message that says
 * what to do, a file that is not a database or fails SQLite's quick check, and a schema newer
 * than this build. *ret_created tells whether the file was new (may be NULL). */
int jobdb_open(const jobdb_config *cfg, jobdb **ret, bool *ret_created, jw_error *err);
void jobdb_close(jobdb *db); /* NULL is a no-op */
const char *jobdb_path(const jobdb *db);

/* Records a new job (every field; seq is assigned and returned in *ret_seq, may be NULL). In seq
 * order creation times never decrease: a create_ns older than the newest recorded one (a clock
 * stepped back) is raised to it, in *r.
 * RESOURCE_EXHAUSTED when the disk is full, UNAVAILABLE for any other failure to write. */
int jobdb_insert(jobdb *db, jobdb_record *r, int64_t *ret_seq, jw_error *err);
/* Writes every mutable field (status and what follows it in jobdb_record, and user) of the job
 * r->id.
 * -ENOENT (NOT_FOUND) when no such job is recorded. */
int jobdb_update(jobdb *db, const jobdb_record *r, jw_error *err);
/* -ENOENT (NOT_FOUND) when unknown. */
int jobdb_get(jobdb *db, const char *id, jobdb_record *ret, jw_error *err);
/* Removes records; ids that are not recorded are skipped. One transaction. */
int jobdb_delete(jobdb *db, const char *const *ids, size_t n, jw_error *err);

/* A page of the history, newest first. */
typedef struct jobdb_query {
    int64_t before_seq;   /* only jobs with seq < before_seq; 0 = from the newest */
    size_t limit;         /* at most this many records (at least 1) */
    unsigned status_mask; /* bit (1u << job_status); 0 = any status */
    const char *owner;    /* NULL or "" = any owner */
    int64_t since_ns;     /* created at or after; 0 = any time */
} jobdb_query;

/* *ret gets up to q->limit records (free each with jobdb_record_clear, then the array). */
int jobdb_list(jobdb *db, const jobdb_query *q, jobdb_record **ret, size_t *ret_n, jw_error *err);

/* Finished jobs (a final status) counted and their output bytes summed. */
int jobdb_final_totals(jobdb *db, int64_t *ret_jobs, int64_t *ret_output_bytes, jw_error *err);
/* SQLite's version ("3.40.1"). */
const char *jobdb_library_version(void);
/* Recorded jobs per status (ret[status]); reads the status index, O(jobs). */
int jobdb_count_by_status(jobdb *db, int64_t ret[JOB_STATUS_MAX + 1], jw_error *err);

/* The finished jobs that ended first, oldest first: what retention removes. */
typedef struct jobdb_victim {
    char id[UUID_STR_LEN];
    int64_t end_ns;
    int64_t output_bytes;
} jobdb_victim;
int jobdb_oldest_final(jobdb *db, jobdb_victim *ret, size_t max, size_t *ret_n, jw_error *err);

#endif
