/* jobctl delete: removes a finished job's record and output from the server. */
#include "jobctl.h"

#include "client/format.h"

#include <stdio.h>

const char cmd_delete_usage[] =
    "Usage: jobctl delete [options] ID\n"
    "\n"
    "Deletes the finished job ID: the server forgets its record and removes its output, so\n"
    "get and stream answer NOT_FOUND afterwards. Prints 'deleted ID' (with -o json, the job\n"
    "as it was). Admin only. A job that has not finished is refused (FAILED_PRECONDITION):\n"
    "stop it first.\n"
    "\n" JOBCTL_GLOBAL_OPTIONS_HELP;

int cmd_delete(jobctl_ctx *ctx, int argc, char **argv)
{
    _cleanup_job_ Jobworker__V1__Job *job = NULL;
    int r = jobctl_call_id(ctx, "delete", cmd_delete_usage, argc, argv, jw_client_delete_job, &job);
    if (r != JOBCTL_CONTINUE)
        return r;

    if (ctx->output == JOBCTL_OUTPUT_JSON)
        return jobctl_print_job(ctx, job);
    fputs("deleted ", stdout);
    jw_fmt_sanitized(stdout, job->id);
    putchar('\n');
    return jobctl_flush_stdout();
}
