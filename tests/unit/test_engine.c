/* The local job engine end to end on this host, without cgroups: store + supervisor + the real
 * job-init binary (JW_JOB_INIT) running real commands. Cgroup enforcement is the vm tier's. */
#include "spawn/supervisor.h"
#include "store/store.h"
#include "util/misc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct fixture {
    char dir[64];
    char work[96];
    store *st;
    supervisor *sv;
} fixture;

static const char *job_init_path(void)
{
    const char *p = getenv("JW_JOB_INIT");
    return p ? p : "build/release/bin/job-init";
}

static const char *testbin(const char *name, char *buf, size_t size)
{
    const char *d = getenv("JW_TESTBIN");
    snprintf(buf, size, "%s/%s", d ? d : "build/release/testbin", name);
    return buf;
}

#define DYN_UID_FIRST 1879048192u
#define DYN_UID_COUNT 2u

static int setup_full_uids(void **state, long uid, bool workdirs, int64_t grace_ms,
                           uint32_t uid_count)
{
    fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/jw-engine-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    store_config sc = {.data_dir = f->dir};
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(store_new(&sc, &f->st, &err), 0);
    if (access(job_init_path(), X_OK) != 0)
        fail_msg("job-init not found at '%s' (set JW_JOB_INIT)", job_init_path());
    if (workdirs) {
        snprintf(f->work, sizeof(f->work), "%s/work", f->dir);
        assert_int_equal(mkdir(f->work, 0711), 0);
        assert_int_equal(chmod(f->dir, 0711), 0);
    }
    supervisor_config cfg = {.job_init_path = job_init_path(),
                             .stop_grace_ms = grace_ms,
                             .job_uid = uid,
                             .job_gid = uid,
                             .work_root = workdirs ? f->work : NULL,
                             .job_uid_first = uid_count ? DYN_UID_FIRST : 0,
                             .job_uid_count = uid_count};
    assert_int_equal(supervisor_new(&cfg, f->st, &f->sv, &err), 0);
    *state = f;
    return 0;
}

static int setup_full(void **state, long uid, bool workdirs, int64_t grace_ms)
{
    return setup_full_uids(state, uid, workdirs, grace_ms, 0);
}

/* Every job with a uid of its own from a range of two, with per-job working directories. */
static int setup_dynamic(void **state)
{
    return setup_full_uids(state, 65534, true, 100, DYN_UID_COUNT);
}

static int setup(void **state)
{
    return setup_full(state, -1, false, 100);
}

/* A long grace period, for tests where the command must get to handle SIGTERM itself even on a
 * loaded machine. */
static int setup_long_grace(void **state)
{
    return setup_full(state, -1, false, 10000);
}

/* Jobs as nobody (65534) with per-job working directories, as the server runs them. */
static int setup_nobody(void **state)
{
    return setup_full(state, 65534, true, 100);
}

static int teardown(void **state)
{
    fixture *f = *state;
    supervisor_free(f->sv);
    store_free(f->st);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static store_job *start(fixture *f, int timeout_s, const char *cmd, const char *const *args,
                        size_t nargs)
{
    job_limits lim = {0};
    store_job *job = NULL;
    jw_error err = JW_ERROR_INIT;
    store_job_spec spec = {.command = cmd,
                           .args = args,
                           .nargs = nargs,
                           .limits = lim,
                           .timeout_seconds = timeout_s,
                           .owner = "test",
                           .network = JOB_NETWORK_HOST};
    assert_int_equal(store_job_new(f->st, &spec, &job, &err), 0);
    if (supervisor_start_job(f->sv, job, &err) < 0)
        fail_msg("start '%s': %s", cmd, err.msg);
    return job;
}

static void finish(store_job *job, store_job_info *info)
{
    assert_int_equal(store_job_wait_final(job, 30000), 0);
    store_job_snapshot(job, info);
}

static store_job *run_sh(fixture *f, const char *script, store_job_info *info)
{
    const char *args[] = {"-c", script};
    store_job *job = start(f, 0, "sh", args, 2);
    finish(job, info);
    return job;
}

static char *read_output(store_job *job)
{
    int64_t size;
    store_job_output_state(job, &size, NULL);
    char *buf = calloc(1, (size_t)size + 1);
    int fd = store_job_open_output(job);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, buf, (size_t)size, 0), size);
    close(fd);
    return buf;
}

/* True while pid exists and is not a zombie (an exited child waiting for its new parent). */
static bool alive(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p && p[2] != 'Z' && p[2] != 'X';
}

