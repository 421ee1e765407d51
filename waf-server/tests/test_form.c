/* Form-urlencoded parser: decoding, empty = omitted, repeated names (also after decoding),
 * every encoding error with its offset, every cap at its boundary, UTF-8, and the
 * single-string decoder. */
#include "form.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static enum waf_form_result parse(const char *s, struct waf_form **f, char *d)
{
    return waf_form_parse(s, strlen(s), f, d, 256);
}

/* Parses s, which must succeed; the caller frees the form. */
static struct waf_form *ok(const char *s)
{
    struct waf_form *f = NULL;
    char d[256];
    enum waf_form_result r = parse(s, &f, d);
    cr_assert_eq(r, WAF_FORM_OK, "%s: %s (%s)", s, waf_form_strerror(r), d);
    cr_assert_not_null(f);
    cr_assert_str_empty(d, "detail is cleared on success");
    return f;
}

/* Parses buf[0..len), which must fail with want, and checks detail contains sub. */
static void fails_n(const char *buf, size_t len, enum waf_form_result want, const char *sub)
{
    struct waf_form *f = (struct waf_form *)(void *)&f; /* not NULL: must be reset */
    char d[256] = "";
    enum waf_form_result r = waf_form_parse(buf, len, &f, d, sizeof(d));
    cr_assert_eq(r, want, "%.*s: got %s (%s), want %s", (int)(len < 80 ? len : 80), buf,
                 waf_form_strerror(r), d, waf_form_strerror(want));
    cr_assert_null(f, "*out is NULL on failure");
    cr_assert(strstr(d, sub) != NULL, "detail \"%s\" lacks \"%s\"", d, sub);
}

static void fails(const char *s, enum waf_form_result want, const char *sub)
{
    fails_n(s, strlen(s), want, sub);
}

Test(form, token_request)
{
    struct waf_form *f = ok("grant_type=client_credentials&scope=ims%3Aregister+openid"
                            "&client_id=wic-1&redirect_uri=https%3A%2F%2Fwwsf.home1.net%2Fcb");
    cr_assert_eq(waf_form_count(f), 4);
    cr_assert_str_eq(waf_form_get(f, "grant_type"), "client_credentials");
    cr_assert_str_eq(waf_form_get(f, "scope"), "ims:register openid");
    cr_assert_str_eq(waf_form_get(f, "client_id"), "wic-1");
    cr_assert_str_eq(waf_form_get(f, "redirect_uri"), "https://wwsf.home1.net/cb");
    cr_assert_null(waf_form_get(f, "code"));
    cr_assert_null(waf_form_get(f, "Scope"), "names are case-sensitive");
    cr_assert_null(waf_form_get(f, "scop"));
    cr_assert_null(waf_form_get(f, NULL));
    cr_assert_str_eq(waf_form_name(f, 0), "grant_type");
    cr_assert_str_eq(waf_form_name(f, 1), "scope");
    cr_assert_str_eq(waf_form_name(f, 2), "client_id");
    cr_assert_str_eq(waf_form_name(f, 3), "redirect_uri");
    cr_assert_null(waf_form_name(f, 4));
    cr_assert_null(waf_form_name(f, (size_t)-1));
    waf_form_free(f);
}

Test(form, plus_is_space_and_encoded_plus_is_plus)
{
    struct waf_form *f = ok("a=1+2&b=1%2B2&c=%2b&d=+++&e+f=%20");
    cr_assert_str_eq(waf_form_get(f, "a"), "1 2");
    cr_assert_str_eq(waf_form_get(f, "b"), "1+2");
    cr_assert_str_eq(waf_form_get(f, "c"), "+");
    cr_assert_str_eq(waf_form_get(f, "d"), "   ");
    cr_assert_str_eq(waf_form_get(f, "e f"), " ");
    waf_form_free(f);
}

Test(form, hex_digits_in_either_case)
{
    struct waf_form *f = ok("a=%4a%4A%6b%6B&%62=%c3%BC%C3%bc");
    cr_assert_str_eq(waf_form_get(f, "a"), "JJkk");
    cr_assert_str_eq(waf_form_get(f, "b"), "\xc3\xbc\xc3\xbc");
    waf_form_free(f);
    f = ok("%62=%e2%82%AC%E2%82%ac");
    cr_assert_str_eq(waf_form_get(f, "b"), "\xe2\x82\xac\xe2\x82\xac");
    waf_form_free(f);
}

