/* The whole verification pipeline with real keys: every algorithm, every rejection reason,
 * the cache, revocation and the challenge that goes with each outcome. */
#include "../src/internal.h"
#include "helpers.h"

#include <criterion/criterion.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <stdlib.h>
#include <string.h>

static EVP_PKEY *k_es256, *k_es384, *k_rsa, *k_ed;
static struct imsauth_ctx *ctx;
static char *jwks;

static void make_ctx(const struct imsauth_opts *extra)
{
    static const char *iss[] = {TH_ISS, "https://other-waf.test", NULL};
    struct imsauth_opts o = extra ? *extra : (struct imsauth_opts){0};
    o.issuers = iss;
    o.audience = TH_AUD;
    o.realm = TH_REALM;
    o.authz_server = "https://waf.test/";
    if (!o.jwks_file && !o.n_pem_keys)
        o.jwks_json = jwks;
    char detail[160];
    cr_assert_eq(imsauth_ctx_alloc(&ctx, &o, detail, sizeof(detail)), IMSAUTH_OK, "%s", detail);
}

static void setup(void)
{
    k_es256 = ims_mint_keygen(IMS_MINT_P256);
    k_es384 = ims_mint_keygen(IMS_MINT_P384);
    k_rsa = ims_mint_keygen(IMS_MINT_RSA2048);
    k_ed = ims_mint_keygen(IMS_MINT_ED25519);
    EVP_PKEY *keys[] = {k_es256, k_es384, k_rsa, k_ed};
    const char *kids[] = {"es256", "es384", "rsa", "ed"};
    jwks = ims_mint_jwks(keys, kids, 4);
    make_ctx(NULL);
}

static void teardown(void)
{
    imsauth_ctx_free(ctx);
    ctx = NULL;
    EVP_PKEY_free(k_es256);
    EVP_PKEY_free(k_es384);
    EVP_PKEY_free(k_rsa);
    EVP_PKEY_free(k_ed);
    free(jwks);
}

TestSuite(verify, .init = setup, .fini = teardown);

/* Verifies "Bearer <token>" at TH_NOW (+ dt) for impu; returns the result. */
static enum imsauth_result check_at(const char *token, const char *impu, int64_t dt,
                                    struct imsauth_verdict *out)
{
    char *hdr = th_bearer(token);
    struct imsauth_request req = {
        .method = "REGISTER", .request_uri = "sip:" TH_REALM, .impu = impu, .now = TH_NOW + dt};
    struct imsauth_verdict v;
    enum imsauth_result r = imsauth_verify(ctx, (uint8_t *)hdr, strlen(hdr), &req, &v);
    free(hdr);
    cr_assert_eq(r, v.result);
    cr_assert_eq(v.sip_status, imsauth_sip_status(r));
    if (r == IMSAUTH_OK)
        cr_assert_not_null(v.token);
    else
        cr_assert_null(v.token);
    if (out)
        *out = v;
    else
        imsauth_token_release(v.token);
    return r;
}

static enum imsauth_result check(const char *token)
{
    return check_at(token, TH_IMPU, 0, NULL);
}

/* Signs the default claims after applying one change (NULL value deletes the claim). */
static char *token_with(EVP_PKEY *key, const char *alg, const char *kid, const char *claim,
                        json_t *value)
{
    json_t *h = th_header(alg, kid), *c = th_claims();
    if (claim) {
        if (value)
            json_object_set_new(c, claim, value);
        else
            json_object_del(c, claim);
    }
    char *t = ims_mint_sign(key, alg, h, c);
    json_decref(h);
    json_decref(c);
    return t;
}

#define EXPECT(tok, want)                                                                          \
    do {                                                                                           \
        char *t_ = (tok);                                                                          \
        enum imsauth_result r_ = check(t_);                                                        \
        cr_expect_eq(r_, (want), "%s:%d got %s want %s", __FILE__, __LINE__, imsauth_strerror(r_), \
                     imsauth_strerror(want));                                                      \
        free(t_);                                                                                  \
    } while (0)

