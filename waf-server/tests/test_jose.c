/* Client-signed JWTs: keys made here with OpenSSL (EC P-256, P-384, RSA 2048, Ed25519), their
 * JWKS and tokens built and signed here independently of jose.c; every accepted algorithm
 * verifies, every kind of damage fails with its own result and a detail that names the field
 * but never quotes the token or key; JWKS rules; claims rules of client assertions; eight
 * threads sharing one key set; every failed allocation of the JSON parser reported and
 * cleaned up. */
#include "jose.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOW 1700000000
#define AUD "https://waf.example/token"
#define CLAIMS                                                                                     \
    "{\"iss\":\"client-1\",\"sub\":\"client-1\",\"aud\":\"" AUD "\",\"jti\":\"j-1\","              \
    "\"exp\":1700000100,\"iat\":1700000000}"

/* ---- keys, JWKs and tokens made without jose.c ---- */

enum kt { K_P256, K_P256B, K_P384, K_RSA, K_RSAB, K_ED, K_RSA1024, K_N };
static EVP_PKEY *keys[K_N]; /* made on first use in each test process */

static EVP_PKEY *key(enum kt t)
{
    if (keys[t] == NULL) {
        switch (t) {
        case K_P256:
        case K_P256B:
            keys[t] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
            break;
        case K_P384:
            keys[t] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
            break;
        case K_RSA:
        case K_RSAB:
            keys[t] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
            break;
        case K_RSA1024:
            keys[t] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
            break;
        case K_ED:
            keys[t] = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
            break;
        case K_N:
            break;
        }
        cr_assert_not_null(keys[t]);
    }
    return keys[t];
}

/* base64url through OpenSSL's standard base64 with the alphabet swapped; out holds 4n/3+4. */
static void t_b64url(const uint8_t *in, size_t n, char *out)
{
    int l = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    while (l > 0 && out[l - 1] == '=')
        l--;
    out[l] = '\0';
    for (char *p = out; *p; p++)
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
}

static char *b64_dup(const void *in, size_t n)
{
    char *s = malloc(n / 3 * 4 + 8);
    t_b64url(in, n, s);
    return s;
}

static char *b64_bn(const BIGNUM *b)
{
    uint8_t buf[1024];
    int n = BN_bn2bin(b, buf);
    return b64_dup(buf, (size_t)n);
}

/* Public JWK of k as JSON text, with kid/alg/use when not NULL. Caller frees. */
static char *jwk_of(EVP_PKEY *k, const char *kid, const char *alg, const char *use)
{
    json_t *j = json_object();
    if (EVP_PKEY_is_a(k, "EC")) {
        char group[32];
        uint8_t pub[133];
        size_t pl = 0;
        cr_assert(EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                                 sizeof(group), NULL));
        cr_assert(EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pub,
                                                  sizeof(pub), &pl));
        size_t half = (pl - 1) / 2;
        char *x = b64_dup(pub + 1, half), *y = b64_dup(pub + 1 + half, half);
        json_object_set_new(j, "kty", json_string("EC"));
        json_object_set_new(j, "crv", json_string(half == 32 ? "P-256" : "P-384"));
        json_object_set_new(j, "x", json_string(x));
        json_object_set_new(j, "y", json_string(y));
        free(x);
        free(y);
    } else if (EVP_PKEY_is_a(k, "RSA")) {
        BIGNUM *n = NULL, *e = NULL;
        cr_assert(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &n));
        cr_assert(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &e));
        char *ns = b64_bn(n), *es = b64_bn(e);
        json_object_set_new(j, "kty", json_string("RSA"));
        json_object_set_new(j, "n", json_string(ns));
        json_object_set_new(j, "e", json_string(es));
        free(ns);
        free(es);
        BN_free(n);
        BN_free(e);
    } else {
        uint8_t raw[32];
        size_t rl = sizeof(raw);
        cr_assert(EVP_PKEY_get_raw_public_key(k, raw, &rl));
        char *x = b64_dup(raw, rl);
        json_object_set_new(j, "kty", json_string("OKP"));
        json_object_set_new(j, "crv", json_string("Ed25519"));
        json_object_set_new(j, "x", json_string(x));
        free(x);
    }
    if (kid)
        json_object_set_new(j, "kid", json_string(kid));
    if (alg)
        json_object_set_new(j, "alg", json_string(alg));
    if (use)
        json_object_set_new(j, "use", json_string(use));
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s;
}

/* {"keys":[jwk...]} from n JWK texts (freed here). Caller frees. */
static char *jwks_of(size_t n, ...)
{
    va_list ap;
    size_t cap = 16;
    char *s = malloc(cap);
    strcpy(s, "{\"keys\":[");
    va_start(ap, n);
    for (size_t i = 0; i < n; i++) {
        char *j = va_arg(ap, char *);
        cap = strlen(s) + strlen(j) + 8;
        s = realloc(s, cap);
        if (i)
            strcat(s, ",");
        strcat(s, j);
        free(j);
    }
    va_end(ap);
    strcat(s, "]}");
    return s;
}

/* Signs input[0..n) with k for JOSE alg into sig (JOSE form: R||S for ECDSA). */
static size_t t_sign_raw(EVP_PKEY *k, const char *alg, const char *input, size_t n, uint8_t *sig)
{
    const char *md = strcmp(alg, "EdDSA") == 0 ? NULL : strstr(alg, "384") ? "SHA384" : "SHA256";
    OSSL_PARAM params[4], *p = params;
    if (strcmp(alg, "PS256") == 0) {
        *p++ = OSSL_PARAM_construct_utf8_string("pad-mode", (char *)"pss", 0);
        *p++ = OSSL_PARAM_construct_utf8_string("mgf1-digest", (char *)"SHA256", 0);
        *p++ = OSSL_PARAM_construct_utf8_string("saltlen", (char *)"digest", 0);
    }
    *p = OSSL_PARAM_construct_end();
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    uint8_t der[1024];
    size_t dl = sizeof(der);
    cr_assert_eq(EVP_DigestSignInit_ex(m, NULL, md, NULL, NULL, k, params), 1);
    cr_assert_eq(EVP_DigestSign(m, der, &dl, (const uint8_t *)input, n), 1);
    EVP_MD_CTX_free(m);
    if (alg[0] != 'E' || strcmp(alg, "EdDSA") == 0) {
        memcpy(sig, der, dl);
        return dl;
    }
    size_t half = strcmp(alg, "ES256") == 0 ? 32 : 48;
    const uint8_t *q = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &q, (long)dl);
    cr_assert_not_null(es);
    BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, (int)half);
    BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + half, (int)half);
    ECDSA_SIG_free(es);
    return 2 * half;
}

/* b64url(header).b64url(payload).b64url(signature by k with alg); k NULL: empty signature.
 * Caller frees. */
static char *t_token(EVP_PKEY *k, const char *alg, const char *header, const char *payload)
{
    size_t hl = strlen(header), pl = strlen(payload);
    char *t = malloc((hl + pl) * 2 + 1600);
    t_b64url((const uint8_t *)header, hl, t);
    strcat(t, ".");
    t_b64url((const uint8_t *)payload, pl, t + strlen(t));
    if (k) {
        uint8_t sig[1024];
        size_t sl = t_sign_raw(k, alg, t, strlen(t), sig);
        strcat(t, ".");
        t_b64url(sig, sl, t + strlen(t));
    } else {
        strcat(t, ".");
    }
    return t;
}

/* A header {"alg":alg,"kid":kid} (kid NULL: none). */
static const char *hdr(const char *alg, const char *kid)
{
    static char h[256];
    if (kid)
        snprintf(h, sizeof(h), "{\"alg\":\"%s\",\"kid\":\"%s\"}", alg, kid);
    else
        snprintf(h, sizeof(h), "{\"alg\":\"%s\"}", alg);
    return h;
}

