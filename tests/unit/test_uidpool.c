/* The per-job uid pool (spawn/uidpool.h): ranges, allocation order, exhaustion, release, and no
 * double allocation under concurrency. */
#include "spawn/uidpool.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

static void test_parse_range(void **state)
{
    (void)state;
    uint32_t first = 7, count = 7;
    assert_int_equal(uid_pool_parse_range("1879048192-1879113727", &first, &count), 0);
    assert_int_equal(first, 1879048192u);
    assert_int_equal(count, 65536u);
    assert_int_equal(uid_pool_parse_range("100000-100000", &first, &count), 0);
    assert_int_equal(count, 1);
    const char *bad[] = {"",
                         "5",
                         "-5",
                         "5-",
                         "10-5",
                         "a-b",
                         "0-10",
                         "65000-66000",
                         "65534-65534",
                         "65535-70000",
                         "2147483000-2147483647",
                         "1-99999999999",
                         "100000-5000000",
                         " 1-2"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        first = count = 7;
        assert_true(uid_pool_parse_range(bad[i], &first, &count) < 0);
        assert_int_equal(first, 7); /* untouched on failure */
        assert_int_equal(count, 7);
    }
}

static void test_new_refuses_bad_ranges(void **state)
{
    (void)state;
    uid_pool *p = NULL;
    jw_error err = JW_ERROR_INIT;
    assert_true(uid_pool_new(0, 10, &p, &err) < 0);
    assert_int_equal(err.code, JW_INVALID_ARGUMENT);
    assert_true(uid_pool_new(65530, 10, &p, &err) < 0);
    assert_true(uid_pool_new(100000, 0, &p, &err) < 0);
    assert_null(p);
}

/* Every uid once, in order; then RESOURCE_EXHAUSTED naming the range; released uids come back
 * least recently released first, after every uid that was never used. */
static void test_acquire_exhaust_release_lru(void **state)
{
    (void)state;
    uid_pool *p = NULL;
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(uid_pool_new(200000, 4, &p, &err), 0);
    uint32_t u[4];
    for (int i = 0; i < 4; i++) {
        assert_int_equal(uid_pool_acquire(p, &u[i], &err), 0);
        assert_int_equal(u[i], 200000u + (uint32_t)i);
    }
    uint32_t x = 1;
    assert_true(uid_pool_acquire(p, &x, &err) < 0);
    assert_int_equal(err.code, JW_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(err.msg, "all 4 uids of 200000-200003 are held by running jobs"));
    assert_int_equal(x, 1);
    assert_int_equal(uid_pool_n_free(p), 0);

    assert_int_equal(uid_pool_release(p, 200002), 0);
    assert_int_equal(uid_pool_release(p, 200000), 0);
    assert_int_equal(uid_pool_release(p, 200000), -EINVAL); /* double release */
    assert_int_equal(uid_pool_release(p, 199999), -EINVAL); /* outside */
    assert_int_equal(uid_pool_release(p, 200004), -EINVAL);
    assert_int_equal(uid_pool_n_free(p), 2);
    assert_int_equal(uid_pool_acquire(p, &x, &err), 0);
    assert_int_equal(x, 200002u);
    assert_int_equal(uid_pool_acquire(p, &x, &err), 0);
    assert_int_equal(x, 200000u);
    assert_true(uid_pool_acquire(p, &x, &err) < 0);
    uid_pool_free(p);
    uid_pool_free(NULL);
}

static void test_lru_reuse_is_late(void **state)
{
    (void)state;
    uid_pool *p = NULL;
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(uid_pool_new(300000, 100, &p, &err), 0);
    /* One job at a time: each uid comes back only after the other 99 were used. */
    uint32_t seen[300] = {0};
    for (int i = 0; i < 300; i++) {
        assert_int_equal(uid_pool_acquire(p, &seen[i], &err), 0);
        if (i >= 100)
            assert_int_equal(seen[i], seen[i - 100]);
        for (int k = 1; k < 100 && k <= i; k++)
            assert_int_not_equal(seen[i], seen[i - k]);
        assert_int_equal(uid_pool_release(p, seen[i]), 0);
    }
    uid_pool_free(p);
}

#define THREADS 8
#define ROUNDS  20000
#define RANGE   16

typedef struct {
    uid_pool *p;
    int *holders; /* holders[uid - first]: how many threads hold it now */
    pthread_mutex_t *lock;
    bool bad;
} stress_arg;

static void *stress(void *a_)
{
    stress_arg *a = a_;
    jw_error err = JW_ERROR_INIT;
    for (int i = 0; i < ROUNDS; i++) {
        uint32_t u;
        if (uid_pool_acquire(a->p, &u, &err) < 0)
            continue; /* exhausted for a moment: fine */
        pthread_mutex_lock(a->lock);
        if (++a->holders[u - 400000] != 1)
            a->bad = true;
        pthread_mutex_unlock(a->lock);
        pthread_mutex_lock(a->lock);
        a->holders[u - 400000]--;
        pthread_mutex_unlock(a->lock);
        if (uid_pool_release(a->p, u) < 0)
            a->bad = true;
    }
    return NULL;
}

static void test_no_double_allocation_under_concurrency(void **state)
{
    (void)state;
    uid_pool *p = NULL;
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(uid_pool_new(400000, RANGE, &p, &err), 0);
    int holders[RANGE] = {0};
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    stress_arg args[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (stress_arg){.p = p, .holders = holders, .lock = &lock};
        assert_int_equal(pthread_create(&t[i], NULL, stress, &args[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_false(args[i].bad);
    }
    assert_int_equal(uid_pool_n_free(p), RANGE);
    uid_pool_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_range),
        cmocka_unit_test(test_new_refuses_bad_ranges),
        cmocka_unit_test(test_acquire_exhaust_release_lru),
        cmocka_unit_test(test_lru_reuse_is_late),
        cmocka_unit_test(test_no_double_allocation_under_concurrency),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
