/* JWKS URL source against a real HTTP server (libmicrohttpd on loopback): Cache-Control,
 * unknown-kid refetch with rate limit, failures keep the old keys. */
#include "helpers.h"

#include <criterion/criterion.h>
#include <imsauth/imsauth.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct server {
    struct MHD_Daemon *d;
    pthread_mutex_t lock;
    char *doc;
    const char *cache_control;
    int status;
    atomic_int hits;
};

static enum MHD_Result serve(void *cls, struct MHD_Connection *c, const char *url,
                             const char *method, const char *version, const char *data,
                             size_t *size, void **state)
{
    (void)url, (void)method, (void)version, (void)data, (void)size, (void)state;
    struct server *s = cls;
    atomic_fetch_add(&s->hits, 1);
    pthread_mutex_lock(&s->lock);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(s->doc), s->doc, MHD_RESPMEM_MUST_COPY);
    if (s->cache_control)
        MHD_add_response_header(r, "Cache-Control", s->cache_control);
    MHD_add_response_header(r, "Content-Type", "application/json");
    int status = s->status;
    pthread_mutex_unlock(&s->lock);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static void set_doc(struct server *s, char *doc, const char *cc, int status)
{
    pthread_mutex_lock(&s->lock);
    free(s->doc);
    s->doc = doc;
    s->cache_control = cc;
    s->status = status;
    pthread_mutex_unlock(&s->lock);
}

static enum imsauth_result verify_kid(struct imsauth_ctx *ctx, EVP_PKEY *key, const char *kid)
{
    json_t *h = th_header("ES256", kid), *c = th_claims();
    char *t = ims_mint_sign(key, "ES256", h, c), *hdr = th_bearer(t);
    struct imsauth_request req = {.now = TH_NOW};
    struct imsauth_verdict v;
    enum imsauth_result r = imsauth_verify(ctx, (uint8_t *)hdr, strlen(hdr), &req, &v);
    imsauth_token_release(v.token);
    free(t);
    free(hdr);
    json_decref(h);
    json_decref(c);
    return r;
}

Test(jwks_url, fetch_cache_control_and_unknown_kid, .timeout = 60)
{
    struct server s = {.status = 200};
    pthread_mutex_init(&s.lock, NULL);
    EVP_PKEY *k1 = ims_mint_keygen(IMS_MINT_P256), *k2 = ims_mint_keygen(IMS_MINT_P256);
    const char *kid1 = "k1";
    set_doc(&s, ims_mint_jwks(&k1, &kid1, 1), "public, max-age=3600", 200);
    s.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, serve, &s,
                           MHD_OPTION_SOCK_ADDR, NULL, MHD_OPTION_END);
    cr_assert_not_null(s.d);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s.d, MHD_DAEMON_INFO_BIND_PORT);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/jwks.json", info->port);

    static const char *iss[] = {TH_ISS, NULL};
    struct imsauth_opts o = {.issuers = iss,
                             .audience = TH_AUD,
                             .realm = TH_REALM,
                             .jwks_url = url,
                             .unknown_kid_interval_s = 1,
                             .jwks_min_refresh_s = 1};
    struct imsauth_ctx *ctx;
    char d[160];
    cr_assert_eq(imsauth_ctx_alloc(&ctx, &o, d, sizeof(d)), IMSAUTH_OK, "%s", d);
    cr_assert_eq(imsauth_key_count(ctx), 0, "no fetch at creation");
    cr_assert_eq(atomic_load(&s.hits), 0);
    unsigned next = 0;
    cr_assert_eq(imsauth_refresh(ctx, &next, d, sizeof(d)), IMSAUTH_OK, "%s", d);
    cr_assert_eq(atomic_load(&s.hits), 1);
    cr_assert_eq(next, 1, "capped at unknown_kid_interval_s (max-age 3600 is checked below)");
    cr_assert_eq(verify_kid(ctx, k1, "k1"), IMSAUTH_OK);

    /* Not due (max-age 3600): no request. */
    cr_assert_eq(imsauth_refresh(ctx, NULL, NULL, 0), IMSAUTH_OK);
    cr_assert_eq(atomic_load(&s.hits), 1);

    /* The WAF publishes k2; a token with kid k2 arrives: rejected now, fetched on the
       next refresh, accepted after it. A flood of random kids costs one fetch. */
    EVP_PKEY *both[2] = {k1, k2};
    const char *kids[2] = {"k1", "k2"};
    set_doc(&s, ims_mint_jwks(both, kids, 2), "max-age=3600", 200);
    cr_assert_eq(verify_kid(ctx, k2, "k2"), IMSAUTH_ERR_UNKNOWN_KID);
    for (int i = 0; i < 50; i++) {
        char kid[16];
        snprintf(kid, sizeof(kid), "rnd%d", i);
        cr_assert_eq(verify_kid(ctx, k2, kid), IMSAUTH_ERR_UNKNOWN_KID);
    }
    cr_assert_eq(atomic_load(&s.hits), 1, "verify never does I/O");
    cr_assert_eq(imsauth_refresh(ctx, NULL, d, sizeof(d)), IMSAUTH_OK, "%s", d);
    cr_assert_eq(atomic_load(&s.hits), 2, "one refetch for all unknown kids");
    cr_assert_eq(verify_kid(ctx, k2, "k2"), IMSAUTH_OK);
    cr_assert_eq(verify_kid(ctx, k2, "rnd99"), IMSAUTH_ERR_UNKNOWN_KID);
    cr_assert_eq(imsauth_refresh(ctx, NULL, NULL, 0), IMSAUTH_OK);
    cr_assert_eq(atomic_load(&s.hits), 2, "rate limited within unknown_kid_interval");
    sleep(2);
    cr_assert_eq(verify_kid(ctx, k2, "rnd100"), IMSAUTH_ERR_UNKNOWN_KID);
    cr_assert_eq(imsauth_refresh(ctx, NULL, NULL, 0), IMSAUTH_OK);
    cr_assert_eq(atomic_load(&s.hits), 3, "allowed again after the interval");

    /* Server errors and garbage keep the old key set. */
    set_doc(&s, strdup("oops"), "no-store", 500);
    cr_assert_eq(verify_kid(ctx, k2, "rnd101"), IMSAUTH_ERR_UNKNOWN_KID);
    sleep(1);
    cr_assert_eq(imsauth_refresh(ctx, NULL, d, sizeof(d)), IMSAUTH_ERR_IO);
    cr_assert(strstr(d, "500") != NULL, "%s", d);
    set_doc(&s, strdup("{\"keys\":"), "max-age=5", 200);
    sleep(2);
    cr_assert_eq(verify_kid(ctx, k2, "rnd102"), IMSAUTH_ERR_UNKNOWN_KID);
    cr_assert_eq(imsauth_refresh(ctx, NULL, d, sizeof(d)), IMSAUTH_ERR_KEYS, "%s", d);
    cr_assert_eq(imsauth_key_count(ctx), 2);
    cr_assert_eq(verify_kid(ctx, k1, "k1"), IMSAUTH_OK);

    imsauth_ctx_free(ctx);
    MHD_stop_daemon(s.d);
    free(s.doc);
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
}

