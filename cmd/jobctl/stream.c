/* jobctl stream: writes a job's stdout to stdout and its stderr to stderr, byte for byte. */
#include "jobctl.h"

#include "client/options.h"

const char cmd_stream_usage[] =
    "Usage: jobctl stream [options] ID\n"
    "\n"
    "Writes the output of job ID exactly as the job produced it: its stdout to stdout and its\n"
    "stderr to stderr, in the order the server received them. Without --follow it ends after\n"
    "the output that exists now; with --follow it goes on with live output until the job\n"
    "ends. With -o json each chunk is one JSON line: {\"offset\":N,\"stream\":\"stdout\"|\n"
    "\"stderr\",\"data\":BASE64}. A followed stream whose connection breaks resumes at the\n"
    "next byte by itself (a few attempts with back-off); a chunk at an unexpected offset is an\n"
    "error (DATA_LOSS), never a silent gap or duplicate.\n"
    "\n"
    "Options:\n"
    "  -f, --follow     keep streaming live output until the job ends\n"
    "  --merge          write stdout and stderr both to stdout, in arrival order\n"
    "  --stdout         only the job's stdout (offsets count its bytes alone)\n"
    "  --stderr         only the job's stderr, written to stdout (offsets count its bytes)\n"
    "  --offset N       start at byte N of the output (default 0): of both streams merged,\n"
    "                   or of the one --stdout/--stderr selects\n"
    "\n" JOBCTL_GLOBAL_OPTIONS_HELP;

enum { OPT_OFFSET = OPT_FIRST_LOCAL, OPT_MERGE, OPT_STDOUT, OPT_STDERR };

int cmd_stream(jobctl_ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {
        {"follow", no_argument, NULL, 'f'},
        {"offset", required_argument, NULL, OPT_OFFSET},
        {"merge", no_argument, NULL, OPT_MERGE},
        {"stdout", no_argument, NULL, OPT_STDOUT},
        {"stderr", no_argument, NULL, OPT_STDERR},
        JOBCTL_GLOBAL_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    jw_error err = JW_ERROR_INIT;
    bool follow = false;
    int64_t offset = 0;
    int select = 0;
    jobctl_out out = {0};
    int opt, r;

    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":fho:", options, NULL)) != -1) {
        switch (opt) {
        case '?':
        case ':': return jobctl_getopt_error("stream", opt, argv);
        case 'f': follow = true; break;
        case OPT_MERGE: out.merge = true; break;
        case OPT_STDOUT:
        case OPT_STDERR:
            if (select && select != (opt == OPT_STDOUT ? 1 : 2))
                return jobctl_usage_error("stream", "--stdout and --stderr exclude each other");
            select = opt == OPT_STDOUT ? 1 : 2;
            break;
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
    /* One selected stream is the whole output: it goes to stdout. */
    out.merge = out.merge || select != 0;
    out.json = ctx->output == JOBCTL_OUTPUT_JSON;
    out.offset = offset;

    jw_client *c;
    r = jobctl_connect(ctx, &c);
    if (r != 0)
        return r;
    jw_client_stream_req sreq = {
        .id = argv[optind],
        .follow = follow,
        .offset = offset,
        .select = select,
        .max_retries = follow ? JW_CLIENT_STREAM_RETRIES : 0,
    };
    r = jw_client_stream(c, &sreq, jobctl_write_output, &out, NULL, &err);
    jobctl_disconnect(c);
    if (r < 0)
        return jobctl_report(r, &err);
    return 0;
}
