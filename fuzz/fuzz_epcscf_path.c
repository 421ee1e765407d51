/* The eP-CSCF's SIP message path behind the WebSocket and Mw transports: any bytes, as a
 * WIC's WebSocket message or a datagram from the core, through parsing, the 400 builder,
 * registration and Bearer checks, routing, transactions and dialogs, never crash, leak or
 * over-read. The first byte picks the path (even: from a WIC, odd: from the core) and whether
 * the WIC's flow is registered (bit 1). One worker without sockets: what would be sent is
 * dropped (the flow has no connection, the Mw socket is closed); the worker's tables are
 * emptied after each input. */
#include "../epcscf-ref/src/ep.h"
#include "../epcscf-ref/src/proxy.h"
#include "fuzz.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

static const char CONFIG[] = "ws.listen = 127.0.0.1:7080\n"
                             "ws.allowed_origins = https://wwsf.home1.net\n"
                             "mw.listen = 127.0.0.1:5070\n"
                             "mw.next_hop = 127.0.0.1:5060\n"
                             "ims.realm = home1.net\n"
                             "token.issuer = https://waf.home1.net\n"
                             "token.audience = epcscf.home1.net\n"
                             "token.jwks_file = /nonexistent/jwks.json\n"
                             "emergency.ecscf = 127.0.0.1:5090\n"
                             "emergency.allow_unregistered = yes\n"
                             "workers = 1\n"
                             "log.level = error\n";

/* One key so imsauth accepts the configuration; no corpus token verifies against it. */
static const char JWKS[] =
    "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"k1\",\"alg\":\"ES256\","
    "\"x\":\"zSVap0Cjm_SuZFkVdS2fq8dUifrl8kLJKdHyVJGVgHk\","
    "\"y\":\"aaPKbZ-Ze-L1wnskS6o5RbsmscohOQK2nI63KKu5nwA\"}]}";

static struct ep_app app;
static struct ep_worker worker;
static struct ep_config *cfg;

static void setup(void)
{
    char detail[256];
    if (ep_config_parse(CONFIG, sizeof(CONFIG) - 1, NULL, &cfg, detail, sizeof(detail)) != 0)
        abort();
    ep_log_set_level(cfg->log_level);
    ep_sip_init();
    app.cfg = cfg;
    const char *issuers[] = {cfg->token_issuer, NULL};
    struct imsauth_opts o = {.issuers = issuers,
                             .audience = cfg->token_audience,
                             .realm = cfg->realm,
                             .jwks_json = JWKS};
    if (imsauth_ctx_alloc(&app.auth, &o, detail, sizeof(detail)) != IMSAUTH_OK)
        abort();
    snprintf(app.mw_host, sizeof(app.mw_host), "127.0.0.1");
    app.mw_port = 5070;
    struct sockaddr_in *a = (struct sockaddr_in *)&app.next_hop;
    a->sin_family = AF_INET;
    a->sin_port = htons(5060);
    inet_pton(AF_INET, "127.0.0.1", &a->sin_addr);
    app.next_hop_len = sizeof(*a);
    memcpy(&app.ecscf, &app.next_hop, sizeof(*a));
    app.ecscf_len = sizeof(*a);
    app.has_ecscf = true;
    app.n_workers = 1;
    worker.app = &app;
    worker.mw_fd = -1;
    worker.ctx = g_main_context_new();
    worker.flows = g_hash_table_new(g_int64_hash, g_int64_equal);
    worker.tx = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, ep_tx_free);
    worker.stx = g_hash_table_new(g_str_hash, g_str_equal);
}

static struct ep_flow *flow_new(bool registered)
{
    struct ep_flow *f = g_new0(struct ep_flow, 1);
    f->w = &worker;
    f->id = ++worker.next_flow;
    snprintf(f->ip, sizeof(f->ip), "127.0.0.1");
    f->port = 40000;
    snprintf(f->token, sizeof(f->token), "f%02x%016llx", 0u, (unsigned long long)f->id);
    g_queue_init(&f->out);
    g_hash_table_insert(worker.flows, &f->id, f);
    if (registered) {
        struct ep_reg *r = g_new0(struct ep_reg, 1);
        r->impi = g_strdup("alice@home1.net");
        r->impu = g_strdup("sip:alice@home1.net");
        r->assoc = g_strsplit("<sip:alice@home1.net>,<tel:+15550100>", ",", -1);
        r->service_route = g_strsplit("<sip:orig@127.0.0.1:5060;lr>", ",", -1);
        r->contact = g_strdup("sip:a@a.invalid;transport=ws");
        r->call_id = g_strdup("reg@a.invalid");
        r->ruri = g_strdup("sip:home1.net");
        f->reg = r;
    }
    return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (cfg == NULL)
        setup();
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    worker.next_flow = 0; /* the flow is always f000000000000000001, so seeds can route to it */
    struct ep_flow *f = flow_new((sel & 2) != 0);
    /* Without a token the Bearer check answers 407 before routing; half the inputs skip it
     * to reach the routing code. */
    ((struct ep_config *)cfg)->bearer_every_request = (sel & 4) != 0;
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = htons(5060)};
    inet_pton(AF_INET, "127.0.0.1", &src.sin_addr);
    if (sel & 1)
        ep_proxy_from_mw(&worker, data + 1, size - 1, (struct sockaddr *)&src, sizeof(src));
    else
        ep_proxy_from_ws(f, data + 1, size - 1);
    /* The flow goes away (deregistration and BYEs are built and dropped), then everything
     * the input left behind. */
    ep_proxy_flow_gone(f);
    g_hash_table_remove_all(worker.tx);
    g_hash_table_remove_all(worker.stx);
    return 0;
}
