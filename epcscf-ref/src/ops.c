/*
 * Operations listener of the eP-CSCF (http.listen, loopback by default): Prometheus
 * /metrics and /healthz, served by libmicrohttpd on its own thread; it only reads atomic
 * counters and the revocation feed's state.
 */
#include "ops.h"
#include "revfeed.h"

#include <microhttpd.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Heap in use, for the leak checks of the fault test and for operators: the sanitizer's
 * count of live allocations in sanitizer builds (freed memory sits in its quarantine, so RSS
 * says nothing there), glibc's mallinfo2 otherwise. */
#if defined(__SANITIZE_ADDRESS__)
#define EP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EP_ASAN 1
#endif
#endif
#ifdef EP_ASAN
size_t __sanitizer_get_current_allocated_bytes(void);
static size_t heap_in_use(void)
{
    return __sanitizer_get_current_allocated_bytes();
}
#else
#include <malloc.h>
static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}
#endif

struct ep_ops {
    struct MHD_Daemon *d;
    struct ep_app *app;
};

static const char *const refusal_names[] = {"origin", "subprotocol", "limit", "other"};
static const char *const dereg_names[] = {"closed", "token_expired", "revoked", "network",
                                          "lapsed"};

static char *metrics_text(struct ep_app *app, size_t *len)
{
    struct ep_metrics *m = &app->m;
    GString *s = g_string_sized_new(8192);
    g_string_append_printf(s,
                           "# HELP epcscf_ws_connections Open WebSocket connections.\n"
                           "# TYPE epcscf_ws_connections gauge\nepcscf_ws_connections %ld\n"
                           "# HELP epcscf_registrations Registered flows.\n"
                           "# TYPE epcscf_registrations gauge\nepcscf_registrations %ld\n"
                           "# TYPE epcscf_ws_accepted_total counter\n"
                           "epcscf_ws_accepted_total %lu\n"
                           "# TYPE epcscf_ws_closed_total counter\nepcscf_ws_closed_total %lu\n"
                           "# TYPE epcscf_sip_malformed_total counter\n"
                           "epcscf_sip_malformed_total %lu\n"
                           "# TYPE epcscf_revocations_total counter\n"
                           "epcscf_revocations_total %lu\n",
                           atomic_load(&m->ws_open), atomic_load(&m->regs_active),
                           atomic_load(&m->ws_accepted), atomic_load(&m->ws_closed),
                           atomic_load(&m->sip_bad), atomic_load(&m->revocations));
    g_string_append_printf(s,
                           "# HELP epcscf_heap_in_use_bytes Heap memory in use.\n"
                           "# TYPE epcscf_heap_in_use_bytes gauge\n"
                           "epcscf_heap_in_use_bytes %zu\n",
                           heap_in_use());
    g_string_append(s, "# HELP epcscf_ws_refused_total WebSocket handshakes refused.\n"
                       "# TYPE epcscf_ws_refused_total counter\n");
    for (int i = 0; i < 4; i++)
        g_string_append_printf(s, "epcscf_ws_refused_total{reason=\"%s\"} %lu\n", refusal_names[i],
                               atomic_load(&m->ws_refused[i]));
    g_string_append(s, "# HELP epcscf_deregistrations_total Registrations ended by us.\n"
                       "# TYPE epcscf_deregistrations_total counter\n");
    for (int i = 0; i < EP_DC_COUNT; i++)
        g_string_append_printf(s, "epcscf_deregistrations_total{cause=\"%s\"} %lu\n",
                               dereg_names[i], atomic_load(&m->dereg[i]));
    g_string_append(s, "# HELP epcscf_transactions_total Final answers to WIC requests by "
                       "method and class (class=\"timeout\": no answer from the core).\n"
                       "# TYPE epcscf_transactions_total counter\n");
    for (int me = 0; me < EP_M_COUNT; me++)
        for (int c = 0; c <= 6; c++) {
            unsigned long v = atomic_load(&m->tx[me][c]);
            if (v == 0)
                continue;
            char cls[8];
            if (c == 0)
                snprintf(cls, sizeof(cls), "timeout");
            else
                snprintf(cls, sizeof(cls), "%dxx", c);
            g_string_append_printf(s, "epcscf_transactions_total{method=\"%s\",class=\"%s\"} %lu\n",
                                   ep_method_name((enum ep_method)me), cls, v);
        }
    g_string_append(s, "# HELP epcscf_token_checks_total Bearer verifications by result.\n"
                       "# TYPE epcscf_token_checks_total counter\n");
    for (int r = 0; r < EP_TOKEN_RESULTS; r++) {
        unsigned long v = atomic_load(&m->token[r]);
        if (v != 0)
            g_string_append_printf(s, "epcscf_token_checks_total{result=\"%s\"} %lu\n",
                                   imsauth_strerror((enum imsauth_result)r), v);
    }
    if (app->revfeed != NULL)
        g_string_append_printf(s,
                               "# TYPE epcscf_revocation_feed_up gauge\n"
                               "epcscf_revocation_feed_up %d\n"
                               "# TYPE epcscf_revocation_feed_reconnects_total counter\n"
                               "epcscf_revocation_feed_reconnects_total %llu\n",
                               ep_revfeed_connected(app->revfeed) ? 1 : 0,
                               (unsigned long long)ep_revfeed_reconnects(app->revfeed));
    *len = s->len;
    return g_string_free(s, FALSE);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_len, void **req_cls)
{
    (void)version;
    (void)upload;
    (void)upload_len;
    (void)req_cls;
    struct ep_ops *o = cls;
    char *body;
    size_t len;
    unsigned status = MHD_HTTP_OK;
    const char *type = "text/plain; charset=utf-8";
    if (strcmp(method, "GET") != 0) {
        status = MHD_HTTP_METHOD_NOT_ALLOWED;
        body = g_strdup("method not allowed\n");
    } else if (strcmp(url, "/metrics") == 0) {
        body = metrics_text(o->app, &len);
        type = "text/plain; version=0.0.4";
    } else if (strcmp(url, "/healthz") == 0) {
        bool feed = o->app->revfeed == NULL || ep_revfeed_connected(o->app->revfeed);
        body = g_strdup_printf("{\"status\":\"ok\",\"workers\":%zu,\"revocation_feed\":\"%s\"}\n",
                               o->app->n_workers,
                               o->app->revfeed == NULL ? "off"
                               : feed                  ? "up"
                                                       : "down");
        type = "application/json";
    } else {
        status = MHD_HTTP_NOT_FOUND;
        body = g_strdup("not found\n");
    }
    len = strlen(body);
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_COPY);
    g_free(body);
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

