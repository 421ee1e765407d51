/* Header builders: the TNA Authorization towards the S-CSCF and Bearer challenges. */
#include "internal.h"

#include <string.h>

struct out {
    char *buf;
    size_t size, len; /* len counts what would have been written */
    bool bad;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->len + n < o->size)
        memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void put_str(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* Appends name="value" as an RFC 3261 quoted-string; refuses control characters. */
static void put_param(struct out *o, const char *sep, const char *name, const char *value)
{
    put_str(o, sep);
    put_str(o, name);
    put(o, "=\"", 2);
    const unsigned char *p = (const unsigned char *)value, *run = p;
    for (; *p; p++) {
        if ((*p < 0x20 && *p != '\t') || *p == 0x7f) {
            o->bad = true;
            return;
        }
        if (*p == '"' || *p == '\\') {
            put(o, (const char *)run, (size_t)(p - run));
            put(o, "\\", 1);
            run = p;
        }
    }
    put(o, (const char *)run, (size_t)(p - run));
    put(o, "\"", 1);
}

static enum imsauth_result finish(struct out *o, size_t *needed)
{
    if (o->bad) {
        if (o->size)
            o->buf[0] = '\0';
        return IMSAUTH_ERR_INVALID_ARG;
    }
    if (needed)
        *needed = o->len + 1;
    if (o->len >= o->size) {
        if (o->size)
            o->buf[0] = '\0';
        return IMSAUTH_ERR_BUFFER_SMALL;
    }
    o->buf[o->len] = '\0';
    return IMSAUTH_OK;
}

IMSAUTH_API enum imsauth_result imsauth_tna_header(const char *impi, const char *realm,
                                                   const char *request_uri, char *buf, size_t size,
                                                   size_t *needed)
{
    if (impi == NULL || realm == NULL || request_uri == NULL || (buf == NULL && size) || !impi[0] ||
        !realm[0] || !request_uri[0])
        return IMSAUTH_ERR_INVALID_ARG;
    struct out o = {buf, size, 0, false};
    put_param(&o, "Digest ", "username", impi);
    put_param(&o, ", ", "realm", realm);
    put_param(&o, ", ", "uri", request_uri);
    put_str(&o, ", nonce=\"\", response=\"\", integrity-protected=\"auth-done\"");
    return finish(&o, needed);
}

IMSAUTH_API enum imsauth_result imsauth_challenge(const struct imsauth_ctx *ctx,
                                                  enum imsauth_result r, char *buf, size_t size,
                                                  size_t *needed)
{
    if (ctx == NULL || (buf == NULL && size))
        return IMSAUTH_ERR_INVALID_ARG;
    struct out o = {buf, size, 0, false};
    const char *err = imsauth_rfc6750_error(r);
    put_param(&o, "Bearer ", "realm", ctx->realm);
    put_param(&o, ", ", "authz_server", ctx->authz_server);
    if (r == IMSAUTH_ERR_MISSING || r == IMSAUTH_ERR_UNSUPPORTED_SCHEME ||
        r == IMSAUTH_ERR_INSUFFICIENT_SCOPE)
        put_param(&o, ", ", "scope", ctx->scope);
    if (err)
        put_param(&o, ", ", "error", err);
    return finish(&o, needed);
}