Test(verify, every_algorithm_and_claims)
{
    static const struct {
        const char *alg, *kid;
        EVP_PKEY **key;
    } algs[] = {{"ES256", "es256", &k_es256},
                {"ES384", "es384", &k_es384},
                {"RS256", "rsa", &k_rsa},
                {"PS256", "rsa", &k_rsa},
                {"EdDSA", "ed", &k_ed}};
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        char *t = token_with(*algs[i].key, algs[i].alg, algs[i].kid, NULL, NULL);
        struct imsauth_verdict v;
        cr_assert_eq(check_at(t, TH_IMPU, 0, &v), IMSAUTH_OK, "%s: %s", algs[i].alg, v.detail);
        cr_assert_str_eq(imsauth_token_impi(v.token), "alice@home1.net");
        cr_assert_eq(imsauth_token_impu_count(v.token), 2);
        cr_assert_str_eq(imsauth_token_impu(v.token, 0), TH_IMPU);
        cr_assert_null(imsauth_token_impu(v.token, 2));
        cr_assert_str_eq(imsauth_token_sub(v.token), "user-1");
        cr_assert_str_eq(imsauth_token_client_id(v.token), "wwsf");
        cr_assert_str_eq(imsauth_token_jti(v.token), "jti-1");
        cr_assert_str_eq(imsauth_token_scope(v.token), "openid ims");
        cr_assert_eq(imsauth_token_exp(v.token), TH_NOW + 600);
        cr_assert_null(imsauth_token_pool_lease(v.token));
        imsauth_token_release(v.token);
        free(t);
    }
}

Test(verify, second_identity_and_optional_claims)
{
    json_t *h = th_header("ES256", "es256"), *c = th_claims();
    json_object_set_new(c, "pool_lease", json_string("lease-42"));
    json_object_set_new(c, "wwsf", json_string("https://wwsf.test"));
    json_object_set_new(c, "aud", json_pack("[s,s]", "someone-else", TH_AUD));
    char *t = ims_mint_sign(k_es256, "ES256", h, c);
    struct imsauth_verdict v;
    cr_assert_eq(check_at(t, "<tel:+15551234>", 0, &v), IMSAUTH_OK, "%s", v.detail);
    cr_assert_str_eq(imsauth_token_pool_lease(v.token), "lease-42");
    cr_assert_str_eq(imsauth_token_wwsf(v.token), "https://wwsf.test");
    imsauth_token_release(v.token);
    cr_assert_eq(check_at(t, NULL, 0, NULL), IMSAUTH_OK, "no identity to bind");
    cr_assert_eq(check_at(t, "sip:bob@home1.net", 0, NULL), IMSAUTH_ERR_IDENTITY_NOT_GRANTED);
    free(t);
    json_decref(h);
    json_decref(c);
}

Test(verify, time_window_with_leeway)
{
    char *t = token_with(k_es256, "ES256", "es256", NULL, NULL);
    cr_assert_eq(check_at(t, TH_IMPU, 600 + 29, NULL), IMSAUTH_OK, "inside exp + leeway");
    cr_assert_eq(check_at(t, TH_IMPU, 600 + 30, NULL), IMSAUTH_ERR_EXPIRED,
                 "RFC 7519: now must be before exp (+ leeway)");
    cr_assert_eq(check_at(t, TH_IMPU, -40, NULL), IMSAUTH_OK, "iat - 30 s");
    cr_assert_eq(check_at(t, TH_IMPU, -41, NULL), IMSAUTH_ERR_NOT_YET_VALID, "iat in future");
    free(t);
    EXPECT(token_with(k_es256, "ES256", "es256", "nbf", json_integer(TH_NOW + 31)),
           IMSAUTH_ERR_NOT_YET_VALID);
    EXPECT(token_with(k_es256, "ES256", "es256", "nbf", json_integer(TH_NOW + 30)), IMSAUTH_OK);
    EXPECT(token_with(k_es256, "ES256", "es256", "exp", json_integer(TH_NOW - 30)),
           IMSAUTH_ERR_EXPIRED);
    EXPECT(token_with(k_es256, "ES256", "es256", "exp", json_real((double)TH_NOW + 100.5)),
           IMSAUTH_OK);
}

