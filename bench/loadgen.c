/* loadgen: the benchmark's load generator and timer (bench/run.sh drives it).
 *
 *   loadgen CONN create-latency N WARMUP     N sequential CreateJob(true) on one warm channel;
 *                                            prints "p50_us p99_us"
 *   loadgen CONN create-rate THREADS N       N CreateJob(true) spread over THREADS threads, one
 *                                            channel each (warmed first); prints "jobs_per_s"
 *   loadgen CONN wait-final N TIMEOUT_S      waits until the server holds exactly N jobs, all
 *                                            final; fails unless each is COMPLETED, exit 0
 *   loadgen spawn-latency N PROGRAM          N x (posix_spawn PROGRAM + waitpid); "p50_us p99_us"
 *   loadgen time-cmd N OUTFILE -- CMD...     runs CMD N times in a row (stdin /dev/null, stdout
 *                                            appended to OUTFILE), each must exit 0;
 *                                            prints "p50_us p99_us"
 *
 * CONN is: SERVER CERT KEY CA SERVER_NAME. Every failure prints "loadgen: ..." and exits 1, so a
 * fast wrong answer never becomes a figure.
 */
#include "client/client.h"

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
        job->status != JOBWORKER__V1__JOB_STATUS__JOB_STATUS_COMPLETED)
        die("CreateJob answered job %s with status %d (%s)", job->id, job->status,
            job->error ? job->error : "");
    jw_job_free(job);
}

static int cmd_create_latency(const conn *cn, long n, long warmup)
{
    jw_client *c = connect_or_die(cn);
    for (long i = 0; i < warmup; i++)
        create_true(c);
    int64_t *t = calloc((size_t)n, sizeof(*t));
    if (!t)
        die("out of memory");
    for (long i = 0; i < n; i++) {
        int64_t t0 = now_ns();
        create_true(c);
        t[i] = now_ns() - t0;
    }
    jw_client_free(c);
    print_p50_p99(t, (size_t)n);
    free(t);
    return 0;
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

static int cmd_wait_final(const conn *cn, long n, long timeout_s)
{
    jw_client *c = connect_or_die(cn);
    int64_t deadline = now_ns() + (int64_t)timeout_s * 1000000000;
    for (;;) {
        Jobworker__V1__Jobs *jobs = NULL;
        jw_error err = JW_ERROR_INIT;
        if (jw_client_list_jobs_all(c, NULL, 0, &jobs, &err) < 0)
            die("ListJobs: %s: %s", jw_client_code_name(err.code), err.msg);
        size_t final = 0;
        for (size_t i = 0; i < jobs->n_jobs; i++) {
            const Jobworker__V1__Job *j = jobs->jobs[i];
            if (j->status == JOBWORKER__V1__JOB_STATUS__JOB_STATUS_INITIALIZING ||
                j->status == JOBWORKER__V1__JOB_STATUS__JOB_STATUS_RUNNING)
                continue;
            final++;
            if (j->status != JOBWORKER__V1__JOB_STATUS__JOB_STATUS_COMPLETED ||
                j->reason != JOBWORKER__V1__EXIT_REASON__EXIT_REASON_EXITED || j->exit_code != 0)
                die("job %s ended with status %d reason %d exit %d (%s)", j->id, j->status,
                    j->reason, j->exit_code, j->error ? j->error : "");
        }
        size_t total = jobs->n_jobs;
        jw_jobs_free(jobs);
        if (total != (size_t)n)
            die("the server holds %zu jobs, expected %ld", total, n);
        if (final == total)
            break;
        if (now_ns() > deadline)
            die("%zu of %zu jobs still not final after %ld s", total - final, total, timeout_s);
        usleep(50000);
    }
    jw_client_free(c);
    printf("%ld\n", n);
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
    conn cn = {.cfg = {
                   .server = argv[1],
                   .cert_path = argv[2],
                   .key_path = argv[3],
                   .ca_path = argv[4],
                   .server_name = argv[5],
                   .timeout_ms = 30000,
               }};
    const char *mode = argv[6];
    if (strcmp(mode, "create-latency") == 0)
        return cmd_create_latency(&cn, parse_count(argv[7], 1, 10000000),
                                  parse_count(argv[8], 0, 10000000));
    if (strcmp(mode, "create-rate") == 0) {
        long threads = parse_count(argv[7], 1, 256);
        return cmd_create_rate(&cn, threads, parse_count(argv[8], 2 * threads, 10000000));
    }
    if (strcmp(mode, "wait-final") == 0)
        return cmd_wait_final(&cn, parse_count(argv[7], 0, 10000000),
                              parse_count(argv[8], 1, 3600));
    usage();
}
