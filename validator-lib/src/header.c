/*
 * Authorization / Proxy-Authorization value parser for the Bearer scheme.
 * Accepted (scheme case-insensitive, SP/HTAB as whitespace):
 *   Bearer <b64token>                       RFC 8898 section 4, RFC 6750 section 2.1
 *   Bearer access_token="<b64token>"        TS 24.371 Annex A example form
 *   Bearer access_token=<b64token>
 * b64token = 1*(ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/") *"="
 */
#include "internal.h"

#include <string.h>
#include <strings.h>

static bool is_ws(uint8_t c)
{
    return c == ' ' || c == '\t';
}

static bool is_b64tok(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~' || c == '+' || c == '/';
}

/* RFC 3261 token characters (auth-scheme, auth-param name). */
static bool is_token(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           strchr("-.!%*_+`'~", c) != NULL;
}

/* Length of the b64token at p[0..n), 0 if none. */
static size_t b64token_len(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n && is_b64tok(p[i]))
        i++;
    if (i == 0)
        return 0;
    while (i < n && p[i] == '=')
        i++;
    return i;
}

enum imsauth_result ims_header_parse(const uint8_t *hdr, size_t len, size_t max_token,
                                     const uint8_t **tok, size_t *toklen, char *detail, size_t dlen)
{
    if (hdr == NULL)
        len = 0;
    size_t i = 0, end = len;
    while (i < end && is_ws(hdr[i]))
        i++;
    while (end > i && is_ws(hdr[end - 1]))
        end--;
    if (i == end) {
        ims_detail(detail, dlen, "no credentials");
        return IMSAUTH_ERR_MISSING;
    }
    /* A value this long cannot hold a token within the limit (generous slack for the
       access_token= form and whitespace); refuse before scanning it. */
    if (end - i > max_token + 64) {
        ims_detail(detail, dlen, "credentials longer than %zu bytes", max_token);
        return IMSAUTH_ERR_TOO_LARGE;
    }
    size_t s = i;
    while (i < end && is_token(hdr[i]))
        i++;
    if (i == s || (i < end && !is_ws(hdr[i]))) {
        ims_detail(detail, dlen, "credentials do not start with an auth-scheme");
        return IMSAUTH_ERR_MALFORMED;
    }
    if (i - s != 6 || strncasecmp((const char *)hdr + s, "Bearer", 6) != 0) {
        ims_detail(detail, dlen, "auth-scheme is not Bearer");
        return IMSAUTH_ERR_UNSUPPORTED_SCHEME;
    }
    while (i < end && is_ws(hdr[i]))
        i++;
    if (i == end) {
        ims_detail(detail, dlen, "empty Bearer token");
        return IMSAUTH_ERR_MALFORMED;
    }

    const uint8_t *t = hdr + i;
    size_t rest = end - i, n;
    static const char param[] = "access_token";
    size_t plen = sizeof(param) - 1;
    size_t k = 0;
    while (k < rest && is_token(t[k]))
        k++;
    size_t eq = k;
    while (eq < rest && is_ws(t[eq]))
        eq++;
    if (k == plen && strncasecmp((const char *)t, param, plen) == 0 && eq < rest && t[eq] == '=') {
        /* auth-param form */
        size_t v = eq + 1;
        while (v < rest && is_ws(t[v]))
            v++;
        if (v < rest && t[v] == '"') {
            n = b64token_len(t + v + 1, rest - v - 1);
            if (n == 0 || v + 1 + n >= rest || t[v + 1 + n] != '"') {
                ims_detail(detail, dlen, "access_token is not a quoted b64token");
                return IMSAUTH_ERR_MALFORMED;
            }
            *tok = t + v + 1;
            i += v + 2 + n;
        } else {
            n = b64token_len(t + v, rest - v);
            if (n == 0) {
                ims_detail(detail, dlen, "empty access_token");
                return IMSAUTH_ERR_MALFORMED;
            }
            *tok = t + v;
            i += v + n;
        }
    } else {
        n = b64token_len(t, rest);
        if (n == 0) {
            ims_detail(detail, dlen, "Bearer token has a character outside b64token");
            return IMSAUTH_ERR_MALFORMED;
        }
        *tok = t;
        i += n;
    }
    if (i != end) {
        ims_detail(detail, dlen, "unexpected data after the Bearer token (two tokens?)");
        return IMSAUTH_ERR_MALFORMED;
    }
    if (n > max_token) {
        ims_detail(detail, dlen, "token longer than %zu bytes", max_token);
        return IMSAUTH_ERR_TOO_LARGE;
    }
    *toklen = n;
    return IMSAUTH_OK;
}
