/* jobctl's gRPC side: one mTLS channel to a jobworker server, the unary calls (with the paged
 * listing) and the output stream (with resume). This and the rest of internal/client are the
 * only client code that includes gRPC headers; callers see protobuf-c messages and jw_error
 * only.
 *
 * Threading: a jw_client is used by one thread at a time, except jw_client_cancel(), which any
 * thread may call at any time (jobctl calls it from its signal thread). The caller must block
 * SIGINT/SIGTERM before jw_client_new() so that gRPC's own threads inherit the mask.
 *
 * Errors: every call returns 0 on success or a negative errno and fills `err`:
 *  -EREMOTEIO  the call ended with a non-OK gRPC status (the server's or the transport's); err
 *              carries that status code, which may be one jw_code does not name (use
 *              jw_client_code_name()), and the status details as the message.
 *  -EINTR      the call was cancelled by jw_client_cancel(); err is CANCELLED.
 *  other       a local failure (unreadable certificate, ...); err->msg says what and with which
 *              value.
 */
#ifndef JW_CLIENT_CLIENT_H
#define JW_CLIENT_CLIENT_H

#include "jobworker/v1/jobworker.pb-c.h"
#include "util/cleanup.h"
#include "util/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* PEM files larger than this are refused rather than read (a CA bundle is a few KiB). */
#define JW_CLIENT_PEM_MAX (1024 * 1024)
/* Largest response accepted; a listing of many thousand jobs is a few MiB. */
#define JW_CLIENT_MAX_RECV_BYTES (64 * 1024 * 1024)

/* Resume policy of a followed stream: after an UNAVAILABLE status on a stream that had been
 * established, pause 250 ms, then wait up to 250 ms, 500 ms, 1 s, 2 s, 4 s (capped) for the
 * channel to be connected again, and call again from the next expected offset; at most this
 * many times in a row (a reconnect that delivers data resets the count). About 9 s in all. */
#define JW_CLIENT_STREAM_RETRIES   5
#define JW_CLIENT_BACKOFF_FIRST_MS 250
#define JW_CLIENT_BACKOFF_MAX_MS   4000

typedef struct jw_client_config {
    const char *server;      /* gRPC target, "host:port" */
    const char *cert_path;   /* client certificate chain (PEM) */
    const char *key_path;    /* its private key (PEM) */
    const char *ca_path;     /* CA bundle that must have signed the server's certificate */
    const char *server_name; /* TLS name to verify instead of the host of `server`; NULL: gRPC's
                              * default (the host part of the target) */
    int64_t timeout_ms;      /* deadline of each unary call; <= 0: none */
    /* Appended to a failure to read the corresponding file, e.g. " (run scripts/gen-certs.sh or
     * pass --cert)"; NULL for none. The CLI sets them when the paths are its defaults. */
    const char *cert_hint;
    const char *key_hint;
    const char *ca_hint;
} jw_client_config;

typedef struct jw_client jw_client;

/* Checks the PEM text read from the three files of cfg before any connection: the key belongs
 * to the certificate ("the key 'K' does not match the certificate 'C'", -EKEYREJECTED), both
 * parse (an encrypted key is refused), and the CA file holds certificates only. Messages name
 * the paths; INVALID_ARGUMENT. */
int jw_client_check_files(const jw_client_config *cfg, const char *cert, const char *key,
                          const char *ca, jw_error *err);

/* Calls grpc_init(), reads the three PEM files (O_CLOEXEC, at most JW_CLIENT_PEM_MAX bytes each),
 * checks them (jw_client_check_files) and creates the channel. The channel connects lazily: an
 * unreachable server shows up as UNAVAILABLE on the first call, which fails fast (no
 * wait-for-ready). Unless GRPC_VERBOSITY or GRPC_TRACE is set, it also silences gRPC's own
 * (process-wide) log lines: every failure already reaches the caller as a status carrying gRPC's
 * message. */
int jw_client_new(const jw_client_config *cfg, jw_client **ret, jw_error *err);
/* Destroys the channel and calls grpc_shutdown(). Accepts NULL; returns NULL. No call may be in
 * progress and no thread may be inside jw_client_cancel(). */
jw_client *jw_client_free(jw_client *c);

/* Cancels the call in progress, if any, and makes every later call on `c` fail with -EINTR at
 * once (including a resume back-off in progress). Thread-safe; never call it from a signal
 * handler (it takes a mutex and calls into gRPC). */
void jw_client_cancel(jw_client *c);
bool jw_client_cancelled(jw_client *c);

/* The unary calls. On success *ret_job (or *ret_jobs) is a newly unpacked message owned by the
 * caller: free it with jw_job_free() (jw_jobs_free()). A response without a job is an INTERNAL
 * error. */
int jw_client_create_job(jw_client *c, const Jobworker__V1__CreateJobReq *req,
                         Jobworker__V1__Job **ret_job, jw_error *err);
int jw_client_get_job(jw_client *c, const char *id, Jobworker__V1__Job **ret_job, jw_error *err);
int jw_client_stop_job(jw_client *c, const char *id, Jobworker__V1__Job **ret_job, jw_error *err);
/* DeleteJob: *ret_job is the job as it was before the server removed it. */
int jw_client_delete_job(jw_client *c, const char *id, Jobworker__V1__Job **ret_job, jw_error *err);
/* GetServerInfo; free *ret with jobworker__v1__server_info__free_unpacked(*ret, NULL). */
int jw_client_server_info(jw_client *c, Jobworker__V1__ServerInfo **ret, jw_error *err);

