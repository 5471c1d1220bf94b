/* The application logic of the JobService, without gRPC.
 *
 * Every RPC is one call here: authorize the caller's role, validate the request, resolve
 * defaults, then act on the store and the supervisor; the rpc module only decodes, calls in,
 * encodes and answers. Nothing here includes a gRPC header, so every decision (role x request x
 * job state) is unit-tested directly (tests/unit/test_service.c).
 *
 * `caller` is the identity read from the verified peer certificate; NULL means that mutual TLS
 * verified a certificate which could not be parsed (UNAUTHENTICATED). Functions that can fail
 * return a negative errno and fill `err` with the status the client gets.
 */
#ifndef JW_SERVICE_SERVICE_H
#define JW_SERVICE_SERVICE_H

#include "auth/auth.h"
#include "config/policy.h"
#include "sched/queue.h"
#include "job/job.h"
#include "spawn/supervisor.h"
#include "store/store.h"
#include "util/error.h"
#include "util/misc.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct service service;

/* CreateJob is refused (RESOURCE_EXHAUSTED) while the data directory's file system has less
 * free than this: a job started then would lose its output. */
#define SERVICE_MIN_FREE_BYTES (1024 * 1024)

typedef struct service_config {
    store *st;
    supervisor *sv;
    job_host host;                /* what the host can enforce; host.cgroups = limits enforced */
    job_limits defaults;          /* effective limits for fields a request leaves at 0 */
    job_network default_network;  /* HOST or NONE, for requests that leave it unspecified */
    const char *job_user_display; /* "nobody (65534:65534)", reported in Job.user */
    int max_streams_per_job;      /* concurrent GetJobsStream calls on one job; 0 = default */
    jobqueue_capacity capacity;   /* admission (sched/queue.h); zeros = start everything at once */
    /* Quotas, ceilings and the allow-list (config/policy.h); the service takes it over and
     * frees it. NULL = none. */
    policy *policy;
    const char *policy_name; /* the file, named in refusals ("server.conf") */
    /* For GetServerInfo only: what the daemon was started with. */
    const char *cgroup_path; /* the jobs' parent cgroup; NULL without cgroups */
    int64_t max_jobs, max_output_bytes, max_streams, max_streams_per_client;
} service_config;

/* Threads that start queued jobs (a start takes a few ms of job-init's work: several at once
 * when many shares free together). */
#define SERVICE_DISPATCHERS 4

/* Starts the dispatcher threads, which start queued jobs as capacity frees, and queues again
 * the jobs the store found QUEUED at start (a previous server accepted them), in their order. */
int service_new(const service_config *cfg, service **ret, jw_error *err);
/* Stops the dispatcher: queued jobs stay QUEUED (in the history too) and none starts any more.
 * Call it before supervisor_shutdown(), which must not race a start. Idempotent. */
void service_shutdown(service *svc);
/* service_shutdown(), then frees. Call it after supervisor_shutdown(): the end of every job that
 * ran calls back into the service. NULL is a no-op; the store and supervisor are not freed. */
void service_free(service *svc);
/* New admission capacity (SIGHUP); applies to jobs started from now on. */
void service_set_capacity(service *svc, const jobqueue_capacity *cap);
/* A new policy (SIGHUP), taken over; applies to calls from now on. */
void service_set_policy(service *svc, policy *p);
/* A QUEUED job's place in the start order (1 = next); 0 when it does not wait. */
int64_t service_queue_position(service *svc, store_job *job);
void service_queue_stats(service *svc, jobqueue_stats *ret);

/* PERMISSION_DENIED or UNAUTHENTICATED when the caller may not call `method`. */
int service_authorize(const auth_identity *caller, auth_method method, jw_error *err);

/* Validates (every rule names the field and value), resolves the limits against the defaults,
 * admits it (sched/queue.h), records the job and starts it or queues it. On success *ret is a
 * new reference to a job that is RUNNING, QUEUED or already FAILED/START_FAILED; on failure
 * nothing of the job remains. RESOURCE_EXHAUSTED, naming the limit, for a job that could never
 * run or a full queue. */
int service_create_job(service *svc, const auth_identity *caller, const job_request *req,
                       store_job **ret, jw_error *err);

/* INVALID_ARGUMENT for an empty or malformed id, NOT_FOUND for an unknown one. */
int service_get_job(service *svc, const auth_identity *caller, const char *id, store_job **ret,
                    jw_error *err);

/* Asks the job to stop (SIGTERM, the grace period, then kill) without waiting for it.
 * Returns 0 with *ret when the job is already final: answer now. Returns 1 with *ret when the
 * answer waits for the end: `done(job, userdata)` is then called exactly once, from the thread
 * that completes the job (maybe before this returns), and the caller answers with
 * service_stop_result(). The reference in *ret is the caller's with 0; with 1 it belongs to
 * `done`, which gets the same job and drops it. No thread waits meanwhile. */
int service_stop_job(service *svc, const auth_identity *caller, const char *id, store_final_fn done,
                     void *userdata, store_job **ret, jw_error *err);
/* The outcome of a stop whose end arrived: 0 when the job is final, NOT_FOUND when it was
 * removed because it could not be started. */
int service_stop_result(store_job *job, jw_error *err);

