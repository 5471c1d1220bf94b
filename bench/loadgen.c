/* loadgen: the benchmark's load generator and timer (bench/run.sh drives it).
 *
 *   loadgen CONN create-latency N WARMUP     N sequential CreateJob(true) on one warm channel;
 *                                            prints "p50_us p99_us" (SERVER may be a list)
 *   loadgen CONN create-rate THREADS N       N CreateJob(true) spread over THREADS threads, one
 *                                            channel each (warmed first); prints "jobs_per_s"
 *   loadgen CONN wait-final N TIMEOUT_S      waits until the server holds exactly N jobs, all
 *                                            final; fails unless each is COMPLETED, exit 0
 *   loadgen CONN get-latency N WARMUP ROWS   N sequential GetJob of random ids of a bulk-loaded
 *                                            history of ROWS jobs (bulk_id below) on one warm
 *                                            channel; each must be that job, COMPLETED, exit 0;
 *                                            prints "p50_us p99_us" (SERVER, ROWS may be lists)
 *   loadgen CONN list-latency N WARMUP PAGE ROWS
 *                                            N sequential GetJobs{page_size PAGE} (first page) of
 *                                            a bulk-loaded history; each must hold exactly the
 *                                            PAGE newest jobs, newest first; "p50_us p99_us"
 *                                            (SERVER, ROWS may be lists)
 *   loadgen CONN read-load THREADS N ROWS    N calls over THREADS channels at once (GetJob of
 *                                            random bulk ids, every 10th a GetJobs page of 1000),
 *                                            checked as above; prints "calls_per_s"
 *   loadgen spawn-latency N PROGRAM          N x (posix_spawn PROGRAM + waitpid); "p50_us p99_us"
 *   loadgen time-cmd N OUTFILE -- CMD...     runs CMD N times in a row (stdin /dev/null, stdout
 *                                            appended to OUTFILE), each must exit 0;
 *                                            prints "p50_us p99_us"
 *
 * CONN is: SERVER CERT KEY CA SERVER_NAME. Every failure prints "loadgen: ..." and exits 1, so a
 * fast wrong answer never becomes a figure.
 *
 * The latency modes take a list of servers "HOST:PORT,HOST:PORT,..." (and ROWS one value per
 * server, or one for all): they warm a channel to each, then make N rounds of one call on each
 * server, in an order that rotates from round to round, and print one line per server in the
 * order given. On a shared host whose load moves from second to second, that is what makes a
 * ratio of two servers' latencies mean something: both see the same moments.
 *
 * CreateJob goes through internal/client (what jobctl uses). GetJob and GetJobs go through a
 * channel of this file's own (raw_*): jw_client has no call that takes a GetJobsReq (page size,
 * token), and the bench must not depend on that API while it changes; the channel is built the
 * same way (mutual TLS from the same PEM files, one warm HTTP/2 connection).
 */
#include "client/client.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static _Noreturn void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static long parse_count(const char *s, long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max)
        die("'%s' is not a number in %ld..%ld", s, min, max);
    return v;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of n samples (sorted in place), in microseconds. */
static double percentile_us(int64_t *v, size_t n, double p)
{
    qsort(v, n, sizeof(*v), cmp_i64);
    size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double)v[rank - 1] / 1000.0;
}

static void print_p50_p99(int64_t *v, size_t n)
{
    double p50 = percentile_us(v, n, 50), p99 = percentile_us(v, n, 99);
    printf("%.1f %.1f\n", p50, p99);
}

typedef struct conn {
    jw_client_config cfg;
} conn;

static jw_client *connect_or_die(const conn *cn)
{
    jw_client *c;
    jw_error err = JW_ERROR_INIT;
    if (jw_client_new(&cn->cfg, &c, &err) < 0)
        die("connect: %s", err.msg);
    return c;
}

