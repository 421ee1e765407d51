/* Token minting for tools, tests and benchmarks (not part of libimsauth; not installed).
 * Every function returns memory the caller frees (free(), json_decref(), EVP_PKEY_free()). */
#ifndef IMSAUTH_MINT_H
#define IMSAUTH_MINT_H

#include <jansson.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

enum ims_mint_kind { IMS_MINT_P256, IMS_MINT_P384, IMS_MINT_RSA2048, IMS_MINT_ED25519 };

EVP_PKEY *ims_mint_keygen(enum ims_mint_kind kind);
/* Public JWK of key as a new JSON object (kid optional). */
json_t *ims_mint_jwk(EVP_PKEY *key, const char *kid);
/* {"keys":[...]} text for n keys (kids may be NULL). */
char *ims_mint_jwks(EVP_PKEY **keys, const char **kids, size_t n);
/* Signs header and payload (JSON objects, not consumed) with key for alg (ES256/384/512,
 * RS*, PS*, EdDSA); compact JWS. */
char *ims_mint_sign(EVP_PKEY *key, const char *alg, json_t *header, json_t *payload);
/* HMAC variant (HS256/384/512). */
char *ims_mint_sign_hs(const uint8_t *secret, size_t n, const char *alg, json_t *header,
                       json_t *payload);
/* Compact JWS from raw header/payload bytes and a raw signature (for malformed cases). */
char *ims_mint_compact(const char *header, size_t hl, const char *payload, size_t pl,
                       const uint8_t *sig, size_t sl);
/* Public key as PEM text (SubjectPublicKeyInfo). */
char *ims_mint_pubpem(EVP_PKEY *key);

#endif
