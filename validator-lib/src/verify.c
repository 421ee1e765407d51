/* The verification pipeline: header -> cache -> JWS -> claims -> time -> identity ->
 * revocation. */
#include "internal.h"

#include "json.h"

#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SIG_MAX 1024 /* decoded signature bytes: RSA-8192 */

/* Decodes a base64url segment into buf[cap]. */
static bool decode_segment(const char *seg, size_t n, uint8_t *buf, size_t cap, size_t *len)
{
    size_t need = ims_b64url_decoded_len(n);
    return need != SIZE_MAX && need <= cap && ims_b64url_decode(seg, n, buf, len);
}

/* Unescapes a string member of the JOSE header into out[cap]; false if absent, not a
 * string, or too long. */
static bool header_string(const struct ims_json_object *h, const char *name, char *out, size_t cap)
{
    const struct ims_json_value *v = ims_json_get(h, name);
    return v && v->type == IMS_JSON_STRING && ims_json_string(v, out, cap) != SIZE_MAX;
}

static bool typ_ok(const char *typ)
{
    return typ && (strcasecmp(typ, "at+jwt") == 0 || strcasecmp(typ, "application/at+jwt") == 0);
}

/* Full check of a token not found in the cache. On OK *out holds one reference. */
static enum imsauth_result verify_cold(struct imsauth_ctx *ctx, const char *tok, size_t n,
                                       struct imsauth_token **out, char *detail, size_t dlen)
{
    const char *d1 = memchr(tok, '.', n);
    const char *d2 = d1 ? memchr(d1 + 1, '.', n - (size_t)(d1 + 1 - tok)) : NULL;
    if (d1 == NULL || d2 == NULL) {
        ims_detail(detail, dlen, "token is not a compact JWS (needs 3 segments)");
        return IMSAUTH_ERR_MALFORMED_TOKEN;
    }
    if (memchr(d2 + 1, '.', n - (size_t)(d2 + 1 - tok))) {
        ims_detail(detail, dlen, "token has more than 3 segments (JWE is not supported)");
        return IMSAUTH_ERR_MALFORMED_TOKEN;
    }
    size_t hlen = (size_t)(d1 - tok), plen = (size_t)(d2 - d1 - 1);
    size_t slen = n - (size_t)(d2 + 1 - tok);
    if (hlen == 0 || plen == 0 || slen == 0 || hlen > IMSAUTH_MAX_JOSE_HDR_LEN) {
        ims_detail(detail, dlen, "empty or oversized JWS segment");
        return IMSAUTH_ERR_MALFORMED_TOKEN;
    }

