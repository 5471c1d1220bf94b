/* Unit tests of internal/auth: identity from certificates, the role table, PEM files, key pairs
 * and the TLS 1.3-only OpenSSL configuration.
 *
 * The group setup runs scripts/gen-certs.sh into a fresh temporary directory, so the fixtures
 * the integration tier relies on are checked here too. The repository root is $JW_REPO_ROOT,
 * else the nearest ancestor of this binary that holds scripts/gen-certs.sh, else the cwd.
 * The TLS test runs last: auth_tls13_only_init() changes OpenSSL's state for the whole process.
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
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_root[PATH_MAX];
static char g_dir[PATH_MAX];
static EVP_PKEY *g_key; /* signs the certificates made in memory */

/* ---- fixtures ---- */

static int group_teardown(void **state)
{
    EVP_PKEY_free(g_key);
    g_key = NULL;
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
    snprintf(g_dir, sizeof(g_dir), "%s/jw-test-auth-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) {
        char ebuf[128];
        fprintf(stderr, "mkdtemp %s: %s\n", g_dir, jw_strerror(errno, ebuf, sizeof(ebuf)));
        g_dir[0] = '\0';
        return -1;
    }
    g_key = EVP_EC_gen("P-256");
    if (!g_key || certfix_gen_certs(g_root, g_dir) < 0) {
        /* cmocka skips the group teardown when the setup fails. */
        group_teardown(state);
        return -1;
    }
    return 0;
}

static void fixture_path(char *buf, size_t size, const char *name)
{
    int n = snprintf(buf, size, "%s/%s", g_dir, name);
    assert_true(n > 0 && (size_t)n < size);
}

/* Reads fixture `name` through the API under test. */
static char *read_fixture(const char *name)
{
    char path[PATH_MAX];
    fixture_path(path, sizeof(path), name);
    char *pem = NULL;
    jw_error err = JW_ERROR_INIT;
    int r = auth_read_pem_file(path, &pem, &err);
    if (r < 0)
        fail_msg("auth_read_pem_file(%s): %d %s", path, r, err.msg);
    return pem;
}

static auth_identity identity_of_pem(const char *pem, size_t len)
{
    auth_identity id;
    memset(&id, 0x55, sizeof(id));
    jw_error err = JW_ERROR_INIT;
    int r = auth_identity_from_pem(pem, len, &id, &err);
    if (r != 0)
        fail_msg("auth_identity_from_pem: %d %s", r, err.msg);
    assert_true(memchr(id.cn, '\0', sizeof(id.cn)) != NULL);
    assert_true(memchr(id.why, '\0', sizeof(id.why)) != NULL);
    if (id.role != AUTH_ROLE_NONE)
        assert_string_equal(id.why, "");
    return id;
}

static auth_identity identity_of(const char *name)
{
    _cleanup_free_ char *pem = read_fixture(name);
    return identity_of_pem(pem, strlen(pem));
}

static X509 *load_x509(const char *name)
{
    _cleanup_free_ char *pem = read_fixture(name);
    BIO *bio = BIO_new_mem_buf(pem, -1);
    assert_non_null(bio);
    X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    assert_non_null(x);
    return x;
}

/* ---- certificates made in memory, for subjects the openssl command cannot express ---- */

typedef struct {
    int nid;
    int type; /* V_ASN1_UTF8STRING etc.: the bytes are stored as they are */
    const char *value;
    int len; /* -1: strlen(value) */
    int set; /* 0: a new RDN; -1: join the previous RDN (a multi-valued RDN) */
} name_entry;

static void add_entries(X509_NAME *name, const name_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        assert_int_equal(X509_NAME_add_entry_by_NID(name, e[i].nid, e[i].type,
                                                    (const unsigned char *)e[i].value, e[i].len, -1,
                                                    e[i].set),
                         1);
}

/* A PEM certificate with the given subject (and issuer; the subject when issuer is NULL), signed
 * by g_key. Caller frees. */
static char *make_cert_pem(const name_entry *subject, size_t nsubject, const name_entry *issuer,
                           size_t nissuer, size_t *ret_len)
{
    X509 *x = X509_new();
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 1), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
    add_entries(X509_get_subject_name(x), subject, nsubject);
    if (issuer)
        add_entries(X509_get_issuer_name(x), issuer, nissuer);
    else
        assert_int_equal(X509_set_issuer_name(x, X509_get_subject_name(x)), 1);
    assert_int_equal(X509_set_pubkey(x, g_key), 1);
    assert_true(X509_sign(x, g_key, EVP_sha256()) > 0);

    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_X509(bio, x), 1);
    char *data;
    long len = BIO_get_mem_data(bio, &data);
    assert_true(len > 0);
    char *pem = malloc((size_t)len + 1);
    assert_non_null(pem);
    memcpy(pem, data, (size_t)len);
    pem[len] = '\0';
    BIO_free(bio);
    X509_free(x);
    if (ret_len)
        *ret_len = (size_t)len;
    return pem;
}

