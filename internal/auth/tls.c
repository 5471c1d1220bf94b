/* Process-wide TLS policy (TLS 1.3 only) and start-up checks of certificate/key files.
 *
 * gRPC 1.51's C API has no way to set the minimum TLS version: every SSL_CTX it makes gets
 * SSL_CTX_set_min_proto_version(TLS1_2_VERSION) and SSL_CTX_set_max_proto_version(TLS1_3_VERSION)
 * (tsi_set_min_and_max_tls_versions in src/core/tsi/ssl_transport_security.cc), so a
 * MinProtocol = TLSv1.3 from a configuration is overwritten. What survives is the older
 * "Protocol" command: it does not touch the version bounds but sets SSL_OP_NO_SSLv3,
 * SSL_OP_NO_TLSv1, SSL_OP_NO_TLSv1_1 and SSL_OP_NO_TLSv1_2 in the options of every SSL_CTX
 * that SSL_CTX_new() creates (OpenSSL applies the "system_default" section there). gRPC only ever
 * adds options (SSL_CTX_set_options; libgrpc imports no SSL_CTX_clear_options), and OpenSSL picks
 * a version that lies inside the bounds AND is not disabled by an option, so TLS 1.3 is the only
 * one left. Verified on Debian bookworm (OpenSSL 3.0, libgrpc 1.51.1): options after the two
 * calls still hold SSL_OP_NO_TLSv1_2, and a real gRPC server started after this refused
 * `openssl s_client -tls1_2` ("unsupported protocol") and accepted -tls1_3. This only
 * works because Debian links gRPC against the system libssl; a gRPC with its own BoringSSL would
 * ignore the configuration, which is why auth_tls13_only_init() checks the effect. */
#include "auth/auth.h"

#include "auth/auth-internal.h"

#include <errno.h>
#include <openssl/pem.h>
#include <stdint.h>

/* Section names are private to us so that they cannot collide with a system openssl.cnf. */
static const char tls13_only_conf[] = "openssl_conf = jobworker_openssl_init\n"
                                      "[jobworker_openssl_init]\n"
                                      "ssl_conf = jobworker_ssl\n"
                                      "[jobworker_ssl]\n"
                                      "system_default = jobworker_system_default\n"
                                      "[jobworker_system_default]\n"
                                      "Protocol = -ALL, TLSv1.3\n";

static int load_tls13_only_conf(jw_error *err)
{
    /* Load the system configuration (OPENSSL_CONF or openssl.cnf) now, ahead of ours. OpenSSL
     * does that once per process, on the first SSL_CTX_new() at the latest, and its ssl_conf
     * module replaces the whole system_default set each time it is loaded: had it run after us,
     * an OPENSSL_CONF with its own system_default would silently re-enable TLS 1.2 (seen in an
     * experiment). The flip side: a system_default from the system configuration (Debian's has
     * none) is replaced by ours. */
    if (!OPENSSL_init_ssl(OPENSSL_INIT_LOAD_CONFIG, NULL))
        return jw_error_set(err, JW_INTERNAL, -EINVAL, "initialize openssl: %s",
                            auth_ossl_reason());

    _cleanup_bio_ BIO *bio = BIO_new_mem_buf(tls13_only_conf, -1);
    _cleanup_conf_ CONF *conf = NCONF_new(NULL);
    if (!bio || !conf)
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "allocate the openssl configuration");
    long line = 0;
    if (NCONF_load_bio(conf, bio, &line) <= 0)
        return jw_error_set(err, JW_INTERNAL, -EINVAL,
                            "parse the built-in openssl configuration at line %ld: %s", line,
                            auth_ossl_reason());
    /* Flags 0: an unknown module or a bad command is an error, not silently ignored. */
    if (CONF_modules_load(conf, NULL, 0) <= 0)
        return jw_error_set(err, JW_INTERNAL, -EINVAL,
                            "load openssl configuration 'Protocol = -ALL, TLSv1.3': %s",
                            auth_ossl_reason());
    return 0;
}

/* Starts a client handshake on a new SSL of ctx, capped at max_version, into memory BIOs.
 * Returns 1 when a ClientHello was written (some version <= max_version may be offered), 0 when
 * OpenSSL refused with "no protocols available", -EPROTO on anything else. This asks the real
 * version negotiation code instead of interpreting option bits. */
