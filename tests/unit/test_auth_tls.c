/* Unit tests of internal/auth/tlsconf.c: checking the server's TLS files (certificate, key, CA,
 * CRLs), the staged copy that gRPC watches, its reload and its loss, and the clientAuth usage
 * check.
 *
 * The group setup runs scripts/gen-certs.sh into a fresh temporary directory (the repository
 * root is $JW_REPO_ROOT, else the nearest ancestor of this binary that holds the script, else
 * the cwd). CRLs with unusual dates or issuers are made in memory with OpenSSL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "auth/auth.h"
#include "util/cleanup.h"

#include "certfix.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char g_root[PATH_MAX];
static char g_dir[512]; /* short, so that paths built under it fit PATH_MAX */

/* ---- fixtures ---- */

static int group_teardown(void **state)
{
    if (g_dir[0])
        certfix_rm_rf(g_dir);
    g_dir[0] = '\0';
    return 0;
}

static int group_setup(void **state)
{
    certfix_find_repo_root(g_root, sizeof(g_root));
    if (!certfix_has_script(g_root)) {
        fprintf(stderr,
                "no scripts/gen-certs.sh under '%s': run from the repository root or set "
                "JW_REPO_ROOT\n",
                g_root);
        return -1;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof(g_dir), "%s/jw-test-auth-tls-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) {
        char ebuf[128];
        fprintf(stderr, "mkdtemp %s: %s\n", g_dir, jw_strerror(errno, ebuf, sizeof(ebuf)));
        g_dir[0] = '\0';
        return -1;
    }
    char certs[PATH_MAX + 8];
    snprintf(certs, sizeof(certs), "%s/certs", g_dir);
    if (certfix_gen_certs(g_root, certs) < 0) {
        group_teardown(state);
        return -1;
    }
    return 0;
}

/* "<g_dir>/certs/<name>" */
static const char *cert_file(const char *name)
{
    static char bufs[8][PATH_MAX];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, PATH_MAX, "%s/certs/%s", g_dir, name);
    return b;
}

/* "<g_dir>/<name>" */
static const char *tmp_path(const char *name)
{
    static char bufs[8][PATH_MAX];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, PATH_MAX, "%s/%s", g_dir, name);
    return b;
}

static char *slurp(const char *path)
{
    char *s = NULL;
    jw_error err = JW_ERROR_INIT;
    if (auth_read_pem_file(path, &s, &err) != 0)
        fail_msg("read %s: %s", path, err.msg);
    return s;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void copy_file(const char *from, const char *to)
{
    _cleanup_free_ char *s = slurp(from);
    write_text(to, s);
}

static X509 *load_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(x);
    return x;
}

static EVP_PKEY *load_key(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(k);
    return k;
}

/* Writes a CRL naming issuer_cert's subject, valid from now+last_off to now+next_off seconds,
 * revoking `revoke` (may be NULL), signed by sign_key. */
static void make_crl(const char *out, const char *issuer_cert, const char *sign_key, long last_off,
                     long next_off, const char *revoke)
{
    X509 *issuer = load_cert(issuer_cert);
    EVP_PKEY *key = load_key(sign_key);
    X509_CRL *crl = X509_CRL_new();
    assert_non_null(crl);
    assert_true(X509_CRL_set_version(crl, X509_CRL_VERSION_2));
    assert_true(X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer)));
    ASN1_TIME *last = X509_time_adj_ex(NULL, 0, last_off, NULL);
    ASN1_TIME *next = X509_time_adj_ex(NULL, 0, next_off, NULL);
    assert_true(X509_CRL_set1_lastUpdate(crl, last));
    assert_true(X509_CRL_set1_nextUpdate(crl, next));
    if (revoke) {
        X509 *victim = load_cert(revoke);
        X509_REVOKED *rev = X509_REVOKED_new();
        assert_true(X509_REVOKED_set_serialNumber(rev, X509_get_serialNumber(victim)));
        assert_true(X509_REVOKED_set_revocationDate(rev, last));
        assert_true(X509_CRL_add0_revoked(crl, rev));
        X509_free(victim);
    }
    assert_true(X509_CRL_sort(crl));
    assert_true(X509_CRL_sign(crl, key, EVP_sha256()) > 0);
    FILE *f = fopen(out, "w");
    assert_non_null(f);
    assert_true(PEM_write_X509_CRL(f, crl));
    fclose(f);
    ASN1_TIME_free(last);
    ASN1_TIME_free(next);
    X509_CRL_free(crl);
    EVP_PKEY_free(key);
    X509_free(issuer);
}

