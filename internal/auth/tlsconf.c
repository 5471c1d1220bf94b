/* The server's TLS material: reading and checking certificate, key, CA bundle and CRLs, and the
 * staged copy that gRPC's file-watching certificate provider reads. See auth.h for the layout
 * and why it exists. */
#include "auth/auth.h"

#include "auth/auth-internal.h"
#include "util/cleanup.h"
#include "util/fileio.h"
#include "util/log.h"
#include "util/misc.h"
#include "util/rmtree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_CRLS 4096

static void x509_stack_freep(STACK_OF(X509) * *p)
{
    sk_X509_pop_free(*p, X509_free);
}
JW_DEFINE_POINTER_CLEANUP(DIR, closedir)
#define _cleanup_x509_stack_ _cleanup_(x509_stack_freep)
#define _cleanup_dir_        _cleanup_(closedirp)

/* Everything one generation is made of, checked. */
typedef struct tls_material {
    char *cert, *key, *ca;     /* PEM text as read */
    STACK_OF(X509_CRL) * crls; /* distinct CRLs, in the order found */
    auth_tls_summary sum;
} tls_material;

static void material_release(tls_material *m)
{
    free(m->cert);
    erase_free(m->key); /* the private key */
    free(m->ca);
    sk_X509_CRL_pop_free(m->crls, X509_CRL_free);
    *m = (tls_material){0};
}

/* True when the newest OpenSSL error only says that no further PEM block of the wanted kind was
 * found, i.e. a read loop ended at the end of its input rather than at a damaged block. */
static bool pem_at_end(void)
{
    unsigned long e = ERR_peek_last_error();
    return e == 0 || (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE);
}

static void name_str(const X509_NAME *name, char *buf, size_t size)
{
    if (!X509_NAME_oneline(name, buf, (int)size))
        snprintf(buf, size, "?");
}

static void time_str(const ASN1_TIME *t, char *buf, size_t size)
{
    struct tm tm;
    if (!t || !ASN1_TIME_to_tm(t, &tm) || !strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, size, "?");
}

/* The CA bundle, parsed the way gRPC loads it (PEM_read_bio_X509_AUX, so "TRUSTED CERTIFICATE"
 * blocks count too). */
static int parse_ca(const char *path, const char *pem, STACK_OF(X509) * *ret, jw_error *err)
{
    _cleanup_bio_ BIO *bio = BIO_new_mem_buf(pem, -1);
    _cleanup_x509_stack_ STACK_OF(X509) *cas = sk_X509_new_null();
    if (!bio || !cas)
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "CA file '%s': out of memory", path);
    for (;;) {
        X509 *x = PEM_read_bio_X509_AUX(bio, NULL, auth_no_password_cb, NULL);
        if (!x)
            break;
        if (!sk_X509_push(cas, x)) {
            X509_free(x);
            return jw_error_set(err, JW_INTERNAL, -ENOMEM, "CA file '%s': out of memory", path);
        }
    }
    if (!pem_at_end())
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "CA file '%s': certificate %d does not parse: %s", path,
                            sk_X509_num(cas) + 1, auth_ossl_reason());
    if (sk_X509_num(cas) == 0)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL, "CA file '%s' holds no certificate",
                            path);
    *ret = TAKE_PTR(cas);
    return 0;
}

int auth_check_ca_pem(const char *path, const char *pem, int *ret_n, jw_error *err)
{
    ERR_set_mark();
    _cleanup_x509_stack_ STACK_OF(X509) *cas = NULL;
    int r = parse_ca(path, pem, &cas, err);
    ERR_pop_to_mark();
    if (r < 0)
        return r;
    if (ret_n)
        *ret_n = sk_X509_num(cas);
    return 0;
}

/* Checks one CRL against the CA bundle and the clock. */
static int check_crl(const char *path, X509_CRL *crl, STACK_OF(X509) * cas, const char *ca_path,
                     jw_error *err)
{
    const X509_NAME *issuer = X509_CRL_get_issuer(crl);
    char iname[256];
    name_str(issuer, iname, sizeof(iname));
    bool named = false, verified = false;
    /* Several CA certificates may share a subject (a CA whose key was renewed): any of them. */
    for (int i = 0; i < sk_X509_num(cas) && !verified; i++) {
        X509 *ca = sk_X509_value(cas, i);
        if (X509_NAME_cmp(X509_get_subject_name(ca), issuer) != 0)
            continue;
        named = true;
        EVP_PKEY *pk = X509_get0_pubkey(ca);
        verified = pk && X509_CRL_verify(crl, pk) == 1;
    }
    if (!named)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "CRL of '%s' in '%s' is not issued by a certificate of the CA file "
                            "'%s' (a CRL of an intermediate CA needs that CA in the CA file)",
                            iname, path, ca_path);
    if (!verified)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "CRL of '%s' in '%s': its signature does not verify with the key of "
                            "that CA in '%s'",
                            iname, path, ca_path);

    time_t now = time(NULL);
    const ASN1_TIME *last = X509_CRL_get0_lastUpdate(crl);
    const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);
    char when[40];
    /* X509_cmp_time: -1 when the time is at or before now, 1 after it, 0 on error. */
    if (!last || X509_cmp_time(last, &now) != -1) {
        time_str(last, when, sizeof(when));
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "CRL of '%s' in '%s' is not valid yet (lastUpdate %s)", iname, path,
                            when);
    }
    if (next && X509_cmp_time(next, &now) != 1) {
        time_str(next, when, sizeof(when));
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "CRL of '%s' in '%s' expired at %s (nextUpdate): every client "
                            "certificate of that CA would be refused; publish a new CRL",
                            iname, path, when);
    }
    return 0;
}

