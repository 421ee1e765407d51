/*
 * The proxy core of the eP-CSCF: a transaction-stateful proxy (RFC 3261 16) between the
 * WebSocket flows of the WICs and the IMS core on Mw.
 *
 * From a WIC: REGISTER goes to register.c; other requests only on a registered flow (except
 * emergency), with the Bearer token checked (EPC-30), P-Asserted-Identity set from the
 * registration (EPC-20), Route from the Service-Route of the registration for initial
 * requests and Record-Route naming the flow. From the core: requests are delivered on the
 * flow named by the user part of our Route (Path or Record-Route), 430 Flow Failed when it
 * is gone (EPC-23). Towards the core every request is a client transaction with
 * retransmissions over UDP (T1 doubling up to 4 s) and a timeout answered with 503; a final
 * non-2xx answer to an INVITE is ACKed hop by hop; CANCEL follows its INVITE.
 */
#include "proxy.h"
#include "lease.h"

#include <osipparser2/osip_parser.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define T2_MS     4000
#define LINGER_MS 5000 /* completed non-INVITE / INVITE transactions absorb retransmissions */

static const char *const method_names[EP_M_COUNT] = {
    "REGISTER",  "INVITE", "ACK",    "BYE",   "CANCEL", "OPTIONS", "MESSAGE",
    "SUBSCRIBE", "NOTIFY", "UPDATE", "PRACK", "INFO",   "REFER",   "OTHER"};

enum ep_method ep_method_of(const char *name)
{
    for (int i = 0; i < EP_M_OTHER; i++)
        if (name != NULL && strcmp(name, method_names[i]) == 0)
            return (enum ep_method)i;
    return EP_M_OTHER;
}

const char *ep_method_name(enum ep_method m)
{
    return m < EP_M_COUNT ? method_names[m] : "OTHER";
}

void ep_count_final(struct ep_app *app, enum ep_method m, int status)
{
    int cls = status / 100;
    if (cls < 0 || cls > 6)
        cls = 0;
    atomic_fetch_add_explicit(&app->m.tx[m][cls], 1, memory_order_relaxed);
}

/* ---- transactions ------------------------------------------------------------------------- */

void ep_tx_free(gpointer p)
{
    struct ep_tx *tx = p;
    ep_timer_cancel(&tx->t_retx);
    ep_timer_cancel(&tx->t_end);
    if (tx->ukey != NULL) {
        if (g_hash_table_lookup(tx->w->stx, tx->ukey) == tx)
            g_hash_table_remove(tx->w->stx, tx->ukey);
        g_free(tx->ukey);
    }
    if (tx->req != NULL)
        osip_message_free(tx->req);
    g_free(tx->out);
    g_free(tx->resp);
    ep_reg_pending_free(tx->reg);
    g_free(tx);
}

static struct ep_timer *timeout_on(struct ep_worker *w, unsigned ms, GSourceFunc fn, void *arg)
{
    return ep_timer_start(w, ms, fn, arg, NULL);
}

static gboolean tx_end(gpointer arg)
{
    struct ep_tx *tx = arg;
    ep_timer_cancel(&tx->t_end);
    g_hash_table_remove(tx->w->tx, tx->key); /* frees */
    return G_SOURCE_REMOVE;
}

/* Keeps a completed transaction a while to absorb retransmissions, then frees it. */
static void tx_linger(struct ep_tx *tx)
{
    ep_timer_cancel(&tx->t_retx);
    ep_timer_cancel(&tx->t_end);
    tx->t_end = timeout_on(tx->w, LINGER_MS, tx_end, tx);
}

static struct ep_flow *tx_flow(struct ep_tx *tx)
{
    return tx->flow_id ? g_hash_table_lookup(tx->w->flows, &tx->flow_id) : NULL;
}

static gboolean tx_retransmit(gpointer arg)
{
    struct ep_tx *tx = arg;
    ep_timer_cancel(&tx->t_retx);
    ep_mw_send(tx->w, (struct sockaddr *)&tx->dst, tx->dst_len, tx->out, tx->out_len);
    tx->retx_ms *= 2;
    if (tx->method != EP_M_INVITE && tx->retx_ms > T2_MS)
        tx->retx_ms = T2_MS;
    tx->t_retx = timeout_on(tx->w, tx->retx_ms, tx_retransmit, tx);
    return G_SOURCE_REMOVE;
}

/* No final answer in time. Towards the core: the WIC gets 503 (the core is unreachable or
 * silent); towards a WIC: the core gets 408. */
static gboolean tx_timeout(gpointer arg)
{
    struct ep_tx *tx = arg;
    ep_timer_cancel(&tx->t_end);
    struct ep_app *app = tx->w->app;
    atomic_fetch_add(&app->m.tx[tx->method][0], 1);
    if (tx->dir == TX_TO_CORE && tx->status < 200) {
        struct ep_flow *f = tx_flow(tx);
        if (f != NULL && tx->method != EP_M_ACK) {
            /* The response must carry the WIC's Via only. */
            ep_via_pop(tx->req);
            ep_reply_wic(f, tx->req, 503, "Service Unavailable", "Retry-After: 30\r\n");
        }
        if (tx->reg != NULL && f != NULL)
            ep_register_response(f, tx, NULL);
    } else if (tx->dir == TX_TO_WIC && tx->status < 200) {
        ep_via_pop(tx->req);
        size_t n;
        char *r = ep_response_text(tx->req, 408, "Request Timeout", NULL, &n);
        ep_mw_send(tx->w, (struct sockaddr *)&tx->src, tx->src_len, r, n);
        g_free(r);
    } else if (tx->dir == TX_LOCAL && tx->status < 200) {
        ep_log(EP_LOG_WARN, "%s of our own got no answer from the core",
               ep_method_name(tx->method));
    }
    g_hash_table_remove(tx->w->tx, tx->key);
    return G_SOURCE_REMOVE;
}