/* One CreateJob of `true`; the answer must be RUNNING or already COMPLETED (never FAILED). */
static void create_true(jw_client *c)
{
    Jobworker__V1__CreateJobReq req = JOBWORKER__V1__CREATE_JOB_REQ__INIT;
    req.command = "true";
    jw_error err = JW_ERROR_INIT;
    Jobworker__V1__Job *job = NULL;
    if (jw_client_create_job(c, &req, &job, &err) < 0)
        die("CreateJob: %s: %s", jw_client_code_name(err.code), err.msg);
    if (job->status != JOBWORKER__V1__JOB_STATUS__JOB_STATUS_RUNNING &&
        job->status != JOBWORKER__V1__JOB_STATUS__JOB_STATUS_COMPLETED &&
        job->status != JOBWORKER__V1__JOB_STATUS__JOB_STATUS_QUEUED)
        die("CreateJob answered job %s with status %d (%s)", job->id, job->status,
            job->error ? job->error : "");
    jw_job_free(job);
}

typedef struct rate_worker {
    const conn *cn;
    jw_client *c;
    long n;
    pthread_barrier_t *go;
} rate_worker;

static void *rate_thread(void *arg)
{
    rate_worker *w = arg;
    pthread_barrier_wait(w->go);
    for (long i = 0; i < w->n; i++)
        create_true(w->c);
    return NULL;
}

static int cmd_create_rate(const conn *cn, long threads, long n)
{
    rate_worker *w = calloc((size_t)threads, sizeof(*w));
    pthread_t *tid = calloc((size_t)threads, sizeof(*tid));
    pthread_barrier_t go;
    if (!w || !tid)
        die("out of memory");
    pthread_barrier_init(&go, NULL, (unsigned)threads + 1);
    long done = 0;
    for (long i = 0; i < threads; i++) {
        w[i].cn = cn;
        w[i].c = connect_or_die(cn);
        /* Warm each channel (TLS handshake, HTTP/2 settings) outside the measured window; the
         * warm-up job counts towards n, so the server ends up with exactly n jobs. */
        create_true(w[i].c);
        w[i].n = n / threads - 1 + (i < n % threads);
        w[i].go = &go;
        done += w[i].n + 1;
        if (pthread_create(&tid[i], NULL, rate_thread, &w[i]) != 0)
            die("pthread_create failed");
    }
    if (done != n)
        die("internal: %ld jobs planned, %ld wanted", done, n);
    pthread_barrier_wait(&go);
    int64_t t0 = now_ns();
    for (long i = 0; i < threads; i++)
        pthread_join(tid[i], NULL);
    int64_t dt = now_ns() - t0;
    long measured = n - threads;
    for (long i = 0; i < threads; i++)
        jw_client_free(w[i].c);
    printf("%.1f\n", (double)measured / ((double)dt / 1e9));
    free(w);
    free(tid);
    return 0;
}

/* ---- GetJob / GetJobs on a channel of our own ------------------------------------------------ */

typedef struct raw_conn {
    grpc_channel *ch;
    grpc_completion_queue *cq; /* pluck queue, one call at a time */
} raw_conn;

static void raw_connect(const conn *cn, raw_conn *rc)
{
    char *cert = NULL, *key = NULL, *ca = NULL;
    jw_error err = JW_ERROR_INIT;
    if (jw_client_read_pem(cn->cfg.cert_path, "client certificate", NULL, &cert, &err) < 0 ||
        jw_client_read_pem(cn->cfg.key_path, "client key", NULL, &key, &err) < 0 ||
        jw_client_read_pem(cn->cfg.ca_path, "CA certificate", NULL, &ca, &err) < 0)
        die("%s", err.msg);
    grpc_init();
    grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
    grpc_channel_credentials *creds = grpc_ssl_credentials_create_ex(ca, &pair, NULL, NULL);
    if (!creds)
        die("cannot create TLS credentials");
    grpc_arg args[2] = {
        {.type = GRPC_ARG_INTEGER,
         .key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         .value.integer = JW_CLIENT_MAX_RECV_BYTES},
        {.type = GRPC_ARG_STRING,
         .key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG,
         .value.string = (char *)cn->cfg.server_name},
    };
    grpc_channel_args chargs = {.num_args = 2, .args = args};
    rc->ch = grpc_channel_create(cn->cfg.server, creds, &chargs);
    grpc_channel_credentials_release(creds);
    if (!rc->ch)
        die("cannot create a channel to %s", cn->cfg.server);
    rc->cq = grpc_completion_queue_create_for_pluck(NULL);
    free(cert);
    free(key);
    free(ca);
}