/* What reading CRLs needs: where they go and what they are checked against. */
typedef struct crl_ctx {
    tls_material *m;
    STACK_OF(X509) * cas;
    const char *ca_path;
} crl_ctx;

/* Parses every CRL block of pem, checks each new one and adds it to m->crls (an exact duplicate
 * of one already there is skipped); returns how many CRL blocks there were. */
static int parse_crls(crl_ctx *c, const char *path, const char *pem, size_t len, jw_error *err)
{
    tls_material *m = c->m;
    _cleanup_bio_ BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio)
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "CRL file '%s': out of memory", path);
    int n = 0;
    for (;;) {
        _cleanup_crl_ X509_CRL *crl = PEM_read_bio_X509_CRL(bio, NULL, auth_no_password_cb, NULL);
        if (!crl)
            break;
        n++;
        bool dup = false;
        for (int i = 0; i < sk_X509_CRL_num(m->crls) && !dup; i++)
            dup = X509_CRL_match(sk_X509_CRL_value(m->crls, i), crl) == 0;
        if (dup)
            continue;
        if (sk_X509_CRL_num(m->crls) >= MAX_CRLS)
            return jw_error_set(err, JW_INVALID_ARGUMENT, -E2BIG,
                                "CRL file '%s': more than %d CRLs in all", path, MAX_CRLS);
        int r = check_crl(path, crl, c->cas, c->ca_path, err);
        if (r < 0)
            return r;
        STACK_OF(X509_REVOKED) *rev = X509_CRL_get_REVOKED(crl);
        m->sum.n_revoked += rev ? sk_X509_REVOKED_num(rev) : 0;
        const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);
        struct tm tm;
        if (next && ASN1_TIME_to_tm(next, &tm)) {
            long long t = (long long)timegm(&tm);
            if (m->sum.next_update == 0 || t < m->sum.next_update)
                m->sum.next_update = t;
        }
        if (!sk_X509_CRL_push(m->crls, crl))
            return jw_error_set(err, JW_INTERNAL, -ENOMEM, "CRL file '%s': out of memory", path);
        crl = NULL; /* the stack owns it */
    }
    if (!pem_at_end())
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "CRL file '%s': CRL %d does not parse: %s", path, n + 1,
                            auth_ossl_reason());
    return n;
}

/* Reads a regular file of a CRL directory, at most AUTH_PEM_MAX bytes. *ret is NULL for an
 * entry that is not a regular file (after following symlinks). */
static int read_dir_entry(int dfd, const char *name, const char *shown, char **ret, size_t *ret_len,
                          jw_error *err)
{
    *ret = NULL;
    *ret_len = 0;
    int r = read_file_alloc_at(dfd, name, AUTH_PEM_MAX, READ_FILE_REGULAR, ret, ret_len);
    if (r == -EBADFD)
        return 0;
    if (r == -EFBIG)
        return jw_error_set(err, JW_INVALID_ARGUMENT, r,
                            "'%s' in the CRL directory is larger than the limit of %d bytes", shown,
                            AUTH_PEM_MAX);
    if (r < 0)
        return jw_error_errno_code(err, r == -ENOMEM ? JW_INTERNAL : JW_INVALID_ARGUMENT, r,
                                   "read '%s'", shown);
    return 0;
}

