/*
 * libimsauth: verify SIP "Authorization: Bearer" access tokens (RFC 8898, RFC 9068 JWT
 * profile of docs/token-profile.md) for a P-CSCF serving WebRTC clients (3GPP TS 24.371),
 * and build the headers that go with the decision: the Trusted Node Authentication
 * "Authorization: Digest ... integrity-protected=\"auth-done\"" header for the S-CSCF and
 * the "Bearer" challenge for 401/407 responses.
 *
 * Thread safety: one struct imsauth_ctx may be shared by any number of threads.
 * imsauth_verify(), the builders and the token accessors may be called concurrently.
 * imsauth_refresh() may run concurrently with them (it swaps the key set atomically:
 * a verification sees either the whole old or the whole new key set); run at most one
 * imsauth_refresh() per context at a time. imsauth_ctx_free() must not race any other call
 * on the same context. A struct imsauth_token is immutable and reference counted.
 *
 * I/O: imsauth_verify() never performs I/O of its own (no file, network or clock access
 * beyond time(NULL) when the caller passes now = 0). Key reloads happen only in
 * imsauth_refresh(), which the host calls from a timer or a thread of its choosing. The
 * optional revocation callback is the host's; the Redis-backed one in imsauth_redis.h does
 * a Redis round trip on a local-cache miss, as documented there.
 *
 * The library prints nothing and never logs a token; diagnostics go to the log callback.
 * Exported symbols all start with imsauth_.
 */
#ifndef IMSAUTH_IMSAUTH_H
#define IMSAUTH_IMSAUTH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IMSAUTH_VERSION_MAJOR 1
#define IMSAUTH_VERSION_MINOR 0
#define IMSAUTH_VERSION_PATCH 0

/*
 * Outcome of a call. Values are part of the ABI and are never reused or renumbered;
 * new values are only appended.
 */
enum imsauth_result {
    IMSAUTH_OK = 0,
    /* Verification outcomes (imsauth_verify). */
    IMSAUTH_ERR_MISSING = 1,   /* no credentials at all */
    IMSAUTH_ERR_MALFORMED = 2, /* Authorization value syntax is broken (400) */
    IMSAUTH_ERR_TOO_LARGE = 3, /* token over max_token_len (or value over max_token_len + 64) */
    IMSAUTH_ERR_UNSUPPORTED_SCHEME = 4, /* credentials of another scheme (e.g. Digest) */
    IMSAUTH_ERR_MALFORMED_TOKEN = 5,    /* not a decodable compact JWS */
    IMSAUTH_ERR_WRONG_TYPE = 6,         /* JOSE typ is not at+jwt */
    IMSAUTH_ERR_ALG_NOT_ALLOWED = 7,    /* alg not allowed, or not usable with the key */
    IMSAUTH_ERR_UNKNOWN_KID = 8,        /* no key with the kid; kid absent: not exactly one fit */
    IMSAUTH_ERR_BAD_SIGNATURE = 9,      /* signature does not verify */
    IMSAUTH_ERR_MISSING_CLAIM = 10,     /* a required claim is absent (scope: INSUFFICIENT_SCOPE) */
    IMSAUTH_ERR_BAD_CLAIM = 11,         /* a claim has the wrong type or form */
    IMSAUTH_ERR_WRONG_ISSUER = 12,      /* iss not accepted */
    IMSAUTH_ERR_WRONG_AUDIENCE = 13,    /* aud does not contain our audience */
    IMSAUTH_ERR_EXPIRED = 14,           /* exp + leeway is in the past */
    IMSAUTH_ERR_NOT_YET_VALID = 15,     /* nbf or iat - leeway is in the future */
    IMSAUTH_ERR_INSUFFICIENT_SCOPE = 16,   /* scope lacks the required scope */
    IMSAUTH_ERR_IDENTITY_NOT_GRANTED = 17, /* the IMPU used is not in the token's impu */
    IMSAUTH_ERR_REVOKED = 18,              /* the revocation check says revoked */
    IMSAUTH_ERR_UNAVAILABLE = 19,          /* revocation state unknown, failing closed */
    /* Call outcomes (configuration, builders, refresh). */
    IMSAUTH_ERR_INVALID_ARG = 40,  /* bad option or argument; detail says which */
    IMSAUTH_ERR_NOMEM = 41,        /* allocation failed */
    IMSAUTH_ERR_BUFFER_SMALL = 42, /* caller buffer too small; *needed says how much */
    IMSAUTH_ERR_KEYS = 43,         /* key material could not be loaded or parsed */
    IMSAUTH_ERR_IO = 44,           /* file or network source failed */
};