static void raw_close(raw_conn *rc)
{
    grpc_completion_queue_shutdown(rc->cq);
    grpc_completion_queue_destroy(rc->cq);
    grpc_channel_destroy(rc->ch);
    grpc_shutdown();
}

/* One unary call; dies unless it ends OK with a decodable answer. */
static ProtobufCMessage *raw_unary(raw_conn *rc, const char *method, const ProtobufCMessage *req,
                                   const ProtobufCMessageDescriptor *res_desc)
{
    char path[128];
    snprintf(path, sizeof(path), "/jobworker.v1.JobService/%s", method);
    grpc_slice mslice = grpc_slice_from_copied_string(path);
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(30000, GPR_TIMESPAN));
    grpc_call *call = grpc_channel_create_call(rc->ch, NULL, GRPC_PROPAGATE_DEFAULTS, rc->cq,
                                               mslice, NULL, deadline, NULL);
    grpc_slice_unref(mslice);
    if (!call)
        die("%s: cannot create a call", method);

    size_t n = protobuf_c_message_get_packed_size(req);
    grpc_slice s = grpc_slice_malloc(n);
    protobuf_c_message_pack(req, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *send = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    grpc_byte_buffer *recv = NULL;
    grpc_metadata_array initial_md, trailing_md;
    grpc_metadata_array_init(&initial_md);
    grpc_metadata_array_init(&trailing_md);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op ops[6];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing_md;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    if (grpc_call_start_batch(call, ops, 6, (void *)1, NULL) != GRPC_CALL_OK)
        die("%s: grpc_call_start_batch failed", method);
    grpc_event ev =
        grpc_completion_queue_pluck(rc->cq, (void *)1, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    grpc_byte_buffer_destroy(send);
    if (ev.type != GRPC_OP_COMPLETE || !ev.success)
        die("%s: the call failed", method);
    if (status != GRPC_STATUS_OK)
        die("%s: %s: %.*s", method, jw_client_code_name((jw_code)status),
            (int)GRPC_SLICE_LENGTH(details), (const char *)GRPC_SLICE_START_PTR(details));
    ProtobufCMessage *m = NULL;
    grpc_byte_buffer_reader reader;
    if (recv && grpc_byte_buffer_reader_init(&reader, recv)) {
        grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
        grpc_byte_buffer_reader_destroy(&reader);
        m = protobuf_c_message_unpack(res_desc, NULL, GRPC_SLICE_LENGTH(all),
                                      GRPC_SLICE_START_PTR(all));
        grpc_slice_unref(all);
    }
    if (!m)
        die("%s: cannot decode the answer", method);
    if (recv)
        grpc_byte_buffer_destroy(recv);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&initial_md);
    grpc_metadata_array_destroy(&trailing_md);
    grpc_call_unref(call);
    return m;
}

static Jobworker__V1__Jobs *raw_get_jobs(raw_conn *rc, int32_t page_size, const char *token)
{
    Jobworker__V1__GetJobsReq req = JOBWORKER__V1__GET_JOBS_REQ__INIT;
    req.page_size = page_size;
    req.page_token = (char *)token;
    return (Jobworker__V1__Jobs *)raw_unary(rc, "GetJobs", &req.base,
                                            &jobworker__v1__jobs__descriptor);
}