int ep_ops_start(struct ep_ops **out, struct ep_app *app, char *detail, size_t dlen)
{
    char host[256];
    unsigned port;
    if (ep_config_hostport(app->cfg->http_listen, host, sizeof(host), &port) != 0) {
        snprintf(detail, dlen, "http.listen is not host:port");
        return -1;
    }
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
    const struct sockaddr *sa;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL;
    if (inet_pton(AF_INET, host, &a4.sin_addr) == 1) {
        sa = (const struct sockaddr *)&a4;
    } else if (inet_pton(AF_INET6, host, &a6.sin6_addr) == 1) {
        sa = (const struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(detail, dlen, "http.listen needs an IP address");
        return -1;
    }
    struct ep_ops *o = g_new0(struct ep_ops, 1);
    o->app = app;
    o->d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, handle, o, MHD_OPTION_SOCK_ADDR, sa,
                            MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_CONNECTION_TIMEOUT, 10u,
                            MHD_OPTION_END);
    if (o->d == NULL) {
        snprintf(detail, dlen, "cannot listen on http.listen %s", app->cfg->http_listen);
        g_free(o);
        return -1;
    }
    *out = o;
    return 0;
}

void ep_ops_stop(struct ep_ops *o)
{
    if (o == NULL)
        return;
    MHD_stop_daemon(o->d);
    g_free(o);
}
