/*
 * revfeed: the eP-CSCF's subscriber of the WAF's revocation feed.
 *
 * waf-server adds each revoked jti to a Redis set (libimsauth reads it when a token is
 * presented) and, in the same pipeline, PUBLISHes the jti on <set_key>:feed
 * (waf-server/src/wredis.h). The eP-CSCF subscribes to that channel to end the live
 * registrations and calls of a revoked token at once instead of at the token's next check.
 *
 * One thread of its own, with hiredis' blocking API (RESP2): connect (AUTH and SELECT from
 * the URL), SUBSCRIBE, then wait for messages in slices of 200 ms so that ep_revfeed_stop
 * returns promptly, PING when the connection has been quiet for a while (a dead peer is
 * noticed within about 10 s). On any error it drops the connection, waits reconnect_ms and
 * tries again, forever. Pub/sub delivers at most once: what is published while the feed is
 * disconnected is lost, so after every (re)connect, once the subscription is active,
 * on_resync lets the owner check its live tokens against the set.
 *
 * Callbacks run on the feed thread, one at a time; they must not block for long (nothing is
 * read meanwhile) and must not call ep_revfeed_stop. Typically they post to the owner's
 * event loop.
 *
 * Secrets: the Redis password (from the URL) is kept only in the handle and wiped when it
 * is freed; nothing is printed (messages go to the optional log callback, without jti values
 * or the password).
 */
#ifndef EP_REVFEED_H
#define EP_REVFEED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EP_REVFEED_DEFAULT_SET_KEY      "imsauth:revoked"
#define EP_REVFEED_DEFAULT_RECONNECT_MS 500u
#define EP_REVFEED_JTI_MAX              255u /* longer (or binary) messages are ignored */

struct ep_revfeed;

struct ep_revfeed_opts {
    const char *redis_url; /* required: redis://[:password@]host[:port][/db] */
    const char *channel;   /* NULL: <set_key>:feed */
    const char *set_key;   /* NULL: EP_REVFEED_DEFAULT_SET_KEY (for ep_revfeed_is_revoked) */
    /* Required. Runs on the feed thread for each revoked jti (borrowed, NUL-terminated,
     * valid during the call). */
    void (*on_revoked)(const char *jti, void *arg);
    /* Optional. Runs on the feed thread after every (re)connect, the first one included,
     * once the subscription is active: the owner re-checks its live tokens against the set
     * (it may call ep_revfeed_is_revoked), since it may have missed messages. */
    void (*on_resync)(void *arg);
    void *arg;
    unsigned reconnect_ms; /* delay between connection attempts; 0: 500 */
    /* Optional: level is a syslog level (LOG_WARNING, LOG_INFO, ...); msg is one line.
     * Called on the feed thread (connection lost, connected again) and on the threads of
     * ep_revfeed_is_revoked. */
    void (*log)(int level, const char *msg, void *arg);
};

/*
 * Checks o, copies what it needs and starts the feed thread; the connection is made by the
 * thread, so a Redis that is down makes no difference here. On success returns 0 and stores
 * the handle in *out (owned by the caller: ep_revfeed_stop). Returns -1 with a one-line
 * reason in detail (when not NULL) for bad options, no memory or no thread.
 */
int ep_revfeed_start(struct ep_revfeed **out, const struct ep_revfeed_opts *o, char *detail,
                     size_t dlen);

/*
 * SISMEMBER set_key jti over a connection of its own (not the subscription), opened on
 * first use and kept; thread-safe (one call at a time, behind a mutex). Returns 1 revoked,
 * 0 not, -1 unknown (Redis unreachable or refusing; after a failed connection attempt the
 * next one waits reconnect_ms, or until the feed has subscribed again). A kept connection
 * found dead is replaced once within the call. One round trip normally; each step has a
 * 200 ms timeout, so about 1 s at worst: an event loop should not call it per message.
 */
int ep_revfeed_is_revoked(struct ep_revfeed *f, const char *jti);

/* True while the subscription is active (for /healthz and metrics); any thread. */
bool ep_revfeed_connected(const struct ep_revfeed *f);

/* Subscriptions made after the first one (connection lost and made again); any thread. */
uint64_t ep_revfeed_reconnects(const struct ep_revfeed *f);

/* Stops the thread (it notices within about 200 ms; a callback running then finishes
 * first), joins it and frees f. Accepts NULL. Not from a callback. */
void ep_revfeed_stop(struct ep_revfeed *f);

#endif
