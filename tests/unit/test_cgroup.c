/* Unit tests of internal/cgroup: every interface-file format it writes or parses, and the manager
 * and job life cycle against a temporary directory that fakes a cgroup2 tree and a sysfs.
 *
 * The fake cgroup tree uses cgroup_config.fake_fs: writes create the files a real cgroupfs would
 * have created at mkdir, so a test reads back exactly what the kernel would have been sent.
 * Files the kernel fills (cpu.stat, cgroup.events, ...) are written by the tests. The last test
 * checks the real /sys/fs/cgroup of the host running the tests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cgroup/cgroup-internal.h"
#include "util/cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ---- */

/* A path that lives until pathf() has been called 16 more times; long-lived paths are copied. */
typedef struct fixture {
    char tmp[64];      /* mkdtemp directory */
    char root[128];    /* tmp/cg: the fake cgroup2 mount */
    char sys[128];     /* tmp/sys: the fake sysfs */
    cgroup_config cfg; /* points into this fixture */
} fixture;

static char *pathf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *pathf(const char *fmt, ...)
{
    static __thread char bufs[16][1024];
    static __thread int next;
    char *b = bufs[next++ % 16];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof(bufs[0]), fmt, ap);
    va_end(ap);
    return b;
}

static void put(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* The whole file as a static string; "<missing>" when it does not exist. */
static const char *get(const char *path)
{
    static char buf[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return "<missing>";
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    assert_true(n >= 0);
    buf[n] = '\0';
    return buf;
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static void mkd(const char *path)
{
    assert_int_equal(mkdir(path, 0755), 0);
}

static void lnk(const char *target, const char *path)
{
    assert_int_equal(symlink(target, path), 0);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* A disk (or partition) directory of the fake sysfs. */
static void sys_dev(const char *dir, const char *majmin, bool device, bool partition)
{
    mkd(dir);
    put(pathf("%s/dev", dir), pathf("%s\n", majmin));
    if (device)
        lnk("../../../pci0000:00", pathf("%s/device", dir));
    if (partition)
        put(pathf("%s/partition", dir), "1\n");
}

/* A fake cgroup2 root with every controller, nothing enabled yet, and a fake sysfs with:
 *   sda 8:0 (partition sda2 8:2), vda 254:0 (partition vda1 254:1), nvme0n1 259:0 (real),
 *   nvme0c0n1 259:1 (hidden multipath path), loop0 7:0 and zram0 253:0 (virtual, no device). */
static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    strcpy(f->tmp, "/tmp/jw-test-cgroup-XXXXXX");
    assert_non_null(mkdtemp(f->tmp));
    snprintf(f->root, sizeof(f->root), "%s/cg", f->tmp);
    snprintf(f->sys, sizeof(f->sys), "%s/sys", f->tmp);
    mkd(f->root);
    put(pathf("%s/cgroup.controllers", f->root), "cpuset cpu io memory hugetlb pids rdma misc\n");
    put(pathf("%s/cgroup.subtree_control", f->root), "");

    const char *s = f->sys;
    mkd(s);
    mkd(pathf("%s/devices", s));
    mkd(pathf("%s/devices/pci0000:00", s));
    mkd(pathf("%s/devices/virtual", s));
    mkd(pathf("%s/devices/virtual/block", s));
    mkd(pathf("%s/devices/pci0000:00/block", s));
    char pci[512];
    snprintf(pci, sizeof(pci), "%s/devices/pci0000:00/block", s);
    sys_dev(pathf("%s/sda", pci), "8:0", true, false);
    sys_dev(pathf("%s/sda/sda2", pci), "8:2", false, true);
    sys_dev(pathf("%s/vda", pci), "254:0", true, false);
    sys_dev(pathf("%s/vda/vda1", pci), "254:1", false, true);
    sys_dev(pathf("%s/nvme0n1", pci), "259:0", true, false);
    put(pathf("%s/nvme0n1/hidden", pci), "0\n");
    sys_dev(pathf("%s/nvme0c0n1", pci), "259:1", true, false);
    put(pathf("%s/nvme0c0n1/hidden", pci), "1\n");
    sys_dev(pathf("%s/devices/virtual/block/loop0", s), "7:0", false, false);
    sys_dev(pathf("%s/devices/virtual/block/zram0", s), "253:0", false, false);

    mkd(pathf("%s/block", s));
    const char *disks[] = {"sda", "vda", "nvme0n1", "nvme0c0n1"};
    for (size_t i = 0; i < ARRAY_SIZE(disks); i++)
        lnk(pathf("../devices/pci0000:00/block/%s", disks[i]), pathf("%s/block/%s", s, disks[i]));
    lnk("../devices/virtual/block/loop0", pathf("%s/block/loop0", s));
    lnk("../devices/virtual/block/zram0", pathf("%s/block/zram0", s));

    mkd(pathf("%s/dev", s));
    mkd(pathf("%s/dev/block", s));
    const struct {
        const char *num, *target;
    } nodes[] = {
        {"8:0", "pci0000:00/block/sda"},       {"8:2", "pci0000:00/block/sda/sda2"},
        {"254:0", "pci0000:00/block/vda"},     {"254:1", "pci0000:00/block/vda/vda1"},
        {"259:0", "pci0000:00/block/nvme0n1"}, {"259:1", "pci0000:00/block/nvme0c0n1"},
        {"7:0", "virtual/block/loop0"},        {"253:0", "virtual/block/zram0"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(nodes); i++)
        lnk(pathf("../../devices/%s", nodes[i].target), pathf("%s/dev/block/%s", s, nodes[i].num));

    f->cfg = (cgroup_config){
        .root = f->root,
        .parent = "/jobworker",
        .skip_fs_check = true,
        .fake_fs = true,
        .sys_root = f->sys,
        .move_self = false,
    };
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    nftw(f->tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static cgroup_manager *new_manager(fixture *f)
{
    cgroup_manager *m = NULL;
    jw_error err = JW_ERROR_INIT;
    int r = cgroup_manager_new(&f->cfg, &m, &err);
    if (r < 0)
        fail_msg("cgroup_manager_new: %d %s", r, err.msg);
    return m;
}

/* ---- formats and parsers ---- */

static void test_format_cpu_max(void **state)
{
    (void)state;
    char buf[64];
    const struct {
        int32_t pct;
        const char *want;
    } cases[] = {
        {0, "max 100000"},      {1, "1000 100000"},     {20, "20000 100000"},
        {100, "100000 100000"}, {250, "250000 100000"}, {INT32_MAX, "2147483647000 100000"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        assert_int_equal(cgroup_format_cpu_max(cases[i].pct, buf, sizeof(buf)), 0);
        assert_string_equal(buf, cases[i].want);
    }
    assert_int_equal(cgroup_format_cpu_max(-1, buf, sizeof(buf)), -EINVAL);
    assert_int_equal(cgroup_format_cpu_max(20, buf, 12), -ENOBUFS); /* needs 12 + NUL */
    assert_int_equal(cgroup_format_cpu_max(20, buf, 13), 0);
}

static void test_format_io_max(void **state)
{
    (void)state;
    char buf[64];
    assert_int_equal(cgroup_format_io_max("8:0", 4194304, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "8:0 rbps=4194304 wbps=4194304");
    assert_int_equal(cgroup_format_io_max("259:16", 1, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "259:16 rbps=1 wbps=1");
    assert_int_equal(cgroup_format_io_max("8:0", 0, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "8:0 rbps=max wbps=max");
    const char *bad[] = {"", "8", "8:", ":0", "a:b", "8:0x", "-8:0", "8:0 ", "4096:0", "8:1048576"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        assert_int_equal(cgroup_format_io_max(bad[i], 1024, buf, sizeof(buf)), -EINVAL);
    assert_int_equal(cgroup_format_io_max(NULL, 1024, buf, sizeof(buf)), -EINVAL);
    assert_int_equal(cgroup_format_io_max("8:0", -1, buf, sizeof(buf)), -EINVAL);
    assert_int_equal(cgroup_format_io_max("8:0", 4194304, buf, 10), -ENOBUFS);
}

static void test_parse_majmin(void **state)
{
    (void)state;
    unsigned maj = 99, min = 99;
    assert_int_equal(cgroup_parse_majmin("8:16", &maj, &min), 0);
    assert_int_equal(maj, 8);
    assert_int_equal(min, 16);
    assert_int_equal(cgroup_parse_majmin("4095:1048575", &maj, &min), 0);
    assert_int_equal(maj, 4095);
    assert_int_equal(min, 1048575);
    assert_int_equal(cgroup_parse_majmin("8:16\n", &maj, &min), -EINVAL);
    assert_int_equal(cgroup_parse_majmin("+8:1", &maj, &min), -EINVAL);
    assert_int_equal(maj, 4095); /* untouched on failure */
}

static const char cpu_stat[] = "usage_usec 123456\n"
                               "user_usec 100000\n"
                               "system_usec 23456\n"
                               "nr_periods 40\n"
                               "nr_throttled 7\n"
                               "throttled_usec 9999"; /* last line without newline */

static void test_parse_keyed(void **state)
{
    (void)state;
    int64_t v = -1;
    assert_int_equal(cgroup_parse_keyed(cpu_stat, "usage_usec", &v), 0);
    assert_int_equal(v, 123456);
    assert_int_equal(cgroup_parse_keyed(cpu_stat, "nr_throttled", &v), 0);
    assert_int_equal(v, 7);
    assert_int_equal(cgroup_parse_keyed(cpu_stat, "throttled_usec", &v), 0);
    assert_int_equal(v, 9999);

    /* Absent keys, including prefixes and extensions of present ones. */
    v = -1;
    assert_int_equal(cgroup_parse_keyed(cpu_stat, "usage", &v), -ENOENT);
    assert_int_equal(cgroup_parse_keyed(cpu_stat, "usage_usec_total", &v), -ENOENT);
    assert_int_equal(cgroup_parse_keyed(cpu_stat, "nr_bursts", &v), -ENOENT);
    assert_int_equal(cgroup_parse_keyed("", "populated", &v), -ENOENT);
    assert_int_equal(v, -1);

    const char events[] = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 2\noom_group_kill 1\n";
    assert_int_equal(cgroup_parse_keyed(events, "oom_kill", &v), 0);
    assert_int_equal(v, 2);
    assert_int_equal(cgroup_parse_keyed(events, "oom", &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(cgroup_parse_keyed("populated 1\nfrozen 0\n", "populated", &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(cgroup_parse_keyed("populated 0", "populated", &v), 0);
    assert_int_equal(v, 0);

    /* Malformed values of the key asked for. */
    v = -1;
    const char *bad[] = {"populated\n",    "populated x\n",   "populated 1x\n",
                         "populated -1\n", "populated 1 2\n", "populated 99999999999999999999\n",
                         "populated \n"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        assert_int_equal(cgroup_parse_keyed(bad[i], "populated", &v), -EINVAL);
    assert_int_equal(v, -1);
    /* A malformed line of another key does not matter. */
    assert_int_equal(cgroup_parse_keyed("frozen ?\npopulated 1\n", "populated", &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(cgroup_parse_keyed(NULL, "populated", &v), -EINVAL);
    assert_int_equal(cgroup_parse_keyed("x 1", "", &v), -EINVAL);
}

static void test_parse_io_stat(void **state)
{
    (void)state;
    int64_t r = -1, w = -1;
    const char text[] =
        "8:0 rbytes=1000 wbytes=2000 rios=1 wios=2 dbytes=0 dios=0\n"
        "254:0 rbytes=30 wbytes=40 rios=3 wios=4 dbytes=7 dios=1\n"
        "259:0 rbytes=500 wbytes=0 rios=5 wios=0 dbytes=0 dios=0"; /* no final newline */
    assert_int_equal(cgroup_parse_io_stat(text, &r, &w), 0);
    assert_int_equal(r, 1530);
    assert_int_equal(w, 2040);

    assert_int_equal(cgroup_parse_io_stat("", &r, &w), 0);
    assert_int_equal(r, 0);
    assert_int_equal(w, 0);
    /* A device named like a field is not counted; lines without the fields count 0. */
    assert_int_equal(cgroup_parse_io_stat("8:0 rios=9\n8:16 rbytes=5\n", &r, &w), 0);
    assert_int_equal(r, 5);
    assert_int_equal(w, 0);

    r = w = -1;
    assert_int_equal(cgroup_parse_io_stat("8:0 rbytes=x wbytes=1\n", &r, &w), -EINVAL);
    assert_int_equal(cgroup_parse_io_stat("8:0 rbytes= wbytes=1\n", &r, &w), -EINVAL);
    assert_int_equal(cgroup_parse_io_stat("8:0 rbytes=9223372036854775807\n"
                                          "8:16 rbytes=1\n",
                                          &r, &w),
                     -EINVAL); /* the sum overflows */
    assert_int_equal(r, -1);
    assert_int_equal(w, -1);
}

static void test_parse_controllers(void **state)
{
    (void)state;
    unsigned mask = 0;
    assert_int_equal(
        cgroup_parse_controllers("cpuset cpu io memory hugetlb pids rdma misc\n", &mask), 0);
    assert_int_equal(mask,
                     CGROUP_CTRL_CPU | CGROUP_CTRL_IO | CGROUP_CTRL_MEMORY | CGROUP_CTRL_PIDS);
    assert_int_equal(cgroup_parse_controllers("memory pids", &mask), 0);
    assert_int_equal(mask, CGROUP_CTRL_MEMORY | CGROUP_CTRL_PIDS);
    assert_int_equal(cgroup_parse_controllers("\n", &mask), 0);
    assert_int_equal(mask, 0);
    /* Names are whole words: cpuset and cpuacct are not cpu. */
    assert_int_equal(cgroup_parse_controllers("cpuset cpuacct ioo memoryx", &mask), 0);
    assert_int_equal(mask, 0);

    char buf[64];
    assert_int_equal(cgroup_format_controllers(CGROUP_CTRL_CPU | CGROUP_CTRL_MEMORY |
                                                   CGROUP_CTRL_IO | CGROUP_CTRL_PIDS,
                                               "+", buf, sizeof(buf)),
                     0);
    assert_string_equal(buf, "+cpu +memory +io +pids");
    assert_int_equal(
        cgroup_format_controllers(CGROUP_CTRL_PIDS | CGROUP_CTRL_CPU, NULL, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "cpu pids");
    assert_int_equal(cgroup_format_controllers(0, "+", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "");
    assert_int_equal(cgroup_format_controllers(CGROUP_CTRL_MEMORY, "+", buf, 5), -ENOBUFS);
}

static void test_parse_proc_cgroup(void **state)
{
    (void)state;
    char path[256];
    assert_int_equal(
        cgroup_parse_proc_cgroup("0::/system.slice/jobworker.service\n", path, sizeof(path)), 0);
    assert_string_equal(path, "/system.slice/jobworker.service");

    /* Hybrid: the v2 line sits among v1 lines (this is what a cgroup v1/hybrid host shows). */
    const char hybrid[] = "12:pids:/user.slice\n"
                          "4:memory:/process_api/9f4aede8\n"
                          "1:name=systemd:/user.slice/session-1.scope\n"
                          "0::/user.slice/session-1.scope\n"
                          "2:cpu,cpuacct:/\n";
    assert_int_equal(cgroup_parse_proc_cgroup(hybrid, path, sizeof(path)), 0);
    assert_string_equal(path, "/user.slice/session-1.scope");
    assert_int_equal(cgroup_parse_proc_cgroup("0::/", path, sizeof(path)), 0);
    assert_string_equal(path, "/");

    strcpy(path, "untouched");
    assert_int_equal(cgroup_parse_proc_cgroup("4:memory:/a\n1:cpu:/\n", path, sizeof(path)),
                     -ENOENT); /* pure v1 */
    assert_int_equal(cgroup_parse_proc_cgroup("", path, sizeof(path)), -ENOENT);
    assert_int_equal(cgroup_parse_proc_cgroup("0::relative\n", path, sizeof(path)), -EINVAL);
    assert_int_equal(cgroup_parse_proc_cgroup("0::\n", path, sizeof(path)), -EINVAL);
    assert_int_equal(cgroup_parse_proc_cgroup("0::/abcdef\n", path, 7), -ENAMETOOLONG);
    assert_string_equal(path, "untouched");
}

static void test_derive_parent(void **state)
{
    (void)state;
    char path[256];
    const struct {
        const char *text, *want;
    } cases[] = {
        {"0::/\n", "/jobworker"},
        {"0::/system.slice/jobworker.service\n", "/system.slice/jobworker.service"},
        {"0::/system.slice/jobworker.service/supervisor\n", "/system.slice/jobworker.service"},
        {"0::/jobworker/supervisor\n", "/jobworker"},
        {"0::/supervisor\n", "/jobworker"},
        {"0::/a/not-supervisor\n", "/a/not-supervisor"},
        {"9:name=systemd:/x\n0::/\n", "/jobworker"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        assert_int_equal(cgroup_derive_parent(cases[i].text, path, sizeof(path)), 0);
        assert_string_equal(path, cases[i].want);
    }
    assert_int_equal(cgroup_derive_parent("1:cpu:/\n", path, sizeof(path)), -ENOENT);
    assert_int_equal(cgroup_derive_parent("0::/\n", path, 5), -ENAMETOOLONG);
}

static void test_parse_int_or_max(void **state)
{
    (void)state;
    int64_t v = -1;
    assert_int_equal(cgroup_parse_int_or_max("max\n", &v), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(cgroup_parse_int_or_max("max", &v), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(cgroup_parse_int_or_max("1048576\n", &v), 0);
    assert_int_equal(v, 1048576);
    assert_int_equal(cgroup_parse_int_or_max("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(cgroup_parse_int_or_max("9223372036854775807\n", &v), 0);
    assert_true(v == INT64_MAX);
    v = -1;
    const char *bad[] = {"",  "\n", "maximum", "ma", "-1", "12 3", "0x10", "9223372036854775808",
                         " 5"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        assert_int_equal(cgroup_parse_int_or_max(bad[i], &v), -EINVAL);
    assert_int_equal(v, -1);
}

/* ---- io devices against the fake sysfs ---- */

static void test_resolve_io_device(void **state)
{
    fixture *f = *state;
    char out[CGROUP_MAJMIN_MAX];
    jw_error err = JW_ERROR_INIT;
    const struct {
        const char *spec, *want;
    } ok[] = {{"8:0", "8:0"}, {"8:2", "8:0"}, {"254:1", "254:0"}, {"259:0", "259:0"}};
    for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
        assert_int_equal(cgroup_resolve_io_device(f->sys, ok[i].spec, out, sizeof(out), &err), 0);
        assert_string_equal(out, ok[i].want);
    }

    assert_int_equal(cgroup_resolve_io_device(f->sys, "9:9", out, sizeof(out), &err), -ENOENT);
    assert_int_equal(err.code, JW_FAILED_PRECONDITION);
    assert_non_null(strstr(err.msg, "'9:9'"));
    assert_int_equal(cgroup_resolve_io_device(f->sys, "sda", out, sizeof(out), &err), -EINVAL);
    assert_int_equal(err.code, JW_INVALID_ARGUMENT);
    assert_int_equal(cgroup_resolve_io_device(f->sys, "/dev/null", out, sizeof(out), &err),
                     -ENOTBLK);
    assert_non_null(strstr(err.msg, "'/dev/null' is not a block device"));
    assert_int_equal(cgroup_resolve_io_device(f->sys, "/nonexistent/dev", out, sizeof(out), &err),
                     -ENOENT);

    /* A device node path: a partition node resolves through st_rdev to its disk. */
    char node[512];
    snprintf(node, sizeof(node), "%s/vda1", f->tmp);
    if (mknod(node, S_IFBLK | 0600, makedev(254, 1)) < 0) {
        char ebuf[128];
        print_message("skipped: device-node part of test_resolve_io_device: mknod: %s\n",
                      jw_strerror(errno, ebuf, sizeof(ebuf)));
        return;
    }
    assert_int_equal(cgroup_resolve_io_device(f->sys, node, out, sizeof(out), &err), 0);
    assert_string_equal(out, "254:0");
}

static void test_detect_io_devices(void **state)
{
    fixture *f = *state;
    char devs[CGROUP_MAX_IO_DEVICES][CGROUP_MAJMIN_MAX];
    size_t n = 99;
    jw_error err = JW_ERROR_INIT;
    /* loop0, zram0 (no device link) and the hidden nvme0c0n1 are skipped; numeric order. */
    assert_int_equal(cgroup_detect_io_devices(f->sys, devs, CGROUP_MAX_IO_DEVICES, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_string_equal(devs[0], "8:0");
    assert_string_equal(devs[1], "254:0");
    assert_string_equal(devs[2], "259:0");

    /* Too many disks is an error, not a silent subset. */
    n = 99;
    assert_int_equal(cgroup_detect_io_devices(f->sys, devs, 2, &n, &err), -E2BIG);
    assert_int_equal(err.code, JW_FAILED_PRECONDITION);
    assert_int_equal(n, 99);

    assert_int_equal(
        cgroup_detect_io_devices(pathf("%s/nosys", f->tmp), devs, CGROUP_MAX_IO_DEVICES, &n, &err),
        -ENOENT);
}

/* ---- the manager against the fake tree ---- */

static void test_manager_new(void **state)
{
    fixture *f = *state;
    cgroup_manager *m = new_manager(f);
    assert_int_equal(cgroup_manager_controllers(m),
                     CGROUP_CTRL_CPU | CGROUP_CTRL_MEMORY | CGROUP_CTRL_IO | CGROUP_CTRL_PIDS);
    assert_string_equal(cgroup_manager_parent_path(m), pathf("%s/jobworker", f->root));
    /* A child of the root: controllers are enabled in the root first, then in the parent. */
    assert_string_equal(get(pathf("%s/cgroup.subtree_control", f->root)),
                        "+cpu +memory +io +pids\n");
    assert_string_equal(get(pathf("%s/jobworker/cgroup.subtree_control", f->root)),
                        "+cpu +memory +io +pids\n");
    assert_false(exists(pathf("%s/jobworker/supervisor", f->root)));
    /* io devices were autodetected from the fake sysfs. */
    assert_int_equal(cgroup_manager_n_io_devices(m), 3);
    assert_string_equal(cgroup_manager_io_device(m, 0), "8:0");
    assert_string_equal(cgroup_manager_io_device(m, 2), "259:0");
    assert_null(cgroup_manager_io_device(m, 3));
    cgroup_manager_free(m);
    /* Freeing the manager removes nothing: the parent may hold the server itself. */
    assert_true(exists(pathf("%s/jobworker", f->root)));

    cgroup_manager_free(NULL);
    assert_int_equal(cgroup_manager_controllers(NULL), 0);
    assert_null(cgroup_manager_parent_path(NULL));
}

static void test_manager_root_partly_enabled(void **state)
{
    fixture *f = *state;
    /* Only the missing controller is enabled in the root. */
    put(pathf("%s/cgroup.subtree_control", f->root), "cpu memory pids\n");
    cgroup_manager *m = new_manager(f);
    assert_string_equal(get(pathf("%s/cgroup.subtree_control", f->root)), "+io\n");
    cgroup_manager_free(m);

    /* Nothing is written when everything is enabled already (the file keeps the kernel's
     * format), and a second manager on an existing parent works. */
    put(pathf("%s/cgroup.subtree_control", f->root), "cpu io memory pids\n");
    m = new_manager(f);
    assert_string_equal(get(pathf("%s/cgroup.subtree_control", f->root)), "cpu io memory pids\n");
    cgroup_manager_free(m);
}

static void test_manager_move_self(void **state)
{
    fixture *f = *state;
    f->cfg.move_self = true;
    f->cfg.parent = "/jobworker//"; /* normalized */
    cgroup_manager *m = new_manager(f);
    assert_string_equal(cgroup_manager_parent_path(m), pathf("%s/jobworker", f->root));
    assert_string_equal(get(pathf("%s/jobworker/supervisor/cgroup.procs", f->root)), "0\n");
    assert_string_equal(get(pathf("%s/jobworker/cgroup.subtree_control", f->root)),
                        "+cpu +memory +io +pids\n");
    cgroup_manager_free(m);
}

static void test_manager_missing_controllers(void **state)
{
    fixture *f = *state;
    put(pathf("%s/cgroup.controllers", f->root), "cpuset cpu io\n");
    cgroup_manager *m = NULL;
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(cgroup_manager_new(&f->cfg, &m, &err), -EOPNOTSUPP);
    assert_null(m);
    assert_int_equal(err.code, JW_FAILED_PRECONDITION);
    assert_non_null(strstr(err.msg, "'memory pids'"));
    assert_non_null(strstr(err.msg, "'cpuset cpu io'"));
    assert_non_null(strstr(err.msg, "--no-cgroups"));
    /* Nothing was created or enabled. */
    assert_false(exists(pathf("%s/jobworker", f->root)));
    assert_string_equal(get(pathf("%s/cgroup.subtree_control", f->root)), "");

    /* Not a cgroup root at all. */
    unlink(pathf("%s/cgroup.controllers", f->root));
    assert_int_equal(cgroup_manager_new(&f->cfg, &m, &err), -ENOENT);
    assert_int_equal(err.code, JW_FAILED_PRECONDITION);
    assert_non_null(strstr(err.msg, "--no-cgroups"));

    f->cfg.root = pathf("%s/nonexistent", f->tmp);
    assert_int_equal(cgroup_manager_new(&f->cfg, &m, &err), -ENOENT);
    assert_int_equal(err.code, JW_FAILED_PRECONDITION);
    assert_non_null(strstr(err.msg, "--no-cgroups"));
}

static void test_manager_fs_check(void **state)
{
    fixture *f = *state;
    cgroup_manager *m = NULL;
    jw_error err = JW_ERROR_INIT;
    /* Without skip_fs_check the temporary directory is rightly not a cgroup2 mount. */
    f->cfg.skip_fs_check = false;
    f->cfg.fake_fs = false;
    assert_int_equal(cgroup_manager_new(&f->cfg, &m, &err), -EOPNOTSUPP);
    assert_int_equal(err.code, JW_FAILED_PRECONDITION);
    assert_non_null(strstr(err.msg, "--no-cgroups"));
    assert_false(exists(pathf("%s/jobworker", f->root)));

    /* A fake tree is refused unless the file system check is off. */
    f->cfg.fake_fs = true;
    assert_int_equal(cgroup_manager_new(&f->cfg, &m, &err), -EINVAL);
    assert_int_equal(err.code, JW_INVALID_ARGUMENT);
    assert_null(m);
}

static void test_manager_io_optional(void **state)
{
    fixture *f = *state;
    put(pathf("%s/cgroup.controllers", f->root), "cpu memory pids\n");
    cgroup_manager *m = new_manager(f);
    assert_int_equal(cgroup_manager_controllers(m),
                     CGROUP_CTRL_CPU | CGROUP_CTRL_MEMORY | CGROUP_CTRL_PIDS);
    assert_int_equal(cgroup_manager_n_io_devices(m), 0);
    assert_string_equal(get(pathf("%s/jobworker/cgroup.subtree_control", f->root)),
                        "+cpu +memory +pids\n");

    /* An io limit cannot be applied: refused, never pretended. */
    cgroup_job *cg = NULL;
    jw_error err = JW_ERROR_INIT;
    cgroup_limits lim = {.io_bps = 1048576};
    assert_int_equal(cgroup_job_create(m, "a", &lim, &cg, &err), -EOPNOTSUPP);
    assert_int_equal(err.code, JW_FAILED_PRECONDITION);
    assert_non_null(strstr(err.msg, "io_bps 1048576"));
    assert_false(exists(pathf("%s/jobworker/job-a", f->root)));
    cgroup_manager_free(m);

    /* Configured io devices without the io controller are a configuration error. */
    const char *devs[] = {"8:0"};
    f->cfg.io_devices = devs;
    f->cfg.n_io_devices = 1;
    assert_int_equal(cgroup_manager_new(&f->cfg, &m, &err), -EOPNOTSUPP);
    assert_int_equal(err.code, JW_FAILED_PRECONDITION);
}

static void test_manager_io_devices_configured(void **state)
{
    fixture *f = *state;
    /* Partitions resolve to their disks; a disk named twice counts once. */
    const char *devs[] = {"8:2", "254:1", "8:0"};
    f->cfg.io_devices = devs;
    f->cfg.n_io_devices = ARRAY_SIZE(devs);
    cgroup_manager *m = new_manager(f);
    assert_int_equal(cgroup_manager_n_io_devices(m), 2);
    assert_string_equal(cgroup_manager_io_device(m, 0), "8:0");
    assert_string_equal(cgroup_manager_io_device(m, 1), "254:0");
    cgroup_manager_free(m);

    /* A bad device fails before anything is created. */
    const char *bad[] = {"8:0", "9:9"};
    f->cfg.io_devices = bad;
    f->cfg.n_io_devices = ARRAY_SIZE(bad);
    f->cfg.parent = "/other";
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(cgroup_manager_new(&f->cfg, &m, &err), -ENOENT);
    assert_int_equal(err.code, JW_FAILED_PRECONDITION);
    assert_non_null(strstr(err.msg, "'9:9'"));
    assert_false(exists(pathf("%s/other", f->root)));
}

static void test_manager_nested_parent(void **state)
{
    fixture *f = *state;
    cgroup_manager *m = NULL;
    jw_error err = JW_ERROR_INIT;
    f->cfg.parent = "/system.slice/jobworker.service";

    /* The grandparent does not exist. */
    assert_int_equal(cgroup_manager_new(&f->cfg, &m, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "/system.slice"));

    /* The grandparent did not delegate memory and pids: checked, never changed. */
    mkd(pathf("%s/system.slice", f->root));
    put(pathf("%s/system.slice/cgroup.subtree_control", f->root), "cpu io\n");
    assert_int_equal(cgroup_manager_new(&f->cfg, &m, &err), -EOPNOTSUPP);
    assert_int_equal(err.code, JW_FAILED_PRECONDITION);
    assert_non_null(strstr(err.msg, "'memory pids'"));
    assert_non_null(strstr(err.msg, "Delegate=yes"));
    assert_non_null(strstr(err.msg, "--no-cgroups"));
    assert_string_equal(get(pathf("%s/system.slice/cgroup.subtree_control", f->root)), "cpu io\n");

    /* Delegated without io: io is optional. The root is left alone. */
    put(pathf("%s/system.slice/cgroup.subtree_control", f->root), "cpu memory pids\n");
    m = new_manager(f);
    assert_int_equal(cgroup_manager_controllers(m),
                     CGROUP_CTRL_CPU | CGROUP_CTRL_MEMORY | CGROUP_CTRL_PIDS);
    assert_string_equal(get(pathf("%s/cgroup.subtree_control", f->root)), "");
    assert_string_equal(
        get(pathf("%s/system.slice/jobworker.service/cgroup.subtree_control", f->root)),
        "+cpu +memory +pids\n");
    cgroup_manager_free(m);
}

static void test_manager_bad_parent(void **state)
{
    fixture *f = *state;
    const char *bad[] = {"/", "//", "jobworker", "", "/a/../b", "/a/./b", "/.."};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        cgroup_manager *m = NULL;
        jw_error err = JW_ERROR_INIT;
        f->cfg.parent = bad[i];
        assert_int_equal(cgroup_manager_new(&f->cfg, &m, &err), -EINVAL);
        assert_int_equal(err.code, JW_INVALID_ARGUMENT);
        assert_non_null(strstr(err.msg, "cgroup parent"));
        assert_null(m);
    }
}

/* Runs fn with RLIMIT_FSIZE set to `limit` bytes: a write that would grow a file beyond it is
 * cut short, which fails one chosen write of the fake tree without any hook in the code. The
 * limit is restored before anything else is written (cmocka's output may be a file). */
static int with_fsize_limit(rlim_t limit, int (*fn)(void *), void *arg)
{
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    struct sigaction ign = {.sa_handler = SIG_IGN}, oldsa;
    sigaction(SIGXFSZ, &ign, &oldsa);
    struct rlimit lim = {limit, old.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int r = fn(arg);
    setrlimit(RLIMIT_FSIZE, &old);
    sigaction(SIGXFSZ, &oldsa, NULL);
    return r;
}

typedef struct new_args {
    const cgroup_config *cfg;
    cgroup_manager *m;
    jw_error err;
} new_args;

static int call_manager_new(void *p)
{
    new_args *a = p;
    return cgroup_manager_new(a->cfg, &a->m, &a->err);
}

static void test_manager_failure_removes_parent(void **state)
{
    fixture *f = *state;
    /* The root needs no write; the parent's subtree_control write (23 bytes) is cut short. */
    put(pathf("%s/cgroup.subtree_control", f->root), "cpu io memory pids\n");
    new_args a = {.cfg = &f->cfg, .err = JW_ERROR_INIT};
    assert_int_equal(with_fsize_limit(10, call_manager_new, &a), -EIO);
    assert_null(a.m);
    assert_non_null(strstr(a.err.msg, "cgroup.subtree_control"));
    assert_non_null(strstr(a.err.msg, "'+cpu +memory +io +pids'"));
    assert_false(exists(pathf("%s/jobworker", f->root)));

    /* An existing parent is never removed. */
    mkd(pathf("%s/jobworker", f->root));
    assert_int_equal(with_fsize_limit(10, call_manager_new, &a), -EIO);
    assert_true(exists(pathf("%s/jobworker", f->root)));
}

/* ---- jobs ---- */

static void test_job_create_files(void **state)
{
    fixture *f = *state;
    cgroup_manager *m = new_manager(f);
    cgroup_job *cg = NULL;
    jw_error err = JW_ERROR_INIT;
    cgroup_limits lim = {
        .cpu_percent = 250,
        .memory_max = 64 << 20,
        .memory_high = 0,
        .io_bps = 1048576,
        .pids_max = 100,
    };
    assert_int_equal(cgroup_job_create(m, "4a1e6c1f-0b7e-4f4e-9a57-1c2d3e4f5a6b", &lim, &cg, &err),
                     0);
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/jobworker/job-4a1e6c1f-0b7e-4f4e-9a57-1c2d3e4f5a6b", f->root);
    assert_string_equal(cgroup_job_path(cg), dir);
    assert_string_equal(cgroup_job_rel_path(cg),
                        "/jobworker/job-4a1e6c1f-0b7e-4f4e-9a57-1c2d3e4f5a6b");
    assert_string_equal(get(pathf("%s/cpu.max", dir)), "250000 100000\n");
    assert_string_equal(get(pathf("%s/memory.max", dir)), "67108864\n");
    assert_false(exists(pathf("%s/memory.high", dir))); /* 0: not written at all */
    assert_string_equal(get(pathf("%s/memory.oom.group", dir)), "1\n");
    assert_string_equal(get(pathf("%s/pids.max", dir)), "100\n");
    /* One line per whole, real disk; the kernel gets one write per line. */
    assert_string_equal(get(pathf("%s/io.max", dir)), "8:0 rbps=1048576 wbps=1048576\n"
                                                      "254:0 rbps=1048576 wbps=1048576\n"
                                                      "259:0 rbps=1048576 wbps=1048576\n");
    /* The directory descriptor for CLONE_INTO_CGROUP: the same directory, close-on-exec. */
    int fd = cgroup_job_dirfd(cg);
    struct stat a, b;
    assert_int_equal(fstat(fd, &a), 0);
    assert_int_equal(stat(dir, &b), 0);
    assert_true(a.st_ino == b.st_ino && S_ISDIR(a.st_mode));
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    assert_int_equal(cgroup_job_destroy(cg), 0);
    assert_false(exists(dir));

    /* No limits: explicit "max" everywhere, no io.max, no memory.high. */
    assert_int_equal(cgroup_job_create(m, "b", NULL, &cg, &err), 0);
    snprintf(dir, sizeof(dir), "%s/jobworker/job-b", f->root);
    assert_string_equal(get(pathf("%s/cpu.max", dir)), "max 100000\n");
    assert_string_equal(get(pathf("%s/memory.max", dir)), "max\n");
    assert_string_equal(get(pathf("%s/pids.max", dir)), "max\n");
    assert_string_equal(get(pathf("%s/memory.oom.group", dir)), "1\n");
    assert_false(exists(pathf("%s/memory.high", dir)));
    assert_false(exists(pathf("%s/io.max", dir)));
    assert_int_equal(cgroup_job_destroy(cg), 0);

    /* memory.high when asked. */
    cgroup_limits high = {.cpu_percent = 20, .memory_max = 64 << 20, .memory_high = 32 << 20};
    assert_int_equal(cgroup_job_create(m, "c", &high, &cg, &err), 0);
    snprintf(dir, sizeof(dir), "%s/jobworker/job-c", f->root);
    assert_string_equal(get(pathf("%s/cpu.max", dir)), "20000 100000\n");
    assert_string_equal(get(pathf("%s/memory.high", dir)), "33554432\n");
    assert_int_equal(cgroup_job_destroy(cg), 0);
    assert_int_equal(cgroup_job_destroy(NULL), 0);
    cgroup_manager_free(m);
}

static void test_job_create_rejects(void **state)
{
    fixture *f = *state;
    cgroup_manager *m = new_manager(f);
    cgroup_job *cg = NULL;
    jw_error err = JW_ERROR_INIT;
    char longname[CGROUP_JOB_NAME_MAX + 2];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    const char *bad_names[] = {"", ".hidden", "a/b", "..", "x y", "a\nb", longname};
    for (size_t i = 0; i < ARRAY_SIZE(bad_names); i++) {
        assert_int_equal(cgroup_job_create(m, bad_names[i], NULL, &cg, &err), -EINVAL);
        assert_int_equal(err.code, JW_INVALID_ARGUMENT);
    }
    assert_int_equal(cgroup_job_create(m, NULL, NULL, &cg, &err), -EINVAL);

    const cgroup_limits bad_limits[] = {
        {.cpu_percent = -1}, {.memory_max = -1}, {.memory_high = -1},
        {.io_bps = -1},      {.pids_max = -5},
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad_limits); i++) {
        assert_int_equal(cgroup_job_create(m, "x", &bad_limits[i], &cg, &err), -EINVAL);
        assert_int_equal(err.code, JW_INVALID_ARGUMENT);
        assert_non_null(strstr(err.msg, "is negative"));
    }
    assert_null(cg);
    assert_false(exists(pathf("%s/jobworker/job-x", f->root)));

    /* An existing directory is somebody else's: reported, and left exactly as it was. */
    mkd(pathf("%s/jobworker/job-dup", f->root));
    put(pathf("%s/jobworker/job-dup/marker", f->root), "keep");
    assert_int_equal(cgroup_job_create(m, "dup", NULL, &cg, &err), -EEXIST);
    assert_int_equal(err.code, JW_ALREADY_EXISTS);
    assert_non_null(strstr(err.msg, "job-dup"));
    assert_string_equal(get(pathf("%s/jobworker/job-dup/marker", f->root)), "keep");
    cgroup_manager_free(m);
}

typedef struct create_args {
    cgroup_manager *m;
    const cgroup_limits *lim;
    cgroup_job *cg;
    jw_error err;
} create_args;

static int call_job_create(void *p)
{
    create_args *a = p;
    return cgroup_job_create(a->m, "fail", a->lim, &a->cg, &a->err);
}

static void test_job_create_failure_leaves_nothing(void **state)
{
    fixture *f = *state;
    cgroup_manager *m = new_manager(f);
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/jobworker/job-fail", f->root);

    /* With files capped at 12 bytes, cpu.max ("max 100000\n"), memory.max, memory.oom.group
     * and pids.max are written, and the io.max line is cut short: the last write fails. */
    cgroup_limits lim = {.memory_max = 1 << 30, .io_bps = 1048576};
    create_args a = {.m = m, .lim = &lim, .err = JW_ERROR_INIT};
    assert_int_equal(with_fsize_limit(12, call_job_create, &a), -EIO);
    assert_null(a.cg);
    assert_int_equal(a.err.code, JW_INTERNAL);
    assert_non_null(strstr(a.err.msg, "'8:0 rbps=1048576 wbps=1048576'"));
    assert_non_null(strstr(a.err.msg, "job-fail/io.max"));
    assert_false(exists(dir));

    /* The first write fails: "20000 100000\n" is 13 bytes. */
    cgroup_limits cpu = {.cpu_percent = 20};
    a = (create_args){.m = m, .lim = &cpu, .err = JW_ERROR_INIT};
    assert_int_equal(with_fsize_limit(12, call_job_create, &a), -EIO);
    assert_non_null(strstr(a.err.msg, "'20000 100000'"));
    assert_non_null(strstr(a.err.msg, "job-fail/cpu.max"));
    assert_false(exists(dir));

    /* And the name is free again afterwards. */
    assert_int_equal(call_job_create(&a), 0);
    assert_true(exists(dir));
    assert_int_equal(cgroup_job_destroy(a.cg), 0);
    cgroup_manager_free(m);
}

static void test_job_read_usage(void **state)
{
    fixture *f = *state;
    cgroup_manager *m = new_manager(f);
    cgroup_job *cg = NULL;
    assert_int_equal(cgroup_job_create(m, "u", NULL, &cg, NULL), 0);
    const char *dir = cgroup_job_path(cg);

    /* Missing files read as zeros. */
    cgroup_usage u;
    memset(&u, 0xff, sizeof(u));
    assert_int_equal(cgroup_job_read_usage(cg, &u), 0);
    assert_int_equal(u.cpu_usec, 0);
    assert_int_equal(u.nr_throttled, 0);
    assert_int_equal(u.memory_peak, 0);
    assert_int_equal(u.io_read_bytes, 0);
    assert_int_equal(u.io_write_bytes, 0);
    assert_int_equal(u.oom_kills, 0);

    put(pathf("%s/cpu.stat", dir), cpu_stat);
    put(pathf("%s/memory.peak", dir), "7340032\n");
    put(pathf("%s/io.stat", dir), "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"
                                  "254:0 rbytes=1 wbytes=2 rios=1 wios=1 dbytes=0 dios=0\n");
    put(pathf("%s/memory.events", dir), "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n"
                                        "oom_group_kill 1\n");
    assert_int_equal(cgroup_job_read_usage(cg, &u), 0);
    assert_int_equal(u.cpu_usec, 123456);
    assert_int_equal(u.nr_throttled, 7);
    assert_int_equal(u.memory_peak, 7340032);
    assert_int_equal(u.io_read_bytes, 4097);
    assert_int_equal(u.io_write_bytes, 8194);
    assert_int_equal(u.oom_kills, 1);

    /* A malformed file is an error, and *ret is left alone. */
    put(pathf("%s/memory.peak", dir), "lots\n");
    cgroup_usage before = u;
    assert_int_equal(cgroup_job_read_usage(cg, &u), -EINVAL);
    assert_memory_equal(&u, &before, sizeof(u));

    assert_int_equal(cgroup_job_destroy(cg), 0);
    cgroup_manager_free(m);
}

typedef struct delayed_write {
    const char *path;
    const char *text;
    int delay_ms;
} delayed_write;

static void *write_later(void *p)
{
    delayed_write *d = p;
    struct timespec ts = {0, d->delay_ms * 1000000L};
    nanosleep(&ts, NULL);
    int fd = open(d->path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd >= 0) {
        (void)!write(fd, d->text, strlen(d->text));
        close(fd);
    }
    return NULL;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_job_populated_and_wait(void **state)
{
    fixture *f = *state;
    cgroup_manager *m = new_manager(f);
    cgroup_job *cg = NULL;
    assert_int_equal(cgroup_job_create(m, "w", NULL, &cg, NULL), 0);
    char events[512];
    snprintf(events, sizeof(events), "%s/cgroup.events", cgroup_job_path(cg));

    assert_int_equal(cgroup_job_populated(cg), -ENOENT);
    assert_int_equal(cgroup_job_wait_empty(cg, 10), -ENOENT);

    put(events, "populated 1\nfrozen 0\n");
    assert_int_equal(cgroup_job_populated(cg), 1);
    int64_t t0 = now_ms();
    assert_int_equal(cgroup_job_wait_empty(cg, 150), -ETIMEDOUT);
    int64_t took = now_ms() - t0;
    assert_true(took >= 150);
    assert_true(took < 2000);
    assert_int_equal(cgroup_job_wait_empty(cg, 0), -ETIMEDOUT);

    /* The cgroup empties while we wait. */
    delayed_write d = {events, "populated 0\nfrozen 0\n", 50};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, write_later, &d), 0);
    t0 = now_ms();
    assert_int_equal(cgroup_job_wait_empty(cg, 10000), 0);
    took = now_ms() - t0;
    pthread_join(th, NULL);
    assert_true(took < 2000);
    assert_int_equal(cgroup_job_populated(cg), 0);
    assert_int_equal(cgroup_job_wait_empty(cg, 0), 0);

    put(events, "populated maybe\n");
    assert_int_equal(cgroup_job_populated(cg), -EINVAL);
    assert_int_equal(cgroup_job_destroy(cg), 0);
    cgroup_manager_free(m);
}

/* The event-loop API: an fd on cgroup.events re-read in place. A fake tree's regular file cannot
 * join an epoll (EPERM); on cgroupfs the same fd signals EPOLLPRI (the vm tier covers that). */
static void test_job_events_fd(void **state)
{
    fixture *f = *state;
    cgroup_manager *m = new_manager(f);
    cgroup_job *cg = NULL;
    assert_int_equal(cgroup_job_create(m, "ev", NULL, &cg, NULL), 0);
    char events[512];
    snprintf(events, sizeof(events), "%s/cgroup.events", cgroup_job_path(cg));

    assert_int_equal(cgroup_job_events_open(cg), -ENOENT);
    assert_int_equal(cgroup_job_events_open(NULL), -EINVAL);
    assert_int_equal(cgroup_events_populated(-1), -EBADF);

    put(events, "populated 1\nfrozen 0\n");
    int fd = cgroup_job_events_open(cg);
    assert_true(fd >= 0);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    assert_int_equal(cgroup_events_populated(fd), 1);
    assert_int_equal(cgroup_events_populated(fd), 1); /* reads from the start each time */

    /* The same fd sees the file change (the kernel rewrites it in place). */
    put(events, "populated 0\nfrozen 0\n");
    assert_int_equal(cgroup_events_populated(fd), 0);
    put(events, "frozen 0\n");
    assert_int_equal(cgroup_events_populated(fd), -ENOENT);
    put(events, "populated x\n");
    assert_int_equal(cgroup_events_populated(fd), -EINVAL);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    assert_true(ep >= 0);
    struct epoll_event ev = {.events = EPOLLPRI};
    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), -1);
    assert_int_equal(errno, EPERM);
    close(ep);
    close(fd);
    assert_int_equal(cgroup_job_destroy(cg), 0);
    cgroup_manager_free(m);
}

static void test_job_kill(void **state)
{
    fixture *f = *state;
    cgroup_manager *m = new_manager(f);
    cgroup_job *cg = NULL;
    assert_int_equal(cgroup_job_create(m, "k", NULL, &cg, NULL), 0);
    const char *dir = cgroup_job_path(cg);

    /* cgroup.kill exists: "1" is written to it and nothing else happens. */
    put(pathf("%s/cgroup.kill", dir), "");
    assert_int_equal(cgroup_job_kill(cg), 0);
    assert_string_equal(get(pathf("%s/cgroup.kill", dir)), "1\n");
    unlink(pathf("%s/cgroup.kill", dir));

    /* Fallback: every listed pid gets SIGKILL, except ourselves; pids that are gone and
     * garbage lines are skipped. */
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        for (;;)
            pause();
    }
    char procs[128];
    snprintf(procs, sizeof(procs), "%d\n%d\nnot-a-pid\n2147483646\n", (int)getpid(), (int)child);
    put(pathf("%s/cgroup.procs", dir), procs);
    assert_int_equal(cgroup_job_kill(cg), 0);
    int status = 0;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);

    /* Neither works: the error is returned. */
    unlink(pathf("%s/cgroup.procs", dir));
    assert_int_equal(cgroup_job_kill(cg), -ENOENT);
    assert_int_equal(cgroup_job_destroy(cg), 0);
    cgroup_manager_free(m);
}

static void test_job_destroy_nested(void **state)
{
    fixture *f = *state;
    cgroup_manager *m = new_manager(f);
    cgroup_job *cg = NULL;
    assert_int_equal(cgroup_job_create(m, "n", NULL, &cg, NULL), 0);
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", cgroup_job_path(cg));
    /* A job that was allowed to create sub-cgroups: they go first. */
    mkd(pathf("%s/inner", dir));
    mkd(pathf("%s/inner/deeper", dir));
    put(pathf("%s/inner/deeper/cgroup.procs", dir), "");
    /* The manager may be freed before its jobs. */
    cgroup_manager_free(m);
    assert_int_equal(cgroup_job_destroy(cg), 0);
    assert_false(exists(dir));
    assert_true(exists(pathf("%s/jobworker", f->root)));
}

static void test_remove_stale(void **state)
{
    fixture *f = *state;
    f->cfg.move_self = true;
    cgroup_manager *m = new_manager(f);
    const char *p = cgroup_manager_parent_path(m);

    /* job-a: old kernel (no cgroup.kill), already empty, with a sub-cgroup. */
    mkd(pathf("%s/job-a", p));
    put(pathf("%s/job-a/cgroup.procs", p), "");
    put(pathf("%s/job-a/cgroup.events", p), "populated 0\nfrozen 0\n");
    mkd(pathf("%s/job-a/sub", p));
    put(pathf("%s/job-a/sub/cgroup.procs", p), "");
    /* job-b: cgroup.kill. */
    mkd(pathf("%s/job-b", p));
    put(pathf("%s/job-b/cgroup.kill", p), "");
    put(pathf("%s/job-b/cgroup.events", p), "populated 0\n");
    /* Not ours to touch: the supervisor leaf, other cgroups, a file named like a job. */
    mkd(pathf("%s/other", p));
    put(pathf("%s/job-file", p), "x");

    jw_error err = JW_ERROR_INIT;
    assert_int_equal(cgroup_manager_remove_stale(m, &err), 2);
    assert_false(exists(pathf("%s/job-a", p)));
    assert_false(exists(pathf("%s/job-b", p)));
    assert_true(exists(pathf("%s/supervisor/cgroup.procs", p)));
    assert_true(exists(pathf("%s/other", p)));
    assert_true(exists(pathf("%s/job-file", p)));
    assert_int_equal(cgroup_manager_remove_stale(m, &err), 0);

    /* A leftover that cannot be handled is reported by name; the others are still removed. */
    mkd(pathf("%s/job-c", p)); /* no cgroup.kill, no cgroup.procs */
    mkd(pathf("%s/job-d", p));
    put(pathf("%s/job-d/cgroup.kill", p), "");
    put(pathf("%s/job-d/cgroup.events", p), "populated 0\n");
    assert_int_equal(cgroup_manager_remove_stale(m, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "job-c"));
    assert_false(exists(pathf("%s/job-d", p)));
    cgroup_manager_free(m);
}

/* ---- the real host ---- */

static void test_host_default_root(void **state)
{
    (void)state;
    struct statfs sfs;
    bool v2 = statfs(CGROUP_DEFAULT_ROOT, &sfs) == 0 && sfs.f_type == CGROUP2_SUPER_MAGIC;
    unsigned avail = 0;
    if (v2) {
        const char *text = get(CGROUP_DEFAULT_ROOT "/cgroup.controllers");
        cgroup_parse_controllers(text, &avail);
    }
    bool usable = v2 && (avail & CGROUP_CTRL_REQUIRED) == CGROUP_CTRL_REQUIRED;
    print_message("host: %s is %s, controllers %s\n", CGROUP_DEFAULT_ROOT,
                  v2 ? "cgroup2" : "not cgroup2", usable ? "complete" : "incomplete");

    cgroup_manager *m = NULL;
    jw_error err = JW_ERROR_INIT;
    if (!usable) {
        /* The server's default configuration must refuse with a message that says how to
         * fix it (this host: cgroup v1/hybrid, so cgroup_manager_new fails). */
        cgroup_config cfg = {.move_self = false};
        int r = cgroup_manager_new(&cfg, &m, &err);
        assert_true(r < 0);
        assert_null(m);
        assert_int_equal(err.code, JW_FAILED_PRECONDITION);
        assert_non_null(strstr(err.msg, "--no-cgroups"));
        if (!v2)
            assert_non_null(
                strstr(err.msg, "cgroup v2 is not mounted at '" CGROUP_DEFAULT_ROOT "'"));
        print_message("host: refused as expected: %s\n", err.msg);
        return;
    }
    if (geteuid() != 0) {
        print_message("skipped: host cgroup2 success path needs root to create cgroups\n");
        skip();
    }
    /* A cgroup2 host with every controller: a private parent under the root works end to end
     * against the kernel, which also validates the written formats. */
    char parent[64];
    snprintf(parent, sizeof(parent), "/jw-unit-test-%d", (int)getpid());
    cgroup_config cfg = {.parent = parent};
    int r = cgroup_manager_new(&cfg, &m, &err);
    if (r < 0)
        fail_msg("cgroup_manager_new on a cgroup2 host: %s", err.msg);
    cgroup_limits lim = {.cpu_percent = 20, .memory_max = 64 << 20, .pids_max = 10};
    cgroup_job *cg = NULL;
    r = cgroup_job_create(m, "t", &lim, &cg, &err);
    if (r < 0)
        fail_msg("cgroup_job_create on a cgroup2 host: %s", err.msg);
    assert_string_equal(get(pathf("%s/cpu.max", cgroup_job_path(cg))), "20000 100000\n");
    assert_string_equal(get(pathf("%s/pids.max", cgroup_job_path(cg))), "10\n");
    assert_int_equal(cgroup_job_populated(cg), 0);
    assert_int_equal(cgroup_job_kill(cg), 0);
    assert_int_equal(cgroup_job_wait_empty(cg, 1000), 0);
    cgroup_usage u;
    assert_int_equal(cgroup_job_read_usage(cg, &u), 0);
    assert_int_equal(cgroup_job_destroy(cg), 0);
    assert_int_equal(rmdir(cgroup_manager_parent_path(m)), 0);
    cgroup_manager_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_cpu_max),
        cmocka_unit_test(test_format_io_max),
        cmocka_unit_test(test_parse_majmin),
        cmocka_unit_test(test_parse_keyed),
        cmocka_unit_test(test_parse_io_stat),
        cmocka_unit_test(test_parse_controllers),
        cmocka_unit_test(test_parse_proc_cgroup),
        cmocka_unit_test(test_derive_parent),
        cmocka_unit_test(test_parse_int_or_max),
        cmocka_unit_test_setup_teardown(test_resolve_io_device, setup, teardown),
        cmocka_unit_test_setup_teardown(test_detect_io_devices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manager_new, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manager_root_partly_enabled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manager_move_self, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manager_missing_controllers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manager_fs_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manager_io_optional, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manager_io_devices_configured, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manager_nested_parent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manager_bad_parent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manager_failure_removes_parent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_create_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_create_rejects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_create_failure_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_read_usage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_populated_and_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_events_fd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_kill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_destroy_nested, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_stale, setup, teardown),
        cmocka_unit_test(test_host_default_root),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