static int load_crl_dir(crl_ctx *c, const char *path, jw_error *err)
{
    _cleanup_close_ int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        int r = -errno;
        return jw_error_errno_code(err, JW_INVALID_ARGUMENT, r, "open CRL directory '%s'", path);
    }
    struct dirent **names = NULL;
    /* Sorted, so that which of two CRLs with one issuer gets which file name is reproducible. */
    int n = scandir(path, &names, NULL, alphasort);
    if (n < 0) {
        int r = -errno;
        return jw_error_errno_code(err, JW_INVALID_ARGUMENT, r, "read CRL directory '%s'", path);
    }
    int r = 0;
    for (int i = 0; i < n; i++) {
        const char *name = names[i]->d_name;
        if (r == 0 && name[0] != '.') {
            /* A c_rehash link is named with its target, which is the file to fix. */
            char shown[2 * PATH_MAX], target[PATH_MAX];
            ssize_t tl = readlinkat(dfd, name, target, sizeof(target) - 1);
            if (tl > 0) {
                target[tl] = '\0';
                snprintf(shown, sizeof(shown), "%s/%s -> %s", path, name, target);
            } else {
                snprintf(shown, sizeof(shown), "%s/%s", path, name);
            }
            _cleanup_free_ char *pem = NULL;
            size_t len = 0;
            r = read_dir_entry(dfd, name, shown, &pem, &len, err);
            if (r == 0 && pem) {
                r = parse_crls(c, shown, pem, len, err);
                /* A file without a CRL is an error, not silently "nothing revoked": a truncated
                 * or half-copied CRL must keep the previous configuration in force. Only
                 * certificates may share the directory (an OpenSSL CA directory). */
                if (r == 0 && !memmem(pem, len, "CERTIFICATE-----", 16))
                    r = jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                                     "'%s' in the CRL directory holds no X509 CRL (only CRLs "
                                     "and certificates may be there)",
                                     shown);
            }
            if (r > 0)
                r = 0;
        }
        free(names[i]);
    }
    free(names);
    return r;
}

/* The server's own certificate (the leaf, first in the file): a client refuses one that is
 * outside its validity dates or whose extendedKeyUsage lacks serverAuth, so the server would
 * start and then fail every handshake without a word. Refused here, at start and on reload, with
 * the date or the usage in the message. An absent extendedKeyUsage is unrestricted (RFC 5280
 * 4.2.1.12) and accepted, as OpenSSL's ssl_server purpose check does. */
static int check_server_cert(const char *path, const char *pem, jw_error *err)
{
    _cleanup_bio_ BIO *bio = BIO_new_mem_buf(pem, -1);
    if (!bio)
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "server certificate '%s': out of memory",
                            path);
    _cleanup_x509_ X509 *cert = PEM_read_bio_X509(bio, NULL, auth_no_password_cb, NULL);
    if (!cert)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "server certificate '%s' is not a PEM X.509 certificate: %s", path,
                            auth_ossl_reason());
    char when[64];
    const ASN1_TIME *nb = X509_get0_notBefore(cert), *na = X509_get0_notAfter(cert);
    int c = X509_cmp_current_time(nb);
    if (c == 0 || c > 0) {
        time_str(nb, when, sizeof(when));
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            c == 0 ? "server certificate '%s' has an unreadable notBefore date"
                                   : "server certificate '%s' is not valid yet: notBefore %s",
                            path, when);
    }
    c = X509_cmp_current_time(na);
    if (c == 0 || c < 0) {
        time_str(na, when, sizeof(when));
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            c == 0 ? "server certificate '%s' has an unreadable notAfter date"
                                   : "server certificate '%s' has expired: notAfter %s",
                            path, when);
    }
    uint32_t flags = X509_get_extension_flags(cert);
    if (flags & EXFLAG_INVALID)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "server certificate '%s' has invalid or duplicate extensions", path);
    if ((flags & EXFLAG_XKUSAGE) && !(X509_get_extended_key_usage(cert) & XKU_SSL_SERVER))
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "server certificate '%s' has an extendedKeyUsage without serverAuth: "
                            "clients refuse it (issue it with serverAuth, or without the "
                            "extension)",
                            path);
    return 0;
}

static int load_material(const auth_tls_paths *p, tls_material *ret, jw_error *err)
{
    if (!p || !p->cert || !p->key || !p->ca)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "server certificate, key and CA file must all be given");
    tls_material m = {0};
    _cleanup_x509_stack_ STACK_OF(X509) *cas = NULL;
    int r = auth_read_pem_file(p->cert, &m.cert, err);
    if (r >= 0)
        r = auth_read_pem_file(p->key, &m.key, err);
    if (r >= 0)
        r = auth_read_pem_file(p->ca, &m.ca, err);
    if (r >= 0) {
        r = auth_check_key_pair(m.cert, m.key, err);
        if (r < 0)
            jw_error_wrap(err, r, "server certificate '%s' and key '%s'", p->cert, p->key);
    }
    if (r >= 0)
        r = check_server_cert(p->cert, m.cert, err);
    if (r >= 0)
        r = parse_ca(p->ca, m.ca, &cas, err);
    if (r >= 0) {
        m.sum.n_ca = sk_X509_num(cas);
        m.crls = sk_X509_CRL_new_null();
        if (!m.crls)
            r = jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    }
    if (r >= 0 && p->crl) {
        crl_ctx c = {.m = &m, .cas = cas, .ca_path = p->ca};
        struct stat st;
        if (stat(p->crl, &st) < 0) {
            r = -errno;
            jw_error_errno_code(err, JW_INVALID_ARGUMENT, r, "CRL path '%s'", p->crl);
        } else if (S_ISDIR(st.st_mode)) {
            r = load_crl_dir(&c, p->crl, err);
        } else {
            _cleanup_free_ char *pem = NULL;
            r = auth_read_pem_file(p->crl, &pem, err);
            if (r >= 0)
                r = parse_crls(&c, p->crl, pem, strlen(pem), err);
            if (r == 0)
                r = jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                                 "CRL file '%s' holds no X509 CRL block", p->crl);
        }
    }
    if (r < 0) {
        material_release(&m);
        return r;
    }
    m.sum.n_crl = sk_X509_CRL_num(m.crls);
    *ret = m;
    return 0;
}

