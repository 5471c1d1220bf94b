#include "daemon/daemon.h"

#include "auth/auth.h"
#include "config/policy.h"
#include "daemon/trust.h"
#include "rpc/server.h"
#include "service/service.h"
#include "spawn/supervisor.h"
#include "spawn/uidpool.h"
#include "spawn/workdir.h"
#include "store/store.h"
#include "util/defaults.h"
#include "util/log.h"
#include "util/parse.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void daemon_config_init(daemon_config *cfg)
{
    *cfg = (daemon_config){
        .listen = JW_DEFAULT_LISTEN,
        .cert = JW_DEFAULT_CERT,
        .key = JW_DEFAULT_KEY,
        .ca = JW_DEFAULT_CA,
        .data_dir = JW_DEFAULT_DATA_DIR,
        .defaults = {.cpu_percent = JW_DEFAULT_CPU_PERCENT,
                     .memory_bytes = JW_DEFAULT_MEMORY_BYTES},
        .stop_grace_ms = JW_DEFAULT_STOP_GRACE_MS,
        .max_jobs = JW_DEFAULT_MAX_JOBS,
        .max_streams = JW_DEFAULT_MAX_STREAMS,
        .max_streams_per_job = JW_DEFAULT_MAX_STREAMS_PER_JOB,
        .max_streams_per_client = JW_DEFAULT_MAX_STREAMS_PER_CLIENT,
        .max_output = JW_DEFAULT_MAX_OUTPUT_BYTES,
        .workers = JW_DEFAULT_WORKERS,
        .job_user = JW_DEFAULT_JOB_USER,
        .job_uid_range = JW_DEFAULT_JOB_UID_RANGE,
        .default_network = JW_DEFAULT_NETWORK,
        .db_sync = JW_DEFAULT_DB_SYNC,
        .retain_age_ms = JW_DEFAULT_RETAIN_AGE_MS,
        .retain_output = JW_DEFAULT_RETAIN_OUTPUT_BYTES,
        .retain_jobs = JW_DEFAULT_RETAIN_JOBS,
        .retain_interval_ms = JW_DEFAULT_RETAIN_INTERVAL_MS,
        .max_running = -1,
        .capacity_memory = -1,
        .capacity_cpu = -1,
        .max_queued = JW_DEFAULT_MAX_QUEUED,
    };
}

/* Everything the daemon started; teardown() releases whatever is set, in reverse order. */
typedef struct server_state {
    const daemon_config *cfg;
    char job_init[PATH_MAX];
    long job_uid, job_gid;
    uint32_t job_uid_first, job_uid_count; /* --job-uid-range; count 0 = all jobs as job_uid */
    char job_user_display[256];
    job_host host;
    cgroup_manager *cgm;
    auth_tls_paths tls;
    char tls_state_dir[PATH_MAX];
    char work_root[PATH_MAX];
    store *st;
    supervisor *sv;
    service *svc;
    FILE *audit;
    rpc_server *srv;
    int lock_fd;             /* the data directory's lock, held for the life of the process */
    int64_t job_nofile_soft; /* the open files limit before raise_fd_limit, for jobs */
} server_state;

