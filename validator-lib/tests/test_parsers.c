/* Byte-level parsers and builders: base64url, Authorization header, URI compare, TNA and
 * challenge headers. */
#include "../src/internal.h"

#include <criterion/criterion.h>
#include <string.h>

static bool b64(const char *in, uint8_t *out, size_t *n)
{
    return ims_b64url_decode(in, strlen(in), out, n);
}

Test(b64url, round_trip_every_length)
{
    uint8_t in[64], out[64];
    char enc[100];
    for (size_t n = 0; n < sizeof(in); n++) {
        for (size_t i = 0; i < n; i++)
            in[i] = (uint8_t)(i * 37 + n);
        size_t el = ims_b64url_encode(in, n, enc), dl = 0;
        cr_assert(ims_b64url_decode(enc, el, out, &dl), "length %zu", n);
        cr_assert_eq(dl, n);
        cr_assert_eq(ims_b64url_decoded_len(el), n);
        cr_assert(memcmp(in, out, n) == 0);
    }
}

Test(b64url, rejects_padding_std_alphabet_and_noncanonical)
{
    uint8_t out[16];
    size_t n;
    cr_assert(b64("eyJ0", out, &n));
    cr_assert_not(b64("eyJ0eQ==", out, &n), "padding");
    cr_assert_not(b64("ab+/", out, &n), "standard alphabet");
    cr_assert_not(b64("abcde", out, &n), "length 1 mod 4");
    cr_assert_not(b64("QR", out, &n), "non-zero trailing bits");
    cr_assert(b64("QQ", out, &n) && n == 1 && out[0] == 'A');
    cr_assert_not(b64("QUF\x01", out, &n), "control byte");
}

struct hcase {
    const char *in;
    enum imsauth_result want;
    const char *tok;
};