int auth_tls_check_files(const auth_tls_paths *paths, auth_tls_summary *ret, jw_error *err)
{
    ERR_set_mark();
    tls_material m = {0};
    int r = load_material(paths, &m, err);
    ERR_pop_to_mark();
    if (r < 0)
        return r;
    if (ret)
        *ret = m.sum;
    material_release(&m);
    return 0;
}

/* ---- staging ---- */

/* How often the watch looks at the stage, and how often it repeats that the files are gone. */
#define WATCH_INTERVAL_SEC 1
#define WATCH_REMIND_SEC   60

/* The files of a generation that gRPC reads, in auth_tls_stage.held. */
enum { HELD_IDENTITY, HELD_CA, HELD_CRL, HELD_N };
static const char *const held_names[HELD_N] = {"identity.pem", "ca.pem", "crl"};

/* Why gRPC reads the staged files through descriptors held open here: gRPC 1.51's file watcher
 * logs eight lines each time it polls a file it cannot read (stat_posix "stat failed", three
 * "Failed to get the file's modification time", "All retry attempts failed", "Reading file ...
 * failed") and polls every second, forever, so a deleted data directory flooded the log. It keeps
 * the SSL_CTX it has when a read fails, so the server went on serving with the last good
 * material regardless. Through /proc/self/fd/N its reads cannot fail while the stage lives, and
 * what it serves is the same; what happened to the names is said here instead, once (the
 * watch). */
