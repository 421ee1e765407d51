/*
 * /admin/v1/clients: OAuth clients. Secrets are made here (256 bits, waf_secret_generate),
 * answered once and stored as HMAC-SHA-256 under the server key (oauth_clients.secret_mac).
 * A change reaches every instance's client cache within WAF_CLIENT_CACHE_MS.
 */
#include "admin.h"

#include "jose.h"
#include "wcrypto.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const AUTH_METHODS[] = {"client_secret_basic", "private_key_jwt", "none", NULL};
static const char *const GRANTS[] = {"authorization_code", "refresh_token", "client_credentials",
                                     "urn:ietf:params:oauth:grant-type:token-exchange", NULL};
static const char *const STATUSES[] = {"active", "disabled", NULL};

static const char *check_jwks(const json_t *v, char *buf, size_t len)
{
    char *text = json_dumps(v, JSON_COMPACT);
    if (text == NULL)
        return "cannot be processed";
    struct waf_jwks *ks = NULL;
    char d[200] = "";
    enum waf_jose_result r = waf_jwks_parse(text, strlen(text), &ks, d, sizeof(d));
    free(text);
    waf_jwks_free(ks);
    if (r == WAF_JOSE_OK)
        return NULL;
    snprintf(buf, len, "is not a usable JWKS of public signing keys: %s", d[0] ? d : "invalid");
    return buf;
}

const struct admin_field admin_client_fields[] = {
    {"client_id", AT_STRING, AF_REQUIRED | AF_IMMUTABLE, 1, 128, 0, 0, admin_check_client_id, NULL,
     NULL, NULL},
    {"name", AT_STRING, AF_REQUIRED | AF_CHARS, 1, 200, 0, 0, NULL, NULL, NULL, NULL},
    {"token_endpoint_auth_method", AT_STRING, AF_IMMUTABLE, 1, 64, 0, 0, NULL, AUTH_METHODS, NULL,
     NULL},
    {"grant_types", AT_STRINGS, AF_REQUIRED | AF_UNIQUE, 1, 4, 1, 64, NULL, GRANTS, NULL, NULL},
    {"redirect_uris", AT_STRINGS, AF_UNIQUE, 0, 20, 1, 2048, admin_check_redirect, NULL, NULL,
     NULL},
    {"scopes", AT_STRINGS, AF_UNIQUE, 0, 32, 1, 64, admin_check_scope, NULL, NULL, NULL},
    {"allowed_origins", AT_STRINGS, AF_UNIQUE, 0, 20, 1, 512, admin_check_origin, NULL, NULL, NULL},
    {"audience", AT_STRING, AF_REQUIRED, 1, 1024, 0, 0, admin_check_token, NULL, NULL, NULL},
    {"jwks", AT_ANY, AF_NULLABLE, 0, 0, 0, 0, NULL, NULL, NULL, check_jwks},
    {"allow_pool", AT_STRING, AF_NULLABLE, 1, 63, 0, 0, admin_check_pool_name, NULL, NULL, NULL},
    {"token_lifetime_s", AT_INT, AF_NULLABLE, 30, 86400, 0, 0, NULL, NULL, NULL, NULL},
    {"status", AT_STRING, 0, 1, 16, 0, 0, NULL, STATUSES, NULL, NULL},
    {NULL, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL},
};

const struct admin_field admin_client_query[] = {
    ADMIN_PAGE_FIELDS,
    {"q", AT_STRING, AF_CHARS, 1, 200, 0, 0, NULL, NULL, NULL, NULL},
    {"status", AT_STRING, 0, 1, 16, 0, 0, NULL, STATUSES, NULL, NULL},
    {NULL, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL},
};

/* The representation of a client (never its secret). */
#define CLIENT_JSON                                                                                \
    "json_build_object('client_id', client_id, 'name', name, 'client_type', client_type, "         \
    " 'token_endpoint_auth_method', CASE WHEN secret_mac IS NOT NULL OR secret_hash IS NOT NULL "  \
    "  THEN 'client_secret_basic' WHEN jwks IS NOT NULL THEN 'private_key_jwt' ELSE 'none' END, "  \
    " 'grant_types', grant_types, 'redirect_uris', redirect_uris, 'scopes', scopes, "              \
    " 'allowed_origins', allowed_origins, 'audience', audience, 'jwks', jwks, "                    \
    " 'allow_pool', allow_pool, 'token_lifetime_s', token_lifetime_s, 'status', status, "          \
    " 'created_at', " ADMIN_TS("created_at") ", 'updated_at', " ADMIN_TS("updated_at") ")"

