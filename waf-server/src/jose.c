/* Client-signed JWTs: registered JWKS, compact JWS verification, claims of client assertions. */
#include "jose.h"
#include "wcrypto.h"
#include "wutil.h"

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <stdlib.h>
#include <string.h>

#define RSA_MIN_BITS  2048
#define RSA_MAX_BITS  4096
#define RSA_MAX_E     4                  /* bytes of the public exponent */
#define B64_MAX_BYTES (RSA_MAX_BITS / 8) /* longest decoded JWK member or signature */
#define NUMERIC_MAX   253402300799       /* 9999-12-31T23:59:59Z */
#define MAX_LEEWAY    3600
#define HDR_BUF       (WAF_JOSE_MAX_TOKEN / 4 * 3 + 2)

/* The accepted algorithms, as bits of struct jwk.algs. */
enum {
    ALG_ES256 = 1u << 0,
    ALG_ES384 = 1u << 1,
    ALG_RS256 = 1u << 2,
    ALG_PS256 = 1u << 3,
    ALG_EDDSA = 1u << 4,
};

static const struct alg {
    const char *name;
    unsigned bit;
    const char *md;  /* NULL for EdDSA (one-shot, no separate digest) */
    size_t ec_half;  /* ECDSA: bytes of R and of S; 0 otherwise */
    const char *pad; /* RSA padding mode; NULL otherwise */
} ALGS[] = {
    {"ES256", ALG_ES256, "SHA256", 32, NULL},
    {"ES384", ALG_ES384, "SHA384", 48, NULL},
    {"RS256", ALG_RS256, "SHA256", 0, OSSL_PKEY_RSA_PAD_MODE_PKCSV15},
    {"PS256", ALG_PS256, "SHA256", 0, OSSL_PKEY_RSA_PAD_MODE_PSS},
    {"EdDSA", ALG_EDDSA, NULL, 0, NULL},
};
#define N_ALGS   (sizeof(ALGS) / sizeof(ALGS[0]))
#define ALG_LIST "ES256, ES384, RS256, PS256, EdDSA"

struct jwk {
    EVP_PKEY *pkey; /* NULL for a key whose use is not "sig" */
    char *kid;      /* NULL when the JWK has none */
    unsigned algs;  /* ALG_* this key verifies; 0 for a key whose use is not "sig" */
};

struct waf_jwks {
    size_t n;    /* keys[0..n) */
    size_t nsig; /* of which signing keys */
    struct jwk keys[WAF_JWKS_MAX_KEYS];
};

const char *waf_jose_strerror(enum waf_jose_result r)
{
    switch (r) {
    case WAF_JOSE_OK:
        return "success";
    case WAF_JOSE_NOMEM:
        return "out of memory";
    case WAF_JOSE_MALFORMED:
        return "malformed JWS";
    case WAF_JOSE_ALG:
        return "algorithm not accepted";
    case WAF_JOSE_TYP:
        return "unexpected token type";
    case WAF_JOSE_NO_KEY:
        return "no registered key fits the token";
    case WAF_JOSE_SIGNATURE:
        return "signature does not verify";
    case WAF_JOSE_JWKS:
        return "invalid JWKS";
    case WAF_JOSE_CLAIMS:
        return "claims check failed";
    case WAF_JOSE_ARG:
        return "invalid argument";
    case WAF_JOSE_INTERNAL:
        return "cryptographic library failure";
    }
    return "unknown";
}

static const struct alg *alg_by_name(const char *name)
{
    for (size_t i = 0; i < N_ALGS; i++) {
        if (strcmp(ALGS[i].name, name) == 0)
            return &ALGS[i];
    }
    return NULL;
}

/* Maps a Jansson load failure of what to a result: NOMEM, or bad with a detail that gives
 * the position only (Jansson's own text may quote the input). */
static enum waf_jose_result json_fail(const json_error_t *je, const char *what,
                                      enum waf_jose_result bad, char *detail, size_t dl)
{
    /* Jansson (2.14) records no text when an allocation fails, and for some allocation
     * failures a syntax error instead: those are reported as bad input (failing closed). */
    enum json_error_code code = je->text[0] ? json_error_code(je) : json_error_out_of_memory;
    switch (code) {
    case json_error_out_of_memory:
        waf_detail(detail, dl, "out of memory parsing %s", what);
        return WAF_JOSE_NOMEM;
    case json_error_duplicate_key:
        waf_detail(detail, dl, "%s has a duplicate member name", what);
        return bad;
    default:
        waf_detail(detail, dl, "%s is not valid JSON (line %d, column %d)", what, je->line,
                   je->column);
        return bad;
    }
}

