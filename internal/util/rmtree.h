/* Removal of a directory tree that someone else controls (a job's working directory), without
 * ever following a symbolic link: every step is relative to an fd opened with O_NOFOLLOW. */
#ifndef JW_UTIL_RMTREE_H
#define JW_UTIL_RMTREE_H

/* Removes `name` (a directory or anything else) inside the directory `dirfd`. Depth is bounded;
 * returns 0 or the first negative errno met (removal continues past errors). */
int rm_tree_at(int parent, const char *name);

#endif