static bool listed(const json_t *array, const char *value)
{
    size_t i;
    json_t *v;
    json_array_foreach(array, i, v) if (json_is_string(v) &&
                                        strcmp(json_string_value(v), value) == 0) return true;
    return false;
}

/* The rules across fields, on the client as it would be. false after answering 422. */
static bool client_rules(struct admin_ctx *x, const json_t *c)
{
    const char *method = json_string_value(json_object_get(c, "token_endpoint_auth_method"));
    const json_t *grants = json_object_get(c, "grant_types");
    const json_t *jwks = json_object_get(c, "jwks");
    bool has_jwks = jwks && !json_is_null(jwks);
    if (strcmp(method, "none") == 0 && listed(grants, "client_credentials")) {
        admin_invalid(x, "grant_types",
                      "client_credentials is for confidential clients only (RFC 6749 4.4)");
        return false;
    }
    if (strcmp(method, "none") == 0 && has_jwks) {
        admin_invalid(x, "jwks", "a public client (token_endpoint_auth_method none) has no keys");
        return false;
    }
    if (strcmp(method, "private_key_jwt") == 0 && !has_jwks) {
        admin_invalid(x, "jwks", "is required with token_endpoint_auth_method private_key_jwt");
        return false;
    }
    if (listed(grants, "authorization_code") &&
        json_array_size(json_object_get(c, "redirect_uris")) == 0) {
        admin_invalid(x, "redirect_uris",
                      "at least one redirect URI is required with authorization_code");
        return false;
    }
    const char *aud = json_string_value(json_object_get(c, "audience"));
    if (listed(json_object_get(c, "scopes"), "admin") && strcmp(aud, x->a->cfg->issuer) != 0) {
        admin_invalid(x, "audience",
                      "a client with scope admin must have this server's issuer (%s) as audience",
                      x->a->cfg->issuer);
        return false;
    }
    return true;
}

/* Serialises the changes that could leave no admin client, then checks there is one
 * left (after the change, in the same transaction). false after answering. */
static bool admin_lock(struct admin_ctx *x, PGconn *c)
{
    return admin_do(x, c,
                    "SELECT pg_advisory_xact_lock(hashtextextended('waf-server admin clients', 0))",
                    0, NULL);
}

static bool admin_left(struct admin_ctx *x, PGconn *c)
{
    PGresult *res = admin_run(x, c,
                              "SELECT count(*) FROM oauth_clients WHERE status = 'active' AND "
                              " 'admin' = ANY (scopes) AND 'client_credentials' = ANY "
                              "(grant_types)",
                              0, NULL);
    if (res == NULL)
        return false;
    bool left = atol(PQgetvalue(res, 0, 0)) > 0;
    PQclear(res);
    if (!left)
        admin_problem(x, AP_CONFLICT, NULL,
                      "this would leave no active client with scope admin and the "
                      "client_credentials grant; make another admin client first");
    return left;
}

static char *dump(const json_t *v)
{
    return v && !json_is_null(v) ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
}

/* Writes the client c (complete) as row client_id: INSERT when create, else UPDATE.
 * mac_hex is the new secret's MAC (NULL: unchanged on update, none on create). */
