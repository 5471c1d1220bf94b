/* Shared between server.c and creds.c; not an API for anyone else. */
#ifndef JW_RPC_INTERNAL_H
#define JW_RPC_INTERNAL_H

#include "auth/auth.h"
#include "rpc/listenwatch.h"
#include "rpc/server.h"
#include "rpc/stream.h"

#include <grpc/grpc.h>
#include <pthread.h>
#include <stdbool.h>

struct rpc_server {
    rpc_server_config cfg;
    grpc_server *server;
    grpc_completion_queue *cq;
    int port;
    pthread_t *workers;
    int n_workers;
    void *methods[8];       /* one per auth_method */
    struct rpc_slot *slots; /* one outstanding request per method + one for unknown methods */
    int n_slots;
    stream_registry *streams;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool shutting_down;     /* no new requests are posted once set */
    bool shutdown_notified; /* the server's shutdown tag arrived */
    int pending_stops;      /* StopJob calls waiting for their job's end */
    int tag_shutdown;
    auth_tls_stage *tls; /* the staged TLS files gRPC's credentials watch (creds.c) */
    listenwatch *watch;  /* notices a listener gRPC gave up on (listenwatch.h); may be NULL */
};

/* Stages the TLS files of srv->cfg and creates gRPC TLS server credentials that watch the
 * stage, with CRL checking when a CRL path is configured (creds.c). On success srv->tls is set
 * and *ret is the caller's to release. */
int rpc_creds_new(rpc_server *srv, grpc_server_credentials **ret, jw_error *err);
/* Removes the stage; only after the server and its credentials are destroyed. Idempotent. */
void rpc_creds_free(rpc_server *srv);

#endif
