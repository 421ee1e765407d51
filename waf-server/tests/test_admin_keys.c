/* Signing key rotation behind POST /admin/v1/keys/rotate (keystore.c) against the dev
 * stack's real PostgreSQL: a next key is published and does not sign; it is promoted
 * only once the policy is set and its overlap has passed, by one of two instances
 * reloading together; the old key stays published (and verifies) until the longest token
 * lifetime plus leeway, then leaves the JWKS. */
#include "ims_common/testdb.h"
#include "imspool/imspool.h"
#include "keystore.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char db_url[512], db_name[64];
static const uint8_t kek[32] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6,
                                7, 8, 9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2};

static void setup(void)
{
    static int seq;
    char err[512];
    snprintf(db_name, sizeof(db_name), "waf_admin_keys_%d_%d", (int)getpid(), seq++);
    cr_assert_eq(ims_testdb_create(db_name, db_url, sizeof(db_url), err, sizeof(err)), 0, "%s",
                 err);
    cr_assert_eq(imspool_migrate(db_url, NULL, NULL, err, sizeof(err)), IMSPOOL_OK, "%s", err);
}

static void teardown(void)
{
    ims_testdb_drop(db_name);
}

TestSuite(admin_keys, .init = setup, .fini = teardown, .timeout = 60);

