/* The job table, the job history and the job output log.
 *
 * Live jobs (not final yet, or final but not yet durable) are held in memory; every job is also
 * recorded in the history database (db/jobdb), written before CreateJob answers and at each
 * state change, so finished jobs are read back from it and the server's memory does not grow
 * with history. store_lookup and store_list return the same store_job objects for both: a
 * finished job read from the database is a detached, final job whose output is complete.
 *
 * A store_job is a reference-counted record. Its identity and request (id, command, args,
 * limits, owner) never change after store_job_new; its state (status, pid, exit, usage...)
 * changes under the job's lock and is read as a consistent copy with store_job_snapshot.
 *
 * Output goes to one append-only file per job under <data_dir>/output/ and is read by offset.
 * Subscribers are offsets held by their readers, never queues: store_sub_arm() asks to be woken
 * once when bytes beyond an offset, or the end, exist. A slow reader costs nothing here.
 *
 * The store knows no process, cgroup or network (docs/ARCHITECTURE.md, the layering rule).
 */
#ifndef JW_STORE_STORE_H
#define JW_STORE_STORE_H

#include "db/jobdb.h"
#include "job/job.h"
#include "util/error.h"
#include "util/misc.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct store store;
typedef struct store_job store_job;
typedef struct store_sub store_sub;

typedef struct store_config {
    const char *data_dir;     /* created if missing; output files live in <data_dir>/output */
    const char *db_path;      /* NULL = <data_dir>/jobs.db; ":memory:" keeps no history */
    jobdb_sync db_sync;       /* see db/jobdb.h */
    size_t max_jobs;          /* unfinished jobs at once; 0 = unlimited; RESOURCE_EXHAUSTED past */
    int64_t max_output_bytes; /* per job; 0 = unlimited. Past it output is dropped and counted */
    /* Retention of finished jobs (0 = no limit of that kind): the oldest-ended are removed,
     * record and output, while any limit is exceeded. */
    int64_t retain_age_ns;
    int64_t retain_output_bytes;
    int64_t retain_jobs;
    /* How often a background thread runs store_sweep(), the first time just after store_new()
     * (not before it returns: a long stop may leave a whole history to remove); 0 = no thread
     * (the caller sweeps). */
    int64_t sweep_interval_ms;
} store_config;

/* What a job is created from. Strings are copied. */
typedef struct store_job_spec {
    const char *command;
    const char *const *args;
    size_t nargs;
    job_limits limits; /* effective */
    bool limits_enforced;
    int32_t timeout_seconds;
    const char *owner;      /* CN of the creator */
    job_network network;    /* effective: HOST or NONE */
    const char *user;       /* who the job runs as, for display */
    bool queued;            /* recorded QUEUED (waits for admission), else INITIALIZING */
    bool stdin_pipe;        /* reads its stdin from WriteStdin */
    const char *const *env; /* extra "NAME=VALUE" entries */
    size_t nenv;
} store_job_spec;

/* A consistent copy of a job for reporting. Strings point into the job (immutable fields) or
 * into the snapshot itself; valid while the caller holds its reference to the job. */
typedef struct store_job_info {
    const char *id;
    const char *command;
    const char *const *args;
    size_t nargs;
    const char *const *env;
    size_t nenv;
    const char *owner;
    job_limits limits; /* effective */
    bool limits_enforced;
    int32_t timeout_seconds;
    job_status status;
    job_reason reason;
    int32_t pid;
    int64_t start_time_ns;
    int64_t end_time_ns;
    int32_t exit_code;
    int32_t signal;
    char error[256];
    job_usage usage;
    int64_t output_bytes;
    int64_t stdout_bytes, stderr_bytes; /* of output_bytes */
    bool stdin_pipe;
    int64_t output_dropped;  /* bytes discarded: past max_output_bytes or not writable */
    int output_errno;        /* why output could not be written (ENOSPC...); 0 = only the cap */
    int64_t output_errno_at; /* the output's size when that write failed */
    job_network network;
    const char *user; /* points to user_buf */
    char user_buf[128];
    int64_t seq;       /* creation order in the history */
    int64_t create_ns; /* when CreateJob recorded it */
} store_job_info;

/* Opens the history (refusing a damaged or newer database), records every job that was not
 * final when the last server died as FAILED/SERVER_LOST, and runs one retention sweep. */
int store_new(const store_config *cfg, store **ret, jw_error *err);
/* Stops the sweep thread, frees the table and every job reference it holds; removes no file. */
void store_free(store *s);
const char *store_output_dir(const store *s);