static void teardown(server_state *d)
{
    if (d->srv) {
        rpc_server_begin_shutdown(d->srv);
        size_t n_active = d->sv ? supervisor_n_active(d->sv) : 0;
        log_debug("stopping %zu job(s)", n_active);
        service_shutdown(d->svc);   /* no queued job starts from now on; they stay QUEUED */
        supervisor_shutdown(d->sv); /* stops every job: SERVER_SHUTDOWN */
        log_debug("jobs stopped; closing the gRPC server");
        rpc_server_free(d->srv); /* joins the workers: no handler uses the service after this */
        log_debug("gRPC server closed");
        log_info("stopped %zu running job(s); bye", n_active);
    }
    service_shutdown(d->svc);
    supervisor_shutdown(d->sv);
    service_free(d->svc);
    policy_free(d->cfg->policy); /* when start-up ended before the service took it */
    supervisor_free(d->sv);
    store_free(d->st);
    cgroup_manager_free(d->cgm);
    if (d->audit)
        fclose(d->audit);
    if (d->lock_fd >= 0)
        close(d->lock_fd);
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

static int find_job_init(server_state *d)
{
    if (d->cfg->job_init)
        snprintf(d->job_init, sizeof(d->job_init), "%s", d->cfg->job_init);
    else if (default_job_init(d->job_init, sizeof(d->job_init)) < 0)
        snprintf(d->job_init, sizeof(d->job_init), "job-init");
    if (access(d->job_init, X_OK) < 0) {
        log_error("job-init helper '%s' is not executable: %m (pass --job-init)", d->job_init);
        return 1;
    }
    return 0;
}

/* Jobs run as an unprivileged user; root needs an explicit opt-in. */
static int resolve_job_user(server_state *d)
{
    const char *user = d->cfg->job_user;
    if (d->cfg->job_uid_range) {
        if (uid_pool_parse_range(d->cfg->job_uid_range, &d->job_uid_first, &d->job_uid_count) < 0) {
            log_error("--job-uid-range '%s': want FIRST-LAST within 1-2147483646, at most %u "
                      "uids, without 65534 and 65535",
                      d->cfg->job_uid_range, UID_POOL_MAX_COUNT);
            return 2;
        }
        /* The working directories' parents are checked with the first uid: every uid of the
         * range is "others" to them alike. */
        d->job_uid = d->job_gid = (long)d->job_uid_first;
        snprintf(d->job_user_display, sizeof(d->job_user_display), "dynamic (%s)",
                 d->cfg->job_uid_range);
        log_info("every job runs as a uid (and gid) of its own from %s", d->cfg->job_uid_range);
        return 0;
    }
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        log_error("--job-user '%s' is not a user on this host", user);
        return 2;
    }
    if (pw->pw_uid == 0 && !d->cfg->allow_root_jobs) {
        log_error("--job-user '%s' is root: jobs would run with every privilege; pass "
                  "--allow-root-jobs to accept that",
                  user);
        return 2;
    }
    d->job_uid = (long)pw->pw_uid;
    d->job_gid = (long)pw->pw_gid;
    snprintf(d->job_user_display, sizeof(d->job_user_display), "%s (%ld:%ld)", user, d->job_uid,
             d->job_gid);
    if (d->job_uid == 0)
        log_warning("jobs run as root (--allow-root-jobs): they keep every capability");
    return 0;
}

static int setup_cgroups(server_state *d)
{
    const daemon_config *o = d->cfg;
    jw_error err = JW_ERROR_INIT;
    if (job_host_probe(&d->host) < 0) {
        log_error("cannot read the host's CPU count and memory: %m");
        return 1;
    }
    if (o->no_cgroups) {
        log_warning("--no-cgroups: jobs run WITHOUT resource limits (limits_enforced=false); "
                    "requests that name limits are refused");
        return 0;
    }
    cgroup_config cc = {
        .root = o->cgroup_root,
        .parent = o->cgroup_parent,
        .io_devices = o->n_io_devices ? o->io_devices : NULL,
        .n_io_devices = o->n_io_devices,
        .move_self = true,
    };
    if (cgroup_manager_new(&cc, &d->cgm, &err) < 0) {
        log_error("%s", err.msg);
        return 1;
    }
    d->host.cgroups = true;
    d->host.io_controller = (cgroup_manager_controllers(d->cgm) & CGROUP_CTRL_IO) &&
                            cgroup_manager_n_io_devices(d->cgm) > 0;
    int r = cgroup_manager_remove_stale(d->cgm, &err);
    if (r > 0)
        log_info("removed %d job cgroup(s) left behind by an earlier run", r);
    else if (r < 0)
        log_warning("removing leftover job cgroups: %s, ignoring", err.msg);
    if (job_limits_validate(&o->defaults, &d->host, &err) < 0) {
        log_error("default %s", err.msg);
        return 2;
    }
    if (o->defaults.io_bps && !d->host.io_controller) {
        log_error("--default-iobps needs the io controller and a whole-disk device, and "
                  "this host has none usable (see --io-device)");
        return 2;
    }
    log_info("cgroup v2: jobs under '%s' (io limits %s)", cgroup_manager_parent_path(d->cgm),
             d->host.io_controller ? "available" : "not available");
    return 0;
}

