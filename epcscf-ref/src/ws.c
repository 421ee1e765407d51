/*
 * W2 transport: the SIP-over-WebSocket server (RFC 6455, RFC 7118) of one worker, on
 * libwebsockets driven by the worker's glib main loop. One WS (loopback only) and/or one
 * WSS vhost. Every worker has its own listening sockets on the same ports (SO_REUSEPORT, so
 * the kernel spreads the connections) and accepts itself: the connection caps are applied
 * before libwebsockets allocates anything, then the socket is adopted by the vhost (which
 * runs TLS for WSS).
 *
 * The handshake is refused without a `sip` subprotocol (400), with an Origin outside
 * ws.allowed_origins (403, EPC-16) and over the connection caps (503). A flow is one
 * connection; messages are reassembled from fragments up to ws.max_message (larger: close
 * 1009); a CRLFCRLF keep-alive is answered with CRLF (RFC 5626 4.4.1); idle connections are
 * pinged and dropped when no pong comes (ws.ping_interval, ws.ping_timeout).
 */
#define _GNU_SOURCE /* accept4, SO_REUSEPORT */
#include "ep.h"

#include <glib-unix.h>
#include <libwebsockets.h>

#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#define SUBPROTOCOL "sip"

struct vhost_user {
    bool secure;
};

/* Not const: lws takes a void * vhost user; never written. */
static struct vhost_user plain_vh = {false}, secure_vh = {true};

/* ---- flow tokens ------------------------------------------------------------------------ */

/* The user part of our Path / Record-Route for a flow: worker index and flow id, so a
 * request from the core finds the flow; unguessable enough not to be enumerable (the id
 * counts up from a random start per worker). */
static void make_token(struct ep_flow *f)
{
    snprintf(f->token, sizeof(f->token), "f%02x%016llx", f->w->index, (unsigned long long)f->id);
}

struct ep_flow *ep_flow_by_token(struct ep_worker *w, const char *token)
{
    if (token == NULL || strlen(token) != 19 || token[0] != 'f')
        return NULL;
    char *end = NULL;
    char idx[3] = {token[1], token[2], 0};
    unsigned long wi = strtoul(idx, &end, 16);
    if (*end != '\0' || wi != w->index)
        return NULL;
    unsigned long long id = strtoull(token + 3, &end, 16);
    if (*end != '\0')
        return NULL;
    return g_hash_table_lookup(w->flows, &id);
}

/* ---- per-IP accounting ------------------------------------------------------------------ */

static bool ip_acquire(struct ep_app *app, const char *ip)
{
    bool ok = false;
    pthread_mutex_lock(&app->ip_lock);
    long n = GPOINTER_TO_INT(g_hash_table_lookup(app->ip_conns, ip));
    if (n < app->cfg->ws_max_conns_per_ip && atomic_load(&app->conns) < app->cfg->ws_max_conns) {
        g_hash_table_replace(app->ip_conns, g_strdup(ip), GINT_TO_POINTER((int)n + 1));
        atomic_fetch_add(&app->conns, 1);
        ok = true;
    }
    pthread_mutex_unlock(&app->ip_lock);
    return ok;
}

static void ip_release(struct ep_app *app, const char *ip)
{
    pthread_mutex_lock(&app->ip_lock);
    long n = GPOINTER_TO_INT(g_hash_table_lookup(app->ip_conns, ip));
    if (n <= 1)
        g_hash_table_remove(app->ip_conns, ip);
    else
        g_hash_table_replace(app->ip_conns, g_strdup(ip), GINT_TO_POINTER((int)n - 1));
    atomic_fetch_sub(&app->conns, 1);
    pthread_mutex_unlock(&app->ip_lock);
}

/* ---- handshake checks ------------------------------------------------------------------- */

static bool origin_allowed(const struct ep_config *cfg, const char *origin)
{
    for (size_t i = 0; i < cfg->n_allowed_origins; i++)
        if (g_ascii_strcasecmp(cfg->allowed_origins[i], origin) == 0)
            return true;
    return false;
}

/* True when the comma-separated Sec-WebSocket-Protocol list names "sip". */
static bool offers_sip(const char *list)
{
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *s = p;
        while (*p && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        if ((size_t)(p - s) == strlen(SUBPROTOCOL) && strncmp(s, SUBPROTOCOL, 3) == 0)
            return true;
    }
    return false;
}

/* Refuses an upgrade with an HTTP status instead of 101. Returns 1: answered. */
static int refuse(struct lws *wsi, struct ep_app *app, enum ep_ws_refusal why, unsigned code)
{
    atomic_fetch_add(&app->m.ws_refused[why], 1);
    lws_return_http_status(wsi, code, NULL);
    return 1;
}

