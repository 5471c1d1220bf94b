/* Per-job identities: a pool of uids (each used as the job's gid too) from a configured range,
 * handed out one per running job and taken back when the job has ended, like systemd's
 * DynamicUser.
 *
 * Released uids go to the back of the queue and are handed out again only after every other free
 * uid of the range (least recently used first): a uid comes back to a new job as late as
 * possible. A job cannot leave files for the next holder of its uid outside its working directory
 * (removed before the uid is released): job-init gives it a read-only view of the host and
 * private temporary directories, and no kernel keyring; see docs/security.md.
 *
 * Thread-safe: every call takes the pool's lock.
 */
#ifndef JW_SPAWN_UIDPOOL_H
#define JW_SPAWN_UIDPOOL_H

#include "util/error.h"

#include <stddef.h>
#include <stdint.h>

typedef struct uid_pool uid_pool;

/* The largest range a pool takes (uids are indexed with 32-bit offsets; 1 Mi uids is 8 MiB). */
#define UID_POOL_MAX_COUNT (1u << 20)

/* Parses "FIRST-LAST" (decimal, inclusive). The range must lie within 1..2147483646 (above that
 * uids meet signedness bugs; 0 is root) and must not contain 65534 (nobody) or 65535 (the 16-bit
 * -1), and hold at most UID_POOL_MAX_COUNT uids. Returns 0 or -EINVAL/-ERANGE; outputs are written
 * only on success. */
int uid_pool_parse_range(const char *text, uint32_t *ret_first, uint32_t *ret_count);

/* A pool of `count` uids starting at `first` (the rules of uid_pool_parse_range). INVALID_ARGUMENT
 * for a bad range, INTERNAL when out of memory. */
int uid_pool_new(uint32_t first, uint32_t count, uid_pool **ret, jw_error *err);
/* NULL is a no-op. */
void uid_pool_free(uid_pool *p);

/* Takes the least recently released free uid. RESOURCE_EXHAUSTED "no free job identity: all N uids
 * of FIRST-LAST are held by running jobs..." when none is free. */
int uid_pool_acquire(uid_pool *p, uint32_t *ret_uid, jw_error *err);

/* Gives a uid back. Returns 0, or -EINVAL for a uid outside the range or one that is not held
 * (a double release changes nothing). */
int uid_pool_release(uid_pool *p, uint32_t uid);

/* How many uids are free now. */
size_t uid_pool_n_free(uid_pool *p);

#endif
