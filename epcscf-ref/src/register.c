/*
 * Registration through the eP-CSCF (TS 24.371 6.4, 6A; rows EPC-05..15, EPC-50..53).
 *
 * A REGISTER with a Bearer credential is verified with libimsauth (signature, issuer,
 * audience, lifetime, scope, revocation, and that the To IMPU is one of the token's) and
 * leaves for the core with the Trusted Node Authentication header instead (Digest with
 * the token's IMPI and integrity-protected="auth-done"), our Path with the flow token,
 * Require: path, P-Visited-Network-ID and a fresh P-Charging-Vector; nothing of the token
 * goes to Mw. The expiry asked for is lowered to the token's remaining life (EPC-13). No
 * credential: 401 with the RFC 8898 Bearer challenge naming the WAF (EPC-06). A Digest
 * credential is relayed end to end when auth.allow_digest is on, with the
 * integrity-protected value of TS 24.229 (EPC-15), else it gets the Bearer challenge.
 *
 * The 200 from the core binds the registration (IMPI, IMPUs from P-Associated-URI,
 * Service-Route, expiry, token) to the flow. When the registration runs out, the token was
 * revoked or the flow is lost, a REGISTER with Expires 0 and the TNA header leaves for the
 * core on the WIC's behalf and a pooled identity's lease is released.
 */
#include "lease.h"
#include "proxy.h"

#include <osipparser2/osip_parser.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define DEFAULT_EXPIRES 3600

struct reg_pending {
    struct imsauth_token *token; /* NULL for a relayed Digest REGISTER */
    char *impu, *contact_uri, *call_id, *from, *ruri;
    uint32_t cseq;
    long asked; /* expiry sent to the core */
};

void ep_reg_pending_free(struct reg_pending *p)
{
    if (p == NULL)
        return;
    imsauth_token_release(p->token);
    g_free(p->impu);
    g_free(p->contact_uri);
    g_free(p->call_id);
    g_free(p->from);
    g_free(p->ruri);
    g_free(p);
}

void ep_reg_free(struct ep_reg *r)
{
    if (r == NULL)
        return;
    ep_timer_cancel(&r->timer);
    g_free(r->impi);
    g_free(r->impu);
    g_strfreev(r->assoc);
    g_strfreev(r->service_route);
    g_free(r->contact);
    g_free(r->call_id);
    g_free(r->from);
    g_free(r->ruri);
    imsauth_token_release(r->token);
    g_free(r->lease);
    g_free(r);
}

static void count_token(struct ep_app *app, enum imsauth_result r)
{
    if ((int)r >= 0 && (int)r < EP_TOKEN_RESULTS)
        atomic_fetch_add_explicit(&app->m.token[r], 1, memory_order_relaxed);
}

/* Answers a failed verification: 401/407 with the Bearer challenge, or 400/403/503. */
static void refuse(struct ep_flow *f, osip_message_t *m, const struct imsauth_verdict *v,
                   bool proxy)
{
    struct ep_app *app = f->w->app;
    int status = v->sip_status;
    char ch[1024], extra[1100];
    extra[0] = '\0';
    if (status == 401) {
        if (imsauth_challenge(app->auth, v->result, ch, sizeof(ch), NULL) == IMSAUTH_OK)
            snprintf(extra, sizeof(extra), "%s: %s\r\n",
                     proxy ? "Proxy-Authenticate" : "WWW-Authenticate", ch);
        if (proxy)
            status = 407;
    }
    const char *reason = status == 401   ? "Unauthorized"
                         : status == 407 ? "Proxy Authentication Required"
                         : status == 403 ? "Forbidden"
                         : status == 400 ? "Bad Request"
                                         : "Service Unavailable";
    if (status == 503)
        strcat(extra, "Retry-After: 5\r\n");
    ep_log(EP_LOG_INFO, "flow %s: %s refused %d (%s)", f->token, m->sip_method, status,
           imsauth_strerror(v->result));
    ep_reply_wic(f, m, status, reason, extra[0] ? extra : NULL);
}

