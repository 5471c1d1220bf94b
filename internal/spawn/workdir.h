/* Per-job working directories: <data-dir>/work/<id>, 0700 and owned by the job's user.
 *
 * <data-dir> and <data-dir>/work are traversable (0711) but not listable by job users, so a job
 * reaches its own directory and sees nobody else's. A job's directory holds whatever the job
 * made of it (symlinks included): it is removed without following any link, and only off the
 * supervisor's loop (removing a tree of 100,000s of files takes seconds).
 */
#ifndef JW_SPAWN_WORKDIR_H
#define JW_SPAWN_WORKDIR_H

#include "util/error.h"

#include <stddef.h>

/* At server start: chmod 0711 `data_dir`, creates <data_dir>/work (0711, chmod'ed when it exists)
 * and checks that uid:gid may traverse every directory from / down to it (uid < 0 or 0: no check).
 * Writes the work root's path to ret_root. Errors: INTERNAL "prepare '<root>': <errno text>";
 * FAILED_PRECONDITION "jobs run as '<user_name>' but cannot reach their working directories
 * under '<root>': ..." naming the directory that is in the way. */
int workdir_root_prepare(const char *data_dir, const char *user_name, long uid, long gid,
                         char *ret_root, size_t size, jw_error *err);

/* At server start, after workdir_root_prepare(): removes everything under `root`, which can only
 * be the leftovers of an earlier run. Returns how many entries were removed, or the first negative
 * errno met (removal goes on past it). */
int workdir_remove_stale(const char *root);

/* Creates <root>/<id> with mode 0700, owned by uid:gid when uid >= 0, and writes its path to
 * ret_path. INTERNAL with the path and the errno text on failure; nothing is left behind. */
int workdir_create(const char *root, const char *id, long uid, long gid, char *ret_path,
                   size_t size, jw_error *err);

/* Removes <root>/<id> and everything in it without following symlinks. A missing directory counts
 * as removed. Slow for big trees: never call it on the supervisor's loop. */
int workdir_remove(const char *root, const char *id);

#endif
