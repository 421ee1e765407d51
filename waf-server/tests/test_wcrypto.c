/* waf-server cryptography: kid = RFC 7638 thumbprint recomputed here, sealed keys round trip
 * and fail cleanly on every kind of damage, JWS tokens verify with OpenSSL against the
 * published JWK (also from 8 threads at once), client secrets and their MACs, scrypt PHC
 * strings (database regex, RFC 7914 vector, a table of malformed strings). */
#include "wcrypto.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KID_RE "^[A-Za-z0-9._-]{1,64}$"
#define PHC_RE                                                                                     \
    "^\\$(argon2id|scrypt|pbkdf2-sha256)(\\$[A-Za-z0-9+/=,.-]+){2,}\\$[A-Za-z0-9+/.]{22,}$"

static const uint8_t KEK[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

static bool matches(const char *re, const char *s)
{
    regex_t r;
    cr_assert_eq(regcomp(&r, re, REG_EXTENDED | REG_NOSUB), 0);
    bool ok = regexec(&r, s, 0, NULL, 0) == 0;
    regfree(&r);
    return ok;
}

/* Independent base64url, through OpenSSL's standard base64 with the alphabet swapped. */
static void t_b64url(const uint8_t *in, size_t n, char *out)
{
    int l = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    while (l > 0 && out[l - 1] == '=')
        l--;
    out[l] = '\0';
    for (char *p = out; *p; p++)
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
}

static void t_b64std(const uint8_t *in, size_t n, char *out)
{
    int l = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    while (l > 0 && out[l - 1] == '=')
        l--;
    out[l] = '\0';
}

/* Decodes base64url s[0..n) into out; returns the length or -1. */
static int t_unb64url(const char *s, size_t n, uint8_t *out)
{
    char *tmp = malloc(n + 4);
    size_t i = 0;
    for (; i < n; i++)
        tmp[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
    size_t pad = (4 - n % 4) % 4;
    for (size_t j = 0; j < pad; j++)
        tmp[i++] = '=';
    int l = EVP_DecodeBlock(out, (unsigned char *)tmp, (int)i);
    free(tmp);
    return l < 0 ? -1 : l - (int)pad;
}

/* The public key of a JWK text, rebuilt from x and y. */
static EVP_PKEY *jwk_pubkey(const char *jwk)
{
    json_t *j = json_loads(jwk, 0, NULL);
    cr_assert_not_null(j);
    const char *x = json_string_value(json_object_get(j, "x"));
    const char *y = json_string_value(json_object_get(j, "y"));
    cr_assert(x && y);
    uint8_t pt[65 + 3] = {4};
    cr_assert_eq(t_unb64url(x, strlen(x), pt + 1), 32);
    cr_assert_eq(t_unb64url(y, strlen(y), pt + 33), 32);
    json_decref(j);
    OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
    OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
    OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY, pt, 65);
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(b);
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *pkey = NULL;
    cr_assert_eq(EVP_PKEY_fromdata_init(c), 1);
    cr_assert_eq(EVP_PKEY_fromdata(c, &pkey, EVP_PKEY_PUBLIC_KEY, params), 1);
    EVP_PKEY_CTX_free(c);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(b);
    return pkey;
}

/* RFC 7638 thumbprint computed here from the JWK's x and y. */
static void thumbprint(const char *jwk, char out[44])
{
    json_t *j = json_loads(jwk, 0, NULL);
    char canon[256];
    snprintf(canon, sizeof(canon), "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}",
             json_string_value(json_object_get(j, "x")),
             json_string_value(json_object_get(j, "y")));
    json_decref(j);
    uint8_t d[32];
    cr_assert_eq(EVP_Digest(canon, strlen(canon), d, NULL, EVP_sha256(), NULL), 1);
    t_b64url(d, sizeof(d), out);
}

static struct waf_sigkey *new_key(void)
{
    struct waf_sigkey *k = NULL;
    char d[160] = "";
    cr_assert_eq(waf_sigkey_generate(&k, d, sizeof(d)), WAF_CRYPTO_OK, "%s", d);
    return k;
}

/* Checks token against key pub and the expected header and payload; false on any
 * difference (callable from any thread). */
static bool token_ok(EVP_PKEY *pub, const char *token, const char *kid, const char *payload)
{
    const char *d1 = strchr(token, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!d2 || strchr(d2 + 1, '.') ||
        strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmn"
                      "opqrstuvwxyz0123456789-_.") != strlen(token))
        return false;
    char want_hdr[128], buf[8192];
    snprintf(want_hdr, sizeof(want_hdr), "{\"typ\":\"at+jwt\",\"alg\":\"ES256\",\"kid\":\"%s\"}",
             kid);
    int l = t_unb64url(token, (size_t)(d1 - token), (uint8_t *)buf);
    if (l != (int)strlen(want_hdr) || memcmp(buf, want_hdr, (size_t)l) != 0)
        return false;
    l = t_unb64url(d1 + 1, (size_t)(d2 - d1 - 1), (uint8_t *)buf);
    if (l != (int)strlen(payload) || memcmp(buf, payload, (size_t)l) != 0)
        return false;
    uint8_t raw[80];
    if (t_unb64url(d2 + 1, strlen(d2 + 1), raw) != 64)
        return false;
    /* R||S back to DER for OpenSSL. */
    ECDSA_SIG *sig = ECDSA_SIG_new();
    ECDSA_SIG_set0(sig, BN_bin2bn(raw, 32, NULL), BN_bin2bn(raw + 32, 32, NULL));
    uint8_t *der = NULL;
    int dl = i2d_ECDSA_SIG(sig, &der);
    ECDSA_SIG_free(sig);
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    bool ok =
        dl > 0 && EVP_DigestVerifyInit(c, NULL, EVP_sha256(), NULL, pub) == 1 &&
        EVP_DigestVerify(c, der, (size_t)dl, (const uint8_t *)token, (size_t)(d2 - token)) == 1;
    EVP_MD_CTX_free(c);
    OPENSSL_free(der);
    return ok;
}

