/* Admission: the concurrency cap, memory and cpu capacity, FIFO within an owner, round-robin
 * between owners, quotas, refusals that name the limit, cancel and queue positions. */
#include "sched/queue.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

static const jobqueue_quota none = {0};

static bool submit(jobqueue *q, intptr_t item, const char *owner, int64_t mem, int64_t cpu)
{
    bool now = false;
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(jobqueue_submit(q, (void *)item, owner, &none, mem, cpu, &now, &err), 0);
    return now;
}

static intptr_t next(jobqueue *q)
{
    return (intptr_t)jobqueue_next(q);
}

static void test_cap_and_fifo(void **state)
{
    (void)state;
    jobqueue *q = NULL;
    jobqueue_capacity cap = {.max_running = 2};
    assert_int_equal(jobqueue_new(&cap, &q), 0);
    assert_true(submit(q, 1, "a", 0, 0));
    assert_true(submit(q, 2, "a", 0, 0));
    assert_false(submit(q, 3, "a", 0, 0)); /* the third waits */
    assert_false(submit(q, 4, "a", 0, 0));
    assert_int_equal(next(q), 0); /* nothing freed */
    assert_int_equal(jobqueue_position(q, (void *)3, "a"), 1);
    assert_int_equal(jobqueue_position(q, (void *)4, "a"), 2);
    jobqueue_release(q, "a", 0, 0);
    assert_int_equal(next(q), 3); /* FIFO */
    assert_int_equal(next(q), 0);
    jobqueue_release(q, "a", 0, 0);
    assert_int_equal(next(q), 4);
    jobqueue_stats st;
    jobqueue_get_stats(q, &st);
    assert_int_equal(st.running, 2);
    assert_int_equal(st.queued, 0);
    /* While a job waits, a new one queues behind it even if it would fit. */
    assert_false(submit(q, 5, "a", 0, 0));
    jobqueue_release(q, "a", 0, 0);
    assert_false(submit(q, 6, "b", 0, 0));
    assert_int_equal(next(q), 5);
    jobqueue_free(q);
}

/* One owner queues 100, then another queues 1: it starts within the next 2 admissions. */
static void test_round_robin(void **state)
{
    (void)state;
    jobqueue *q = NULL;
    jobqueue_capacity cap = {.max_running = 1};
    assert_int_equal(jobqueue_new(&cap, &q), 0);
    assert_true(submit(q, 1000, "a", 0, 0));
    for (intptr_t i = 1; i <= 100; i++)
        assert_false(submit(q, i, "a", 0, 0));
    assert_false(submit(q, 500, "b", 0, 0));
    assert_int_equal(jobqueue_position(q, (void *)500, "b"), 2);
    jobqueue_release(q, "a", 0, 0);
    assert_int_equal(next(q), 1); /* a's turn, then b's */
    jobqueue_release(q, "a", 0, 0);
    assert_int_equal(next(q), 500);
    jobqueue_release(q, "b", 0, 0);
    assert_int_equal(next(q), 2);
    assert_int_equal(next(q), 0); /* one at a time */
    jobqueue_free(q);
}

static void test_three_owners_alternate(void **state)
{
    (void)state;
    jobqueue *q = NULL;
    jobqueue_capacity cap = {.max_running = 1};
    assert_int_equal(jobqueue_new(&cap, &q), 0);
    assert_true(submit(q, 99, "x", 0, 0));
    for (intptr_t i = 0; i < 3; i++) {
        assert_false(submit(q, 10 + i, "a", 0, 0));
        assert_false(submit(q, 20 + i, "b", 0, 0));
        assert_false(submit(q, 30 + i, "c", 0, 0));
    }
    assert_int_equal(jobqueue_position(q, (void *)11, "a"), 4);
    assert_int_equal(jobqueue_position(q, (void *)32, "c"), 9);
    const intptr_t want[] = {10, 20, 30, 11, 21, 31, 12, 22, 32};
    const char *own[] = {"x", "a", "b", "c", "a", "b", "c", "a", "b"};
    for (size_t k = 0; k < 9; k++) {
        jobqueue_release(q, own[k], 0, 0);
        assert_int_equal(next(q), want[k]);
    }
    jobqueue_free(q);
}