    uint8_t hbuf[IMSAUTH_MAX_JOSE_HDR_LEN];
    size_t hbytes;
    struct ims_json_object hdr;
    if (!decode_segment(tok, hlen, hbuf, sizeof(hbuf), &hbytes)) {
        ims_detail(detail, dlen, "JOSE header is not base64url");
        return IMSAUTH_ERR_MALFORMED_TOKEN;
    }
    if (ims_json_parse_object(hbuf, hbytes, &hdr) != IMS_JSON_OK) {
        ims_detail(detail, dlen, "JOSE header is not a JSON object");
        return IMSAUTH_ERR_MALFORMED_TOKEN;
    }
    enum imsauth_result r = IMSAUTH_OK;
    struct ims_keyset *ks = NULL;
    uint8_t *payload = NULL;
    char alg_s[16], typ[32], kid[IMSAUTH_MAX_KID_LEN + 1];
    if (!header_string(&hdr, "alg", alg_s, sizeof(alg_s))) {
        ims_detail(detail, dlen, "JOSE header has no usable alg");
        r = ims_json_get(&hdr, "alg") ? IMSAUTH_ERR_ALG_NOT_ALLOWED : IMSAUTH_ERR_MALFORMED_TOKEN;
        goto out;
    }
    unsigned alg = ims_alg_from_name(alg_s, strlen(alg_s));
    if ((alg & ctx->algs) == 0) {
        ims_detail(detail, dlen, "alg is not allowed");
        r = IMSAUTH_ERR_ALG_NOT_ALLOWED;
        goto out;
    }
    if (!header_string(&hdr, "typ", typ, sizeof(typ)) || !typ_ok(typ)) {
        ims_detail(detail, dlen, "typ is not at+jwt");
        r = IMSAUTH_ERR_WRONG_TYPE;
        goto out;
    }
    if (ims_json_get(&hdr, "crit")) {
        ims_detail(detail, dlen, "crit header parameters are not supported");
        r = IMSAUTH_ERR_MALFORMED_TOKEN;
        goto out;
    }
    bool has_kid = ims_json_get(&hdr, "kid") != NULL;
    if (has_kid && (!header_string(&hdr, "kid", kid, sizeof(kid)) || kid[0] == '\0')) {
        ims_detail(detail, dlen, "kid is not a string of 1..%d bytes", IMSAUTH_MAX_KID_LEN);
        r = IMSAUTH_ERR_MALFORMED_TOKEN;
        goto out;
    }
    /* jku, x5u, jwk and x5c are ignored on purpose: keys come only from configuration. */
    ks = ims_ctx_keys(ctx);
    const struct ims_key *key = ims_keyset_find(ks, alg, has_kid ? kid : NULL, &r);
    if (key == NULL) {
        if (r == IMSAUTH_ERR_UNKNOWN_KID) {
            ims_detail(detail, dlen, "no key for this token's kid and alg %s", ims_alg_name(alg));
            atomic_store(&ctx->want_kid_fetch, true);
        } else {
            ims_detail(detail, dlen, "key of this kid cannot verify alg %s", ims_alg_name(alg));
        }
        goto out;
    }
    uint8_t sig[SIG_MAX];
    size_t siglen;
    if (ims_b64url_decoded_len(slen) > sizeof(sig) ||
        !ims_b64url_decode(d2 + 1, slen, sig, &siglen)) {
        ims_detail(detail, dlen, "signature is not base64url");
        r = IMSAUTH_ERR_MALFORMED_TOKEN;
        goto out;
    }
    if (!ims_sig_verify(&ctx->mds, key, alg, (const uint8_t *)tok, (size_t)(d2 - tok), sig,
                        siglen)) {
        ERR_clear_error();
        ims_detail(detail, dlen, "signature does not verify (alg %s)", ims_alg_name(alg));
        r = IMSAUTH_ERR_BAD_SIGNATURE;
        goto out;
    }
    uint8_t stack[4096];
    size_t pcap = ims_b64url_decoded_len(plen), pbytes;
    payload = pcap <= sizeof(stack) ? stack : malloc(pcap);
    if (payload == NULL) {
        r = IMSAUTH_ERR_NOMEM;
        goto out;
    }
    if (!decode_segment(d1 + 1, plen, payload, pcap, &pbytes)) {
        ims_detail(detail, dlen, "payload is not base64url");
        r = IMSAUTH_ERR_MALFORMED_TOKEN;
        goto out;
    }
    r = ims_token_from_claims(payload, pbytes, &ctx->policy, out, detail, dlen);
    if (r == IMSAUTH_OK)
        (*out)->generation = ks->generation;
out:
    ims_keyset_unref(ks);
    if (payload != stack)
        free(payload);
    return r;
}

static enum imsauth_result check_request(struct imsauth_ctx *ctx, const struct imsauth_token *t,
                                         const struct imsauth_request *req, int64_t now,
                                         char *detail, size_t dlen)
{
    if (now >= t->exp + (int64_t)ctx->leeway) { /* RFC 7519: now must be before exp */
        ims_detail(detail, dlen, "token expired %lld s ago", (long long)(now - t->exp));
        return IMSAUTH_ERR_EXPIRED;
    }
    if ((t->nbf != INT64_MIN && t->nbf > now + (int64_t)ctx->leeway) ||
        t->iat > now + (int64_t)ctx->leeway) {
        ims_detail(detail, dlen, "token not valid yet (nbf/iat in the future)");
        return IMSAUTH_ERR_NOT_YET_VALID;
    }
    if (req && req->impu && !imsauth_token_grants(t, req->impu)) {
        ims_detail(detail, dlen, "the identity used is not among the token's impu");
        return IMSAUTH_ERR_IDENTITY_NOT_GRANTED;
    }
    if (ctx->revoked) {
        enum imsauth_revocation rv = ctx->revoked(t->jti, t->exp, ctx->revoked_arg);
        if (rv == IMSAUTH_IS_REVOKED) {
            ims_detail(detail, dlen, "token revoked");
            return IMSAUTH_ERR_REVOKED;
        }
        if (rv != IMSAUTH_NOT_REVOKED) {
            ims_detail(detail, dlen, "revocation state unknown; failing closed");
            return IMSAUTH_ERR_UNAVAILABLE;
        }
    }
    return IMSAUTH_OK;
}