static void challenge(struct ep_flow *f, osip_message_t *m, enum imsauth_result r, bool proxy)
{
    struct imsauth_verdict v;
    memset(&v, 0, sizeof(v));
    v.result = r;
    v.sip_status = 401;
    refuse(f, m, &v, proxy);
}

/* The expiry the WIC asks for: Contact's expires, else Expires, else the default. */
static long asked_expiry(osip_message_t *m, osip_contact_t *c)
{
    osip_generic_param_t *p = NULL;
    if (c != NULL && osip_contact_param_get_byname(c, "expires", &p) == 0 && p != NULL &&
        p->gvalue != NULL)
        return strtol(p->gvalue, NULL, 10);
    const char *e = ep_hdr(m, "Expires");
    if (e != NULL)
        return strtol(e, NULL, 10);
    return DEFAULT_EXPIRES;
}

static void set_contact_expiry(osip_contact_t *c, long v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%ld", v);
    osip_generic_param_t *p = NULL;
    if (osip_contact_param_get_byname(c, "expires", &p) == 0 && p != NULL) {
        osip_free(p->gvalue);
        p->gvalue = osip_strdup(buf);
    } else {
        osip_contact_param_add(c, osip_strdup("expires"), osip_strdup(buf));
    }
}

/* Headers every REGISTER towards the core gets from us (EPC-11); the client's own were
 * removed by ep_strip_client_headers before. */
static void mw_register_headers(struct ep_flow *f, osip_message_t *m)
{
    struct ep_app *app = f->w->app;
    char path[EP_URI_MAX];
    ep_flow_uri(f, path, sizeof(path), true);
    ep_hdr_set(m, "Path", path);
    const char *req = ep_hdr(m, "Require");
    if (req != NULL && strstr(req, "path") == NULL) {
        char *v = g_strdup_printf("%s, path", req);
        ep_hdr_set(m, "Require", v);
        g_free(v);
    } else if (req == NULL) {
        ep_hdr_set(m, "Require", "path");
    }
    ep_hdr_set(m, "P-Visited-Network-ID", app->cfg->visited_network_id);
    ep_charging_vector(app, m);
    ep_hdr_del(m, "P-Preferred-Identity");
}

/* Relays a Digest or AKA REGISTER end to end (EPC-05 b/c, EPC-15). */
static void relay_digest(struct ep_flow *f, struct ep_sipmsg *pm, osip_message_t *m,
                         const char *raw, const char *ukey)
{
    bool aka = strstr(raw, "AKAv2") != NULL || strstr(raw, "akav2") != NULL;
    const char *ip = aka ? "tls-connected" : (f->secure ? "tls-yes" : "tls-pending");
    char *value = g_strdup_printf("%s, integrity-protected=\"%s\"", raw, ip);
    ep_strip_client_headers(m);
    ep_hdr_add(m, "Authorization", value);
    g_free(value);
    mw_register_headers(f, m);
    osip_message_t *own = ep_sipmsg_detach(pm);
    ep_sipmsg_free(pm);
    if (own != NULL)
        ep_forward_to_core(f, own, NULL, ukey);
}

