/* 8 threads verifying while the JWKS file is replaced again and again: no failure (the
 * signing key stays in every published set), no leak (ASan), and reloads really happen. */
#include "helpers.h"

#include <criterion/criterion.h>
#include <imsauth/imsauth.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define THREADS      8
#define REPLACEMENTS 25

struct shared {
    struct imsauth_ctx *ctx;
    char *hdr[4]; /* tokens of kid "stable" and of three rotating kids */
    atomic_int failures, done, stop;
    atomic_long verified;
};

static void *worker(void *arg)
{
    struct shared *s = arg;
    struct imsauth_request req = {.impu = TH_IMPU, .now = TH_NOW};
    while (!atomic_load(&s->stop)) {
        struct imsauth_verdict v;
        const char *h = s->hdr[0];
        if (imsauth_verify(s->ctx, (const uint8_t *)h, strlen(h), &req, &v) != IMSAUTH_OK)
            atomic_fetch_add(&s->failures, 1);
        imsauth_token_release(v.token);
        atomic_fetch_add(&s->verified, 1);
    }
    atomic_fetch_add(&s->done, 1);
    return NULL;
}

Test(concurrency, verify_while_jwks_file_is_replaced, .timeout = 300)
{
    char dir[] = "/tmp/imsauth-conc-XXXXXX", path[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/jwks.json", dir);
    EVP_PKEY *stable = ims_mint_keygen(IMS_MINT_P256), *other[3];
    for (int i = 0; i < 3; i++)
        other[i] = ims_mint_keygen(IMS_MINT_P256);
    EVP_PKEY *set[2] = {stable, other[0]};
    const char *kids[2] = {"stable", "rot0"};
    char *doc = ims_mint_jwks(set, kids, 2);
    th_write_file(path, doc);
    free(doc);

    static const char *iss[] = {TH_ISS, NULL};
    struct imsauth_opts o = {.issuers = iss,
                             .audience = TH_AUD,
                             .realm = TH_REALM,
                             .jwks_file = path,
                             .cache_entries = 64};
    struct shared s = {0};
    char d[160];
    cr_assert_eq(imsauth_ctx_alloc(&s.ctx, &o, d, sizeof(d)), IMSAUTH_OK, "%s", d);
    json_t *h = th_header("ES256", "stable"), *c = th_claims();
    char *tok = ims_mint_sign(stable, "ES256", h, c);
    s.hdr[0] = th_bearer(tok);
    free(tok);

    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, worker, &s);
    int replaced = 0;
    while (replaced < REPLACEMENTS) {
        /* Replace the file with a new set (stable + another rotating key) and refresh. */
        set[1] = other[replaced % 3];
        char kid[8];
        snprintf(kid, sizeof(kid), "rot%d", replaced % 3);
        kids[1] = kid;
        doc = ims_mint_jwks(set, kids, 2);
        th_write_file(path, doc);
        free(doc);
        replaced++;
        cr_assert_eq(imsauth_refresh(s.ctx, NULL, d, sizeof(d)), IMSAUTH_OK, "%s", d);
        /* A half-written file must not lose the keys either. */
        FILE *f = fopen(path, "w");
        fputs("{\"keys\":[", f);
        fclose(f);
        cr_assert_eq(imsauth_refresh(s.ctx, NULL, d, sizeof(d)), IMSAUTH_ERR_KEYS);
        cr_assert_eq(imsauth_key_count(s.ctx), 2);
        struct timespec pause = {0, 2000000};
        nanosleep(&pause, NULL);
    }
    atomic_store(&s.stop, 1);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    struct imsauth_stats st;
    imsauth_stats_get(s.ctx, &st);
    cr_assert_eq(atomic_load(&s.failures), 0);
    cr_assert_eq(atomic_load(&s.done), THREADS);
    cr_assert_geq(st.key_reloads, (uint64_t)replaced);
    cr_assert_eq(st.verified, (uint64_t)atomic_load(&s.verified));
    cr_assert_gt(st.verified, (uint64_t)THREADS * REPLACEMENTS, "threads ran during reloads");
    cr_assert_gt(st.cache_misses, 1, "reloads invalidate cached verifications");

    imsauth_ctx_free(s.ctx);
    free(s.hdr[0]);
    json_decref(h);
    json_decref(c);
    EVP_PKEY_free(stable);
    for (int i = 0; i < 3; i++)
        EVP_PKEY_free(other[i]);
    unlink(path);
    rmdir(dir);
}

Test(concurrency, removed_key_stops_verifying_after_reload)
{
    char dir[] = "/tmp/imsauth-rot-XXXXXX", path[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/jwks.json", dir);
    EVP_PKEY *a = ims_mint_keygen(IMS_MINT_P256), *b = ims_mint_keygen(IMS_MINT_P256);
    EVP_PKEY *set[2] = {a, b};
    const char *kids[2] = {"a", "b"};
    char *doc = ims_mint_jwks(set, kids, 2);
    th_write_file(path, doc);
    free(doc);
    static const char *iss[] = {TH_ISS, NULL};
    struct imsauth_opts o = {
        .issuers = iss, .audience = TH_AUD, .realm = TH_REALM, .jwks_file = path};
    struct imsauth_ctx *ctx;
    cr_assert_eq(imsauth_ctx_alloc(&ctx, &o, NULL, 0), IMSAUTH_OK);
    json_t *h = th_header("ES256", "a"), *c = th_claims();
    char *tok = ims_mint_sign(a, "ES256", h, c), *hdr = th_bearer(tok);
    struct imsauth_request req = {.now = TH_NOW};
    struct imsauth_verdict v;
    cr_assert_eq(imsauth_verify(ctx, (uint8_t *)hdr, strlen(hdr), &req, &v), IMSAUTH_OK);
    imsauth_token_release(v.token);
    doc = ims_mint_jwks(&set[1], &kids[1], 1); /* key "a" retired */
    th_write_file(path, doc);
    free(doc);
    cr_assert_eq(imsauth_refresh(ctx, NULL, NULL, 0), IMSAUTH_OK);
    cr_assert_eq(imsauth_verify(ctx, (uint8_t *)hdr, strlen(hdr), &req, &v),
                 IMSAUTH_ERR_UNKNOWN_KID, "the cached verification does not outlive its key");
    imsauth_ctx_free(ctx);
    free(tok);
    free(hdr);
    json_decref(h);
    json_decref(c);
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
    unlink(path);
    rmdir(dir);
}