static auth_tls_paths paths_with(const char *crl)
{
    return (auth_tls_paths){.cert = cert_file("server.crt"),
                            .key = cert_file("server.key"),
                            .ca = cert_file("ca.crt"),
                            .crl = crl};
}

static void expect_check_fails(const auth_tls_paths *p, const char *want)
{
    jw_error err = JW_ERROR_INIT;
    auth_tls_summary sum = {.n_ca = 12345};
    int r = auth_tls_check_files(p, &sum, &err);
    if (r >= 0)
        fail_msg("check passed, wanted an error with '%s'", want);
    assert_int_equal(err.code, JW_INVALID_ARGUMENT);
    if (!strstr(err.msg, want))
        fail_msg("error '%s' does not contain '%s'", err.msg, want);
    assert_int_equal(sum.n_ca, 12345); /* untouched on failure */
}

/* ---- checks of the files ---- */

static void test_check_files_ok(void **state)
{
    jw_error err = JW_ERROR_INIT;
    auth_tls_summary sum;
    auth_tls_paths p = paths_with(NULL);
    assert_int_equal(auth_tls_check_files(&p, &sum, &err), 0);
    assert_int_equal(sum.n_ca, 1);
    assert_int_equal(sum.n_crl, 0);
    assert_int_equal(sum.generation, 0);

    p = paths_with(cert_file("crl.pem"));
    assert_int_equal(auth_tls_check_files(&p, &sum, &err), 0);
    assert_int_equal(sum.n_crl, 1);
    assert_int_equal(sum.n_revoked, 1);
    assert_true(sum.next_update > (long long)time(NULL) + 86400LL * 365 * 9);

    /* gen-certs' CRL revokes exactly revoked.crt. */
    X509 *revoked = load_cert(cert_file("revoked.crt"));
    FILE *f = fopen(cert_file("crl.pem"), "r");
    X509_CRL *crl = PEM_read_X509_CRL(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(crl);
    X509_REVOKED *entry = NULL;
    assert_int_equal(X509_CRL_get0_by_cert(crl, &entry, revoked), 1);
    X509_CRL_free(crl);
    X509_free(revoked);
}

static void test_check_files_errors(void **state)
{
    auth_tls_paths p = paths_with(NULL);
    p.key = cert_file("admin.key");
    expect_check_fails(&p, "private key does not belong to the certificate");
    p = paths_with(NULL);
    p.ca = cert_file("admin.key");
    expect_check_fails(&p, "holds no certificate");
    p = paths_with(NULL);
    p.cert = tmp_path("nonexistent.crt");
    expect_check_fails(&p, "nonexistent.crt");

    /* CRLs: another CA's, a forged one, an expired one, one from the future, garbage. */
    make_crl(tmp_path("other.crl"), cert_file("untrusted-ca.crt"), cert_file("untrusted-ca.key"),
             -60, 3600, NULL);
    p = paths_with(tmp_path("other.crl"));
    expect_check_fails(&p, "is not issued by a certificate of the CA file");
    make_crl(tmp_path("forged.crl"), cert_file("ca.crt"), cert_file("untrusted-ca.key"), -60, 3600,
             NULL);
    p = paths_with(tmp_path("forged.crl"));
    expect_check_fails(&p, "signature does not verify");
    make_crl(tmp_path("expired.crl"), cert_file("ca.crt"), cert_file("ca.key"), -7200, -60, NULL);
    p = paths_with(tmp_path("expired.crl"));
    expect_check_fails(&p, "expired at");
    make_crl(tmp_path("future.crl"), cert_file("ca.crt"), cert_file("ca.key"), 3600, 7200, NULL);
    p = paths_with(tmp_path("future.crl"));
    expect_check_fails(&p, "is not valid yet");
    write_text(tmp_path("garbage.crl"),
               "-----BEGIN X509 CRL-----\nnot base64\n-----END X509 CRL-----\n");
    p = paths_with(tmp_path("garbage.crl"));
    expect_check_fails(&p, "does not parse");
    /* A file that is PEM, but holds no CRL. */
    p = paths_with(cert_file("admin.crt"));
    expect_check_fails(&p, "holds no X509 CRL block");
}

/* The server's own certificate: a client refuses one outside its dates or whose
 * extendedKeyUsage lacks serverAuth, so the server refuses to start (or reload) with it. */
static void server_cert_case(const char *name, long nb, long na, const char *eku, const char *want)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/certs", g_dir);
    if (certfix_make_leaf(dir, name, cert_file("ca.crt"), cert_file("ca.key"), nb, na, eku) < 0)
        fail_msg("cannot make %s", name);
    char crt[64], key[64];
    snprintf(crt, sizeof(crt), "%s.crt", name);
    snprintf(key, sizeof(key), "%s.key", name);
    auth_tls_paths p = paths_with(NULL);
    p.cert = cert_file(crt);
    p.key = cert_file(key);
    if (!want) {
        jw_error err = JW_ERROR_INIT;
        if (auth_tls_check_files(&p, NULL, &err) != 0)
            fail_msg("%s refused: %s", name, err.msg);
        return;
    }
    expect_check_fails(&p, want);
    expect_check_fails(&p, crt); /* the message names the file */
}