static int cmd_wait_final(const conn *cn, long n, long timeout_s)
{
    raw_conn rc;
    raw_connect(cn, &rc);
    int64_t deadline = now_ns() + (int64_t)timeout_s * 1000000000;
    for (;;) {
        /* Every page of the listing (10000 jobs a page, newest first). */
        size_t total = 0, final = 0;
        char *token = strdup("");
        for (;;) {
            Jobworker__V1__Jobs *jobs = raw_get_jobs(&rc, 10000, token);
            for (size_t i = 0; i < jobs->n_jobs; i++) {
                const Jobworker__V1__Job *j = jobs->jobs[i];
                total++;
                if (j->status == JOBWORKER__V1__JOB_STATUS__JOB_STATUS_INITIALIZING ||
                    j->status == JOBWORKER__V1__JOB_STATUS__JOB_STATUS_RUNNING ||
                    j->status == JOBWORKER__V1__JOB_STATUS__JOB_STATUS_QUEUED)
                    continue;
                final++;
                if (j->status != JOBWORKER__V1__JOB_STATUS__JOB_STATUS_COMPLETED ||
                    j->reason != JOBWORKER__V1__EXIT_REASON__EXIT_REASON_EXITED ||
                    j->exit_code != 0)
                    die("job %s ended with status %d reason %d exit %d (%s)", j->id, j->status,
                        j->reason, j->exit_code, j->error ? j->error : "");
            }
            free(token);
            token = strdup(jobs->next_page_token ? jobs->next_page_token : "");
            jw_jobs_free(jobs);
            if (!token)
                die("out of memory");
            if (!*token)
                break;
        }
        free(token);
        if (total != (size_t)n)
            die("the server holds %zu jobs, expected %ld", total, n);
        if (final == total)
            break;
        if (now_ns() > deadline)
            die("%zu of %zu jobs still not final after %ld s", total - final, total, timeout_s);
        usleep(50000);
    }
    raw_close(&rc);
    printf("%ld\n", n);
    return 0;
}

/* The id of job number k (1-based, = its seq) of a bulk-loaded history: UUID-shaped, scattered
 * like random ids (the first 8 digits are k times an odd constant mod 2^32, a bijection), unique
 * by the last 12. bench/run.sh's bulk_history() writes the same with SQLite's printf. */
static void bulk_id(long k, char out[40])
{
    uint32_t h = (uint32_t)((uint64_t)k * 2654435761u);
    snprintf(out, 40, "%08" PRIx32 "-%04lx-4%03lx-8%03lx-%012lx", h, k % 65536, k % 4096, k % 4096,
             k);
}

/* xorshift64*: a fixed-seed sequence, so every run asks for the same ids. */
static long pick(uint64_t *state, long rows)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return (long)((x * 2685821657736338717ull) % (uint64_t)rows) + 1;
}

/* GetJob of bulk job k: it must be that job, finished as loaded. */
static void get_bulk(raw_conn *rc, long k)
{
    char id[40];
    bulk_id(k, id);
    Jobworker__V1__GetJobReq req = JOBWORKER__V1__GET_JOB_REQ__INIT;
    req.id = id;
    Jobworker__V1__GetJobRes *res = (Jobworker__V1__GetJobRes *)raw_unary(
        rc, "GetJob", &req.base, &jobworker__v1__get_job_res__descriptor);
    const Jobworker__V1__Job *j = res->job;
    if (!j || !j->id || strcmp(j->id, id) != 0)
        die("GetJob %s answered job %s", id, j && j->id ? j->id : "(none)");
    if (j->status != JOBWORKER__V1__JOB_STATUS__JOB_STATUS_COMPLETED ||
        j->reason != JOBWORKER__V1__EXIT_REASON__EXIT_REASON_EXITED || j->exit_code != 0)
        die("GetJob %s: status %d reason %d exit %d, expected COMPLETED, EXITED, 0", id, j->status,
            j->reason, j->exit_code);
    jobworker__v1__get_job_res__free_unpacked(res, NULL);
}

