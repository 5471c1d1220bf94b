/* The server's TLS material: reading and checking certificate, key, CA bundle and CRLs, and the
 * staged copy that gRPC's file-watching certificate provider reads. See auth.h for the layout
 * and why it exists. */
#include "auth/auth.h"

#include "auth/auth-internal.h"
#include "util/cleanup.h"
#include "util/fileio.h"
#include "util/rmtree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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

struct auth_tls_stage {
    char *dir; /* absolute */
    int dfd;
    char *cert, *key, *ca, *crl; /* copies of the paths */
    unsigned gen;                /* current generation, 0 before the first */
    auth_tls_summary sum;
    char *identity_file, *ca_file, *crl_dir;
};

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

/* Writes generation gen from m and points "current" at it. */
static int stage_generation(auth_tls_stage *s, const tls_material *m, unsigned gen, jw_error *err)
{
    char gname[32], marker[96];
    snprintf(gname, sizeof(gname), "g%u", gen);
    snprintf(marker, sizeof(marker), "# jobworker TLS configuration, generation %u\n", gen);
    if (!m->key || !m->cert || !m->ca) /* load_material fills all three or fails */
        return jw_error_set(err, JW_INTERNAL, -EINVAL, "stage generation %u: no material", gen);
    remove_generation(s->dfd, gen); /* a leftover of the same number, if any */
    if (mkdirat(s->dfd, gname, 0700) < 0)
        return jw_error_errno_code(err, JW_INTERNAL, errno, "create '%s/%s'", s->dir, gname);
    int r;
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
    return 0;
fail:
    remove_generation(s->dfd, gen);
    return r;
}

/* Creates (or takes over) the stage directory and cleans what a crashed run left there. */
static int open_stage_dir(auth_tls_stage *s, const char *dir, jw_error *err)
{
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return jw_error_errno_code(err, JW_INTERNAL, errno, "create TLS stage directory '%s'", dir);
    s->dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (s->dfd < 0)
        return jw_error_errno_code(err, JW_INTERNAL, errno, "open TLS stage directory '%s'", dir);
    struct stat st;
    if (fstat(s->dfd, &st) < 0)
        return jw_error_errno_code(err, JW_INTERNAL, errno, "stat '%s'", dir);
    /* It will hold a copy of the private key: nobody else may own it or look into it. */
    if (st.st_uid != geteuid())
        return jw_error_set(err, JW_FAILED_PRECONDITION, -EPERM,
                            "TLS stage directory '%s' belongs to uid %u, not to this process "
                            "(uid %u); remove it",
                            dir, (unsigned)st.st_uid, (unsigned)geteuid());
    if ((st.st_mode & 07777) != 0700 && fchmod(s->dfd, 0700) < 0)
        return jw_error_errno_code(err, JW_INTERNAL, errno, "chmod 0700 '%s'", dir);
    char abs[PATH_MAX];
    if (!realpath(dir, abs))
        return jw_error_errno_code(err, JW_INTERNAL, errno, "resolve '%s'", dir);
    s->dir = strdup(abs);
    if (!s->dir)
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");

    int fd = fcntl(s->dfd, F_DUPFD_CLOEXEC, 0);
    _cleanup_dir_ DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (fd >= 0 && !d)
        close(fd);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            const char *n = de->d_name;
            if (strcmp(n, "current") == 0 || strcmp(n, "current.tmp") == 0 ||
                (n[0] == 'g' && n[1] && strspn(n + 1, "0123456789") == strlen(n + 1)))
                rm_tree_at(s->dfd, n);
        }
    }
    return 0;
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
    bool oom = false;
    s->cert = dup_or_null(paths->cert, &oom);
    s->key = dup_or_null(paths->key, &oom);
    s->ca = dup_or_null(paths->ca, &oom);
    s->crl = dup_or_null(paths->crl, &oom);
    r = oom ? jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory") : 0;
    if (r == 0)
        r = open_stage_dir(s, dir, err);
    if (r == 0 && (asprintf(&s->identity_file, "%s/current/identity.pem", s->dir) < 0 ||
                   asprintf(&s->ca_file, "%s/current/ca.pem", s->dir) < 0 ||
                   (s->crl && asprintf(&s->crl_dir, "%s/current/crl", s->dir) < 0)))
        r = jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    if (r == 0) {
        ERR_set_mark();
        r = stage_generation(s, &m, 1, err);
        ERR_pop_to_mark();
    }
    if (r < 0) {
        material_release(&m);
        auth_tls_stage_free(s);
        return r;
    }
    s->gen = 1;
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
    ERR_set_mark();
    int r = load_material(&p, &m, err); /* releases what it read when it fails */
    if (r == 0) {
        r = stage_generation(s, &m, s->gen + 1, err);
        if (r < 0)
            material_release(&m);
    }
    ERR_pop_to_mark();
    if (r < 0)
        return r;
    s->gen++;
    s->sum = m.sum;
    s->sum.generation = s->gen;
    material_release(&m);
    /* Keep the previous generation: gRPC's watcher may have resolved "current" just before
     * the switch and still be reading it. Anything older is unreachable. */
    if (s->gen >= 3)
        remove_generation(s->dfd, s->gen - 2);
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
    if (s->dfd >= 0) {
        unlinkat(s->dfd, "current", 0);
        unlinkat(s->dfd, "current.tmp", 0);
        for (unsigned g = s->gen > 1 ? s->gen - 1 : 1; g <= s->gen + 1; g++)
            remove_generation(s->dfd, g);
        close(s->dfd);
        if (s->dir)
            rmdir(s->dir); /* fails harmlessly when something else lives there */
    }
    free(s->dir);
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
