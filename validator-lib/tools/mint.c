/* Token minting for the project's tools, tests and benchmarks (not part of libimsauth):
 * public JWKs of OpenSSL keys and compact JWS with JOSE signature encodings. */
#include "mint.h"

#include "../src/internal.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

EVP_PKEY *ims_mint_keygen(enum ims_mint_kind kind)
{
    switch (kind) {
    case IMS_MINT_P256:
        return EVP_EC_gen("P-256");
    case IMS_MINT_P384:
        return EVP_EC_gen("P-384");
    case IMS_MINT_RSA2048:
        return EVP_RSA_gen(2048);
    case IMS_MINT_ED25519:
        return EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    }
    return NULL;
}

static json_t *b64_json(const uint8_t *b, size_t n)
{
    char *s = malloc(n * 4 / 3 + 4);
    ims_b64url_encode(b, n, s);
    json_t *j = json_string(s);
    free(s);
    return j;
}

static json_t *bn_json(EVP_PKEY *key, const char *name)
{
    BIGNUM *bn = NULL;
    EVP_PKEY_get_bn_param(key, name, &bn);
    uint8_t buf[1024];
    int n = BN_bn2bin(bn, buf);
    BN_free(bn);
    return b64_json(buf, (size_t)n);
}

json_t *ims_mint_jwk(EVP_PKEY *key, const char *kid)
{
    json_t *j = json_object();
    int id = EVP_PKEY_get_base_id(key);
    if (id == EVP_PKEY_EC) {
        uint8_t pub[133];
        size_t len = 0;
        EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub), &len);
        size_t half = (len - 1) / 2;
        json_object_set_new(j, "kty", json_string("EC"));
        json_object_set_new(j, "crv",
                            json_string(half == 32   ? "P-256"
                                        : half == 48 ? "P-384"
                                                     : "P-521"));
        json_object_set_new(j, "x", b64_json(pub + 1, half));
        json_object_set_new(j, "y", b64_json(pub + 1 + half, half));
    } else if (id == EVP_PKEY_RSA) {
        json_object_set_new(j, "kty", json_string("RSA"));
        json_object_set_new(j, "n", bn_json(key, OSSL_PKEY_PARAM_RSA_N));
        json_object_set_new(j, "e", bn_json(key, OSSL_PKEY_PARAM_RSA_E));
    } else {
        uint8_t pub[32];
        size_t len = sizeof(pub);
        EVP_PKEY_get_raw_public_key(key, pub, &len);
        json_object_set_new(j, "kty", json_string("OKP"));
        json_object_set_new(j, "crv", json_string("Ed25519"));
        json_object_set_new(j, "x", b64_json(pub, len));
    }
    if (kid)
        json_object_set_new(j, "kid", json_string(kid));
    return j;
}

char *ims_mint_jwks(EVP_PKEY **keys, const char **kids, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, ims_mint_jwk(keys[i], kids ? kids[i] : NULL));
    json_t *doc = json_pack("{s:o}", "keys", arr);
    char *s = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return s;
}

char *ims_mint_compact(const char *header, size_t hl, const char *payload, size_t pl,
                       const uint8_t *sig, size_t sl)
{
    char *out = malloc((hl + pl + sl) * 4 / 3 + 16);
    size_t n = ims_b64url_encode((const uint8_t *)header, hl, out);
    out[n++] = '.';
    n += ims_b64url_encode((const uint8_t *)payload, pl, out + n);
    out[n++] = '.';
    ims_b64url_encode(sig, sl, out + n);
    return out;
}

static char *signing_input(json_t *header, json_t *payload)
{
    char *h = json_dumps(header, JSON_COMPACT), *p = json_dumps(payload, JSON_COMPACT);
    char *out = ims_mint_compact(h, strlen(h), p, strlen(p), (const uint8_t *)"", 0);
    out[strlen(out) - 1] = '\0'; /* drop the trailing '.' of the empty signature */
    free(h);
    free(p);
    return out;
}

static char *append_sig(char *input, const uint8_t *sig, size_t sl)
{
    size_t n = strlen(input);
    char *out = realloc(input, n + sl * 4 / 3 + 8);
    out[n++] = '.';
    ims_b64url_encode(sig, sl, out + n);
    return out;
}

char *ims_mint_sign(EVP_PKEY *key, const char *alg, json_t *header, json_t *payload)
{
    char *in = signing_input(header, payload);
    const EVP_MD *md = strstr(alg, "384")          ? EVP_sha384()
                       : strstr(alg, "512")        ? EVP_sha512()
                       : strcmp(alg, "EdDSA") == 0 ? NULL
                                                   : EVP_sha256();
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    uint8_t sig[1024];
    size_t sl = sizeof(sig);
    EVP_DigestSignInit(ctx, &pctx, md, NULL, key);
    if (alg[0] == 'P') {
        EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
    }
    EVP_DigestSign(ctx, sig, &sl, (const uint8_t *)in, strlen(in));
    EVP_MD_CTX_free(ctx);
    if (alg[0] == 'E' && alg[1] == 'S') {
        const uint8_t *p = sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)sl);
        int half = strstr(alg, "256") ? 32 : strstr(alg, "384") ? 48 : 66;
        uint8_t raw[132];
        BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, half);
        BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + half, half);
        ECDSA_SIG_free(es);
        memcpy(sig, raw, (size_t)(2 * half));
        sl = (size_t)(2 * half);
    }
    return append_sig(in, sig, sl);
}

char *ims_mint_sign_hs(const uint8_t *secret, size_t n, const char *alg, json_t *header,
                       json_t *payload)
{
    char *in = signing_input(header, payload);
    const EVP_MD *md = strstr(alg, "384")   ? EVP_sha384()
                       : strstr(alg, "512") ? EVP_sha512()
                                            : EVP_sha256();
    uint8_t mac[64];
    unsigned ml = 0;
    HMAC(md, secret, (int)n, (const uint8_t *)in, strlen(in), mac, &ml);
    return append_sig(in, mac, ml);
}

char *ims_mint_pubpem(EVP_PKEY *key)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(b, key);
    char *p;
    long n = BIO_get_mem_data(b, &p);
    char *s = malloc((size_t)n + 1); /* the BIO buffer is not NUL-terminated */
    memcpy(s, p, (size_t)n);
    s[n] = '\0';
    BIO_free(b);
    return s;
}
