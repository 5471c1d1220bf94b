#include "spawn/uidpool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define UID_MAX_SAFE 2147483646u

struct uid_pool {
    pthread_mutex_t lock;
    uint32_t first, count;
    uint32_t *ring; /* free offsets, oldest release first: ring[head .. head + n_free) */
    uint32_t head, n_free;
    bool *held; /* held[offset]: handed out and not yet released */
};

static bool range_ok(uint32_t first, uint32_t count)
{
    if (first == 0 || count == 0 || count > UID_POOL_MAX_COUNT)
        return false;
    uint64_t last = (uint64_t)first + count - 1;
    if (last > UID_MAX_SAFE)
        return false;
    return !(first <= 65535 && last >= 65534);
}

static int parse_u32(const char *s, const char *end, uint32_t *ret)
{
    if (s == end || end - s > 10)
        return -EINVAL;
    uint64_t v = 0;
    for (const char *p = s; p < end; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (v > UINT32_MAX)
        return -ERANGE;
    *ret = (uint32_t)v;
    return 0;
}

int uid_pool_parse_range(const char *text, uint32_t *ret_first, uint32_t *ret_count)
{
    const char *dash = strchr(text, '-');
    if (!dash)
        return -EINVAL;
    uint32_t first = 0, last = 0;
    int r = parse_u32(text, dash, &first);
    if (r == 0)
        r = parse_u32(dash + 1, dash + strlen(dash), &last);
    if (r < 0)
        return r;
    if (last < first)
        return -EINVAL;
    uint64_t count = (uint64_t)last - first + 1;
    if (count > UID_POOL_MAX_COUNT || !range_ok(first, (uint32_t)count))
        return -ERANGE;
    *ret_first = first;
    *ret_count = (uint32_t)count;
    return 0;
}

int uid_pool_new(uint32_t first, uint32_t count, uid_pool **ret, jw_error *err)
{
    if (!range_ok(first, count))
        return jw_error_set(err, JW_INVALID_ARGUMENT, -EINVAL,
                            "job uid range %u+%u: must lie within 1-%u, hold at most %u uids and "
                            "leave out 65534 and 65535",
                            first, count, UID_MAX_SAFE, UID_POOL_MAX_COUNT);
    uid_pool *p = calloc(1, sizeof(*p));
    if (p) {
        p->ring = malloc(count * sizeof(*p->ring));
        p->held = calloc(count, sizeof(*p->held));
    }
    if (!p || !p->ring || !p->held) {
        uid_pool_free(p);
        return jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    }
    pthread_mutex_init(&p->lock, NULL);
    p->first = first;
    p->count = count;
    for (uint32_t i = 0; i < count; i++)
        p->ring[i] = i;
    p->n_free = count;
    *ret = p;
    return 0;
}

void uid_pool_free(uid_pool *p)
{
    if (!p)
        return;
    if (p->ring && p->held)
        pthread_mutex_destroy(&p->lock);
    free(p->ring);
    free(p->held);
    free(p);
}

int uid_pool_acquire(uid_pool *p, uint32_t *ret_uid, jw_error *err)
{
    pthread_mutex_lock(&p->lock);
    if (p->n_free == 0) {
        pthread_mutex_unlock(&p->lock);
        return jw_error_set(err, JW_RESOURCE_EXHAUSTED, -EAGAIN,
                            "no free job identity: all %u uids of %u-%u are held by running jobs; "
                            "wait for a job to end or widen --job-uid-range",
                            p->count, p->first, p->first + (p->count - 1));
    }
    uint32_t off = p->ring[p->head];
    p->head = (p->head + 1) % p->count;
    p->n_free--;
    p->held[off] = true;
    pthread_mutex_unlock(&p->lock);
    *ret_uid = p->first + off;
    return 0;
}

int uid_pool_release(uid_pool *p, uint32_t uid)
{
    if (uid < p->first || uid - p->first >= p->count)
        return -EINVAL;
    uint32_t off = uid - p->first;
    pthread_mutex_lock(&p->lock);
    if (!p->held[off]) {
        pthread_mutex_unlock(&p->lock);
        return -EINVAL;
    }
    p->held[off] = false;
    p->ring[(p->head + p->n_free) % p->count] = off;
    p->n_free++;
    pthread_mutex_unlock(&p->lock);
    return 0;
}

size_t uid_pool_n_free(uid_pool *p)
{
    pthread_mutex_lock(&p->lock);
    size_t n = p->n_free;
    pthread_mutex_unlock(&p->lock);
    return n;
}
