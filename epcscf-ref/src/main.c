/*
 * epcscf-ref: the reference eP-CSCF. Usage: epcscf-ref -c FILE [--check-config]
 *
 * Owns the process: the config, the libimsauth context (JWKS refreshed from the main
 * loop), the revocation feed, the WAF lease client, the operations listener and the
 * event-loop workers (see ep.h for the threading model). SIGINT/SIGTERM stop it: every
 * connection is closed and its registration deregistered at the core.
 */
#include "ep.h"
#include "lease.h"
#include "ops.h"
#include "revfeed.h"

#include <glib-unix.h>
#include <imsauth/imsauth_redis.h>

#include <netdb.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

/* ---- workers ------------------------------------------------------------------------------- */

static void *worker_main(void *arg)
{
    struct ep_worker *w = arg;
    g_main_context_push_thread_default(w->ctx);
    g_main_loop_run(w->loop);
    /* libwebsockets finishes closing its handles on the loop after lws_context_destroy. */
    for (int i = 0; i < 1000 && g_main_context_iteration(w->ctx, FALSE); i++)
        ;
    ep_ws_finish(w);
    g_main_context_pop_thread_default(w->ctx);
    return NULL;
}

static gboolean worker_stop_cb(gpointer arg)
{
    struct ep_worker *w = arg;
    ep_ws_stop(w); /* closes every flow: deregistrations leave now */
    ep_mw_stop(w);
    g_main_loop_quit(w->loop);
    return G_SOURCE_REMOVE;
}

static struct ep_worker *worker_new(struct ep_app *app, unsigned index, char *detail, size_t dl)
{
    struct ep_worker *w = g_new0(struct ep_worker, 1);
    w->app = app;
    w->index = index;
    w->mw_fd = -1;
    w->ctx = g_main_context_new();
    w->loop = g_main_loop_new(w->ctx, FALSE);
    w->flows = g_hash_table_new(g_int64_hash, g_int64_equal);
    w->tx = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, ep_tx_free);
    w->stx = g_hash_table_new(g_str_hash, g_str_equal);
    RAND_bytes(w->rnd, sizeof(w->rnd));
    RAND_bytes((unsigned char *)&w->next_flow, 4); /* flow ids are not predictable */
    if (ep_mw_start(w, detail, dl) == 0)
        ep_ws_start(w, detail, dl);
    return w; /* the caller checks w->lws */
}

static void worker_free(struct ep_worker *w)
{
    if (w == NULL)
        return;
    ep_ws_finish(w);
    ep_mw_stop(w);
    g_hash_table_destroy(w->tx);
    g_hash_table_destroy(w->stx);
    g_hash_table_destroy(w->flows);
    ep_timers_destroy(w);
    g_main_loop_unref(w->loop);
    g_main_context_unref(w->ctx);
    g_free(w);
}

/* ---- revocation feed ----------------------------------------------------------------------- */

struct revoke_job {
    struct ep_worker *w;
    char *jti;
};

static gboolean revoke_on_worker(gpointer arg)
{
    struct revoke_job *j = arg;
    ep_proxy_revoked(j->w, j->jti);
    return G_SOURCE_REMOVE;
}

static void revoke_job_free(gpointer arg)
{
    struct revoke_job *j = arg;
    g_free(j->jti);
    g_free(j);
}

static void on_revoked(const char *jti, void *arg)
{
    struct ep_app *app = arg;
    atomic_fetch_add(&app->m.revocations, 1);
    for (size_t i = 0; i < app->n_workers; i++) {
        struct revoke_job *j = g_new(struct revoke_job, 1);
        j->w = app->workers[i];
        j->jti = g_strdup(jti);
        g_main_context_invoke_full(j->w->ctx, G_PRIORITY_DEFAULT, revoke_on_worker, j,
                                   revoke_job_free);
    }
}

/* After a reconnect the feed may have missed notices: each worker asks Redis about the
 * tokens of its registrations (one SISMEMBER each, on its own thread, once). */
static gboolean resync_on_worker(gpointer arg)
{
    struct ep_worker *w = arg;
    GHashTableIter it;
    gpointer k, v;
    GPtrArray *jtis = g_ptr_array_new_with_free_func(g_free);
    g_hash_table_iter_init(&it, w->flows);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        struct ep_flow *f = v;
        const char *j = f->reg && f->reg->token ? imsauth_token_jti(f->reg->token) : NULL;
        if (j != NULL && ep_revfeed_is_revoked(w->app->revfeed, j) == 1)
            g_ptr_array_add(jtis, g_strdup(j));
    }
    for (guint i = 0; i < jtis->len; i++)
        ep_proxy_revoked(w, jtis->pdata[i]);
    g_ptr_array_free(jtis, TRUE);
    return G_SOURCE_REMOVE;
}

static void on_resync(void *arg)
{
    struct ep_app *app = arg;
    for (size_t i = 0; i < app->n_workers; i++)
        g_main_context_invoke(app->workers[i]->ctx, resync_on_worker, app->workers[i]);
}

