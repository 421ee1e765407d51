/*
 * Token exchange (RFC 8693) at the token endpoint: how a portal that logs its users in
 * itself gets IMS tokens for them, and the anonymous pooled profile (TS 24.371 6.2.3).
 *
 * Portal assertion: subject_token_type urn:ietf:params:oauth:token-type:jwt and a
 * subject_token JWT the portal signed with a key of its registered JWKS: iss = the
 * portal's client_id, sub = the user at the portal, aud = the WAF's issuer (or token
 * endpoint URL), exp at most token.assertion_max_lifetime ahead, a jti accepted once. The
 * user is the web identity (issuer = the portal's client_id, subject = sub); its mapped
 * subscription gives impi and impu. A user without a mapping gets a temporary identity
 * from the client's pool when it has one (allow_pool), else invalid_grant.
 *
 * Anonymous profile: subject_token_type WAF_ANONYMOUS_TOKEN_TYPE and a subject_token the
 * portal chose for the anonymous web session (16..256 of [A-Za-z0-9._~-]); only clients
 * with a pool. The session holds one lease: asking again while it lives returns the same
 * identity. Exhaustion is 503 temporarily_unavailable with Retry-After.
 */
#include "clientauth.h"
#include "grants.h"
#include "ims.h"
#include "jose.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAF_ANONYMOUS_TOKEN_TYPE "urn:webrtc-ims:params:oauth:token-type:anonymous-session"
#define JWT_TOKEN_TYPE           "urn:ietf:params:oauth:token-type:jwt"
#define AT_TOKEN_TYPE            "urn:ietf:params:oauth:token-type:access_token"
#define IMS_SCOPE                "ims"

static bool session_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 16 || n > 256)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '~' || c == '-'))
            return false;
    }
    return true;
}

/* Verifies the portal's assertion; *sub gets the user. false after answering. */
static bool portal_user(struct waf_app *a, const struct waf_client *c, const char *jwt,
                        char sub[257], struct waf_resp *rs)
{
    if (c->jwks == NULL) {
        waf_oauth_error(rs, 400, "unauthorized_client",
                        "the client has no registered keys to verify its assertions");
        return false;
    }
    struct waf_jwt_facts facts;
    char why[200], desc[300];
    enum waf_client_jwt_result r = waf_client_jwt(a, c, jwt, NULL, false, &facts, why, sizeof(why));
    if (r == WAF_CLIENT_JWT_UNAVAILABLE) {
        waf_oauth_error(rs, 503, "temporarily_unavailable", why);
        waf_resp_header(rs, "Retry-After", "5");
        return false;
    }
    if (r != WAF_CLIENT_JWT_OK) {
        snprintf(desc, sizeof(desc), "subject_token rejected: %s", why);
        waf_oauth_error(rs, 400, "invalid_grant", desc);
        return false;
    }
    snprintf(sub, 257, "%s", facts.sub);
    return true;
}

void waf_grant_token_exchange(struct waf_app *a, const struct waf_client *c,
                              const struct waf_form *f, struct waf_resp *rs)
{
    static const char *const allowed[] = {
        "subject_token", "subject_token_type", "requested_token_type", "scope", "audience", NULL};
    if (!waf_grant_params_ok(f, allowed, "token-exchange", rs))
        return;
    if (!(c->grants & WAF_GRANT_TOKEN_EXCHANGE)) {
        waf_oauth_error(rs, 400, "unauthorized_client", "this client may not use token exchange");
        return;
    }
    const char *st = waf_form_get(f, "subject_token");
    const char *stt = waf_form_get(f, "subject_token_type");
    const char *rtt = waf_form_get(f, "requested_token_type");
    const char *aud = waf_form_get(f, "audience");
    if (st == NULL || stt == NULL) {
        waf_oauth_error(rs, 400, "invalid_request",
                        "subject_token and subject_token_type are required");
        return;
    }
    if (rtt && strcmp(rtt, AT_TOKEN_TYPE) != 0) {
        waf_oauth_error(rs, 400, "invalid_request", "only access tokens can be requested");
        return;
    }
    if (aud && strcmp(aud, c->audience) != 0) {
        waf_oauth_error(rs, 400, "invalid_target", "the client's tokens are for another audience");
        return;
    }
    const char *scope = waf_form_get(f, "scope");
    if (scope == NULL)
        scope = IMS_SCOPE;
    if (!waf_client_scopes_allowed(c, scope) || !waf_scope_has(scope, IMS_SCOPE)) {
        waf_oauth_error(rs, 400, "invalid_scope",
                        "an IMS token needs the scope ims, and only scopes allowed to the client");
        return;
    }
    struct waf_ims_id id = {0};
    char holder[200];
    if (strcmp(stt, JWT_TOKEN_TYPE) == 0) {
        char sub[257];
        if (!portal_user(a, c, st, sub, rs))
            return;
        enum waf_ims_result r = waf_ims_user(a, c->client_id, sub, &id);
        if (r == WAF_IMS_UNAVAILABLE) {
            waf_oauth_error(rs, 503, "temporarily_unavailable", "the database is unavailable");
            waf_resp_header(rs, "Retry-After", "5");
            goto out;
        }
        if (r == WAF_IMS_DISABLED) {
            waf_oauth_error(rs, 400, "invalid_grant", "this user is disabled");
            goto out;
        }
        if (r != WAF_IMS_FOUND) {
            if (c->allow_pool == NULL) {
                waf_oauth_error(rs, 400, "invalid_grant", "no IMS identity is mapped to this user");
                goto out;
            }
            waf_ims_holder(c->client_id, 'u', sub, holder);
            if (!waf_ims_lease(a, c->allow_pool, holder, &id, rs))
                goto out;
        }
    } else if (strcmp(stt, WAF_ANONYMOUS_TOKEN_TYPE) == 0) {
        if (c->allow_pool == NULL) {
            waf_oauth_error(rs, 400, "unauthorized_client",
                            "this client may not lease temporary identities");
            return;
        }
        if (!session_id_ok(st)) {
            waf_oauth_error(rs, 400, "invalid_request",
                            "an anonymous session id is 16..256 of [A-Za-z0-9._~-]");
            return;
        }
        waf_ims_holder(c->client_id, 'a', st, holder);
        if (!waf_ims_lease(a, c->allow_pool, holder, &id, rs))
            goto out;
    } else {
        waf_oauth_error(rs, 400, "invalid_request", "unsupported subject_token_type");
        return;
    }
    char *token = NULL;
    struct waf_issued is;
    if (!waf_mint(a, c, id.sub, scope, &id, &token, &is)) {
        if (id.lease[0])
            waf_ims_release(a, id.lease, "issue_failed");
        waf_oauth_error(rs, 500, "server_error", "could not issue the token");
        goto out;
    }
    waf_token_response(a, token, &is, scope, &id, NULL, true, rs);
out:
    waf_ims_id_clear(&id);
}