static struct waf_jwks *parse_ok(const char *jwks)
{
    struct waf_jwks *ks = NULL;
    char d[256] = "";
    cr_assert_eq(waf_jwks_parse(jwks, strlen(jwks), &ks, d, sizeof(d)), WAF_JOSE_OK, "%s", d);
    cr_assert_not_null(ks);
    return ks;
}

/* Parses jwks (must succeed) and verifies tok; returns the result, the detail in d[256].
 * On failure checks that the detail is one line and quotes no segment of the token. */
static enum waf_jose_result verify(const char *jwks, const char *tok, const char *typ, char *d)
{
    struct waf_jwks *ks = parse_ok(jwks);
    char *payload = (char *)"untouched";
    size_t plen = 12345;
    d[0] = '\0';
    enum waf_jose_result r = waf_jose_verify(ks, tok, strlen(tok), typ, &payload, &plen, d, 256);
    if (r == WAF_JOSE_OK) {
        cr_assert_eq(strlen(payload), plen);
        free(payload);
    } else {
        cr_assert_str_eq(payload, "untouched");
        cr_assert_eq(plen, 12345);
        cr_assert(d[0] != '\0', "no detail for %s", waf_jose_strerror(r));
        cr_assert_null(strchr(d, '\n'));
        /* no 12-character run of the token appears in the detail */
        for (size_t i = 0; i + 12 <= strlen(tok); i += 6) {
            char piece[13];
            memcpy(piece, tok + i, 12);
            piece[12] = '\0';
            cr_assert_null(strstr(d, piece), "detail \"%s\" quotes the token", d);
        }
    }
    waf_jwks_free(ks);
    return r;
}

/* Like verify() for a JWKS that must be refused; returns the result and the detail. */
static enum waf_jose_result parse_fail(const char *jwks, char *d)
{
    struct waf_jwks *ks = (struct waf_jwks *)(uintptr_t)1;
    d[0] = '\0';
    enum waf_jose_result r = waf_jwks_parse(jwks, strlen(jwks), &ks, d, 256);
    cr_assert_neq(r, WAF_JOSE_OK);
    cr_assert_eq(ks, (struct waf_jwks *)(uintptr_t)1, "*out written on failure");
    cr_assert(d[0] != '\0');
    cr_assert_null(strchr(d, '\n'));
    return r;
}

/* ---- each algorithm ---- */

static void round_trip(enum kt t, const char *alg)
{
    char d[256];
    char *jwks = jwks_of(1, jwk_of(key(t), "k1", NULL, NULL));
    char *tok = t_token(key(t), alg, hdr(alg, "k1"), CLAIMS);
    struct waf_jwks *ks = parse_ok(jwks);
    cr_assert_eq(waf_jwks_count(ks), 1);
    char *payload = NULL;
    size_t plen = 0;
    cr_assert_eq(waf_jose_verify(ks, tok, strlen(tok), NULL, &payload, &plen, d, sizeof(d)),
                 WAF_JOSE_OK, "%s: %s", alg, d);
    cr_assert_str_eq(payload, CLAIMS);
    cr_assert_eq(plen, strlen(CLAIMS));
    free(payload);
    free(tok);
    /* without kid in the header the one key that fits is tried */
    tok = t_token(key(t), alg, hdr(alg, NULL), CLAIMS);
    cr_assert_eq(verify(jwks, tok, NULL, d), WAF_JOSE_OK, "%s without kid: %s", alg, d);
    free(tok);
    /* the JWK's alg member, when equal to the header's, changes nothing */
    free(jwks);
    jwks = jwks_of(1, jwk_of(key(t), "k1", alg, "sig"));
    tok = t_token(key(t), alg, hdr(alg, "k1"), CLAIMS);
    cr_assert_eq(verify(jwks, tok, NULL, d), WAF_JOSE_OK, "%s with JWK alg: %s", alg, d);
    free(tok);
    free(jwks);
    waf_jwks_free(ks);
}

Test(verify, es256)
{
    round_trip(K_P256, "ES256");
}

Test(verify, es384)
{
    round_trip(K_P384, "ES384");
}

Test(verify, rs256)
{
    round_trip(K_RSA, "RS256");
}

Test(verify, ps256)
{
    round_trip(K_RSA, "PS256");
}

Test(verify, eddsa)
{
    round_trip(K_ED, "EdDSA");
}

Test(verify, without_kid_every_fitting_key_is_tried)
{
    char d[256];
    char *jwks =
        jwks_of(4, jwk_of(key(K_P256B), "b", NULL, NULL), jwk_of(key(K_RSA), NULL, NULL, NULL),
                jwk_of(key(K_P384), "c", NULL, NULL), jwk_of(key(K_P256), "a", NULL, NULL));
    char *tok = t_token(key(K_P256), "ES256", hdr("ES256", NULL), CLAIMS);
    cr_assert_eq(verify(jwks, tok, NULL, d), WAF_JOSE_OK, "%s", d);
    free(tok);
    tok = t_token(key(K_RSA), "PS256", hdr("PS256", NULL), CLAIMS);
    cr_assert_eq(verify(jwks, tok, NULL, d), WAF_JOSE_OK, "%s", d);
    free(tok);
    /* none of the two P-256 keys made it */
    tok = t_token(key(K_P256), "ES256", hdr("ES256", NULL), CLAIMS);
    free(jwks);
    jwks = jwks_of(2, jwk_of(key(K_P256B), "b", NULL, NULL), jwk_of(key(K_P384), "c", NULL, NULL));
    cr_assert_eq(verify(jwks, tok, NULL, d), WAF_JOSE_SIGNATURE);
    free(tok);
    /* no key fits EdDSA */
    tok = t_token(key(K_ED), "EdDSA", hdr("EdDSA", NULL), CLAIMS);
    cr_assert_eq(verify(jwks, tok, NULL, d), WAF_JOSE_NO_KEY);
    cr_assert_not_null(strstr(d, "EdDSA"), "%s", d);
    free(tok);
    free(jwks);
}

/* ---- signature, key and algorithm failures ---- */

Test(verify, wrong_key)
{
    char d[256];
    char *jwks = jwks_of(1, jwk_of(key(K_P256B), "k1", NULL, NULL));
    char *tok = t_token(key(K_P256), "ES256", hdr("ES256", "k1"), CLAIMS);
    cr_assert_eq(verify(jwks, tok, NULL, d), WAF_JOSE_SIGNATURE);
    free(tok);
    free(jwks);
    jwks = jwks_of(1, jwk_of(key(K_RSAB), "k1", NULL, NULL));
    tok = t_token(key(K_RSA), "RS256", hdr("RS256", "k1"), CLAIMS);
    cr_assert_eq(verify(jwks, tok, NULL, d), WAF_JOSE_SIGNATURE);
    free(tok);
    free(jwks);
}

/* Replaces segment seg (0..2) of tok by the base64url of text. */
static char *replace_segment(const char *tok, int seg, const char *text)
{
    const char *d1 = strchr(tok, '.'), *d2 = strchr(d1 + 1, '.');
    char enc[2048];
    t_b64url((const uint8_t *)text, strlen(text), enc);
    char *out = malloc(strlen(tok) + strlen(enc) + 4);
    if (seg == 0)
        sprintf(out, "%s%s", enc, d1);
    else if (seg == 1)
        sprintf(out, "%.*s.%s%s", (int)(d1 - tok), tok, enc, d2);
    else
        sprintf(out, "%.*s.%s", (int)(d2 - tok), tok, enc);
    return out;
}

