#include "sched/queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct node {
    void *item;
    int64_t memory, cpu;
    struct node *next;
} node;

/* An owner with running or waiting jobs; freed when it has neither. */
typedef struct owner {
    char *name;
    struct owner *hash_next;
    jobqueue_quota quota; /* as given with its latest job */
    int64_t running, memory, cpu;
    node *head, *tail;
    int64_t queued;
    struct owner *ring_prev, *ring_next; /* owners with waiting jobs; NULL when none wait */
} owner;

#define N_BUCKETS 1024

struct jobqueue {
    pthread_mutex_t lock;
    jobqueue_capacity cap;
    owner *buckets[N_BUCKETS];
    owner *turn; /* the owner whose turn it is; NULL when nothing waits */
    int64_t running, memory, cpu, queued, owners;
    int64_t ring_n; /* owners with waiting jobs */
};

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static owner *owner_find(jobqueue *q, const char *name)
{
    owner *o = q->buckets[hash_name(name) % N_BUCKETS];
    while (o && strcmp(o->name, name) != 0)
        o = o->hash_next;
    return o;
}

static owner *owner_get(jobqueue *q, const char *name)
{
    owner *o = owner_find(q, name);
    if (o)
        return o;
    o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    o->name = strdup(name);
    if (!o->name) {
        free(o);
        return NULL;
    }
    owner **b = &q->buckets[hash_name(name) % N_BUCKETS];
    o->hash_next = *b;
    *b = o;
    q->owners++;
    return o;
}

static void ring_insert(jobqueue *q, owner *o)
{
    q->ring_n++;
    if (!q->turn) {
        o->ring_prev = o->ring_next = o;
        q->turn = o;
        return;
    }
    /* Just before the owner whose turn it is: last in the current round. */
    o->ring_next = q->turn;
    o->ring_prev = q->turn->ring_prev;
    o->ring_prev->ring_next = o;
    q->turn->ring_prev = o;
}

static void ring_remove(jobqueue *q, owner *o)
{
    q->ring_n--;
    if (o->ring_next == o) {
        q->turn = NULL;
    } else {
        o->ring_prev->ring_next = o->ring_next;
        o->ring_next->ring_prev = o->ring_prev;
        if (q->turn == o)
            q->turn = o->ring_next;
    }
    o->ring_prev = o->ring_next = NULL;
}

/* Frees the owner when it has nothing running or waiting. */
static void owner_maybe_free(jobqueue *q, owner *o)
{
    if (o->running > 0 || o->queued > 0)
        return;
    owner **p = &q->buckets[hash_name(o->name) % N_BUCKETS];
    while (*p != o)
        p = &(*p)->hash_next;
    *p = o->hash_next;
    q->owners--;
    free(o->name);
    free(o);
}

static bool over(int64_t limit, int64_t used, int64_t more)
{
    return limit > 0 && used + more > limit;
}

static bool server_blocks(const jobqueue *q, int64_t memory, int64_t cpu)
{
    return over(q->cap.max_running, q->running, 1) ||
           over(q->cap.memory_bytes, q->memory, memory) || over(q->cap.cpu_percent, q->cpu, cpu);
}

static bool owner_blocks(const owner *o, int64_t memory, int64_t cpu)
{
    return over(o->quota.max_running, o->running, 1) ||
           over(o->quota.memory_bytes, o->memory, memory) ||
           over(o->quota.cpu_percent, o->cpu, cpu);
}

static void reserve(jobqueue *q, owner *o, int64_t memory, int64_t cpu)
{
    o->running++;
    o->memory += memory;
    o->cpu += cpu;
    q->running++;
    q->memory += memory;
    q->cpu += cpu;
}

int jobqueue_new(const jobqueue_capacity *cap, jobqueue **ret)
{
    jobqueue *q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    pthread_mutex_init(&q->lock, NULL);
    q->cap = *cap;
    *ret = q;
    return 0;
}

void jobqueue_free(jobqueue *q)
{
    if (!q)
        return;
    for (size_t b = 0; b < N_BUCKETS; b++) {
        while (q->buckets[b]) {
            owner *o = q->buckets[b];
            q->buckets[b] = o->hash_next;
            while (o->head) {
                node *n = o->head;
                o->head = n->next;
                free(n);
            }
            free(o->name);
            free(o);
        }
    }
    pthread_mutex_destroy(&q->lock);
    free(q);
}

