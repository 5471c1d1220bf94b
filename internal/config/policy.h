/* The server's policy file (/etc/jobworker/server.conf or --config FILE): per-owner quotas,
 * ceilings on what one job may ask, an allow-list of executables, and the [server] settings
 * that the server's own option parser applies (so that flags override the file).
 *
 * Format: INI, parsed with Debian's inih (libinih 55) through a line reader of our own, which
 * makes the rules below hold whatever inih's build options are:
 *
 *   [server]               key = value lines, a key being a lower-case letter then [a-z0-9-];
 *                          collected in order, not interpreted here (they are
 *                          jobworker-server's long flags without --)
 *   [quota]                max-running, max-queued (counts), max-memory (size), max-cpu (sum
 *                          of cpu_percent): the defaults for every owner; 0 = no limit
 *   [role admin|viewer]    the same keys, for owners whose certificate has that role
 *   [owner NAME]           the same keys, for one owner (certificate CN, 1 to 1024 bytes of
 *                          printable ASCII: auth never reports any other CN; whitespace around
 *                          it is dropped; the header ends at the line's last ']')
 *   [ceiling]              memory, memory-high, io (sizes), cpu, pids (counts), timeout (a
 *                          duration of whole seconds); a CreateJob asking more is refused
 *   [allow]                path = /dir/ (anything under it) or path = /file, repeatable;
 *                          absent or empty = any command may run
 *
 * - Comments start with '#' or ';' at the start of a line or after whitespace, also after a
 *   value or a section header ("max-running = 4   # per owner"). So a value can never contain
 *   whitespace followed by '#' or ';'. (inih's own inline comments know only ';'; this module
 *   strips both before inih sees the line.)
 * - Leading whitespace is ignored and a line is never a continuation of the previous value
 *   (inih's multi-line values are switched off by that).
 * - A key ends at the line's first '=' or ':' (inih accepts both), so a key has neither.
 * - Errors: an unknown section or key, a bad value, a repeated key in one section (except
 *   `path` in [allow]), a repeated section, a key before any section, a line that is neither a
 *   section, a key = value nor a comment, a NUL byte, a line longer than POLICY_LINE_MAX bytes,
 *   a file larger than POLICY_FILE_MAX bytes, more than POLICY_OWNERS_MAX owner sections,
 *   POLICY_ALLOW_MAX allow paths or POLICY_SETTINGS_MAX [server] keys. Every message starts
 *   with "<name>:<line>: " and quotes the bad value (escaped, cut to 64 bytes).
 * - Debian's libinih keeps its line length in a global, ini_max_line (200 by default): the
 *   first parse raises it, once, to fit POLICY_LINE_MAX, for every inih user of the process.
 */
#ifndef JW_CONFIG_POLICY_H
#define JW_CONFIG_POLICY_H

#include "util/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define POLICY_FILE_MAX       (1024 * 1024) /* bytes of the whole file */
#define POLICY_LINE_MAX       8192          /* bytes of one line, comment included */
#define POLICY_OWNERS_MAX     10000         /* [owner X] sections */
#define POLICY_ALLOW_MAX      1000          /* path entries of [allow] */
#define POLICY_SETTINGS_MAX   1000          /* keys of [server] */
#define POLICY_OWNER_NAME_MAX 1024          /* bytes of X in [owner X] */
#define POLICY_COUNT_MAX      1000000       /* max-running, max-queued, max-cpu, cpu */

typedef struct policy policy;

/* What one owner may have at once; 0 = no limit. */
typedef struct policy_quota {
    int64_t max_running; /* jobs running */
    int64_t max_queued;  /* jobs waiting to run */
    int64_t max_memory;  /* bytes: the sum of memory.max of the owner's running jobs */
    int64_t max_cpu;     /* the sum of cpu_percent of the owner's running jobs */
} policy_quota;

/* The most one job may ask for; 0 = no ceiling. */
typedef struct policy_ceiling {
    int64_t memory_bytes;      /* memory.max */
    int64_t memory_high_bytes; /* memory.high */
    int64_t io_bps;            /* io.max rbps and wbps */
    int64_t timeout_seconds;
    int32_t cpu_percent; /* 100 = one core */
    int32_t pids_max;
} policy_ceiling;

/* One line of [server]; the strings belong to the policy. */
typedef struct policy_setting {
    const char *key; /* without "--" */
    const char *value;
    int line;
} policy_setting;

/* Reads and parses the file at path (a regular file of at most POLICY_FILE_MAX bytes, opened
 * O_CLOEXEC); messages name the path as given. Returns 0 and writes *ret (free with
 * policy_free) or a negative errno with err set: JW_INVALID_ARGUMENT for bad content, a file too
 * large or not regular; the errno's code (jw_error_errno) when it cannot be opened or read;
 * -ENOMEM. */
int policy_load(const char *path, policy **ret, jw_error *err);
/* The same from a NUL-terminated string; name is used in messages in place of the path. */
int policy_parse(const char *name, const char *text, policy **ret, jw_error *err);
/* A policy with no quota, no ceiling, no allow list and no setting (what an absent file
 * means). NULL when out of memory. */
policy *policy_new_empty(void);
/* Accepts NULL. */
void policy_free(policy *p);

/* The [server] settings in file order. */
size_t policy_n_settings(const policy *p);
const policy_setting *policy_setting_at(const policy *p, size_t i); /* NULL past the end */

/* The quota of owner (may be NULL) with role (the auth role name "admin" or "viewer"; any other
 * value or NULL has no role quota). Per field: [owner X] if it sets it, else [role R], else
 * [quota], else 0. A binary search over the owners; thread-safe (the policy is immutable). */
void policy_quota_for(const policy *p, const char *owner, const char *role, policy_quota *ret);
/* The ceilings; never NULL, lives as long as p. */
const policy_ceiling *policy_ceilings(const policy *p);
/* Whether a job may run the executable at path: always with no [allow] path; otherwise path
 * must be absolute, have no "." or ".." component, no "//", not end with '/', and either equal
 * a file entry or start with a directory entry. The caller passes the path that will be
 * executed (a name looked up on PATH must be resolved first). */
bool policy_command_allowed(const policy *p, const char *path);

/* Counts for a log line at start-up. */
size_t policy_n_owners(const policy *p);
size_t policy_n_allow(const policy *p);

#endif
