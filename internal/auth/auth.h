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
    AUTH_METHOD_DELETE_JOB,
    AUTH_METHOD_WRITE_STDIN,
    AUTH_METHOD_GET_SERVER_INFO,
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

/* auth_identity_from_pem() behind a small cache of the last identities seen, keyed by the exact
 * certificate bytes (only for certificates the TLS layer verified). Thread-safe. */
int auth_identity_from_pem_cached(const char *pem, size_t len, auth_identity *ret, jw_error *err);

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
 * refused (nothing may prompt for a passphrase). INVALID_ARGUMENT on any problem: -EKEYREJECTED
 * when both parse but the key is not the certificate's (so a caller can say "the key does not
 * match the certificate" with its paths), -EINVAL otherwise. */
int auth_check_key_pair(const char *cert_pem, const char *key_pem, jw_error *err);

/* Checks that `pem` (NUL-terminated, read from `path`) is a CA bundle that gRPC can load: every
 * PEM block parses as a certificate and there is at least one. Errors name `path`
 * (INVALID_ARGUMENT, -EINVAL). `ret_n` (may be NULL) gets the number of certificates. */
int auth_check_ca_pem(const char *path, const char *pem, int *ret_n, jw_error *err);

/* ---- The server's TLS material (tlsconf.c) ----
 *
 * The server's certificate and key, the CA bundle that client certificates must chain to, and
 * an optional set of CRLs, read from files, checked, and staged for gRPC. gRPC 1.51 can enforce
 * CRLs only through its TLS credentials API, which reads CRLs from an OpenSSL hashed directory
 * (<issuer-hash>.r<n>) and takes certificates from a "certificate provider"; the only provider
 * in its C API that ever changes its data is a file watcher that polls files. So the material is
 * staged as a private directory that only this code writes, after every check passed:
 *
 *   DIR/current -> gN        switched atomically (rename of a symlink) to a new generation
 *   DIR/gN/identity.pem      the key and then the certificate chain, in ONE file: the watcher
 *                            reads key and chain separately, and one file means it can never pair
 *                            a key with a certificate of another generation
 *   DIR/gN/ca.pem            "# ... generation N" and the CA bundle. The line makes the file
 *                            differ between generations, so gRPC rebuilds its SSL_CTX (and with
 *                            it the X509_STORE that caches CRLs) even when only a CRL changed
 *   DIR/gN/crl/HASH.rK       one CRL per file (only with a CRL configured)
 *
 * What gRPC sees is therefore always a complete, checked generation; a reload that fails any
 * check writes nothing and the previous generation stays in use.
 *
 * gRPC does not read these names, though: the stage holds the current generation's identity.pem,
 * ca.pem and crl/ open and gives gRPC /proc/self/fd/N for each (a reload moves the next
 * generation onto the same numbers), so gRPC's reads cannot fail while the stage lives, even when
 * the directory is deleted under the server (gRPC 1.51's watcher would log eight lines a second,
 * forever). A thread of the stage (the watch) checks every second that DIR/current still holds
 * the files gRPC reads; when they are gone it logs one error with the fix, a reminder once a
 * minute while that lasts, and one line when they are back. */

typedef struct auth_tls_paths {
    const char *cert; /* server certificate chain (PEM), leaf first */
    const char *key;  /* its unencrypted private key (PEM) */
    const char *ca;   /* CA certificates that client certificates must chain to (PEM) */
    const char *crl;  /* NULL (no revocation check), a PEM file of one or more CRLs, or a
                       * directory: each regular file in it (names starting with '.' aside)
                       * must hold CRLs or, as in an OpenSSL CA directory, certificates, which
                       * are skipped; anything else (an empty, truncated or foreign file) is an
                       * error rather than "nothing revoked" */
} auth_tls_paths;

typedef struct auth_tls_summary {
    unsigned generation;   /* of the staged copy; 0 from auth_tls_check_files() */
    int n_ca;              /* certificates in the CA bundle */
    int n_crl;             /* distinct CRLs */
    int n_revoked;         /* entries over all CRLs */
    long long next_update; /* earliest nextUpdate of the CRLs (Unix seconds); 0 = none */
} auth_tls_summary;