static bool write_client(struct admin_ctx *x, PGconn *c, const json_t *cl, bool create,
                         const char *mac_hex)
{
    char *grants = dump(json_object_get(cl, "grant_types"));
    char *redirects = dump(json_object_get(cl, "redirect_uris"));
    char *scopes = dump(json_object_get(cl, "scopes"));
    char *origins = dump(json_object_get(cl, "allowed_origins"));
    char *jwks = dump(json_object_get(cl, "jwks"));
    char lifetime[24] = "";
    json_t *lt = json_object_get(cl, "token_lifetime_s");
    if (json_is_integer(lt))
        snprintf(lifetime, sizeof(lifetime), "%lld", (long long)json_integer_value(lt));
    const char *method = json_string_value(json_object_get(cl, "token_endpoint_auth_method"));
    const char *params[] = {json_string_value(json_object_get(cl, "client_id")),
                            json_string_value(json_object_get(cl, "name")),
                            strcmp(method, "none") == 0 ? "public" : "confidential",
                            grants,
                            redirects,
                            scopes,
                            origins,
                            json_string_value(json_object_get(cl, "audience")),
                            jwks,
                            json_string_value(json_object_get(cl, "allow_pool")),
                            lifetime[0] ? lifetime : NULL,
                            json_string_value(json_object_get(cl, "status")),
                            mac_hex};
    bool ok =
        create ? admin_do(x, c,
                          "INSERT INTO oauth_clients (client_id, name, client_type, grant_types, "
                          " redirect_uris, scopes, allowed_origins, audience, jwks, allow_pool, "
                          " token_lifetime_s, status, secret_mac) VALUES ($1, $2, $3, "
                          " ARRAY(SELECT json_array_elements_text($4::json)), "
                          " ARRAY(SELECT json_array_elements_text($5::json)), "
                          " ARRAY(SELECT json_array_elements_text($6::json)), "
                          " ARRAY(SELECT json_array_elements_text($7::json)), $8, $9::jsonb, "
                          " $10, $11::int, $12, $13::bytea)",
                          13, params)
               : admin_do(x, c,
                          "UPDATE oauth_clients SET name = $2, client_type = $3, "
                          " grant_types = ARRAY(SELECT json_array_elements_text($4::json)), "
                          " redirect_uris = ARRAY(SELECT json_array_elements_text($5::json)), "
                          " scopes = ARRAY(SELECT json_array_elements_text($6::json)), "
                          " allowed_origins = ARRAY(SELECT json_array_elements_text($7::json)), "
                          " audience = $8, jwks = $9::jsonb, allow_pool = $10, "
                          " token_lifetime_s = $11::int, status = $12, "
                          " secret_mac = coalesce($13::bytea, secret_mac) WHERE client_id = $1",
                          13, params);
    free(grants);
    free(redirects);
    free(scopes);
    free(origins);
    free(jwks);
    return ok;
}

/* A new secret into secret[WAF_SECRET_LEN + 1] and its MAC as a bytea literal into
 * hex[67]. false after answering. */
static bool new_secret(struct admin_ctx *x, char *secret, char *hex)
{
    uint8_t mac[32];
    if (waf_secret_generate(secret) != WAF_CRYPTO_OK ||
        waf_secret_mac(x->a->server_key, secret, mac) != WAF_CRYPTO_OK) {
        admin_problem(x, AP_INTERNAL, NULL, "cannot make a client secret");
        return false;
    }
    strcpy(hex, "\\x");
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 + 2 * i, 3, "%02x", mac[i]);
    OPENSSL_cleanse(mac, sizeof(mac));
    return true;
}

#define CLIENT_BY_ID "SELECT " CLIENT_JSON " FROM oauth_clients WHERE client_id = $1"
#define CLIENT_WHAT  "client with client_id"

/* The client of the path, locked (FOR UPDATE) when lock; NULL after answering 404 or a
 * failure. */
static json_t *load(struct admin_ctx *x, PGconn *c, bool lock)
{
    return admin_load(x, c, lock ? CLIENT_BY_ID " FOR UPDATE" : CLIENT_BY_ID, x->param,
                      CLIENT_WHAT);
}

void admin_clients_list(struct admin_ctx *x)
{
    char cursor[200];
    if (!admin_cursor_get(x, cursor, sizeof(cursor)))
        return;
    const char *q = admin_q_str(x, "q"), *st = admin_q_str(x, "status");
    const char *params[] = {cursor, q ? q : "", st ? st : ""};
    admin_list_rows(x,
                    "SELECT jsonb_set(" CLIENT_JSON "::jsonb, '{_cursor}', to_jsonb(client_id)) "
                    "FROM oauth_clients WHERE ($1 = '' OR client_id > $1) "
                    " AND ($2 = '' OR strpos(lower(client_id), lower($2)) > 0 "
                    "  OR strpos(lower(name), lower($2)) > 0) AND ($3 = '' OR status = $3) "
                    "ORDER BY client_id LIMIT $4::int",
                    3, params);
}

void admin_client_get(struct admin_ctx *x)
{
    admin_get(x, CLIENT_BY_ID, CLIENT_WHAT);
}

