/* Shared pieces of jobctl's subcommands: the global options, the connection, error reporting,
 * and the signal thread. Each subcommand lives in its own file and is dispatched from the table
 * in main.c; the gRPC work is in internal/client.
 *
 * Exit codes: 0 success, 1 failure (an RPC error or a local one), 2 usage error, 130 interrupted
 * (SIGINT/SIGTERM; the job keeps running on the server), and for `run` the job's own status.
 */
#ifndef JOBCTL_JOBCTL_H
#define JOBCTL_JOBCTL_H

#include "client/client.h"
#include "util/error.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

#define EXIT_USAGE       2
#define EXIT_INTERRUPTED 130
/* Returned by option parsers that did not end the command: go on. */
#define JOBCTL_CONTINUE (-1)

#define JOBCTL_DEFAULT_SERVER     "localhost:50051"
#define JOBCTL_DEFAULT_CERT       "certs/admin.crt"
#define JOBCTL_DEFAULT_KEY        "certs/admin.key"
#define JOBCTL_DEFAULT_CA         "certs/ca.crt"
#define JOBCTL_DEFAULT_TIMEOUT_MS 30000

typedef enum { JOBCTL_OUTPUT_HUMAN, JOBCTL_OUTPUT_JSON } jobctl_output;

typedef struct jobctl_ctx {
    const char *server;
    const char *cert;
    const char *key;
    const char *ca;
    const char *server_name; /* NULL: gRPC's default */
    jobctl_output output;
    int64_t timeout_ms; /* deadline of unary calls; 0: none */
} jobctl_ctx;

/* getopt_long values of the global options (short ones are -o and -h). */
enum {
    OPT_SERVER = 0x100,
    OPT_CERT,
    OPT_KEY,
    OPT_CA,
    OPT_SERVER_NAME,
    OPT_RPC_TIMEOUT,
    OPT_FIRST_LOCAL = 0x200, /* subcommands number their own options from here */
};

/* Global options, accepted before the subcommand and after it. create and run use the first
 * list: for them --timeout is the job's timeout, so the RPC deadline can only be given before
 * the subcommand name. */
/* clang-format off */
#define JOBCTL_GLOBAL_OPTIONS_NO_TIMEOUT                                                           \
    {"server", required_argument, NULL, OPT_SERVER},                                               \
    {"cert", required_argument, NULL, OPT_CERT},                                                   \
    {"key", required_argument, NULL, OPT_KEY},                                                     \
    {"ca", required_argument, NULL, OPT_CA},                                                       \
    {"server-name", required_argument, NULL, OPT_SERVER_NAME},                                     \
    {"output", required_argument, NULL, 'o'},                                                      \
    {"help", no_argument, NULL, 'h'}
#define JOBCTL_GLOBAL_OPTIONS                                                                      \
    JOBCTL_GLOBAL_OPTIONS_NO_TIMEOUT,                                                              \
    {"timeout", required_argument, NULL, OPT_RPC_TIMEOUT}
/* clang-format on */

#define JOBCTL_GLOBAL_OPTIONS_HELP                                                                 \
    "Global options (before or after the subcommand name):\n"                                      \
    "  --server HOST:PORT   server address (env JOBCTL_SERVER, default " JOBCTL_DEFAULT_SERVER     \
    ")\n"                                                                                          \
    "  --cert FILE          client certificate (env JOBCTL_CERT, default " JOBCTL_DEFAULT_CERT     \
    ")\n"                                                                                          \
    "  --key FILE           client key (env JOBCTL_KEY, default " JOBCTL_DEFAULT_KEY ")\n"         \
    "  --ca FILE            CA of the server's certificate (env JOBCTL_CA, "                       \
    "default " JOBCTL_DEFAULT_CA ")\n"                                                             \
    "  --server-name NAME   name to verify in the server's certificate (default: host of "         \
    "--server)\n"                                                                                  \
    "  -o, --output FORMAT  human (default) or json\n"                                             \
    "  --timeout DUR        deadline of each request, e.g. 10s, 2m; 0 for none (default 30s)\n"    \
    "  -h, --help           show help\n"

typedef struct jobctl_command {
    const char *name;
    int (*run)(jobctl_ctx *ctx, int argc, char **argv); /* argv[0] is the subcommand name */
    const char *summary;
    const char *usage; /* full help text */
} jobctl_command;

extern const char cmd_create_usage[], cmd_get_usage[], cmd_stop_usage[], cmd_list_usage[],
    cmd_stream_usage[], cmd_run_usage[], cmd_delete_usage[], cmd_info_usage[];
int cmd_create(jobctl_ctx *ctx, int argc, char **argv);
int cmd_get(jobctl_ctx *ctx, int argc, char **argv);
int cmd_stop(jobctl_ctx *ctx, int argc, char **argv);
int cmd_list(jobctl_ctx *ctx, int argc, char **argv);
int cmd_stream(jobctl_ctx *ctx, int argc, char **argv);
int cmd_run(jobctl_ctx *ctx, int argc, char **argv);
int cmd_delete(jobctl_ctx *ctx, int argc, char **argv);
int cmd_info(jobctl_ctx *ctx, int argc, char **argv);

/* Fills ctx from the environment and the built-in defaults. */
void jobctl_ctx_init(jobctl_ctx *ctx);

/* Applies a global option. Returns JOBCTL_CONTINUE when applied, 0 after printing `usage` for
 * -h, EXIT_USAGE after a usage error, and JOBCTL_NOT_GLOBAL when `opt` is not a global option. */
