/* The server as a whole: start-up in order, serving until SIGTERM/SIGINT (SIGHUP reloads TLS),
 * and teardown in the reverse order. cmd/jobworker-server only parses flags into a
 * daemon_config and calls daemon_run().
 */
#ifndef JW_DAEMON_DAEMON_H
#define JW_DAEMON_DAEMON_H

#include "cgroup/cgroup.h"
#include "job/job.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct daemon_config {
    const char *listen;
    const char *cert, *key, *ca, *crl;
    const char *data_dir;
    bool no_cgroups;
    const char *cgroup_root, *cgroup_parent;
    const char *io_devices[CGROUP_MAX_IO_DEVICES];
    size_t n_io_devices;
    job_limits defaults; /* limits for fields a request leaves at 0 */
    int64_t stop_grace_ms;
    const char *job_init; /* NULL = job-init next to this binary */
    int64_t max_jobs, max_streams, max_streams_per_job, max_streams_per_client, max_output, workers;
    const char *audit_log; /* NULL = the log */
    const char *job_user;
    const char *job_uid_range; /* "FIRST-LAST": a uid of its own per job; NULL = all as job_user */
    bool allow_root_jobs;
    const char *default_network; /* "host" or "none" */
    const char *db_path;         /* NULL = <data_dir>/jobs.db */
    const char *db_sync;         /* "normal" or "full" */
    int64_t retain_age_ms, retain_output, retain_jobs, retain_interval_ms; /* 0 = no limit */
    /* Admission; -1 = the host's default (util/defaults.h), 0 = no limit. */
    int64_t max_running, capacity_memory, capacity_cpu, max_queued;
    /* The policy file (config/policy.h) read at start, taken over by the daemon; SIGHUP reads
     * policy_path again (NULL = none: SIGHUP keeps an empty policy). */
    struct policy *policy;
    const char *policy_path;
    unsigned admission_from_flags; /* DAEMON_FLAG_* given on the command line: SIGHUP keeps them */
} daemon_config;

#define DAEMON_FLAG_MAX_RUNNING     (1u << 0)
#define DAEMON_FLAG_CAPACITY_MEMORY (1u << 1)
#define DAEMON_FLAG_CAPACITY_CPU    (1u << 2)
#define DAEMON_FLAG_MAX_QUEUED      (1u << 3)

/* Fills every field with its default (util/defaults.h). */
void daemon_config_init(daemon_config *cfg);

/* Runs the server until SIGTERM or SIGINT. Returns the process exit code: 0 after a clean
 * shutdown, 1 when the host or a file is not usable (the log says what and how to fix it), 2 for
 * a configuration that can never work (e.g. --job-user root without --allow-root-jobs), 3 when
 * gRPC stopped accepting connections (rpc/listenwatch.h) and the server shut down for a restart. */
int daemon_run(const daemon_config *cfg);

#endif