/* True while any live process is in process group pgid. */
static bool group_alive(pid_t pgid)
{
    DIR *d = opendir("/proc");
    bool found = false;
    for (struct dirent *de; !found && (de = readdir(d));) {
        pid_t pid = atoi(de->d_name);
        if (pid > 0 && getpgid(pid) == pgid && alive(pid))
            found = true;
    }
    closedir(d);
    return found;
}

/* SIGKILL is delivered at once but a process takes a moment to die: poll for up to 2 s. */
static bool dies(pid_t pid, bool group)
{
    for (int i = 0; i < 200; i++) {
        if (!(group ? group_alive(pid) : alive(pid)))
            return true;
        usleep(10000);
    }
    return false;
}

/* The first live child of `parent` (by the PPid field of /proc/<pid>/stat), or 0. */
static pid_t child_of(pid_t parent)
{
    DIR *d = opendir("/proc");
    pid_t found = 0;
    for (struct dirent *de; !found && (de = readdir(d));) {
        pid_t pid = atoi(de->d_name);
        if (pid <= 0 || !alive(pid))
            continue;
        char path[64], buf[512];
        snprintf(path, sizeof(path), "/proc/%d/stat", pid);
        FILE *fp = fopen(path, "r");
        if (!fp)
            continue;
        size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
        fclose(fp);
        buf[n] = '\0';
        const char *p = strrchr(buf, ')');
        int ppid = 0;
        if (p && sscanf(p + 2, "%*c %d", &ppid) == 1 && ppid == parent)
            found = pid;
    }
    closedir(d);
    return found;
}

/* Waits until the job's output holds at least `size` bytes (up to 5 s). */
static void wait_output(store_job *job, int64_t size)
{
    for (int i = 0; i < 500; i++) {
        int64_t have;
        store_job_output_state(job, &have, NULL);
        if (have >= size)
            return;
        usleep(10000);
    }
    fail_msg("job %s: no %lld bytes of output within 5 s", store_job_id(job), (long long)size);
}

static void test_exit_codes(void **state)
{
    fixture *f = *state;
    store_job_info info;
    store_job *job = run_sh(f, "exit 0", &info);
    assert_int_equal(info.status, JOB_STATUS_COMPLETED);
    assert_int_equal(info.reason, JOB_REASON_EXITED);
    assert_true(info.pid > 0);
    assert_true(info.end_time_ns >= info.start_time_ns);
    store_job_unref(job);

    job = run_sh(f, "exit 3", &info);
    assert_int_equal(info.status, JOB_STATUS_FAILED);
    assert_int_equal(info.reason, JOB_REASON_EXITED);
    assert_int_equal(info.exit_code, 3);
    store_job_unref(job);
}

static void test_signal(void **state)
{
    fixture *f = *state;
    store_job_info info;
    store_job *job = run_sh(f, "kill -SEGV $$", &info);
    assert_int_equal(info.status, JOB_STATUS_FAILED);
    assert_int_equal(info.reason, JOB_REASON_SIGNALED);
    assert_int_equal(info.signal, 11);
    store_job_unref(job);
}

static void test_start_failed(void **state)
{
    fixture *f = *state;
    store_job_info info;
    store_job *job = start(f, 0, "/nonexistent/cmd", NULL, 0);
    finish(job, &info);
    assert_int_equal(info.status, JOB_STATUS_FAILED);
    assert_int_equal(info.reason, JOB_REASON_START_FAILED);
    assert_string_equal(info.error, "exec '/nonexistent/cmd': No such file or directory");
    store_job_unref(job);

    job = start(f, 0, "no-such-command-on-path", NULL, 0);
    finish(job, &info);
    assert_int_equal(info.reason, JOB_REASON_START_FAILED);
    assert_non_null(strstr(info.error, "No such file or directory"));
    store_job_unref(job);

    /* A file that is not executable (outside /tmp, which is private to the job). */
    struct stat st;
    assert_int_equal(stat("/etc/passwd", &st), 0);
    assert_int_equal(st.st_mode & 0111, 0);
    job = start(f, 0, "/etc/passwd", NULL, 0);
    finish(job, &info);
    assert_int_equal(info.reason, JOB_REASON_START_FAILED);
    assert_non_null(strstr(info.error, "Permission denied"));
    store_job_unref(job);
}

