/* Private declarations of libimsauth. Nothing here is part of the ABI. */
#ifndef IMSAUTH_INTERNAL_H
#define IMSAUTH_INTERNAL_H

#include "imsauth/imsauth.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>

#define IMSAUTH_API __attribute__((visibility("default")))

/* Limits that bound every parse. */
#define IMSAUTH_MAX_KID_LEN      256
#define IMSAUTH_MAX_KEYS         64
#define IMSAUTH_MAX_IMPU         64
#define IMSAUTH_MAX_JWKS_LEN     (256 * 1024)
#define IMSAUTH_MAX_JOSE_HDR_LEN 2048
#define IMSAUTH_SHA256_LEN       32
#define IMSAUTH_N_ALGS           13

/* ---- base64url (b64url.c) ---- */
/* Decoded size of n base64url characters (no padding), or SIZE_MAX if n is impossible. */
size_t ims_b64url_decoded_len(size_t n);
/* Strict decode: base64url alphabet, no padding, canonical trailing bits. out must
 * hold ims_b64url_decoded_len(n) bytes. Returns false on any violation. */
bool ims_b64url_decode(const char *in, size_t n, uint8_t *out, size_t *outlen);
/* Encode without padding; out must hold 4*ceil(n/3)+1 bytes; NUL-terminates. */
size_t ims_b64url_encode(const uint8_t *in, size_t n, char *out);

/* ---- Authorization header (header.c) ---- */
/* Extracts the token span from a header value. On IMSAUTH_OK, tok and toklen point into
 * hdr. Errors: MISSING, MALFORMED, UNSUPPORTED_SCHEME, TOO_LARGE (detail says why). */
enum imsauth_result ims_header_parse(const uint8_t *hdr, size_t len, size_t max_token,
                                     const uint8_t **tok, size_t *toklen, char *detail,
                                     size_t dlen);

/* Cheap span of the plain-form token ("Bearer <token>") without checking its characters,
 * for the cache lookup only: a cache hit means the span equals (by SHA-256) a token that
 * passed ims_header_parse before. Returns false when the full parser must decide. */
bool ims_header_quick_span(const uint8_t *hdr, size_t len, size_t max_token, const uint8_t **tok,
                           size_t *toklen);

/* ---- keys (jwk.c) ---- */
enum ims_key_kind { IMS_KEY_EC, IMS_KEY_RSA, IMS_KEY_OKP, IMS_KEY_OCT };

struct ims_key {
    char *kid; /* NULL when the source gave none */
    enum ims_key_kind kind;
    unsigned algs;  /* algorithms this key may verify */
    EVP_PKEY *pkey; /* EC, RSA, OKP */
    uint8_t *secret;
    size_t secret_len; /* OCT */
    /* Verification contexts initialised once per allowed algorithm (index = bit number of
       enum imsauth_alg). Read-only after the key set is built; each verification works on
       its own copy (EVP_MD_CTX_copy_ex), so threads share them safely. */
    EVP_MD_CTX *vctx[IMSAUTH_N_ALGS];
};

struct ims_keyset {
    atomic_uint refs;
    uint64_t generation;
    size_t n;
    struct ims_key keys[IMSAUTH_MAX_KEYS];
};

struct ims_keyset *ims_keyset_new(void);
void ims_keyset_ref(struct ims_keyset *ks);
void ims_keyset_unref(struct ims_keyset *ks);
/* Parses a JWKS document (object with "keys") and appends its usable keys. Keys of unknown
 * kty, kty "oct" and keys with use other than "sig" are skipped; a key of a known kty that
 * is unusable (unknown curve, bad coordinates, short RSA modulus) fails the document.
 * Returns IMSAUTH_OK or IMSAUTH_ERR_KEYS with detail. */
enum imsauth_result ims_keyset_add_jwks(struct ims_keyset *ks, const char *json, size_t len,
                                        char *detail, size_t dlen);
/* Parses one JWK object (a json_t *, passed as void * to keep jansson out of this header). */
enum imsauth_result ims_keyset_add_jwk(struct ims_keyset *ks, const void *jwk, char *detail,
                                       size_t dlen);
enum imsauth_result ims_keyset_add_pem(struct ims_keyset *ks, const char *pem, const char *kid,
                                       char *detail, size_t dlen);
enum imsauth_result ims_keyset_add_secret(struct ims_keyset *ks, const uint8_t *s, size_t n,
                                          const char *kid, char *detail, size_t dlen);
/* Key for (alg, kid): with kid, the key of that kid; without, the only key that can
 * verify alg. Returns NULL and sets *why to UNKNOWN_KID or ALG_NOT_ALLOWED. */
const struct ims_key *ims_keyset_find(const struct ims_keyset *ks, unsigned alg, const char *kid,
                                      enum imsauth_result *why);

/* ---- algorithms and signatures (sig.c) ---- */
/* enum imsauth_alg bit for a JOSE alg name of length n, or 0. */
unsigned ims_alg_from_name(const char *name, size_t n);
const char *ims_alg_name(unsigned alg);