/* Parses buf[0..len) as a JSON object without duplicate names into *out. */
static enum waf_jose_result load_object(const char *buf, size_t len, const char *what,
                                        enum waf_jose_result bad, json_t **out, char *detail,
                                        size_t dl)
{
    json_error_t je;
    json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    if (j == NULL)
        return json_fail(&je, what, bad, detail, dl);
    if (!json_is_object(j)) {
        json_decref(j);
        waf_detail(detail, dl, "%s is not a JSON object", what);
        return bad;
    }
    *out = j;
    return WAF_JOSE_OK;
}

/* ---- JWKS ---- */

/* Strictly decodes the base64url string member name of o (at most max bytes) into
 * out[max + 2]. False when absent, not a string, too long or not base64url. */
static bool b64_member(json_t *o, const char *name, size_t max, uint8_t *out, size_t *n)
{
    json_t *v = json_object_get(o, name);
    const char *s = json_string_value(v);
    size_t sl = json_string_length(v);
    return s != NULL && sl > 0 && sl <= WAF_B64URL_LEN(max) && waf_b64url_decode(s, sl, out, n);
}

/* Empties this thread's OpenSSL error queue; true when it held an allocation failure (so
 * that a refusal caused by memory is reported as WAF_JOSE_NOMEM). */
static bool ossl_drain_oom(void)
{
    bool oom = false;
    unsigned long e;
    while ((e = ERR_get_error()) != 0)
        oom |= ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE;
    return oom;
}

/* Builds a public key of type from the parameters in bld and runs OpenSSL's public key check
 * when check is set. */
static EVP_PKEY *from_params(const char *type, OSSL_PARAM_BLD *bld, bool check)
{
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *pc = params ? EVP_PKEY_CTX_new_from_name(NULL, type, NULL) : NULL;
    if (pc && EVP_PKEY_fromdata_init(pc) == 1 &&
        EVP_PKEY_fromdata(pc, &pkey, EVP_PKEY_PUBLIC_KEY, params) == 1 && check) {
        EVP_PKEY_CTX *vc = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        if (vc == NULL || EVP_PKEY_public_check(vc) != 1) {
            EVP_PKEY_free(pkey);
            pkey = NULL;
        }
        EVP_PKEY_CTX_free(vc);
    }
    EVP_PKEY_CTX_free(pc);
    OSSL_PARAM_free(params);
    return pkey;
}

/* EC P-256 / P-384: x and y of the curve's full length, a point on the curve. */
static EVP_PKEY *ec_key(json_t *jwk, size_t i, unsigned *algs, char *detail, size_t dl)
{
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    const char *group;
    size_t half;
    if (crv && strcmp(crv, "P-256") == 0) {
        group = "prime256v1";
        half = 32;
        *algs = ALG_ES256;
    } else if (crv && strcmp(crv, "P-384") == 0) {
        group = "secp384r1";
        half = 48;
        *algs = ALG_ES384;
    } else {
        waf_detail(detail, dl, "key %zu: EC crv missing or not P-256 or P-384", i);
        return NULL;
    }
    uint8_t pub[1 + 2 * 48], x[48 + 2], y[48 + 2];
    size_t xl = 0, yl = 0;
    if (!b64_member(jwk, "x", half, x, &xl) || xl != half || !b64_member(jwk, "y", half, y, &yl) ||
        yl != half) {
        waf_detail(detail, dl, "key %zu: EC x or y is not %zu bytes of base64url", i, half);
        return NULL;
    }
    pub[0] = 0x04; /* uncompressed point */
    memcpy(pub + 1, x, half);
    memcpy(pub + 1 + half, y, half);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pkey = NULL;
    if (bld && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, 1 + 2 * half))
        pkey = from_params("EC", bld, true);
    OSSL_PARAM_BLD_free(bld);
    if (pkey == NULL)
        waf_detail(detail, dl, "key %zu: EC point is not on curve %s", i, crv);
    return pkey;
}

/* RSA: n of RSA_MIN_BITS..RSA_MAX_BITS and odd, e odd, > 1, at most RSA_MAX_E bytes. The
 * checks are our own: OpenSSL's public key check runs a primality test that costs up to a
 * second for a 4096-bit modulus. */