/* Short stable name ("expired", "bad_signature", ...); used as "reason" in JSON output. */
const char *imsauth_strerror(enum imsauth_result r);
/* SIP status for a verification outcome: 200 for OK, 400, 401, 403 or 503; 500 for call
 * errors (e.g. IMSAUTH_ERR_NOMEM) and unknown values. */
int imsauth_sip_status(enum imsauth_result r);
/* RFC 6750 error code ("invalid_request", "invalid_token", "insufficient_scope") or NULL
 * when the challenge carries no error (missing, unsupported_scheme, identity_not_granted,
 * unavailable, call errors). */
const char *imsauth_rfc6750_error(enum imsauth_result r);

/* Signature algorithms, as a bit set. */
enum imsauth_alg {
    IMSAUTH_ALG_ES256 = 1u << 0,
    IMSAUTH_ALG_ES384 = 1u << 1,
    IMSAUTH_ALG_ES512 = 1u << 2,
    IMSAUTH_ALG_RS256 = 1u << 3,
    IMSAUTH_ALG_RS384 = 1u << 4,
    IMSAUTH_ALG_RS512 = 1u << 5,
    IMSAUTH_ALG_PS256 = 1u << 6,
    IMSAUTH_ALG_PS384 = 1u << 7,
    IMSAUTH_ALG_PS512 = 1u << 8,
    IMSAUTH_ALG_EDDSA = 1u << 9, /* Ed25519 */
    IMSAUTH_ALG_HS256 = 1u << 10,
    IMSAUTH_ALG_HS384 = 1u << 11,
    IMSAUTH_ALG_HS512 = 1u << 12,
};
#define IMSAUTH_ALGS_DEFAULT                                                                       \
    (IMSAUTH_ALG_ES256 | IMSAUTH_ALG_ES384 | IMSAUTH_ALG_RS256 | IMSAUTH_ALG_PS256 |               \
     IMSAUTH_ALG_EDDSA)

enum imsauth_log_level {
    IMSAUTH_LOG_ERR = 3,
    IMSAUTH_LOG_WARN = 4,
    IMSAUTH_LOG_INFO = 6,
    IMSAUTH_LOG_DEBUG = 7
};
/* Log sink; msg is borrowed for the duration of the call and never contains a token. */
typedef void (*imsauth_log_fn)(enum imsauth_log_level level, const char *msg, void *arg);

enum imsauth_revocation {
    IMSAUTH_NOT_REVOKED = 0,
    IMSAUTH_IS_REVOKED = 1,
    IMSAUTH_REVOCATION_UNKNOWN = 2
};
/*
 * Revocation check, asked with the token's jti and exp on every successful verification
 * (cache hits included). Called from the verifying thread; must be thread safe. Returning
 * IMSAUTH_REVOCATION_UNKNOWN makes the verification fail closed (IMSAUTH_ERR_UNAVAILABLE).
 */
typedef enum imsauth_revocation (*imsauth_revoked_fn)(const char *jti, int64_t exp, void *arg);

/* A PEM-encoded public key (SubjectPublicKeyInfo) with an optional kid. */
struct imsauth_pem_key {
    const char *pem;
    const char *kid; /* NULL: the key matches tokens without kid only */
};

/*
 * Options for imsauth_ctx_alloc(). Zero means "default" for every numeric field. All
 * strings are copied; the struct may be freed after the call.
 */
struct imsauth_opts {
    const char *const *issuers; /* accepted iss values, NULL-terminated; at least one */
    const char *audience;       /* required in aud */
    const char *realm;          /* home network domain: TNA realm and challenge realm */
    const char *authz_server;   /* WAF URL for the challenge; default issuers[0] */
    const char *scope;          /* required scope, one token (no spaces); default "ims" */

