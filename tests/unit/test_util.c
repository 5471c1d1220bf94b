/* internal/util: the errno-to-status mapping, the capped file reader, the cleanup macros and
 * the tree remover. */
#include "util/cleanup.h"
#include "util/error.h"
#include "util/fileio.h"
#include "util/parse.h"
#include "util/rmtree.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>

/* A fresh directory under $TMPDIR for one test; removed with rm -rf semantics by the test. */
static void make_tmpdir(char *buf, size_t size)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(buf, size, "%s/jw-test-util-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(buf));
}

static void write_at(int dfd, const char *name, const char *data, size_t len)
{
    int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write_full(fd, data, len), 0);
    close(fd);
}

static bool exists_at(int dfd, const char *name)
{
    struct stat st;
    return fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* ---- error ---- */

static void test_code_from_errno(void **state)
{
    static const struct {
        int errnum;
        jw_code code;
    } cases[] = {
        {ENOMEM, JW_RESOURCE_EXHAUSTED},
        {EMFILE, JW_RESOURCE_EXHAUSTED},
        {ENFILE, JW_RESOURCE_EXHAUSTED},
        {ENOSPC, JW_RESOURCE_EXHAUSTED},
        {EDQUOT, JW_RESOURCE_EXHAUSTED},
        {EAGAIN, JW_RESOURCE_EXHAUSTED},
        {E2BIG, JW_RESOURCE_EXHAUSTED},
        {ESHUTDOWN, JW_UNAVAILABLE},
        {ETIMEDOUT, JW_UNAVAILABLE},
        {ECANCELED, JW_CANCELLED},
        {EACCES, JW_INTERNAL},
        {ENOENT, JW_INTERNAL},
        {EINVAL, JW_INTERNAL},
        {EIO, JW_INTERNAL},
        {0, JW_INTERNAL},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        assert_int_equal(jw_code_from_errno(cases[i].errnum), cases[i].code);
        /* Negative errno values map the same. */
        assert_int_equal(jw_code_from_errno(-cases[i].errnum), cases[i].code);
    }
}

static void test_error_errno(void **state)
{
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(jw_error_errno(&err, ENOENT, "open '%s'", "x"), -ENOENT);
    assert_int_equal(err.code, JW_INTERNAL);
    assert_string_equal(err.msg, "open 'x': No such file or directory");

    /* A negative errno is the same error. */
    assert_int_equal(jw_error_errno(&err, -ENOSPC, "write '%s'", "y"), -ENOSPC);
    assert_int_equal(err.code, JW_RESOURCE_EXHAUSTED);
    assert_string_equal(err.msg, "write 'y': No space left on device");

    /* The explicit code wins over the mapping; the suffix is the same. */
    assert_int_equal(jw_error_errno_code(&err, JW_INVALID_ARGUMENT, -EACCES, "read '%s'", "z"),
                     -EACCES);
    assert_int_equal(err.code, JW_INVALID_ARGUMENT);
    assert_string_equal(err.msg, "read 'z': Permission denied");

    /* errnum 0 (a caller that lost errno) still reports a failure. */
    assert_int_equal(jw_error_errno(&err, 0, "lost"), -EIO);
    assert_int_equal(err.code, JW_INTERNAL);
    assert_string_equal(err.msg, "lost: Input/output error");

    /* NULL err: only the return value. */
    assert_int_equal(jw_error_errno(NULL, EMFILE, "open"), -EMFILE);
    assert_int_equal(jw_error_errno_code(NULL, JW_INTERNAL, 0, "open"), -EIO);
}

static void test_error_errno_truncation(void **state)
{
    jw_error err = JW_ERROR_INIT;
    char longname[2 * JW_ERROR_MSG_MAX];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(jw_error_errno(&err, ENOENT, "open '%s'", longname), -ENOENT);
    assert_int_equal(strlen(err.msg), JW_ERROR_MSG_MAX - 1);
    assert_true(strncmp(err.msg, "open 'aaaa", 10) == 0);

    /* A message that just fits gets as much of the suffix as there is room for. */
    char fits[JW_ERROR_MSG_MAX - 4];
    memset(fits, 'b', sizeof(fits) - 1);
    fits[sizeof(fits) - 1] = '\0';
    assert_int_equal(jw_error_errno(&err, ENOENT, "%s", fits), -ENOENT);
    assert_int_equal(strlen(err.msg), JW_ERROR_MSG_MAX - 1);
    assert_string_equal(err.msg + sizeof(fits) - 1, ": No");
}

static void test_strerror(void **state)
{
    char buf[64];
    assert_string_equal(jw_strerror(ENOENT, buf, sizeof(buf)), "No such file or directory");
    assert_string_equal(jw_strerror(-EACCES, buf, sizeof(buf)), "Permission denied");
    assert_non_null(jw_strerror(123456, buf, sizeof(buf)));
}

/* ---- cleanup ---- */

typedef struct counted {
    int *frees;
} counted;

static void counted_free(counted *c)
{
    (*c->frees)++;
}
JW_DEFINE_POINTER_CLEANUP(counted, counted_free)

static void test_cleanup_macro(void **state)
{
    int frees = 0;
    counted c = {&frees};
    {
        _cleanup_(counted_freep) counted *p = &c;
        _cleanup_(counted_freep) counted *none = NULL; /* not called for NULL */
        (void)p;
        (void)none;
    }
    assert_int_equal(frees, 1);
    {
        _cleanup_(counted_freep) counted *p = &c;
        counted *kept = TAKE_PTR(p);
        assert_ptr_equal(kept, &c);
    }
    assert_int_equal(frees, 1);
}

/* ---- fileio ---- */

static void test_read_file_alloc(void **state)
{
    char dir[PATH_MAX];
    make_tmpdir(dir, sizeof(dir));
    _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(dfd >= 0);

    write_at(dfd, "small", "hello\n", 6);
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(read_file_alloc_at(dfd, "small", 6, 0, &buf, &len), 0);
    assert_int_equal(len, 6);
    assert_string_equal(buf, "hello\n");
    free(buf);

    /* Erase mode, and binary content: the length counts past NULs. */
    write_at(dfd, "bin", "a\0b", 3);
    _cleanup_erase_ char *key = NULL;
    assert_int_equal(read_file_alloc_at(dfd, "bin", 100, READ_FILE_ERASE, &key, &len), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(key, "a\0b\0", 4);

    /* One byte above the cap; nothing is written on failure. */
    char sentinel;
    buf = &sentinel;
    len = 77;
    assert_int_equal(read_file_alloc_at(dfd, "small", 5, 0, &buf, &len), -EFBIG);
    assert_ptr_equal(buf, &sentinel);
    assert_int_equal(len, 77);

    /* Files that do not say their size are cut off at the cap, in both modes. */
    assert_int_equal(read_file_alloc_at(AT_FDCWD, "/dev/zero", 100000, 0, &buf, NULL), -EFBIG);
    assert_int_equal(read_file_alloc_at(AT_FDCWD, "/dev/zero", 100000, READ_FILE_ERASE, &buf, NULL),
                     -EFBIG);
    assert_ptr_equal(buf, &sentinel);

    /* A larger file read in full through several grows (erase mode copies, never reallocs). */
    size_t big = 300000;
    char *data = malloc(big);
    assert_non_null(data);
    for (size_t i = 0; i < big; i++)
        data[i] = (char)('a' + i % 26);
    write_at(dfd, "big", data, big);
    int pfd[2];
    assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
    /* Through a pipe as well, where st_size says nothing. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        _exit(write_full(pfd[1], data, big) == 0 ? 0 : 1);
    }
    close(pfd[1]);
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", pfd[0]);
    assert_int_equal(read_file_alloc_at(AT_FDCWD, path, big, READ_FILE_ERASE, &buf, &len), 0);
    close(pfd[0]);
    assert_int_equal(len, big);
    assert_memory_equal(buf, data, big);
    erase_free(buf);
    assert_int_equal(read_file_alloc_at(dfd, "big", big, 0, &buf, &len), 0);
    assert_int_equal(len, big);
    assert_memory_equal(buf, data, big);
    free(buf);
    free(data);

    /* Empty file, missing file, directory. */
    write_at(dfd, "empty", "", 0);
    assert_int_equal(read_file_alloc_at(dfd, "empty", 10, 0, &buf, &len), 0);
    assert_int_equal(len, 0);
    assert_string_equal(buf, "");
    free(buf);
    buf = &sentinel;
    assert_int_equal(read_file_alloc_at(dfd, "missing", 10, 0, &buf, &len), -ENOENT);
    assert_int_equal(read_file_alloc_at(dfd, ".", 10, 0, &buf, &len), -EISDIR);

    /* READ_FILE_REGULAR refuses a FIFO without blocking on it. */
    assert_int_equal(mkfifoat(dfd, "fifo", 0600), 0);
    assert_int_equal(read_file_alloc_at(dfd, "fifo", 10, READ_FILE_REGULAR, &buf, &len), -EBADFD);
    assert_ptr_equal(buf, &sentinel);

    erase_free(NULL);
    assert_int_equal(rm_tree_at(AT_FDCWD, dir), 0);
}

/* ---- rmtree ---- */

static void test_rmtree_deep(void **state)
{
    char dir[PATH_MAX];
    make_tmpdir(dir, sizeof(dir));
    int top = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(top >= 0);
    /* 30,000 levels: far beyond PATH_MAX as a path and beyond any recursion worth having. */
    int cur = dup(top);
    for (int i = 0; i < 30000; i++) {
        assert_int_equal(mkdirat(cur, "d", 0755), 0);
        if (i % 1000 == 0)
            write_at(cur, "f", "x", 1);
        int next = openat(cur, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(next >= 0);
        close(cur);
        cur = next;
    }
    close(cur);
    size_t failed = 99;
    assert_int_equal(rm_tree_at_count(top, "d", &failed), 0);
    assert_int_equal(failed, 0);
    assert_false(exists_at(top, "d"));
    close(top);
    assert_int_equal(rm_tree_at(AT_FDCWD, dir), 0);
    assert_int_equal(access(dir, F_OK), -1);
}

static void test_rmtree_symlinks(void **state)
{
    char dir[PATH_MAX];
    make_tmpdir(dir, sizeof(dir));
    _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(dfd >= 0);
    /* outside/keep must survive; tree/ holds links to it, to / and to itself. */
    assert_int_equal(mkdirat(dfd, "outside", 0755), 0);
    write_at(dfd, "outside/keep", "k", 1);
    assert_int_equal(mkdirat(dfd, "tree", 0755), 0);
    assert_int_equal(mkdirat(dfd, "tree/sub", 0755), 0);
    char target[PATH_MAX + 16];
    snprintf(target, sizeof(target), "%s/outside", dir);
    assert_int_equal(symlinkat(target, dfd, "tree/abs"), 0);
    assert_int_equal(symlinkat("../../outside", dfd, "tree/sub/rel"), 0);
    assert_int_equal(symlinkat("/", dfd, "tree/sub/root"), 0);
    assert_int_equal(symlinkat(".", dfd, "tree/sub/self"), 0);
    assert_int_equal(symlinkat("outside", dfd, "link-to-dir"), 0);

    /* The top itself being a symlink to a directory: only the link goes. */
    assert_int_equal(rm_tree_at(dfd, "link-to-dir"), 0);
    assert_false(exists_at(dfd, "link-to-dir"));
    assert_true(exists_at(dfd, "outside/keep"));

    size_t failed = 99;
    assert_int_equal(rm_tree_at_count(dfd, "tree", &failed), 0);
    assert_int_equal(failed, 0);
    assert_false(exists_at(dfd, "tree"));
    assert_true(exists_at(dfd, "outside/keep"));
    assert_true(exists_at(AT_FDCWD, "/etc"));

    /* Absent is success; a plain file is one unlink. */
    assert_int_equal(rm_tree_at(dfd, "tree"), 0);
    assert_int_equal(rm_tree_at(dfd, "outside/keep"), 0);
    assert_false(exists_at(dfd, "outside/keep"));
    assert_int_equal(rm_tree_at(AT_FDCWD, dir), 0);
}

static void test_rmtree_flat(void **state)
{
    char dir[PATH_MAX];
    make_tmpdir(dir, sizeof(dir));
    _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(dfd >= 0);
    assert_int_equal(mkdirat(dfd, "flat", 0755), 0);
    _cleanup_close_ int ffd = openat(dfd, "flat", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(ffd >= 0);
    for (int i = 0; i < 100000; i++) {
        char name[32];
        snprintf(name, sizeof(name), "f%d", i);
        int fd = openat(ffd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        close(fd);
    }
    size_t failed = 99;
    assert_int_equal(rm_tree_at_count(dfd, "flat", &failed), 0);
    assert_int_equal(failed, 0);
    assert_false(exists_at(dfd, "flat"));
    assert_int_equal(rm_tree_at(AT_FDCWD, dir), 0);
}

/* Makes `name` in dfd impossible to unlink: the immutable flag for root (who ignores
 * permissions), a read-only parent otherwise. Returns false when this host allows neither. */
static bool make_unremovable(int dfd, const char *name, int parent_fd)
{
    if (geteuid() != 0)
        return fchmod(parent_fd, 0500) == 0;
    int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    int flags = 0;
    bool ok = ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0;
    flags |= FS_IMMUTABLE_FL;
    ok = ok && ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
    close(fd);
    return ok;
}

static void make_removable(int dfd, const char *name, int parent_fd)
{
    if (geteuid() != 0) {
        fchmod(parent_fd, 0755);
        return;
    }
    int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
    int flags = 0;
    if (fd >= 0 && ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
        flags &= ~FS_IMMUTABLE_FL;
        ioctl(fd, FS_IOC_SETFLAGS, &flags);
    }
    if (fd >= 0)
        close(fd);
}

static void test_rmtree_unremovable(void **state)
{
    char dir[PATH_MAX];
    make_tmpdir(dir, sizeof(dir));
    _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(dfd >= 0);
    assert_int_equal(mkdirat(dfd, "t", 0755), 0);
    assert_int_equal(mkdirat(dfd, "t/a", 0755), 0);
    assert_int_equal(mkdirat(dfd, "t/a/stuck", 0755), 0);
    assert_int_equal(mkdirat(dfd, "t/b", 0755), 0);
    write_at(dfd, "t/a/stuck/file", "x", 1);
    write_at(dfd, "t/a/stuck/other", "x", 1);
    write_at(dfd, "t/b/file", "x", 1);
    _cleanup_close_ int sfd = openat(dfd, "t/a/stuck", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(sfd >= 0);
    if (!make_unremovable(sfd, "file", sfd)) {
        rm_tree_at(AT_FDCWD, dir);
        print_message("skipped: cannot make a file unremovable here (no immutable flag)\n");
        skip();
    }
    size_t failed = 0;
    int r = rm_tree_at_count(dfd, "t", &failed);
    make_removable(sfd, "file", sfd);
    assert_true(r == -EPERM || r == -EACCES);
    /* The file, and stuck, a and t that still hold it; the rest went. */
    if (geteuid() == 0) {
        assert_int_equal(failed, 4);
        assert_false(exists_at(dfd, "t/a/stuck/other"));
    } else {
        assert_int_equal(failed, 5); /* both files sit in the read-only directory */
    }
    assert_true(exists_at(dfd, "t/a/stuck/file"));
    assert_false(exists_at(dfd, "t/b"));
    assert_int_equal(rm_tree_at(AT_FDCWD, dir), 0);
}

/* Durations as flags take them: units ms, s, m, h and d, combined; bad text and overflow refused.
 */
static void test_parse_duration(void **state)
{
    (void)state;
    const struct {
        const char *in;
        int64_t ms;
    } ok[] = {{"30", 30000},     {"250ms", 250},       {"1m30s", 90000}, {"2h", 7200000},
              {"7d", 604800000}, {"1d12h", 129600000}, {"0", 0}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int64_t v = -1;
        assert_int_equal(parse_duration_ms(ok[i].in, &v), 0);
        assert_int_equal(v, ok[i].ms);
    }
    int64_t v = 42;
    assert_int_equal(parse_duration_ms("7w", &v), -EINVAL);
    assert_int_equal(parse_duration_ms("d", &v), -EINVAL);
    assert_int_equal(parse_duration_ms("-1s", &v), -EINVAL);
    assert_int_equal(parse_duration_ms("99999999999999999d", &v), -ERANGE);
    assert_int_equal(v, 42);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_code_from_errno),
        cmocka_unit_test(test_error_errno),
        cmocka_unit_test(test_error_errno_truncation),
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_cleanup_macro),
        cmocka_unit_test(test_read_file_alloc),
        cmocka_unit_test(test_rmtree_deep),
        cmocka_unit_test(test_rmtree_symlinks),
        cmocka_unit_test(test_rmtree_flat),
        cmocka_unit_test(test_rmtree_unremovable),
        cmocka_unit_test(test_parse_duration),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
