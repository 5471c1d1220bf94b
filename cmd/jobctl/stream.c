/* jobctl stream: writes a job's output to stdout, byte for byte. */
#include "jobctl.h"

#include "client/options.h"

const char cmd_stream_usage[] =
    "Usage: jobctl stream [options] ID\n"
    "\n"
    "Writes the output of job ID (stdout and stderr merged, as written) to stdout exactly as\n"
    "the job produced it. Without --follow it ends after the output that exists now; with\n"
    "--follow it goes on with live output until the job ends. -o json does not change the\n"
    "output. A followed stream whose connection breaks resumes at the next byte by itself\n"
    "(a few attempts with back-off); a chunk at an unexpected offset is an error (DATA_LOSS),\n"
    "never a silent gap or duplicate.\n"
    "\n"
    "Options:\n"
    "  -f, --follow     keep streaming live output until the job ends\n"
    "  --offset N       start at byte N of the output (default 0)\n"
    "\n" JOBCTL_GLOBAL_OPTIONS_HELP;

enum { OPT_OFFSET = OPT_FIRST_LOCAL };

int cmd_stream(jobctl_ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {
        {"follow", no_argument, NULL, 'f'},
        {"offset", required_argument, NULL, OPT_OFFSET},
        JOBCTL_GLOBAL_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    jw_error err = JW_ERROR_INIT;
    bool follow = false;
    int64_t offset = 0;
    int opt, r;

    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":fho:", options, NULL)) != -1) {
        switch (opt) {
        case '?':
        case ':': return jobctl_getopt_error("stream", opt, argv);
        case 'f': follow = true; break;
        case OPT_OFFSET:
            if (jw_opt_offset("--offset", optarg, &offset, &err) < 0)
                return jobctl_usage_error("stream", "%s", err.msg);
            break;
        default:
            r = jobctl_global_option(ctx, "stream", cmd_stream_usage, opt, optarg);
            if (r != JOBCTL_CONTINUE)
                return r;
        }
    }
    if (argc - optind != 1)
        return jobctl_usage_error("stream", "expected exactly one job id");

    jw_client *c;
    r = jobctl_connect(ctx, &c);
    if (r != 0)
        return r;
    jw_client_stream_req sreq = {
        .id = argv[optind],
        .follow = follow,
        .offset = offset,
        .max_retries = follow ? JW_CLIENT_STREAM_RETRIES : 0,
    };
    r = jw_client_stream(c, &sreq, jobctl_write_output, NULL, NULL, &err);
    jobctl_disconnect(c);
    if (r < 0)
        return jobctl_report(r, &err);
    return 0;
}