static auth_identity identity_of_subject(const name_entry *subject, size_t n)
{
    size_t len;
    _cleanup_free_ char *pem = make_cert_pem(subject, n, NULL, 0, &len);
    return identity_of_pem(pem, len);
}

#define UTF8(nid_, s_)                                                                             \
    {                                                                                              \
        (nid_), V_ASN1_UTF8STRING, (s_), -1, 0                                                     \
    }
#define UTF8N(nid_, s_, n_)                                                                        \
    {                                                                                              \
        (nid_), V_ASN1_UTF8STRING, (s_), (n_), 0                                                   \
    }
#define OU(s_) UTF8(NID_organizationalUnitName, s_)
#define CN(s_) UTF8(NID_commonName, s_)
#define ID_OF(...)                                                                                 \
    identity_of_subject((const name_entry[]){__VA_ARGS__},                                         \
                        sizeof((const name_entry[]){__VA_ARGS__}) / sizeof(name_entry))

/* ---- the fixtures gen-certs.sh makes ---- */

static const char *const fixture_sets[] = {
    "ca",   "server", "admin",  "viewer",  "untrusted-ca", "untrusted",  "expired",     "notyet",
    "noou", "twoou",  "caseou", "spaceou", "serveronly",   "selfsigned", "issuerou-ca", "issuerou",
};