/* The handshake checks: 0 to go on, 1 when a refusal was written. */
static int filter(struct lws *wsi, struct ep_app *app)
{
    char origin[256], proto[256], version[8];
    int ol = lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN);
    int pl = lws_hdr_copy(wsi, proto, sizeof(proto), WSI_TOKEN_PROTOCOL);
    int vl = lws_hdr_copy(wsi, version, sizeof(version), WSI_TOKEN_VERSION);
    if (vl <= 0 || strcmp(version, "13") != 0) {
        /* RFC 6455 4.4: only version 13, and say so. */
        atomic_fetch_add(&app->m.ws_refused[EP_WSR_OTHER], 1);
        unsigned char buf[LWS_PRE + 256], *start = buf + LWS_PRE, *p = start,
                                          *end = buf + sizeof(buf);
        if (lws_add_http_header_status(wsi, 426, &p, end) == 0 &&
            lws_add_http_header_by_name(wsi, (const unsigned char *)"Sec-WebSocket-Version:",
                                        (const unsigned char *)"13", 2, &p, end) == 0 &&
            lws_add_http_header_content_length(wsi, 0, &p, end) == 0 &&
            lws_finalize_http_header(wsi, &p, end) == 0)
            lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_HEADERS);
        return 1;
    }
    if (pl <= 0 || !offers_sip(proto))
        return refuse(wsi, app, EP_WSR_PROTOCOL, HTTP_STATUS_BAD_REQUEST);
    if (ol <= 0 || !origin_allowed(app->cfg, origin))
        return refuse(wsi, app, EP_WSR_ORIGIN, HTTP_STATUS_FORBIDDEN);
    return 0;
}

/* ---- flows ------------------------------------------------------------------------------ */

static struct ep_flow *flow_new(struct ep_worker *w, struct lws *wsi)
{
    struct ep_flow *f = g_new0(struct ep_flow, 1);
    f->w = w;
    f->wsi = wsi;
    f->id = ++w->next_flow;
    const struct vhost_user *vu = lws_get_vhost_user(lws_get_vhost(wsi));
    f->secure = vu != NULL && vu->secure;
    lws_get_peer_simple(wsi, f->ip, sizeof(f->ip));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getpeername(lws_get_socket_fd(wsi), (struct sockaddr *)&ss, &sl) == 0)
        f->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    g_queue_init(&f->out);
    make_token(f);
    g_hash_table_insert(w->flows, &f->id, f);
    return f;
}

void ep_flow_send(struct ep_flow *f, const char *buf, size_t len)
{
    if (f == NULL || f->wsi == NULL || f->closing)
        return;
    struct ep_out *o = g_malloc(sizeof(*o) + LWS_PRE + len);
    o->len = len;
    memcpy(o->buf + LWS_PRE, buf, len);
    g_queue_push_tail(&f->out, o);
    f->out_bytes += len;
    lws_callback_on_writable(f->wsi);
}

void ep_flow_close(struct ep_flow *f, bool policy)
{
    if (f == NULL || f->wsi == NULL || f->closing)
        return;
    f->closing = true;
    if (policy)
        lws_close_reason(f->wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, (unsigned char *)"revoked", 7);
    lws_callback_on_writable(f->wsi);
}

static int writeable(struct lws *wsi, struct ep_flow *f)
{
    struct ep_out *o = g_queue_pop_head(&f->out);
    if (o != NULL) {
        f->out_bytes -= o->len;
        int n = lws_write(wsi, o->buf + LWS_PRE, o->len, LWS_WRITE_TEXT);
        g_free(o);
        if (n < 0)
            return -1;
    }
    if (!g_queue_is_empty(&f->out)) {
        lws_callback_on_writable(wsi);
        return 0;
    }
    return f->closing ? -1 : 0;
}

static int receive(struct lws *wsi, struct ep_flow *f, const void *in, size_t len)
{
    const struct ep_config *cfg = f->w->app->cfg;
    bool whole = lws_is_first_fragment(wsi) && lws_is_final_fragment(wsi) &&
                 lws_remaining_packet_payload(wsi) == 0 && f->rx == NULL;
    if (!whole) {
        if (f->rx == NULL)
            f->rx = g_byte_array_new();
        if (f->rx->len + len > (size_t)cfg->ws_max_message) {
            lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, NULL, 0);
            return -1;
        }
        g_byte_array_append(f->rx, in, (guint)len);
        if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) != 0)
            return 0;
        in = f->rx->data;
        len = f->rx->len;
    } else if (len > (size_t)cfg->ws_max_message) {
        lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, NULL, 0);
        return -1;
    }
    if (len == 4 && memcmp(in, "\r\n\r\n", 4) == 0)
        ep_flow_send(f, "\r\n", 2); /* RFC 5626 keep-alive pong */
    else if (len > 0)
        ep_proxy_from_ws(f, in, len);
    if (f->rx != NULL) {
        g_byte_array_free(f->rx, TRUE);
        f->rx = NULL;
    }
    return 0;
}