Test(form, every_percent_pair)
{
    /* "a=%XY" for all 65536 X, Y: accepted exactly when both are hex digits and the byte is
     * printable ASCII (a lone byte >= 0x80 is not UTF-8). */
    for (unsigned x = 0; x < 256; x++) {
        for (unsigned y = 0; y < 256; y++) {
            char in[5] = {'a', '=', '%', (char)x, (char)y};
            struct waf_form *f = NULL;
            enum waf_form_result r = waf_form_parse(in, sizeof(in), &f, NULL, 0);
            const char *hx = "0123456789abcdefABCDEF";
            bool ishex = x && y && strchr(hx, (int)x) && strchr(hx, (int)y);
            unsigned v = ishex ? (unsigned)strtoul((char[]){(char)x, (char)y, 0}, NULL, 16) : 0;
            bool want = ishex && v >= 0x20 && v < 0x7f;
            cr_assert_eq(r, want ? WAF_FORM_OK : WAF_FORM_BAD_ENCODING, "%%%02x%02x", x, y);
            if (want) {
                const char *got = waf_form_get(f, "a");
                cr_assert(got != NULL && (unsigned char)got[0] == v && got[1] == '\0');
            }
            waf_form_free(f);
        }
    }
}

Test(form, empty_value_is_omitted)
{
    struct waf_form *f = ok("scope=&state&code=x");
    cr_assert_null(waf_form_get(f, "scope"));
    cr_assert_null(waf_form_get(f, "state"));
    cr_assert_str_eq(waf_form_get(f, "code"), "x");
    cr_assert_eq(waf_form_count(f), 3, "pairs without a value are still listed");
    cr_assert_str_eq(waf_form_name(f, 0), "scope");
    cr_assert_str_eq(waf_form_name(f, 1), "state");
    waf_form_free(f);
}

Test(form, empty_segments_are_skipped)
{
    struct waf_form *f = ok("&&a=1&&b=2&");
    cr_assert_eq(waf_form_count(f), 2);
    cr_assert_str_eq(waf_form_get(f, "a"), "1");
    cr_assert_str_eq(waf_form_get(f, "b"), "2");
    waf_form_free(f);
    f = ok("&");
    cr_assert_eq(waf_form_count(f), 0);
    waf_form_free(f);
}

Test(form, empty_input)
{
    struct waf_form *f = ok("");
    cr_assert_eq(waf_form_count(f), 0);
    cr_assert_null(waf_form_get(f, "a"));
    cr_assert_null(waf_form_name(f, 0));
    waf_form_free(f);
    f = NULL;
    cr_assert_eq(waf_form_parse(NULL, 0, &f, NULL, 0), WAF_FORM_OK);
    cr_assert_eq(waf_form_count(f), 0);
    waf_form_free(f);
}

Test(form, null_form_and_free)
{
    cr_assert_null(waf_form_get(NULL, "a"));
    cr_assert_eq(waf_form_count(NULL), 0);
    cr_assert_null(waf_form_name(NULL, 0));
    waf_form_free(NULL);
}

Test(form, first_equals_ends_the_name)
{
    struct waf_form *f = ok("a=b=c&d==");
    cr_assert_str_eq(waf_form_get(f, "a"), "b=c");
    cr_assert_str_eq(waf_form_get(f, "d"), "=");
    waf_form_free(f);
    f = ok("n%3Dx=1");
    cr_assert_str_eq(waf_form_get(f, "n=x"), "1", "an encoded '=' belongs to the name");
    waf_form_free(f);
}

Test(form, not_nul_terminated_input)
{
    const char buf[] = "a=1&b=2XXXX";
    struct waf_form *f = NULL;
    cr_assert_eq(waf_form_parse(buf, 7, &f, NULL, 0), WAF_FORM_OK);
    cr_assert_str_eq(waf_form_get(f, "b"), "2");
    waf_form_free(f);
}

Test(form, repeated_names)
{
    fails("scope=a&scope=b", WAF_FORM_REPEATED, "parameter \"scope\" is repeated");
    fails("scope=a&x=1&scope=a", WAF_FORM_REPEATED, "parameter \"scope\" is repeated");
    fails("scope=&scope=x", WAF_FORM_REPEATED, "\"scope\"");
    fails("scope=x&scope=", WAF_FORM_REPEATED, "\"scope\"");
    fails("scope=x&scope", WAF_FORM_REPEATED, "\"scope\"");
    fails("scope&scope", WAF_FORM_REPEATED, "\"scope\"");
    fails("scope=a&&scope=b&", WAF_FORM_REPEATED, "\"scope\"");
}