void jobqueue_set_capacity(jobqueue *q, const jobqueue_capacity *cap)
{
    pthread_mutex_lock(&q->lock);
    q->cap = *cap;
    pthread_mutex_unlock(&q->lock);
}

void jobqueue_get_capacity(jobqueue *q, jobqueue_capacity *ret)
{
    pthread_mutex_lock(&q->lock);
    *ret = q->cap;
    pthread_mutex_unlock(&q->lock);
}

/* Called with the lock held: RESOURCE_EXHAUSTED when the job could never run. */
static int check_never_fits(const jobqueue *q, const char *name, const jobqueue_quota *quota,
                            int64_t memory, int64_t cpu, jw_error *err)
{
    if (q->cap.memory_bytes > 0 && memory > q->cap.memory_bytes)
        return jw_error_set(err, JW_RESOURCE_EXHAUSTED, -E2BIG,
                            "memory limit %lld bytes is above the server's memory capacity of "
                            "%lld bytes (--capacity-memory): this job could never run",
                            (long long)memory, (long long)q->cap.memory_bytes);
    if (q->cap.cpu_percent > 0 && cpu > q->cap.cpu_percent)
        return jw_error_set(err, JW_RESOURCE_EXHAUSTED, -E2BIG,
                            "cpu_percent %lld is above the server's cpu capacity of %lld "
                            "(--capacity-cpu): this job could never run",
                            (long long)cpu, (long long)q->cap.cpu_percent);
    if (quota->memory_bytes > 0 && memory > quota->memory_bytes)
        return jw_error_set(err, JW_RESOURCE_EXHAUSTED, -E2BIG,
                            "memory limit %lld bytes is above the max-memory quota of owner "
                            "'%s' (%lld bytes): this job could never run",
                            (long long)memory, name, (long long)quota->memory_bytes);
    if (quota->cpu_percent > 0 && cpu > quota->cpu_percent)
        return jw_error_set(err, JW_RESOURCE_EXHAUSTED, -E2BIG,
                            "cpu_percent %lld is above the max-cpu quota of owner '%s' (%lld): "
                            "this job could never run",
                            (long long)cpu, name, (long long)quota->cpu_percent);
    return 0;
}

int jobqueue_admit(jobqueue *q, const char *name, const jobqueue_quota *quota, int64_t memory,
                   int64_t cpu, bool *ret_now, jw_error *err)
{
    pthread_mutex_lock(&q->lock);
    int r = check_never_fits(q, name, quota, memory, cpu, err);
    owner *o = r < 0 ? NULL : owner_get(q, name);
    if (r == 0 && !o)
        r = jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    if (r < 0) {
        pthread_mutex_unlock(&q->lock);
        return r;
    }
    o->quota = *quota;
    *ret_now = false;
    if (q->queued == 0 && !server_blocks(q, memory, cpu) && !owner_blocks(o, memory, cpu)) {
        reserve(q, o, memory, cpu);
        *ret_now = true;
    } else if (q->cap.max_queued > 0 && q->queued >= q->cap.max_queued) {
        r = jw_error_set(err, JW_RESOURCE_EXHAUSTED, -EAGAIN,
                         "the queue is full: %lld jobs are waiting (--max-queued %lld)",
                         (long long)q->queued, (long long)q->cap.max_queued);
    } else if (quota->max_queued > 0 && o->queued >= quota->max_queued) {
        r = jw_error_set(err, JW_RESOURCE_EXHAUSTED, -EDQUOT,
                         "owner '%s' has %lld jobs waiting, its max-queued quota", name,
                         (long long)o->queued);
    }
    owner_maybe_free(q, o);
    pthread_mutex_unlock(&q->lock);
    return r;
}

int jobqueue_enqueue(jobqueue *q, void *item, const char *name, const jobqueue_quota *quota,
                     int64_t memory, int64_t cpu)
{
    pthread_mutex_lock(&q->lock);
    owner *o = owner_get(q, name);
    node *n = o ? calloc(1, sizeof(*n)) : NULL;
    if (!n) {
        if (o)
            owner_maybe_free(q, o);
        pthread_mutex_unlock(&q->lock);
        return -ENOMEM;
    }
    o->quota = *quota;
    n->item = item;
    n->memory = memory;
    n->cpu = cpu;
    if (o->tail)
        o->tail->next = n;
    else
        o->head = n;
    o->tail = n;
    if (o->queued++ == 0)
        ring_insert(q, o);
    q->queued++;
    pthread_mutex_unlock(&q->lock);
    return 0;
}

