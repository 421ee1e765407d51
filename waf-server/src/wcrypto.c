/* waf-server cryptography: ES256 signing keys, compact JWS, client secrets, scrypt passwords. */
#include "wcrypto.h"
#include "wutil.h"

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEAL_NONCE_LEN 12
#define SEAL_TAG_LEN   16
#define SEAL_OVERHEAD  (1 + SEAL_NONCE_LEN + SEAL_TAG_LEN)
#define ES256_HALF     32
#define ES256_DER_MAX  80 /* ECDSA_size() of P-256 is 72 */
#define SCRYPT_R       8
#define SCRYPT_P       1
#define SCRYPT_SALT    16
#define SCRYPT_HASH    32
#define SCRYPT_MAXMEM  ((uint64_t)1025 * 1024 * 1024) /* OpenSSL's default maxmem */

struct waf_sigkey {
    EVP_PKEY *pkey;
    EVP_MD_CTX *tmpl; /* EVP_DigestSignInit'ed with pkey and SHA-256; only ever copied */
    char kid[WAF_KID_LEN + 1];
    char jwk[256];
    char hdr[128]; /* b64url of the JOSE header */
    size_t hdr_len;
};

const char *waf_crypto_strerror(enum waf_crypto_result r)
{
    switch (r) {
    case WAF_CRYPTO_OK:
        return "success";
    case WAF_CRYPTO_NOMEM:
        return "out of memory";
    case WAF_CRYPTO_INTERNAL:
        return "cryptographic library failure";
    case WAF_CRYPTO_ARG:
        return "invalid argument";
    case WAF_CRYPTO_TOO_LARGE:
        return "result too large";
    case WAF_CRYPTO_BLOB_FORMAT:
        return "sealed key blob has a bad length";
    case WAF_CRYPTO_BLOB_VERSION:
        return "sealed key blob of unknown version";
    case WAF_CRYPTO_BLOB_AUTH:
        return "sealed key blob does not authenticate (wrong KEK or kid, or tampered)";
    case WAF_CRYPTO_KEY_INVALID:
        return "sealed key is not a valid P-256 private key";
    case WAF_CRYPTO_KID_MISMATCH:
        return "sealed key does not match its kid";
    case WAF_CRYPTO_PHC_FORMAT:
        return "malformed password hash";
    case WAF_CRYPTO_PHC_ALGORITHM:
        return "unsupported password hash algorithm";
    case WAF_CRYPTO_PHC_PARAMS:
        return "password hash parameters out of range";
    case WAF_CRYPTO_MISMATCH:
        return "does not match";
    }
    return "unknown";
}

/* Reports an OpenSSL failure of step with the library's first queued reason, and empties
 * this thread's error queue so that it does not leak into unrelated later reports. */
static enum waf_crypto_result ossl_fail(char *detail, size_t len, const char *step)
{
    unsigned long e = ERR_get_error();
    const char *why = e ? ERR_reason_error_string(e) : NULL;
    waf_detail(detail, len, "%s failed: %s", step, why ? why : "no reason given");
    ERR_clear_error();
    return WAF_CRYPTO_INTERNAL;
}

bool waf_ct_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

