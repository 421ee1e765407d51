/*
 * libimspool handles for the HTTP worker threads. A libimspool handle serves one thread at
 * a time, so the WAF keeps a small set of them: a request takes one for the pool calls it
 * makes (allocate, renew, release, stats) and gives it back. Handles are opened lazily on
 * first use, so the WAF starts without PostgreSQL-side pool work, and a handle whose
 * connection broke recovers inside libimspool (reconnect and retry).
 */
#ifndef WAF_WPOOL_H
#define WAF_WPOOL_H

#include <imspool/imspool.h>
#include <stddef.h>

struct waf_pools;

/* db_url and redis_url (NULL: no Redis side) are copied. At most size handles. NULL
 * without memory. Caller frees with waf_pools_free(). */
struct waf_pools *waf_pools_new(const char *db_url, const char *redis_url, int size);
void waf_pools_free(struct waf_pools *ps); /* accepts NULL */

/* Takes a handle (waits while all are in use; opens one when none is open yet). NULL when
 * no handle can be opened (the database is unreachable); detail says why. Give it back
 * with waf_pools_put(). */
struct imspool *waf_pools_get(struct waf_pools *ps, char *detail, size_t detail_len);
void waf_pools_put(struct waf_pools *ps, struct imspool *p); /* accepts NULL */

#endif
