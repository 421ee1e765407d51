/* sipmsg: good requests and responses parse, each malformed case gets its status and a
 * detail naming the problem, and no detail ever holds a header value (the token). */
#include "sipmsg.h"

#include <criterion/criterion.h>
#include <osipparser2/osip_parser.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"

#define REGISTER_HEAD                                                                              \
    "REGISTER sip:ims.example.net SIP/2.0\r\n"                                                     \
    "Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKnashds7\r\n"                              \
    "Max-Forwards: 70\r\n"                                                                         \
    "To: <sip:alice@ims.example.net>\r\n"                                                          \
    "From: <sip:alice@ims.example.net>;tag=a73kszlfl\r\n"                                          \
    "Call-ID: 1j9FpLxk3uxtm8tn@df7jal23ls0d.invalid\r\n"                                           \
    "CSeq: 1 REGISTER\r\n"                                                                         \
    "Contact: <sip:alice@df7jal23ls0d.invalid;transport=ws>;expires=600\r\n"

#define SDP                                                                                        \
    "v=0\r\n"                                                                                      \
    "o=- 4858251974351650128 2 IN IP4 127.0.0.1\r\n"                                               \
    "s=-\r\n"                                                                                      \
    "t=0 0\r\n"                                                                                    \
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"                                                          \
    "c=IN IP4 0.0.0.0\r\n"                                                                         \
    "a=rtpmap:111 opus/48000/2\r\n"

static int parse_str(const char *s, const struct ep_sipmsg_limits *lim, struct ep_sipmsg **m,
                     struct ep_sip_error *err)
{
    return ep_sipmsg_parse((const uint8_t *)s, strlen(s), lim, m, err);
}

/* Expects s refused with status and a detail containing want (and never the token). */
static void expect_refused(const char *s, size_t len, int status, const char *want)
{
    struct ep_sipmsg *m = NULL;
    struct ep_sip_error err;
    memset(&err, 0, sizeof(err));
    int rc = ep_sipmsg_parse((const uint8_t *)s, len, NULL, &m, &err);
    cr_assert_eq(rc, -1, "accepted, expected %d (%s)", status, want);
    cr_assert_null(m);
    cr_expect_eq(err.status, status, "status %d, expected %d: %s", err.status, status, err.detail);
    cr_expect_not_null(err.reason);
    cr_expect(strstr(err.detail, want) != NULL, "detail \"%s\" lacks \"%s\"", err.detail, want);
    cr_expect(strstr(err.detail, "eyJ") == NULL, "detail leaks the token: %s", err.detail);
    cr_expect(strchr(err.detail, '\n') == NULL && strchr(err.detail, '\r') == NULL);
}

static void expect_refused_str(const char *s, int status, const char *want)
{
    expect_refused(s, strlen(s), status, want);
}

/* REGISTER_HEAD with header line `drop` (a prefix such as "To:") removed. */
static char *register_without(const char *drop)
{
    const char *src = REGISTER_HEAD "Authorization: Bearer " TOKEN "\r\n"
                                    "Content-Length: 0\r\n\r\n";
    char *out = malloc(strlen(src) + 1);
    cr_assert_not_null(out);
    const char *p = src;
    char *o = out;
    while (*p != '\0') {
        const char *eol = strstr(p, "\r\n");
        size_t n = (size_t)(eol - p) + 2;
        if (strncmp(p, drop, strlen(drop)) != 0) {
            memcpy(o, p, n);
            o += n;
        }
        p += n;
    }
    *o = '\0';
    return out;
}

Test(sipmsg, register_keeps_raw_bearer)
{
    const char *s = REGISTER_HEAD "Authorization:   Bearer " TOKEN " \t\r\n"
                                  "Content-Length: 0\r\n\r\n";
    struct ep_sipmsg *m = NULL;
    struct ep_sip_error err;
    cr_assert_eq(parse_str(s, NULL, &m, &err), 0, "%s", err.detail);
    cr_assert(ep_sipmsg_is_request(m));
    cr_assert_str_eq(ep_sipmsg_authorization(m), "Bearer " TOKEN);
    cr_assert_null(ep_sipmsg_proxy_authorization(m));
    osip_message_t *o = ep_sipmsg_osip(m);
    cr_assert_str_eq(o->sip_method, "REGISTER");
    cr_assert_str_eq(o->cseq->method, "REGISTER");
    ep_sipmsg_free(m);
}

