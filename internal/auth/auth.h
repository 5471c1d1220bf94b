/* Identity and policy: the only module that touches X.509 (OpenSSL). No gRPC here: rpc passes
 * the PEM of the verified peer certificate (the `x509_pem_cert` auth property) and asks.
 */
#ifndef JW_AUTH_AUTH_H
#define JW_AUTH_AUTH_H

#include "util/error.h"

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    AUTH_ROLE_NONE = 0,
    AUTH_ROLE_VIEWER = 1,
    AUTH_ROLE_ADMIN = 2,
} auth_role;

typedef enum {
    AUTH_METHOD_CREATE_JOB,
    AUTH_METHOD_GET_JOB,
    AUTH_METHOD_STOP_JOB,
    AUTH_METHOD_GET_JOBS,
    AUTH_METHOD_GET_JOBS_STREAM,
} auth_method;

#define AUTH_CN_MAX  256
#define AUTH_PEM_MAX (1024 * 1024) /* largest PEM input accepted anywhere in this module */

typedef struct auth_identity {
    char cn[AUTH_CN_MAX]; /* subject CN, "" when absent; printable, used in owner and audit */
    auth_role role;       /* from exactly one OU of "admin" or "viewer" (exact, case-sensitive) */
    char why[160];        /* when role is NONE: "no OU", "unknown OU 'x'", "2 OUs" ... */
} auth_identity;

/* Parses the leaf certificate and derives CN and role from the SUBJECT only (never the issuer).
 * Fails (-EINVAL, UNAUTHENTICATED) only when the PEM is not a certificate; a certificate without
 * a usable OU yields role NONE with `why` set.
 *
 * `pem` need not be NUL-terminated; only the first certificate in it is read (the leaf), and at
 * most AUTH_PEM_MAX bytes are accepted. The certificate must already have been verified by the
 * TLS layer: this function checks no signature, date or key usage.
 *
 * Role rules, all on exact bytes of the UTF-8 value: exactly one OU in the subject, equal to
 * "admin" or "viewer", grants that role. No OU -> "no OU"; one OU of another value ("Admin",
 * " admin", "admin ") -> "unknown OU '...'"; two or more OUs -> NONE even when they are equal
 * (two "admin"s): a role is granted only by a certificate that names exactly one, so a
 * mis-issued certificate fails closed instead of being interpreted. An OU or CN that cannot be
 * decoded also yields NONE. The CN is the first CN of the subject with every control or
 * non-ASCII character replaced by '?' and cut to AUTH_CN_MAX-1 bytes, so it is safe to log.
 *
 * Thread-safe. `ret` is written only on success (role NONE is a success). */
int auth_identity_from_pem(const char *pem, size_t len, auth_identity *ret, jw_error *err);

/* admin: every method; viewer: GET_JOB, GET_JOBS, GET_JOBS_STREAM; NONE: nothing. */
bool auth_role_allows(auth_role role, auth_method method);
const char *auth_role_name(auth_role role);  /* "admin", "viewer", "none" */
const char *auth_method_name(auth_method m); /* "CreateJob" ... */

/* Loads a process-scoped OpenSSL configuration that restricts every SSL_CTX to TLS 1.3
 * (Protocol = -ALL, TLSv1.3 in system_default). Must run before grpc_init(). Then checks that a
 * fresh SSL_CTX really refuses TLS 1.2 and fails with a clear message if not.
 *
 * The setting lives in OpenSSL's global state: it applies to every SSL_CTX created afterwards
 * in this process (gRPC's server and client contexts included) and cannot be undone. The
 * Protocol command sets SSL_OP_NO_SSLv3 ... SSL_OP_NO_TLSv1_2 on each new SSL_CTX; gRPC 1.51
 * then calls SSL_CTX_set_min_proto_version(TLS1_2) and set_max(TLS1_3), which only move the
 * version bounds and leave those options alone, so TLS 1.2 stays disabled (the self-check
 * replays those two calls). Call it from main before any other thread starts; calling it again
 * is harmless. Errors: -EINVAL/-ENOMEM when the configuration cannot be loaded, -ENOTSUP
 * (FAILED_PRECONDITION) when the self-check finds TLS 1.2 still enabled or TLS 1.3 disabled. */
int auth_tls13_only_init(jw_error *err);

/* Reads a whole PEM file (certificate, key, CA bundle) into a NUL-terminated malloc'd string,
 * capped at AUTH_PEM_MAX (1 MiB). Error messages name the path. A file that is empty or has no
 * "-----BEGIN " line is refused (-EINVAL), one above the cap gets -EFBIG, open/read errors their
 * errno. On success *ret is owned by the caller (free()); on failure it is not written. */
int auth_read_pem_file(const char *path, char **ret, jw_error *err);

/* Checks that cert_pem's first certificate and key_pem's private key (both NUL-terminated, e.g.
 * from auth_read_pem_file) parse and belong together, so that a server or client can refuse to
 * start with a clear message instead of gRPC's handshake failing later. An encrypted key is
 * refused (nothing may prompt for a passphrase). -EINVAL with INVALID_ARGUMENT on any problem. */
int auth_check_key_pair(const char *cert_pem, const char *key_pem, jw_error *err);

#endif
