/* jobctl run: create + stream --follow + exit with the job's status, like running the command
 * locally. */
#include "jobctl.h"

#include "client/format.h"
#include "util/cleanup.h"

#include <errno.h>
#include <inttypes.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>

const char cmd_run_usage[] =
    "Usage: jobctl run [options] [--] COMMAND [ARGS...]\n"
    "\n"
    "Starts COMMAND like 'create', writes its output to stdout as it comes (like\n"
    "'stream --follow' from byte 0) and exits with the job's status:\n"
    "  the job's exit code when it exited, 128+N when it was killed by signal N,\n"
    "  127 when it could not start (START_FAILED; the cause is printed on stderr),\n"
    "  1 when it ended otherwise (OOM_KILLED, TIMED_OUT, STOPPED, SERVER_SHUTDOWN,\n"
    "  SERVER_LOST; printed on stderr) or a request failed, 130 when interrupted (the job\n"
    "  keeps running).\n"
    "Output is raw bytes whatever -o says.\n"
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
    int r = jobctl_parse_create(ctx, "run", cmd_run_usage, argc, argv, &req, &limits);
    if (r != JOBCTL_CONTINUE)
        return r;

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
    r = jw_client_stream(c, &sreq, jobctl_write_output, NULL, NULL, &err);
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
