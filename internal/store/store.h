/* The job table and the job output log.
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
    size_t max_jobs;          /* 0 = unlimited; RESOURCE_EXHAUSTED past it */
    int64_t max_output_bytes; /* per job; 0 = unlimited. Past it output is dropped and counted */
} store_config;

/* What a job is created from. Strings are copied. */
typedef struct store_job_spec {
    const char *command;
    const char *const *args;
    size_t nargs;
    job_limits limits; /* effective */
    bool limits_enforced;
    int32_t timeout_seconds;
    const char *owner;   /* CN of the creator */
    job_network network; /* effective: HOST or NONE */
    const char *user;    /* who the job runs as, for display */
} store_job_spec;

/* A consistent copy of a job for reporting. Strings point into the job (immutable fields) or
 * into the snapshot itself; valid while the caller holds its reference to the job. */
typedef struct store_job_info {
    const char *id;
    const char *command;
    const char *const *args;
    size_t nargs;
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
    int64_t output_dropped;  /* bytes discarded: past max_output_bytes or not writable */
    int output_errno;        /* why output could not be written (ENOSPC...); 0 = only the cap */
    int64_t output_errno_at; /* the output's size when that write failed */
    job_network network;
    const char *user;
} store_job_info;

int store_new(const store_config *cfg, store **ret, jw_error *err);
/* Frees the table and every job reference it holds; removes no output file. */
void store_free(store *s);
const char *store_output_dir(const store *s);

/* Whether the data directory's file system has at least min_free bytes free for unprivileged
 * writers: RESOURCE_EXHAUSTED naming the directory and what is free when not, so that new jobs
 * are refused while the disk is full instead of running with their output thrown away. */
int store_check_space(store *s, int64_t min_free, jw_error *err);

/* Creates a job in INITIALIZING with a fresh UUIDv4 id and an empty output file, and inserts it.
 * Copies command, args and owner. Returns a new reference. */
int store_job_new(store *s, const store_job_spec *spec, store_job **ret, jw_error *err);
/* Removes a job that never started (internal failure during start) and its output file. */
void store_job_remove(store *s, store_job *job);
/* A new reference to the job with this id, or NULL. */
store_job *store_lookup(store *s, const char *id);
/* New references to every job, oldest first. The caller unrefs each and frees the array. */
int store_list(store *s, store_job ***ret, size_t *ret_n);
size_t store_count(store *s);

store_job *store_job_ref(store_job *job);
void store_job_unref(store_job *job);
const char *store_job_id(const store_job *job);

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

/* Appends bytes (single writer: the supervisor). Bytes past max_output_bytes, and bytes that
 * could not be written (the write failed, e.g. ENOSPC), are dropped and counted in
 * output_dropped. Wakes armed subscribers. Returns 0, or the write's negative errno (the bytes
 * then counted as dropped), which the caller may log; -EBADF once the output is closed. */
int store_job_append(store_job *job, const void *buf, size_t len);
/* Marks the output complete (the job ended); wakes every subscriber. Closes the write fd. */
void store_job_close_output(store_job *job);
/* Opens the output file for reading (O_RDONLY|O_CLOEXEC); the caller closes it. */
int store_job_open_output(store_job *job);
/* Size written so far and whether the output is complete. */
void store_job_output_state(store_job *job, int64_t *ret_size, bool *ret_closed);

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
