/* libimspool handle set (see wpool.h). */
#include "wpool.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct waf_pools {
    pthread_mutex_t lock;
    pthread_cond_t freed;
    char *db_url, *redis_url;
    int size, open, nfree;
    struct imspool **free_list;
};

static void pool_log(int level, const char *line, void *arg)
{
    (void)arg;
    /* libimspool's lines hold no secret (imspool.h). */
    fprintf(stderr, "waf-server: pool %s: %s\n", level == 1 ? "warning" : "info", line);
}

struct waf_pools *waf_pools_new(const char *db_url, const char *redis_url, int size)
{
    struct waf_pools *ps = calloc(1, sizeof(*ps));
    if (ps == NULL)
        return NULL;
    ps->size = size > 0 ? size : 1;
    ps->db_url = strdup(db_url);
    ps->redis_url = redis_url ? strdup(redis_url) : NULL;
    ps->free_list = calloc((size_t)ps->size, sizeof(*ps->free_list));
    pthread_mutex_init(&ps->lock, NULL);
    pthread_cond_init(&ps->freed, NULL);
    if (ps->db_url == NULL || (redis_url && ps->redis_url == NULL) || ps->free_list == NULL) {
        waf_pools_free(ps);
        return NULL;
    }
    return ps;
}

void waf_pools_free(struct waf_pools *ps)
{
    if (ps == NULL)
        return;
    for (int i = 0; i < ps->nfree; i++)
        imspool_close(ps->free_list[i]);
    free(ps->free_list);
    free(ps->db_url);
    free(ps->redis_url);
    pthread_mutex_destroy(&ps->lock);
    pthread_cond_destroy(&ps->freed);
    free(ps);
}

struct imspool *waf_pools_get(struct waf_pools *ps, char *detail, size_t dlen)
{
    pthread_mutex_lock(&ps->lock);
    while (ps->nfree == 0 && ps->open == ps->size)
        pthread_cond_wait(&ps->freed, &ps->lock);
    if (ps->nfree > 0) {
        struct imspool *p = ps->free_list[--ps->nfree];
        pthread_mutex_unlock(&ps->lock);
        return p;
    }
    ps->open++; /* reserve the slot, open outside the lock */
    pthread_mutex_unlock(&ps->lock);
    struct imspool_opts o = {.db_url = ps->db_url, .redis_url = ps->redis_url, .log = pool_log};
    struct imspool *p = NULL;
    if (imspool_open(&p, &o, detail, dlen) != IMSPOOL_OK) {
        pthread_mutex_lock(&ps->lock);
        ps->open--;
        pthread_cond_signal(&ps->freed);
        pthread_mutex_unlock(&ps->lock);
        return NULL;
    }
    return p;
}

void waf_pools_put(struct waf_pools *ps, struct imspool *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&ps->lock);
    ps->free_list[ps->nfree++] = p;
    pthread_cond_signal(&ps->freed);
    pthread_mutex_unlock(&ps->lock);
}
