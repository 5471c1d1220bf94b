/* Helpers shared by the files of the cgroup module (and its unit tests); not a public API. */
#ifndef JW_CGROUP_CGROUP_INTERNAL_H
#define JW_CGROUP_CGROUP_INTERNAL_H

#include "cgroup/cgroup.h"

#define CGROUP_PATH_MAX         4096
#define CGROUP_MAJMIN_MAX       24 /* "4095:1048575" and the NUL, with room */
#define CGROUP_DEFAULT_SYS_ROOT "/sys"

/* util/cleanup.h has no generic form; this one takes a type's own free-pointer helper. */
#ifndef _cleanup_
#define _cleanup_(f) __attribute__((cleanup(f)))
#endif

/* Resolves one configured io device, "MAJ:MIN" or a path to a block device node, to the "MAJ:MIN"
 * of its whole disk, using <sys_root>/dev/block/MAJ:MIN (a partition's directory has a
 * "partition" file and sits inside its disk's directory). FAILED_PRECONDITION when the device
 * does not exist or is not a block device. */
int cgroup_resolve_io_device(const char *sys_root, const char *spec, char *ret_majmin, size_t size,
                             jw_error *err);

/* Lists every whole, non-virtual disk of <sys_root>/block, sorted by device number: entries
 * without a "device" link (loop, ram, dm-, zram, nbd, md) and hidden ones (NVMe multipath paths)
 * are skipped. Fails with FAILED_PRECONDITION when there are more than `max`. */
int cgroup_detect_io_devices(const char *sys_root, char (*ret)[CGROUP_MAJMIN_MAX], size_t max,
                             size_t *ret_n, jw_error *err);

#endif