Test(form, repeated_after_decoding)
{
    fails("scope=a&sc%6Fpe=b", WAF_FORM_REPEATED, "parameter \"scope\" is repeated");
    fails("%73%63%6f%70%65=a&scope=b", WAF_FORM_REPEATED, "\"scope\"");
    fails("a+b=1&a%20b=2", WAF_FORM_REPEATED, "parameter \"a%20b\" is repeated");
    struct waf_form *f = ok("Scope=a&scope=b&SCOPE=c");
    cr_assert_str_eq(waf_form_get(f, "Scope"), "a");
    cr_assert_str_eq(waf_form_get(f, "scope"), "b");
    cr_assert_str_eq(waf_form_get(f, "SCOPE"), "c");
    waf_form_free(f);
}

Test(form, detail_quotes_names_safely)
{
    /* '"', '\\', '%', space and non-ASCII bytes are written as %XX. */
    fails("%22%5C%25=1&%22%5C%25=2", WAF_FORM_REPEATED, "parameter \"%22%5C%25\" is repeated");
    fails("n%C3%BC=1&n%c3%bc=2", WAF_FORM_REPEATED, "parameter \"n%C3%BC\" is repeated");
}

Test(form, bad_percent_encoding)
{
    fails("%", WAF_FORM_BAD_ENCODING, "bad percent-encoding at byte 0");
    fails("a=%", WAF_FORM_BAD_ENCODING, "bad percent-encoding at byte 2");
    fails("a=%4", WAF_FORM_BAD_ENCODING, "bad percent-encoding at byte 2");
    fails("a=%4&b=1", WAF_FORM_BAD_ENCODING, "bad percent-encoding at byte 2");
    fails("a=%zz", WAF_FORM_BAD_ENCODING, "bad percent-encoding at byte 2");
    fails("a=%4g", WAF_FORM_BAD_ENCODING, "bad percent-encoding at byte 2");
    fails("a=%g4", WAF_FORM_BAD_ENCODING, "bad percent-encoding at byte 2");
    fails("a=% 41", WAF_FORM_BAD_ENCODING, "bad percent-encoding at byte 2");
    fails("a=%+41", WAF_FORM_BAD_ENCODING, "bad percent-encoding at byte 2");
    fails("a=%%41", WAF_FORM_BAD_ENCODING, "bad percent-encoding at byte 2");
    fails("a=1&b=%zz", WAF_FORM_BAD_ENCODING, "bad percent-encoding at byte 6");
    fails("a%=1", WAF_FORM_BAD_ENCODING, "bad percent-encoding at byte 1");
    fails("a=x%2", WAF_FORM_BAD_ENCODING, "bad percent-encoding at byte 3");
    fails("a=%0x41", WAF_FORM_BAD_ENCODING, "bad percent-encoding at byte 2");
}

Test(form, control_characters)
{
    fails("a=%00", WAF_FORM_BAD_ENCODING, "control character 0x00 at byte 2");
    fails("a=x%00y", WAF_FORM_BAD_ENCODING, "control character 0x00 at byte 3");
    fails("%00=1", WAF_FORM_BAD_ENCODING, "control character 0x00 at byte 0");
    fails("a%01b=1", WAF_FORM_BAD_ENCODING, "control character 0x01 at byte 1");
    fails("a=%09", WAF_FORM_BAD_ENCODING, "control character 0x09");
    fails("a=%0A", WAF_FORM_BAD_ENCODING, "control character 0x0a");
    fails("a=%0d%0a", WAF_FORM_BAD_ENCODING, "control character 0x0d");
    fails("a=%1F", WAF_FORM_BAD_ENCODING, "control character 0x1f");
    fails("a=%7f", WAF_FORM_BAD_ENCODING, "control character 0x7f");
    fails("a=x\ty", WAF_FORM_BAD_ENCODING, "control character 0x09 at byte 3");
    fails("a=1\r\n", WAF_FORM_BAD_ENCODING, "control character 0x0d at byte 3");
    fails("a=1\n", WAF_FORM_BAD_ENCODING, "control character 0x0a at byte 3");
    fails("a\x7f=1", WAF_FORM_BAD_ENCODING, "control character 0x7f at byte 1");
    fails("a=\x1b[31m", WAF_FORM_BAD_ENCODING, "control character 0x1b at byte 2");
    fails_n("a=x\0y", 5, WAF_FORM_BAD_ENCODING, "control character 0x00 at byte 3");
    fails_n("a=1&\0", 5, WAF_FORM_BAD_ENCODING, "control character 0x00 at byte 4");
    fails_n("\0", 1, WAF_FORM_BAD_ENCODING, "control character 0x00 at byte 0");
    /* The printable edges pass. */
    struct waf_form *f = ok("a=%20%7E%21");
    cr_assert_str_eq(waf_form_get(f, "a"), " ~!");
    waf_form_free(f);
}

