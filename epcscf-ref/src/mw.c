/*
 * Mw transport of one worker, bound to mw.listen's port + the worker's index: a UDP socket
 * and a TCP listener on that port, watched by the worker's main loop. Requests and
 * responses from the core arrive on the port of the worker owning the flow, because our Via,
 * Path and Record-Route name that port.
 *
 * Sending (ep_mw_send): over a TCP connection to that address when one exists (one the core
 * opened to us, or ours), else over a new TCP connection when mw.transport is tcp, else as a
 * UDP datagram. TCP streams are cut into messages by Content-Length (RFC 3261 18.3); a
 * stream that cannot be framed is closed. Connections idle for 10 minutes are closed.
 */
#define _GNU_SOURCE /* accept4 */
#include "ep.h"

#include <glib-unix.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define MAX_DATAGRAM 65535
#define BATCH        64 /* datagrams per wake-up, so WebSocket traffic is not starved */
#define TCP_MAX_MSG  (MAX_DATAGRAM + 8192)
#define TCP_MAX_OUT  (4u * 1024 * 1024) /* queued bytes per connection before we give up */
#define TCP_IDLE_S   600

struct mw_conn {
    struct ep_worker *w;
    int fd;
    char key[64]; /* peer address "ip:port" */
    struct sockaddr_storage peer;
    socklen_t peer_len;
    GSource *src;
    GByteArray *in, *out;
    bool connecting;
    gint64 last_used;
};

struct mw_tcp {
    int listen_fd;
    GSource *listen_src;
    struct ep_timer *idle_timer;
    GHashTable *conns; /* key -> struct mw_conn */
};

static bool tcp_mode(const struct ep_worker *w)
{
    return w->app->cfg->mw_transport != NULL && strcasecmp(w->app->cfg->mw_transport, "tcp") == 0;
}

static void addr_key(const struct sockaddr *sa, char *out, size_t n)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        port = ntohs(a->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        port = ntohs(a->sin6_port);
    }
    snprintf(out, n, "%s:%u", host, port);
}

/* ---- UDP ---------------------------------------------------------------------------------- */

static gboolean udp_readable(gint fd, GIOCondition cond, gpointer arg)
{
    (void)cond;
    struct ep_worker *w = arg;
    static _Thread_local uint8_t buf[MAX_DATAGRAM + 1];
    for (int i = 0; i < BATCH; i++) {
        struct sockaddr_storage src;
        socklen_t sl = sizeof(src);
        ssize_t n = recvfrom(fd, buf, MAX_DATAGRAM, 0, (struct sockaddr *)&src, &sl);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                ep_log(EP_LOG_WARN, "mw: recvfrom: %s", strerror(errno));
            break;
        }
        /* RFC 5626 keep-alives and stray empty datagrams carry no SIP. */
        if (n <= 4 && (n == 0 || buf[0] == '\r' || buf[0] == '\n' || buf[0] == 0))
            continue;
        ep_proxy_from_mw(w, buf, (size_t)n, (struct sockaddr *)&src, sl);
    }
    return G_SOURCE_CONTINUE;
}

/* ---- TCP connections ---------------------------------------------------------------------- */

static void conn_free(gpointer p)
{
    struct mw_conn *c = p;
    if (c->src != NULL) {
        g_source_destroy(c->src);
        g_source_unref(c->src);
    }
    if (c->fd >= 0)
        close(c->fd);
    g_byte_array_free(c->in, TRUE);
    g_byte_array_free(c->out, TRUE);
    g_free(c);
}

static void conn_close(struct mw_conn *c, const char *why)
{
    struct mw_tcp *t = c->w->mw_tcp;
    ep_log(EP_LOG_INFO, "mw: TCP %s closed (%s)", c->key, why);
    g_hash_table_remove(t->conns, c->key); /* frees c */
}

/* Length of the first complete message in buf, 0 when more bytes are needed, -1 when the
 * stream cannot be framed (no or bad Content-Length, too large). */
