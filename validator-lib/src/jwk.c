/* JWK / JWKS / PEM to EVP_PKEY, done once at load time; immutable key sets. */
#include "internal.h"

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>

#define RSA_MIN_BITS 2048

static atomic_uint_fast64_t next_generation = 1; /* distinct per key set, process-wide */

struct ims_keyset *ims_keyset_new(void)
{
    struct ims_keyset *ks = calloc(1, sizeof(*ks));
    if (ks == NULL)
        return NULL;
    atomic_init(&ks->refs, 1);
    ks->generation = atomic_fetch_add(&next_generation, 1);
    return ks;
}

void ims_keyset_ref(struct ims_keyset *ks)
{
    atomic_fetch_add_explicit(&ks->refs, 1, memory_order_relaxed);
}

void ims_keyset_unref(struct ims_keyset *ks)
{
    if (ks == NULL || atomic_fetch_sub_explicit(&ks->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < ks->n; i++) {
        free(ks->keys[i].kid);
        EVP_PKEY_free(ks->keys[i].pkey);
        for (int a = 0; a < IMSAUTH_N_ALGS; a++)
            EVP_MD_CTX_free(ks->keys[i].vctx[a]);
        if (ks->keys[i].secret) {
            OPENSSL_cleanse(ks->keys[i].secret, ks->keys[i].secret_len);
            free(ks->keys[i].secret);
        }
    }
    free(ks);
}

/* Reserves the next slot; the caller fills it and then bumps ks->n. */
static struct ims_key *slot(struct ims_keyset *ks, const char *kid, char *detail, size_t dlen,
                            enum imsauth_result *err)
{
    if (ks->n >= IMSAUTH_MAX_KEYS) {
        ims_detail(detail, dlen, "more than %d keys", IMSAUTH_MAX_KEYS);
        *err = IMSAUTH_ERR_KEYS;
        return NULL;
    }
    struct ims_key *k = &ks->keys[ks->n];
    memset(k, 0, sizeof(*k));
    if (kid) {
        if (strlen(kid) > IMSAUTH_MAX_KID_LEN) {
            ims_detail(detail, dlen, "kid longer than %d bytes", IMSAUTH_MAX_KID_LEN);
            *err = IMSAUTH_ERR_KEYS;
            return NULL;
        }
        k->kid = strdup(kid);
        if (k->kid == NULL) {
            *err = IMSAUTH_ERR_NOMEM;
            return NULL;
        }
    }
    return k;
}

/* Decodes a base64url JWK member into a fresh buffer of exactly want bytes (0 = any). */
static uint8_t *member_bytes(json_t *jwk, const char *name, size_t want, size_t *len)
{
    const char *s = json_string_value(json_object_get(jwk, name));
    if (s == NULL)
        return NULL;
    size_t n = strlen(s), cap = ims_b64url_decoded_len(n);
    if (cap == SIZE_MAX || cap == 0 || cap > 1024)
        return NULL;
    uint8_t *b = malloc(cap);
    if (b && (!ims_b64url_decode(s, n, b, len) || (want && *len != want))) {
        free(b);
        return NULL;
    }
    return b;
}

static EVP_PKEY *from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (params && pc && EVP_PKEY_fromdata_init(pc) > 0)
        EVP_PKEY_fromdata(pc, &pkey, EVP_PKEY_PUBLIC_KEY, params);
    EVP_PKEY_CTX_free(pc);
    OSSL_PARAM_free(params);
    return pkey;
}

static EVP_PKEY *ec_key(json_t *jwk, unsigned *algs, char *detail, size_t dlen)
{
    static const struct {
        const char *crv, *group;
        size_t len;
        unsigned alg;
    } curves[] = {{"P-256", "prime256v1", 32, IMSAUTH_ALG_ES256},
                  {"P-384", "secp384r1", 48, IMSAUTH_ALG_ES384},
                  {"P-521", "secp521r1", 66, IMSAUTH_ALG_ES512}};
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    size_t c = 0;
    while (c < 3 && (crv == NULL || strcmp(crv, curves[c].crv) != 0))
        c++;
    if (c == 3) {
        ims_detail(detail, dlen, "EC key with unsupported crv");
        return NULL;
    }
    size_t xl, yl;
    uint8_t *x = member_bytes(jwk, "x", curves[c].len, &xl);
    uint8_t *y = member_bytes(jwk, "y", curves[c].len, &yl);
    EVP_PKEY *pkey = NULL;
    uint8_t pub[1 + 2 * 66];
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    if (x && y && bld) {
        pub[0] = 0x04;
        memcpy(pub + 1, x, xl);
        memcpy(pub + 1 + xl, y, yl);
        if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, curves[c].group, 0) &&
            OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, 1 + xl + yl))
            pkey = from_params("EC", bld);
    }
    if (pkey == NULL)
        ims_detail(detail, dlen, "EC key %s: bad x/y or point not on curve", curves[c].crv);
    OSSL_PARAM_BLD_free(bld);
    free(x);
    free(y);
    *algs = curves[c].alg;
    return pkey;
}