Test(sipmsg, header_names_case_insensitive_and_proxy_authorization)
{
    const char *s = REGISTER_HEAD "authorization: Bearer " TOKEN "\r\n"
                                  "PROXY-AUTHORIZATION: Bearer abc.def\r\n"
                                  "l: 0\r\n\r\n";
    struct ep_sipmsg *m = NULL;
    struct ep_sip_error err;
    cr_assert_eq(parse_str(s, NULL, &m, &err), 0, "%s", err.detail);
    cr_assert_str_eq(ep_sipmsg_authorization(m), "Bearer " TOKEN);
    cr_assert_str_eq(ep_sipmsg_proxy_authorization(m), "Bearer abc.def");
    ep_sipmsg_free(m);
}

Test(sipmsg, invite_with_sdp)
{
    char s[2048];
    snprintf(s, sizeof(s),
             "INVITE sip:bob@ims.example.net SIP/2.0\r\n"
             "Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK776asdhds\r\n"
             "Max-Forwards: 70\r\n"
             "To: <sip:bob@ims.example.net>\r\n"
             "From: <sip:alice@ims.example.net>;tag=1928301774\r\n"
             "Call-ID: a84b4c76e66710@df7jal23ls0d.invalid\r\n"
             "CSeq: 314159 INVITE\r\n"
             "Contact: <sip:alice@df7jal23ls0d.invalid;transport=ws;ob>\r\n"
             "Content-Type: application/sdp\r\n"
             "Content-Length: %zu\r\n\r\n%s",
             strlen(SDP), SDP);
    struct ep_sipmsg *m = NULL;
    struct ep_sip_error err;
    cr_assert_eq(parse_str(s, NULL, &m, &err), 0, "%s", err.detail);
    cr_assert_null(ep_sipmsg_authorization(m));
    osip_message_t *o = ep_sipmsg_osip(m);
    osip_body_t *body = NULL;
    cr_assert_geq(osip_message_get_body(o, 0, &body), 0);
    cr_assert_eq(body->length, strlen(SDP));
    cr_assert(memcmp(body->body, SDP, strlen(SDP)) == 0);
    ep_sipmsg_free(m);
}

Test(sipmsg, body_without_content_length_is_the_rest)
{
    const char *s = "MESSAGE sip:bob@ims.example.net SIP/2.0\r\n"
                    "Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK776asdhdt\r\n"
                    "Max-Forwards: 70\r\n"
                    "To: <sip:bob@ims.example.net>\r\n"
                    "From: <sip:alice@ims.example.net>;tag=49583\r\n"
                    "Call-ID: asd88asd77a@df7jal23ls0d.invalid\r\n"
                    "CSeq: 1 MESSAGE\r\n"
                    "Content-Type: text/plain\r\n\r\n"
                    "Watson, come here.";
    struct ep_sipmsg *m = NULL;
    struct ep_sip_error err;
    cr_assert_eq(parse_str(s, NULL, &m, &err), 0, "%s", err.detail);
    osip_body_t *body = NULL;
    cr_assert_geq(osip_message_get_body(ep_sipmsg_osip(m), 0, &body), 0);
    cr_assert_eq(body->length, strlen("Watson, come here."));
    ep_sipmsg_free(m);
}