static struct ep_tx *tx_new(struct ep_worker *w, enum tx_dir dir, enum ep_method method,
                            const char *branch)
{
    struct ep_tx *tx = g_new0(struct ep_tx, 1);
    tx->w = w;
    tx->dir = dir;
    tx->method = method;
    g_strlcpy(tx->branch, branch, sizeof(tx->branch));
    snprintf(tx->key, sizeof(tx->key), "%s%s", branch, method == EP_M_CANCEL ? "C" : "");
    g_hash_table_replace(w->tx, tx->key, tx);
    return tx;
}

static void tx_start_timers(struct ep_tx *tx, bool retransmit)
{
    const struct ep_config *cfg = tx->w->app->cfg;
    tx->retx_ms = (unsigned)cfg->mw_t1_ms;
    if (retransmit)
        tx->t_retx = timeout_on(tx->w, tx->retx_ms, tx_retransmit, tx);
    tx->t_end = timeout_on(tx->w, (unsigned)cfg->mw_timeout_ms, tx_timeout, tx);
}

/* ---- sending ----------------------------------------------------------------------------- */

/* We answered a WIC's INVITE with a final non-2xx ourselves: its ACK (same branch) must be
 * absorbed here, not routed to the core. A placeholder transaction remembers the answer for
 * LINGER_MS. */
static void remember_local_final(struct ep_flow *f, osip_message_t *req, int status)
{
    const char *branch = ep_via_branch(req);
    if (branch == NULL)
        return;
    struct ep_worker *w = f->w;
    char ours[48], ukey[EP_UKEY_MAX];
    snprintf(ours, sizeof(ours), "local-%llx", (unsigned long long)++w->branch_seq);
    ep_wic_key(f, branch, ukey);
    struct ep_tx *tx = tx_new(w, TX_LOCAL, EP_M_INVITE, ours);
    tx->flow_id = f->id;
    tx->status = status;
    tx->ukey = g_strdup(ukey);
    g_hash_table_replace(w->stx, tx->ukey, tx);
    tx_linger(tx);
}

void ep_reply_wic(struct ep_flow *f, osip_message_t *req, int status, const char *reason,
                  const char *extra)
{
    size_t n;
    char *r = ep_response_text(req, status, reason, extra, &n);
    ep_flow_send(f, r, n);
    g_free(r);
    if (status >= 200) {
        enum ep_method m = ep_method_of(req->sip_method);
        ep_count_final(f->w->app, m, status);
        if (m == EP_M_INVITE && status >= 300)
            remember_local_final(f, req, status);
    }
}

static void reply_core(struct ep_worker *w, osip_message_t *req, const struct sockaddr *to,
                       socklen_t tolen, int status, const char *reason, const char *extra)
{
    size_t n;
    char *r = ep_response_text(req, status, reason, extra, &n);
    ep_mw_send(w, to, tolen, r, n);
    g_free(r);
}

void ep_route_dst(struct ep_app *app, osip_message_t *m, struct sockaddr_storage *ss,
                  socklen_t *len)
{
    osip_route_t *r = osip_list_get(&m->routes, 0);
    if (r != NULL && ep_uri_addr(r->url, ss, len))
        return;
    if (r == NULL && ep_uri_addr(m->req_uri, ss, len))
        return;
    memcpy(ss, &app->next_hop, app->next_hop_len);
    *len = app->next_hop_len;
}

void ep_flow_uri(struct ep_flow *f, char *out, size_t n, bool ob)
{
    struct ep_app *app = f->w->app;
    snprintf(out, n, "<sip:%s@%s:%u;lr%s%s>", f->token, app->mw_host, app->mw_port + f->w->index,
             ep_mw_reliable(f->w) ? ";transport=tcp" : "", ob ? ";ob" : "");
}

void ep_forward_to_core(struct ep_flow *f, osip_message_t *req, struct reg_pending *reg,
                        const char *wic_ukey)
{
    struct ep_worker *w = f->w;
    struct ep_app *app = w->app;
    char branch[48];
    ep_new_branch(w, branch);
    enum ep_method method = ep_method_of(req->sip_method);
    struct ep_tx *tx = tx_new(w, TX_TO_CORE, method, branch);
    tx->flow_id = f->id;
    tx->reg = reg;
    ep_route_dst(app, req, &tx->dst, &tx->dst_len);
    ep_via_push(req, ep_mw_via_transport(w), app->mw_host, app->mw_port + w->index, branch);
    tx->out = ep_msg_text(req, &tx->out_len);
    tx->req = req;
    if (tx->out == NULL) {
        ep_via_pop(req);
        ep_reply_wic(f, req, 500, "Server Internal Error", NULL);
        g_hash_table_remove(w->tx, tx->key);
        return;
    }
    if (wic_ukey != NULL && method != EP_M_ACK) {
        tx->ukey = g_strdup(wic_ukey);
        g_hash_table_replace(w->stx, tx->ukey, tx);
    }
    ep_mw_send(w, (struct sockaddr *)&tx->dst, tx->dst_len, tx->out, tx->out_len);
    if (method == EP_M_ACK) {
        /* ACK has no response: nothing to keep. */
        g_hash_table_remove(w->tx, tx->key);
        return;
    }
    tx_start_timers(tx, !ep_mw_reliable(tx->w));
}

void ep_send_local(struct ep_worker *w, const char *text, size_t len, const char *branch,
                   const struct sockaddr *dst, socklen_t dst_len, enum ep_method method)
{
    struct ep_tx *tx = tx_new(w, TX_LOCAL, method, branch);
    tx->out = g_strndup(text, len);
    tx->out_len = len;
    memcpy(&tx->dst, dst, dst_len);
    tx->dst_len = dst_len;
    ep_mw_send(w, dst, dst_len, text, len);
    tx_start_timers(tx, !ep_mw_reliable(tx->w));
}

