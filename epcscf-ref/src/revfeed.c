/* The revocation feed subscriber (see revfeed.h). */
#include "revfeed.h"

#include "ims_common/redis_url.h"

#include <glib.h>
#include <openssl/crypto.h> /* OPENSSL_cleanse: wipes secrets */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#define IO_TIMEOUT_MS 200  /* connect, commands, and the slices the feed thread waits in */
#define QUIET_PING_MS 5000 /* PING after this long without a byte from Redis ... */
#define PONG_WAIT_MS  5000 /* ... and give the connection up if nothing came after it */
#define KEY_MAX       256  /* set key and channel names */

struct ep_revfeed {
    struct ims_redis_url url; /* password wiped in ep_revfeed_stop */
    char *channel, *set_key;
    void (*on_revoked)(const char *jti, void *arg);
    void (*on_resync)(void *arg);
    void (*log)(int level, const char *msg, void *arg);
    void *arg;
    unsigned reconnect_ms;

    pthread_t thread;
    pthread_mutex_t wake_lock; /* with wake: ep_revfeed_stop interrupts the reconnect delay */
    pthread_cond_t wake;
    atomic_bool stop, connected;
    atomic_uint_least64_t reconnects;

    pthread_mutex_t check_lock; /* the SISMEMBER connection and its retry time */
    redisContext *check;
    int64_t check_next_ms;
};

/* Monotonic milliseconds (GLib's clock, as the rest of the eP-CSCF). */
static int64_t now_ms(void)
{
    return g_get_monotonic_time() / 1000;
}

