/*
 * waf-server cryptography: the ES256 signing key (RFC 7638 kid, public JWK, sealed
 * storage under a key-encryption key), compact JWS for access tokens
 * (docs/token-profile.md §3, §11), client secrets (random, HMAC-SHA-256 at rest) and user
 * passwords (scrypt, PHC string).
 *
 * Every function is thread-safe and keeps no global state. A struct waf_sigkey is
 * immutable after it is made, so any number of threads may sign with one key at once.
 * Secret intermediates are wiped with OPENSSL_cleanse before their memory is released.
 * Functions that can fail for several reasons take an optional detail buffer (may be
 * NULL) that receives one NUL-terminated line; it never contains key material, secrets or
 * passwords.
 */
#ifndef WAF_WCRYPTO_H
#define WAF_WCRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Values are never reused. */
enum waf_crypto_result {
    WAF_CRYPTO_OK = 0,
    WAF_CRYPTO_NOMEM,         /* an allocation failed */
    WAF_CRYPTO_INTERNAL,      /* OpenSSL failed (RNG, key generation, KDF, ...) */
    WAF_CRYPTO_ARG,           /* an argument is out of range (NULL, kid form, sizes) */
    WAF_CRYPTO_TOO_LARGE,     /* the result would exceed its cap (token, PHC buffer) */
    WAF_CRYPTO_BLOB_FORMAT,   /* sealed blob too short or too long */
    WAF_CRYPTO_BLOB_VERSION,  /* sealed blob of an unknown version */
    WAF_CRYPTO_BLOB_AUTH,     /* blob does not authenticate: wrong KEK, wrong kid, tampered */
    WAF_CRYPTO_KEY_INVALID,   /* decrypted key is not a valid P-256 private key */
    WAF_CRYPTO_KID_MISMATCH,  /* decrypted key's thumbprint is not the kid */
    WAF_CRYPTO_PHC_FORMAT,    /* password hash string malformed */
    WAF_CRYPTO_PHC_ALGORITHM, /* password hash of an algorithm other than scrypt */
    WAF_CRYPTO_PHC_PARAMS,    /* scrypt parameters out of the accepted ranges */
    WAF_CRYPTO_MISMATCH,      /* password or secret does not match */
};
/* Static English name of r ("unknown" for values outside the enum). */
const char *waf_crypto_strerror(enum waf_crypto_result r);

/* Constant-time comparison of n bytes (CRYPTO_memcmp); true when equal. */
bool waf_ct_equal(const void *a, const void *b, size_t n);

/* ---- base64url (RFC 4648 §5, no padding) ---- */

/* Characters waf_b64url_encode writes for n bytes (without the NUL). */
#define WAF_B64URL_LEN(n) (((n) / 3) * 4 + ((n) % 3 ? (n) % 3 + 1 : 0))
/* Writes the encoding of in[0..n) and a NUL to out, which must hold WAF_B64URL_LEN(n) + 1
 * characters. Returns the length written (without the NUL). */
size_t waf_b64url_encode(const uint8_t *in, size_t n, char *out);
/* Strict decoding of in[0..n): alphabet only, no padding or whitespace, n % 4 != 1,
 * unused trailing bits zero. out must hold n / 4 * 3 + 2 bytes. Returns false on any
 * violation (out may then hold partial output). */
bool waf_b64url_decode(const char *in, size_t n, uint8_t *out, size_t *outlen);

/* ---- ES256 signing key ---- */

struct waf_sigkey;

#define WAF_KID_LEN       43   /* base64url SHA-256 thumbprint */
#define WAF_SEAL_KEK_LEN  32   /* AES-256-GCM key-encryption key */
#define WAF_SEAL_VERSION  1    /* first byte of a sealed blob */
#define WAF_SEAL_MAX      4096 /* longest blob waf_sigkey_open accepts */
#define WAF_JWS_MAX_TOKEN 8192 /* longest token waf_jws_sign produces (profile §2) */