Test(form, empty_name)
{
    fails("=x", WAF_FORM_BAD_ENCODING, "empty parameter name at byte 0");
    fails("=", WAF_FORM_BAD_ENCODING, "empty parameter name at byte 0");
    fails("a=1&=", WAF_FORM_BAD_ENCODING, "empty parameter name at byte 4");
    fails("a=1&&=2", WAF_FORM_BAD_ENCODING, "empty parameter name at byte 5");
}

Test(form, utf8_passes_through)
{
    struct waf_form *f = ok("name=J%C3%BCrgen&city=M\xc3\xbcnchen&e=%F0%9F%94%91&"
                            "k=\xe6\x9d\xb1\xe4\xba\xac&%C3%A9t%C3%A9=1");
    cr_assert_str_eq(waf_form_get(f, "name"), "J\xc3\xbcrgen");
    cr_assert_str_eq(waf_form_get(f, "city"), "M\xc3\xbcnchen");
    cr_assert_str_eq(waf_form_get(f, "e"), "\xf0\x9f\x94\x91");
    cr_assert_str_eq(waf_form_get(f, "k"), "\xe6\x9d\xb1\xe4\xba\xac");
    cr_assert_str_eq(waf_form_get(f, "\xc3\xa9t\xc3\xa9"), "1");
    waf_form_free(f);
    /* Edges: U+0080, U+07FF, U+0800, U+D7FF, U+E000, U+FFFF, U+10000, U+10FFFF. */
    f = ok("a=%C2%80%DF%BF%E0%A0%80%ED%9F%BF%EE%80%80%EF%BF%BF%F0%90%80%80%F4%8F%BF%BF");
    cr_assert_eq(strlen(waf_form_get(f, "a")), 2 + 2 + 3 + 3 + 3 + 3 + 4 + 4);
    waf_form_free(f);
    /* A sequence may mix raw and encoded bytes: decoding comes first. */
    f = ok("a=\xc3%BC");
    cr_assert_str_eq(waf_form_get(f, "a"), "\xc3\xbc");
    waf_form_free(f);
}

Test(form, ill_formed_utf8)
{
    fails("a=%C3", WAF_FORM_BAD_ENCODING, "invalid UTF-8 at byte 2");
    fails("a=%C3&b=1", WAF_FORM_BAD_ENCODING, "invalid UTF-8 at byte 2");
    fails("a=x%C3x", WAF_FORM_BAD_ENCODING, "invalid UTF-8 at byte 3");
    fails("a=%BC", WAF_FORM_BAD_ENCODING, "invalid UTF-8 at byte 2");
    fails("a=%C0%AF", WAF_FORM_BAD_ENCODING, "invalid UTF-8 at byte 2");    /* overlong '/' */
    fails("a=%C1%BF", WAF_FORM_BAD_ENCODING, "invalid UTF-8");              /* overlong */
    fails("a=%E0%80%AF", WAF_FORM_BAD_ENCODING, "invalid UTF-8");           /* overlong */
    fails("a=%F0%80%80%AF", WAF_FORM_BAD_ENCODING, "invalid UTF-8");        /* overlong */
    fails("a=%ED%A0%80", WAF_FORM_BAD_ENCODING, "invalid UTF-8 at byte 2"); /* surrogate */
    fails("a=%F4%90%80%80", WAF_FORM_BAD_ENCODING, "invalid UTF-8");        /* > U+10FFFF */
    fails("a=%F5%80%80%80", WAF_FORM_BAD_ENCODING, "invalid UTF-8");
    fails("a=%FF", WAF_FORM_BAD_ENCODING, "invalid UTF-8");
    fails("a=\xff", WAF_FORM_BAD_ENCODING, "invalid UTF-8 at byte 2");
    fails("a=\xe2\x82", WAF_FORM_BAD_ENCODING, "invalid UTF-8 at byte 2"); /* truncated */
    fails("a=%E2%82%", WAF_FORM_BAD_ENCODING, "bad percent-encoding at byte 8");
    fails("\xc3=1", WAF_FORM_BAD_ENCODING, "invalid UTF-8 at byte 0");      /* cut by '=' */
    fails("a=%C3&%BC=1", WAF_FORM_BAD_ENCODING, "invalid UTF-8 at byte 2"); /* cut by '&' */
}

