/*
 * The waf-server application: configuration, database pool, keys, clients and the
 * listeners, and the handlers of the public and admin routes.
 */
#ifndef WAF_APP_H
#define WAF_APP_H

#include "clients.h"
#include "config.h"
#include "http.h"
#include "keystore.h"
#include "metrics.h"
#include "wdb.h"
#include "wpool.h"
#include "wredis.h"

#include <stdint.h>

struct waf_app {
    const struct waf_config *cfg; /* borrowed */
    uint8_t kek[32], server_key[32];
    struct waf_db *db;
    struct waf_keystore *keys;
    struct waf_clients *clients;
    struct waf_redis *redis;
    struct waf_pools *pools; /* libimspool handles (pooled identities) */
    struct waf_http *pub, *admin;
    char *metadata;      /* RFC 8414 document, built once */
    char dummy_phc[257]; /* a password hash checked for unknown users (equal timing) */
    /* Token ids: SHA-256(jti_seed || counter), unique per process (the counter) and across
       processes (the random seed), unpredictable without the seed, and made without the
       RNG (OpenSSL's RNG costs a getpid() system call per call). */
    uint8_t jti_seed[32];
    _Atomic uint64_t jti_counter;
    struct waf_metrics metrics;
};

/* Reads the key files, connects, loads the keys (creating the first), bootstraps the
 * admin client and starts both listeners. 0, or -1 with detail (then waf_app_stop()). */
int waf_app_start(struct waf_app *a, const struct waf_config *cfg, char *detail, size_t detail_len);
void waf_app_stop(struct waf_app *a);

/* Reads a file holding 64 hex digits (and optional whitespace) into key[32]. 0 or -1. */
int waf_read_key_file(const char *path, uint8_t key[32], char *detail, size_t detail_len);

/* Route handlers (oauth.c). */
void waf_h_healthz(void *app, const struct waf_req *rq, struct waf_resp *rs);
void waf_h_metadata(void *app, const struct waf_req *rq, struct waf_resp *rs);
void waf_h_readyz(void *app, const struct waf_req *rq, struct waf_resp *rs);
void waf_h_metrics(void *app, const struct waf_req *rq, struct waf_resp *rs);
void waf_h_jwks(void *app, const struct waf_req *rq, struct waf_resp *rs);
void waf_h_token(void *app, const struct waf_req *rq, struct waf_resp *rs);
void waf_h_introspect(void *app, const struct waf_req *rq, struct waf_resp *rs);
void waf_h_revoke(void *app, const struct waf_req *rq, struct waf_resp *rs);
/* POST /leases/{id}/renew and /leases/{id}/release (ims.c). */
void waf_h_lease(void *app, const struct waf_req *rq, struct waf_resp *rs);
/* GET and POST /authorize: the login page and the authorization code flow (authorize.c). */
void waf_h_authorize(void *app, const struct waf_req *rq, struct waf_resp *rs);

/* ---- Admin API and route listing (admin*.c) ---- */
#include <stdio.h>
/* /admin/v1/... (admin.c dispatches inside; docs/openapi.yaml). */
void waf_h_admin(void *app, const struct waf_req *rq, struct waf_resp *rs);
/* GET /openapi.yaml: docs/openapi.yaml as built in. */
void waf_h_openapi(void *app, const struct waf_req *rq, struct waf_resp *rs);
/* The route table of a listener (0 public, 1 admin), for waf-server --routes (app.c). */
const struct waf_route *waf_app_routes(int listener);
/* Prints "listener METHOD path" per route of table, the admin API's own routes in place of
 * the entries waf_h_admin handles (admin.c). */
void waf_routes_print(FILE *f, const char *listener, const struct waf_route *table);

#endif
