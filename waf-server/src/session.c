/*
 * The browser session grants of the token endpoint: authorization_code (RFC 6749 4.1.3,
 * PKCE S256 per RFC 7636 4.6) and refresh_token (RFC 6749 6), for web identities that
 * signed in on the login page (authorize.c).
 *
 * A code is redeemed once, in one transaction that locks its row: the checks, the identity
 * (mapped subscription, or a pooled lease when the client has a pool), the access token,
 * the first refresh token of a new family and the code's "issued" columns commit together;
 * any failed check rolls back and writes nothing. A code presented again revokes what it
 * issued (the access token and the refresh family). Refresh tokens rotate on every use; a
 * spent one presented again revokes its whole family with the access tokens issued from it
 * and gives its pooled identity back. Only SHA-256 hashes of codes and refresh tokens are
 * stored.
 */
#include "grants.h"
#include "ims.h"
#include "issue.h"
#include "wcrypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* SHA-256 of s as a bytea parameter "\x<hex>". */
static void hash_param(const char *s, char out[70])
{
    uint8_t md[32];
    unsigned n = 0;
    EVP_Digest(s, strlen(s), md, &n, EVP_sha256(), NULL);
    memcpy(out, "\\x", 2);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 + 2 * i, 3, "%02x", md[i]);
}

static PGresult *q(PGconn *c, const char *sql, int n, const char *const *params)
{
    char state[6], d[256];
    return waf_db_exec(c, sql, n, params, state, d, sizeof(d));
}

static bool run(PGconn *c, const char *sql)
{
    PGresult *r = q(c, sql, 0, NULL);
    PQclear(r);
    return r != NULL;
}

static void unavailable(struct waf_resp *rs)
{
    waf_oauth_error(rs, 503, "temporarily_unavailable", "the database is unavailable");
    waf_resp_header(rs, "Retry-After", "5");
}

/*
 * Revokes refresh family fam (inside the caller's transaction on c), records the access
 * tokens it issued (and extra_jti, when not NULL) in revoked_tokens, and collects what
 * must follow the commit: the jtis for Redis and the leases to release. Returns false when
 * the database failed.
 */
struct revoked {
    PGresult *jtis, *leases;
};

static bool revoke_family(PGconn *c, const char *fam, const char *extra_jti, const char *extra_exp,
                          const char *reason, const char *client_id, struct revoked *out)
{
    const char *p1[] = {fam};
    out->leases = fam ? q(c,
                          "SELECT DISTINCT lease_id::text FROM refresh_tokens "
                          "WHERE family_id = $1::uuid AND lease_id IS NOT NULL",
                          1, p1)
                      : q(c, "SELECT NULL WHERE false", 0, NULL);
    const char *p[] = {fam, extra_jti, extra_exp, reason, client_id};
    out->jtis = q(c,
                  "WITH fam AS (UPDATE refresh_tokens SET revoked_at = now() "
                  "  WHERE family_id = $1::uuid AND revoked_at IS NULL "
                  "  RETURNING access_jti, access_exp), "
                  "all_jti AS (SELECT access_jti AS jti, access_exp AS exp FROM fam "
                  "  WHERE access_jti IS NOT NULL "
                  "  UNION SELECT $2::text, to_timestamp($3::bigint) WHERE $2::text IS NOT NULL) "
                  "INSERT INTO revoked_tokens (jti, exp, reason, client_id) "
                  "SELECT jti, exp, $4::text, $5::text FROM all_jti WHERE exp > now() "
                  "ON CONFLICT (jti) DO NOTHING RETURNING jti, extract(epoch FROM exp)::bigint",
                  5, p);
    return out->leases && out->jtis;
}

/* After the commit: the revoked jtis reach Redis, the leases go back to their pools. */
static void revoked_follow(struct waf_app *a, struct revoked *r)
{
    for (int i = 0; r->jtis && i < PQntuples(r->jtis); i++)
        waf_redis_revoke(a->redis, a->cfg->revoked_key, PQgetvalue(r->jtis, i, 0),
                         atoll(PQgetvalue(r->jtis, i, 1)));
    for (int i = 0; r->leases && i < PQntuples(r->leases); i++)
        waf_ims_release(a, PQgetvalue(r->leases, i, 0), "revoked");
    PQclear(r->jtis);
    PQclear(r->leases);
    memset(r, 0, sizeof(*r));
}