Test(verify, claim_errors)
{
    EXPECT(token_with(k_es256, "ES256", "es256", "iss", json_string("https://evil")),
           IMSAUTH_ERR_WRONG_ISSUER);
    EXPECT(token_with(k_es256, "ES256", "es256", "iss", json_string("https://other-waf.test")),
           IMSAUTH_OK);
    EXPECT(token_with(k_es256, "ES256", "es256", "aud", json_string("other")),
           IMSAUTH_ERR_WRONG_AUDIENCE);
    EXPECT(token_with(k_es256, "ES256", "es256", "aud", json_pack("[s,s]", "a", "b")),
           IMSAUTH_ERR_WRONG_AUDIENCE);
    EXPECT(token_with(k_es256, "ES256", "es256", "aud", json_pack("[i]", 1)),
           IMSAUTH_ERR_BAD_CLAIM);
    EXPECT(token_with(k_es256, "ES256", "es256", "scope", NULL), IMSAUTH_ERR_INSUFFICIENT_SCOPE);
    EXPECT(token_with(k_es256, "ES256", "es256", "scope", json_string("imsx openid")),
           IMSAUTH_ERR_INSUFFICIENT_SCOPE);
    EXPECT(token_with(k_es256, "ES256", "es256", "scope", json_string("ims")), IMSAUTH_OK);
    EXPECT(token_with(k_es256, "ES256", "es256", "impi", NULL), IMSAUTH_ERR_MISSING_CLAIM);
    EXPECT(token_with(k_es256, "ES256", "es256", "impi", json_string("a\nb")),
           IMSAUTH_ERR_BAD_CLAIM);
    EXPECT(token_with(k_es256, "ES256", "es256", "impu", NULL), IMSAUTH_ERR_MISSING_CLAIM);
    EXPECT(token_with(k_es256, "ES256", "es256", "impu", json_string(TH_IMPU)),
           IMSAUTH_ERR_BAD_CLAIM);
    EXPECT(token_with(k_es256, "ES256", "es256", "impu", json_pack("[s]", "http://x")),
           IMSAUTH_ERR_BAD_CLAIM);
    EXPECT(token_with(k_es256, "ES256", "es256", "impu", json_array()), IMSAUTH_ERR_BAD_CLAIM);
    /* An IMPU claim is a plain URI: name-addr syntax would not compare equal to itself
       (found by fuzz_claims; corpus file regress-impu-angle). */
    EXPECT(token_with(k_es256, "ES256", "es256", "impu", json_pack("[s]", "tel:+15<51234")),
           IMSAUTH_ERR_BAD_CLAIM);
    EXPECT(token_with(k_es256, "ES256", "es256", "impu", json_pack("[s]", "<sip:a@b>")),
           IMSAUTH_ERR_BAD_CLAIM);
    EXPECT(token_with(k_es256, "ES256", "es256", "impu", json_pack("[s]", "sip:a b@c")),
           IMSAUTH_ERR_BAD_CLAIM);
    EXPECT(token_with(k_es256, "ES256", "es256", "exp", json_string("soon")),
           IMSAUTH_ERR_BAD_CLAIM);
    EXPECT(token_with(k_es256, "ES256", "es256", "exp", NULL), IMSAUTH_ERR_MISSING_CLAIM);
    EXPECT(token_with(k_es256, "ES256", "es256", "jti", NULL), IMSAUTH_ERR_MISSING_CLAIM);
    EXPECT(token_with(k_es256, "ES256", "es256", "client_id", json_integer(3)),
           IMSAUTH_ERR_BAD_CLAIM);
    EXPECT(token_with(k_es256, "ES256", "es256", "sub", json_string("")), IMSAUTH_ERR_BAD_CLAIM);
}