static EVP_PKEY *rsa_key(json_t *jwk, size_t i, unsigned *algs, char *detail, size_t dl)
{
    uint8_t nb[B64_MAX_BYTES + 8], eb[RSA_MAX_E + 4];
    size_t nl = 0, el = 0;
    /* n may carry a leading zero octet (as some producers write it): one byte of slack. */
    if (!b64_member(jwk, "n", B64_MAX_BYTES + 1, nb, &nl) ||
        !b64_member(jwk, "e", RSA_MAX_E, eb, &el)) {
        waf_detail(detail, dl, "key %zu: RSA n or e missing, not base64url or too long", i);
        return NULL;
    }
    BIGNUM *n = BN_bin2bn(nb, (int)nl, NULL), *e = BN_bin2bn(eb, (int)el, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pkey = NULL;
    int bits = n ? BN_num_bits(n) : 0;
    if (n == NULL || e == NULL || bld == NULL)
        waf_detail(detail, dl, "key %zu: out of memory", i);
    else if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS)
        waf_detail(detail, dl, "key %zu: RSA modulus of %d bits (accepted %d to %d)", i, bits,
                   RSA_MIN_BITS, RSA_MAX_BITS);
    else if (!BN_is_odd(n) || !BN_is_odd(e) || BN_is_one(e))
        waf_detail(detail, dl, "key %zu: RSA n or e is even, or e is 1", i);
    else if (!OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
             !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) ||
             (pkey = from_params("RSA", bld, false)) == NULL)
        waf_detail(detail, dl, "key %zu: RSA key not accepted by OpenSSL", i);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    *algs = ALG_RS256 | ALG_PS256;
    return pkey;
}

/* OKP Ed25519 (RFC 8037): x of 32 bytes. */
static EVP_PKEY *okp_key(json_t *jwk, size_t i, unsigned *algs, char *detail, size_t dl)
{
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    uint8_t x[32 + 2];
    size_t xl = 0;
    *algs = ALG_EDDSA;
    if (crv == NULL || strcmp(crv, "Ed25519") != 0) {
        waf_detail(detail, dl, "key %zu: OKP crv missing or not Ed25519", i);
        return NULL;
    }
    if (!b64_member(jwk, "x", 32, x, &xl) || xl != 32) {
        waf_detail(detail, dl, "key %zu: OKP x is not 32 bytes of base64url", i);
        return NULL;
    }
    EVP_PKEY *pkey = EVP_PKEY_new_raw_public_key_ex(NULL, "ED25519", NULL, x, xl);
    if (pkey == NULL)
        waf_detail(detail, dl, "key %zu: Ed25519 key not accepted by OpenSSL", i);
    return pkey;
}

/* Frees what keys[0..n) hold. */
static void free_keys(struct jwk *keys, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        EVP_PKEY_free(keys[i].pkey);
        free(keys[i].kid);
    }
}

void waf_jwks_free(struct waf_jwks *ks)
{
    if (ks == NULL)
        return;
    free_keys(ks->keys, ks->n);
    free(ks);
}

size_t waf_jwks_count(const struct waf_jwks *ks)
{
    return ks ? ks->nsig : 0;
}