/*
 * The identity of web identity wid for client c: its mapped subscription, or a lease from
 * the client's pool (lease_id: renew that one first when not NULL). *fresh_lease tells
 * whether a lease was made here (to give back if the transaction fails). false after
 * answering.
 */
static bool identity(struct waf_app *a, PGconn *conn, const struct waf_client *c, int64_t wid,
                     const char *lease_id, struct waf_ims_id *id, bool *fresh_lease,
                     struct waf_resp *rs)
{
    *fresh_lease = false;
    if (lease_id) {
        int r = waf_ims_renew(a, lease_id, id);
        if (r > 0)
            return true;
        if (r < 0) {
            unavailable(rs);
            return false;
        }
    }
    enum waf_ims_result r = waf_ims_mapped_on(conn, wid, id);
    if (r == WAF_IMS_FOUND)
        return true;
    if (r == WAF_IMS_UNAVAILABLE) {
        unavailable(rs);
        return false;
    }
    if (c->allow_pool == NULL) {
        waf_oauth_error(rs, 400, "invalid_grant", "no IMS identity is mapped to this user");
        return false;
    }
    char holder[200], sub[32];
    snprintf(sub, sizeof(sub), "%lld", (long long)wid);
    waf_ims_holder(c->client_id, 'w', sub, holder);
    if (!waf_ims_lease_on(a, conn, c->allow_pool, holder, id, rs))
        return false;
    *fresh_lease = true;
    return true;
}

/* A new refresh token of family fam (NULL: a new family) for the session; its hash row is
 * inserted on c. *family gets the family id. false when the database failed. */
static bool new_refresh(struct waf_app *a, PGconn *c, const struct waf_client *cl, int64_t wid,
                        const char *scope, const struct waf_ims_id *id, const struct waf_issued *is,
                        const char *fam, char token[48], char family[37])
{
    uint8_t raw[32];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return false;
    waf_b64url_encode(raw, sizeof(raw), token);
    char hash[70], ids[24], life[24], exp[24];
    hash_param(token, hash);
    snprintf(ids, sizeof(ids), "%lld", (long long)wid);
    snprintf(life, sizeof(life), "%ld", a->cfg->refresh_lifetime_s);
    snprintf(exp, sizeof(exp), "%lld", (long long)is->exp);
    const char *p[] = {
        fam, hash, cl->client_id, ids, scope, life, id->lease[0] ? id->lease : NULL, is->jti, exp};
    PGresult *r = q(c,
                    "INSERT INTO refresh_tokens (family_id, token_hash, client_id, "
                    " web_identity_id, scope, expires_at, lease_id, access_jti, access_exp) "
                    "VALUES (coalesce($1::uuid, gen_random_uuid()), $2::bytea, $3, $4::bigint, $5, "
                    " now() + make_interval(secs => $6::int), $7::uuid, $8, "
                    " to_timestamp($9::bigint)) RETURNING family_id::text",
                    9, p);
    if (r == NULL)
        return false;
    snprintf(family, 37, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return true;
}

/* RFC 7636 4.6: BASE64URL(SHA-256(verifier)) == challenge; verifier 43..128 unreserved. */
static int pkce_check(const char *verifier, const char *challenge)
{
    size_t n = strlen(verifier);
    if (n < 43 || n > 128)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char ch = verifier[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '.' || ch == '_' || ch == '~'))
            return -1;
    }
    uint8_t md[32];
    unsigned ml = 0;
    char enc[WAF_B64URL_LEN(32) + 1];
    EVP_Digest(verifier, n, md, &ml, EVP_sha256(), NULL);
    waf_b64url_encode(md, sizeof(md), enc);
    return strlen(challenge) == 43 && waf_ct_equal(enc, challenge, 43) ? 1 : 0;
}