/* ACK (for a non-2xx final answer) or CANCEL built from the request a transaction sent. */
static char *hop_request(struct ep_tx *tx, const char *method, osip_message_t *resp, size_t *len)
{
    osip_message_t *r = tx->req;
    GString *s = g_string_new(NULL);
    char *ruri = ep_uri_text(r->req_uri);
    g_string_append_printf(s, "%s %s SIP/2.0\r\n", method, ruri ? ruri : "");
    g_free(ruri);
    char *v = NULL;
    osip_via_t *via = osip_list_get(&r->vias, 0);
    if (via != NULL && osip_via_to_str(via, &v) == 0) {
        g_string_append_printf(s, "Via: %s\r\n", v);
        osip_free(v);
    }
    for (int i = 0; i < osip_list_size(&r->routes); i++) {
        if (osip_route_to_str(osip_list_get(&r->routes, i), &v) == 0) {
            g_string_append_printf(s, "Route: %s\r\n", v);
            osip_free(v);
        }
    }
    if (osip_from_to_str(r->from, &v) == 0) {
        g_string_append_printf(s, "From: %s\r\n", v);
        osip_free(v);
    }
    osip_to_t *to = resp != NULL ? resp->to : r->to;
    if (osip_to_to_str(to, &v) == 0) {
        g_string_append_printf(s, "To: %s\r\n", v);
        osip_free(v);
    }
    g_string_append_printf(s, "Call-ID: %s%s%s\r\nCSeq: %s %s\r\nMax-Forwards: 70\r\n",
                           r->call_id->number, r->call_id->host ? "@" : "",
                           r->call_id->host ? r->call_id->host : "", r->cseq->number, method);
    g_string_append(s, "Content-Length: 0\r\n\r\n");
    *len = s->len;
    return g_string_free(s, FALSE);
}

/* ---- from the WICs ------------------------------------------------------------------------- */

static bool is_emergency(const struct ep_config *cfg, osip_message_t *m)
{
    osip_uri_t *u = m->req_uri;
    if (u == NULL)
        return false;
    if (u->scheme != NULL && strcasecmp(u->scheme, "urn") == 0)
        return u->string != NULL && g_ascii_strncasecmp(u->string, "service:sos", 11) == 0;
    const char *num = u->username;
    if (u->scheme != NULL && strcasecmp(u->scheme, "tel") == 0)
        num = u->string;
    if (num == NULL)
        return false;
    for (size_t i = 0; i < cfg->n_emergency_numbers; i++)
        if (strcmp(num, cfg->emergency_numbers[i]) == 0)
            return true;
    return false;
}

void ep_wic_key(const struct ep_flow *f, const char *branch, char out[EP_UKEY_MAX])
{
    snprintf(out, EP_UKEY_MAX, "w%llx:%.100s", (unsigned long long)f->id,
             branch != NULL ? branch : "");
}

void ep_strip_client_headers(osip_message_t *m)
{
    ep_drop_credentials(m);
    ep_hdr_del(m, "P-Asserted-Identity");
    ep_hdr_del(m, "P-Charging-Vector");
    ep_hdr_del(m, "P-Charging-Function-Addresses");
    ep_hdr_del(m, "P-Visited-Network-ID");
    /* No IPsec sec-agree on W2 (EPC-11): the option tags must not reach the core. */
    ep_hdr_del(m, "Security-Client");
    ep_hdr_del(m, "Security-Verify");
    ep_hdr_drop_token(m, "Require", "sec-agree");
    ep_hdr_drop_token(m, "Proxy-Require", "sec-agree");
}

/* Pops the Route entries naming us; returns the flow token of the last one (owned), NULL
 * when none. */
static char *pop_our_routes(struct ep_app *app, osip_message_t *m)
{
    char *token = NULL;
    osip_route_t *r;
    while ((r = osip_list_get(&m->routes, 0)) != NULL && ep_uri_is_us(app, r->url)) {
        g_free(token);
        token = g_strdup(r->url->username);
        osip_list_remove(&m->routes, 0);
        osip_route_free(r);
    }
    osip_message_force_update(m);
    return token;
}

/* False when the first Route entry naming us carries another flow's token. */
static bool route_is_own(struct ep_flow *f, osip_message_t *m)
{
    struct ep_app *app = f->w->app;
    for (int i = 0; i < osip_list_size(&m->routes); i++) {
        osip_route_t *r = osip_list_get(&m->routes, i);
        if (ep_uri_is_us(app, r->url))
            return r->url->username != NULL && strcmp(r->url->username, f->token) == 0;
    }
    return true;
}

static void set_route_set(osip_message_t *m, char **uris)
{
    osip_route_t *r;
    while ((r = osip_list_get(&m->routes, 0)) != NULL) {
        osip_list_remove(&m->routes, 0);
        osip_route_free(r);
    }
    for (size_t i = 0; uris != NULL && uris[i] != NULL; i++)
        osip_message_set_route(m, uris[i]);
    osip_message_force_update(m);
}

static void add_record_route(struct ep_flow *f, osip_message_t *m)
{
    char rr[EP_URI_MAX];
    ep_flow_uri(f, rr, sizeof(rr), false);
    osip_record_route_t *r = NULL;
    if (osip_record_route_init(&r) != 0)
        return;
    if (osip_record_route_parse(r, rr) != 0) {
        osip_record_route_free(r);
        return;
    }
    osip_list_add(&m->record_routes, r, 0);
    osip_message_force_update(m);
}

/* P-Asserted-Identity from the registration (EPC-20): the preferred identity when the
 * registration holds it, else the default IMPU. */