/* ---- signing key ---- */

Test(sigkey, kid_is_the_rfc7638_thumbprint)
{
    struct waf_sigkey *k = new_key(), *k2 = new_key();
    const char *kid = waf_sigkey_kid(k);
    cr_assert_eq(strlen(kid), WAF_KID_LEN);
    cr_assert(matches(KID_RE, kid), "%s", kid);
    char tp[44];
    thumbprint(waf_sigkey_public_jwk(k), tp);
    cr_assert_str_eq(kid, tp);
    cr_assert_str_eq(waf_sigkey_kid(k), kid); /* stable */
    cr_assert_str_neq(waf_sigkey_kid(k2), kid);

    json_error_t e;
    json_t *j = json_loads(waf_sigkey_public_jwk(k), JSON_REJECT_DUPLICATES, &e);
    cr_assert_not_null(j, "%s", e.text);
    cr_assert_eq(json_object_size(j), 7);
    cr_assert_str_eq(json_string_value(json_object_get(j, "kty")), "EC");
    cr_assert_str_eq(json_string_value(json_object_get(j, "crv")), "P-256");
    cr_assert_str_eq(json_string_value(json_object_get(j, "kid")), kid);
    cr_assert_str_eq(json_string_value(json_object_get(j, "use")), "sig");
    cr_assert_str_eq(json_string_value(json_object_get(j, "alg")), "ES256");
    cr_assert_eq(strlen(json_string_value(json_object_get(j, "x"))), 43);
    json_decref(j);
    EVP_PKEY_free(jwk_pubkey(waf_sigkey_public_jwk(k))); /* a point on P-256 */
    waf_sigkey_free(k);
    waf_sigkey_free(k2);
    waf_sigkey_free(NULL);
}

static uint8_t *seal(const struct waf_sigkey *k, size_t *len)
{
    uint8_t *blob = NULL;
    char d[160] = "";
    cr_assert_eq(waf_sigkey_seal(k, KEK, &blob, len, d, sizeof(d)), WAF_CRYPTO_OK, "%s", d);
    return blob;
}

static enum waf_crypto_result open_blob(const uint8_t *kek, const char *kid, const uint8_t *b,
                                        size_t n)
{
    struct waf_sigkey *k = NULL;
    char d[160] = "";
    enum waf_crypto_result rc = waf_sigkey_open(kek, kid, b, n, &k, d, sizeof(d));
    if (rc == WAF_CRYPTO_OK)
        cr_assert_not_null(k);
    else
        cr_assert_null(k);
    cr_assert(rc == WAF_CRYPTO_OK || d[0], "no detail for %s", waf_crypto_strerror(rc));
    waf_sigkey_free(k);
    return rc;
}

Test(sigkey, seal_open_round_trip)
{
    struct waf_sigkey *k = new_key(), *o = NULL;
    size_t n = 0;
    uint8_t *blob = seal(k, &n);
    cr_assert_eq(blob[0], 1);
    cr_assert_gt(n, 29);
    size_t n2 = 0;
    uint8_t *blob2 = seal(k, &n2);
    cr_assert(n == n2 && memcmp(blob, blob2, n) != 0, "fresh nonce per seal");

    char d[160] = "";
    cr_assert_eq(waf_sigkey_open(KEK, waf_sigkey_kid(k), blob, n, &o, d, sizeof(d)), WAF_CRYPTO_OK,
                 "%s", d);
    cr_assert_str_eq(waf_sigkey_kid(o), waf_sigkey_kid(k));
    cr_assert_str_eq(waf_sigkey_public_jwk(o), waf_sigkey_public_jwk(k));
    /* The reopened key signs tokens the original JWK verifies. */
    char *tok = NULL;
    const char *pl = "{\"sub\":\"x\"}";
    cr_assert_eq(waf_jws_sign(o, pl, strlen(pl), &tok, d, sizeof(d)), WAF_CRYPTO_OK, "%s", d);
    EVP_PKEY *pub = jwk_pubkey(waf_sigkey_public_jwk(k));
    cr_assert(token_ok(pub, tok, waf_sigkey_kid(k), pl));
    EVP_PKEY_free(pub);
    free(tok);
    free(blob);
    free(blob2);
    waf_sigkey_free(o);
    waf_sigkey_free(k);
}

