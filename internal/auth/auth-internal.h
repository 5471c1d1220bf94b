/* Helpers shared by the auth module's files; nothing outside internal/auth includes this. */
#ifndef JW_AUTH_AUTH_INTERNAL_H
#define JW_AUTH_AUTH_INTERNAL_H

#include <openssl/bio.h>
#include <openssl/conf.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "util/cleanup.h"

/* Scope-bound cleanup for OpenSSL objects (util/cleanup.h). */
JW_DEFINE_POINTER_CLEANUP(BIO, BIO_free)
JW_DEFINE_POINTER_CLEANUP(X509, X509_free)
JW_DEFINE_POINTER_CLEANUP(X509_CRL, X509_CRL_free)
JW_DEFINE_POINTER_CLEANUP(EVP_PKEY, EVP_PKEY_free)
JW_DEFINE_POINTER_CLEANUP(SSL_CTX, SSL_CTX_free)
JW_DEFINE_POINTER_CLEANUP(SSL, SSL_free)
JW_DEFINE_POINTER_CLEANUP(CONF, NCONF_free)
JW_DEFINE_POINTER_CLEANUP(unsigned char, OPENSSL_free)

#define _cleanup_bio_      _cleanup_(BIO_freep)
#define _cleanup_x509_     _cleanup_(X509_freep)
#define _cleanup_crl_      _cleanup_(X509_CRL_freep)
#define _cleanup_pkey_     _cleanup_(EVP_PKEY_freep)
#define _cleanup_ssl_ctx_  _cleanup_(SSL_CTX_freep)
#define _cleanup_ssl_      _cleanup_(SSL_freep)
#define _cleanup_conf_     _cleanup_(NCONF_freep)
#define _cleanup_ossl_str_ _cleanup_(OPENSSL_freep)

/* OpenSSL reports failures on a per-thread error queue that gRPC's TLS code also reads (via
 * SSL_get_error) on the same threads, so each public function brackets its OpenSSL calls with
 * ERR_set_mark() and ERR_pop_to_mark(): errors it caused must not leak into a later handshake.
 * In between, this gives the reason of the newest error for messages (a static string, never
 * NULL). */
const char *auth_ossl_reason(void);

/* A pem_password_cb that refuses: OpenSSL's default callback would prompt on the terminal when
 * a PEM block is encrypted, which a server must never do. */
int auth_no_password_cb(char *buf, int size, int rwflag, void *userdata);

#endif