/* GetJobs: a page of jobs, newest first. */
#define SERVICE_PAGE_DEFAULT    1000
#define SERVICE_PAGE_MAX        10000
#define SERVICE_LIST_STATUS_MAX 64   /* status filters in one request */
#define SERVICE_OWNER_MAX       1024 /* bytes of the owner filter */
#define SERVICE_PAGE_TOKEN_MAX  32   /* "v1." and a sequence number, with its NUL */

typedef struct service_list_req {
    int64_t page_size;      /* 0 = SERVICE_PAGE_DEFAULT */
    const char *page_token; /* NULL or "" = the newest */
    const int *statuses;    /* job_status values, any of; none = any status */
    size_t n_statuses;
    const char *owner; /* NULL or "" = any */
    int64_t since_ns;  /* created at or after; 0 = any */
} service_list_req;

/* Validates the request (INVALID_ARGUMENT naming the field and value) and returns new references
 * to the page's jobs (the caller unrefs each and frees the array). next_token gets the token of
 * the next page, "" when this page is the last. */
int service_list_jobs(service *svc, const auth_identity *caller, const service_list_req *req,
                      store_job ***ret, size_t *ret_n, char next_token[SERVICE_PAGE_TOKEN_MAX],
                      jw_error *err);
/* Turns a page token into the sequence number it continues before: 0 for "", -EINVAL for one
 * this server never gave out. Pure; exported for the tests. */
int service_page_token_parse(const char *token, int64_t *ret_seq);

/* DeleteJob: removes a finished job's record and output. INVALID_ARGUMENT for a malformed id,
 * NOT_FOUND for an unknown one, FAILED_PRECONDITION while it runs. *ret is the job as it was. */
int service_delete_job(service *svc, const auth_identity *caller, const char *id, store_job **ret,
                       jw_error *err);

/* ---- GetJobsStream bookkeeping: a reader of one job's output at an offset ---- */

typedef struct service_stream service_stream;

typedef struct service_stream_req {
    const char *id;
    int64_t offset; /* in the merged output, or in the one selected stream */
    bool follow;
    int select; /* job_stream: BOTH, STDOUT or STDERR; any other value is rejected */
} service_stream_req;

/* Checks the request (id, offset against a finished output, the per-job stream cap), opens the
 * output and registers `wake` as the job's subscriber (see store_sub_new: it is called from the
 * writer's thread and must be quick). ret_job_id gets the id once it is a valid job id, also on
 * some failures, for the audit line. */
int service_stream_open(service *svc, const auth_identity *caller, const service_stream_req *req,
                        store_wake_fn wake, void *userdata, service_stream **ret,
                        char ret_job_id[UUID_STR_LEN], jw_error *err);
/* Unregisters (no wake runs after it returns) and frees. NULL is a no-op. */
void service_stream_free(service_stream *s);
/* Stops wake-ups for good without freeing (the transport's last word on a stream). */
void service_stream_stop_wakes(service_stream *s);

typedef enum {
    SERVICE_STREAM_SEND, /* *ret_n > 0 bytes of one stream (service_stream_chunk_stream) are
                          * ready at service_stream_offset() */
    SERVICE_STREAM_WAIT, /* caught up; `wake` fires once when that changes */
    SERVICE_STREAM_END,  /* finished: err says OK, or RESOURCE_EXHAUSTED past the output cap */
} service_stream_step;

/* What the stream does next, reading at most `max` bytes per chunk. */
service_stream_step service_stream_next(service_stream *s, size_t max, size_t *ret_n,
                                        jw_error *err);
int64_t service_stream_offset(const service_stream *s);
/* The stream the bytes of the last SEND came from. */
job_stream service_stream_chunk_stream(const service_stream *s);
/* Reads exactly n bytes at the current offset into buf and advances; -EIO on a short read. */
int service_stream_read(service_stream *s, void *buf, size_t n);

/* ---- WriteStdin: the one writer of a job's standard input ---- */

/* Checks the caller (admin), the id and that the job was created with stdin and has not ended.
 * *ret gets a reference to the job. */
int service_stdin_open(service *svc, const auth_identity *caller, const char *id, store_job **ret,
                       jw_error *err);
/* Takes the job's stdin pipe (non-blocking; the caller closes it for EOF): 0 with *ret_fd, 1
 * while the job has not started yet (queued or starting: try again later), or an error:
 * FAILED_PRECONDITION when the job has ended or another writer has its stdin. */
int service_stdin_take(service *svc, store_job *job, int *ret_fd, jw_error *err);

/* ---- GetServerInfo ---- */

typedef struct service_info {
    char version[32];
    char build[192];
    char hostname[256];
    char cgroup[256];
    int64_t start_time_ns, uptime_s;
    job_host host;
    job_limits defaults;
    job_network default_network;
    jobqueue_capacity capacity;
    jobqueue_stats queue;
    int64_t max_jobs, max_output_bytes, max_streams, max_streams_per_job, max_streams_per_client;
    double load[3];
    int64_t memory_available;
    double pressure[3]; /* cpu, memory, io: "some" avg10 in percent; -1 = not offered */
    int64_t jobs[JOB_STATUS_MAX + 1];
} service_info;

/* The server as GetServerInfo describes it (admin and viewer). The host's load is read from
 * /proc at the call; the finished jobs are counted in the history (O(jobs) in its index). */
int service_server_info(service *svc, const auth_identity *caller, service_info *ret,
                        jw_error *err);

#endif
