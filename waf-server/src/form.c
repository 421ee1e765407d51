/* Strict application/x-www-form-urlencoded parser and percent-decoder (see form.h). */
#include "form.h"
#include "wutil.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct waf_form_pair {
    const char *name;  /* non-empty */
    const char *value; /* "" when sent without a value */
};

/* One block: the header, count pairs, then the decoded strings (each NUL-terminated) that the
 * pairs point into. Decoding never lengthens a string, so the strings fit in the input's length
 * plus one NUL per name and per value. */
struct waf_form {
    size_t count;
    struct waf_form_pair pairs[];
};

const char *waf_form_strerror(enum waf_form_result r)
{
    static const char *const names[] = {
        [WAF_FORM_OK] = "ok",
        [WAF_FORM_TOO_LARGE] = "too_large",
        [WAF_FORM_TOO_MANY] = "too_many",
        [WAF_FORM_BAD_ENCODING] = "bad_encoding",
        [WAF_FORM_REPEATED] = "repeated",
        [WAF_FORM_NOMEM] = "out_of_memory",
    };
    return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "unknown";
}

/* A decoded name quoted in detail: printable ASCII except '"', '\\' and '%' as is, every other
 * byte as %XX. out holds 3 * WAF_FORM_MAX_NAME + 1 bytes; name is at most WAF_FORM_MAX_NAME. */
#define ESCAPED_NAME_SIZE (3 * WAF_FORM_MAX_NAME + 1)
static const char *escape_name(const char *name, char *out)
{
    static const char hexdig[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)name; *p && o + 4 <= ESCAPED_NAME_SIZE;
         p++) {
        if (*p > 0x20 && *p < 0x7f && *p != '"' && *p != '\\' && *p != '%') {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hexdig[*p >> 4];
            out[o++] = hexdig[*p & 15];
        }
    }
    out[o] = '\0';
    return out;
}

static int hex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

enum dec_err { D_OK, D_LONG, D_PERCENT, D_CONTROL, D_UTF8 };

struct dec {
    size_t len;    /* D_OK: decoded bytes, without the NUL */
    size_t at;     /* error: input offset of the bad byte, '%' or UTF-8 sequence */
    unsigned byte; /* D_CONTROL: the decoded control character */
};

/*
 * Decodes p[0..n) into out, at most cap bytes plus a NUL (out has room for both, or for n + 1
 * bytes, whichever is less: a decoded byte never takes more than one input byte). Refuses
 * bad %XX, controls and ill-formed UTF-8 (RFC 3629 section 4: no overlong forms, surrogates or
 * code points above U+10FFFF), checked byte by byte as decoded so the offset is exact.
 */
static enum dec_err decode(const unsigned char *p, size_t n, char *out, size_t cap, struct dec *d)
{
    unsigned need = 0;             /* UTF-8 continuation bytes still expected */
    unsigned lo = 0x80, hi = 0xbf; /* range of the next continuation byte */
    size_t o = 0, seq = 0;         /* seq: input offset where the sequence started */
    for (size_t i = 0; i < n;) {
        size_t at = i;
        unsigned c = p[i++];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int h = n - i >= 2 ? hex(p[i]) : -1, l = n - i >= 2 ? hex(p[i + 1]) : -1;
            if (h < 0 || l < 0) {
                d->at = at;
                return D_PERCENT;
            }
            c = (unsigned)(h << 4 | l);
            i += 2;
        }
        if (c < 0x20 || c == 0x7f) {
            d->at = at;
            d->byte = c;
            return D_CONTROL;
        }
        if (need == 0) {
            seq = at;
            if (c >= 0xc2 && c <= 0xdf) {
                need = 1;
            } else if (c >= 0xe0 && c <= 0xef) {
                need = 2;
                lo = c == 0xe0 ? 0xa0 : 0x80; /* overlong */
                hi = c == 0xed ? 0x9f : 0xbf; /* surrogates */
            } else if (c >= 0xf0 && c <= 0xf4) {
                need = 3;
                lo = c == 0xf0 ? 0x90 : 0x80; /* overlong */
                hi = c == 0xf4 ? 0x8f : 0xbf; /* above U+10FFFF */
            } else if (c >= 0x80) {
                d->at = at;
                return D_UTF8;
            }
        } else {
            if (c < lo || c > hi) {
                d->at = seq;
                return D_UTF8;
            }
            need--;
            lo = 0x80;
            hi = 0xbf;
        }
        if (o == cap)
            return D_LONG;
        out[o++] = (char)c;
    }
    if (need != 0) {
        d->at = seq;
        return D_UTF8;
    }
    out[o] = '\0';
    d->len = o;
    return D_OK;
}

/* detail for the encoding errors of decode(); base is the decoded span's input offset. */
static enum waf_form_result bad_encoding(enum dec_err e, const struct dec *d, size_t base,
                                         char *detail, size_t dlen)
{
    size_t at = base + d->at;
    if (e == D_PERCENT)
        waf_detail(detail, dlen, "bad percent-encoding at byte %zu", at);
    else if (e == D_CONTROL)
        waf_detail(detail, dlen, "control character 0x%02x at byte %zu", d->byte, at);
    else
        waf_detail(detail, dlen, "invalid UTF-8 at byte %zu", at);
    return WAF_FORM_BAD_ENCODING;
}

