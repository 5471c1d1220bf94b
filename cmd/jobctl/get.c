/* jobctl get: shows one job. */
#include "jobctl.h"

const char cmd_get_usage[] = "Usage: jobctl get [options] ID\n"
                             "\n"
                             "Shows the job ID: command, status, exit, times, limits and usage.\n"
                             "\n" JOBCTL_GLOBAL_OPTIONS_HELP;

int cmd_get(jobctl_ctx *ctx, int argc, char **argv)
{
    _cleanup_job_ Jobworker__V1__Job *job = NULL;
    int r = jobctl_call_id(ctx, "get", cmd_get_usage, argc, argv, jw_client_get_job, &job);
    if (r != JOBCTL_CONTINUE)
        return r;
    return jobctl_print_job(ctx, job);
}