static void test_memory_and_cpu_capacity(void **state)
{
    (void)state;
    jobqueue *q = NULL;
    jobqueue_capacity cap = {.memory_bytes = 1000, .cpu_percent = 300};
    assert_int_equal(jobqueue_new(&cap, &q), 0);
    assert_true(submit(q, 1, "a", 600, 100));
    assert_false(submit(q, 2, "a", 600, 100)); /* 1200 > 1000: waits */
    bool now;
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(jobqueue_submit(q, (void *)3, "a", &none, 1001, 0, &now, &err), -E2BIG);
    assert_int_equal(err.code, JW_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(err.msg, "1001"));
    assert_non_null(strstr(err.msg, "--capacity-memory"));
    assert_int_equal(jobqueue_submit(q, (void *)3, "a", &none, 0, 301, &now, &err), -E2BIG);
    assert_non_null(strstr(err.msg, "--capacity-cpu"));
    jobqueue_release(q, "a", 600, 100);
    assert_int_equal(next(q), 2);
    jobqueue_stats st;
    jobqueue_get_stats(q, &st);
    assert_int_equal(st.memory_bytes, 600);
    assert_int_equal(st.cpu_percent, 100);
    /* The next in turn needs more than is free: nothing behind it jumps ahead. */
    assert_false(submit(q, 4, "b", 900, 0));
    assert_false(submit(q, 5, "c", 100, 0));
    assert_int_equal(next(q), 0);
    jobqueue_release(q, "a", 600, 100);
    assert_int_equal(next(q), 4);
    assert_int_equal(next(q), 5);
    jobqueue_free(q);
}

static void test_quotas(void **state)
{
    (void)state;
    jobqueue *q = NULL;
    jobqueue_capacity cap = {.max_running = 10, .max_queued = 3};
    assert_int_equal(jobqueue_new(&cap, &q), 0);
    jobqueue_quota qa = {.max_running = 1, .max_queued = 2, .memory_bytes = 500};
    bool now = false;
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(jobqueue_submit(q, (void *)1, "a", &qa, 100, 0, &now, &err), 0);
    assert_true(now);
    assert_int_equal(jobqueue_submit(q, (void *)2, "a", &qa, 100, 0, &now, &err), 0);
    assert_false(now); /* over a's max-running: waits */
    assert_int_equal(jobqueue_submit(q, (void *)3, "a", &qa, 100, 0, &now, &err), 0);
    assert_int_equal(jobqueue_submit(q, (void *)4, "a", &qa, 100, 0, &now, &err), -EDQUOT);
    assert_int_equal(err.code, JW_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(err.msg, "max-queued quota"));
    assert_non_null(strstr(err.msg, "'a'"));
    assert_int_equal(jobqueue_submit(q, (void *)4, "a", &qa, 501, 0, &now, &err), -E2BIG);
    assert_non_null(strstr(err.msg, "max-memory quota of owner 'a'"));
    /* a's waiting jobs do not hold up b, whose quota allows it. */
    assert_int_equal(jobqueue_submit(q, (void *)5, "b", &none, 0, 0, &now, &err), 0);
    assert_false(now); /* something waits: through the queue */
    assert_int_equal(next(q), 5);
    assert_int_equal(next(q), 0);
    /* The server's queue bound. */
    assert_int_equal(jobqueue_submit(q, (void *)6, "b", &none, 0, 0, &now, &err), 0);
    assert_int_equal(jobqueue_submit(q, (void *)7, "c", &none, 0, 0, &now, &err), -EAGAIN);
    assert_non_null(strstr(err.msg, "--max-queued 3"));
    /* A restored job queues whatever the bounds. */
    assert_int_equal(jobqueue_enqueue(q, (void *)7, "c", &none, 0, 0), 0);
    jobqueue_stats st;
    jobqueue_get_stats(q, &st);
    assert_int_equal(st.queued, 4);
    jobqueue_free(q); /* frees what still waits */
}

static void test_cancel(void **state)
{
    (void)state;
    jobqueue *q = NULL;
    jobqueue_capacity cap = {.max_running = 1};
    assert_int_equal(jobqueue_new(&cap, &q), 0);
    assert_true(submit(q, 1, "a", 0, 0));
    assert_false(submit(q, 2, "a", 0, 0));
    assert_false(submit(q, 3, "a", 0, 0));
    assert_false(submit(q, 4, "b", 0, 0));
    assert_false(jobqueue_cancel(q, (void *)1, "a")); /* running, not waiting */
    assert_true(jobqueue_cancel(q, (void *)3, "a"));  /* the tail */
    assert_false(jobqueue_cancel(q, (void *)3, "a"));
    assert_true(jobqueue_cancel(q, (void *)2, "a")); /* now a waits for nothing */
    assert_false(jobqueue_cancel(q, (void *)2, "nobody"));
    assert_int_equal(jobqueue_position(q, (void *)4, "b"), 1);
    assert_false(submit(q, 5, "a", 0, 0));
    jobqueue_release(q, "a", 0, 0);
    assert_int_equal(next(q), 4);
    jobqueue_release(q, "b", 0, 0);
    assert_int_equal(next(q), 5);
    jobqueue_release(q, "a", 0, 0);
    jobqueue_stats st;
    jobqueue_get_stats(q, &st);
    assert_int_equal(st.running, 0);
    assert_int_equal(st.owners, 0); /* nothing left of a or b */
    jobqueue_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cap_and_fifo),
        cmocka_unit_test(test_round_robin),
        cmocka_unit_test(test_three_owners_alternate),
        cmocka_unit_test(test_memory_and_cpu_capacity),
        cmocka_unit_test(test_quotas),
        cmocka_unit_test(test_cancel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
