/* The local job engine end to end on this host, without cgroups: store + supervisor + the real
 * job-init binary (JW_JOB_INIT) running real commands. Cgroup enforcement is the vm tier's. */
#include "spawn/supervisor.h"
#include "store/store.h"
#include "util/misc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/jw-engine-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    store_config sc = {.data_dir = f->dir};
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(store_new(&sc, &f->st, &err), 0);
    if (access(job_init_path(), X_OK) != 0)
        fail_msg("job-init not found at '%s' (set JW_JOB_INIT)", job_init_path());
    supervisor_config cfg = {.job_init_path = job_init_path(), .stop_grace_ms = 100};
    assert_int_equal(supervisor_new(&cfg, f->st, &f->sv, &err), 0);
    *state = f;
    return 0;
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
    assert_int_equal(
        store_job_new(f->st, cmd, args, nargs, &lim, false, timeout_s, "test", &job, &err), 0);
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

    /* A file that is not executable. */
    char path[128];
    snprintf(path, sizeof(path), "%s/notexec", f->dir);
    int fd = open(path, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    close(fd);
    job = start(f, 0, path, NULL, 0);
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
    int64_t t0 = now_monotonic_ns();
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(supervisor_stop_job(f->sv, job, JOB_REASON_STOPPED, &err), 0);
    int64_t ms = (now_monotonic_ns() - t0) / 1000000;
    store_job_info info;
    finish(job, &info);
    assert_int_equal(info.status, JOB_STATUS_STOPPED);
    assert_int_equal(info.reason, JOB_REASON_STOPPED);
    assert_int_equal(info.signal, 9); /* it survived SIGTERM and was killed */
    assert_true(ms >= 100);           /* the grace period was honoured */
    assert_true(ms < 5000);
    /* No live process of the group is left. */
    assert_true(dies(info.pid, true));

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

static void test_stdout_stderr_merged_in_order(void **state)
{
    fixture *f = *state;
    store_job_info info;
    store_job *job = run_sh(f, "echo one; echo two >&2; printf three; echo four >&2", &info);
    char *out = read_output(job);
    assert_string_equal(out, "one\ntwo\nthreefour\n");
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
    /* The shell's own view of itself: fds, signal mask, ignored signals, no_new_privs,
     * session, stdin, environment. */
    store_job *job = run_sh(f,
                            "ls /proc/$$/fd | tr '\\n' ' '; echo;"
                            "grep -E '^(SigBlk|SigIgn|NoNewPrivs)' /proc/$$/status;"
                            "cut -d' ' -f1,6 /proc/$$/stat;"
                            "cat /proc/$$/oom_score_adj;"
                            "cat; echo stdin-eof; echo \"$JOBWORKER_JOB_ID\"",
                            &info);
    char *out = read_output(job);
    char expect[1024];
    snprintf(expect, sizeof(expect),
             "0 1 2 \nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\nNoNewPrivs:\t1\n"
             "%d %d\n0\nstdin-eof\n%s\n",
             info.pid, info.pid, info.id);
    assert_string_equal(out, expect);
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

static void test_background_children_killed_with_group(void **state)
{
    fixture *f = *state;
    store_job_info info;
    /* The job exits while a child in its process group still holds the output pipe. */
    store_job *job = run_sh(f, "sleep 100 & echo $!", &info);
    char *out = read_output(job);
    int child = atoi(out);
    assert_true(child > 0);
    assert_true(dies(child, false));
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_exit_codes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_failed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_ignoring_sigterm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_50mib_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stdout_stderr_merged_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_init_hygiene, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_short_jobs_leave_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_background_children_killed_with_group, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stop_during_shutdown_reason, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