static void assert_identity(struct ep_reg *reg, osip_message_t *m)
{
    const char *pai = reg->assoc != NULL && reg->assoc[0] != NULL ? reg->assoc[0] : reg->impu;
    const char *ppi = ep_hdr(m, "P-Preferred-Identity");
    char *want = NULL;
    if (ppi != NULL) {
        want = g_strdup(ppi);
        g_strstrip(want);
        for (size_t i = 0; reg->assoc != NULL && reg->assoc[i] != NULL; i++)
            if (g_ascii_strcasecmp(reg->assoc[i], want) == 0)
                pai = reg->assoc[i];
    }
    char buf[600];
    snprintf(buf, sizeof(buf), "%s%s%s", pai[0] == '<' ? "" : "<", pai, pai[0] == '<' ? "" : ">");
    ep_hdr_del(m, "P-Preferred-Identity");
    ep_hdr_set(m, "P-Asserted-Identity", buf);
    g_free(want);
}

void ep_charging_vector(const struct ep_app *app, osip_message_t *m)
{
    char icid[33], buf[160];
    ep_rand_hex(icid, 16);
    if (app->cfg->orig_ioi != NULL)
        snprintf(buf, sizeof(buf), "icid-value=%s;orig-ioi=%s", icid, app->cfg->orig_ioi);
    else
        snprintf(buf, sizeof(buf), "icid-value=%s", icid);
    ep_hdr_set(m, "P-Charging-Vector", buf);
}

static void dialog_forget(struct ep_flow *f, osip_message_t *m);
static void dialog_add(struct ep_flow *f, osip_message_t *req, osip_message_t *resp,
                       bool wic_is_caller);

static void emergency(struct ep_flow *f, osip_message_t *m, const char *ukey)
{
    struct ep_app *app = f->w->app;
    if (!app->has_ecscf) {
        ep_reply_wic(f, m, 380, "Alternative Service", NULL);
        osip_message_free(m);
        return;
    }
    if (f->reg == NULL && !app->cfg->emergency_unregistered) {
        /* TS 24.229 5.2.10: tell the UE to do an emergency registration. */
        ep_reply_wic(f, m, 380, "Alternative Service",
                     "Content-Type: application/3gpp-ims+xml\r\n");
        osip_message_free(m);
        return;
    }
    set_route_set(m, NULL);
    if (f->reg != NULL)
        assert_identity(f->reg, m);
    ep_charging_vector(app, m);
    add_record_route(f, m);
    char rr[300];
    char host[256];
    unsigned port = 0;
    if (ep_config_hostport(app->cfg->ecscf, host, sizeof(host), &port) == 0) {
        snprintf(rr, sizeof(rr), "<sip:%s:%u;lr>", host, port);
        osip_message_set_route(m, rr);
    }
    ep_hdr_set(m, "Priority", "emergency");
    ep_forward_to_core(f, m, NULL, ukey);
}

static void wic_cancel(struct ep_flow *f, osip_message_t *m, const char *ukey)
{
    struct ep_tx *inv = g_hash_table_lookup(f->w->stx, ukey);
    if (inv == NULL || inv->method != EP_M_INVITE) {
        ep_reply_wic(f, m, 481, "Call/Transaction Does Not Exist", NULL);
        return;
    }
    ep_reply_wic(f, m, 200, "OK", NULL);
    if (inv->status >= 200)
        return;
    size_t n;
    char *c = hop_request(inv, "CANCEL", NULL, &n);
    struct ep_tx *tx = tx_new(f->w, TX_LOCAL, EP_M_CANCEL, inv->branch);
    tx->out = c;
    tx->out_len = n;
    memcpy(&tx->dst, &inv->dst, inv->dst_len);
    tx->dst_len = inv->dst_len;
    ep_mw_send(f->w, (struct sockaddr *)&tx->dst, tx->dst_len, c, n);
    tx_start_timers(tx, !ep_mw_reliable(tx->w));
}

static void wic_response(struct ep_flow *f, osip_message_t *m)
{
    struct ep_worker *w = f->w;
    const char *branch = ep_via_branch(m);
    if (branch == NULL || m->cseq == NULL || m->cseq->method == NULL) {
        atomic_fetch_add(&w->app->m.sip_bad, 1);
        return;
    }
    char key[64];
    snprintf(key, sizeof(key), "%s%s", branch, strcmp(m->cseq->method, "CANCEL") == 0 ? "C" : "");
    struct ep_tx *tx = g_hash_table_lookup(w->tx, key);
    if (tx == NULL || tx->dir != TX_TO_WIC || tx->flow_id != f->id) {
        ep_log(EP_LOG_DEBUG, "response from flow %s matches no transaction", f->token);
        return;
    }
    int status = m->status_code;
    ep_via_pop(m);
    if (tx->method == EP_M_CANCEL) {
        tx_linger(tx);
        return; /* the core got its 200 to CANCEL from us already */
    }
    if (status >= 200 && tx->status >= 200 && !(status < 300 && tx->method == EP_M_INVITE))
        return; /* duplicate final */
    if (status > tx->status)
        tx->status = status;
    if (tx->method == EP_M_INVITE && status >= 200 && status < 300)
        dialog_add(f, tx->req, m, false);
    size_t n;
    char *text = ep_msg_text(m, &n);
    if (text == NULL)
        return;
    ep_mw_send(w, (struct sockaddr *)&tx->src, tx->src_len, text, n);
    if (status >= 200) {
        g_free(tx->resp);
        tx->resp = text;
        tx->resp_len = n;
        if (tx->method == EP_M_INVITE && status >= 300) {
            size_t an;
            char *ack = hop_request(tx, "ACK", m, &an);
            ep_flow_send(f, ack, an);
            g_free(ack);
        }
        tx_linger(tx);
    } else {
        g_free(text);
        if (tx->method == EP_M_INVITE && tx->t_end) {
            /* Ringing may last: Timer C of RFC 3261 16.6 (3 minutes). */
            ep_timer_cancel(&tx->t_end);
            tx->t_end = timeout_on(w, 180000, tx_timeout, tx);
        }
    }
}