/* <data-dir>/work for the jobs' working directories; what an earlier run left there goes. */
static int prepare_work_root(server_state *d)
{
    jw_error err = JW_ERROR_INIT;
    if (workdir_root_prepare(d->cfg->data_dir, d->cfg->job_user, d->job_uid, d->job_gid,
                             d->work_root, sizeof(d->work_root), &err) < 0) {
        log_error("%s", err.msg);
        return 1;
    }
    int r = workdir_remove_stale(d->work_root);
    if (r > 0)
        log_info("removed %d working director%s left behind by an earlier run", r,
                 r == 1 ? "y" : "ies");
    else if (r < 0)
        log_warning_errno(-r, "removing leftover working directories under '%s': %m, ignoring",
                          d->work_root);
    return 0;
}

/* The data directory is the server's alone: owned by it, writable by no one else all the way
 * up, and locked against a second server. */
static int claim_data_dir(server_state *d)
{
    jw_error err = JW_ERROR_INIT;
    if (trust_data_dir(d->cfg->data_dir, geteuid(), &err) < 0) {
        log_error("%s", err.msg);
        return 1;
    }
    d->lock_fd = trust_lock_data_dir(d->cfg->data_dir, &err);
    if (d->lock_fd < 0) {
        log_error("%s", err.msg);
        return 1;
    }
    return 0;
}

/* The TLS files: nobody but root and the server's user may be able to replace them (OpenSSH's
 * rule for keys), then auth's checks of their content, for an early, clear error;
 * rpc_server_start() reads them again into the copy gRPC watches, and SIGHUP re-reads them. */
static int check_tls_files(server_state *d)
{
    const daemon_config *o = d->cfg;
    jw_error err = JW_ERROR_INIT;
    d->tls = (auth_tls_paths){.cert = o->cert, .key = o->key, .ca = o->ca, .crl = o->crl};
    snprintf(d->tls_state_dir, sizeof(d->tls_state_dir), "%s/tls", o->data_dir);
    const char *what[] = {"--cert", "--key", "--ca", "--crl"};
    const char *paths[] = {o->cert, o->key, o->ca, o->crl};
    for (size_t i = 0; i < 4; i++) {
        if (paths[i] && access(paths[i], F_OK) == 0 &&
            trust_check_path(what[i], paths[i], geteuid(), &err) < 0) {
            log_error("%s", err.msg);
            return 1;
        }
    }
    if (auth_tls_check_files(&d->tls, NULL, &err) < 0) {
        log_error("%s (generate development certificates with scripts/gen-certs.sh)", err.msg);
        return 1;
    }
    return 0;
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

/* The server cgroup's own memory.max (cgroup v2), 0 when none or unknown. */
static int64_t own_memory_max(void)
{
    char line[PATH_MAX] = "", path[PATH_MAX + 64], buf[64] = "";
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return 0;
    bool found = false;
    while (!found && fgets(line, sizeof(line), f))
        found = strncmp(line, "0::", 3) == 0;
    fclose(f);
    if (!found)
        return 0;
    line[strcspn(line, "\n")] = '\0';
    snprintf(path, sizeof(path), "/sys/fs/cgroup%s/memory.max", line + 3);
    f = fopen(path, "re");
    if (!f)
        return 0;
    bool ok = fgets(buf, sizeof(buf), f) != NULL;
    fclose(f);
    buf[strcspn(buf, "\n")] = '\0';
    int64_t v = 0; /* "max" is no number: no limit */
    return ok && parse_int64(buf, 1, INT64_MAX, &v) == 0 ? v : 0;
}

/* The admission capacity: what the flags say, the host's defaults for what they leave. */
static jobqueue_capacity admission_capacity(const daemon_config *o, bool enforced)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        cpus = 1;
    jobqueue_capacity c = {.max_running = o->max_running,
                           .memory_bytes = o->capacity_memory,
                           .cpu_percent = o->capacity_cpu,
                           .max_queued = o->max_queued};
    if (c.max_running < 0)
        c.max_running = cpus * JW_DEFAULT_RUNNING_PER_CPU;
    if (c.cpu_percent < 0)
        c.cpu_percent = cpus * JW_DEFAULT_CPU_PCT_PER_CPU;
    if (c.memory_bytes < 0) {
        long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
        int64_t total = pages > 0 && psize > 0 ? (int64_t)pages * psize : 0;
        c.memory_bytes = total - total / 10;
        int64_t own = own_memory_max();
        if (own > 0 && own < c.memory_bytes)
            c.memory_bytes = own;
    }
    log_info("admission: at most %lld job(s) running%s, %lld queued; capacity: memory %lld "
             "bytes, cpu %lld %%%s",
             (long long)c.max_running, c.max_running ? "" : " (no limit)", (long long)c.max_queued,
             (long long)c.memory_bytes, (long long)c.cpu_percent,
             enforced ? "" : " (limits are not enforced without cgroups: jobs count 0 of both)");
    return c;
}