Test(verify, header_attacks)
{
    /* alg none, with and without a signature */
    static const char none_h[] = "{\"typ\":\"at+jwt\",\"alg\":\"none\"}";
    json_t *c = th_claims();
    char *cs = json_dumps(c, JSON_COMPACT);
    EXPECT(ims_mint_compact(none_h, strlen(none_h), cs, strlen(cs), (const uint8_t *)"", 0),
           IMSAUTH_ERR_MALFORMED_TOKEN);
    EXPECT(ims_mint_compact(none_h, strlen(none_h), cs, strlen(cs), (const uint8_t *)"x", 1),
           IMSAUTH_ERR_ALG_NOT_ALLOWED);
    /* HS256 keyed with the ES public key text (algorithm confusion) */
    char *pem = ims_mint_pubpem(k_es256);
    json_t *h = th_header("HS256", "es256");
    EXPECT(ims_mint_sign_hs((uint8_t *)pem, strlen(pem), "HS256", h, c),
           IMSAUTH_ERR_ALG_NOT_ALLOWED);
    json_decref(h);
    /* typ */
    h = json_pack("{s:s,s:s,s:s}", "typ", "JWT", "alg", "ES256", "kid", "es256");
    EXPECT(ims_mint_sign(k_es256, "ES256", h, c), IMSAUTH_ERR_WRONG_TYPE);
    json_object_del(h, "typ");
    EXPECT(ims_mint_sign(k_es256, "ES256", h, c), IMSAUTH_ERR_WRONG_TYPE);
    json_object_set_new(h, "typ", json_string("application/AT+JWT"));
    EXPECT(ims_mint_sign(k_es256, "ES256", h, c), IMSAUTH_OK);
    /* kid: unknown, path and SQL characters, wrong type */
    static const char *kids[] = {"nope", "../../../etc/passwd", "' OR 1=1 --", "es256\\"};
    for (size_t i = 0; i < 4; i++) {
        json_object_set_new(h, "kid", json_string(kids[i]));
        EXPECT(ims_mint_sign(k_es256, "ES256", h, c), IMSAUTH_ERR_UNKNOWN_KID);
    }
    json_object_set_new(h, "kid", json_integer(1));
    EXPECT(ims_mint_sign(k_es256, "ES256", h, c), IMSAUTH_ERR_MALFORMED_TOKEN);
    /* kid of an EC key with an RSA alg */
    json_object_set_new(h, "kid", json_string("es256"));
    json_object_set_new(h, "alg", json_string("RS256"));
    EXPECT(ims_mint_sign(k_rsa, "RS256", h, c), IMSAUTH_ERR_ALG_NOT_ALLOWED);
    /* jku/x5u/jwk: an attacker key embedded or linked is never used */
    EVP_PKEY *evil = ims_mint_keygen(IMS_MINT_P256);
    json_object_set_new(h, "alg", json_string("ES256"));
    json_object_set_new(h, "jwk", ims_mint_jwk(evil, "es256"));
    json_object_set_new(h, "jku", json_string("http://127.0.0.1:1/jwks"));
    json_object_set_new(h, "x5u", json_string("http://127.0.0.1:1/x5u"));
    EXPECT(ims_mint_sign(evil, "ES256", h, c), IMSAUTH_ERR_BAD_SIGNATURE);
    EXPECT(ims_mint_sign(k_es256, "ES256", h, c), IMSAUTH_OK);
    /* crit */
    json_object_set_new(h, "crit", json_pack("[s]", "exp"));
    EXPECT(ims_mint_sign(k_es256, "ES256", h, c), IMSAUTH_ERR_MALFORMED_TOKEN);
    /* no kid with several keys */
    json_decref(h);
    h = th_header("ES256", NULL);
    EXPECT(ims_mint_sign(k_es256, "ES256", h, c), IMSAUTH_ERR_UNKNOWN_KID);
    /* disallowed but known algorithm */
    json_decref(h);
    h = th_header("ES512", "es256");
    EXPECT(ims_mint_sign(k_es256, "ES256", h, c), IMSAUTH_ERR_ALG_NOT_ALLOWED);
    EVP_PKEY_free(evil);
    json_decref(h);
    json_decref(c);
    free(cs);
    free(pem);
}