/* Whether the data directory's file system has at least min_free bytes free for unprivileged
 * writers: RESOURCE_EXHAUSTED naming the directory and what is free when not, so that new jobs
 * are refused while the disk is full instead of running with their output thrown away. */
int store_check_space(store *s, int64_t min_free, jw_error *err);

/* Creates a job in INITIALIZING (or QUEUED, spec->queued) with a fresh UUIDv4 id and an empty
 * output file, records it in the history and inserts it. Copies command, args and owner. Returns a
 * new reference. When the history cannot be written (RESOURCE_EXHAUSTED for a full disk,
 * UNAVAILABLE otherwise) nothing is created. */
int store_job_new(store *s, const store_job_spec *spec, store_job **ret, jw_error *err);

/* A QUEUED job was admitted: it becomes INITIALIZING, recorded before anything of it starts (a
 * job the history shows QUEUED never ran). FAILED_PRECONDITION when it is not QUEUED (a stop
 * ended it), UNAVAILABLE when the record cannot be written (then it is still QUEUED). */
int store_job_dequeue(store_job *job, jw_error *err);

/* The QUEUED jobs, oldest first, as new references in a malloc'ed array (free each with
 * store_job_unref, then the array). At start these are the jobs a previous server accepted and
 * never started. */
size_t store_queued_jobs(store *s, store_job ***ret);
/* Removes a job that never started (internal failure during start), its record and output. */
void store_job_remove(store *s, store_job *job);
/* A new reference to the job with this id (live, or read from the history), or NULL. */
store_job *store_lookup(store *s, const char *id);

/* A page of the history, newest first; live jobs are reported with their live state. */
typedef struct store_query {
    int64_t before_seq;   /* 0 = from the newest */
    size_t limit;         /* at least 1 */
    unsigned status_mask; /* bit (1u << job_status); 0 = any */
    const char *owner;    /* NULL or "" = any */
    int64_t since_ns;     /* created at or after; 0 = any */
} store_query;
/* New references (the caller unrefs each and frees the array). *ret_next_seq is the
 * before_seq of the next page, 0 when this page is the last. */
int store_list(store *s, const store_query *q, store_job ***ret, size_t *ret_n,
               int64_t *ret_next_seq, jw_error *err);
/* The version of the database library behind the history ("3.40.1"). */
const char *store_db_library_version(void);
/* Unfinished jobs held in memory. */
size_t store_count(store *s);
/* Jobs per status (ret[status]): unfinished ones from the table, finished ones from the history
 * (a job whose final record is not written yet counts under its last recorded status). */
int store_count_by_status(store *s, int64_t ret[JOB_STATUS_MAX + 1], jw_error *err);

/* Removes a finished job's record and output at once. NOT_FOUND when unknown,
 * FAILED_PRECONDITION while it runs. Streams already reading it end normally. *ret (may be
 * NULL) gets a reference to the job as it was, for the answer. */
int store_job_delete(store *s, const char *id, store_job **ret, jw_error *err);

/* Retention and repair, also run by the sweep thread: records final states that could not be
 * written before (a full disk), then removes finished jobs past the retention limits, oldest
 * first, in small transactions. `now_ns` is the realtime clock. Logs what it removed. */
typedef struct store_sweep_stats {
    int64_t removed_jobs;
    int64_t removed_bytes;
    int64_t unlink_failed; /* output files that could not be removed (logged with the cause) */
    int64_t saved;         /* final records written late */
} store_sweep_stats;
int store_sweep(store *s, int64_t now_ns, store_sweep_stats *ret, jw_error *err);

/* Counters for the operator: records that could not be written when they changed (each is
 * retried; the job stays in memory until it is durable) and output files left behind. */
typedef struct store_stats {
    int64_t unsaved_now;     /* finished jobs whose final record is not durable yet */
    int64_t record_failures; /* failed writes of a job's record since start */
    int64_t unlink_failures; /* output files that could not be removed since start */
    int64_t lost_at_start;   /* jobs found unfinished at start: FAILED/SERVER_LOST */
    int64_t sweeps;          /* retention sweeps done (the first runs just after start) */
} store_stats;
void store_get_stats(store *s, store_stats *ret);

store_job *store_job_ref(store_job *job);
void store_job_unref(store_job *job);
const char *store_job_id(const store_job *job);

/* Who the job runs as, once its uid is known (a uid of its own from the pool), for display
 * ("dynamic (UID:GID)"); recorded with the job's next state. */
void store_job_set_user(store_job *job, const char *user);

/* State changes; each enforces the state machine and returns -EINVAL for a forbidden move. */
int store_job_set_running(store_job *job, pid_t pid, int64_t start_time_ns);
int store_job_finish(store_job *job, job_reason reason, int exit_code, int sig, const char *error,
                     const job_usage *usage, int64_t end_time_ns);
