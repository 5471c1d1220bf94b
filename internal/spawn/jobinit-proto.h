/* The contract between the server (spawn) and cmd/job-init.
 *
 * The server runs: job-init [--cgroup DIR --cgroup-rel REL] -- COMMAND [ARGS...]
 * with fd 0 = /dev/null, fds 1 and 2 = the job's output pipe, fd JOBINIT_STATUS_FD = the write
 * end of a status pipe. job-init marks the status fd close-on-exec: a successful exec closes it
 * and the server reads EOF; any failure before or at exec writes one jobinit_status record and
 * exits with JOBINIT_EXIT_FAILED.
 */
#ifndef JW_SPAWN_JOBINIT_PROTO_H
#define JW_SPAWN_JOBINIT_PROTO_H

#include <stdint.h>

#define JOBINIT_STATUS_FD   3
#define JOBINIT_EXIT_FAILED 127

typedef enum {
    JOBINIT_STAGE_ARGS = 1,   /* bad arguments from the server */
    JOBINIT_STAGE_CGROUP = 2, /* joining or verifying the job's cgroup */
    JOBINIT_STAGE_SETUP = 3,  /* fds, signals, session, oom_score_adj, no_new_privs */
    JOBINIT_STAGE_EXEC = 4,   /* execvp of the command */
} jobinit_stage;

typedef struct jobinit_status {
    int32_t stage;
    int32_t err; /* positive errno */
} jobinit_status;

#endif
