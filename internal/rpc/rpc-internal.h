/* Shared between the rpc module's files; not an API for anyone else. */
#ifndef JW_RPC_INTERNAL_H
#define JW_RPC_INTERNAL_H

#include "auth/auth.h"
#include "rpc/server.h"

#include <protobuf-c/protobuf-c.h>

#include <grpc/grpc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

enum { TAG_NEW_CALL = 1, TAG_UNARY_DONE, TAG_SHUTDOWN };

typedef struct rpc_stream rpc_stream;

struct rpc_server {
    rpc_server_config cfg;
    grpc_server *server;
    grpc_completion_queue *cq;
    int port;
    pthread_t *workers;
    int n_workers;
    void *methods[5];
    struct rpc_slot *slots; /* one outstanding request per method + one for unknown methods */
    int n_slots;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool shutting_down;     /* no new requests are posted once set */
    bool shutdown_notified; /* the server's shutdown tag arrived */
    int n_streams;          /* live stream threads */
    rpc_stream *streams;    /* list of live streams, for shutdown */
    int tag_shutdown;
    auth_tls_stage *tls; /* the staged TLS files gRPC's credentials watch (creds.c) */
};

/* A call as it arrived, handed from the worker to its handler. */
typedef struct rpc_incoming {
    grpc_call *call;
    grpc_byte_buffer *payload;
    grpc_completion_queue *bound_cq; /* streams only: the call's own queue */
    auth_identity id;
    bool id_ok;
} rpc_incoming;

/* Reads the verified peer certificate's identity. */
bool rpc_peer_identity(grpc_call *call, auth_identity *ret);
/* One audit line per RPC. */
void rpc_audit(rpc_server *srv, const auth_identity *id, auth_method m, const char *job_id,
               jw_code code, const char *msg);

/* Checks the caller's identity and role for a method; PERMISSION_DENIED/UNAUTHENTICATED. */
int rpc_authorize(const rpc_incoming *in, auth_method method, jw_error *err);
/* Answers a call on the shared queue: initial metadata, the message when code is OK, status. */
void rpc_unary_finish(rpc_server *srv, grpc_call *call, jw_code code, const char *msg,
                      const ProtobufCMessage *resp);

/* Stages the TLS files of srv->cfg and creates gRPC TLS server credentials that watch the
 * stage, with CRL checking when a CRL path is configured (creds.c). On success srv->tls is set
 * and *ret is the caller's to release. */
int rpc_creds_new(rpc_server *srv, grpc_server_credentials **ret, jw_error *err);
/* Removes the stage; only after the server and its credentials are destroyed. Idempotent. */
void rpc_creds_free(rpc_server *srv);

/* Takes over an incoming GetJobsStream call: starts its thread (or answers an error). */
void rpc_stream_start(rpc_server *srv, rpc_incoming *in);
/* Wakes every live stream so it notices shutting_down and ends with UNAVAILABLE. */
void rpc_streams_wake_all(rpc_server *srv);

#endif
