/* cgroup v2 manager: the only module that touches /sys/fs/cgroup.
 *
 * Layout it owns (names relative to the cgroup2 mount, `root`):
 *   <parent>/                 the server's delegated subtree (default: the server's own cgroup,
 *                             or "/jobworker" when the server sits in the root cgroup)
 *   <parent>/supervisor       leaf that holds the server process itself (no-internal-process rule)
 *   <parent>/job-<id>         one leaf per job, siblings of supervisor
 *
 * All functions return 0 (or a value) on success and a negative errno on failure; the ones that
 * take `jw_error *err` also describe the failure there. Nothing here prints.
 */
#ifndef JW_CGROUP_CGROUP_H
#define JW_CGROUP_CGROUP_H

#include "util/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CGROUP_DEFAULT_ROOT    "/sys/fs/cgroup"
#define CGROUP_CPU_PERIOD_US   100000
#define CGROUP_MAX_IO_DEVICES  16
#define CGROUP_DEFAULT_PARENT  "/jobworker" /* used when the server runs in the root cgroup */
#define CGROUP_SUPERVISOR_LEAF "supervisor"
#define CGROUP_JOB_PREFIX      "job-"
#define CGROUP_JOB_NAME_MAX    128 /* bytes of a job name: [A-Za-z0-9_.-], not starting with '.' */

enum {
    CGROUP_CTRL_CPU = 1u << 0,
    CGROUP_CTRL_MEMORY = 1u << 1,
    CGROUP_CTRL_IO = 1u << 2,
    CGROUP_CTRL_PIDS = 1u << 3,
};
#define CGROUP_CTRL_REQUIRED (CGROUP_CTRL_CPU | CGROUP_CTRL_MEMORY | CGROUP_CTRL_PIDS)

typedef struct cgroup_limits {
    int32_t cpu_percent; /* 0 = "max" */
    int64_t memory_max;  /* 0 = "max" */
    int64_t memory_high; /* 0 = not written (stays "max") */
    int64_t io_bps;      /* 0 = io.max not written */
    int32_t pids_max;    /* 0 = "max" */
} cgroup_limits;

typedef struct cgroup_usage {
    int64_t cpu_usec;       /* cpu.stat usage_usec */
    int64_t nr_throttled;   /* cpu.stat nr_throttled */
    int64_t memory_peak;    /* memory.peak (0 when the kernel lacks it) */
    int64_t io_read_bytes;  /* io.stat rbytes summed over devices */
    int64_t io_write_bytes; /* io.stat wbytes summed over devices */
    int64_t oom_kills;      /* memory.events oom_kill */
} cgroup_usage;

typedef struct cgroup_config {
    const char *root;   /* cgroup2 mount; NULL = CGROUP_DEFAULT_ROOT. Tests pass a temp dir. */
    const char *parent; /* relative to root, e.g. "/jobworker"; NULL = derive (see above) */
    /* io.max targets as "MAJ:MIN" or device paths ("/dev/sda", "/dev/ram0"); partitions resolve
     * to their whole disk. NULL/0 = every whole, non-virtual disk in /sys/block. */
    const char *const *io_devices;
    size_t n_io_devices;
    bool move_self; /* move the calling process into <parent>/supervisor (false in unit tests) */
    bool skip_fs_check; /* unit tests: do not require root to be a cgroup2 mount */
    /* sysfs, for io device resolution (<sys_root>/block, <sys_root>/dev/block); NULL = "/sys".
     * Tests point it at a fake tree. */
    const char *sys_root;
    /* Unit tests only, and only together with skip_fs_check: `root` is a plain directory tree
     * standing in for cgroupfs. A real cgroupfs creates every interface file at mkdir; here the
     * writes create the files they write (O_CREAT, and io.max accumulates one line per device as
     * the kernel's would), and removing a cgroup first unlinks the regular files in it. Reads
     * and cgroup.kill are unchanged, so a test prepares cpu.stat, cgroup.events etc. itself. */
    bool fake_fs;
} cgroup_config;

typedef struct cgroup_manager cgroup_manager;
typedef struct cgroup_job cgroup_job;

/* Checks that `root` is a cgroup2 mount with the required controllers available, then creates the
 * parent, moves the caller into supervisor when asked, and enables +cpu +memory +io +pids (io only
 * when available) in the parent's cgroup.subtree_control. On a host without cgroup2 controllers it
 * fails with FAILED_PRECONDITION and a message that says what is missing and how to fix it.
 *
 * When the parent is a direct child of the root, missing controllers are first enabled in the
 * root's cgroup.subtree_control; a deeper parent must have been delegated the controllers by its
 * own parent (systemd Delegate=yes does that), which is checked, never changed. io devices are
 * resolved before anything is created. A failure before the caller was moved removes a parent
 * created here. cfg may be NULL (all defaults). `*ret` is immutable afterwards: every function
 * below may be called from any thread, each cgroup_job being used by one thread at a time. */
int cgroup_manager_new(const cgroup_config *cfg, cgroup_manager **ret, jw_error *err);
void cgroup_manager_free(cgroup_manager *m);
/* CGROUP_CTRL_* bits enabled for jobs. */
unsigned cgroup_manager_controllers(const cgroup_manager *m);
/* Number of io.max devices resolved (0 = io limits cannot be applied). */
size_t cgroup_manager_n_io_devices(const cgroup_manager *m);
/* "MAJ:MIN" of the i-th io.max device (i < cgroup_manager_n_io_devices()), NULL otherwise. */
const char *cgroup_manager_io_device(const cgroup_manager *m, size_t i);
/* Absolute path of the parent directory. */
const char *cgroup_manager_parent_path(const cgroup_manager *m);
/* Kills and removes every leftover "job-*" cgroup under the parent (after a crash); returns how
 * many were removed. */
