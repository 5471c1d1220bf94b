/* Global options, connection, error reporting and the signal thread of jobctl. */
#include "jobctl.h"

#include "client/format.h"
#include "client/options.h"
#include "util/fileio.h"
#include "util/misc.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

void jobctl_ctx_init(jobctl_ctx *ctx)
{
    *ctx = (jobctl_ctx){
        .server = env_or("JOBCTL_SERVER", JOBCTL_DEFAULT_SERVER),
        .cert = env_or("JOBCTL_CERT", JOBCTL_DEFAULT_CERT),
        .key = env_or("JOBCTL_KEY", JOBCTL_DEFAULT_KEY),
        .ca = env_or("JOBCTL_CA", JOBCTL_DEFAULT_CA),
        .output = JOBCTL_OUTPUT_HUMAN,
        .timeout_ms = JOBCTL_DEFAULT_TIMEOUT_MS,
    };
}

int jobctl_usage_error(const char *cmd, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "jobctl: %s (see 'jobctl%s%s --help')\n", msg, cmd ? " " : "", cmd ? cmd : "");
    return EXIT_USAGE;
}

int jobctl_getopt_error(const char *cmd, int opt, char **argv)
{
    /* getopt has already moved past the offending word. */
    const char *word = argv[optind - 1];
    char name[64];
    if (strncmp(word, "--", 2) == 0) {
        snprintf(name, sizeof(name), "%.*s", (int)strcspn(word, "="), word);
    } else if (optopt > 0 && optopt < 0x80) {
        snprintf(name, sizeof(name), "-%c", optopt);
    } else {
        snprintf(name, sizeof(name), "%s", word);
    }
    if (opt == ':')
        return jobctl_usage_error(cmd, "option '%s' requires a value", name);
    if (strncmp(word, "--", 2) == 0) {
        /* glibc sets optopt to the option's value only when a known option got a value it
         * does not take; unknown and ambiguous abbreviations leave it 0. */
        if (optopt != 0)
            return jobctl_usage_error(cmd, "option '%s' does not take a value", name);
        return jobctl_usage_error(cmd, "unknown or ambiguous option '%s'", name);
    }
    return jobctl_usage_error(cmd, "unknown option '%s'", name);
}

int jobctl_global_option(jobctl_ctx *ctx, const char *cmd, const char *usage, int opt,
                         const char *arg)
{
    jw_error err = JW_ERROR_INIT;
    switch (opt) {
    case 'h': fputs(usage, stdout); return jobctl_flush_stdout();
    case OPT_SERVER:
        if (!*arg)
            return jobctl_usage_error(cmd, "empty value for --server");
        ctx->server = arg;
        return JOBCTL_CONTINUE;
    case OPT_CERT: ctx->cert = arg; return JOBCTL_CONTINUE;
    case OPT_KEY: ctx->key = arg; return JOBCTL_CONTINUE;
    case OPT_CA: ctx->ca = arg; return JOBCTL_CONTINUE;
    case OPT_SERVER_NAME: ctx->server_name = *arg ? arg : NULL; return JOBCTL_CONTINUE;
    case 'o':
        if (strcmp(arg, "human") == 0)
            ctx->output = JOBCTL_OUTPUT_HUMAN;
        else if (strcmp(arg, "json") == 0)
            ctx->output = JOBCTL_OUTPUT_JSON;
        else
            return jobctl_usage_error(cmd, "invalid output format '%s' (expected human or json)",
                                      arg);
        return JOBCTL_CONTINUE;
    case OPT_RPC_TIMEOUT:
        if (jw_opt_duration_ms("--timeout", arg, &ctx->timeout_ms, &err) < 0)
            return jobctl_usage_error(cmd, "%s", err.msg);
        return JOBCTL_CONTINUE;
    }
    return JOBCTL_NOT_GLOBAL;
}

