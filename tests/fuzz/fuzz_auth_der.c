/* Identity extraction from certificates whose DER is fuzzed: the input is wrapped in a
 * "-----BEGIN CERTIFICATE-----" PEM envelope (base64, 64 columns) and handed to
 * auth_identity_from_pem, so mutations land in the ASN.1 (names, string types, OU/CN entries)
 * rather than in the base64 text.
 *
 * Properties (fuzz_auth.h), plus: the PEM path accepts exactly what OpenSSL's d2i_X509 accepts
 * (the envelope adds or loses nothing), and a certificate's role never comes from its issuer. */
#include "fuzz_auth.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

static char *wrap_pem(const uint8_t *der, size_t size, size_t *ret_len)
{
    static const char head[] = "-----BEGIN CERTIFICATE-----\n";
    static const char tail[] = "-----END CERTIFICATE-----\n";
    size_t lines = (size + 47) / 48;
    size_t cap = sizeof(head) + sizeof(tail) + lines * 66 + 8;
    char *pem = malloc(cap);
    if (!pem)
        abort();
    size_t o = 0;
    memcpy(pem, head, sizeof(head) - 1);
    o += sizeof(head) - 1;
    for (size_t i = 0; i < size; i += 48) {
        size_t n = size - i < 48 ? size - i : 48;
        o += (size_t)EVP_EncodeBlock((unsigned char *)pem + o, der + i, (int)n);
        pem[o++] = '\n';
    }
    memcpy(pem + o, tail, sizeof(tail) - 1);
    o += sizeof(tail) - 1;
    *ret_len = o;
    return pem;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024)
        return 0;
    size_t len;
    char *pem = wrap_pem(data, size, &len);
    auth_identity id;
    memset(&id, 0x5a, sizeof(id));
    jw_error err = JW_ERROR_INIT;
    int r = auth_identity_from_pem(pem, len, &id, &err);
    fuzz_check_identity(r, &id, &err);

    const unsigned char *p = data;
    X509 *x = size ? d2i_X509(NULL, &p, (long)size) : NULL;
    FUZZ_CHECK((r == 0) == (x != NULL));
    if (x && r == 0 && id.role != AUTH_ROLE_NONE) {
        /* A role needs an OU in the subject itself. */
        FUZZ_CHECK(X509_NAME_get_index_by_NID(X509_get_subject_name(x), NID_organizationalUnitName,
                                              -1) >= 0);
    }
    X509_free(x);
    ERR_clear_error();
    free(pem);
    return 0;
}
