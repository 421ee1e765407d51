/*
 * A ready revocation check for libimsauth backed by a Redis set (hiredis): a token is
 * revoked when its jti is a member of the set (default key "imsauth:revoked"), which the
 * WAF maintains. Results are cached locally: "revoked" until the token's exp, "not
 * revoked" for cache_ms (default 500), so a revocation reaches every verifier within
 * cache_ms. A local-cache miss costs one SISMEMBER round trip (bounded by timeout_ms)
 * on the verifying thread, under a lock shared by the threads using this object. When Redis
 * cannot answer, the check reports IMSAUTH_REVOCATION_UNKNOWN and the verification fails
 * closed (503). After a failed command the next check reconnects at once; after a failed
 * connection attempt the next one waits a second.
 */
#ifndef IMSAUTH_IMSAUTH_REDIS_H
#define IMSAUTH_IMSAUTH_REDIS_H

#include "imsauth/imsauth.h"

#ifdef __cplusplus
extern "C" {
#endif

struct imsauth_redis_opts {
    const char *url;      /* redis://host[:port][/db] (port 6379, db 0); required */
    const char *key;      /* set name; default "imsauth:revoked" */
    unsigned cache_ms;    /* negative-result lifetime; default 500 */
    unsigned timeout_ms;  /* connect and command timeout; default 200 */
    size_t cache_entries; /* local cache slots; default 4096 */
    imsauth_log_fn log;
    void *log_arg;
};

struct imsauth_redis_revocation;

/* Creates the checker (connects lazily). Caller owns *rp; free with
 * imsauth_redis_revocation_free after every context using it is freed. */
enum imsauth_result imsauth_redis_revocation_alloc(struct imsauth_redis_revocation **rp,
                                                   const struct imsauth_redis_opts *o, char *detail,
                                                   size_t detail_len);
void imsauth_redis_revocation_free(struct imsauth_redis_revocation *r);
/* The imsauth_revoked_fn: pass it as opts.revoked with the checker as opts.revoked_arg. */
enum imsauth_revocation imsauth_redis_revoked(const char *jti, int64_t exp, void *arg);

#ifdef __cplusplus
}
#endif
#endif