/* Parses keys[i] into ks->keys[ks->n] and bumps ks->n on success. */
static enum waf_jose_result add_key(struct waf_jwks *ks, json_t *jwk, size_t i, char *detail,
                                    size_t dl)
{
    static const char *const private_members[] = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"};
    if (!json_is_object(jwk)) {
        waf_detail(detail, dl, "key %zu is not a JSON object", i);
        return WAF_JOSE_JWKS;
    }
    for (size_t m = 0; m < sizeof(private_members) / sizeof(private_members[0]); m++) {
        if (json_object_get(jwk, private_members[m])) {
            waf_detail(detail, dl, "key %zu has the private member \"%s\" (public keys only)", i,
                       private_members[m]);
            return WAF_JOSE_JWKS;
        }
    }
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    if (kty == NULL) {
        waf_detail(detail, dl, "key %zu: kty missing or not a string", i);
        return WAF_JOSE_JWKS;
    }
    if (strcmp(kty, "oct") == 0) {
        waf_detail(detail, dl, "key %zu: kty oct (a shared secret) is not accepted", i);
        return WAF_JOSE_JWKS;
    }
    if (strcmp(kty, "EC") != 0 && strcmp(kty, "RSA") != 0 && strcmp(kty, "OKP") != 0) {
        waf_detail(detail, dl, "key %zu: unknown kty (accepted EC, RSA, OKP)", i);
        return WAF_JOSE_JWKS;
    }
    json_t *kidv = json_object_get(jwk, "kid"), *usev = json_object_get(jwk, "use");
    json_t *algv = json_object_get(jwk, "alg");
    const char *kid = json_string_value(kidv);
    if (kidv && (kid == NULL || json_string_length(kidv) == 0 ||
                 json_string_length(kidv) > WAF_JOSE_MAX_KID)) {
        waf_detail(detail, dl, "key %zu: kid is not a string of 1 to %d bytes", i,
                   WAF_JOSE_MAX_KID);
        return WAF_JOSE_JWKS;
    }
    for (size_t j = 0; kid && j < ks->n; j++) {
        if (ks->keys[j].kid && strcmp(ks->keys[j].kid, kid) == 0) {
            waf_detail(detail, dl, "key %zu: kid repeats the kid of key %zu", i, j);
            return WAF_JOSE_JWKS;
        }
    }
    if ((usev && !json_is_string(usev)) || (algv && !json_is_string(algv))) {
        waf_detail(detail, dl, "key %zu: use or alg is not a string", i);
        return WAF_JOSE_JWKS;
    }
    struct jwk *k = &ks->keys[ks->n];
    memset(k, 0, sizeof(*k));
    if (kid && (k->kid = strdup(kid)) == NULL) {
        waf_detail(detail, dl, "out of memory");
        return WAF_JOSE_NOMEM;
    }
    const char *use = json_string_value(usev);
    if (use && strcmp(use, "sig") != 0) {
        ks->n++; /* kept for the kid check only; never used to verify */
        return WAF_JOSE_OK;
    }
    unsigned algs = 0;
    k->pkey = kty[0] == 'E'   ? ec_key(jwk, i, &algs, detail, dl)
              : kty[0] == 'R' ? rsa_key(jwk, i, &algs, detail, dl)
                              : okp_key(jwk, i, &algs, detail, dl);
    bool oom = ossl_drain_oom(); /* refusals leave OpenSSL reasons queued */
    if (k->pkey == NULL) {
        free(k->kid);
        if (oom)
            waf_detail(detail, dl, "key %zu: out of memory", i);
        return oom ? WAF_JOSE_NOMEM : WAF_JOSE_JWKS;
    }
    if (algv) {
        const struct alg *a = alg_by_name(json_string_value(algv));
        if (a == NULL || (a->bit & algs) == 0) {
            waf_detail(detail, dl, "key %zu: alg is not one of " ALG_LIST " fitting kty %s", i,
                       kty);
            free_keys(k, 1);
            return WAF_JOSE_JWKS;
        }
        algs = a->bit;
    }
    k->algs = algs;
    ks->n++;
    ks->nsig++;
    return WAF_JOSE_OK;
}

enum waf_jose_result waf_jwks_parse(const char *json, size_t len, struct waf_jwks **out,
                                    char *detail, size_t detail_len)
{
    if (json == NULL || out == NULL) {
        waf_detail(detail, detail_len, "NULL argument");
        return WAF_JOSE_ARG;
    }
    if (len > WAF_JWKS_MAX_LEN) {
        waf_detail(detail, detail_len, "JWKS of %zu bytes (at most %d)", len, WAF_JWKS_MAX_LEN);
        return WAF_JOSE_JWKS;
    }
    json_t *doc = NULL;
    enum waf_jose_result r =
        load_object(json, len, "JWKS", WAF_JOSE_JWKS, &doc, detail, detail_len);
    if (r != WAF_JOSE_OK)
        return r;
    json_t *keys = json_object_get(doc, "keys");
    size_t n = json_array_size(keys);
    struct waf_jwks *ks = NULL;
    if (!json_is_array(keys) || n == 0 || n > WAF_JWKS_MAX_KEYS) {
        waf_detail(detail, detail_len, "JWKS member \"keys\" is not an array of 1 to %d keys",
                   WAF_JWKS_MAX_KEYS);
        r = WAF_JOSE_JWKS;
        goto out;
    }
    ks = calloc(1, sizeof(*ks));
    if (ks == NULL) {
        waf_detail(detail, detail_len, "out of memory");
        r = WAF_JOSE_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < n && r == WAF_JOSE_OK; i++)
        r = add_key(ks, json_array_get(keys, i), i, detail, detail_len);
    if (r == WAF_JOSE_OK && ks->nsig == 0) {
        waf_detail(detail, detail_len, "JWKS has no signing key (use \"sig\" or no use)");
        r = WAF_JOSE_JWKS;
    }
out:
    json_decref(doc);
    if (r != WAF_JOSE_OK) {
        waf_jwks_free(ks);
        return r;
    }
    *out = ks;
    return WAF_JOSE_OK;
}