/* ---- base64 (RFC 4648 §4 and §5, both without padding) ---- */

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const char B64STD[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t b64_encode(const char *alpha, const uint8_t *in, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = alpha[v >> 18];
        out[o++] = alpha[(v >> 12) & 63];
        out[o++] = alpha[(v >> 6) & 63];
        out[o++] = alpha[v & 63];
    }
    if (n - i) {
        uint32_t v = (uint32_t)in[i] << 16 | (n - i == 2 ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = alpha[v >> 18];
        out[o++] = alpha[(v >> 12) & 63];
        if (n - i == 2)
            out[o++] = alpha[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

/* 0..63, or -1 for a character outside the alphabet (the last two differ by variant). */
static int b64_value(char c, bool url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

/* Decoded size of n unpadded characters; SIZE_MAX when no encoding has that length. */
static size_t b64_decoded_len(size_t n)
{
    return n % 4 == 1 ? SIZE_MAX : n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
}

static bool b64_decode(bool url, const char *in, size_t n, uint8_t *out, size_t *outlen)
{
    if (n % 4 == 1)
        return false;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        size_t m = n - i < 4 ? n - i : 4;
        uint32_t v = 0;
        for (size_t j = 0; j < 4; j++) {
            int d = j < m ? b64_value(in[i + j], url) : 0;
            if (d < 0)
                return false;
            v = v << 6 | (uint32_t)d;
        }
        /* Canonical: the bits below the last whole byte are zero. */
        if ((m == 2 && (v & 0xffffu)) || (m == 3 && (v & 0xffu)))
            return false;
        out[o++] = (uint8_t)(v >> 16);
        if (m >= 3)
            out[o++] = (uint8_t)(v >> 8);
        if (m == 4)
            out[o++] = (uint8_t)v;
    }
    *outlen = o;
    return true;
}

size_t waf_b64url_encode(const uint8_t *in, size_t n, char *out)
{
    return b64_encode(B64URL, in, n, out);
}

bool waf_b64url_decode(const char *in, size_t n, uint8_t *out, size_t *outlen)
{
    return b64_decode(true, in, n, out, outlen);
}

/* ---- signing key ---- */

/* ^[A-Za-z0-9._-]{1,64}$ */
static bool kid_form_ok(const char *kid)
{
    size_t n = 0;
    for (; kid[n]; n++) {
        char c = kid[n];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok || n >= 64)
            return false;
    }
    return n > 0;
}

static bool is_p256(EVP_PKEY *pkey)
{
    char group[32];
    size_t gl = 0;
    return EVP_PKEY_is_a(pkey, "EC") &&
           EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                          &gl) &&
           strcmp(group, "prime256v1") == 0;
}

static bool coordinate(EVP_PKEY *pkey, const char *name, char out[WAF_KID_LEN + 1])
{
    BIGNUM *bn = NULL;
    uint8_t raw[ES256_HALF];
    bool ok = EVP_PKEY_get_bn_param(pkey, name, &bn) &&
              BN_bn2binpad(bn, raw, sizeof(raw)) == (int)sizeof(raw);
    BN_free(bn);
    if (ok)
        b64_encode(B64URL, raw, sizeof(raw), out);
    return ok;
}

/* Wraps pkey (a P-256 key pair) into a new key: kid, JWK, header and signing template.
 * Takes ownership of pkey in every case. */
static enum waf_crypto_result key_from_pkey(EVP_PKEY *pkey, struct waf_sigkey **out, char *detail,
                                            size_t detail_len)
{
    enum waf_crypto_result rc = WAF_CRYPTO_INTERNAL;
    char x[WAF_KID_LEN + 1], y[WAF_KID_LEN + 1], buf[128];
    uint8_t digest[32];
    struct waf_sigkey *k = calloc(1, sizeof(*k));
    if (!k) {
        EVP_PKEY_free(pkey);
        waf_detail(detail, detail_len, "out of memory");
        return WAF_CRYPTO_NOMEM;
    }
    k->pkey = pkey;
    if (!coordinate(pkey, OSSL_PKEY_PARAM_EC_PUB_X, x) ||
        !coordinate(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, y)) {
        rc = ossl_fail(detail, detail_len, "reading the public key");
        goto out;
    }

    /* RFC 7638: required members only, in lexicographic order, no whitespace. */
    int n = snprintf(buf, sizeof(buf),
                     "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", x, y);
    if (n < 0 || (size_t)n >= sizeof(buf) ||
        !EVP_Digest(buf, (size_t)n, digest, NULL, EVP_sha256(), NULL)) {
        rc = ossl_fail(detail, detail_len, "thumbprint");
        goto out;
    }
    b64_encode(B64URL, digest, sizeof(digest), k->kid);

    snprintf(k->jwk, sizeof(k->jwk),
             "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\",\"kid\":\"%s\","
             "\"use\":\"sig\",\"alg\":\"ES256\"}",
             x, y, k->kid);
    n = snprintf(buf, sizeof(buf), "{\"typ\":\"at+jwt\",\"alg\":\"ES256\",\"kid\":\"%s\"}", k->kid);
    k->hdr_len = b64_encode(B64URL, (const uint8_t *)buf, (size_t)n, k->hdr);

    k->tmpl = EVP_MD_CTX_new();
    if (!k->tmpl) {
        rc = WAF_CRYPTO_NOMEM;
        waf_detail(detail, detail_len, "out of memory");
        goto out;
    }
    if (EVP_DigestSignInit_ex(k->tmpl, NULL, "SHA256", NULL, NULL, pkey, NULL) != 1) {
        rc = ossl_fail(detail, detail_len, "EVP_DigestSignInit_ex");
        goto out;
    }
    *out = k;
    return WAF_CRYPTO_OK;
out:
    waf_sigkey_free(k);
    return rc;
}

enum waf_crypto_result waf_sigkey_generate(struct waf_sigkey **out, char *detail, size_t detail_len)
{
    if (!out) {
        waf_detail(detail, detail_len, "no output pointer");
        return WAF_CRYPTO_ARG;
    }
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    if (!pkey)
        return ossl_fail(detail, detail_len, "P-256 key generation");
    return key_from_pkey(pkey, out, detail, detail_len);
}

void waf_sigkey_free(struct waf_sigkey *k)
{
    if (!k)
        return;
    EVP_MD_CTX_free(k->tmpl);
    EVP_PKEY_free(k->pkey); /* OpenSSL clears the private scalar */
    free(k);
}

const char *waf_sigkey_kid(const struct waf_sigkey *k)
{
    return k->kid;
}

const char *waf_sigkey_public_jwk(const struct waf_sigkey *k)
{
    return k->jwk;
}

/* AES-256-GCM of in[0..n) with aad; writes n bytes to out and the tag. */
static bool gcm_seal(const uint8_t *kek, const uint8_t *nonce, const char *aad, const uint8_t *in,
                     size_t n, uint8_t *out, uint8_t tag[SEAL_TAG_LEN])
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int l1 = 0, l2 = 0, la = 0;
    bool ok = c && n <= INT32_MAX &&
              EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, kek, nonce) == 1 &&
              EVP_EncryptUpdate(c, NULL, &la, (const uint8_t *)aad, (int)strlen(aad)) == 1 &&
              EVP_EncryptUpdate(c, out, &l1, in, (int)n) == 1 &&
              EVP_EncryptFinal_ex(c, out + l1, &l2) == 1 && (size_t)(l1 + l2) == n &&
              EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, SEAL_TAG_LEN, tag) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok;
}