/* Reads and checks the files without staging anything (for a clear error before start-up goes
 * further). Checks: each file exists, is at most AUTH_PEM_MAX bytes and parses; the key is
 * unencrypted and belongs to the certificate; the certificate (its leaf) is within its
 * notBefore/notAfter dates now and, when it has an extendedKeyUsage, lists serverAuth (clients
 * refuse it otherwise; no such extension is unrestricted, RFC 5280); the CA bundle holds at least
 * one certificate; each CRL is issued by a certificate of the CA bundle (same subject) and its
 * signature verifies with that certificate's key, its lastUpdate is not in the future and its
 * nextUpdate, if any, is not in the past: OpenSSL refuses every client certificate of a CA whose
 * CRL has expired, so such a CRL is refused here instead. A CRL file must hold at least one CRL; a
 * CRL directory may hold none. Identical CRLs (a file and its c_rehash link) count once; at most
 * 4096 CRLs. Errors name the file: INVALID_ARGUMENT, with the errno of a failed open/read or
 * -EINVAL. `ret` (may be NULL) is written only on success. */
int auth_tls_check_files(const auth_tls_paths *paths, auth_tls_summary *ret, jw_error *err);

typedef struct auth_tls_stage auth_tls_stage;

/* Checks the files as auth_tls_check_files() does and stages generation 1 under `dir`, which is
 * created with mode 0700 (an existing one must belong to this user; entries that a crashed run
 * left, "current" and "g<N>", are removed, anything else is left alone). The paths are copied.
 * The staged files hold a copy of the private key, readable by this user only. Starts the watch,
 * which logs through util/log. */
int auth_tls_stage_new(const char *dir, const auth_tls_paths *paths, auth_tls_stage **ret,
                       jw_error *err);
/* Re-reads the same paths, checks them and, only if every check passes, stages the next
 * generation and switches "current" (and what gRPC reads) to it; then removes generations older
 * than the previous one (a reader may still be inside that). When `dir` itself is gone or was
 * replaced (its data directory deleted or restored), it is created again first, provided the
 * directory above it exists, belongs to root or this user and is writable by nobody else; else
 * FAILED_PRECONDITION naming the fix. On failure nothing that gRPC reads changes. Not
 * thread-safe: call from one thread. `ret` (may be NULL) is written only on success. */
int auth_tls_stage_reload(auth_tls_stage *s, auth_tls_summary *ret, jw_error *err);
/* 0 while DIR/current/identity.pem is the identity file gRPC reads; -ESTALE when that name
 * leads to another file, else the errno of looking it up (-ENOENT once the directory is
 * deleted). What the watch checks every second. Thread-safe. */
int auth_tls_stage_check(auth_tls_stage *s);
/* Absolute paths, stable for the life of the stage: what gRPC watches. /proc/self/fd/N of the
 * files the stage holds open (DIR/current/... where /proc/self/fd does not work). */
const char *auth_tls_stage_identity_file(const auth_tls_stage *s);
const char *auth_tls_stage_ca_file(const auth_tls_stage *s);
const char *auth_tls_stage_crl_dir(const auth_tls_stage *s); /* NULL without a CRL path */
/* What the current generation holds. */
void auth_tls_stage_summary(const auth_tls_stage *s, auth_tls_summary *ret);
/* Removes every staged file and the directory (if empty). Accepts NULL. Call only once nothing
 * reads the files any more (after the gRPC server and its credentials are gone). */
void auth_tls_stage_free(auth_tls_stage *s);

/* Checks that a client certificate (PEM; the first certificate is the leaf), already verified
 * by the TLS layer, may authenticate a TLS client: it must carry an extendedKeyUsage extension
 * that lists clientAuth. OpenSSL's purpose check during the handshake refuses a certificate
 * whose extendedKeyUsage lacks clientAuth, but accepts one without the extension at all (RFC
 * 5280: unrestricted); this closes that gap. -EACCES (UNAUTHENTICATED) with the reason, -EINVAL
 * when the PEM does not parse. Thread-safe. */
int auth_check_client_usage(const char *pem, size_t len, jw_error *err);

#endif
