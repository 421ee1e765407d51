/* Names, SIP statuses and RFC 6750 error codes of enum imsauth_result. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>

struct result_info {
    const char *name;
    int sip;
    const char *error;
};

static const struct result_info info[] = {
    [IMSAUTH_OK] = {"ok", 200, NULL},
    [IMSAUTH_ERR_MISSING] = {"missing", 401, NULL},
    [IMSAUTH_ERR_MALFORMED] = {"malformed", 400, "invalid_request"},
    [IMSAUTH_ERR_TOO_LARGE] = {"too_large", 400, "invalid_request"},
    [IMSAUTH_ERR_UNSUPPORTED_SCHEME] = {"unsupported_scheme", 401, NULL},
    [IMSAUTH_ERR_MALFORMED_TOKEN] = {"malformed_token", 401, "invalid_token"},
    [IMSAUTH_ERR_WRONG_TYPE] = {"wrong_type", 401, "invalid_token"},
    [IMSAUTH_ERR_ALG_NOT_ALLOWED] = {"alg_not_allowed", 401, "invalid_token"},
    [IMSAUTH_ERR_UNKNOWN_KID] = {"unknown_kid", 401, "invalid_token"},
    [IMSAUTH_ERR_BAD_SIGNATURE] = {"bad_signature", 401, "invalid_token"},
    [IMSAUTH_ERR_MISSING_CLAIM] = {"missing_claim", 401, "invalid_token"},
    [IMSAUTH_ERR_BAD_CLAIM] = {"bad_claim", 401, "invalid_token"},
    [IMSAUTH_ERR_WRONG_ISSUER] = {"wrong_issuer", 401, "invalid_token"},
    [IMSAUTH_ERR_WRONG_AUDIENCE] = {"wrong_audience", 401, "invalid_token"},
    [IMSAUTH_ERR_EXPIRED] = {"expired", 401, "invalid_token"},
    [IMSAUTH_ERR_NOT_YET_VALID] = {"not_yet_valid", 401, "invalid_token"},
    [IMSAUTH_ERR_INSUFFICIENT_SCOPE] = {"insufficient_scope", 403, "insufficient_scope"},
    [IMSAUTH_ERR_IDENTITY_NOT_GRANTED] = {"identity_not_granted", 403, NULL},
    [IMSAUTH_ERR_REVOKED] = {"revoked", 401, "invalid_token"},
    [IMSAUTH_ERR_UNAVAILABLE] = {"unavailable", 503, NULL},
    [IMSAUTH_ERR_INVALID_ARG] = {"invalid_argument", 500, NULL},
    [IMSAUTH_ERR_NOMEM] = {"out_of_memory", 500, NULL},
    [IMSAUTH_ERR_BUFFER_SMALL] = {"buffer_too_small", 500, NULL},
    [IMSAUTH_ERR_KEYS] = {"key_error", 500, NULL},
    [IMSAUTH_ERR_IO] = {"io_error", 500, NULL},
};

static const struct result_info *lookup(enum imsauth_result r)
{
    if ((unsigned)r < sizeof(info) / sizeof(info[0]) && info[r].name)
        return &info[r];
    return NULL;
}

IMSAUTH_API const char *imsauth_strerror(enum imsauth_result r)
{
    const struct result_info *i = lookup(r);
    return i ? i->name : "unknown";
}

IMSAUTH_API int imsauth_sip_status(enum imsauth_result r)
{
    const struct result_info *i = lookup(r);
    return i ? i->sip : 500;
}

IMSAUTH_API const char *imsauth_rfc6750_error(enum imsauth_result r)
{
    const struct result_info *i = lookup(r);
    return i ? i->error : NULL;
}

void ims_detail(char *detail, size_t dlen, const char *fmt, ...)
{
    if (detail == NULL || dlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, dlen, fmt, ap);
    va_end(ap);
}