void admin_clients_create(struct admin_ctx *x)
{
    json_t *cl = json_deep_copy(x->body);
    if (json_object_get(cl, "token_endpoint_auth_method") == NULL)
        json_object_set_new(cl, "token_endpoint_auth_method", json_string("client_secret_basic"));
    static const char *const lists[] = {"redirect_uris", "scopes", "allowed_origins"};
    for (size_t i = 0; i < 3; i++)
        if (json_object_get(cl, lists[i]) == NULL)
            json_object_set_new(cl, lists[i], json_array());
    if (json_object_get(cl, "status") == NULL)
        json_object_set_new(cl, "status", json_string("active"));
    char secret[WAF_SECRET_LEN + 1] = "", hex[67] = "";
    bool with_secret = strcmp(json_string_value(json_object_get(cl, "token_endpoint_auth_method")),
                              "client_secret_basic") == 0;
    PGconn *c = NULL;
    json_t *after = NULL;
    if (!client_rules(x, cl) || (with_secret && !new_secret(x, secret, hex)))
        goto out;
    const char *id = json_string_value(json_object_get(cl, "client_id"));
    if ((c = admin_conn(x)) == NULL || !admin_begin(x, c) ||
        !write_client(x, c, cl, true, with_secret ? hex : NULL))
        goto out;
    x->param = id;
    if ((after = load(x, c, false)) == NULL)
        goto out;
    json_t *audit = json_deep_copy(after);
    if (with_secret)
        json_object_set_new(audit, "client_secret", json_string("(set)"));
    bool ok = admin_audit(x, c, "client.create", "client", id, NULL, audit);
    json_decref(audit);
    if (!ok || !admin_commit(x, c))
        goto out;
    admin_location(x, "clients", id);
    if (with_secret)
        json_object_set_new(after, "client_secret", json_string(secret));
    admin_json(x, 201, after);
    after = NULL;
out:
    OPENSSL_cleanse(secret, sizeof(secret));
    admin_put(x, c);
    json_decref(after);
    json_decref(cl);
}

void admin_client_patch(struct admin_ctx *x)
{
    PGconn *c = admin_conn(x);
    json_t *before = NULL, *cl = NULL, *after = NULL;
    if (c == NULL || !admin_begin(x, c) || !admin_lock(x, c) || (before = load(x, c, true)) == NULL)
        goto out;
    cl = json_deep_copy(before);
    const char *key;
    json_t *v;
    json_object_foreach(x->body, key, v) json_object_set(cl, key, v);
    if (!client_rules(x, cl) || !write_client(x, c, cl, false, NULL) || !admin_left(x, c) ||
        (after = load(x, c, false)) == NULL ||
        !admin_audit(x, c, "client.update", "client", x->param, before, after) ||
        !admin_commit(x, c))
        goto out;
    admin_json(x, 200, after);
    after = NULL;
out:
    admin_put(x, c);
    json_decref(before);
    json_decref(cl);
    json_decref(after);
}

void admin_client_delete(struct admin_ctx *x)
{
    PGconn *c = admin_conn(x);
    json_t *before = NULL;
    if (c == NULL || !admin_begin(x, c) || !admin_lock(x, c) || (before = load(x, c, true)) == NULL)
        goto out;
    const char *params[] = {x->param};
    if (!admin_do(x, c, "DELETE FROM oauth_clients WHERE client_id = $1", 1, params) ||
        !admin_left(x, c) ||
        !admin_audit(x, c, "client.delete", "client", x->param, before, NULL) ||
        !admin_commit(x, c))
        goto out;
    admin_no_content(x);
out:
    admin_put(x, c);
    json_decref(before);
}

void admin_client_secret(struct admin_ctx *x)
{
    char secret[WAF_SECRET_LEN + 1] = "", hex[67] = "";
    PGconn *c = admin_conn(x);
    json_t *before = NULL;
    if (c == NULL || !admin_begin(x, c) || (before = load(x, c, true)) == NULL)
        goto out;
    const char *m = json_string_value(json_object_get(before, "token_endpoint_auth_method"));
    if (strcmp(m, "client_secret_basic") != 0) {
        admin_problem(x, AP_CONFLICT, NULL,
                      "client %s authenticates with %s and has no secret to rotate", x->param, m);
        goto out;
    }
    if (!new_secret(x, secret, hex))
        goto out;
    const char *params[] = {x->param, hex};
    if (!admin_do(x, c,
                  "UPDATE oauth_clients SET secret_mac = $2::bytea, "
                  " secret_hash = NULL WHERE client_id = $1",
                  2, params))
        goto out;
    json_t *note = json_pack("{s:s}", "client_secret", "(set)");
    bool ok = admin_audit(x, c, "client.secret.rotate", "client", x->param, note, note);
    json_decref(note);
    if (!ok || !admin_commit(x, c))
        goto out;
    admin_json(x, 200, json_pack("{s:s, s:s}", "client_id", x->param, "client_secret", secret));
out:
    OPENSSL_cleanse(secret, sizeof(secret));
    admin_put(x, c);
    json_decref(before);
}
