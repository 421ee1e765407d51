/*
 * Private types of the eP-CSCF shared by its modules: the process (ep_app), the event-loop
 * workers (ep_worker), WebSocket flows (ep_flow), registrations (ep_reg) and transactions
 * (ep_tx).
 *
 * Threading: every worker runs one GMainContext in its own thread, with its own
 * libwebsockets context (listening sockets shared through SO_REUSEPORT) and its own Mw UDP
 * socket on port mw.listen + index. A flow, its registration, its dialogs and every
 * transaction it takes part in belong to the worker that accepted the connection and are
 * only touched on that worker's thread; the core reaches the owning worker directly because
 * Path, Record-Route and Via carry that worker's Mw port. Cross-thread work (revocations) is
 * posted with g_main_context_invoke. Shared state: the read-only config, the thread-safe
 * libimsauth context, atomic counters, and the per-IP connection table (a mutex, taken only
 * at connect and close).
 */
#ifndef EP_EP_H
#define EP_EP_H

#include "config.h"
#include "sipmsg.h"

#include <glib.h>
#include <imsauth/imsauth.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct ep_revfeed;
struct ep_lease_client;
struct ep_http;
struct lws_context;
struct lws;

/* Counted SIP methods; EP_M_OTHER for the rest. */
enum ep_method {
    EP_M_REGISTER,
    EP_M_INVITE,
    EP_M_ACK,
    EP_M_BYE,
    EP_M_CANCEL,
    EP_M_OPTIONS,
    EP_M_MESSAGE,
    EP_M_SUBSCRIBE,
    EP_M_NOTIFY,
    EP_M_UPDATE,
    EP_M_PRACK,
    EP_M_INFO,
    EP_M_REFER,
    EP_M_OTHER,
    EP_M_COUNT
};
enum ep_method ep_method_of(const char *name);
const char *ep_method_name(enum ep_method m);

#define EP_TOKEN_RESULTS 48 /* > every enum imsauth_result value */

/* Why a registration ended without the WIC asking (metrics). */
enum ep_dereg_cause {
    EP_DC_CLOSED,        /* the WebSocket went away */
    EP_DC_TOKEN_EXPIRED, /* the token ran out and no fresh one came */
    EP_DC_REVOKED,       /* the WAF revoked the token */
    EP_DC_NETWORK,       /* the core's reg NOTIFY ended it */
    EP_DC_LAPSED,        /* the WIC did not refresh in time */
    EP_DC_COUNT
};

/* Process-wide counters (relaxed atomics; read by /metrics). */
struct ep_metrics {
    atomic_long ws_open;        /* gauge */
    atomic_long regs_active;    /* gauge: registered flows */
    atomic_ulong ws_accepted;   /* WebSocket handshakes completed */
    atomic_ulong ws_refused[4]; /* by enum ep_ws_refusal */
    atomic_ulong ws_closed;     /* flows ended */
    atomic_ulong sip_bad;       /* malformed SIP from the WICs */
    atomic_ulong tx[EP_M_COUNT]
                   [7]; /* final answers to WIC requests by method and class 1..6; [0] timeouts */
    atomic_ulong token[EP_TOKEN_RESULTS]; /* verification outcomes by enum imsauth_result */
    atomic_ulong dereg[EP_DC_COUNT];      /* by enum ep_dereg_cause */
    atomic_ulong revocations;             /* revocation notices received */
};

enum ep_ws_refusal { EP_WSR_ORIGIN, EP_WSR_PROTOCOL, EP_WSR_LIMIT, EP_WSR_OTHER };

struct ep_worker;

/* The process: owned by main; everything else borrows it. */
struct ep_app {
    const struct ep_config *cfg;
    struct imsauth_ctx *auth;
    struct ep_revfeed *revfeed;    /* NULL without revocation.redis_url */
    struct ep_lease_client *lease; /* NULL without waf.url */
    struct ep_metrics m;
    struct ep_worker **workers;
    size_t n_workers;
    unsigned char flow_key[32]; /* HMAC key of the flow tokens, random per process */
    char mw_host[256];          /* advertised Mw host (Via, Path, Record-Route) */
    unsigned mw_port;           /* advertised base port; worker i is mw_port + i */
    struct sockaddr_storage next_hop, ecscf;
    socklen_t next_hop_len, ecscf_len;
    bool has_ecscf;
    pthread_mutex_t ip_lock; /* guards ip_conns */
    GHashTable *ip_conns;    /* peer IP text -> count (GINT_TO_POINTER) */
    atomic_long conns;       /* open WebSocket connections, all workers */
    atomic_bool stopping;
};

/* One registration: the IMPI and IMPUs a flow registered (one per flow). */
struct ep_reg {
    char *impi;
    char *impu;                  /* the registered IMPU (To of the REGISTER) */
    char **assoc;                /* P-Associated-URI values, first = default; NULL-terminated */
    char **service_route;        /* Service-Route URIs (with <>), NULL-terminated */
    char *contact;               /* the Contact header value the WIC registered */
    char *call_id;               /* of the WIC's REGISTERs */
    char *from;                  /* From value of the last REGISTER (with tag) */
    char *ruri;                  /* Request-URI of the REGISTER */
    uint32_t cseq;               /* highest CSeq used for this Call-ID */
    int64_t expires_at;          /* registration expiry (Unix seconds) */
    struct imsauth_token *token; /* the token of the last accepted REGISTER */
    char *lease;                 /* pool_lease, NULL for a mapped identity */
    int64_t lease_renewed;
    struct ep_timer *timer; /* expiry / token deadline */
};