Test(verify, structure_attacks)
{
    static const char hs[] = "{\"typ\":\"at+jwt\",\"alg\":\"ES256\",\"kid\":\"es256\"}";
    uint8_t sig[64] = {1};
    static const char *payloads[] = {
        "[1,2]", "\"str\"", "{\"iss\":\"a\\u0000b\"}", "{\"a\":1,\"a\":2}", "{", "",
    };
    for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
        char *t = ims_mint_compact(hs, strlen(hs), payloads[i], strlen(payloads[i]), sig, 64);
        /* A forged payload fails the signature before it is parsed (an empty segment is
           refused before anything else). */
        EXPECT(t, payloads[i][0] ? IMSAUTH_ERR_BAD_SIGNATURE : IMSAUTH_ERR_MALFORMED_TOKEN);
    }
    /* With a real signature, the payload parser decides. */
    json_t *h = th_header("ES256", "es256");
    for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
        /* ims_mint_sign wants JSON: build the signing input by hand instead. */
        char *t = ims_mint_compact(hs, strlen(hs), payloads[i], strlen(payloads[i]), sig, 0);
        size_t n = strlen(t);
        t[n - 1] = '\0';
        EVP_MD_CTX *m = EVP_MD_CTX_new();
        uint8_t der[80], raw[64];
        size_t dl = sizeof(der);
        EVP_DigestSignInit(m, NULL, EVP_sha256(), NULL, k_es256);
        EVP_DigestSign(m, der, &dl, (uint8_t *)t, strlen(t));
        EVP_MD_CTX_free(m);
        const uint8_t *p = der;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)dl);
        BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32);
        BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32);
        ECDSA_SIG_free(es);
        char *full = malloc(n + 100);
        snprintf(full, n + 100, "%s.", t);
        ims_b64url_encode(raw, 64, full + strlen(full));
        EXPECT(full, IMSAUTH_ERR_MALFORMED_TOKEN);
        free(t);
    }
    json_decref(h);
    EXPECT(strdup("a.b"), IMSAUTH_ERR_MALFORMED_TOKEN);
    EXPECT(strdup("a.b.c.d.e"), IMSAUTH_ERR_MALFORMED_TOKEN);
    EXPECT(strdup("eyJ+.eyJ.sig"), IMSAUTH_ERR_MALFORMED_TOKEN);
    EXPECT(strdup("..."), IMSAUTH_ERR_MALFORMED_TOKEN);
    /* A token with one signature character changed, and one truncated. */
    char *t = token_with(k_es256, "ES256", "es256", NULL, NULL);
    char *dot = strrchr(t, '.');
    dot[10] = dot[10] == 'A' ? 'B' : 'A';
    EXPECT(strdup(t), IMSAUTH_ERR_BAD_SIGNATURE);
    dot[5] = '\0';
    EXPECT(t, IMSAUTH_ERR_BAD_SIGNATURE);
}

Test(verify, oversized_and_missing)
{
    struct imsauth_verdict v;
    char *big = malloc(9000);
    memset(big, 'a', 8999);
    big[8999] = '\0';
    cr_assert_eq(check_at(big, TH_IMPU, 0, &v), IMSAUTH_ERR_TOO_LARGE);
    cr_assert_eq(v.sip_status, 400);
    free(big);
    struct imsauth_request req = {.now = TH_NOW};
    cr_assert_eq(imsauth_verify(ctx, NULL, 0, &req, &v), IMSAUTH_ERR_MISSING);
    cr_assert_eq(v.sip_status, 401);
    cr_assert_null(v.error);
}

