/* Block devices for io.max. The kernel accepts io.max only for whole disks (a partition's
 * MAJ:MIN is rejected with ENODEV), so every configured device is mapped to its disk through
 * sysfs, and autodetection keeps only real disks. */
#include "cgroup/cgroup-internal.h"

#include "util/cleanup.h"
#include "util/fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static void jw_closedirp(DIR **d)
{
    if (*d)
        closedir(*d);
}
#define _cleanup_closedir_ _cleanup_(jw_closedirp)

/* Reads a sysfs "dev" file ("8:0\n") relative to dirfd. */
static int read_dev_file(int dirfd, const char *path, unsigned *ret_major, unsigned *ret_minor)
{
    char buf[64];
    ssize_t n = read_file_at(dirfd, path, buf, sizeof(buf));
    if (n < 0)
        return (int)n;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    return cgroup_parse_majmin(buf, ret_major, ret_minor);
}

int cgroup_resolve_io_device(const char *sys_root, const char *spec, char *ret_majmin, size_t size,
                             jw_error *err)
{
    if (!spec || !*spec)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL, "empty io device");
    if (!sys_root)
        sys_root = CGROUP_DEFAULT_SYS_ROOT;

    unsigned maj, min;
    if (spec[0] == '/') {
        struct stat st;
        if (stat(spec, &st) < 0)
            return jw_error_errno_code(err, JW_FAILED_PRECONDITION, errno, "io device '%s'", spec);
        if (!S_ISBLK(st.st_mode))
            return jw_error_set(err, JW_FAILED_PRECONDITION, -ENOTBLK,
                                "io device '%s' is not a block device", spec);
        maj = major(st.st_rdev);
        min = minor(st.st_rdev);
    } else if (cgroup_parse_majmin(spec, &maj, &min) < 0) {
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "io device '%s' is neither MAJ:MIN nor a path to a block device", spec);
    }

    _cleanup_close_ int sysfd = open(sys_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sysfd < 0)
        return jw_error_errno_code(err, JW_FAILED_PRECONDITION, errno, "open '%s'", sys_root);
    char rel[64];
    snprintf(rel, sizeof(rel), "dev/block/%u:%u", maj, min);
    /* Opening follows the symlink into /sys/devices, so ".." below is the real parent. */
    _cleanup_close_ int devfd = openat(sysfd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (devfd < 0) {
        int r = -errno;
        return jw_error_errno_code(err, JW_FAILED_PRECONDITION, r,
                                   "io device '%s' (%u:%u) is not a block device: '%s/%s'", spec,
                                   maj, min, sys_root, rel);
    }
    bool partition = faccessat(devfd, "partition", F_OK, 0) == 0;
    unsigned dmaj, dmin;
    int r = read_dev_file(devfd, partition ? "../dev" : "dev", &dmaj, &dmin);
    if (r < 0)
        return jw_error_errno_code(err, JW_FAILED_PRECONDITION, r,
                                   "io device '%s': cannot read the %s's number under '%s/%s'",
                                   spec, partition ? "disk of the partition" : "device", sys_root,
                                   rel);
    int n = snprintf(ret_majmin, size, "%u:%u", dmaj, dmin);
    if (n < 0 || (size_t)n >= size)
        return jw_error_set(err, JW_INTERNAL, -ENOBUFS, "io device '%s': buffer too small", spec);
    return 0;
}

static int cmp_devnum(const void *a, const void *b)
{
    const unsigned *x = a, *y = b;
    if (x[0] != y[0])
        return x[0] < y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : x[1] > y[1];
}

int cgroup_detect_io_devices(const char *sys_root, char (*ret)[CGROUP_MAJMIN_MAX], size_t max,
                             size_t *ret_n, jw_error *err)
{
    if (!sys_root)
        sys_root = CGROUP_DEFAULT_SYS_ROOT;
    _cleanup_free_ char *block = NULL;
    if (asprintf(&block, "%s/block", sys_root) < 0)
        return jw_error_set(err, JW_RESOURCE_EXHAUSTED, -ENOMEM, "out of memory");
    int fd = open(block, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return jw_error_errno_code(err, JW_FAILED_PRECONDITION, errno, "open '%s'", block);
    _cleanup_closedir_ DIR *d = fdopendir(fd);
    if (!d) {
        int r = -errno;
        close(fd);
        return jw_error_errno_code(err, JW_INTERNAL, r, "read '%s'", block);
    }

    /* Collected as numbers first so that the result does not depend on readdir order. */
    unsigned found[CGROUP_MAX_IO_DEVICES][2];
    size_t cap = max < CGROUP_MAX_IO_DEVICES ? max : CGROUP_MAX_IO_DEVICES;
    size_t n = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de)
            break;
        if (de->d_name[0] == '.')
            continue;
        char path[NAME_MAX + 16];
        /* Virtual devices (loop, ram, dm-, zram, nbd, md) have no "device" link to hardware;
         * throttling them would also throttle twice what reaches the disk beneath. */
        snprintf(path, sizeof(path), "%s/device", de->d_name);
        if (faccessat(dirfd(d), path, F_OK, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        /* NVMe multipath exposes hidden per-path nodes beside the real namespace. */
        char hidden[8];
        snprintf(path, sizeof(path), "%s/hidden", de->d_name);
        if (read_file_at(dirfd(d), path, hidden, sizeof(hidden)) > 0 && hidden[0] == '1')
            continue;
        snprintf(path, sizeof(path), "%s/dev", de->d_name);
        unsigned maj, min;
        int r = read_dev_file(dirfd(d), path, &maj, &min);
        if (r < 0)
            return jw_error_errno_code(err, JW_FAILED_PRECONDITION, r, "read '%s/%s'", block, path);
        if (n >= cap)
            /* Silently limiting only some disks would pretend a limit that is not there. */
            return jw_error_set(err, JW_FAILED_PRECONDITION, -E2BIG,
                                "'%s' lists more than %zu disks; configure the io devices to "
                                "limit explicitly",
                                block, cap);
        found[n][0] = maj;
        found[n][1] = min;
        n++;
    }
    if (errno != 0)
        return jw_error_errno_code(err, JW_INTERNAL, errno, "read '%s'", block);
    qsort(found, n, sizeof(found[0]), cmp_devnum);
    for (size_t i = 0; i < n; i++)
        snprintf(ret[i], CGROUP_MAJMIN_MAX, "%u:%u", found[i][0], found[i][1]);
    *ret_n = n;
    return 0;
}
