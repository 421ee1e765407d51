/* Test helpers: real keys and real signatures (OpenSSL), tokens of the project's profile. */
#ifndef IMSAUTH_TEST_HELPERS_H
#define IMSAUTH_TEST_HELPERS_H

#include "../tools/mint.h"

#include <jansson.h>
#include <stdint.h>

#define TH_ISS   "https://waf.test"
#define TH_AUD   "epcscf.test"
#define TH_REALM "home1.net"
#define TH_IMPU  "sip:alice@home1.net"
#define TH_NOW   1900000000LL

/* The profile's claims valid at TH_NOW (caller owns the object). */
json_t *th_claims(void);
json_t *th_header(const char *alg, const char *kid);
/* "Bearer " + token; caller frees. */
char *th_bearer(const char *token);
/* Writes text to path atomically (temp file + rename). */
void th_write_file(const char *path, const char *text);

#endif
