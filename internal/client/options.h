/* The values of jobctl's flags, turned into what the API carries. Each parser returns 0 and
 * writes *ret only on success; on failure it returns -EINVAL or -ERANGE and fills err
 * (INVALID_ARGUMENT) with a message that names the option and the value. `opt` is the option as
 * the user wrote it, e.g. "--max-memory". No gRPC here.
 */
#ifndef JW_CLIENT_OPTIONS_H
#define JW_CLIENT_OPTIONS_H

#include "util/error.h"

#include <stdint.h>

/* CPU percent, "150" or "150%" (100 = one core); 0 means the server's default. */
int jw_opt_cpu_percent(const char *opt, const char *s, int32_t *ret, jw_error *err);
/* Bytes with an optional binary suffix (K, M, G, T; KiB, MB... are accepted too). */
int jw_opt_size(const char *opt, const char *s, int64_t *ret, jw_error *err);
/* A count in [0, INT32_MAX]. */
int jw_opt_count32(const char *opt, const char *s, int32_t *ret, jw_error *err);
/* An offset in [0, INT64_MAX]. */
int jw_opt_offset(const char *opt, const char *s, int64_t *ret, jw_error *err);
/* A duration ("30", "30s", "1m30s", "500ms", "1h") in milliseconds. */
int jw_opt_duration_ms(const char *opt, const char *s, int64_t *ret, jw_error *err);
/* An integer in [min, max]. Any other value is -EINVAL, and the message says `expected`, which
 * should name the range ("a number of jobs from 1 to 10000"). */
int jw_opt_int_range(const char *opt, const char *s, int64_t min, int64_t max, const char *expected,
                     int64_t *ret, jw_error *err);
/* A comma-separated list of job statuses, named as in JobStatus without "JOB_STATUS_" and in any
 * case ("running,FAILED"), as a mask with bit (1 << value) set for each. An empty, unknown or
 * UNSPECIFIED name is refused, and the message names it and lists the valid ones. */
int jw_opt_status_mask(const char *opt, const char *s, uint32_t *ret, jw_error *err);
/* A duration back from now_ns (Unix ns): the time it names, for GetJobsReq.since_unix_ns. A
 * duration that reaches back before 1970 gives 0, which the API reads as "any time". */
int jw_opt_since(const char *opt, const char *s, int64_t now_ns, int64_t *ret, jw_error *err);
/* A duration in whole seconds for the API's int32 fields; a fraction of a second rounds up, so
 * "500ms" is 1 and never the 0 that would mean "no timeout". */
int jw_opt_duration_s32(const char *opt, const char *s, int32_t *ret, jw_error *err);

#endif