enum waf_crypto_result waf_sigkey_seal(const struct waf_sigkey *k,
                                       const uint8_t kek[WAF_SEAL_KEK_LEN], uint8_t **blob,
                                       size_t *len, char *detail, size_t detail_len)
{
    if (!k || !kek || !blob || !len) {
        waf_detail(detail, detail_len, "NULL argument");
        return WAF_CRYPTO_ARG;
    }
    enum waf_crypto_result rc = WAF_CRYPTO_INTERNAL;
    uint8_t *der = NULL, *b = NULL;
    int der_len = -1;
    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(k->pkey);
    if (p8)
        der_len = i2d_PKCS8_PRIV_KEY_INFO(p8, &der);
    PKCS8_PRIV_KEY_INFO_free(p8); /* clears its copy of the private key */
    if (der_len <= 0) {
        rc = ossl_fail(detail, detail_len, "PKCS#8 encoding");
        goto out;
    }
    size_t total = SEAL_OVERHEAD + (size_t)der_len;
    if (total > WAF_SEAL_MAX) {
        waf_detail(detail, detail_len, "PKCS#8 key of %d bytes is too long", der_len);
        goto out;
    }
    b = malloc(total);
    if (!b) {
        rc = WAF_CRYPTO_NOMEM;
        waf_detail(detail, detail_len, "out of memory");
        goto out;
    }
    b[0] = WAF_SEAL_VERSION;
    if (RAND_bytes(b + 1, SEAL_NONCE_LEN) != 1) {
        rc = ossl_fail(detail, detail_len, "RAND_bytes");
        goto out;
    }
    if (!gcm_seal(kek, b + 1, k->kid, der, (size_t)der_len, b + 1 + SEAL_NONCE_LEN,
                  b + total - SEAL_TAG_LEN)) {
        rc = ossl_fail(detail, detail_len, "AES-256-GCM encryption");
        goto out;
    }
    *blob = b;
    *len = total;
    b = NULL;
    rc = WAF_CRYPTO_OK;
out:
    free(b);
    if (der)
        OPENSSL_clear_free(der, (size_t)der_len);
    return rc;
}

/* Authenticates and decrypts ct[0..n) with aad and tag into out (n bytes). */
static bool gcm_open(const uint8_t *kek, const uint8_t *nonce, const char *aad, const uint8_t *ct,
                     size_t n, const uint8_t *tag, uint8_t *out)
{
    uint8_t t[SEAL_TAG_LEN];
    memcpy(t, tag, sizeof(t)); /* the ctrl takes a non-const pointer */
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int l1 = 0, l2 = 0, la = 0;
    bool ok = c && n <= INT32_MAX &&
              EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, kek, nonce) == 1 &&
              EVP_DecryptUpdate(c, NULL, &la, (const uint8_t *)aad, (int)strlen(aad)) == 1 &&
              EVP_DecryptUpdate(c, out, &l1, ct, (int)n) == 1 &&
              EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, SEAL_TAG_LEN, t) == 1 &&
              EVP_DecryptFinal_ex(c, out + l1, &l2) == 1 && (size_t)(l1 + l2) == n;
    EVP_CIPHER_CTX_free(c);
    return ok;
}

/* Parses PKCS#8 DER der[0..n) as a P-256 key pair whose halves agree. */
static EVP_PKEY *load_p256(const uint8_t *der, size_t n)
{
    const uint8_t *p = der;
    EVP_PKEY *pkey = NULL;
    PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)n);
    if (p8 && p == der + n)
        pkey = EVP_PKCS82PKEY(p8);
    PKCS8_PRIV_KEY_INFO_free(p8);
    if (pkey && is_p256(pkey)) {
        EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        bool ok = pc && EVP_PKEY_pairwise_check(pc) == 1;
        EVP_PKEY_CTX_free(pc);
        if (ok)
            return pkey;
    }
    EVP_PKEY_free(pkey);
    return NULL;
}