/* One redemption of a code or refresh token: a transaction on one connection around the
 * row of the presented secret, locked FOR UPDATE, and what has to be cleaned up. */
struct redeem {
    PGconn *conn;
    PGresult *row;
    char hash[70];
    struct waf_ims_id id;
    struct revoked rv;
    char *token;
    bool committed;   /* the issuance committed */
    bool revoke;      /* a replay: commit the revocation in rv, then follow it */
    bool fresh_lease; /* id.lease was made here: give it back unless committed */
};

/* Hashes secret, starts the transaction and reads its row (sql with $1 the hash) into
 * r->row. false when the database failed, after answering 503 when rs is not NULL (r is
 * then ready for redeem_end()). */
static bool redeem_begin(struct waf_app *a, struct redeem *r, const char *secret, const char *sql,
                         struct waf_resp *rs)
{
    memset(r, 0, sizeof(*r));
    hash_param(secret, r->hash);
    r->conn = waf_db_get(a->db);
    if (r->conn && run(r->conn, "BEGIN")) {
        const char *p[] = {r->hash};
        r->row = q(r->conn, sql, 1, p);
    }
    if (r->row == NULL && rs)
        unavailable(rs);
    return r->row != NULL;
}

/* Ends the transaction (rolls back what did not commit, commits a replay's revocation and
 * follows it up), gives back a lease made for nothing, and frees everything. false when
 * the revocation could not be committed. */
static bool redeem_end(struct waf_app *a, struct redeem *r)
{
    bool ok = true;
    if (r->conn && !r->committed) {
        ok = run(r->conn, r->revoke ? "COMMIT" : "ROLLBACK");
        if (ok && r->revoke)
            revoked_follow(a, &r->rv);
        ok = ok || !r->revoke;
    }
    PQclear(r->rv.jtis);
    PQclear(r->rv.leases);
    if (!r->committed && r->fresh_lease)
        waf_ims_release(a, r->id.lease, "issue_failed");
    free(r->token);
    PQclear(r->row);
    waf_db_put(a->db, r->conn);
    waf_ims_id_clear(&r->id);
    return ok;
}

