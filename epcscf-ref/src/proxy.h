/*
 * Private interface between the proxy core (proxy.c: transactions and routing) and the
 * registration logic (register.c). Everything runs on the owning worker's thread.
 */
#ifndef EP_PROXY_H
#define EP_PROXY_H

#include "ep.h"
#include "sipx.h"

enum tx_dir { TX_TO_CORE, TX_TO_WIC, TX_LOCAL };

struct reg_pending; /* register.c */

/* A transaction we forwarded (or originated): owned by w->tx (key: branch[+"C"]). */
struct ep_tx {
    struct ep_worker *w;
    enum tx_dir dir;
    char key[52]; /* our branch, "C" appended for a CANCEL */
    char branch[48];
    char *ukey; /* upstream key in w->stx (owned copy), NULL for local */
    enum ep_method method;
    uint64_t flow_id;    /* the WIC's flow */
    osip_message_t *req; /* the request as forwarded (owned) */
    char *out;           /* its text (owned) */
    size_t out_len;
    struct sockaddr_storage dst; /* TX_TO_CORE / TX_LOCAL: where it went */
    socklen_t dst_len;
    struct sockaddr_storage src; /* TX_TO_WIC: the core's address to answer */
    socklen_t src_len;
    char *resp; /* TX_TO_WIC: final response sent upstream, for retransmissions */
    size_t resp_len;
    int status; /* highest status seen, 0 none */
    struct ep_timer *t_retx, *t_end;
    unsigned retx_ms;
    struct reg_pending *reg; /* REGISTER bookkeeping (register.c), NULL otherwise */
};

/* Forwards req (already edited: routes, our Via not yet pushed) from flow f towards the
 * core as a new client transaction; on timeout the WIC gets 503. dst NULL: next hop from
 * Route / configuration. Takes ownership of req. reg may be NULL. */
void ep_forward_to_core(struct ep_flow *f, osip_message_t *req, struct reg_pending *reg,
                        const char *wic_ukey);
/* Sends a locally built request (text, with our Via carrying branch) to the core as a
 * TX_LOCAL transaction whose answers are only logged. */
void ep_send_local(struct ep_worker *w, const char *text, size_t len, const char *branch,
                   const struct sockaddr *dst, socklen_t dst_len, enum ep_method method);
/* Answers a WIC request on its flow. extra: "Name: value\r\n" lines or NULL. */
void ep_reply_wic(struct ep_flow *f, osip_message_t *req, int status, const char *reason,
                  const char *extra);
/* The WIC's request to the core address a Route URI names (numeric) or the next hop. */
void ep_route_dst(struct ep_app *app, osip_message_t *m, struct sockaddr_storage *ss,
                  socklen_t *len);
void ep_count_final(struct ep_app *app, enum ep_method m, int status);

/* Key of a WIC's transaction among the worker's upstream keys: flow id and its Via branch
 * (NULL branch: empty). */
#define EP_UKEY_MAX 160
void ep_wic_key(const struct ep_flow *f, const char *branch, char out[EP_UKEY_MAX]);
/* Removes what a client must not send towards Mw: credentials, P-Asserted-Identity, the
 * charging and visited-network headers, sec-agree (EPC-11). */
void ep_strip_client_headers(osip_message_t *m);
/* Sets a P-Charging-Vector with a fresh icid (and orig-ioi when configured). */
void ep_charging_vector(const struct ep_app *app, osip_message_t *m);

/* register.c; ukey is the REGISTER's key from ep_wic_key. Consumes pm. */
void ep_register(struct ep_flow *f, struct ep_sipmsg *pm, osip_message_t *m, const char *ukey);
/* A response to a REGISTER we forwarded; may edit resp before it goes to the WIC. */
void ep_register_response(struct ep_flow *f, struct ep_tx *tx, osip_message_t *resp);
void ep_reg_pending_free(struct reg_pending *p);
/* Deregisters f's registration towards the core (REGISTER Expires 0 with TNA) and forgets
 * it; releases a pooled lease. */
void ep_deregister(struct ep_flow *f, enum ep_dereg_cause why);
/* Verifies the Bearer credential of a non-REGISTER request of a registered flow (EPC-30).
 * Returns 0 to go on, or the status already answered. */
int ep_check_bearer(struct ep_flow *f, struct ep_sipmsg *pm, osip_message_t *m);
/* Room for our Path / Record-Route URI: host (255) + token, port and parameters. */
#define EP_URI_MAX 400
/* Our Path / Record-Route URI for flow f (with <>); out holds EP_URI_MAX bytes. */
void ep_flow_uri(struct ep_flow *f, char *out, size_t n, bool ob);

#endif
