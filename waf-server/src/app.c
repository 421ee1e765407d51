/* waf-server start-up and shut-down (see app.h). */
#include "app.h"
#include "wcrypto.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEYS_RELOAD_MS 5000

int waf_read_key_file(const char *path, uint8_t key[32], char *detail, size_t dlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(detail, dlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    char buf[256];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    size_t digits = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (isspace((unsigned char)buf[i]))
            continue;
        if (!isxdigit((unsigned char)buf[i]) || digits == 64) {
            rc = -1;
            break;
        }
        char h[3] = {buf[i], 0, 0};
        if (digits % 2 == 0)
            key[digits / 2] = (uint8_t)(strtoul(h, NULL, 16) << 4);
        else
            key[digits / 2] |= (uint8_t)strtoul(h, NULL, 16);
        digits++;
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    if (rc != 0 || digits != 64) {
        snprintf(detail, dlen, "%s must hold exactly 64 hex digits (a 32-byte key)", path);
        return -1;
    }
    return 0;
}

static char *build_metadata(const struct waf_config *c)
{
    char url[1200];
    json_t *m = json_object();
#define URL(name, path)                                                                            \
    snprintf(url, sizeof(url), "%s%s", c->issuer, path);                                           \
    json_object_set_new(m, name, json_string(url))
    json_object_set_new(m, "issuer", json_string(c->issuer));
    URL("token_endpoint", "/token");
    URL("jwks_uri", "/jwks.json");
    URL("introspection_endpoint", "/introspect");
    URL("revocation_endpoint", "/revoke");
    URL("authorization_endpoint", "/authorize");
#undef URL
    json_object_set_new(m, "grant_types_supported",
                        json_pack("[s,s,s,s]", "authorization_code", "refresh_token",
                                  "client_credentials",
                                  "urn:ietf:params:oauth:grant-type:token-exchange"));
    json_object_set_new(m, "response_types_supported", json_pack("[s]", "code"));
    json_object_set_new(m, "response_modes_supported", json_pack("[s]", "query"));
    json_object_set_new(m, "code_challenge_methods_supported", json_pack("[s]", "S256"));
    json_object_set_new(m, "authorization_response_iss_parameter_supported", json_true());
    /* The same client authentication at every endpoint, except public clients. */
    static const char *const auth_keys[] = {"token_endpoint", "introspection_endpoint",
                                            "revocation_endpoint"};
    for (size_t i = 0; i < 3; i++) {
        char k[80];
        snprintf(k, sizeof(k), "%s_auth_methods_supported", auth_keys[i]);
        /* "none": public clients redeem codes (PKCE) and revoke their own tokens. */
        json_object_set_new(m, k,
                            i == 1 ? json_pack("[s,s,s]", "client_secret_basic",
                                               "client_secret_post", "private_key_jwt")
                                   : json_pack("[s,s,s,s]", "client_secret_basic",
                                               "client_secret_post", "private_key_jwt", "none"));
        snprintf(k, sizeof(k), "%s_auth_signing_alg_values_supported", auth_keys[i]);
        json_object_set_new(m, k,
                            json_pack("[s,s,s,s,s]", "ES256", "ES384", "RS256", "PS256", "EdDSA"));
    }

    json_object_set_new(m, "scopes_supported", json_pack("[s,s,s]", "ims", "ims.lease", "admin"));
    char *s = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    return s;
}

static const struct waf_route public_routes[] = {
    {"GET", "/healthz", waf_h_healthz},
    {"GET", "/readyz", waf_h_readyz},
    {"GET", "/metrics", waf_h_metrics},
    {"GET", "/.well-known/oauth-authorization-server", waf_h_metadata},
    {"GET", "/jwks.json", waf_h_jwks},
    {"POST", "/token", waf_h_token},
    {"POST", "/introspect", waf_h_introspect},
    {"POST", "/revoke", waf_h_revoke},
    {"POST", "/leases/*", waf_h_lease},
    {"GET", "/openapi.yaml", waf_h_openapi},
    {"GET", "/authorize", waf_h_authorize},
    {"POST", "/authorize", waf_h_authorize},
    {NULL, NULL, NULL},
};

/* The admin API's resources are dispatched inside admin.c; one entry per resource and
 * method keeps the metrics per resource and the table under WAF_METRICS_ROUTES. */
static const struct waf_route admin_routes[] = {
    {"GET", "/healthz", waf_h_healthz},
    {"GET", "/readyz", waf_h_readyz},
    {"GET", "/openapi.yaml", waf_h_openapi},
    {"GET", "/admin/v1/identities*", waf_h_admin},
    {"POST", "/admin/v1/identities*", waf_h_admin},
    {"PATCH", "/admin/v1/identities*", waf_h_admin},
    {"DELETE", "/admin/v1/identities*", waf_h_admin},
    {"GET", "/admin/v1/clients*", waf_h_admin},
    {"POST", "/admin/v1/clients*", waf_h_admin},
    {"PATCH", "/admin/v1/clients*", waf_h_admin},
    {"DELETE", "/admin/v1/clients*", waf_h_admin},
    {"GET", "/admin/v1/pools*", waf_h_admin},
    {"POST", "/admin/v1/pools*", waf_h_admin},
    {"PATCH", "/admin/v1/pools*", waf_h_admin},
    {"DELETE", "/admin/v1/pools*", waf_h_admin},
    {"POST", "/admin/v1/leases/*", waf_h_admin},
    {"GET", "/admin/v1/keys*", waf_h_admin},
    {"POST", "/admin/v1/keys*", waf_h_admin},
    {"GET", "/admin/v1/revoked-tokens*", waf_h_admin},
    {"GET", "/admin/v1/audit*", waf_h_admin},
    {NULL, NULL, NULL},
};

const struct waf_route *waf_app_routes(int listener)
{
    return listener == 0 ? public_routes : admin_routes;
}

static void observe(void *app, int listener, int route, int status, int64_t ns)
{
    struct waf_app *a = app;
    waf_metrics_observe(&a->metrics, listener, route, status, ns);
}

static struct waf_http *listen_on(struct waf_app *a, const struct waf_listener_config *l,
                                  const struct waf_route *routes, int listener, char *detail,
                                  size_t dlen)
{
    const struct waf_config *c = a->cfg;
    struct waf_http_opts o = {.listen = l->listen,
                              .tls_cert_file = l->tls_cert,
                              .tls_key_file = l->tls_key,
                              .threads = (int)c->threads,
                              .max_body = (size_t)c->max_body,
                              .connection_limit = (unsigned)c->connection_limit,
                              .per_ip_limit = (unsigned)c->per_ip_connection_limit,
                              .timeout_s = (unsigned)c->connection_timeout_s,
                              .routes = routes,
                              .observe = observe,
                              .listener = listener,
                              .app = a};
    return waf_http_start(&o, detail, dlen);
}

int waf_app_start(struct waf_app *a, const struct waf_config *cfg, char *detail, size_t dlen)
{
    memset(a, 0, sizeof(*a));
    a->cfg = cfg;
    if (waf_read_key_file(cfg->kek_file, a->kek, detail, dlen) != 0 ||
        waf_read_key_file(cfg->server_key_file, a->server_key, detail, dlen) != 0)
        return -1;
    /* One connection per worker thread of both listeners. */
    a->db = waf_db_open(cfg->database_url, (int)cfg->threads * 2, detail, dlen);
    if (a->db == NULL)
        return -1;
    a->keys = waf_keystore_open(a->db, a->kek, KEYS_RELOAD_MS, detail, dlen);
    if (a->keys == NULL)
        return -1;
    if (RAND_bytes(a->jti_seed, sizeof(a->jti_seed)) != 1) {
        snprintf(detail, dlen, "no randomness for token ids");
        return -1;
    }
    /* Signing key rotation: next keys are promoted after keys.overlap. */
    waf_keystore_set_policy(a->keys, cfg->key_overlap_s, cfg->token_lifetime_s);
    a->clients = waf_clients_new(a->db, a->server_key);
    a->redis = waf_redis_new(cfg->redis_url);
    a->pools = waf_pools_new(cfg->database_url, cfg->redis_url, (int)cfg->threads * 2);
    a->metadata = build_metadata(cfg);
    if (waf_password_hash("unknown user", 0, a->dummy_phc, sizeof(a->dummy_phc), detail, dlen) !=
        WAF_CRYPTO_OK)
        return -1;
    if (a->clients == NULL || a->metadata == NULL || a->redis == NULL || a->pools == NULL) {
        snprintf(detail, dlen, "out of memory");
        return -1;
    }
    if (cfg->admin_client_secret &&
        waf_clients_bootstrap_admin(a->clients, cfg->admin_client_id, cfg->admin_client_secret,
                                    cfg->issuer, detail, dlen) < 0)
        return -1;
    a->metrics.routes[0] = public_routes;
    a->metrics.routes[1] = admin_routes;
    a->pub = listen_on(a, &cfg->pub, public_routes, 0, detail, dlen);
    if (a->pub == NULL)
        return -1;
    a->admin = listen_on(a, &cfg->admin, admin_routes, 1, detail, dlen);
    return a->admin ? 0 : -1;
}

void waf_app_stop(struct waf_app *a)
{
    waf_http_stop(a->pub);
    waf_http_stop(a->admin);
    waf_clients_free(a->clients);
    waf_redis_free(a->redis);
    waf_pools_free(a->pools);
    waf_keystore_free(a->keys);
    waf_db_free(a->db);
    free(a->metadata);
    OPENSSL_cleanse(a->kek, sizeof(a->kek));
    OPENSSL_cleanse(a->server_key, sizeof(a->server_key));
    OPENSSL_cleanse(a->jti_seed, sizeof(a->jti_seed));
    memset(a, 0, sizeof(*a));
}