Test(form, sql_and_markup_metacharacters_are_data)
{
    struct waf_form *f = ok("username=admin'--&password=x%27+OR+1%3D1%3B+DROP+TABLE+users%3B--"
                            "&q=%22%5C%60$1;%25_*&h=<script>alert(1)</script>");
    cr_assert_str_eq(waf_form_get(f, "username"), "admin'--");
    cr_assert_str_eq(waf_form_get(f, "password"), "x' OR 1=1; DROP TABLE users;--");
    cr_assert_str_eq(waf_form_get(f, "q"), "\"\\`$1;%_*");
    cr_assert_str_eq(waf_form_get(f, "h"), "<script>alert(1)</script>");
    waf_form_free(f);
    f = ok("a;b=1");
    cr_assert_str_eq(waf_form_get(f, "a;b"), "1", "';' is not a separator");
    waf_form_free(f);
}

/* A body of exactly len bytes: "a=" and 'x' filling pairs of at most 8000 bytes. */
static char *body_of(size_t len)
{
    char *b = malloc(len + 1);
    cr_assert_not_null(b);
    size_t o = 0;
    for (unsigned k = 0; o < len; k++) {
        o += (size_t)snprintf(b + o, len + 1 - o, "%s%u=", k ? "&" : "", k);
        while (o < len && o % 8000 != 0)
            b[o++] = 'x';
    }
    b[len] = '\0';
    return b;
}

Test(form, input_size_cap)
{
    char *b = body_of(WAF_FORM_MAX_BODY);
    cr_assert_eq(strlen(b), 65536);
    struct waf_form *f = ok(b);
    cr_assert_eq(waf_form_count(f), 9);
    waf_form_free(f);
    free(b);
    b = body_of(WAF_FORM_MAX_BODY + 1);
    fails(b, WAF_FORM_TOO_LARGE, "input of 65537 bytes is larger than 65536 bytes");
    free(b);
}

/* n pairs "p0=v&p1=v&...", or names only when value is NULL. */
static char *pairs_of(unsigned n, const char *value)
{
    size_t cap = (size_t)n * 32 + 1;
    char *b = malloc(cap);
    cr_assert_not_null(b);
    size_t o = 0;
    b[0] = '\0';
    for (unsigned k = 0; k < n; k++)
        o += (size_t)snprintf(b + o, cap - o, "%sp%u%s%s", k ? "&" : "", k, value ? "=" : "",
                              value ? value : "");
    return b;
}

Test(form, pair_count_cap)
{
    char *b = pairs_of(64, "v");
    struct waf_form *f = ok(b);
    cr_assert_eq(waf_form_count(f), 64);
    cr_assert_str_eq(waf_form_name(f, 63), "p63");
    cr_assert_str_eq(waf_form_get(f, "p63"), "v");
    waf_form_free(f);
    free(b);
    b = pairs_of(65, "v");
    fails(b, WAF_FORM_TOO_MANY, "more than 64 parameters");
    free(b);
    b = pairs_of(65, NULL);
    fails(b, WAF_FORM_TOO_MANY, "more than 64 parameters");
    free(b);
    /* Empty segments do not count. */
    char *c = pairs_of(64, "");
    size_t n = strlen(c);
    char *d = malloc(n + 200);
    cr_assert_not_null(d);
    memset(d, '&', 100);
    memcpy(d + 100, c, n);
    memset(d + 100 + n, '&', 99);
    d[n + 199] = '\0';
    f = ok(d);
    cr_assert_eq(waf_form_count(f), 64);
    cr_assert_null(waf_form_get(f, "p0"));
    waf_form_free(f);
    free(c);
    free(d);
    /* The count is checked before decoding: 65 pairs with a bad one are TOO_MANY. */
    b = pairs_of(65, "%zz");
    fails(b, WAF_FORM_TOO_MANY, "more than 64");
    free(b);
}

