/* GetJobsStream transport: the registry of live streams and one thread per stream.
 *
 * The registry owns its lock, its cap (--max-streams) and the list of live streams. A call that
 * is refused (no role, over the cap, shutting down) is answered on its own completion queue by
 * the worker that took it, without a thread. An accepted call gets a thread and its own queue:
 * it reads the job's output by offset (service_stream_*) and sends one DataChunk at a time; the
 * completion of a write is gRPC's flow control, so a slow reader only ever has one chunk in
 * flight. When it has caught up it sleeps in grpc_completion_queue_next(); the store wakes it
 * with an empty batch on the call (the only cross-thread wake-up gRPC's C API offers).
 */
#ifndef JW_RPC_STREAM_H
#define JW_RPC_STREAM_H

#include "auth/auth.h"
#include "service/service.h"

#include <grpc/grpc.h>
#include <stdbool.h>
#include <stdio.h>

typedef struct stream_registry stream_registry;

typedef struct stream_registry_config {
    service *svc;
    int max_streams;            /* concurrent streams; 0 = JW_DEFAULT_MAX_STREAMS */
    int max_streams_per_client; /* of one certificate CN; 0 = JW_DEFAULT_MAX_STREAMS_PER_CLIENT */
    size_t chunk_size;          /* output bytes per DataChunk; 0 = JW_DEFAULT_CHUNK_BYTES */
    FILE *audit;                /* audit lines; NULL = the log */
} stream_registry_config;

int stream_registry_new(const stream_registry_config *cfg, stream_registry **ret, jw_error *err);
/* Frees; every stream must have ended (stream_registry_wait_empty). NULL is a no-op. */
void stream_registry_free(stream_registry *reg);

/* Takes over an incoming GetJobsStream call bound to `cq` (its own queue): the call, payload and
 * queue are the registry's from here on, whatever happens. `caller` NULL = unusable certificate. */
void stream_registry_take(stream_registry *reg, grpc_call *call, grpc_completion_queue *cq,
                          grpc_byte_buffer *payload, const auth_identity *caller);
/* No new streams from now on; every live stream ends with UNAVAILABLE as soon as its write in
 * flight completes. */
void stream_registry_shutdown(stream_registry *reg);
/* Waits until no stream is left; false after timeout_ms (negative = forever). */
bool stream_registry_wait_empty(stream_registry *reg, int timeout_ms);
int stream_registry_count(stream_registry *reg);

/* A call's own completion queue, shut down, drained and destroyed (every rpc file uses it). */
void rpc_drain_destroy_cq(grpc_completion_queue *cq);
/* A detached thread with a 256 KiB stack for one call (streams, stdin writers). */
int rpc_start_detached(void *(*fn)(void *), void *arg, jw_error *err);

/* For the WriteStdin writers (rpc/stdin.c), which share the registry's --max-streams slots and
 * its shutdown but have no output to follow. */
int stream_registry_enter(stream_registry *reg, jw_error *err); /* takes a slot */
void stream_registry_leave(stream_registry *reg);
bool stream_registry_shutting_down(stream_registry *reg);
FILE *stream_registry_audit(stream_registry *reg);
service *stream_registry_service(stream_registry *reg);
/* Answers a call that gets no thread on its own queue, audits it as `method`, and frees the call
 * and the queue. */
void stream_registry_refuse(stream_registry *reg, auth_method method, grpc_call *call,
                            grpc_completion_queue *cq, const auth_identity *caller,
                            const char *job_id, jw_code code, const char *msg);

#endif
