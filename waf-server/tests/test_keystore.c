/* Signing keys against the dev stack's real PostgreSQL: the first key made once even when
 * two instances start together, a wrong key-encryption key refused, and a key added
 * through another instance published after a reload. */
#include "ims_common/testdb.h"
#include "imspool/imspool.h"
#include "keystore.h"
#include "wcrypto.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char db_url[512], db_name[64];
static const uint8_t kek[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

static void setup(void)
{
    static int seq;
    char err[512];
    snprintf(db_name, sizeof(db_name), "waf_keys_%d_%d", (int)getpid(), seq++);
    cr_assert_eq(ims_testdb_create(db_name, db_url, sizeof(db_url), err, sizeof(err)), 0, "%s",
                 err);
    cr_assert_eq(imspool_migrate(db_url, NULL, NULL, err, sizeof(err)), IMSPOOL_OK, "%s", err);
}

static void teardown(void)
{
    ims_testdb_drop(db_name);
}

TestSuite(keystore, .init = setup, .fini = teardown, .timeout = 60);

struct starter {
    struct waf_db *db;
    struct waf_keystore *ks;
    char detail[256];
};

static void *start(void *arg)
{
    struct starter *s = arg;
    s->ks = waf_keystore_open(s->db, kek, 5000, s->detail, sizeof(s->detail));
    return NULL;
}

static long count(const char *sql)
{
    PGconn *c = PQconnectdb(db_url);
    PGresult *r = PQexec(c, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
    long n = atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    return n;
}

Test(keystore, two_instances_starting_together_make_one_key)
{
    char d[256];
    struct starter s[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        memset(&s[i], 0, sizeof(s[i]));
        s[i].db = waf_db_open(db_url, 2, d, sizeof(d));
        cr_assert_not_null(s[i].db, "%s", d);
        pthread_create(&t[i], NULL, start, &s[i]);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        cr_assert_not_null(s[i].ks, "instance %d: %s", i, s[i].detail);
    }
    cr_assert_eq(count("SELECT count(*) FROM signing_keys"), 1);
    char kid[2][65];
    for (int i = 0; i < 2; i++) {
        char *token = NULL;
        cr_assert_eq(waf_keystore_sign(s[i].ks, "{\"a\":1}", 7, &token, kid[i]), 0);
        cr_assert(strncmp(token, "eyJ", 3) == 0);
        free(token);
        char *jwks = waf_keystore_jwks(s[i].ks);
        cr_assert(strstr(jwks, kid[i]) != NULL, "%s", jwks);
        cr_assert(strstr(jwks, "\"d\"") == NULL, "no private member: %s", jwks);
        free(jwks);
    }
    cr_assert_str_eq(kid[0], kid[1], "both sign with the one active key");
    for (int i = 0; i < 2; i++) {
        waf_keystore_free(s[i].ks);
        waf_db_free(s[i].db);
    }
}

Test(keystore, a_wrong_kek_is_refused_and_another_instances_key_appears)
{
    char d[256];
    struct waf_db *db = waf_db_open(db_url, 2, d, sizeof(d));
    cr_assert_not_null(db, "%s", d);
    struct waf_keystore *ks = waf_keystore_open(db, kek, 5000, d, sizeof(d));
    cr_assert_not_null(ks, "%s", d);
    uint8_t other[32] = {0};
    struct waf_keystore *bad = waf_keystore_open(db, other, 5000, d, sizeof(d));
    cr_assert_null(bad);
    cr_assert(strstr(d, "keys.kek_file") != NULL, "%s", d);

    /* A next key, as a rotation through another instance stores it. */
    struct waf_sigkey *k;
    cr_assert_eq(waf_sigkey_generate(&k, d, sizeof(d)), WAF_CRYPTO_OK);
    uint8_t *blob;
    size_t blen;
    cr_assert_eq(waf_sigkey_seal(k, kek, &blob, &blen, d, sizeof(d)), WAF_CRYPTO_OK);
    char hex[8192] = "\\x";
    for (size_t i = 0; i < blen; i++)
        snprintf(hex + 2 + 2 * i, 3, "%02x", blob[i]);
    PGconn *c = PQconnectdb(db_url);
    const char *params[] = {waf_sigkey_kid(k), waf_sigkey_public_jwk(k), hex};
    PGresult *r = PQexecParams(c,
                               "INSERT INTO signing_keys (kid, alg, public_jwk, private_key_enc) "
                               "VALUES ($1, 'ES256', $2::jsonb, $3::bytea)",
                               3, NULL, params, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    char *jwks = waf_keystore_jwks(ks);
    cr_assert(strstr(jwks, waf_sigkey_kid(k)) == NULL, "not before a reload");
    free(jwks);
    cr_assert_eq(waf_keystore_reload(ks, d, sizeof(d)), 0, "%s", d);
    jwks = waf_keystore_jwks(ks);
    cr_assert(strstr(jwks, waf_sigkey_kid(k)) != NULL, "published as next: %s", jwks);
    free(jwks);
    char kid[65];
    char *token;
    cr_assert_eq(waf_keystore_sign(ks, "{}", 2, &token, kid), 0);
    cr_assert_str_neq(kid, waf_sigkey_kid(k), "a next key does not sign yet");
    free(token);
    free(blob);
    waf_sigkey_free(k);
    waf_keystore_free(ks);
    waf_db_free(db);
}
