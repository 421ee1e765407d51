/*
 * IMS identities for tokens (TS 24.371 6.2.2, 6.2.3): the subscription a web identity is
 * mapped to (identity_mappings: its IMPI, the default IMPU first, barred IMPUs left out),
 * and temporary identities leased from a pool through libimspool, with the lease API the
 * eP-CSCF calls when a registration ends or lives on (POST /leases/{id}/renew|release).
 */
#ifndef WAF_IMS_H
#define WAF_IMS_H

#include "issue.h"

enum waf_ims_result {
    WAF_IMS_FOUND = 0,
    WAF_IMS_NO_IDENTITY, /* no such web identity */
    WAF_IMS_UNMAPPED,    /* the web identity exists but has no usable subscription */
    WAF_IMS_DISABLED,    /* the web identity is disabled */
    WAF_IMS_UNAVAILABLE, /* the database cannot be reached */
};

/* The identity of web user (issuer, subject) into *out (cleared first; on WAF_IMS_UNMAPPED
 * out->web_identity_id is set). Uses the oldest mapping whose subscription is active and
 * whose default IMPU is not barred. */
enum waf_ims_result waf_ims_user(struct waf_app *a, const char *issuer, const char *subject,
                                 struct waf_ims_id *out);
/* The same for a known web identity id (on the caller's connection c, inside its
 * transaction if it has one). */
enum waf_ims_result waf_ims_mapped_on(PGconn *c, int64_t web_identity_id, struct waf_ims_id *out);
/* The same for a known web identity id. */
enum waf_ims_result waf_ims_mapped(struct waf_app *a, int64_t web_identity_id,
                                   struct waf_ims_id *out);

/* The lease holder name for a user of client_id: "<client_id>/<kind>:<SHA-256 of subject,
 * base64url>" (kind 'u' for a portal user, 'a' for an anonymous session), at most 200
 * characters, revealing nothing of the subject. */
void waf_ims_holder(const char *client_id, char kind, const char *subject, char out[200]);

/*
 * Leases an identity of pool for holder into *out (cleared first): a new lease, or the
 * holder's open lease renewed when it has one (the same user gets the same IMPU back while
 * its lease lives, WWS-04). false after answering: 503 temporarily_unavailable with
 * Retry-After when the pool is exhausted or draining or the database is down.
 */
bool waf_ims_lease(struct waf_app *a, const char *pool, const char *holder, struct waf_ims_id *out,
                   struct waf_resp *rs);

/* waf_ims_lease with the caller's database connection for the lookup it may need (so a
 * caller holding a connection never waits for a second one); conn NULL takes one. */
bool waf_ims_lease_on(struct waf_app *a, PGconn *conn, const char *pool, const char *holder,
                      struct waf_ims_id *out, struct waf_resp *rs);

/* Renews an open lease for the pool's lease_ttl_s into *out: 1 renewed, 0 the lease has
 * ended, -1 unavailable. */
int waf_ims_renew(struct waf_app *a, const char *lease_id, struct waf_ims_id *out);

/* Ends a lease (reason, e.g. "revoked"). 0 ended or already ended/unknown, -1 unavailable. */
int waf_ims_release(struct waf_app *a, const char *lease_id, const char *reason);

#endif
