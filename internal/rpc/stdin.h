/* WriteStdin transport: one thread per writer, which moves the client's StdinChunk messages
 * into the job's stdin pipe.
 *
 * Backpressure is the pipe's: the thread asks gRPC for the next message only once the previous
 * one is in the pipe, so the server holds at most one message per writer and HTTP/2 flow control
 * holds the client back while the job does not read. A job that never reads blocks only its own
 * writer, which notices a cancelled call, the job's end (EPIPE) and the server's shutdown while
 * it waits. The end of the client's stream closes the pipe: end of file for the job.
 */
#ifndef JW_RPC_STDIN_H
#define JW_RPC_STDIN_H

#include "auth/auth.h"
#include "rpc/stream.h"

#include <grpc/grpc.h>

/* Takes over an incoming WriteStdin call bound to `cq` (its own queue), with its first message
 * (`payload`, may be NULL): call, payload and queue are the writer's from here on. `caller` NULL
 * = unusable certificate. */
void stdin_writer_take(stream_registry *reg, grpc_call *call, grpc_completion_queue *cq,
                       grpc_byte_buffer *payload, const auth_identity *caller);

#endif