Test(verify, tampered_payload_or_header)
{
    char d[256];
    static const enum kt kts[] = {K_P256, K_P384, K_RSA, K_RSA, K_ED};
    static const char *algs[] = {"ES256", "ES384", "RS256", "PS256", "EdDSA"};
    for (size_t i = 0; i < 5; i++) {
        char *jwks = jwks_of(1, jwk_of(key(kts[i]), "k1", NULL, NULL));
        char *tok = t_token(key(kts[i]), algs[i], hdr(algs[i], "k1"), CLAIMS);
        char *t1 = replace_segment(tok, 1, "{\"iss\":\"client-2\"}");
        cr_assert_eq(verify(jwks, t1, NULL, d), WAF_JOSE_SIGNATURE, "%s", algs[i]);
        char h[128];
        snprintf(h, sizeof(h), "{\"alg\":\"%s\",\"kid\":\"k1\",\"typ\":\"JWT\"}", algs[i]);
        char *t2 = replace_segment(tok, 0, h);
        cr_assert_eq(verify(jwks, t2, NULL, d), WAF_JOSE_SIGNATURE, "%s", algs[i]);
        /* one flipped bit of the signature */
        char *t3 = strdup(tok);
        char *last = t3 + strlen(t3) - 2;
        *last = *last == 'A' ? 'B' : 'A';
        cr_assert_eq(verify(jwks, t3, NULL, d), WAF_JOSE_SIGNATURE, "%s", algs[i]);
        free(t1);
        free(t2);
        free(t3);
        free(tok);
        free(jwks);
    }
}

Test(verify, ecdsa_signature_length_and_der_form)
{
    char d[256];
    char *jwks = jwks_of(1, jwk_of(key(K_P256), "k1", NULL, NULL));
    char *tok = t_token(key(K_P256), "ES256", hdr("ES256", "k1"), CLAIMS);
    /* the same signature one byte short, one byte long, and in DER */
    const char *d2 = strrchr(tok, '.');
    uint8_t sig[80];
    char enc[160];
    size_t sl = 0;
    {
        /* decode through the test's own helper: re-sign to get R||S */
        sl = t_sign_raw(key(K_P256), "ES256", tok, (size_t)(d2 - tok), sig);
        cr_assert_eq(sl, 64);
    }
    t_b64url(sig, 63, enc);
    char buf[4096];
    snprintf(buf, sizeof(buf), "%.*s.%s", (int)(d2 - tok), tok, enc);
    cr_assert_eq(verify(jwks, buf, NULL, d), WAF_JOSE_SIGNATURE);
    cr_assert_not_null(strstr(d, "64 bytes"), "%s", d);
    sig[64] = 0;
    t_b64url(sig, 65, enc);
    snprintf(buf, sizeof(buf), "%.*s.%s", (int)(d2 - tok), tok, enc);
    cr_assert_eq(verify(jwks, buf, NULL, d), WAF_JOSE_SIGNATURE);
    /* DER as some libraries write it */
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    uint8_t der[80];
    size_t dl = sizeof(der);
    cr_assert_eq(EVP_DigestSignInit_ex(m, NULL, "SHA256", NULL, NULL, key(K_P256), NULL), 1);
    cr_assert_eq(EVP_DigestSign(m, der, &dl, (const uint8_t *)tok, (size_t)(d2 - tok)), 1);
    EVP_MD_CTX_free(m);
    t_b64url(der, dl, enc);
    snprintf(buf, sizeof(buf), "%.*s.%s", (int)(d2 - tok), tok, enc);
    cr_assert_eq(verify(jwks, buf, NULL, d), WAF_JOSE_SIGNATURE);
    /* all zero R||S */
    memset(sig, 0, 64);
    t_b64url(sig, 64, enc);
    snprintf(buf, sizeof(buf), "%.*s.%s", (int)(d2 - tok), tok, enc);
    cr_assert_eq(verify(jwks, buf, NULL, d), WAF_JOSE_SIGNATURE);
    free(tok);
    free(jwks);
}

Test(verify, alg_none_hs256_crit_unknown)
{
    char d[256];
    EVP_PKEY *k = key(K_P256);
    char *jwk = jwk_of(k, "k1", NULL, NULL);
    char *jwks = jwks_of(1, strdup(jwk));
    char *tok = t_token(NULL, "none", "{\"alg\":\"none\"}", CLAIMS);
    cr_assert_eq(verify(jwks, tok, NULL, d), WAF_JOSE_ALG);
    free(tok);
    tok = t_token(NULL, "none", "{\"alg\":\"none\",\"kid\":\"k1\"}", CLAIMS);
    cr_assert_eq(verify(jwks, tok, NULL, d), WAF_JOSE_ALG);
    free(tok);
    /* HS256 keyed with the public JWK text (the classic confusion attack) */
    {
        const char *h = "{\"alg\":\"HS256\",\"kid\":\"k1\"}";
        char t[2048];
        t_b64url((const uint8_t *)h, strlen(h), t);
        strcat(t, ".");
        t_b64url((const uint8_t *)CLAIMS, strlen(CLAIMS), t + strlen(t));
        uint8_t mac[32];
        unsigned ml = 0;
        HMAC(EVP_sha256(), jwk, (int)strlen(jwk), (const uint8_t *)t, strlen(t), mac, &ml);
        strcat(t, ".");
        t_b64url(mac, ml, t + strlen(t));
        cr_assert_eq(verify(jwks, t, NULL, d), WAF_JOSE_ALG);
    }
    static const char *const bad[] = {
        "{\"alg\":\"ES256\",\"kid\":\"k1\",\"crit\":[\"exp\"],\"exp\":1}",
        "{\"alg\":\"ES256\",\"kid\":\"k1\",\"crit\":[]}",
        "{\"alg\":\"ES256\",\"kid\":\"k1\",\"b64\":false,\"crit\":[\"b64\"]}",
        "{\"alg\":\"ES512\",\"kid\":\"k1\"}",
        "{\"alg\":\"es256\",\"kid\":\"k1\"}",
        "{\"alg\":\"RS384\",\"kid\":\"k1\"}",
        "{\"alg\":\"\",\"kid\":\"k1\"}",
        "{\"alg\":[\"ES256\"],\"kid\":\"k1\"}",
        "{\"kid\":\"k1\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tok = t_token(k, "ES256", bad[i], CLAIMS);
        cr_assert_eq(verify(jwks, tok, NULL, d), WAF_JOSE_ALG, "%s", bad[i]);
        free(tok);
    }
    tok = t_token(k, "ES256", bad[0], CLAIMS);
    verify(jwks, tok, NULL, d);
    cr_assert_not_null(strstr(d, "crit"), "%s", d);
    free(tok);
    free(jwks);
    free(jwk);
}