Test(form, name_length_cap)
{
    char b[3 * 200 + 8];
    memset(b, 'n', 128);
    strcpy(b + 128, "=1");
    struct waf_form *f = ok(b);
    cr_assert_eq(strlen(waf_form_name(f, 0)), 128);
    waf_form_free(f);
    memset(b, 'n', 129);
    strcpy(b + 129, "=1");
    fails(b, WAF_FORM_TOO_LARGE, "parameter name at byte 0 is longer than 128 bytes");
    strcpy(b, "a=1&");
    memset(b + 4, 'n', 129);
    b[133] = '\0';
    fails(b, WAF_FORM_TOO_LARGE, "parameter name at byte 4 is longer than 128 bytes");
    /* The cap counts decoded bytes: 128 encoded bytes are fine, 129 are not. */
    for (int i = 0; i < 128; i++)
        memcpy(b + 3 * i, "%6E", 3);
    strcpy(b + 3 * 128, "=1");
    f = ok(b);
    cr_assert_eq(strlen(waf_form_name(f, 0)), 128);
    waf_form_free(f);
    for (int i = 0; i < 129; i++)
        memcpy(b + 3 * i, "%6E", 3);
    strcpy(b + 3 * 129, "=1");
    fails(b, WAF_FORM_TOO_LARGE, "longer than 128 bytes");
}

Test(form, value_length_cap)
{
    size_t cap = 3 * 8200 + 16;
    char *b = malloc(cap);
    cr_assert_not_null(b);
    strcpy(b, "v=");
    memset(b + 2, 'x', 8192);
    b[8194] = '\0';
    struct waf_form *f = ok(b);
    cr_assert_eq(strlen(waf_form_get(f, "v")), 8192);
    waf_form_free(f);
    memset(b + 2, 'x', 8193);
    b[8195] = '\0';
    fails(b, WAF_FORM_TOO_LARGE, "value of parameter \"v\" is longer than 8192 bytes");
    for (int i = 0; i < 8192; i++)
        memcpy(b + 2 + 3 * i, "%41", 3);
    b[2 + 3 * 8192] = '\0';
    f = ok(b);
    cr_assert_eq(strlen(waf_form_get(f, "v")), 8192);
    waf_form_free(f);
    strcpy(b + 2 + 3 * 8192, "+");
    fails(b, WAF_FORM_TOO_LARGE, "longer than 8192 bytes");
    free(b);
}

Test(form, detail_is_optional_and_truncated)
{
    struct waf_form *f = NULL;
    cr_assert_eq(waf_form_parse("a=1&a=2", 7, &f, NULL, 0), WAF_FORM_REPEATED);
    cr_assert_null(f);
    char d[8];
    cr_assert_eq(waf_form_parse("a=1&a=2", 7, &f, d, sizeof(d)), WAF_FORM_REPEATED);
    cr_assert_str_eq(d, "paramet");
    char one[1] = {'z'};
    cr_assert_eq(waf_form_parse("a=1", 3, &f, one, 1), WAF_FORM_OK);
    cr_assert_eq(one[0], '\0');
    waf_form_free(f);
}

Test(form, strerror)
{
    cr_assert_str_eq(waf_form_strerror(WAF_FORM_OK), "ok");
    cr_assert_str_eq(waf_form_strerror(WAF_FORM_TOO_LARGE), "too_large");
    cr_assert_str_eq(waf_form_strerror(WAF_FORM_TOO_MANY), "too_many");
    cr_assert_str_eq(waf_form_strerror(WAF_FORM_BAD_ENCODING), "bad_encoding");
    cr_assert_str_eq(waf_form_strerror(WAF_FORM_REPEATED), "repeated");
    cr_assert_str_eq(waf_form_strerror(WAF_FORM_NOMEM), "out_of_memory");
    cr_assert_str_eq(waf_form_strerror((enum waf_form_result)99), "unknown");
    cr_assert_str_eq(waf_form_strerror((enum waf_form_result) - 1), "unknown");
}

/* The application/x-www-form-urlencoded byte serializer (WHATWG URL), for round trips. */
static size_t encode(const unsigned char *in, size_t n, char *out)
{
    static const char hexdig[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = in[i];
        if (c == ' ') {
            out[o++] = '+';
        } else if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                   c == '*' || c == '-' || c == '.' || c == '_') {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hexdig[c >> 4];
            out[o++] = hexdig[c & 15];
        }
    }
    out[o] = '\0';
    return o;
}

