/* Removal of a directory tree that someone else controls (a job's working directory), without
 * ever following a symbolic link: every step is relative to an fd opened with O_NOFOLLOW.
 *
 * The walk is iterative: any depth, no recursion, at most three fds open at a time. It goes
 * down with openat(O_NOFOLLOW|O_DIRECTORY) and back up through "..", which must be the
 * directory it came from (same st_dev and st_ino), so a tree that is renamed while it is being
 * removed stops the walk instead of sending it elsewhere. Memory grows with the number of
 * subdirectories still to visit along the current path, never with the number of files. It does
 * not cross into another file system (a mount inside the tree is left alone, -EXDEV).
 */
#ifndef JW_UTIL_RMTREE_H
#define JW_UTIL_RMTREE_H

#include <stddef.h>

/* Removes `name` (a directory or anything else; a symlink is unlinked, never followed) inside
 * the directory `parent` (an fd or AT_FDCWD). Removal continues past errors; returns 0 or the
 * first negative errno met. A `name` that does not exist is success. */
int rm_tree_at(int parent, const char *name);

/* The same, and *ret_failed (when not NULL; written on success and on failure) gets the number
 * of entries that could not be removed, the directories left holding them included. */
int rm_tree_at_count(int parent, const char *name, size_t *ret_failed);

#endif