IMSAUTH_API enum imsauth_result imsauth_verify(struct imsauth_ctx *ctx, const uint8_t *hdr,
                                               size_t len, const struct imsauth_request *req,
                                               struct imsauth_verdict *v)
{
    char *detail = v->detail;
    size_t dlen = sizeof(v->detail);
    detail[0] = '\0';
    v->token = NULL;
    int64_t now = req && req->now ? req->now : (int64_t)time(NULL);
    const uint8_t *tok = NULL;
    size_t n = 0;
    uint8_t digest[IMSAUTH_SHA256_LEN];
    struct imsauth_token *t = NULL;
    enum imsauth_result r = IMSAUTH_OK;
    bool hashed = false;
    /* Cache first: a hit needs only the token's span and its hash. */
    if (ctx->cache && ims_header_quick_span(hdr, len, ctx->max_token_len, &tok, &n)) {
        if (!EVP_Digest(tok, n, digest, NULL, ctx->mds.sha256, NULL)) {
            r = IMSAUTH_ERR_NOMEM;
            goto done;
        }
        hashed = true;
        t = ims_cache_get(ctx->cache, digest, now - (int64_t)ctx->leeway,
                          atomic_load(&ctx->generation));
    }
    if (t) {
        atomic_fetch_add_explicit(&ctx->n_hits, 1, memory_order_relaxed);
    } else {
        const uint8_t *quick = tok;
        size_t quick_n = n;
        r = ims_header_parse(hdr, len, ctx->max_token_len, &tok, &n, detail, dlen);
        if (r != IMSAUTH_OK)
            goto done;
        if (ctx->cache) {
            if (!hashed || tok != quick || n != quick_n) {
                /* Another form (access_token="..."): look the token itself up. */
                if (!EVP_Digest(tok, n, digest, NULL, ctx->mds.sha256, NULL)) {
                    r = IMSAUTH_ERR_NOMEM;
                    goto done;
                }
                t = ims_cache_get(ctx->cache, digest, now - (int64_t)ctx->leeway,
                                  atomic_load(&ctx->generation));
            }
        }
        if (t) {
            atomic_fetch_add_explicit(&ctx->n_hits, 1, memory_order_relaxed);
        } else {
            if (ctx->cache)
                atomic_fetch_add_explicit(&ctx->n_misses, 1, memory_order_relaxed);
            r = verify_cold(ctx, (const char *)tok, n, &t, detail, dlen);
            if (r != IMSAUTH_OK)
                goto done;
            if (ctx->cache && t->exp + (int64_t)ctx->leeway > now)
                ims_cache_put(ctx->cache, digest, t);
        }
    }
    r = check_request(ctx, t, req, now, detail, dlen);
    if (r == IMSAUTH_OK) {
        v->token = t;
        t = NULL;
    }
done:
    imsauth_token_release(t);
    v->result = r;
    v->sip_status = imsauth_sip_status(r);
    v->error = imsauth_rfc6750_error(r);
    if (r == IMSAUTH_OK) {
        atomic_fetch_add_explicit(&ctx->n_verified, 1, memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&ctx->n_failures, 1, memory_order_relaxed);
        ims_log(ctx, IMSAUTH_LOG_DEBUG, "%s %s rejected: %s (%s)",
                req && req->method ? req->method : "request",
                req && req->request_uri ? req->request_uri : "", imsauth_strerror(r), detail);
    }
    return r;
}