void ep_proxy_from_ws(struct ep_flow *f, const uint8_t *buf, size_t len)
{
    struct ep_app *app = f->w->app;
    struct ep_sipmsg_limits lim = {.max_message = (size_t)app->cfg->ws_max_message};
    struct ep_sipmsg *pm = NULL;
    struct ep_sip_error err;
    if (ep_sipmsg_parse(buf, len, &lim, &pm, &err) != 0) {
        atomic_fetch_add(&app->m.sip_bad, 1);
        ep_log(EP_LOG_INFO, "flow %s: malformed SIP: %s", f->token, err.detail);
        size_t n;
        char *r = ep_bad_request_text(buf, len, err.status, err.reason, &n);
        if (r != NULL) {
            ep_flow_send(f, r, n);
            g_free(r);
        }
        return;
    }
    osip_message_t *m = ep_sipmsg_osip(pm);
    if (!ep_sipmsg_is_request(pm)) {
        wic_response(f, m);
        ep_sipmsg_free(pm);
        return;
    }
    enum ep_method method = ep_method_of(m->sip_method);
    char ukey[EP_UKEY_MAX];
    ep_wic_key(f, ep_via_branch(m), ukey);
    if (method == EP_M_ACK) {
        struct ep_tx *inv = g_hash_table_lookup(f->w->stx, ukey);
        if (inv != NULL && inv->status >= 300) {
            ep_sipmsg_free(pm); /* ACK of a non-2xx answer: ours went to the core already */
            return;
        }
    } else if (method == EP_M_CANCEL) {
        wic_cancel(f, m, ukey);
        ep_sipmsg_free(pm);
        return;
    } else if (g_hash_table_lookup(f->w->stx, ukey) != NULL) {
        ep_sipmsg_free(pm); /* a retransmission over a reliable transport: ignore */
        return;
    }
    if (ep_max_forwards(m) <= 0) {
        ep_reply_wic(f, m, 483, "Too Many Hops", NULL);
        ep_sipmsg_free(pm);
        return;
    }
    ep_via_received(m, f->ip, f->port);
    if (method == EP_M_REGISTER) {
        ep_register(f, pm, m, ukey); /* consumes pm */
        return;
    }
    bool initial = true;
    osip_generic_param_t *tag = NULL;
    if (m->to != NULL && osip_to_get_tag(m->to, &tag) == 0 && tag != NULL)
        initial = false;
    if (initial && is_emergency(app->cfg, m)) {
        ep_strip_client_headers(m);
        /* The transaction owns the parsed message from here. */
        osip_message_t *own = ep_sipmsg_detach(pm);
        ep_sipmsg_free(pm);
        if (own != NULL)
            emergency(f, own, ukey);
        return;
    }
    if (f->reg == NULL) {
        if (method != EP_M_ACK)
            ep_reply_wic(f, m, 403, "Forbidden - Not Registered", NULL);
        ep_sipmsg_free(pm);
        return;
    }
    if (method != EP_M_ACK && ep_check_bearer(f, pm, m) != 0) {
        ep_sipmsg_free(pm);
        return;
    }
    if (!initial && !route_is_own(f, m)) {
        /* EPC-22: an in-dialog request must come from the flow that set up the dialog (our
         * first Route entry names it). */
        if (method != EP_M_ACK)
            ep_reply_wic(f, m, 403, "Forbidden - Not Your Dialog", NULL);
        ep_sipmsg_free(pm);
        return;
    }
    ep_strip_client_headers(m);
    char *token = pop_our_routes(app, m);
    if (initial) {
        set_route_set(m, f->reg->service_route);
        assert_identity(f->reg, m);
        ep_charging_vector(app, m);
        if (method == EP_M_INVITE || method == EP_M_SUBSCRIBE || method == EP_M_REFER)
            add_record_route(f, m);
    } else {
        ep_hdr_del(m, "P-Preferred-Identity");
        assert_identity(f->reg, m);
        if (method == EP_M_BYE)
            dialog_forget(f, m);
    }
    /* A request between two WICs of this eP-CSCF whose dialog the core did not
     * record-route: the last Route of ours names the peer's flow. */
    if (!initial && osip_list_size(&m->routes) == 0 && token != NULL &&
        strcmp(token, f->token) != 0) {
        struct ep_flow *peer = ep_flow_by_token(f->w, token);
        if (peer == NULL) {
            ep_reply_wic(f, m, 430, "Flow Failed", NULL);
            ep_sipmsg_free(pm);
            g_free(token);
            return;
        }
    }
    g_free(token);
    osip_message_t *own = ep_sipmsg_detach(pm);
    ep_sipmsg_free(pm);
    if (own == NULL)
        return;
    if (method == EP_M_INVITE)
        ep_reply_wic(f, own, 100, "Trying", NULL);
    ep_forward_to_core(f, own, NULL, ukey);
}

/* ---- dialogs of a flow ------------------------------------------------------------------ */

static void dialog_free(gpointer p)
{
    struct ep_dialog *d = p;
    g_free(d->call_id);
    g_free(d->local_from);
    g_free(d->remote_to);
    g_free(d->remote_target);
    g_strfreev(d->route);
    g_free(d);
}

/* The dialog of m's Call-ID has ended (BYE): forget it. */
static void dialog_forget(struct ep_flow *f, osip_message_t *m)
{
    char call_id[512];
    if (!ep_call_id(m, call_id, sizeof(call_id)))
        return;
    for (GList *l = f->dialogs; l != NULL; l = l->next) {
        struct ep_dialog *d = l->data;
        if (strcmp(d->call_id, call_id) == 0) {
            f->dialogs = g_list_delete_link(f->dialogs, l);
            dialog_free(d);
            return;
        }
    }
}

