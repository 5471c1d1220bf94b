/* Identity from the verified peer certificate, the role policy, and reading PEM files. */
#include "auth/auth.h"

#include "auth/auth-internal.h"
#include "util/cleanup.h"
#include "util/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *auth_ossl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
    return reason ? reason : "unknown openssl error";
}

int auth_no_password_cb(char *buf, int size, int rwflag, void *userdata)
{
    /* A negative length makes PEM decoding fail with "bad password read". */
    return -1;
}

/* Copies the UTF-8 bytes s[0..len) into dst (size bytes) as printable ASCII, cut at size-1
 * bytes. Each control character, DEL, stray byte, NUL or whole non-ASCII character becomes one
 * '?': the result goes into job owners and the audit log, where escape sequences, newlines and
 * bidirectional overrides could forge or hide entries. */
static void copy_printable(char *dst, size_t size, const unsigned char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 1 < size; i++) {
        unsigned char c = s[i];
        if (c >= 0x20 && c < 0x7f) {
            dst[o++] = (char)c;
            continue;
        }
        dst[o++] = '?';
        /* A lead byte of a multi-byte character: its continuation bytes belong to the same '?'. */
        for (int k = 0; c >= 0xc0 && k < 3 && i + 1 < len && (s[i + 1] & 0xc0) == 0x80; k++)
            i++;
    }
    dst[o] = '\0';
}

/* Decodes entry idx of name to UTF-8 into *ret (OPENSSL_free it); returns its length, or a
 * negative value when the entry cannot be decoded. The value may contain NUL bytes. */
static int entry_to_utf8(const X509_NAME *name, int idx, unsigned char **ret)
{
    const X509_NAME_ENTRY *entry = X509_NAME_get_entry(name, idx);
    const ASN1_STRING *data = entry ? X509_NAME_ENTRY_get_data(entry) : NULL;
    if (!data)
        return -1;
    return ASN1_STRING_to_UTF8(ret, data);
}

/* Fills id->cn from the first CN of the subject ("" when there is none). */
static int read_cn(const X509_NAME *subject, auth_identity *id)
{
    int idx = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (idx < 0)
        return 0;
    _cleanup_ossl_str_ unsigned char *cn = NULL;
    int len = entry_to_utf8(subject, idx, &cn);
    if (len < 0)
        return -EINVAL;
    copy_printable(id->cn, sizeof(id->cn), cn, (size_t)len);
    return 0;
}

/* Sets id->role (and id->why when it is NONE) from the OUs of the subject: exactly one OU whose
 * bytes are "admin" or "viewer", nothing else. */
static void read_role(const X509_NAME *subject, auth_identity *id)
{
    int idx[2] = {-1, -1};
    int count = 0;
    for (int i = -1;
         (i = X509_NAME_get_index_by_NID(subject, NID_organizationalUnitName, i)) >= 0;) {
        if (count < 2)
            idx[count] = i;
        count++;
    }
    id->role = AUTH_ROLE_NONE;
    if (count == 0) {
        snprintf(id->why, sizeof(id->why), "no OU");
        return;
    }

    _cleanup_ossl_str_ unsigned char *ou = NULL;
    int len = entry_to_utf8(subject, idx[0], &ou);
    if (len < 0) {
        snprintf(id->why, sizeof(id->why), "OU cannot be decoded");
        return;
    }
    if (count > 1) {
        /* Two OUs are refused even when equal: see auth.h. Name both, for the operator. */
        _cleanup_ossl_str_ unsigned char *ou2 = NULL;
        int len2 = entry_to_utf8(subject, idx[1], &ou2);
        char a[41], b[41];
        copy_printable(a, sizeof(a), ou, (size_t)len);
        copy_printable(b, sizeof(b), ou2, len2 < 0 ? 0 : (size_t)len2);
        snprintf(id->why, sizeof(id->why), "%d OUs ('%s', '%s'%s), want exactly one", count, a, b,
                 count > 2 ? ", ..." : "");
        return;
    }

    /* Exact bytes and length: "Admin", " admin", "admin " and "admin\0x" are all unknown. */
    if (len == 5 && memcmp(ou, "admin", 5) == 0) {
        id->role = AUTH_ROLE_ADMIN;
    } else if (len == 6 && memcmp(ou, "viewer", 6) == 0) {
        id->role = AUTH_ROLE_VIEWER;
    } else {
        char shown[121];
        copy_printable(shown, sizeof(shown), ou, (size_t)len);
        snprintf(id->why, sizeof(id->why), "unknown OU '%s'", shown);
    }
}