struct auth_tls_stage {
    char *dir;    /* absolute */
    char *parent; /* the directory above dir (the data directory) */
    int dfd;
    char *cert, *key, *ca, *crl; /* copies of the paths */
    unsigned gen;                /* current generation, 0 before the first */
    auth_tls_summary sum;
    /* The current generation's identity.pem, ca.pem and crl/ (-1 without a CRL path), open. A
     * reload moves the next generation's files onto the same numbers with dup3(). */
    int held[HELD_N];
    char *identity_file, *ca_file, *crl_dir; /* what gRPC reads: see held_path() */
    /* Serializes a reload with the watch, which reads dfd, held and gen. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t watch;
    bool watching, stop;
};

static void close_held(int fds[HELD_N])
{
    for (int i = 0; i < HELD_N; i++) {
        if (fds[i] >= 0)
            close(fds[i]);
        fds[i] = -1;
    }
}

/* Errors are ignored here and below: everything in the stage is rebuilt from the source files,
 * and what cannot be removed now is removed at the next start. */
static void remove_generation(int dfd, unsigned gen)
{
    char name[32];
    snprintf(name, sizeof(name), "g%u", gen);
    rm_tree_at(dfd, name);
}

/* Creates name under dfd, exclusively, mode 0600, with the concatenation of the parts. */
static int write_file(int dfd, const char *name, const char *const *parts, size_t nparts)
{
    _cleanup_close_ int fd =
        openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    for (size_t i = 0; i < nparts; i++) {
        int r = write_full(fd, parts[i], strlen(parts[i]));
        if (r < 0)
            return r;
    }
    return 0;
}

static int write_crls(int gfd, STACK_OF(X509_CRL) * crls, jw_error *err)
{
    if (mkdirat(gfd, "crl", 0700) < 0)
        return jw_error_errno_code(err, JW_INTERNAL, errno, "create staged CRL directory");
    _cleanup_close_ int cfd = openat(gfd, "crl", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (cfd < 0)
        return jw_error_errno_code(err, JW_INTERNAL, errno, "open staged CRL directory");
    for (int i = 0; i < sk_X509_CRL_num(crls); i++) {
        X509_CRL *crl = sk_X509_CRL_value(crls, i);
        int ok = 0;
        unsigned long h = X509_NAME_hash_ex(X509_CRL_get_issuer(crl), NULL, NULL, &ok);
        if (!ok)
            return jw_error_set(err, JW_INTERNAL, -EINVAL, "hash the issuer of a CRL: %s",
                                auth_ossl_reason());
        /* OpenSSL's hashed-directory lookup reads HASH.r0, HASH.r1, ... until one is missing:
         * the first free suffix keeps the sequence dense. */
        char name[32];
        for (int k = 0;; k++) {
            snprintf(name, sizeof(name), "%08lx.r%d", h, k);
            if (faccessat(cfd, name, F_OK, AT_SYMLINK_NOFOLLOW) < 0)
                break;
        }
        _cleanup_bio_ BIO *mem = BIO_new(BIO_s_mem());
        char *data = NULL;
        if (!mem || !PEM_write_bio_X509_CRL(mem, crl) || BIO_write(mem, "", 1) != 1 ||
            BIO_get_mem_data(mem, &data) <= 0)
            return jw_error_set(err, JW_INTERNAL, -ENOMEM, "encode a CRL: %s", auth_ossl_reason());
        const char *parts[] = {data};
        int r = write_file(cfd, name, parts, 1);
        if (r < 0)
            return jw_error_errno_code(err, JW_INTERNAL, r, "write staged CRL '%s'", name);
    }
    return 0;
}

/* Writes generation gen from m, opens what gRPC will read of it into ret_held (written only on
 * success) and points "current" at it. */
static int stage_generation(auth_tls_stage *s, const tls_material *m, unsigned gen,
                            int ret_held[HELD_N], jw_error *err)
{
    char gname[32], marker[96];
    snprintf(gname, sizeof(gname), "g%u", gen);
    snprintf(marker, sizeof(marker), "# jobworker TLS configuration, generation %u\n", gen);
    if (!m->key || !m->cert || !m->ca) /* load_material fills all three or fails */
        return jw_error_set(err, JW_INTERNAL, -EINVAL, "stage generation %u: no material", gen);
    remove_generation(s->dfd, gen); /* a leftover of the same number, if any */
    if (mkdirat(s->dfd, gname, 0700) < 0)
        return jw_error_errno_code(err, JW_INTERNAL, errno, "create '%s/%s'", s->dir, gname);
    int r, held[HELD_N] = {-1, -1, -1};
    {
        _cleanup_close_ int gfd =
            openat(s->dfd, gname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (gfd < 0) {
            r = jw_error_errno_code(err, JW_INTERNAL, errno, "open '%s/%s'", s->dir, gname);
            goto fail;
        }
        size_t kl = strlen(m->key);
        const char *identity[] = {m->key, kl && m->key[kl - 1] != '\n' ? "\n" : "", m->cert};
        r = write_file(gfd, "identity.pem", identity, ARRAY_SIZE(identity));
        if (r < 0) {
            jw_error_errno_code(err, JW_INTERNAL, r, "write '%s/%s/identity.pem'", s->dir, gname);
            goto fail;
        }
        const char *ca[] = {marker, m->ca};
        r = write_file(gfd, "ca.pem", ca, ARRAY_SIZE(ca));
        if (r < 0) {
            jw_error_errno_code(err, JW_INTERNAL, r, "write '%s/%s/ca.pem'", s->dir, gname);
            goto fail;
        }
        if (s->crl) {
            r = write_crls(gfd, m->crls, err);
            if (r < 0)
                goto fail;
        }
        for (int i = 0; i < HELD_N; i++) {
            if (i == HELD_CRL && !s->crl)
                continue;
            held[i] = openat(gfd, held_names[i],
                             O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (i == HELD_CRL ? O_DIRECTORY : 0));
            if (held[i] < 0) {
                r = jw_error_errno_code(err, JW_INTERNAL, errno, "open '%s/%s/%s'", s->dir, gname,
                                        held_names[i]);
                goto fail;
            }
        }
    }
    /* The switch: rename() replaces "current" atomically, so a reader resolves either the old
     * or the new generation, never a mixture or nothing. */
    unlinkat(s->dfd, "current.tmp", 0);
    if (symlinkat(gname, s->dfd, "current.tmp") < 0 ||
        renameat(s->dfd, "current.tmp", s->dfd, "current") < 0) {
        r = jw_error_errno_code(err, JW_INTERNAL, errno, "switch '%s/current' to '%s'", s->dir,
                                gname);
        unlinkat(s->dfd, "current.tmp", 0);
        goto fail;
    }
    memcpy(ret_held, held, sizeof(held));
    return 0;
fail:
    close_held(held);
    remove_generation(s->dfd, gen);
    return r;
}

/* Creates (or takes over) the stage directory and cleans what a crashed run left there. */
static int open_stage_dir(const char *dir, int *ret_dfd, jw_error *err)
{
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return jw_error_errno_code(err, JW_INTERNAL, errno, "create TLS stage directory '%s'", dir);
    _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return jw_error_errno_code(err, JW_INTERNAL, errno, "open TLS stage directory '%s'", dir);
    struct stat st;
    if (fstat(dfd, &st) < 0)
        return jw_error_errno_code(err, JW_INTERNAL, errno, "stat '%s'", dir);
    /* It will hold a copy of the private key: nobody else may own it or look into it. */
    if (st.st_uid != geteuid())
        return jw_error_set(err, JW_FAILED_PRECONDITION, -EPERM,
                            "TLS stage directory '%s' belongs to uid %u, not to this process "
                            "(uid %u); remove it",
                            dir, (unsigned)st.st_uid, (unsigned)geteuid());
    if ((st.st_mode & 07777) != 0700 && fchmod(dfd, 0700) < 0)
        return jw_error_errno_code(err, JW_INTERNAL, errno, "chmod 0700 '%s'", dir);

    int fd = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
    _cleanup_dir_ DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (fd >= 0 && !d)
        close(fd);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            const char *n = de->d_name;
            if (strcmp(n, "current") == 0 || strcmp(n, "current.tmp") == 0 ||
                (n[0] == 'g' && n[1] && strspn(n + 1, "0123456789") == strlen(n + 1)))
                rm_tree_at(dfd, n);
        }
    }
    *ret_dfd = TAKE_FD(dfd);
    return 0;
}

/* True while dir still names the directory the stage writes into (not deleted, moved away or
 * replaced). */
static bool stage_dir_in_place(const auth_tls_stage *s)
{
    struct stat held, named;
    return fstat(s->dfd, &held) == 0 && held.st_nlink > 0 && lstat(s->dir, &named) == 0 &&
           held.st_dev == named.st_dev && held.st_ino == named.st_ino;
}

/* A reload found dir gone or replaced (its data directory deleted, restored from a backup or
 * created again): stages into a new one, provided the data directory exists and is safe for a
 * copy of the private key by daemon/trust.c's rule (root's or ours, writable by nobody else).
 * The directories above it were checked at start. */
static int reopen_stage_dir(auth_tls_stage *s, jw_error *err)
{
    struct stat st;
    if (stat(s->parent, &st) < 0) {
        int r = -errno;
        char buf[128];
        return jw_error_set(err, JW_FAILED_PRECONDITION, r,
                            "TLS stage directory '%s' is gone, and so is '%s' (%s): was the data "
                            "directory deleted? fix: restart the server, or recreate '%s' and "
                            "send SIGHUP again",
                            s->dir, s->parent, jw_strerror(r, buf, sizeof(buf)), s->parent);
    }
    if (!S_ISDIR(st.st_mode))
        return jw_error_set(err, JW_FAILED_PRECONDITION, -ENOTDIR,
                            "TLS stage directory '%s' is gone and '%s' is not a directory; fix: "
                            "restart the server",
                            s->dir, s->parent);
    if (st.st_uid != 0 && st.st_uid != geteuid())
        return jw_error_set(err, JW_FAILED_PRECONDITION, -EPERM,
                            "'%s' belongs to uid %u, not to root or the server's user (uid %u), "
                            "so the server's key is not staged there again; fix: chown %u '%s'",
                            s->parent, (unsigned)st.st_uid, (unsigned)geteuid(),
                            (unsigned)geteuid(), s->parent);
    if (st.st_mode & (S_IWGRP | S_IWOTH))
        return jw_error_set(err, JW_FAILED_PRECONDITION, -EPERM,
                            "'%s' is writable by %s (mode %04o), so the server's key is not "
                            "staged there again; fix: chmod go-w '%s'",
                            s->parent, st.st_mode & S_IWOTH ? "everyone" : "its group",
                            (unsigned)(st.st_mode & 07777), s->parent);
    int dfd = -1;
    int r = open_stage_dir(s->dir, &dfd, err);
    if (r < 0)
        return r;
    close(s->dfd);
    s->dfd = dfd;
    return 0;
}

/* The name gRPC reads held file fd by: /proc/self/fd/N, when that reaches the same file (it does
 * wherever /proc is mounted; the server's listener watch needs it too), else the path through
 * "current" that the stage keeps up to date. NULL when out of memory. */
static char *held_path(int fd, const char *dir, const char *name)
{
    char *p = NULL;
    struct stat a, b;
    if (asprintf(&p, "/proc/self/fd/%d", fd) < 0)
        return NULL;
    if (fstat(fd, &a) == 0 && stat(p, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
        return p;
    free(p);
    return asprintf(&p, "%s/current/%s", dir, name) < 0 ? NULL : p;
}

/* auth_tls_stage_check() with the lock held. */
static int check_locked(const auth_tls_stage *s)
{
    char p[PATH_MAX];
    struct stat held, named;
    if (fstat(s->held[HELD_IDENTITY], &held) < 0)
        return -errno;
    if (snprintf(p, sizeof(p), "%s/current/identity.pem", s->dir) >= (int)sizeof(p))
        return -ENAMETOOLONG;
    if (stat(p, &named) < 0)
        return -errno;
    if (held.st_dev != named.st_dev || held.st_ino != named.st_ino)
        return -ESTALE;
    return 0;
}

int auth_tls_stage_check(auth_tls_stage *s)
{
    pthread_mutex_lock(&s->lock);
    int r = check_locked(s);
    pthread_mutex_unlock(&s->lock);
    return r;
}

static const char *why_gone(int r, char *buf, size_t size)
{
    if (r == -ESTALE)
        return "replaced by files the server did not stage";
    return jw_strerror(r, buf, size);
}

/* The watch: once a second, whether the staged files are still where the stage put them. Their
 * loss changes nothing gRPC serves (it reads the held descriptors), but it means that the data
 * directory was deleted or moved under the server: said once as an error with the fix, repeated
 * once every WATCH_REMIND_SEC while it lasts, and once more when the files are back (a SIGHUP
 * staged them again, or the directory was moved back). */
static void *watch_main(void *arg)
{
    auth_tls_stage *s = arg;
    bool lost = false;
    int64_t lost_at = 0, reminded_at = 0;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    pthread_mutex_lock(&s->lock);
    for (;;) {
        deadline.tv_sec += WATCH_INTERVAL_SEC;
        while (!s->stop && pthread_cond_timedwait(&s->cond, &s->lock, &deadline) != ETIMEDOUT)
            ;
        if (s->stop)
            break;
        int r = check_locked(s);
        int64_t now = now_monotonic_ns();
        char buf[128];
        if (r < 0 && !lost) {
            log_error("tls: the staged TLS files in '%s' are gone (%s; the data directory was "
                      "deleted?): the server keeps serving with the TLS material it holds open%s; "
                      "fix: restart the server, or recreate '%s' and send SIGHUP to stage the "
                      "files again",
                      s->dir, why_gone(r, buf, sizeof(buf)),
                      s->crl ? ", but a CRL that no handshake has read yet is not checked" : "",
                      s->parent);
            lost = true;
            lost_at = reminded_at = now;
        } else if (r < 0 && now - reminded_at >= (int64_t)WATCH_REMIND_SEC * 1000000000) {
            log_warning("tls: the staged TLS files in '%s' are still gone after %lld s (%s); "
                        "serving with the TLS material held open; fix: restart the server, or "
                        "recreate '%s' and send SIGHUP",
                        s->dir, (long long)((now - lost_at) / 1000000000),
                        why_gone(r, buf, sizeof(buf)), s->parent);
            reminded_at = now;
        } else if (r == 0 && lost) {
            log_info("tls: the staged TLS files in '%s' are back (generation %u)", s->dir, s->gen);
            lost = false;
        }
        /* After a long stall (a suspended VM), do not make up for the missed looks. */
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec > deadline.tv_sec + 1)
            deadline = t;
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static char *dup_or_null(const char *s, bool *oom)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *oom = true;
    return d;
}

int auth_tls_stage_new(const char *dir, const auth_tls_paths *paths, auth_tls_stage **ret,
                       jw_error *err)
{
    if (!dir || !*dir)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL, "no TLS stage directory given");
    tls_material m = {0};
    ERR_set_mark();
    int r = load_material(paths, &m, err);
    ERR_pop_to_mark();
    if (r < 0)
        return r;

    auth_tls_stage *s = calloc(1, sizeof(*s));
    if (!s) {
        material_release(&m);
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    }
    s->dfd = -1;
    for (int i = 0; i < HELD_N; i++)
        s->held[i] = -1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    bool oom = false;
    s->cert = dup_or_null(paths->cert, &oom);
    s->key = dup_or_null(paths->key, &oom);
    s->ca = dup_or_null(paths->ca, &oom);
    s->crl = dup_or_null(paths->crl, &oom);
    r = oom ? jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory") : 0;
    if (r == 0)
        r = open_stage_dir(dir, &s->dfd, err);
    char abs[PATH_MAX];
    if (r == 0 && !realpath(dir, abs))
        r = jw_error_errno_code(err, JW_INTERNAL, errno, "resolve '%s'", dir);
    if (r == 0) {
        s->dir = strdup(abs);
        char *slash = strrchr(abs, '/');
        if (slash)
            *(slash == abs ? slash + 1 : slash) = '\0';
        s->parent = strdup(abs);
        if (!s->dir || !s->parent)
            r = jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    }
    if (r == 0) {
        ERR_set_mark();
        r = stage_generation(s, &m, 1, s->held, err);
        ERR_pop_to_mark();
    }
    if (r == 0) {
        s->identity_file = held_path(s->held[HELD_IDENTITY], s->dir, "identity.pem");
        s->ca_file = held_path(s->held[HELD_CA], s->dir, "ca.pem");
        s->crl_dir = s->crl ? held_path(s->held[HELD_CRL], s->dir, "crl") : NULL;
        if (!s->identity_file || !s->ca_file || (s->crl && !s->crl_dir))
            r = jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    }
    if (r == 0) {
        s->gen = 1;
        r = -pthread_create(&s->watch, NULL, watch_main, s);
        if (r < 0)
            jw_error_errno_code(err, JW_INTERNAL, r, "start the TLS stage watch");
        s->watching = r == 0;
    }
    if (r < 0) {
        material_release(&m);
        auth_tls_stage_free(s);
        return r;
    }
    s->sum = m.sum;
    s->sum.generation = 1;
    material_release(&m);
    *ret = s;
    return 0;
}

int auth_tls_stage_reload(auth_tls_stage *s, auth_tls_summary *ret, jw_error *err)
{
    auth_tls_paths p = {.cert = s->cert, .key = s->key, .ca = s->ca, .crl = s->crl};
    tls_material m = {0};
    int held[HELD_N] = {-1, -1, -1};
    ERR_set_mark();
    int r = load_material(&p, &m, err); /* releases what it read when it fails */
    pthread_mutex_lock(&s->lock);
    if (r == 0 && !stage_dir_in_place(s))
        r = reopen_stage_dir(s, err);
    if (r == 0)
        r = stage_generation(s, &m, s->gen + 1, held, err);
    /* gRPC's next poll of the same /proc/self/fd names reads the new generation. dup3() cannot
     * fail here short of a bug: both descriptors are open and the target number is ours. */
    for (int i = 0; r == 0 && i < HELD_N; i++)
        if (held[i] >= 0 && dup3(held[i], s->held[i], O_CLOEXEC) < 0)
            r = jw_error_errno_code(err, JW_INTERNAL, errno, "switch to the new '%s'",
                                    held_names[i]);
    close_held(held);
    if (r == 0) {
        s->gen++;
        s->sum = m.sum;
        s->sum.generation = s->gen;
        /* Keep the previous generation: gRPC's watcher may have opened its files just before
         * the switch and still be reading them. Anything older is unreachable. */
        if (s->gen >= 3)
            remove_generation(s->dfd, s->gen - 2);
    }
    pthread_mutex_unlock(&s->lock);
    ERR_pop_to_mark();
    material_release(&m);
    if (r < 0)
        return r;
    if (ret)
        *ret = s->sum;
    return 0;
}

const char *auth_tls_stage_identity_file(const auth_tls_stage *s)
{
    return s->identity_file;
}

const char *auth_tls_stage_ca_file(const auth_tls_stage *s)
{
    return s->ca_file;
}

const char *auth_tls_stage_crl_dir(const auth_tls_stage *s)
{
    return s->crl_dir;
}

void auth_tls_stage_summary(const auth_tls_stage *s, auth_tls_summary *ret)
{
    *ret = s->sum;
}

void auth_tls_stage_free(auth_tls_stage *s)
{
    if (!s)
        return;
    if (s->watching) {
        pthread_mutex_lock(&s->lock);
        s->stop = true;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->watch, NULL);
    }
    if (s->dfd >= 0) {
        /* Only our own directory: one that took its place is somebody else's business. */
        bool in_place = s->dir && stage_dir_in_place(s);
        unlinkat(s->dfd, "current", 0);
        unlinkat(s->dfd, "current.tmp", 0);
        for (unsigned g = s->gen > 1 ? s->gen - 1 : 1; g <= s->gen + 1; g++)
            remove_generation(s->dfd, g);
        close(s->dfd);
        if (in_place)
            rmdir(s->dir); /* fails harmlessly when something else lives there */
    }
    close_held(s->held);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s->dir);
    free(s->parent);
    free(s->cert);
    free(s->key);
    free(s->ca);
    free(s->crl);
    free(s->identity_file);
    free(s->ca_file);
    free(s->crl_dir);
    free(s);
}