/* ---- JWS ---- */

static bool ascii_case_equal(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char x = (*a >= 'A' && *a <= 'Z') ? (char)(*a + 32) : *a;
        char y = (*b >= 'A' && *b <= 'Z') ? (char)(*b + 32) : *b;
        if (x != y)
            return false;
    }
    return *a == *b;
}

/* A media type without its "application/" prefix when no other '/' follows (RFC 7515
 * §4.1.9: "jwt" stands for "application/jwt"). */
static const char *media_short(const char *s)
{
    static const char app[] = "application/";
    size_t n = sizeof(app) - 1;
    for (size_t i = 0; i < n; i++) {
        char c = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] + 32) : s[i];
        if (c != app[i])
            return s;
    }
    return strchr(s + n, '/') ? s : s + n;
}

/* Converts a JOSE ECDSA signature R||S (2 * half bytes) to DER. On success *der is a buffer
 * the caller frees with OPENSSL_free(). */
static enum waf_jose_result ecdsa_der(const uint8_t *sig, size_t half, uint8_t **der, int *dlen)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, (int)half, NULL), *s = BN_bin2bn(sig + half, (int)half, NULL);
    *der = NULL;
    *dlen = -1;
    if (es && r && s && ECDSA_SIG_set0(es, r, s) == 1) {
        r = s = NULL; /* owned by es */
        *dlen = i2d_ECDSA_SIG(es, der);
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return *dlen > 0 ? WAF_JOSE_OK : WAF_JOSE_NOMEM;
}

/* Verifies sig[0..sl) over msg[0..ml) with key k and algorithm a. */
static enum waf_jose_result sig_verify(const struct jwk *k, const struct alg *a, const char *msg,
                                       size_t ml, const uint8_t *sig, size_t sl, char *detail,
                                       size_t dl)
{
    uint8_t *der = NULL;
    enum waf_jose_result r = WAF_JOSE_OK;
    if (a->ec_half) {
        if (sl != 2 * a->ec_half) {
            waf_detail(detail, dl, "%s signature is not %zu bytes", a->name, 2 * a->ec_half);
            return WAF_JOSE_SIGNATURE;
        }
        int derlen = 0;
        if ((r = ecdsa_der(sig, a->ec_half, &der, &derlen)) != WAF_JOSE_OK) {
            waf_detail(detail, dl, "out of memory");
            ossl_drain_oom();
            return r;
        }
        sig = der;
        sl = (size_t)derlen;
    }
    OSSL_PARAM params[4], *p = params;
    if (a->pad) {
        *p++ = OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE,
                                                (char *)(uintptr_t)a->pad, 0);
        if (a->bit == ALG_PS256) {
            /* RFC 7518 §3.5: MGF1 with the same hash, salt as long as the hash. */
            *p++ = OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST,
                                                    (char *)(uintptr_t)a->md, 0);
            *p++ = OSSL_PARAM_construct_utf8_string(
                OSSL_SIGNATURE_PARAM_PSS_SALTLEN,
                (char *)(uintptr_t)OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST, 0);
        }
    }
    *p = OSSL_PARAM_construct_end();
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    if (m == NULL) {
        waf_detail(detail, dl, "out of memory");
        r = WAF_JOSE_NOMEM;
    } else if (EVP_DigestVerifyInit_ex(m, NULL, a->md, NULL, NULL, k->pkey, params) != 1) {
        r = WAF_JOSE_INTERNAL;
    } else if (EVP_DigestVerify(m, sig, sl, (const uint8_t *)msg, ml) != 1) {
        r = WAF_JOSE_SIGNATURE;
    }
    EVP_MD_CTX_free(m);
    OPENSSL_free(der);
    if (ossl_drain_oom() && r != WAF_JOSE_OK)
        r = WAF_JOSE_NOMEM;
    if (r == WAF_JOSE_NOMEM)
        waf_detail(detail, dl, "out of memory");
    else if (r == WAF_JOSE_INTERNAL)
        waf_detail(detail, dl, "%s verification could not start", a->name);
    else if (r == WAF_JOSE_SIGNATURE)
        waf_detail(detail, dl, "signature does not verify");
    return r;
}