static EVP_PKEY *rsa_key(json_t *jwk, unsigned *algs, char *detail, size_t dlen)
{
    size_t nl = 0, el = 0;
    uint8_t *n = member_bytes(jwk, "n", 0, &nl), *e = member_bytes(jwk, "e", 0, &el);
    BIGNUM *bn = n ? BN_bin2bn(n, (int)nl, NULL) : NULL;
    BIGNUM *be = e ? BN_bin2bn(e, (int)el, NULL) : NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pkey = NULL;
    if (bn && be && bld && BN_num_bits(bn) >= RSA_MIN_BITS && el <= 8 &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
        pkey = from_params("RSA", bld);
    if (pkey == NULL)
        ims_detail(detail, dlen, "RSA key: bad n/e or modulus below %d bits", RSA_MIN_BITS);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    free(n);
    free(e);
    *algs = IMSAUTH_ALG_RS256 | IMSAUTH_ALG_RS384 | IMSAUTH_ALG_RS512 | IMSAUTH_ALG_PS256 |
            IMSAUTH_ALG_PS384 | IMSAUTH_ALG_PS512;
    return pkey;
}

static EVP_PKEY *okp_key(json_t *jwk, unsigned *algs, char *detail, size_t dlen)
{
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    size_t xl;
    uint8_t *x = NULL;
    EVP_PKEY *pkey = NULL;
    if (crv && strcmp(crv, "Ed25519") == 0 && (x = member_bytes(jwk, "x", 32, &xl)))
        pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x, xl);
    if (pkey == NULL)
        ims_detail(detail, dlen, "OKP key: only Ed25519 with a 32-byte x is supported");
    free(x);
    *algs = IMSAUTH_ALG_EDDSA;
    return pkey;
}

enum imsauth_result ims_keyset_add_jwk(struct ims_keyset *ks, const void *jv, char *detail,
                                       size_t dlen)
{
    json_t *jwk = (json_t *)(uintptr_t)jv;
    if (!json_is_object(jwk)) {
        ims_detail(detail, dlen, "JWK is not an object");
        return IMSAUTH_ERR_KEYS;
    }
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    json_t *kidv = json_object_get(jwk, "kid");
    const char *use = json_string_value(json_object_get(jwk, "use"));
    const char *alg = json_string_value(json_object_get(jwk, "alg"));
    if (kty == NULL || (kidv && !json_is_string(kidv))) {
        ims_detail(detail, dlen, "JWK without string kty, or non-string kid");
        return IMSAUTH_ERR_KEYS;
    }
    if (use && strcmp(use, "sig") != 0)
        return IMSAUTH_OK; /* encryption keys are not ours: skip */
    if (strcmp(kty, "oct") == 0)
        return IMSAUTH_OK; /* shared secrets never come from a JWKS (HS* needs explicit
                              configuration): skip */
    enum imsauth_result err = IMSAUTH_ERR_KEYS;
    struct ims_key *k = slot(ks, json_string_value(kidv), detail, dlen, &err);
    if (k == NULL)
        return err;
    unsigned algs = 0;
    if (strcmp(kty, "EC") == 0) {
        k->kind = IMS_KEY_EC;
        k->pkey = ec_key(jwk, &algs, detail, dlen);
    } else if (strcmp(kty, "RSA") == 0) {
        k->kind = IMS_KEY_RSA;
        k->pkey = rsa_key(jwk, &algs, detail, dlen);
    } else if (strcmp(kty, "OKP") == 0) {
        k->kind = IMS_KEY_OKP;
        k->pkey = okp_key(jwk, &algs, detail, dlen);
    } else {
        free(k->kid);
        return IMSAUTH_OK; /* unknown key type: skip, as RFC 7517 section 5 allows */
    }
    if (k->pkey == NULL) {
        free(k->kid);
        return IMSAUTH_ERR_KEYS;
    }
    if (alg) {
        unsigned a = ims_alg_from_name(alg, strlen(alg));
        algs &= a; /* a JWK "alg" restricts the key to that algorithm */
    }
    k->algs = algs;
    ks->n++;
    return IMSAUTH_OK;
}

