/* Identity extraction from the peer certificate's PEM (auth_identity_from_pem), on raw bytes as
 * gRPC's x509_pem_cert property would carry them. The input is not NUL-terminated on purpose:
 * the function must honour `len`. See fuzz_auth_der.c for the variant that mutates the DER
 * inside a well-formed PEM envelope, which reaches much deeper into the certificate. */
#include "fuzz_auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size heap copy, so that reading past `size` is an ASan report. */
    char *pem = malloc(size ? size : 1);
    if (!pem)
        abort();
    if (size)
        memcpy(pem, data, size);
    auth_identity id;
    memset(&id, 0x5a, sizeof(id));
    jw_error err = JW_ERROR_INIT;
    int r = auth_identity_from_pem(pem, size, &id, &err);
    fuzz_check_identity(r, &id, &err);
    free(pem);
    return 0;
}
