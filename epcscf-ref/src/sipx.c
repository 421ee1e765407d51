/* SIP helpers over libosip2 for the eP-CSCF (see sipx.h). */
#include "sipx.h"

#include <osipparser2/osip_parser.h>

#include <arpa/inet.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *compact_of(const char *name)
{
    static const char *const pairs[][2] = {
        {"expires", NULL}, {"require", NULL}, {"path", NULL},    {"supported", "k"},
        {"event", "o"},    {"subject", "s"},  {"refer-to", "r"}, {"session-expires", "x"}};
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++)
        if (strcasecmp(pairs[i][0], name) == 0)
            return pairs[i][1];
    return NULL;
}

static bool name_is(const char *hname, const char *name)
{
    if (strcasecmp(hname, name) == 0)
        return true;
    const char *c = compact_of(name);
    return c != NULL && strcasecmp(hname, c) == 0;
}

const char *ep_hdr(osip_message_t *m, const char *name)
{
    for (int i = 0; i < osip_list_size(&m->headers); i++) {
        osip_header_t *h = osip_list_get(&m->headers, i);
        if (h->hname != NULL && name_is(h->hname, name))
            return h->hvalue != NULL ? h->hvalue : "";
    }
    return NULL;
}

void ep_hdr_del(osip_message_t *m, const char *name)
{
    for (int i = 0; i < osip_list_size(&m->headers);) {
        osip_header_t *h = osip_list_get(&m->headers, i);
        if (h->hname != NULL && name_is(h->hname, name)) {
            osip_list_remove(&m->headers, i);
            osip_header_free(h);
        } else {
            i++;
        }
    }
    osip_message_force_update(m);
}

void ep_hdr_add(osip_message_t *m, const char *name, const char *value)
{
    osip_message_set_header(m, name, value);
    osip_message_force_update(m);
}

void ep_hdr_set(osip_message_t *m, const char *name, const char *value)
{
    ep_hdr_del(m, name);
    ep_hdr_add(m, name, value);
}

/* Splits one header value at commas outside <> and quoted strings. */
static void split_values(GPtrArray *out, const char *v)
{
    const char *s = v;
    bool q = false;
    int angle = 0;
    for (const char *p = v;; p++) {
        if (*p == '"' && (p == v || p[-1] != '\\'))
            q = !q;
        else if (!q && *p == '<')
            angle++;
        else if (!q && *p == '>' && angle > 0)
            angle--;
        if (*p == '\0' || (*p == ',' && !q && angle == 0)) {
            char *item = g_strstrip(g_strndup(s, (gsize)(p - s)));
            if (*item)
                g_ptr_array_add(out, item);
            else
                g_free(item);
            if (*p == '\0')
                break;
            s = p + 1;
        }
    }
}

char **ep_hdr_values(osip_message_t *m, const char *name)
{
    GPtrArray *a = g_ptr_array_new();
    for (int i = 0; i < osip_list_size(&m->headers); i++) {
        osip_header_t *h = osip_list_get(&m->headers, i);
        if (h->hname != NULL && h->hvalue != NULL && name_is(h->hname, name))
            split_values(a, h->hvalue);
    }
    g_ptr_array_add(a, NULL);
    return (char **)g_ptr_array_free(a, FALSE);
}

void ep_hdr_drop_token(osip_message_t *m, const char *name, const char *token)
{
    char **v = ep_hdr_values(m, name);
    if (v[0] == NULL) {
        g_strfreev(v);
        return;
    }
    GString *keep = g_string_new(NULL);
    for (size_t i = 0; v[i] != NULL; i++) {
        if (g_ascii_strcasecmp(v[i], token) == 0)
            continue;
        g_string_append_printf(keep, "%s%s", keep->len ? ", " : "", v[i]);
    }
    ep_hdr_del(m, name);
    if (keep->len > 0)
        ep_hdr_add(m, name, keep->str);
    g_string_free(keep, TRUE);
    g_strfreev(v);
}