void ep_register(struct ep_flow *f, struct ep_sipmsg *pm, osip_message_t *m, const char *ukey)
{
    struct ep_app *app = f->w->app;
    const char *raw = ep_sipmsg_authorization(pm);
    if (raw == NULL) {
        count_token(app, IMSAUTH_ERR_MISSING);
        challenge(f, m, IMSAUTH_ERR_MISSING, false);
        ep_sipmsg_free(pm);
        return;
    }
    if (g_ascii_strncasecmp(raw, "Digest", 6) == 0 && (raw[6] == ' ' || raw[6] == '\t')) {
        if (app->cfg->allow_digest) {
            relay_digest(f, pm, m, raw, ukey);
            return;
        }
        count_token(app, IMSAUTH_ERR_UNSUPPORTED_SCHEME);
        challenge(f, m, IMSAUTH_ERR_UNSUPPORTED_SCHEME, false);
        ep_sipmsg_free(pm);
        return;
    }
    char *impu = m->to != NULL ? ep_uri_text(m->to->url) : NULL;
    char *ruri = ep_uri_text(m->req_uri);
    struct imsauth_request rq = {.method = "REGISTER", .request_uri = ruri, .impu = impu};
    struct imsauth_verdict v;
    imsauth_verify(app->auth, (const uint8_t *)raw, strlen(raw), &rq, &v);
    count_token(app, v.result);
    if (v.result != IMSAUTH_OK) {
        refuse(f, m, &v, false);
        goto done;
    }
    const char *impi = imsauth_token_impi(v.token);
    if (impi == NULL) {
        v.result = IMSAUTH_ERR_MISSING_CLAIM;
        v.sip_status = 403;
        refuse(f, m, &v, false);
        goto done;
    }
    if (f->reg != NULL && strcmp(f->reg->impi, impi) != 0) {
        /* EPC-14 / E11: a refresh must keep the IMPI; the binding stays as it is. */
        ep_reply_wic(f, m, 403, "Forbidden - Identity Mismatch", NULL);
        goto done;
    }
    char tna[1024];
    if (imsauth_tna_header(impi, app->cfg->realm, ruri, tna, sizeof(tna), NULL) != IMSAUTH_OK) {
        ep_reply_wic(f, m, 403, "Forbidden", NULL);
        goto done;
    }
    osip_contact_t *c = NULL;
    osip_message_get_contact(m, 0, &c);
    long remain = (long)(imsauth_token_exp(v.token) - (int64_t)time(NULL));
    long asked = asked_expiry(m, c);
    if (asked < 0)
        asked = 0;
    if (asked > remain)
        asked = remain > 0 ? remain : 0;
    char ebuf[24];
    snprintf(ebuf, sizeof(ebuf), "%ld", asked);
    if (c != NULL && c->url != NULL)
        set_contact_expiry(c, asked);
    ep_hdr_set(m, "Expires", ebuf);
    ep_strip_client_headers(m);
    ep_hdr_add(m, "Authorization", tna);
    mw_register_headers(f, m);

    struct reg_pending *p = g_new0(struct reg_pending, 1);
    p->token = v.token;
    v.token = NULL;
    p->impu = impu;
    impu = NULL;
    p->contact_uri = c != NULL && c->url != NULL ? ep_uri_text(c->url) : NULL;
    char cid[512];
    p->call_id = ep_call_id(m, cid, sizeof(cid)) ? g_strdup(cid) : NULL;
    p->from = m->from != NULL ? ep_uri_text(m->from->url) : NULL;
    p->ruri = ruri;
    ruri = NULL;
    p->cseq = m->cseq != NULL ? (uint32_t)strtoul(m->cseq->number, NULL, 10) : 0;
    p->asked = asked;
    osip_message_t *own = ep_sipmsg_detach(pm);
    ep_sipmsg_free(pm);
    pm = NULL;
    if (own == NULL) {
        ep_reg_pending_free(p);
        goto done;
    }
    ep_forward_to_core(f, own, p, ukey);
done:
    imsauth_token_release(v.token);
    g_free(impu);
    g_free(ruri);
    if (pm != NULL)
        ep_sipmsg_free(pm);
}

/* ---- the core's answer --------------------------------------------------------------------- */

/* Timer argument: the flow id, not the pointer, so a freed flow is never touched. */
struct deadline {
    struct ep_worker *w;
    uint64_t id;
};

static gboolean reg_deadline(gpointer arg)
{
    struct deadline *d = arg;
    struct ep_flow *f = g_hash_table_lookup(d->w->flows, &d->id);
    if (f == NULL || f->reg == NULL)
        return G_SOURCE_REMOVE;
    ep_timer_cancel(&f->reg->timer);
    bool expired = imsauth_token_exp(f->reg->token) <= (int64_t)time(NULL);
    ep_log(EP_LOG_INFO, "flow %s: registration %s", f->token,
           expired ? "outlived its token" : "was not refreshed");
    ep_deregister(f, expired ? EP_DC_TOKEN_EXPIRED : EP_DC_LAPSED);
    return G_SOURCE_REMOVE;
}

