/* How jobctl shows jobs: JSON documents for programs and aligned text for people. Everything
 * writes to a FILE * the caller chooses (stdout in jobctl, a memory stream in the unit tests),
 * so this module decides the format but never where output goes. No gRPC here.
 *
 * JSON: one document per line, keys are the proto field names, enums are their short names
 * ("RUNNING" for JOB_STATUS_RUNNING, "OOM_KILLED" for EXIT_REASON_OOM_KILLED; a value this
 * client does not know is printed as its number in a string, e.g. "9"), int64 values are plain
 * numbers, and every field is always present. Strings: '"' and '\' are escaped, control
 * characters (C0 U+0000-U+001F, DEL and C1 U+0080-U+009F) become \u00XX (lower-case hex), other
 * valid UTF-8 passes through unchanged, and each byte
 * that is not part of a valid UTF-8 sequence becomes \ufffd, so the output is always valid
 * UTF-8 JSON.
 *
 * Human text: fields the server got from users (command, args, owner, error) are sanitized so
 * that they cannot drive the terminal: control characters, C1 controls and invalid UTF-8 are
 * shown as \xNN (or $'...' quoting in shell-quoted commands).
 *
 * Every function returns 0, or -EIO when the stream reported an error.
 */
#ifndef JW_CLIENT_FORMAT_H
#define JW_CLIENT_FORMAT_H

#include "jobworker/v1/jobworker.pb-c.h"

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>

/* "RUNNING", "OOM_KILLED", ...; for a value outside the enum, NULL. */
const char *jw_fmt_status_name(int status);
const char *jw_fmt_reason_name(int reason);
/* "HOST", "NONE", "UNSPECIFIED" (NETWORK_MODE_ stripped). */
const char *jw_fmt_network_name(int network);
/* COMPLETED, FAILED or STOPPED: the job will not change any more. */
bool jw_fmt_status_is_final(int status);

/* JSON. */
int jw_fmt_json_string(FILE *out, const char *s, size_t len);
/* The job object without a newline. */
int jw_fmt_job_json(FILE *out, const Jobworker__V1__Job *job);
/* {"jobs":[...]} without a newline. */
int jw_fmt_jobs_json(FILE *out, const Jobworker__V1__Jobs *jobs);

/* Human text. `now_ns` (Unix ns) dates the duration of a job that is still running. */
int jw_fmt_job_human(FILE *out, const Jobworker__V1__Job *job, int64_t now_ns);
/* GetServerInfo: one JSON line, or the human "key: value" block (jobctl info). */
int jw_fmt_server_info_json(FILE *out, const Jobworker__V1__ServerInfo *si);
int jw_fmt_server_info_human(FILE *out, const Jobworker__V1__ServerInfo *si);
/* Table with the header ID STATUS REASON/EXIT OWNER STARTED COMMAND; the command is cut to
 * JW_FMT_COMMAND_WIDTH characters ("..." marks the cut). */
#define JW_FMT_COMMAND_WIDTH 48
int jw_fmt_jobs_table(FILE *out, const Jobworker__V1__Jobs *jobs);

/* A command line for display: each word as-is when it only has characters that are safe
 * unquoted, in '...' otherwise, and in bash's $'...' when it holds control characters or
 * invalid UTF-8. The empty word is ''. */
int jw_fmt_shell_word(FILE *out, const char *s);
int jw_fmt_command_line(FILE *out, const char *command, char *const *args, size_t nargs);
/* The text with control characters, C1 controls and invalid UTF-8 bytes shown as \xNN. */
int jw_fmt_sanitized(FILE *out, const char *s);

/* Small renderers into a buffer (always NUL-terminated, truncated to size). */
/* Binary units: "0 B", "512 B", "64 MiB", "1.5 GiB" (one decimal unless exact). */
void jw_fmt_size(char *buf, size_t size, int64_t bytes);
/* "0s", "15ms", "1.234s", "59.9s", "1m30s", "2h0m5s"; negative durations as "0s". */
void jw_fmt_duration_ns(char *buf, size_t size, int64_t ns);
/* ISO-8601 UTC with milliseconds, "2024-05-01T12:00:00.123Z"; "-" for 0. */
void jw_fmt_time_iso(char *buf, size_t size, int64_t unix_ns);
/* The same to the second, "2024-05-01T12:00:00Z"; "-" for 0. */
void jw_fmt_time_iso_s(char *buf, size_t size, int64_t unix_ns);

#endif
