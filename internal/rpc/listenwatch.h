/* The listener watch: notices that gRPC stopped accepting connections, and says so.
 *
 * gRPC core 1.51 stops polling its listening socket for good after one accept4() fails with
 * anything but EAGAIN/ECONNABORTED/EINTR, typically EMFILE at the open files limit (a flood of
 * plain TCP connects is enough). The socket stays open, so the kernel goes on completing
 * handshakes into its accept queue, nobody takes them, and the process looks healthy while every
 * client times out. Nothing in gRPC's API reports it.
 *
 * A thread looks at the listening sockets of the port (found once in /proc/self/fd by
 * SO_ACCEPTCONN and the bound port, re-checked by inode on every look) every interval_ms and
 * reads their accept queue length with TCP_INFO (tcpi_unacked of a LISTEN socket). A live
 * listener empties its queue within milliseconds of a wake-up; a queue that is non-empty at every
 * look and never shrinks for stuck_ms (fifty looks by default) means the listener is dead. The
 * watch then logs one error line naming the port, the queue, the open files limit and what to do,
 * marks itself fired and calls on_dead once (default: kill(getpid(), SIGTERM), which the daemon
 * turns into a clean shutdown and a non-zero exit so that systemd or another supervisor restarts
 * the server). A dead listener with an empty queue is noticed as soon as the next client has waited
 * stuck_ms.
 *
 * Once a second it also counts /proc/self/fd and logs a warning when more than 90 % of the
 * RLIMIT_NOFILE soft limit is in use (again only after the count fell below 75 %).
 *
 * The watch allocates nothing after listenwatch_start and opens its one fd (/proc/self/fd,
 * close-on-exec, read again with getdents64) at start, so it keeps working at the limit. A long
 * stop of the whole process (SIGSTOP, a suspended VM) is not taken for a dead listener: the
 * window also needs stuck_ms / interval_ms looks. It stops within one wake-up of
 * listenwatch_stop.
 */
#ifndef JW_RPC_LISTENWATCH_H
#define JW_RPC_LISTENWATCH_H

#include <stdbool.h>

typedef struct listenwatch listenwatch;

typedef struct listenwatch_config {
    int port;                   /* the bound TCP port, 1..65535 */
    int interval_ms;            /* between two looks at the queue; 0 = 100 */
    int stuck_ms;               /* a queue stuck this long is a dead listener; 0 = 5000 */
    void (*on_dead)(void *arg); /* called once, on the watch's thread; NULL = SIGTERM to self */
    void *arg;
} listenwatch_config;

/* Starts the watch thread. Returns 0, or a negative errno (*ret untouched). */
int listenwatch_start(const listenwatch_config *cfg, listenwatch **ret);
/* True once the watch found the listener dead (any thread). NULL = false. */
bool listenwatch_fired(const listenwatch *w);
/* Stops the thread and waits for it; idempotent. Call from one thread at a time. NULL is fine. */
void listenwatch_stop(listenwatch *w);
/* Stops the watch and frees it. NULL is fine. */
void listenwatch_free(listenwatch *w);

#endif