/* The first page of GetJobs: exactly the `page` newest bulk jobs, newest first. */
static void list_bulk(raw_conn *rc, int32_t page, long rows)
{
    Jobworker__V1__Jobs *jobs = raw_get_jobs(rc, page, "");
    size_t want = (size_t)(rows < page ? rows : page);
    if (jobs->n_jobs != want)
        die("GetJobs{page_size %d} answered %zu jobs, expected %zu", page, jobs->n_jobs, want);
    for (size_t i = 0; i < jobs->n_jobs; i++) {
        char id[40];
        bulk_id(rows - (long)i, id);
        const Jobworker__V1__Job *j = jobs->jobs[i];
        if (!j->id || strcmp(j->id, id) != 0)
            die("GetJobs{page_size %d}: job %zu of the page is %s, expected %s (newest first)",
                page, i, j->id ? j->id : "(none)", id);
        if (j->status != JOBWORKER__V1__JOB_STATUS__JOB_STATUS_COMPLETED)
            die("GetJobs: job %s has status %d, expected COMPLETED", id, j->status);
    }
    /* A token exactly when older jobs remain (a page ending at the oldest job has none). */
    bool more = jobs->next_page_token && *jobs->next_page_token;
    if (more != (rows > page))
        die("GetJobs{page_size %d} of %ld jobs: next_page_token '%s'", page, rows,
            jobs->next_page_token ? jobs->next_page_token : "");
    jw_jobs_free(jobs);
}

/* ---- latency, interleaved over one or more servers ---------------------------------------- */

#define MAX_SERVERS 8

/* One server of a latency mode and what its calls need. */
typedef struct target {
    conn cn;
    jw_client *c;  /* create-latency: internal/client, as jobctl */
    raw_conn rc;   /* get-latency, list-latency */
    long rows;     /* size of the bulk-loaded history */
    int32_t page;  /* list-latency */
    uint64_t seed; /* get-latency: the ids asked for */
} target;

static void call_create(target *t)
{
    create_true(t->c);
}

static void call_get(target *t)
{
    get_bulk(&t->rc, pick(&t->seed, t->rows));
}

static void call_list(target *t)
{
    list_bulk(&t->rc, t->page, t->rows);
}

/* WARMUP calls on each server, then N rounds of one call on each, the order rotating from round
 * to round; prints one "p50_us p99_us" line per server, in the order given. */
static int measure(target *tg, size_t ns, long n, long warmup, void (*call)(target *))
{
    for (size_t s = 0; s < ns; s++)
        for (long i = 0; i < warmup; i++)
            call(&tg[s]);
    int64_t *t = calloc(ns * (size_t)n, sizeof(*t));
    if (!t)
        die("out of memory");
    for (long i = 0; i < n; i++) {
        for (size_t j = 0; j < ns; j++) {
            size_t s = (j + (size_t)i) % ns;
            int64_t t0 = now_ns();
            call(&tg[s]);
            t[s * (size_t)n + (size_t)i] = now_ns() - t0;
        }
    }
    for (size_t s = 0; s < ns; s++)
        print_p50_p99(t + s * (size_t)n, (size_t)n);
    free(t);
    return 0;
}

