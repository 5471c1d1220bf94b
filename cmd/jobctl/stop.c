/* jobctl stop: stops a job and shows what became of it. */
#include "jobctl.h"

#include "client/format.h"

#include <stdio.h>

const char cmd_stop_usage[] =
    "Usage: jobctl stop [options] ID\n"
    "\n"
    "Stops the job ID (SIGTERM to its processes, then a kill after a grace period) and prints\n"
    "'ID STATUS' (with -o json, the job). Stopping a job that already ended is not an error.\n"
    "\n" JOBCTL_GLOBAL_OPTIONS_HELP;

int cmd_stop(jobctl_ctx *ctx, int argc, char **argv)
{
    _cleanup_job_ Jobworker__V1__Job *job = NULL;
    int r = jobctl_call_id(ctx, "stop", cmd_stop_usage, argc, argv, jw_client_stop_job, &job);
    if (r != JOBCTL_CONTINUE)
        return r;

    if (ctx->output == JOBCTL_OUTPUT_JSON)
        return jobctl_print_job(ctx, job);
    const char *status = jw_fmt_status_name(job->status);
    jw_fmt_sanitized(stdout, job->id);
    if (status)
        printf(" %s\n", status);
    else
        printf(" %d\n", job->status);
    return jobctl_flush_stdout();
}
