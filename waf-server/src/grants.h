/*
 * The grants of the token endpoint besides client_credentials (oauth.c): token exchange
 * (RFC 8693: portal assertions and the anonymous pooled profile, exchange.c), the
 * authorization code (RFC 6749 4.1 with PKCE) and refresh tokens (authorize.c). Each is
 * called with the authenticated client and answers the request.
 */
#ifndef WAF_GRANTS_H
#define WAF_GRANTS_H

#include "app.h"
#include "form.h"

#define WAF_GRANT_EXCHANGE_URN "urn:ietf:params:oauth:grant-type:token-exchange"

/* Checks the media type (application/x-www-form-urlencoded) and parses the body into *f
 * (caller frees); false after answering 400. */
bool waf_read_form(const struct waf_req *rq, struct waf_resp *rs, struct waf_form **f);

/* False after answering 400 invalid_request when f holds a token-endpoint parameter that
 * is not in allowed (NULL-terminated) for this grant; unknown parameters are ignored. */
bool waf_grant_params_ok(const struct waf_form *f, const char *const *allowed, const char *grant,
                         struct waf_resp *rs);

void waf_grant_token_exchange(struct waf_app *a, const struct waf_client *c,
                              const struct waf_form *f, struct waf_resp *rs);
void waf_grant_authorization_code(struct waf_app *a, const struct waf_client *c,
                                  const struct waf_form *f, struct waf_resp *rs);
void waf_grant_refresh_token(struct waf_app *a, const struct waf_client *c,
                             const struct waf_form *f, struct waf_resp *rs);

/* Revokes the refresh family of token when token is a refresh token of client c (or c is
 * an admin client), with the access tokens it issued and its pooled lease: 1 revoked, 0 not
 * a refresh token of c, -1 database unavailable. */
int waf_revoke_refresh(struct waf_app *a, const struct waf_client *c, const char *token);

#endif