static void test_server_cert_dates_usage(void **state)
{
    (void)state;
    const long day = 86400;
    server_cert_case("srv-ok", -day, day, "serverAuth", NULL);
    server_cert_case("srv-both", -day, day, "serverAuth,clientAuth", NULL);
    /* No extendedKeyUsage at all is unrestricted (RFC 5280): accepted. */
    server_cert_case("srv-noeku", -day, day, NULL, NULL);
    server_cert_case("srv-client", -day, day, "clientAuth", "extendedKeyUsage without serverAuth");
    server_cert_case("srv-expired", -2 * day, -day, "serverAuth", "has expired: notAfter 20");
    server_cert_case("srv-notyet", day, 2 * day, "serverAuth", "is not valid yet: notBefore 20");

    /* gen-certs' expired client certificate (notAfter 2021-01-01) names its exact date. */
    auth_tls_paths p = paths_with(NULL);
    p.cert = cert_file("expired.crt");
    p.key = cert_file("expired.key");
    expect_check_fails(&p, "has expired: notAfter 2021-01-01T00:00:00Z");

    /* A reload to such a certificate fails and leaves the generation in force. */
    auth_tls_stage *st = NULL;
    jw_error err = JW_ERROR_INIT;
    const char *sdir = tmp_path("stage-srvcert");
    p = paths_with(NULL);
    copy_file(cert_file("server.crt"), tmp_path("srv-live.crt"));
    copy_file(cert_file("server.key"), tmp_path("srv-live.key"));
    p.cert = tmp_path("srv-live.crt");
    p.key = tmp_path("srv-live.key");
    if (auth_tls_stage_new(sdir, &p, &st, &err) != 0)
        fail_msg("stage: %s", err.msg);
    copy_file(cert_file("srv-expired.crt"), tmp_path("srv-live.crt"));
    copy_file(cert_file("srv-expired.key"), tmp_path("srv-live.key"));
    auth_tls_summary sum;
    assert_true(auth_tls_stage_reload(st, &sum, &err) < 0);
    assert_non_null(strstr(err.msg, "has expired"));
    auth_tls_stage_summary(st, &sum);
    assert_int_equal(sum.generation, 1);
    auth_tls_stage_free(st);
}

