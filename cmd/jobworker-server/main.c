/* jobworker-server: parses flags, checks the host, wires store, cgroups, supervisor and the gRPC
 * server together, and turns SIGTERM/SIGINT into a clean shutdown. All logic lives in internal/.
 */
#include "auth/auth.h"
#include "cgroup/cgroup.h"
#include "job/job.h"
#include "rpc/server.h"
#include "spawn/supervisor.h"
#include "store/store.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/parse.h"
#include "util/rmtree.h"

#include <dirent.h>
#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct options {
    const char *listen;
    const char *cert, *key, *ca, *crl;
    const char *data_dir;
    bool no_cgroups;
    const char *cgroup_root, *cgroup_parent;
    const char *io_devices[CGROUP_MAX_IO_DEVICES];
    size_t n_io_devices;
    job_limits defaults;
    int64_t stop_grace_ms;
    const char *job_init;
    int64_t max_jobs, max_streams, max_streams_per_job, max_output, workers;
    const char *audit_log;
    const char *job_user;
    bool allow_root_jobs;
    const char *default_network;
} options;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: jobworker-server [OPTIONS]\n"
            "\n"
            "Serves the jobworker JobService over gRPC with mutual TLS 1.3.\n"
            "\n"
            "  --listen ADDR            address to listen on (default 0.0.0.0:50051)\n"
            "  --cert FILE              server certificate (default certs/server.crt)\n"
            "  --key FILE               server private key (default certs/server.key)\n"
            "  --ca FILE                CA that signs client certificates (default certs/ca.crt)\n"
            "  --crl FILE|DIR           refuse client certificates revoked by these PEM CRLs\n"
            "                           (a file, or a directory of files; default: no check)\n"
            "                           SIGHUP re-reads --cert, --key, --ca and --crl\n"
            "  --data-dir DIR           job output files (default /var/lib/jobworker)\n"
            "  --no-cgroups             run jobs without resource limits on hosts without\n"
            "                           cgroup v2 controllers (limits_enforced=false)\n"
            "  --cgroup-root DIR        cgroup2 mount (default /sys/fs/cgroup)\n"
            "  --cgroup-parent PATH     cgroup that holds the server and its jobs (default: the\n"
            "                           server's own cgroup, or /jobworker from the root)\n"
            "  --io-device DEV          whole disk for io.max, repeatable (default: every\n"
            "                           physical whole disk)\n"
            "  --default-cpu PCT        default cpu limit, 100 = one core (default 100)\n"
            "  --default-memory SIZE    default memory.max (default 512M)\n"
            "  --default-memory-high SIZE  default memory.high (default none)\n"
            "  --default-iobps SIZE     default io.max rbps/wbps (default unlimited)\n"
            "  --default-pids N         default pids.max (default unlimited)\n"
            "  --stop-grace DUR         SIGTERM to kill grace period (default 100ms)\n"
            "  --job-init PATH          job-init helper (default: next to this binary)\n"
            "  --max-jobs N             jobs kept in memory (default 100000)\n"
            "  --max-streams N          concurrent output streams (default 1024)\n"
            "  --max-streams-per-job N  concurrent streams of one job (default 256)\n"
            "  --max-output SIZE        output kept per job (default 1G)\n"
            "  --audit-log FILE         append audit lines here (default: the log on stderr)\n"
            "  --job-user USER          user jobs run as (default nobody)\n"
            "  --allow-root-jobs        allow --job-user to be root (uid 0)\n"
            "  --default-network MODE   host or none (own namespace with loopback only) for\n"
            "                           requests that do not choose (default host)\n"
            "  --log-level LEVEL        error, warning, info or debug (default info)\n"
            "  -h, --help               this text\n");
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
        OPT_MAX_OUTPUT,
        OPT_AUDIT,
        OPT_LOG_LEVEL,
        OPT_WORKERS,
        OPT_JOB_USER,
        OPT_ALLOW_ROOT,
        OPT_DEF_NET,
    };
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"cert", required_argument, NULL, OPT_CERT},
        {"key", required_argument, NULL, OPT_KEY},
        {"ca", required_argument, NULL, OPT_CA},
        {"crl", required_argument, NULL, OPT_CRL},
        {"data-dir", required_argument, NULL, OPT_DATA_DIR},
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
        {"max-output", required_argument, NULL, OPT_MAX_OUTPUT},
        {"audit-log", required_argument, NULL, OPT_AUDIT},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"workers", required_argument, NULL, OPT_WORKERS},
        {"job-user", required_argument, NULL, OPT_JOB_USER},
        {"allow-root-jobs", no_argument, NULL, OPT_ALLOW_ROOT},
        {"default-network", required_argument, NULL, OPT_DEF_NET},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    int64_t v;
    int c, r = 0;
    while (r == 0 && (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
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
        case OPT_MAX_JOBS:
            r = parse_int_flag("--max-jobs", optarg, 1, INT32_MAX, &o->max_jobs);
            break;
        case OPT_MAX_STREAMS:
            r = parse_int_flag("--max-streams", optarg, 1, 100000, &o->max_streams);
            break;
        case OPT_MAX_STREAMS_JOB:
            r = parse_int_flag("--max-streams-per-job", optarg, 1, 100000, &o->max_streams_per_job);
            break;
        case OPT_MAX_OUTPUT: r = parse_size_flag("--max-output", optarg, &o->max_output); break;
        case OPT_AUDIT: o->audit_log = optarg; break;
        case OPT_JOB_USER: o->job_user = optarg; break;
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
        default: usage(stderr); return -EINVAL;
        }
    }
    if (r == 0 && optind < argc) {
        fprintf(stderr, "jobworker-server: unexpected argument '%s'\n", argv[optind]);
        r = -EINVAL;
    }
    return r;
}

