/* OAuth clients: cached lookup and authentication (see clients.h). */
#include "clients.h"

#include "jose.h"
#include "wcrypto.h"
#include "wutil.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_SLOTS 256

struct slot {
    char client_id[129];
    struct waf_client *c; /* NULL: known not to exist */
    int64_t loaded_ms;
};

struct waf_clients {
    struct waf_db *db;
    const uint8_t *server_key;
    pthread_mutex_t lock;
    struct slot slots[CACHE_SLOTS];
};

static void client_free(struct waf_client *c)
{
    if (c == NULL)
        return;
    free(c->scopes);
    free(c->audience);
    free(c->allow_pool);
    waf_jwks_free(c->jwks);
    if (c->redirect_uris)
        for (char **u = c->redirect_uris; *u; u++)
            free(*u);
    free(c->redirect_uris);
    free(c);
}

struct waf_clients *waf_clients_new(struct waf_db *db, const uint8_t server_key[32])
{
    struct waf_clients *cs = calloc(1, sizeof(*cs));
    if (cs == NULL)
        return NULL;
    cs->db = db;
    cs->server_key = server_key;
    pthread_mutex_init(&cs->lock, NULL);
    return cs;
}

void waf_clients_free(struct waf_clients *cs)
{
    if (cs == NULL)
        return;
    for (int i = 0; i < CACHE_SLOTS; i++)
        if (cs->slots[i].c && --cs->slots[i].c->refs_ == 0)
            client_free(cs->slots[i].c);
    pthread_mutex_destroy(&cs->lock);
    free(cs);
}

void waf_client_put(struct waf_clients *cs, const struct waf_client *c)
{
    if (c == NULL)
        return;
    struct waf_client *m = (struct waf_client *)(uintptr_t)c;
    pthread_mutex_lock(&cs->lock);
    bool last = --m->refs_ == 0;
    pthread_mutex_unlock(&cs->lock);
    if (last)
        client_free(m);
}

static unsigned grants_of(const char *list)
{
    static const struct {
        const char *name;
        unsigned bit;
    } g[] = {{"authorization_code", WAF_GRANT_CODE},
             {"refresh_token", WAF_GRANT_REFRESH},
             {"client_credentials", WAF_GRANT_CLIENT_CREDENTIALS},
             {"urn:ietf:params:oauth:grant-type:token-exchange", WAF_GRANT_TOKEN_EXCHANGE}};
    unsigned bits = 0;
    for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++) {
        const char *p = list;
        size_t n = strlen(g[i].name);
        while ((p = strstr(p, g[i].name)) != NULL) {
            if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
                bits |= g[i].bit;
            p += n;
        }
    }
    return bits;
}

/* A JSON array of strings as a NULL-terminated list (NULL without memory). */
static char **uri_list(const char *json)
{
    json_t *a = json_loads(json, 0, NULL);
    size_t n = json_is_array(a) ? json_array_size(a) : 0;
    char **l = calloc(n + 1, sizeof(*l));
    for (size_t i = 0; l && i < n; i++) {
        const char *v = json_string_value(json_array_get(a, i));
        if ((l[i] = strdup(v ? v : "")) == NULL) {
            for (size_t k = 0; k < i; k++)
                free(l[k]);
            free(l);
            l = NULL;
        }
    }
    json_decref(a);
    return l;
}

/* Reads one client; *found false when there is none. -1 when the database failed. */
static int load(struct waf_clients *cs, const char *client_id, struct waf_client **out, bool *found)
{
    *out = NULL;
    *found = false;
    PGconn *c = waf_db_get(cs->db);
    if (c == NULL)
        return -1;
    const char *params[] = {client_id};
    char state[6], d[256];
    PGresult *res =
        waf_db_exec(c,
                    "SELECT client_type = 'confidential', status = 'active', "
                    " array_to_string(grant_types, ' '), array_to_string(scopes, ' '), audience, "
                    " encode(secret_mac, 'hex'), coalesce(token_lifetime_s, 0), "
                    " jwks::text, allow_pool, array_to_json(redirect_uris)::text "
                    "FROM oauth_clients WHERE client_id = $1",
                    1, params, state, d, sizeof(d));
    waf_db_put(cs->db, c);
    if (res == NULL)
        return -1;
    if (PQntuples(res) == 1) {
        struct waf_client *k = calloc(1, sizeof(*k));
        if (k == NULL) {
            PQclear(res);
            return -1;
        }
        snprintf(k->client_id, sizeof(k->client_id), "%s", client_id);
        k->confidential = PQgetvalue(res, 0, 0)[0] == 't';
        k->active = PQgetvalue(res, 0, 1)[0] == 't';
        k->grants = grants_of(PQgetvalue(res, 0, 2));
        k->scopes = strdup(PQgetvalue(res, 0, 3));
        k->audience = strdup(PQgetvalue(res, 0, 4));
        const char *hex = PQgetvalue(res, 0, 5);
        if (strlen(hex) == 64) {
            k->has_mac = true;
            for (int i = 0; i < 32; i++) {
                unsigned v = 0;
                sscanf(hex + 2 * i, "%2x", &v);
                k->mac[i] = (uint8_t)v;
            }
        }
        k->lifetime_s = atol(PQgetvalue(res, 0, 6));
        k->refs_ = 1;
        bool ok = k->scopes && k->audience;
        if (ok && !PQgetisnull(res, 0, 7)) {
            const char *j = PQgetvalue(res, 0, 7);
            /* A JWKS the WAF cannot use leaves the client without keys (assertions then
               fail as unverifiable) instead of making the whole client unusable. */
            if (waf_jwks_parse(j, strlen(j), &k->jwks, d, sizeof(d)) != WAF_JOSE_OK)
                k->jwks = NULL;
        }
        if (ok && !PQgetisnull(res, 0, 8))
            ok = (k->allow_pool = strdup(PQgetvalue(res, 0, 8))) != NULL;
        if (ok)
            ok = (k->redirect_uris = uri_list(PQgetvalue(res, 0, 9))) != NULL;
        if (!ok) {
            client_free(k);
            PQclear(res);
            return -1;
        }
        *out = k;
        *found = true;
    }
    PQclear(res);
    return 0;
}