enum waf_crypto_result waf_sigkey_open(const uint8_t kek[WAF_SEAL_KEK_LEN], const char *kid,
                                       const uint8_t *blob, size_t len, struct waf_sigkey **out,
                                       char *detail, size_t detail_len)
{
    if (!kek || !kid || !blob || !out) {
        waf_detail(detail, detail_len, "NULL argument");
        return WAF_CRYPTO_ARG;
    }
    if (!kid_form_ok(kid)) {
        waf_detail(detail, detail_len, "kid is not of the form [A-Za-z0-9._-]{1,64}");
        return WAF_CRYPTO_ARG;
    }
    if (len <= SEAL_OVERHEAD || len > WAF_SEAL_MAX) {
        waf_detail(detail, detail_len, "blob of %zu bytes (expected %d to %d)", len,
                   SEAL_OVERHEAD + 1, WAF_SEAL_MAX);
        return WAF_CRYPTO_BLOB_FORMAT;
    }
    if (blob[0] != WAF_SEAL_VERSION) {
        waf_detail(detail, detail_len, "blob version %u (expected %d)", blob[0], WAF_SEAL_VERSION);
        return WAF_CRYPTO_BLOB_VERSION;
    }
    size_t n = len - SEAL_OVERHEAD;
    uint8_t *pt = malloc(n);
    if (!pt) {
        waf_detail(detail, detail_len, "out of memory");
        return WAF_CRYPTO_NOMEM;
    }
    enum waf_crypto_result rc;
    if (!gcm_open(kek, blob + 1, kid, blob + 1 + SEAL_NONCE_LEN, n, blob + len - SEAL_TAG_LEN,
                  pt)) {
        ERR_clear_error();
        waf_detail(detail, detail_len, "blob does not authenticate under this KEK and kid");
        rc = WAF_CRYPTO_BLOB_AUTH;
        goto out;
    }
    EVP_PKEY *pkey = load_p256(pt, n);
    if (!pkey) {
        ERR_clear_error();
        waf_detail(detail, detail_len, "decrypted blob is not a consistent P-256 PKCS#8 key");
        rc = WAF_CRYPTO_KEY_INVALID;
        goto out;
    }
    struct waf_sigkey *k = NULL;
    rc = key_from_pkey(pkey, &k, detail, detail_len);
    if (rc != WAF_CRYPTO_OK)
        goto out;
    if (strcmp(k->kid, kid) != 0) {
        waf_detail(detail, detail_len, "key thumbprint %s is not the kid %s", k->kid, kid);
        waf_sigkey_free(k);
        rc = WAF_CRYPTO_KID_MISMATCH;
        goto out;
    }
    *out = k;
out:
    OPENSSL_clear_free(pt, n);
    return rc;
}

/* ---- JWS ---- */

/* DER ECDSA-Sig-Value der[0..n) to JOSE R||S. */
static bool der_to_raw(const uint8_t *der, size_t n, uint8_t raw[2 * ES256_HALF])
{
    const uint8_t *p = der;
    ECDSA_SIG *s = d2i_ECDSA_SIG(NULL, &p, (long)n);
    bool ok = s && BN_bn2binpad(ECDSA_SIG_get0_r(s), raw, ES256_HALF) == ES256_HALF &&
              BN_bn2binpad(ECDSA_SIG_get0_s(s), raw + ES256_HALF, ES256_HALF) == ES256_HALF;
    ECDSA_SIG_free(s);
    return ok;
}