#define JOBCTL_NOT_GLOBAL (-2)
int jobctl_global_option(jobctl_ctx *ctx, const char *cmd, const char *usage, int opt,
                         const char *arg);

/* Reports a getopt_long failure ('?' or ':') for subcommand `cmd` (NULL for jobctl itself). */
int jobctl_getopt_error(const char *cmd, int opt, char **argv);

/* The argument parsing of subcommands that take global options and exactly one job id (get,
 * stop, delete). Sets *ret_id (pointing into argv) and returns JOBCTL_CONTINUE, or an exit code. */
int jobctl_parse_id_command(jobctl_ctx *ctx, const char *cmd, const char *usage, int argc,
                            char **argv, const char **ret_id);

/* Prints "jobctl: <message> (see 'jobctl [cmd] --help')" to stderr; returns EXIT_USAGE. */
int jobctl_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints the one-line error for a failed call and returns the exit code: for -EINTR nothing and
 * 130, for -EREMOTEIO "jobctl: STATUS: message" and 1, otherwise "jobctl: message" and 1. */
int jobctl_report(int r, const jw_error *err);

/* Blocks SIGINT and SIGTERM in the calling thread (so in every thread created later, gRPC's
 * included) and starts the thread that receives them: the first cancels the call in progress
 * and marks the run interrupted, a second one exits at once with 130. Call first in main. */
int jobctl_signals_init(void);
bool jobctl_interrupted(void);

/* Creates the client for ctx and registers it with the signal thread; on failure prints the
 * error and returns the exit code. jobctl_disconnect() unregisters and frees it. */
int jobctl_connect(const jobctl_ctx *ctx, jw_client **ret);
void jobctl_disconnect(jw_client *c);

/* Flushes stdout; returns 0, or prints the write error and returns 1. */
int jobctl_flush_stdout(void);

/* Where jobctl_write_output puts a job's output. */
typedef struct jobctl_out {
    bool merge;     /* every byte to stdout, in arrival order (today's single stream) */
    bool json;      /* one JSON line per chunk: offset, stream and base64 data */
    int64_t offset; /* of the next chunk, in the stream's terms */
} jobctl_out;

/* jw_client_output_fn (userdata: a jobctl_out): the job's stdout to our stdout and its stderr to
 * our stderr, exactly (write(2), no stdio buffering), or as jobctl_out says. */
int jobctl_write_output(void *userdata, int stream, const uint8_t *data, size_t len, jw_error *err);

/* get, stop, delete: parses "[options] ID", connects, makes the call and disconnects. Returns
 * JOBCTL_CONTINUE with the job in *ret, or the exit code (the error already printed). */
typedef int (*jobctl_id_call)(jw_client *c, const char *id, Jobworker__V1__Job **ret_job,
                              jw_error *err);
int jobctl_call_id(jobctl_ctx *ctx, const char *cmd, const char *usage, int argc, char **argv,
                   jobctl_id_call call, Jobworker__V1__Job **ret);

/* Prints a job as the subcommands show it: JSON on one line, or the human "key: value" block. */
int jobctl_print_job(const jobctl_ctx *ctx, const Jobworker__V1__Job *job);

/* create and run: parses the create options and the command (argv from the first non-option
 * on, or after "--"). The strings in req point into argv. Returns JOBCTL_CONTINUE or an exit
 * code (0 after --help). */
typedef struct jobctl_create_opts {
    const char *stdin_file; /* --stdin FILE ("-" = ours): the job reads it as its stdin */
    bool merge;             /* run --merge */
    bool no_stdin;          /* run -n: never forward our stdin */
    char **env;             /* -e and --env-file entries, in order; req->env points here */
    size_t nenv;
} jobctl_create_opts;
/* Frees what jobctl_parse_create allocated in opts. */
void jobctl_create_opts_free(jobctl_create_opts *opts);
int jobctl_parse_create(jobctl_ctx *ctx, const char *cmd, const char *usage, int argc, char **argv,
                        Jobworker__V1__CreateJobReq *req, Jobworker__V1__ResourceLimits *limits,
                        jobctl_create_opts *opts);
/* Sends fd to job id's stdin on a connection of its own (its own jw_client, so that it may run
 * beside a stream on another thread). 0, or prints the error and returns 1. */
int jobctl_send_stdin(const jobctl_ctx *ctx, const char *id, int fd);
#define JOBCTL_CREATE_OPTIONS_HELP                                                                 \
    "Job options (before the command):\n"                                                          \
    "  --max-cpu=PCT          CPU limit in percent of one core (150 = 1.5 cores)\n"                \
    "  --max-memory=SIZE      memory.max, e.g. 64M, 2G\n"                                          \
    "  --max-memory-high=SIZE memory.high (throttling threshold)\n"                                \
    "  --max-iobps=SIZE       read and write bytes per second on each disk, e.g. 10M\n"            \
    "  --max-pids=N           maximum number of processes\n"                                       \
    "  --timeout=DUR          stop the job after DUR, e.g. 30s, 2m, 1h, or plain seconds\n"        \
    "  --stdin=FILE           the job reads FILE as its stdin (- = this stdin)\n"                  \
    "  -e, --env=NAME=VALUE   an environment variable for the job (repeatable)\n"                  \
    "  --env-file=FILE        NAME=VALUE lines (blank lines and lines starting with # skipped)\n"  \
    "A limit of 0 or a missing option means the server's default.\n"

#endif