/* A default limit above its ceiling refuses every job that does not ask for less: say so once. */
static void warn_defaults_over_ceilings(const daemon_config *o, bool enforced)
{
    if (!o->policy || !enforced)
        return;
    const policy_ceiling *c = policy_ceilings(o->policy);
    struct {
        const char *flag, *key;
        int64_t def, ceiling;
    } v[] = {
        {"--default-memory", "memory", o->defaults.memory_bytes, c->memory_bytes},
        {"--default-memory-high", "memory-high", o->defaults.memory_high_bytes,
         c->memory_high_bytes},
        {"--default-iobps", "io", o->defaults.io_bps, c->io_bps},
        {"--default-cpu", "cpu", o->defaults.cpu_percent, c->cpu_percent},
        {"--default-pids", "pids", o->defaults.pids_max, c->pids_max},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        if (v[i].ceiling > 0 && v[i].def > v[i].ceiling)
            log_warning("%s %lld is above [ceiling] %s %lld in '%s': every job that does not "
                        "ask for less is refused; lower the default",
                        v[i].flag, (long long)v[i].def, v[i].key, (long long)v[i].ceiling,
                        o->policy_path ? o->policy_path : "the policy");
}

/* Store, supervisor, service, audit log and the gRPC server, in dependency order. */
static int start_serving(server_state *d)
{
    const daemon_config *o = d->cfg;
    jw_error err = JW_ERROR_INIT;
    store_config sc = {.data_dir = o->data_dir,
                       .db_path = o->db_path,
                       .db_sync = o->db_sync && strcmp(o->db_sync, "full") == 0 ? JOBDB_SYNC_FULL
                                                                                : JOBDB_SYNC_NORMAL,
                       .max_jobs = (size_t)o->max_jobs,
                       .max_output_bytes = o->max_output,
                       .retain_age_ns = o->retain_age_ms * 1000000,
                       .retain_output_bytes = o->retain_output,
                       .retain_jobs = o->retain_jobs,
                       .sweep_interval_ms = o->retain_interval_ms};
    if (store_new(&sc, &d->st, &err) < 0) {
        log_error("%s", err.msg);
        return 1;
    }
    int r = prepare_work_root(d);
    if (r != 0)
        return r;
    supervisor_config svc = {.job_nofile_soft = d->job_nofile_soft,
                             .job_init_path = d->job_init,
                             .cgroups = d->cgm,
                             .stop_grace_ms = o->stop_grace_ms,
                             .job_uid = d->job_uid,
                             .job_gid = d->job_gid,
                             .job_uid_first = d->job_uid_first,
                             .job_uid_count = d->job_uid_count,
                             .work_root = d->work_root};
    if (supervisor_new(&svc, d->st, &d->sv, &err) < 0) {
        log_error("%s", err.msg);
        return 1;
    }
    warn_defaults_over_ceilings(o, d->host.cgroups);
    service_config sec = {
        .st = d->st,
        .sv = d->sv,
        .host = d->host,
        .defaults = o->defaults,
        .default_network =
            strcmp(o->default_network, "none") == 0 ? JOB_NETWORK_NONE : JOB_NETWORK_HOST,
        .job_user_display = d->job_user_display,
        .max_streams_per_job = (int)o->max_streams_per_job,
        .capacity = admission_capacity(o, d->host.cgroups),
        .policy = o->policy,
        .policy_name = o->policy_path,
        .cgroup_path = d->cgm ? cgroup_manager_parent_path(d->cgm) : NULL,
        .max_jobs = o->max_jobs,
        .max_output_bytes = o->max_output,
        .max_streams = o->max_streams,
        .max_streams_per_client = o->max_streams_per_client,
    };
    ((daemon_config *)o)->policy = NULL; /* the service owns it now, even if it fails */
    if (service_new(&sec, &d->svc, &err) < 0) {
        log_error("%s", err.msg);
        return 1;
    }
    if (auth_tls13_only_init(&err) < 0) {
        log_error("%s", err.msg);
        return 1;
    }
    if (o->audit_log) {
        d->audit = fopen(o->audit_log, "ae");
        if (!d->audit) {
            log_error("open audit log '%s': %m", o->audit_log);
            return 1;
        }
    }
    rpc_server_config rc = {
        .listen_addr = o->listen,
        .tls = d->tls,
        .tls_state_dir = d->tls_state_dir,
        .svc = d->svc,
        .workers = (int)o->workers,
        .max_streams = (int)o->max_streams,
        .max_streams_per_client = (int)o->max_streams_per_client,
        .audit = d->audit,
    };
    if (rpc_server_start(&rc, &d->srv, &err) < 0) {
        log_error("%s", err.msg);
        return 1;
    }
    return 0;
}

/* SIGHUP: the policy file again. A file that does not load keeps the policy in force. The
 * admission settings of [server] apply at once unless a flag set them; other [server] settings
 * wait for the next start. */
static void reload_policy(server_state *d)
{
    const daemon_config *o = d->cfg;
    if (!o->policy_path)
        return;
    policy *p = NULL;
    jw_error err = JW_ERROR_INIT;
    if (policy_load(o->policy_path, &p, &err) < 0) {
        log_error("SIGHUP: policy not reloaded, the previous one stays in force: %s", err.msg);
        return;
    }
    daemon_config c = *o;
    static const struct {
        const char *key;
        unsigned flag;
        bool size;
        size_t off;
    } keys[] = {
        {"max-running", DAEMON_FLAG_MAX_RUNNING, false, offsetof(daemon_config, max_running)},
        {"capacity-memory", DAEMON_FLAG_CAPACITY_MEMORY, true,
         offsetof(daemon_config, capacity_memory)},
        {"capacity-cpu", DAEMON_FLAG_CAPACITY_CPU, false, offsetof(daemon_config, capacity_cpu)},
        {"max-queued", DAEMON_FLAG_MAX_QUEUED, false, offsetof(daemon_config, max_queued)},
    };
    for (size_t i = 0; i < policy_n_settings(p); i++) {
        const policy_setting *st = policy_setting_at(p, i);
        for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
            if (strcmp(st->key, keys[k].key) != 0 || (o->admission_from_flags & keys[k].flag))
                continue;
            int64_t *v = (int64_t *)((char *)&c + keys[k].off);
            int r =
                keys[k].size ? parse_size(st->value, v) : parse_int64(st->value, 0, INT64_MAX, v);
            if (r < 0) {
                log_error("SIGHUP: policy not reloaded, the previous one stays in force: "
                          "%s:%d: %s '%s' is not valid",
                          o->policy_path, st->line, st->key, st->value);
                policy_free(p);
                return;
            }
        }
    }
    size_t owners = policy_n_owners(p), allow = policy_n_allow(p);
    service_set_policy(d->svc, p);
    jobqueue_capacity cap = admission_capacity(&c, d->host.cgroups);
    service_set_capacity(d->svc, &cap);
    log_info("SIGHUP: reloaded the policy '%s' (%zu owner section(s), %zu allowed path(s)); "
             "[server] settings other than admission apply at the next start",
             o->policy_path, owners, allow);
}