/* Sleeps until the wall clock is in the last 50 ms of a second. */
static void to_end_of_second(void)
{
    for (;;) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        if (ts.tv_nsec >= 940000000L && ts.tv_nsec < 960000000L)
            return;
        long wait = ts.tv_nsec < 940000000L ? 940000000L - ts.tv_nsec : 1000000000L - ts.tv_nsec;
        struct timespec w = {0, wait + 1000000L};
        nanosleep(&w, NULL);
    }
}

/* The unknown-kid refetch interval is elapsed time, not whole seconds: a refetch just
 * before a second boundary does not allow another one just after it (the interval was
 * measured with time(), so two fetches could be 2 ms apart with an interval of 1 s). */
Test(jwks_url, unknown_kid_interval_is_not_rounded_to_seconds, .timeout = 30)
{
    struct server s = {.status = 200};
    pthread_mutex_init(&s.lock, NULL);
    EVP_PKEY *k1 = ims_mint_keygen(IMS_MINT_P256);
    const char *kid1 = "k1";
    set_doc(&s, ims_mint_jwks(&k1, &kid1, 1), "max-age=3600", 200);
    s.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, serve, &s,
                           MHD_OPTION_SOCK_ADDR, NULL, MHD_OPTION_END);
    cr_assert_not_null(s.d);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s.d, MHD_DAEMON_INFO_BIND_PORT);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/jwks.json", info->port);
    static const char *iss[] = {TH_ISS, NULL};
    struct imsauth_opts o = {.issuers = iss,
                             .audience = TH_AUD,
                             .realm = TH_REALM,
                             .jwks_url = url,
                             .unknown_kid_interval_s = 1,
                             .jwks_min_refresh_s = 1};
    struct imsauth_ctx *ctx;
    char d[160];
    cr_assert_eq(imsauth_ctx_alloc(&ctx, &o, d, sizeof(d)), IMSAUTH_OK, "%s", d);
    cr_assert_eq(imsauth_refresh(ctx, NULL, d, sizeof(d)), IMSAUTH_OK, "%s", d);
    cr_assert_eq(atomic_load(&s.hits), 1);
    sleep(1); /* the first refetch for an unknown kid is allowed */
    to_end_of_second();
    cr_assert_eq(verify_kid(ctx, k1, "nope1"), IMSAUTH_ERR_UNKNOWN_KID);
    cr_assert_eq(imsauth_refresh(ctx, NULL, d, sizeof(d)), IMSAUTH_OK, "%s", d);
    cr_assert_eq(atomic_load(&s.hits), 2, "one refetch for the unknown kid");
    struct timespec w = {0, 100000000L}; /* past the second boundary */
    nanosleep(&w, NULL);
    cr_assert_eq(verify_kid(ctx, k1, "nope2"), IMSAUTH_ERR_UNKNOWN_KID);
    cr_assert_eq(imsauth_refresh(ctx, NULL, d, sizeof(d)), IMSAUTH_OK, "%s", d);
    cr_assert_eq(atomic_load(&s.hits), 2, "0.1 s later: still inside the 1 s interval");
    imsauth_ctx_free(ctx);
    MHD_stop_daemon(s.d);
    free(s.doc);
    EVP_PKEY_free(k1);
}
