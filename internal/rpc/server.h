/* The gRPC JobService transport: listening, mutual TLS, the caller's identity, decoding, calling
 * the service layer (service/service.h, where every decision is made), encoding, the audit line,
 * output streaming (rpc/stream.h), shutdown.
 *
 * Threading: a few worker threads share one completion queue for new calls and unary calls;
 * every GetJobsStream call gets its own thread and completion queue, woken by the store (an
 * empty batch on the call) when its job has new output.
 */
#ifndef JW_RPC_SERVER_H
#define JW_RPC_SERVER_H

#include "auth/auth.h"
#include "service/service.h"
#include "util/error.h"

#include <stdbool.h>
#include <stdio.h>

typedef struct rpc_server rpc_server;

typedef struct rpc_server_config {
    const char *listen_addr;    /* "0.0.0.0:50051" */
    auth_tls_paths tls;         /* server certificate, key, client CA and optional CRL files */
    const char *tls_state_dir;  /* private directory for the checked copy of those files that
                                 * gRPC reads (created 0700, removed by rpc_server_free) */
    service *svc;               /* what every call does; rpc only decodes, calls, encodes */
    int workers;                /* threads on the shared queue; 0 = 4 */
    int max_streams;            /* concurrent GetJobsStream calls; 0 = default */
    int max_streams_per_client; /* of one certificate CN; 0 = default */
    size_t chunk_size;          /* output bytes per DataChunk; 0 = 128 KiB */
    FILE *audit;                /* audit lines; NULL = stderr through the log */
} rpc_server_config;

/* Creates the server, binds the port (a busy port fails with "address already in use") and
 * starts serving. Calls grpc_init(); auth_tls13_only_init() must have run before. */
int rpc_server_start(const rpc_server_config *cfg, rpc_server **ret, jw_error *err);
/* Re-reads the TLS files named in the config (certificate, key, CA, CRL) and, only if all of them
 * pass auth's checks, makes them the configuration that new handshakes use: gRPC picks the new
 * generation up within about one second. Open connections, calls and streams are not touched.
 * On failure the previous configuration stays in force and err says which file is wrong. Call
 * from one thread at a time (main's SIGHUP). `ret` (may be NULL) gets what is now in force. */
int rpc_server_reload_tls(rpc_server *srv, auth_tls_summary *ret, jw_error *err);
/* What the TLS configuration in force holds. */
void rpc_server_tls_summary(rpc_server *srv, auth_tls_summary *ret);
/* The bound port (useful with port 0). */
int rpc_server_port(const rpc_server *srv);
/* True once the listener watch (rpc/listenwatch.h) found that gRPC stopped accepting
 * connections; it then sent SIGTERM to the process. Valid until rpc_server_free(). */
bool rpc_server_listener_died(const rpc_server *srv);
/* Step 1 of shutdown: refuse new calls, and end every stream with UNAVAILABLE. Jobs keep running
 * (the caller stops them through the supervisor next). */
void rpc_server_begin_shutdown(rpc_server *srv);
/* Step 2: cancel what is left, wait for every call and thread, destroy, grpc_shutdown(). */
void rpc_server_free(rpc_server *srv);

#endif