static void lib_log(int level, const char *msg, void *arg)
{
    (void)arg;
    ep_log(level <= 3   ? EP_LOG_ERR
           : level == 4 ? EP_LOG_WARN
           : level <= 6 ? EP_LOG_INFO
                        : EP_LOG_DEBUG,
           "%s", msg);
}

static void auth_log(enum imsauth_log_level level, const char *msg, void *arg)
{
    lib_log((int)level, msg, arg);
}

/* ---- start-up -------------------------------------------------------------------------------- */

static int resolve(const char *hostport, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[256], port[16];
    unsigned p;
    if (ep_config_hostport(hostport, host, sizeof(host), &p) != 0)
        return -1;
    snprintf(port, sizeof(port), "%u", p);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(host, port, &hints, &ai) != 0 || ai == NULL)
        return -1;
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

struct main_state {
    struct ep_app app;
    struct imsauth_redis_revocation *redis;
    struct ep_ops *ops;
    GMainLoop *loop;
    guint refresh;
};

static gboolean refresh_keys(gpointer arg)
{
    struct main_state *s = arg;
    unsigned next = 60;
    char detail[256];
    if (imsauth_refresh(s->app.auth, &next, detail, sizeof(detail)) != IMSAUTH_OK)
        ep_log(EP_LOG_WARN, "token keys not refreshed: %s", detail);
    if (next == 0)
        next = 60;
    s->refresh = g_timeout_add_seconds(next, refresh_keys, s);
    return G_SOURCE_REMOVE;
}

static gboolean on_signal(gpointer arg)
{
    g_main_loop_quit(arg);
    return G_SOURCE_REMOVE;
}

static int setup_auth(struct main_state *s, char *detail, size_t dl)
{
    const struct ep_config *c = s->app.cfg;
    if (c->redis_url != NULL) {
        struct imsauth_redis_opts ro = {
            .url = c->redis_url, .key = c->revoked_key, .log = auth_log};
        if (imsauth_redis_revocation_alloc(&s->redis, &ro, detail, dl) != IMSAUTH_OK)
            return -1;
    }
    const char *issuers[] = {c->token_issuer, NULL};
    struct imsauth_opts o = {
        .issuers = issuers,
        .audience = c->token_audience,
        .realm = c->realm,
        .authz_server = c->token_authz_server,
        .scope = c->token_scope,
        .jwks_file = c->token_jwks_file,
        .jwks_url = c->token_jwks_url,
        .ca_file = c->token_ca_file,
        .leeway_s = (unsigned)c->token_leeway_s,
        .cache_entries = (size_t)(c->ws_max_conns < 4096 ? 4096 : c->ws_max_conns),
        .revoked = s->redis != NULL ? imsauth_redis_revoked : NULL,
        .revoked_arg = s->redis,
        .log = auth_log,
    };
    if (imsauth_ctx_alloc(&s->app.auth, &o, detail, dl) != IMSAUTH_OK)
        return -1;
    unsigned next = 0;
    if (imsauth_refresh(s->app.auth, &next, detail, dl) != IMSAUTH_OK)
        ep_log(EP_LOG_WARN, "token keys not loaded yet: %s", detail);
    s->refresh = g_timeout_add_seconds(next ? next : 60, refresh_keys, s);
    return 0;
}

static int setup_network(struct ep_app *app, char *detail, size_t dl)
{
    const struct ep_config *c = app->cfg;
    if (resolve(c->mw_next_hop, &app->next_hop, &app->next_hop_len) != 0) {
        snprintf(detail, dl, "mw.next_hop %s does not resolve", c->mw_next_hop);
        return -1;
    }
    if (c->ecscf != NULL) {
        if (resolve(c->ecscf, &app->ecscf, &app->ecscf_len) != 0) {
            snprintf(detail, dl, "emergency.ecscf %s does not resolve", c->ecscf);
            return -1;
        }
        app->has_ecscf = true;
    }
    unsigned lport = 0;
    char lhost[256];
    if (ep_config_hostport(c->mw_listen, lhost, sizeof(lhost), &lport) != 0) {
        snprintf(detail, dl, "mw.listen is not host:port");
        return -1;
    }
    app->mw_port = lport;
    g_strlcpy(app->mw_host, lhost, sizeof(app->mw_host));
    if (c->mw_advertise != NULL) {
        unsigned ap = 0;
        if (ep_config_hostport(c->mw_advertise, app->mw_host, sizeof(app->mw_host), &ap) == 0)
            app->mw_port = ap;
        else
            g_strlcpy(app->mw_host, c->mw_advertise, sizeof(app->mw_host));
    }
    return 0;
}

