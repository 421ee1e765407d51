/*
 * Allocation-failure mode: every allocation libimsauth makes itself (malloc, calloc,
 * realloc, strdup, strndup; wrapped at link time with ld --wrap) is made to fail in turn,
 * the n-th one in run n, through context creation, key loading (JWKS string, JWKS file,
 * PEM, shared secret), cold and cached verification, refresh and release. Every run must
 * end in a clean result (OK or a specific error, never a crash), and LeakSanitizer checks
 * at exit that every error path freed what it took.
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <imsauth/imsauth.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long countdown = -1; /* -1: never fail; otherwise fail when it reaches 0 */
static long failures;

static bool should_fail(void)
{
    if (countdown < 0)
        return false;
    if (countdown-- == 0) {
        failures++;
        return true;
    }
    return false;
}

void *__real_malloc(size_t n);
void *__real_calloc(size_t a, size_t b);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t a, size_t b);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);

void *__wrap_malloc(size_t n)
{
    return should_fail() ? NULL : __real_malloc(n);
}
void *__wrap_calloc(size_t a, size_t b)
{
    return should_fail() ? NULL : __real_calloc(a, b);
}
void *__wrap_realloc(void *p, size_t n)
{
    return should_fail() ? NULL : __real_realloc(p, n);
}
char *__wrap_strdup(const char *s)
{
    return should_fail() ? NULL : __real_strdup(s);
}
char *__wrap_strndup(const char *s, size_t n)
{
    return should_fail() ? NULL : __real_strndup(s, n);
}

struct fixture {
    char *jwks, *pem, *good, *bad;
    char path[64];
};

static bool clean_error(enum imsauth_result r)
{
    return r == IMSAUTH_ERR_NOMEM || r == IMSAUTH_ERR_KEYS || r == IMSAUTH_ERR_IO;
}

/* One pass over the library; returns false if an outcome was wrong. */
static bool scenario(const struct fixture *f, bool expect_success)
{
    static const char *iss[] = {TH_ISS, "https://second.test", NULL};
    static const uint8_t secret[32] = "0123456789abcdef0123456789abcde";
    struct imsauth_pem_key pk = {.pem = f->pem, .kid = "pem"};
    struct imsauth_opts o = {.issuers = iss,
                             .audience = TH_AUD,
                             .realm = TH_REALM,
                             .authz_server = "https://waf.test/",
                             .jwks_json = f->jwks,
                             .jwks_file = f->path,
                             .pem_keys = &pk,
                             .n_pem_keys = 1,
                             .hmac_secret = secret,
                             .hmac_secret_len = 32,
                             .hmac_kid = "hs",
                             .cache_entries = 16};
    struct imsauth_ctx *ctx = NULL;
    enum imsauth_result r = imsauth_ctx_alloc(&ctx, &o, NULL, 0);
    if (r != IMSAUTH_OK)
        return !expect_success && clean_error(r) && ctx == NULL;
    struct imsauth_request req = {.impu = TH_IMPU, .now = TH_NOW};
    struct imsauth_verdict v;
    bool ok = true;
    for (int round = 0; round < 2; round++) { /* cold, then cached */
        r = imsauth_verify(ctx, (uint8_t *)f->good, strlen(f->good), &req, &v);
        ok = ok && (r == IMSAUTH_OK || (!expect_success && r == IMSAUTH_ERR_NOMEM));
        imsauth_token_release(v.token);
    }
    r = imsauth_verify(ctx, (uint8_t *)f->bad, strlen(f->bad), &req, &v);
    ok = ok && (r == IMSAUTH_ERR_BAD_SIGNATURE || (!expect_success && r == IMSAUTH_ERR_NOMEM));
    /* Touch the file so refresh reloads it. */
    th_write_file(f->path, f->jwks);
    r = imsauth_refresh(ctx, NULL, NULL, 0);
    ok = ok && (r == IMSAUTH_OK || (!expect_success && clean_error(r)));
    r = imsauth_verify(ctx, (uint8_t *)f->good, strlen(f->good), &req, &v);
    ok = ok && (r == IMSAUTH_OK || (!expect_success && r == IMSAUTH_ERR_NOMEM));
    imsauth_token_release(v.token);
    imsauth_ctx_free(ctx);
    return ok;
}

Test(oom, every_allocation_failure_is_clean, .timeout = 300)
{
    struct fixture f;
    EVP_PKEY *k = ims_mint_keygen(IMS_MINT_P256), *p = ims_mint_keygen(IMS_MINT_P256);
    const char *kid = "k";
    f.jwks = ims_mint_jwks(&k, &kid, 1);
    f.pem = ims_mint_pubpem(p);
    snprintf(f.path, sizeof(f.path), "/tmp/imsauth-oom-%d.json", (int)getpid());
    th_write_file(f.path, f.jwks);
    json_t *h = th_header("ES256", "k"), *c = th_claims();
    char *t = ims_mint_sign(k, "ES256", h, c);
    f.good = th_bearer(t);
    f.bad = strdup(f.good);
    char *dot = strrchr(f.bad, '.');
    dot[4] = dot[4] == 'A' ? 'B' : 'A';

    cr_assert(scenario(&f, true), "baseline without failures");
    long n = 0;
    for (;; n++) {
        failures = 0;
        countdown = n;
        bool ok = scenario(&f, false);
        countdown = -1;
        cr_assert(ok, "allocation %ld failing gave a wrong outcome", n);
        if (failures == 0)
            break; /* the scenario makes fewer than n+1 allocations: all covered */
    }
    cr_assert_gt(n, 20, "the scenario exercised %ld allocation sites", n);
    cr_log_info("%ld allocation failures injected", n);
    unlink(f.path);
    free(t);
    free(f.jwks);
    free(f.pem);
    free(f.good);
    free(f.bad);
    json_decref(h);
    json_decref(c);
    EVP_PKEY_free(k);
    EVP_PKEY_free(p);
}