Test(verify, kid_unknown_or_not_fitting_alg)
{
    char d[256];
    char *jwks =
        jwks_of(3, jwk_of(key(K_P256), "ec", NULL, NULL), jwk_of(key(K_RSA), "rsa", "RS256", NULL),
                jwk_of(key(K_ED), "enc", NULL, "enc"));
    struct {
        enum kt k;
        const char *alg, *kid;
    } cases[] = {
        {K_P256, "ES256", "nope"}, /* unknown kid */
        {K_P256, "ES256", "EC"},   /* kids compare exactly */
        {K_P384, "ES384", "ec"},   /* P-256 key, ES384 header */
        {K_RSA, "RS256", "ec"},    /* EC key, RSA alg */
        {K_RSA, "PS256", "rsa"},   /* JWK alg RS256, header PS256 */
        {K_ED, "EdDSA", "enc"},    /* key with use "enc" */
        {K_P256, "ES256", "rsa"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *tok = t_token(key(cases[i].k), cases[i].alg, hdr(cases[i].alg, cases[i].kid), CLAIMS);
        cr_assert_eq(verify(jwks, tok, NULL, d), WAF_JOSE_NO_KEY, "case %zu", i);
        free(tok);
    }
    /* the enc key is never tried without kid either */
    char *tok = t_token(key(K_ED), "EdDSA", hdr("EdDSA", NULL), CLAIMS);
    cr_assert_eq(verify(jwks, tok, NULL, d), WAF_JOSE_NO_KEY);
    free(tok);
    free(jwks);
}

Test(verify, rsa_padding_is_pinned)
{
    char d[256];
    EVP_PKEY *k = key(K_RSA);
    char *jwks = jwks_of(1, jwk_of(k, "k1", NULL, NULL));
    const char *h = "{\"alg\":\"PS256\",\"kid\":\"k1\"}";
    /* an RS256 (PKCS #1 v1.5) signature under a PS256 header, and the reverse */
    char *tok = t_token(k, "RS256", h, CLAIMS);
    cr_assert_eq(verify(jwks, tok, NULL, d), WAF_JOSE_SIGNATURE);
    free(tok);
    tok = t_token(k, "PS256", hdr("RS256", "k1"), CLAIMS);
    cr_assert_eq(verify(jwks, tok, NULL, d), WAF_JOSE_SIGNATURE);
    free(tok);
    /* PSS with a salt longer than the hash (RFC 7518 3.5 wants exactly 32 bytes) */
    char t[2048];
    t_b64url((const uint8_t *)h, strlen(h), t);
    strcat(t, ".");
    t_b64url((const uint8_t *)CLAIMS, strlen(CLAIMS), t + strlen(t));
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string("pad-mode", (char *)"pss", 0),
        OSSL_PARAM_construct_utf8_string("mgf1-digest", (char *)"SHA256", 0),
        OSSL_PARAM_construct_utf8_string("saltlen", (char *)"max", 0),
        OSSL_PARAM_construct_end(),
    };
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    uint8_t sig[256];
    size_t sl = sizeof(sig);
    cr_assert_eq(EVP_DigestSignInit_ex(m, NULL, "SHA256", NULL, NULL, k, params), 1);
    cr_assert_eq(EVP_DigestSign(m, sig, &sl, (const uint8_t *)t, strlen(t)), 1);
    EVP_MD_CTX_free(m);
    strcat(t, ".");
    t_b64url(sig, sl, t + strlen(t));
    cr_assert_eq(verify(jwks, t, NULL, d), WAF_JOSE_SIGNATURE);
    free(jwks);
}

/* ---- typ ---- */

Test(verify, typ)
{
    char d[256];
    EVP_PKEY *k = key(K_P256);
    char *jwks = jwks_of(1, jwk_of(k, "k1", NULL, NULL));
    struct {
        const char *typ, *want;
        enum waf_jose_result r;
    } cases[] = {
        {"JWT", "JWT", WAF_JOSE_OK},
        {"jwt", "JWT", WAF_JOSE_OK},
        {"application/jwt", "JWT", WAF_JOSE_OK},
        {"Application/JWT", "jwt", WAF_JOSE_OK},
        {"jwt", "application/jwt", WAF_JOSE_OK},
        {"at+jwt", "JWT", WAF_JOSE_TYP},
        {"text/jwt", "JWT", WAF_JOSE_TYP},
        {"application/x/jwt", "x/jwt", WAF_JOSE_TYP},
        {"JWTX", "JWT", WAF_JOSE_TYP},
        {"", "JWT", WAF_JOSE_TYP},
        {NULL, "JWT", WAF_JOSE_TYP},
        {"anything", NULL, WAF_JOSE_OK},
        {NULL, NULL, WAF_JOSE_OK},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char h[128];
        if (cases[i].typ)
            snprintf(h, sizeof(h), "{\"alg\":\"ES256\",\"kid\":\"k1\",\"typ\":\"%s\"}",
                     cases[i].typ);
        else
            snprintf(h, sizeof(h), "{\"alg\":\"ES256\",\"kid\":\"k1\"}");
        char *tok = t_token(k, "ES256", h, CLAIMS);
        cr_assert_eq(verify(jwks, tok, cases[i].want, d), cases[i].r, "case %zu: %s", i, d);
        free(tok);
    }
    char *tok = t_token(k, "ES256", "{\"alg\":\"ES256\",\"kid\":\"k1\",\"typ\":7}", CLAIMS);
    cr_assert_eq(verify(jwks, tok, NULL, d), WAF_JOSE_MALFORMED);
    free(tok);
    free(jwks);
}

/* ---- malformed tokens ---- */

Test(verify, malformed)
{
    char d[256];
    EVP_PKEY *k = key(K_P256);
    char *jwks = jwks_of(1, jwk_of(k, "k1", NULL, NULL));
    char *good = t_token(k, "ES256", hdr("ES256", "k1"), CLAIMS);
    const char *d1 = strchr(good, '.'), *d2 = strrchr(good, '.');
    char buf[4096];
    /* structure */
    const char *structural[] = {"", "abc", "a.b", "a.b.c.d", ".b.c", "a..c", "a.b.c.d.e"};
    for (size_t i = 0; i < sizeof(structural) / sizeof(structural[0]); i++)
        cr_assert_eq(verify(jwks, structural[i], NULL, d), WAF_JOSE_MALFORMED, "%s", structural[i]);
    snprintf(buf, sizeof(buf), "%s.", good);
    cr_assert_eq(verify(jwks, buf, NULL, d), WAF_JOSE_MALFORMED);
    /* bad base64url in each segment: padding, standard alphabet, whitespace, bad length,
     * non-zero trailing bits */
    const char *damage[] = {"=", "+", "/", " ", "\n", "%", "\xc3\xa9"};
    for (size_t i = 0; i < sizeof(damage) / sizeof(damage[0]); i++) {
        size_t off[3] = {(size_t)(d1 - good), (size_t)(d2 - good), strlen(good)};
        for (int s = 0; s < 3; s++) {
            snprintf(buf, sizeof(buf), "%.*s%s%s", (int)off[s], good, damage[i], good + off[s]);
            enum waf_jose_result r = verify(jwks, buf, NULL, d);
            cr_assert_eq(r, WAF_JOSE_MALFORMED, "segment %d damage '%s': %s", s, damage[i],
                         waf_jose_strerror(r));
        }
    }
    /* non-zero unused bits in the last character of the header or payload segment */
    for (int s = 0; s < 2; s++) {
        size_t end = s == 0 ? (size_t)(d1 - good) : (size_t)(d2 - good);
        size_t seglen = s == 0 ? end : end - (size_t)(d1 - good) - 1;
        if (seglen % 4 < 2)
            continue;
        static const char alpha[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        strcpy(buf, good);
        char *c = &buf[end - 1];
        *c = alpha[(strchr(alpha, *c) - alpha) | 1];
        cr_assert_eq(verify(jwks, buf, NULL, d), WAF_JOSE_MALFORMED, "segment %d", s);
    }
    /* non-object JSON and duplicate names, in the header and in the payload */
    const char *headers[] = {
        "[\"ES256\"]",
        "\"ES256\"",
        "null",
        "{\"alg\":\"ES256\",\"kid\":\"k1\"",
        "{\"alg\":\"ES256\",\"alg\":\"ES256\",\"kid\":\"k1\"}",
        "{\"alg\":\"ES256\",\"kid\":\"k1\",\"kid\":\"k1\"}",
        "{\"alg\":\"ES256\",\"kid\":\"k1\"} x",
        "{\"alg\":\"ES256\",\"kid\":\"k\\u0000\"}",
        "{\"alg\":\"ES256\",\"kid\":7}",
    };
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        char *tok = t_token(k, "ES256", headers[i], CLAIMS);
        cr_assert_eq(verify(jwks, tok, NULL, d), WAF_JOSE_MALFORMED, "%s", headers[i]);
        free(tok);
    }
    char *tok = t_token(k, "ES256", "{\"alg\":\"ES256\",\"kid\":\"k1\",\"alg\":\"ES256\"}", CLAIMS);
    verify(jwks, tok, NULL, d);
    cr_assert_not_null(strstr(d, "duplicate"), "%s", d);
    free(tok);
    const char *payloads[] = {
        "[1]", "\"claims\"", "", "{\"iss\":\"a\",\"iss\":\"b\"}", "{\"iss\":\"a\"",
    };
    for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
        tok = t_token(k, "ES256", hdr("ES256", "k1"), payloads[i]);
        cr_assert_eq(verify(jwks, tok, NULL, d), WAF_JOSE_MALFORMED, "%s", payloads[i]);
        cr_assert_not_null(strstr(d, payloads[i][0] ? "payload" : "compact"), "%s", d);
        free(tok);
    }
    /* size cap: a token of WAF_JOSE_MAX_TOKEN + 1 bytes, and a payload pushing the signed
     * token over the cap */
    char *big = malloc(WAF_JOSE_MAX_TOKEN + 2);
    memset(big, 'A', WAF_JOSE_MAX_TOKEN + 1);
    big[10] = '.';
    big[20] = '.';
    big[WAF_JOSE_MAX_TOKEN + 1] = '\0';
    cr_assert_eq(verify(jwks, big, NULL, d), WAF_JOSE_MALFORMED);
    free(big);
    char claims[7000];
    snprintf(claims, sizeof(claims), "{\"pad\":\"%06100d\"}", 0);
    tok = t_token(k, "ES256", hdr("ES256", "k1"), claims);
    cr_assert_gt(strlen(tok), WAF_JOSE_MAX_TOKEN);
    cr_assert_eq(verify(jwks, tok, NULL, d), WAF_JOSE_MALFORMED);
    free(tok);
    snprintf(claims, sizeof(claims), "{\"pad\":\"%05000d\"}", 0);
    tok = t_token(k, "ES256", hdr("ES256", "k1"), claims);
    cr_assert_lt(strlen(tok), WAF_JOSE_MAX_TOKEN);
    cr_assert_eq(verify(jwks, tok, NULL, d), WAF_JOSE_OK, "%s", d);
    free(tok);
    free(good);
    free(jwks);
}

