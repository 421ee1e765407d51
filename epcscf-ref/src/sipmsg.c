/* The SIP-over-WebSocket message parser: strict byte checks, then libosip2, then the
 * mandatory headers (see sipmsg.h). */
#include "sipmsg.h"

#include <openssl/crypto.h> /* OPENSSL_cleanse: wipes secrets */
#include <osipparser2/osip_parser.h>
#include <osipparser2/osip_port.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ep_sipmsg {
    osip_message_t *osip;      /* owned */
    char *authorization;       /* owned, NULL if absent */
    char *proxy_authorization; /* owned, NULL if absent */
    bool request;
};

/* ---- one-time libosip2 initialisation -------------------------------------------------- */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_result = -1; /* written once inside pthread_once, read-only afterwards */

static void init_run(void)
{
    /* libosip2's own trace lines go to stdout: silence them (errors come back to us). */
    for (int l = 0; l < END_TRACE_LEVEL; l++)
        osip_trace_disable_level((osip_trace_level_t)l);
    init_result = parser_init() == 0 ? 0 : -1;
}

int ep_sip_init(void)
{
    if (pthread_once(&init_once, init_run) != 0)
        return -1;
    return init_result;
}

/* ---- errors ----------------------------------------------------------------------------- */

static const char REASON_400[] = "Bad Request";
static const char REASON_500[] = "Server Internal Error";
static const char REASON_513[] = "Message Too Large";