static int identity_from_pem(const char *pem, size_t len, auth_identity *ret, jw_error *err)
{
    _cleanup_bio_ BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio)
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "allocate a bio for the peer certificate");
    /* Reads only the first certificate: gRPC's x509_pem_cert holds just the leaf, and of a chain
     * the leaf comes first. */
    _cleanup_x509_ X509 *cert = PEM_read_bio_X509(bio, NULL, auth_no_password_cb, NULL);
    if (!cert)
        return jw_error_set(err, JW_UNAUTHENTICATED, -EINVAL,
                            "peer certificate of %zu bytes is not a PEM X.509 certificate: %s", len,
                            auth_ossl_reason());

    /* Only the subject: the issuer's OU says who the CA is, not who the caller is. */
    const X509_NAME *subject = X509_get_subject_name(cert);
    auth_identity id = {.role = AUTH_ROLE_NONE};
    if (read_cn(subject, &id) < 0)
        snprintf(id.why, sizeof(id.why), "CN cannot be decoded");
    else
        read_role(subject, &id);
    *ret = id;
    return 0;
}

int auth_identity_from_pem(const char *pem, size_t len, auth_identity *ret, jw_error *err)
{
    if (!pem || len == 0)
        return jw_error_set(err, JW_UNAUTHENTICATED, -EINVAL, "peer certificate is empty");
    if (len > AUTH_PEM_MAX)
        return jw_error_set(err, JW_UNAUTHENTICATED, -EINVAL,
                            "peer certificate of %zu bytes exceeds the limit of %d bytes", len,
                            AUTH_PEM_MAX);
    ERR_set_mark();
    int r = identity_from_pem(pem, len, ret, err);
    ERR_pop_to_mark();
    return r;
}

/* 1 for a method that changes state, 0 for one that only reads, -1 for a value that is not an
 * auth_method. There is no default label, so adding a method warns here until it is classified. */
static int method_writes(auth_method method)
{
    switch (method) {
    case AUTH_METHOD_CREATE_JOB:
    case AUTH_METHOD_STOP_JOB:
    case AUTH_METHOD_DELETE_JOB:
    case AUTH_METHOD_WRITE_STDIN: return 1;
    case AUTH_METHOD_GET_JOB:
    case AUTH_METHOD_GET_JOBS:
    case AUTH_METHOD_GET_JOBS_STREAM:
    case AUTH_METHOD_GET_SERVER_INFO: return 0;
    }
    return -1;
}

bool auth_role_allows(auth_role role, auth_method method)
{
    int writes = method_writes(method);
    if (writes < 0)
        return false;
    switch (role) {
    case AUTH_ROLE_ADMIN: return true;
    case AUTH_ROLE_VIEWER: return writes == 0;
    case AUTH_ROLE_NONE: return false;
    }
    return false;
}

const char *auth_role_name(auth_role role)
{
    switch (role) {
    case AUTH_ROLE_NONE: return "none";
    case AUTH_ROLE_VIEWER: return "viewer";
    case AUTH_ROLE_ADMIN: return "admin";
    }
    return "invalid";
}

const char *auth_method_name(auth_method m)
{
    switch (m) {
    case AUTH_METHOD_CREATE_JOB: return "CreateJob";
    case AUTH_METHOD_GET_JOB: return "GetJob";
    case AUTH_METHOD_STOP_JOB: return "StopJob";
    case AUTH_METHOD_GET_JOBS: return "GetJobs";
    case AUTH_METHOD_GET_JOBS_STREAM: return "GetJobsStream";
    case AUTH_METHOD_DELETE_JOB: return "DeleteJob";
    case AUTH_METHOD_WRITE_STDIN: return "WriteStdin";
    case AUTH_METHOD_GET_SERVER_INFO: return "GetServerInfo";
    }
    return "invalid";
}

int auth_read_pem_file(const char *path, char **ret, jw_error *err)
{
    /* Erase mode: the file may be a private key. */
    _cleanup_erase_ char *buf = NULL;
    size_t n = 0;
    int r = read_file_alloc_at(AT_FDCWD, path, AUTH_PEM_MAX, READ_FILE_ERASE, &buf, &n);
    if (r == -EFBIG)
        return jw_error_set(err, JW_INVALID_ARGUMENT, r,
                            "pem file '%s' is larger than the limit of %d bytes", path,
                            AUTH_PEM_MAX);
    if (r < 0)
        return jw_error_errno_code(err, r == -ENOMEM ? JW_INTERNAL : JW_INVALID_ARGUMENT, r,
                                   "read pem file '%s'", path);
    if (n == 0)
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL, "pem file '%s' is empty", path);
    if (!memmem(buf, n, "-----BEGIN ", strlen("-----BEGIN ")))
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "pem file '%s' holds no PEM block (no '-----BEGIN ' line)", path);
    *ret = TAKE_PTR(buf);
    return 0;
}