Test(verify, challenges)
{
    char buf[512];
    cr_assert_eq(imsauth_challenge(ctx, IMSAUTH_ERR_MISSING, buf, sizeof(buf), NULL), IMSAUTH_OK);
    cr_assert_str_eq(buf, "Bearer realm=\"home1.net\", authz_server=\"https://waf.test/\", "
                          "scope=\"ims\"");
    imsauth_challenge(ctx, IMSAUTH_ERR_EXPIRED, buf, sizeof(buf), NULL);
    cr_assert_str_eq(buf, "Bearer realm=\"home1.net\", authz_server=\"https://waf.test/\", "
                          "error=\"invalid_token\"");
    imsauth_challenge(ctx, IMSAUTH_ERR_MALFORMED, buf, sizeof(buf), NULL);
    cr_assert_str_eq(buf, "Bearer realm=\"home1.net\", authz_server=\"https://waf.test/\", "
                          "error=\"invalid_request\"");
    imsauth_challenge(ctx, IMSAUTH_ERR_INSUFFICIENT_SCOPE, buf, sizeof(buf), NULL);
    cr_assert_str_eq(buf, "Bearer realm=\"home1.net\", authz_server=\"https://waf.test/\", "
                          "scope=\"ims\", error=\"insufficient_scope\"");
    /* An identity the token does not grant is not a scope problem: no error, no scope. */
    imsauth_challenge(ctx, IMSAUTH_ERR_IDENTITY_NOT_GRANTED, buf, sizeof(buf), NULL);
    cr_assert_str_eq(buf, "Bearer realm=\"home1.net\", authz_server=\"https://waf.test/\"");
    cr_assert_null(imsauth_rfc6750_error(IMSAUTH_ERR_IDENTITY_NOT_GRANTED));
    size_t need;
    cr_assert_eq(imsauth_challenge(ctx, IMSAUTH_ERR_EXPIRED, buf, 20, &need),
                 IMSAUTH_ERR_BUFFER_SMALL);
    cr_assert_gt(need, 20);
}

