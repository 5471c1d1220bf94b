/* jobctl get: shows one job. */
#include "jobctl.h"

const char cmd_get_usage[] = "Usage: jobctl get [options] ID\n"
                             "\n"
                             "Shows the job ID: command, status, exit, times, limits and usage.\n"
                             "\n" JOBCTL_GLOBAL_OPTIONS_HELP;

int cmd_get(jobctl_ctx *ctx, int argc, char **argv)
{
    const char *id;
    int r = jobctl_parse_id_command(ctx, "get", cmd_get_usage, argc, argv, &id);
    if (r != JOBCTL_CONTINUE)
        return r;

    jw_client *c;
    r = jobctl_connect(ctx, &c);
    if (r != 0)
        return r;
    jw_error err = JW_ERROR_INIT;
    _cleanup_job_ Jobworker__V1__Job *job = NULL;
    r = jw_client_get_job(c, id, &job, &err);
    jobctl_disconnect(c);
    if (r < 0)
        return jobctl_report(r, &err);
    return jobctl_print_job(ctx, job);
}
