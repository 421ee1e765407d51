/*
 * Authorization / Proxy-Authorization value parser for the Bearer scheme.
 * Accepted (scheme case-insensitive, SP/HTAB as whitespace):
 *   Bearer <b64token>                       RFC 8898 section 4, RFC 6750 section 2.1
 *   Bearer access_token="<b64token>"        TS 24.371 Annex A example form
 *   Bearer access_token=<b64token>
 * b64token = 1*(ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/") *"="
 */
#include "internal.h"

#include <strings.h>

static bool is_ws(uint8_t c)
{
    return c == ' ' || c == '\t';
}

/* Character classes as a table: the header is scanned byte by byte on every request. */
enum { B64TOK = 1, TOKEN = 2 };
static const uint8_t cls[256] = {
    ['0'] = 3,
    ['1'] = 3,
    ['2'] = 3,
    ['3'] = 3,
    ['4'] = 3,
    ['5'] = 3,
    ['6'] = 3,
    ['7'] = 3,
    ['8'] = 3,
    ['9'] = 3,
    ['A'] = 3,
    ['B'] = 3,
    ['C'] = 3,
    ['D'] = 3,
    ['E'] = 3,
    ['F'] = 3,
    ['G'] = 3,
    ['H'] = 3,
    ['I'] = 3,
    ['J'] = 3,
    ['K'] = 3,
    ['L'] = 3,
    ['M'] = 3,
    ['N'] = 3,
    ['O'] = 3,
    ['P'] = 3,
    ['Q'] = 3,
    ['R'] = 3,
    ['S'] = 3,
    ['T'] = 3,
    ['U'] = 3,
    ['V'] = 3,
    ['W'] = 3,
    ['X'] = 3,
    ['Y'] = 3,
    ['Z'] = 3,
    ['a'] = 3,
    ['b'] = 3,
    ['c'] = 3,
    ['d'] = 3,
    ['e'] = 3,
    ['f'] = 3,
    ['g'] = 3,
    ['h'] = 3,
    ['i'] = 3,
    ['j'] = 3,
    ['k'] = 3,
    ['l'] = 3,
    ['m'] = 3,
    ['n'] = 3,
    ['o'] = 3,
    ['p'] = 3,
    ['q'] = 3,
    ['r'] = 3,
    ['s'] = 3,
    ['t'] = 3,
    ['u'] = 3,
    ['v'] = 3,
    ['w'] = 3,
    ['x'] = 3,
    ['y'] = 3,
    ['z'] = 3,
    /* b64token and RFC 3261 token both */
    ['-'] = 3,
    ['.'] = 3,
    ['_'] = 3,
    ['~'] = 3,
    ['+'] = 3,
    /* b64token only */
    ['/'] = B64TOK,
    /* token only */
    ['!'] = TOKEN,
    ['%'] = TOKEN,
    ['*'] = TOKEN,
    ['`'] = TOKEN,
    ['\''] = TOKEN,
};

static bool is_b64tok(uint8_t c)
{
    return cls[c] & B64TOK;
}

/* RFC 3261 token characters (auth-scheme, auth-param name). */
static bool is_token(uint8_t c)
{
    return cls[c] & TOKEN;
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
    /* The auth-param form is told by its first bytes: "access_token", optional whitespace,
       "=". (A b64token never has "=" followed by other characters.) */
    bool is_param = rest > plen && strncasecmp((const char *)t, param, plen) == 0;
    size_t eq = plen;
    while (is_param && eq < rest && is_ws(t[eq]))
        eq++;
    if (is_param && eq < rest && t[eq] == '=') {
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

bool ims_header_quick_span(const uint8_t *hdr, size_t len, size_t max_token, const uint8_t **tok,
                           size_t *toklen)
{
    if (hdr == NULL || len < 8)
        return false;
    size_t i = 0, end = len;
    while (end > 0 && is_ws(hdr[end - 1]))
        end--;
    while (i < end && is_ws(hdr[i]))
        i++;
    if (end - i < 8 || strncasecmp((const char *)hdr + i, "Bearer", 6) != 0 || !is_ws(hdr[i + 6]))
        return false;
    i += 7;
    while (i < end && is_ws(hdr[i]))
        i++;
    if (end - i > max_token || end == i || hdr[end - 1] == '"')
        return false; /* the auth-param form and odd cases take the full parser */
    *tok = hdr + i;
    *toklen = end - i;
    return true;
}
