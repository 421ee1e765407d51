/*
 * Access tokens of docs/token-profile.md and the token endpoint's responses: one place
 * that mints every token the WAF issues (service tokens for client_credentials, IMS tokens
 * for a mapped or pooled identity) and writes the RFC 6749 5.1 / RFC 8693 2.2.1 response
 * with the IMS members the WIC needs (TS 24.371 A.3.2 step 1).
 */
#ifndef WAF_ISSUE_H
#define WAF_ISSUE_H

#include "app.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define WAF_IMS_MAX_IMPU 64 /* profile 4: 1..64 IMPUs */

/* The IMS identity a token is for. Strings are owned by the struct (waf_ims_id_clear). */
struct waf_ims_id {
    char sub[80]; /* token subject: "u<web identity id>" or "lease:<uuid>" */
    char *impi;   /* private identity */
    char *impu[WAF_IMS_MAX_IMPU];
    size_t nimpu;            /* impu[0] is the default IMPU */
    char lease[37];          /* pool lease id; "" for a permanent subscription */
    int64_t lease_exp;       /* the lease's expiry (Unix s) when pooled */
    int64_t web_identity_id; /* 0 when the user is not a known web identity */
};
void waf_ims_id_clear(struct waf_ims_id *id); /* frees the strings; accepts a zeroed struct */

/* What was issued: the token's jti and expiry (Unix s). */
struct waf_issued {
    char jti[32];
    int64_t exp;
    long expires_in;
};

/*
 * Signs an access token for client c with sub and scope; ims NULL for a service token
 * (client_credentials), else the impi, impu, pool_lease and wwsf claims are added and the
 * lifetime is cut to the lease's end. On success *token is a new string (caller frees) and
 * *out describes it; false on failure (nothing allocated).
 */
bool waf_mint(struct waf_app *a, const struct waf_client *c, const char *sub, const char *scope,
              const struct waf_ims_id *ims, char **token, struct waf_issued *out);

/*
 * Writes the successful token response for token (taken: freed here): access_token,
 * token_type, expires_in, scope, refresh_token when not NULL, issued_token_type when
 * exchange (RFC 8693), and for IMS tokens impi, impu (default IMPU), pool_lease and
 * epcscf_wss_url (when configured). Cache-Control: no-store.
 */
void waf_token_response(struct waf_app *a, char *token, const struct waf_issued *is,
                        const char *scope, const struct waf_ims_id *ims, const char *refresh_token,
                        bool exchange, struct waf_resp *rs);

/* RFC 6749 5.2 error response {"error","error_description"}, no-store. */
void waf_oauth_error(struct waf_resp *rs, int status, const char *error, const char *desc);
/* Answers status with the compact JSON of j (taken); 500 without memory. */
void waf_json_take(struct waf_resp *rs, int status, json_t *j);

#endif