static int run(struct main_state *s)
{
    struct ep_app *app = &s->app;
    const struct ep_config *c = app->cfg;
    char detail[512] = "";
    int rc = 1;
    /* Signals first: a SIGTERM during start-up stops us once we are up. */
    s->loop = g_main_loop_new(NULL, FALSE);
    g_unix_signal_add(SIGINT, on_signal, s->loop);
    g_unix_signal_add(SIGTERM, on_signal, s->loop);
    if (setup_network(app, detail, sizeof(detail)) != 0 ||
        setup_auth(s, detail, sizeof(detail)) != 0)
        goto out;
    if (c->waf_url != NULL) {
        struct ep_lease_opts lo = {.waf_url = c->waf_url,
                                   .client_id = c->waf_client_id,
                                   .client_secret = c->waf_client_secret,
                                   .ca_file = c->token_ca_file,
                                   .log = lib_log};
        if (ep_lease_client_start(&app->lease, &lo, detail, sizeof(detail)) != 0)
            goto out;
    }
    long n = c->workers > 0 ? c->workers : sysconf(_SC_NPROCESSORS_ONLN);
    app->n_workers = (size_t)(n > 0 ? n : 1);
    app->workers = g_new0(struct ep_worker *, app->n_workers);
    for (size_t i = 0; i < app->n_workers; i++) {
        app->workers[i] = worker_new(app, (unsigned)i, detail, sizeof(detail));
        if (app->workers[i]->lws == NULL)
            goto out;
    }
    if (c->redis_url != NULL) {
        struct ep_revfeed_opts ro = {.redis_url = c->redis_url,
                                     .channel = c->revocation_channel,
                                     .set_key = c->revoked_key,
                                     .on_revoked = on_revoked,
                                     .on_resync = on_resync,
                                     .arg = app,
                                     .log = lib_log};
        if (ep_revfeed_start(&app->revfeed, &ro, detail, sizeof(detail)) != 0)
            goto out;
    }
    if (ep_ops_start(&s->ops, app, detail, sizeof(detail)) != 0)
        goto out;
    for (size_t i = 0; i < app->n_workers; i++)
        pthread_create(&app->workers[i]->thread, NULL, worker_main, app->workers[i]);
    ep_log(EP_LOG_INFO, "ready: %zu workers, WS %s, WSS %s, Mw %s:%u -> %s", app->n_workers,
           c->ws_listen ? c->ws_listen : "off", c->wss_listen ? c->wss_listen : "off", app->mw_host,
           app->mw_port, c->mw_next_hop);
    g_main_loop_run(s->loop);
    ep_log(EP_LOG_INFO, "stopping");
    atomic_store(&app->stopping, true);
    for (size_t i = 0; i < app->n_workers; i++) {
        g_main_context_invoke(app->workers[i]->ctx, worker_stop_cb, app->workers[i]);
        pthread_join(app->workers[i]->thread, NULL);
    }
    rc = 0;
out:
    if (rc != 0)
        ep_log(EP_LOG_ERR, "%s", detail[0] ? detail : "start-up failed");
    ep_ops_stop(s->ops);
    if (app->revfeed != NULL)
        ep_revfeed_stop(app->revfeed);
    for (size_t i = 0; app->workers != NULL && i < app->n_workers; i++)
        worker_free(app->workers[i]);
    g_free(app->workers);
    if (app->lease != NULL)
        ep_lease_client_stop(app->lease);
    if (s->refresh)
        g_source_remove(s->refresh);
    imsauth_ctx_free(app->auth);
    imsauth_redis_revocation_free(s->redis);
    if (s->loop != NULL)
        g_main_loop_unref(s->loop);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: epcscf-ref -c FILE [--check-config]\n"
               "  -c FILE          configuration (see epcscf.conf.sample); EPCSCF_* environment\n"
               "                   variables override its keys\n"
               "  --check-config   parse and check the configuration, print every key with\n"
               "                   its source, and exit (0 when valid)\n");
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    bool check = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
            path = argv[++i];
        else if (strcmp(argv[i], "--check-config") == 0)
            check = true;
        else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    struct ep_config *cfg = NULL;
    char detail[512];
    enum ep_config_result cr = ep_config_load(path, environ, &cfg, detail, sizeof(detail));
    if (cr != EP_CONFIG_OK) {
        fprintf(stderr, "epcscf-ref: configuration: %s: %s\n", ep_config_strerror(cr), detail);
        return 2;
    }
    if (check) {
        ep_config_explain(cfg, stdout);
        ep_config_free(cfg);
        return 0;
    }
    ep_log_set_level(cfg->log_level);
    if (ep_sip_init() != 0) {
        fprintf(stderr, "epcscf-ref: libosip2 initialisation failed\n");
        ep_config_free(cfg);
        return 1;
    }
    struct main_state *s = g_new0(struct main_state, 1);
    s->app.cfg = cfg;
    pthread_mutex_init(&s->app.ip_lock, NULL);
    s->app.ip_conns = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    RAND_bytes(s->app.flow_key, sizeof(s->app.flow_key));
    int rc = run(s);
    g_hash_table_destroy(s->app.ip_conns);
    pthread_mutex_destroy(&s->app.ip_lock);
    g_free(s);
    ep_config_free(cfg);
    return rc;
}