/* Pairs in p[0..len), i.e. non-empty '&'-separated segments, counting stops past max. */
static size_t count_pairs(const unsigned char *p, size_t len, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n <= max;) {
        const unsigned char *amp = memchr(p + i, '&', len - i);
        size_t end = amp ? (size_t)(amp - p) : len;
        if (end > i)
            n++;
        i = end + 1;
    }
    return n;
}

/* Decodes the segment p[s..end) (non-empty) into the next pair of f, writing its two strings at
 * *pos and advancing *pos past them. */
static enum waf_form_result parse_pair(struct waf_form *f, const unsigned char *p, size_t s,
                                       size_t end, char **pos, char *detail, size_t dlen)
{
    const unsigned char *eq = memchr(p + s, '=', end - s);
    size_t name_end = eq ? (size_t)(eq - p) : end;
    size_t val = eq ? name_end + 1 : end;
    if (name_end == s) {
        waf_detail(detail, dlen, "empty parameter name at byte %zu", s);
        return WAF_FORM_BAD_ENCODING;
    }
    char esc[ESCAPED_NAME_SIZE];
    struct dec d = {0};
    char *name = *pos;
    enum dec_err e = decode(p + s, name_end - s, name, WAF_FORM_MAX_NAME, &d);
    if (e == D_LONG) {
        waf_detail(detail, dlen, "parameter name at byte %zu is longer than %d bytes", s,
                   WAF_FORM_MAX_NAME);
        return WAF_FORM_TOO_LARGE;
    }
    if (e != D_OK)
        return bad_encoding(e, &d, s, detail, dlen);
    *pos += d.len + 1;
    for (size_t j = 0; j < f->count; j++) {
        if (strcmp(f->pairs[j].name, name) == 0) {
            waf_detail(detail, dlen, "parameter \"%s\" is repeated", escape_name(name, esc));
            return WAF_FORM_REPEATED;
        }
    }
    char *value = *pos;
    e = decode(p + val, end - val, value, WAF_FORM_MAX_VALUE, &d);
    if (e == D_LONG) {
        waf_detail(detail, dlen, "value of parameter \"%s\" is longer than %d bytes",
                   escape_name(name, esc), WAF_FORM_MAX_VALUE);
        return WAF_FORM_TOO_LARGE;
    }
    if (e != D_OK)
        return bad_encoding(e, &d, val, detail, dlen);
    *pos += d.len + 1;
    f->pairs[f->count].name = name;
    f->pairs[f->count].value = value;
    f->count++;
    return WAF_FORM_OK;
}

enum waf_form_result waf_form_parse(const char *buf, size_t len, struct waf_form **out,
                                    char *detail, size_t detail_len)
{
    *out = NULL;
    if (buf == NULL)
        len = 0;
    if (len > WAF_FORM_MAX_BODY) {
        waf_detail(detail, detail_len, "input of %zu bytes is larger than %d bytes", len,
                   WAF_FORM_MAX_BODY);
        return WAF_FORM_TOO_LARGE;
    }
    const unsigned char *p = (const unsigned char *)buf;
    size_t n = count_pairs(p, len, WAF_FORM_MAX_PAIRS);
    if (n > WAF_FORM_MAX_PAIRS) {
        waf_detail(detail, detail_len, "more than %d parameters", WAF_FORM_MAX_PAIRS);
        return WAF_FORM_TOO_MANY;
    }
    size_t strings = offsetof(struct waf_form, pairs) + n * sizeof(struct waf_form_pair);
    struct waf_form *f = malloc(strings + len + 2 * n);
    if (f == NULL) {
        waf_detail(detail, detail_len, "out of memory");
        return WAF_FORM_NOMEM;
    }
    f->count = 0;
    char *pos = (char *)f + strings;
    enum waf_form_result r = WAF_FORM_OK;
    for (size_t i = 0; i < len && r == WAF_FORM_OK;) {
        const unsigned char *amp = memchr(p + i, '&', len - i);
        size_t end = amp ? (size_t)(amp - p) : len;
        if (end > i)
            r = parse_pair(f, p, i, end, &pos, detail, detail_len);
        i = end + 1;
    }
    if (r != WAF_FORM_OK) {
        free(f);
        return r;
    }
    waf_detail(detail, detail_len, "%s", "");
    *out = f;
    return WAF_FORM_OK;
}

const char *waf_form_get(const struct waf_form *f, const char *name)
{
    if (f == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < f->count; i++) {
        if (strcmp(f->pairs[i].name, name) == 0)
            return f->pairs[i].value[0] ? f->pairs[i].value : NULL;
    }
    return NULL;
}

size_t waf_form_count(const struct waf_form *f)
{
    return f ? f->count : 0;
}

const char *waf_form_name(const struct waf_form *f, size_t i)
{
    return f && i < f->count ? f->pairs[i].name : NULL;
}

void waf_form_free(struct waf_form *f)
{
    free(f);
}

enum waf_form_result waf_form_decode(const char *in, size_t len, char *out, size_t outcap,
                                     size_t *outlen)
{
    if (outlen)
        *outlen = 0;
    if (in == NULL)
        len = 0;
    if (outcap == 0)
        return WAF_FORM_TOO_LARGE;
    struct dec d = {0};
    enum dec_err e = decode((const unsigned char *)in, len, out, outcap - 1, &d);
    if (e != D_OK) {
        out[0] = '\0';
        return e == D_LONG ? WAF_FORM_TOO_LARGE : WAF_FORM_BAD_ENCODING;
    }
    if (outlen)
        *outlen = d.len;
    return WAF_FORM_OK;
}
