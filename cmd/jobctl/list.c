/* jobctl list: lists jobs, newest first, one page or as many pages as asked for. */
#include "jobctl.h"

#include "client/format.h"
#include "client/options.h"
#include "util/misc.h"

#include <errno.h>
#include <stdio.h>

const char cmd_list_usage[] =
    "Usage: jobctl list [options]\n"
    "\n"
    "Lists jobs, newest first, as a table (ID, STATUS, REASON/EXIT, OWNER, STARTED, COMMAND);\n"
    "with -o json, one document {\"jobs\":[...]} (every page fetched in one array).\n"
    "Without --limit or --all, one page: up to 1000 jobs (fewer when the server's 2 MiB\n"
    "response cap ends it early); when more jobs match, a line on stderr says so.\n"
    "\n"
    "Options:\n"
    "  --status S[,S...]  only jobs in one of these states: initializing, running,\n"
    "                     completed, failed, stopped (any case; may be repeated)\n"
    "  --owner CN         only jobs created by this client certificate CN\n"
    "  --since DUR        only jobs created in the last DUR, e.g. 10m, 2h, 7d\n"
    "  --limit N          at most N jobs, following pages as needed\n"
    "  --all              every matching job, following every page\n"
    "  --page-size N      jobs per request, 1 to 10000 (default: the server's, 1000; with\n"
    "                     --limit N, N up to 10000)\n"
    "--limit and --all cannot be combined.\n"
    "\n" JOBCTL_GLOBAL_OPTIONS_HELP;

enum {
    OPT_STATUS = OPT_FIRST_LOCAL,
    OPT_OWNER,
    OPT_SINCE,
    OPT_LIMIT,
    OPT_ALL,
    OPT_PAGE_SIZE,
};

typedef struct list_args {
    uint32_t status_mask; /* bit (1 << JobStatus) */
    const char *owner;
    int64_t since_unix_ns; /* 0: any */
    int64_t limit;         /* 0: none */
    bool all;
    int64_t page_size; /* 0: the default */
} list_args;

static int parse_args(jobctl_ctx *ctx, int argc, char **argv, list_args *a)
{
    static const struct option options[] = {
        JOBCTL_GLOBAL_OPTIONS,
        {"status", required_argument, NULL, OPT_STATUS},
        {"owner", required_argument, NULL, OPT_OWNER},
        {"since", required_argument, NULL, OPT_SINCE},
        {"limit", required_argument, NULL, OPT_LIMIT},
        {"all", no_argument, NULL, OPT_ALL},
        {"page-size", required_argument, NULL, OPT_PAGE_SIZE},
        {NULL, 0, NULL, 0},
    };
    jw_error err = JW_ERROR_INIT;
    int opt, r;
    uint32_t mask;

    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":ho:", options, NULL)) != -1) {
        if (opt == '?' || opt == ':')
            return jobctl_getopt_error("list", opt, argv);
        switch (opt) {
        case OPT_STATUS:
            /* Repeated flags add up: --status running --status failed. */
            if (jw_opt_status_mask("--status", optarg, &mask, &err) < 0)
                return jobctl_usage_error("list", "%s", err.msg);
            a->status_mask |= mask;
            continue;
        case OPT_OWNER:
            if (!*optarg)
                return jobctl_usage_error("list", "empty value for --owner");
            a->owner = optarg;
            continue;
        case OPT_SINCE:
            /* The channel connects lazily, on the first call: now is close enough to it. */
            if (jw_opt_since("--since", optarg, now_realtime_ns(), &a->since_unix_ns, &err) < 0)
                return jobctl_usage_error("list", "%s", err.msg);
            continue;
        case OPT_LIMIT:
            if (jw_opt_int_range("--limit", optarg, 1, INT64_MAX, "a number of jobs, 1 or more",
                                 &a->limit, &err) < 0)
                return jobctl_usage_error("list", "%s", err.msg);
            continue;
        case OPT_ALL: a->all = true; continue;
        case OPT_PAGE_SIZE:
            if (jw_opt_int_range("--page-size", optarg, 1, JW_CLIENT_PAGE_SIZE_MAX,
                                 "a number of jobs from 1 to 10000", &a->page_size, &err) < 0)
                return jobctl_usage_error("list", "%s", err.msg);
            continue;
        default: break;
        }
        r = jobctl_global_option(ctx, "list", cmd_list_usage, opt, optarg);
        if (r != JOBCTL_CONTINUE)
            return r;
    }
    if (optind != argc)
        return jobctl_usage_error("list", "unexpected argument '%s'", argv[optind]);
    if (a->all && a->limit > 0)
        return jobctl_usage_error("list", "--limit and --all cannot be used together");
    return JOBCTL_CONTINUE;
}

int cmd_list(jobctl_ctx *ctx, int argc, char **argv)
{
    list_args a = {0};
    int r = parse_args(ctx, argc, argv, &a);
    if (r != JOBCTL_CONTINUE)
        return r;

    jw_error err = JW_ERROR_INIT;
    Jobworker__V1__JobStatus statuses[32];
    jw_client_list_req req = {
        .page_size = (int32_t)a.page_size,
        .statuses = statuses,
        .owner = a.owner,
        .since_unix_ns = a.since_unix_ns,
    };
    for (int s = 0; s < 32; s++)
        if (a.status_mask & (1u << s))
            statuses[req.n_statuses++] = (Jobworker__V1__JobStatus)s;

    jw_client *c;
    r = jobctl_connect(ctx, &c);
    if (r != 0)
        return r;
    _cleanup_jobs_ Jobworker__V1__Jobs *jobs = NULL;
    if (a.all || a.limit > 0)
        r = jw_client_list_jobs_all(c, &req, a.limit, &jobs, &err);
    else
        r = jw_client_list_jobs(c, &req, &jobs, &err);
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
    r = jobctl_flush_stdout();
    /* Only the default listing stops at one page on its own; --limit N asked for at most N. */
    if (r == 0 && !a.all && a.limit == 0 && jobs->next_page_token && jobs->next_page_token[0])
        fprintf(stderr,
                "jobctl: more jobs match than the %zu shown: --limit N lists the newest N, "
                "--all every one\n",
                jobs->n_jobs);
    return r;
}
