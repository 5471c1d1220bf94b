#include "store/runs.h"

#include "util/fileio.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STDERR_BIT (UINT64_C(1) << 63)

int64_t runs_before(const output_run *r, job_stream stream)
{
    return stream == JOB_STREAM_STDERR ? r->log_off - r->stdout_before : r->stdout_before;
}

int runs_append(int fd, const output_run *r)
{
    uint64_t rec[2] = {(uint64_t)r->log_off | (r->stream == JOB_STREAM_STDERR ? STDERR_BIT : 0),
                       (uint64_t)r->stdout_before};
    return write_full(fd, rec, sizeof(rec));
}

size_t runs_count(int fd)
{
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        return 1;
    return 1 + (size_t)st.st_size / RUNS_RECORD_SIZE;
}

int runs_get(int fd, size_t i, output_run *ret)
{
    if (i == 0) {
        *ret = RUNS_FIRST;
        return 0;
    }
    uint64_t rec[2];
    ssize_t n = pread(fd, rec, sizeof(rec), (off_t)(i - 1) * RUNS_RECORD_SIZE);
    if (n != (ssize_t)sizeof(rec))
        return n < 0 ? -errno : -EIO;
    *ret = (output_run){.log_off = (int64_t)(rec[0] & ~STDERR_BIT),
                        .stdout_before = (int64_t)rec[1],
                        .stream = rec[0] & STDERR_BIT ? JOB_STREAM_STDERR : JOB_STREAM_STDOUT};
    return 0;
}

/* The last of the first n runs whose key is <= off (keys never decrease with i). */
static int find_last(int fd, size_t n, int64_t off, job_stream stream, size_t *ret)
{
    size_t lo = 0, hi = n; /* run lo qualifies (run 0's keys are 0); the answer is in [lo, hi) */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        output_run r = RUNS_FIRST;
        int e = runs_get(fd, mid, &r);
        if (e < 0)
            return e;
        int64_t key = stream == JOB_STREAM_BOTH ? r.log_off : runs_before(&r, stream);
        if (key <= off)
            lo = mid;
        else
            hi = mid;
    }
    *ret = lo;
    return 0;
}

int runs_find_log(int fd, size_t n, int64_t off, size_t *ret)
{
    return find_last(fd, n, off, JOB_STREAM_BOTH, ret);
}

int runs_find_stream(int fd, size_t n, job_stream stream, int64_t off, size_t *ret)
{
    return find_last(fd, n, off, stream, ret);
}

int runs_stderr_total(int fd, int64_t total, int64_t *ret)
{
    size_t n = runs_count(fd);
    output_run last = RUNS_FIRST;
    int e = runs_get(fd, n - 1, &last);
    if (e < 0)
        return e;
    int64_t before = runs_before(&last, JOB_STREAM_STDERR);
    int64_t in_last = total > last.log_off ? total - last.log_off : 0;
    *ret = last.stream == JOB_STREAM_STDERR ? before + in_last : before;
    return 0;
}
