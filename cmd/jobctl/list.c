/* jobctl list: lists every job the server knows. */
#include "jobctl.h"

#include "client/format.h"

#include <errno.h>
#include <stdio.h>

const char cmd_list_usage[] =
    "Usage: jobctl list [options]\n"
    "\n"
    "Lists all jobs as a table (ID, STATUS, REASON/EXIT, OWNER, STARTED, COMMAND); with\n"
    "-o json, one document {\"jobs\":[...]}.\n"
    "\n" JOBCTL_GLOBAL_OPTIONS_HELP;

int cmd_list(jobctl_ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {JOBCTL_GLOBAL_OPTIONS, {NULL, 0, NULL, 0}};
    int opt, r;

    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":ho:", options, NULL)) != -1) {
        if (opt == '?' || opt == ':')
            return jobctl_getopt_error("list", opt, argv);
        r = jobctl_global_option(ctx, "list", cmd_list_usage, opt, optarg);
        if (r != JOBCTL_CONTINUE)
            return r;
    }
    if (optind != argc)
        return jobctl_usage_error("list", "unexpected argument '%s'", argv[optind]);

    jw_client *c;
    r = jobctl_connect(ctx, &c);
    if (r != 0)
        return r;
    jw_error err = JW_ERROR_INIT;
    _cleanup_jobs_ Jobworker__V1__Jobs *jobs = NULL;
    r = jw_client_list_jobs(c, &jobs, &err);
    jobctl_disconnect(c);
    if (r < 0)
        return jobctl_report(r, &err);

    if (ctx->output == JOBCTL_OUTPUT_JSON) {
        jw_fmt_jobs_json(stdout, jobs);
        putchar('\n');
    } else if (jw_fmt_jobs_table(stdout, jobs) == -ENOMEM) {
        fprintf(stderr, "jobctl: out of memory\n");
        return 1;
    }
    return jobctl_flush_stdout();
}
