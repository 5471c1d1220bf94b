/* The server's TLS credentials: gRPC's TLS credentials API fed from the stage that auth keeps.
 *
 * Why this API: gRPC 1.51 enforces CRLs only through grpc_tls_credentials_options_set_crl_directory
 * (the older grpc_ssl_server_credentials_* path, config fetcher included, never passes a CRL to
 * its TLS layer), and the only certificate provider of its C API whose data can change is the
 * file watcher, which polls files. So auth stages checked copies of the files (auth.h) and the
 * watcher polls them every WATCH_INTERVAL_SEC; a reload stages a new generation, and gRPC builds a
 * new SSL_CTX for the handshakes that start after its next poll. Connections that already exist
 * keep their SSL and are not touched.
 *
 * What each handshake then checks: OpenSSL verifies the client chain against the CA bundle (with
 * the "ssl_client" purpose: an extendedKeyUsage without clientAuth fails), and with a CRL
 * directory the leaf against its issuer's CRL (X509_V_FLAG_CRL_CHECK; gRPC ignores a missing CRL
 * for an issuer, and auth refuses to stage a CRL that would make every handshake fail). Then
 * verify_client() below refuses a certificate that has no extendedKeyUsage at all, which OpenSSL
 * accepts for every purpose. TLS 1.3-only comes from auth_tls13_only_init(): these credentials
 * ask OpenSSL for TLS 1.2..1.3 like the SSL ones, and the process-wide option removes 1.2.
 */
#include "rpc/rpc-internal.h"

#include "util/log.h"

#include <errno.h>
#include <grpc/grpc_security.h>
#include <grpc/support/string_util.h>
#include <string.h>

#define WATCH_INTERVAL_SEC 1

/* Runs on gRPC's thread after OpenSSL verified the chain; synchronous (returns 1). */
static int verify_client(void *user_data, grpc_tls_custom_verification_check_request *request,
                         grpc_tls_on_custom_verification_check_done_cb callback, void *callback_arg,
                         grpc_status_code *sync_status, char **sync_error_details)
{
    const char *pem = request->peer_info.peer_cert;
    jw_error err = JW_ERROR_INIT;
    if (auth_check_client_usage(pem, pem ? strlen(pem) : 0, &err) == 0) {
        *sync_status = GRPC_STATUS_OK;
        return 1;
    }
    /* The CN as auth sanitizes it for logs; the certificate is signed by a trusted CA, but its
     * text is still not ours. */
    auth_identity id = {.cn = ""};
    if (pem)
        auth_identity_from_pem(pem, strlen(pem), &id, NULL);
    log_warning("tls: refused client certificate cn=\"%s\": %s", id.cn, err.msg);
    *sync_status = GRPC_STATUS_UNAUTHENTICATED;
    *sync_error_details = gpr_strdup(err.msg);
    return 1;
}

/* Static: the verifier keeps a pointer to it for its whole life, and there is nothing to free. */
static grpc_tls_certificate_verifier_external client_verifier = {
    .verify = verify_client,
};

int rpc_creds_new(rpc_server *srv, grpc_server_credentials **ret, jw_error *err)
{
    auth_tls_stage *stage = NULL;
    int r = auth_tls_stage_new(srv->cfg.tls_state_dir, &srv->cfg.tls, &stage, err);
    if (r < 0)
        return r;
    const char *identity = auth_tls_stage_identity_file(stage);
    grpc_tls_certificate_provider *provider = grpc_tls_certificate_provider_file_watcher_create(
        identity, identity, auth_tls_stage_ca_file(stage), WATCH_INTERVAL_SEC);
    grpc_tls_certificate_verifier *verifier =
        grpc_tls_certificate_verifier_external_create(&client_verifier);
    grpc_tls_credentials_options *opts = grpc_tls_credentials_options_create();
    if (!provider || !verifier || !opts) {
        grpc_tls_certificate_provider_release(provider);
        if (verifier)
            grpc_tls_certificate_verifier_release(verifier);
        auth_tls_stage_free(stage);
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "create TLS credentials: out of memory");
    }
    grpc_tls_credentials_options_set_certificate_provider(opts, provider);
    grpc_tls_credentials_options_watch_root_certs(opts);
    grpc_tls_credentials_options_watch_identity_key_cert_pairs(opts);
    grpc_tls_credentials_options_set_cert_request_type(
        opts, GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    if (auth_tls_stage_crl_dir(stage))
        grpc_tls_credentials_options_set_crl_directory(opts, auth_tls_stage_crl_dir(stage));
    grpc_tls_credentials_options_set_certificate_verifier(opts, verifier);
    /* The options hold their own references now. */
    grpc_tls_certificate_provider_release(provider);
    grpc_tls_certificate_verifier_release(verifier);
    grpc_server_credentials *creds = grpc_tls_server_credentials_create(opts); /* owns opts */
    if (!creds) {
        auth_tls_stage_free(stage);
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "create TLS server credentials failed");
    }
    srv->tls = stage;
    *ret = creds;
    return 0;
}

void rpc_creds_free(rpc_server *srv)
{
    auth_tls_stage_free(srv->tls);
    srv->tls = NULL;
}

void rpc_server_tls_summary(rpc_server *srv, auth_tls_summary *ret)
{
    auth_tls_stage_summary(srv->tls, ret);
}

int rpc_server_reload_tls(rpc_server *srv, auth_tls_summary *ret, jw_error *err)
{
    return auth_tls_stage_reload(srv->tls, ret, err);
}