static void test_fixture_files_and_modes(void **state)
{
    for (size_t i = 0; i < ARRAY_SIZE(fixture_sets); i++) {
        char crt[PATH_MAX], key[PATH_MAX], name[64];
        snprintf(name, sizeof(name), "%s.crt", fixture_sets[i]);
        fixture_path(crt, sizeof(crt), name);
        snprintf(name, sizeof(name), "%s.key", fixture_sets[i]);
        fixture_path(key, sizeof(key), name);
        struct stat st;
        assert_int_equal(stat(key, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_int_equal(stat(crt, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0644);

        /* Every certificate comes with its own key. */
        _cleanup_free_ char *cert_pem = NULL;
        _cleanup_free_ char *key_pem = NULL;
        jw_error err = JW_ERROR_INIT;
        assert_int_equal(auth_read_pem_file(crt, &cert_pem, &err), 0);
        assert_int_equal(auth_read_pem_file(key, &key_pem, &err), 0);
        if (auth_check_key_pair(cert_pem, key_pem, &err) != 0)
            fail_msg("%s: %s", fixture_sets[i], err.msg);
    }
    /* The chain file is the leaf followed by its intermediate. */
    _cleanup_free_ char *chain = read_fixture("issuerou-chain.crt");
    _cleanup_free_ char *leaf = read_fixture("issuerou.crt");
    _cleanup_free_ char *mid = read_fixture("issuerou-ca.crt");
    assert_int_equal(strlen(chain), strlen(leaf) + strlen(mid));
    assert_memory_equal(chain, leaf, strlen(leaf));
}

/* Verifies fixture `name` (plus an untrusted intermediate) against ca.crt for `purpose`. */
static int verify_fixture(const char *name, const char *intermediate, int purpose)
{
    X509 *ca = load_x509("ca.crt");
    X509 *leaf = load_x509(name);
    X509 *mid = intermediate ? load_x509(intermediate) : NULL;
    STACK_OF(X509) *chain = sk_X509_new_null();
    if (mid)
        sk_X509_push(chain, mid);
    X509_STORE *store = X509_STORE_new();
    X509_STORE_add_cert(store, ca);
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, chain), 1);
    assert_int_equal(X509_STORE_CTX_set_purpose(ctx, purpose), 1);
    int ok = X509_verify_cert(ctx);
    int verr = X509_STORE_CTX_get_error(ctx);
    assert_true(ok == 1 ? verr == X509_V_OK : verr != X509_V_OK);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    sk_X509_pop_free(chain, X509_free);
    X509_free(leaf);
    X509_free(ca);
    ERR_clear_error();
    return verr;
}

static void test_fixture_chain_properties(void **state)
{
    static const char *const good[] = {"admin", "viewer", "noou", "twoou", "caseou", "spaceou"};
    for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
        char name[64];
        snprintf(name, sizeof(name), "%s.crt", good[i]);
        assert_int_equal(verify_fixture(name, NULL, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
    }
    assert_int_equal(verify_fixture("issuerou.crt", "issuerou-ca.crt", X509_PURPOSE_SSL_CLIENT),
                     X509_V_OK);
    assert_int_equal(verify_fixture("server.crt", NULL, X509_PURPOSE_SSL_SERVER), X509_V_OK);
    assert_int_equal(verify_fixture("expired.crt", NULL, X509_PURPOSE_SSL_CLIENT),
                     X509_V_ERR_CERT_HAS_EXPIRED);
    assert_int_equal(verify_fixture("notyet.crt", NULL, X509_PURPOSE_SSL_CLIENT),
                     X509_V_ERR_CERT_NOT_YET_VALID);
    assert_int_equal(verify_fixture("untrusted.crt", NULL, X509_PURPOSE_SSL_CLIENT),
                     X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
    assert_int_equal(verify_fixture("selfsigned.crt", NULL, X509_PURPOSE_SSL_CLIENT),
                     X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT);
    assert_int_equal(verify_fixture("serveronly.crt", NULL, X509_PURPOSE_SSL_CLIENT),
                     X509_V_ERR_INVALID_PURPOSE);
    /* A client certificate is no server certificate either. */
    assert_int_equal(verify_fixture("admin.crt", NULL, X509_PURPOSE_SSL_SERVER),
                     X509_V_ERR_INVALID_PURPOSE);

    X509 *server = load_x509("server.crt");
    assert_int_equal(X509_check_host(server, "localhost", 0, 0, NULL), 1);
    assert_int_equal(X509_check_ip_asc(server, "127.0.0.1", 0), 1);
    X509_free(server);
    /* The issuerou leaf only makes sense if its issuer really carries OU=admin. */
    X509 *mid = load_x509("issuerou-ca.crt");
    assert_true(X509_NAME_get_index_by_NID(X509_get_subject_name(mid), NID_organizationalUnitName,
                                           -1) >= 0);
    X509_free(mid);
}

/* ---- identity ---- */

static void test_identity_admin(void **state)
{
    auth_identity id = identity_of("admin.crt");
    assert_int_equal(id.role, AUTH_ROLE_ADMIN);
    assert_string_equal(id.cn, "alice");
}

static void test_identity_viewer(void **state)
{
    auth_identity id = identity_of("viewer.crt");
    assert_int_equal(id.role, AUTH_ROLE_VIEWER);
    assert_string_equal(id.cn, "bob");
}

static void test_identity_no_ou(void **state)
{
    auth_identity id = identity_of("noou.crt");
    assert_int_equal(id.role, AUTH_ROLE_NONE);
    assert_string_equal(id.cn, "carol");
    assert_string_equal(id.why, "no OU");
}

static void test_identity_unknown_ou(void **state)
{
    auth_identity id = identity_of("caseou.crt");
    assert_int_equal(id.role, AUTH_ROLE_NONE);
    assert_string_equal(id.cn, "grace");
    assert_string_equal(id.why, "unknown OU 'Admin'");

    id = identity_of("spaceou.crt");
    assert_int_equal(id.role, AUTH_ROLE_NONE);
    assert_string_equal(id.why, "unknown OU ' admin'");

    id = ID_OF(CN("x"), OU("admin "));
    assert_int_equal(id.role, AUTH_ROLE_NONE);
    assert_string_equal(id.why, "unknown OU 'admin '");
    id = ID_OF(CN("x"), OU("ADMIN"));
    assert_int_equal(id.role, AUTH_ROLE_NONE);
    id = ID_OF(CN("x"), OU("Viewer"));
    assert_int_equal(id.role, AUTH_ROLE_NONE);
    id = ID_OF(CN("x"), OU("adminx"));
    assert_int_equal(id.role, AUTH_ROLE_NONE);
    id = ID_OF(CN("x"), OU("admi"));
    assert_int_equal(id.role, AUTH_ROLE_NONE);
    id = ID_OF(CN("x"), OU(""));
    assert_int_equal(id.role, AUTH_ROLE_NONE);
    assert_string_equal(id.why, "unknown OU ''");
    /* An embedded NUL must not end the comparison early. */
    id = ID_OF(CN("x"), UTF8N(NID_organizationalUnitName, "admin\0", 6));
    assert_int_equal(id.role, AUTH_ROLE_NONE);
    assert_string_equal(id.why, "unknown OU 'admin?'");
    /* A value that escapes is shown printable. */
    id = ID_OF(CN("x"), OU("ad\nmin"));
    assert_int_equal(id.role, AUTH_ROLE_NONE);
    assert_string_equal(id.why, "unknown OU 'ad?min'");
}

static void test_identity_ou_encodings(void **state)
{
    /* The decoded value counts, not the ASN.1 string type. */
    auth_identity id =
        ID_OF(CN("x"), {NID_organizationalUnitName, V_ASN1_PRINTABLESTRING, "viewer", -1, 0});
    assert_int_equal(id.role, AUTH_ROLE_VIEWER);
    id = ID_OF(CN("x"), {NID_organizationalUnitName, V_ASN1_BMPSTRING, "\0a\0d\0m\0i\0n", 10, 0});
    assert_int_equal(id.role, AUTH_ROLE_ADMIN);
    /* One OU in a multi-valued RDN is still exactly one OU. */
    id = ID_OF(CN("x"), {NID_organizationalUnitName, V_ASN1_UTF8STRING, "admin", -1, -1});
    assert_int_equal(id.role, AUTH_ROLE_ADMIN);
    assert_string_equal(id.cn, "x");
    /* No CN: the role still comes from the OU, the CN is empty. */
    id = ID_OF(OU("viewer"));
    assert_int_equal(id.role, AUTH_ROLE_VIEWER);
    assert_string_equal(id.cn, "");
}

static void test_identity_two_ous(void **state)
{
    auth_identity id = identity_of("twoou.crt");
    assert_int_equal(id.role, AUTH_ROLE_NONE);
    assert_string_equal(id.cn, "frank");
    assert_string_equal(id.why, "2 OUs ('admin', 'viewer'), want exactly one");

    /* Equal OUs are refused too (documented in auth.h). */
    id = ID_OF(CN("x"), OU("admin"), OU("admin"));
    assert_int_equal(id.role, AUTH_ROLE_NONE);
    assert_string_equal(id.why, "2 OUs ('admin', 'admin'), want exactly one");
    id = ID_OF(CN("x"), OU("viewer"), OU("viewer"), OU("viewer"));
    assert_int_equal(id.role, AUTH_ROLE_NONE);
    assert_string_equal(id.why, "3 OUs ('viewer', 'viewer', ...), want exactly one");
    /* Two OUs in one multi-valued RDN. */
    id = ID_OF(CN("x"), OU("admin"),
               {NID_organizationalUnitName, V_ASN1_UTF8STRING, "viewer", -1, -1});
    assert_int_equal(id.role, AUTH_ROLE_NONE);
}

static void test_identity_issuer_ou_ignored(void **state)
{
    auth_identity id = identity_of("issuerou.crt");
    assert_int_equal(id.role, AUTH_ROLE_NONE);
    assert_string_equal(id.cn, "judy");
    assert_string_equal(id.why, "no OU");

    /* As a client presents it: leaf first, then the intermediate with OU=admin. */
    id = identity_of("issuerou-chain.crt");
    assert_int_equal(id.role, AUTH_ROLE_NONE);
    assert_string_equal(id.cn, "judy");

    const name_entry subject[] = {CN("judy")};
    const name_entry issuer[] = {OU("admin"), CN("some CA")};
    size_t len;
    _cleanup_free_ char *pem = make_cert_pem(subject, 1, issuer, 2, &len);
    id = identity_of_pem(pem, len);
    assert_int_equal(id.role, AUTH_ROLE_NONE);
    assert_string_equal(id.why, "no OU");
}

static void test_identity_does_not_validate(void **state)
{
    /* Dates, trust and key usage are the TLS layer's job; identity only reads the subject. */
    static const char *const names[] = {"expired.crt", "notyet.crt", "untrusted.crt",
                                        "serveronly.crt", "selfsigned.crt"};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        assert_int_equal(identity_of(names[i]).role, AUTH_ROLE_ADMIN);
}

static void test_identity_cn_printable(void **state)
{
    auth_identity id = ID_OF(CN("evil\n\033[31mroot\r\t\x7f"), OU("admin"));
    assert_string_equal(id.cn, "evil??[31mroot???");
    assert_int_equal(id.role, AUTH_ROLE_ADMIN);

    id = ID_OF(CN("Jos\xc3\xa9 \xe2\x80\xae"
                  "evil \xf0\x9f\x98\x80!"),
               OU("admin"));
    assert_string_equal(id.cn, "Jos? ?evil ?!");

    id = ID_OF(UTF8N(NID_commonName, "a\0b", 3), OU("admin"));
    assert_string_equal(id.cn, "a?b");

    /* Latin-1 (T61String) is decoded to UTF-8 first, then replaced. */
    id = ID_OF({NID_commonName, V_ASN1_T61STRING, "Ren\xe9", -1, 0}, OU("viewer"));
    assert_string_equal(id.cn, "Ren?");
    assert_int_equal(id.role, AUTH_ROLE_VIEWER);

    /* Longer than AUTH_CN_MAX: cut to AUTH_CN_MAX-1 bytes. */
    char long_cn[400];
    memset(long_cn, 'a', sizeof(long_cn) - 1);
    long_cn[sizeof(long_cn) - 1] = '\0';
    id = ID_OF(CN(long_cn), OU("admin"));
    assert_int_equal(strlen(id.cn), AUTH_CN_MAX - 1);
    assert_int_equal(id.role, AUTH_ROLE_ADMIN);

    /* The first CN counts. */
    id = ID_OF(CN("first"), OU("admin"), CN("second"));
    assert_string_equal(id.cn, "first");
}

static void test_identity_undecodable(void **state)
{
    /* A name value that is no character string (a BIT STRING: OpenSSL parses it, but cannot turn
     * it into UTF-8) yields no role, whatever else the subject says. A UTF8String that is not
     * UTF-8 never gets this far: OpenSSL's own parser refuses the certificate. */
    auth_identity id = ID_OF({NID_commonName, V_ASN1_BIT_STRING, "\0alice", 6, 0}, OU("admin"));
    assert_int_equal(id.role, AUTH_ROLE_NONE);
    assert_string_equal(id.why, "CN cannot be decoded");
    assert_string_equal(id.cn, "");
    id = ID_OF(CN("x"), {NID_organizationalUnitName, V_ASN1_BIT_STRING, "\0admin", 6, 0});
    assert_int_equal(id.role, AUTH_ROLE_NONE);
    assert_string_equal(id.why, "OU cannot be decoded");
}

static void expect_not_a_certificate(const char *pem, size_t len)
{
    auth_identity id;
    memset(&id, 0x55, sizeof(id));
    auth_identity untouched = id;
    jw_error err = JW_ERROR_INIT;
    ERR_clear_error();
    assert_int_equal(auth_identity_from_pem(pem, len, &id, &err), -EINVAL);
    assert_int_equal(err.code, JW_UNAUTHENTICATED);
    assert_true(strstr(err.msg, "peer certificate") != NULL);
    assert_memory_equal(&id, &untouched, sizeof(id));
    /* No OpenSSL error may be left on this thread for gRPC's TLS code to trip over. */
    assert_int_equal(ERR_peek_error(), 0);
    /* err may be NULL. */
    assert_int_equal(auth_identity_from_pem(pem, len, &id, NULL), -EINVAL);
}

static void test_identity_not_a_certificate(void **state)
{
    expect_not_a_certificate("hello", 5);
    expect_not_a_certificate("", 0);
    expect_not_a_certificate(NULL, 0);
    static const char bad_b64[] = "-----BEGIN CERTIFICATE-----\n!!!notbase64!!!\n"
                                  "-----END CERTIFICATE-----\n";
    expect_not_a_certificate(bad_b64, strlen(bad_b64));

    _cleanup_free_ char *key = read_fixture("admin.key");
    expect_not_a_certificate(key, strlen(key));
    _cleanup_free_ char *cert = read_fixture("admin.crt");
    expect_not_a_certificate(cert, strlen(cert) / 2);
    expect_not_a_certificate(cert, 1);

    /* The length is checked before anything is read. */
    _cleanup_free_ char *huge = calloc(1, AUTH_PEM_MAX + 1);
    assert_non_null(huge);
    memcpy(huge, cert, strlen(cert));
    expect_not_a_certificate(huge, AUTH_PEM_MAX + 1);
}

static void test_identity_not_nul_terminated(void **state)
{
    _cleanup_free_ char *cert = read_fixture("viewer.crt");
    size_t len = strlen(cert);
    /* An exact-size copy: AddressSanitizer catches any read past len. */
    _cleanup_free_ char *exact = malloc(len);
    assert_non_null(exact);
    memcpy(exact, cert, len);
    auth_identity id = identity_of_pem(exact, len);
    assert_int_equal(id.role, AUTH_ROLE_VIEWER);
    assert_string_equal(id.cn, "bob");
}

/* ---- policy ---- */

static void test_role_table(void **state)
{
    static const auth_method methods[] = {AUTH_METHOD_CREATE_JOB, AUTH_METHOD_GET_JOB,
                                          AUTH_METHOD_STOP_JOB, AUTH_METHOD_GET_JOBS,
                                          AUTH_METHOD_GET_JOBS_STREAM};
    /* Rows: none, viewer, admin. Columns: the methods above, as in docs/api.md, "The contract". */
    static const bool want[3][5] = {
        {false, false, false, false, false},
        {false, true, false, true, true},
        {true, true, true, true, true},
    };
    static const auth_role roles[] = {AUTH_ROLE_NONE, AUTH_ROLE_VIEWER, AUTH_ROLE_ADMIN};
    for (size_t r = 0; r < ARRAY_SIZE(roles); r++)
        for (size_t m = 0; m < ARRAY_SIZE(methods); m++)
            if (auth_role_allows(roles[r], methods[m]) != want[r][m])
                fail_msg("role %s method %s: want %d", auth_role_name(roles[r]),
                         auth_method_name(methods[m]), want[r][m]);
    /* Values outside the enums are denied, for every role. */
    assert_false(auth_role_allows(AUTH_ROLE_ADMIN, (auth_method)99));
    assert_false(auth_role_allows(AUTH_ROLE_ADMIN, (auth_method)-1));
    assert_false(auth_role_allows((auth_role)3, AUTH_METHOD_GET_JOB));
    assert_false(auth_role_allows((auth_role)-1, AUTH_METHOD_GET_JOB));
}

static void test_names(void **state)
{
    assert_string_equal(auth_role_name(AUTH_ROLE_NONE), "none");
    assert_string_equal(auth_role_name(AUTH_ROLE_VIEWER), "viewer");
    assert_string_equal(auth_role_name(AUTH_ROLE_ADMIN), "admin");
    assert_string_equal(auth_role_name((auth_role)42), "invalid");
    assert_string_equal(auth_method_name(AUTH_METHOD_CREATE_JOB), "CreateJob");
    assert_string_equal(auth_method_name(AUTH_METHOD_GET_JOB), "GetJob");
    assert_string_equal(auth_method_name(AUTH_METHOD_STOP_JOB), "StopJob");
    assert_string_equal(auth_method_name(AUTH_METHOD_GET_JOBS), "GetJobs");
    assert_string_equal(auth_method_name(AUTH_METHOD_GET_JOBS_STREAM), "GetJobsStream");
    assert_string_equal(auth_method_name((auth_method)42), "invalid");
}

/* ---- PEM files ---- */

static void write_fixture(const char *name, const char *prefix, size_t size)
{
    char path[PATH_MAX];
    fixture_path(path, sizeof(path), name);
    _cleanup_free_ char *buf = malloc(size + 1);
    assert_non_null(buf);
    for (size_t i = 0; i < size; i++)
        buf[i] = i % 65 == 64 ? '\n' : 'A';
    size_t plen = strlen(prefix) < size ? strlen(prefix) : size;
    memcpy(buf, prefix, plen);
    FILE *f = fopen(path, "we");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, size, f), size);
    assert_int_equal(fclose(f), 0);
}

/* Expects auth_read_pem_file(path) to fail with `want`, name the path and leave *ret alone. */
static void expect_read_fails(const char *path, int want)
{
    char sentinel;
    char *pem = &sentinel;
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(auth_read_pem_file(path, &pem, &err), want);
    assert_ptr_equal(pem, &sentinel);
    if (!strstr(err.msg, path))
        fail_msg("message '%s' does not name '%s'", err.msg, path);
}

static void test_read_pem_file(void **state)
{
    _cleanup_free_ char *pem = read_fixture("ca.crt");
    assert_true(strncmp(pem, "-----BEGIN CERTIFICATE-----\n", 28) == 0);
    char path[PATH_MAX];
    fixture_path(path, sizeof(path), "ca.crt");
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(strlen(pem), (size_t)st.st_size);

    /* Exactly at the cap is fine. */
    write_fixture("max.pem", "-----BEGIN X-----\n", AUTH_PEM_MAX);
    _cleanup_free_ char *max = read_fixture("max.pem");
    assert_int_equal(strlen(max), AUTH_PEM_MAX);
}

static void test_read_pem_file_missing(void **state)
{
    char path[PATH_MAX];
    fixture_path(path, sizeof(path), "no-such-file.pem");
    expect_read_fails(path, -ENOENT);
    fixture_path(path, sizeof(path), "no-such-dir/ca.crt");
    expect_read_fails(path, -ENOENT);
}

static void test_read_pem_file_too_large(void **state)
{
    char path[PATH_MAX];
    write_fixture("big.pem", "-----BEGIN X-----\n", AUTH_PEM_MAX + 1);
    fixture_path(path, sizeof(path), "big.pem");
    expect_read_fails(path, -EFBIG);
    /* A file that does not say its size is cut off after the cap, not read to the end. */
    expect_read_fails("/dev/zero", -EFBIG);
}

static void test_read_pem_file_not_pem(void **state)
{
    char path[PATH_MAX];
    write_fixture("empty.pem", "", 0);
    fixture_path(path, sizeof(path), "empty.pem");
    expect_read_fails(path, -EINVAL);
    write_fixture("text.pem", "not a pem file\n", 15);
    fixture_path(path, sizeof(path), "text.pem");
    expect_read_fails(path, -EINVAL);
    expect_read_fails(g_dir, -EISDIR);
}

/* ---- key pairs ---- */

static void test_check_key_pair(void **state)
{
    _cleanup_free_ char *cert = read_fixture("admin.crt");
    _cleanup_free_ char *key = read_fixture("admin.key");
    _cleanup_free_ char *other = read_fixture("viewer.key");
    jw_error err = JW_ERROR_INIT;
    assert_int_equal(auth_check_key_pair(cert, key, &err), 0);

    ERR_clear_error();
    assert_int_equal(auth_check_key_pair(cert, other, &err), -EKEYREJECTED);
    assert_int_equal(err.code, JW_INVALID_ARGUMENT);
    assert_true(strstr(err.msg, "does not belong") != NULL);
    assert_int_equal(auth_check_key_pair(key, key, &err), -EINVAL);
    assert_true(strstr(err.msg, "certificate") != NULL);
    assert_int_equal(auth_check_key_pair(cert, cert, &err), -EINVAL);
    assert_true(strstr(err.msg, "key") != NULL);
    assert_int_equal(auth_check_key_pair(NULL, key, &err), -EINVAL);
    assert_int_equal(ERR_peek_error(), 0);

    /* An encrypted key is refused at once; OpenSSL's default would prompt on the terminal. */
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(bio, g_key, EVP_aes_128_cbc(),
                                              (unsigned char *)"secret", 6, NULL, NULL),
                     1);
    assert_int_equal(BIO_write(bio, "", 1), 1);
    char *enc;
    assert_true(BIO_get_mem_data(bio, &enc) > 0);
    assert_true(strstr(enc, "ENCRYPTED") != NULL);
    assert_int_equal(auth_check_key_pair(cert, enc, &err), -EINVAL);
    assert_true(strstr(err.msg, "unencrypted") != NULL);
    BIO_free(bio);
    ERR_clear_error();
}