Test(sigkey, open_fails_on_wrong_kek_or_kid)
{
    struct waf_sigkey *k = new_key(), *other = new_key();
    size_t n = 0;
    uint8_t *blob = seal(k, &n);
    uint8_t kek[32];
    memcpy(kek, KEK, 32);
    kek[31] ^= 0x01;
    cr_assert_eq(open_blob(kek, waf_sigkey_kid(k), blob, n), WAF_CRYPTO_BLOB_AUTH);
    cr_assert_eq(open_blob(KEK, waf_sigkey_kid(other), blob, n), WAF_CRYPTO_BLOB_AUTH);
    char kid[64];
    snprintf(kid, sizeof(kid), "%s", waf_sigkey_kid(k));
    kid[0] = kid[0] == 'A' ? 'B' : 'A';
    cr_assert_eq(open_blob(KEK, kid, blob, n), WAF_CRYPTO_BLOB_AUTH);
    cr_assert_eq(open_blob(KEK, "", blob, n), WAF_CRYPTO_ARG);
    cr_assert_eq(open_blob(KEK, "bad kid", blob, n), WAF_CRYPTO_ARG);
    cr_assert_eq(open_blob(KEK, "k/1", blob, n), WAF_CRYPTO_ARG);
    memset(kid, 'a', 63);
    kid[63] = '\0';
    cr_assert_eq(open_blob(KEK, kid, blob, n), WAF_CRYPTO_BLOB_AUTH); /* 63: form ok */
    char longkid[66];
    memset(longkid, 'a', 65);
    longkid[65] = '\0';
    cr_assert_eq(open_blob(KEK, longkid, blob, n), WAF_CRYPTO_ARG);
    cr_assert_eq(open_blob(KEK, waf_sigkey_kid(k), blob, n), WAF_CRYPTO_OK);
    free(blob);
    waf_sigkey_free(k);
    waf_sigkey_free(other);
}

Test(sigkey, open_fails_on_any_flipped_bit_truncation_or_version)
{
    struct waf_sigkey *k = new_key();
    const char *kid = waf_sigkey_kid(k);
    size_t n = 0;
    uint8_t *blob = seal(k, &n);
    for (size_t i = 0; i < n; i++) {
        for (unsigned bit = 0; bit < 8; bit += 7) {
            blob[i] ^= (uint8_t)(1u << bit);
            cr_assert_eq(open_blob(KEK, kid, blob, n),
                         i == 0 ? WAF_CRYPTO_BLOB_VERSION : WAF_CRYPTO_BLOB_AUTH, "byte %zu", i);
            blob[i] ^= (uint8_t)(1u << bit);
        }
    }
    for (size_t l = 0; l < n; l++)
        cr_assert_eq(open_blob(KEK, kid, blob, l),
                     l <= 29 ? WAF_CRYPTO_BLOB_FORMAT : WAF_CRYPTO_BLOB_AUTH, "length %zu", l);
    uint8_t *longer = calloc(1, WAF_SEAL_MAX + 1);
    memcpy(longer, blob, n);
    cr_assert_eq(open_blob(KEK, kid, longer, n + 1), WAF_CRYPTO_BLOB_AUTH);
    cr_assert_eq(open_blob(KEK, kid, longer, WAF_SEAL_MAX + 1), WAF_CRYPTO_BLOB_FORMAT);
    free(longer);
    for (unsigned v = 0; v < 256; v++) {
        if (v == 1)
            continue;
        blob[0] = (uint8_t)v;
        cr_assert_eq(open_blob(KEK, kid, blob, n), WAF_CRYPTO_BLOB_VERSION);
    }
    blob[0] = 1;
    cr_assert_eq(open_blob(KEK, kid, blob, n), WAF_CRYPTO_OK);
    free(blob);
    waf_sigkey_free(k);
}

/* A version-1 blob sealed here, so that the plaintext and the AAD can be anything. */
static uint8_t *t_seal(const char *aad, const uint8_t *pt, size_t n, size_t *len)
{
    uint8_t *b = malloc(n + 29);
    int l = 0;
    b[0] = 1;
    memset(b + 1, 7, 12);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    cr_assert_eq(EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, KEK, b + 1), 1);
    cr_assert_eq(EVP_EncryptUpdate(c, NULL, &l, (const uint8_t *)aad, (int)strlen(aad)), 1);
    cr_assert_eq(EVP_EncryptUpdate(c, b + 13, &l, pt, (int)n), 1);
    cr_assert_eq(EVP_EncryptFinal_ex(c, b + 13 + l, &l), 1);
    cr_assert_eq(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, 16, b + 13 + n), 1);
    EVP_CIPHER_CTX_free(c);
    *len = n + 29;
    return b;
}

static uint8_t *t_pkcs8(EVP_PKEY *pkey, int *len)
{
    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(pkey);
    uint8_t *der = NULL;
    *len = i2d_PKCS8_PRIV_KEY_INFO(p8, &der);
    PKCS8_PRIV_KEY_INFO_free(p8);
    cr_assert_gt(*len, 0);
    return der;
}