/* The largest GetJobsReq.page_size the server accepts (docs/api.md). */
#define JW_CLIENT_PAGE_SIZE_MAX 10000

/* A GetJobs query: the filters and where to start. Zero values mean the server's default or
 * "any"; the strings and the array are only read during the call. */
typedef struct jw_client_list_req {
    int32_t page_size; /* jobs per page, at most JW_CLIENT_PAGE_SIZE_MAX; 0: the server's (1000) */
    const char *page_token;                   /* a Jobs.next_page_token; NULL or "": the newest */
    const Jobworker__V1__JobStatus *statuses; /* jobs in one of these states; */
    size_t n_statuses;                        /* 0: in any state */
    const char *owner;                        /* jobs created by this CN; NULL or "": anyone's */
    int64_t since_unix_ns;                    /* jobs created at or after this time; 0: any */
} jw_client_list_req;

/* One page of GetJobs (req NULL: the first page with no filter). The jobs are newest first; a
 * page may hold fewer than page_size jobs (the server ends it at 2 MiB), and
 * (*ret_jobs)->next_page_token is "" only on the last one. */
int jw_client_list_jobs(jw_client *c, const jw_client_list_req *req, Jobworker__V1__Jobs **ret_jobs,
                        jw_error *err);

/* Follows the pages of the query from req->page_token on until the last page, or until `limit`
 * jobs were collected (limit 0: no limit), and returns them as one Jobs message, newest first.
 * With a limit, no page asks for more jobs than are still wanted (at most req->page_size, or
 * JW_CLIENT_PAGE_SIZE_MAX when that is 0), so next_page_token of the result continues right
 * after its last job and is "" when no job is left. A server that answers a page with the token
 * it was given (a loop) fails the call with -EPROTO. Every page is a call with its own
 * deadline. */
int jw_client_list_jobs_all(jw_client *c, const jw_client_list_req *req, int64_t limit,
                            Jobworker__V1__Jobs **ret_jobs, jw_error *err);

/* Moves every job of *src to the end of dst and takes its next_page_token and the sum of the
 * jobs_omitted counts; *src is freed and set to NULL. Both must come from protobuf-c's unpack
 * with the default allocator (as every message of this module does). -ENOMEM leaves both as
 * they were. */
int jw_jobs_append(Jobworker__V1__Jobs *dst, Jobworker__V1__Jobs **src);

/* Receives one chunk of output from `stream` (1 stdout, 2 stderr; 0 from a server that does not
 * tell them apart). `data` is valid only during the call. Returns 0 to go on or a negative errno
 * (with err set) to cancel the stream; jw_client_stream() returns that value. */
typedef int (*jw_client_output_fn)(void *userdata, int stream, const uint8_t *data, size_t len,
                                   jw_error *err);

typedef struct jw_client_stream_req {
    const char *id;
    bool follow;    /* wait for live output until the job ends */
    int64_t offset; /* first byte wanted: in the merged output, or in the selected stream */
    int select;     /* 0 both streams (merged), 1 stdout only, 2 stderr only */
    /* Reconnects allowed in a row after an established followed stream broke with UNAVAILABLE
     * (JW_CLIENT_STREAM_RETRIES is the CLI's value); 0 disables resuming. Never used without
     * `follow`, nor when the very first call fails: a server that is down fails fast. */
    int max_retries;
} jw_client_stream_req;

/* Streams a job's output to `fn` in order. Every chunk must start exactly at the next expected
 * offset (req->offset, then + each chunk's length); anything else ends the stream with
 * DATA_LOSS and nothing of that chunk is delivered, so output is never gapped or duplicated.
 * No deadline applies. *ret_offset (may be NULL) receives the offset after the last byte
 * delivered, also on failure. Returns 0 when the server ended the stream with OK. */
int jw_client_stream(jw_client *c, const jw_client_stream_req *req, jw_client_output_fn fn,
                     void *userdata, int64_t *ret_offset, jw_error *err);

/* Bytes per StdinChunk message. */
#define JW_CLIENT_STDIN_CHUNK (64 * 1024)

/* Feeds job `id`'s stdin (it was created with stdin) from fd until end of file, then ends the
 * stream: end of file for the job. Reads the next chunk only once gRPC took the previous one, so
 * a job that reads slowly slows the reading here. No deadline applies. *ret_written gets the
 * bytes the job's pipe took and *ret_job_ended whether the job ended before it took everything
 * (both may be NULL). */
int jw_client_write_stdin(jw_client *c, const char *id, int fd, int64_t *ret_written,
                          bool *ret_job_ended, jw_error *err);

/* The canonical name of any gRPC status code ("DEADLINE_EXCEEDED", "DATA_LOSS", ...), a superset
 * of jw_code_name(). */
const char *jw_client_code_name(jw_code code);

/* Reads a PEM file as jw_client_new() does: NUL-terminated, malloc'd, at most
 * JW_CLIENT_PEM_MAX bytes, refusing files without a "-----BEGIN" line. `what` names the file in
 * errors ("client certificate") and `hint` (may be NULL) is appended to them. */
int jw_client_read_pem(const char *path, const char *what, const char *hint, char **ret,
                       jw_error *err);

void jw_job_free(Jobworker__V1__Job *job);
void jw_jobs_free(Jobworker__V1__Jobs *jobs);
JW_DEFINE_POINTER_CLEANUP(Jobworker__V1__Job, jw_job_free)
JW_DEFINE_POINTER_CLEANUP(Jobworker__V1__Jobs, jw_jobs_free)
#define _cleanup_job_  _cleanup_(jw_job_freep)
#define _cleanup_jobs_ _cleanup_(jw_jobs_freep)

#endif
