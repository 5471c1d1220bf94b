/* What the server trusts must belong to it: the data directory (where the staged TLS copy, job
 * output and working directories live) and the TLS files it is started with. A job, or any
 * user other than root and the server's own, must not be able to replace them.
 *
 * The rule is OpenSSH's for its keys and authorized_keys (safe_path): the file and every
 * directory above it are owned by root or the server's user and are not group- or
 * world-writable. One exception, as for files under /tmp: a directory writable by others is
 * acceptable when it is sticky and owned by root, because then no one else can rename or
 * delete an entry the server owns in it.
 */
#ifndef JW_DAEMON_TRUST_H
#define JW_DAEMON_TRUST_H

#include "util/error.h"

#include <stdbool.h>
#include <sys/types.h>

/* Checks `path` (which must exist) and every directory above its real path for uid `owner`
 * (the server's euid). `what` names the path in messages ("--cert", "data directory").
 * FAILED_PRECONDITION naming the offending path, its owner and mode, and the command that fixes
 * it. */
int trust_check_path(const char *what, const char *path, uid_t owner, jw_error *err);

/* Creates the data directory (0700) if missing, then checks it with trust_check_path. */
int trust_data_dir(const char *dir, uid_t owner, jw_error *err);

/* Takes an exclusive lock on <dir>/jobworker.lock (flock, held until the process exits) and
 * writes our pid into it. A second server on the same directory gets FAILED_PRECONDITION naming
 * the holder's pid. Returns the lock's fd (close-on-exec) or a negative errno. */
int trust_lock_data_dir(const char *dir, jw_error *err);

#endif