void store_job_snapshot(store_job *job, store_job_info *ret);
job_status store_job_status(store_job *job);
/* Waits until the job is in a final state and its output is closed; -ETIMEDOUT after timeout_ms
 * (negative = forever). */
int store_job_wait_final(store_job *job, int timeout_ms);

/* Records that a stop was asked for with `reason`: the first reason wins. Returns false (and
 * records nothing) when the job is already final. The supervisor reads it when it takes over a
 * job, so a stop that arrives while the job is still being started is never lost. */
bool store_job_request_stop(store_job *job, job_reason reason);
/* The first stop reason asked for, or JOB_REASON_UNSPECIFIED. */
job_reason store_job_stop_reason(store_job *job);

/* One-shot notification of a job's end, instead of a thread blocked in store_job_wait_final.
 * Returns 1 when the job is already final with its output closed (fn is not called), 0 when fn
 * was registered, -EBUSY past STORE_MAX_FINAL_WAITERS pending callbacks on the job, -ENOMEM.
 * fn runs exactly once, with no store lock held, on the thread that completes the job (the
 * supervisor's, or one of its cleanup workers): after the final state is recorded and the output
 * closed, or from store_job_remove() when a job that never started is removed (then the job is
 * not final). fn must be quick: it may snapshot the job, not wait. */
#define STORE_MAX_FINAL_WAITERS 1024
typedef void (*store_final_fn)(store_job *job, void *userdata);
int store_job_on_final(store_job *job, store_final_fn fn, void *userdata);

/* ---- Output log ---- */

/* Appends bytes the job wrote to `stream` (STDOUT or STDERR; single writer: the supervisor).
 * The log keeps both streams in arrival order and the stream index (store/runs.h) says which
 * bytes came from which. Bytes past max_output_bytes, and bytes that could not be written (the
 * write failed, e.g. ENOSPC), are dropped and counted in output_dropped. Wakes armed
 * subscribers. Returns 0, or the write's negative errno (the bytes then counted as dropped),
 * which the caller may log; -EBADF once the output is closed. */
int store_job_append(store_job *job, job_stream stream, const void *buf, size_t len);
/* Marks the output complete (the job ended); wakes every subscriber. Closes the write fd. */
void store_job_close_output(store_job *job);
/* Opens the output file for reading (O_RDONLY|O_CLOEXEC); the caller closes it. */
int store_job_open_output(store_job *job);
/* Size written so far and whether the output is complete. */
void store_job_output_state(store_job *job, int64_t *ret_size, bool *ret_closed);

/* A reader's position in a job's output: over both streams (offsets in the merged log) or over
 * one (offsets in that stream alone). */
typedef struct store_cursor store_cursor;
/* INVALID_ARGUMENT when the output is complete and `offset` lies beyond the selected bytes. */
int store_cursor_open(store_job *job, job_stream select, int64_t offset, store_cursor **ret,
                      jw_error *err);
void store_cursor_free(store_cursor *c); /* NULL is a no-op */
/* Bytes readable now at the cursor, in one run of one stream: at most `max`, 0 when none yet.
 * `size` is the log's size from store_job_output_state(). Runs of a stream the cursor does not
 * select are skipped. 0 or a negative errno (reading the index failed). */
int store_cursor_avail(store_cursor *c, int64_t size, size_t max, size_t *ret_n,
                       job_stream *ret_stream);
/* Reads n bytes (at most what store_cursor_avail said) and moves past them. */
int store_cursor_read(store_cursor *c, void *buf, size_t n);
/* The offset of the next byte in the cursor's terms (merged, or in the selected stream). */
int64_t store_cursor_offset(const store_cursor *c);
/* The log offset of the next byte (for store_sub_arm). */
int64_t store_cursor_log_pos(const store_cursor *c);

typedef void (*store_wake_fn)(void *userdata);

/* Registers a subscriber. `wake` is called at most once per arm, from the writer's thread with
 * the job's lock held: it must be quick and must not call into the store. */
int store_sub_new(store_job *job, store_wake_fn wake, void *userdata, store_sub **ret);
/* Returns 1 when bytes beyond `offset` or the end already exist (no wake will come: read now);
 * else arms the subscriber and returns 0: `wake` fires once when that changes. */
int store_sub_arm(store_sub *sub, int64_t offset);
/* Unregisters; after it returns no wake is running or will run. NULL is a no-op. */
void store_sub_free(store_sub *sub);
size_t store_job_n_subs(store_job *job);

#endif