void waf_grant_authorization_code(struct waf_app *a, const struct waf_client *c,
                                  const struct waf_form *f, struct waf_resp *rs)
{
    static const char *const allowed[] = {"code", "redirect_uri", "code_verifier", NULL};
    if (!waf_grant_params_ok(f, allowed, "authorization_code", rs))
        return;
    if (!(c->grants & WAF_GRANT_CODE)) {
        waf_oauth_error(rs, 400, "unauthorized_client",
                        "this client may not use the authorization_code grant");
        return;
    }
    const char *code = waf_form_get(f, "code");
    const char *verifier = waf_form_get(f, "code_verifier");
    const char *redirect = waf_form_get(f, "redirect_uri");
    if (code == NULL || verifier == NULL) {
        waf_oauth_error(rs, 400, "invalid_request", "code and code_verifier (PKCE) are required");
        return;
    }
    struct redeem r;
    if (!redeem_begin(a, &r, code,
                      "SELECT client_id, web_identity_id, redirect_uri, scope, code_challenge, "
                      " expires_at > now(), used_at IS NOT NULL, issued_jti, "
                      " extract(epoch FROM issued_exp)::bigint, refresh_family::text "
                      "FROM authorization_codes WHERE code_hash = $1::bytea FOR UPDATE",
                      rs))
        goto done;
    PGresult *row = r.row;
    if (PQntuples(row) == 0) {
        waf_oauth_error(rs, 400, "invalid_grant", "the code is unknown");
        goto done;
    }
    if (strcmp(PQgetvalue(row, 0, 0), c->client_id) != 0) {
        waf_oauth_error(rs, 400, "invalid_grant", "the code was issued to another client");
        goto done;
    }
    if (PQgetvalue(row, 0, 6)[0] == 't') {
        /* Replay: the code may have been stolen; what it issued is revoked (RFC 6749 4.1.2). */
        const char *jti = PQgetisnull(row, 0, 7) ? NULL : PQgetvalue(row, 0, 7);
        const char *fam = PQgetisnull(row, 0, 9) ? NULL : PQgetvalue(row, 0, 9);
        if (!revoke_family(r.conn, fam, jti, PQgetvalue(row, 0, 8), "authorization code replayed",
                           c->client_id, &r.rv)) {
            unavailable(rs);
            goto done;
        }
        r.revoke = true;
        waf_oauth_error(rs, 400, "invalid_grant",
                        "the code was used before; the tokens it issued are revoked");
        goto done;
    }
    if (redirect && strcmp(redirect, PQgetvalue(row, 0, 2)) != 0) {
        waf_oauth_error(rs, 400, "invalid_grant",
                        "redirect_uri differs from the authorization request");
        goto done;
    }
    if (PQgetvalue(row, 0, 5)[0] != 't') {
        waf_oauth_error(rs, 400, "invalid_grant", "the code has expired");
        goto done;
    }
    int pk = pkce_check(verifier, PQgetvalue(row, 0, 4));
    if (pk <= 0) {
        waf_oauth_error(rs, 400, pk < 0 ? "invalid_request" : "invalid_grant",
                        pk < 0 ? "code_verifier must be 43..128 unreserved characters"
                               : "PKCE verification failed (code_verifier does not match)");
        goto done;
    }
    int64_t wid = atoll(PQgetvalue(row, 0, 1));
    const char *scope = PQgetvalue(row, 0, 3);
    if (!identity(a, r.conn, c, wid, NULL, &r.id, &r.fresh_lease, rs))
        goto done;
    struct waf_issued is;
    if (!waf_mint(a, c, r.id.sub, scope, &r.id, &r.token, &is)) {
        waf_oauth_error(rs, 500, "server_error", "could not issue the token");
        goto done;
    }
    char refresh[48] = "", family[37] = "", exps[24];
    if ((c->grants & WAF_GRANT_REFRESH) &&
        !new_refresh(a, r.conn, c, wid, scope, &r.id, &is, NULL, refresh, family)) {
        unavailable(rs);
        goto done;
    }
    snprintf(exps, sizeof(exps), "%lld", (long long)is.exp);
    const char *p2[] = {r.hash, is.jti, exps, family[0] ? family : NULL};
    PGresult *u = q(r.conn,
                    "UPDATE authorization_codes SET used_at = now(), issued_jti = $2, "
                    " issued_exp = to_timestamp($3::bigint), refresh_family = $4::uuid "
                    "WHERE code_hash = $1::bytea",
                    4, p2);
    PQclear(u);
    if (u == NULL || !run(r.conn, "COMMIT")) {
        unavailable(rs);
        goto done;
    }
    r.committed = true;
    waf_token_response(a, r.token, &is, scope, &r.id, refresh[0] ? refresh : NULL, false, rs);
    r.token = NULL;
    OPENSSL_cleanse(refresh, sizeof(refresh));
done:
    redeem_end(a, &r);
}