static void flog(const struct ep_revfeed *f, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void flog(const struct ep_revfeed *f, int level, const char *fmt, ...)
{
    if (f->log == NULL)
        return;
    char msg[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    f->log(level, msg, f->arg);
}

static void detail_set(char *detail, size_t dlen, const char *msg)
{
    if (detail && dlen)
        snprintf(detail, dlen, "%s", msg);
}

/* A command on c that must not fail; false when it did (the reply freed). */
static bool command_ok(redisContext *c, int argc, const char **argv)
{
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    bool ok = r != NULL && r->type != REDIS_REPLY_ERROR;
    freeReplyObject(r);
    return ok;
}

/* A new connection with IO_TIMEOUT_MS timeouts, authenticated and on the URL's database,
 * or NULL with the reason in why. */
static redisContext *redis_open(const struct ep_revfeed *f, char *why, size_t wlen)
{
    struct timeval tv = {0, IO_TIMEOUT_MS * 1000};
    redisContext *c = redisConnectWithTimeout(f->url.host, f->url.port, tv);
    if (c == NULL || c->err) {
        snprintf(why, wlen, "cannot connect to %s:%d: %s", f->url.host, f->url.port,
                 c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    redisEnableKeepAlive(c);
    if (f->url.password[0]) {
        const char *auth[] = {"AUTH", f->url.password};
        if (!command_ok(c, 2, auth)) {
            snprintf(why, wlen, "AUTH refused by %s:%d", f->url.host, f->url.port);
            redisFree(c);
            return NULL;
        }
    }
    if (f->url.db) {
        char db[16];
        snprintf(db, sizeof(db), "%d", f->url.db);
        const char *sel[] = {"SELECT", db};
        if (!command_ok(c, 2, sel)) {
            snprintf(why, wlen, "SELECT %d refused by %s:%d", f->url.db, f->url.host, f->url.port);
            redisFree(c);
            return NULL;
        }
    }
    return c;
}

/* Waits ms or until ep_revfeed_stop. */
static void pause_ms(struct ep_revfeed *f, unsigned ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&f->wake_lock);
    while (!atomic_load(&f->stop) && pthread_cond_timedwait(&f->wake, &f->wake_lock, &ts) == 0)
        ;
    pthread_mutex_unlock(&f->wake_lock);
}

/* A connection subscribed to the channel (the confirmation read), or NULL. */
static redisContext *subscribe(struct ep_revfeed *f, char *why, size_t wlen)
{
    redisContext *c = redis_open(f, why, wlen);
    if (c == NULL)
        return NULL;
    const char *sub[] = {"SUBSCRIBE", f->channel};
    redisReply *r = redisCommandArgv(c, 2, sub, NULL);
    bool ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
              r->element[0]->type == REDIS_REPLY_STRING &&
              strcmp(r->element[0]->str, "subscribe") == 0;
    if (!ok) {
        snprintf(why, wlen, "SUBSCRIBE failed: %s",
                 r == NULL                      ? c->errstr
                 : r->type == REDIS_REPLY_ERROR ? r->str
                                                : "unexpected reply");
        freeReplyObject(r);
        redisFree(c);
        return NULL;
    }
    freeReplyObject(r);
    return c;
}

/* A reply on the subscribed connection: a message of our channel goes to on_revoked;
 * PING's answer and anything else are ignored. */
static void handle(struct ep_revfeed *f, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3)
        return;
    const redisReply *kind = r->element[0], *chan = r->element[1], *msg = r->element[2];
    if (kind->type != REDIS_REPLY_STRING || strcmp(kind->str, "message") != 0 ||
        chan->type != REDIS_REPLY_STRING || strcmp(chan->str, f->channel) != 0 ||
        msg->type != REDIS_REPLY_STRING)
        return;
    if (msg->len == 0 || msg->len > EP_REVFEED_JTI_MAX || memchr(msg->str, '\0', msg->len)) {
        flog(f, LOG_WARNING, "revocation feed: ignored a message of %zu bytes (not a jti)",
             msg->len);
        return;
    }
    f->on_revoked(msg->str, f->arg);
}

/* Reads the subscription until an error or ep_revfeed_stop; the reason in why. */
static void listen_feed(struct ep_revfeed *f, redisContext *c, char *why, size_t wlen)
{
    int64_t last_rx = now_ms(), ping_sent = 0;
    while (!atomic_load(&f->stop)) {
        void *rep = NULL;
        if (redisGetReplyFromReader(c, &rep) != REDIS_OK) {
            snprintf(why, wlen, "%s", c->errstr);
            return;
        }
        if (rep) {
            ping_sent = 0;
            handle(f, rep);
            freeReplyObject(rep);
            continue;
        }
        int64_t now = now_ms();
        if (ping_sent && now - ping_sent >= PONG_WAIT_MS) {
            snprintf(why, wlen, "no answer to PING for %d ms", PONG_WAIT_MS);
            return;
        }
        if (!ping_sent && now - last_rx >= QUIET_PING_MS) {
            int done = 0;
            redisAppendCommand(c, "PING");
            while (!done)
                if (redisBufferWrite(c, &done) != REDIS_OK) {
                    snprintf(why, wlen, "%s", c->errstr);
                    return;
                }
            ping_sent = now;
        }
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int n = poll(&pfd, 1, IO_TIMEOUT_MS);
        if (n < 0 && errno != EINTR) {
            snprintf(why, wlen, "poll: %s", strerror(errno));
            return;
        }
        if (n > 0) {
            if (redisBufferRead(c) != REDIS_OK) { /* also the server closing the connection */
                snprintf(why, wlen, "%s", c->errstr);
                return;
            }
            last_rx = now_ms();
        }
    }
}

static void *feed_main(void *arg)
{
    struct ep_revfeed *f = arg;
    bool first = true, failing = false;
    char why[512];
    while (!atomic_load(&f->stop)) {
        redisContext *c = subscribe(f, why, sizeof(why));
        if (c == NULL) {
            if (!failing) /* once per outage */
                flog(f, LOG_WARNING, "revocation feed: %s; retrying every %u ms", why,
                     f->reconnect_ms);
            failing = true;
            pause_ms(f, f->reconnect_ms);
            continue;
        }
        if (!first)
            atomic_fetch_add(&f->reconnects, 1);
        flog(f, LOG_INFO, "revocation feed: subscribed to %s%s", f->channel, first ? "" : " again");
        first = failing = false;
        pthread_mutex_lock(&f->check_lock);
        f->check_next_ms = 0; /* Redis answers again: no wait for ep_revfeed_is_revoked */
        pthread_mutex_unlock(&f->check_lock);
        atomic_store(&f->connected, true);
        if (f->on_resync)
            f->on_resync(f->arg);
        why[0] = '\0';
        listen_feed(f, c, why, sizeof(why));
        atomic_store(&f->connected, false);
        redisFree(c);
        if (!atomic_load(&f->stop)) {
            flog(f, LOG_WARNING, "revocation feed: connection lost (%s); reconnecting", why);
            pause_ms(f, f->reconnect_ms);
        }
    }
    return NULL;
}

static bool key_ok(const char *k)
{
    return k != NULL && k[0] != '\0' && strlen(k) <= KEY_MAX;
}

static void free_handle(struct ep_revfeed *f)
{
    redisFree(f->check);
    OPENSSL_cleanse(&f->url, sizeof(f->url));
    free(f->channel);
    free(f->set_key);
    pthread_mutex_destroy(&f->check_lock);
    pthread_mutex_destroy(&f->wake_lock);
    pthread_cond_destroy(&f->wake);
    free(f);
}

int ep_revfeed_start(struct ep_revfeed **out, const struct ep_revfeed_opts *o, char *detail,
                     size_t dlen)
{
    if (out == NULL || o == NULL || o->redis_url == NULL || o->on_revoked == NULL) {
        detail_set(detail, dlen, "redis_url and on_revoked are required");
        return -1;
    }
    const char *set_key = o->set_key ? o->set_key : EP_REVFEED_DEFAULT_SET_KEY;
    if (!key_ok(set_key) || (o->channel && !key_ok(o->channel))) {
        detail_set(detail, dlen, "set_key and channel must be 1..256 bytes");
        return -1;
    }
    struct ep_revfeed *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        detail_set(detail, dlen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&f->check_lock, NULL);
    pthread_mutex_init(&f->wake_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&f->wake, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&f->stop, false);
    atomic_init(&f->connected, false);
    atomic_init(&f->reconnects, 0);
    if (!ims_redis_url_parse(o->redis_url, &f->url)) {
        detail_set(detail, dlen, "redis_url must be redis://[:password@]host[:port][/db]");
        goto fail;
    }
    f->set_key = strdup(set_key);
    if (o->channel)
        f->channel = strdup(o->channel);
    else if (f->set_key && (f->channel = malloc(strlen(set_key) + sizeof(":feed"))) != NULL)
        sprintf(f->channel, "%s:feed", set_key);
    if (f->set_key == NULL || f->channel == NULL) {
        detail_set(detail, dlen, "out of memory");
        goto fail;
    }
    f->on_revoked = o->on_revoked;
    f->on_resync = o->on_resync;
    f->log = o->log;
    f->arg = o->arg;
    f->reconnect_ms = o->reconnect_ms ? o->reconnect_ms : EP_REVFEED_DEFAULT_RECONNECT_MS;
    if (pthread_create(&f->thread, NULL, feed_main, f) != 0) {
        detail_set(detail, dlen, "cannot start the feed thread");
        goto fail;
    }
    *out = f;
    return 0;
fail:
    free_handle(f);
    return -1;
}

/* Under check_lock: SISMEMBER on the kept connection, opened first when there is none
 * (unless a connection failed less than reconnect_ms ago). 1, 0 or -1; a connection that
 * gave no reply is dropped. */
static int sismember(struct ep_revfeed *f, const char *jti)
{
    char why[512];
    bool fresh = false;
    if (f->check == NULL) {
        if (now_ms() < f->check_next_ms)
            return -1;
        f->check = redis_open(f, why, sizeof(why));
        if (f->check == NULL) {
            f->check_next_ms = now_ms() + f->reconnect_ms;
            flog(f, LOG_WARNING, "revocation check: %s", why);
            return -1;
        }
        fresh = true;
    }
    const char *argv[] = {"SISMEMBER", f->set_key, jti};
    redisReply *r = redisCommandArgv(f->check, 3, argv, NULL);
    int rc = -1;
    if (r && r->type == REDIS_REPLY_INTEGER) {
        rc = r->integer == 1;
    } else if (r) { /* an error reply (e.g. WRONGTYPE): the connection itself is fine */
        flog(f, LOG_WARNING, "revocation check: SISMEMBER %s: %s", f->set_key,
             r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    } else {
        flog(f, LOG_WARNING, "revocation check: %s", f->check->errstr);
        redisFree(f->check);
        f->check = NULL;
        if (fresh)
            f->check_next_ms = now_ms() + f->reconnect_ms;
    }
    freeReplyObject(r);
    return rc;
}

int ep_revfeed_is_revoked(struct ep_revfeed *f, const char *jti)
{
    if (f == NULL || jti == NULL)
        return -1;
    pthread_mutex_lock(&f->check_lock);
    bool kept = f->check != NULL;
    int rc = sismember(f, jti);
    if (rc < 0 && kept && f->check == NULL) /* the kept one had died (Redis restarted): */
        rc = sismember(f, jti);             /* once more on a new connection */
    pthread_mutex_unlock(&f->check_lock);
    return rc;
}

bool ep_revfeed_connected(const struct ep_revfeed *f)
{
    return f != NULL && atomic_load(&f->connected);
}

uint64_t ep_revfeed_reconnects(const struct ep_revfeed *f)
{
    return f ? (uint64_t)atomic_load(&f->reconnects) : 0;
}

void ep_revfeed_stop(struct ep_revfeed *f)
{
    if (f == NULL)
        return;
    pthread_mutex_lock(&f->wake_lock);
    atomic_store(&f->stop, true);
    pthread_cond_broadcast(&f->wake);
    pthread_mutex_unlock(&f->wake_lock);
    pthread_join(f->thread, NULL);
    free_handle(f);
}