int jobqueue_submit(jobqueue *q, void *item, const char *name, const jobqueue_quota *quota,
                    int64_t memory, int64_t cpu, bool *ret_now, jw_error *err)
{
    int r = jobqueue_admit(q, name, quota, memory, cpu, ret_now, err);
    if (r == 0 && !*ret_now && jobqueue_enqueue(q, item, name, quota, memory, cpu) < 0)
        r = jw_error_set(err, JW_INTERNAL, -ENOMEM, "out of memory");
    return r;
}

/* Called with the lock held: takes the owner's first waiting job off the queue. */
static node *pop_head(jobqueue *q, owner *o)
{
    node *n = o->head;
    o->head = n->next;
    if (!o->head)
        o->tail = NULL;
    q->queued--;
    if (--o->queued == 0)
        ring_remove(q, o);
    return n;
}

void *jobqueue_next(jobqueue *q)
{
    pthread_mutex_lock(&q->lock);
    void *item = NULL;
    owner *o = q->turn;
    for (int64_t k = 0, n_ring = q->ring_n; o && k < n_ring; k++, o = o->ring_next) {
        node *h = o->head;
        if (owner_blocks(o, h->memory, h->cpu))
            continue; /* over its own quota: the turn passes */
        if (server_blocks(q, h->memory, h->cpu)) {
            q->turn = o; /* it keeps its turn until capacity frees */
            break;
        }
        owner *after = o->ring_next;
        node *n = pop_head(q, o);
        reserve(q, o, n->memory, n->cpu);
        /* The owner after this one goes next. (after == o only when o was the one waiting: it
         * is still in the ring if the turn is not NULL.) */
        if (q->turn)
            q->turn = after;
        item = n->item;
        free(n);
        break;
    }
    pthread_mutex_unlock(&q->lock);
    return item;
}

bool jobqueue_cancel(jobqueue *q, void *item, const char *name)
{
    pthread_mutex_lock(&q->lock);
    owner *o = owner_find(q, name);
    bool found = false;
    for (node **p = o ? &o->head : NULL; p && *p; p = &(*p)->next) {
        if ((*p)->item != item)
            continue;
        node *n = *p;
        if (n == o->head) {
            free(pop_head(q, o));
        } else {
            *p = n->next;
            if (o->tail == n) {
                node *t = o->head;
                while (t->next)
                    t = t->next;
                o->tail = t;
            }
            o->queued--;
            q->queued--;
            free(n);
        }
        found = true;
        owner_maybe_free(q, o);
        break;
    }
    pthread_mutex_unlock(&q->lock);
    return found;
}

void jobqueue_release(jobqueue *q, const char *name, int64_t memory, int64_t cpu)
{
    pthread_mutex_lock(&q->lock);
    owner *o = owner_find(q, name);
    if (o) {
        o->running--;
        o->memory -= memory;
        o->cpu -= cpu;
        q->running--;
        q->memory -= memory;
        q->cpu -= cpu;
        owner_maybe_free(q, o);
    }
    pthread_mutex_unlock(&q->lock);
}

int64_t jobqueue_position(jobqueue *q, void *item, const char *name)
{
    pthread_mutex_lock(&q->lock);
    owner *o = owner_find(q, name);
    int64_t i = 0, pos = 0;
    node *n = o ? o->head : NULL;
    while (n && n->item != item) {
        n = n->next;
        i++;
    }
    if (n) {
        /* i jobs of its own owner go first; in each round every other owner starts one: those
         * whose turn comes before this owner's in the round have i + 1 chances, the others i. */
        pos = i + 1;
        bool before = true;
        owner *x = q->turn;
        for (int64_t k = 0, n_ring = q->ring_n; x && k < n_ring; k++, x = x->ring_next) {
            if (x == o) {
                before = false;
                continue;
            }
            int64_t chances = i + (before ? 1 : 0);
            pos += x->queued < chances ? x->queued : chances;
        }
    }
    pthread_mutex_unlock(&q->lock);
    return pos;
}

void jobqueue_get_stats(jobqueue *q, jobqueue_stats *ret)
{
    pthread_mutex_lock(&q->lock);
    *ret = (jobqueue_stats){.running = q->running,
                            .queued = q->queued,
                            .memory_bytes = q->memory,
                            .cpu_percent = q->cpu,
                            .owners = q->owners};
    pthread_mutex_unlock(&q->lock);
}