enum waf_crypto_result waf_jws_sign(const struct waf_sigkey *k, const char *payload_json,
                                    size_t len, char **out_token, char *detail, size_t detail_len)
{
    if (!k || !payload_json || !out_token || len == 0) {
        waf_detail(detail, detail_len, "NULL argument or empty payload");
        return WAF_CRYPTO_ARG;
    }
    /* The first test keeps the sum below from overflowing. */
    size_t sig_b64 = WAF_B64URL_LEN(2 * ES256_HALF);
    if (len > WAF_JWS_MAX_TOKEN ||
        k->hdr_len + 1 + WAF_B64URL_LEN(len) + 1 + sig_b64 > WAF_JWS_MAX_TOKEN) {
        waf_detail(detail, detail_len, "payload of %zu bytes makes the token longer than %d", len,
                   WAF_JWS_MAX_TOKEN);
        return WAF_CRYPTO_TOO_LARGE;
    }
    size_t total = k->hdr_len + 1 + WAF_B64URL_LEN(len) + 1 + sig_b64;
    char *tok = malloc(total + 1);
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!tok || !c) {
        free(tok);
        EVP_MD_CTX_free(c);
        waf_detail(detail, detail_len, "out of memory");
        return WAF_CRYPTO_NOMEM;
    }
    memcpy(tok, k->hdr, k->hdr_len);
    size_t n = k->hdr_len;
    tok[n++] = '.';
    n += b64_encode(B64URL, (const uint8_t *)payload_json, len, tok + n);

    uint8_t der[ES256_DER_MAX], raw[2 * ES256_HALF];
    size_t der_len = sizeof(der);
    /* The template is only read: copies from many threads at once are safe. FINALISE
     * lets EVP_DigestSignFinal use the copy in place instead of duplicating it again. */
    bool ok = EVP_MD_CTX_copy_ex(c, k->tmpl) == 1;
    if (ok) {
        EVP_MD_CTX_set_flags(c, EVP_MD_CTX_FLAG_FINALISE);
        ok = EVP_DigestSign(c, der, &der_len, (const uint8_t *)tok, n) == 1 &&
             der_to_raw(der, der_len, raw);
    }
    EVP_MD_CTX_free(c);
    if (!ok) {
        free(tok);
        return ossl_fail(detail, detail_len, "ES256 signing");
    }
    tok[n++] = '.';
    n += b64_encode(B64URL, raw, sizeof(raw), tok + n);
    *out_token = tok;
    return WAF_CRYPTO_OK;
}

/* ---- client secrets ---- */

enum waf_crypto_result waf_secret_generate(char out[WAF_SECRET_LEN + 1])
{
    uint8_t raw[32];
    if (!out)
        return WAF_CRYPTO_ARG;
    out[0] = '\0';
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        ERR_clear_error();
        return WAF_CRYPTO_INTERNAL;
    }
    b64_encode(B64URL, raw, sizeof(raw), out);
    OPENSSL_cleanse(raw, sizeof(raw));
    return WAF_CRYPTO_OK;
}

enum waf_crypto_result waf_secret_mac(const uint8_t server_key[32], const char *secret,
                                      uint8_t mac[32])
{
    if (!server_key || !secret || !mac)
        return WAF_CRYPTO_ARG;
    unsigned ml = 0;
    if (!HMAC(EVP_sha256(), server_key, 32, (const uint8_t *)secret, strlen(secret), mac, &ml) ||
        ml != 32) {
        ERR_clear_error();
        return WAF_CRYPTO_INTERNAL;
    }
    return WAF_CRYPTO_OK;
}

enum waf_crypto_result waf_secret_verify(const uint8_t server_key[32], const char *secret,
                                         const uint8_t mac[32])
{
    uint8_t want[32];
    if (!mac)
        return WAF_CRYPTO_ARG;
    enum waf_crypto_result rc = waf_secret_mac(server_key, secret, want);
    if (rc == WAF_CRYPTO_OK && CRYPTO_memcmp(want, mac, sizeof(want)) != 0)
        rc = WAF_CRYPTO_MISMATCH;
    OPENSSL_cleanse(want, sizeof(want));
    return rc;
}

/* ---- passwords ---- */

/* Memory OpenSSL's scrypt allocates: B (128*r*p) and V (128*r*(N+2)). Parameters are
 * within the accepted ranges, so this cannot overflow. */
static uint64_t scrypt_mem(unsigned ln, unsigned r, unsigned p)
{
    return (uint64_t)128 * r * (((uint64_t)1 << ln) + p + 2);
}

static enum waf_crypto_result scrypt_derive(const char *password, size_t pwlen, uint8_t *salt,
                                            size_t saltlen, unsigned ln, unsigned r, unsigned p,
                                            uint8_t *out, size_t outlen, char *detail,
                                            size_t detail_len)
{
    /* OSSL_PARAM wants a non-const pointer: work on a copy, wiped below. */
    char pw[WAF_PASSWORD_MAX];
    memcpy(pw, password, pwlen);
    uint64_t n = (uint64_t)1 << ln, maxmem = scrypt_mem(ln, r, p);
    uint32_t r32 = r, p32 = p;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, pw, pwlen),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt, saltlen),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r32),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p32),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
        OSSL_PARAM_construct_end(),
    };
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_SCRYPT, NULL);
    EVP_KDF_CTX *c = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    bool ok = c && EVP_KDF_derive(c, out, outlen, params) == 1;
    EVP_KDF_CTX_free(c);
    EVP_KDF_free(kdf);
    OPENSSL_cleanse(pw, pwlen);
    return ok ? WAF_CRYPTO_OK : ossl_fail(detail, detail_len, "scrypt");
}