Test(sipmsg, response)
{
    const char *s = "SIP/2.0 200 OK\r\n"
                    "Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKnashds7\r\n"
                    "To: <sip:alice@ims.example.net>;tag=37GkEhwl6\r\n"
                    "From: <sip:alice@ims.example.net>;tag=a73kszlfl\r\n"
                    "Call-ID: 1j9FpLxk3uxtm8tn@df7jal23ls0d.invalid\r\n"
                    "CSeq: 1 REGISTER\r\n"
                    "Contact: <sip:alice@df7jal23ls0d.invalid;transport=ws>;expires=600\r\n"
                    "Content-Length: 0\r\n\r\n";
    struct ep_sipmsg *m = NULL;
    struct ep_sip_error err;
    cr_assert_eq(parse_str(s, NULL, &m, &err), 0, "%s", err.detail);
    cr_assert_not(ep_sipmsg_is_request(m));
    cr_assert_eq(ep_sipmsg_osip(m)->status_code, 200);
    ep_sipmsg_free(m);
}

Test(sipmsg, response_missing_headers)
{
    expect_refused_str("SIP/2.0 200 OK\r\n"
                       "To: <sip:alice@ims.example.net>;tag=37GkEhwl6\r\n"
                       "From: <sip:alice@ims.example.net>;tag=a73kszlfl\r\n"
                       "Call-ID: 1j9FpLxk3uxtm8tn@df7jal23ls0d.invalid\r\n"
                       "CSeq: 1 REGISTER\r\n\r\n",
                       400, "missing or unparseable Via header");
    expect_refused_str("SIP/2.0 200 OK\r\n"
                       "Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKnashds7\r\n"
                       "To: <sip:alice@ims.example.net>;tag=37GkEhwl6\r\n"
                       "From: <sip:alice@ims.example.net>;tag=a73kszlfl\r\n"
                       "CSeq: 1 REGISTER\r\n\r\n",
                       400, "missing or unparseable Call-ID header");
}

Test(sipmsg, bad_start_lines)
{
    static const char *const lines[] = {
        "REGISTER  sip:ims.example.net SIP/2.0",
        "REGISTER sip:ims.example.net SIP/2.1",
        "REG@STER sip:ims.example.net SIP/2.0",
        "REGISTER ims.example.net SIP/2.0",
        "REGISTER sip:ims.example.net SIP/2.0 ",
        "REGISTER sip:ims.example.net",
        "SIP/2.0 20 OK",
        "SIP/2.0 200OK",
        "SIP/2.0 900 Nine",
        "sip/2.0 200 OK",
        "REGISTER sip:ims.example.net\tSIP/2.0",
        "",
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        char s[2048];
        snprintf(s, sizeof(s), "%s\r\n%s\r\n", lines[i],
                 &REGISTER_HEAD[strlen("REGISTER sip:ims.example.net SIP/2.0\r\n")]);
        expect_refused_str(s, 400, "bad start line");
    }
}