/* Makes a new P-256 key. On success *out is a new key the caller frees with
 * waf_sigkey_free(); on failure *out is untouched. */
enum waf_crypto_result waf_sigkey_generate(struct waf_sigkey **out, char *detail,
                                           size_t detail_len);
/* Frees the key and wipes its private half. Accepts NULL. */
void waf_sigkey_free(struct waf_sigkey *k);

/* RFC 7638 JWK thumbprint (SHA-256, base64url, WAF_KID_LEN characters); borrowed from k. */
const char *waf_sigkey_kid(const struct waf_sigkey *k);
/* Public JWK as compact JSON text
 * {"kty":"EC","crv":"P-256","x":..,"y":..,"kid":..,"use":"sig","alg":"ES256"};
 * borrowed from k (lives as long as k). */
const char *waf_sigkey_public_jwk(const struct waf_sigkey *k);

/*
 * Exports the private key (PKCS#8 DER) sealed with AES-256-GCM under kek:
 * blob = version byte 1 || 12-byte random nonce || ciphertext || 16-byte tag, with the kid
 * (its WAF_KID_LEN characters) as additional authenticated data. On success *blob is a new
 * buffer of *len bytes the caller frees with free(); on failure *blob and *len are untouched.
 */
enum waf_crypto_result waf_sigkey_seal(const struct waf_sigkey *k,
                                       const uint8_t kek[WAF_SEAL_KEK_LEN], uint8_t **blob,
                                       size_t *len, char *detail, size_t detail_len);
/*
 * Reverses waf_sigkey_seal: authenticates and decrypts blob[0..len) under kek with kid as
 * additional data, loads the key (P-256 only, private and public halves consistent) and
 * checks that its thumbprint equals kid. On success *out is a new key the caller frees
 * with waf_sigkey_free(); on failure *out is untouched. kid must have the schema's form
 * ^[A-Za-z0-9._-]{1,64}$ (WAF_CRYPTO_ARG otherwise).
 */
enum waf_crypto_result waf_sigkey_open(const uint8_t kek[WAF_SEAL_KEK_LEN], const char *kid,
                                       const uint8_t *blob, size_t len, struct waf_sigkey **out,
                                       char *detail, size_t detail_len);

/* ---- JWS ---- */

/*
 * Signs payload_json[0..len) (the JWT claims as compact JSON, len > 0; the caller is
 * responsible for its content, it is not parsed here) with k and returns the compact JWS
 * b64url(header).b64url(payload).b64url(R||S), header exactly
 * {"typ":"at+jwt","alg":"ES256","kid":"<kid>"}. On success *out_token is a new
 * NUL-terminated string the caller frees with free(); on failure it is untouched. Tokens
 * longer than WAF_JWS_MAX_TOKEN characters give WAF_CRYPTO_TOO_LARGE. Safe to call from
 * many threads with the same key.
 */
enum waf_crypto_result waf_jws_sign(const struct waf_sigkey *k, const char *payload_json,
                                    size_t len, char **out_token, char *detail, size_t detail_len);

/* ---- Verification (introspection, revocation) ---- */

struct waf_pubkey;

/* Parses a public EC P-256 JWK (as waf_sigkey_public_jwk() writes it: kty EC, crv P-256,
 * x and y of 32 bytes; other members ignored). On success *out is a new key the caller
 * frees with waf_pubkey_free(). */
enum waf_crypto_result waf_pubkey_from_jwk(const char *jwk_json, struct waf_pubkey **out,
                                           char *detail, size_t detail_len);
void waf_pubkey_free(struct waf_pubkey *k); /* accepts NULL */

/* The kid of a compact JWS's header (at most 64 characters) into kid[65]; false when the
 * token is not three base64url segments with a JSON header holding a string kid. */
bool waf_jws_kid(const char *token, size_t len, char kid[65]);

