/*
 * Signing keys of the WAF: kept in PostgreSQL (signing_keys, private halves sealed under
 * the key-encryption key), held in memory as an immutable snapshot (the active key and
 * the JWKS text) that request threads share, and re-read when older than a few seconds so
 * that a rotation made through another instance is picked up.
 */
#ifndef WAF_KEYSTORE_H
#define WAF_KEYSTORE_H

#include "wdb.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct waf_keystore;

/*
 * Loads the keys; when none is active, makes an ES256 key, seals it and stores it as the
 * active one (two instances starting together: one wins, the other loads it). db and kek
 * are borrowed for the keystore's life. NULL with detail on failure.
 */
struct waf_keystore *waf_keystore_open(struct waf_db *db, const uint8_t kek[32], long reload_ms,
                                       char *detail, size_t detail_len);
void waf_keystore_free(struct waf_keystore *ks); /* accepts NULL */

/* Re-reads the keys now (after a rotation through this instance). 0 or -1. */
int waf_keystore_reload(struct waf_keystore *ks, char *detail, size_t detail_len);

/* Signs the claims payload[0..len) with the active key: *token is a new compact JWS (caller
 * frees); kid_out (optional, 65 bytes) receives the kid. 0 or -1. */
int waf_keystore_sign(struct waf_keystore *ks, const char *payload, size_t len, char **token,
                      char kid_out[65]);

/* Verifies a token this WAF signed with any still-published key (re-reading the keys
 * once for a kid it does not know). On success *payload is the claims JSON (caller
 * frees). 0, or -1 for a token that is malformed, of an unknown key or badly signed. */
int waf_keystore_verify(struct waf_keystore *ks, const char *token, size_t len, char **payload);

/* The JWKS document ({"keys":[...]}: next, active, and retired keys until publish_until)
 * as a new string the caller frees; NULL on failure. */
char *waf_keystore_jwks(struct waf_keystore *ks);

#endif