void waf_grant_refresh_token(struct waf_app *a, const struct waf_client *c,
                             const struct waf_form *f, struct waf_resp *rs)
{
    static const char *const allowed[] = {"refresh_token", "scope", NULL};
    if (!waf_grant_params_ok(f, allowed, "refresh_token", rs))
        return;
    if (!(c->grants & WAF_GRANT_REFRESH)) {
        waf_oauth_error(rs, 400, "unauthorized_client", "this client may not use refresh tokens");
        return;
    }
    const char *rt = waf_form_get(f, "refresh_token");
    if (rt == NULL) {
        waf_oauth_error(rs, 400, "invalid_request", "refresh_token is required");
        return;
    }
    struct redeem r;
    if (!redeem_begin(a, &r, rt,
                      "SELECT id::text, family_id::text, client_id, web_identity_id, scope, "
                      " expires_at > now(), used_at IS NOT NULL, revoked_at IS NOT NULL, "
                      " lease_id::text FROM refresh_tokens WHERE token_hash = $1::bytea FOR UPDATE",
                      rs))
        goto done;
    PGresult *row = r.row;
    if (PQntuples(row) == 0 || strcmp(PQgetvalue(row, 0, 2), c->client_id) != 0) {
        waf_oauth_error(rs, 400, "invalid_grant", "the refresh token is unknown");
        goto done;
    }
    if (PQgetvalue(row, 0, 7)[0] == 't') {
        waf_oauth_error(rs, 400, "invalid_grant", "the refresh token was revoked");
        goto done;
    }
    if (PQgetvalue(row, 0, 6)[0] == 't') {
        /* A spent token again: stolen or replayed; the whole session goes. */
        if (!revoke_family(r.conn, PQgetvalue(row, 0, 1), NULL, NULL, "refresh token reused",
                           c->client_id, &r.rv)) {
            unavailable(rs);
            goto done;
        }
        r.revoke = true;
        waf_oauth_error(rs, 400, "invalid_grant",
                        "the refresh token was used before; the session is revoked");
        goto done;
    }
    if (PQgetvalue(row, 0, 5)[0] != 't') {
        waf_oauth_error(rs, 400, "invalid_grant", "the refresh token has expired");
        goto done;
    }
    const char *granted = PQgetvalue(row, 0, 4);
    const char *scope = waf_form_get(f, "scope");
    if (scope == NULL)
        scope = granted;
    if (!waf_scope_subset(scope, granted)) {
        waf_oauth_error(rs, 400, "invalid_scope", "the scope exceeds what was granted");
        goto done;
    }
    if (PQgetisnull(row, 0, 3)) {
        waf_oauth_error(rs, 400, "invalid_grant", "the refresh token has no user");
        goto done;
    }
    int64_t wid = atoll(PQgetvalue(row, 0, 3));
    const char *lease = PQgetisnull(row, 0, 8) ? NULL : PQgetvalue(row, 0, 8);
    if (!identity(a, r.conn, c, wid, lease, &r.id, &r.fresh_lease, rs))
        goto done;
    struct waf_issued is;
    if (!waf_mint(a, c, r.id.sub, scope, &r.id, &r.token, &is)) {
        waf_oauth_error(rs, 500, "server_error", "could not issue the token");
        goto done;
    }
    const char *p2[] = {PQgetvalue(row, 0, 0)};
    PGresult *u = q(r.conn, "UPDATE refresh_tokens SET used_at = now() WHERE id = $1::uuid", 1, p2);
    PQclear(u);
    char refresh[48], family[37];
    if (u == NULL ||
        !new_refresh(a, r.conn, c, wid, granted, &r.id, &is, PQgetvalue(row, 0, 1), refresh,
                     family) ||
        !run(r.conn, "COMMIT")) {
        unavailable(rs);
        goto done;
    }
    r.committed = true;
    waf_token_response(a, r.token, &is, scope, &r.id, refresh, false, rs);
    r.token = NULL;
    OPENSSL_cleanse(refresh, sizeof(refresh));
done:
    redeem_end(a, &r);
}

int waf_revoke_refresh(struct waf_app *a, const struct waf_client *c, const char *token)
{
    struct redeem r;
    int rc = -1;
    if (redeem_begin(a, &r, token,
                     "SELECT family_id::text, client_id FROM refresh_tokens "
                     "WHERE token_hash = $1::bytea FOR UPDATE",
                     NULL)) {
        rc = 0;
        if (PQntuples(r.row) == 1 && (strcmp(PQgetvalue(r.row, 0, 1), c->client_id) == 0 ||
                                      waf_client_scopes_allowed(c, "admin"))) {
            r.revoke = revoke_family(r.conn, PQgetvalue(r.row, 0, 0), NULL, NULL,
                                     "refresh token revoked", c->client_id, &r.rv);
            rc = r.revoke ? 1 : -1;
        }
    }
    if (!redeem_end(a, &r))
        rc = -1;
    return rc;
}