static long frame(const uint8_t *buf, size_t len)
{
    const uint8_t *end = NULL;
    for (size_t i = 0; i + 3 < len; i++)
        if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n') {
            end = buf + i;
            break;
        }
    if (end == NULL)
        return len > TCP_MAX_MSG ? -1 : 0;
    size_t hlen = (size_t)(end - buf);
    long clen = -1;
    for (size_t pos = 0; pos < hlen;) {
        const uint8_t *nl = memchr(buf + pos, '\n', hlen - pos);
        size_t lend = nl ? (size_t)(nl - buf) : hlen;
        const char *l = (const char *)buf + pos;
        size_t ll = lend - pos;
        size_t nlen = 0;
        if (ll > 15 && strncasecmp(l, "Content-Length", 14) == 0)
            nlen = 14;
        else if (ll > 2 && (l[0] == 'l' || l[0] == 'L') && (l[1] == ':' || l[1] == ' '))
            nlen = 1;
        if (nlen > 0) {
            size_t k = nlen;
            while (k < ll && (l[k] == ' ' || l[k] == '\t'))
                k++;
            if (k < ll && l[k] == ':') {
                k++;
                while (k < ll && (l[k] == ' ' || l[k] == '\t'))
                    k++;
                long v = 0;
                size_t digits = 0;
                while (k < ll && l[k] >= '0' && l[k] <= '9' && digits < 7) {
                    v = v * 10 + (l[k++] - '0');
                    digits++;
                }
                if (digits == 0 || clen >= 0)
                    return -1; /* none or two: not framable */
                clen = v;
            }
        }
        pos = lend + 1;
    }
    if (clen < 0 || hlen + 4 + (size_t)clen > TCP_MAX_MSG)
        return -1;
    size_t total = hlen + 4 + (size_t)clen;
    return len >= total ? (long)total : 0;
}

static void conn_input(struct mw_conn *c)
{
    for (;;) {
        size_t skip = 0; /* CRLF keep-alives between messages */
        while (skip < c->in->len && (c->in->data[skip] == '\r' || c->in->data[skip] == '\n'))
            skip++;
        if (skip > 0)
            g_byte_array_remove_range(c->in, 0, (guint)skip);
        if (c->in->len == 0)
            return;
        long n = frame(c->in->data, c->in->len);
        if (n == 0)
            return;
        if (n < 0) {
            conn_close(c, "message cannot be framed");
            return;
        }
        /* The message may make the proxy send on (or close) this connection: work on a copy
         * and look the connection up again afterwards. */
        uint8_t *msg = g_memdup2(c->in->data, (gsize)n);
        g_byte_array_remove_range(c->in, 0, (guint)n);
        struct ep_worker *w = c->w;
        char key[64];
        g_strlcpy(key, c->key, sizeof(key));
        struct sockaddr_storage peer = c->peer;
        socklen_t pl = c->peer_len;
        ep_proxy_from_mw(w, msg, (size_t)n, (struct sockaddr *)&peer, pl);
        g_free(msg);
        c = g_hash_table_lookup(((struct mw_tcp *)w->mw_tcp)->conns, key);
        if (c == NULL)
            return;
    }
}

static void conn_watch(struct mw_conn *c);

