/* The last few identities parsed from peer certificates, keyed by the certificate's exact bytes.
 * Parsing costs ~100 us per RPC and a client sends the same certificate on every call; the
 * certificate was verified by the handshake of the connection the call came on, so the bytes
 * alone decide. */
#include "auth/auth.h"

#include <pthread.h>
#include <string.h>

#define IDENTITY_CACHE   16
#define IDENTITY_PEM_MAX 8192 /* larger certificates are parsed every time, never cached */

static struct {
    pthread_mutex_t lock;
    struct {
        size_t len;
        char pem[IDENTITY_PEM_MAX];
        auth_identity id;
    } e[IDENTITY_CACHE];
    unsigned next;
} cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

static bool cache_find(const char *pem, size_t len, auth_identity *ret)
{
    bool hit = false;
    pthread_mutex_lock(&cache.lock);
    for (unsigned i = 0; i < IDENTITY_CACHE && !hit; i++) {
        if (cache.e[i].len == len && memcmp(cache.e[i].pem, pem, len) == 0) {
            *ret = cache.e[i].id;
            hit = true;
        }
    }
    pthread_mutex_unlock(&cache.lock);
    return hit;
}

static void cache_add(const char *pem, size_t len, const auth_identity *id)
{
    if (len == 0 || len > IDENTITY_PEM_MAX)
        return;
    pthread_mutex_lock(&cache.lock);
    unsigned i = cache.next++ % IDENTITY_CACHE;
    memcpy(cache.e[i].pem, pem, len);
    cache.e[i].len = len;
    cache.e[i].id = *id;
    pthread_mutex_unlock(&cache.lock);
}

int auth_identity_from_pem_cached(const char *pem, size_t len, auth_identity *ret, jw_error *err)
{
    if (cache_find(pem, len, ret))
        return 0;
    auth_identity id;
    int r = auth_identity_from_pem(pem, len, &id, err);
    if (r < 0)
        return r;
    cache_add(pem, len, &id);
    *ret = id;
    return 0;
}
