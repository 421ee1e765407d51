/*
 * lease: the eP-CSCF's client of the WAF lease API (waf-server/src/ims.c): a pooled IMS
 * identity lives as long as its registration, so the eP-CSCF renews the lease while the
 * registration lives and releases it when the registration ends (TS 24.371 7.3, 8.3).
 *
 *   POST {waf_url}/leases/{id}/renew     200 {"lease_id", "impi", "impu", "expires_at", ...}
 *   POST {waf_url}/leases/{id}/release   200 {"lease_id", "state": "released"}
 *
 * with an empty application/x-www-form-urlencoded body and HTTP Basic client
 * authentication (client_secret_basic: the client id and secret form-encoded, RFC 6749
 * 2.3.1) of a client allowed the scope ims.lease. The WAF answers 401 invalid_client,
 * 403 insufficient_scope, 404 invalid_lease, 409 lease_ended, 503 with Retry-After.
 *
 * The calls never block the caller: ep_lease_renew and ep_lease_release only queue the
 * request (bounded: with queue_max requests waiting a new one is dropped and counted), and
 * one background thread sends them over one kept libcurl connection, in order. Network
 * errors and 5xx are retried (at most 4 attempts, backoff 250 ms doubling up to 4 s, or the
 * answer's Retry-After up to 10 s) while other requests go on; 4xx are final. A release
 * makes a queued renew of the same lease moot: that renew is dropped silently (not
 * counted). The result of each request is only counted (ep_lease_stats) and logged.
 *
 * waf_url must be https://, or http:// on a loopback host (127.0.0.1, localhost, [::1]),
 * as the WAF itself allows plain HTTP only there: the client secret is sent with every
 * request. The secret is kept only in the prebuilt Authorization header, wiped on stop,
 * and never logged.
 *
 * libcurl's global initialisation runs once per process (pthread_once) in
 * ep_lease_client_start; a program that also uses libcurl elsewhere should call
 * curl_global_init itself before starting threads.
 */
#ifndef EP_LEASE_H
#define EP_LEASE_H

#include <stddef.h>
#include <stdint.h>

#define EP_LEASE_DEFAULT_TIMEOUT_MS 3000u
#define EP_LEASE_DEFAULT_QUEUE_MAX  4096u
#define EP_LEASE_ID_MAX             64u /* [0-9a-fA-F-], as libimspool's UUIDs */

struct ep_lease_client;

struct ep_lease_opts {
    const char *waf_url;       /* required: the WAF's issuer URL, e.g. https://waf.home1.net */
    const char *client_id;     /* required */
    const char *client_secret; /* required; copied into the handle, never logged */
    const char *ca_file;       /* NULL: the system's CA store */
    unsigned timeout_ms;       /* per request (connection included); 0: 3000 */
    size_t queue_max;          /* requests waiting (retries included); 0: 4096 */
    /* Optional: level is a syslog level (LOG_WARNING, ...); msg is one line (lease ids and
     * HTTP statuses, never the secret). Called on the client's thread, and on the caller's
     * thread for refused lease ids. */
    void (*log)(int level, const char *msg, void *arg);
    void *log_arg;
};

/*
 * Checks o, prepares the HTTP handle and starts the background thread (nothing is sent
 * yet). On success returns 0 and stores the handle in *out (owned by the caller:
 * ep_lease_client_stop). Returns -1 with a one-line reason in detail (when not NULL) for bad
 * options, no memory or no thread.
 */
int ep_lease_client_start(struct ep_lease_client **out, const struct ep_lease_opts *o, char *detail,
                          size_t dlen);

/*
 * Queue a renewal or a release of lease_id and return at once; any thread, until
 * ep_lease_client_stop. lease_id (copied) must be 1..64 of [0-9a-fA-F-]: another is refused
 * here, no request is made, and it counts as failed. A full queue counts as dropped.
 */
void ep_lease_renew(struct ep_lease_client *c, const char *lease_id);
void ep_lease_release(struct ep_lease_client *c, const char *lease_id);

/* Final outcomes so far: renewed and released (2xx; a release answered 409 lease_ended,
 * the lease having ended already, also counts as released), failed (other 4xx, attempts
 * used up, or a refused lease id), dropped (queue full, or left when stop timed out). */
struct ep_lease_stats {
    uint64_t renewed, released, failed, dropped;
};
void ep_lease_stats(const struct ep_lease_client *c, struct ep_lease_stats *s); /* any thread */

/*
 * Sends what is still queued, retries included, for at most timeout_ms more (what is left
 * then counts as dropped), joins the thread and frees c. Accepts NULL. No other call on c
 * may run or follow.
 */
void ep_lease_client_stop(struct ep_lease_client *c);

#endif