Test(verify, arguments)
{
    char d[256];
    struct waf_jwks *ks = NULL;
    char *jwks = jwks_of(1, jwk_of(key(K_ED), "k1", NULL, NULL));
    ks = parse_ok(jwks);
    char *p = NULL;
    size_t pl = 0;
    cr_assert_eq(waf_jose_verify(NULL, "a.b.c", 5, NULL, &p, &pl, d, sizeof(d)), WAF_JOSE_ARG);
    cr_assert_eq(waf_jose_verify(ks, NULL, 5, NULL, &p, &pl, d, sizeof(d)), WAF_JOSE_ARG);
    cr_assert_eq(waf_jose_verify(ks, "a.b.c", 5, NULL, NULL, &pl, d, sizeof(d)), WAF_JOSE_ARG);
    cr_assert_eq(waf_jose_verify(ks, "a.b.c", 5, NULL, &p, NULL, d, sizeof(d)), WAF_JOSE_ARG);
    cr_assert_eq(waf_jose_verify(ks, "a.b.c", 5, "", &p, &pl, d, sizeof(d)), WAF_JOSE_ARG);
    /* detail is optional; the token length is what counts, not a NUL */
    char *tok = t_token(key(K_ED), "EdDSA", hdr("EdDSA", "k1"), CLAIMS);
    size_t tl = strlen(tok);
    tok = realloc(tok, tl + 8);
    memcpy(tok + tl, "garbage", 8);
    cr_assert_eq(waf_jose_verify(ks, tok, tl, NULL, &p, &pl, NULL, 0), WAF_JOSE_OK);
    free(p);
    cr_assert_eq(waf_jose_verify(ks, tok, tl + 3, NULL, &p, &pl, NULL, 0), WAF_JOSE_MALFORMED);
    cr_assert_eq(waf_jwks_count(NULL), 0);
    waf_jwks_free(NULL);
    waf_jwks_free(ks);
    free(tok);
    free(jwks);
    for (int r = WAF_JOSE_OK; r <= WAF_JOSE_INTERNAL; r++)
        cr_assert_str_neq(waf_jose_strerror((enum waf_jose_result)r), "unknown");
    cr_assert_str_eq(waf_jose_strerror((enum waf_jose_result)99), "unknown");
}

/* ---- JWKS ---- */

Test(jwks, accepted_sets)
{
    char *jwks =
        jwks_of(5, jwk_of(key(K_P256), "a", "ES256", "sig"), jwk_of(key(K_P384), "b", NULL, NULL),
                jwk_of(key(K_RSA), "c", "PS256", NULL), jwk_of(key(K_ED), NULL, "EdDSA", NULL),
                jwk_of(key(K_RSAB), "d", NULL, "enc"));
    struct waf_jwks *ks = parse_ok(jwks);
    cr_assert_eq(waf_jwks_count(ks), 4); /* the enc key is not a signing key */
    waf_jwks_free(ks);
    free(jwks);
    /* unknown members at both levels are ignored; x5c etc. are not used */
    const char *extra = "{\"other\":1,\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\","
                        "\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\","
                        "\"x5c\":[\"MIIB\"],\"key_ops\":[\"verify\"],\"ext\":true}]}";
    ks = parse_ok(extra); /* RFC 8037 A.2 public key */
    cr_assert_eq(waf_jwks_count(ks), 1);
    waf_jwks_free(ks);
    /* as PostgreSQL prints a jsonb column, and an RSA n with a leading zero octet */
    BIGNUM *n = NULL;
    cr_assert(EVP_PKEY_get_bn_param(key(K_RSA), OSSL_PKEY_PARAM_RSA_N, &n));
    uint8_t nb[257] = {0};
    BN_bn2binpad(n, nb + 1, 256);
    BN_free(n);
    char *ns = b64_dup(nb, sizeof(nb)), text[1024];
    snprintf(text, sizeof(text),
             "{\"keys\": [{\"e\": \"AQAB\", \"n\": \"%s\", \"kid\": \"r\", "
             "\"kty\": \"RSA\"}]}",
             ns);
    free(ns);
    char d[256];
    char *tok = t_token(key(K_RSA), "RS256", hdr("RS256", "r"), CLAIMS);
    cr_assert_eq(verify(text, tok, NULL, d), WAF_JOSE_OK, "%s", d);
    free(tok);
}