Test(sipmsg, missing_each_mandatory_header)
{
    static const struct {
        const char *drop, *name;
    } cases[] = {
        {"To:", "To"},
        {"From:", "From"},
        {"CSeq:", "CSeq"},
        {"Call-ID:", "Call-ID"},
        {"Max-Forwards:", "Max-Forwards"},
        {"Via:", "Via"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *s = register_without(cases[i].drop);
        char want[64];
        snprintf(want, sizeof(want), "missing or unparseable %s header", cases[i].name);
        expect_refused_str(s, 400, want);
        free(s);
    }
}

Test(sipmsg, cseq_method_mismatch)
{
    expect_refused_str("BYE sip:bob@ims.example.net SIP/2.0\r\n"
                       "Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKnashds8\r\n"
                       "Max-Forwards: 70\r\n"
                       "To: <sip:bob@ims.example.net>;tag=8321234356\r\n"
                       "From: <sip:alice@ims.example.net>;tag=9fxced76sl\r\n"
                       "Call-ID: 3848276298220188511@df7jal23ls0d.invalid\r\n"
                       "CSeq: 2 INVITE\r\n\r\n",
                       400, "CSeq method");
}

Test(sipmsg, bad_content_length)
{
    static const struct {
        const char *cl, *want;
    } cases[] = {
        {"Content-Length: abc", "Content-Length is not"},
        {"Content-Length: -1", "Content-Length is not"},
        {"Content-Length: ", "Content-Length is not"},
        {"Content-Length: 1 0", "Content-Length is not"},
        {"Content-Length: 99999999999", "Content-Length is not"},
        {"Content-Length: 5", "does not match"},
        {"Content-Length: 0\r\nContent-Length: 0", "more than one Content-Length"},
        {"l: 7", "does not match"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char s[2048];
        snprintf(s, sizeof(s), REGISTER_HEAD "%s\r\n\r\nab", cases[i].cl);
        expect_refused_str(s, 400, cases[i].want);
    }
}

Test(sipmsg, oversized)
{
    /* a message over max_message: 513 Message Too Large */
    size_t big = EP_SIPMSG_DEFAULT_MAX_MESSAGE + 1;
    char *s = malloc(big + 1);
    cr_assert_not_null(s);
    size_t hl = strlen(REGISTER_HEAD "\r\n");
    memcpy(s, REGISTER_HEAD "\r\n", hl);
    memset(s + hl, 'x', big - hl);
    s[big] = '\0';
    expect_refused(s, big, 513, "exceeds the limit");

    /* a header section over max_header_section: 400 */
    char *h = malloc(EP_SIPMSG_DEFAULT_MAX_HEADER + 1024);
    cr_assert_not_null(h);
    strcpy(h, REGISTER_HEAD "Subject: ");
    size_t n = strlen(h);
    memset(h + n, 'y', EP_SIPMSG_DEFAULT_MAX_HEADER);
    strcpy(h + n + EP_SIPMSG_DEFAULT_MAX_HEADER, "\r\n\r\n");
    expect_refused_str(h, 400, "header section larger than");

    /* custom limits: the same small message fits exactly, one byte less does not */
    const char *ok = REGISTER_HEAD "\r\n";
    struct ep_sipmsg_limits lim = {.max_message = strlen(ok), .max_header_section = strlen(ok)};
    struct ep_sipmsg *m = NULL;
    struct ep_sip_error err;
    cr_assert_eq(parse_str(ok, &lim, &m, &err), 0, "%s", err.detail);
    ep_sipmsg_free(m);
    lim.max_header_section--;
    cr_assert_eq(parse_str(ok, &lim, &m, &err), -1);
    cr_assert_eq(err.status, 400);
    lim.max_message--;
    cr_assert_eq(parse_str(ok, &lim, &m, &err), -1);
    cr_assert_eq(err.status, 513);
    free(s);
    free(h);
}

Test(sipmsg, too_many_headers)
{
    char s[8192];
    size_t n = (size_t)snprintf(s, sizeof(s), "%s", REGISTER_HEAD);
    for (int i = 0; i < 130; i++)
        n += (size_t)snprintf(s + n, sizeof(s) - n, "X-%d: 1\r\n", i);
    snprintf(s + n, sizeof(s) - n, "\r\n");
    expect_refused_str(s, 400, "header lines");
}

Test(sipmsg, folded_line)
{
    expect_refused_str(REGISTER_HEAD "Subject: hello\r\n world\r\n\r\n", 400,
                       "folded header lines not accepted");
    expect_refused_str(REGISTER_HEAD "Authorization: Bearer\r\n\t" TOKEN "\r\n\r\n", 400,
                       "folded header lines not accepted");
}

Test(sipmsg, nul_and_control_bytes)
{
    const char nul[] = REGISTER_HEAD "Subject: a\0b\r\n\r\n";
    expect_refused(nul, sizeof(nul) - 1, 400, "NUL byte");
    expect_refused_str(REGISTER_HEAD "Subject: a\x01"
                                     "b\r\n\r\n",
                       400, "control character");
    expect_refused_str(REGISTER_HEAD "Subject: a\x7f\r\n\r\n", 400, "control character");
    expect_refused_str(REGISTER_HEAD "Subject: a\nb\r\n\r\n", 400, "bare LF");
    expect_refused_str(REGISTER_HEAD "Subject: a\rb\r\n\r\n", 400, "bare CR");
    expect_refused_str(REGISTER_HEAD, 400, "not ended by an empty line");
    expect_refused_str("", 400, "empty message");
    /* NUL bytes in the body are the body's business */
    const char body[] = REGISTER_HEAD "Content-Length: 3\r\n\r\na\0b";
    struct ep_sipmsg *m = NULL;
    struct ep_sip_error err;
    cr_assert_eq(ep_sipmsg_parse((const uint8_t *)body, sizeof(body) - 1, NULL, &m, &err), 0, "%s",
                 err.detail);
    ep_sipmsg_free(m);
}

Test(sipmsg, two_authorization_headers)
{
    expect_refused_str(REGISTER_HEAD "Authorization: Bearer " TOKEN "\r\n"
                                     "Authorization: Bearer " TOKEN "\r\n\r\n",
                       400, "more than one Authorization");
    expect_refused_str(REGISTER_HEAD "Proxy-Authorization: Bearer " TOKEN "\r\n"
                                     "proxy-authorization: Bearer " TOKEN "\r\n\r\n",
                       400, "more than one Proxy-Authorization");
    expect_refused_str(REGISTER_HEAD "Authorization:  \r\n\r\n", 400, "empty Authorization");
}

Test(sipmsg, bad_header_names)
{
    expect_refused_str(REGISTER_HEAD "Bad Header: x\r\n\r\n", 400, "bad header name");
    expect_refused_str(REGISTER_HEAD "Sub(ject): x\r\n\r\n", 400, "bad header name");
    expect_refused_str(REGISTER_HEAD ": x\r\n\r\n", 400, "bad header name");
    expect_refused_str(REGISTER_HEAD "Bearer " TOKEN "\r\n\r\n", 400, "bad header name");
    expect_refused_str(REGISTER_HEAD TOKEN "\r\n\r\n", 400, "header line without colon");
    expect_refused_str(REGISTER_HEAD "Sch\xc3\xb6n: x\r\n\r\n", 400, "bad header name");
}

Test(sipmsg, duplicate_singletons_and_bad_values)
{
    expect_refused_str(REGISTER_HEAD "t: <sip:bob@ims.example.net>\r\n\r\n", 400,
                       "more than one To");
    expect_refused_str(REGISTER_HEAD "Call-ID: again\r\n\r\n", 400, "more than one Call-ID");
    char *s = register_without("Max-Forwards:");
    char buf[2048];
    const char *after = strstr(s, "\r\n") + 2;
    snprintf(buf, sizeof(buf), "REGISTER sip:ims.example.net SIP/2.0\r\nMax-Forwards: x1\r\n%s",
             after);
    expect_refused_str(buf, 400, "Max-Forwards is not");
    free(s);
    s = register_without("CSeq:");
    after = strstr(s, "\r\n") + 2;
    snprintf(buf, sizeof(buf),
             "REGISTER sip:ims.example.net SIP/2.0\r\nCSeq: 4294967296 "
             "REGISTER\r\n%s",
             after);
    expect_refused_str(buf, 400, "CSeq");
    free(s);
}

Test(sipmsg, details_never_hold_the_token)
{
    /* every refusal above already checks "eyJ"; here the token sits in odd places */
    expect_refused_str("REGISTER sip:" TOKEN " SIP/2.1\r\n\r\n", 400, "bad start line");
    expect_refused_str(REGISTER_HEAD "X-" TOKEN "!!: x\r\n \r\n\r\n", 400, "folded header lines");
    expect_refused_str(REGISTER_HEAD "Content-Length: " TOKEN "\r\n\r\n", 400,
                       "Content-Length is not");
}

Test(sipmsg, init_is_idempotent_and_null_free)
{
    cr_assert_eq(ep_sip_init(), 0);
    cr_assert_eq(ep_sip_init(), 0);
    ep_sipmsg_free(NULL);
    struct ep_sip_error err;
    cr_assert_eq(ep_sipmsg_parse((const uint8_t *)"x", 1, NULL, NULL, &err), -1);
    struct ep_sipmsg *m = NULL;
    cr_assert_eq(ep_sipmsg_parse((const uint8_t *)"x", 1, NULL, &m, NULL), -1);
}
