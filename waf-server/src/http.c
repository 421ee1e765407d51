/* HTTP listeners on libmicrohttpd (see http.h). */
#include "http.h"

#include "wutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* TLS 1.2 and 1.3 only (GnuTLS's "NORMAL" alone also accepts TLS 1.1). */
#define TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

struct waf_http {
    struct MHD_Daemon *d;
    struct waf_http_opts o;
    char *cert, *key; /* PEM contents (libmicrohttpd keeps pointers) */
    uint16_t port;
};

/* Per-request state between the calls of the access handler. */
struct ctx {
    char *body;
    size_t len, cap;
    bool too_large;
    char *query; /* the raw query string (after '?'); NULL when none */
    bool started, query_too_long;
};

#define MAX_QUERY 8192

/* libmicrohttpd hands the raw request URI here before parsing it: keep the query, so that
 * handlers parse it strictly (repeated parameters are errors in OAuth). */
static void *uri_cb(void *cls, const char *uri, struct MHD_Connection *c)
{
    (void)cls;
    (void)c;
    struct ctx *x = calloc(1, sizeof(*x));
    const char *q = uri ? strchr(uri, '?') : NULL;
    if (x && q) {
        size_t n = strnlen(q + 1, MAX_QUERY + 1);
        if (n > MAX_QUERY)
            x->query_too_long = true;
        else
            x->query = strndup(q + 1, n);
    }
    return x;
}

const char *waf_req_header(const struct waf_req *rq, const char *name)
{
    return MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, name);
}

void waf_resp_take(struct waf_resp *rs, int status, const char *type, char *s, size_t len)
{
    if (!rs->body_static)
        free(rs->body);
    rs->status = status;
    rs->content_type = type;
    rs->body = s;
    rs->body_len = len;
    rs->body_static = false;
}

void waf_resp_text(struct waf_resp *rs, int status, const char *type, const char *s, size_t len)
{
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        waf_resp_static(rs, 500, "text/plain", "out of memory\n");
        return;
    }
    memcpy(copy, s, len);
    copy[len] = '\0';
    waf_resp_take(rs, status, type, copy, len);
}

void waf_resp_static(struct waf_resp *rs, int status, const char *type, const char *s)
{
    if (!rs->body_static)
        free(rs->body);
    rs->status = status;
    rs->content_type = type;
    rs->body = (char *)(uintptr_t)s;
    rs->body_len = strlen(s);
    rs->body_static = true;
}

void waf_resp_header(struct waf_resp *rs, const char *name, const char *value)
{
    if (rs->nheaders == WAF_RESP_MAX_HEADERS)
        return;
    char *v = strdup(value);
    if (v == NULL)
        return;
    rs->hname[rs->nheaders] = name;
    rs->hvalue[rs->nheaders++] = v;
}

static void resp_clear(struct waf_resp *rs)
{
    if (!rs->body_static)
        free(rs->body);
    for (int i = 0; i < rs->nheaders; i++)
        free(rs->hvalue[i]);
}

static enum MHD_Result send_resp(struct MHD_Connection *c, struct waf_resp *rs)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        rs->body_len, rs->body ? rs->body : (char *)(uintptr_t) "", MHD_RESPMEM_MUST_COPY);
    if (r == NULL) {
        resp_clear(rs);
        return MHD_NO;
    }
    if (rs->content_type)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, rs->content_type);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    for (int i = 0; i < rs->nheaders; i++)
        MHD_add_response_header(r, rs->hname[i], rs->hvalue[i]);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)rs->status, r);
    MHD_destroy_response(r);
    resp_clear(rs);
    return ret;
}

static bool route_matches(const struct waf_route *rt, const char *path)
{
    size_t n = strlen(rt->path);
    if (n && rt->path[n - 1] == '*')
        return strncmp(path, rt->path, n - 1) == 0;
    return strcmp(path, rt->path) == 0;
}

static void client_ip(struct MHD_Connection *c, char *out, size_t n)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(out, n, "unknown");
    if (ci == NULL || ci->client_addr == NULL)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
                  (socklen_t)n);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
                  (socklen_t)n);
}

static void problem(struct waf_resp *rs, int status, const char *title)
{
    char buf[256];
    int n = snprintf(buf, sizeof(buf), "{\"type\":\"about:blank\",\"title\":\"%s\",\"status\":%d}",
                     title, status);
    waf_resp_text(rs, status, "application/problem+json", buf, (size_t)n);
}

/* Tells the observer and sends. */
static enum MHD_Result answer(struct waf_http *h, struct MHD_Connection *c, struct waf_resp *rs,
                              int route, int64_t t0)
{
    if (h->o.observe)
        h->o.observe(h->o.app, h->o.listener, route, rs->status, waf_mono_ns() - t0);
    return send_resp(c, rs);
}