Test(jwks, refused_sets)
{
    char d[256];
    char *ec = jwk_of(key(K_P256), "k1", NULL, NULL);
    json_t *ecj = json_loads(ec, 0, NULL);
    const char *x = json_string_value(json_object_get(ecj, "x"));
    const char *y = json_string_value(json_object_get(ecj, "y"));
    char buf[8192];
    struct {
        const char *what;
        const char *jwks;
        const char *detail;
    } cases[80];
    size_t n = 0;
    char store[40][1024];
#define CASE(w, det, ...)                                                                          \
    do {                                                                                           \
        snprintf(store[n], sizeof(store[n]), __VA_ARGS__);                                         \
        cases[n].what = w;                                                                         \
        cases[n].jwks = store[n];                                                                  \
        cases[n].detail = det;                                                                     \
        n++;                                                                                       \
    } while (0)
    CASE("not JSON", "JSON", "{\"keys\":[");
    CASE("not an object", "object", "[%s]", ec);
    CASE("no keys", "keys", "{\"key\":[%s]}", ec);
    CASE("keys not an array", "keys", "{\"keys\":%s}", ec);
    CASE("empty keys", "keys", "{\"keys\":[]}");
    CASE("duplicate name", "duplicate", "{\"keys\":[%s],\"keys\":[%s]}", ec, ec);
    CASE("duplicate name in a key", "duplicate",
         "{\"keys\":[{\"kty\":\"EC\",\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}]}",
         x, y);
    CASE("key not an object", "key 1", "{\"keys\":[%s,\"k\"]}", ec);
    CASE("private d", "\"d\"",
         "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\",\"d\":\"%s\"}]}",
         x, y, x);
    CASE("private p", "\"p\"",
         "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\",\"p\":\"AQ\"}]}");
    CASE("private k", "\"k\"", "{\"keys\":[{\"kty\":\"oct\",\"k\":\"AQAB\"}]}");
    CASE("oct", "oct", "{\"keys\":[%s,{\"kty\":\"oct\",\"kid\":\"s\"}]}", ec);
    CASE("unknown kty", "key 1", "{\"keys\":[%s,{\"kty\":\"XYZ\"}]}", ec);
    CASE("kty missing", "key 0", "{\"keys\":[{\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}]}", x,
         y);
    CASE("kty not a string", "kty", "{\"keys\":[{\"kty\":1}]}");
    CASE("duplicate kid", "kid",
         "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\",\"kid\":\"a\"},"
         "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\",\"kid\":\"a\",\"use\":"
         "\"enc\"}]}",
         x, y, x, y);
    CASE("empty kid", "kid",
         "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\",\"kid\":\"\"}]}",
         x, y);
    CASE("kid not a string", "kid",
         "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\",\"kid\":1}]}", x,
         y);
    CASE("use not a string", "use",
         "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\",\"use\":1}]}", x,
         y);
    CASE(
        "only enc keys", "signing",
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\",\"use\":\"enc\"}]}",
        x, y);
    CASE("alg HS256", "alg",
         "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\",\"alg\":\"HS256\"}"
         "]}",
         x, y);
    CASE("alg not fitting", "alg",
         "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\",\"alg\":\"ES384\"}"
         "]}",
         x, y);
    CASE("crv P-521", "crv",
         "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-521\",\"x\":\"%s\",\"y\":\"%s\"}]}", x, y);
    CASE("crv P-384 with P-256 coordinates", "x or y",
         "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"%s\",\"y\":\"%s\"}]}", x, y);
    CASE("x short", "x or y",
         "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%.40s\",\"y\":\"%s\"}]}", x, y);
    CASE("x padded", "x or y",
         "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s=\",\"y\":\"%s\"}]}", x, y);
    CASE("y missing", "x or y", "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\"}]}", x);
    CASE("point not on the curve", "curve",
         "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}]}", x, x);
    CASE("OKP X25519", "Ed25519", "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"X25519\",\"x\":\"%s\"}]}",
         x);
    CASE("OKP x of 48 bytes", "32 bytes",
         "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s%s\"}]}", x,
         "AAAAAAAAAAAAAAAAAAAA");
    CASE("RSA e missing", "RSA", "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"%s%s%s\"}]}", x, x, x);
    CASE("RSA n tiny", "bits", "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQAB\"}]}", x);
    CASE("RSA e of 5 bytes", "RSA",
         "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQABAQAB\"}]}", x);
    cr_assert_lt(n, 40);
    for (size_t i = 0; i < n; i++) {
        enum waf_jose_result r = parse_fail(cases[i].jwks, d);
        cr_assert_eq(r, WAF_JOSE_JWKS, "%s: %s", cases[i].what, waf_jose_strerror(r));
        cr_assert_not_null(strstr(d, cases[i].detail), "%s: detail \"%s\" lacks \"%s\"",
                           cases[i].what, d, cases[i].detail);
        cr_assert_null(strstr(d, x), "%s: detail quotes key material", cases[i].what);
    }
    /* RSA of 1024 bits, an RSA key with an even modulus, 17 keys, a 64 KiB + 1 text */
    char *rsa = jwks_of(1, jwk_of(key(K_RSA1024), "small", NULL, NULL));
    cr_assert_eq(parse_fail(rsa, d), WAF_JOSE_JWKS);
    cr_assert_not_null(strstr(d, "1024 bits"), "%s", d);
    free(rsa);
    {
        BIGNUM *nn = NULL;
        cr_assert(EVP_PKEY_get_bn_param(key(K_RSA), OSSL_PKEY_PARAM_RSA_N, &nn));
        BN_add_word(nn, 1);
        char *ns = b64_bn(nn);
        snprintf(buf, sizeof(buf), "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQAB\"}]}",
                 ns);
        cr_assert_eq(parse_fail(buf, d), WAF_JOSE_JWKS);
        cr_assert_not_null(strstr(d, "even"), "%s", d);
        free(ns);
        BN_free(nn);
    }
    strcpy(buf, "{\"keys\":[");
    for (int i = 0; i < WAF_JWKS_MAX_KEYS + 1; i++) {
        char one[512];
        snprintf(one, sizeof(one),
                 "%s{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\",\"kid\":\"%d\"}",
                 i ? "," : "", x, y, i);
        strcat(buf, one);
        if (i == WAF_JWKS_MAX_KEYS - 1) {
            char ok[sizeof(buf) + 4];
            snprintf(ok, sizeof(ok), "%s]}", buf);
            struct waf_jwks *ks = parse_ok(ok);
            cr_assert_eq(waf_jwks_count(ks), WAF_JWKS_MAX_KEYS);
            waf_jwks_free(ks);
        }
    }
    strcat(buf, "]}");
    cr_assert_eq(parse_fail(buf, d), WAF_JOSE_JWKS);
    char *huge = malloc(WAF_JWKS_MAX_LEN + 2);
    snprintf(huge, WAF_JWKS_MAX_LEN + 2, "{\"keys\":[%s],\"pad\":\"", ec);
    size_t hl = strlen(huge);
    memset(huge + hl, 'a', WAF_JWKS_MAX_LEN + 1 - hl - 2);
    strcpy(huge + WAF_JWKS_MAX_LEN - 1, "\"}");
    cr_assert_eq(strlen(huge), WAF_JWKS_MAX_LEN + 1);
    cr_assert_eq(parse_fail(huge, d), WAF_JOSE_JWKS);
    huge[WAF_JWKS_MAX_LEN - 2] = '\"';
    huge[WAF_JWKS_MAX_LEN - 1] = '}';
    huge[WAF_JWKS_MAX_LEN] = '\0';
    struct waf_jwks *ks = parse_ok(huge);
    waf_jwks_free(ks);
    free(huge);
    /* arguments */
    cr_assert_eq(waf_jwks_parse(NULL, 0, &ks, d, sizeof(d)), WAF_JOSE_ARG);
    cr_assert_eq(waf_jwks_parse("{}", 2, NULL, d, sizeof(d)), WAF_JOSE_ARG);
    json_decref(ecj);
    free(ec);
#undef CASE
}

/* ---- claims ---- */

static const char *const AUDS[] = {AUD, "https://waf.example", NULL};

static struct waf_jwt_expect expect(void)
{
    return (struct waf_jwt_expect){.iss = "client-1",
                                   .aud = AUDS,
                                   .now = NOW,
                                   .max_lifetime_s = 300,
                                   .leeway_s = 30,
                                   .sub_must_equal_iss = true};
}

static enum waf_jose_result check(const char *claims, const struct waf_jwt_expect *e,
                                  struct waf_jwt_facts *f, char *d)
{
    d[0] = '\0';
    enum waf_jose_result r = waf_jwt_check(claims, strlen(claims), e, f, d, 256);
    if (r != WAF_JOSE_OK) {
        cr_assert(d[0] != '\0');
        cr_assert_null(strchr(d, '\n'));
        cr_assert_str_eq(f->iss, "");
        cr_assert_eq(f->exp, 0);
    }
    return r;
}

