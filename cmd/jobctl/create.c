/* jobctl create: starts a job and prints its id (or the job as JSON). */
#include "jobctl.h"

#include "client/format.h"
#include "client/options.h"
#include "util/cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

const char cmd_create_usage[] =
    "Usage: jobctl create [options] [--] COMMAND [ARGS...]\n"
    "\n"
    "Starts COMMAND with ARGS on the server and prints the new job's id (with -o json, the\n"
    "job). Options must come before COMMAND; everything from COMMAND on belongs to the job.\n"
    "With --stdin the job's stdin is FILE: create returns once the job has read all of it (or\n"
    "ended); without, the job's stdin is /dev/null.\n"
    "\n" JOBCTL_CREATE_OPTIONS_HELP "\n" JOBCTL_GLOBAL_OPTIONS_HELP
    "Here --timeout is the job's timeout; give the request deadline before 'create'.\n";

enum {
    OPT_MAX_CPU = OPT_FIRST_LOCAL,
    OPT_MAX_MEMORY,
    OPT_MAX_MEMORY_HIGH,
    OPT_MAX_IOBPS,
    OPT_MAX_PIDS,
    OPT_JOB_TIMEOUT,
    OPT_STDIN,
    OPT_MERGE,
    OPT_ENV_FILE,
};

/* The environment jobctl accepts before the server's own checks (JOB_ENV_MAX is 256). */
#define ENV_MAX      1024
#define ENV_LINE_MAX (64 * 1024)

static int add_env(jobctl_create_opts *opts, const char *cmd, const char *entry, size_t len)
{
    if (opts->nenv >= ENV_MAX)
        return jobctl_usage_error(cmd, "more than %d environment variables", ENV_MAX);
    if (!memchr(entry, '=', len))
        return jobctl_usage_error(cmd, "environment entry '%.*s' is not NAME=VALUE", (int)len,
                                  entry);
    if (!opts->env && !(opts->env = calloc(ENV_MAX, sizeof(char *))))
        return jobctl_usage_error(cmd, "out of memory");
    if (!(opts->env[opts->nenv] = strndup(entry, len)))
        return jobctl_usage_error(cmd, "out of memory");
    opts->nenv++;
    return JOBCTL_CONTINUE;
}

