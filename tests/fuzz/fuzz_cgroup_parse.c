/* Every parser of cgroup v2 interface files (internal/cgroup/cgroup.h), each run on the whole
 * input as the text of the file. The server reads these files from cgroups that jobs run in; a
 * job cannot write them, but a parser must survive any text the kernel (or a fake tree in the
 * unit tests) could hand it.
 *
 * Properties: each returns only its documented errors; out parameters are written only on
 * success; values are non-negative; what a parser accepts survives a format/parse round trip. */
#include "fuzz.h"

#include "cgroup/cgroup-internal.h"

#include <errno.h>
#include <inttypes.h>

#define SENTINEL (-7)

static void fuzz_keyed(const char *text, const char *key)
{
    int64_t v = SENTINEL;
    int r = cgroup_parse_keyed(text, key, &v);
    FUZZ_CHECK(r == 0 || r == -ENOENT || r == -EINVAL);
    if (r < 0) {
        FUZZ_CHECK(v == SENTINEL);
        return;
    }
    FUZZ_CHECK(v >= 0);
    /* The key starts the text or a line. */
    size_t klen = strlen(key);
    int found = strncmp(text, key, klen) == 0;
    for (const char *p = strchr(text, '\n'); p && !found; p = strchr(p + 1, '\n'))
        found = strncmp(p + 1, key, klen) == 0;
    FUZZ_CHECK(found);
}

static void fuzz_first_word_key(const char *text)
{
    char key[64];
    size_t n = strcspn(text, " \t\n");
    if (n == 0 || n >= sizeof(key))
        return;
    memcpy(key, text, n);
    key[n] = '\0';
    fuzz_keyed(text, key);
}

static void fuzz_io_stat(const char *text)
{
    int64_t rb = SENTINEL, wb = SENTINEL;
    int r = cgroup_parse_io_stat(text, &rb, &wb);
    FUZZ_CHECK(r == 0 || r == -EINVAL);
    if (r < 0)
        FUZZ_CHECK(rb == SENTINEL && wb == SENTINEL);
    else
        FUZZ_CHECK(rb >= 0 && wb >= 0);
}

static void fuzz_controllers(const char *text)
{
    unsigned mask = 0xdead;
    FUZZ_CHECK(cgroup_parse_controllers(text, &mask) == 0);
    FUZZ_CHECK((mask & ~0xfu) == 0);
    char buf[64];
    unsigned back = 0xdead;
    FUZZ_CHECK(cgroup_format_controllers(mask, NULL, buf, sizeof(buf)) == 0);
    FUZZ_CHECK(cgroup_parse_controllers(buf, &back) == 0 && back == mask);
    FUZZ_CHECK(cgroup_format_controllers(mask, "+", buf, sizeof(buf)) == 0);
    FUZZ_CHECK(mask == 0 || buf[0] == '+');
}

static void fuzz_proc_cgroup(const char *text)
{
    static const size_t sizes[] = {CGROUP_PATH_MAX, 16, 2};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        char *path = malloc(sizes[i]);
        if (!path)
            abort();
        memset(path, 'x', sizes[i]);
        int r = cgroup_parse_proc_cgroup(text, path, sizes[i]);
        FUZZ_CHECK(r == 0 || r == -ENOENT || r == -EINVAL || r == -ENAMETOOLONG);
        if (r == 0) {
            size_t len = strnlen(path, sizes[i]);
            FUZZ_CHECK(len < sizes[i] && path[0] == '/' && !strchr(path, '\n'));
            FUZZ_CHECK(strstr(text, path) != NULL);
        }
        free(path);

        char parent[CGROUP_PATH_MAX];
        size_t psize = sizes[i] < sizeof(parent) ? sizes[i] : sizeof(parent);
        r = cgroup_derive_parent(text, parent, psize);
        FUZZ_CHECK(r == 0 || r == -ENOENT || r == -EINVAL || r == -ENAMETOOLONG);
        if (r == 0)
            FUZZ_CHECK(parent[0] == '/' && strlen(parent) < psize && strcmp(parent, "/") != 0);
    }
}

static void fuzz_majmin(const char *text)
{
    unsigned maj = 77, min = 77;
    int r = cgroup_parse_majmin(text, &maj, &min);
    FUZZ_CHECK(r == 0 || r == -EINVAL);
    if (r < 0) {
        FUZZ_CHECK(maj == 77 && min == 77);
        return;
    }
    FUZZ_CHECK(maj <= 0xfff && min <= 0xfffff);
    char buf[CGROUP_MAJMIN_MAX], line[96];
    snprintf(buf, sizeof(buf), "%u:%u", maj, min);
    unsigned maj2, min2;
    FUZZ_CHECK(cgroup_parse_majmin(buf, &maj2, &min2) == 0 && maj2 == maj && min2 == min);
    FUZZ_CHECK(cgroup_format_io_max(text, 4096, line, sizeof(line)) == 0);
    FUZZ_CHECK(strncmp(line, buf, strlen(buf)) == 0);
}

static void fuzz_int_or_max(const char *text)
{
    int64_t v = SENTINEL;
    int r = cgroup_parse_int_or_max(text, &v);
    FUZZ_CHECK(r == 0 || r == -EINVAL);
    if (r < 0) {
        FUZZ_CHECK(v == SENTINEL);
        return;
    }
    FUZZ_CHECK(v >= 0);
    char buf[32];
    if (v == INT64_MAX)
        snprintf(buf, sizeof(buf), "max\n");
    else
        snprintf(buf, sizeof(buf), "%" PRId64 "\n", v);
    int64_t back = SENTINEL;
    FUZZ_CHECK(cgroup_parse_int_or_max(buf, &back) == 0 && back == v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_strndup(data, size);
    static const char *const keys[] = {"usage_usec", "nr_throttled", "oom_kill", "populated",
                                       "oom",        "frozen",       "max"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        fuzz_keyed(text, keys[i]);
    fuzz_first_word_key(text);
    fuzz_io_stat(text);
    fuzz_controllers(text);
    fuzz_proc_cgroup(text);
    fuzz_majmin(text);
    fuzz_int_or_max(text);
    free(text);
    return 0;
}