/* The first column of the first row of sql, as text (static buffer). */
static const char *value(const char *sql)
{
    static char out[256];
    PGconn *c = PQconnectdb(db_url);
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    cr_assert(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage(c));
    snprintf(out, sizeof(out), "%s", st == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    PQfinish(c);
    return out;
}

/* Rotates in a transaction of its own: 0 new key, 1 one waits already. */
static int rotate(struct waf_keystore *ks, char kid[65])
{
    char d[256];
    PGconn *c = PQconnectdb(db_url);
    PQclear(PQexec(c, "BEGIN"));
    int r = waf_keystore_rotate(ks, c, kid, d, sizeof(d));
    cr_assert(r == 0 || r == 1, "rotate: %s", d);
    PQclear(PQexec(c, r == 0 ? "COMMIT" : "ROLLBACK"));
    PQfinish(c);
    return r;
}

static char *sign(struct waf_keystore *ks, char kid[65])
{
    char *token = NULL;
    cr_assert_eq(waf_keystore_sign(ks, "{\"x\":1}", 7, &token, kid), 0);
    return token;
}

static bool published(struct waf_keystore *ks, const char *kid)
{
    char *jwks = waf_keystore_jwks(ks);
    bool in = strstr(jwks, kid) != NULL;
    free(jwks);
    return in;
}

Test(admin_keys, next_key_published_then_promoted_and_the_old_one_kept)
{
    char d[256];
    struct waf_db *db = waf_db_open(db_url, 2, d, sizeof(d));
    cr_assert_not_null(db, "%s", d);
    struct waf_keystore *ks = waf_keystore_open(db, kek, 5000, d, sizeof(d));
    cr_assert_not_null(ks, "%s", d);
    char first[65], next[65], again[65], kid[65];
    char *old_token = sign(ks, first);

    cr_assert_eq(rotate(ks, next), 0);
    cr_assert_str_neq(next, first);
    cr_assert_eq(rotate(ks, again), 1, "one next key at a time");
    cr_assert_str_eq(again, next);
    cr_assert_eq(waf_keystore_reload(ks, d, sizeof(d)), 0, "%s", d);
    cr_assert(published(ks, next), "a next key is published at once");
    free(sign(ks, kid));
    cr_assert_str_eq(kid, first, "without a policy nothing is promoted");

    /* Overlap not reached: still next. */
    waf_keystore_set_policy(ks, 3600, 600);
    cr_assert_eq(waf_keystore_reload(ks, d, sizeof(d)), 0, "%s", d);
    free(sign(ks, kid));
    cr_assert_str_eq(kid, first);

    /* A client with a longer token lifetime than the server's default. */
    value("INSERT INTO oauth_clients (client_id, name, client_type, grant_types, redirect_uris, "
          "audience, token_lifetime_s) VALUES ('long', 'long', 'public', '{authorization_code}', "
          "'{https://a/cb}', 'a', 7200)");
    value("UPDATE signing_keys SET created_at = now() - interval '2 hours' WHERE state = 'next'");
    cr_assert_eq(waf_keystore_reload(ks, d, sizeof(d)), 0, "%s", d);
    free(sign(ks, kid));
    cr_assert_str_eq(kid, next, "the next key signs after the overlap");
    char sql[200];
    snprintf(sql, sizeof(sql), "SELECT state FROM signing_keys WHERE kid = '%s'", first);
    cr_assert_str_eq(value(sql), "retired");
    /* Published until the longest lifetime (7200) + reload (5) + leeway (60). */
    long keep = atol(value("SELECT extract(epoch FROM publish_until - retired_at)::bigint "
                           "FROM signing_keys WHERE state = 'retired'"));
    cr_assert_eq(keep, 7200 + 5 + 60, "%ld", keep);
    cr_assert(published(ks, first), "the retired key stays published");
    char *payload = NULL;
    cr_assert_eq(waf_keystore_verify(ks, old_token, strlen(old_token), &payload), 0,
                 "a token of the old key still verifies");
    free(payload);
    cr_assert_str_eq(value("SELECT count(*) FROM audit_log WHERE action = 'key.activate' AND "
                           "actor = 'waf-server'"),
                     "1");
    cr_assert_str_eq(value("SELECT count(*) FROM signing_keys WHERE state = 'active'"), "1");

    /* Past publish_until: out of the JWKS, its tokens no longer verify. */
    value("UPDATE signing_keys SET created_at = now() - interval '5 hours', activated_at = "
          "now() - interval '4 hours', retired_at = now() - interval '3 hours', "
          "publish_until = now() - interval '1 second' WHERE state = 'retired'");
    cr_assert_eq(waf_keystore_reload(ks, d, sizeof(d)), 0, "%s", d);
    cr_assert_not(published(ks, first));
    cr_assert(published(ks, next));
    cr_assert_neq(waf_keystore_verify(ks, old_token, strlen(old_token), &payload), 0);
    free(old_token);
    waf_keystore_free(ks);
    waf_db_free(db);
}

struct inst {
    struct waf_keystore *ks;
    int rc;
    char detail[256];
};

static void *reload(void *arg)
{
    struct inst *in = arg;
    in->rc = waf_keystore_reload(in->ks, in->detail, sizeof(in->detail));
    return NULL;
}

Test(admin_keys, two_instances_promote_once)
{
    char d[256];
    struct waf_db *db[2];
    struct inst in[2];
    for (int i = 0; i < 2; i++) {
        db[i] = waf_db_open(db_url, 2, d, sizeof(d));
        cr_assert_not_null(db[i], "%s", d);
        memset(&in[i], 0, sizeof(in[i]));
        in[i].ks = waf_keystore_open(db[i], kek, 5000, d, sizeof(d));
        cr_assert_not_null(in[i].ks, "%s", d);
        waf_keystore_set_policy(in[i].ks, 0, 600);
    }
    for (int round = 0; round < 5; round++) {
        char next[65];
        cr_assert_eq(rotate(in[0].ks, next), 0);
        pthread_t t[2];
        for (int i = 0; i < 2; i++)
            pthread_create(&t[i], NULL, reload, &in[i]);
        for (int i = 0; i < 2; i++) {
            pthread_join(t[i], NULL);
            cr_assert_eq(in[i].rc, 0, "%s", in[i].detail);
        }
        cr_assert_str_eq(value("SELECT count(*) FROM signing_keys WHERE state = 'active'"), "1");
        cr_assert_str_eq(value("SELECT kid FROM signing_keys WHERE state = 'active'"), next);
        for (int i = 0; i < 2; i++) {
            /* The loser of the race sees the promotion at its next reload. */
            cr_assert_eq(waf_keystore_reload(in[i].ks, d, sizeof(d)), 0, "%s", d);
            char kid[65];
            free(sign(in[i].ks, kid));
            cr_assert_str_eq(kid, next, "instance %d signs with the promoted key", i);
        }
    }
    cr_assert_str_eq(value("SELECT count(*) FROM audit_log WHERE action = 'key.activate'"), "5");
    cr_assert_str_eq(value("SELECT count(*) FROM signing_keys WHERE state = 'retired'"), "5");
    for (int i = 0; i < 2; i++) {
        waf_keystore_free(in[i].ks);
        waf_db_free(db[i]);
    }
}