Test(verify, cache_hit_still_checks_time_and_identity)
{
    struct imsauth_stats s0, s1;
    char *t = token_with(k_rsa, "PS256", "rsa", NULL, NULL);
    imsauth_stats_get(ctx, &s0);
    cr_assert_eq(check(t), IMSAUTH_OK);
    cr_assert_eq(check(t), IMSAUTH_OK);
    cr_assert_eq(check_at(t, "sip:bob@home1.net", 0, NULL), IMSAUTH_ERR_IDENTITY_NOT_GRANTED);
    cr_assert_eq(check_at(t, TH_IMPU, 700, NULL), IMSAUTH_ERR_EXPIRED);
    imsauth_stats_get(ctx, &s1);
    cr_assert_eq(s1.cache_misses - s0.cache_misses, 2, "first use and after expiry drop");
    cr_assert_eq(s1.cache_hits - s0.cache_hits, 2);
    /* The cache lookup skips the character checks: junk around a cached token must still
       be refused by the full parser, and harmless whitespace still hits. */
    static const char *wraps[][3] = {
        {"Bearer ", " x", "malformed"},   {"Bearer ", ",", "malformed"},
        {"Bearer x ", "", "malformed"},   {"Bearer \"", "\"", "malformed"},
        {"Bearer ", "\r\n", "malformed"}, {"Digest ", "", "unsupported_scheme"},
        {"bearer \t", "  ", "ok"},        {"Bearer access_token=\"", "\"", "ok"}};
    for (size_t i = 0; i < sizeof(wraps) / sizeof(wraps[0]); i++) {
        char hdr[2048];
        snprintf(hdr, sizeof(hdr), "%s%s%s", wraps[i][0], t, wraps[i][1]);
        struct imsauth_request req = {.impu = TH_IMPU, .now = TH_NOW};
        struct imsauth_verdict v;
        imsauth_verify(ctx, (uint8_t *)hdr, strlen(hdr), &req, &v);
        cr_expect_str_eq(imsauth_strerror(v.result), wraps[i][2], "case %zu", i);
        imsauth_token_release(v.token);
    }
    /* The Annex A form finds the same cache entry as the RFC 8898 form. */
    imsauth_stats_get(ctx, &s0);
    char annex[2048];
    snprintf(annex, sizeof(annex), "Bearer access_token=\"%s\"", t);
    struct imsauth_request areq = {.impu = TH_IMPU, .now = TH_NOW};
    struct imsauth_verdict av;
    cr_assert_eq(imsauth_verify(ctx, (uint8_t *)annex, strlen(annex), &areq, &av), IMSAUTH_OK);
    imsauth_token_release(av.token);
    imsauth_stats_get(ctx, &s1);
    cr_assert_eq(s1.cache_hits - s0.cache_hits, 1, "access_token= form is a cache hit");
    cr_assert_eq(s1.cache_misses, s0.cache_misses);
    /* A tampered copy is a different key in the cache and fails on its own. */
    char *dot = strrchr(t, '.');
    dot[3] = dot[3] == 'A' ? 'B' : 'A';
    cr_assert_eq(check(t), IMSAUTH_ERR_BAD_SIGNATURE);
    free(t);
}

static enum imsauth_revocation revoked_cb(const char *jti, int64_t exp, void *arg)
{
    int *calls = arg;
    (*calls)++;
    cr_assert_eq(exp, TH_NOW + 600);
    if (strcmp(jti, "revoked") == 0)
        return IMSAUTH_IS_REVOKED;
    if (strcmp(jti, "unknown") == 0)
        return IMSAUTH_REVOCATION_UNKNOWN;
    return IMSAUTH_NOT_REVOKED;
}

Test(verify, revocation_callback_on_every_verification)
{
    imsauth_ctx_free(ctx);
    int calls = 0;
    struct imsauth_opts o = {.revoked = revoked_cb, .revoked_arg = &calls};
    make_ctx(&o);
    char *ok = token_with(k_es256, "ES256", "es256", NULL, NULL);
    cr_assert_eq(check(ok), IMSAUTH_OK);
    cr_assert_eq(check(ok), IMSAUTH_OK);
    cr_assert_eq(calls, 2, "asked on the cache hit too");
    struct imsauth_verdict v;
    char *rev = token_with(k_es256, "ES256", "es256", "jti", json_string("revoked"));
    cr_assert_eq(check_at(rev, TH_IMPU, 0, &v), IMSAUTH_ERR_REVOKED);
    cr_assert_eq(v.sip_status, 401);
    char *unk = token_with(k_es256, "ES256", "es256", "jti", json_string("unknown"));
    cr_assert_eq(check_at(unk, TH_IMPU, 0, &v), IMSAUTH_ERR_UNAVAILABLE);
    cr_assert_eq(v.sip_status, 503);
    free(ok);
    free(rev);
    free(unk);
}

Test(verify, pem_keys_and_single_key_without_kid)
{
    imsauth_ctx_free(ctx);
    char *pem = ims_mint_pubpem(k_ed);
    struct imsauth_pem_key pk = {.pem = pem, .kid = NULL};
    struct imsauth_opts o = {.pem_keys = &pk, .n_pem_keys = 1};
    make_ctx(&o);
    cr_assert_eq(imsauth_key_count(ctx), 1);
    EXPECT(token_with(k_ed, "EdDSA", NULL, NULL, NULL), IMSAUTH_OK);
    EXPECT(token_with(k_ed, "EdDSA", "somekid", NULL, NULL), IMSAUTH_ERR_UNKNOWN_KID);
    EXPECT(token_with(k_es256, "ES256", NULL, NULL, NULL), IMSAUTH_ERR_UNKNOWN_KID);
    free(pem);
}