static gboolean conn_ready(gint fd, GIOCondition cond, gpointer arg)
{
    struct mw_conn *c = arg;
    c->last_used = g_get_monotonic_time();
    if (c->connecting && (cond & (G_IO_OUT | G_IO_ERR | G_IO_HUP))) {
        int err = 0;
        socklen_t el = sizeof(err);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err != 0) {
            conn_close(c, strerror(err));
            return G_SOURCE_REMOVE;
        }
        c->connecting = false;
    }
    if (!c->connecting && c->out->len > 0 && (cond & G_IO_OUT)) {
        ssize_t n = send(fd, c->out->data, c->out->len, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            conn_close(c, strerror(errno));
            return G_SOURCE_REMOVE;
        }
        if (n > 0)
            g_byte_array_remove_range(c->out, 0, (guint)n);
    }
    if (cond & (G_IO_IN | G_IO_HUP | G_IO_ERR)) {
        uint8_t buf[16384];
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            conn_close(c, n == 0 ? "by the peer" : strerror(errno));
            return G_SOURCE_REMOVE;
        }
        if (n > 0) {
            g_byte_array_append(c->in, buf, (guint)n);
            char key[64];
            g_strlcpy(key, c->key, sizeof(key));
            struct ep_worker *w = c->w;
            conn_input(c);
            c = g_hash_table_lookup(((struct mw_tcp *)w->mw_tcp)->conns, key);
            if (c == NULL)
                return G_SOURCE_REMOVE;
        }
    }
    conn_watch(c); /* write interest follows the queue */
    return G_SOURCE_REMOVE;
}

/* (Re)arms the connection's watch: read always, write while connecting or queued. */
static void conn_watch(struct mw_conn *c)
{
    if (c->src != NULL) {
        g_source_destroy(c->src);
        g_source_unref(c->src);
    }
    GIOCondition cond = G_IO_IN | G_IO_HUP | G_IO_ERR;
    if (c->connecting || c->out->len > 0)
        cond |= G_IO_OUT;
    c->src = g_unix_fd_source_new(c->fd, cond);
    g_source_set_callback(c->src, G_SOURCE_FUNC(conn_ready), c, NULL);
    g_source_attach(c->src, c->w->ctx);
}

static struct mw_conn *conn_add(struct ep_worker *w, int fd, const struct sockaddr *peer,
                                socklen_t pl, bool connecting)
{
    struct mw_tcp *t = w->mw_tcp;
    struct mw_conn *c = g_new0(struct mw_conn, 1);
    c->w = w;
    c->fd = fd;
    memcpy(&c->peer, peer, pl);
    c->peer_len = pl;
    addr_key(peer, c->key, sizeof(c->key));
    c->in = g_byte_array_new();
    c->out = g_byte_array_new();
    c->connecting = connecting;
    c->last_used = g_get_monotonic_time();
    g_hash_table_replace(t->conns, c->key, c); /* an older one to the same peer is freed */
    conn_watch(c);
    return c;
}

static gboolean tcp_accept(gint fd, GIOCondition cond, gpointer arg)
{
    (void)cond;
    struct ep_worker *w = arg;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int c = accept4(fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0)
            break;
        conn_add(w, c, (struct sockaddr *)&ss, sl, false);
    }
    return G_SOURCE_CONTINUE;
}

static gboolean tcp_idle(gpointer arg)
{
    struct ep_worker *w = arg;
    struct mw_tcp *t = w->mw_tcp;
    gint64 now = g_get_monotonic_time();
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, t->conns);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        struct mw_conn *c = v;
        if (now - c->last_used > (gint64)TCP_IDLE_S * G_USEC_PER_SEC && c->out->len == 0)
            g_hash_table_iter_remove(&it);
    }
    return G_SOURCE_CONTINUE;
}

