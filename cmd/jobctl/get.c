/* jobctl get: shows one job. */
#include "jobctl.h"

const char cmd_get_usage[] = "Usage: jobctl get [options] ID\n"
                             "\n"
                             "Shows the job ID: command, status, exit, times, limits and usage.\n"
                             "\n" JOBCTL_GLOBAL_OPTIONS_HELP;

int cmd_get(jobctl_ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {JOBCTL_GLOBAL_OPTIONS, {NULL, 0, NULL, 0}};
    int opt, r;

    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":ho:", options, NULL)) != -1) {
        if (opt == '?' || opt == ':')
            return jobctl_getopt_error("get", opt, argv);
        r = jobctl_global_option(ctx, "get", cmd_get_usage, opt, optarg);
        if (r != JOBCTL_CONTINUE)
            return r;
    }
    if (argc - optind != 1)
        return jobctl_usage_error("get", "expected exactly one job id");

    jw_client *c;
    r = jobctl_connect(ctx, &c);
    if (r != 0)
        return r;
    jw_error err = JW_ERROR_INIT;
    _cleanup_job_ Jobworker__V1__Job *job = NULL;
    r = jw_client_get_job(c, argv[optind], &job, &err);
    jobctl_disconnect(c);
    if (r < 0)
        return jobctl_report(r, &err);
    return jobctl_print_job(ctx, job);
}