/* Checks the decoded header: crit, alg, kid, typ. On success *a is the algorithm and *kid
 * the header's kid (borrowed from h) or NULL. */
static enum waf_jose_result check_header(json_t *h, const char *expected_typ, const struct alg **a,
                                         const char **kid, char *detail, size_t dl)
{
    if (json_object_get(h, "crit")) {
        waf_detail(detail, dl, "header has crit (no extension is understood)");
        return WAF_JOSE_ALG;
    }
    const char *alg = json_string_value(json_object_get(h, "alg"));
    if (alg == NULL) {
        waf_detail(detail, dl, "header alg missing or not a string");
        return WAF_JOSE_ALG;
    }
    if ((*a = alg_by_name(alg)) == NULL) {
        waf_detail(detail, dl, "header alg is not one of " ALG_LIST);
        return WAF_JOSE_ALG;
    }
    json_t *kidv = json_object_get(h, "kid"), *typv = json_object_get(h, "typ");
    if ((kidv && !json_is_string(kidv)) || (typv && !json_is_string(typv))) {
        waf_detail(detail, dl, "header kid or typ is not a string");
        return WAF_JOSE_MALFORMED;
    }
    *kid = json_string_value(kidv);
    const char *typ = json_string_value(typv);
    if (expected_typ &&
        (typ == NULL || !ascii_case_equal(media_short(typ), media_short(expected_typ)))) {
        waf_detail(detail, dl, "header typ %s, expected \"%s\"", typ ? "does not match" : "missing",
                   expected_typ);
        return WAF_JOSE_TYP;
    }
    return WAF_JOSE_OK;
}

/* Finds the keys of ks that fit kid and a and verifies with them in turn. */
static enum waf_jose_result verify_keys(const struct waf_jwks *ks, const char *kid,
                                        const struct alg *a, const char *msg, size_t ml,
                                        const uint8_t *sig, size_t sl, char *detail, size_t dl)
{
    bool kid_seen = false;
    size_t tried = 0;
    for (size_t i = 0; i < ks->n; i++) {
        const struct jwk *k = &ks->keys[i];
        if (kid && (k->kid == NULL || strcmp(k->kid, kid) != 0))
            continue;
        kid_seen = true;
        if ((k->algs & a->bit) == 0)
            continue;
        tried++;
        enum waf_jose_result r = sig_verify(k, a, msg, ml, sig, sl, detail, dl);
        if (r != WAF_JOSE_SIGNATURE)
            return r; /* OK, or a failure other than a bad signature */
    }
    if (tried == 0) {
        if (kid == NULL)
            waf_detail(detail, dl, "no signing key of the JWKS fits alg %s", a->name);
        else if (kid_seen)
            waf_detail(detail, dl, "the key with the header's kid is not a signing key for %s",
                       a->name);
        else
            waf_detail(detail, dl, "no key of the JWKS has the header's kid");
        return WAF_JOSE_NO_KEY;
    }
    if (tried > 1)
        waf_detail(detail, dl, "signature does not verify with any of %zu keys", tried);
    return WAF_JOSE_SIGNATURE;
}