/* The cached record of client_id (referenced), loading it when absent or old. */
static enum waf_client_result lookup(struct waf_clients *cs, const char *client_id,
                                     struct waf_client **out)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)client_id; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    struct slot *s = &cs->slots[h % CACHE_SLOTS];
    int64_t now = waf_mono_ms();
    pthread_mutex_lock(&cs->lock);
    if (strcmp(s->client_id, client_id) == 0 && now - s->loaded_ms < WAF_CLIENT_CACHE_MS) {
        *out = s->c;
        if (s->c)
            s->c->refs_++;
        pthread_mutex_unlock(&cs->lock);
        return *out ? WAF_CLIENT_OK : WAF_CLIENT_UNKNOWN;
    }
    pthread_mutex_unlock(&cs->lock);
    struct waf_client *k;
    bool found;
    if (load(cs, client_id, &k, &found) != 0)
        return WAF_CLIENT_UNAVAILABLE;
    pthread_mutex_lock(&cs->lock);
    struct waf_client *old = s->c;
    snprintf(s->client_id, sizeof(s->client_id), "%s", client_id);
    s->c = k;
    s->loaded_ms = now;
    if (k)
        k->refs_++; /* one for the cache, one for the caller */
    bool free_old = old && --old->refs_ == 0;
    pthread_mutex_unlock(&cs->lock);
    if (free_old)
        client_free(old);
    *out = k;
    return found ? WAF_CLIENT_OK : WAF_CLIENT_UNKNOWN;
}

enum waf_client_result waf_clients_get(struct waf_clients *cs, const char *client_id,
                                       const struct waf_client **out)
{
    *out = NULL;
    if (client_id == NULL || strlen(client_id) > 128)
        return WAF_CLIENT_UNKNOWN;
    struct waf_client *k;
    enum waf_client_result r = lookup(cs, client_id, &k);
    if (r != WAF_CLIENT_OK)
        return r;
    if (!k->active) {
        waf_client_put(cs, k);
        return WAF_CLIENT_UNKNOWN;
    }
    *out = k;
    return WAF_CLIENT_OK;
}

enum waf_client_result waf_clients_authenticate(struct waf_clients *cs, const char *client_id,
                                                const char *secret, const struct waf_client **out)
{
    const struct waf_client *k;
    enum waf_client_result r = waf_clients_get(cs, client_id, &k);
    *out = NULL;
    if (r != WAF_CLIENT_OK)
        return r;
    /* Always compute the MAC, so that a client without one takes as long. */
    static const uint8_t none[32];
    bool ok = waf_secret_verify(cs->server_key, secret ? secret : "", k->has_mac ? k->mac : none) ==
                  WAF_CRYPTO_OK &&
              k->has_mac && secret != NULL;
    if (!ok) {
        waf_client_put(cs, k);
        return WAF_CLIENT_BAD_SECRET;
    }
    *out = k;
    return WAF_CLIENT_OK;
}

bool waf_scope_has(const char *scope, const char *token)
{
    size_t tl = strlen(token);
    for (const char *p = scope; *p;) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " ");
        if (n == tl && n > 0 && strncmp(p, token, n) == 0)
            return true;
        p += n;
    }
    return false;
}

bool waf_scope_subset(const char *requested, const char *granted)
{
    for (const char *p = requested; *p;) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " ");
        if (n == 0)
            break;
        char one[129];
        if (n >= sizeof(one))
            return false; /* longer than any scope we grant */
        memcpy(one, p, n);
        one[n] = '\0';
        if (!waf_scope_has(granted, one))
            return false;
        p += n;
    }
    return true;
}

bool waf_client_scopes_allowed(const struct waf_client *c, const char *requested)
{
    return waf_scope_subset(requested, c->scopes);
}

int waf_clients_bootstrap_admin(struct waf_clients *cs, const char *client_id, const char *secret,
                                const char *aud, char *detail, size_t dlen)
{
    uint8_t mac[32];
    char hex[70] = "\\x";
    if (waf_secret_mac(cs->server_key, secret, mac) != WAF_CRYPTO_OK) {
        snprintf(detail, dlen, "cannot compute the secret's MAC");
        return -1;
    }
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 + 2 * i, 3, "%02x", mac[i]);
    PGconn *c = waf_db_get(cs->db);
    if (c == NULL) {
        snprintf(detail, dlen, "database unreachable");
        return -1;
    }
    const char *params[] = {client_id, hex, aud};
    char state[6];
    PGresult *res = waf_db_exec(
        c,
        "INSERT INTO oauth_clients (client_id, name, client_type, grant_types, scopes, "
        " audience, secret_mac) VALUES ($1, 'bootstrap admin', 'confidential', "
        " '{client_credentials}', '{admin}', $3, $2::bytea) ON CONFLICT (client_id) DO NOTHING",
        3, params, state, detail, dlen);
    waf_db_put(cs->db, c);
    if (res == NULL)
        return -1;
    int created = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    return created;
}
