/* The WAF's Redis connection (see wredis.h). */
#include "wredis.h"

#include "ims_common/redis_url.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LEEWAY_S 60 /* verifiers' clock leeway (30 s) with margin */

/* Allowance taken from Redis in advance for one rate-limit key and window, spent locally
 * (see waf_redis_hit). */
#define QUOTA_SLOTS 1024
struct quota {
    char key[400];
    long window, left;
};

struct waf_redis {
    pthread_mutex_t lock;
    struct ims_redis_url url;
    bool url_ok;
    redisContext *c;
    struct quota quota[QUOTA_SLOTS]; /* under lock */
};

struct waf_redis *waf_redis_new(const char *url)
{
    struct waf_redis *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    pthread_mutex_init(&r->lock, NULL);
    r->url_ok = ims_redis_url_parse(url, &r->url); /* checked by the configuration */
    return r;
}

void waf_redis_free(struct waf_redis *r)
{
    if (r == NULL)
        return;
    if (r->c)
        redisFree(r->c);
    memset(r->url.password, 0, sizeof(r->url.password));
    pthread_mutex_destroy(&r->lock);
    free(r);
}

/* Under r->lock: a live connection, or false. */
static bool conn(struct waf_redis *r)
{
    if (r->c)
        return true;
    if (!r->url_ok)
        return false;
    struct timeval t = {0, 300 * 1000};
    redisContext *c = redisConnectWithTimeout(r->url.host, r->url.port, t);
    if (c == NULL || c->err) {
        if (c)
            redisFree(c);
        return false;
    }
    redisSetTimeout(c, t);
    bool ok = true;
    if (r->url.password[0]) {
        redisReply *rep = redisCommand(c, "AUTH %s", r->url.password);
        ok = rep && rep->type != REDIS_REPLY_ERROR;
        freeReplyObject(rep);
    }
    if (ok && r->url.db) {
        redisReply *rep = redisCommand(c, "SELECT %d", r->url.db);
        ok = rep && rep->type != REDIS_REPLY_ERROR;
        freeReplyObject(rep);
    }
    if (!ok) {
        redisFree(c);
        return false;
    }
    r->c = c;
    return true;
}

/* Under r->lock: reads n replies; false (and the connection dropped) on any error. */
static bool replies(struct waf_redis *r, int n)
{
    bool ok = true;
    for (int i = 0; i < n; i++) {
        redisReply *rep = NULL;
        if (redisGetReply(r->c, (void **)&rep) != REDIS_OK || rep == NULL) {
            redisFree(r->c);
            r->c = NULL;
            return false;
        }
        ok = ok && rep->type != REDIS_REPLY_ERROR;
        freeReplyObject(rep);
    }
    return ok;
}

bool waf_redis_revoke(struct waf_redis *r, const char *set_key, const char *jti, int64_t exp)
{
    char zkey[300], feed[300], score[24], cutoff[32];
    snprintf(zkey, sizeof(zkey), "%s:exp", set_key);
    snprintf(feed, sizeof(feed), "%s:feed", set_key);
    snprintf(score, sizeof(score), "%lld", (long long)exp);
    snprintf(cutoff, sizeof(cutoff), "%lld", (long long)time(NULL) - LEEWAY_S);
    pthread_mutex_lock(&r->lock);
    bool ok = conn(r);
    if (ok) {
        const char *sadd[] = {"SADD", set_key, jti};
        const char *zadd[] = {"ZADD", zkey, score, jti};
        /* The feed after SADD: a subscriber that checks the set on a message finds it. */
        const char *publish[] = {"PUBLISH", feed, jti};
        redisAppendCommandArgv(r->c, 3, sadd, NULL);
        redisAppendCommandArgv(r->c, 4, zadd, NULL);
        redisAppendCommandArgv(r->c, 3, publish, NULL);
        ok = replies(r, 3);
    }
    if (ok) {
        /* Forget revocations of tokens that have expired anyway. */
        const char *old[] = {"ZRANGEBYSCORE", zkey, "-inf", cutoff, "LIMIT", "0", "100"};
        redisReply *rep = redisCommandArgv(r->c, 7, old, NULL);
        if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements > 0) {
            const char **srem = calloc(rep->elements + 2, sizeof(char *));
            const char **zrem = calloc(rep->elements + 2, sizeof(char *));
            if (srem && zrem) {
                srem[0] = "SREM";
                srem[1] = set_key;
                zrem[0] = "ZREM";
                zrem[1] = zkey;
                for (size_t i = 0; i < rep->elements; i++)
                    srem[i + 2] = zrem[i + 2] = rep->element[i]->str;
                redisAppendCommandArgv(r->c, (int)rep->elements + 2, srem, NULL);
                redisAppendCommandArgv(r->c, (int)rep->elements + 2, zrem, NULL);
                (void)replies(r, 2); /* best effort: the next revocation tries again */
            }
            free(srem);
            free(zrem);
        } else if (rep == NULL) {
            redisFree(r->c);
            r->c = NULL;
        }
        freeReplyObject(rep);
    }
    pthread_mutex_unlock(&r->lock);
    return ok;
}

