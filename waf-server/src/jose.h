/*
 * Verification of JWTs signed by OAuth clients with their registered keys: private_key_jwt
 * client assertions (RFC 7523 §2.2, §3) and portal subject tokens of RFC 8693 token
 * exchange. The keys come from the client's registered JWKS (RFC 7517, public keys only).
 *
 * Accepted algorithms (RFC 7518, RFC 8037): ES256 (EC P-256), ES384 (EC P-384), RS256 and
 * PS256 (RSA of 2048 to 4096 bits), EdDSA (OKP Ed25519). Never "none", HS*, or anything else.
 *
 * Every function is thread-safe and keeps no global state. A struct waf_jwks is immutable
 * after waf_jwks_parse(), so any number of threads may verify with one set at once.
 * Functions that can fail for several reasons take an optional detail buffer (may be NULL)
 * that receives one NUL-terminated line naming the field or claim at fault; it never
 * contains key material, the token or claim values.
 */
#ifndef WAF_JOSE_H
#define WAF_JOSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WAF_JOSE_MAX_TOKEN 8192  /* longest compact JWS accepted, in bytes */
#define WAF_JWKS_MAX_LEN   65536 /* longest JWKS text accepted, in bytes */
#define WAF_JWKS_MAX_KEYS  16    /* most keys in one JWKS */
#define WAF_JOSE_MAX_KID   256   /* longest kid of a JWK, in bytes */
#define WAF_JWT_MAX_STR    256   /* longest iss, sub, jti, in bytes */

/* Values are never reused. */
enum waf_jose_result {
    WAF_JOSE_OK = 0,
    WAF_JOSE_NOMEM,     /* an allocation failed */
    WAF_JOSE_MALFORMED, /* not a compact JWS, too long, bad base64url, header or payload not a
                           JSON object, duplicate member names, member of the wrong type */
    WAF_JOSE_ALG,       /* alg missing or not allowed (none, HS*, unknown), or crit present */
    WAF_JOSE_TYP,       /* typ is not the expected one */
    WAF_JOSE_NO_KEY,    /* no key of the JWKS fits the header's kid and alg */
    WAF_JOSE_SIGNATURE, /* the signature does not verify (or has the wrong length) */
    WAF_JOSE_JWKS,      /* JWKS malformed or too large, or one of its keys invalid */
    WAF_JOSE_CLAIMS,    /* a claim is missing, malformed or fails its check (detail says which) */
    WAF_JOSE_ARG,       /* an argument is NULL or out of range */
    WAF_JOSE_INTERNAL,  /* OpenSSL failed for a reason other than a bad signature */
};
/* Static English name of r ("unknown" for values outside the enum). */
const char *waf_jose_strerror(enum waf_jose_result r);

/* ---- Key sets ---- */

struct waf_jwks;

/*
 * Parses json[0..len) (at most WAF_JWKS_MAX_LEN bytes) as a JWKS: an object whose member
 * "keys" is an array of 1..WAF_JWKS_MAX_KEYS JWK objects; other members are ignored. Every
 * key must be valid or the whole set is refused (WAF_JOSE_JWKS, detail naming the key's
 * index and member):
 *  - kty "EC" (crv P-256 or P-384, x and y of the curve's full length, point on the curve),
 *    "RSA" (n odd, of 2048 to 4096 bits; e odd, > 1, at most 4 bytes) or "OKP" (crv Ed25519,
 *    x of 32 bytes); kty "oct" and unknown types are refused;
 *  - no private members (d, p, q, dp, dq, qi, oth, k);
 *  - kid, when present, a string of 1..WAF_JOSE_MAX_KID bytes, unique in the set;
 *  - use, when present, a string; keys whose use is not "sig" are checked as above except
 *    for their key material and alg, and are never used for verification;
 *  - alg, when present on a signing key, one of the accepted algorithms and fitting the key;
 *    the key then verifies only that algorithm.
 * At least one key must be a signing key. Duplicate member names are refused.
 * On success *out is a new set the caller frees with waf_jwks_free(); on failure *out is
 * untouched.
 */