static enum MHD_Result dispatch(struct waf_http *h, struct MHD_Connection *c, const char *url,
                                const char *method, struct ctx *x)
{
    int64_t t0 = waf_mono_ns();
    struct waf_resp rs = {.status = 500};
    if (x->too_large) {
        problem(&rs, 413, "request body too large");
        return answer(h, c, &rs, -1, t0);
    }
    if (x->query_too_long) {
        problem(&rs, 414, "request URI too long");
        return answer(h, c, &rs, -1, t0);
    }
    const struct waf_route *found = NULL;
    bool path_known = false;
    for (const struct waf_route *rt = h->o.routes; rt->method; rt++) {
        if (!route_matches(rt, url))
            continue;
        path_known = true;
        if (strcmp(rt->method, method) == 0) {
            found = rt;
            break;
        }
    }
    if (found == NULL) {
        if (path_known) {
            problem(&rs, 405, "method not allowed");
            char allow[128] = "";
            for (const struct waf_route *rt = h->o.routes; rt->method; rt++)
                if (route_matches(rt, url) &&
                    strlen(allow) + strlen(rt->method) + 3 < sizeof(allow))
                    snprintf(allow + strlen(allow), sizeof(allow) - strlen(allow), "%s%s",
                             allow[0] ? ", " : "", rt->method);
            waf_resp_header(&rs, "Allow", allow);
        } else {
            problem(&rs, 404, "not found");
        }
        return answer(h, c, &rs, -1, t0);
    }
    char ip[64];
    client_ip(c, ip, sizeof(ip));
    struct waf_req rq = {.method = method,
                         .path = url,
                         .body = x->body ? x->body : "",
                         .body_len = x->len,
                         .query = x->query ? x->query : "",
                         .client_ip = ip,
                         .conn = c};
    found->fn(h->o.app, &rq, &rs);
    return answer(h, c, &rs, (int)(found - h->o.routes), t0);
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    (void)version;
    struct waf_http *h = cls;
    struct ctx *x = *con_cls;
    if (x == NULL)
        return MHD_NO; /* uri_cb ran out of memory */
    if (!x->started) {
        x->started = true;
        const char *cl =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > h->o.max_body) {
            /* Answered before the body is read; libmicrohttpd then closes the connection.
               (A response cannot be queued while a body is arriving, so a chunked body
               that grows too large is drained and answered at its end.) */
            struct waf_resp rs = {.status = 413};
            problem(&rs, 413, "request body too large");
            return answer(h, c, &rs, -1, waf_mono_ns());
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!x->too_large) {
            if (x->len + *upload_size > h->o.max_body) {
                x->too_large = true;
                free(x->body);
                x->body = NULL;
                x->len = x->cap = 0;
            } else {
                if (x->len + *upload_size + 1 > x->cap) {
                    size_t cap = (x->len + *upload_size + 1) * 2;
                    cap = cap > h->o.max_body + 1 ? h->o.max_body + 1 : cap;
                    char *b = realloc(x->body, cap);
                    if (b == NULL)
                        return MHD_NO;
                    x->body = b;
                    x->cap = cap;
                }
                memcpy(x->body + x->len, upload, *upload_size);
                x->len += *upload_size;
                x->body[x->len] = '\0';
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    return dispatch(h, c, url, method, x);
}

static void completed_cb(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    struct ctx *x = *con_cls;
    if (x) {
        free(x->body);
        free(x->query);
        free(x);
    }
    *con_cls = NULL;
}

static char *slurp(const char *path, char *detail, size_t dlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(detail, dlen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(1 << 20);
    size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (buf)
        buf[n] = '\0';
    return buf;
}

static bool parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *len)
{
    const char *colon = strrchr(listen, ':');
    char host[64];
    size_t hl = (size_t)(colon - listen);
    memset(ss, 0, sizeof(*ss));
    int port = atoi(colon + 1);
    if (listen[0] == '[') {
        snprintf(host, sizeof(host), "%.*s", (int)(hl - 2), listen + 1);
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*s6);
        return inet_pton(AF_INET6, host, &s6->sin6_addr) == 1;
    }
    snprintf(host, sizeof(host), "%.*s", (int)hl, listen);
    struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    *len = sizeof(*s4);
    return inet_pton(AF_INET, host, &s4->sin_addr) == 1;
}

struct waf_http *waf_http_start(const struct waf_http_opts *o, char *detail, size_t dlen)
{
    struct waf_http *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->o = *o;
    struct sockaddr_storage ss;
    socklen_t sl;
    if (!parse_listen(o->listen, &ss, &sl)) {
        snprintf(detail, dlen, "bad listen address %s", o->listen);
        free(h);
        return NULL;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (o->tls_cert_file) {
        h->cert = slurp(o->tls_cert_file, detail, dlen);
        h->key = h->cert ? slurp(o->tls_key_file, detail, dlen) : NULL;
        if (h->key == NULL) {
            free(h->cert);
            free(h);
            return NULL;
        }
        flags |= MHD_USE_TLS;
    }
    struct MHD_OptionItem tls[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, h->cert},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, h->key},
        /* TLS 1.2 and 1.3 only, GnuTLS's secure defaults otherwise. */
        {MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)(uintptr_t)TLS_PRIORITIES},
        {MHD_OPTION_END, 0, NULL}};
    h->d = MHD_start_daemon(
        flags, 0, NULL, NULL, access_cb, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)o->threads, MHD_OPTION_CONNECTION_LIMIT,
        o->connection_limit, MHD_OPTION_PER_IP_CONNECTION_LIMIT, o->per_ip_limit,
        MHD_OPTION_CONNECTION_TIMEOUT, o->timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)32768, MHD_OPTION_STRICT_FOR_CLIENT, 1, MHD_OPTION_NOTIFY_COMPLETED, completed_cb,
        h, MHD_OPTION_URI_LOG_CALLBACK, uri_cb, h, MHD_OPTION_ARRAY,
        o->tls_cert_file ? tls : &tls[3], MHD_OPTION_END);
    if (h->d == NULL) {
        snprintf(detail, dlen, "cannot listen on %s (address in use, or bad TLS files)", o->listen);
        free(h->cert);
        free(h->key);
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : 0;
    return h;
}

uint16_t waf_http_port(const struct waf_http *h)
{
    return h->port;
}

void waf_http_stop(struct waf_http *h)
{
    if (h == NULL)
        return;
    MHD_stop_daemon(h->d);
    if (h->key)
        memset(h->key, 0, strlen(h->key));
    free(h->cert);
    free(h->key);
    free(h);
}