/* Fills err (if any). fmt and its arguments never carry bytes of the message. */
__attribute__((format(printf, 4, 5))) static int fail(struct ep_sip_error *err, int status,
                                                      const char *reason, const char *fmt, ...)
{
    if (err == NULL)
        return -1;
    err->status = status;
    err->reason = reason;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->detail, sizeof(err->detail), fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- character classes ------------------------------------------------------------------ */

/* RFC 3261 25.1 token character. */
static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("-.!%*_+`'~", c) != NULL;
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_ws(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* Case-insensitive equality of buf[0..n) with the lower-case NUL-terminated name. */
static bool name_is(const uint8_t *buf, size_t n, const char *name)
{
    size_t i = 0;
    for (; i < n && name[i] != '\0'; i++) {
        unsigned char c = buf[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        if (c != (unsigned char)name[i])
            return false;
    }
    return i == n && name[i] == '\0';
}

/* buf[0..n) is 1..maxdigits decimal digits; the value goes to *v. */
static bool parse_uint(const uint8_t *buf, size_t n, size_t maxdigits, unsigned long *v)
{
    if (n == 0 || n > maxdigits)
        return false;
    unsigned long x = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(buf[i]))
            return false;
        x = x * 10 + (unsigned long)(buf[i] - '0');
    }
    *v = x;
    return true;
}

/* ---- the strict pass over the raw bytes ------------------------------------------------- */

/* Headers the scan counts: singletons (a second one is refused) and the credentials. */
enum hdr {
    H_TO,
    H_FROM,
    H_CALL_ID,
    H_CSEQ,
    H_MAX_FORWARDS,
    H_CONTENT_LENGTH,
    H_AUTHORIZATION,
    H_PROXY_AUTHORIZATION,
    H_COUNT,
    H_OTHER = H_COUNT
};

static const struct {
    const char *name;    /* lower case, for matching */
    const char *compact; /* RFC 3261 7.3.3 compact form, or NULL */
    const char *label;   /* for details */
} HDRS[H_COUNT] = {
    [H_TO] = {"to", "t", "To"},
    [H_FROM] = {"from", "f", "From"},
    [H_CALL_ID] = {"call-id", "i", "Call-ID"},
    [H_CSEQ] = {"cseq", NULL, "CSeq"},
    [H_MAX_FORWARDS] = {"max-forwards", NULL, "Max-Forwards"},
    [H_CONTENT_LENGTH] = {"content-length", "l", "Content-Length"},
    [H_AUTHORIZATION] = {"authorization", NULL, "Authorization"},
    [H_PROXY_AUTHORIZATION] = {"proxy-authorization", NULL, "Proxy-Authorization"},
};

static enum hdr classify(const uint8_t *name, size_t n)
{
    for (int h = 0; h < H_COUNT; h++) {
        if (name_is(name, n, HDRS[h].name) ||
            (HDRS[h].compact != NULL && name_is(name, n, HDRS[h].compact)))
            return (enum hdr)h;
    }
    return H_OTHER;
}

/* What the scan learnt; value spans point into the caller's buffer. */
struct scan {
    bool request;
    const uint8_t *method; /* request only */
    size_t method_len;
    unsigned count[H_COUNT];
    const uint8_t *value[H_COUNT]; /* trimmed value of the (single) header */
    size_t value_len[H_COUNT];
    size_t body_off; /* first byte after the empty line */
};

/* Request-Line (RFC 3261 7.1): Method SP Request-URI SP SIP-Version. */
static int scan_request_line(const uint8_t *l, size_t n, struct scan *s, struct ep_sip_error *err)
{
    size_t i = 0;
    while (i < n && is_tchar(l[i]))
        i++;
    if (i == 0 || i == n || l[i] != ' ')
        return fail(err, 400, REASON_400, "bad start line: method is not a token");
    s->method = l;
    s->method_len = i;
    size_t uri = ++i;
    /* scheme ":" then visible ASCII up to the next SP */
    if (i < n && ((l[i] | 0x20) >= 'a' && (l[i] | 0x20) <= 'z')) {
        i++;
        while (i < n && (((l[i] | 0x20) >= 'a' && (l[i] | 0x20) <= 'z') || is_digit(l[i]) ||
                         l[i] == '+' || l[i] == '-' || l[i] == '.'))
            i++;
    }
    if (i == uri || i == n || l[i] != ':')
        return fail(err, 400, REASON_400, "bad start line: Request-URI has no scheme");
    while (i < n && l[i] > 0x20 && l[i] < 0x7f)
        i++;
    if (i == n || l[i] != ' ')
        return fail(err, 400, REASON_400, "bad start line: bad Request-URI");
    i++;
    if (n - i != 7 || memcmp(l + i, "SIP/2.0", 7) != 0)
        return fail(err, 400, REASON_400, "bad start line: version is not SIP/2.0");
    s->request = true;
    return 0;
}

/* Status-Line (RFC 3261 7.2): SIP-Version SP Status-Code SP Reason-Phrase. The scan has
 * already refused control characters, so any reason phrase left is acceptable. */
static int scan_status_line(const uint8_t *l, size_t n, struct scan *s, struct ep_sip_error *err)
{
    if (n < 12 || l[7] != ' ' || !is_digit(l[8]) || !is_digit(l[9]) || !is_digit(l[10]) ||
        l[11] != ' ')
        return fail(err, 400, REASON_400, "bad start line: malformed status line");
    if (l[8] < '1' || l[8] > '6')
        return fail(err, 400, REASON_400, "bad start line: status code out of range");
    s->request = false;
    return 0;
}

static int scan_start_line(const uint8_t *l, size_t n, struct scan *s, struct ep_sip_error *err)
{
    if (n == 0)
        return fail(err, 400, REASON_400, "bad start line: empty");
    if (n >= 8 && memcmp(l, "SIP/2.0 ", 8) == 0)
        return scan_status_line(l, n, s, err);
    return scan_request_line(l, n, s, err);
}

/* One header line (not empty, not the start line). */
static int scan_header_line(const uint8_t *l, size_t n, unsigned line, struct scan *s,
                            struct ep_sip_error *err)
{
    if (is_ws(l[0]))
        return fail(err, 400, REASON_400, "folded header lines not accepted (line %u)", line);
    size_t i = 0;
    while (i < n && is_tchar(l[i]))
        i++;
    size_t name_len = i;
    while (i < n && is_ws(l[i]))
        i++;
    if (name_len == 0 || (i < n && l[i] != ':'))
        return fail(err, 400, REASON_400, "bad header name (line %u)", line);
    if (i == n)
        return fail(err, 400, REASON_400, "header line without colon (line %u)", line);
    i++; /* ':' */
    size_t end = n;
    while (i < end && is_ws(l[i]))
        i++;
    while (end > i && is_ws(l[end - 1]))
        end--;

    enum hdr h = classify(l, name_len);
    if (h == H_OTHER)
        return 0;
    if (++s->count[h] > 1)
        return fail(err, 400, REASON_400, "more than one %s header (line %u)", HDRS[h].label, line);
    s->value[h] = l + i;
    s->value_len[h] = end - i;
    return 0;
}

/* Splits the header section into CRLF-terminated lines, refusing NUL, other control
 * characters, bare CR or LF, and anything beyond the caps. */
static int scan_message(const uint8_t *buf, size_t len, size_t max_header, unsigned max_headers,
                        struct scan *s, struct ep_sip_error *err)
{
    size_t limit = len < max_header ? len : max_header;
    size_t pos = 0;
    unsigned line = 1;
    for (;;) {
        size_t eol = pos;
        for (;; eol++) {
            if (eol >= limit) {
                if (limit < len)
                    return fail(err, 400, REASON_400, "header section larger than %zu bytes",
                                max_header);
                return fail(err, 400, REASON_400, "header section not ended by an empty line");
            }
            unsigned char c = buf[eol];
            if (c == '\r') {
                if (eol + 1 >= limit) {
                    if (limit < len)
                        return fail(err, 400, REASON_400, "header section larger than %zu bytes",
                                    max_header);
                    return fail(err, 400, REASON_400, "header section not ended by an empty line");
                }
                if (buf[eol + 1] != '\n')
                    return fail(err, 400, REASON_400, "bare CR in header section (line %u)", line);
                break;
            }
            if (c == '\n')
                return fail(err, 400, REASON_400, "bare LF in header section (line %u)", line);
            if (c == '\0')
                return fail(err, 400, REASON_400, "NUL byte in header section (line %u)", line);
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return fail(err, 400, REASON_400, "control character in header section (line %u)",
                            line);
        }
        const uint8_t *l = buf + pos;
        size_t n = eol - pos;
        pos = eol + 2;
        if (line == 1) {
            if (scan_start_line(l, n, s, err) != 0)
                return -1;
        } else if (n == 0) {
            s->body_off = pos;
            return 0;
        } else {
            if (line - 1 > max_headers)
                return fail(err, 400, REASON_400, "more than %u header lines", max_headers);
            if (scan_header_line(l, n, line, s, err) != 0)
                return -1;
        }
        line++;
    }
}

static int check_scanned(const struct scan *s, size_t body_len, struct ep_sip_error *err)
{
    if (s->count[H_CONTENT_LENGTH] > 0) {
        unsigned long cl = 0;
        if (!parse_uint(s->value[H_CONTENT_LENGTH], s->value_len[H_CONTENT_LENGTH], 9, &cl))
            return fail(err, 400, REASON_400, "Content-Length is not a non-negative integer");
        if (cl != body_len)
            return fail(err, 400, REASON_400,
                        "Content-Length %lu does not match the body length %zu", cl, body_len);
    }
    if (s->count[H_MAX_FORWARDS] > 0) {
        unsigned long mf = 0;
        if (!parse_uint(s->value[H_MAX_FORWARDS], s->value_len[H_MAX_FORWARDS], 3, &mf) || mf > 255)
            return fail(err, 400, REASON_400, "Max-Forwards is not an integer 0..255");
    }
    if (s->count[H_AUTHORIZATION] > 0 && s->value_len[H_AUTHORIZATION] == 0)
        return fail(err, 400, REASON_400, "empty Authorization header");
    if (s->count[H_PROXY_AUTHORIZATION] > 0 && s->value_len[H_PROXY_AUTHORIZATION] == 0)
        return fail(err, 400, REASON_400, "empty Proxy-Authorization header");
    return 0;
}

/* ---- after libosip2 --------------------------------------------------------------------- */

/* The headers RFC 3261 8.1.1 requires (Max-Forwards for requests only), in its order. */
static int check_mandatory(const osip_message_t *sip, const struct scan *s,
                           struct ep_sip_error *err)
{
    const char *missing = NULL;
    if (sip->to == NULL)
        missing = "To";
    else if (sip->from == NULL)
        missing = "From";
    else if (sip->cseq == NULL || sip->cseq->number == NULL || sip->cseq->method == NULL)
        missing = "CSeq";
    else if (sip->call_id == NULL || sip->call_id->number == NULL)
        missing = "Call-ID";
    else if (s->request && s->count[H_MAX_FORWARDS] == 0)
        missing = "Max-Forwards";
    else if (osip_list_size(&sip->vias) <= 0)
        missing = "Via";
    if (missing != NULL)
        return fail(err, 400, REASON_400, "missing or unparseable %s header", missing);

    /* CSeq = 1*DIGIT LWS Method, the number below 2**31 (RFC 3261 8.1.1.5). */
    unsigned long num = 0;
    const char *cs = sip->cseq->number;
    if (!parse_uint((const uint8_t *)cs, strlen(cs), 10, &num) || num >= 0x80000000ul)
        return fail(err, 400, REASON_400, "CSeq number is not an integer below 2^31");
    const char *cm = sip->cseq->method;
    size_t cml = strlen(cm);
    for (size_t i = 0; i < cml; i++) {
        if (!is_tchar((unsigned char)cm[i]))
            return fail(err, 400, REASON_400, "CSeq method is not a token");
    }
    if (cml == 0)
        return fail(err, 400, REASON_400, "CSeq method is not a token");
    if (s->request) {
        /* Methods are case-sensitive (RFC 3261 7.1). */
        if (sip->sip_method == NULL || strlen(sip->sip_method) != s->method_len ||
            memcmp(sip->sip_method, s->method, s->method_len) != 0)
            return fail(err, 400, REASON_400, "request line not understood by the parser");
        if (strcmp(cm, sip->sip_method) != 0)
            return fail(err, 400, REASON_400, "CSeq method does not match the request method");
    } else if (sip->status_code < 100 || sip->status_code > 699) {
        return fail(err, 400, REASON_400, "status line not understood by the parser");
    }
    return 0;
}

/* ---- public ----------------------------------------------------------------------------- */

static void free_secret(char *s)
{
    if (s != NULL) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

static void osip_free_wiped(osip_message_t *sip)
{
    if (sip == NULL)
        return;
    /* libosip2 keeps a copy of the raw bytes, Bearer token included. */
    if (sip->message != NULL)
        OPENSSL_cleanse(sip->message, sip->message_length);
    osip_message_free(sip);
}

static char *dup_span(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s != NULL) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

int ep_sipmsg_parse(const uint8_t *buf, size_t len, const struct ep_sipmsg_limits *lim,
                    struct ep_sipmsg **out, struct ep_sip_error *err)
{
    size_t max_message = EP_SIPMSG_DEFAULT_MAX_MESSAGE;
    size_t max_header = EP_SIPMSG_DEFAULT_MAX_HEADER;
    unsigned max_headers = EP_SIPMSG_DEFAULT_MAX_HEADERS;
    if (lim != NULL) {
        if (lim->max_message != 0)
            max_message = lim->max_message;
        if (lim->max_header_section != 0)
            max_header = lim->max_header_section;
        if (lim->max_headers != 0)
            max_headers = lim->max_headers;
    }
    if (out == NULL || (buf == NULL && len != 0))
        return fail(err, 500, REASON_500, "invalid arguments");
    if (len > max_message)
        return fail(err, 513, REASON_513, "message of %zu bytes exceeds the limit of %zu", len,
                    max_message);
    if (len == 0)
        return fail(err, 400, REASON_400, "empty message");
    if (ep_sip_init() != 0)
        return fail(err, 500, REASON_500, "SIP parser initialisation failed");

    struct scan s;
    memset(&s, 0, sizeof(s));
    if (scan_message(buf, len, max_header, max_headers, &s, err) != 0)
        return -1;
    if (check_scanned(&s, len - s.body_off, err) != 0)
        return -1;

    int rc = -1;
    struct ep_sipmsg *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        fail(err, 500, REASON_500, "out of memory");
        goto out;
    }
    m->request = s.request;
    if (osip_message_init(&m->osip) != 0) {
        m->osip = NULL;
        fail(err, 500, REASON_500, "out of memory");
        goto out;
    }
    if (osip_message_parse(m->osip, (const char *)buf, len) != 0) {
        fail(err, 400, REASON_400, "message not parseable as SIP");
        goto out;
    }
    if (check_mandatory(m->osip, &s, err) != 0)
        goto out;
    if (s.count[H_AUTHORIZATION] > 0) {
        m->authorization = dup_span(s.value[H_AUTHORIZATION], s.value_len[H_AUTHORIZATION]);
        if (m->authorization == NULL) {
            fail(err, 500, REASON_500, "out of memory");
            goto out;
        }
    }
    if (s.count[H_PROXY_AUTHORIZATION] > 0) {
        m->proxy_authorization =
            dup_span(s.value[H_PROXY_AUTHORIZATION], s.value_len[H_PROXY_AUTHORIZATION]);
        if (m->proxy_authorization == NULL) {
            fail(err, 500, REASON_500, "out of memory");
            goto out;
        }
    }
    *out = m;
    m = NULL;
    rc = 0;
out:
    ep_sipmsg_free(m);
    return rc;
}

void ep_sipmsg_free(struct ep_sipmsg *m)
{
    if (m == NULL)
        return;
    osip_free_wiped(m->osip);
    free_secret(m->authorization);
    free_secret(m->proxy_authorization);
    free(m);
}

osip_message_t *ep_sipmsg_detach(struct ep_sipmsg *m)
{
    osip_message_t *sip = m->osip;
    m->osip = NULL;
    /* The raw bytes libosip2 kept hold the client's credentials: gone before the message
     * lives on (every caller rebuilds the text after editing anyway). */
    if (sip != NULL && sip->message != NULL) {
        OPENSSL_cleanse(sip->message, sip->message_length);
        osip_free(sip->message);
        sip->message = NULL;
        sip->message_length = 0;
    }
    if (sip != NULL)
        osip_message_force_update(sip);
    return sip;
}

osip_message_t *ep_sipmsg_osip(struct ep_sipmsg *m)
{
    return m->osip;
}

const char *ep_sipmsg_authorization(const struct ep_sipmsg *m)
{
    return m->authorization;
}

const char *ep_sipmsg_proxy_authorization(const struct ep_sipmsg *m)
{
    return m->proxy_authorization;
}

bool ep_sipmsg_is_request(const struct ep_sipmsg *m)
{
    return m->request;
}