/* Serves until SIGTERM/SIGINT; SIGHUP reloads the TLS files. */
static void serve(server_state *d, const sigset_t *sigs)
{
    jw_error err = JW_ERROR_INIT;
    log_info("jobworker-server listening on %s (port %d, TLS 1.3, mutual authentication)",
             d->cfg->listen, rpc_server_port(d->srv));
    auth_tls_summary ts;
    rpc_server_tls_summary(d->srv, &ts);
    log_tls_summary("TLS configuration", &d->tls, &ts);
    for (;;) {
        int sig = sigwaitinfo(sigs, NULL);
        if (sig == SIGHUP) {
            reload_policy(d);
            /* Jobs, calls and streams are untouched; only new handshakes see the change. */
            if (rpc_server_reload_tls(d->srv, &ts, &err) < 0)
                log_error("SIGHUP: TLS reload failed, the previous configuration stays in force: "
                          "%s",
                          err.msg);
            else
                log_tls_summary("SIGHUP: reloaded the TLS configuration, new connections use it "
                                "within 1 s",
                                &d->tls, &ts);
            continue;
        }
        if (sig > 0) {
            log_info("received %s, shutting down", strsignal(sig));
            return;
        }
    }
}

/* Every connection, stream, job pipe and pidfd is an fd: the common soft limit of 1024 is
 * reached by about a thousand idle TCP connections, and gRPC 1.51 stops accepting for good
 * after an EMFILE. Raise the soft limit to the hard limit, as systemd services get, and say so. */