enum waf_crypto_result waf_password_hash(const char *password, unsigned ln, char *phc,
                                         size_t phclen, char *detail, size_t detail_len)
{
    if (!password || !phc) {
        waf_detail(detail, detail_len, "NULL argument");
        return WAF_CRYPTO_ARG;
    }
    size_t pwlen = strnlen(password, WAF_PASSWORD_MAX + 1);
    if (pwlen == 0 || pwlen > WAF_PASSWORD_MAX) {
        waf_detail(detail, detail_len, "password must have 1 to %d bytes", WAF_PASSWORD_MAX);
        return WAF_CRYPTO_ARG;
    }
    if (ln == 0)
        ln = WAF_SCRYPT_LN_DEFAULT;
    if (ln < WAF_SCRYPT_LN_MIN || ln > WAF_SCRYPT_LN_MAX) {
        waf_detail(detail, detail_len, "ln %u outside %d..%d", ln, WAF_SCRYPT_LN_MIN,
                   WAF_SCRYPT_LN_MAX);
        return WAF_CRYPTO_ARG;
    }
    uint8_t salt[SCRYPT_SALT], hash[SCRYPT_HASH];
    char salt64[WAF_B64URL_LEN(SCRYPT_SALT) + 1], hash64[WAF_B64URL_LEN(SCRYPT_HASH) + 1];
    if (RAND_bytes(salt, sizeof(salt)) != 1)
        return ossl_fail(detail, detail_len, "RAND_bytes");
    enum waf_crypto_result rc = scrypt_derive(password, pwlen, salt, sizeof(salt), ln, SCRYPT_R,
                                              SCRYPT_P, hash, sizeof(hash), detail, detail_len);
    if (rc != WAF_CRYPTO_OK)
        goto out;
    b64_encode(B64STD, salt, sizeof(salt), salt64);
    b64_encode(B64STD, hash, sizeof(hash), hash64);
    int n = snprintf(phc, phclen, "$scrypt$ln=%u,r=%d,p=%d$%s$%s", ln, SCRYPT_R, SCRYPT_P, salt64,
                     hash64);
    if (n < 0 || (size_t)n >= phclen) {
        if (phclen)
            phc[0] = '\0';
        waf_detail(detail, detail_len, "PHC string needs %d bytes, buffer has %zu", n + 1, phclen);
        rc = WAF_CRYPTO_TOO_LARGE;
    }
out:
    OPENSSL_cleanse(hash, sizeof(hash));
    OPENSSL_cleanse(hash64, sizeof(hash64));
    return rc;
}

/* Parses "<name>=<decimal>" at *s: digits without a leading zero, at most 7 of them. */
static bool phc_param(const char **s, const char *name, unsigned *v)
{
    size_t nl = strlen(name);
    const char *p = *s;
    if (strncmp(p, name, nl) != 0 || p[nl] != '=')
        return false;
    p += nl + 1;
    if (*p < '1' || *p > '9')
        return false;
    unsigned x = 0;
    size_t digits = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (++digits > 7)
            return false;
        x = x * 10 + (unsigned)(*p - '0');
    }
    *s = p;
    *v = x;
    return true;
}

/* Decodes the standard-base64 field f[0..n) into out, which holds max bytes; the decoded
 * length *len must be lo..max. */
static enum waf_crypto_result phc_bytes(const char *what, const char *f, size_t n, uint8_t *out,
                                        size_t lo, size_t max, size_t *len, char *detail,
                                        size_t detail_len)
{
    size_t want = b64_decoded_len(n);
    if (want != SIZE_MAX && (want < lo || want > max)) {
        waf_detail(detail, detail_len, "%s of %zu bytes (accepted %zu to %zu)", what, want, lo,
                   max);
        return WAF_CRYPTO_PHC_PARAMS;
    }
    if (want == SIZE_MAX || !b64_decode(false, f, n, out, len)) {
        waf_detail(detail, detail_len, "%s is not canonical unpadded base64", what);
        return WAF_CRYPTO_PHC_FORMAT;
    }
    return WAF_CRYPTO_OK;
}