static void test_stop_ignoring_sigterm(void **state)
{
    fixture *f = *state;
    const char *args[] = {"-c", "trap '' TERM; echo ready; while :; do sleep 1; done"};
    store_job *job = start(f, 0, "sh", args, 2);
    /* Wait until the trap is installed, or SIGTERM could kill the shell before it. */
    for (int i = 0; i < 500; i++) {
        int64_t size;
        store_job_output_state(job, &size, NULL);
        if (size >= 6)
            break;
        usleep(10000);
    }
    /* The command (job-init's child) leads a session and process group of its own: that group,
     * not job-init's, is the tree that must die. */
    store_job_info running;
    store_job_snapshot(job, &running);
    pid_t cmd = child_of(running.pid);
    assert_true(cmd > 0);
    assert_int_equal(getpgid(cmd), cmd);
    assert_true(group_alive(cmd));
    int64_t t0 = now_monotonic_ns();
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(supervisor_stop_job(f->sv, job, JOB_REASON_STOPPED, &err), 0);
    store_job_info info;
    finish(job, &info);
    int64_t ms = (now_monotonic_ns() - t0) / 1000000;
    assert_int_equal(info.status, JOB_STATUS_STOPPED);
    assert_int_equal(info.reason, JOB_REASON_STOPPED);
    assert_int_equal(info.signal, 9); /* it survived SIGTERM and was killed */
    assert_true(ms >= 100);           /* the grace period was honoured */
    assert_true(ms < 5000);
    /* No live process of the command's group is left. */
    assert_true(dies(cmd, true));

    /* Stopping again is a no-op on a final job. */
    assert_int_equal(supervisor_stop_job(f->sv, job, JOB_REASON_STOPPED, &err), 0);
    store_job_unref(job);
}

static void test_output_50mib_exact(void **state)
{
    fixture *f = *state;
    char pattern[256];
    testbin("pattern", pattern, sizeof(pattern));
    const char *args[] = {"50M", "77"};
    store_job *job = start(f, 0, pattern, args, 2);
    store_job_info info;
    finish(job, &info);
    assert_int_equal(info.status, JOB_STATUS_COMPLETED);
    assert_int_equal(info.output_bytes, 50 << 20);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s --check 50M 77 < %s/output/%s.out", pattern, f->dir, info.id);
    assert_int_equal(system(cmd), 0);
    store_job_unref(job);
}

/* One stream of the job's output through a cursor, with the stream each chunk said it was. */
static char *read_stream(store_job *job, job_stream select, int64_t offset)
{
    int64_t size;
    store_job_output_state(job, &size, NULL);
    char *buf = calloc(1, (size_t)size + 1);
    store_cursor *c = NULL;
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(store_cursor_open(job, select, offset, &c, &err), 0);
    size_t len = 0, n;
    job_stream from;
    while (store_cursor_avail(c, size, 3, &n, &from) == 0 && n > 0) {
        if (select != JOB_STREAM_BOTH)
            assert_int_equal(from, select);
        assert_int_equal(store_cursor_read(c, buf + len, n), 0);
        len += n;
    }
    store_cursor_free(c);
    return buf;
}

/* Two pipes: each stream exact; between them, the order the server read them in (exact here,
 * where the job pauses between writes of different streams). */
static void test_stdout_stderr_apart_and_merged(void **state)
{
    fixture *f = *state;
    store_job_info info;
    store_job *job = run_sh(f,
                            "echo one; sleep 0.2; echo two >&2; sleep 0.2; printf three; "
                            "sleep 0.2; echo four >&2",
                            &info);
    char *out = read_output(job);
    assert_string_equal(out, "one\ntwo\nthreefour\n");
    free(out);
    assert_int_equal(info.stdout_bytes, 9);
    assert_int_equal(info.stderr_bytes, 9);
    out = read_stream(job, JOB_STREAM_STDOUT, 0);
    assert_string_equal(out, "one\nthree");
    free(out);
    out = read_stream(job, JOB_STREAM_STDERR, 0);
    assert_string_equal(out, "two\nfour\n");
    free(out);
    out = read_stream(job, JOB_STREAM_STDERR, 4); /* offsets count that stream's bytes */
    assert_string_equal(out, "four\n");
    free(out);
    out = read_stream(job, JOB_STREAM_BOTH, 6);
    assert_string_equal(out, "o\nthreefour\n");
    free(out);
    store_job_unref(job);
}

static void test_timeout(void **state)
{
    fixture *f = *state;
    const char *args[] = {"100"};
    int64_t t0 = now_monotonic_ns();
    store_job *job = start(f, 1, "sleep", args, 1);
    store_job_info info;
    finish(job, &info);
    int64_t ms = (now_monotonic_ns() - t0) / 1000000;
    assert_int_equal(info.status, JOB_STATUS_FAILED);
    assert_int_equal(info.reason, JOB_REASON_TIMED_OUT);
    assert_non_null(strstr(info.error, "timed out after 1 s"));
    assert_true(ms >= 1000 && ms < 5000);
    store_job_unref(job);
}

