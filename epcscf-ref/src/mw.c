/*
 * Mw transport of one worker: a non-blocking UDP socket bound to mw.listen's port + the
 * worker's index, watched by the worker's main loop. Requests and responses from the core
 * arrive on the port of the worker owning the flow, because our Via, Path and Record-Route
 * name that port.
 */
#include "ep.h"

#include <glib-unix.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <string.h>
#include <unistd.h>

#define MAX_DATAGRAM 65535
#define BATCH        64 /* datagrams per wake-up, so WebSocket traffic is not starved */

static gboolean readable(gint fd, GIOCondition cond, gpointer arg)
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
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(host, portbuf, &hints, &ai);
    if (rc != 0) {
        snprintf(detail, dlen, "mw.listen host: %s", gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        snprintf(detail, dlen, "worker %u: cannot bind Mw UDP %s:%s: %s", w->index, host, portbuf,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    int sz = 4 * 1024 * 1024;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    w->mw_fd = fd;
    w->mw_src = g_unix_fd_source_new(fd, G_IO_IN);
    g_source_set_callback(w->mw_src, G_SOURCE_FUNC(readable), w, NULL);
    g_source_attach(w->mw_src, w->ctx);
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
}

void ep_mw_send(struct ep_worker *w, const struct sockaddr *to, socklen_t tolen, const char *buf,
                size_t len)
{
    if (sendto(w->mw_fd, buf, len, 0, to, tolen) < 0)
        ep_log(EP_LOG_WARN, "mw: sendto: %s", strerror(errno));
}