static void flow_lost(struct ep_flow *f)
{
    struct ep_app *app = f->w->app;
    f->wsi = NULL;
    atomic_fetch_sub(&app->m.ws_open, 1);
    atomic_fetch_add(&app->m.ws_closed, 1);
    struct ep_out *o;
    while ((o = g_queue_pop_head(&f->out)) != NULL)
        g_free(o);
    if (f->rx != NULL)
        g_byte_array_free(f->rx, TRUE);
    f->rx = NULL;
    ep_proxy_flow_gone(f); /* frees f */
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct ep_worker *w = lws_context_user(lws_get_context(wsi));
    struct ep_flow **fp = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        /* Before libwebsockets looks at the subprotocol (it would hang up on one it does not
         * know): every refusal gets its HTTP status here. */
        if (in == NULL || strcmp(in, "websocket") != 0)
            return -1;
        return filter(wsi, w->app);
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return filter(wsi, w->app) == 0 ? 0 : -1;
    case LWS_CALLBACK_ESTABLISHED:
        *fp = flow_new(w, wsi);
        atomic_fetch_add(&w->app->m.ws_open, 1);
        atomic_fetch_add(&w->app->m.ws_accepted, 1);
        return 0;
    case LWS_CALLBACK_WSI_DESTROY: {
        /* Every adopted socket ends here, upgraded or not: give its per-IP slot back. */
        char *ip = lws_get_opaque_user_data(wsi);
        if (ip != NULL) {
            lws_set_opaque_user_data(wsi, NULL);
            ip_release(w->app, ip);
            g_free(ip);
        }
        return 0;
    }
    case LWS_CALLBACK_RECEIVE:
        return *fp ? receive(wsi, *fp, in, len) : -1;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return *fp ? writeable(wsi, *fp) : -1;
    case LWS_CALLBACK_CLOSED:
        if (*fp) {
            flow_lost(*fp);
            *fp = NULL;
        }
        return 0;
    case LWS_CALLBACK_HTTP:
        /* Plain HTTP on the SIP port: nothing to serve. */
        lws_return_http_status(wsi, 426 /* Upgrade Required */, NULL);
        return -1;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

static const struct lws_protocols protocols[] = {
    {SUBPROTOCOL, callback, sizeof(struct ep_flow *), 4096, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

struct listener {
    struct ep_worker *w;
    struct lws_vhost *vh;
    bool secure;
    int fd;
    GSource *src;
};

static gboolean accept_ready(gint fd, GIOCondition cond, gpointer arg)
{
    (void)cond;
    struct listener *l = arg;
    struct ep_app *app = l->w->app;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int c = accept4(fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                ep_log(EP_LOG_WARN, "ws: accept: %s", strerror(errno));
            break;
        }
        char ip[64];
        if (getnameinfo((struct sockaddr *)&ss, sl, ip, sizeof(ip), NULL, 0, NI_NUMERICHOST) != 0 ||
            !ip_acquire(app, ip)) {
            atomic_fetch_add(&app->m.ws_refused[EP_WSR_LIMIT], 1);
            close(c);
            continue;
        }
        int type = LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP | (l->secure ? LWS_ADOPT_ALLOW_SSL : 0);
        char *slot = g_strdup(ip); /* the wsi's opaque data: released at WSI_DESTROY */
        lws_adopt_desc_t ad = {
            .vh = l->vh, .type = (lws_adoption_type)type, .fd = {.sockfd = c}, .opaque = slot};
        if (lws_adopt_descriptor_vhost_via_info(&ad) == NULL) {
            /* lws closed the socket; once its wsi existed (the usual case: fd limit, TLS
             * set-up) WSI_DESTROY gave the slot back, so it is not touched here. */
            ep_log(EP_LOG_WARN, "ws: connection from %s not adopted", ip);
        }
    }
    return G_SOURCE_CONTINUE;
}

static int listen_on(struct ep_worker *w, struct listener *l, const char *hostport, char *detail,
                     size_t dlen)
{
    char host[256], port[16];
    unsigned p;
    if (ep_config_hostport(hostport, host, sizeof(host), &p) != 0) {
        snprintf(detail, dlen, "listen address %s is not host:port", hostport);
        return -1;
    }
    snprintf(port, sizeof(port), "%u", p);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(host, port, &hints, &ai) != 0 || ai == NULL) {
        snprintf(detail, dlen, "listen address %s does not resolve", hostport);
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
        snprintf(detail, dlen, "worker %u: cannot listen on %s: %s", w->index, hostport,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    l->w = w;
    l->fd = fd;
    l->src = g_unix_fd_source_new(fd, G_IO_IN);
    g_source_set_callback(l->src, G_SOURCE_FUNC(accept_ready), l, NULL);
    g_source_attach(l->src, w->ctx);
    return 0;
}

static void lws_log_line(int level, const char *line)
{
    ep_log(level == LLL_ERR ? EP_LOG_ERR : EP_LOG_WARN, "libwebsockets: %.*s",
           (int)strcspn(line, "\n"), line);
}

int ep_ws_start(struct ep_worker *w, char *detail, size_t dlen)
{
    const struct ep_config *cfg = w->app->cfg;
    static const uint32_t retry_ms[] = {1000};
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_line);
    lws_retry_bo_t *retry = g_new0(lws_retry_bo_t, 1);
    w->ws_retry = retry;
    retry->retry_ms_table = retry_ms;
    retry->retry_ms_table_count = 1;
    retry->secs_since_valid_ping = (uint16_t)cfg->ws_ping_interval_s;
    retry->secs_since_valid_hangup =
        (uint16_t)(cfg->ws_ping_interval_s ? cfg->ws_ping_interval_s + cfg->ws_ping_timeout_s : 0);

    struct lws_context_creation_info ci;
    memset(&ci, 0, sizeof(ci));
    void *loops[1] = {w->loop};
    ci.options = LWS_SERVER_OPTION_GLIB | LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
                 LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    ci.foreign_loops = loops;
    ci.user = w;
    ci.timeout_secs = (unsigned)cfg->ws_handshake_timeout_s;
    ci.fd_limit_per_thread = (unsigned)cfg->ws_max_conns + 64;
    w->lws = lws_create_context(&ci);
    if (w->lws == NULL) {
        snprintf(detail, dlen, "worker %u: libwebsockets context failed", w->index);
        return -1;
    }
    struct listener *ls = g_new0(struct listener, 2);
    w->listeners = ls;
    struct {
        const char *listen, *cert, *key;
        struct vhost_user *vu;
        const char *name;
    } vh[2] = {{cfg->ws_listen, NULL, NULL, &plain_vh, "ws"},
               {cfg->wss_listen, cfg->wss_cert, cfg->wss_key, &secure_vh, "wss"}};
    for (int i = 0; i < 2; i++) {
        ls[i].fd = -1;
        if (vh[i].listen == NULL)
            continue;
        struct lws_context_creation_info vi;
        memset(&vi, 0, sizeof(vi));
        vi.vhost_name = vh[i].name;
        vi.port = CONTEXT_PORT_NO_LISTEN_SERVER;
        vi.protocols = protocols;
        vi.user = vh[i].vu;
        vi.retry_and_idle_policy = retry;
        vi.timeout_secs = (unsigned)cfg->ws_handshake_timeout_s;
        if (vh[i].cert != NULL) {
            vi.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
            vi.ssl_cert_filepath = vh[i].cert;
            vi.ssl_private_key_filepath = vh[i].key;
            vi.ssl_options_set = SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1;
        }
        ls[i].secure = vh[i].cert != NULL;
        ls[i].vh = lws_create_vhost(w->lws, &vi);
        if (ls[i].vh == NULL) {
            snprintf(detail, dlen, "worker %u: %s vhost failed (certificate?)", w->index,
                     vh[i].name);
            return -1;
        }
        if (listen_on(w, &ls[i], vh[i].listen, detail, dlen) != 0)
            return -1;
    }
    return 0;
}

void ep_ws_stop(struct ep_worker *w)
{
    struct listener *ls = w->listeners;
    for (int i = 0; ls != NULL && i < 2; i++) {
        if (ls[i].src != NULL) {
            g_source_destroy(ls[i].src);
            g_source_unref(ls[i].src);
        }
        if (ls[i].fd >= 0)
            close(ls[i].fd);
        if (ls[i].vh != NULL)
            lws_vhost_destroy(ls[i].vh);
    }
    g_free(ls);
    w->listeners = NULL;
    /* With a foreign loop the first lws_context_destroy starts closing (the loop must run
     * on for that, see worker_main); ep_ws_finish completes it. */
    if (w->lws != NULL && !w->lws_closing) {
        w->lws_closing = true;
        lws_context_destroy(w->lws);
    }
}

void ep_ws_finish(struct ep_worker *w)
{
    ep_ws_stop(w);
    w->lws = NULL;
    g_free(w->ws_retry);
    w->ws_retry = NULL;
}
