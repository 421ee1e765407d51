/* Signature layer against published vectors (RFC 7515 A.2 RS256, A.3 ES256) and HMAC. */
#include "../src/internal.h"

#include <criterion/criterion.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *slurp(const char *name)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/rfc7515/%s", IMSAUTH_TEST_DATA, name);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "open %s", path);
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* Verifies the compact JWS in file jws with the single JWK in file jwk through the
 * signature layer only (the RFC payloads are not access tokens). */
static bool check_vector(const char *jwk_file, const char *jws_file, unsigned alg, int flip)
{
    char *jwk = slurp(jwk_file), *jws = slurp(jws_file);
    size_t doclen = strlen(jwk) + 16;
    char *doc = malloc(doclen);
    snprintf(doc, doclen, "{\"keys\":[%s]}", jwk);
    struct ims_keyset *ks = ims_keyset_new();
    char detail[128];
    cr_assert_eq(ims_keyset_add_jwks(ks, doc, strlen(doc), detail, sizeof(detail)), IMSAUTH_OK,
                 "%s", detail);
    cr_assert_eq(ks->n, 1);
    struct ims_mds mds;
    cr_assert(ims_mds_load(&mds));
    char *dot2 = strrchr(jws, '.');
    uint8_t sig[512];
    size_t sl;
    cr_assert(ims_b64url_decode(dot2 + 1, strlen(dot2 + 1), sig, &sl));
    if (flip >= 0)
        sig[flip % sl] ^= 0x01;
    bool ok = ims_sig_verify(&mds, &ks->keys[0], alg, (const uint8_t *)jws, (size_t)(dot2 - jws),
                             sig, sl);
    ims_mds_free(&mds);
    ims_keyset_unref(ks);
    free(doc);
    free(jwk);
    free(jws);
    return ok;
}

Test(rfc7515, a2_rs256)
{
    cr_assert(check_vector("a2_rs256.jwk.json", "a2_rs256.jws", IMSAUTH_ALG_RS256, -1));
    cr_assert_not(check_vector("a2_rs256.jwk.json", "a2_rs256.jws", IMSAUTH_ALG_RS256, 7));
    /* The same key and signature must not pass as PS256. */
    cr_assert_not(check_vector("a2_rs256.jwk.json", "a2_rs256.jws", IMSAUTH_ALG_PS256, -1));
}

Test(rfc7515, a3_es256)
{
    cr_assert(check_vector("a3_es256.jwk.json", "a3_es256.jws", IMSAUTH_ALG_ES256, -1));
    cr_assert_not(check_vector("a3_es256.jwk.json", "a3_es256.jws", IMSAUTH_ALG_ES256, 40));
    /* An EC key never verifies an RSA algorithm. */
    cr_assert_not(check_vector("a3_es256.jwk.json", "a3_es256.jws", IMSAUTH_ALG_RS256, -1));
}

Test(keys, rejects_bad_jwks)
{
    static const char *bad[] = {
        "[]",
        "{\"keys\":{}}",
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAA\",\"y\":\"AAAA\"}]}",
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\"}]}",
        "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}",
        "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed448\",\"x\":\"AAAA\"}]}",
        "{\"keys\":[{\"kid\":5,\"kty\":\"EC\"}]}",
        "{\"keys\":[], \"keys\":[]}",
        "{\"keys\":[",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct ims_keyset *ks = ims_keyset_new();
        char detail[128] = "";
        cr_expect_eq(ims_keyset_add_jwks(ks, bad[i], strlen(bad[i]), detail, sizeof(detail)),
                     IMSAUTH_ERR_KEYS, "case %zu", i);
        cr_expect_eq(ks->n, 0);
        ims_keyset_unref(ks);
    }
}

Test(keys, skips_oct_and_encryption_keys)
{
    static const char doc[] = "{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"},"
                              "{\"kty\":\"RSA\",\"use\":\"enc\",\"n\":\"AQAB\",\"e\":\"AQAB\"},"
                              "{\"kty\":\"foo\"}]}";
    struct ims_keyset *ks = ims_keyset_new();
    cr_assert_eq(ims_keyset_add_jwks(ks, doc, strlen(doc), NULL, 0), IMSAUTH_OK);
    cr_assert_eq(ks->n, 0, "a JWKS never yields a shared secret");
    ims_keyset_unref(ks);
}

Test(sig, hmac_constant_time_path)
{
    struct ims_keyset *ks = ims_keyset_new();
    uint8_t secret[32];
    memset(secret, 7, sizeof(secret));
    cr_assert_eq(ims_keyset_add_secret(ks, secret, sizeof(secret), "k", NULL, 0), IMSAUTH_OK);
    struct ims_mds mds;
    cr_assert(ims_mds_load(&mds));
    /* HMAC-SHA256("msg") under the key, computed independently by OpenSSL's one-shot. */
    uint8_t mac[32];
    unsigned ml;
    HMAC(EVP_sha256(), secret, 32, (const uint8_t *)"msg", 3, mac, &ml);
    cr_assert(
        ims_sig_verify(&mds, &ks->keys[0], IMSAUTH_ALG_HS256, (const uint8_t *)"msg", 3, mac, ml));
    mac[31] ^= 1;
    cr_assert_not(
        ims_sig_verify(&mds, &ks->keys[0], IMSAUTH_ALG_HS256, (const uint8_t *)"msg", 3, mac, ml));
    cr_assert_not(ims_sig_verify(&mds, &ks->keys[0], IMSAUTH_ALG_HS256, (const uint8_t *)"msg", 3,
                                 mac, ml - 1));
    ims_mds_free(&mds);
    ims_keyset_unref(ks);
}