/* Deregisters at min(registration expiry, token exp + grace) (EPC-52). */
static void arm(struct ep_flow *f)
{
    struct ep_reg *r = f->reg;
    ep_timer_cancel(&r->timer);
    int64_t now = (int64_t)time(NULL);
    int64_t at = r->expires_at;
    int64_t tok = imsauth_token_exp(r->token) + f->w->app->cfg->token_expiry_grace_s;
    if (tok < at)
        at = tok;
    int64_t ms = at > now ? (at - now) * 1000 : 0;
    struct deadline *d = g_new(struct deadline, 1);
    d->w = f->w;
    d->id = f->id;
    r->timer = ep_timer_start(f->w, (unsigned)(ms > (int64_t)G_MAXUINT ? G_MAXUINT : ms),
                              reg_deadline, d, g_free);
}

/* The expiry the core granted our contact: its Contact's expires, else Expires. */
static long granted_expiry(osip_message_t *resp, const struct reg_pending *p, osip_contact_t **ours)
{
    *ours = NULL;
    for (int i = 0;; i++) {
        osip_contact_t *c = NULL;
        if (osip_message_get_contact(resp, i, &c) < 0 || c == NULL)
            break;
        char *u = ep_uri_text(c->url);
        bool match = u != NULL && p->contact_uri != NULL && strcmp(u, p->contact_uri) == 0;
        g_free(u);
        if (match) {
            *ours = c;
            osip_generic_param_t *e = NULL;
            if (osip_contact_param_get_byname(c, "expires", &e) == 0 && e != NULL && e->gvalue)
                return strtol(e->gvalue, NULL, 10);
        }
    }
    const char *e = ep_hdr(resp, "Expires");
    return e != NULL ? strtol(e, NULL, 10) : (*ours != NULL ? p->asked : 0);
}

/* TS 24.229 5.2.3 (EPC-12): subscribe to the reg event package of the registered IMPU,
 * through the registration's Service-Route, so the network can end it (EPC-53). Our Contact
 * carries the flow token ("reg-<token>"): the NOTIFYs come back to this worker and flow. */
static void subscribe_reg(struct ep_flow *f)
{
    struct ep_worker *w = f->w;
    struct ep_app *app = w->app;
    struct ep_reg *r = f->reg;
    char branch[48], tag[17], cid[33];
    ep_new_branch(w, branch);
    ep_rand_hex(tag, 8);
    ep_rand_hex(cid, 16);
    unsigned port = app->mw_port + w->index;
    const char *tp = ep_mw_reliable(w) ? ";transport=tcp" : "";
    GString *s = g_string_new(NULL);
    g_string_append_printf(s, "SUBSCRIBE %s SIP/2.0\r\nVia: SIP/2.0/%s %s:%u;branch=%s;rport\r\n",
                           r->impu, ep_mw_via_transport(w), app->mw_host, port, branch);
    for (size_t i = 0; r->service_route != NULL && r->service_route[i] != NULL; i++)
        g_string_append_printf(s, "Route: %s\r\n", r->service_route[i]);
    g_string_append_printf(s,
                           "Max-Forwards: 70\r\nFrom: <sip:%s:%u>;tag=%s\r\nTo: <%s>\r\n"
                           "Call-ID: %s@%s\r\nCSeq: 1 SUBSCRIBE\r\nEvent: reg\r\n"
                           "Expires: 600000\r\nAccept: application/reginfo+xml\r\n"
                           "Contact: <sip:reg-%s@%s:%u%s>\r\n"
                           "P-Asserted-Identity: <sip:%s:%u>\r\nContent-Length: 0\r\n\r\n",
                           app->mw_host, port, tag, r->impu, cid, app->mw_host, f->token,
                           app->mw_host, port, tp, app->mw_host, port);
    struct sockaddr_storage dst;
    socklen_t dl = 0;
    bool numeric = false;
    if (r->service_route != NULL && r->service_route[0] != NULL) {
        osip_route_t *rt = NULL;
        if (osip_route_init(&rt) == 0 && osip_route_parse(rt, r->service_route[0]) == 0)
            numeric = ep_uri_addr(rt->url, &dst, &dl);
        osip_route_free(rt);
    }
    if (!numeric) {
        memcpy(&dst, &app->next_hop, app->next_hop_len);
        dl = app->next_hop_len;
    }
    ep_send_local(w, s->str, s->len, branch, (struct sockaddr *)&dst, dl, EP_M_SUBSCRIBE);
    g_string_free(s, TRUE);
}