    /* Key sources; at least one. Several may be combined. */
    const char *jwks_file; /* JWKS file; re-read by imsauth_refresh() when it changes */
    const char *jwks_json; /* JWKS document as a string */
    const struct imsauth_pem_key *pem_keys; /* array of n_pem_keys */
    size_t n_pem_keys;
    const char *jwks_url;       /* JWKS over HTTP(S), fetched by imsauth_refresh() (libcurl) */
    const uint8_t *hmac_secret; /* shared secret for HS*; only then is HS* possible */
    size_t hmac_secret_len;     /* at least 32 bytes */
    const char *hmac_kid;       /* optional kid of the shared secret */

    unsigned allowed_algs; /* bit set of enum imsauth_alg; 0 = IMSAUTH_ALGS_DEFAULT
                              (+ HS256 when a secret is configured). HS* bits without a
                              secret are an error. */
    unsigned leeway_s;     /* clock skew tolerance for exp/nbf/iat; default 30 */
    size_t max_token_len;  /* default 8192 bytes */
    size_t cache_entries;  /* verified-token cache size; default 4096; see cache_off */
    int cache_off;         /* non-zero disables the cache */

    /* JWKS URL policy (seconds): refresh between min and max of Cache-Control max-age
       (default 60 and 86400; 300 when no max-age); a refetch for an unknown kid at most
       once per unknown_kid_interval (default 30). HTTP timeout default 5. */
    unsigned jwks_min_refresh_s, jwks_max_refresh_s, jwks_default_refresh_s;
    unsigned unknown_kid_interval_s, http_timeout_s;
    const char *ca_file; /* optional CA bundle for the JWKS URL */

    imsauth_revoked_fn revoked; /* optional */
    void *revoked_arg;
    imsauth_log_fn log; /* optional */
    void *log_arg;
};

struct imsauth_ctx;
struct imsauth_token;

/*
 * Creates a context. On success writes *ctxp (caller owns it; free with
 * imsauth_ctx_free) and returns IMSAUTH_OK. On failure *ctxp is untouched and, when
 * detail is not NULL, a NUL-terminated explanation is written to detail[detail_len] (empty
 * for IMSAUTH_ERR_NOMEM).
 * A jwks_url source does not fetch here: call imsauth_refresh() once before serving.
 */
enum imsauth_result imsauth_ctx_alloc(struct imsauth_ctx **ctxp, const struct imsauth_opts *o,
                                      char *detail, size_t detail_len);
/* Frees the context and everything it owns. Accepts NULL. Tokens handed out earlier stay
 * valid (they are reference counted) and must still be released. */
void imsauth_ctx_free(struct imsauth_ctx *ctx);

/*
 * Reloads keys where due: the JWKS file when its inode, size or mtime changed; the JWKS
 * URL when its Cache-Control lifetime ran out or a verification met an unknown kid (rate
 * limited). Blocking; call from a timer or a helper thread, never per request. On a failed
 * load the previous key set stays. *next_s (optional) receives the seconds until the next
 * call is useful: at most 1 while a file source exists, at most unknown_kid_interval_s while
 * a URL source exists, 3600 when nothing can be reloaded. A call with nothing due does no
 * I/O beyond a stat() of the file source. Returns IMSAUTH_OK, or the error of the failed
 * source (with detail).
 */
enum imsauth_result imsauth_refresh(struct imsauth_ctx *ctx, unsigned *next_s, char *detail,
                                    size_t detail_len);
/* Number of keys in the current key set. */
size_t imsauth_key_count(struct imsauth_ctx *ctx);

/* What the request uses; only impu takes part in the decision. */
struct imsauth_request {
    const char *method;      /* SIP method, for logs */
    const char *request_uri; /* Request-URI, for logs (the TNA builder takes it itself) */
    const char *impu;        /* the IMPU the request uses (To of a REGISTER; P-Preferred-
                                Identity or From otherwise), a SIP or tel URI, with or without
                                <>; NULL skips the identity binding check */
    int64_t now;             /* Unix seconds; 0 = time(NULL) */
};

/* Outcome of imsauth_verify(). */
struct imsauth_verdict {
    enum imsauth_result result;
    int sip_status;              /* imsauth_sip_status(result) */
    const char *error;           /* imsauth_rfc6750_error(result) */
    struct imsauth_token *token; /* on IMSAUTH_OK only; caller owns one reference */
    char detail[160];            /* human-readable reason, never containing the token */
};

