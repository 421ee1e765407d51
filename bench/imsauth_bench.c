/*
 * imsauth_bench: one thread, ES256 and RS256. For each algorithm it measures
 *   (a) raw OpenSSL EVP_DigestVerify with a cached EVP_PKEY over the same signing input,
 *   (b) libimsauth's cold path, cache off: parse, verify, claims, TNA header,
 *   (c) libimsauth's cache-hit path (same work, signature skipped),
 * and heap allocations per call (malloc interposed in this program). The last lines are
 * one JSON object per algorithm:
 * {"alg":"ES256","openssl_per_s":N,"cold_per_s":N,"ratio":R,"cached_per_s":N,...}
 * usage: imsauth_bench [SECONDS_PER_MEASUREMENT]   (default 2)
 */
#define _GNU_SOURCE
#include "mint.h"
#include <imsauth/imsauth.h>
#include <jansson.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- allocation counting: glibc's allocator behind a counter ---- */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
static atomic_ulong n_allocs;

void *malloc(size_t n)
{
    atomic_fetch_add_explicit(&n_allocs, 1, memory_order_relaxed);
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b)
{
    atomic_fetch_add_explicit(&n_allocs, 1, memory_order_relaxed);
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n)
{
    atomic_fetch_add_explicit(&n_allocs, 1, memory_order_relaxed);
    return __libc_realloc(p, n);
}
void free(void *p)
{
    __libc_free(p);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *ISS = "https://waf.bench", *AUD = "epcscf.bench", *REALM = "home1.net";

struct token {
    char *compact;          /* header.payload.signature */
    size_t input_len;       /* length of header.payload */
    unsigned char sig[512]; /* the signature in OpenSSL's form (DER for ECDSA) */
    size_t sig_len;
};

/* Mints the benchmark token and keeps its signature in OpenSSL's form for (a). */
static void mint(EVP_PKEY *k, int ec, struct token *t)
{
    const char *alg = ec ? "ES256" : "RS256";
    time_t now = time(NULL);
    json_t *h = json_pack("{s:s,s:s,s:s}", "typ", "at+jwt", "alg", alg, "kid", "bench");
    json_t *c =
        json_pack("{s:s,s:s,s:s,s:I,s:I,s:s,s:s,s:s,s:s,s:[s,s],s:s}", "iss", ISS, "sub",
                  "web-user-0001", "aud", AUD, "iat", (json_int_t)now, "exp",
                  (json_int_t)now + 3600, "jti", "6c0c1f9e-5d7d-4b7e-9a43-0d0b8f1a2c3d",
                  "client_id", "wwsf-portal", "scope", "openid ims", "impi", "alice@home1.net",
                  "impu", "sip:alice@home1.net", "tel:+15551234", "wwsf", "https://wwsf.home1.net");
    t->compact = ims_mint_sign(k, alg, h, c);
    t->input_len = (size_t)(strrchr(t->compact, '.') - t->compact);
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    t->sig_len = sizeof(t->sig);
    EVP_DigestSignInit(m, NULL, EVP_sha256(), NULL, k);
    EVP_DigestSign(m, t->sig, &t->sig_len, (unsigned char *)t->compact, t->input_len);
    EVP_MD_CTX_free(m);
    json_decref(h);
    json_decref(c);
}

struct result {
    double per_s, allocs;
};

static struct result bench_openssl(EVP_PKEY *k, const EVP_MD *md, const struct token *t,
                                   double secs)
{
    long n = 0;
    unsigned long a0 = atomic_load(&n_allocs);
    double t0 = now_s(), t1;
    do {
        for (int i = 0; i < 64; i++) {
            EVP_MD_CTX *m = EVP_MD_CTX_new();
            EVP_DigestVerifyInit(m, NULL, md, NULL, k);
            if (EVP_DigestVerify(m, t->sig, t->sig_len, (const unsigned char *)t->compact,
                                 t->input_len) != 1)
                abort();
            EVP_MD_CTX_free(m);
        }
        n += 64;
    } while ((t1 = now_s()) - t0 < secs);
    return (struct result){n / (t1 - t0), (double)(atomic_load(&n_allocs) - a0) / (double)n};
}

static struct result bench_lib(struct imsauth_ctx *ctx, const char *hdr, double secs)
{
    struct imsauth_request req = {
        .method = "REGISTER", .request_uri = "sip:home1.net", .impu = "sip:alice@home1.net"};
    char tna[512];
    size_t len = strlen(hdr);
    long n = 0;
    unsigned long a0 = atomic_load(&n_allocs);
    double t0 = now_s(), t1;
    do {
        for (int i = 0; i < 64; i++) {
            struct imsauth_verdict v;
            if (imsauth_verify(ctx, (const unsigned char *)hdr, len, &req, &v) != IMSAUTH_OK)
                abort();
            if (imsauth_tna_header(imsauth_token_impi(v.token), REALM, req.request_uri, tna,
                                   sizeof(tna), NULL) != IMSAUTH_OK)
                abort();
            imsauth_token_release(v.token);
        }
        n += 64;
    } while ((t1 = now_s()) - t0 < secs);
    return (struct result){n / (t1 - t0), (double)(atomic_load(&n_allocs) - a0) / (double)n};
}

static struct imsauth_ctx *make_ctx(const char *jwks, int cache_off)
{
    static const char *iss[] = {NULL, NULL};
    iss[0] = ISS;
    struct imsauth_opts o = {.issuers = iss,
                             .audience = AUD,
                             .realm = REALM,
                             .authz_server = "https://waf.bench/",
                             .jwks_json = jwks,
                             .cache_off = cache_off};
    struct imsauth_ctx *ctx = NULL;
    char d[160];
    if (imsauth_ctx_alloc(&ctx, &o, d, sizeof(d)) != IMSAUTH_OK) {
        fprintf(stderr, "imsauth_bench: %s\n", d);
        exit(2);
    }
    return ctx;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 2.0;
    if (!(secs > 0)) {
        fprintf(stderr, "usage: imsauth_bench [SECONDS_PER_MEASUREMENT]\n");
        return 2;
    }
    EVP_MD *sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    char json_lines[2][512];
    for (int ec = 1, i = 0; ec >= 0; ec--, i++) {
        const char *alg = ec ? "ES256" : "RS256";
        EVP_PKEY *k = ims_mint_keygen(ec ? IMS_MINT_P256 : IMS_MINT_RSA2048);
        const char *kid = "bench";
        char *jwks = ims_mint_jwks(&k, &kid, 1);
        struct token t;
        mint(k, ec, &t);
        char hdr[4200];
        snprintf(hdr, sizeof(hdr), "Bearer %s", t.compact);
        struct imsauth_ctx *cold = make_ctx(jwks, 1), *warm = make_ctx(jwks, 0);
        /* warm-up, and a sanity check that everything verifies */
        bench_openssl(k, sha256, &t, 0.2);
        bench_lib(cold, hdr, 0.2);
        bench_lib(warm, hdr, 0.2);
        struct result o = bench_openssl(k, sha256, &t, secs);
        struct result c = bench_lib(cold, hdr, secs);
        struct result h = bench_lib(warm, hdr, secs);
        printf("%s  token %zu bytes\n", alg, strlen(t.compact));
        printf("  (a) OpenSSL EVP_DigestVerify, cached key   %12.0f /s  %5.1f allocs/call\n",
               o.per_s, o.allocs);
        printf("  (b) imsauth cold (cache off) + TNA header  %12.0f /s  %5.1f allocs/call"
               "  ratio %.3f\n",
               c.per_s, c.allocs, c.per_s / o.per_s);
        printf("  (c) imsauth cache hit + TNA header         %12.0f /s  %5.1f allocs/call\n",
               h.per_s, h.allocs);
        snprintf(json_lines[i], sizeof(json_lines[i]),
                 "{\"alg\":\"%s\",\"openssl_per_s\":%.0f,\"cold_per_s\":%.0f,\"ratio\":%.3f,"
                 "\"cached_per_s\":%.0f,\"openssl_allocs_per_call\":%.1f,"
                 "\"cold_allocs_per_call\":%.1f,\"cached_allocs_per_call\":%.1f}",
                 alg, o.per_s, c.per_s, c.per_s / o.per_s, h.per_s, o.allocs, c.allocs, h.allocs);
        imsauth_ctx_free(cold);
        imsauth_ctx_free(warm);
        free(jwks);
        free(t.compact);
        EVP_PKEY_free(k);
    }
    EVP_MD_free(sha256);
    puts(json_lines[0]);
    puts(json_lines[1]);
    return 0;
}
