/*
 * Verified-token cache: bounded, sharded LRU keyed by the SHA-256 of the token bytes (the
 * token itself is never stored). Entries are preallocated, so a lookup or an insert never
 * allocates. A hit returns the immutable token with a new reference; the caller still
 * checks time, identity binding and revocation.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define SHARDS 16

struct entry {
    uint8_t digest[IMSAUTH_SHA256_LEN];
    struct imsauth_token *tok;
    struct entry *hnext;       /* bucket chain */
    struct entry *prev, *next; /* LRU list, most recent first */
};

struct shard {
    pthread_mutex_t lock;
    struct entry **buckets;
    size_t mask;
    struct entry *pool, *free_list;
    struct entry *head, *tail;
} __attribute__((aligned(64)));

struct ims_cache {
    struct shard shards[SHARDS];
};

static size_t pow2_at_least(size_t n)
{
    size_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

struct ims_cache *ims_cache_new(size_t entries)
{
    struct ims_cache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    size_t per = (entries + SHARDS - 1) / SHARDS;
    if (per == 0)
        per = 1;
    for (int i = 0; i < SHARDS; i++) {
        struct shard *s = &c->shards[i];
        pthread_mutex_init(&s->lock, NULL);
        size_t nb = pow2_at_least(per * 2);
        s->buckets = calloc(nb, sizeof(*s->buckets));
        s->pool = calloc(per, sizeof(*s->pool));
        if (s->buckets == NULL || s->pool == NULL) {
            ims_cache_free(c);
            return NULL;
        }
        s->mask = nb - 1;
        for (size_t k = 0; k < per; k++) {
            s->pool[k].hnext = s->free_list;
            s->free_list = &s->pool[k];
        }
    }
    return c;
}

void ims_cache_free(struct ims_cache *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < SHARDS; i++) {
        struct shard *s = &c->shards[i];
        for (struct entry *e = s->head; e; e = e->next)
            imsauth_token_release(e->tok);
        free(s->buckets);
        free(s->pool);
        pthread_mutex_destroy(&s->lock);
    }
    free(c);
}

static uint64_t load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static struct shard *shard_of(struct ims_cache *c, const uint8_t *d)
{
    return &c->shards[d[31] % SHARDS];
}

static struct entry **bucket_of(struct shard *s, const uint8_t *d)
{
    return &s->buckets[load64(d) & s->mask];
}

static void lru_unlink(struct shard *s, struct entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        s->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        s->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(struct shard *s, struct entry *e)
{
    e->prev = NULL;
    e->next = s->head;
    if (s->head)
        s->head->prev = e;
    s->head = e;
    if (s->tail == NULL)
        s->tail = e;
}

/* Unlinks e from its bucket and the LRU list and returns it to the free list. Returns the
 * token so that the caller can release it outside the lock. */
static struct imsauth_token *remove_entry(struct shard *s, struct entry *e)
{
    struct entry **pp = bucket_of(s, e->digest);
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(s, e);
    struct imsauth_token *t = e->tok;
    e->tok = NULL;
    e->hnext = s->free_list;
    s->free_list = e;
    return t;
}

struct imsauth_token *ims_cache_get(struct ims_cache *c, const uint8_t digest[32], int64_t now,
                                    uint64_t generation)
{
    struct shard *s = shard_of(c, digest);
    struct imsauth_token *hit = NULL, *drop = NULL;
    pthread_mutex_lock(&s->lock);
    struct entry *e = *bucket_of(s, digest);
    while (e && memcmp(e->digest, digest, IMSAUTH_SHA256_LEN) != 0)
        e = e->hnext;
    if (e) {
        if (e->tok->exp <= now || e->tok->generation != generation) {
            drop = remove_entry(s, e);
        } else {
            hit = imsauth_token_ref(e->tok);
            if (s->head != e) {
                lru_unlink(s, e);
                lru_push_front(s, e);
            }
        }
    }
    pthread_mutex_unlock(&s->lock);
    imsauth_token_release(drop);
    return hit;
}

void ims_cache_put(struct ims_cache *c, const uint8_t digest[32], struct imsauth_token *t)
{
    struct shard *s = shard_of(c, digest);
    struct imsauth_token *drop = NULL;
    imsauth_token_ref(t);
    pthread_mutex_lock(&s->lock);
    struct entry **b = bucket_of(s, digest);
    struct entry *e = *b;
    while (e && memcmp(e->digest, digest, IMSAUTH_SHA256_LEN) != 0)
        e = e->hnext;
    if (e) {
        drop = e->tok;
        e->tok = t;
        lru_unlink(s, e);
        lru_push_front(s, e);
    } else {
        if (s->free_list == NULL)
            drop = remove_entry(s, s->tail);
        e = s->free_list;
        s->free_list = e->hnext;
        memcpy(e->digest, digest, IMSAUTH_SHA256_LEN);
        e->tok = t;
        e->hnext = *b;
        *b = e;
        lru_push_front(s, e);
    }
    pthread_mutex_unlock(&s->lock);
    imsauth_token_release(drop);
}