bool waf_redis_ping(struct waf_redis *r)
{
    pthread_mutex_lock(&r->lock);
    bool ok = conn(r);
    if (ok) {
        const char *ping[] = {"PING"};
        redisAppendCommandArgv(r->c, 1, ping, NULL);
        ok = replies(r, 1);
    }
    pthread_mutex_unlock(&r->lock);
    return ok;
}

int waf_redis_hit(struct waf_redis *r, const char *key, long limit, long window_s,
                  long *retry_after_s)
{
    long now = (long)time(NULL);
    long window = now / window_s;
    /* Large limits are counted in chunks: one INCRBY reserves `chunk` requests for this
       process, spent without a round trip. Reserved but unspent requests count against the
       limit, so several instances together never exceed it; they may refuse up to
       chunk - 1 requests per instance early, 0.5 % of the limit. Small limits (below 200
       a window, e.g. logins) are counted one by one. */
    long chunk = limit >= 200 ? limit / 200 : 1;
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    struct quota *q = &r->quota[h % QUOTA_SLOTS];
    char k[400], ttl[24], by[24];
    snprintf(k, sizeof(k), "%s:%ld", key, window);
    snprintf(ttl, sizeof(ttl), "%ld", window_s + 1);
    snprintf(by, sizeof(by), "%ld", chunk);
    pthread_mutex_lock(&r->lock);
    if (q->window == window && q->left > 0 && strcmp(q->key, k) == 0) {
        q->left--;
        pthread_mutex_unlock(&r->lock);
        return 1;
    }
    long long count = -1;
    if (conn(r)) {
        const char *incr[] = {"INCRBY", k, by};
        const char *exp[] = {"EXPIRE", k, ttl, "NX"};
        redisAppendCommandArgv(r->c, 3, incr, NULL);
        redisAppendCommandArgv(r->c, 4, exp, NULL);
        redisReply *a = NULL, *b = NULL;
        if (redisGetReply(r->c, (void **)&a) == REDIS_OK && a &&
            redisGetReply(r->c, (void **)&b) == REDIS_OK && b && a->type == REDIS_REPLY_INTEGER)
            count = a->integer;
        else {
            redisFree(r->c);
            r->c = NULL;
        }
        freeReplyObject(a);
        freeReplyObject(b);
    }
    int rc = -1;
    if (count >= 0) {
        long long before = count - chunk; /* requests counted before this reservation */
        if (before >= limit) {
            *retry_after_s = (window + 1) * window_s - now;
            rc = 0;
        } else {
            long long granted = count <= limit ? chunk : limit - before;
            snprintf(q->key, sizeof(q->key), "%s", k);
            q->window = window;
            q->left = (long)granted - 1; /* this request takes one */
            rc = 1;
        }
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}
