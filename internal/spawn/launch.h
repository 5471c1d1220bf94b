/* Launching job-init: argv and environment, the clone() and the start half of the status-pipe
 * protocol (jobinit-proto.h).
 *
 * launch_job_init() runs on the caller's thread (an RPC worker). It clone()s job-init with
 * CLONE_VM | CLONE_VFORK | CLONE_PIDFD and new PID, mount, UTS and IPC namespaces (and a new
 * network namespace for `network: none`): a vfork-style start, so the threaded server never
 * fork()s and copies nothing, and the child makes only system calls until it execs. It then waits
 * (bounded) for job-init's verdict on the status pipe. Nothing here touches the store, the
 * supervisor's loop or the job's cgroup beyond the paths it is handed.
 */
#ifndef JW_SPAWN_LAUNCH_H
#define JW_SPAWN_LAUNCH_H

#include "job/job.h"
#include "util/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Everything job-init is started from. Strings are borrowed for the duration of the call. */
typedef struct launch_options {
    const char *job_init_path; /* absolute path of the job-init binary */
    const char *id;            /* the job's id: hostname "job-<8>" and JOBWORKER_JOB_ID */
    const char *command;       /* the command and its arguments, as the job asked */
    const char *const *args;
    size_t nargs;
    job_network network;         /* NONE: a new network namespace with loopback only */
    const char *cgroup_path;     /* absolute path of the job's cgroup; NULL = no cgroup */
    const char *cgroup_rel_path; /* the same relative to the cgroup2 mount (required with it) */
    long uid, gid;               /* the command's credentials; -1 = the server's own (tests) */
    const char *workdir;         /* the command's working directory and HOME; NULL = "/" */
    int64_t tmp_size;            /* bytes of each private /tmp, /var/tmp, /dev/shm; 0 = none */
    int64_t nofile_soft;         /* job-init's soft RLIMIT_NOFILE when lower than ours; 0 = ours */
    bool stdin_pipe;             /* stdin is a pipe the caller writes (else /dev/null) */
    const char *const *env;      /* extra "NAME=VALUE" entries (validated: no HOME, no id) */
    size_t nenv;
} launch_options;

/* What a launch produced. The fds are close-on-exec and non-blocking and belong to the caller. */
typedef struct launch_result {
    pid_t pid;             /* job-init's pid; 0 when the job itself could not start (start_error) */
    int pidfd;             /* job-init's pidfd (-1 when pid is 0) */
    int out_fd;            /* read end of the job's stdout pipe */
    int err_fd;            /* read end of the job's stderr pipe */
    int in_fd;             /* write end of the job's stdin pipe; -1 without stdin_pipe */
    int status_fd;         /* read end of job-init's status pipe: the EXITED record arrives here */
    char start_error[256]; /* pid 0: why, e.g. "exec 'cmd': No such file or directory" */
} launch_result;

/* Starts job-init and waits for STARTED or FAILED. Returns 0 with ret->pid > 0 when the command
 * runs; 0 with ret->pid == 0 and ret->start_error when the job could not start through its own
 * fault (a bad command, a failed credential change...), job-init then reaped and every fd
 * closed; a negative errno (with err) when starting failed for the server's reason (pipes, clone,
 * exec of job-init, no verdict within 10 s), also with nothing left behind. `ret` is written only
 * when 0 is returned. */
int launch_job_init(const launch_options *opts, launch_result *ret, jw_error *err);

/* The end half of the protocol: reads job-init's EXITED record from a non-blocking status fd.
 * Returns 1 with the command's wait status when it is there, 0 when it is not (job-init was
 * killed before it could send it). */
int launch_read_exit(int status_fd, int *ret_wstatus);

/* pidfd_send_signal(2). Returns 0 or a negative errno. */
int launch_pidfd_signal(int pidfd, int sig);

#endif