enum waf_jose_result waf_jwks_parse(const char *json, size_t len, struct waf_jwks **out,
                                    char *detail, size_t detail_len);
/* Frees the set. Accepts NULL. */
void waf_jwks_free(struct waf_jwks *ks);
/* Number of signing keys of ks (keys usable for verification); 0 for NULL. */
size_t waf_jwks_count(const struct waf_jwks *ks);

/* ---- Compact JWS ---- */

/*
 * Verifies token[0..len) (at most WAF_JOSE_MAX_TOKEN bytes) as a compact JWS (RFC 7515)
 * signed with a key of ks. The header must be a JSON object without duplicate names and
 * without crit, with alg one of the accepted algorithms. A header kid selects the key with
 * that kid (WAF_JOSE_NO_KEY when there is none or it does not fit alg); without kid every
 * signing key that fits alg is tried. expected_typ NULL accepts any typ or none; otherwise
 * the header's typ must equal it ignoring ASCII case, an "application/" prefix being
 * optional on either side (RFC 7515 §4.1.9). The payload must be a JSON object without
 * duplicate names (its claims are not checked here: see waf_jwt_check()). Keys come only from
 * ks: header members jwk, jku, x5u and x5c are ignored.
 * On success *payload is a new NUL-terminated string (the decoded payload) the caller frees
 * with free(), and *plen its length; on failure both are untouched.
 */
enum waf_jose_result waf_jose_verify(const struct waf_jwks *ks, const char *token, size_t len,
                                     const char *expected_typ, char **payload, size_t *plen,
                                     char *detail, size_t detail_len);

/* ---- Claims of client-signed JWTs ---- */

/* What waf_jwt_check() requires. Borrowed for the call only. */
struct waf_jwt_expect {
    const char *iss;         /* exact issuer required, or NULL for any */
    const char *const *aud;  /* NULL-terminated list of at least one accepted audience */
    int64_t now;             /* current time, Unix seconds */
    long max_lifetime_s;     /* > 0: exp - now, and exp - iat when iat is present, at most this
                                plus leeway_s */
    long leeway_s;           /* 0..3600: clock skew allowed on exp, iat, nbf and lifetime */
    bool sub_must_equal_iss; /* RFC 7523 §3 client assertion: sub must equal iss */
};

/* What waf_jwt_check() found (for the caller's jti replay check and logging). */
struct waf_jwt_facts {
    char iss[WAF_JWT_MAX_STR + 1];
    char sub[WAF_JWT_MAX_STR + 1];
    char jti[WAF_JWT_MAX_STR + 1];
    int64_t exp;
    int64_t iat; /* 0 when absent */
};

/*
 * Checks the claims of payload[0..len) (a JSON object without duplicate names, at most
 * WAF_JOSE_MAX_TOKEN bytes; else WAF_JOSE_MALFORMED) against e:
 *  - iss, sub, jti: required strings of 1..WAF_JWT_MAX_STR bytes without control
 *    characters (C0, DEL, C1); iss equal to e->iss when that is set; sub equal to iss when
 *    e->sub_must_equal_iss;
 *  - aud: required, a string or a non-empty array of strings, one of them in e->aud;
 *  - exp: required integer NumericDate (0..253402300799), exp > now - leeway;
 *  - iat, nbf: optional integer NumericDates, neither later than now + leeway;
 *  - lifetime: exp - now and, with iat, exp - iat at most max_lifetime_s + leeway_s.
 * Other claims are ignored. Returns WAF_JOSE_CLAIMS with a detail naming the claim,
 * WAF_JOSE_ARG for a bad e. facts is cleared first and filled only on success.
 */
enum waf_jose_result waf_jwt_check(const char *payload, size_t len, const struct waf_jwt_expect *e,
                                   struct waf_jwt_facts *facts, char *detail, size_t detail_len);

#endif