enum imsauth_result ims_keyset_add_jwks(struct ims_keyset *ks, const char *json, size_t len,
                                        char *detail, size_t dlen)
{
    if (len > IMSAUTH_MAX_JWKS_LEN) {
        ims_detail(detail, dlen, "JWKS larger than %d bytes", IMSAUTH_MAX_JWKS_LEN);
        return IMSAUTH_ERR_KEYS;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL) {
        ims_detail(detail, dlen, "JWKS is not JSON: %s (line %d)", jerr.text, jerr.line);
        return IMSAUTH_ERR_KEYS;
    }
    json_t *keys = json_object_get(doc, "keys");
    enum imsauth_result r = IMSAUTH_OK;
    if (!json_is_array(keys)) {
        ims_detail(detail, dlen, "JWKS has no \"keys\" array");
        r = IMSAUTH_ERR_KEYS;
    }
    size_t i;
    json_t *k;
    json_array_foreach(keys, i, k)
    {
        r = ims_keyset_add_jwk(ks, k, detail, dlen);
        if (r != IMSAUTH_OK)
            break;
    }
    json_decref(doc);
    return r;
}

enum imsauth_result ims_keyset_add_pem(struct ims_keyset *ks, const char *pem, const char *kid,
                                       char *detail, size_t dlen)
{
    enum imsauth_result err = IMSAUTH_ERR_KEYS;
    struct ims_key *k = slot(ks, kid, detail, dlen, &err);
    if (k == NULL)
        return err;
    BIO *bio = BIO_new_mem_buf(pem, -1);
    k->pkey = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (k->pkey == NULL) {
        ims_detail(detail, dlen, "PEM key%s%s is not a public key", kid ? " " : "", kid ? kid : "");
        free(k->kid);
        return IMSAUTH_ERR_KEYS;
    }
    int id = EVP_PKEY_get_base_id(k->pkey);
    if (id == EVP_PKEY_EC) {
        char group[32] = "";
        EVP_PKEY_get_utf8_string_param(k->pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                       NULL);
        k->kind = IMS_KEY_EC;
        k->algs = strcmp(group, "prime256v1") == 0  ? IMSAUTH_ALG_ES256
                  : strcmp(group, "secp384r1") == 0 ? IMSAUTH_ALG_ES384
                  : strcmp(group, "secp521r1") == 0 ? IMSAUTH_ALG_ES512
                                                    : 0;
    } else if (id == EVP_PKEY_RSA && EVP_PKEY_get_bits(k->pkey) >= RSA_MIN_BITS) {
        k->kind = IMS_KEY_RSA;
        k->algs = IMSAUTH_ALG_RS256 | IMSAUTH_ALG_RS384 | IMSAUTH_ALG_RS512 | IMSAUTH_ALG_PS256 |
                  IMSAUTH_ALG_PS384 | IMSAUTH_ALG_PS512;
    } else if (id == EVP_PKEY_ED25519) {
        k->kind = IMS_KEY_OKP;
        k->algs = IMSAUTH_ALG_EDDSA;
    }
    if (k->algs == 0) {
        ims_detail(detail, dlen,
                   "PEM key type not supported (EC P-256/384/521, RSA >= %d, "
                   "Ed25519)",
                   RSA_MIN_BITS);
        EVP_PKEY_free(k->pkey);
        free(k->kid);
        return IMSAUTH_ERR_KEYS;
    }
    ks->n++;
    return IMSAUTH_OK;
}

enum imsauth_result ims_keyset_add_secret(struct ims_keyset *ks, const uint8_t *s, size_t n,
                                          const char *kid, char *detail, size_t dlen)
{
    enum imsauth_result err = IMSAUTH_ERR_KEYS;
    struct ims_key *k = slot(ks, kid, detail, dlen, &err);
    if (k == NULL)
        return err;
    k->secret = malloc(n);
    if (k->secret == NULL) {
        free(k->kid);
        return IMSAUTH_ERR_NOMEM;
    }
    memcpy(k->secret, s, n);
    k->secret_len = n;
    k->kind = IMS_KEY_OCT;
    k->algs = IMSAUTH_ALG_HS256 | IMSAUTH_ALG_HS384 | IMSAUTH_ALG_HS512;
    ks->n++;
    return IMSAUTH_OK;
}

const struct ims_key *ims_keyset_find(const struct ims_keyset *ks, unsigned alg, const char *kid,
                                      enum imsauth_result *why)
{
    const struct ims_key *found = NULL;
    bool kid_seen = false;
    size_t candidates = 0;
    for (size_t i = 0; i < ks->n; i++) {
        const struct ims_key *k = &ks->keys[i];
        if (kid) {
            if (k->kid == NULL || strcmp(k->kid, kid) != 0)
                continue;
            kid_seen = true;
            if (k->algs & alg)
                return k;
        } else if (k->kid == NULL || ks->n == 1) {
            /* Without a kid only an unambiguous key is acceptable. */
            if (k->algs & alg) {
                found = k;
                candidates++;
            }
        }
    }
    if (kid) {
        *why = kid_seen ? IMSAUTH_ERR_ALG_NOT_ALLOWED : IMSAUTH_ERR_UNKNOWN_KID;
        return NULL;
    }
    if (candidates == 1)
        return found;
    *why = IMSAUTH_ERR_UNKNOWN_KID;
    return NULL;
}
