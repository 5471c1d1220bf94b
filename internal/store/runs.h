/* The stream index of a job's output log: which bytes of the merged log came from the job's
 * stdout and which from its stderr.
 *
 * The log (<id>.out) keeps every byte in arrival order, so the merged stream is the file itself.
 * The index (<id>.idx) is a list of runs: a run starts where the stream that writes changes and
 * lasts until the next one. Each run is one fixed-size record appended when it starts, before its
 * first byte is in the log, so a reader that knows the log's size finds every run of it. Until
 * the first record the log is stdout: a job that only writes stdout has no index at all, and
 * neither do jobs recorded before the index existed.
 *
 * Records are 16 bytes in host order: the run's first log offset with the stream in the top bit
 * (set = stderr), then the number of stdout bytes before it (stderr bytes before it are the rest
 * of the offset). Lookups are binary searches with pread: O(log runs), no memory per run.
 */
#ifndef JW_STORE_RUNS_H
#define JW_STORE_RUNS_H

#include "job/job.h"

#include <stddef.h>
#include <stdint.h>

typedef struct output_run {
    int64_t log_off;       /* first byte of the run in the merged log */
    int64_t stdout_before; /* stdout bytes before log_off */
    job_stream stream;     /* STDOUT or STDERR */
} output_run;

#define RUNS_RECORD_SIZE 16

/* The implicit run every log starts with: stdout from byte 0. */
#define RUNS_FIRST ((output_run){.log_off = 0, .stdout_before = 0, .stream = JOB_STREAM_STDOUT})

/* Bytes of `stream` before the run. */
int64_t runs_before(const output_run *r, job_stream stream);

/* Appends one record (fd opened with O_APPEND). 0 or a negative errno. */
int runs_append(int fd, const output_run *r);
/* Runs in the index including the implicit first one (>= 1); fd < 0 = no index. A torn last
 * record (a crash while it was written) does not count. */
size_t runs_count(int fd);
/* Run i of runs_count(): run 0 is the implicit first (empty when the first record starts at 0),
 * run i > 0 is record i - 1. 0 or a negative errno. */
int runs_get(int fd, size_t i, output_run *ret);
/* The index of the last run (of the first n) that starts at or before log offset `off`. */
int runs_find_log(int fd, size_t n, int64_t off, size_t *ret);
/* The index of the last run (of the first n) with at most `off` bytes of `stream` before it:
 * byte `off` of that stream is in this run or, when the run is of the other stream, starts the
 * next run of `stream`. */
int runs_find_stream(int fd, size_t n, job_stream stream, int64_t off, size_t *ret);
/* The stderr bytes of a log of `total` bytes (the last run tells). 0 or a negative errno. */
int runs_stderr_total(int fd, int64_t total, int64_t *ret);

#endif