Test(form, decode_round_trips)
{
    /* All printable ASCII and some UTF-8: encode, then decode gives the original back. */
    unsigned char orig[256];
    size_t n = 0;
    for (unsigned c = 0x20; c < 0x7f; c++)
        orig[n++] = (unsigned char)c;
    const char *u = "\xc3\xbc\xe2\x82\xac\xf0\x9f\x94\x91\xf4\x8f\xbf\xbf";
    memcpy(orig + n, u, strlen(u));
    n += strlen(u);
    char enc[3 * sizeof(orig) + 1], dec[sizeof(orig) + 1];
    size_t el = encode(orig, n, enc), dl = 99;
    cr_assert_eq(waf_form_decode(enc, el, dec, sizeof(dec), &dl), WAF_FORM_OK);
    cr_assert_eq(dl, n);
    cr_assert_eq(memcmp(dec, orig, n), 0);
    cr_assert_eq(dec[n], '\0');
    /* The same string as a form value comes back too. */
    char body[sizeof(enc) + 8] = "v=";
    strcat(body, enc);
    struct waf_form *f = ok(body);
    cr_assert_eq(strlen(waf_form_get(f, "v")), n);
    cr_assert_eq(memcmp(waf_form_get(f, "v"), orig, n), 0);
    waf_form_free(f);
}

Test(form, decode_basic_credentials)
{
    /* RFC 6749 2.3.1: client_id and client_secret are form-encoded before Basic encoding. */
    char out[64];
    size_t ol = 0;
    const char *id = "wic%3A1+x%26y%3Dz";
    cr_assert_eq(waf_form_decode(id, strlen(id), out, sizeof(out), &ol), WAF_FORM_OK);
    cr_assert_str_eq(out, "wic:1 x&y=z");
    cr_assert_eq(ol, 11);
    cr_assert_eq(waf_form_decode("a&b=c", 5, out, sizeof(out), NULL), WAF_FORM_OK);
    cr_assert_str_eq(out, "a&b=c", "'&' and '=' are data");
    cr_assert_eq(waf_form_decode("", 0, out, sizeof(out), &ol), WAF_FORM_OK);
    cr_assert_str_eq(out, "");
    cr_assert_eq(ol, 0);
    cr_assert_eq(waf_form_decode(NULL, 0, out, 1, &ol), WAF_FORM_OK);
    cr_assert_str_eq(out, "");
}

Test(form, decode_errors_and_capacity)
{
    char out[4];
    size_t ol = 99;
    cr_assert_eq(waf_form_decode("abc", 3, out, 4, &ol), WAF_FORM_OK, "exact fit");
    cr_assert_str_eq(out, "abc");
    cr_assert_eq(waf_form_decode("%41%42%43", 9, out, 4, &ol), WAF_FORM_OK);
    cr_assert_str_eq(out, "ABC");
    cr_assert_eq(waf_form_decode("abcd", 4, out, 4, &ol), WAF_FORM_TOO_LARGE);
    cr_assert_str_eq(out, "");
    cr_assert_eq(ol, 0);
    cr_assert_eq(waf_form_decode("a", 1, out, 0, &ol), WAF_FORM_TOO_LARGE);
    cr_assert_eq(waf_form_decode("", 0, out, 0, &ol), WAF_FORM_TOO_LARGE, "no room for NUL");
    const char *bad[] = {"%", "%4", "%zz", "%00", "a%0Ab", "\x7f", "%C3", "\xff", "%ED%A0%80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char big[16] = "junk";
        ol = 99;
        cr_assert_eq(waf_form_decode(bad[i], strlen(bad[i]), big, sizeof(big), &ol),
                     WAF_FORM_BAD_ENCODING, "%s", bad[i]);
        cr_assert_str_eq(big, "");
        cr_assert_eq(ol, 0);
    }
    cr_assert_eq(waf_form_decode("a\0b", 3, out, 4, &ol), WAF_FORM_BAD_ENCODING);
}

Test(form, strings_are_nul_free)
{
    /* Every accepted value's strlen is its decoded length: no NUL can hide inside. */
    struct waf_form *f = ok("a=%41%42&b=x+y");
    cr_assert_eq(strlen(waf_form_get(f, "a")), 2);
    cr_assert_eq(strlen(waf_form_get(f, "b")), 3);
    waf_form_free(f);
}
