/* The job model: what a job asks for (job_spec), its life cycle (job_status, job_reason and the
 * state machine), and the validation of a request against the host.
 *
 * This module knows no process, cgroup or network; it is pure data and rules, so it is
 * unit-tested exhaustively (tests/unit/test_job.c).
 */
#ifndef JW_JOB_JOB_H
#define JW_JOB_JOB_H

#include "util/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Caps on what a client can make the server allocate for one request. */
#define JOB_COMMAND_MAX         4096         /* bytes of the command (a path or a name on PATH) */
#define JOB_ARG_MAX             (128 * 1024) /* bytes of one argument, the kernel's MAX_ARG_STRLEN */
#define JOB_ARGC_MAX            4096         /* number of arguments */
#define JOB_ARGV_TOTAL_MAX      (1024 * 1024) /* bytes of command and all arguments together */
#define JOB_MEMORY_MIN          (4LL * 1024 * 1024)
#define JOB_IO_BPS_MIN          4096LL      /* below a page a second io.max is meaningless */
#define JOB_IO_BPS_MAX          (1LL << 50) /* 1 PiB/s; anything above is a typo */
#define JOB_PIDS_MAX_MAX        4194304     /* the kernel's PID_MAX_LIMIT */
#define JOB_TIMEOUT_MAX_SECONDS (366 * 24 * 3600)

typedef enum {
    JOB_STATUS_UNSPECIFIED = 0,
    JOB_STATUS_INITIALIZING = 1,
    JOB_STATUS_RUNNING = 2,
    JOB_STATUS_COMPLETED = 3,
    JOB_STATUS_FAILED = 4,
    JOB_STATUS_STOPPED = 5,
} job_status;

typedef enum {
    JOB_REASON_UNSPECIFIED = 0,
    JOB_REASON_EXITED = 1,
    JOB_REASON_SIGNALED = 2,
    JOB_REASON_OOM_KILLED = 3,
    JOB_REASON_STOPPED = 4,
    JOB_REASON_TIMED_OUT = 5,
    JOB_REASON_START_FAILED = 6,
    JOB_REASON_SERVER_SHUTDOWN = 7,
} job_reason;

typedef enum {
    JOB_NETWORK_DEFAULT = 0, /* the server's default */
    JOB_NETWORK_HOST = 1,
    JOB_NETWORK_NONE = 2, /* a network namespace with only loopback */
} job_network;

/* Resource limits; 0 means "server default" in a request and "unlimited" once resolved. */
typedef struct job_limits {
    int32_t cpu_percent;  /* 100 = one core */
    int64_t memory_bytes; /* memory.max */
    int64_t io_bps;       /* io.max rbps and wbps */
    int64_t memory_high_bytes;
    int32_t pids_max;
} job_limits;

typedef struct job_usage {
    int64_t cpu_usec;
    int64_t memory_peak_bytes;
    int64_t io_read_bytes;
    int64_t io_write_bytes;
} job_usage;

/* What the host offers; validation checks requests against it. */
typedef struct job_host {
    int ncpus;
    int64_t memory_bytes; /* physical RAM */
    bool cgroups;         /* false with --no-cgroups: any limit is FAILED_PRECONDITION */
    bool io_controller;   /* io.max can be applied */
} job_host;

/* A request after decoding. Borrowed strings: the caller owns them. */
typedef struct job_request {
    const char *command;
    size_t command_len; /* bytes on the wire; a NUL inside makes it differ from strlen */
    const char *const *args;
    const size_t *args_len; /* may be NULL: then strlen() is used */
    size_t nargs;
    job_limits limits;
    int64_t timeout_seconds;
    int network; /* job_network; any other value is rejected */
} job_request;

/* Checks every rule of a request and fills err (INVALID_ARGUMENT or FAILED_PRECONDITION) with a
 * message that names the field and the value. Returns 0 or -EINVAL. */
int job_request_validate(const job_request *req, const job_host *host, jw_error *err);

/* Fills zero fields of *lim with the defaults; the result is what the job will run with. */
void job_limits_resolve(job_limits *lim, const job_limits *defaults);

/* Validates a set of defaults (server flags) with the same rules. */
int job_limits_validate(const job_limits *lim, const job_host *host, jw_error *err);

/* The state machine. Returns true when `from` may become `to`:
 * INITIALIZING -> RUNNING | FAILED (start failed) | STOPPED (stopped before it ran)
 * RUNNING -> COMPLETED | FAILED | STOPPED; final states never change. */
bool job_status_can_transition(job_status from, job_status to);
bool job_status_is_final(job_status s);

/* The final status for an ending: COMPLETED for exit 0 by itself, STOPPED for a user's stop,
 * FAILED for everything else. */
job_status job_status_for_reason(job_reason reason, int exit_code);

const char *job_status_name(job_status s); /* "RUNNING" */
const char *job_reason_name(job_reason r); /* "OOM_KILLED" */

/* Reads the host's CPU count and RAM. */
int job_host_probe(job_host *ret);

#endif