/* ---- TLS 1.3 only ---- */

/* A server context set up the way gRPC 1.51 sets up its own: TLS_method, version bounds 1.2..1.3,
 * client certificate required and verified against ca.crt. */
static SSL_CTX *server_ctx(void)
{
    char crt[PATH_MAX], key[PATH_MAX], ca[PATH_MAX];
    fixture_path(crt, sizeof(crt), "server.crt");
    fixture_path(key, sizeof(key), "server.key");
    fixture_path(ca, sizeof(ca), "ca.crt");
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION), 1);
    assert_int_equal(SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION), 1);
    assert_int_equal(SSL_CTX_use_certificate_chain_file(ctx, crt), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM), 1);
    assert_int_equal(SSL_CTX_load_verify_locations(ctx, ca, NULL), 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    return ctx;
}

/* A client as another process would have it: the options this process's configuration set are
 * cleared, so it offers whatever max_version allows. */
static SSL_CTX *client_ctx(int max_version)
{
    char crt[PATH_MAX], key[PATH_MAX], ca[PATH_MAX];
    fixture_path(crt, sizeof(crt), "admin.crt");
    fixture_path(key, sizeof(key), "admin.key");
    fixture_path(ca, sizeof(ca), "ca.crt");
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    assert_non_null(ctx);
    SSL_CTX_clear_options(ctx, SSL_OP_NO_SSL_MASK);
    assert_int_equal(SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION), 1);
    assert_int_equal(SSL_CTX_set_max_proto_version(ctx, max_version), 1);
    assert_int_equal(SSL_CTX_use_certificate_chain_file(ctx, crt), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM), 1);
    assert_int_equal(SSL_CTX_load_verify_locations(ctx, ca, NULL), 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
}