char *ep_raw_for_wic(const uint8_t *buf, size_t len, size_t *outlen)
{
    GString *out = g_string_sized_new(len);
    bool via_done = false, in_headers = true;
    size_t pos = 0;
    while (pos < len) {
        const uint8_t *nl = memchr(buf + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - buf) + 1 : len;
        const char *l = (const char *)buf + pos;
        size_t ll = end - pos;
        if (in_headers && pos > 0 && (ll <= 2 && (l[0] == '\r' || l[0] == '\n'))) {
            in_headers = false; /* the empty line: the rest is the body */
        } else if (in_headers && pos > 0) {
            char name[40];
            size_t k = 0;
            while (k < ll && k + 1 < sizeof(name) && l[k] != ':' && l[k] != ' ' && l[k] != '\t') {
                name[k] = (char)g_ascii_tolower(l[k]);
                k++;
            }
            name[k] = '\0';
            if (!via_done && (strcmp(name, "via") == 0 || strcmp(name, "v") == 0)) {
                via_done = true;
                if (memchr(l, ',', ll) != NULL) {
                    g_string_free(out, TRUE);
                    return NULL;
                }
                pos = end;
                continue;
            }
            if (strcmp(name, "p-charging-vector") == 0 ||
                strcmp(name, "p-charging-function-addresses") == 0) {
                pos = end;
                continue;
            }
        }
        g_string_append_len(out, l, (gssize)ll);
        pos = end;
    }
    *outlen = out->len;
    return g_string_free(out, FALSE);
}

void ep_drop_credentials(osip_message_t *m)
{
    osip_authorization_t *a;
    while ((a = osip_list_get(&m->authorizations, 0)) != NULL) {
        osip_list_remove(&m->authorizations, 0);
        osip_authorization_free(a);
    }
    osip_proxy_authorization_t *pa;
    while ((pa = osip_list_get(&m->proxy_authorizations, 0)) != NULL) {
        osip_list_remove(&m->proxy_authorizations, 0);
        osip_proxy_authorization_free(pa);
    }
    ep_hdr_del(m, "Authorization");
    ep_hdr_del(m, "Proxy-Authorization");
}

bool ep_call_id(osip_message_t *m, char *buf, size_t n)
{
    if (m->call_id == NULL || m->call_id->number == NULL)
        return false;
    snprintf(buf, n, "%s%s%s", m->call_id->number, m->call_id->host ? "@" : "",
             m->call_id->host ? m->call_id->host : "");
    return true;
}

char *ep_msg_text(osip_message_t *m, size_t *len)
{
    char *s = NULL;
    size_t n = 0;
    osip_message_force_update(m);
    if (osip_message_to_str(m, &s, &n) != 0 || s == NULL)
        return NULL;
    char *r = g_strndup(s, n);
    osip_free(s);
    *len = n;
    return r;
}

void ep_rand_hex(char *out, size_t nbytes)
{
    unsigned char b[32];
    if (nbytes > sizeof(b))
        nbytes = sizeof(b);
    if (RAND_bytes(b, (int)nbytes) != 1)
        abort(); /* no randomness: nothing safe to do */
    for (size_t i = 0; i < nbytes; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

void ep_new_branch(struct ep_worker *w, char out[48])
{
    /* Unique per worker (counter) and across restarts (random salt). */
    snprintf(out, 48, "z9hG4bKep%02x%02x%02x%02x%u-%llx", w->rnd[0], w->rnd[1], w->rnd[2],
             w->rnd[3], w->index, (unsigned long long)++w->branch_seq);
}

void ep_via_push(osip_message_t *m, const char *transport, const char *host, unsigned port,
                 const char *branch)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "SIP/2.0/%s %s:%u;branch=%s;rport", transport, host, port, branch);
    osip_via_t *v = NULL;
    if (osip_via_init(&v) != 0)
        return;
    if (osip_via_parse(v, buf) != 0) {
        osip_via_free(v);
        return;
    }
    osip_list_add(&m->vias, v, 0);
    osip_message_force_update(m);
}

void ep_via_pop(osip_message_t *m)
{
    osip_via_t *v = osip_list_get(&m->vias, 0);
    if (v != NULL) {
        osip_list_remove(&m->vias, 0);
        osip_via_free(v);
    }
    osip_message_force_update(m);
}

const char *ep_via_branch(osip_message_t *m)
{
    osip_via_t *v = osip_list_get(&m->vias, 0);
    osip_generic_param_t *b = NULL;
    if (v == NULL || osip_via_param_get_byname(v, "branch", &b) != 0 || b == NULL)
        return NULL;
    return b->gvalue;
}

