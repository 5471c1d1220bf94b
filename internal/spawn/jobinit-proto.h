/* The contract between the server (spawn) and cmd/job-init.
 *
 * The server clone()s job-init into new PID, mount, UTS and IPC namespaces (and a new network
 * namespace for `network: none`), so job-init is PID 1 of the job:
 *
 *   job-init [--cgroup DIR --cgroup-rel REL] [--uid N --gid N] [--workdir DIR]
 *            [--hostname NAME] [--tmp-size BYTES] [--net-none] -- COMMAND [ARGS...]
 *
 * --tmp-size gives the job private tmpfs mounts of that many bytes each on /tmp, /var/tmp and
 * /dev/shm (mode 1777, nosuid, nodev); without it the job sees the host's. The working directory
 * is opened before those mounts, so it may lie under one of them.
 *
 * with fd 0 = /dev/null (or the stdin pipe the server writes), fds 1 and 2 = the job's stdout
 * and stderr pipes, and fd JOBINIT_STATUS_FD = the write
 * end of a status pipe. job-init joins the cgroup, makes the host's mounts read-only (all but the
 * working directory), mounts a fresh /proc and the private tmpfs, drops nothing itself,
 * and forks the command, which takes the job's credentials and execs. Over the status pipe
 * job-init then sends exactly:
 *   - STARTED once the command was exec'd, or FAILED (stage, errno) and exits
 *     JOBINIT_EXIT_FAILED;
 *   - EXITED (the command's wait status) when the command ended, then exits with the command's
 *     code (or 128 + signal).
 * A job-init killed from outside (stop's hard kill, OOM) sends no EXITED record: its own wait
 * status then stands for the job's. The server forwards stops as SIGTERM to job-init, which
 * passes SIGTERM and SIGINT on to the command's process group.
 */
#ifndef JW_SPAWN_JOBINIT_PROTO_H
#define JW_SPAWN_JOBINIT_PROTO_H

#include <stdint.h>

#define JOBINIT_STATUS_FD   3
#define JOBINIT_EXIT_FAILED 127

typedef enum {
    JOBINIT_STAGE_ARGS = 1,        /* bad arguments from the server */
    JOBINIT_STAGE_CGROUP = 2,      /* joining or verifying the job's cgroup */
    JOBINIT_STAGE_SETUP = 3,       /* fds, signals, session, oom_score_adj, no_new_privs */
    JOBINIT_STAGE_EXEC = 4,        /* execvp of the command */
    JOBINIT_STAGE_NAMESPACE = 5,   /* /proc, hostname, loopback in the job's namespaces */
    JOBINIT_STAGE_CREDENTIALS = 6, /* groups, uid/gid, capabilities, working directory */
    JOBINIT_STAGE_FORK = 7,        /* forking the command */
} jobinit_stage;

typedef enum {
    JOBINIT_MSG_STARTED = 1,
    JOBINIT_MSG_FAILED = 2,
    JOBINIT_MSG_EXITED = 3,
} jobinit_msg_kind;

typedef struct jobinit_msg {
    int32_t kind;    /* jobinit_msg_kind */
    int32_t stage;   /* FAILED: jobinit_stage */
    int32_t err;     /* FAILED: positive errno */
    int32_t wstatus; /* EXITED: the command's wait status */
} jobinit_msg;

#endif