enum waf_jose_result waf_jose_verify(const struct waf_jwks *ks, const char *token, size_t len,
                                     const char *expected_typ, char **payload, size_t *plen,
                                     char *detail, size_t detail_len)
{
    if (ks == NULL || token == NULL || payload == NULL || plen == NULL ||
        (expected_typ && expected_typ[0] == '\0')) {
        waf_detail(detail, detail_len, "NULL argument or empty expected typ");
        return WAF_JOSE_ARG;
    }
    if (len == 0 || len > WAF_JOSE_MAX_TOKEN) {
        waf_detail(detail, detail_len, "token of %zu bytes (accepted 1 to %d)", len,
                   WAF_JOSE_MAX_TOKEN);
        return WAF_JOSE_MALFORMED;
    }
    /* header.payload.signature, none of them empty */
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) || dot1 == token ||
        dot2 == dot1 + 1) {
        waf_detail(detail, detail_len, "not a compact JWS (header.payload.signature)");
        return WAF_JOSE_MALFORMED;
    }
    size_t hlen = (size_t)(dot1 - token), pseg = (size_t)(dot2 - dot1 - 1);
    size_t sseg = len - (size_t)(dot2 + 1 - token);

    char hdr[HDR_BUF];
    size_t hl = 0;
    if (!waf_b64url_decode(token, hlen, (uint8_t *)hdr, &hl)) {
        waf_detail(detail, detail_len, "header is not base64url");
        return WAF_JOSE_MALFORMED;
    }
    json_t *h = NULL, *pj = NULL;
    char *p = NULL;
    enum waf_jose_result r =
        load_object(hdr, hl, "header", WAF_JOSE_MALFORMED, &h, detail, detail_len);
    const struct alg *a = NULL;
    const char *kid = NULL;
    if (r == WAF_JOSE_OK)
        r = check_header(h, expected_typ, &a, &kid, detail, detail_len);
    if (r != WAF_JOSE_OK)
        goto out;

    size_t pl = 0, sl = 0;
    uint8_t sig[B64_MAX_BYTES + 2];
    if ((p = malloc(pseg / 4 * 3 + 3)) == NULL) {
        waf_detail(detail, detail_len, "out of memory");
        r = WAF_JOSE_NOMEM;
        goto out;
    }
    if (!waf_b64url_decode(dot1 + 1, pseg, (uint8_t *)p, &pl)) {
        waf_detail(detail, detail_len, "payload is not base64url");
        r = WAF_JOSE_MALFORMED;
        goto out;
    }
    p[pl] = '\0';
    if (sseg == 0 || sseg > WAF_B64URL_LEN(B64_MAX_BYTES)) {
        waf_detail(detail, detail_len, "signature of %zu characters (accepted 1 to %d)", sseg,
                   (int)WAF_B64URL_LEN(B64_MAX_BYTES));
        r = WAF_JOSE_SIGNATURE;
        goto out;
    }
    if (!waf_b64url_decode(dot2 + 1, sseg, sig, &sl)) {
        waf_detail(detail, detail_len, "signature is not base64url");
        r = WAF_JOSE_MALFORMED;
        goto out;
    }
    r = verify_keys(ks, kid, a, token, hlen + 1 + pseg, sig, sl, detail, detail_len);
    if (r != WAF_JOSE_OK)
        goto out;
    /* Authentic: now the payload must be a JWT claims set (a JSON object). */
    r = load_object(p, pl, "payload", WAF_JOSE_MALFORMED, &pj, detail, detail_len);
    if (r != WAF_JOSE_OK)
        goto out;
    *payload = p;
    *plen = pl;
    p = NULL;
out:
    free(p);
    json_decref(pj);
    json_decref(h);
    return r;
}

/* ---- Claims ---- */

/* True when s (UTF-8, as Jansson guarantees) holds a C0 or C1 control character or DEL. */
static bool has_control(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return true;
        if (c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 &&
            (unsigned char)s[i + 1] <= 0x9f)
            return true;
    }
    return false;
}

/* Required string claim name of c: 1..WAF_JWT_MAX_STR bytes, no control characters;
 * copied to out[WAF_JWT_MAX_STR + 1]. */
static bool claim_str(json_t *c, const char *name, char *out, char *detail, size_t dl)
{
    json_t *v = json_object_get(c, name);
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (v == NULL)
        waf_detail(detail, dl, "claim %s missing", name);
    else if (s == NULL)
        waf_detail(detail, dl, "claim %s is not a string", name);
    else if (n == 0 || n > WAF_JWT_MAX_STR)
        waf_detail(detail, dl, "claim %s must have 1 to %d bytes", name, WAF_JWT_MAX_STR);
    else if (has_control(s, n))
        waf_detail(detail, dl, "claim %s holds a control character", name);
    else {
        memcpy(out, s, n + 1);
        return true;
    }
    return false;
}

/* NumericDate claim name of c as an integer of 0..NUMERIC_MAX into *out; *present tells
 * whether c has it (an absent claim is an error only when required). */
static bool claim_time(json_t *c, const char *name, bool required, int64_t *out, bool *present,
                       char *detail, size_t dl)
{
    json_t *v = json_object_get(c, name);
    *present = v != NULL;
    *out = 0;
    if (v == NULL) {
        if (required)
            waf_detail(detail, dl, "claim %s missing", name);
        return !required;
    }
    if (!json_is_integer(v)) {
        waf_detail(detail, dl, "claim %s is not an integer NumericDate", name);
        return false;
    }
    json_int_t t = json_integer_value(v);
    if (t < 0 || t > NUMERIC_MAX) {
        waf_detail(detail, dl, "claim %s is out of range", name);
        return false;
    }
    *out = (int64_t)t;
    return true;
}