static void test_job_init_hygiene(void **state)
{
    fixture *f = *state;
    store_job_info info;
    char hygiene[256];
    testbin("hygiene", hygiene, sizeof(hygiene));
    /* What the command inherited, seen by a program that does not fork (hygiene); then the
     * PID namespace, oom_score_adj, stdin and the environment seen by the shell. */
    char script[512];
    snprintf(script, sizeof(script),
             "%s; echo $$; cat /proc/self/oom_score_adj; cat; echo stdin-eof;"
             "echo \"$JOBWORKER_JOB_ID\"",
             hygiene);
    store_job *job = run_sh(f, script, &info);
    char *out = read_output(job);
    char expect[1024];
    snprintf(expect, sizeof(expect),
             "fds: 0 1 2\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\nNoNewPrivs:\t1\n"
             "sid==pid: no\n2\n0\nstdin-eof\n%s\n",
             info.id);
    assert_string_equal(out, expect);
    free(out);
    store_job_unref(job);

    /* The command itself (not a child of the shell) leads its own session. */
    const char *none[] = {NULL};
    job = start(f, 0, hygiene, none, 0);
    finish(job, &info);
    out = read_output(job);
    assert_non_null(strstr(out, "fds: 0 1 2\n"));
    assert_non_null(strstr(out, "sid==pid: yes\n"));
    free(out);
    store_job_unref(job);
}

