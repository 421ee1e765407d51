/*
 * Private to epcscf_bench: the types shared by the driver (epcscf_bench.c: processes, tokens,
 * the rate and idle measurements) and the client (epcscf_bench_ws.c: connections, TLS,
 * RFC 6455 framing, SIP REGISTERs). One thread; everything lives in the state G.
 */
#ifndef EPCSCF_BENCH_H
#define EPCSCF_BENCH_H

#include <jansson.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define MAX_PROCS 256
#define MAX_CODES 16

/* A server's processes: a root pid and its descendants. */
struct pset {
    pid_t root;
    pid_t pid[MAX_PROCS];
    int n;
};

/* ES256 tokens of docs/token-profile.md, each with a jti never used before. */
struct minter {
    EVP_PKEY *key;
    const char *kid, *iss, *aud, *domain;
    json_t *header;
    unsigned long long seq;
    char run[17]; /* random per run: jti values never repeat across runs */
    double spent_s;
    unsigned long long minted;
};

enum cstate { C_IDLE, C_CONNECTING, C_TLS, C_UPGRADE, C_OPEN, C_CLOSED };

/* Kinds of errors other than a non-200 final answer. */
enum ekind { E_CONNECT, E_TLS, E_HANDSHAKE, E_CLOSED, E_TIMEOUT, E_PROTOCOL, E_UNEXPECTED, E_N };

struct target {
    const char *server; /* "epcscf" / "kamailio" */
    const char *transport;
    bool tls, is_ep;
    char hostport[64];
    struct sockaddr_in addr;
    struct pset *ps;
};

struct conn;

/* The connections to one target and what they saw. */
struct set {
    struct target *t;
    struct conn *c;
    size_t n;
    unsigned long long ok; /* 200s */
    unsigned long long codes_n[MAX_CODES];
    int codes[MAX_CODES]; /* other final statuses */
    unsigned long long err[E_N];
    unsigned long long sent;
    unsigned long long pings; /* WebSocket pings from the server, answered at once */
    double lat_sum;           /* seconds, over the 200s */
    char first_err[256];      /* first error seen, for the report */
    char cipher[64];
};

struct conn {
    struct set *set;
    int fd;
    SSL *ssl;
    enum cstate st;
    bool epollout;
    bool waiting; /* a REGISTER is outstanding */
    bool registered;
    char user[48];
    char callid[40];
    uint32_t cseq;
    char *token;  /* current token (owned) */
    char **fresh; /* minted tokens for this round (owned until used) */
    size_t n_fresh, next_fresh;
    unsigned long long regs; /* REGISTERs sent in the current round */
    double sent_at;
    char wskey[32];
    uint8_t *out;
    size_t out_len, out_off, out_cap;
    uint8_t *in;
    size_t in_len, in_cap;
    uint8_t *frag; /* a fragmented message being reassembled */
    size_t frag_len;
};

/* P_RAMP: connections open and REGISTER once; P_LOAD: the active set loops while sending;
 * P_CHECK: one re-REGISTER per connection. */
enum phase { P_RAMP, P_LOAD, P_CHECK };

struct bench_state {
    int ep; /* epoll */
    SSL_CTX *tls;
    struct minter *mint;
    const char *origin;
    enum phase phase;
    struct set *active; /* the set that sends in P_LOAD */
    bool sending;
    unsigned fresh_every; /* a new registration with a fresh token every K REGISTERs */
    bool tokens_out;      /* a connection ran out of minted tokens */
    double tokens_out_at;
    size_t pending; /* connections in a ramp or check that have not finished */
};
extern struct bench_state G;

/* ---- epcscf_bench.c ------------------------------------------------------------------------ */
__attribute__((noreturn, format(printf, 1, 2))) void die(const char *fmt, ...);
void *xmalloc(size_t n);
double now_s(void);
char *mint_token(struct minter *m, const char *user);
bool pset_alive(const struct pset *s);

/* ---- epcscf_bench_ws.c --------------------------------------------------------------------- */
void client_init(const char *origin);
uint32_t rnd32(void);
struct target *target_new(const char *server, const char *transport, const char *hostport,
                          struct pset *ps);
/* n connections as users <prefix><letter><index>. */
struct set *set_new(struct target *t, size_t n, const char *prefix, char letter);
void conn_fail(struct conn *c, enum ekind k, const char *detail);
/* Sends c's next REGISTER: a new registration with a fresh token when fresh. */
void send_register(struct conn *c, bool fresh);
void next_register(struct conn *c);
/* Handles what is ready now without waiting (pings answered while tokens are minted: Kamailio
 * closes a connection whose pong is late by its 1 s keepalive tick). */
void run_ready(void);
/* Runs the event loop until deadline or until stop(arg) is true. */
void run_until(double deadline, bool (*stop)(void *), void *arg);
/* Opens every connection of s (ramp_max handshakes at a time), each REGISTERing once;
 * returns the seconds it took. */
double ramp(struct set *s, size_t ramp_max, double timeout_s);
/* One re-REGISTER on every open connection of s, max_out at a time; returns the 200s. */
unsigned long long check_alive(struct set *s, size_t max_out, double timeout_s);
size_t set_open(const struct set *s);
void set_close_all(struct set *s);
unsigned long long set_errors(const struct set *s);
void print_errors(const struct set *s, const char *what);
json_t *errors_json(const struct set *s);

#endif