/*
 * Verifies one Authorization (or Proxy-Authorization) header value: "Bearer <token>" or
 * "Bearer access_token=\"<token>\"" (also unquoted, spaces around "=" allowed; scheme and
 * parameter name case-insensitive; SP/HTAB around the value ignored). hdr may be NULL or empty
 * (IMSAUTH_ERR_MISSING). Fills *v and returns v->result. On IMSAUTH_OK, v->token holds a
 * reference the caller must drop with imsauth_token_release().
 */
enum imsauth_result imsauth_verify(struct imsauth_ctx *ctx, const uint8_t *hdr, size_t len,
                                   const struct imsauth_request *req, struct imsauth_verdict *v);

/* Token accessors. Strings are borrowed from the token and live as long as it does.
 * Optional claims that are absent return NULL. */
const char *imsauth_token_sub(const struct imsauth_token *t);
const char *imsauth_token_impi(const struct imsauth_token *t);
size_t imsauth_token_impu_count(const struct imsauth_token *t);
const char *imsauth_token_impu(const struct imsauth_token *t, size_t i); /* 0 = default */
const char *imsauth_token_client_id(const struct imsauth_token *t);
const char *imsauth_token_jti(const struct imsauth_token *t);
const char *imsauth_token_scope(const struct imsauth_token *t);
const char *imsauth_token_iss(const struct imsauth_token *t);
const char *imsauth_token_pool_lease(const struct imsauth_token *t);
const char *imsauth_token_wwsf(const struct imsauth_token *t);
int64_t imsauth_token_exp(const struct imsauth_token *t);
int64_t imsauth_token_iat(const struct imsauth_token *t);
/* Non-zero if uri (SIP/tel, with or without <>) is one of the token's IMPUs. */
int imsauth_token_grants(const struct imsauth_token *t, const char *uri);
/* Adds a reference; returns t. */
struct imsauth_token *imsauth_token_ref(struct imsauth_token *t);
/* Drops a reference; frees on the last. Accepts NULL. */
void imsauth_token_release(struct imsauth_token *t);

/*
 * Builds the Trusted Node Authentication header value for the REGISTER towards the
 * S-CSCF (TS 24.229/33.203):
 *   Digest username="<impi>", realm="<realm>", uri="<request_uri>", nonce="",
 *   response="", integrity-protected="auth-done"
 * Values are quoted-strings with '"' and '\' escaped; control characters other than HTAB
 * are refused (IMSAUTH_ERR_INVALID_ARG), as are NULL or empty values. Writes a
 * NUL-terminated string to buf[size]. Returns IMSAUTH_OK, or IMSAUTH_ERR_BUFFER_SMALL with
 * *needed (optional) = bytes required including the NUL; buf then holds no usable value
 * (buf[0] = '\0'). buf may be NULL with size 0 to ask for the size.
 */
enum imsauth_result imsauth_tna_header(const char *impi, const char *realm, const char *request_uri,
                                       char *buf, size_t size, size_t *needed);

/*
 * Builds a Bearer challenge for WWW-Authenticate (401) or Proxy-Authenticate (407):
 *   Bearer realm="<realm>", authz_server="<url>"[, scope="<scope>"][, error="<error>"]
 * error is imsauth_rfc6750_error(r) for the verification outcome r (absent when NULL).
 * scope is added for insufficient_scope and for the first challenge (r = MISSING or
 * UNSUPPORTED_SCHEME). identity_not_granted (403) carries neither: the token is fine, the
 * identity is not its to use.
 * Buffer rules as imsauth_tna_header().
 */
enum imsauth_result imsauth_challenge(const struct imsauth_ctx *ctx, enum imsauth_result r,
                                      char *buf, size_t size, size_t *needed);

/* Counters since the context was created (monotonic, approximate under concurrency). */
struct imsauth_stats {
    uint64_t verified, cache_hits, cache_misses, failures, key_reloads, key_reload_errors;
};
void imsauth_stats_get(const struct imsauth_ctx *ctx, struct imsauth_stats *s);

#ifdef __cplusplus
}
#endif
#endif