void ep_via_received(osip_message_t *m, const char *ip, unsigned port)
{
    osip_via_t *v = osip_list_get(&m->vias, 0);
    if (v == NULL)
        return;
    char pbuf[16];
    snprintf(pbuf, sizeof(pbuf), "%u", port);
    osip_generic_param_t *p = NULL;
    if (osip_via_param_get_byname(v, "received", &p) == 0 && p != NULL) {
        osip_free(p->gvalue);
        p->gvalue = osip_strdup(ip);
    } else {
        osip_via_set_received(v, osip_strdup(ip));
    }
    p = NULL;
    if (osip_via_param_get_byname(v, "rport", &p) == 0 && p != NULL) {
        osip_free(p->gvalue);
        p->gvalue = osip_strdup(pbuf);
    } else {
        osip_via_param_add(v, osip_strdup("rport"), osip_strdup(pbuf));
    }
    osip_message_force_update(m);
}

int ep_max_forwards(osip_message_t *m)
{
    const char *v = ep_hdr(m, "Max-Forwards");
    long n = 70;
    if (v != NULL) {
        char *end = NULL;
        n = strtol(v, &end, 10);
        if (end == v || n < 0)
            n = 0;
        if (n > 255)
            n = 255;
    }
    if (n > 0) {
        char buf[8];
        snprintf(buf, sizeof(buf), "%ld", n - 1);
        ep_hdr_set(m, "Max-Forwards", buf);
    }
    return (int)n;
}

bool ep_uri_is_us(const struct ep_app *app, const osip_uri_t *u)
{
    if (u == NULL || u->host == NULL || strcasecmp(u->host, app->mw_host) != 0)
        return false;
    unsigned port = u->port != NULL ? (unsigned)atoi(u->port) : 5060;
    return port >= app->mw_port && port < app->mw_port + app->n_workers;
}

char *ep_uri_text(const osip_uri_t *u)
{
    char *s = NULL;
    if (u == NULL || osip_uri_to_str(u, &s) != 0 || s == NULL)
        return NULL;
    char *r = g_strdup(s);
    osip_free(s);
    return r;
}

bool ep_uri_addr(const osip_uri_t *u, struct sockaddr_storage *ss, socklen_t *len)
{
    if (u == NULL || u->host == NULL)
        return false;
    unsigned port = u->port != NULL ? (unsigned)atoi(u->port) : 5060;
    if (port == 0 || port > 65535)
        return false;
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    char host[64];
    g_strlcpy(host, u->host, sizeof(host));
    if (host[0] == '[') {
        size_t n = strlen(host);
        if (n < 3 || host[n - 1] != ']')
            return false;
        memmove(host, host + 1, n - 2);
        host[n - 2] = '\0';
    }
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *len = sizeof(*a4);
        return true;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*a6);
        return true;
    }
    return false;
}

static void append_osip(GString *s, const char *name, char *(*fn)(void *), void *h);

static char *via_str(void *h)
{
    char *s = NULL;
    return osip_via_to_str(h, &s) == 0 ? s : NULL;
}
static char *from_str(void *h)
{
    char *s = NULL;
    return osip_from_to_str(h, &s) == 0 ? s : NULL;
}
static char *callid_str(void *h)
{
    char *s = NULL;
    return osip_call_id_to_str(h, &s) == 0 ? s : NULL;
}
static char *cseq_str(void *h)
{
    char *s = NULL;
    return osip_cseq_to_str(h, &s) == 0 ? s : NULL;
}

static void append_osip(GString *s, const char *name, char *(*fn)(void *), void *h)
{
    if (h == NULL)
        return;
    char *v = fn(h);
    if (v != NULL) {
        g_string_append_printf(s, "%s: %s\r\n", name, v);
        osip_free(v);
    }
}

