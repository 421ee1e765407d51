/* Signing keys (see keystore.h). */
#include "keystore.h"

#include "wcrypto.h"
#include "wutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What request threads use: immutable once published, freed with its last reference. */
#define MAX_PUBLISHED 64

struct snapshot {
    int refs; /* under ks->lock */
    struct waf_sigkey *active;
    char *jwks;
    int npub;
    char kid[MAX_PUBLISHED][65];
    struct waf_pubkey *pub[MAX_PUBLISHED]; /* every published key, for verification */
};

/* A token signed just before a retirement is valid this much longer than its lifetime
 * (verifiers' clock leeway). */
#define RETIRE_LEEWAY_S 60

struct waf_keystore {
    struct waf_db *db;
    const uint8_t *kek;
    long reload_ms;
    long overlap_s, lifetime_s; /* under lock */
    pthread_mutex_t lock;       /* guards cur and refs */
    pthread_mutex_t reload;     /* one reloader at a time */
    struct snapshot *cur;
    int64_t loaded_ms;
};

static void snap_free(struct snapshot *s)
{
    if (s == NULL)
        return;
    waf_sigkey_free(s->active);
    for (int i = 0; i < s->npub; i++)
        waf_pubkey_free(s->pub[i]);
    free(s->jwks);
    free(s);
}

static void unref(struct waf_keystore *ks, struct snapshot *s)
{
    pthread_mutex_lock(&ks->lock);
    bool last = --s->refs == 0;
    pthread_mutex_unlock(&ks->lock);
    if (last)
        snap_free(s);
}

/* bytea in the text protocol: \x followed by hex. */
static uint8_t *unhex_bytea(const char *s, size_t *len)
{
    if (strncmp(s, "\\x", 2) != 0)
        return NULL;
    s += 2;
    size_t n = strlen(s);
    if (n % 2)
        return NULL;
    uint8_t *out = malloc(n / 2 + 1);
    for (size_t i = 0; out && i < n / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1) {
            free(out);
            return NULL;
        }
        out[i] = (uint8_t)v;
    }
    *len = n / 2;
    return out;
}

/* Makes, seals and stores a new key in state ("active" or "next"); kid_out (65 bytes,
 * optional) gets its kid. A concurrent instance making the first active key makes the
 * insert fail on signing_keys_one_active: 1 then (the caller just loads). 0 or -1. */
static int store_new(struct waf_keystore *ks, PGconn *c, const char *state, char *kid_out,
                     char *detail, size_t dlen)
{
    struct waf_sigkey *k = NULL;
    uint8_t *blob = NULL;
    size_t blen = 0;
    if (waf_sigkey_generate(&k, detail, dlen) != WAF_CRYPTO_OK ||
        waf_sigkey_seal(k, ks->kek, &blob, &blen, detail, dlen) != WAF_CRYPTO_OK) {
        waf_sigkey_free(k);
        return -1;
    }
    char *hex = malloc(blen * 2 + 3);
    if (hex == NULL) {
        waf_sigkey_free(k);
        free(blob);
        return -1;
    }
    strcpy(hex, "\\x");
    for (size_t i = 0; i < blen; i++)
        snprintf(hex + 2 + 2 * i, 3, "%02x", blob[i]);
    const char *params[] = {waf_sigkey_kid(k), waf_sigkey_public_jwk(k), hex, state};
    char sqlstate[6];
    PGresult *res = waf_db_exec(c,
                                "INSERT INTO signing_keys (kid, alg, public_jwk, private_key_enc, "
                                "state, activated_at) VALUES ($1, 'ES256', $2::jsonb, "
                                "$3::bytea, $4, CASE WHEN $4 = 'active' THEN now() END)",
                                4, params, sqlstate, detail, dlen);
    if (kid_out)
        snprintf(kid_out, 65, "%s", waf_sigkey_kid(k));
    free(hex);
    free(blob);
    waf_sigkey_free(k);
    if (res == NULL)
        return strcmp(sqlstate, "23505") == 0 && strcmp(state, "active") == 0 ? 1 : -1;
    PQclear(res);
    return 0;
}

static bool run(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    return ok;
}

