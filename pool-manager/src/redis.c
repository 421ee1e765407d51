/*
 * The Redis side of libimspool: lease events, per-pool counters, the expiry schedule.
 *
 * PostgreSQL stays the only authority. Everything here happens after the commit it
 * reports and never makes a call fail: when Redis cannot be reached the handle goes
 * degraded (one warning through the log callback), skips Redis, tries again at most once a
 * second, and on its way back rebuilds every key from PostgreSQL, because it missed
 * updates. A flushed or restarted-empty Redis is noticed by the missing epoch key, checked
 * in the same round trip as every update, and rebuilt the same way.
 */
#include "internal.h"

#include "ims_common/redis_url.h"

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CONNECT_TIMEOUT_MS 200
#define COMMAND_TIMEOUT_MS 500
#define RETRY_INTERVAL_MS  1000
#define STREAM_MAXLEN      "100000"
#define PREFIX_MAX         127

struct imspool_redis {
    struct ims_redis_url url; /* host, port, db, password */
    char prefix[PREFIX_MAX + 1];
    redisContext *rc;
    int64_t retry_at; /* monotonic ms before which no reconnect is tried */
    bool up, degraded_logged, dirty;
    long failures;
    char k_events[PREFIX_MAX + 8], k_expiry[PREFIX_MAX + 8], k_epoch[PREFIX_MAX + 8];
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void plog(struct imspool *p, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void plog(struct imspool *p, int level, const char *fmt, ...)
{
    if (p->log == NULL)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    imspool_oneline(line);
    p->log(level, line, p->log_arg);
}

enum imspool_result imspool_redis_init(struct imspool *p, const struct imspool_opts *o,
                                       char *detail, size_t dlen)
{
    p->log = o->log;
    p->log_arg = o->log_arg;
    if (o->redis_url == NULL || o->redis_url[0] == '\0')
        return IMSPOOL_OK;
    struct imspool_redis *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return IMSPOOL_ERR_NOMEM;
    if (!ims_redis_url_parse(o->redis_url, &r->url)) {
        free(r);
        imspool_detail(detail, dlen, "redis URL must be redis://[:password@]host[:port][/db]");
        return IMSPOOL_ERR_INVALID_ARG;
    }
    r->up = true; /* until proven otherwise */
    p->redis = r;
    if (o->redis_prefix && imspool_redis_set_prefix(p, o->redis_prefix) != IMSPOOL_OK) {
        imspool_redis_free(p);
        imspool_detail(detail, dlen, "redis prefix longer than %d bytes", PREFIX_MAX);
        return IMSPOOL_ERR_INVALID_ARG;
    }
    return IMSPOOL_OK;
}

enum imspool_result imspool_redis_set_prefix(struct imspool *p, const char *prefix)
{
    struct imspool_redis *r = p->redis;
    if (r == NULL)
        return IMSPOOL_OK;
    if (strlen(prefix) > PREFIX_MAX)
        return IMSPOOL_ERR_INVALID_ARG;
    snprintf(r->prefix, sizeof(r->prefix), "%s", prefix);
    snprintf(r->k_events, sizeof(r->k_events), "%sevents", prefix);
    snprintf(r->k_expiry, sizeof(r->k_expiry), "%sexpiry", prefix);
    snprintf(r->k_epoch, sizeof(r->k_epoch), "%sepoch", prefix);
    return IMSPOOL_OK;
}

bool imspool_redis_prefix_set(const struct imspool *p)
{
    return p->redis == NULL || p->redis->prefix[0] != '\0';
}

void imspool_redis_free(struct imspool *p)
{
    if (p->redis == NULL)
        return;
    if (p->redis->rc)
        redisFree(p->redis->rc);
    OPENSSL_cleanse(p->redis->url.password, sizeof(p->redis->url.password));
    free(p->redis);
    p->redis = NULL;
}

/* Drops the connection after a failed exchange and goes degraded. */
static void lost(struct imspool *p, const char *why)
{
    struct imspool_redis *r = p->redis;
    char reason[160]; /* why may point into the context freed here */
    snprintf(reason, sizeof(reason), "%s", why);
    if (r->rc)
        redisFree(r->rc);
    r->rc = NULL;
    r->up = false;
    r->dirty = true;
    r->failures++;
    r->retry_at = mono_ms() + RETRY_INTERVAL_MS;
    if (!r->degraded_logged) {
        r->degraded_logged = true;
        plog(p, 1, "redis %s:%d unavailable (%s): degraded, leases continue in PostgreSQL only",
             r->url.host, r->url.port, reason);
    }
}

static bool reply_ok(redisReply *rep)
{
    return rep && rep->type != REDIS_REPLY_ERROR;
}

/* Connected, or false (degraded). */
static bool connect_redis(struct imspool *p)
{
    struct imspool_redis *r = p->redis;
    if (r->rc)
        return true;
    if (mono_ms() < r->retry_at)
        return false;
    struct timeval ct = {0, CONNECT_TIMEOUT_MS * 1000};
    redisContext *rc = redisConnectWithTimeout(r->url.host, r->url.port, ct);
    if (rc == NULL || rc->err) {
        char why[128];
        snprintf(why, sizeof(why), "%s", rc ? rc->errstr : "out of memory");
        if (rc)
            redisFree(rc);
        lost(p, why);
        return false;
    }
    struct timeval tv = {0, COMMAND_TIMEOUT_MS * 1000};
    redisSetTimeout(rc, tv);
    r->rc = rc;
    redisReply *rep = NULL;
    bool ok = true;
    if (r->url.password[0]) {
        rep = redisCommand(rc, "AUTH %s", r->url.password);
        ok = reply_ok(rep);
        freeReplyObject(rep);
    }
    if (ok && r->url.db) {
        rep = redisCommand(rc, "SELECT %d", r->url.db);
        ok = reply_ok(rep);
        freeReplyObject(rep);
    }
    if (!ok) {
        lost(p, "AUTH or SELECT refused");
        return false;
    }
    return true;
}

/* Appends a command given as argv (binary safe). */
static void append(struct imspool *p, int argc, const char **argv)
{
    redisAppendCommandArgv(p->redis->rc, argc, argv, NULL);
}

/* Reads n replies. false (and degraded) when the connection failed; ints (optional) gets
 * the integers of the first two replies (-1 for another type). */
static bool collect(struct imspool *p, int n, long long ints[2])
{
    for (int i = 0; i < n; i++) {
        redisReply *rep = NULL;
        if (redisGetReply(p->redis->rc, (void **)&rep) != REDIS_OK || rep == NULL) {
            lost(p, p->redis->rc && p->redis->rc->errstr[0] ? p->redis->rc->errstr : "no reply");
            return false;
        }
        if (i < 2 && ints)
            ints[i] = rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
        freeReplyObject(rep);
    }
    return true;
}

static enum imspool_result rebuild(struct imspool *p, char *detail, size_t dlen);

/* Called after a successful exchange: back from degraded, and rebuilt when needed. */
static void healthy(struct imspool *p, bool epoch_missing)
{
    struct imspool_redis *r = p->redis;
    if (!r->up) {
        r->up = true;
        plog(p, 2, "redis %s:%d reachable again", r->url.host, r->url.port);
    }
    r->degraded_logged = false;
    if (epoch_missing || r->dirty) {
        char d[256];
        if (rebuild(p, d, sizeof(d)) == IMSPOOL_OK)
            plog(p, 2, "redis keys rebuilt from PostgreSQL (%s)",
                 epoch_missing ? "they were gone" : "updates were missed while degraded");
        else
            plog(p, 1, "redis rebuild failed: %s", d);
    }
}

/* Appends the commands of one event; returns how many replies they give. The first two
 * replies are EXISTS of the epoch and of the pool's counters. */
static int append_event(struct imspool *p, const struct imspool_event *e)
{
    struct imspool_redis *r = p->redis;
    char exp[24], hkey[160];
    snprintf(exp, sizeof(exp), "%lld", (long long)e->expires_ms);
    snprintf(hkey, sizeof(hkey), "%spool:%s", r->prefix, e->pool);
    const char *ex[] = {"EXISTS", r->k_epoch};
    append(p, 2, ex);
    const char *eh[] = {"EXISTS", hkey};
    append(p, 2, eh);
    const char *xa[] = {"XADD",        r->k_events,
                        "MAXLEN",      "~",
                        STREAM_MAXLEN, "*",
                        "type",        e->type,
                        "lease",       e->lease,
                        "pool",        e->pool,
                        "holder",      e->holder,
                        "impi",        e->impi,
                        "impu",        e->impu,
                        "expires_ms",  exp,
                        "reason",      e->reason ? e->reason : ""};
    append(p, (int)(sizeof(xa) / sizeof(xa[0])), xa);
    /* The counter named after the event type (allocated, renewed, released, expired). */
    bool opens = strcmp(e->type, "allocated") == 0, renews = strcmp(e->type, "renewed") == 0;
    const char *hi[] = {"HINCRBY", hkey, e->type, "1"};
    append(p, 4, hi);
    int n = 4;
    if (!renews) {
        const char *hl[] = {"HINCRBY", hkey, "leased", opens ? "1" : "-1"};
        append(p, 4, hl);
        n++;
    }
    if (opens || renews) {
        const char *za[] = {"ZADD", r->k_expiry, exp, e->lease};
        append(p, 4, za);
    } else {
        const char *zr[] = {"ZREM", r->k_expiry, e->lease};
        append(p, 3, zr);
    }
    return n + 1;
}

#define EVENTS_PER_ROUND_TRIP 256

void imspool_redis_events(struct imspool *p, const struct imspool_event *e, size_t count)
{
    if (p->redis == NULL)
        return;
    if (e == NULL) { /* the caller had no memory for them: rebuild when next reachable */
        p->redis->dirty = count > 0 || p->redis->dirty;
        return;
    }
    bool missing = false;
    for (size_t done = 0; done < count;) {
        if (!connect_redis(p))
            return;
        size_t batch = count - done < EVENTS_PER_ROUND_TRIP ? count - done : EVENTS_PER_ROUND_TRIP;
        int replies[EVENTS_PER_ROUND_TRIP];
        for (size_t i = 0; i < batch; i++)
            replies[i] = append_event(p, &e[done + i]);
        for (size_t i = 0; i < batch; i++) {
            long long found[2] = {-1, -1};
            if (!collect(p, replies[i], found))
                return; /* degraded; the rest waits for the rebuild */
            /* Counters gone (a flush, or a pool this Redis never saw): the increments just
               made started from zero, so rebuild once the batch is in. */
            missing = missing || found[0] == 0 || found[1] == 0;
        }
        done += batch;
    }
    if (count)
        healthy(p, missing);
}

void imspool_redis_members_changed(struct imspool *p, const char *pool)
{
    struct imspool_redis *r = p->redis;
    if (r == NULL || !connect_redis(p))
        return;
    enum imspool_result res_r = IMSPOOL_OK;
    char d[256];
    const char *params[] = {pool};
    PGresult *res = imspool_q(p,
                              "SELECT count(*), count(*) FILTER (WHERE m.state = 'disabled') "
                              "FROM pools pl JOIN pool_members m ON m.pool_id = pl.id "
                              "WHERE pl.name = $1",
                              1, params, &res_r, d, sizeof(d));
    if (res == NULL)
        return;
    char hkey[160];
    snprintf(hkey, sizeof(hkey), "%spool:%s", r->prefix, pool);
    const char *ex[] = {"EXISTS", r->k_epoch};
    append(p, 2, ex);
    const char *hs[] = {
        "HSET", hkey, "members", PQgetvalue(res, 0, 0), "disabled", PQgetvalue(res, 0, 1)};
    append(p, 6, hs);
    PQclear(res);
    long long found[2] = {-1, -1};
    if (collect(p, 2, found))
        healthy(p, found[0] == 0);
}

void imspool_redis_pool_deleted(struct imspool *p, const char *pool)
{
    struct imspool_redis *r = p->redis;
    if (r == NULL || !connect_redis(p))
        return;
    char hkey[160];
    snprintf(hkey, sizeof(hkey), "%spool:%s", r->prefix, pool);
    const char *del[] = {"DEL", hkey};
    append(p, 2, del);
    if (collect(p, 1, NULL))
        healthy(p, false);
}

/* Every key from PostgreSQL, in one MULTI/EXEC so that readers never see half of it. */
static enum imspool_result rebuild(struct imspool *p, char *detail, size_t dlen)
{
    struct imspool_redis *r = p->redis;
    enum imspool_result res_r = IMSPOOL_OK;
    PGresult *pools =
        imspool_q(p,
                  "SELECT pl.name, "
                  " (SELECT count(*) FROM pool_members m WHERE m.pool_id = pl.id), "
                  " (SELECT count(*) FROM pool_members m WHERE m.pool_id = pl.id "
                  "   AND m.state = 'disabled'), "
                  " count(l.id) FILTER (WHERE l.released_at IS NULL), count(l.id), "
                  " coalesce(sum(l.renew_count), 0), "
                  " count(l.id) FILTER (WHERE l.release_reason <> 'expired'), "
                  " count(l.id) FILTER (WHERE l.release_reason = 'expired') "
                  "FROM pools pl LEFT JOIN leases l ON l.pool_id = pl.id GROUP BY pl.id, pl.name",
                  0, NULL, &res_r, detail, dlen);
    if (pools == NULL)
        return res_r;
    PGresult *open = imspool_q(p,
                               "SELECT id, (extract(epoch FROM expires_at) * 1000)::bigint "
                               "FROM leases WHERE released_at IS NULL",
                               0, NULL, &res_r, detail, dlen);
    if (open == NULL) {
        PQclear(pools);
        return res_r;
    }
    int n = 0;
    const char *multi[] = {"MULTI"};
    append(p, 1, multi);
    n++;
    static const char *const fields[] = {"members", "disabled", "leased", "allocated",
                                         "renewed", "released", "expired"};
    for (int i = 0; i < PQntuples(pools); i++) {
        char hkey[160];
        snprintf(hkey, sizeof(hkey), "%spool:%s", r->prefix, PQgetvalue(pools, i, 0));
        const char *del[] = {"DEL", hkey};
        append(p, 2, del);
        const char *hs[16] = {"HSET", hkey};
        for (int f = 0; f < 7; f++) {
            hs[2 + 2 * f] = fields[f];
            hs[3 + 2 * f] = PQgetvalue(pools, i, 1 + f);
        }
        append(p, 16, hs);
        n += 2;
    }
    const char *dz[] = {"DEL", r->k_expiry};
    append(p, 2, dz);
    n++;
    for (int i = 0; i < PQntuples(open);) {
        const char *za[2 + 2 * 500] = {"ZADD", r->k_expiry};
        int k = 0;
        for (; k < 500 && i < PQntuples(open); k++, i++) {
            za[2 + 2 * k] = PQgetvalue(open, i, 1);
            za[3 + 2 * k] = PQgetvalue(open, i, 0);
        }
        append(p, 2 + 2 * k, za);
        n++;
    }
    char now[24];
    snprintf(now, sizeof(now), "%lld", (long long)p->clock(p->clock_arg));
    const char *se[] = {"SET", r->k_epoch, now};
    append(p, 3, se);
    const char *xa[] = {"XADD", r->k_events, "MAXLEN",  "~",     STREAM_MAXLEN,
                        "*",    "type",      "rebuilt", "epoch", now};
    append(p, 10, xa);
    const char *exec[] = {"EXEC"};
    append(p, 1, exec);
    n += 3;
    PQclear(pools);
    PQclear(open);
    if (!collect(p, n, NULL)) {
        imspool_detail(detail, dlen, "redis failed during the rebuild");
        return IMSPOOL_ERR_DB_UNAVAILABLE;
    }
    r->dirty = false;
    return IMSPOOL_OK;
}

IMSPOOL_API enum imspool_result imspool_redis_rebuild(struct imspool *p, char *detail, size_t dlen)
{
    imspool_detail(detail, dlen, "%s", "");
    if (p->redis == NULL) {
        imspool_detail(detail, dlen, "no Redis configured");
        return IMSPOOL_ERR_INVALID_ARG;
    }
    p->redis->retry_at = 0; /* an explicit request tries now */
    if (!connect_redis(p)) {
        imspool_detail(detail, dlen, "redis %s:%d unavailable", p->redis->url.host,
                       p->redis->url.port);
        return IMSPOOL_ERR_DB_UNAVAILABLE;
    }
    enum imspool_result r = rebuild(p, detail, dlen);
    if (r == IMSPOOL_OK)
        healthy(p, false);
    return r;
}

IMSPOOL_API enum imspool_result imspool_next_expiry(struct imspool *p, int64_t *when_ms,
                                                    char *detail, size_t dlen)
{
    *when_ms = 0;
    struct imspool_redis *r = p->redis;
    if (r && connect_redis(p)) {
        const char *ex[] = {"EXISTS", r->k_epoch};
        append(p, 2, ex);
        const char *zr[] = {"ZRANGE", r->k_expiry, "0", "0", "WITHSCORES"};
        append(p, 5, zr);
        redisReply *a = NULL, *b = NULL;
        bool ok = redisGetReply(r->rc, (void **)&a) == REDIS_OK &&
                  redisGetReply(r->rc, (void **)&b) == REDIS_OK && a && b;
        bool have =
            ok && a->type == REDIS_REPLY_INTEGER && a->integer == 1 && b->type == REDIS_REPLY_ARRAY;
        bool missing = ok && a->type == REDIS_REPLY_INTEGER && a->integer == 0;
        if (have && b->elements == 2 && b->element[1]->type == REDIS_REPLY_STRING)
            *when_ms = atoll(b->element[1]->str);
        freeReplyObject(a);
        freeReplyObject(b);
        if (!ok) {
            lost(p, "no reply");
        } else {
            healthy(p, missing); /* rebuilds a flushed schedule for the next call */
            if (have)
                return IMSPOOL_OK;
        }
    }
    enum imspool_result res_r = IMSPOOL_OK;
    PGresult *res = imspool_q(p,
                              "SELECT (extract(epoch FROM min(expires_at)) * 1000)::bigint "
                              "FROM leases WHERE released_at IS NULL",
                              0, NULL, &res_r, detail, dlen);
    if (res == NULL)
        return res_r;
    if (!PQgetisnull(res, 0, 0))
        *when_ms = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    return IMSPOOL_OK;
}

IMSPOOL_API void imspool_health(const struct imspool *p, struct imspool_health *h)
{
    memset(h, 0, sizeof(*h));
    h->db_retries = p->retries;
    h->db_reconnects = p->reconnects;
    if (p->redis) {
        h->redis_configured = 1;
        h->redis_up = p->redis->up;
        h->redis_failures = p->redis->failures;
    }
}