static bool want_io(SSL *ssl, int r)
{
    int e = SSL_get_error(ssl, r);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

/* A full handshake between the two contexts over an in-memory BIO pair. Returns the negotiated
 * version, or 0 when either side failed; *ret_server_reason gets the server's error reason. */
static int handshake(SSL_CTX *sctx, SSL_CTX *cctx, int *ret_server_reason)
{
    SSL *server = SSL_new(sctx);
    SSL *client = SSL_new(cctx);
    assert_non_null(server);
    assert_non_null(client);
    BIO *sbio, *cbio;
    assert_int_equal(BIO_new_bio_pair(&sbio, 0, &cbio, 0), 1);
    SSL_set_bio(server, sbio, sbio);
    SSL_set_bio(client, cbio, cbio);
    SSL_set_accept_state(server);
    SSL_set_connect_state(client);

    bool sdone = false, cdone = false, failed = false;
    *ret_server_reason = 0;
    ERR_clear_error();
    for (int i = 0; i < 64 && !failed && !(sdone && cdone); i++) {
        if (!cdone) {
            int r = SSL_do_handshake(client);
            if (r == 1)
                cdone = true;
            else if (!want_io(client, r))
                failed = true;
            ERR_clear_error();
        }
        if (!sdone && !failed) {
            int r = SSL_do_handshake(server);
            if (r == 1) {
                sdone = true;
            } else if (!want_io(server, r)) {
                *ret_server_reason = ERR_GET_REASON(ERR_peek_error());
                failed = true;
            }
            ERR_clear_error();
        }
    }
    int version = !failed && sdone && cdone ? SSL_version(server) : 0;
    if (version)
        assert_int_equal(SSL_version(client), version);
    SSL_free(server);
    SSL_free(client);
    return version;
}

static void test_tls13_only(void **state)
{
    int reason;
    /* Control, before the configuration: a TLS 1.2 client gets TLS 1.2, so the check after it
     * can tell the difference. */
    SSL_CTX *sctx = server_ctx();
    SSL_CTX *c12 = client_ctx(TLS1_2_VERSION);
    assert_int_equal(handshake(sctx, c12, &reason), TLS1_2_VERSION);
    SSL_CTX_free(c12);
    SSL_CTX_free(sctx);

    jw_error err = JW_ERROR_INIT;
    ERR_clear_error();
    if (auth_tls13_only_init(&err) != 0)
        fail_msg("auth_tls13_only_init: %s", err.msg);
    assert_int_equal(ERR_peek_error(), 0);
    assert_int_equal(auth_tls13_only_init(&err), 0); /* again: harmless */

    /* Every new context has TLS 1.2 switched off, and gRPC's bounds do not switch it on. */
    sctx = server_ctx();
    uint64_t opts = SSL_CTX_get_options(sctx);
    assert_true(opts & SSL_OP_NO_TLSv1_2);
    assert_true(opts & SSL_OP_NO_TLSv1_1);
    assert_false(opts & SSL_OP_NO_TLSv1_3);

    /* The server refuses a client that offers at most TLS 1.2... */
    c12 = client_ctx(TLS1_2_VERSION);
    assert_int_equal(handshake(sctx, c12, &reason), 0);
    assert_int_equal(reason, SSL_R_UNSUPPORTED_PROTOCOL);
    SSL_CTX_free(c12);

    /* ...and speaks TLS 1.3 with one that offers 1.2 and 1.3. */
    SSL_CTX *c13 = client_ctx(TLS1_3_VERSION);
    assert_int_equal(handshake(sctx, c13, &reason), TLS1_3_VERSION);
    SSL_CTX_free(c13);
    SSL_CTX_free(sctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_files_and_modes),
        cmocka_unit_test(test_fixture_chain_properties),
        cmocka_unit_test(test_identity_admin),
        cmocka_unit_test(test_identity_viewer),
        cmocka_unit_test(test_identity_no_ou),
        cmocka_unit_test(test_identity_unknown_ou),
        cmocka_unit_test(test_identity_ou_encodings),
        cmocka_unit_test(test_identity_two_ous),
        cmocka_unit_test(test_identity_issuer_ou_ignored),
        cmocka_unit_test(test_identity_does_not_validate),
        cmocka_unit_test(test_identity_cn_printable),
        cmocka_unit_test(test_identity_undecodable),
        cmocka_unit_test(test_identity_not_a_certificate),
        cmocka_unit_test(test_identity_not_nul_terminated),
        cmocka_unit_test(test_role_table),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_read_pem_file),
        cmocka_unit_test(test_read_pem_file_missing),
        cmocka_unit_test(test_read_pem_file_too_large),
        cmocka_unit_test(test_read_pem_file_not_pem),
        cmocka_unit_test(test_check_key_pair),
        /* Last: it changes OpenSSL's configuration for the rest of the process. */
        cmocka_unit_test(test_tls13_only),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