/* NAME=VALUE lines; the value is the rest of the line as it is (no quotes, no expansion). */
static int read_env_file(jobctl_create_opts *opts, const char *cmd, const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return jobctl_usage_error(cmd, "--env-file: cannot open '%s': %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int r = JOBCTL_CONTINUE;
    for (int lineno = 1; r == JOBCTL_CONTINUE && (n = getline(&line, &cap, f)) >= 0; lineno++) {
        if (n > ENV_LINE_MAX) {
            r = jobctl_usage_error(cmd, "--env-file '%s' line %d is longer than %d bytes", path,
                                   lineno, ENV_LINE_MAX);
            break;
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0 || line[0] == '#')
            continue;
        if (!strchr(line, '=')) {
            r = jobctl_usage_error(cmd, "--env-file '%s' line %d is not NAME=VALUE", path, lineno);
            break;
        }
        r = add_env(opts, cmd, line, (size_t)n);
    }
    free(line);
    fclose(f);
    return r;
}

void jobctl_create_opts_free(jobctl_create_opts *opts)
{
    for (size_t i = 0; i < opts->nenv; i++)
        free(opts->env[i]);
    free(opts->env);
    opts->env = NULL;
    opts->nenv = 0;
}

int jobctl_parse_create(jobctl_ctx *ctx, const char *cmd, const char *usage, int argc, char **argv,
                        Jobworker__V1__CreateJobReq *req, Jobworker__V1__ResourceLimits *limits,
                        jobctl_create_opts *opts)
{
    bool is_run = strcmp(cmd, "run") == 0;
    static const struct option options[] = {
        {"max-cpu", required_argument, NULL, OPT_MAX_CPU},
        {"max-memory", required_argument, NULL, OPT_MAX_MEMORY},
        {"max-memory-high", required_argument, NULL, OPT_MAX_MEMORY_HIGH},
        {"max-iobps", required_argument, NULL, OPT_MAX_IOBPS},
        {"max-pids", required_argument, NULL, OPT_MAX_PIDS},
        {"timeout", required_argument, NULL, OPT_JOB_TIMEOUT},
        {"stdin", required_argument, NULL, OPT_STDIN},
        {"merge", no_argument, NULL, OPT_MERGE},
        {"no-stdin", no_argument, NULL, 'n'},
        {"env", required_argument, NULL, 'e'},
        {"env-file", required_argument, NULL, OPT_ENV_FILE},
        JOBCTL_GLOBAL_OPTIONS_NO_TIMEOUT,
        {NULL, 0, NULL, 0},
    };
    jw_error err = JW_ERROR_INIT;
    int opt, r = 0;

    opterr = 0;
    /* "+": the first non-option is the job's command; nothing after it is ours. */
    while ((opt = getopt_long(argc, argv, "+:he:no:", options, NULL)) != -1) {
        switch (opt) {
        case '?':
        case ':': return jobctl_getopt_error(cmd, opt, argv);
        case OPT_STDIN: opts->stdin_file = optarg; break;
        case 'e':
        case OPT_ENV_FILE: {
            int e = opt == 'e' ? add_env(opts, cmd, optarg, strlen(optarg))
                               : read_env_file(opts, cmd, optarg);
            if (e != JOBCTL_CONTINUE)
                return e;
            break;
        }
        case OPT_MERGE:
        case 'n':
            if (!is_run)
                return jobctl_usage_error(cmd, "%s is an option of 'run'",
                                          opt == 'n' ? "-n" : "--merge");
            if (opt == 'n')
                opts->no_stdin = true;
            else
                opts->merge = true;
            break;
        case OPT_MAX_CPU:
            r = jw_opt_cpu_percent("--max-cpu", optarg, &limits->cpu_percent, &err);
            break;
        case OPT_MAX_MEMORY:
            r = jw_opt_size("--max-memory", optarg, &limits->memory_bytes, &err);
            break;
        case OPT_MAX_MEMORY_HIGH:
            r = jw_opt_size("--max-memory-high", optarg, &limits->memory_high_bytes, &err);
            break;
        case OPT_MAX_IOBPS: r = jw_opt_size("--max-iobps", optarg, &limits->io_bps, &err); break;
        case OPT_MAX_PIDS: r = jw_opt_count32("--max-pids", optarg, &limits->pids_max, &err); break;
        case OPT_JOB_TIMEOUT:
            r = jw_opt_duration_s32("--timeout", optarg, &req->timeout_seconds, &err);
            break;
        default:
            r = jobctl_global_option(ctx, cmd, usage, opt, optarg);
            if (r != JOBCTL_CONTINUE)
                return r;
            r = 0;
        }
        if (r < 0)
            return jobctl_usage_error(cmd, "%s", err.msg);
    }
    if (optind >= argc)
        return jobctl_usage_error(cmd, "missing the command to run");
    if (opts->stdin_file && opts->no_stdin)
        return jobctl_usage_error(cmd, "--stdin and -n exclude each other");
    req->stdin = opts->stdin_file != NULL;
    req->env = opts->env;
    req->n_env = opts->nenv;

    req->command = argv[optind];
    req->args = argv + optind + 1;
    req->n_args = (size_t)(argc - optind - 1);
    /* Only a request that names a limit carries the message, so that a server running without
     * cgroups accepts a plain create. */
    if (limits->cpu_percent || limits->memory_bytes || limits->memory_high_bytes ||
        limits->io_bps || limits->pids_max)
        req->limits = limits;
    return JOBCTL_CONTINUE;
}

int cmd_create(jobctl_ctx *ctx, int argc, char **argv)
{
    Jobworker__V1__CreateJobReq req = JOBWORKER__V1__CREATE_JOB_REQ__INIT;
    Jobworker__V1__ResourceLimits limits = JOBWORKER__V1__RESOURCE_LIMITS__INIT;
    _cleanup_(jobctl_create_opts_free) jobctl_create_opts opts = {0};
    int r = jobctl_parse_create(ctx, "create", cmd_create_usage, argc, argv, &req, &limits, &opts);
    if (r != JOBCTL_CONTINUE)
        return r;
    int in_fd = -1;
    if (opts.stdin_file) {
        in_fd = strcmp(opts.stdin_file, "-") == 0 ? dup(STDIN_FILENO)
                                                  : open(opts.stdin_file, O_RDONLY | O_CLOEXEC);
        if (in_fd < 0) {
            fprintf(stderr, "jobctl: --stdin: cannot open '%s': %s\n", opts.stdin_file,
                    strerror(errno));
            return 1;
        }
    }

    jw_client *c;
    r = jobctl_connect(ctx, &c);
    if (r != 0)
        return r;
    jw_error err = JW_ERROR_INIT;
    _cleanup_job_ Jobworker__V1__Job *job = NULL;
    r = jw_client_create_job(c, &req, &job, &err);
    jobctl_disconnect(c);
    if (r < 0) {
        if (in_fd >= 0)
            close(in_fd);
        return jobctl_report(r, &err);
    }
    if (in_fd >= 0) {
        r = jobctl_send_stdin(ctx, job->id, in_fd);
        close(in_fd);
        if (r != 0) {
            fputs("jobctl: job ", stderr);
            jw_fmt_sanitized(stderr, job->id);
            fputs(" was created; its stdin is incomplete\n", stderr);
            return r;
        }
    }

    if (ctx->output == JOBCTL_OUTPUT_JSON) {
        jw_fmt_job_json(stdout, job);
        putchar('\n');
    } else {
        jw_fmt_sanitized(stdout, job->id);
        putchar('\n');
    }
    return jobctl_flush_stdout();
}
