/* jobctl run: create + stream --follow + exit with the job's status, like running the command
 * locally. */
#include "jobctl.h"

#include "client/format.h"
#include "util/cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <inttypes.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>

const char cmd_run_usage[] =
    "Usage: jobctl run [options] [--] COMMAND [ARGS...]\n"
    "\n"
    "Starts COMMAND like 'create', writes its stdout to stdout and its stderr to stderr as\n"
    "they come (like 'stream --follow' from byte 0) and exits with the job's status, like\n"
    "'ssh host COMMAND'. When this stdin is a pipe, a file or a socket (not a terminal, not\n"
    "/dev/null) the job reads it as its stdin, with end of file at its end; -n keeps it away.\n"
    "The exit status:\n"
    "  the job's exit code when it exited, 128+N when it was killed by signal N,\n"
    "  127 when it could not start (START_FAILED; the cause is printed on stderr),\n"
    "  1 when it ended otherwise (OOM_KILLED, TIMED_OUT, STOPPED, SERVER_SHUTDOWN,\n"
    "  SERVER_LOST; printed on stderr) or a request failed, 130 when interrupted (the job\n"
    "  keeps running).\n"
    "Output is raw bytes whatever -o says.\n"
    "\n"
    "Run options:\n"
    "  --merge                the job's stdout and stderr both to stdout, in arrival order\n"
    "  -n, --no-stdin         the job's stdin is /dev/null whatever this stdin is\n"
    "\n" JOBCTL_CREATE_OPTIONS_HELP "\n" JOBCTL_GLOBAL_OPTIONS_HELP
    "Here --timeout is the job's timeout; give the request deadline before 'run'.\n";

/* The exit status of a finished job as a local shell would report it; failures that have no
 * such status are explained on stderr. */
static int job_exit_status(const Jobworker__V1__Job *job)
{
    switch (job->reason) {
    case JOBWORKER__V1__EXIT_REASON__EXIT_REASON_EXITED: return job->exit_code & 0xff;
    case JOBWORKER__V1__EXIT_REASON__EXIT_REASON_SIGNALED: return 128 + (job->signal & 0x7f);
    default: break;
    }
    const char *reason = jw_fmt_reason_name(job->reason);
    fprintf(stderr, "jobctl: job ");
    jw_fmt_sanitized(stderr, job->id);
    if (reason)
        fprintf(stderr, " %s", reason);
    else
        fprintf(stderr, " ended with reason %d", job->reason);
    if (job->error && *job->error) {
        fputs(": ", stderr);
        jw_fmt_sanitized(stderr, job->error);
    }
    fputc('\n', stderr);
    return job->reason == JOBWORKER__V1__EXIT_REASON__EXIT_REASON_START_FAILED ? 127 : 1;
}

/* Whether run forwards this stdin: data that has an end (a pipe, a file, a socket), not a
 * terminal or a device such as /dev/null. */
static bool stdin_has_data(void)
{
    struct stat st;
    if (fstat(STDIN_FILENO, &st) < 0)
        return false;
    return S_ISFIFO(st.st_mode) || S_ISREG(st.st_mode) || S_ISSOCK(st.st_mode);
}

typedef struct stdin_feed {
    const jobctl_ctx *ctx;
    const char *id;
    int fd;
} stdin_feed;

/* The stdin thread: its errors are printed as they happen (the job's own end is none). */
static void *feed_main(void *arg)
{
    stdin_feed *f = arg;
    (void)jobctl_send_stdin(f->ctx, f->id, f->fd);
    return NULL;
}

/* Polls GetJob until the job is final (used when its output can no longer be followed). */
static int wait_final(jw_client *c, const char *id, jw_error *err)
{
    for (;;) {
        _cleanup_job_ Jobworker__V1__Job *j = NULL;
        int r = jw_client_get_job(c, id, &j, err);
        if (r < 0)
            return r;
        if (jw_fmt_status_is_final(j->status))
            return 0;
        if (jobctl_interrupted())
            return -EINTR;
        usleep(200 * 1000);
    }
}