void ep_register_response(struct ep_flow *f, struct ep_tx *tx, osip_message_t *resp)
{
    struct ep_app *app = f->w->app;
    struct reg_pending *p = tx->reg;
    if (resp == NULL || resp->status_code < 200 || resp->status_code >= 300 || p->token == NULL)
        return; /* failures reach the WIC as they are; the binding stays */
    osip_contact_t *ours = NULL;
    long granted = granted_expiry(resp, p, &ours);
    long remain = (long)(imsauth_token_exp(p->token) - (int64_t)time(NULL));
    if (granted > remain)
        granted = remain > 0 ? remain : 0;
    if (ours != NULL)
        set_contact_expiry(ours, granted);
    if (ep_hdr(resp, "Expires") != NULL) {
        char b[24];
        snprintf(b, sizeof(b), "%ld", granted);
        ep_hdr_set(resp, "Expires", b);
    }
    if (granted <= 0 || ours == NULL) {
        /* Deregistered (EPC-50). */
        if (f->reg != NULL) {
            if (app->lease != NULL && f->reg->lease != NULL)
                ep_lease_release(app->lease, f->reg->lease);
            ep_reg_free(f->reg);
            f->reg = NULL;
            atomic_fetch_sub(&app->m.regs_active, 1);
        }
        return;
    }
    struct ep_reg *r = f->reg;
    bool fresh = r == NULL;
    if (fresh) {
        r = g_new0(struct ep_reg, 1);
        f->reg = r;
        r->impi = g_strdup(imsauth_token_impi(p->token));
        atomic_fetch_add(&app->m.regs_active, 1);
    }
    g_free(r->impu);
    r->impu = g_strdup(p->impu);
    g_strfreev(r->assoc);
    r->assoc = ep_hdr_values(resp, "P-Associated-URI");
    g_strfreev(r->service_route);
    r->service_route = ep_hdr_values(resp, "Service-Route");
    g_free(r->contact);
    r->contact = g_strdup(p->contact_uri);
    g_free(r->call_id);
    r->call_id = g_strdup(p->call_id);
    g_free(r->from);
    r->from = g_strdup(p->from);
    g_free(r->ruri);
    r->ruri = g_strdup(p->ruri);
    r->cseq = p->cseq;
    r->expires_at = (int64_t)time(NULL) + granted;
    imsauth_token_release(r->token);
    r->token = imsauth_token_ref(p->token);
    const char *lease = imsauth_token_pool_lease(p->token);
    int64_t now = (int64_t)time(NULL);
    if (lease != NULL && (r->lease == NULL || strcmp(r->lease, lease) != 0)) {
        g_free(r->lease);
        r->lease = g_strdup(lease);
        r->lease_renewed = now;
    } else if (lease != NULL && app->lease != NULL &&
               now - r->lease_renewed >= app->cfg->lease_renew_s) {
        ep_lease_renew(app->lease, lease);
        r->lease_renewed = now;
    }
    arm(f);
    if (fresh)
        subscribe_reg(f);
}

/* ---- deregistration on the WIC's behalf ---------------------------------------------------- */

