/* jobctl info: what the server is, what it may run and how loaded it is. */
#include "jobctl.h"

#include "client/format.h"

#include <stdio.h>

const char cmd_info_usage[] =
    "Usage: jobctl info [options]\n"
    "\n"
    "Shows the server: version and build, host, uptime, whether limits are enforced, default\n"
    "limits, admission capacity and what is in use, caps, the host's load (load average,\n"
    "available memory, pressure stall information) and jobs by status. Admin and viewer.\n"
    "\n" JOBCTL_GLOBAL_OPTIONS_HELP;

int cmd_info(jobctl_ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {JOBCTL_GLOBAL_OPTIONS, {NULL, 0, NULL, 0}};
    int opt, r;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":ho:", options, NULL)) != -1) {
        if (opt == '?' || opt == ':')
            return jobctl_getopt_error("info", opt, argv);
        r = jobctl_global_option(ctx, "info", cmd_info_usage, opt, optarg);
        if (r != JOBCTL_CONTINUE)
            return r;
    }
    if (optind != argc)
        return jobctl_usage_error("info", "takes no arguments");
    jw_client *c = NULL;
    r = jobctl_connect(ctx, &c);
    if (r != 0)
        return r;
    jw_error err = JW_ERROR_INIT;
    Jobworker__V1__ServerInfo *si = NULL;
    r = jw_client_server_info(c, &si, &err);
    jobctl_disconnect(c);
    if (r < 0)
        return jobctl_report(r, &err);
    if (ctx->output == JOBCTL_OUTPUT_JSON) {
        jw_fmt_server_info_json(stdout, si);
        putchar('\n');
    } else {
        jw_fmt_server_info_human(stdout, si);
    }
    jobworker__v1__server_info__free_unpacked(si, NULL);
    return jobctl_flush_stdout();
}