static void test_crl_directory(void **state)
{
    const char *dir = tmp_path("crldir");
    mkdir(dir, 0700);
    char a[PATH_MAX], b[PATH_MAX];
    snprintf(a, sizeof(a), "%s/revoked.pem", dir);
    copy_file(cert_file("crl.pem"), a);
    /* The c_rehash layout: a hash link to the same CRL, a CA certificate, a hidden file. */
    snprintf(b, sizeof(b), "%s/0badc0de.r0", dir);
    assert_int_equal(symlink("revoked.pem", b), 0);
    snprintf(b, sizeof(b), "%s/ca.pem", dir);
    copy_file(cert_file("ca.crt"), b);
    snprintf(b, sizeof(b), "%s/.swp", dir);
    write_text(b, "editor junk");
    /* A second CRL of the same CA (another revoked certificate). */
    snprintf(b, sizeof(b), "%s/viewer.pem", dir);
    make_crl(b, cert_file("ca.crt"), cert_file("ca.key"), -60, 3600, cert_file("viewer.crt"));

    jw_error err = JW_ERROR_INIT;
    auth_tls_summary sum;
    auth_tls_paths p = paths_with(dir);
    if (auth_tls_check_files(&p, &sum, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(sum.n_crl, 2); /* the link counts once */
    assert_int_equal(sum.n_revoked, 2);

    /* A file without a CRL is an error: it may be a CRL cut short. */
    snprintf(b, sizeof(b), "%s/empty.pem", dir);
    write_text(b, "");
    expect_check_fails(&p, "empty.pem");
    unlink(b);
    snprintf(b, sizeof(b), "%s/README", dir);
    write_text(b, "CRLs live here\n");
    expect_check_fails(&p, "README' in the CRL directory holds no X509 CRL");
    unlink(b);

    /* An empty directory is allowed (nothing revoked yet). */
    const char *empty = tmp_path("crldir-empty");
    mkdir(empty, 0700);
    p = paths_with(empty);
    assert_int_equal(auth_tls_check_files(&p, &sum, &err), 0);
    assert_int_equal(sum.n_crl, 0);
}

/* ---- the stage ---- */

static void expect_link(const char *dir, const char *want)
{
    char link[PATH_MAX], target[64];
    snprintf(link, sizeof(link), "%s/current", dir);
    ssize_t n = readlink(link, target, sizeof(target) - 1);
    assert_true(n > 0);
    target[n] = '\0';
    assert_string_equal(target, want);
}

static bool exists_in(const char *dir, const char *name)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    struct stat st;
    return lstat(p, &st) == 0;
}

static bool same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

static void test_stage_layout(void **state)
{
    const char *dir = tmp_path("stage1");
    auth_tls_paths p = paths_with(cert_file("crl.pem"));
    auth_tls_stage *s = NULL;
    jw_error err = JW_ERROR_INIT;
    if (auth_tls_stage_new(dir, &p, &s, &err) != 0)
        fail_msg("%s", err.msg);
    expect_link(dir, "g1");
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);

    /* identity: the key, then the certificate chain, one file, 0600. */
    const char *identity = auth_tls_stage_identity_file(s);
    assert_true(identity[0] == '/');
    assert_int_equal(stat(identity, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    _cleanup_free_ char *id = slurp(identity);
    _cleanup_free_ char *key = slurp(cert_file("server.key"));
    _cleanup_free_ char *crt = slurp(cert_file("server.crt"));
    assert_memory_equal(id, key, strlen(key));
    assert_non_null(strstr(id, crt));
    /* OpenSSL reads both out of it, each skipping the other's block. */
    assert_int_equal(auth_check_key_pair(id, id, &err), 0);

    /* ca: the generation line, then the bundle. */
    _cleanup_free_ char *ca = slurp(auth_tls_stage_ca_file(s));
    _cleanup_free_ char *ca_src = slurp(cert_file("ca.crt"));
    assert_true(strncmp(ca, "# jobworker TLS configuration, generation 1\n", 44) == 0);
    assert_string_equal(ca + 44, ca_src);

    /* crl: named by the issuer's hash as OpenSSL's hashed-directory lookup wants. */
    X509 *cacert = load_cert(cert_file("ca.crt"));
    char name[64];
    snprintf(name, sizeof(name), "crl/%08lx.r0", X509_subject_name_hash(cacert));
    X509_free(cacert);
    char crlpath[PATH_MAX];
    snprintf(crlpath, sizeof(crlpath), "%s/current/%s", dir, name);
    FILE *f = fopen(crlpath, "r");
    assert_non_null(f);
    X509_CRL *crl = PEM_read_X509_CRL(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(crl);
    X509_CRL_free(crl);
    /* What gRPC reads is the current generation's, held open. */
    char want_dir[PATH_MAX + 16];
    snprintf(want_dir, sizeof(want_dir), "%s/current/crl", dir);
    assert_non_null(auth_tls_stage_crl_dir(s));
    assert_true(same_file(auth_tls_stage_crl_dir(s), want_dir));
    snprintf(want_dir, sizeof(want_dir), "%s/current/identity.pem", dir);
    assert_true(same_file(identity, want_dir));
    assert_int_equal(auth_tls_stage_check(s), 0);
    auth_tls_summary sum;
    auth_tls_stage_summary(s, &sum);
    assert_int_equal(sum.generation, 1);
    assert_int_equal(sum.n_revoked, 1);

    auth_tls_stage_free(s);
    assert_int_equal(access(dir, F_OK), -1);

    /* Without a CRL there is no CRL directory. */
    p = paths_with(NULL);
    assert_int_equal(auth_tls_stage_new(dir, &p, &s, &err), 0);
    assert_null(auth_tls_stage_crl_dir(s));
    assert_false(exists_in(dir, "g1/crl"));
    auth_tls_stage_free(s);
}

static void test_stage_reload(void **state)
{
    const char *dir = tmp_path("stage2");
    const char *crl = tmp_path("reload.crl");
    copy_file(cert_file("crl.pem"), crl);
    auth_tls_paths p = paths_with(crl);
    auth_tls_stage *s = NULL;
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(auth_tls_stage_new(dir, &p, &s, &err), 0);

    /* A new CRL revoking one more: generation 2, the previous one kept. */
    make_crl(crl, cert_file("ca.crt"), cert_file("ca.key"), -60, 3600, cert_file("viewer.crt"));
    auth_tls_summary sum;
    if (auth_tls_stage_reload(s, &sum, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(sum.generation, 2);
    expect_link(dir, "g2");
    assert_true(exists_in(dir, "g1"));
    _cleanup_free_ char *ca = slurp(auth_tls_stage_ca_file(s));
    assert_non_null(strstr(ca, "generation 2\n"));
    /* gRPC's names for the files did not change; what they lead to did. */
    char cur[PATH_MAX + 32];
    snprintf(cur, sizeof(cur), "%s/current/ca.pem", dir);
    assert_true(same_file(auth_tls_stage_ca_file(s), cur));
    assert_int_equal(auth_tls_stage_check(s), 0);

    /* Generation 3: generation 1 goes. */
    assert_int_equal(auth_tls_stage_reload(s, &sum, &err), 0);
    expect_link(dir, "g3");
    assert_true(exists_in(dir, "g2"));
    assert_false(exists_in(dir, "g1"));

    /* A broken CRL: nothing changes, and the error names the file. */
    write_text(crl, "-----BEGIN X509 CRL-----\nMIIB\n");
    sum.generation = 99;
    assert_true(auth_tls_stage_reload(s, &sum, &err) < 0);
    assert_non_null(strstr(err.msg, "reload.crl"));
    assert_int_equal(sum.generation, 99);
    expect_link(dir, "g3");
    assert_false(exists_in(dir, "g4"));
    auth_tls_stage_summary(s, &sum);
    assert_int_equal(sum.generation, 3);

    /* Fixed again (a CRL that revokes nothing): generation 4. */
    make_crl(crl, cert_file("ca.crt"), cert_file("ca.key"), -60, 3600, NULL);
    assert_int_equal(auth_tls_stage_reload(s, &sum, &err), 0);
    assert_int_equal(sum.generation, 4);
    assert_int_equal(sum.n_revoked, 0);
    expect_link(dir, "g4");

    auth_tls_stage_free(s);
    assert_int_equal(access(dir, F_OK), -1);
}

static void test_stage_mismatched_key_reload(void **state)
{
    /* Reload reads the same paths again: break the key file in place. */
    const char *key = tmp_path("mm.key");
    copy_file(cert_file("server.key"), key);
    auth_tls_paths p = paths_with(NULL);
    p.key = key;
    auth_tls_stage *s = NULL;
    jw_error err = JW_ERROR_INIT;
    const char *dir = tmp_path("stage3");
    assert_int_equal(auth_tls_stage_new(dir, &p, &s, &err), 0);
    copy_file(cert_file("admin.key"), key);
    assert_true(auth_tls_stage_reload(s, NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "private key does not belong"));
    expect_link(dir, "g1");
    _cleanup_free_ char *id = slurp(auth_tls_stage_identity_file(s));
    _cleanup_free_ char *good = slurp(cert_file("server.key"));
    assert_memory_equal(id, good, strlen(good));
    auth_tls_stage_free(s);
}

static void test_stage_leftovers(void **state)
{
    /* What a killed server left: generations, the link, and a file that is not ours. */
    const char *dir = tmp_path("stage4");
    char p1[PATH_MAX];
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(p1, sizeof(p1), "%s/g7", dir);
    assert_int_equal(mkdir(p1, 0700), 0);
    snprintf(p1, sizeof(p1), "%s/g7/identity.pem", dir);
    write_text(p1, "old key");
    snprintf(p1, sizeof(p1), "%s/current", dir);
    assert_int_equal(symlink("g7", p1), 0);
    snprintf(p1, sizeof(p1), "%s/keep", dir);
    write_text(p1, "not ours");

    auth_tls_paths p = paths_with(NULL);
    auth_tls_stage *s = NULL;
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(auth_tls_stage_new(dir, &p, &s, &err), 0);
    assert_false(exists_in(dir, "g7"));
    assert_true(exists_in(dir, "keep"));
    expect_link(dir, "g1");
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700); /* tightened */
    auth_tls_stage_free(s);
    /* The foreign file keeps the directory. */
    assert_true(exists_in(dir, "keep"));
    assert_false(exists_in(dir, "g1"));
    assert_false(exists_in(dir, "current"));
}

/* The data directory deleted under a running server: gRPC's reads still succeed (before, they
 * failed and gRPC 1.51 logged eight lines a second), the check says the files are gone, a reload
 * needs the data directory back, and once it is the stage is rebuilt there. */
static void test_stage_dir_deleted(void **state)
{
    const char *data = tmp_path("deleted-data");
    char dir[PATH_MAX + 8];
    snprintf(dir, sizeof(dir), "%s/tls", data);
    assert_int_equal(mkdir(data, 0700), 0);
    auth_tls_paths p = paths_with(cert_file("crl.pem"));
    auth_tls_stage *s = NULL;
    jw_error err = JW_ERROR_INIT;
    if (auth_tls_stage_new(dir, &p, &s, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(auth_tls_stage_check(s), 0);
    _cleanup_free_ char *key = slurp(cert_file("server.key"));

    certfix_rm_rf(data);
    assert_int_equal(auth_tls_stage_check(s), -ENOENT);
    {
        _cleanup_free_ char *id = slurp(auth_tls_stage_identity_file(s));
        assert_memory_equal(id, key, strlen(key));
        _cleanup_free_ char *ca = slurp(auth_tls_stage_ca_file(s));
        assert_non_null(strstr(ca, "generation 1\n"));
    }

    /* Nowhere to stage: refused with the fix, and gRPC still reads generation 1. */
    auth_tls_summary sum = {.generation = 99};
    assert_true(auth_tls_stage_reload(s, &sum, &err) < 0);
    assert_int_equal(err.code, JW_FAILED_PRECONDITION);
    if (!strstr(err.msg, "is gone") || !strstr(err.msg, "send SIGHUP again"))
        fail_msg("unexpected error: %s", err.msg);
    assert_int_equal(sum.generation, 99);
    {
        _cleanup_free_ char *ca = slurp(auth_tls_stage_ca_file(s));
        assert_non_null(strstr(ca, "generation 1\n"));
    }

    /* Back, but writable by everyone: no copy of the key goes there. */
    assert_int_equal(mkdir(data, 0700), 0);
    assert_int_equal(chmod(data, 0777), 0);
    assert_true(auth_tls_stage_reload(s, NULL, &err) < 0);
    if (!strstr(err.msg, "writable by everyone"))
        fail_msg("unexpected error: %s", err.msg);
    assert_false(exists_in(data, "tls"));

    /* Safe again: staged there, generation 2, and what gRPC reads is the new one. */
    assert_int_equal(chmod(data, 0711), 0);
    if (auth_tls_stage_reload(s, &sum, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(sum.generation, 2);
    expect_link(dir, "g2");
    assert_int_equal(auth_tls_stage_check(s), 0);
    {
        _cleanup_free_ char *ca = slurp(auth_tls_stage_ca_file(s));
        assert_non_null(strstr(ca, "generation 2\n"));
    }
    char crl[PATH_MAX + 32];
    snprintf(crl, sizeof(crl), "%s/current/crl", dir);
    assert_true(same_file(auth_tls_stage_crl_dir(s), crl));

    /* Moved away and back: gone, then in place again without a reload. */
    char away[PATH_MAX + 8];
    snprintf(away, sizeof(away), "%s/tls.away", data);
    assert_int_equal(rename(dir, away), 0);
    assert_int_equal(auth_tls_stage_check(s), -ENOENT);
    assert_int_equal(rename(away, dir), 0);
    assert_int_equal(auth_tls_stage_check(s), 0);

    /* Replaced by a look-alike: not ours. */
    char other[PATH_MAX + 32];
    snprintf(other, sizeof(other), "%s/g2/identity.pem", dir);
    char saved[PATH_MAX + 32];
    snprintf(saved, sizeof(saved), "%s/g2/identity.saved", dir);
    assert_int_equal(rename(other, saved), 0);
    write_text(other, key);
    assert_int_equal(auth_tls_stage_check(s), -ESTALE);
    assert_int_equal(rename(saved, other), 0);
    assert_int_equal(auth_tls_stage_check(s), 0);

    auth_tls_stage_free(s);
    assert_false(exists_in(data, "tls"));
    assert_true(exists_in(data, "."));
}

/* ---- client certificate usage ---- */

static char *cert_without_eku(size_t *len)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    assert_non_null(key);
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "OU", MBSTRING_ASC, (const unsigned char *)"admin", -1, -1, 0);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"nick", -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ku =
        X509V3_EXT_conf_nid(NULL, &ctx, NID_key_usage, "critical,digitalSignature");
    X509_add_ext(x, ku, -1);
    X509_EXTENSION_free(ku);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    char *data;
    long l = BIO_get_mem_data(b, &data);
    char *pem = malloc((size_t)l + 1);
    memcpy(pem, data, (size_t)l);
    pem[l] = '\0';
    *len = (size_t)l;
    BIO_free(b);
    X509_free(x);
    EVP_PKEY_free(key);
    return pem;
}

static void test_client_usage(void **state)
{
    jw_error err = JW_ERROR_INIT;
    _cleanup_free_ char *admin = slurp(cert_file("admin.crt"));
    assert_int_equal(auth_check_client_usage(admin, strlen(admin), &err), 0);
    _cleanup_free_ char *chain = slurp(cert_file("issuerou-chain.crt"));
    assert_int_equal(auth_check_client_usage(chain, strlen(chain), &err), 0);

    _cleanup_free_ char *server = slurp(cert_file("serveronly.crt"));
    assert_int_equal(auth_check_client_usage(server, strlen(server), &err), -EACCES);
    assert_int_equal(err.code, JW_UNAUTHENTICATED);
    assert_non_null(strstr(err.msg, "does not list clientAuth"));

    size_t len;
    _cleanup_free_ char *noeku = cert_without_eku(&len);
    assert_int_equal(auth_check_client_usage(noeku, len, &err), -EACCES);
    assert_non_null(strstr(err.msg, "no extendedKeyUsage extension"));

    assert_int_equal(auth_check_client_usage("garbage", 7, &err), -EINVAL);
    assert_int_equal(auth_check_client_usage(NULL, 0, &err), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_files_ok),  cmocka_unit_test(test_check_files_errors),
        cmocka_unit_test(test_crl_directory),   cmocka_unit_test(test_stage_layout),
        cmocka_unit_test(test_stage_reload),    cmocka_unit_test(test_stage_mismatched_key_reload),
        cmocka_unit_test(test_stage_leftovers), cmocka_unit_test(test_stage_dir_deleted),
        cmocka_unit_test(test_client_usage),    cmocka_unit_test(test_server_cert_dates_usage),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