static char *hdr_str(int (*fn)(const void *, char **), const void *h)
{
    char *s = NULL;
    if (h == NULL || fn(h, &s) != 0 || s == NULL)
        return NULL;
    char *r = g_strdup(s);
    osip_free(s);
    return r;
}

static int from_to_str(const void *h, char **s)
{
    return osip_from_to_str((const osip_from_t *)h, s);
}

/* Remembers a confirmed dialog: caller (the WIC sent the INVITE, req) or callee (the WIC
 * answered it, resp is its 2xx). */
static void dialog_add(struct ep_flow *f, osip_message_t *req, osip_message_t *resp,
                       bool wic_is_caller)
{
    struct ep_app *app = f->w->app;
    char cid[512];
    if (!ep_call_id(req, cid, sizeof(cid)) || req->cseq == NULL)
        return;
    for (GList *l = f->dialogs; l != NULL; l = l->next)
        if (strcmp(((struct ep_dialog *)l->data)->call_id, cid) == 0)
            return;
    struct ep_dialog *d = g_new0(struct ep_dialog, 1);
    d->call_id = g_strdup(cid);
    osip_contact_t *c = NULL;
    GPtrArray *route = g_ptr_array_new();
    osip_message_t *rrsrc = wic_is_caller ? resp : req;
    int n = osip_list_size(&rrsrc->record_routes);
    for (int i = 0; i < n; i++) {
        int k = wic_is_caller ? n - 1 - i : i;
        osip_record_route_t *rr = osip_list_get(&rrsrc->record_routes, k);
        /* Only this flow's own entry goes: another flow's (the peer WIC on this eP-CSCF)
         * stays in the route set. */
        if (rr == NULL || (ep_uri_is_us(app, rr->url) && rr->url->username != NULL &&
                           strcmp(rr->url->username, f->token) == 0))
            continue;
        char *s = hdr_str(from_to_str, rr);
        if (s != NULL)
            g_ptr_array_add(route, s);
    }
    g_ptr_array_add(route, NULL);
    d->route = (char **)g_ptr_array_free(route, FALSE);
    if (wic_is_caller) {
        d->local_from = hdr_str(from_to_str, req->from);
        d->remote_to = hdr_str(from_to_str, resp->to);
        osip_message_get_contact(resp, 0, &c);
        d->cseq = (uint32_t)strtoul(req->cseq->number, NULL, 10);
    } else {
        d->local_from = hdr_str(from_to_str, resp->to);
        d->remote_to = hdr_str(from_to_str, req->from);
        osip_message_get_contact(req, 0, &c);
        d->cseq = 1000;
    }
    d->remote_target = c != NULL ? ep_uri_text(c->url) : NULL;
    if (d->local_from == NULL || d->remote_to == NULL || d->remote_target == NULL) {
        dialog_free(d);
        return;
    }
    f->dialogs = g_list_prepend(f->dialogs, d);
}

/* BYE towards the core on behalf of a WIC whose flow is gone (EPC-51). */
static void dialog_bye(struct ep_flow *f, struct ep_dialog *d)
{
    struct ep_worker *w = f->w;
    struct ep_app *app = w->app;
    char branch[48];
    ep_new_branch(w, branch);
    GString *s = g_string_new(NULL);
    g_string_append_printf(s, "BYE %s SIP/2.0\r\nVia: SIP/2.0/%s %s:%u;branch=%s;rport\r\n",
                           d->remote_target, ep_mw_via_transport(w), app->mw_host,
                           app->mw_port + w->index, branch);
    for (size_t i = 0; d->route[i] != NULL; i++)
        g_string_append_printf(s, "Route: %s\r\n", d->route[i]);
    g_string_append_printf(s,
                           "Max-Forwards: 70\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\n"
                           "CSeq: %u BYE\r\nReason: SIP;cause=480;text=\"flow lost\"\r\n",
                           d->local_from, d->remote_to, d->call_id, d->cseq + 1);
    if (f->reg != NULL)
        g_string_append_printf(s, "P-Asserted-Identity: <%s>\r\n", f->reg->impu);
    g_string_append(s, "Content-Length: 0\r\n\r\n");
    struct sockaddr_storage dst;
    socklen_t dl = 0;
    osip_uri_t *u = NULL;
    bool numeric = false;
    if (d->route[0] != NULL) {
        osip_route_t *r = NULL;
        if (osip_route_init(&r) == 0 && osip_route_parse(r, d->route[0]) == 0)
            numeric = ep_uri_addr(r->url, &dst, &dl);
        osip_route_free(r);
    } else if (osip_uri_init(&u) == 0 && osip_uri_parse(u, d->remote_target) == 0) {
        numeric = ep_uri_addr(u, &dst, &dl);
    }
    osip_uri_free(u);
    if (!numeric) {
        memcpy(&dst, &app->next_hop, app->next_hop_len);
        dl = app->next_hop_len;
    }
    ep_send_local(w, s->str, s->len, branch, (struct sockaddr *)&dst, dl, EP_M_BYE);
    g_string_free(s, TRUE);
}

/* ---- from the core ----------------------------------------------------------------------- */

