/* Revocation check against a Redis set, with a small local cache. */
#include "imsauth/imsauth_redis.h"
#include "internal.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#define JTI_MAX 128 /* longer jti values are checked but not cached */

struct slot {
    char jti[JTI_MAX + 1];
    bool revoked;
    int64_t until_ms;
};

struct imsauth_redis_revocation {
    pthread_mutex_t lock;
    char *host, *key;
    int port, db;
    unsigned cache_ms, timeout_ms;
    redisContext *rc;
    int64_t next_connect_ms;
    struct slot *slots;
    size_t n_slots;
    imsauth_log_fn log;
    void *log_arg;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void rlog(struct imsauth_redis_revocation *r, enum imsauth_log_level l, const char *m)
{
    if (r->log)
        r->log(l, m, r->log_arg);
}

/* redis://host[:port][/db] */
static bool parse_url(struct imsauth_redis_revocation *r, const char *url)
{
    const char *p = url;
    if (strncmp(p, "redis://", 8) != 0)
        return false;
    p += 8;
    const char *at = strchr(p, '@');
    if (at)
        return false; /* credentials in the URL are not supported */
    size_t hl = strcspn(p, ":/");
    if (hl == 0 || hl > 255)
        return false;
    r->host = strndup(p, hl);
    p += hl;
    r->port = 6379;
    if (*p == ':') {
        char *e;
        long v = strtol(p + 1, &e, 10);
        if (e == p + 1 || v <= 0 || v > 65535)
            return false;
        r->port = (int)v;
        p = e;
    }
    if (*p == '/' && p[1]) {
        char *e;
        long v = strtol(p + 1, &e, 10);
        if (*e || v < 0 || v > 1000)
            return false;
        r->db = (int)v;
        p = e;
    } else if (*p == '/') {
        p++;
    }
    return r->host && *p == '\0';
}

IMSAUTH_API enum imsauth_result imsauth_redis_revocation_alloc(struct imsauth_redis_revocation **rp,
                                                               const struct imsauth_redis_opts *o,
                                                               char *detail, size_t dlen)
{
    if (o == NULL || o->url == NULL) {
        ims_detail(detail, dlen, "url is required");
        return IMSAUTH_ERR_INVALID_ARG;
    }
    struct imsauth_redis_revocation *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return IMSAUTH_ERR_NOMEM;
    pthread_mutex_init(&r->lock, NULL);
    if (!parse_url(r, o->url)) {
        ims_detail(detail, dlen, "url must be redis://host[:port][/db]");
        imsauth_redis_revocation_free(r);
        return IMSAUTH_ERR_INVALID_ARG;
    }
    r->key = strdup(o->key ? o->key : "imsauth:revoked");
    r->cache_ms = o->cache_ms ? o->cache_ms : 500;
    r->timeout_ms = o->timeout_ms ? o->timeout_ms : 200;
    r->n_slots = o->cache_entries ? o->cache_entries : 4096;
    r->slots = calloc(r->n_slots, sizeof(*r->slots));
    r->log = o->log;
    r->log_arg = o->log_arg;
    if (r->key == NULL || r->slots == NULL) {
        imsauth_redis_revocation_free(r);
        return IMSAUTH_ERR_NOMEM;
    }
    *rp = r;
    return IMSAUTH_OK;
}

IMSAUTH_API void imsauth_redis_revocation_free(struct imsauth_redis_revocation *r)
{
    if (r == NULL)
        return;
    if (r->rc)
        redisFree(r->rc);
    free(r->host);
    free(r->key);
    free(r->slots);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static bool ensure_connected(struct imsauth_redis_revocation *r, int64_t now)
{
    if (r->rc)
        return true;
    if (now < r->next_connect_ms)
        return false;
    r->next_connect_ms = now + 1000;
    struct timeval tv = {r->timeout_ms / 1000, (r->timeout_ms % 1000) * 1000};
    redisContext *rc = redisConnectWithTimeout(r->host, r->port, tv);
    if (rc == NULL || rc->err) {
        rlog(r, IMSAUTH_LOG_WARN, "revocation: cannot connect to Redis");
        if (rc)
            redisFree(rc);
        return false;
    }
    redisSetTimeout(rc, tv);
    if (r->db) {
        redisReply *rep = redisCommand(rc, "SELECT %d", r->db);
        bool ok = rep && rep->type == REDIS_REPLY_STATUS;
        if (rep)
            freeReplyObject(rep);
        if (!ok) {
            redisFree(rc);
            return false;
        }
    }
    /* Named so operators (and tests) can tell the connection apart in CLIENT LIST; an ACL
     * refusing the command changes nothing. */
    redisReply *named = redisCommand(rc, "CLIENT SETNAME imsauth-revocation:%d", (int)getpid());
    if (named)
        freeReplyObject(named);
    r->rc = rc;
    return true;
}

static size_t slot_of(const struct imsauth_redis_revocation *r, const char *jti)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)jti; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return (size_t)(h % r->n_slots);
}

IMSAUTH_API enum imsauth_revocation imsauth_redis_revoked(const char *jti, int64_t exp, void *arg)
{
    struct imsauth_redis_revocation *r = arg;
    int64_t now = now_ms();
    bool cacheable = strlen(jti) <= JTI_MAX;
    struct slot *s = cacheable ? &r->slots[slot_of(r, jti)] : NULL;
    enum imsauth_revocation res = IMSAUTH_REVOCATION_UNKNOWN;
    pthread_mutex_lock(&r->lock);
    if (s && s->until_ms > now && strcmp(s->jti, jti) == 0) {
        res = s->revoked ? IMSAUTH_IS_REVOKED : IMSAUTH_NOT_REVOKED;
        goto out;
    }
    redisReply *rep = NULL;
    /* A kept connection may have died since the last check (Redis restarted, an idle
     * timeout): then one new connection is tried at once, so a Redis that is back answers
     * this check instead of failing it closed. */
    for (int attempt = 0;; attempt++) {
        bool kept = r->rc != NULL;
        if (!ensure_connected(r, now))
            goto out;
        rep = redisCommand(r->rc, "SISMEMBER %s %s", r->key, jti);
        if (rep != NULL && rep->type == REDIS_REPLY_INTEGER)
            break;
        rlog(r, IMSAUTH_LOG_WARN, "revocation: Redis query failed; reconnecting");
        if (rep)
            freeReplyObject(rep);
        redisFree(r->rc);
        r->rc = NULL;
        r->next_connect_ms = 0;
        if (!kept || attempt > 0)
            goto out;
    }
    res = rep->integer ? IMSAUTH_IS_REVOKED : IMSAUTH_NOT_REVOKED;
    freeReplyObject(rep);
    if (s) {
        snprintf(s->jti, sizeof(s->jti), "%s", jti);
        s->revoked = res == IMSAUTH_IS_REVOKED;
        s->until_ms = s->revoked ? exp * 1000 : now + r->cache_ms;
    }
out:
    pthread_mutex_unlock(&r->lock);
    return res;
}
