/* The properties both certificate targets check on auth_identity_from_pem's result. */
#ifndef JW_TESTS_FUZZ_AUTH_H
#define JW_TESTS_FUZZ_AUTH_H

#include "fuzz.h"

#include "auth/auth.h"

#include <errno.h>

static inline void fuzz_check_identity(int r, const auth_identity *id, const jw_error *err)
{
    if (r < 0) {
        FUZZ_CHECK(r == -EINVAL || r == -ENOMEM);
        FUZZ_CHECK(err->code == JW_UNAUTHENTICATED || err->code == JW_INTERNAL);
        FUZZ_CHECK(err->msg[0] != '\0');
        return;
    }
    FUZZ_CHECK(r == 0);
    FUZZ_CHECK(id->role == AUTH_ROLE_NONE || id->role == AUTH_ROLE_VIEWER ||
               id->role == AUTH_ROLE_ADMIN);
    /* The CN goes into job owners and the audit log: printable ASCII only, terminated. */
    size_t n = strnlen(id->cn, sizeof(id->cn));
    FUZZ_CHECK(n < sizeof(id->cn));
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(id->cn[i] >= 0x20 && id->cn[i] < 0x7f);
    size_t w = strnlen(id->why, sizeof(id->why));
    FUZZ_CHECK(w < sizeof(id->why));
    if (id->role == AUTH_ROLE_NONE) {
        FUZZ_CHECK(w > 0);
        for (size_t i = 0; i < w; i++)
            FUZZ_CHECK(id->why[i] >= 0x20 && id->why[i] < 0x7f);
    }
}

#endif
