/*
 * OAuth clients (table oauth_clients): lookup with a short in-memory cache, so that a
 * token request costs no database round trip, and client authentication
 * (client_secret_basic, client_secret_post) against the HMAC of the secret. A change to
 * a client reaches every instance within WAF_CLIENT_CACHE_MS.
 */
#ifndef WAF_CLIENTS_H
#define WAF_CLIENTS_H

#include "wdb.h"

#include <stdbool.h>
#include <stdint.h>

#define WAF_CLIENT_CACHE_MS 5000

enum waf_grant {
    WAF_GRANT_CODE = 1u << 0,
    WAF_GRANT_REFRESH = 1u << 1,
    WAF_GRANT_CLIENT_CREDENTIALS = 1u << 2,
    WAF_GRANT_TOKEN_EXCHANGE = 1u << 3,
};

/* An immutable client record, shared by reference. */
struct waf_client {
    char client_id[129];
    bool confidential, active;
    unsigned grants; /* enum waf_grant bits */
    char *scopes;    /* space-separated allowed scopes ("" when none) */
    char *audience;
    bool has_mac;
    uint8_t mac[32];       /* HMAC-SHA-256 of the secret under the server key */
    long lifetime_s;       /* 0: the server default */
    struct waf_jwks *jwks; /* registered public keys (private_key_jwt, assertions); NULL: none */
    char *allow_pool;      /* pool it may lease temporary identities from; NULL: none */
    char **redirect_uris;  /* NULL-terminated; matched exactly */
    int refs_;             /* private */
};

struct waf_clients;
struct waf_jwks;

/* db and server_key are borrowed for the life of the registry. */
struct waf_clients *waf_clients_new(struct waf_db *db, const uint8_t server_key[32]);
void waf_clients_free(struct waf_clients *cs); /* accepts NULL */

enum waf_client_result {
    WAF_CLIENT_OK = 0,
    WAF_CLIENT_UNKNOWN,     /* no such client, or disabled */
    WAF_CLIENT_BAD_SECRET,  /* wrong secret, or the client has no secret */
    WAF_CLIENT_UNAVAILABLE, /* the database cannot be reached */
};

/* Authenticates client_id with secret (constant-time MAC comparison). On success *out is a
 * referenced record the caller gives back with waf_client_put(). */
enum waf_client_result waf_clients_authenticate(struct waf_clients *cs, const char *client_id,
                                                const char *secret, const struct waf_client **out);
/* The active client client_id without authenticating it (public clients, private_key_jwt
 * before the assertion is checked). WAF_CLIENT_OK with a referenced *out, WAF_CLIENT_UNKNOWN
 * or WAF_CLIENT_UNAVAILABLE. */
enum waf_client_result waf_clients_get(struct waf_clients *cs, const char *client_id,
                                       const struct waf_client **out);
void waf_client_put(struct waf_clients *cs, const struct waf_client *c);

/* True when every space-separated scope of requested is allowed for c. */
bool waf_client_scopes_allowed(const struct waf_client *c, const char *requested);
/* True when the space-separated scope list holds token (exact, case-sensitive). */
bool waf_scope_has(const char *scope, const char *token);
/* True when every scope of requested is in granted (both space-separated lists). */
bool waf_scope_subset(const char *requested, const char *granted);

/* Creates the client when absent (first start): confidential, client_credentials, scope
 * "admin", audience aud, secret given. 1 created, 0 existed, -1 error (detail). */
int waf_clients_bootstrap_admin(struct waf_clients *cs, const char *client_id, const char *secret,
                                const char *aud, char *detail, size_t detail_len);

#endif
