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

/* Scope-bound cleanup for OpenSSL objects, in the style of util/cleanup.h. Every *_free here
 * accepts NULL. */
static inline void auth_bio_freep(BIO **p)
{
    BIO_free(*p);
}
static inline void auth_x509_freep(X509 **p)
{
    X509_free(*p);
}
static inline void auth_pkey_freep(EVP_PKEY **p)
{
    EVP_PKEY_free(*p);
}
static inline void auth_ssl_ctx_freep(SSL_CTX **p)
{
    SSL_CTX_free(*p);
}
static inline void auth_ssl_freep(SSL **p)
{
    SSL_free(*p);
}
static inline void auth_conf_freep(CONF **p)
{
    NCONF_free(*p);
}
static inline void auth_ossl_freep(unsigned char **p)
{
    OPENSSL_free(*p);
}

#define _cleanup_bio_      __attribute__((cleanup(auth_bio_freep)))
#define _cleanup_x509_     __attribute__((cleanup(auth_x509_freep)))
#define _cleanup_pkey_     __attribute__((cleanup(auth_pkey_freep)))
#define _cleanup_ssl_ctx_  __attribute__((cleanup(auth_ssl_ctx_freep)))
#define _cleanup_ssl_      __attribute__((cleanup(auth_ssl_freep)))
#define _cleanup_conf_     __attribute__((cleanup(auth_conf_freep)))
#define _cleanup_ossl_str_ __attribute__((cleanup(auth_ossl_freep)))

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