static int can_offer(SSL_CTX *ctx, int max_version)
{
    _cleanup_ssl_ SSL *ssl = SSL_new(ctx);
    if (!ssl)
        return -ENOMEM;
    BIO *rbio = BIO_new(BIO_s_mem());
    BIO *wbio = BIO_new(BIO_s_mem());
    if (!rbio || !wbio) {
        BIO_free(rbio);
        BIO_free(wbio);
        return -ENOMEM;
    }
    /* An empty read BIO then means "try again later", not EOF: the handshake stops right after
     * sending the ClientHello. */
    BIO_set_mem_eof_return(rbio, -1);
    SSL_set_bio(ssl, rbio, wbio); /* ssl owns both from here */
    if (!SSL_set_max_proto_version(ssl, max_version))
        return -EPROTO;
    SSL_set_connect_state(ssl);
    /* A mark of our own, so that the reason looked at is this probe's and not an earlier one's. */
    ERR_set_mark();
    int r = SSL_do_handshake(ssl);
    int ret = -EPROTO;
    if (r <= 0 && SSL_get_error(ssl, r) == SSL_ERROR_WANT_READ && BIO_pending(wbio) > 0)
        ret = 1;
    else if (ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_NO_PROTOCOLS_AVAILABLE)
        ret = 0;
    ERR_pop_to_mark();
    return ret;
}

static int check_tls13_only(jw_error *err)
{
    _cleanup_ssl_ctx_ SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (!ctx)
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "tls 1.3 self-check: create SSL_CTX: %s",
                            auth_ossl_reason());
    /* Replay what gRPC does to each of its contexts (see the top of this file). */
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION))
        return jw_error_set(err, JW_INTERNAL, -EPROTO,
                            "tls 1.3 self-check: set the version bounds gRPC sets: %s",
                            auth_ossl_reason());

    uint64_t opts = SSL_CTX_get_options(ctx);
    int tls12 = can_offer(ctx, TLS1_2_VERSION);
    int tls13 = can_offer(ctx, TLS1_3_VERSION);
    if (!(opts & SSL_OP_NO_TLSv1_2) || tls12 != 0)
        return jw_error_set(err, JW_FAILED_PRECONDITION, -ENOTSUP,
                            "tls 1.3 self-check failed: a new SSL_CTX still %s TLS 1.2 "
                            "(SSL_OP_NO_TLSv1_2 %s) after loading 'Protocol = -ALL, TLSv1.3'; "
                            "is libssl the system OpenSSL 3?",
                            tls12 == 1 ? "offers" : "may offer",
                            opts & SSL_OP_NO_TLSv1_2 ? "set" : "not set");
    if ((opts & SSL_OP_NO_TLSv1_3) || tls13 != 1)
        return jw_error_set(err, JW_FAILED_PRECONDITION, -ENOTSUP,
                            "tls 1.3 self-check failed: a new SSL_CTX cannot offer TLS 1.3 "
                            "(SSL_OP_NO_TLSv1_3 %s)",
                            opts & SSL_OP_NO_TLSv1_3 ? "set" : "not set");
    return 0;
}

int auth_tls13_only_init(jw_error *err)
{
    ERR_set_mark();
    int r = load_tls13_only_conf(err);
    if (r >= 0)
        r = check_tls13_only(err);
    ERR_pop_to_mark();
    return r;
}

static int check_key_pair(const char *cert_pem, const char *key_pem, jw_error *err)
{
    _cleanup_bio_ BIO *cert_bio = BIO_new_mem_buf(cert_pem, -1);
    _cleanup_bio_ BIO *key_bio = BIO_new_mem_buf(key_pem, -1);
    if (!cert_bio || !key_bio)
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "allocate bios for certificate and key");
    _cleanup_x509_ X509 *cert = PEM_read_bio_X509(cert_bio, NULL, auth_no_password_cb, NULL);
    if (!cert)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "certificate is not a PEM X.509 certificate: %s", auth_ossl_reason());
    _cleanup_pkey_ EVP_PKEY *key =
        PEM_read_bio_PrivateKey(key_bio, NULL, auth_no_password_cb, NULL);
    if (!key)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "key is not an unencrypted PEM private key: %s", auth_ossl_reason());
    if (X509_check_private_key(cert, key) != 1)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EKEYREJECTED,
                            "private key does not belong to the certificate: %s",
                            auth_ossl_reason());
    return 0;
}

int auth_check_key_pair(const char *cert_pem, const char *key_pem, jw_error *err)
{
    if (!cert_pem || !key_pem)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL, "certificate or key is missing");
    ERR_set_mark();
    int r = check_key_pair(cert_pem, key_pem, err);
    ERR_pop_to_mark();
    return r;
}
