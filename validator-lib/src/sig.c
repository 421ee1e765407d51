/* JOSE algorithms (RFC 7518) on OpenSSL 3 EVP with keys parsed at load time. */
#include "internal.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>
#include <string.h>

static const struct {
    const char *name;
    unsigned alg;
} alg_names[] = {
    {"ES256", IMSAUTH_ALG_ES256}, {"ES384", IMSAUTH_ALG_ES384}, {"ES512", IMSAUTH_ALG_ES512},
    {"RS256", IMSAUTH_ALG_RS256}, {"RS384", IMSAUTH_ALG_RS384}, {"RS512", IMSAUTH_ALG_RS512},
    {"PS256", IMSAUTH_ALG_PS256}, {"PS384", IMSAUTH_ALG_PS384}, {"PS512", IMSAUTH_ALG_PS512},
    {"EdDSA", IMSAUTH_ALG_EDDSA}, {"HS256", IMSAUTH_ALG_HS256}, {"HS384", IMSAUTH_ALG_HS384},
    {"HS512", IMSAUTH_ALG_HS512},
};

unsigned ims_alg_from_name(const char *name, size_t n)
{
    for (size_t i = 0; i < sizeof(alg_names) / sizeof(alg_names[0]); i++)
        if (strlen(alg_names[i].name) == n && memcmp(alg_names[i].name, name, n) == 0)
            return alg_names[i].alg;
    return 0; /* "none" and everything unknown */
}

const char *ims_alg_name(unsigned alg)
{
    for (size_t i = 0; i < sizeof(alg_names) / sizeof(alg_names[0]); i++)
        if (alg_names[i].alg == alg)
            return alg_names[i].name;
    return "?";
}

bool ims_mds_load(struct ims_mds *m)
{
    m->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    m->sha384 = EVP_MD_fetch(NULL, "SHA384", NULL);
    m->sha512 = EVP_MD_fetch(NULL, "SHA512", NULL);
    return m->sha256 && m->sha384 && m->sha512;
}

void ims_mds_free(struct ims_mds *m)
{
    EVP_MD_free(m->sha256);
    EVP_MD_free(m->sha384);
    EVP_MD_free(m->sha512);
    memset(m, 0, sizeof(*m));
}

static const EVP_MD *md_for(const struct ims_mds *m, unsigned alg)
{
    if (alg & (IMSAUTH_ALG_ES256 | IMSAUTH_ALG_RS256 | IMSAUTH_ALG_PS256 | IMSAUTH_ALG_HS256))
        return m->sha256;
    if (alg & (IMSAUTH_ALG_ES384 | IMSAUTH_ALG_RS384 | IMSAUTH_ALG_PS384 | IMSAUTH_ALG_HS384))
        return m->sha384;
    if (alg & (IMSAUTH_ALG_ES512 | IMSAUTH_ALG_RS512 | IMSAUTH_ALG_PS512 | IMSAUTH_ALG_HS512))
        return m->sha512;
    return NULL;
}

/* Appends a DER INTEGER for the big-endian unsigned v[0..n). */
static size_t der_int(uint8_t *out, const uint8_t *v, size_t n)
{
    while (n > 1 && v[0] == 0) {
        v++;
        n--;
    }
    size_t pad = (v[0] & 0x80) ? 1 : 0, o = 0;
    out[o++] = 0x02;
    out[o++] = (uint8_t)(n + pad);
    if (pad)
        out[o++] = 0;
    memcpy(out + o, v, n);
    return o + n;
}

/* JOSE R||S to a DER ECDSA-Sig-Value. Returns its length. */
static size_t ecdsa_raw_to_der(const uint8_t *sig, size_t half, uint8_t *der)
{
    uint8_t body[2 * (66 + 3)];
    size_t bl = der_int(body, sig, half);
    bl += der_int(body + bl, sig + half, half);
    size_t o = 0;
    der[o++] = 0x30;
    if (bl >= 128)
        der[o++] = 0x81;
    der[o++] = (uint8_t)bl;
    memcpy(der + o, body, bl);
    return o + bl;
}

static bool hmac_verify(const EVP_MD *md, const struct ims_key *key, const uint8_t *msg,
                        size_t msglen, const uint8_t *sig, size_t siglen)
{
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    if (HMAC(md, key->secret, (int)key->secret_len, msg, msglen, mac, &maclen) == NULL)
        return false;
    bool ok = siglen == maclen && CRYPTO_memcmp(mac, sig, maclen) == 0;
    OPENSSL_cleanse(mac, sizeof(mac));
    return ok;
}

/* Initialises mctx for verifying alg with key (padding per RFC 7518). */
static bool verify_init(EVP_MD_CTX *mctx, const struct ims_mds *m, const struct ims_key *key,
                        unsigned alg)
{
    EVP_PKEY_CTX *pctx = NULL;
    const EVP_MD *md = key->kind == IMS_KEY_OKP ? NULL : md_for(m, alg);
    if (EVP_DigestVerifyInit(mctx, &pctx, md, NULL, key->pkey) <= 0)
        return false;
    if (alg & (IMSAUTH_ALG_PS256 | IMSAUTH_ALG_PS384 | IMSAUTH_ALG_PS512)) {
        /* RFC 7518 section 3.5: MGF1 with the same hash, salt as long as the hash. */
        return EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0 &&
               EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) > 0;
    }
    if (key->kind == IMS_KEY_RSA)
        return EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) > 0;
    return true;
}

void ims_keyset_prepare(struct ims_keyset *ks, const struct ims_mds *m, unsigned algs)
{
    for (size_t i = 0; i < ks->n; i++) {
        struct ims_key *k = &ks->keys[i];
        if (k->kind == IMS_KEY_OCT || k->kind == IMS_KEY_OKP)
            continue; /* HMAC needs no context; EdDSA one-shot contexts cannot be copied */
        for (int a = 0; a < IMSAUTH_N_ALGS; a++) {
            unsigned bit = 1u << a;
            if (!(k->algs & algs & bit) || k->vctx[a])
                continue;
            EVP_MD_CTX *c = EVP_MD_CTX_new();
            if (c && verify_init(c, m, k, bit))
                k->vctx[a] = c;
            else
                EVP_MD_CTX_free(c);
        }
    }
    ERR_clear_error();
}

bool ims_sig_verify(const struct ims_mds *m, const struct ims_key *key, unsigned alg,
                    const uint8_t *msg, size_t msglen, const uint8_t *sig, size_t siglen)
{
    if ((key->algs & alg) == 0)
        return false;
    if (key->kind == IMS_KEY_OCT)
        return hmac_verify(md_for(m, alg), key, msg, msglen, sig, siglen);

    uint8_t der[2 * (66 + 3) + 3];
    if (key->kind == IMS_KEY_EC) {
        size_t half = alg == IMSAUTH_ALG_ES256 ? 32 : alg == IMSAUTH_ALG_ES384 ? 48 : 66;
        if (siglen != 2 * half)
            return false;
        siglen = ecdsa_raw_to_der(sig, half, der);
        sig = der;
    }
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    if (mctx == NULL)
        return false;
    const EVP_MD_CTX *tmpl = key->vctx[__builtin_ctz(alg)];
    bool ok = (tmpl ? EVP_MD_CTX_copy_ex(mctx, tmpl) == 1 : verify_init(mctx, m, key, alg)) &&
              EVP_DigestVerify(mctx, sig, siglen, msg, msglen) == 1;
    EVP_MD_CTX_free(mctx);
    return ok;
}