static int count_dir(const char *path)
{
    DIR *d = opendir(path);
    int n = 0;
    for (struct dirent *de; (de = readdir(d));)
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

static void test_many_short_jobs_leave_nothing(void **state)
{
    fixture *f = *state;
    store_job_info info;
    store_job_unref(run_sh(f, "true", &info)); /* warm up lazily created resources */
    int fds = count_dir("/proc/self/fd");
    int threads = count_dir("/proc/self/task");
    for (int i = 0; i < 200; i++) {
        store_job *job = start(f, 0, "true", NULL, 0);
        finish(job, &info);
        assert_int_equal(info.status, JOB_STATUS_COMPLETED);
        store_job_unref(job);
    }
    assert_int_equal(count_dir("/proc/self/fd"), fds);
    assert_int_equal(count_dir("/proc/self/task"), threads);
    /* No zombie: every child was reaped. */
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
    assert_int_equal(supervisor_n_active(f->sv), 0);
}

/* Whether any process on the host runs exactly this command line (argv joined by spaces). */
static bool cmdline_running(const char *want)
{
    DIR *d = opendir("/proc");
    bool found = false;
    for (struct dirent *de; !found && (de = readdir(d));) {
        pid_t pid = atoi(de->d_name);
        if (pid <= 0 || !alive(pid))
            continue;
        char path[64], buf[256];
        snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
        FILE *fp = fopen(path, "r");
        if (!fp)
            continue;
        size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
        fclose(fp);
        for (size_t i = 0; i + 1 < n; i++)
            if (buf[i] == '\0')
                buf[i] = ' ';
        buf[n] = '\0';
        if (n > 0 && buf[n - 1] == '\0')
            n--;
        found = strncmp(buf, want, strlen(want)) == 0 && strlen(buf) == strlen(want);
    }
    closedir(d);
    return found;
}

static void test_background_children_killed_with_job(void **state)
{
    fixture *f = *state;
    store_job_info info;
    /* The command exits while a background child, and a setsid()'d grandchild that left its
     * session, still hold the output pipe: the job's end takes its PID namespace with it. */
    store_job *job = run_sh(f, "sleep 1234.5 & setsid sleep 1234.6 & sleep 0.1; echo done", &info);
    assert_int_equal(info.status, JOB_STATUS_COMPLETED);
    char *out = read_output(job);
    assert_string_equal(out, "done\n");
    free(out);
    bool gone = false;
    for (int i = 0; i < 200 && !gone; i++) {
        gone = !cmdline_running("sleep 1234.5") && !cmdline_running("sleep 1234.6");
        if (!gone)
            usleep(10000);
    }
    assert_true(gone);
    store_job_unref(job);
}

static void test_namespaces(void **state)
{
    fixture *f = *state;
    store_job_info info;
    /* PID namespace: the job sees only itself; UTS: its own hostname; mount: its own /proc. */
    store_job *job = run_sh(f,
                            "echo $$; set -- /proc/[0-9]*; echo $#; hostname;"
                            "readlink /proc/1/exe | grep -c job-init",
                            &info);
    char *out = read_output(job);
    char expect[128];
    snprintf(expect, sizeof(expect), "2\n2\njob-%.8s\n1\n", info.id);
    assert_string_equal(out, expect);
    free(out);
    store_job_unref(job);
}

static void test_sigterm_forwarded_to_command(void **state)
{
    fixture *f = *state;
    const char *args[] = {"-c", "trap 'echo got-term; exit 5' TERM; echo ready;"
                                "while :; do sleep 0.05; done"};
    store_job *job = start(f, 0, "sh", args, 2);
    for (int i = 0; i < 500; i++) {
        int64_t size;
        store_job_output_state(job, &size, NULL);
        if (size >= 6)
            break;
        usleep(10000);
    }
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(supervisor_stop_job(f->sv, job, JOB_REASON_STOPPED, &err), 0);
    store_job_info info;
    finish(job, &info);
    assert_int_equal(info.status, JOB_STATUS_STOPPED);
    /* The command's own exit, reported through job-init, not job-init's. */
    assert_int_equal(info.exit_code, 5);
    assert_int_equal(info.signal, 0);
    char *out = read_output(job);
    /* (The shell may also report its killed foreground sleep as "Terminated".) */
    assert_non_null(strstr(out, "got-term\n"));
    free(out);
    store_job_unref(job);
}

static void test_stop_during_shutdown_reason(void **state)
{
    fixture *f = *state;
    const char *args[] = {"100"};
    store_job *job = start(f, 0, "sleep", args, 1);
    supervisor_free(f->sv); /* the server shutting down */
    f->sv = NULL;
    store_job_info info;
    finish(job, &info);
    assert_int_equal(info.status, JOB_STATUS_FAILED);
    assert_int_equal(info.reason, JOB_REASON_SERVER_SHUTDOWN);
    store_job_unref(job);
    jw_error err = JW_ERROR_INIT;
    supervisor_config cfg = {.job_init_path = job_init_path()};
    assert_int_equal(supervisor_new(&cfg, f->st, &f->sv, &err), 0);
}

static void test_credentials_and_workdir(void **state)
{
    fixture *f = *state;
    store_job_info info;
    store_job *job = run_sh(f,
                            "id -u; id -g; id -G; grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' "
                            "/proc/self/status | cut -f2 | sort -u; pwd; echo $HOME; umask;"
                            "ls .. 2>&1 >/dev/null | grep -c 'Permission denied';"
                            "cat ../../output/* 2>&1 | grep -c 'Permission denied';"
                            "touch mine && echo wrote",
                            &info);
    char *out = read_output(job);
    char expect[512];
    snprintf(expect, sizeof(expect),
             "65534\n65534\n65534\n0000000000000000\n%s/%s\n%s/%s\n0022\n1\n1\nwrote\n", f->work,
             info.id, f->work, info.id);
    assert_string_equal(out, expect);
    free(out);
    /* The working directory goes with the job. */
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", f->work, info.id);
    assert_int_equal(access(path, F_OK), -1);
    store_job_unref(job);
}

/* /tmp, /var/tmp and /dev/shm are the job's own: empty tmpfs mounts (1777, nosuid, nodev, 64 MiB
 * each) that another job does not see and that are gone with the job, including from the host. */
static void test_private_tmp(void **state)
{
    fixture *f = *state;
    store_job_info info;
    char mark[64], script[1024];
    snprintf(mark, sizeof(mark), "jw-private-tmp-%d", (int)getpid());
    snprintf(script, sizeof(script),
             "for d in /tmp /var/tmp /dev/shm; do"
             "  ls -A $d | wc -l; stat -c '%%a' $d;"
             "  awk -v d=$d '$2 == d { print $3, $4 }' /proc/self/mounts | tail -n 1;"
             "  echo data >$d/%s && echo wrote;"
             "done; dd if=/dev/zero of=/tmp/big bs=1M count=80 2>&1 | grep -c 'No space'",
             mark);
    store_job *a = run_sh(f, script, &info);
    assert_int_equal(info.status, JOB_STATUS_COMPLETED);
    char *out = read_output(a);
    const char *one = "0\n1777\ntmpfs rw,nosuid,nodev,relatime,size=65536k\nwrote\n";
    char expect[512];
    snprintf(expect, sizeof(expect), "%s%s%s1\n", one, one, one);
    assert_string_equal(out, expect);
    free(out);
    store_job_unref(a);
    /* Nothing of it on the host. */
    const char *dirs[] = {"/tmp", "/var/tmp", "/dev/shm"};
    for (size_t i = 0; i < 3; i++) {
        char path[256];
        snprintf(path, sizeof(path), "%s/%s", dirs[i], mark);
        assert_int_equal(access(path, F_OK), -1);
    }
    /* A second job starts with empty directories again. */
    store_job *b = run_sh(f, "ls -A /tmp /var/tmp /dev/shm | grep -vc ':$'", &info);
    out = read_output(b);
    assert_string_equal(out, "2\n"); /* the two blank separator lines of ls only */
    free(out);
    store_job_unref(b);
}

/* The host's file system is read-only for a job: a file in a world-writable host directory (one
 * outside the private temporary directories, made here mode 1777) is refused with EROFS, so the
 * next job with the same uid cannot find it; the working directory, /tmp, /var/tmp, /dev/shm,
 * /dev/null and the job's own /proc stay writable. Kernel keyrings are refused (EPERM). */
static void test_readonly_host(void **state)
{
    fixture *f = *state;
    char ww[] = "/var/lib/jw-engine-ww-XXXXXX";
    assert_non_null(mkdtemp(ww));
    assert_int_equal(chmod(ww, 01777), 0);
    /* The probe runs from the world-writable directory: the build tree may be under the host's
     * /tmp (a CI clone), which a job's private /tmp hides. */
    char src[PATH_MAX], rel[256], probe[PATH_MAX], cp[2 * PATH_MAX + 16];
    assert_non_null(realpath(testbin("isoprobe", rel, sizeof(rel)), src));
    snprintf(probe, sizeof(probe), "%s/isoprobe", ww);
    snprintf(cp, sizeof(cp), "cp '%s' '%s'", src, probe);
    assert_int_equal(system(cp), 0);
    assert_int_equal(chmod(probe, 0755), 0);
    char script[PATH_MAX + 1024];
    snprintf(script, sizeof(script),
             "%s write %s/left write ./mine write /tmp/t write /var/tmp/t write /dev/shm/t"
             " write /dev/null keyring;"
             "awk '$2 == \"/\" { split($4, o, \",\"); print o[1] }' /proc/self/mounts | tail -n 1;"
             "echo 0 >/proc/self/oom_score_adj && echo proc",
             probe, ww);
    store_job_info info;
    store_job *job = run_sh(f, script, &info);
    assert_int_equal(info.status, JOB_STATUS_COMPLETED);
    char *out = read_output(job);
    char expect[1024];
    snprintf(expect, sizeof(expect),
             "write %s/left: EROFS\nwrite ./mine: ok\nwrite /tmp/t: ok\nwrite /var/tmp/t: ok\n"
             "write /dev/shm/t: ok\nwrite /dev/null: ok\nkeyring: EPERM\nro\nproc\n",
             ww);
    char left[PATH_MAX];
    snprintf(left, sizeof(left), "%s/left", ww);
    int left_there = access(left, F_OK) == 0;
    unlink(left);
    unlink(probe);
    assert_int_equal(rmdir(ww), 0);
    assert_string_equal(out, expect);
    assert_false(left_there);
    free(out);
    store_job_unref(job);
}

/* /dev/stdout and /dev/stderr re-open the output pipe (/proc/self/fd/1, 2) with a permission check
 * as the job user; they work, and in order with the plain fds. The pipe cannot be re-opened for
 * reading, and job-init's status pipe is not among the command's fds. */
static void test_dev_stdout_stderr(void **state)
{
    fixture *f = *state;
    store_job_info info;
    store_job *job =
        run_sh(f,
               "echo out >/dev/stdout; echo err >/dev/stderr; echo x | tee /dev/stderr;"
               "(: </proc/self/fd/1) 2>/dev/null || echo no-read;"
               "ls /proc/self/fd | tr '\\n' ' ' >&2; echo",
               &info);
    assert_int_equal(info.status, JOB_STATUS_COMPLETED);
    char *out = read_output(job);
    /* ls's own directory fd (3) is the only one beyond 0..2. */
    assert_string_equal(out, "out\nerr\nx\nx\nno-read\n0 1 2 3 \n");
    free(out);
    store_job_unref(job);
}

/* Waits until the job's output is at least `size` bytes. */
static void wait_output_size(store_job *job, int64_t size)
{
    for (int i = 0; i < 1000; i++) {
        int64_t n;
        store_job_output_state(job, &n, NULL);
        if (n >= size)
            return;
        usleep(10000);
    }
    fail_msg("job output stayed below %lld bytes", (long long)size);
}

/* Each job runs as a uid of its own: two jobs at once differ, each owns its working directory
 * (0700) and the other cannot list, read or write it; a third finds the range used up
 * (RESOURCE_EXHAUSTED) and nothing of it is left; after the end the uids are reused. */
static void test_dynamic_uids(void **state)
{
    fixture *f = *state;
    const char *aargs[] = {"-c", "echo secret >secret; id -u; id -g; echo ready; sleep 30"};
    store_job *a = start(f, 0, "sh", aargs, 2);
    wait_output_size(a, 2 * 11 + 6);
    store_job_info ai;
    store_job_snapshot(a, &ai);
    char adir[256];
    snprintf(adir, sizeof(adir), "%s/%s", f->work, ai.id);
    struct stat st;
    assert_int_equal(stat(adir, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    char *aout = read_output(a);
    char expect[128];
    snprintf(expect, sizeof(expect), "%u\n%u\nready\n", (unsigned)st.st_uid, (unsigned)st.st_gid);
    assert_string_equal(aout, expect);
    free(aout);
    assert_true(st.st_uid >= DYN_UID_FIRST && st.st_uid < DYN_UID_FIRST + DYN_UID_COUNT);

    /* Relative to B's own working directory: the fixture's directory is in the host's /tmp,
     * which B does not see. */
    char script[1024];
    snprintf(script, sizeof(script),
             "id -u; ls ../%s 2>&1 | grep -c 'Permission denied';"
             "cat ../%s/secret 2>&1 | grep -c 'Permission denied';"
             "touch ../%s/x 2>&1 | grep -c 'Permission denied'",
             ai.id, ai.id, ai.id);
    store_job_info bi;
    store_job *b = run_sh(f, script, &bi);
    char *bout = read_output(b);
    snprintf(expect, sizeof(expect), "%u\n1\n1\n1\n",
             (unsigned)(st.st_uid == DYN_UID_FIRST ? DYN_UID_FIRST + 1 : DYN_UID_FIRST));
    assert_string_equal(bout, expect);
    free(bout);
    store_job_unref(b);

    /* B's uid is free again; hold it with C, so that D finds none. */
    const char *cargs[] = {"30"};
    store_job *c = start(f, 0, "sleep", cargs, 1);
    store_job *d = NULL;
    jw_error err = JW_ERROR_INIT;
    store_job_spec spec = {.command = "true", .owner = "test", .network = JOB_NETWORK_HOST};
    assert_int_equal(store_job_new(f->st, &spec, &d, &err), 0);
    assert_true(supervisor_start_job(f->sv, d, &err) < 0);
    assert_int_equal(err.code, JW_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(err.msg, "all 2 uids of 1879048192-1879048193 are held"));
    store_job_info di;
    store_job_snapshot(d, &di);
    snprintf(adir, sizeof(adir), "%s/%s", f->work, di.id);
    assert_int_equal(access(adir, F_OK), -1);
    store_job_unref(d);

    /* Both end; their uids come back and serve the next two jobs. */
    assert_int_equal(supervisor_stop_job(f->sv, a, JOB_REASON_STOPPED, &err), 0);
    assert_int_equal(supervisor_stop_job(f->sv, c, JOB_REASON_STOPPED, &err), 0);
    store_job_info ci;
    finish(a, &ai);
    finish(c, &ci);
    store_job_unref(a);
    store_job_unref(c);
    unsigned seen = 0;
    store_job *e[2];
    for (int i = 0; i < 2; i++) {
        const char *eargs[] = {"-c", "id -u; sleep 30"};
        e[i] = start(f, 0, "sh", eargs, 2);
        wait_output_size(e[i], 11);
        char *out = read_output(e[i]);
        unsigned u = (unsigned)strtoul(out, NULL, 10);
        free(out);
        assert_true(u >= DYN_UID_FIRST && u < DYN_UID_FIRST + DYN_UID_COUNT);
        seen |= 1u << (u - DYN_UID_FIRST);
    }
    assert_int_equal(seen, 3);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(supervisor_stop_job(f->sv, e[i], JOB_REASON_STOPPED, &err), 0);
        store_job_info ei;
        finish(e[i], &ei);
        store_job_unref(e[i]);
    }
}

static void test_network_none(void **state)
{
    fixture *f = *state;
    const char *args[] = {"-c", "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"};
    job_limits lim = {0};
    store_job *job = NULL;
    jw_error err = JW_ERROR_INIT;
    store_job_spec spec = {
        .command = "sh", .args = args, .nargs = 2, .limits = lim, .network = JOB_NETWORK_NONE};
    assert_int_equal(store_job_new(f->st, &spec, &job, &err), 0);
    assert_int_equal(supervisor_start_job(f->sv, job, &err), 0);
    store_job_info info;
    finish(job, &info);
    char *out = read_output(job);
    assert_string_equal(out, "lo\n"); /* only loopback */
    free(out);
    store_job_unref(job);
}

/* Jobs as the server's own user with per-job working directories. */
static int setup_workdirs(void **state)
{
    return setup_full(state, -1, true, 100);
}

/* Removing a big working directory (job A made 250,000 files) happens off the supervisor's loop:
 * job B's live output keeps reaching the store meanwhile. B writes a line every 20 ms; the
 * largest gap between two appends while A's end is processed must stay far below the seconds
 * the removal takes (about 2 s here; 1 s leaves room for a loaded machine). */
static void test_big_workdir_removal_does_not_stall_output(void **state)
{
    fixture *f = *state;
    const char *bargs[] = {"-c", "while :; do echo tick; sleep 0.02; done"};
    store_job *b = start(f, 0, "sh", bargs, 2);
    wait_output(b, 5);
    const char *aargs[] = {"-c", "seq 1 250000 | xargs touch && echo made"};
    store_job *a = start(f, 0, "sh", aargs, 2);
    /* Creating the files takes seconds: wait for A's last line, then watch B until A is final. */
    for (int i = 0; i < 6000; i++) {
        int64_t size;
        store_job_output_state(a, &size, NULL);
        if (size >= 5)
            break;
        usleep(10000);
    }
    int64_t last_size, size;
    store_job_output_state(b, &last_size, NULL);
    int64_t t0 = now_monotonic_ns(), last_change = t0, max_gap = 0;
    for (;;) {
        bool a_closed;
        store_job_output_state(a, NULL, &a_closed);
        int64_t now = now_monotonic_ns();
        store_job_output_state(b, &size, NULL);
        if (size != last_size) {
            last_size = size;
            last_change = now;
        }
        if (now - last_change > max_gap)
            max_gap = now - last_change;
        if (a_closed)
            break;
        assert_true(now - t0 < 30 * INT64_C(1000000000));
        usleep(2000);
    }
    store_job_info info;
    finish(a, &info);
    assert_int_equal(info.status, JOB_STATUS_COMPLETED);
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", f->work, info.id);
    assert_int_equal(access(path, F_OK), -1); /* gone before the job was final */
    print_message("A's end took %lld ms; largest gap in B's output %lld ms\n",
                  (long long)((now_monotonic_ns() - t0) / 1000000), (long long)(max_gap / 1000000));
    assert_true(max_gap < 1000 * INT64_C(1000000));
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(supervisor_stop_job(f->sv, b, JOB_REASON_STOPPED, &err), 0);
    finish(b, &info);
    store_job_unref(a);
    store_job_unref(b);
}

static int setup_grace_2s(void **state)
{
    return setup_full(state, -1, false, 2000);
}

/* Many stops at once: each supervisor_stop_job() returns at once, and every job ends after the
 * grace period. */
static void test_many_stops_at_once(void **state)
{
    fixture *f = *state;
    enum { N = 8 };
    const char *args[] = {"-c", "trap '' TERM; echo ready; while :; do sleep 1; done"};
    store_job *jobs[N];
    for (int i = 0; i < N; i++)
        jobs[i] = start(f, 0, "sh", args, 2);
    for (int i = 0; i < N; i++)
        wait_output(jobs[i], 6);
    jw_error err = JW_ERROR_INIT;
    int64_t t0 = now_monotonic_ns();
    for (int i = 0; i < N; i++)
        assert_int_equal(supervisor_stop_job(f->sv, jobs[i], JOB_REASON_STOPPED, &err), 0);
    int64_t took = now_monotonic_ns() - t0;
    assert_true(took < 50 * INT64_C(1000000));
    for (int i = 0; i < N; i++) {
        store_job_info info;
        finish(jobs[i], &info);
        assert_int_equal(info.status, JOB_STATUS_STOPPED);
        assert_int_equal(info.signal, 9);
        store_job_unref(jobs[i]);
    }
    int64_t ms = (now_monotonic_ns() - t0) / 1000000;
    assert_true(ms >= 2000);
    assert_true(ms < 10000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_exit_codes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_failed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_ignoring_sigterm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_50mib_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stdout_stderr_apart_and_merged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_init_hygiene, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_short_jobs_leave_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_background_children_killed_with_job, setup, teardown),
        cmocka_unit_test_setup_teardown(test_namespaces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_credentials_and_workdir, setup_nobody, teardown),
        cmocka_unit_test_setup_teardown(test_network_none, setup_nobody, teardown),
        cmocka_unit_test_setup_teardown(test_private_tmp, setup_nobody, teardown),
        cmocka_unit_test_setup_teardown(test_dev_stdout_stderr, setup_nobody, teardown),
        cmocka_unit_test_setup_teardown(test_readonly_host, setup_nobody, teardown),
        cmocka_unit_test_setup_teardown(test_dynamic_uids, setup_dynamic, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_forwarded_to_command, setup_long_grace,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stop_during_shutdown_reason, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_workdir_removal_does_not_stall_output,
                                        setup_workdirs, teardown),
        cmocka_unit_test_setup_teardown(test_many_stops_at_once, setup_grace_2s, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