/*
 * Verifies token[0..len) as a compact JWS whose header is {"typ":"at+jwt","alg":"ES256",
 * "kid":...} (exactly these three members; what waf_jws_sign writes) and whose signature
 * (64-byte R||S) checks with k. On success *payload is the decoded payload (NUL-terminated,
 * caller frees); WAF_CRYPTO_MISMATCH when the signature or header does not check,
 * WAF_CRYPTO_ARG when the token is malformed.
 */
enum waf_crypto_result waf_jws_verify(const struct waf_pubkey *k, const char *token, size_t len,
                                      char **payload);

/* ---- Client secrets ---- */

#define WAF_SECRET_LEN 43 /* characters of a generated secret (32 bytes base64url) */

/* Writes 32 random bytes (RAND_bytes) as base64url without padding and a NUL to out.
 * Returns WAF_CRYPTO_OK or WAF_CRYPTO_INTERNAL (out is then an empty string). */
enum waf_crypto_result waf_secret_generate(char out[WAF_SECRET_LEN + 1]);
/* mac = HMAC-SHA-256(server_key, secret) over strlen(secret) bytes. Returns WAF_CRYPTO_OK,
 * WAF_CRYPTO_ARG (NULL argument) or WAF_CRYPTO_INTERNAL. */
enum waf_crypto_result waf_secret_mac(const uint8_t server_key[32], const char *secret,
                                      uint8_t mac[32]);
/* Recomputes the MAC of secret and compares it with mac in constant time. Returns
 * WAF_CRYPTO_OK on a match, WAF_CRYPTO_MISMATCH otherwise, or the error of
 * waf_secret_mac(). */
enum waf_crypto_result waf_secret_verify(const uint8_t server_key[32], const char *secret,
                                         const uint8_t mac[32]);

/* ---- Passwords (scrypt) ---- */

/* Default log2(N): with r=8, p=1 one hash takes about 43 ms and 16 MiB on the development
 * machine (ln 15 takes about 150 ms and 32 MiB). */
#define WAF_SCRYPT_LN_DEFAULT 14
#define WAF_SCRYPT_LN_MIN     10
#define WAF_SCRYPT_LN_MAX     20
#define WAF_PASSWORD_MAX      1024 /* longest password in bytes */
#define WAF_PHC_MAX           256  /* longest PHC string accepted, NUL excluded */

/*
 * Hashes password (1..WAF_PASSWORD_MAX bytes) with scrypt (N = 2^ln, r = 8, p = 1; ln 0
 * means WAF_SCRYPT_LN_DEFAULT, otherwise WAF_SCRYPT_LN_MIN..WAF_SCRYPT_LN_MAX), a 16-byte
 * random salt and a 32-byte output, and writes the PHC string
 * $scrypt$ln=<ln>,r=8,p=1$<salt>$<hash> (standard base64 alphabet, no padding) with its NUL
 * to phc[phclen]. About 100 bytes: WAF_PHC_MAX + 1 is always enough.
 */
enum waf_crypto_result waf_password_hash(const char *password, unsigned ln, char *phc,
                                         size_t phclen, char *detail, size_t detail_len);
/*
 * Checks password against a PHC string made by waf_password_hash (or another scrypt
 * implementation writing the same form). Strict: id "scrypt" only, parameters exactly
 * "ln=..,r=..,p=.." in that order as decimals without leading zeros, ln 10..20, r 1..32,
 * p 1..16, memory 128*r*(N+p+2) bytes within 1025 MiB (else WAF_CRYPTO_PHC_PARAMS), salt
 * 8..64 bytes and hash 16..64 bytes (else WAF_CRYPTO_PHC_PARAMS) in canonical unpadded
 * base64. Returns WAF_CRYPTO_OK on a match, WAF_CRYPTO_MISMATCH on a wrong password (also
 * for one longer than WAF_PASSWORD_MAX), or the error. Takes as long as the hash's
 * parameters make it: the PHC string must come from the server's own database.
 */
enum waf_crypto_result waf_password_verify(const char *password, const char *phc, char *detail,
                                           size_t detail_len);

#endif
