/* The listener watch on real loopback sockets: a listener nobody accepts from is found dead once,
 * one that accepts (even slowly) never is, and the watch stops at once. */
#include "rpc/listenwatch.h"
#include "util/misc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static atomic_int dead_calls;

static void on_dead(void *arg)
{
    (void)arg;
    atomic_fetch_add(&dead_calls, 1);
}

/* A listening socket on 127.0.0.1 with a kernel-chosen port. */
static int listen_loopback(int *ret_port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *ret_port = ntohs(sa.sin_port);
    return fd;
}

/* A connected client: on loopback the kernel completes the handshake into the accept queue. */
static int connect_loopback(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static listenwatch *watch(int port, int stuck_ms)
{
    listenwatch *w = NULL;
    atomic_store(&dead_calls, 0);
    listenwatch_config cfg = {
        .port = port, .interval_ms = 20, .stuck_ms = stuck_ms, .on_dead = on_dead};
    assert_int_equal(listenwatch_start(&cfg, &w), 0);
    return w;
}

static void test_dead_listener_fires_once(void **state)
{
    (void)state;
    int port;
    int lfd = listen_loopback(&port);
    listenwatch *w = watch(port, 200);
    int c[3];
    for (int i = 0; i < 3; i++)
        c[i] = connect_loopback(port);
    /* Closed clients stay in the queue until accepted: still dead. */
    close(c[0]);
    int64_t t0 = now_monotonic_ns();
    while (!listenwatch_fired(w) && now_monotonic_ns() - t0 < 3000000000LL)
        sleep_ms(10);
    assert_true(listenwatch_fired(w));
    assert_true(now_monotonic_ns() - t0 >= 150000000LL);
    sleep_ms(200);
    assert_int_equal(atomic_load(&dead_calls), 1);
    listenwatch_free(w);
    close(c[1]);
    close(c[2]);
    close(lfd);
}

/* Like gRPC's poller: a thread that accepts as soon as a connection is there. */
static void *acceptor(void *arg)
{
    int lfd = *(int *)arg;
    for (;;) {
        int a = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (a < 0)
            return NULL; /* shutdown() of the listener */
        close(a);
    }
}

static void test_accepting_listener_lives(void **state)
{
    (void)state;
    int port;
    int lfd = listen_loopback(&port);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, acceptor, &lfd), 0);
    listenwatch *w = watch(port, 200);
    int64_t t0 = now_monotonic_ns();
    while (now_monotonic_ns() - t0 < 800000000LL) {
        int c[4];
        for (int i = 0; i < 4; i++)
            c[i] = connect_loopback(port);
        for (int i = 0; i < 4; i++)
            close(c[i]);
        sleep_ms(2);
    }
    assert_false(listenwatch_fired(w));
    assert_int_equal(atomic_load(&dead_calls), 0);
    listenwatch_free(w);
    shutdown(lfd, SHUT_RDWR);
    pthread_join(t, NULL);
    close(lfd);
}

/* A backlog that shrinks is being accepted from, however slowly. */
static void test_slow_listener_lives(void **state)
{
    (void)state;
    int port;
    int lfd = listen_loopback(&port);
    int c[8];
    for (int i = 0; i < 8; i++)
        c[i] = connect_loopback(port);
    listenwatch *w = watch(port, 300);
    for (int i = 0; i < 8; i++) {
        sleep_ms(120);
        int a = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        assert_true(a >= 0);
        close(a);
    }
    assert_false(listenwatch_fired(w));
    listenwatch_free(w);
    for (int i = 0; i < 8; i++)
        close(c[i]);
    close(lfd);
}

static void test_no_listener_and_prompt_stop(void **state)
{
    (void)state;
    int port;
    int lfd = listen_loopback(&port);
    close(lfd); /* nothing listens on the port any more */
    listenwatch *w = NULL;
    listenwatch_config cfg = {.port = port, .interval_ms = 10000, .stuck_ms = 100};
    assert_int_equal(listenwatch_start(&cfg, &w), 0);
    sleep_ms(50);
    int64_t t0 = now_monotonic_ns();
    listenwatch_stop(w);
    listenwatch_stop(w);
    assert_true(now_monotonic_ns() - t0 < 1000000000LL);
    assert_false(listenwatch_fired(w));
    listenwatch_free(w);
    listenwatch_free(NULL);
    assert_false(listenwatch_fired(NULL));
    listenwatch_config bad = {.port = 0};
    assert_int_equal(listenwatch_start(&bad, &w), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dead_listener_fires_once),
        cmocka_unit_test(test_accepting_listener_lives),
        cmocka_unit_test(test_slow_listener_lives),
        cmocka_unit_test(test_no_listener_and_prompt_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