static bool tcp_send(struct ep_worker *w, const struct sockaddr *to, socklen_t tolen,
                     const char *buf, size_t len)
{
    struct mw_tcp *t = w->mw_tcp;
    char key[64];
    addr_key(to, key, sizeof(key));
    struct mw_conn *c = g_hash_table_lookup(t->conns, key);
    if (c == NULL) {
        if (!tcp_mode(w))
            return false; /* no stream to this peer: UDP */
        int fd = socket(to->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return true;
        if (connect(fd, to, tolen) != 0 && errno != EINPROGRESS) {
            ep_log(EP_LOG_WARN, "mw: TCP connect to %s: %s", key, strerror(errno));
            close(fd);
            return true; /* the transaction times out: 503 to the WIC */
        }
        c = conn_add(w, fd, to, tolen, true);
    }
    if (c->out->len + len > TCP_MAX_OUT) {
        conn_close(c, "peer not reading");
        return true;
    }
    g_byte_array_append(c->out, (const guint8 *)buf, (guint)len);
    c->last_used = g_get_monotonic_time();
    conn_watch(c);
    return true;
}

/* ---- start, stop, send -------------------------------------------------------------------- */

static int bind_one(struct ep_worker *w, int type, const char *host, const char *port, char *detail,
                    size_t dlen)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = type, .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        snprintf(detail, dlen, "mw.listen host: %s", gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0 && type == SOCK_STREAM)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
        (type == SOCK_STREAM && listen(fd, 1024) != 0)) {
        snprintf(detail, dlen, "worker %u: cannot bind Mw %s %s:%s: %s", w->index,
                 type == SOCK_STREAM ? "TCP" : "UDP", host, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    return fd;
}

int ep_mw_start(struct ep_worker *w, char *detail, size_t dlen)
{
    const struct ep_config *cfg = w->app->cfg;
    char host[256];
    unsigned port;
    if (ep_config_hostport(cfg->mw_listen, host, sizeof(host), &port) != 0) {
        snprintf(detail, dlen, "mw.listen is not host:port");
        return -1;
    }
    char portbuf[16];
    snprintf(portbuf, sizeof(portbuf), "%u", port + w->index);
    struct mw_tcp *t = g_new0(struct mw_tcp, 1);
    t->listen_fd = -1;
    t->conns = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, conn_free);
    w->mw_tcp = t;
    int fd = bind_one(w, SOCK_DGRAM, host, portbuf, detail, dlen);
    if (fd < 0)
        return -1;
    int sz = 4 * 1024 * 1024;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    w->mw_fd = fd;
    w->mw_src = g_unix_fd_source_new(fd, G_IO_IN);
    g_source_set_callback(w->mw_src, G_SOURCE_FUNC(udp_readable), w, NULL);
    g_source_attach(w->mw_src, w->ctx);
    t->listen_fd = bind_one(w, SOCK_STREAM, host, portbuf, detail, dlen);
    if (t->listen_fd < 0)
        return -1;
    t->listen_src = g_unix_fd_source_new(t->listen_fd, G_IO_IN);
    g_source_set_callback(t->listen_src, G_SOURCE_FUNC(tcp_accept), w, NULL);
    g_source_attach(t->listen_src, w->ctx);
    t->idle_timer = ep_timer_start(w, 60000, tcp_idle, w, NULL);
    return 0;
}

void ep_mw_stop(struct ep_worker *w)
{
    if (w->mw_src != NULL) {
        g_source_destroy(w->mw_src);
        g_source_unref(w->mw_src);
        w->mw_src = NULL;
    }
    if (w->mw_fd >= 0)
        close(w->mw_fd);
    w->mw_fd = -1;
    struct mw_tcp *t = w->mw_tcp;
    if (t == NULL)
        return;
    ep_timer_cancel(&t->idle_timer);
    if (t->listen_src != NULL) {
        g_source_destroy(t->listen_src);
        g_source_unref(t->listen_src);
    }
    if (t->listen_fd >= 0)
        close(t->listen_fd);
    g_hash_table_destroy(t->conns);
    g_free(t);
    w->mw_tcp = NULL;
}

void ep_mw_send(struct ep_worker *w, const struct sockaddr *to, socklen_t tolen, const char *buf,
                size_t len)
{
    if (w->mw_tcp != NULL && tcp_send(w, to, tolen, buf, len))
        return;
    if (sendto(w->mw_fd, buf, len, 0, to, tolen) < 0)
        ep_log(EP_LOG_DEBUG, "mw: sendto: %s", strerror(errno));
}

bool ep_mw_reliable(const struct ep_worker *w)
{
    return tcp_mode(w);
}

const char *ep_mw_via_transport(const struct ep_worker *w)
{
    return tcp_mode(w) ? "TCP" : "UDP";
}
