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
#define JOB_COMMAND_MAX 4096 /* bytes of the command (a path or a name on PATH) */
/* Bytes of one argument: the kernel's MAX_ARG_STRLEN (32 pages, 131072 with 4 KiB pages)
 * counts the terminating NUL (fs/exec.c copy_strings: `len = strnlen_user(str, MAX_ARG_STRLEN);
 * if (!len || len > MAX_ARG_STRLEN) E2BIG`, where len includes the NUL), so the longest argument
 * execve accepts is one byte shorter. */
#define JOB_ARG_MAX  (128 * 1024 - 1)
#define JOB_ARGC_MAX 4096 /* number of arguments */
/* Bytes of command and all arguments together, each counted with its NUL. execve refuses with
 * E2BIG when the strings of argv and envp plus their pointers exceed
 * min(RLIMIT_STACK / 4, 6 MiB) (but at least 128 KiB; fs/exec.c bprm_stack_limits). With the
 * common 8 MiB stack limit that is 2 MiB: 1 MiB for the request leaves about 1 MiB for what the
 * server adds (job-init's options, the environment, the pointers: JOB_EXEC_RESERVE at most). */
#define JOB_ARGV_TOTAL_MAX (1024 * 1024)
/* The extra environment of a request: entries, bytes of one "NAME=VALUE", bytes of a name. The
 * entries count toward the exec total with argv (the kernel's limit covers both). */
#define JOB_ENV_MAX       256
#define JOB_ENV_ENTRY_MAX (32 * 1024)
#define JOB_ENV_NAME_MAX  256
/* What the server adds to a job's exec on top of command and args, generously: job-init's path
 * and options (--cgroup, --cgroup-rel, --workdir with paths up to PATH_MAX each, --uid, --gid,
 * --hostname, --net-none, --), the environment (PATH, LANG, HOME, JOBWORKER_JOB_ID) and
 * (JOB_ARGC_MAX + 32) pointers of 8 bytes: under 64 KiB; twice that is reserved. */
#define JOB_EXEC_RESERVE        (128 * 1024)
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
    JOB_STATUS_QUEUED = 6,
} job_status;
#define JOB_STATUS_MAX JOB_STATUS_QUEUED

typedef enum {
    JOB_REASON_UNSPECIFIED = 0,
    JOB_REASON_EXITED = 1,
    JOB_REASON_SIGNALED = 2,
    JOB_REASON_OOM_KILLED = 3,
    JOB_REASON_STOPPED = 4,
    JOB_REASON_TIMED_OUT = 5,
    JOB_REASON_START_FAILED = 6,
    JOB_REASON_SERVER_SHUTDOWN = 7,
    JOB_REASON_SERVER_LOST = 8, /* the server died while the job ran (found at the next start) */
} job_reason;

typedef enum {
    JOB_NETWORK_DEFAULT = 0, /* the server's default */
    JOB_NETWORK_HOST = 1,
    JOB_NETWORK_NONE = 2, /* a network namespace with only loopback */
} job_network;

/* A job's output streams (the wire's OutputStream). BOTH selects every byte, merged. */
typedef enum {
    JOB_STREAM_BOTH = 0,
    JOB_STREAM_STDOUT = 1,
    JOB_STREAM_STDERR = 2,
} job_stream;

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
    /* What execve accepts for argv + envp on this host (job_exec_args_max of RLIMIT_STACK);
     * 0 when not probed: then only JOB_ARGV_TOTAL_MAX applies. */
    int64_t exec_args_max;
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
    int network;            /* job_network; any other value is rejected */
    bool stdin_pipe;        /* the job reads its stdin from WriteStdin */
    const char *const *env; /* "NAME=VALUE" entries on top of the base environment */
    const size_t *env_len;  /* may be NULL: then strlen() is used */
    size_t nenv;
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

/* Reads the host's CPU count, RAM and exec budget (exec_args_max); other fields are left alone.
 */
int job_host_probe(job_host *ret);

/* The bytes of argv and envp strings and pointers that execve accepts with a stack limit of
 * `rlim_stack` bytes (RLIM_INFINITY allowed): the kernel's min(rlim_stack / 4, 6 MiB), at least
 * 128 KiB (fs/exec.c bprm_stack_limits). */
int64_t job_exec_args_max(uint64_t rlim_stack);

/* The cap on command + args (bytes with their NULs) on `host`: JOB_ARGV_TOTAL_MAX, lowered when
 * the host's exec budget minus JOB_EXEC_RESERVE is smaller (a server run with a small stack
 * limit). */
size_t job_argv_total_max(const job_host *host);

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates (U+D800..U+DFFF), nothing above
 * U+10FFFF, no truncated sequence. Returns true when s[0..len) is valid; otherwise false and
 * *ret_offset is the offset of the first byte of the first invalid sequence. Pure (fuzzable). */
bool job_utf8_valid(const char *s, size_t len, size_t *ret_offset);

#endif