/* A WebSocket flow (RFC 5626 flow): owned by its worker's flow table. */
struct ep_flow {
    uint64_t id; /* worker-local, never reused */
    struct ep_worker *w;
    struct lws *wsi; /* NULL once the connection is gone */
    char ip[64];     /* peer address text */
    unsigned port;
    bool secure;
    bool closing; /* close after the queue drains */
    GQueue out;   /* struct ep_out to send */
    size_t out_bytes;
    char token[40]; /* flow token used in Path / Record-Route user part */
    struct ep_reg *reg;
    GByteArray *rx; /* fragments of the message being received */
    GList *dialogs; /* struct ep_dialog, confirmed dialogs on this flow */
};

struct ep_out {
    size_t len;
    unsigned char buf[]; /* LWS_PRE bytes of headroom, then len bytes */
};

/* A confirmed INVITE dialog of a flow, kept so the flow's loss can end it towards IMS. */
struct ep_dialog {
    char *call_id, *local_from, *remote_to; /* From/To as the WIC's side would send them */
    char *remote_target;                    /* R-URI of a request towards the peer */
    char **route;                           /* route set towards the peer, NULL-terminated */
    uint32_t cseq;                          /* last CSeq the WIC used */
};

struct ep_worker {
    struct ep_app *app;
    unsigned index;
    GMainContext *ctx;
    GMainLoop *loop;
    pthread_t thread;
    struct lws_context *lws;
    bool lws_closing; /* ep_ws_stop ran */
    void *ws_retry;   /* lws_retry_bo_t: ping / idle policy of the vhosts */
    void *listeners;  /* ws.c: the WS and WSS listening sockets */
    int mw_fd;
    void *mw_tcp; /* mw.c: the Mw TCP listener and connections */
    void *timers; /* timer.c: the timer heap */
    GSource *mw_src;
    uint64_t next_flow;
    GHashTable *flows; /* id (uint64 key) -> struct ep_flow */
    GHashTable *tx;    /* our branch -> struct ep_tx */
    GHashTable *stx;   /* upstream transaction key -> struct ep_tx */
    uint64_t branch_seq;
    unsigned char rnd[8]; /* per-worker branch salt */
};

/* ---- timer.c: timers on a worker's loop (one heap behind one GSource) ------------------ */
struct ep_timer;
/* Starts a timer of ms on w's loop: fn(arg) runs on w's thread; G_SOURCE_CONTINUE re-arms it.
 * The caller owns the handle (valid also after it fired) until ep_timer_cancel; free_arg
 * (optional) frees arg then. */
struct ep_timer *ep_timer_start(struct ep_worker *w, unsigned ms, GSourceFunc fn, void *arg,
                                GDestroyNotify free_arg);
/* Stops (if pending) and releases *t, sets it NULL; NULL is fine; allowed in fn itself. */
void ep_timer_cancel(struct ep_timer **t);
/* At worker teardown, after every owner is gone. */
void ep_timers_destroy(struct ep_worker *w);

/* ---- ws.c ------------------------------------------------------------------------------- */
int ep_ws_start(struct ep_worker *w, char *detail, size_t dlen);
/* Starts closing the listeners and connections (on the worker's thread, loop running). */
void ep_ws_stop(struct ep_worker *w);
/* Completes the destruction once the loop has run (any thread, loop stopped). */
void ep_ws_finish(struct ep_worker *w);
/* Queues one SIP message (copied) on the flow; no-op when the flow is gone. */
void ep_flow_send(struct ep_flow *f, const char *buf, size_t len);
/* Closes the flow once its queue is sent (close code 1008 when policy is true). */
void ep_flow_close(struct ep_flow *f, bool policy);
struct ep_flow *ep_flow_by_token(struct ep_worker *w, const char *token);

/* ---- mw.c ------------------------------------------------------------------------------- */
int ep_mw_start(struct ep_worker *w, char *detail, size_t dlen);
void ep_mw_stop(struct ep_worker *w);
/* True when requests to the core go over TCP (mw.transport = tcp): no retransmissions. */
bool ep_mw_reliable(const struct ep_worker *w);
/* "TCP" or "UDP", for our Via towards the core. */
const char *ep_mw_via_transport(const struct ep_worker *w);
/* Sends one message towards the core (TCP when a connection to that address exists or
 * mw.transport is tcp, else UDP); failures are logged, not returned. */
void ep_mw_send(struct ep_worker *w, const struct sockaddr *to, socklen_t tolen, const char *buf,
                size_t len);

/* ---- proxy.c: SIP processing -------------------------------------------------------------- */
/* A complete WebSocket message from flow f. */
void ep_proxy_from_ws(struct ep_flow *f, const uint8_t *buf, size_t len);
/* A datagram from the core on worker w. */
void ep_proxy_from_mw(struct ep_worker *w, const uint8_t *buf, size_t len,
                      const struct sockaddr *src, socklen_t srclen);
/* The flow's connection is gone: deregister, end its dialogs, forget it. Frees f. */
void ep_proxy_flow_gone(struct ep_flow *f);
/* A revoked jti: deregister and close every flow registered with it (on w's thread). */
void ep_proxy_revoked(struct ep_worker *w, const char *jti);
void ep_tx_free(gpointer p);
void ep_reg_free(struct ep_reg *r);

/* ---- log.c ------------------------------------------------------------------------------ */
enum ep_log_level { EP_LOG_ERR = 3, EP_LOG_WARN = 4, EP_LOG_INFO = 6, EP_LOG_DEBUG = 7 };
void ep_log_set_level(const char *name);
__attribute__((format(printf, 2, 3))) void ep_log(enum ep_log_level lvl, const char *fmt, ...);

#endif