enum waf_crypto_result waf_password_verify(const char *password, const char *phc, char *detail,
                                           size_t detail_len)
{
    if (!password || !phc) {
        waf_detail(detail, detail_len, "NULL argument");
        return WAF_CRYPTO_ARG;
    }
    if (strnlen(phc, WAF_PHC_MAX + 1) > WAF_PHC_MAX) {
        waf_detail(detail, detail_len, "longer than %d characters", WAF_PHC_MAX);
        return WAF_CRYPTO_PHC_FORMAT;
    }
    /* $<id>$ */
    const char *id = phc + 1, *end = phc[0] == '$' ? strchr(id, '$') : NULL;
    if (!end || end == id) {
        waf_detail(detail, detail_len, "does not start with $<id>$");
        return WAF_CRYPTO_PHC_FORMAT;
    }
    if ((size_t)(end - id) != 6 || strncmp(id, "scrypt", 6) != 0) {
        waf_detail(detail, detail_len, "algorithm is not scrypt");
        return WAF_CRYPTO_PHC_ALGORITHM;
    }
    /* ln=..,r=..,p=..$ */
    const char *s = end + 1;
    unsigned ln = 0, r = 0, p = 0;
    if (!phc_param(&s, "ln", &ln) || *s++ != ',' || !phc_param(&s, "r", &r) || *s++ != ',' ||
        !phc_param(&s, "p", &p) || *s++ != '$') {
        waf_detail(detail, detail_len, "parameters are not ln=<n>,r=<n>,p=<n>");
        return WAF_CRYPTO_PHC_FORMAT;
    }
    if (ln < WAF_SCRYPT_LN_MIN || ln > WAF_SCRYPT_LN_MAX || r < 1 || r > 32 || p < 1 || p > 16 ||
        scrypt_mem(ln, r, p) > SCRYPT_MAXMEM) {
        waf_detail(detail, detail_len, "ln=%u,r=%u,p=%u outside the accepted ranges", ln, r, p);
        return WAF_CRYPTO_PHC_PARAMS;
    }
    /* <salt>$<hash> */
    const char *salt64 = s, *dollar = strchr(salt64, '$');
    if (!dollar || strchr(dollar + 1, '$')) {
        waf_detail(detail, detail_len, "expected exactly <salt>$<hash> after the parameters");
        return WAF_CRYPTO_PHC_FORMAT;
    }
    const char *hash64 = dollar + 1;
    uint8_t salt[64], want[64], got[64];
    size_t salt_len = 0, hash_len = 0;
    enum waf_crypto_result rc = phc_bytes("salt", salt64, (size_t)(dollar - salt64), salt, 8, 64,
                                          &salt_len, detail, detail_len);
    if (rc == WAF_CRYPTO_OK)
        rc = phc_bytes("hash", hash64, strlen(hash64), want, 16, 64, &hash_len, detail, detail_len);
    if (rc != WAF_CRYPTO_OK)
        goto out;

    size_t pwlen = strnlen(password, WAF_PASSWORD_MAX + 1);
    if (pwlen > WAF_PASSWORD_MAX) {
        rc = WAF_CRYPTO_MISMATCH; /* waf_password_hash never accepts such a password */
        waf_detail(detail, detail_len, "password longer than %d bytes", WAF_PASSWORD_MAX);
        goto out;
    }
    rc =
        scrypt_derive(password, pwlen, salt, salt_len, ln, r, p, got, hash_len, detail, detail_len);
    if (rc == WAF_CRYPTO_OK && CRYPTO_memcmp(got, want, hash_len) != 0) {
        rc = WAF_CRYPTO_MISMATCH;
        waf_detail(detail, detail_len, "wrong password");
    }
out:
    OPENSSL_cleanse(got, sizeof(got));
    OPENSSL_cleanse(want, sizeof(want));
    return rc;
}

/* ---- Verification ---- */

struct waf_pubkey {
    EVP_PKEY *pkey;
    char hdr[128]; /* b64url of the header waf_jws_sign writes for this kid */
    size_t hdr_len;
};

void waf_pubkey_free(struct waf_pubkey *k)
{
    if (k == NULL)
        return;
    EVP_PKEY_free(k->pkey);
    free(k);
}

/* True when member name of o is the string want. */
static bool str_member(json_t *o, const char *name, const char *want)
{
    const char *v = json_string_value(json_object_get(o, name));
    return v && strcmp(v, want) == 0;
}

/* Decodes a base64url coordinate of exactly 32 bytes. */
static bool coord32(json_t *jwk, const char *name, uint8_t out[32])
{
    const char *s = json_string_value(json_object_get(jwk, name));
    uint8_t buf[48];
    size_t n = 0;
    return s && strlen(s) == WAF_B64URL_LEN(32) && waf_b64url_decode(s, strlen(s), buf, &n) &&
           n == 32 && memcpy(out, buf, 32);
}