/* Whether uid:gid may traverse every directory from / down to path; on failure names the
 * directory that stops it. */
static bool user_can_reach(const char *path, uid_t uid, gid_t gid, char *ret_blocker, size_t size)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        struct stat st;
        const char *dir = buf[0] ? buf : "/";
        if (stat(dir, &st) == 0) {
            mode_t need = st.st_uid == uid ? S_IXUSR : st.st_gid == gid ? S_IXGRP : S_IXOTH;
            if (uid != 0 && !(st.st_mode & need)) {
                snprintf(ret_blocker, size, "%s (mode %04o)", dir, st.st_mode & 07777);
                return false;
            }
        }
        *p = saved;
        if (saved == '\0')
            return true;
    }
}

/* Working directories belong to jobs of this process only: leftovers of an earlier run go. */
static void remove_stale_workdirs(const char *work_root)
{
    int dfd = open(work_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return;
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return;
    }
    for (struct dirent *de; (de = readdir(d));)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            rm_tree_at(dirfd(d), de->d_name);
    closedir(d);
}

static void log_tls_summary(const char *what, const auth_tls_paths *p, const auth_tls_summary *s)
{
    char next[64] = "";
    if (s->next_update > 0) {
        time_t t = (time_t)s->next_update;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(next, sizeof(next), ", next CRL update due %Y-%m-%dT%H:%M:%SZ", &tm);
    }
    if (p->crl)
        log_info("%s: generation %u, certificate '%s', %d client CA certificate(s) from '%s', "
                 "%d CRL(s) from '%s' revoking %d certificate(s)%s",
                 what, s->generation, p->cert, s->n_ca, p->ca, s->n_crl, p->crl, s->n_revoked,
                 next);
    else
        log_info("%s: generation %u, certificate '%s', %d client CA certificate(s) from '%s', "
                 "no CRL (--crl not given)",
                 what, s->generation, p->cert, s->n_ca, p->ca);
}

static int default_job_init(char *buf, size_t size)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n < 0)
        return -errno;
    self[n] = '\0';
    snprintf(buf, size, "%s/job-init", dirname(self));
    return 0;
}

