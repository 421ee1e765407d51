/*
 * Strict application/x-www-form-urlencoded parser for OAuth 2.0 request bodies and URL query
 * strings (RFC 6749 section 3.1: parameters sent without a value are treated as omitted, and
 * no parameter may appear more than once), plus the matching percent-decoder for single
 * strings (HTTP Basic client_id and client_secret, RFC 6749 section 2.3.1).
 *
 * Syntax: pairs separated by '&'; empty segments ("a=1&&b=2", a leading or trailing '&') are
 * skipped; a segment without '=' is a name with an empty value; the first '=' ends the name
 * (later ones are data). Decoding: '+' is a space, %XX (hex digits in either case) is that
 * byte, every other byte stands for itself. Refused as WAF_FORM_BAD_ENCODING: a '%' without
 * two hex digits after it, a decoded control character (0x00-0x1f or 0x7f, raw or
 * percent-encoded; TAB, CR and LF included), decoded bytes that are not well-formed UTF-8,
 * and an empty name ("=x"). Names are compared after decoding, case-sensitively.
 *
 * Decoded strings are NUL-terminated and contain no NUL, so C string handling is safe.
 */
#ifndef WAF_FORM_H
#define WAF_FORM_H

#include <stddef.h>

#define WAF_FORM_MAX_BODY  65536 /* bytes of encoded input */
#define WAF_FORM_MAX_PAIRS 64
#define WAF_FORM_MAX_NAME  128  /* bytes of a decoded name */
#define WAF_FORM_MAX_VALUE 8192 /* bytes of a decoded value */

enum waf_form_result {
    WAF_FORM_OK = 0,
    WAF_FORM_TOO_LARGE,    /* input, a name or a value over its cap (or outcap too small) */
    WAF_FORM_TOO_MANY,     /* more than WAF_FORM_MAX_PAIRS pairs */
    WAF_FORM_BAD_ENCODING, /* see above */
    WAF_FORM_REPEATED,     /* a name twice, even if one occurrence has an empty value */
    WAF_FORM_NOMEM,
};
/* A short fixed name of r ("ok", "too_large", ...); static storage. */
const char *waf_form_strerror(enum waf_form_result r);

/* Parsed name/value pairs in input order; opaque, one allocation. */
struct waf_form;

/*
 * Parses buf[0..len) (not NUL-terminated, any bytes; buf may be NULL when len is 0). The
 * input is only read, and not referenced after the call. On success *out is a new form owned
 * by the caller, who frees it with waf_form_free(), and detail (if non-NULL) is set to "". On
 * failure *out is NULL and detail (optional, detail_len bytes, caller's buffer) holds one line
 * naming the problem: `parameter "scope" is repeated`, `bad percent-encoding at byte 17`
 * (offsets count input bytes from 0), `more than 64 parameters`. Names quoted in detail have
 * every byte outside printable ASCII, and '"', '\\' and '%', written as %XX, so detail is
 * safe for an OAuth error_description. The first error in input order is reported, except
 * that the input size and the number of pairs are checked before anything is decoded.
 */
enum waf_form_result waf_form_parse(const char *buf, size_t len, struct waf_form **out,
                                    char *detail, size_t detail_len);

/* The decoded value of name, or NULL when name is absent or its value is empty (RFC 6749:
 * empty = omitted). Borrowed from f; valid until waf_form_free(f). f may be NULL. */
const char *waf_form_get(const struct waf_form *f, const char *name);

/* The number of pairs, those with an empty value included (0 for a NULL f). */
size_t waf_form_count(const struct waf_form *f);

/* The decoded name of the i-th pair in input order (never empty), NULL when i is out of
 * range; for rejecting or logging unknown parameters. Borrowed from f, like waf_form_get(). */
const char *waf_form_name(const struct waf_form *f, size_t i);

/* Frees f and every string borrowed from it; accepts NULL. */
void waf_form_free(struct waf_form *f);

/*
 * Decodes one form-urlencoded string in[0..len) (no '&' or '=' meaning: they are data) under
 * the rules above into the caller's buffer out[0..outcap), NUL-terminated. *outlen (if
 * non-NULL) receives the decoded length without the NUL. Returns WAF_FORM_TOO_LARGE when the
 * decoded string and its NUL do not fit in outcap, WAF_FORM_BAD_ENCODING for bad input; on
 * failure out holds "" when outcap > 0 and *outlen is 0. Allocates nothing.
 */
enum waf_form_result waf_form_decode(const char *in, size_t len, char *out, size_t outcap,
                                     size_t *outlen);

#endif