enum waf_crypto_result waf_pubkey_from_jwk(const char *jwk_json, struct waf_pubkey **out,
                                           char *detail, size_t dlen)
{
    json_error_t je;
    json_t *jwk = json_loads(jwk_json, JSON_REJECT_DUPLICATES, &je);
    uint8_t pub[65] = {0x04};
    const char *kid = jwk ? json_string_value(json_object_get(jwk, "kid")) : NULL;
    if (jwk == NULL || !json_is_object(jwk) || !str_member(jwk, "kty", "EC") ||
        !str_member(jwk, "crv", "P-256") || !coord32(jwk, "x", pub + 1) ||
        !coord32(jwk, "y", pub + 33) || kid == NULL || !kid_form_ok(kid)) {
        json_decref(jwk);
        waf_detail(detail, dlen, "not a P-256 public JWK with a kid");
        return WAF_CRYPTO_ARG;
    }
    struct waf_pubkey *k = calloc(1, sizeof(*k));
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)(uintptr_t) "P-256",
                                         0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub)),
        OSSL_PARAM_construct_end()};
    enum waf_crypto_result r = WAF_CRYPTO_OK;
    if (k == NULL || pc == NULL || EVP_PKEY_fromdata_init(pc) != 1 ||
        EVP_PKEY_fromdata(pc, &k->pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        r = k ? ossl_fail(detail, dlen, "public key from JWK") : WAF_CRYPTO_NOMEM;
    } else {
        char hdr[160];
        int n = snprintf(hdr, sizeof(hdr), "{\"typ\":\"at+jwt\",\"alg\":\"ES256\",\"kid\":\"%s\"}",
                         kid);
        k->hdr_len = waf_b64url_encode((const uint8_t *)hdr, (size_t)n, k->hdr);
    }
    EVP_PKEY_CTX_free(pc);
    json_decref(jwk);
    if (r != WAF_CRYPTO_OK) {
        waf_pubkey_free(k);
        return r;
    }
    *out = k;
    return WAF_CRYPTO_OK;
}

/* Splits a compact JWS into its three segments; false unless exactly two dots. */
static bool segments(const char *t, size_t len, size_t *d1, size_t *d2)
{
    const char *a = memchr(t, '.', len);
    const char *b = a ? memchr(a + 1, '.', len - (size_t)(a + 1 - t)) : NULL;
    if (a == NULL || b == NULL || memchr(b + 1, '.', len - (size_t)(b + 1 - t)))
        return false;
    *d1 = (size_t)(a - t);
    *d2 = (size_t)(b - t);
    return true;
}

bool waf_jws_kid(const char *token, size_t len, char kid[65])
{
    size_t d1, d2;
    if (len > WAF_JWS_MAX_TOKEN || !segments(token, len, &d1, &d2) || d1 == 0 || d1 > 1024)
        return false;
    uint8_t hdr[800];
    size_t hl = 0;
    if (!waf_b64url_decode(token, d1, hdr, &hl))
        return false;
    json_error_t je;
    json_t *h = json_loadb((const char *)hdr, hl, JSON_REJECT_DUPLICATES, &je);
    const char *k = json_string_value(json_object_get(h, "kid"));
    bool ok = k && strlen(k) >= 1 && strlen(k) <= 64;
    if (ok)
        snprintf(kid, 65, "%s", k);
    json_decref(h);
    return ok;
}

enum waf_crypto_result waf_jws_verify(const struct waf_pubkey *k, const char *token, size_t len,
                                      char **payload)
{
    size_t d1, d2;
    if (len > WAF_JWS_MAX_TOKEN || !segments(token, len, &d1, &d2))
        return WAF_CRYPTO_ARG;
    if (d1 != k->hdr_len || memcmp(token, k->hdr, d1) != 0)
        return WAF_CRYPTO_MISMATCH; /* not the header this key's tokens carry */
    uint8_t raw[2 * ES256_HALF + 2];
    size_t rl = 0;
    if (!waf_b64url_decode(token + d2 + 1, len - d2 - 1, raw, &rl) || rl != 2 * ES256_HALF)
        return WAF_CRYPTO_MISMATCH;
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, ES256_HALF, NULL),
           *s = BN_bin2bn(raw + ES256_HALF, ES256_HALF, NULL);
    unsigned char *der = NULL;
    int derlen = -1;
    if (sig && r && s && ECDSA_SIG_set0(sig, r, s) == 1) {
        r = s = NULL; /* owned by sig */
        derlen = i2d_ECDSA_SIG(sig, &der);
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    bool ok = derlen > 0 && m && EVP_DigestVerifyInit(m, NULL, EVP_sha256(), NULL, k->pkey) == 1 &&
              EVP_DigestVerify(m, der, (size_t)derlen, (const unsigned char *)token, d2) == 1;
    EVP_MD_CTX_free(m);
    OPENSSL_free(der);
    if (!ok)
        return WAF_CRYPTO_MISMATCH;
    size_t pl = d2 - d1 - 1;
    char *p = malloc(pl / 4 * 3 + 4);
    size_t got = 0;
    if (p == NULL)
        return WAF_CRYPTO_NOMEM;
    if (!waf_b64url_decode(token + d1 + 1, pl, (uint8_t *)p, &got)) {
        free(p);
        return WAF_CRYPTO_ARG;
    }
    p[got] = '\0';
    *payload = p;
    return WAF_CRYPTO_OK;
}
