/* Starting, watching and stopping jobs.
 *
 * supervisor_start_job() runs on the caller's (an RPC) thread: it creates the job's cgroup and
 * working directory (workdir.h) and starts job-init (launch.h), which answers once the command
 * was exec'd or failed. From then on the supervisor owns the job. Its loop thread (one epoll over
 * every job's output pipe, pidfd and, at the end, cgroup.events) appends output to the store,
 * enforces timeouts and carries out stops (SIGTERM to job-init, which forwards it to the command,
 * a grace period, then cgroup.kill and SIGKILL to job-init, which takes the job's whole PID
 * namespace with it), and never blocks: when job-init exits, the cgroup emptying and the output
 * pipe's EOF are events with a 5 s deadline. A cleanup thread then reads the usage, removes the
 * cgroup and the working directory and records the end: a job's end never stalls another job.
 */
#ifndef JW_SPAWN_SUPERVISOR_H
#define JW_SPAWN_SUPERVISOR_H

#include "cgroup/cgroup.h"
#include "job/job.h"
#include "store/store.h"
#include "util/error.h"

#include <stdint.h>

typedef struct supervisor supervisor;

typedef struct supervisor_config {
    const char *job_init_path; /* absolute path of the job-init binary */
    cgroup_manager *cgroups;   /* NULL = --no-cgroups: jobs run without limits */
    int64_t stop_grace_ms;     /* SIGTERM .. kill; default 100 */
    long job_uid, job_gid;     /* credentials of jobs; -1 = the server's own (tests only) */
    /* job_uid_count > 0: every job runs as a uid of its own (its gid the same number), taken
     * from job_uid_first .. job_uid_first + job_uid_count - 1 (uidpool.h) for as long as the job
     * runs, least recently used first; job_uid/job_gid are then unused. A start finding every
     * uid held fails with RESOURCE_EXHAUSTED. */
    uint32_t job_uid_first, job_uid_count;
    const char *work_root; /* per-job working directories <work_root>/<id>; NULL = "/" */
    /* Size cap of each of a job's private tmpfs mounts on /tmp, /var/tmp and /dev/shm;
     * 0 = SUPERVISOR_DEFAULT_TMP_SIZE. Their pages are charged to the job's memory cgroup too. */
    int64_t tmp_size;
    int64_t job_nofile_soft; /* the soft open files limit jobs get (the server raised its own);
                              * 0 = the server's */
} supervisor_config;

#define SUPERVISOR_DEFAULT_TMP_SIZE (INT64_C(64) * 1024 * 1024)

int supervisor_new(const supervisor_config *cfg, store *st, supervisor **ret, jw_error *err);
/* Stops every job with reason SERVER_SHUTDOWN and waits until all are reaped and cleaned up.
 * The supervisor stays valid: later starts fail with UNAVAILABLE, later stops find nothing to do,
 * so RPC handlers still running during shutdown are safe. */
void supervisor_shutdown(supervisor *sv);
/* supervisor_shutdown() if not done yet, then frees. NULL is a no-op. */
void supervisor_free(supervisor *sv);

/* Starts an INITIALIZING job. Returns 0 when the job is RUNNING or already ended START_FAILED
 * (the job's state says which); a negative errno (with err) when starting failed for a reason
 * that is not the job's fault: then nothing of the job remains (no cgroup, no process) and the
 * caller removes it from the store. */
int supervisor_start_job(supervisor *sv, store_job *job, jw_error *err);

/* Asks a job to stop with `reason` (STOPPED, TIMED_OUT, SERVER_SHUTDOWN) and returns at once:
 * the supervisor's loop sends SIGTERM, waits the grace period, then kills. Whoever needs the end
 * waits for it with store_job_on_final() (or store_job_wait_final() in tests). A job that is
 * already final is left alone; an INITIALIZING job is stopped as soon as it started. */
int supervisor_stop_job(supervisor *sv, store_job *job, job_reason reason, jw_error *err);

/* Number of jobs the supervisor currently owns (starting or running). */
size_t supervisor_n_active(supervisor *sv);

/* Hands the write end of a running job's stdin pipe (non-blocking, close-on-exec) to its one
 * writer, who closes it to give the job EOF. -EAGAIN while the job is not running yet (or has
 * no stdin pipe), -EBUSY when a writer already took it, -ENOENT when the supervisor has no entry
 * for the job (it has ended, or never started). */
int supervisor_take_stdin(supervisor *sv, store_job *job, int *ret_fd);

#endif
