/* The whole verification path on an arbitrary token: base64url, JOSE header JSON, key
 * lookup, signature (ES256, RS256, HS256 keys configured), claims, cache. */
#include "fuzz.h"

#include <imsauth/imsauth.h>
#include <stdlib.h>
#include <string.h>

/* The public keys of RFC 7515 A.2 (RSA) and A.3 (EC P-256). */
static const char jwks[] =
    "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvR"
    "VEU\",\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\",\"kid\":\"ec\"},{\"kty\":\"RSA\","
    "\"n\":\"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJr"
    "cS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_"
    "7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTB"
    "QY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs9"
    "1kzk2PAcDTW9gb54h4FRWyuXpoQ\",\"e\":\"AQAB\",\"kid\":\"rsa\"}]}";

static struct imsauth_ctx *ctx;

static void init(void)
{
    static const char *iss[] = {"https://waf.test", NULL};
    static const uint8_t secret[32] = "fuzz-secret-fuzz-secret-fuzz-se";
    struct imsauth_opts o = {.issuers = iss,
                             .audience = "epcscf.test",
                             .realm = "home1.net",
                             .jwks_json = jwks,
                             .hmac_secret = secret,
                             .hmac_secret_len = sizeof(secret),
                             .hmac_kid = "hs",
                             .cache_entries = 32};
    if (imsauth_ctx_alloc(&ctx, &o, NULL, 0) != IMSAUTH_OK)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (ctx == NULL)
        init();
    struct imsauth_request req = {.impu = "sip:alice@home1.net", .now = 1900000000};
    struct imsauth_verdict v;
    /* Once as the token itself, once as a whole header value. */
    uint8_t *hdr = malloc(size + 7);
    memcpy(hdr, "Bearer ", 7);
    memcpy(hdr + 7, data, size);
    imsauth_verify(ctx, hdr, size + 7, &req, &v);
    imsauth_token_release(v.token);
    imsauth_verify(ctx, data, size, &req, &v);
    imsauth_token_release(v.token);
    free(hdr);
    return 0;
}