Test(header, forms_and_errors)
{
    static const struct hcase cases[] = {
        {"Bearer abc.def.ghi", IMSAUTH_OK, "abc.def.ghi"},
        {"bearer abc.def.ghi", IMSAUTH_OK, "abc.def.ghi"},
        {"BEARER\tabc", IMSAUTH_OK, "abc"},
        {"  Bearer   abc==  ", IMSAUTH_OK, "abc=="},
        {"Bearer a+b/c~d", IMSAUTH_OK, "a+b/c~d"},
        {"Bearer access_token=\"abc.def\"", IMSAUTH_OK, "abc.def"},
        {"Bearer access_token = \"abc.def\"", IMSAUTH_OK, "abc.def"},
        {"Bearer ACCESS_TOKEN=abc.def", IMSAUTH_OK, "abc.def"},
        {"", IMSAUTH_ERR_MISSING, NULL},
        {" \t ", IMSAUTH_ERR_MISSING, NULL},
        {"Bearer", IMSAUTH_ERR_MALFORMED, NULL},
        {"Bearer   ", IMSAUTH_ERR_MALFORMED, NULL},
        {"Bearer a b", IMSAUTH_ERR_MALFORMED, NULL},
        {"Bearer a, Bearer b", IMSAUTH_ERR_MALFORMED, NULL},
        {"Bearer a=b", IMSAUTH_ERR_MALFORMED, NULL},
        {"Bearer ab\"c", IMSAUTH_ERR_MALFORMED, NULL},
        {"Bearer abc\r\n", IMSAUTH_ERR_MALFORMED, NULL},
        {"Bearer access_token=\"\"", IMSAUTH_ERR_MALFORMED, NULL},
        {"Bearer access_token=\"abc", IMSAUTH_ERR_MALFORMED, NULL},
        {"Bearer access_token=\"a\\\"b\"", IMSAUTH_ERR_MALFORMED, NULL},
        {"Bearer access_token=\"a\", access_token=\"b\"", IMSAUTH_ERR_MALFORMED, NULL},
        {"Bearer realm=\"x\"", IMSAUTH_ERR_MALFORMED, NULL},
        {"Bearer\xc3\xa9 abc", IMSAUTH_ERR_MALFORMED, NULL},
        {"Digest username=\"a\"", IMSAUTH_ERR_UNSUPPORTED_SCHEME, NULL},
        {"Bearerx abc", IMSAUTH_ERR_UNSUPPORTED_SCHEME, NULL},
        {"\"Bearer\" abc", IMSAUTH_ERR_MALFORMED, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const uint8_t *tok = NULL;
        size_t tl = 0;
        char detail[128] = "";
        enum imsauth_result r = ims_header_parse((const uint8_t *)cases[i].in, strlen(cases[i].in),
                                                 8192, &tok, &tl, detail, sizeof(detail));
        cr_expect_eq(r, cases[i].want, "case %zu [%s]: got %s (%s)", i, cases[i].in,
                     imsauth_strerror(r), detail);
        if (cases[i].tok && r == IMSAUTH_OK)
            cr_expect(tl == strlen(cases[i].tok) && memcmp(tok, cases[i].tok, tl) == 0,
                      "case %zu token", i);
    }
}

Test(header, nul_byte_and_size_limit)
{
    const uint8_t *tok;
    size_t tl;
    static const uint8_t nul[] = "Bearer ab\0cd";
    cr_assert_eq(ims_header_parse(nul, sizeof(nul) - 1, 8192, &tok, &tl, NULL, 0),
                 IMSAUTH_ERR_MALFORMED);
    char big[200];
    memcpy(big, "Bearer ", 7);
    memset(big + 7, 'a', sizeof(big) - 7);
    cr_assert_eq(ims_header_parse((uint8_t *)big, sizeof(big), 100, &tok, &tl, NULL, 0),
                 IMSAUTH_ERR_TOO_LARGE);
    cr_assert_eq(ims_header_parse((uint8_t *)big, 7 + 100, 100, &tok, &tl, NULL, 0), IMSAUTH_OK);
    cr_assert_eq(ims_header_parse((uint8_t *)big, 7 + 101, 100, &tok, &tl, NULL, 0),
                 IMSAUTH_ERR_TOO_LARGE);
    cr_assert_eq(ims_header_parse(NULL, 5, 100, &tok, &tl, NULL, 0), IMSAUTH_ERR_MISSING);
}

Test(uri, impu_equality)
{
    cr_assert(ims_uri_equal("sip:alice@home1.net", "sip:alice@home1.net"));
    cr_assert(ims_uri_equal("sip:alice@home1.net", "<sip:alice@HOME1.net>"));
    cr_assert(ims_uri_equal("sip:alice@home1.net", "\"Alice\" <SIP:alice@home1.net>;tag=1"));
    cr_assert(ims_uri_equal("sip:alice@home1.net", "sip:alice@home1.net;transport=ws"));
    cr_assert(ims_uri_equal("tel:+15551234", "<tel:+15551234;phone-context=x>"));
    cr_assert_not(ims_uri_equal("sip:alice@home1.net", "sip:Alice@home1.net"), "user exact");
    cr_assert_not(ims_uri_equal("sip:alice@home1.net", "sips:alice@home1.net"));
    cr_assert_not(ims_uri_equal("sip:alice@home1.net", "sip:alice@home1.net.evil"));
    cr_assert_not(ims_uri_equal("sip:alice@home1.net", "sip:alice@home1.net:5061"));
    cr_assert_not(ims_uri_equal("sip:alice@home1.net", "sip:home1.net"));
    cr_assert_not(ims_uri_equal("tel:+15551234", "tel:+155512345"));
    cr_assert_not(ims_uri_equal("sip:alice@home1.net", "alice@home1.net"));
    cr_assert_not(ims_uri_equal("sip:alice@home1.net", ""));
    /* A user part may hold ';' and '?' (RFC 3261 user-unreserved): the first '@' ends it,
       and only then do parameters start. Cutting at ';' first would let such an IMPU
       match the same user prefix at any host. */
    cr_assert(
        ims_uri_equal("sip:+15551234;npdi@home1.net", "sip:+15551234;npdi@HOME1.net;user=phone"));
    cr_assert_not(ims_uri_equal("sip:+15551234;npdi@home1.net", "sip:+15551234;x@evil.net"));
    cr_assert_not(ims_uri_equal("sip:+15551234;npdi@home1.net", "sip:+15551234@home1.net"));
    cr_assert_not(ims_uri_equal("sip:alice;x@home1.net", "sip:alice"));
    cr_assert_not(ims_uri_equal("sip:a?b@home1.net", "sip:a?c@home1.net"));
    cr_assert(ims_uri_equal("sip:home1.net;lr", "<sip:HOME1.net>"));
}

Test(build, tna_header_exact)
{
    char buf[256];
    size_t need = 0;
    cr_assert_eq(imsauth_tna_header("user1_private@home1.net", "home1.net", "sip:home1.net", buf,
                                    sizeof(buf), &need),
                 IMSAUTH_OK);
    cr_assert_str_eq(buf, "Digest username=\"user1_private@home1.net\", realm=\"home1.net\", "
                          "uri=\"sip:home1.net\", nonce=\"\", response=\"\", "
                          "integrity-protected=\"auth-done\"");
    cr_assert_eq(need, strlen(buf) + 1);
}

Test(build, tna_escaping_and_limits)
{
    char buf[256];
    size_t need = 0;
    cr_assert_eq(imsauth_tna_header("a\"b\\c", "r", "sip:r", buf, sizeof(buf), NULL), IMSAUTH_OK);
    cr_assert(strstr(buf, "username=\"a\\\"b\\\\c\"") != NULL, "%s", buf);
    cr_assert_eq(imsauth_tna_header("a\r\nX: y", "r", "sip:r", buf, sizeof(buf), NULL),
                 IMSAUTH_ERR_INVALID_ARG);
    cr_assert_eq(imsauth_tna_header("", "r", "sip:r", buf, sizeof(buf), NULL),
                 IMSAUTH_ERR_INVALID_ARG);
    cr_assert_eq(imsauth_tna_header("alice", "r", "sip:r", buf, 10, &need),
                 IMSAUTH_ERR_BUFFER_SMALL);
    cr_assert_str_eq(buf, "");
    cr_assert_eq(imsauth_tna_header("alice", "r", "sip:r", buf, need, NULL), IMSAUTH_OK);
    cr_assert_eq(strlen(buf) + 1, need);
    cr_assert_eq(imsauth_tna_header("alice", "r", "sip:r", buf, need - 1, NULL),
                 IMSAUTH_ERR_BUFFER_SMALL);
}

Test(result, status_mapping)
{
    cr_assert_eq(imsauth_sip_status(IMSAUTH_ERR_MISSING), 401);
    cr_assert_null(imsauth_rfc6750_error(IMSAUTH_ERR_MISSING));
    cr_assert_eq(imsauth_sip_status(IMSAUTH_ERR_MALFORMED), 400);
    cr_assert_str_eq(imsauth_rfc6750_error(IMSAUTH_ERR_MALFORMED), "invalid_request");
    cr_assert_eq(imsauth_sip_status(IMSAUTH_ERR_EXPIRED), 401);
    cr_assert_str_eq(imsauth_rfc6750_error(IMSAUTH_ERR_EXPIRED), "invalid_token");
    cr_assert_eq(imsauth_sip_status(IMSAUTH_ERR_IDENTITY_NOT_GRANTED), 403);
    cr_assert_str_eq(imsauth_rfc6750_error(IMSAUTH_ERR_INSUFFICIENT_SCOPE), "insufficient_scope");
    cr_assert_eq(imsauth_sip_status(IMSAUTH_ERR_UNAVAILABLE), 503);
    cr_assert_str_eq(imsauth_strerror((enum imsauth_result)999), "unknown");
}

Test(cache_control, max_age)
{
#define CC(s) ims_cache_control_max_age(s, strlen(s))
    cr_assert_eq(CC(" public, max-age=600\r\n"), 600);
    cr_assert_eq(CC("max-age=\"30\""), 30);
    cr_assert_eq(CC("no-store"), 0);
    cr_assert_eq(CC("max-age=60, no-cache"), 0);
    cr_assert_eq(CC("private"), -1);
    cr_assert_eq(CC("max-age="), -1);
    long huge = CC("max-age=99999999999999");
    cr_assert(huge >= 100000000 && huge < 1000000000, "overflow bounded: %ld", huge);
#undef CC
}