Test(sigkey, open_checks_the_key_and_its_thumbprint)
{
    struct waf_sigkey *k = new_key();
    const char *kid = waf_sigkey_kid(k);
    size_t n = 0;
    int dl = 0;

    /* Authentic blob holding another P-256 key: thumbprint differs from the kid. */
    EVP_PKEY *p256 = EVP_EC_gen("P-256");
    uint8_t *der = t_pkcs8(p256, &dl);
    uint8_t *b = t_seal(kid, der, (size_t)dl, &n);
    cr_assert_eq(open_blob(KEK, kid, b, n), WAF_CRYPTO_KID_MISMATCH);
    free(b);
    OPENSSL_free(der);
    EVP_PKEY_free(p256);

    /* P-384 and Ed25519 keys, garbage, PKCS#8 with trailing bytes. */
    EVP_PKEY *p384 = EVP_EC_gen("P-384");
    der = t_pkcs8(p384, &dl);
    b = t_seal(kid, der, (size_t)dl, &n);
    cr_assert_eq(open_blob(KEK, kid, b, n), WAF_CRYPTO_KEY_INVALID);
    free(b);
    OPENSSL_free(der);
    EVP_PKEY_free(p384);
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    der = t_pkcs8(ed, &dl);
    b = t_seal(kid, der, (size_t)dl, &n);
    cr_assert_eq(open_blob(KEK, kid, b, n), WAF_CRYPTO_KEY_INVALID);
    free(b);
    OPENSSL_free(der);
    EVP_PKEY_free(ed);
    const uint8_t junk[40] = {0x30, 0x26, 1, 2, 3};
    b = t_seal(kid, junk, sizeof(junk), &n);
    cr_assert_eq(open_blob(KEK, kid, b, n), WAF_CRYPTO_KEY_INVALID);
    free(b);

    size_t sn = 0;
    uint8_t *sealed = seal(k, &sn);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    size_t ptl = sn - 29;
    uint8_t *pt = malloc(ptl + 1), tag[16];
    int l = 0;
    memcpy(tag, sealed + sn - 16, 16);
    cr_assert_eq(EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, KEK, sealed + 1), 1);
    cr_assert_eq(EVP_DecryptUpdate(c, NULL, &l, (const uint8_t *)kid, (int)strlen(kid)), 1);
    cr_assert_eq(EVP_DecryptUpdate(c, pt, &l, sealed + 13, (int)ptl), 1);
    cr_assert_eq(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, 16, tag), 1);
    cr_assert_eq(EVP_DecryptFinal_ex(c, pt + l, &l), 1, "the blob is the documented format");
    EVP_CIPHER_CTX_free(c);
    /* Our own reseal of the plaintext opens; with one trailing byte it does not. */
    b = t_seal(kid, pt, ptl, &n);
    cr_assert_eq(open_blob(KEK, kid, b, n), WAF_CRYPTO_OK);
    free(b);
    pt[ptl] = 0;
    b = t_seal(kid, pt, ptl + 1, &n);
    cr_assert_eq(open_blob(KEK, kid, b, n), WAF_CRYPTO_KEY_INVALID);
    free(b);
    OPENSSL_cleanse(pt, ptl + 1);
    free(pt);
    free(sealed);
    waf_sigkey_free(k);
}

Test(sigkey, bad_arguments)
{
    struct waf_sigkey *k = new_key();
    uint8_t *blob = NULL;
    size_t n = 0;
    cr_assert_eq(waf_sigkey_generate(NULL, NULL, 0), WAF_CRYPTO_ARG);
    cr_assert_eq(waf_sigkey_seal(k, NULL, &blob, &n, NULL, 0), WAF_CRYPTO_ARG);
    cr_assert_eq(waf_sigkey_seal(NULL, KEK, &blob, &n, NULL, 0), WAF_CRYPTO_ARG);
    cr_assert_null(blob);
    cr_assert_eq(waf_sigkey_open(KEK, NULL, (const uint8_t *)"x", 1, &k, NULL, 0), WAF_CRYPTO_ARG);
    cr_assert_str_eq(waf_crypto_strerror(WAF_CRYPTO_BLOB_AUTH),
                     "sealed key blob does not authenticate (wrong KEK or kid, or tampered)");
    cr_assert_str_eq(waf_crypto_strerror((enum waf_crypto_result)999), "unknown");
    waf_sigkey_free(k);
}

/* ---- JWS ---- */

#define CLAIMS                                                                                     \
    "{\"iss\":\"https://waf.home1.net\",\"sub\":\"user-1\",\"aud\":\"ims\",\"scope\":"             \
    "\"openid ims\",\"impu\":[\"sip:a@b\"]}"

Test(jws, token_verifies_against_the_jwk)
{
    struct waf_sigkey *k = new_key();
    EVP_PKEY *pub = jwk_pubkey(waf_sigkey_public_jwk(k));
    const char *payloads[] = {"{}", "{\"a\":1}", "{\"ab\":12}", CLAIMS};
    for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
        char *tok = NULL, d[160] = "";
        cr_assert_eq(waf_jws_sign(k, payloads[i], strlen(payloads[i]), &tok, d, sizeof(d)),
                     WAF_CRYPTO_OK, "%s", d);
        cr_assert(token_ok(pub, tok, waf_sigkey_kid(k), payloads[i]), "%s", tok);
        /* The checker does catch a changed payload. */
        char *dot = strchr(tok, '.');
        dot[1] = dot[1] == 'e' ? 'f' : 'e';
        cr_assert_not(token_ok(pub, tok, waf_sigkey_kid(k), payloads[i]));
        free(tok);
    }
    EVP_PKEY_free(pub);
    waf_sigkey_free(k);
}

Test(jws, size_cap_and_arguments)
{
    struct waf_sigkey *k = new_key();
    char *big = malloc(WAF_JWS_MAX_TOKEN + 2), *tok = NULL;
    memset(big, 'a', WAF_JWS_MAX_TOKEN + 1);
    big[WAF_JWS_MAX_TOKEN + 1] = '\0';
    /* header 110 + '.' + '.' + 86 signature characters: 7994 left for 5995 payload bytes */
    cr_assert_eq(waf_jws_sign(k, big, 5995, &tok, NULL, 0), WAF_CRYPTO_OK);
    cr_assert_eq(strlen(tok), WAF_JWS_MAX_TOKEN);
    free(tok);
    tok = NULL;
    cr_assert_eq(waf_jws_sign(k, big, 5996, &tok, NULL, 0), WAF_CRYPTO_TOO_LARGE);
    cr_assert_eq(waf_jws_sign(k, big, WAF_JWS_MAX_TOKEN + 1, &tok, NULL, 0), WAF_CRYPTO_TOO_LARGE);
    cr_assert_eq(waf_jws_sign(k, big, SIZE_MAX, &tok, NULL, 0), WAF_CRYPTO_TOO_LARGE);
    cr_assert_eq(waf_jws_sign(k, big, 0, &tok, NULL, 0), WAF_CRYPTO_ARG);
    cr_assert_eq(waf_jws_sign(NULL, big, 2, &tok, NULL, 0), WAF_CRYPTO_ARG);
    cr_assert_null(tok);
    free(big);
    waf_sigkey_free(k);
}