Test(claims, valid_assertion)
{
    char d[256];
    struct waf_jwt_facts f;
    struct waf_jwt_expect e = expect();
    cr_assert_eq(check(CLAIMS, &e, &f, d), WAF_JOSE_OK, "%s", d);
    cr_assert_str_eq(f.iss, "client-1");
    cr_assert_str_eq(f.sub, "client-1");
    cr_assert_str_eq(f.jti, "j-1");
    cr_assert_eq(f.exp, 1700000100);
    cr_assert_eq(f.iat, 1700000000);
    /* any issuer: facts tell which */
    e.iss = NULL;
    e.sub_must_equal_iss = false;
    const char *portal = "{\"iss\":\"https://portal.example\",\"sub\":\"alice\",\"aud\":[\"x\","
                         "\"https://waf.example\"],\"jti\":\"\\u00e9t\\u00e9\",\"exp\":1700000200,"
                         "\"nbf\":1700000000,\"extra\":{\"a\":[1]}}";
    cr_assert_eq(check(portal, &e, &f, d), WAF_JOSE_OK, "%s", d);
    cr_assert_str_eq(f.iss, "https://portal.example");
    cr_assert_str_eq(f.sub, "alice");
    cr_assert_str_eq(f.jti, "\xc3\xa9t\xc3\xa9");
    cr_assert_eq(f.iat, 0);
    /* leeway: expired 29 s ago, iat and nbf 30 s ahead, lifetime 330 s */
    e = expect();
    const char *edge = "{\"iss\":\"client-1\",\"sub\":\"client-1\",\"aud\":\"" AUD "\","
                       "\"jti\":\"j\",\"exp\":1699999971,\"iat\":1699999700,\"nbf\":1700000030}";
    cr_assert_eq(check(edge, &e, &f, d), WAF_JOSE_OK, "%s", d);
    const char *longest = "{\"iss\":\"client-1\",\"sub\":\"client-1\",\"aud\":\"" AUD "\","
                          "\"jti\":\"j\",\"exp\":1700000330}";
    cr_assert_eq(check(longest, &e, &f, d), WAF_JOSE_OK, "%s", d);
}

Test(claims, refused)
{
    char d[256];
    struct waf_jwt_facts f;
    struct waf_jwt_expect e = expect();
#define C(...) "{" __VA_ARGS__ "}"
#define BASE   "\"iss\":\"client-1\",\"sub\":\"client-1\",\"aud\":\"" AUD "\",\"jti\":\"j\""
    struct {
        const char *claims, *detail;
    } cases[] = {
        {C("\"sub\":\"client-1\",\"aud\":\"" AUD "\",\"jti\":\"j\",\"exp\":1700000100"),
         "iss missing"},
        {C("\"iss\":\"client-1\",\"aud\":\"" AUD "\",\"jti\":\"j\",\"exp\":1700000100"),
         "sub missing"},
        {C("\"iss\":\"client-1\",\"sub\":\"client-1\",\"aud\":\"" AUD "\",\"exp\":1700000100"),
         "jti missing"},
        {C("\"iss\":\"client-1\",\"sub\":\"client-1\",\"jti\":\"j\",\"exp\":1700000100"),
         "aud missing"},
        {C(BASE), "exp missing"},
        {C(BASE ",\"exp\":1699999970"), "exp"},                         /* expired beyond leeway */
        {C(BASE ",\"exp\":1700000100,\"iat\":1700000031"), "iat"},      /* future iat */
        {C(BASE ",\"exp\":1700000100,\"nbf\":1700000031"), "nbf"},      /* not yet valid */
        {C(BASE ",\"exp\":1700000331"), "lifetime"},                    /* exp - now too long */
        {C(BASE ",\"exp\":1700000100,\"iat\":1699999769"), "lifetime"}, /* exp - iat too long */
        {C(BASE ",\"exp\":\"1700000100\""), "exp is not an integer"},
        {C(BASE ",\"exp\":1700000100.5"), "exp is not an integer"},
        {C(BASE ",\"exp\":1700000100,\"iat\":true"), "iat is not an integer"},
        {C(BASE ",\"exp\":-1"), "exp is out of range"},
        {C(BASE ",\"exp\":253402300800"), "exp is out of range"},
        {C("\"iss\":\"client-1\",\"sub\":\"client-1\",\"aud\":\"https://other\",\"jti\":\"j\","
           "\"exp\":1700000100"),
         "aud"},
        {C("\"iss\":\"client-1\",\"sub\":\"client-1\",\"aud\":[\"a\",\"b\"],\"jti\":\"j\","
           "\"exp\":1700000100"),
         "aud"},
        {C("\"iss\":\"client-1\",\"sub\":\"client-1\",\"aud\":[],\"jti\":\"j\",\"exp\":1700000100"),
         "aud"},
        {C("\"iss\":\"client-1\",\"sub\":\"client-1\",\"aud\":[\"" AUD "\",1],\"jti\":\"j\","
           "\"exp\":1700000100"),
         "aud"},
        {C("\"iss\":\"client-1\",\"sub\":\"client-1\",\"aud\":{\"a\":\"" AUD "\"},\"jti\":\"j\","
           "\"exp\":1700000100"),
         "aud"},
        {C("\"iss\":\"client-2\",\"sub\":\"client-2\",\"aud\":\"" AUD "\",\"jti\":\"j\","
           "\"exp\":1700000100"),
         "iss"},
        {C("\"iss\":\"client-1\",\"sub\":\"client-2\",\"aud\":\"" AUD "\",\"jti\":\"j\","
           "\"exp\":1700000100"),
         "sub differs"},
        {C("\"iss\":\"client-1\\n\",\"sub\":\"client-1\\n\",\"aud\":\"" AUD "\",\"jti\":\"j\","
           "\"exp\":1700000100"),
         "iss holds a control"},
        {C(BASE ",\"sub\":\"client-1\",\"exp\":1700000100"), "duplicate"},
        {C("\"iss\":\"client-1\",\"sub\":\"client-1\",\"aud\":\"" AUD "\",\"jti\":\"a\\u007fb\","
           "\"exp\":1700000100"),
         "jti holds a control"},
        {C("\"iss\":\"client-1\",\"sub\":\"client-1\",\"aud\":\"" AUD "\",\"jti\":\"a\\u0085b\","
           "\"exp\":1700000100"),
         "jti holds a control"},
        {C("\"iss\":\"client-1\",\"sub\":\"client-1\",\"aud\":\"" AUD "\",\"jti\":\"\","
           "\"exp\":1700000100"),
         "jti must have"},
        {C("\"iss\":\"client-1\",\"sub\":7,\"aud\":\"" AUD "\",\"jti\":\"j\",\"exp\":1700000100"),
         "sub is not a string"},
        {"[1]", "not a JSON object"},
        {"{", "not valid JSON"},
    };
#undef C
#undef BASE
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum waf_jose_result r = check(cases[i].claims, &e, &f, d);
        enum waf_jose_result want = cases[i].claims[0] == '{' && !strstr(cases[i].detail, "JSON") &&
                                            !strstr(cases[i].detail, "duplicate")
                                        ? WAF_JOSE_CLAIMS
                                        : WAF_JOSE_MALFORMED;
        cr_assert_eq(r, want, "case %zu: %s (%s)", i, waf_jose_strerror(r), d);
        cr_assert_not_null(strstr(d, cases[i].detail), "case %zu: \"%s\" lacks \"%s\"", i, d,
                           cases[i].detail);
    }
    /* 256 bytes accepted, 257 refused */
    char claims[1024], s257[258];
    memset(s257, 'a', 257);
    s257[257] = '\0';
    snprintf(claims, sizeof(claims),
             "{\"iss\":\"client-1\",\"sub\":\"client-1\",\"aud\":\"" AUD "\",\"jti\":\"%.256s\","
             "\"exp\":1700000100}",
             s257);
    cr_assert_eq(check(claims, &e, &f, d), WAF_JOSE_OK, "%s", d);
    cr_assert_eq(strlen(f.jti), 256);
    snprintf(claims, sizeof(claims),
             "{\"iss\":\"client-1\",\"sub\":\"client-1\",\"aud\":\"" AUD "\",\"jti\":\"%s\","
             "\"exp\":1700000100}",
             s257);
    cr_assert_eq(check(claims, &e, &f, d), WAF_JOSE_CLAIMS);
    cr_assert_not_null(strstr(d, "jti"), "%s", d);
    /* sub may differ from iss outside client assertions */
    e.sub_must_equal_iss = false;
    cr_assert_eq(check("{\"iss\":\"client-1\",\"sub\":\"bob\",\"aud\":\"" AUD
                       "\",\"jti\":\"j\",\"exp\":1700000100}",
                       &e, &f, d),
                 WAF_JOSE_OK, "%s", d);
}