/* Message digests fetched once per context; shared read-only by all threads. */
struct ims_mds {
    EVP_MD *sha256, *sha384, *sha512;
};
bool ims_mds_load(struct ims_mds *m);
void ims_mds_free(struct ims_mds *m);

/* Prepares the per-algorithm verification contexts of every key for the algorithms in
 * algs. A key whose context cannot be prepared is verified the slow way. */
void ims_keyset_prepare(struct ims_keyset *ks, const struct ims_mds *m, unsigned algs);

/* Verifies sig over msg with key for alg (JOSE encodings: raw R||S for ECDSA). */
bool ims_sig_verify(const struct ims_mds *m, const struct ims_key *key, unsigned alg,
                    const uint8_t *msg, size_t msglen, const uint8_t *sig, size_t siglen);

/* ---- tokens (token.c) ---- */
struct imsauth_token {
    atomic_uint refs;
    int64_t exp, iat, nbf; /* nbf = INT64_MIN when absent */
    const char *iss, *sub, *impi, *client_id, *jti, *scope, *pool_lease, *wwsf;
    size_t n_impu;
    const char **impu;
    uint64_t generation; /* key set generation that verified the signature */
    char arena[];        /* strings and the impu pointer array */
};

/* Builds a token from the decoded payload bytes (JSON) and checks the static claims (iss,
 * aud, scope, presence and form). Writes *out (one reference) only on IMSAUTH_OK. */
struct ims_claim_policy {
    char **issuers;
    size_t n_issuers;
    const char *audience;
    const char *scope;
};
enum imsauth_result ims_token_from_claims(const uint8_t *json, size_t len,
                                          const struct ims_claim_policy *p,
                                          struct imsauth_token **out, char *detail, size_t dlen);
/* Compares SIP/tel URIs for IMPU equality (scheme and host case-insensitive, user part
 * exact, URI parameters and headers ignored, optional <> and display name stripped). */
bool ims_uri_equal(const char *a, const char *b);

/* ---- verified-token cache (cache.c) ---- */
struct ims_cache;
struct ims_cache *ims_cache_new(size_t entries);
void ims_cache_free(struct ims_cache *c);
/* Returns a new reference to the cached token for digest, or NULL. Entries whose exp is
 * at or before now or from an older key generation are dropped. */
struct imsauth_token *ims_cache_get(struct ims_cache *c, const uint8_t digest[32], int64_t now,
                                    uint64_t generation);
/* Inserts (takes its own reference); evicts the least recently used entry when full. */
void ims_cache_put(struct ims_cache *c, const uint8_t digest[32], struct imsauth_token *t);

/* ---- JWKS over HTTP (jwks_http.c) ---- */
struct ims_http_result {
    char *body; /* malloc'd, NUL-terminated, caller frees */
    size_t len;
    long status;
    long max_age; /* Cache-Control max-age, -1 when absent, 0 for no-cache/no-store */
};
enum imsauth_result ims_http_get(const char *url, unsigned timeout_s, const char *ca_file,
                                 size_t max_len, struct ims_http_result *r, char *detail,
                                 size_t dlen);
/* Parses a Cache-Control header value: max-age seconds, 0 for no-cache/no-store, -1 none. */
long ims_cache_control_max_age(const char *v, size_t n);

/* ---- context (ctx.c) ---- */
struct ims_source_file {
    char *path;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    char *doc; /* last document loaded successfully */
    size_t doc_len;
};

struct ims_source_url {
    char *url;
    char *doc;
    size_t doc_len;
    int64_t next_fetch;     /* monotonic ms */
    int64_t last_kid_fetch; /* monotonic ms of the last unknown-kid refetch */
    bool kid_fetched;       /* last_kid_fetch is set */
};

struct imsauth_ctx {
    struct ims_claim_policy policy;
    char *realm, *authz_server, *scope;
    unsigned algs, leeway;
    size_t max_token_len;
    struct ims_mds mds;

    pthread_mutex_t ks_lock; /* guards the ks pointer only (held for a ref count bump) */
    struct ims_keyset *ks;
    atomic_uint_fast64_t generation;

    /* Sources (only imsauth_refresh touches them, serialised by refresh_lock). */
    pthread_mutex_t refresh_lock;
    char *jwks_json;
    struct imsauth_pem_key *pem;
    size_t n_pem;
    uint8_t *secret;
    size_t secret_len;
    char *secret_kid;
    struct ims_source_file file;
    bool has_file;
    struct ims_source_url url;
    bool has_url;
    unsigned url_min, url_max, url_default, kid_interval, http_timeout;
    char *ca_file;
    atomic_bool want_kid_fetch;

    struct ims_cache *cache;
    imsauth_revoked_fn revoked;
    void *revoked_arg;
    imsauth_log_fn log;
    void *log_arg;

    atomic_uint_fast64_t n_verified, n_hits, n_misses, n_failures, n_reloads, n_reload_errors;
};

struct ims_keyset *ims_ctx_keys(struct imsauth_ctx *ctx); /* new reference */
void ims_log(const struct imsauth_ctx *ctx, enum imsauth_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* snprintf into an optional detail buffer. */
void ims_detail(char *detail, size_t dlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
