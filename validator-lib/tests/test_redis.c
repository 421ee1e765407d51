/* Redis-backed revocation against the dev stack's real Redis (REDIS_URL). */
#include "helpers.h"

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <imsauth/imsauth.h>
#include <imsauth/imsauth_redis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static redisContext *admin(const char *url)
{
    int port = 0;
    cr_assert_eq(sscanf(url, "redis://127.0.0.1:%d", &port), 1, "REDIS_URL %s", url);
    redisContext *rc = redisConnect("127.0.0.1", port);
    cr_assert(rc && !rc->err);
    return rc;
}

static void cmd(redisContext *rc, const char *fmt, const char *a, const char *b)
{
    redisReply *r = redisCommand(rc, fmt, a, b);
    cr_assert_not_null(r);
    freeReplyObject(r);
}

Test(redis_revocation, revoke_reaches_verifier_within_cache_window, .timeout = 60)
{
    const char *url = getenv("REDIS_URL");
    cr_assert_not_null(url, "REDIS_URL must be set (scripts/devstack up)");
    char key[64];
    snprintf(key, sizeof(key), "test:revoked:%d", (int)getpid());
    redisContext *rc = admin(url);
    cmd(rc, "DEL %s", key, NULL);

    struct imsauth_redis_revocation *rv;
    struct imsauth_redis_opts ro = {.url = url, .key = key, .cache_ms = 300};
    char d[160];
    cr_assert_eq(imsauth_redis_revocation_alloc(&rv, &ro, d, sizeof(d)), IMSAUTH_OK, "%s", d);

    EVP_PKEY *k = ims_mint_keygen(IMS_MINT_P256);
    const char *kid = "k";
    char *jwks = ims_mint_jwks(&k, &kid, 1);
    static const char *iss[] = {TH_ISS, NULL};
    struct imsauth_opts o = {.issuers = iss,
                             .audience = TH_AUD,
                             .realm = TH_REALM,
                             .jwks_json = jwks,
                             .revoked = imsauth_redis_revoked,
                             .revoked_arg = rv};
    struct imsauth_ctx *ctx;
    cr_assert_eq(imsauth_ctx_alloc(&ctx, &o, d, sizeof(d)), IMSAUTH_OK, "%s", d);
    json_t *h = th_header("ES256", "k"), *c = th_claims();
    int64_t now = (int64_t)time(NULL);
    json_object_set_new(c, "iat", json_integer(now));
    json_object_set_new(c, "exp", json_integer(now + 60));
    json_object_set_new(c, "jti", json_string("jti-revoke-me"));
    char *t = ims_mint_sign(k, "ES256", h, c), *hdr = th_bearer(t);
    struct imsauth_request req = {.impu = TH_IMPU};
    struct imsauth_verdict v;

    cr_assert_eq(imsauth_verify(ctx, (uint8_t *)hdr, strlen(hdr), &req, &v), IMSAUTH_OK, "%s",
                 v.detail);
    imsauth_token_release(v.token);
    cmd(rc, "SADD %s %s", key, "jti-revoke-me");
    /* Within the negative-cache window the old answer may stand; after it, never. */
    sleep_ms(350);
    cr_assert_eq(imsauth_verify(ctx, (uint8_t *)hdr, strlen(hdr), &req, &v), IMSAUTH_ERR_REVOKED);
    cr_assert_eq(v.sip_status, 401);
    cr_assert_str_eq(v.error, "invalid_token");
    /* A positive answer is kept locally until exp, even if the set is cleaned early. */
    cmd(rc, "SREM %s %s", key, "jti-revoke-me");
    sleep_ms(350);
    cr_assert_eq(imsauth_verify(ctx, (uint8_t *)hdr, strlen(hdr), &req, &v), IMSAUTH_ERR_REVOKED);
    cmd(rc, "DEL %s", key, NULL);

    imsauth_ctx_free(ctx);
    imsauth_redis_revocation_free(rv);
    redisFree(rc);
    free(t);
    free(hdr);
    free(jwks);
    json_decref(h);
    json_decref(c);
    EVP_PKEY_free(k);
}

/* Redis drops the checker's connection (as on a restart): the next check connects again
 * and answers, instead of failing closed once. */
Test(redis_revocation, dropped_connection_answers_next_check, .timeout = 30)
{
    const char *url = getenv("REDIS_URL");
    cr_assert_not_null(url, "REDIS_URL must be set (scripts/devstack up)");
    char key[64], name[64];
    snprintf(key, sizeof(key), "test:revoked:drop:%d", (int)getpid());
    snprintf(name, sizeof(name), "imsauth-revocation:%d", (int)getpid());
    redisContext *rc = admin(url);
    cmd(rc, "SADD %s %s", key, "gone");
    struct imsauth_redis_revocation *rv;
    struct imsauth_redis_opts ro = {.url = url, .key = key, .cache_ms = 1};
    cr_assert_eq(imsauth_redis_revocation_alloc(&rv, &ro, NULL, 0), IMSAUTH_OK);
    cr_assert_eq(imsauth_redis_revoked("fine", 2000000000, rv), IMSAUTH_NOT_REVOKED);
    /* Kill exactly this process's checker connection (by the name it gives itself). */
    redisReply *list = redisCommand(rc, "CLIENT LIST");
    cr_assert(list && list->type == REDIS_REPLY_STRING);
    long long id = -1;
    for (char *line = strtok(list->str, "\n"); line; line = strtok(NULL, "\n")) {
        char *n = strstr(line, " name=");
        if (n && strncmp(n + 6, name, strlen(name)) == 0 && n[6 + strlen(name)] == ' ')
            id = strtoll(strstr(line, "id=") + 3, NULL, 10);
    }
    freeReplyObject(list);
    cr_assert_geq(id, 0, "the checker's connection is not in CLIENT LIST");
    redisReply *k = redisCommand(rc, "CLIENT KILL ID %lld", id);
    cr_assert(k && k->type == REDIS_REPLY_INTEGER && k->integer == 1);
    freeReplyObject(k);
    sleep_ms(5);
    cr_assert_eq(imsauth_redis_revoked("gone", 2000000000, rv), IMSAUTH_IS_REVOKED);
    cr_assert_eq(imsauth_redis_revoked("fine2", 2000000000, rv), IMSAUTH_NOT_REVOKED);
    cmd(rc, "DEL %s", key, NULL);
    imsauth_redis_revocation_free(rv);
    redisFree(rc);
}

Test(redis_revocation, redis_down_fails_closed)
{
    /* A port nobody listens on: the check must say "unknown", never "not revoked". */
    struct imsauth_redis_revocation *rv;
    struct imsauth_redis_opts ro = {.url = "redis://127.0.0.1:1/0", .timeout_ms = 100};
    cr_assert_eq(imsauth_redis_revocation_alloc(&rv, &ro, NULL, 0), IMSAUTH_OK);
    cr_assert_eq(imsauth_redis_revoked("x", 2000000000, rv), IMSAUTH_REVOCATION_UNKNOWN);
    cr_assert_eq(imsauth_redis_revoked("x", 2000000000, rv), IMSAUTH_REVOCATION_UNKNOWN);
    imsauth_redis_revocation_free(rv);
    static const char *bad[] = {"http://x", "redis://", "redis://h:0", "redis://u:p@h:1",
                                "redis://h:1/x"};
    for (size_t i = 0; i < 5; i++)
        cr_assert_eq(imsauth_redis_revocation_alloc(
                         &rv, &(struct imsauth_redis_opts){.url = bad[i]}, NULL, 0),
                     IMSAUTH_ERR_INVALID_ARG, "%s", bad[i]);
}
