/* jobworker-server: parses flags into a daemon_config and runs the daemon (internal/daemon), which
 * owns start-up, serving and the ordered teardown. Every default comes from util/defaults.h.
 */
#include "config/policy.h"
#include "daemon/daemon.h"
#include "util/defaults.h"
#include "util/log.h"
#include "util/parse.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef daemon_config options;

static bool parsing_file; /* [server] settings: an error names the line, not the usage */

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: jobworker-server [OPTIONS]\n"
        "\n"
        "Serves the jobworker JobService over gRPC with mutual TLS 1.3.\n"
        "\n"
        "  --listen ADDR            address to listen on (default " JW_DEFAULT_LISTEN ")\n"
        "  --cert FILE              server certificate (default " JW_DEFAULT_CERT ")\n"
        "  --key FILE               server private key (default " JW_DEFAULT_KEY ")\n"
        "  --ca FILE                CA that signs client certificates (default " JW_DEFAULT_CA ")\n"
        "  --crl FILE|DIR           refuse client certificates revoked by these PEM CRLs\n"
        "                           (a file, or a directory of files; default: no check)\n"
        "                           SIGHUP re-reads --cert, --key, --ca and --crl\n"
        "  --data-dir DIR           job history (jobs.db) and output (default " JW_DEFAULT_DATA_DIR
        ")\n"
        "  --db FILE                job history database (default DIR/jobs.db; :memory:\n"
        "                           keeps no history across restarts, for tests)\n"
        "  --db-sync MODE           normal (survives a crash of the server) or full (also\n"
        "                           power loss; fsync per write) (default " JW_DEFAULT_DB_SYNC ")\n"
        "  --retain-age DUR         remove finished jobs older than DUR "
        "(default " JW_DEFAULT_RETAIN_AGE_TEXT "; 0 = keep)\n"
        "  --retain-output SIZE     keep at most SIZE of finished jobs' output "
        "(default " JW_DEFAULT_RETAIN_OUTPUT_TEXT ";\n"
        "                           0 = no limit)\n"
        "  --retain-jobs N          keep at most N finished jobs (default %d; 0 = no limit)\n"
        "  --retain-interval DUR    how often retention runs "
        "(default " JW_DEFAULT_RETAIN_INTERVAL_TEXT ")\n"
        "  --max-running N          jobs running at once; more wait in the queue (default:\n"
        "                           CPUs x %d; 0 = no limit)\n"
        "  --capacity-memory SIZE   sum of running jobs' memory.max (default: MemTotal - 10%%,\n"
        "                           or the server cgroup's memory.max when lower; 0 = none)\n"
        "  --capacity-cpu PCT       sum of running jobs' cpu_percent (default: CPUs x %d;\n"
        "                           0 = none)\n"
        "  --max-queued N           jobs waiting at most (default %d; 0 = no limit)\n"
        "  --no-cgroups             run jobs without resource limits on hosts without\n"
        "                           cgroup v2 controllers (limits_enforced=false)\n"
        "  --cgroup-root DIR        cgroup2 mount (default /sys/fs/cgroup)\n"
        "  --cgroup-parent PATH     cgroup that holds the server and its jobs (default: the\n"
        "                           server's own cgroup, or /jobworker from the root)\n"
        "  --io-device DEV          whole disk for io.max, repeatable (default: every\n"
        "                           physical whole disk)\n"
        "  --default-cpu PCT        default cpu limit, 100 = one core (default %d)\n"
        "  --default-memory SIZE    default memory.max (default " JW_DEFAULT_MEMORY_TEXT ")\n"
        "  --default-memory-high SIZE  default memory.high (default none)\n"
        "  --default-iobps SIZE     default io.max rbps/wbps (default unlimited)\n"
        "  --default-pids N         default pids.max (default unlimited)\n"
        "  --stop-grace DUR         SIGTERM to kill grace period (default %dms)\n"
        "  --job-init PATH          job-init helper (default: next to this binary)\n"
        "  --max-jobs N             unfinished jobs at once (default %d)\n"
        "  --max-streams N          concurrent output streams (default %d)\n"
        "  --max-streams-per-job N  concurrent streams of one job (default %d)\n"
        "  --max-streams-per-client N  concurrent streams of one client certificate CN\n"
        "                           (default %d)\n"
        "  --max-output SIZE        output kept per job (default " JW_DEFAULT_MAX_OUTPUT_TEXT ")\n"
        "  --audit-log FILE         append audit lines here (default: the log on stderr)\n"
        "  --job-uid-range A-B      run every job as a uid (and gid) of its own from A-B,\n"
        "                           released when the job ends (default " JW_DEFAULT_JOB_UID_RANGE
        ")\n"
        "  --job-user USER          run every job as USER instead (without --job-uid-range);\n"
        "                           jobs can then reach each other's files\n"
        "  --allow-root-jobs        allow --job-user to be root (uid 0)\n"
        "  --default-network MODE   host or none (own namespace with loopback only) for\n"
        "                           requests that do not choose (default " JW_DEFAULT_NETWORK ")\n"
        "  --log-level LEVEL        error, warning, info or debug (default info)\n"
        "  --workers N              threads answering unary calls (default %d)\n"
        "  --config FILE            policy file: [server] settings (any of these flags without\n"
        "                           --; a flag given here wins), quotas, ceilings, allow-list\n"
        "                           (default " JW_DEFAULT_CONFIG ", if it exists)\n"
        "  --check-config           check the policy file and the flags, then exit (0 = good)\n"
        "  -h, --help               this text\n"
        "  -V, --version            the version\n",
        JW_DEFAULT_RETAIN_JOBS, JW_DEFAULT_RUNNING_PER_CPU, JW_DEFAULT_CPU_PCT_PER_CPU,
        JW_DEFAULT_MAX_QUEUED, JW_DEFAULT_CPU_PERCENT, JW_DEFAULT_STOP_GRACE_MS,
        JW_DEFAULT_MAX_JOBS, JW_DEFAULT_MAX_STREAMS, JW_DEFAULT_MAX_STREAMS_PER_JOB,
        JW_DEFAULT_MAX_STREAMS_PER_CLIENT, JW_DEFAULT_WORKERS);
}

