/* jobctl: the command-line client of jobworker. Parses the global options and dispatches to one
 * subcommand from the table below; see jobctl.h for the shared pieces and exit codes.
 */
#include "jobctl.h"

#include "util/defaults.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Read only by LeakSanitizer builds (make SANITIZE=address,...): libcares 1.18 (Debian bookworm)
 * leaks 10 bytes in ares_getaddrinfo() whenever gRPC's c-ares resolver looks up a host name such
 * as "localhost", which would fail every sanitized run of jobctl. The suppression is limited to
 * allocations made inside libcares; leaks of ours are still reported. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libcares.so\n";
}
/* Without this LeakSanitizer lists the suppressions it used on stderr at exit, and tests that
 * expect exactly one error line there would see more. LSAN_OPTIONS still overrides it. */
const char *__lsan_default_options(void);
const char *__lsan_default_options(void)
{
    return "print_suppressions=0";
}

static const jobctl_command commands[] = {
    {"create", cmd_create, "start a job and print its id", cmd_create_usage},
    {"get", cmd_get, "show one job", cmd_get_usage},
    {"stop", cmd_stop, "stop a job", cmd_stop_usage},
    {"list", cmd_list, "list jobs, newest first", cmd_list_usage},
    {"stream", cmd_stream, "write a job's output to stdout", cmd_stream_usage},
    {"run", cmd_run, "create a job, follow its output and exit with its status", cmd_run_usage},
    {"delete", cmd_delete, "delete a finished job and its output", cmd_delete_usage},
    {"info", cmd_info, "show the server: version, limits, capacity, load, jobs", cmd_info_usage},
};

static const jobctl_command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static const char main_usage_head[] =
    "Usage: jobctl [global options] SUBCOMMAND [options] [args]\n"
    "\n"
    "Runs and inspects jobs on a jobworker server over mutual TLS.\n"
    "\n"
    "Subcommands:\n";
static const char main_usage_tail[] =
    "  help [SUBCOMMAND]    show help for a subcommand\n"
    "\n" JOBCTL_GLOBAL_OPTIONS_HELP
    "  -V, --version        print jobctl's version (before the subcommand)\n"
    "\n"
    "Exit status: 0 on success, 1 when a request failed (the error is printed as\n"
    "'jobctl: STATUS: message'), 2 on a usage error, 130 when interrupted by SIGINT or\n"
    "SIGTERM (the job keeps running on the server); `run` exits with the job's status.\n";

static int print_main_usage(FILE *out)
{
    fputs(main_usage_head, out);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-20s %s\n", commands[i].name, commands[i].summary);
    fputs(main_usage_tail, out);
    return out == stdout ? jobctl_flush_stdout() : 0;
}

static int cmd_help(int argc, char **argv)
{
    if (argc < 2)
        return print_main_usage(stdout);
    const jobctl_command *c = find_command(argv[1]);
    if (!c)
        return jobctl_usage_error(NULL, "unknown subcommand '%s'", argv[1]);
    fputs(c->usage, stdout);
    return jobctl_flush_stdout();
}

int main(int argc, char **argv)
{
    /* Streaming allocates and frees chunk-sized buffers all the time: keep them in the heap
     * instead of mmap/munmap and page faults for each (measured: -15 % CPU per GiB). */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 128 << 20);

    /* Before anything can start a thread: gRPC's threads must inherit the blocked mask. */
    if (jobctl_signals_init() < 0) {
        fprintf(stderr, "jobctl: cannot start the signal thread\n");
        return 1;
    }

    jobctl_ctx ctx;
    jobctl_ctx_init(&ctx);

    static const struct option options[] = {
        {"version", no_argument, NULL, 'V'}, JOBCTL_GLOBAL_OPTIONS, {NULL, 0, NULL, 0}};
    opterr = 0;
    int opt;
    /* "+": stop at the subcommand name; its options are its own to parse. */
    while ((opt = getopt_long(argc, argv, "+:hVo:", options, NULL)) != -1) {
        if (opt == '?' || opt == ':')
            return jobctl_getopt_error(NULL, opt, argv);
        if (opt == 'h')
            return print_main_usage(stdout);
        if (opt == 'V') {
            printf("jobctl %s\n", JW_VERSION);
            return jobctl_flush_stdout();
        }
        int r = jobctl_global_option(&ctx, NULL, "", opt, optarg);
        if (r != JOBCTL_CONTINUE)
            return r;
    }
    if (optind >= argc) {
        print_main_usage(stderr);
        return EXIT_USAGE;
    }

    int sub_argc = argc - optind;
    char **sub_argv = argv + optind;
    if (strcmp(sub_argv[0], "help") == 0)
        return cmd_help(sub_argc, sub_argv);
    const jobctl_command *c = find_command(sub_argv[0]);
    if (!c)
        return jobctl_usage_error(NULL, "unknown subcommand '%s'", sub_argv[0]);

    /* Restart getopt for the subcommand's own argument vector. */
    optind = 0;
    return c->run(&ctx, sub_argc, sub_argv);
}