int cgroup_manager_remove_stale(cgroup_manager *m, jw_error *err);

/* Creates <parent>/job-<name> and writes every limit; on any failure nothing is left behind.
 * lim may be NULL (no limits). Errors: INVALID_ARGUMENT for a bad name or a negative limit,
 * FAILED_PRECONDITION for io_bps without the io controller or without io devices, ALREADY_EXISTS
 * when the directory exists (it is left alone), otherwise the failing file and value. The job
 * holds its own descriptors, so it may outlive the manager. */
int cgroup_job_create(cgroup_manager *m, const char *name, const cgroup_limits *lim,
                      cgroup_job **ret, jw_error *err);
/* Absolute path of the job's directory: job-init writes its pid to <path>/cgroup.procs. */
const char *cgroup_job_path(const cgroup_job *cg);
/* The same path relative to the cgroup2 mount ("/jobworker/job-<name>"), as the job's
 * /proc/self/cgroup shows it on its "0::" line. */
const char *cgroup_job_rel_path(const cgroup_job *cg);
/* The job's O_DIRECTORY|O_CLOEXEC directory fd, owned by cg (valid until cgroup_job_destroy). */
int cgroup_job_dirfd(const cgroup_job *cg);
/* Writes "1" to cgroup.kill (kernel >= 5.14); falls back to SIGKILL for every pid in
 * cgroup.procs, repeated until empty, where cgroup.kill does not exist. */
int cgroup_job_kill(cgroup_job *cg);
/* 1 when cgroup.events says "populated 1", 0 when "populated 0". */
int cgroup_job_populated(cgroup_job *cg);
/* Blocks, polling cgroup.events, until populated 0 or timeout_ms passed (-ETIMEDOUT). For
 * start-up and tools; an event loop uses cgroup_job_events_open() instead. */
int cgroup_job_wait_empty(cgroup_job *cg, int timeout_ms);
/* A new O_RDONLY|O_CLOEXEC fd of the job's cgroup.events, for an event loop: on cgroupfs the file
 * signals POLLPRI (EPOLLPRI, with POLLERR) each time it changes, so a loop registers it with
 * EPOLLPRI and calls cgroup_events_populated() on it first and on every event. (A plain file, as
 * in a fake tree, cannot be added to an epoll: epoll_ctl fails with EPERM.) The caller closes
 * it. Returns the fd or a negative errno. */
int cgroup_job_events_open(const cgroup_job *cg);
/* Reads an fd from cgroup_job_events_open() again from its start, which also re-arms the
 * notification: 1 for "populated 1", 0 for "populated 0", -EINVAL when malformed. Never blocks. */
int cgroup_events_populated(int events_fd);
/* Reads cpu.stat, memory.peak, io.stat and memory.events. Missing files leave zeros. */
int cgroup_job_read_usage(cgroup_job *cg, cgroup_usage *ret);
/* rmdir with bounded retries (EBUSY while the kernel finishes tearing down), then frees cg.
 * cg is freed even when removal failed; the error is returned. NULL is a no-op. */
int cgroup_job_destroy(cgroup_job *cg);

/* ---- Formats and parsers, exported for unit tests and fuzzers. Pure functions. ---- */

/* Formatters return -EINVAL for a bad input and -ENOBUFS when buf is too small. */
/* "20000 100000" for 20 %, "max 100000" for 0. */
int cgroup_format_cpu_max(int32_t cpu_percent, char *buf, size_t size);
/* "8:0 rbps=4194304 wbps=4194304"; bps 0 gives "8:0 rbps=max wbps=max" (no limit). */
int cgroup_format_io_max(const char *majmin, int64_t bps, char *buf, size_t size);
/* Value of `key` in a flat-keyed file ("key value\n" lines: cpu.stat, memory.events,
 * cgroup.events). -ENOENT when absent, -EINVAL when malformed. */
int cgroup_parse_keyed(const char *text, const char *key, int64_t *ret);
/* Sums rbytes and wbytes over every device line of io.stat. */
int cgroup_parse_io_stat(const char *text, int64_t *ret_rbytes, int64_t *ret_wbytes);
/* CGROUP_CTRL_* bits named in a cgroup.controllers / cgroup.subtree_control text. */
int cgroup_parse_controllers(const char *text, unsigned *ret_mask);
/* The cgroup2 path from a /proc/<pid>/cgroup text (the "0::/path" line). -ENOENT when there is no
 * such line (a pure v1 host), -EINVAL when the path is not absolute, -ENAMETOOLONG. */
int cgroup_parse_proc_cgroup(const char *text, char *ret_path, size_t size);
/* The default parent for a server whose /proc/self/cgroup is `proc_cgroup_text`: its own cgroup,
 * CGROUP_DEFAULT_PARENT when that is the root, and the leaf's parent when the server already sits
 * in a ".../supervisor" leaf. */
int cgroup_derive_parent(const char *proc_cgroup_text, char *ret_path, size_t size);
/* "8:0" -> 8, 0. Decimal only, within Linux's 12-bit major and 20-bit minor. */
int cgroup_parse_majmin(const char *s, unsigned *ret_major, unsigned *ret_minor);
/* "cpu memory io pids" (each name preceded by `prefix`, e.g. "+", which may be NULL) for the
 * CGROUP_CTRL_* bits in mask, in that order; "" for 0. */
int cgroup_format_controllers(unsigned mask, const char *prefix, char *buf, size_t size);
/* A single integer file such as memory.peak or pids.max ("max" gives INT64_MAX). */
int cgroup_parse_int_or_max(const char *text, int64_t *ret);

#endif