Test(claims, arguments)
{
    char d[256];
    struct waf_jwt_facts f;
    struct waf_jwt_expect e = expect();
    const char *const none[] = {NULL};
    cr_assert_eq(waf_jwt_check(NULL, 0, &e, &f, d, sizeof(d)), WAF_JOSE_ARG);
    cr_assert_eq(waf_jwt_check(CLAIMS, strlen(CLAIMS), NULL, &f, d, sizeof(d)), WAF_JOSE_ARG);
    cr_assert_eq(waf_jwt_check(CLAIMS, strlen(CLAIMS), &e, NULL, d, sizeof(d)), WAF_JOSE_ARG);
    struct waf_jwt_expect bad[5] = {e, e, e, e, e};
    bad[0].aud = NULL;
    bad[1].aud = none;
    bad[2].max_lifetime_s = 0;
    bad[3].leeway_s = -1;
    bad[4].now = -5;
    for (int i = 0; i < 5; i++)
        cr_assert_eq(waf_jwt_check(CLAIMS, strlen(CLAIMS), &bad[i], &f, d, sizeof(d)), WAF_JOSE_ARG,
                     "case %d", i);
    char *big = malloc(WAF_JOSE_MAX_TOKEN + 2);
    memset(big, ' ', WAF_JOSE_MAX_TOKEN + 1);
    big[0] = '{';
    big[WAF_JOSE_MAX_TOKEN] = '}';
    cr_assert_eq(waf_jwt_check(big, WAF_JOSE_MAX_TOKEN + 1, &e, &f, NULL, 0), WAF_JOSE_MALFORMED);
    free(big);
}

/* ---- the path of a client assertion: verify, then check ---- */

Test(claims, after_verify)
{
    char d[256];
    char *jwks = jwks_of(1, jwk_of(key(K_ED), "k1", NULL, NULL));
    char *tok = t_token(key(K_ED), "EdDSA", hdr("EdDSA", "k1"), CLAIMS);
    struct waf_jwks *ks = parse_ok(jwks);
    char *p = NULL;
    size_t pl = 0;
    cr_assert_eq(waf_jose_verify(ks, tok, strlen(tok), NULL, &p, &pl, d, sizeof(d)), WAF_JOSE_OK);
    struct waf_jwt_facts f;
    struct waf_jwt_expect e = expect();
    cr_assert_eq(waf_jwt_check(p, pl, &e, &f, d, sizeof(d)), WAF_JOSE_OK, "%s", d);
    cr_assert_str_eq(f.jti, "j-1");
    free(p);
    waf_jwks_free(ks);
    free(tok);
    free(jwks);
}

/* ---- threads ---- */

struct thread_arg {
    const struct waf_jwks *ks;
    char *tokens[5];
    int ok;
};

static void *verify_many(void *arg)
{
    struct thread_arg *a = arg;
    for (int i = 0; i < 40; i++) {
        for (int t = 0; t < 5; t++) {
            char *p = NULL;
            size_t pl = 0;
            if (waf_jose_verify(a->ks, a->tokens[t], strlen(a->tokens[t]), NULL, &p, &pl, NULL,
                                0) == WAF_JOSE_OK &&
                pl == strlen(CLAIMS))
                a->ok++;
            free(p);
        }
    }
    return NULL;
}

Test(verify, eight_threads_share_one_set)
{
    char *jwks =
        jwks_of(4, jwk_of(key(K_P256), "a", NULL, NULL), jwk_of(key(K_P384), "b", NULL, NULL),
                jwk_of(key(K_RSA), "c", NULL, NULL), jwk_of(key(K_ED), "d", NULL, NULL));
    struct waf_jwks *ks = parse_ok(jwks);
    struct thread_arg args[8];
    pthread_t th[8];
    char *tokens[5] = {t_token(key(K_P256), "ES256", hdr("ES256", "a"), CLAIMS),
                       t_token(key(K_P384), "ES384", hdr("ES384", "b"), CLAIMS),
                       t_token(key(K_RSA), "RS256", hdr("RS256", "c"), CLAIMS),
                       t_token(key(K_RSA), "PS256", hdr("PS256", NULL), CLAIMS),
                       t_token(key(K_ED), "EdDSA", hdr("EdDSA", "d"), CLAIMS)};
    for (int i = 0; i < 8; i++) {
        args[i] = (struct thread_arg){.ks = ks};
        memcpy(args[i].tokens, tokens, sizeof(tokens));
        cr_assert_eq(pthread_create(&th[i], NULL, verify_many, &args[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(args[i].ok, 200, "thread %d verified %d of 200", i, args[i].ok);
    }
    for (int t = 0; t < 5; t++)
        free(tokens[t]);
    waf_jwks_free(ks);
    free(jwks);
}

/* ---- allocation failures ---- */

static long alloc_budget = -1; /* allocations left before they fail; -1: no limit */

static bool alloc_allowed(void)
{
    if (alloc_budget < 0)
        return true;
    if (alloc_budget == 0)
        return false;
    alloc_budget--;
    return true;
}

static void *j_malloc(size_t n)
{
    return alloc_allowed() ? malloc(n) : NULL;
}

Test(oom, every_failed_allocation_is_reported_and_cleaned_up)
{
    /* Jansson's allocations only: OpenSSL's allocator cannot be replaced here, since
     * Criterion (through libgit2 and libssh2) has used OpenSSL before any test runs. */
    json_set_alloc_funcs(j_malloc, free);
    char *jwks =
        jwks_of(4, jwk_of(key(K_P256), "a", NULL, NULL), jwk_of(key(K_P384), "b", NULL, NULL),
                jwk_of(key(K_RSA), "c", NULL, NULL), jwk_of(key(K_ED), "d", NULL, NULL));
    const char *algs[] = {"ES256", "ES384", "RS256", "PS256", "EdDSA"};
    enum kt kts[] = {K_P256, K_P384, K_RSA, K_RSA, K_ED};
    char *tokens[5];
    for (int t = 0; t < 5; t++)
        tokens[t] = t_token(key(kts[t]), algs[t], hdr(algs[t], NULL), CLAIMS);
    struct waf_jwt_expect e = expect();
    int failures = 0, nomem = 0;
    for (int t = 0; t < 5; t++) {
        for (long n = 0;; n++) {
            char d[256] = "";
            struct waf_jwks *ks = NULL;
            char *p = NULL;
            size_t pl = 0;
            struct waf_jwt_facts f;
            alloc_budget = n;
            enum waf_jose_result r = waf_jwks_parse(jwks, strlen(jwks), &ks, d, sizeof(d));
            if (r == WAF_JOSE_OK)
                r = waf_jose_verify(ks, tokens[t], strlen(tokens[t]), NULL, &p, &pl, d, sizeof(d));
            if (r == WAF_JOSE_OK)
                r = waf_jwt_check(p, pl, &e, &f, d, sizeof(d));
            alloc_budget = -1;
            free(p);
            waf_jwks_free(ks);
            if (r == WAF_JOSE_OK)
                break;
            failures++;
            nomem += r == WAF_JOSE_NOMEM;
            /* Jansson reports some of its allocation failures as syntax errors. */
            cr_assert(r == WAF_JOSE_NOMEM || r == WAF_JOSE_JWKS || r == WAF_JOSE_MALFORMED,
                      "%s, allocation %ld failed: %s (%s)", algs[t], n, waf_jose_strerror(r), d);
            cr_assert_lt(n, 100000);
        }
    }
    cr_assert_gt(failures, 50);
    cr_assert_gt(nomem, failures / 4, "%d of %d reported as out of memory", nomem, failures);
    for (int t = 0; t < 5; t++)
        free(tokens[t]);
    free(jwks);
    json_set_alloc_funcs(malloc, free);
}
