/* Test helpers: real keys and real signatures (OpenSSL), tokens of the project's profile. */
#ifndef IMSAUTH_TEST_HELPERS_H
#define IMSAUTH_TEST_HELPERS_H

#include <jansson.h>
#include <openssl/evp.h>
#include <stdint.h>

enum th_kind { TH_P256, TH_P384, TH_RSA2048, TH_ED25519 };

#define TH_ISS   "https://waf.test"
#define TH_AUD   "epcscf.test"
#define TH_REALM "home1.net"
#define TH_IMPU  "sip:alice@home1.net"
#define TH_NOW   1900000000LL

EVP_PKEY *th_keygen(enum th_kind kind);
/* Public JWK of key as a new JSON object (kid optional). */
json_t *th_jwk(EVP_PKEY *key, const char *kid);
/* {"keys":[...]} text for n keys; caller frees. */
char *th_jwks(EVP_PKEY **keys, const char **kids, size_t n);
/* Signs header and payload (JSON objects, not consumed) with key/alg; caller frees. */
char *th_sign(EVP_PKEY *key, const char *alg, json_t *header, json_t *payload);
/* HMAC variant. */
char *th_sign_hs(const uint8_t *secret, size_t n, const char *alg, json_t *header, json_t *payload);
/* Compact JWS from raw header/payload bytes with a raw signature (for malformed cases). */
char *th_compact(const char *header, size_t hl, const char *payload, size_t pl, const uint8_t *sig,
                 size_t sl);
/* The profile's claims valid at TH_NOW (caller owns the object). */
json_t *th_claims(void);
json_t *th_header(const char *alg, const char *kid);
/* "Bearer " + token; caller frees. */
char *th_bearer(const char *token);
/* Public key as PEM text (SubjectPublicKeyInfo); caller frees. */
char *th_pubpem(EVP_PKEY *key);
/* Writes text to path atomically (temp file + rename). */
void th_write_file(const char *path, const char *text);

#endif