/* "A,B,C" into at most max pieces (in place); returns how many. */
static size_t split_list(char *s, char **out, size_t max)
{
    size_t n = 0;
    for (char *save = NULL, *p = strtok_r(s, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        if (n == max)
            die("more than %zu servers", max);
        out[n++] = p;
    }
    if (n == 0)
        die("no server given");
    return n;
}

/* ROWS of each server: one value for all, or one per server. */
static void set_rows(target *tg, size_t ns, char *arg)
{
    char *v[MAX_SERVERS];
    size_t nv = split_list(arg, v, MAX_SERVERS);
    if (nv != 1 && nv != ns)
        die("%zu ROWS values for %zu servers", nv, ns);
    for (size_t s = 0; s < ns; s++)
        tg[s].rows = parse_count(v[nv == 1 ? 0 : s], 1, 100000000);
}

typedef struct read_worker {
    raw_conn rc;
    long n, rows;
    uint64_t seed;
    pthread_barrier_t *go;
} read_worker;

static void *read_thread(void *arg)
{
    read_worker *w = arg;
    pthread_barrier_wait(w->go);
    for (long i = 0; i < w->n; i++) {
        if (i % 10 == 9)
            list_bulk(&w->rc, 1000, w->rows);
        else
            get_bulk(&w->rc, pick(&w->seed, w->rows));
    }
    return NULL;
}

static int cmd_read_load(const conn *cn, long threads, long n, long rows)
{
    read_worker *w = calloc((size_t)threads, sizeof(*w));
    pthread_t *tid = calloc((size_t)threads, sizeof(*tid));
    pthread_barrier_t go;
    if (!w || !tid)
        die("out of memory");
    pthread_barrier_init(&go, NULL, (unsigned)threads + 1);
    for (long i = 0; i < threads; i++) {
        raw_connect(cn, &w[i].rc);
        w[i].seed = 0x9e3779b97f4a7c15ull + (uint64_t)i * 0x632be59bd9b4e019ull;
        get_bulk(&w[i].rc, pick(&w[i].seed, rows)); /* warm the channel */
        w[i].n = n / threads;
        w[i].rows = rows;
        w[i].go = &go;
        if (pthread_create(&tid[i], NULL, read_thread, &w[i]) != 0)
            die("pthread_create failed");
    }
    pthread_barrier_wait(&go);
    int64_t t0 = now_ns();
    for (long i = 0; i < threads; i++)
        pthread_join(tid[i], NULL);
    int64_t dt = now_ns() - t0;
    for (long i = 0; i < threads; i++)
        raw_close(&w[i].rc);
    printf("%.1f\n", (double)(n / threads * threads) / ((double)dt / 1e9));
    free(w);
    free(tid);
    return 0;
}

/* posix_spawn + wait of argv; returns the wall time in ns; dies unless it exits 0. */
static int64_t spawn_wait(char *const *argv, const posix_spawn_file_actions_t *fa)
{
    char ebuf[128];
    int64_t t0 = now_ns();
    pid_t pid;
    int r = posix_spawnp(&pid, argv[0], fa, NULL, argv, environ);
    if (r != 0)
        die("spawn '%s': %s", argv[0], jw_strerror(r, ebuf, sizeof(ebuf)));
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR)
            die("waitpid: %s", jw_strerror(errno, ebuf, sizeof(ebuf)));
    }
    int64_t dt = now_ns() - t0;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        die("'%s' ended with wait status 0x%x", argv[0], st);
    return dt;
}

static int cmd_spawn_latency(long n, const char *program)
{
    char *argv[] = {(char *)program, NULL};
    int64_t *t = calloc((size_t)n, sizeof(*t));
    if (!t)
        die("out of memory");
    for (long i = 0; i < 10; i++) /* warm the page cache and the allocator */
        spawn_wait(argv, NULL);
    for (long i = 0; i < n; i++)
        t[i] = spawn_wait(argv, NULL);
    print_p50_p99(t, (size_t)n);
    free(t);
    return 0;
}

static int cmd_time_cmd(long n, const char *outfile, char **argv)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, outfile, O_WRONLY | O_CREAT | O_APPEND, 0600);
    int64_t *t = calloc((size_t)n, sizeof(*t));
    if (!t)
        die("out of memory");
    for (long i = 0; i < n; i++)
        t[i] = spawn_wait(argv, &fa);
    posix_spawn_file_actions_destroy(&fa);
    print_p50_p99(t, (size_t)n);
    free(t);
    return 0;
}