struct signer {
    const struct waf_sigkey *k;
    EVP_PKEY *pub;
    int id, bad;
};

static void *sign_many(void *arg)
{
    struct signer *s = arg;
    for (int i = 0; i < 100; i++) {
        char pl[64], *tok = NULL;
        int n = snprintf(pl, sizeof(pl), "{\"thread\":%d,\"i\":%d}", s->id, i);
        if (waf_jws_sign(s->k, pl, (size_t)n, &tok, NULL, 0) != WAF_CRYPTO_OK ||
            !token_ok(s->pub, tok, waf_sigkey_kid(s->k), pl))
            s->bad++;
        free(tok);
    }
    return NULL;
}

Test(jws, eight_threads_share_one_key)
{
    struct waf_sigkey *k = new_key();
    EVP_PKEY *pub = jwk_pubkey(waf_sigkey_public_jwk(k));
    pthread_t t[8];
    struct signer s[8];
    for (int i = 0; i < 8; i++) {
        s[i] = (struct signer){.k = k, .pub = pub, .id = i};
        cr_assert_eq(pthread_create(&t[i], NULL, sign_many, &s[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(s[i].bad, 0, "thread %d: %d bad tokens", i, s[i].bad);
    }
    EVP_PKEY_free(pub);
    waf_sigkey_free(k);
}

Test(b64url, strict_decoding)
{
    uint8_t out[16];
    size_t n = 0;
    char enc[WAF_B64URL_LEN(5) + 1];
    cr_assert_eq(waf_b64url_encode((const uint8_t *)"\xfb\xff\x01\x02\x03", 5, enc), 7);
    cr_assert_str_eq(enc, "-_8BAgM");
    cr_assert(waf_b64url_decode(enc, 7, out, &n));
    cr_assert(n == 5 && memcmp(out, "\xfb\xff\x01\x02\x03", 5) == 0);
    cr_assert(waf_b64url_decode("", 0, out, &n) && n == 0);
    cr_assert_not(waf_b64url_decode("-_8BAgN", 7, out, &n)); /* trailing bits */
    cr_assert_not(waf_b64url_decode("+_8BAgM", 7, out, &n)); /* standard alphabet */
    cr_assert_not(waf_b64url_decode("-_8BAg==", 8, out, &n));
    cr_assert_not(waf_b64url_decode("-_8BA", 5, out, &n)); /* length % 4 == 1 */
    cr_assert_not(waf_b64url_decode("-_8 BAgM", 8, out, &n));
}

/* ---- secrets ---- */

Test(secret, generate)
{
    char s[20][WAF_SECRET_LEN + 1];
    for (int i = 0; i < 20; i++) {
        cr_assert_eq(waf_secret_generate(s[i]), WAF_CRYPTO_OK);
        cr_assert_eq(strlen(s[i]), 43);
        cr_assert_eq(
            strspn(s[i], "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), 43);
        uint8_t raw[40];
        cr_assert_eq(t_unb64url(s[i], 43, raw), 32);
        for (int j = 0; j < i; j++)
            cr_assert_str_neq(s[i], s[j]);
    }
}

Test(secret, mac_and_verify)
{
    uint8_t key[32], key2[32], mac[32], want[32];
    memset(key, 0x5a, sizeof(key));
    memcpy(key2, key, sizeof(key));
    key2[0] ^= 1;
    char secret[WAF_SECRET_LEN + 1];
    cr_assert_eq(waf_secret_generate(secret), WAF_CRYPTO_OK);
    cr_assert_eq(waf_secret_mac(key, secret, mac), WAF_CRYPTO_OK);
    unsigned wl = 0;
    HMAC(EVP_sha256(), key, 32, (const uint8_t *)secret, strlen(secret), want, &wl);
    cr_assert(wl == 32 && memcmp(mac, want, 32) == 0, "HMAC-SHA-256");
    cr_assert_eq(waf_secret_verify(key, secret, mac), WAF_CRYPTO_OK);
    cr_assert_eq(waf_secret_verify(key2, secret, mac), WAF_CRYPTO_MISMATCH);
    for (size_t i = 0; i < 43; i++) {
        char other[WAF_SECRET_LEN + 1];
        memcpy(other, secret, sizeof(other));
        other[i] = other[i] == 'A' ? 'B' : 'A';
        cr_assert_eq(waf_secret_verify(key, other, mac), WAF_CRYPTO_MISMATCH, "char %zu", i);
    }
    cr_assert_eq(waf_secret_verify(key, "", mac), WAF_CRYPTO_MISMATCH);
    mac[31] ^= 0x80;
    cr_assert_eq(waf_secret_verify(key, secret, mac), WAF_CRYPTO_MISMATCH);
    cr_assert_eq(waf_secret_verify(key, NULL, mac), WAF_CRYPTO_ARG);
    cr_assert_eq(waf_secret_mac(NULL, secret, mac), WAF_CRYPTO_ARG);
}

Test(secret, ct_equal)
{
    cr_assert(waf_ct_equal("abcd", "abcd", 4));
    cr_assert_not(waf_ct_equal("abcd", "abce", 4));
    cr_assert(waf_ct_equal("abcd", "abce", 3));
    cr_assert(waf_ct_equal("", "x", 0));
}

/* ---- passwords ---- */

Test(password, hash_format_and_verify)
{
    char phc[WAF_PHC_MAX + 1], phc2[WAF_PHC_MAX + 1], d[160] = "";
    cr_assert_eq(waf_password_hash("correct horse", 10, phc, sizeof(phc), d, sizeof(d)),
                 WAF_CRYPTO_OK, "%s", d);
    cr_assert(matches(PHC_RE, phc), "%s", phc);
    cr_assert_eq(strncmp(phc, "$scrypt$ln=10,r=8,p=1$", 22), 0, "%s", phc);
    cr_assert_eq(strlen(phc), 22 + 22 + 1 + 43, "%s", phc);
    cr_assert_not(matches(PHC_RE, "$scrypt$ln=10,r=8,p=1$short"), "the regex works");
    cr_assert_eq(waf_password_verify("correct horse", phc, d, sizeof(d)), WAF_CRYPTO_OK, "%s", d);
    cr_assert_eq(waf_password_verify("correct horsf", phc, d, sizeof(d)), WAF_CRYPTO_MISMATCH);
    cr_assert_eq(waf_password_verify("correct hors", phc, NULL, 0), WAF_CRYPTO_MISMATCH);
    cr_assert_eq(waf_password_verify("", phc, NULL, 0), WAF_CRYPTO_MISMATCH);
    /* Random salt: the same password hashes differently. */
    cr_assert_eq(waf_password_hash("correct horse", 10, phc2, sizeof(phc2), NULL, 0),
                 WAF_CRYPTO_OK);
    cr_assert_str_neq(phc, phc2);

    /* Default cost. */
    cr_assert_eq(waf_password_hash("pw", 0, phc, sizeof(phc), NULL, 0), WAF_CRYPTO_OK);
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "$scrypt$ln=%d,r=8,p=1$", WAF_SCRYPT_LN_DEFAULT);
    cr_assert_eq(strncmp(phc, prefix, strlen(prefix)), 0, "%s", phc);
    cr_assert(matches(PHC_RE, phc), "%s", phc);
    cr_assert_eq(waf_password_verify("pw", phc, NULL, 0), WAF_CRYPTO_OK);

    /* Limits. */
    cr_assert_eq(waf_password_hash("", 10, phc, sizeof(phc), NULL, 0), WAF_CRYPTO_ARG);
    cr_assert_eq(waf_password_hash("pw", 9, phc, sizeof(phc), NULL, 0), WAF_CRYPTO_ARG);
    cr_assert_eq(waf_password_hash("pw", 21, phc, sizeof(phc), NULL, 0), WAF_CRYPTO_ARG);
    cr_assert_eq(waf_password_hash("pw", 10, phc, 40, NULL, 0), WAF_CRYPTO_TOO_LARGE);
    cr_assert_eq(waf_password_hash(NULL, 10, phc, sizeof(phc), NULL, 0), WAF_CRYPTO_ARG);
    char *longpw = malloc(WAF_PASSWORD_MAX + 2);
    memset(longpw, 'p', WAF_PASSWORD_MAX + 1);
    longpw[WAF_PASSWORD_MAX + 1] = '\0';
    cr_assert_eq(waf_password_hash(longpw, 10, phc, sizeof(phc), NULL, 0), WAF_CRYPTO_ARG);
    cr_assert_eq(waf_password_verify(longpw, phc2, NULL, 0), WAF_CRYPTO_MISMATCH);
    longpw[WAF_PASSWORD_MAX] = '\0';
    cr_assert_eq(waf_password_hash(longpw, 10, phc, sizeof(phc), NULL, 0), WAF_CRYPTO_OK);
    cr_assert_eq(waf_password_verify(longpw, phc, NULL, 0), WAF_CRYPTO_OK);
    free(longpw);
}

/* RFC 7914 §12, third vector: scrypt("pleaseletmein", "SodiumChloride", N=16384, r=8, p=1,
 * 64 bytes), written as a PHC string here. */
Test(password, rfc7914_vector)
{
    static const uint8_t dk[64] = {0x70, 0x23, 0xbd, 0xcb, 0x3a, 0xfd, 0x73, 0x48, 0x46, 0x1c, 0x06,
                                   0xcd, 0x81, 0xfd, 0x38, 0xeb, 0xfd, 0xa8, 0xfb, 0xba, 0x90, 0x4f,
                                   0x8e, 0x3e, 0xa9, 0xb5, 0x43, 0xf6, 0x54, 0x5d, 0xa1, 0xf2, 0xd5,
                                   0x43, 0x29, 0x55, 0x61, 0x3f, 0x0f, 0xcf, 0x62, 0xd4, 0x97, 0x05,
                                   0x24, 0x2a, 0x9a, 0xf9, 0xe6, 0x1e, 0x85, 0xdc, 0x0d, 0x65, 0x1e,
                                   0x40, 0xdf, 0xcf, 0x01, 0x7b, 0x45, 0x57, 0x58, 0x87};
    char salt[32], hash[96], phc[256];
    t_b64std((const uint8_t *)"SodiumChloride", 14, salt);
    t_b64std(dk, sizeof(dk), hash);
    snprintf(phc, sizeof(phc), "$scrypt$ln=14,r=8,p=1$%s$%s", salt, hash);
    cr_assert_str_eq(phc, "$scrypt$ln=14,r=8,p=1$U29kaXVtQ2hsb3JpZGU$cCO9yzr9c0hGHAbNgf046/2o+"
                          "7qQT44+qbVD9lRdofLVQylVYT8Pz2LUlwUkKpr55h6F3A1lHkDfzwF7RVdYhw");
    char d[160] = "";
    cr_assert_eq(waf_password_verify("pleaseletmein", phc, d, sizeof(d)), WAF_CRYPTO_OK, "%s", d);
    cr_assert_eq(waf_password_verify("pleaseletmeim", phc, d, sizeof(d)), WAF_CRYPTO_MISMATCH);
}

#define SALT "$c2FsdHNhbHRzYWx0c2FsdA"                      /* 16 bytes */
#define HASH "$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" /* 32 bytes */

Test(password, malformed_strings_are_rejected)
{
    static const struct {
        const char *phc;
        enum waf_crypto_result want;
    } cases[] = {
        {"", WAF_CRYPTO_PHC_FORMAT},
        {"$", WAF_CRYPTO_PHC_FORMAT},
        {"$$ln=14,r=8,p=1" SALT HASH, WAF_CRYPTO_PHC_FORMAT},
        {"scrypt$ln=14,r=8,p=1" SALT HASH, WAF_CRYPTO_PHC_FORMAT},
        {"$scrypt", WAF_CRYPTO_PHC_FORMAT},
        {"$argon2id$v=19$m=65536,t=3,p=4" SALT HASH, WAF_CRYPTO_PHC_ALGORITHM},
        {"$pbkdf2-sha256$i=600000" SALT HASH, WAF_CRYPTO_PHC_ALGORITHM},
        {"$SCRYPT$ln=14,r=8,p=1" SALT HASH, WAF_CRYPTO_PHC_ALGORITHM},
        {"$scrypt2$ln=14,r=8,p=1" SALT HASH, WAF_CRYPTO_PHC_ALGORITHM},
        {"$scrypt$ln=14,r=8" SALT HASH, WAF_CRYPTO_PHC_FORMAT},
        {"$scrypt$r=8,ln=14,p=1" SALT HASH, WAF_CRYPTO_PHC_FORMAT},
        {"$scrypt$ln=014,r=8,p=1" SALT HASH, WAF_CRYPTO_PHC_FORMAT},
        {"$scrypt$ln=+14,r=8,p=1" SALT HASH, WAF_CRYPTO_PHC_FORMAT},
        {"$scrypt$ln=1a,r=8,p=1" SALT HASH, WAF_CRYPTO_PHC_FORMAT},
        {"$scrypt$ln=,r=8,p=1" SALT HASH, WAF_CRYPTO_PHC_FORMAT},
        {"$scrypt$ln=14,r=8,p=1,x=1" SALT HASH, WAF_CRYPTO_PHC_FORMAT},
        {"$scrypt$ln=14 ,r=8,p=1" SALT HASH, WAF_CRYPTO_PHC_FORMAT},
        {"$scrypt$ln=14,r=0,p=1" SALT HASH, WAF_CRYPTO_PHC_FORMAT},
        {"$scrypt$ln=99999999,r=8,p=1" SALT HASH, WAF_CRYPTO_PHC_FORMAT},
        {"$scrypt$ln=9,r=8,p=1" SALT HASH, WAF_CRYPTO_PHC_PARAMS},
        {"$scrypt$ln=21,r=8,p=1" SALT HASH, WAF_CRYPTO_PHC_PARAMS},
        {"$scrypt$ln=4294967296,r=8,p=1" SALT HASH, WAF_CRYPTO_PHC_FORMAT},
        {"$scrypt$ln=14,r=33,p=1" SALT HASH, WAF_CRYPTO_PHC_PARAMS},
        {"$scrypt$ln=14,r=8,p=17" SALT HASH, WAF_CRYPTO_PHC_PARAMS},
        {"$scrypt$ln=20,r=16,p=1" SALT HASH, WAF_CRYPTO_PHC_PARAMS}, /* 2 GiB */
        {"$scrypt$ln=14,r=8,p=1" SALT, WAF_CRYPTO_PHC_FORMAT},
        {"$scrypt$ln=14,r=8,p=1", WAF_CRYPTO_PHC_FORMAT},
        {"$scrypt$ln=14,r=8,p=1" SALT HASH "$", WAF_CRYPTO_PHC_FORMAT},
        {"$scrypt$ln=14,r=8,p=1" SALT HASH "$AAAA", WAF_CRYPTO_PHC_FORMAT},
        {"$scrypt$ln=14,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA==" HASH, WAF_CRYPTO_PHC_FORMAT},
        {"$scrypt$ln=14,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdB" HASH, WAF_CRYPTO_PHC_FORMAT},
        {"$scrypt$ln=14,r=8,p=1$c2FsdHNhbHRzYWx0c2Fsd" HASH, WAF_CRYPTO_PHC_FORMAT},
        {"$scrypt$ln=14,r=8,p=1$c2Fsd-NhbHRzYWx0c2FsdA" HASH, WAF_CRYPTO_PHC_FORMAT},
        {"$scrypt$ln=14,r=8,p=1$c2FsdHNhbHRzYWx0c2Fsd.A" HASH, WAF_CRYPTO_PHC_FORMAT},
        {"$scrypt$ln=14,r=8,p=1" SALT "$AAAAAAAAAAAAAAAAAAAA", WAF_CRYPTO_PHC_PARAMS},
        {"$scrypt$ln=14,r=8,p=1" SALT "$", WAF_CRYPTO_PHC_PARAMS},
        {"$scrypt$ln=14,r=8,p=1$c2FsdA" HASH, WAF_CRYPTO_PHC_PARAMS}, /* 4-byte salt */
        {"$scrypt$ln=14,r=8,p=1" SALT HASH "\n", WAF_CRYPTO_PHC_FORMAT},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char d[160] = "";
        enum waf_crypto_result rc = waf_password_verify("pw", cases[i].phc, d, sizeof(d));
        cr_expect_eq(rc, cases[i].want, "case %zu %s: got %s (%s)", i, cases[i].phc,
                     waf_crypto_strerror(rc), d);
        cr_expect(d[0], "case %zu has no detail", i);
    }
    char *huge = malloc(WAF_PHC_MAX + 2);
    memset(huge, 'A', WAF_PHC_MAX + 1);
    huge[WAF_PHC_MAX + 1] = '\0';
    memcpy(huge, "$scrypt$ln=14,r=8,p=1$", 22);
    cr_assert_eq(waf_password_verify("pw", huge, NULL, 0), WAF_CRYPTO_PHC_FORMAT);
    free(huge);
    cr_assert_eq(waf_password_verify("pw", NULL, NULL, 0), WAF_CRYPTO_ARG);
    /* The base string of the table is well formed: only the password is wrong. */
    cr_assert_eq(waf_password_verify("pw", "$scrypt$ln=10,r=8,p=1" SALT HASH, NULL, 0),
                 WAF_CRYPTO_MISMATCH);
}

/* Verification with the public JWK, as introspection does it. */
Test(wcrypto, verify_with_the_public_jwk)
{
    struct waf_sigkey *k, *other;
    char d[256];
    cr_assert_eq(waf_sigkey_generate(&k, d, sizeof(d)), WAF_CRYPTO_OK);
    cr_assert_eq(waf_sigkey_generate(&other, d, sizeof(d)), WAF_CRYPTO_OK);
    struct waf_pubkey *pk, *opk;
    cr_assert_eq(waf_pubkey_from_jwk(waf_sigkey_public_jwk(k), &pk, d, sizeof(d)), WAF_CRYPTO_OK,
                 "%s", d);
    cr_assert_eq(waf_pubkey_from_jwk(waf_sigkey_public_jwk(other), &opk, d, sizeof(d)),
                 WAF_CRYPTO_OK);
    const char *claims = "{\"sub\":\"x\",\"jti\":\"j1\"}";
    char *tok;
    cr_assert_eq(waf_jws_sign(k, claims, strlen(claims), &tok, d, sizeof(d)), WAF_CRYPTO_OK);
    char kid[65];
    cr_assert(waf_jws_kid(tok, strlen(tok), kid));
    cr_assert_str_eq(kid, waf_sigkey_kid(k));
    char *payload = NULL;
    cr_assert_eq(waf_jws_verify(pk, tok, strlen(tok), &payload), WAF_CRYPTO_OK);
    cr_assert_str_eq(payload, claims);
    free(payload);
    cr_assert_eq(waf_jws_verify(opk, tok, strlen(tok), &payload), WAF_CRYPTO_MISMATCH,
                 "another key's header and signature do not match");
    /* Every single-character change of the token fails. */
    size_t n = strlen(tok);
    for (size_t i = 0; i < n; i++) {
        if (tok[i] == '.')
            continue;
        char *t = strdup(tok);
        t[i] = t[i] == 'A' ? 'B' : 'A';
        enum waf_crypto_result r = waf_jws_verify(pk, t, n, &payload);
        cr_expect_neq(r, WAF_CRYPTO_OK, "changed at %zu", i);
        if (r == WAF_CRYPTO_OK)
            free(payload);
        free(t);
    }
    cr_assert_eq(waf_jws_verify(pk, "a.b", 3, &payload), WAF_CRYPTO_ARG);
    cr_assert_eq(waf_jws_verify(pk, "a.b.c.d", 7, &payload), WAF_CRYPTO_ARG);
    cr_assert(!waf_jws_kid("nodots", 6, kid));
    cr_assert(!waf_jws_kid("e30.e30.AA", 10, kid), "a header without kid");
    static const char *const bad_jwks[] = {
        "{}",
        "[]",
        "not json",
        "{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"AA\",\"y\":\"AA\",\"kid\":\"k\"}",
        "{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\",\"kid\":\"k\"}",
        "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAA\",\"y\":\"AAAA\",\"kid\":\"k\"}"};
    for (size_t i = 0; i < sizeof(bad_jwks) / sizeof(bad_jwks[0]); i++) {
        struct waf_pubkey *b = NULL;
        cr_expect_neq(waf_pubkey_from_jwk(bad_jwks[i], &b, d, sizeof(d)), WAF_CRYPTO_OK, "%zu", i);
        waf_pubkey_free(b);
    }
    free(tok);
    waf_pubkey_free(pk);
    waf_pubkey_free(opk);
    waf_sigkey_free(k);
    waf_sigkey_free(other);
}