int main(int argc, char **argv)
{
    options o = {
        .listen = "0.0.0.0:50051",
        .cert = "certs/server.crt",
        .key = "certs/server.key",
        .ca = "certs/ca.crt",
        .data_dir = "/var/lib/jobworker",
        .defaults = {.cpu_percent = 100, .memory_bytes = 512LL * 1024 * 1024},
        .stop_grace_ms = 100,
        .max_jobs = 100000,
        .max_streams = 1024,
        .max_streams_per_job = 256,
        .max_output = 1LL << 30,
        .workers = 4,
        .job_user = "nobody",
        .default_network = "host",
    };
    if (parse_options(argc, argv, &o) < 0)
        return 2;

    /* Signals are taken synchronously by the main thread; every thread started from here on
     * (gRPC's included) inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    jw_error err = JW_ERROR_INIT;
    int r;
    char job_init[PATH_MAX];
    if (o.job_init)
        snprintf(job_init, sizeof(job_init), "%s", o.job_init);
    else if (default_job_init(job_init, sizeof(job_init)) < 0)
        snprintf(job_init, sizeof(job_init), "job-init");
    if (access(job_init, X_OK) < 0) {
        log_error("job-init helper '%s' is not executable: %m (pass --job-init)", job_init);
        return 1;
    }

    /* Jobs run as an unprivileged user; root needs an explicit opt-in. */
    struct passwd *pw = getpwnam(o.job_user);
    if (!pw) {
        log_error("--job-user '%s' is not a user on this host", o.job_user);
        return 2;
    }
    if (pw->pw_uid == 0 && !o.allow_root_jobs) {
        log_error("--job-user '%s' is root: jobs would run with every privilege; pass "
                  "--allow-root-jobs to accept that",
                  o.job_user);
        return 2;
    }
    long job_uid = (long)pw->pw_uid, job_gid = (long)pw->pw_gid;
    char job_user_display[256];
    snprintf(job_user_display, sizeof(job_user_display), "%s (%ld:%ld)", o.job_user, job_uid,
             job_gid);
    if (job_uid == 0)
        log_warning("jobs run as root (--allow-root-jobs): they keep every capability");

    job_host host = {0};
    if (job_host_probe(&host) < 0) {
        log_error("cannot read the host's CPU count and memory: %m");
        return 1;
    }
    cgroup_manager *cgm = NULL;
    if (o.no_cgroups) {
        log_warning("--no-cgroups: jobs run WITHOUT resource limits (limits_enforced=false); "
                    "requests that name limits are refused");
    } else {
        cgroup_config cc = {
            .root = o.cgroup_root,
            .parent = o.cgroup_parent,
            .io_devices = o.n_io_devices ? o.io_devices : NULL,
            .n_io_devices = o.n_io_devices,
            .move_self = true,
        };
        r = cgroup_manager_new(&cc, &cgm, &err);
        if (r < 0) {
            log_error("%s", err.msg);
            return 1;
        }
        host.cgroups = true;
        host.io_controller = (cgroup_manager_controllers(cgm) & CGROUP_CTRL_IO) &&
                             cgroup_manager_n_io_devices(cgm) > 0;
        r = cgroup_manager_remove_stale(cgm, &err);
        if (r > 0)
            log_info("removed %d job cgroup(s) left behind by an earlier run", r);
        else if (r < 0)
            log_warning("removing leftover job cgroups: %s, ignoring", err.msg);
        r = job_limits_validate(&o.defaults, &host, &err);
        if (r < 0) {
            log_error("default %s", err.msg);
            cgroup_manager_free(cgm);
            return 2;
        }
        if (o.defaults.io_bps && !host.io_controller) {
            log_error("--default-iobps needs the io controller and a whole-disk device, and "
                      "this host has none usable (see --io-device)");
            cgroup_manager_free(cgm);
            return 2;
        }
        log_info("cgroup v2: jobs under '%s' (io limits %s)", cgroup_manager_parent_path(cgm),
                 host.io_controller ? "available" : "not available");
    }

    /* The TLS files are checked here for an early, clear error; rpc_server_start() reads them
     * again into the copy gRPC watches, and SIGHUP re-reads them. */
    auth_tls_paths tls = {.cert = o.cert, .key = o.key, .ca = o.ca, .crl = o.crl};
    if (auth_tls_check_files(&tls, NULL, &err) < 0) {
        log_error("%s (generate development certificates with scripts/gen-certs.sh)", err.msg);
        cgroup_manager_free(cgm);
        return 1;
    }
    char tls_state_dir[PATH_MAX];
    snprintf(tls_state_dir, sizeof(tls_state_dir), "%s/tls", o.data_dir);

    store *st = NULL;
    store_config sc = {
        .data_dir = o.data_dir, .max_jobs = (size_t)o.max_jobs, .max_output_bytes = o.max_output};
    if (store_new(&sc, &st, &err) < 0) {
        log_error("%s", err.msg);
        cgroup_manager_free(cgm);
        return 1;
    }
    supervisor *sv = NULL;
    /* <data-dir> and <data-dir>/work are traversable (0711) so that a job user reaches its own
     * working directory, but can list nothing; output/ stays 0700. */
    char work_root[PATH_MAX];
    snprintf(work_root, sizeof(work_root), "%s/work", o.data_dir);
    if (chmod(o.data_dir, 0711) < 0 || (mkdir(work_root, 0711) < 0 && errno != EEXIST) ||
        chmod(work_root, 0711) < 0) {
        log_error("prepare '%s': %m", work_root);
        store_free(st);
        cgroup_manager_free(cgm);
        return 1;
    }
    char blocker[PATH_MAX + 32];
    if (!user_can_reach(work_root, (uid_t)job_uid, (gid_t)job_gid, blocker, sizeof(blocker))) {
        log_error("jobs run as '%s' but cannot reach their working directories under '%s': "
                  "'%s' is not traversable by that user; choose a --data-dir whose parent "
                  "directories are (e.g. chmod o+x)",
                  o.job_user, work_root, blocker);
        store_free(st);
        cgroup_manager_free(cgm);
        return 1;
    }
    remove_stale_workdirs(work_root);
    supervisor_config svc = {.job_init_path = job_init,
                             .cgroups = cgm,
                             .stop_grace_ms = o.stop_grace_ms,
                             .job_uid = job_uid,
                             .job_gid = job_gid,
                             .work_root = work_root};
    if (supervisor_new(&svc, st, &sv, &err) < 0) {
        log_error("%s", err.msg);
        store_free(st);
        cgroup_manager_free(cgm);
        return 1;
    }
    if (auth_tls13_only_init(&err) < 0) {
        log_error("%s", err.msg);
        supervisor_free(sv);
        store_free(st);
        cgroup_manager_free(cgm);
        return 1;
    }

    FILE *audit = NULL;
    if (o.audit_log) {
        audit = fopen(o.audit_log, "ae");
        if (!audit) {
            log_error("open audit log '%s': %m", o.audit_log);
            supervisor_free(sv);
            store_free(st);
            cgroup_manager_free(cgm);
            return 1;
        }
    }
    rpc_server *srv = NULL;
    rpc_server_config rc = {
        .listen_addr = o.listen,
        .tls = tls,
        .tls_state_dir = tls_state_dir,
        .st = st,
        .sv = sv,
        .host = host,
        .defaults = o.defaults,
        .workers = (int)o.workers,
        .max_streams = (int)o.max_streams,
        .max_streams_per_job = (int)o.max_streams_per_job,
        .audit = audit,
        .default_network =
            strcmp(o.default_network, "none") == 0 ? JOB_NETWORK_NONE : JOB_NETWORK_HOST,
        .job_user_display = job_user_display,
    };
    if (rpc_server_start(&rc, &srv, &err) < 0) {
        log_error("%s", err.msg);
        supervisor_free(sv);
        store_free(st);
        cgroup_manager_free(cgm);
        if (audit)
            fclose(audit);
        return 1;
    }
    log_info("jobworker-server listening on %s (port %d, TLS 1.3, mutual authentication)", o.listen,
             rpc_server_port(srv));
    auth_tls_summary ts;
    rpc_server_tls_summary(srv, &ts);
    log_tls_summary("TLS configuration", &tls, &ts);

    for (;;) {
        int sig = sigwaitinfo(&sigs, NULL);
        if (sig == SIGHUP) {
            /* Jobs, calls and streams are untouched; only new handshakes see the change. */
            if (rpc_server_reload_tls(srv, &ts, &err) < 0)
                log_error("SIGHUP: TLS reload failed, the previous configuration stays in force: "
                          "%s",
                          err.msg);
            else
                log_tls_summary("SIGHUP: reloaded the TLS configuration, new connections use it "
                                "within 1 s",
                                &tls, &ts);
            continue;
        }
        if (sig > 0) {
            log_info("received %s, shutting down", strsignal(sig));
            break;
        }
    }
    rpc_server_begin_shutdown(srv);
    size_t n_active = supervisor_n_active(sv);
    log_debug("stopping %zu job(s)", n_active);
    supervisor_shutdown(sv); /* stops every job: SERVER_SHUTDOWN */
    log_debug("jobs stopped; closing the gRPC server");
    rpc_server_free(srv); /* joins the workers: no handler uses the supervisor after this */
    log_debug("gRPC server closed");
    supervisor_free(sv);
    store_free(st);
    cgroup_manager_free(cgm);
    if (audit)
        fclose(audit);
    log_info("stopped %zu running job(s); bye", n_active);
    return 0;
}