int jobctl_report(int r, const jw_error *err)
{
    char ebuf[128];
    if (r == -EINTR || jobctl_interrupted())
        return EXIT_INTERRUPTED;
    if (r == -EREMOTEIO)
        fprintf(stderr, "jobctl: %s: %s\n", jw_client_code_name(err->code), err->msg);
    else if (err->msg[0])
        fprintf(stderr, "jobctl: %s\n", err->msg);
    else
        fprintf(stderr, "jobctl: %s\n", jw_strerror(r, ebuf, sizeof(ebuf)));
    return 1;
}

int jobctl_flush_stdout(void)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        char ebuf[128];
        fprintf(stderr, "jobctl: write stdout: %s\n", jw_strerror(errno, ebuf, sizeof(ebuf)));
        return 1;
    }
    return 0;
}

/* The signal thread. gRPC must never be called from a signal handler, so SIGINT and SIGTERM
 * stay blocked everywhere and this thread takes them with sigwait(); it may then cancel the
 * call in progress, which gRPC allows from any thread while the call is referenced (the client
 * guarantees that under its mutex). sig_mu orders registration against delivery. */
static pthread_mutex_t sig_mu = PTHREAD_MUTEX_INITIALIZER;
static jw_client *sig_client;
static atomic_bool sig_interrupted;

static void *signal_thread(void *arg)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    for (;;) {
        int sig;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (atomic_exchange(&sig_interrupted, true))
            _exit(EXIT_INTERRUPTED); /* a second signal: the user insists */
        pthread_mutex_lock(&sig_mu);
        if (sig_client)
            jw_client_cancel(sig_client);
        pthread_mutex_unlock(&sig_mu);
    }
    return NULL;
}

int jobctl_signals_init(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    int r = pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (r != 0)
        return -r;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    pthread_t t;
    r = pthread_create(&t, &attr, signal_thread, NULL);
    pthread_attr_destroy(&attr);
    return -r;
}

bool jobctl_interrupted(void)
{
    return atomic_load(&sig_interrupted);
}

/* A client for ctx, not registered with the signal thread; on failure prints the error and
 * returns the exit code. */
static int new_client(const jobctl_ctx *ctx, jw_client **ret)
{
    jw_client_config cfg = {
        .server = ctx->server,
        .cert_path = ctx->cert,
        .key_path = ctx->key,
        .ca_path = ctx->ca,
        .server_name = ctx->server_name,
        .timeout_ms = ctx->timeout_ms,
        /* Relative default paths are relative to the working directory; when they are missing,
         * the user most likely has not generated certificates yet. */
        .cert_hint = strcmp(ctx->cert, JOBCTL_DEFAULT_CERT) == 0
                         ? " (run scripts/gen-certs.sh or pass --cert)"
                         : NULL,
        .key_hint = strcmp(ctx->key, JOBCTL_DEFAULT_KEY) == 0
                        ? " (run scripts/gen-certs.sh or pass --key)"
                        : NULL,
        .ca_hint = strcmp(ctx->ca, JOBCTL_DEFAULT_CA) == 0
                       ? " (run scripts/gen-certs.sh or pass --ca)"
                       : NULL,
    };
    jw_error err = JW_ERROR_INIT;
    int r = jw_client_new(&cfg, ret, &err);
    return r < 0 ? jobctl_report(r, &err) : 0;
}

int jobctl_send_stdin(const jobctl_ctx *ctx, const char *id, int fd)
{
    jw_client *c = NULL;
    int r = new_client(ctx, &c);
    if (r != 0)
        return r;
    jw_error err = JW_ERROR_INIT;
    bool ended = false;
    r = jw_client_write_stdin(c, id, fd, NULL, &ended, &err);
    jw_client_free(c);
    if (r < 0) {
        jw_error_wrap(&err, r, "stdin");
        return jobctl_report(r, &err);
    }
    return 0;
}

