/* The WAF's Redis connection (see wredis.h). */
#include "wredis.h"

#include "ims_common/redis_url.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LEEWAY_S 60 /* verifiers' clock leeway (30 s) with margin */

struct waf_redis {
    pthread_mutex_t lock;
    struct ims_redis_url url;
    bool url_ok;
    redisContext *c;
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
    char zkey[300], score[24], cutoff[32];
    snprintf(zkey, sizeof(zkey), "%s:exp", set_key);
    snprintf(score, sizeof(score), "%lld", (long long)exp);
    snprintf(cutoff, sizeof(cutoff), "%lld", (long long)time(NULL) - LEEWAY_S);
    pthread_mutex_lock(&r->lock);
    bool ok = conn(r);
    if (ok) {
        const char *sadd[] = {"SADD", set_key, jti};
        const char *zadd[] = {"ZADD", zkey, score, jti};
        redisAppendCommandArgv(r->c, 3, sadd, NULL);
        redisAppendCommandArgv(r->c, 4, zadd, NULL);
        ok = replies(r, 2);
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
    char k[400], ttl[24];
    snprintf(k, sizeof(k), "%s:%ld", key, window);
    snprintf(ttl, sizeof(ttl), "%ld", window_s + 1);
    pthread_mutex_lock(&r->lock);
    long long count = -1;
    if (conn(r)) {
        const char *incr[] = {"INCR", k};
        const char *exp[] = {"EXPIRE", k, ttl, "NX"};
        redisAppendCommandArgv(r->c, 2, incr, NULL);
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
    pthread_mutex_unlock(&r->lock);
    if (count < 0)
        return -1;
    if (count > limit) {
        *retry_after_s = (window + 1) * window_s - now;
        return 0;
    }
    return 1;
}