static int parse_size_flag(const char *name, const char *v, int64_t *ret)
{
    int r = parse_size(v, ret);
    if (r < 0)
        fprintf(stderr, "jobworker-server: %s '%s' is not a size (e.g. 512M)\n", name, v);
    return r;
}

static int parse_int_flag(const char *name, const char *v, int64_t min, int64_t max, int64_t *ret)
{
    int r = parse_int64(v, min, max, ret);
    if (r < 0)
        fprintf(stderr, "jobworker-server: %s '%s' is not a number in %" PRId64 "..%" PRId64 "\n",
                name, v, min, max);
    return r;
}

static int parse_options(int argc, char **argv, options *o)
{
    bool user_given = false, range_given = false;
    enum {
        OPT_LISTEN = 256,
        OPT_CERT,
        OPT_KEY,
        OPT_CA,
        OPT_CRL,
        OPT_DATA_DIR,
        OPT_NO_CGROUPS,
        OPT_CGROUP_ROOT,
        OPT_CGROUP_PARENT,
        OPT_IO_DEVICE,
        OPT_DEF_CPU,
        OPT_DEF_MEM,
        OPT_DEF_MEM_HIGH,
        OPT_DEF_IOBPS,
        OPT_DEF_PIDS,
        OPT_STOP_GRACE,
        OPT_JOB_INIT,
        OPT_MAX_JOBS,
        OPT_MAX_STREAMS,
        OPT_MAX_STREAMS_JOB,
        OPT_MAX_STREAMS_CLIENT,
        OPT_MAX_OUTPUT,
        OPT_AUDIT,
        OPT_LOG_LEVEL,
        OPT_WORKERS,
        OPT_JOB_USER,
        OPT_JOB_UID_RANGE,
        OPT_ALLOW_ROOT,
        OPT_DEF_NET,
        OPT_DB,
        OPT_DB_SYNC,
        OPT_RETAIN_AGE,
        OPT_RETAIN_OUTPUT,
        OPT_RETAIN_JOBS,
        OPT_RETAIN_INTERVAL,
        OPT_MAX_RUNNING,
        OPT_CAP_MEM,
        OPT_CAP_CPU,
        OPT_MAX_QUEUED,
        OPT_CONFIG,
        OPT_CHECK_CONFIG,
    };
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"cert", required_argument, NULL, OPT_CERT},
        {"key", required_argument, NULL, OPT_KEY},
        {"ca", required_argument, NULL, OPT_CA},
        {"crl", required_argument, NULL, OPT_CRL},
        {"data-dir", required_argument, NULL, OPT_DATA_DIR},
        {"db", required_argument, NULL, OPT_DB},
        {"db-sync", required_argument, NULL, OPT_DB_SYNC},
        {"retain-age", required_argument, NULL, OPT_RETAIN_AGE},
        {"retain-output", required_argument, NULL, OPT_RETAIN_OUTPUT},
        {"retain-jobs", required_argument, NULL, OPT_RETAIN_JOBS},
        {"retain-interval", required_argument, NULL, OPT_RETAIN_INTERVAL},
        {"max-running", required_argument, NULL, OPT_MAX_RUNNING},
        {"capacity-memory", required_argument, NULL, OPT_CAP_MEM},
        {"capacity-cpu", required_argument, NULL, OPT_CAP_CPU},
        {"max-queued", required_argument, NULL, OPT_MAX_QUEUED},
        {"config", required_argument, NULL, OPT_CONFIG},
        {"check-config", no_argument, NULL, OPT_CHECK_CONFIG},
        {"no-cgroups", no_argument, NULL, OPT_NO_CGROUPS},
        {"cgroup-root", required_argument, NULL, OPT_CGROUP_ROOT},
        {"cgroup-parent", required_argument, NULL, OPT_CGROUP_PARENT},
        {"io-device", required_argument, NULL, OPT_IO_DEVICE},
        {"default-cpu", required_argument, NULL, OPT_DEF_CPU},
        {"default-memory", required_argument, NULL, OPT_DEF_MEM},
        {"default-memory-high", required_argument, NULL, OPT_DEF_MEM_HIGH},
        {"default-iobps", required_argument, NULL, OPT_DEF_IOBPS},
        {"default-pids", required_argument, NULL, OPT_DEF_PIDS},
        {"stop-grace", required_argument, NULL, OPT_STOP_GRACE},
        {"job-init", required_argument, NULL, OPT_JOB_INIT},
        {"max-jobs", required_argument, NULL, OPT_MAX_JOBS},
        {"max-streams", required_argument, NULL, OPT_MAX_STREAMS},
        {"max-streams-per-job", required_argument, NULL, OPT_MAX_STREAMS_JOB},
        {"max-streams-per-client", required_argument, NULL, OPT_MAX_STREAMS_CLIENT},
        {"max-output", required_argument, NULL, OPT_MAX_OUTPUT},
        {"audit-log", required_argument, NULL, OPT_AUDIT},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"workers", required_argument, NULL, OPT_WORKERS},
        {"job-user", required_argument, NULL, OPT_JOB_USER},
        {"job-uid-range", required_argument, NULL, OPT_JOB_UID_RANGE},
        {"allow-root-jobs", no_argument, NULL, OPT_ALLOW_ROOT},
        {"default-network", required_argument, NULL, OPT_DEF_NET},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {0},
    };
    int64_t v;
    int c, r = 0;
    while (r == 0 && (c = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_LISTEN: o->listen = optarg; break;
        case OPT_CERT: o->cert = optarg; break;
        case OPT_KEY: o->key = optarg; break;
        case OPT_CA: o->ca = optarg; break;
        case OPT_CRL: o->crl = optarg; break;
        case OPT_DATA_DIR: o->data_dir = optarg; break;
        case OPT_NO_CGROUPS: o->no_cgroups = true; break;
        case OPT_CGROUP_ROOT: o->cgroup_root = optarg; break;
        case OPT_CGROUP_PARENT: o->cgroup_parent = optarg; break;
        case OPT_IO_DEVICE:
            if (o->n_io_devices == CGROUP_MAX_IO_DEVICES) {
                fprintf(stderr, "jobworker-server: at most %d --io-device\n",
                        CGROUP_MAX_IO_DEVICES);
                return -EINVAL;
            }
            o->io_devices[o->n_io_devices++] = optarg;
            break;
        case OPT_DEF_CPU:
            r = parse_int_flag("--default-cpu", optarg, 1, INT32_MAX, &v);
            o->defaults.cpu_percent = (int32_t)v;
            break;
        case OPT_DEF_MEM:
            r = parse_size_flag("--default-memory", optarg, &o->defaults.memory_bytes);
            break;
        case OPT_DEF_MEM_HIGH:
            r = parse_size_flag("--default-memory-high", optarg, &o->defaults.memory_high_bytes);
            break;
        case OPT_DEF_IOBPS:
            r = parse_size_flag("--default-iobps", optarg, &o->defaults.io_bps);
            break;
        case OPT_DEF_PIDS:
            r = parse_int_flag("--default-pids", optarg, 0, JOB_PIDS_MAX_MAX, &v);
            o->defaults.pids_max = (int32_t)v;
            break;
        case OPT_STOP_GRACE:
            r = parse_duration_ms(optarg, &o->stop_grace_ms);
            if (r < 0 || o->stop_grace_ms < 1 || o->stop_grace_ms > 600000) {
                fprintf(stderr,
                        "jobworker-server: --stop-grace '%s' is not a duration in 1ms..10m\n",
                        optarg);
                r = -EINVAL;
            }
            break;
        case OPT_JOB_INIT: o->job_init = optarg; break;
        case OPT_DB: o->db_path = optarg; break;
        case OPT_DB_SYNC:
            if (strcmp(optarg, "normal") != 0 && strcmp(optarg, "full") != 0) {
                fprintf(stderr, "jobworker-server: --db-sync '%s' is not normal or full\n", optarg);
                r = -EINVAL;
            }
            o->db_sync = optarg;
            break;
        case OPT_RETAIN_AGE:
            r = parse_duration_ms(optarg, &o->retain_age_ms);
            if (r < 0)
                fprintf(stderr, "jobworker-server: --retain-age '%s' is not a duration (e.g. 7d)\n",
                        optarg);
            break;
        case OPT_RETAIN_OUTPUT:
            r = parse_size_flag("--retain-output", optarg, &o->retain_output);
            break;
        case OPT_RETAIN_JOBS:
            r = parse_int_flag("--retain-jobs", optarg, 0, INT64_MAX, &o->retain_jobs);
            break;
        case OPT_RETAIN_INTERVAL:
            r = parse_duration_ms(optarg, &o->retain_interval_ms);
            if (r < 0 || o->retain_interval_ms < 100 || o->retain_interval_ms > 86400000) {
                fprintf(stderr,
                        "jobworker-server: --retain-interval '%s' is not a duration in 100ms..1d\n",
                        optarg);
                r = -EINVAL;
            }
            break;
        case OPT_MAX_RUNNING:
            r = parse_int_flag("--max-running", optarg, 0, 1000000, &o->max_running);
            o->admission_from_flags |= DAEMON_FLAG_MAX_RUNNING;
            break;
        case OPT_CAP_MEM:
            r = parse_size_flag("--capacity-memory", optarg, &o->capacity_memory);
            o->admission_from_flags |= DAEMON_FLAG_CAPACITY_MEMORY;
            break;
        case OPT_CAP_CPU:
            r = parse_int_flag("--capacity-cpu", optarg, 0, 100000000, &o->capacity_cpu);
            o->admission_from_flags |= DAEMON_FLAG_CAPACITY_CPU;
            break;
        case OPT_MAX_QUEUED:
            r = parse_int_flag("--max-queued", optarg, 0, 10000000, &o->max_queued);
            o->admission_from_flags |= DAEMON_FLAG_MAX_QUEUED;
            break;
        case OPT_CONFIG:
        case OPT_CHECK_CONFIG: break; /* read before (main) */
        case OPT_MAX_JOBS:
            r = parse_int_flag("--max-jobs", optarg, 1, INT32_MAX, &o->max_jobs);
            break;
        case OPT_MAX_STREAMS:
            r = parse_int_flag("--max-streams", optarg, 1, 100000, &o->max_streams);
            break;
        case OPT_MAX_STREAMS_JOB:
            r = parse_int_flag("--max-streams-per-job", optarg, 1, 100000, &o->max_streams_per_job);
            break;
        case OPT_MAX_STREAMS_CLIENT:
            r = parse_int_flag("--max-streams-per-client", optarg, 1, 100000,
                               &o->max_streams_per_client);
            break;
        case OPT_MAX_OUTPUT: r = parse_size_flag("--max-output", optarg, &o->max_output); break;
        case OPT_AUDIT: o->audit_log = optarg; break;
        case OPT_JOB_USER:
            o->job_user = optarg;
            user_given = true;
            break;
        case OPT_JOB_UID_RANGE:
            o->job_uid_range = optarg;
            range_given = true;
            break;
        case OPT_ALLOW_ROOT: o->allow_root_jobs = true; break;
        case OPT_DEF_NET:
            if (strcmp(optarg, "host") != 0 && strcmp(optarg, "none") != 0) {
                fprintf(stderr, "jobworker-server: --default-network '%s' is not host or none\n",
                        optarg);
                r = -EINVAL;
            }
            o->default_network = optarg;
            break;
        case OPT_WORKERS: r = parse_int_flag("--workers", optarg, 1, 64, &o->workers); break;
        case OPT_LOG_LEVEL:
            if (strcmp(optarg, "error") == 0)
                log_set_level(LOG_LEVEL_ERROR);
            else if (strcmp(optarg, "warning") == 0)
                log_set_level(LOG_LEVEL_WARNING);
            else if (strcmp(optarg, "info") == 0)
                log_set_level(LOG_LEVEL_INFO);
            else if (strcmp(optarg, "debug") == 0)
                log_set_level(LOG_LEVEL_DEBUG);
            else {
                fprintf(stderr,
                        "jobworker-server: --log-level '%s' is not one of error, "
                        "warning, info, debug\n",
                        optarg);
                r = -EINVAL;
            }
            break;
        case 'h': usage(stdout); exit(0);
        case 'V':
            if (parsing_file) {
                r = -EINVAL;
                break;
            }
            printf("jobworker-server %s\n", JW_VERSION);
            exit(0);
        default:
            if (!parsing_file)
                usage(stderr);
            return -EINVAL;
        }
    }
    /* An explicit --job-user is the opt-out of a uid per job (unless a range is given too). */
    if (user_given && !range_given)
        o->job_uid_range = NULL;
    if (r == 0 && optind < argc) {
        fprintf(stderr, "jobworker-server: unexpected argument '%s'\n", argv[optind]);
        r = -EINVAL;
    }
    return r;
}