/*
 * Promotes the oldest next key older than the overlap, if any: it becomes active and the
 * active key retired, published until every token it can have signed has expired. One
 * transaction; the next key's row lock (SKIP LOCKED) lets one instance do it, and the
 * one-active index refuses anything else. Recorded in audit_log (actor "waf-server").
 * Failures leave everything as it was (the next reload tries again).
 */
static void promote(struct waf_keystore *ks, PGconn *c)
{
    pthread_mutex_lock(&ks->lock);
    long overlap = ks->overlap_s, lifetime = ks->lifetime_s;
    pthread_mutex_unlock(&ks->lock);
    if (overlap < 0)
        return;
    char ov[24], keep[24];
    snprintf(ov, sizeof(ov), "%ld", overlap);
    /* Other instances may sign with the old key until their next reload. */
    snprintf(keep, sizeof(keep), "%ld", RETIRE_LEEWAY_S + (ks->reload_ms + 999) / 1000);
    char state[6], d[256];
    const char *p1[] = {ov};
    PGresult *res = waf_db_exec(c,
                                "SELECT 1 FROM signing_keys WHERE state = 'next' AND "
                                "created_at <= now() - make_interval(secs => $1::int) LIMIT 1",
                                1, p1, state, d, sizeof(d));
    bool due = res && PQntuples(res) > 0;
    PQclear(res);
    if (!due || !run(c, "BEGIN"))
        return;
    res = waf_db_exec(c,
                      "SELECT kid FROM signing_keys WHERE state = 'next' AND "
                      "created_at <= now() - make_interval(secs => $1::int) "
                      "ORDER BY created_at, kid LIMIT 1 FOR UPDATE SKIP LOCKED",
                      1, p1, state, d, sizeof(d));
    if (res == NULL || PQntuples(res) == 0) {
        PQclear(res);
        run(c, "ROLLBACK");
        return;
    }
    char kid[65];
    snprintf(kid, sizeof(kid), "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    char lt[24];
    snprintf(lt, sizeof(lt), "%ld", lifetime);
    const char *p2[] = {lt, keep};
    /* Two statements: the one-active index is checked row by row. */
    res = waf_db_exec(c,
                      "UPDATE signing_keys SET state = 'retired', retired_at = now(), "
                      " publish_until = now() + make_interval(secs => greatest($1::int, "
                      "  (SELECT coalesce(max(token_lifetime_s), 0) FROM oauth_clients)) + "
                      "  $2::int) WHERE state = 'active' RETURNING kid, publish_until",
                      2, p2, state, d, sizeof(d));
    char old[65] = "", until[64] = "";
    bool retired = res != NULL;
    if (res && PQntuples(res) == 1) {
        snprintf(old, sizeof(old), "%s", PQgetvalue(res, 0, 0));
        snprintf(until, sizeof(until), "%s", PQgetvalue(res, 0, 1));
    }
    PQclear(res);
    const char *p3[] = {kid, old, until};
    res = retired ? waf_db_exec(c,
                                "WITH new AS (UPDATE signing_keys SET state = 'active', "
                                "  activated_at = now() WHERE kid = $1 AND state = 'next' "
                                "  RETURNING kid) "
                                "INSERT INTO audit_log (actor, action, target_type, target_id, "
                                " before, after) "
                                "SELECT 'waf-server', 'key.activate', 'signing_key', new.kid, "
                                " jsonb_build_object('active', nullif($2, ''), 'next', new.kid), "
                                " jsonb_build_object('active', new.kid, 'retired', nullif($2, ''), "
                                "  'retired_publish_until', nullif($3, '')::timestamptz) FROM new",
                                3, p3, state, d, sizeof(d))
                  : NULL;
    bool ok = res && strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    if (!ok || !run(c, "COMMIT"))
        run(c, "ROLLBACK");
}

void waf_keystore_set_policy(struct waf_keystore *ks, long overlap_s, long lifetime_s)
{
    pthread_mutex_lock(&ks->lock);
    ks->overlap_s = overlap_s;
    ks->lifetime_s = lifetime_s;
    pthread_mutex_unlock(&ks->lock);
}

int waf_keystore_rotate(struct waf_keystore *ks, PGconn *c, char kid[65], char *detail, size_t dlen)
{
    char state[6];
    kid[0] = '\0';
    PGresult *res = waf_db_exec(c,
                                "SELECT pg_advisory_xact_lock(hashtextextended("
                                "'waf-server signing key rotation', 0))",
                                0, NULL, state, detail, dlen);
    if (res == NULL)
        return -1;
    PQclear(res);
    res = waf_db_exec(c, "SELECT kid FROM signing_keys WHERE state = 'next' LIMIT 1", 0, NULL,
                      state, detail, dlen);
    if (res == NULL)
        return -1;
    if (PQntuples(res) > 0) {
        snprintf(kid, 65, "%s", PQgetvalue(res, 0, 0));
        PQclear(res);
        return 1;
    }
    PQclear(res);
    return store_new(ks, c, "next", kid, detail, dlen) == 0 ? 0 : -1;
}

/* Reads the keys into a new snapshot. */
static struct snapshot *load(struct waf_keystore *ks, PGconn *c, char *detail, size_t dlen)
{
    char state[6];
    PGresult *res = waf_db_exec(
        c,
        "SELECT kid, state, public_jwk::text, private_key_enc FROM signing_keys "
        "WHERE state IN ('next', 'active') OR (state = 'retired' AND publish_until > now()) "
        "ORDER BY state = 'active' DESC, created_at DESC",
        0, NULL, state, detail, dlen);
    if (res == NULL)
        return NULL;
    struct snapshot *s = calloc(1, sizeof(*s));
    size_t cap = 16;
    for (int i = 0; i < PQntuples(res); i++)
        cap += strlen(PQgetvalue(res, i, 2)) + 1;
    char *jwks = s ? malloc(cap) : NULL;
    if (jwks == NULL) {
        free(s);
        PQclear(res);
        return NULL;
    }
    s->jwks = jwks;
    size_t len = (size_t)snprintf(jwks, cap, "{\"keys\":[");
    for (int i = 0; i < PQntuples(res); i++) {
        len += (size_t)snprintf(jwks + len, cap - len, "%s%s", i ? "," : "", PQgetvalue(res, i, 2));
        if (s->npub < MAX_PUBLISHED &&
            waf_pubkey_from_jwk(PQgetvalue(res, i, 2), &s->pub[s->npub], NULL, 0) == WAF_CRYPTO_OK)
            snprintf(s->kid[s->npub++], 65, "%s", PQgetvalue(res, i, 0));
        if (strcmp(PQgetvalue(res, i, 1), "active") != 0 || s->active)
            continue;
        size_t blen = 0;
        uint8_t *blob = unhex_bytea(PQgetvalue(res, i, 3), &blen);
        enum waf_crypto_result r = blob ? waf_sigkey_open(ks->kek, PQgetvalue(res, i, 0), blob,
                                                          blen, &s->active, detail, dlen)
                                        : WAF_CRYPTO_BLOB_FORMAT;
        free(blob);
        if (r != WAF_CRYPTO_OK) {
            snprintf(detail, dlen, "active key %s cannot be opened (wrong keys.kek_file?): %s",
                     PQgetvalue(res, i, 0), waf_crypto_strerror(r));
            snap_free(s);
            PQclear(res);
            return NULL;
        }
    }
    snprintf(jwks + len, cap - len, "]}");
    PQclear(res);
    return s;
}

int waf_keystore_reload(struct waf_keystore *ks, char *detail, size_t dlen)
{
    PGconn *c = waf_db_get(ks->db);
    if (c == NULL) {
        snprintf(detail, dlen, "database unreachable");
        return -1;
    }
    promote(ks, c);
    struct snapshot *s = load(ks, c, detail, dlen);
    if (s && s->active == NULL) {
        snap_free(s);
        s = store_new(ks, c, "active", NULL, detail, dlen) >= 0 ? load(ks, c, detail, dlen) : NULL;
        if (s && s->active == NULL) {
            snprintf(detail, dlen, "no active signing key after creating one");
            snap_free(s);
            s = NULL;
        }
    }
    waf_db_put(ks->db, c);
    if (s == NULL)
        return -1;
    s->refs = 1;
    pthread_mutex_lock(&ks->lock);
    struct snapshot *old = ks->cur;
    ks->cur = s;
    ks->loaded_ms = waf_mono_ms();
    pthread_mutex_unlock(&ks->lock);
    if (old)
        unref(ks, old);
    return 0;
}

struct waf_keystore *waf_keystore_open(struct waf_db *db, const uint8_t kek[32], long reload_ms,
                                       char *detail, size_t dlen)
{
    struct waf_keystore *ks = calloc(1, sizeof(*ks));
    if (ks == NULL)
        return NULL;
    ks->db = db;
    ks->kek = kek;
    ks->reload_ms = reload_ms;
    ks->overlap_s = -1; /* no promotion before the policy is set */
    ks->lifetime_s = 600;
    pthread_mutex_init(&ks->lock, NULL);
    pthread_mutex_init(&ks->reload, NULL);
    if (waf_keystore_reload(ks, detail, dlen) != 0) {
        waf_keystore_free(ks);
        return NULL;
    }
    return ks;
}

void waf_keystore_free(struct waf_keystore *ks)
{
    if (ks == NULL)
        return;
    if (ks->cur)
        snap_free(ks->cur);
    pthread_mutex_destroy(&ks->lock);
    pthread_mutex_destroy(&ks->reload);
    free(ks);
}

/* The current snapshot, referenced; re-read first when it is old (one thread does it,
 * the others go on with the current one). */
static struct snapshot *current(struct waf_keystore *ks)
{
    pthread_mutex_lock(&ks->lock);
    if (waf_mono_ms() - ks->loaded_ms <= ks->reload_ms) { /* the usual case: one lock */
        struct snapshot *s = ks->cur;
        s->refs++;
        pthread_mutex_unlock(&ks->lock);
        return s;
    }
    pthread_mutex_unlock(&ks->lock);
    if (pthread_mutex_trylock(&ks->reload) == 0) {
        char d[256];
        (void)waf_keystore_reload(ks, d, sizeof(d)); /* on failure the old keys stay */
        pthread_mutex_lock(&ks->lock);
        ks->loaded_ms = waf_mono_ms(); /* retry later, not on every request */
        pthread_mutex_unlock(&ks->lock);
        pthread_mutex_unlock(&ks->reload);
    }
    pthread_mutex_lock(&ks->lock);
    struct snapshot *s = ks->cur;
    s->refs++;
    pthread_mutex_unlock(&ks->lock);
    return s;
}

int waf_keystore_sign(struct waf_keystore *ks, const char *payload, size_t len, char **token,
                      char kid_out[65])
{
    struct snapshot *s = current(ks);
    enum waf_crypto_result r = waf_jws_sign(s->active, payload, len, token, NULL, 0);
    if (kid_out)
        snprintf(kid_out, 65, "%s", waf_sigkey_kid(s->active));
    unref(ks, s);
    return r == WAF_CRYPTO_OK ? 0 : -1;
}

char *waf_keystore_jwks(struct waf_keystore *ks)
{
    struct snapshot *s = current(ks);
    char *copy = strdup(s->jwks);
    unref(ks, s);
    return copy;
}

/* The published key of kid in s, or NULL. */
static const struct waf_pubkey *published(const struct snapshot *s, const char *kid)
{
    for (int i = 0; i < s->npub; i++)
        if (strcmp(s->kid[i], kid) == 0)
            return s->pub[i];
    return NULL;
}

int waf_keystore_verify(struct waf_keystore *ks, const char *token, size_t len, char **payload)
{
    char kid[65];
    if (!waf_jws_kid(token, len, kid))
        return -1;
    struct snapshot *s = current(ks);
    const struct waf_pubkey *k = published(s, kid);
    pthread_mutex_lock(&ks->lock);
    bool may_reload = waf_mono_ms() - ks->loaded_ms > 1000; /* at most once a second */
    pthread_mutex_unlock(&ks->lock);
    if (k == NULL && may_reload && pthread_mutex_trylock(&ks->reload) == 0) {
        /* A key another instance published since the last reload. */
        char d[256];
        unref(ks, s);
        (void)waf_keystore_reload(ks, d, sizeof(d));
        pthread_mutex_unlock(&ks->reload);
        s = current(ks);
        k = published(s, kid);
    }
    int rc = k && waf_jws_verify(k, token, len, payload) == WAF_CRYPTO_OK ? 0 : -1;
    unref(ks, s);
    return rc;
}
