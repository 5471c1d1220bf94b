/* Certificate fixtures shared by the auth unit tests: find the repository (JW_REPO_ROOT, the
 * test binary's ancestors, or the cwd), run scripts/gen-certs.sh into a directory, remove it. */
#ifndef JW_TESTS_CERTFIX_H
#define JW_TESTS_CERTFIX_H

#include "util/error.h"
#include "util/rmtree.h"

#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static inline bool certfix_has_script(const char *root)
{
    char p[PATH_MAX];
    int n = snprintf(p, sizeof(p), "%s/scripts/gen-certs.sh", root);
    return n > 0 && (size_t)n < sizeof(p) && access(p, R_OK) == 0;
}

static inline void certfix_find_repo_root(char *root, size_t size)
{
    const char *env = getenv("JW_REPO_ROOT");
    if (env && certfix_has_script(env)) {
        snprintf(root, size, "%s", env);
        return;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        for (char *slash; (slash = strrchr(exe, '/')) && slash != exe;) {
            *slash = '\0';
            if (certfix_has_script(exe)) {
                snprintf(root, size, "%s", exe);
                return;
            }
        }
    }
    if (!getcwd(root, size))
        snprintf(root, size, ".");
}

/* Runs <root>/scripts/gen-certs.sh DIR with its chatter sent to /dev/null. */
static inline int certfix_gen_certs(const char *root, const char *dir)
{
    char script[PATH_MAX + 32];
    snprintf(script, sizeof(script), "%s/scripts/gen-certs.sh", root);
    char *argv[] = {"bash", script, (char *)dir, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int r = posix_spawnp(&pid, "bash", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (r != 0) {
        char ebuf[128];
        fprintf(stderr, "spawn bash %s: %s\n", script, jw_strerror(r, ebuf, sizeof(ebuf)));
        return -1;
    }
    int status;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s %s failed (status 0x%x)\n", script, dir, status);
        return -1;
    }
    return 0;
}

static inline void certfix_rm_rf(const char *path)
{
    (void)rm_tree_at(AT_FDCWD, path);
}

/* Makes DIR/NAME.key (a new P-256 key) and DIR/NAME.crt: CN=localhost, SAN localhost and
 * 127.0.0.1, valid from now+not_before_off to now+not_after_off seconds, with an
 * extendedKeyUsage of `eku` (OpenSSL's text, e.g. "serverAuth" or "clientAuth"; NULL: no such
 * extension), signed by ISSUER_CRT/ISSUER_KEY. Returns 0, or -1 with a line on stderr. */
static inline int certfix_make_leaf(const char *dir, const char *name, const char *issuer_crt,
                                    const char *issuer_key, long not_before_off, long not_after_off,
                                    const char *eku)
{
    char path[PATH_MAX + 64];
    int ok = 0;
    X509 *issuer = NULL, *x = NULL;
    EVP_PKEY *ikey = NULL, *key = NULL;
    FILE *f = fopen(issuer_crt, "r");
    if (f) {
        issuer = PEM_read_X509(f, NULL, NULL, NULL);
        fclose(f);
    }
    f = fopen(issuer_key, "r");
    if (f) {
        ikey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        fclose(f);
    }
    key = EVP_EC_gen("P-256");
    x = X509_new();
    if (!issuer || !ikey || !key || !x)
        goto out;
    X509_NAME *subj = X509_get_subject_name(x);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *san =
        X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
    X509_EXTENSION *xku = eku ? X509V3_EXT_conf_nid(NULL, &ctx, NID_ext_key_usage, eku) : NULL;
    if (!X509_set_version(x, 2) || !ASN1_INTEGER_set(X509_get_serialNumber(x), (long)getpid()) ||
        !X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_ASC, (const unsigned char *)"localhost",
                                    -1, -1, 0) ||
        !X509_set_issuer_name(x, X509_get_subject_name(issuer)) ||
        !X509_time_adj_ex(X509_getm_notBefore(x), 0, not_before_off, NULL) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), 0, not_after_off, NULL) ||
        !X509_set_pubkey(x, key) || !san || !X509_add_ext(x, san, -1) || (eku && !xku) ||
        (xku && !X509_add_ext(x, xku, -1)) || !X509_sign(x, ikey, EVP_sha256()))
        ok = -1;
    X509_EXTENSION_free(san);
    X509_EXTENSION_free(xku);
    if (ok < 0)
        goto out;
    snprintf(path, sizeof(path), "%s/%s.crt", dir, name);
    f = fopen(path, "w");
    if (!f || !PEM_write_X509(f, x)) {
        if (f)
            fclose(f);
        goto out;
    }
    fclose(f);
    snprintf(path, sizeof(path), "%s/%s.key", dir, name);
    f = fopen(path, "w");
    if (!f || !PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)) {
        if (f)
            fclose(f);
        goto out;
    }
    fclose(f);
    ok = 1;
out:
    X509_free(x);
    X509_free(issuer);
    EVP_PKEY_free(ikey);
    EVP_PKEY_free(key);
    if (ok != 1)
        fprintf(stderr, "certfix: cannot make %s/%s.crt\n", dir, name);
    return ok == 1 ? 0 : -1;
}

#endif