static void core_response(struct ep_worker *w, osip_message_t *m, const uint8_t *raw,
                          size_t raw_len)
{
    const char *branch = ep_via_branch(m);
    if (branch == NULL || m->cseq == NULL || m->cseq->method == NULL)
        return;
    char key[64];
    snprintf(key, sizeof(key), "%s%s", branch, strcmp(m->cseq->method, "CANCEL") == 0 ? "C" : "");
    struct ep_tx *tx = g_hash_table_lookup(w->tx, key);
    if (tx == NULL || tx->dir == TX_TO_WIC)
        return; /* stray or late */
    int status = m->status_code;
    bool was_final = tx->status >= 200;
    if (tx->dir == TX_LOCAL) {
        if (status >= 200 && !was_final) {
            tx->status = status;
            ep_log(status < 300 ? EP_LOG_DEBUG : EP_LOG_INFO, "core answered our %s: %d",
                   ep_method_name(tx->method), status);
            tx_linger(tx);
        }
        return;
    }
    ep_via_pop(m);
    struct ep_flow *f = tx_flow(tx);
    if (was_final) {
        /* Retransmitted final: re-ACK a negative INVITE answer, pass 2xx on (end to end). */
        if (tx->method == EP_M_INVITE && status >= 300) {
            size_t an;
            char *ack = hop_request(tx, "ACK", m, &an);
            ep_mw_send(w, (struct sockaddr *)&tx->dst, tx->dst_len, ack, an);
            g_free(ack);
            return;
        }
        if (!(tx->method == EP_M_INVITE && status < 300))
            return;
    }
    if (status > tx->status)
        tx->status = status;
    if (tx->t_retx && (tx->method == EP_M_INVITE || status >= 200)) {
        ep_timer_cancel(&tx->t_retx);
    } else if (tx->t_retx) {
        tx->retx_ms = T2_MS; /* non-INVITE after a provisional: Timer E at T2 */
    }
    if (tx->reg != NULL && f != NULL && status >= 200)
        ep_register_response(f, tx, m);
    if (status >= 200 && !was_final) {
        if (tx->method == EP_M_INVITE && status >= 300) {
            size_t an;
            char *ack = hop_request(tx, "ACK", m, &an);
            ep_mw_send(w, (struct sockaddr *)&tx->dst, tx->dst_len, ack, an);
            g_free(ack);
        }
        if (tx->method == EP_M_INVITE && status < 300 && f != NULL)
            dialog_add(f, tx->req, m, true);
        ep_count_final(w->app, tx->method, status);
        tx_linger(tx);
    } else if (status < 200 && tx->method == EP_M_INVITE && tx->t_end) {
        ep_timer_cancel(&tx->t_end);
        tx->t_end = timeout_on(w, 180000, tx_timeout, tx);
    }
    if (f == NULL || status == 100)
        return; /* a 100 is hop by hop */
    size_t n;
    /* Unless we changed it (a registration's expiry), the answer goes on byte for byte
     * minus our Via and the charging headers: challenges and bodies reach the WIC untouched
     * (EPC-15). */
    char *text = tx->reg != NULL ? NULL : ep_raw_for_wic(raw, raw_len, &n);
    if (text == NULL) {
        ep_hdr_del(m, "P-Charging-Vector");
        ep_hdr_del(m, "P-Charging-Function-Addresses");
        text = ep_msg_text(m, &n);
    }
    if (text != NULL)
        ep_flow_send(f, text, n);
    g_free(text);
}

static bool reg_notify_terminated(osip_message_t *m)
{
    const char *ev = ep_hdr(m, "Event");
    if (ev == NULL || g_ascii_strncasecmp(ev, "reg", 3) != 0 ||
        (ev[3] && ev[3] != ';' && ev[3] != ' '))
        return false;
    osip_body_t *b = osip_list_get(&m->bodies, 0);
    if (b == NULL || b->body == NULL)
        return false;
    /* reginfo+xml: the registration element of the IMPU ended (terminated, rejected,
     * deactivated contact events end up as state="terminated" on the registration). */
    return strstr(b->body, "state=\"terminated\"") != NULL;
}

/* A NOTIFY of our own reg subscription (EPC-12): answered here; a registration the network
 * ended (EPC-53) is forgotten without a REGISTER of ours, its pooled lease released. */
static void own_notify(struct ep_worker *w, osip_message_t *m, const struct sockaddr *src,
                       socklen_t srclen)
{
    struct ep_app *app = w->app;
    reply_core(w, m, src, srclen, 200, "OK", NULL);
    struct ep_flow *f = ep_flow_by_token(w, m->req_uri->username + 4);
    if (f == NULL || f->reg == NULL || !reg_notify_terminated(m))
        return;
    ep_log(EP_LOG_INFO, "flow %s: the network ended the registration", f->token);
    atomic_fetch_add(&app->m.dereg[EP_DC_NETWORK], 1);
    if (app->lease != NULL && f->reg->lease != NULL)
        ep_lease_release(app->lease, f->reg->lease);
    ep_reg_free(f->reg);
    f->reg = NULL;
    atomic_fetch_sub(&app->m.regs_active, 1);
}