static _Noreturn void usage(void)
{
    fprintf(stderr, "usage: loadgen SERVER CERT KEY CA NAME create-latency N WARMUP\n"
                    "       loadgen SERVER CERT KEY CA NAME create-rate THREADS N\n"
                    "       loadgen SERVER CERT KEY CA NAME wait-final N TIMEOUT_S\n"
                    "       loadgen SERVER CERT KEY CA NAME get-latency N WARMUP ROWS\n"
                    "       loadgen SERVER CERT KEY CA NAME list-latency N WARMUP PAGE ROWS\n"
                    "       loadgen SERVER CERT KEY CA NAME read-load THREADS N ROWS\n"
                    "       loadgen spawn-latency N PROGRAM\n"
                    "       loadgen time-cmd N OUTFILE -- CMD [ARGS...]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    /* jw_client wants SIGINT/SIGTERM blocked before gRPC starts its threads; a benchmark killed
     * by its driver may simply die, so only SIGPIPE is ignored (a vanished server is an error
     * reported by gRPC, not a signal). */
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 4 && strcmp(argv[1], "spawn-latency") == 0)
        return cmd_spawn_latency(parse_count(argv[2], 1, 10000000), argv[3]);
    if (argc >= 6 && strcmp(argv[1], "time-cmd") == 0 && strcmp(argv[4], "--") == 0)
        return cmd_time_cmd(parse_count(argv[2], 1, 10000000), argv[3], argv + 5);
    if (argc < 9)
        usage();
    /* SERVER may be a list "A,B,...": the latency modes alternate over the servers. */
    char *servers[MAX_SERVERS];
    size_t ns = split_list(argv[1], servers, MAX_SERVERS);
    static target tg[MAX_SERVERS];
    for (size_t s = 0; s < ns; s++) {
        tg[s].cn.cfg = (jw_client_config){
            .server = servers[s],
            .cert_path = argv[2],
            .key_path = argv[3],
            .ca_path = argv[4],
            .server_name = argv[5],
            .timeout_ms = 30000,
        };
        tg[s].seed = 0x9e3779b97f4a7c15ull;
    }
    const conn *cn = &tg[0].cn;
    const char *mode = argv[6];
    if (strcmp(mode, "create-latency") == 0) {
        long n = parse_count(argv[7], 1, 10000000), warmup = parse_count(argv[8], 0, 10000000);
        for (size_t s = 0; s < ns; s++)
            tg[s].c = connect_or_die(&tg[s].cn);
        measure(tg, ns, n, warmup, call_create);
        for (size_t s = 0; s < ns; s++)
            jw_client_free(tg[s].c);
        return 0;
    }
    if (strcmp(mode, "get-latency") == 0 && argc >= 10) {
        long n = parse_count(argv[7], 1, 10000000), warmup = parse_count(argv[8], 0, 10000000);
        set_rows(tg, ns, argv[9]);
        for (size_t s = 0; s < ns; s++)
            raw_connect(&tg[s].cn, &tg[s].rc);
        measure(tg, ns, n, warmup, call_get);
        for (size_t s = 0; s < ns; s++)
            raw_close(&tg[s].rc);
        return 0;
    }
    if (strcmp(mode, "list-latency") == 0 && argc >= 11) {
        long n = parse_count(argv[7], 1, 10000000), warmup = parse_count(argv[8], 0, 10000000);
        int32_t page = (int32_t)parse_count(argv[9], 1, 10000);
        set_rows(tg, ns, argv[10]);
        for (size_t s = 0; s < ns; s++) {
            tg[s].page = page;
            raw_connect(&tg[s].cn, &tg[s].rc);
        }
        measure(tg, ns, n, warmup, call_list);
        for (size_t s = 0; s < ns; s++)
            raw_close(&tg[s].rc);
        return 0;
    }
    if (ns != 1)
        die("%s takes one server", mode);
    if (strcmp(mode, "create-rate") == 0) {
        long threads = parse_count(argv[7], 1, 256);
        return cmd_create_rate(cn, threads, parse_count(argv[8], 2 * threads, 10000000));
    }
    if (strcmp(mode, "wait-final") == 0)
        return cmd_wait_final(cn, parse_count(argv[7], 0, 10000000), parse_count(argv[8], 1, 3600));
    if (strcmp(mode, "read-load") == 0 && argc >= 10) {
        long threads = parse_count(argv[7], 1, 64);
        return cmd_read_load(cn, threads, parse_count(argv[8], threads, 10000000),
                             parse_count(argv[9], 1, 100000000));
    }
    usage();
}
