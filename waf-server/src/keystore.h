/*
 * Signing keys of the WAF: kept in PostgreSQL (signing_keys, private halves sealed under
 * the key-encryption key), held in memory as an immutable snapshot (the active key and
 * the JWKS text) that request threads share, and re-read when older than a few seconds so
 * that a rotation made through another instance is picked up.
 *
 * Rotation (docs/token-profile.md 11): waf_keystore_rotate() adds a `next` key, published
 * in the JWKS but not used. The first instance to re-read the keys once the next key is
 * older than the overlap promotes it (one transaction, row locks, the one-active index):
 * it becomes `active`, and the previous active key becomes `retired`, published until
 * every token it can have signed has expired (the longest token lifetime, plus the reload
 * interval during which other instances may still sign with it, plus 60 s of leeway).
 * Retired keys past that time leave the JWKS.
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

/* The rotation policy: a next key is promoted once older than overlap_s; lifetime_s is
 * the server's default token lifetime (clients' own lifetimes are read from the database
 * when a key is retired). Until it is called no next key is promoted. Thread-safe. */
void waf_keystore_set_policy(struct waf_keystore *ks, long overlap_s, long lifetime_s);

/* Adds a new ES256 key in state `next`, sealed like the first one, on the caller's
 * connection c inside the caller's transaction (so that the caller's audit row commits
 * with it); serialised with other rotations by a transaction-scoped advisory lock. 0 with
 * the new kid, 1 when a next key waits already (kid: that key; nothing written), -1 on
 * failure (detail). Call waf_keystore_reload() after the commit. */
int waf_keystore_rotate(struct waf_keystore *ks, PGconn *c, char kid[65], char *detail,
                        size_t detail_len);

/* Re-reads the keys now (after a rotation through this instance), promoting a next key
 * whose overlap has passed. 0 or -1. */
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
