/* Admission: which job runs next, and whether a new one may start now.
 *
 * A job is admitted to run when the server's capacity holds it (jobs running < max_running, the
 * sum of running jobs' memory.max plus its own <= memory, the same for cpu_percent) and so do
 * its owner's quotas. Otherwise it waits in the queue. Within one owner the queue is FIFO;
 * between owners it is round-robin: each admission moves the turn to the next owner, so one
 * owner's 500 waiting jobs do not delay another owner's single job by more than one admission.
 * An owner whose next job is over the owner's own quota gives up its turn; a next job that is
 * over the server's capacity keeps it, and nothing behind it starts until capacity frees (no
 * job waits forever behind smaller ones).
 *
 * Items are the caller's (an opaque pointer per job); the queue keeps no reference. Every
 * function is thread-safe. Nothing here starts a process: the caller starts what
 * jobqueue_next() returns and calls jobqueue_release() when it ends.
 */
#ifndef JW_SCHED_QUEUE_H
#define JW_SCHED_QUEUE_H

#include "util/error.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct jobqueue jobqueue;

typedef struct jobqueue_capacity {
    int64_t max_running;  /* jobs running at once; 0 = no limit */
    int64_t memory_bytes; /* sum of memory.max of running jobs; 0 = no limit */
    int64_t cpu_percent;  /* sum of cpu_percent of running jobs; 0 = no limit */
    int64_t max_queued;   /* jobs waiting; 0 = no limit */
} jobqueue_capacity;

/* One owner's quotas; 0 = no limit. */
typedef struct jobqueue_quota {
    int64_t max_running, max_queued, memory_bytes, cpu_percent;
} jobqueue_quota;

int jobqueue_new(const jobqueue_capacity *cap, jobqueue **ret);
void jobqueue_free(jobqueue *q); /* NULL is a no-op */
void jobqueue_set_capacity(jobqueue *q, const jobqueue_capacity *cap);
void jobqueue_get_capacity(jobqueue *q, jobqueue_capacity *ret);

/* Decides for a new job needing `memory` bytes and `cpu` percent. RESOURCE_EXHAUSTED, naming
 * the limit, when it could never run (its own needs above the capacity or its owner's quota) or
 * the queue or the owner's share of it is full. Otherwise *ret_now says what happens: true = it
 * runs now (nothing was waiting and it fits; its resources are reserved: start it, and release
 * them at its end, or at once if it cannot be started), false = it waits: jobqueue_enqueue() it. */
int jobqueue_admit(jobqueue *q, const char *owner, const jobqueue_quota *quota, int64_t memory,
                   int64_t cpu, bool *ret_now, jw_error *err);
/* Puts a job at the end of its owner's queue, whatever the bounds (they were checked by
 * jobqueue_admit, or it was queued before a restart). -ENOMEM. */
int jobqueue_enqueue(jobqueue *q, void *item, const char *owner, const jobqueue_quota *quota,
                     int64_t memory, int64_t cpu);
/* jobqueue_admit, then jobqueue_enqueue when the job waits. */
int jobqueue_submit(jobqueue *q, void *item, const char *owner, const jobqueue_quota *quota,
                    int64_t memory, int64_t cpu, bool *ret_now, jw_error *err);

/* The next waiting job that may run now, its resources reserved, taken off the queue; NULL when
 * none may. */
void *jobqueue_next(jobqueue *q);

/* Takes a waiting job off the queue; false when it is not waiting (already handed out). */
bool jobqueue_cancel(jobqueue *q, void *item, const char *owner);

/* A job that ran (jobqueue_submit said now, or jobqueue_next handed it out) ended: frees what
 * it reserved. */
void jobqueue_release(jobqueue *q, const char *owner, int64_t memory, int64_t cpu);

/* The waiting job's place in the order jobs would start if nothing changed (1 = next), counting
 * the round-robin between owners; 0 when it is not waiting. */
int64_t jobqueue_position(jobqueue *q, void *item, const char *owner);

typedef struct jobqueue_stats {
    int64_t running, queued, memory_bytes, cpu_percent, owners;
} jobqueue_stats;
void jobqueue_get_stats(jobqueue *q, jobqueue_stats *ret);

#endif