int jobctl_connect(const jobctl_ctx *ctx, jw_client **ret)
{
    jw_client *c = NULL;
    int r = new_client(ctx, &c);
    if (r != 0)
        return r;
    pthread_mutex_lock(&sig_mu);
    sig_client = c;
    /* A signal that came before registration still cancels. */
    if (atomic_load(&sig_interrupted))
        jw_client_cancel(c);
    pthread_mutex_unlock(&sig_mu);
    *ret = c;
    return 0;
}

void jobctl_disconnect(jw_client *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&sig_mu);
    sig_client = NULL;
    pthread_mutex_unlock(&sig_mu);
    jw_client_free(c);
}

int jobctl_print_job(const jobctl_ctx *ctx, const Jobworker__V1__Job *job)
{
    if (ctx->output == JOBCTL_OUTPUT_JSON) {
        jw_fmt_job_json(stdout, job);
        putchar('\n');
    } else {
        jw_fmt_job_human(stdout, job, now_realtime_ns());
    }
    return jobctl_flush_stdout();
}

/* One chunk as a JSON line: its offset, its stream and its bytes in base64 (as proto3's JSON
 * mapping writes bytes). */
static int write_json_chunk(jobctl_out *o, int stream, const uint8_t *data, size_t len,
                            jw_error *err)
{
    size_t cap = 4 * ((len + 2) / 3) + 1;
    char *b64 = malloc(cap);
    if (!b64)
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    EVP_EncodeBlock((unsigned char *)b64, data, (int)len);
    const char *name = stream == 2 ? "stderr" : stream == 1 ? "stdout" : "output";
    int n = printf("{\"offset\":%" PRId64 ",\"stream\":\"%s\",\"data\":\"%s\"}\n", o->offset, name,
                   b64);
    free(b64);
    if (n < 0 || fflush(stdout) != 0)
        return jw_error_errno_code(err, JW_INTERNAL, errno, "write stdout");
    return 0;
}

int jobctl_write_output(void *userdata, int stream, const uint8_t *data, size_t len, jw_error *err)
{
    jobctl_out *o = userdata;
    int r;
    if (o && o->json) {
        r = write_json_chunk(o, stream, data, len, err);
        o->offset += (int64_t)len;
        return r;
    }
    /* The job's stderr goes to ours, unless merged (or from a server that does not say). */
    bool to_err = stream == 2 && !(o && o->merge);
    if (o)
        o->offset += (int64_t)len;
    r = write_full(to_err ? STDERR_FILENO : STDOUT_FILENO, data, len);
    if (r < 0)
        return jw_error_errno_code(err, JW_INTERNAL, r, to_err ? "write stderr" : "write stdout");
    return 0;
}

int jobctl_call_id(jobctl_ctx *ctx, const char *cmd, const char *usage, int argc, char **argv,
                   jobctl_id_call call, Jobworker__V1__Job **ret)
{
    const char *id = NULL;
    int r = jobctl_parse_id_command(ctx, cmd, usage, argc, argv, &id);
    if (r != JOBCTL_CONTINUE)
        return r;
    jw_client *c = NULL;
    r = jobctl_connect(ctx, &c);
    if (r != 0)
        return r;
    jw_error err = JW_ERROR_INIT;
    r = call(c, id, ret, &err);
    jobctl_disconnect(c);
    return r < 0 ? jobctl_report(r, &err) : JOBCTL_CONTINUE;
}

int jobctl_parse_id_command(jobctl_ctx *ctx, const char *cmd, const char *usage, int argc,
                            char **argv, const char **ret_id)
{
    static const struct option options[] = {JOBCTL_GLOBAL_OPTIONS, {NULL, 0, NULL, 0}};
    int opt, r;

    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":ho:", options, NULL)) != -1) {
        if (opt == '?' || opt == ':')
            return jobctl_getopt_error(cmd, opt, argv);
        r = jobctl_global_option(ctx, cmd, usage, opt, optarg);
        if (r != JOBCTL_CONTINUE)
            return r;
    }
    if (argc - optind != 1)
        return jobctl_usage_error(cmd, "expected exactly one job id");
    *ret_id = argv[optind];
    return JOBCTL_CONTINUE;
}