/* aud: a string or a non-empty array of strings, one of them in want[]. */
static bool claim_aud(json_t *c, const char *const *want, char *detail, size_t dl)
{
    json_t *v = json_object_get(c, "aud");
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (v == NULL) {
        waf_detail(detail, dl, "claim aud missing");
        return false;
    }
    if (n == 0 || (!json_is_array(v) && !json_is_string(v))) {
        waf_detail(detail, dl, "claim aud is not a string or a non-empty array of strings");
        return false;
    }
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
        const char *s = json_string_value(e);
        if (s == NULL) {
            waf_detail(detail, dl, "claim aud is not a string or a non-empty array of strings");
            return false;
        }
        for (const char *const *w = want; *w && !found; w++)
            found = json_string_length(e) == strlen(*w) && strcmp(s, *w) == 0;
    }
    if (!found)
        waf_detail(detail, dl, "claim aud does not name this server");
    return found;
}

enum waf_jose_result waf_jwt_check(const char *payload, size_t len, const struct waf_jwt_expect *e,
                                   struct waf_jwt_facts *facts, char *detail, size_t detail_len)
{
    if (facts)
        memset(facts, 0, sizeof(*facts));
    if (payload == NULL || e == NULL || facts == NULL || e->aud == NULL || e->aud[0] == NULL ||
        e->now < 0 || e->now > NUMERIC_MAX || e->max_lifetime_s <= 0 ||
        e->max_lifetime_s > NUMERIC_MAX || e->leeway_s < 0 || e->leeway_s > MAX_LEEWAY) {
        waf_detail(detail, detail_len, "NULL argument or expectation out of range");
        return WAF_JOSE_ARG;
    }
    if (len > WAF_JOSE_MAX_TOKEN) {
        waf_detail(detail, detail_len, "payload of %zu bytes (at most %d)", len,
                   WAF_JOSE_MAX_TOKEN);
        return WAF_JOSE_MALFORMED;
    }
    json_t *c = NULL;
    enum waf_jose_result r =
        load_object(payload, len, "payload", WAF_JOSE_MALFORMED, &c, detail, detail_len);
    if (r != WAF_JOSE_OK)
        return r;
    struct waf_jwt_facts f;
    int64_t nbf = 0, now = e->now, leeway = e->leeway_s, life = e->max_lifetime_s;
    bool has_exp, has_iat, has_nbf;
    r = WAF_JOSE_CLAIMS;
    if (!claim_str(c, "iss", f.iss, detail, detail_len) ||
        !claim_str(c, "sub", f.sub, detail, detail_len) ||
        !claim_str(c, "jti", f.jti, detail, detail_len) ||
        !claim_aud(c, e->aud, detail, detail_len) ||
        !claim_time(c, "exp", true, &f.exp, &has_exp, detail, detail_len) ||
        !claim_time(c, "iat", false, &f.iat, &has_iat, detail, detail_len) ||
        !claim_time(c, "nbf", false, &nbf, &has_nbf, detail, detail_len))
        goto out;
    if (e->iss && strcmp(f.iss, e->iss) != 0)
        waf_detail(detail, detail_len, "claim iss is not the expected issuer");
    else if (e->sub_must_equal_iss && strcmp(f.sub, f.iss) != 0)
        waf_detail(detail, detail_len, "claim sub differs from iss (client assertion)");
    else if (f.exp <= now - leeway)
        waf_detail(detail, detail_len, "claim exp has passed (expired)");
    else if (has_iat && f.iat > now + leeway)
        waf_detail(detail, detail_len, "claim iat is in the future");
    else if (has_nbf && nbf > now + leeway)
        waf_detail(detail, detail_len, "claim nbf is in the future (not yet valid)");
    else if (f.exp - now > life + leeway)
        waf_detail(detail, detail_len, "claim exp is more than %ld s ahead (lifetime too long)",
                   e->max_lifetime_s);
    else if (has_iat && f.exp - f.iat > life + leeway)
        waf_detail(detail, detail_len, "claims exp - iat exceed %ld s (lifetime too long)",
                   e->max_lifetime_s);
    else
        r = WAF_JOSE_OK;
    if (r == WAF_JOSE_OK)
        *facts = f;
out:
    json_decref(c);
    return r;
}