int cmd_run(jobctl_ctx *ctx, int argc, char **argv)
{
    Jobworker__V1__CreateJobReq req = JOBWORKER__V1__CREATE_JOB_REQ__INIT;
    Jobworker__V1__ResourceLimits limits = JOBWORKER__V1__RESOURCE_LIMITS__INIT;
    _cleanup_(jobctl_create_opts_free) jobctl_create_opts opts = {0};
    int r = jobctl_parse_create(ctx, "run", cmd_run_usage, argc, argv, &req, &limits, &opts);
    if (r != JOBCTL_CONTINUE)
        return r;
    int in_fd = -1;
    if (opts.stdin_file && strcmp(opts.stdin_file, "-") != 0) {
        in_fd = open(opts.stdin_file, O_RDONLY | O_CLOEXEC);
        if (in_fd < 0) {
            fprintf(stderr, "jobctl: --stdin: cannot open '%s': %s\n", opts.stdin_file,
                    strerror(errno));
            return 1;
        }
    } else if (opts.stdin_file || (!opts.no_stdin && stdin_has_data())) {
        in_fd = STDIN_FILENO;
    }
    req.stdin = in_fd >= 0;

    jw_client *c;
    r = jobctl_connect(ctx, &c);
    if (r != 0)
        return r;
    jw_error err = JW_ERROR_INIT;
    _cleanup_job_ Jobworker__V1__Job *job = NULL;
    r = jw_client_create_job(c, &req, &job, &err);
    if (r < 0) {
        jobctl_disconnect(c);
        return jobctl_report(r, &err);
    }

    /* The job's stdin on a thread (and a connection) of its own, beside its output. The thread
     * is never joined: a source that never ends must not keep run from exiting with the job. */
    if (in_fd >= 0) {
        /* Its own copy of what it reads: it may outlive this function until the process exits. */
        static jobctl_ctx feed_ctx;
        static stdin_feed feed;
        static char feed_id[64];
        feed_ctx = *ctx;
        snprintf(feed_id, sizeof(feed_id), "%s", job->id);
        feed = (stdin_feed){.ctx = &feed_ctx, .id = feed_id, .fd = in_fd};
        pthread_t feeder;
        if (pthread_create(&feeder, NULL, feed_main, &feed) == 0) {
            pthread_detach(feeder);
        } else {
            /* Without a writer the job would wait for its stdin for ever: stop it. */
            fputs("jobctl: cannot start the stdin thread; stopping the job\n", stderr);
            _cleanup_job_ Jobworker__V1__Job *stopped = NULL;
            (void)jw_client_stop_job(c, job->id, &stopped, &err);
            jobctl_disconnect(c);
            return 1;
        }
    }

    if (job->status == JOBWORKER__V1__JOB_STATUS__JOB_STATUS_QUEUED)
        fprintf(stderr,
                "jobctl: job %s is queued (position %" PRId64
                "): waiting for the server to start it\n",
                job->id, job->queue_position);

    jw_client_stream_req sreq = {
        .id = job->id,
        .follow = true,
        .offset = 0,
        .max_retries = JW_CLIENT_STREAM_RETRIES,
    };
    jobctl_out out = {.merge = opts.merge};
    r = jw_client_stream(c, &sreq, jobctl_write_output, &out, NULL, &err);
    if (r == -EREMOTEIO && err.code == JW_RESOURCE_EXHAUSTED) {
        /* The output hit the server's cap: say so, then still wait for the job's status. */
        fflush(stdout);
        fprintf(stderr, "jobctl: warning: %s\n", err.msg);
        r = wait_final(c, job->id, &err);
    }
    if (r == 0) {
        _cleanup_job_ Jobworker__V1__Job *final = NULL;
        r = jw_client_get_job(c, job->id, &final, &err);
        if (r == 0) {
            jw_job_free(job);
            job = TAKE_PTR(final);
        }
    }
    jobctl_disconnect(c);
    if (r < 0) {
        if (r == -EINTR || jobctl_interrupted()) {
            /* The user never saw the id; without it the job could not be found again. */
            fputs("jobctl: interrupted; job ", stderr);
            jw_fmt_sanitized(stderr, job->id);
            fputs(" keeps running on the server\n", stderr);
            return EXIT_INTERRUPTED;
        }
        return jobctl_report(r, &err);
    }
    if (jobctl_interrupted())
        return EXIT_INTERRUPTED;
    return job_exit_status(job);
}
