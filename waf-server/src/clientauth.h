/*
 * Client authentication at the WAF's endpoints (RFC 6749 2.3): client_secret_basic (HTTP
 * Basic with form-encoded id and secret), client_secret_post (client_id and client_secret
 * in the body) and private_key_jwt (RFC 7523 2.2: a JWT signed by a key of the client's
 * registered JWKS, iss = sub = client_id, aud = the issuer or the endpoint's URL, accepted
 * once). Exactly one method per request. Also the one-time use of client-signed JWTs,
 * shared with token exchange's portal assertions.
 */
#ifndef WAF_CLIENTAUTH_H
#define WAF_CLIENTAUTH_H

#include "app.h"
#include "form.h"

#define WAF_ASSERTION_TYPE "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

/* The client_id the request claims (Basic user, client_id, or the iss of a client
 * assertion, not verified) into out; false when it names none. For rate limiting. */
bool waf_claimed_client(const struct waf_req *rq, const struct waf_form *f, char out[129]);

/*
 * Authenticates the calling client of rq (form f) at endpoint_url (the URL of the endpoint
 * called, accepted as a client assertion's aud besides the issuer). On success *out is a
 * referenced client (waf_client_put() it); false after answering 400/401/503 with the
 * RFC 6749 5.2 error. public_ok lets a public client name itself with client_id alone
 * (authorization code redemption); *out then has confidential false.
 */
bool waf_client_authenticate(struct waf_app *a, const struct waf_req *rq, const struct waf_form *f,
                             const char *endpoint_url, bool public_ok, struct waf_resp *rs,
                             const struct waf_client **out);

struct waf_jwt_facts;

enum waf_client_jwt_result {
    WAF_CLIENT_JWT_OK = 0,
    WAF_CLIENT_JWT_REJECTED,    /* no keys, bad signature, bad claims (why says which) */
    WAF_CLIENT_JWT_REPLAYED,    /* its jti was accepted before */
    WAF_CLIENT_JWT_UNAVAILABLE, /* the database could not record the jti */
};

/*
 * Verifies jwt as signed by client c with a key of its registered JWKS: iss = its
 * client_id, aud one of the issuer, the token endpoint URL and extra_aud (may be NULL),
 * exp at most token.assertion_max_lifetime ahead, sub = iss when client_assertion
 * (RFC 7523 3), and its jti not seen before (then recorded). *facts holds the claims on
 * success; why (one line, never the token or key material) the reason otherwise.
 */
enum waf_client_jwt_result waf_client_jwt(struct waf_app *a, const struct waf_client *c,
                                          const char *jwt, const char *extra_aud,
                                          bool client_assertion, struct waf_jwt_facts *facts,
                                          char *why, size_t why_len);

/* Records the jti of a JWT client_id signed, valid until exp: 1 first use, 0 replay, -1
 * database unavailable. Expired records are cleaned up on the way. */
int waf_jti_consume(struct waf_app *a, const char *client_id, const char *jti, int64_t exp);

#endif