/* Applies the file's [server] settings as if they were flags, one at a time so that an error
 * names its line. "key = true" is a flag without a value, "key = false" leaves it unset. */
static int apply_settings(const char *path, const policy *p, options *o)
{
    for (size_t i = 0; i < policy_n_settings(p); i++) {
        const policy_setting *st = policy_setting_at(p, i);
        if (strcmp(st->key, "config") == 0 || strcmp(st->key, "check-config") == 0 ||
            strcmp(st->key, "help") == 0) {
            fprintf(stderr, "jobworker-server: %s:%d: '%s' cannot be set in the file\n", path,
                    st->line, st->key);
            return -EINVAL;
        }
        if (strcmp(st->value, "false") == 0)
            continue;
        char arg[POLICY_LINE_MAX + 8];
        if (strcmp(st->value, "true") == 0)
            snprintf(arg, sizeof(arg), "--%s", st->key);
        else
            snprintf(arg, sizeof(arg), "--%s=%s", st->key, st->value);
        char *av[] = {(char *)"jobworker-server", arg, NULL};
        optind = 0;
        unsigned from_flags = o->admission_from_flags;
        parsing_file = true;
        int r = parse_options(2, av, o);
        parsing_file = false;
        o->admission_from_flags = from_flags; /* the file's, not flags */
        if (r < 0) {
            fprintf(stderr, "jobworker-server: (in %s:%d, [server] %s)\n", path, st->line, st->key);
            return r;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    options o;
    daemon_config_init(&o);
    const char *path = NULL;
    bool check = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            path = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            path = argv[i] + 9;
        else if (strcmp(argv[i], "--check-config") == 0)
            check = true;
    }
    /* The default file is optional; a named one must be there. */
    bool named = path != NULL;
    if (!path)
        path = JW_DEFAULT_CONFIG;
    policy *p = NULL;
    jw_error err = JW_ERROR_INIT;
    if (named || access(path, F_OK) == 0) {
        if (policy_load(path, &p, &err) < 0) {
            fprintf(stderr, "jobworker-server: %s\n", err.msg);
            return 2;
        }
        o.policy_path = path;
    } else if (!(p = policy_new_empty())) {
        fprintf(stderr, "jobworker-server: out of memory\n");
        return 2;
    }
    int r = apply_settings(path, p, &o);
    optind = 0;
    if (r == 0)
        r = parse_options(argc, argv, &o);
    if (r < 0) {
        policy_free(p);
        return 2;
    }
    if (check) {
        printf("%s: good (%zu [server] setting(s), %zu owner section(s), %zu allowed path(s))\n",
               o.policy_path ? path : "no policy file", policy_n_settings(p), policy_n_owners(p),
               policy_n_allow(p));
        policy_free(p);
        return 0;
    }
    o.policy = p;
    return daemon_run(&o);
}