void ep_deregister(struct ep_flow *f, enum ep_dereg_cause why)
{
    struct ep_worker *w = f->w;
    struct ep_app *app = w->app;
    struct ep_reg *r = f->reg;
    if (r == NULL)
        return;
    atomic_fetch_add(&app->m.dereg[why], 1);
    char tna[1024], branch[48], tag[17], icid[33], path[EP_URI_MAX];
    if (imsauth_tna_header(r->impi, app->cfg->realm, r->ruri, tna, sizeof(tna), NULL) ==
            IMSAUTH_OK &&
        r->contact != NULL && r->call_id != NULL) {
        ep_new_branch(w, branch);
        ep_rand_hex(tag, 8);
        ep_rand_hex(icid, 16);
        ep_flow_uri(f, path, sizeof(path), true);
        GString *s = g_string_new(NULL);
        g_string_append_printf(
            s,
            "REGISTER %s SIP/2.0\r\nVia: SIP/2.0/%s %s:%u;branch=%s;rport\r\n"
            "Max-Forwards: 70\r\nFrom: <%s>;tag=%s\r\nTo: <%s>\r\nCall-ID: %s\r\n"
            "CSeq: %u REGISTER\r\nContact: <%s>;expires=0\r\nExpires: 0\r\n"
            "Authorization: %s\r\nPath: %s\r\nRequire: path\r\nP-Visited-Network-ID: %s\r\n"
            "P-Charging-Vector: icid-value=%s\r\nContent-Length: 0\r\n\r\n",
            r->ruri, ep_mw_via_transport(w), app->mw_host, app->mw_port + w->index, branch, r->impu,
            tag, r->impu, r->call_id, r->cseq + 1, r->contact, tna, path,
            app->cfg->visited_network_id, icid);
        ep_send_local(w, s->str, s->len, branch, (struct sockaddr *)&app->next_hop,
                      app->next_hop_len, EP_M_REGISTER);
        g_string_free(s, TRUE);
    }
    if (app->lease != NULL && r->lease != NULL)
        ep_lease_release(app->lease, r->lease);
    ep_reg_free(r);
    f->reg = NULL;
    atomic_fetch_sub(&app->m.regs_active, 1);
}

/* ---- Bearer on every request (EPC-30) ------------------------------------------------------ */

int ep_check_bearer(struct ep_flow *f, struct ep_sipmsg *pm, osip_message_t *m)
{
    struct ep_app *app = f->w->app;
    if (!app->cfg->bearer_every_request)
        return 0;
    const char *raw = ep_sipmsg_proxy_authorization(pm);
    if (raw == NULL)
        raw = ep_sipmsg_authorization(pm);
    if (raw == NULL) {
        count_token(app, IMSAUTH_ERR_MISSING);
        challenge(f, m, IMSAUTH_ERR_MISSING, true);
        return 407;
    }
    struct imsauth_request rq = {.method = m->sip_method, .impu = NULL};
    struct imsauth_verdict v;
    imsauth_verify(app->auth, (const uint8_t *)raw, strlen(raw), &rq, &v);
    count_token(app, v.result);
    if (v.result != IMSAUTH_OK) {
        refuse(f, m, &v, true);
        return v.sip_status == 401 ? 407 : v.sip_status;
    }
    const char *impi = imsauth_token_impi(v.token);
    if (impi == NULL || strcmp(impi, f->reg->impi) != 0) {
        /* E20: a token of another identity on this registration. */
        ep_reply_wic(f, m, 403, "Forbidden - Identity Mismatch", NULL);
        imsauth_token_release(v.token);
        return 403;
    }
    /* A fresher token keeps the registration's revocation and expiry checks current. */
    if (imsauth_token_exp(v.token) > imsauth_token_exp(f->reg->token)) {
        imsauth_token_release(f->reg->token);
        f->reg->token = v.token;
    } else {
        imsauth_token_release(v.token);
    }
    return 0;
}