void ep_proxy_from_mw(struct ep_worker *w, const uint8_t *buf, size_t len,
                      const struct sockaddr *src, socklen_t srclen)
{
    struct ep_app *app = w->app;
    struct ep_sipmsg_limits lim = {
        .max_message = 65535, .max_header_section = 32768, .max_headers = 256};
    struct ep_sipmsg *pm = NULL;
    struct ep_sip_error err;
    if (ep_sipmsg_parse(buf, len, &lim, &pm, &err) != 0) {
        ep_log(EP_LOG_INFO, "mw: malformed SIP from the core: %s", err.detail);
        size_t n;
        char *r = ep_bad_request_text(buf, len, err.status, err.reason, &n);
        if (r != NULL) {
            ep_mw_send(w, src, srclen, r, n);
            g_free(r);
        }
        return;
    }
    osip_message_t *m = ep_sipmsg_osip(pm);
    if (!ep_sipmsg_is_request(pm)) {
        core_response(w, m, buf, len);
        ep_sipmsg_free(pm);
        return;
    }
    enum ep_method method = ep_method_of(m->sip_method);
    const char *branch = ep_via_branch(m);
    char ukey[160];
    snprintf(ukey, sizeof(ukey), "c%.100s", branch != NULL ? branch : "");
    struct ep_tx *known = g_hash_table_lookup(w->stx, ukey);
    if (method == EP_M_ACK && known != NULL && known->status >= 300) {
        ep_sipmsg_free(pm);
        return; /* ACK of our negative answer */
    }
    if (method == EP_M_CANCEL) {
        if (known == NULL || known->method != EP_M_INVITE) {
            reply_core(w, m, src, srclen, 481, "Call/Transaction Does Not Exist", NULL);
        } else {
            reply_core(w, m, src, srclen, 200, "OK", NULL);
            struct ep_flow *f = tx_flow(known);
            if (f != NULL && known->status < 200) {
                size_t n;
                char *c = hop_request(known, "CANCEL", NULL, &n);
                ep_flow_send(f, c, n);
                g_free(c);
            }
        }
        ep_sipmsg_free(pm);
        return;
    }
    if (known != NULL && method != EP_M_ACK) {
        /* A retransmission: answer again with what we answered, or wait. */
        if (known->resp != NULL)
            ep_mw_send(w, src, srclen, known->resp, known->resp_len);
        ep_sipmsg_free(pm);
        return;
    }
    if (method == EP_M_INVITE)
        reply_core(w, m, src, srclen, 100, "Trying", NULL);
    if (ep_max_forwards(m) <= 0) {
        reply_core(w, m, src, srclen, 483, "Too Many Hops", NULL);
        ep_sipmsg_free(pm);
        return;
    }
    char *token = pop_our_routes(app, m);
    if (method == EP_M_NOTIFY && ep_uri_is_us(app, m->req_uri) && m->req_uri->username != NULL &&
        strncmp(m->req_uri->username, "reg-", 4) == 0) {
        own_notify(w, m, src, srclen);
        g_free(token);
        ep_sipmsg_free(pm);
        return;
    }
    if (token == NULL && ep_uri_is_us(app, m->req_uri) && m->req_uri->username != NULL)
        token = g_strdup(m->req_uri->username);
    struct ep_flow *f = ep_flow_by_token(w, token);
    g_free(token);
    if (f == NULL || f->wsi == NULL || f->closing) {
        if (method != EP_M_ACK)
            reply_core(w, m, src, srclen, 430, "Flow Failed", NULL);
        ep_sipmsg_free(pm);
        return;
    }
    osip_generic_param_t *tag = NULL;
    bool initial = !(m->to != NULL && osip_to_get_tag(m->to, &tag) == 0 && tag != NULL);
    if (initial && (method == EP_M_INVITE || method == EP_M_SUBSCRIBE || method == EP_M_REFER))
        add_record_route(f, m);
    if (method == EP_M_BYE)
        dialog_forget(f, m);
    bool reg_ended = method == EP_M_NOTIFY && reg_notify_terminated(m);
    ep_hdr_del(m, "P-Charging-Vector");
    ep_hdr_del(m, "P-Charging-Function-Addresses");
    osip_message_t *own = ep_sipmsg_detach(pm);
    ep_sipmsg_free(pm);
    if (own == NULL)
        return;
    char b[48];
    ep_new_branch(w, b);
    ep_via_push(own, "WSS", app->mw_host, app->mw_port + w->index, b);
    size_t n;
    char *text = ep_msg_text(own, &n);
    if (text == NULL) {
        osip_message_free(own);
        return;
    }
    ep_flow_send(f, text, n);
    if (method == EP_M_ACK) {
        g_free(text);
        osip_message_free(own);
    } else {
        struct ep_tx *tx = tx_new(w, TX_TO_WIC, method, b);
        tx->flow_id = f->id;
        tx->req = own;
        tx->out = text;
        tx->out_len = n;
        memcpy(&tx->src, src, srclen);
        tx->src_len = srclen;
        tx->ukey = g_strdup(ukey);
        g_hash_table_replace(w->stx, tx->ukey, tx);
        tx_start_timers(tx, false);
    }
    if (reg_ended && f->reg != NULL) {
        /* EPC-53: the network ended the registration; nothing to send back. */
        atomic_fetch_add(&app->m.dereg[EP_DC_NETWORK], 1);
        if (app->lease != NULL && f->reg->lease != NULL)
            ep_lease_release(app->lease, f->reg->lease);
        ep_reg_free(f->reg);
        f->reg = NULL;
        atomic_fetch_sub(&app->m.regs_active, 1);
    }
}

/* ---- flow loss and revocation ------------------------------------------------------------- */

void ep_proxy_flow_gone(struct ep_flow *f)
{
    struct ep_worker *w = f->w;
    for (GList *l = f->dialogs; l != NULL; l = l->next)
        dialog_bye(f, l->data);
    g_list_free_full(f->dialogs, dialog_free);
    f->dialogs = NULL;
    if (f->reg != NULL && !atomic_load(&w->app->stopping))
        ep_deregister(f, EP_DC_CLOSED);
    else if (f->reg != NULL) {
        ep_reg_free(f->reg);
        f->reg = NULL;
        atomic_fetch_sub(&w->app->m.regs_active, 1);
    }
    g_hash_table_remove(w->flows, &f->id);
    g_free(f);
}

void ep_proxy_revoked(struct ep_worker *w, const char *jti)
{
    GHashTableIter it;
    gpointer k, v;
    GPtrArray *hit = g_ptr_array_new();
    g_hash_table_iter_init(&it, w->flows);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        struct ep_flow *f = v;
        const char *tj = f->reg && f->reg->token ? imsauth_token_jti(f->reg->token) : NULL;
        if (tj != NULL && strcmp(tj, jti) == 0)
            g_ptr_array_add(hit, f);
    }
    for (guint i = 0; i < hit->len; i++) {
        struct ep_flow *f = hit->pdata[i];
        ep_log(EP_LOG_INFO, "flow %s: token revoked, deregistering", f->token);
        ep_deregister(f, EP_DC_REVOKED);
        ep_flow_close(f, true);
    }
    g_ptr_array_free(hit, TRUE);
}