char *ep_response_text(osip_message_t *req, int status, const char *reason, const char *extra,
                       size_t *len)
{
    GString *s = g_string_sized_new(512);
    g_string_append_printf(s, "SIP/2.0 %d %s\r\n", status, reason);
    for (int i = 0; i < osip_list_size(&req->vias); i++)
        append_osip(s, "Via", via_str, osip_list_get(&req->vias, i));
    append_osip(s, "From", from_str, req->from);
    if (req->to != NULL) {
        char *v = from_str(req->to);
        if (v != NULL) {
            osip_generic_param_t *tag = NULL;
            osip_to_get_tag(req->to, &tag);
            if (tag == NULL && status > 100) {
                char t[17];
                ep_rand_hex(t, 8);
                g_string_append_printf(s, "To: %s;tag=%s\r\n", v, t);
            } else {
                g_string_append_printf(s, "To: %s\r\n", v);
            }
            osip_free(v);
        }
    }
    append_osip(s, "Call-ID", callid_str, req->call_id);
    append_osip(s, "CSeq", cseq_str, req->cseq);
    if (extra != NULL)
        g_string_append(s, extra);
    g_string_append(s, "Server: epcscf-ref\r\nContent-Length: 0\r\n\r\n");
    *len = s->len;
    return g_string_free(s, FALSE);
}

/* ---- best-effort 400 ---------------------------------------------------------------------- */

static bool printable_line(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f)
            return false;
    return n > 0;
}

/* Header name of a line (before ':'), lower-cased into out; false if none. */
static bool line_name(const uint8_t *p, size_t n, char *out, size_t outn)
{
    size_t i = 0;
    while (i < n && p[i] != ':' && p[i] != ' ' && p[i] != '\t' && i + 1 < outn) {
        out[i] = (char)g_ascii_tolower(p[i]);
        i++;
    }
    out[i] = '\0';
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    return i < n && p[i] == ':' && out[0] != '\0';
}

char *ep_bad_request_text(const uint8_t *buf, size_t len, int status, const char *reason,
                          size_t *outlen)
{
    /* The start line must look like "METHOD sip...": a response is never answered. */
    if (len < 8 || memcmp(buf, "SIP/", 4) == 0)
        return NULL;
    static const char *const want[][2] = {
        {"via", "v"}, {"from", "f"}, {"to", "t"}, {"call-id", "i"}, {"cseq", NULL}};
    const char *canon[] = {"Via", "From", "To", "Call-ID", "CSeq"};
    GString *hdrs[5] = {0};
    size_t pos = 0, lines = 0;
    while (pos < len && lines < 256) {
        const uint8_t *nl = memchr(buf + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - buf) : len;
        size_t n = end - pos;
        if (n > 0 && buf[pos + n - 1] == '\r')
            n--;
        if (n == 0 && lines > 0)
            break; /* end of the header section */
        char name[32];
        if (lines > 0 && n <= 1024 && printable_line(buf + pos, n) &&
            line_name(buf + pos, n, name, sizeof(name))) {
            for (int k = 0; k < 5; k++) {
                if (strcmp(name, want[k][0]) == 0 ||
                    (want[k][1] && strcmp(name, want[k][1]) == 0)) {
                    const uint8_t *colon = memchr(buf + pos, ':', n);
                    size_t vl = n - (size_t)(colon + 1 - (buf + pos));
                    if (hdrs[k] == NULL)
                        hdrs[k] = g_string_new(NULL);
                    else if (k != 0)
                        break; /* keep the first of singletons */
                    g_string_append_printf(hdrs[k], "%s:%.*s\r\n", canon[k], (int)vl,
                                           (const char *)colon + 1);
                }
            }
        }
        lines++;
        pos = end + 1;
    }
    /* Whatever of the five is there goes back: over a WebSocket the flow, not the Via,
     * takes the answer to the WIC, so a request missing one still gets its 400. */
    char *r = NULL;
    {
        GString *s = g_string_new(NULL);
        g_string_append_printf(s, "SIP/2.0 %d %s\r\n", status, reason);
        for (int k = 0; k < 5; k++) {
            if (hdrs[k] == NULL)
                continue;
            if (k == 2 && strstr(hdrs[k]->str, "tag=") == NULL) {
                char t[17];
                ep_rand_hex(t, 8);
                g_string_truncate(hdrs[k], hdrs[k]->len - 2);
                g_string_append_printf(hdrs[k], ";tag=%s\r\n", t);
            }
            g_string_append(s, hdrs[k]->str);
        }
        g_string_append(s, "Server: epcscf-ref\r\nContent-Length: 0\r\n\r\n");
        *outlen = s->len;
        r = g_string_free(s, FALSE);
    }
    for (int k = 0; k < 5; k++)
        if (hdrs[k] != NULL)
            g_string_free(hdrs[k], TRUE);
    return r;
}