static void raise_fd_limit(int64_t *ret_old_soft)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        log_warning("getrlimit(RLIMIT_NOFILE): %m, ignoring");
        return;
    }
    if (rl.rlim_cur == rl.rlim_max) {
        log_info("open files limit: %llu", (unsigned long long)rl.rlim_cur);
        return;
    }
    rlim_t old = rl.rlim_cur;
    *ret_old_soft = (int64_t)old;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        log_warning("raise the open files limit from %llu to %llu: %m, ignoring",
                    (unsigned long long)old, (unsigned long long)rl.rlim_max);
    else
        log_info("open files limit raised from %llu to the hard limit %llu",
                 (unsigned long long)old, (unsigned long long)rl.rlim_max);
}

int daemon_run(const daemon_config *cfg)
{
    int64_t job_nofile = 0;
    raise_fd_limit(&job_nofile);
    /* Signals are taken synchronously by this thread; every thread started from here on
     * (gRPC's included) inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    server_state d = {.cfg = cfg, .lock_fd = -1, .job_nofile_soft = job_nofile};
    int r = find_job_init(&d);
    if (r == 0)
        r = resolve_job_user(&d);
    if (r == 0)
        r = claim_data_dir(&d);
    if (r == 0)
        r = check_tls_files(&d);
    if (r == 0)
        r = setup_cgroups(&d);
    if (r == 0)
        r = start_serving(&d);
    if (r == 0) {
        serve(&d, &sigs);
        /* The watch sent the SIGTERM: a non-zero status makes the supervisor restart us. */
        if (rpc_server_listener_died(d.srv))
            r = 3;
    }
    teardown(&d);
    return r;
}