/* ---- client certificate usage ---- */

static int check_client_usage(const char *pem, size_t len, jw_error *err)
{
    _cleanup_bio_ BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio)
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "allocate a bio for the peer certificate");
    _cleanup_x509_ X509 *cert = PEM_read_bio_X509(bio, NULL, auth_no_password_cb, NULL);
    if (!cert)
        return jw_error_set(err, JW_UNAUTHENTICATED, -EINVAL,
                            "peer certificate is not a PEM X.509 certificate: %s",
                            auth_ossl_reason());
    uint32_t flags = X509_get_extension_flags(cert);
    if (flags & EXFLAG_INVALID)
        return jw_error_set(err, JW_UNAUTHENTICATED, -EACCES,
                            "certificate has invalid or duplicate extensions");
    if (!(flags & EXFLAG_XKUSAGE))
        return jw_error_set(err, JW_UNAUTHENTICATED, -EACCES,
                            "certificate has no extendedKeyUsage extension; clientAuth is "
                            "required");
    if (!(X509_get_extended_key_usage(cert) & XKU_SSL_CLIENT))
        return jw_error_set(err, JW_UNAUTHENTICATED, -EACCES,
                            "certificate's extendedKeyUsage does not list clientAuth");
    return 0;
}

int auth_check_client_usage(const char *pem, size_t len, jw_error *err)
{
    if (!pem || len == 0 || len > AUTH_PEM_MAX)
        return jw_error_set(err, JW_UNAUTHENTICATED, -EINVAL,
                            "peer certificate is empty or larger than %d bytes", AUTH_PEM_MAX);
    ERR_set_mark();
    int r = check_client_usage(pem, len, err);
    ERR_pop_to_mark();
    return r;
}