Test(verify, hmac_only_when_configured_and_never_with_asymmetric_keys)
{
    imsauth_ctx_free(ctx);
    uint8_t secret[32];
    memset(secret, 0x5a, sizeof(secret));
    struct imsauth_opts o = {.hmac_secret = secret, .hmac_secret_len = 32, .hmac_kid = "hs"};
    make_ctx(&o);
    json_t *h = th_header("HS256", "hs"), *c = th_claims();
    EXPECT(ims_mint_sign_hs(secret, 32, "HS256", h, c), IMSAUTH_OK);
    json_object_set_new(h, "kid", json_string("es256"));
    char *pem = ims_mint_pubpem(k_es256);
    EXPECT(ims_mint_sign_hs((uint8_t *)pem, strlen(pem), "HS256", h, c),
           IMSAUTH_ERR_ALG_NOT_ALLOWED);
    json_object_set_new(h, "alg", json_string("HS512"));
    json_object_set_new(h, "kid", json_string("hs"));
    EXPECT(ims_mint_sign_hs(secret, 32, "HS512", h, c), IMSAUTH_ERR_ALG_NOT_ALLOWED);
    free(pem);
    json_decref(h);
    json_decref(c);
}

Test(ctx, option_errors)
{
    static const char *iss[] = {TH_ISS, NULL}, *none[] = {NULL};
    struct imsauth_ctx *c = NULL;
    char d[160];
    struct imsauth_opts o = {.issuers = iss, .audience = "a", .realm = "r", .jwks_json = "x"};
    cr_assert_eq(imsauth_ctx_alloc(&c, NULL, d, sizeof(d)), IMSAUTH_ERR_INVALID_ARG);
    cr_assert_eq(imsauth_ctx_alloc(&c, &o, d, sizeof(d)), IMSAUTH_ERR_KEYS, "%s", d);
    o.jwks_json = "{\"keys\":[]}";
    cr_assert_eq(imsauth_ctx_alloc(&c, &o, d, sizeof(d)), IMSAUTH_ERR_KEYS, "no usable key");
    o.issuers = none;
    cr_assert_eq(imsauth_ctx_alloc(&c, &o, d, sizeof(d)), IMSAUTH_ERR_INVALID_ARG);
    o.issuers = iss;
    o.allowed_algs = IMSAUTH_ALG_HS256;
    cr_assert_eq(imsauth_ctx_alloc(&c, &o, d, sizeof(d)), IMSAUTH_ERR_INVALID_ARG, "%s", d);
    o.allowed_algs = 0;
    o.hmac_secret = (const uint8_t *)"short";
    o.hmac_secret_len = 5;
    cr_assert_eq(imsauth_ctx_alloc(&c, &o, d, sizeof(d)), IMSAUTH_ERR_INVALID_ARG);
    o.hmac_secret = NULL;
    o.jwks_json = NULL;
    o.jwks_file = "/nonexistent/jwks.json";
    cr_assert_eq(imsauth_ctx_alloc(&c, &o, d, sizeof(d)), IMSAUTH_ERR_IO);
    cr_assert(strstr(d, "/nonexistent/jwks.json") != NULL, "%s", d);
    o.jwks_file = NULL;
    o.jwks_json = jwks;
    o.scope = "two scopes";
    cr_assert_eq(imsauth_ctx_alloc(&c, &o, d, sizeof(d)), IMSAUTH_ERR_INVALID_ARG);
    cr_assert_null(c);
    imsauth_ctx_free(NULL);
    imsauth_token_release(NULL);
}

TestSuite(ctx, .init = setup, .fini = teardown);
