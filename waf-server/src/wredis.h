/*
 * The WAF's Redis connection (revocations now; rate limits later): one connection per
 * worker thread would be wasteful for these rare calls, so one connection behind a mutex,
 * reconnected on the next call after a failure, with short timeouts.
 */
#ifndef WAF_WREDIS_H
#define WAF_WREDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct waf_redis;

/* url: redis://[:password@]host[:port][/db] (checked when connecting). */
struct waf_redis *waf_redis_new(const char *url);
void waf_redis_free(struct waf_redis *r); /* accepts NULL */

/* Adds jti to the revoked set (read by libimsauth) and remembers its expiry so that it is
 * removed once the token has expired anyway (plus leeway); in the same pipeline, after the
 * SADD, publishes jti on the channel <set_key>:feed ("imsauth:revoked:feed" by default) so
 * that subscribers (the eP-CSCF's revocation feed) can end live sessions at once instead of
 * at their next check; also removes up to 100 such expired entries. A subscriber that was
 * disconnected misses messages and re-reads the set. false when Redis cannot be reached or
 * refuses. */
bool waf_redis_revoke(struct waf_redis *r, const char *set_key, const char *jti, int64_t exp);

/*
 * Counts one hit on key in the current fixed window of window_s seconds (INCRBY of
 * key:<window number>, expiring with the window; limits of 200 or more are reserved from
 * Redis in chunks of limit/200 and spent locally, so most hits cost no round trip and the
 * instances together still stay within limit). Returns 1 when the hit is within limit,
 * 0 when over it (*retry_after_s: seconds until the window ends), -1 when Redis cannot be
 * reached (the caller decides; waf-server lets the request through).
 */
int waf_redis_hit(struct waf_redis *r, const char *key, long limit, long window_s,
                  long *retry_after_s);

/* PING. */
bool waf_redis_ping(struct waf_redis *r);

#endif
