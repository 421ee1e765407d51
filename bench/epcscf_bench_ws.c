/*
 * epcscf_bench's client: N WebSocket connections per target on one epoll loop, non-blocking
 * sockets, OpenSSL for WSS, our own RFC 6455 client framing (masked text frames, pings
 * answered, fragments reassembled), the HTTP upgrade with Origin and Sec-WebSocket-Protocol:
 * sip (Sec-WebSocket-Accept checked), and the SIP REGISTERs with their Bearer tokens. Every
 * final answer but 200 and every connection problem is counted per kind in its set.
 */
#define _GNU_SOURCE
#include "epcscf_bench.h"

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_IN (256 * 1024) /* receive buffer ceiling per connection */

struct bench_state G;

static const char *const ekind_name[E_N] = {"connect", "tls",      "handshake", "closed",
                                            "timeout", "protocol", "unexpected"};

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
uint32_t rnd32(void) /* xorshift64*: masks, tags, branches (not secrets) */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1dULL) >> 32);
}

void client_init(const char *origin)
{
    RAND_bytes((unsigned char *)&rng_state, sizeof(rng_state));
    rng_state |= 1;
    G.ep = epoll_create1(EPOLL_CLOEXEC);
    G.tls = SSL_CTX_new(TLS_client_method());
    if (G.ep < 0 || G.tls == NULL)
        die("epoll or SSL_CTX_new failed");
    /* Self-signed server certificates on loopback: no verification (the client's cost is not
     * what is measured; the server side is the same for both servers). */
    SSL_CTX_set_verify(G.tls, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_mode(G.tls, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(G.tls, SSL_SESS_CACHE_OFF);
    G.origin = origin;
}

/* ---- connections -------------------------------------------------------------------------- */

static void set_error(struct set *s, const char *fmt, ...)
{
    if (s->first_err[0] != '\0')
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->first_err, sizeof(s->first_err), fmt, ap);
    va_end(ap);
}

unsigned long long set_errors(const struct set *s)
{
    unsigned long long e = 0;
    for (int i = 0; i < E_N; i++)
        e += s->err[i];
    for (int i = 0; i < MAX_CODES; i++)
        e += s->codes_n[i];
    return e;
}

static void count_code(struct set *s, int code)
{
    for (int i = 0; i < MAX_CODES; i++) {
        if (s->codes_n[i] == 0 || s->codes[i] == code) {
            s->codes[i] = code;
            s->codes_n[i]++;
            return;
        }
    }
    s->codes_n[MAX_CODES - 1]++; /* table full: lumped with the last code */
}

static void conn_done(void) /* a connection's ramp or check step finished */
{
    if ((G.phase == P_RAMP || G.phase == P_CHECK) && G.pending > 0)
        G.pending--;
}

static void conn_close(struct conn *c)
{
    if (c->ssl != NULL)
        SSL_free(c->ssl);
    c->ssl = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->st = C_CLOSED;
    c->epollout = false;
    free(c->in);
    free(c->out);
    free(c->frag);
    c->in = c->out = c->frag = NULL;
    c->in_len = c->in_cap = c->out_len = c->out_off = c->out_cap = c->frag_len = 0;
}

void conn_fail(struct conn *c, enum ekind k, const char *detail)
{
    struct set *s = c->set;
    s->err[k]++;
    set_error(s, "%s: %s (connection %s)", ekind_name[k], detail, c->user);
    bool was_busy = c->waiting || c->st != C_OPEN;
    c->waiting = false;
    conn_close(c);
    if (was_busy)
        conn_done();
}

static void want_out(struct conn *c, bool on)
{
    if (c->epollout == on || c->fd < 0)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(G.ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->epollout = on;
}

static void out_reserve(struct conn *c, size_t more)
{
    if (c->out_off > 0 && c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_len + more <= c->out_cap)
        return;
    size_t cap = c->out_cap ? c->out_cap : 2048;
    while (cap < c->out_len + more)
        cap *= 2;
    uint8_t *p = realloc(c->out, cap);
    if (p == NULL)
        die("out of memory");
    c->out = p;
    c->out_cap = cap;
}

static void flush(struct conn *c)
{
    while (c->out_off < c->out_len) {
        size_t len = c->out_len - c->out_off;
        if (c->ssl != NULL) {
            ERR_clear_error();
            int n = SSL_write(c->ssl, c->out + c->out_off, (int)len);
            if (n > 0) {
                c->out_off += (size_t)n;
                continue;
            }
            int e = SSL_get_error(c->ssl, n);
            if (e == SSL_ERROR_WANT_WRITE) {
                want_out(c, true);
                return;
            }
            if (e == SSL_ERROR_WANT_READ)
                return; /* retried after the next read */
            conn_fail(c, c->st == C_OPEN ? E_CLOSED : E_TLS, "TLS write failed");
            return;
        }
        ssize_t n = send(c->fd, c->out + c->out_off, len, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            want_out(c, true);
            return;
        }
        if (n < 0 && errno == EINTR)
            continue;
        conn_fail(c, E_CLOSED, strerror(errno));
        return;
    }
    c->out_off = c->out_len = 0;
    want_out(c, false);
}

/* Queues one masked client frame (RFC 6455 5.2, 5.3). */
static void queue_frame(struct conn *c, int opcode, const void *payload, size_t len)
{
    out_reserve(c, len + 14);
    uint8_t *p = c->out + c->out_len;
    size_t h = 0;
    p[h++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        p[h++] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        p[h++] = 0x80 | 126;
        p[h++] = (uint8_t)(len >> 8);
        p[h++] = (uint8_t)len;
    } else {
        p[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            p[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    uint32_t m = rnd32();
    uint8_t mask[4] = {(uint8_t)m, (uint8_t)(m >> 8), (uint8_t)(m >> 16), (uint8_t)(m >> 24)};
    memcpy(p + h, mask, 4);
    h += 4;
    const uint8_t *src = payload;
    for (size_t i = 0; i < len; i++)
        p[h + i] = src[i] ^ mask[i & 3];
    c->out_len += h + len;
}

static void queue_raw(struct conn *c, const char *buf, size_t len)
{
    out_reserve(c, len);
    memcpy(c->out + c->out_len, buf, len);
    c->out_len += len;
}

/* ---- SIP ---------------------------------------------------------------------------------- */

static void hex(char *out, unsigned nbytes)
{
    static const char d[] = "0123456789abcdef";
    for (unsigned i = 0; i < nbytes; i++) {
        uint32_t r = rnd32();
        out[2 * i] = d[r & 15];
        out[2 * i + 1] = d[(r >> 4) & 15];
    }
    out[2 * nbytes] = '\0';
}

/* Sends the next REGISTER of c: every fresh_every-th (and the first) starts a registration
 * with a new Call-ID and a fresh token; the others refresh it with the current token. */
void send_register(struct conn *c, bool fresh)
{
    struct set *s = c->set;
    if (fresh) {
        if (s->t->is_ep && c->fresh != NULL) {
            if (c->next_fresh >= c->n_fresh) {
                if (!G.tokens_out) {
                    G.tokens_out = true;
                    G.tokens_out_at = now_s();
                }
                return; /* this connection stops: the round ends early */
            }
            free(c->token);
            c->token = c->fresh[c->next_fresh];
            c->fresh[c->next_fresh++] = NULL;
        }
        hex(c->callid, 12);
        c->cseq = 0;
    }
    c->cseq++;
    char branch[17], tag[9], buf[4096];
    hex(branch, 8);
    hex(tag, 4);
    const char *d = G.mint->domain;
    const char *via = s->t->tls ? "WSS" : "WS";
    int n = snprintf(buf, sizeof(buf),
                     "REGISTER sip:%s SIP/2.0\r\n"
                     "Via: SIP/2.0/%s %s.invalid;branch=z9hG4bK%s\r\n"
                     "Max-Forwards: 70\r\n"
                     "To: <sip:%s@%s>\r\n"
                     "From: <sip:%s@%s>;tag=%s\r\n"
                     "Call-ID: %s\r\n"
                     "CSeq: %u REGISTER\r\n"
                     "Contact: <sip:%s@%s.invalid;transport=ws>;expires=3600\r\n"
                     "Expires: 3600\r\n"
                     "Supported: path, outbound\r\n"
                     "User-Agent: epcscf_bench\r\n"
                     "Authorization: Bearer %s\r\n"
                     "Content-Length: 0\r\n\r\n",
                     d, via, c->user, branch, c->user, d, c->user, d, tag, c->callid,
                     (unsigned)c->cseq, c->user, c->user, c->token);
    if (n <= 0 || (size_t)n >= sizeof(buf))
        die("REGISTER does not fit");
    queue_frame(c, 0x1, buf, (size_t)n);
    c->waiting = true;
    c->sent_at = now_s();
    c->regs++;
    s->sent++;
    flush(c);
}

void next_register(struct conn *c)
{
    send_register(c, G.fresh_every > 0 && c->regs % G.fresh_every == 0);
}

/* A final answer reached c. */
static void on_final(struct conn *c, int code)
{
    struct set *s = c->set;
    c->waiting = false;
    if (code == 200) {
        s->ok++;
        s->lat_sum += now_s() - c->sent_at;
        c->registered = true;
    } else {
        count_code(s, code);
        set_error(s, "REGISTER answered %d (connection %s)", code, c->user);
    }
    switch (G.phase) {
    case P_RAMP:
    case P_CHECK:
        conn_done();
        break;
    case P_LOAD:
        if (G.sending && s == G.active && c->st == C_OPEN)
            next_register(c);
        break;
    }
}

static void on_message(struct conn *c, const uint8_t *p, size_t len)
{
    if (len >= 12 && memcmp(p, "SIP/2.0 ", 8) == 0 && isdigit(p[8]) && isdigit(p[9]) &&
        isdigit(p[10])) {
        int code = (p[8] - '0') * 100 + (p[9] - '0') * 10 + (p[10] - '0');
        if (code < 200)
            return; /* provisional */
        if (!c->waiting) {
            c->set->err[E_UNEXPECTED]++;
            set_error(c->set, "unexpected %d answer (connection %s)", code, c->user);
            return;
        }
        on_final(c, code);
        return;
    }
    if (len == 2 && memcmp(p, "\r\n", 2) == 0)
        return; /* keep-alive pong */
    c->set->err[E_UNEXPECTED]++;
    set_error(c->set, "unexpected message from the server: %.40s", (const char *)p);
}

/* ---- WebSocket client --------------------------------------------------------------------- */

static void ws_accept_of(const char *key, char out[32])
{
    unsigned char d[SHA_DIGEST_LENGTH];
    char buf[128];
    snprintf(buf, sizeof(buf), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    SHA1((const unsigned char *)buf, strlen(buf), d);
    EVP_EncodeBlock((unsigned char *)out, d, SHA_DIGEST_LENGTH);
}

static void send_upgrade(struct conn *c)
{
    unsigned char k[16];
    for (int i = 0; i < 16; i += 4) {
        uint32_t r = rnd32();
        memcpy(k + i, &r, 4);
    }
    EVP_EncodeBlock((unsigned char *)c->wskey, k, 16);
    char buf[512];
    int n = snprintf(buf, sizeof(buf),
                     "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Protocol: sip\r\nOrigin: %s\r\n\r\n",
                     c->set->t->hostport, c->wskey, G.origin);
    c->st = C_UPGRADE;
    queue_raw(c, buf, (size_t)n);
    flush(c);
}

/* A header value of an HTTP response head (case-insensitive name), copied into v. */
static bool http_header(const char *head, const char *name, char *v, size_t vn)
{
    size_t nl = strlen(name);
    for (const char *l = strstr(head, "\r\n"); l != NULL; l = strstr(l + 2, "\r\n")) {
        const char *s = l + 2;
        if (strncasecmp(s, name, nl) == 0 && s[nl] == ':') {
            s += nl + 1;
            while (*s == ' ' || *s == '\t')
                s++;
            size_t n = strcspn(s, "\r\n");
            if (n >= vn)
                n = vn - 1;
            memcpy(v, s, n);
            v[n] = '\0';
            return true;
        }
    }
    return false;
}

/* Consumes the 101 response; false when c failed. */
static bool parse_upgrade(struct conn *c, size_t *used)
{
    uint8_t *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    *used = 0;
    if (end == NULL) {
        if (c->in_len > 8192)
            conn_fail(c, E_HANDSHAKE, "HTTP response head too long");
        return c->st != C_CLOSED;
    }
    size_t hl = (size_t)(end - c->in) + 4;
    char head[8192];
    size_t cp = hl < sizeof(head) ? hl : sizeof(head) - 1;
    memcpy(head, c->in, cp);
    head[cp] = '\0';
    char acc[64], want[32], proto[64];
    if (strncmp(head, "HTTP/1.1 101", 12) != 0) {
        char d[64];
        snprintf(d, sizeof(d), "%.*s", (int)strcspn(head, "\r\n"), head);
        conn_fail(c, E_HANDSHAKE, d);
        return false;
    }
    ws_accept_of(c->wskey, want);
    if (!http_header(head, "Sec-WebSocket-Accept", acc, sizeof(acc)) || strcmp(acc, want) != 0) {
        conn_fail(c, E_HANDSHAKE, "bad Sec-WebSocket-Accept");
        return false;
    }
    if (!http_header(head, "Sec-WebSocket-Protocol", proto, sizeof(proto)) ||
        strcasecmp(proto, "sip") != 0) {
        conn_fail(c, E_HANDSHAKE, "no Sec-WebSocket-Protocol: sip");
        return false;
    }
    *used = hl;
    c->st = C_OPEN;
    if (c->ssl != NULL && c->set->cipher[0] == '\0')
        snprintf(c->set->cipher, sizeof(c->set->cipher), "%s %s", SSL_get_version(c->ssl),
                 SSL_get_cipher_name(c->ssl));
    send_register(c, true); /* the registration of the connection */
    return c->st != C_CLOSED;
}

/* Parses the frames in c->in; returns the bytes consumed (c may have failed). */
static size_t parse_frames(struct conn *c, size_t off)
{
    while (c->st == C_OPEN) {
        const uint8_t *p = c->in + off;
        size_t avail = c->in_len - off, h = 2;
        if (avail < 2)
            break;
        bool fin = p[0] & 0x80;
        int op = p[0] & 0x0f;
        if (p[1] & 0x80) {
            conn_fail(c, E_PROTOCOL, "masked frame from the server");
            break;
        }
        uint64_t len = p[1] & 0x7f;
        if (len == 126) {
            if (avail < 4)
                break;
            len = ((uint64_t)p[2] << 8) | p[3];
            h = 4;
        } else if (len == 127) {
            if (avail < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | p[2 + i];
            h = 10;
        }
        if (len > MAX_IN - 16) {
            conn_fail(c, E_PROTOCOL, "frame too large");
            break;
        }
        if (avail < h + len)
            break;
        const uint8_t *pl = p + h;
        off += h + (size_t)len;
        switch (op) {
        case 0x0: /* continuation */
        case 0x1:
        case 0x2:
            if (fin && c->frag == NULL && op != 0) {
                on_message(c, pl, (size_t)len);
            } else {
                if (c->frag_len + len > MAX_IN) {
                    conn_fail(c, E_PROTOCOL, "message too large");
                    break;
                }
                uint8_t *f = realloc(c->frag, c->frag_len + (size_t)len + 1);
                if (f == NULL)
                    die("out of memory");
                c->frag = f;
                memcpy(c->frag + c->frag_len, pl, (size_t)len);
                c->frag_len += (size_t)len;
                if (fin) {
                    on_message(c, c->frag, c->frag_len);
                    free(c->frag);
                    c->frag = NULL;
                    c->frag_len = 0;
                }
            }
            break;
        case 0x8: {
            char d[80];
            unsigned code = len >= 2 ? (unsigned)(pl[0] << 8 | pl[1]) : 0;
            snprintf(d, sizeof(d), "close frame from the server, code %u %.*s", code,
                     len > 2 ? (int)(len - 2 < 40 ? len - 2 : 40) : 0, (const char *)pl + 2);
            conn_fail(c, E_CLOSED, d);
            break;
        }
        case 0x9: /* ping: pong with the same data */
            c->set->pings++;
            queue_frame(c, 0xA, pl, (size_t)len);
            flush(c);
            break;
        case 0xA:
            break;
        default:
            conn_fail(c, E_PROTOCOL, "unknown opcode");
            break;
        }
    }
    return off;
}

static void on_readable(struct conn *c)
{
    for (;;) {
        if (c->in_cap - c->in_len < 4096) {
            size_t cap = c->in_cap ? c->in_cap * 2 : 8192;
            if (cap > MAX_IN) {
                conn_fail(c, E_PROTOCOL, "receive buffer full");
                return;
            }
            uint8_t *p = realloc(c->in, cap);
            if (p == NULL)
                die("out of memory");
            c->in = p;
            c->in_cap = cap;
        }
        ssize_t n;
        if (c->ssl != NULL) {
            ERR_clear_error();
            int r = SSL_read(c->ssl, c->in + c->in_len, (int)(c->in_cap - c->in_len));
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                    break;
                conn_fail(c, E_CLOSED,
                          e == SSL_ERROR_ZERO_RETURN ? "TLS close_notify"
                                                     : "TLS read: EOF or reset");
                return;
            }
            n = r;
        } else {
            n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                conn_fail(c, E_CLOSED, n == 0 ? "EOF" : strerror(errno));
                return;
            }
        }
        c->in_len += (size_t)n;
        size_t used = 0;
        if (c->st == C_UPGRADE && !parse_upgrade(c, &used))
            return;
        if (c->st == C_OPEN)
            used = parse_frames(c, used);
        if (c->st == C_CLOSED)
            return;
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= used;
    }
    if (c->out_off < c->out_len)
        flush(c); /* a TLS write that wanted a read */
}

static void tls_step(struct conn *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        send_upgrade(c);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        want_out(c, false);
        return;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        want_out(c, true);
        return;
    }
    char d[160];
    unsigned long le = ERR_peek_last_error();
    snprintf(d, sizeof(d), "handshake: %s", le ? ERR_reason_error_string(le) : "EOF or reset");
    conn_fail(c, E_TLS, d);
}

static void on_connected(struct conn *c)
{
    int err = 0;
    socklen_t l = sizeof(err);
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
    if (err != 0) {
        conn_fail(c, E_CONNECT, strerror(err));
        return;
    }
    if (c->set->t->tls) {
        c->ssl = SSL_new(G.tls);
        if (c->ssl == NULL)
            die("SSL_new failed");
        SSL_set_fd(c->ssl, c->fd);
        SSL_set_connect_state(c->ssl);
        c->st = C_TLS;
        tls_step(c);
    } else {
        send_upgrade(c);
    }
}

static void conn_start(struct conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        c->st = C_CLOSED;
        c->set->err[E_CONNECT]++;
        set_error(c->set, "connect: socket: %s", strerror(errno));
        conn_done();
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->st = C_CONNECTING;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    c->epollout = true;
    epoll_ctl(G.ep, EPOLL_CTL_ADD, c->fd, &ev);
    if (connect(c->fd, (struct sockaddr *)&c->set->t->addr, sizeof(c->set->t->addr)) != 0 &&
        errno != EINPROGRESS)
        conn_fail(c, E_CONNECT, strerror(errno));
}

static void dispatch(struct conn *c, uint32_t ev)
{
    switch (c->st) {
    case C_CONNECTING:
        on_connected(c);
        break;
    case C_TLS:
        tls_step(c);
        break;
    case C_UPGRADE:
    case C_OPEN:
        if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))
            on_readable(c);
        if (c->st != C_CLOSED && (ev & EPOLLOUT))
            flush(c);
        break;
    default:
        break;
    }
}

void run_ready(void)
{
    struct epoll_event evs[256];
    int n = epoll_wait(G.ep, evs, 256, 0);
    for (int i = 0; i < n; i++)
        dispatch(evs[i].data.ptr, evs[i].events);
}

/* Runs the loop until deadline, or until stop() says so (checked every pass). */
void run_until(double deadline, bool (*stop)(void *), void *arg)
{
    struct epoll_event evs[256];
    while (now_s() < deadline) {
        if (stop != NULL && stop(arg))
            return;
        int n = epoll_wait(G.ep, evs, 256, 5);
        for (int i = 0; i < n; i++)
            dispatch(evs[i].data.ptr, evs[i].events);
    }
}

/* ---- sets ----------------------------------------------------------------------------------- */

struct target *target_new(const char *server, const char *transport, const char *hostport,
                          struct pset *ps)
{
    struct target *t = calloc(1, sizeof(*t));
    if (t == NULL)
        die("out of memory");
    t->server = server;
    t->transport = transport;
    t->tls = strcmp(transport, "wss") == 0;
    t->is_ep = strcmp(server, "epcscf") == 0;
    t->ps = ps;
    snprintf(t->hostport, sizeof(t->hostport), "%s", hostport);
    char host[64];
    unsigned port = 0;
    const char *colon = strrchr(hostport, ':');
    if (colon == NULL || (size_t)(colon - hostport) >= sizeof(host) ||
        sscanf(colon + 1, "%u", &port) != 1 || port == 0 || port > 65535)
        die("%s: not HOST:PORT", hostport);
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    t->addr.sin_family = AF_INET;
    t->addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &t->addr.sin_addr) != 1)
        die("%s: not a numeric IPv4 address", hostport);
    return t;
}

struct set *set_new(struct target *t, size_t n, const char *prefix, char letter)
{
    struct set *s = calloc(1, sizeof(*s));
    if (s == NULL)
        die("out of memory");
    s->t = t;
    s->n = n;
    s->c = calloc(n, sizeof(struct conn));
    if (s->c == NULL)
        die("out of memory");
    for (size_t i = 0; i < n; i++) {
        struct conn *c = &s->c[i];
        c->set = s;
        c->fd = -1;
        c->st = C_IDLE;
        snprintf(c->user, sizeof(c->user), "%s%c%zu", prefix, letter, i);
    }
    return s;
}

/* Stop condition of the paced loops: fewer than *(size_t *)arg steps in flight. */
static bool room(void *arg)
{
    return G.pending < *(size_t *)arg;
}

double ramp(struct set *s, size_t ramp_max, double timeout_s)
{
    double t0 = now_s(), deadline = t0 + timeout_s;
    G.phase = P_RAMP;
    size_t next = 0;
    G.pending = 0;
    double last_print = t0;
    while (now_s() < deadline) {
        while (next < s->n && G.pending < ramp_max) {
            G.pending++;
            conn_start(&s->c[next++]);
        }
        if (next >= s->n && G.pending == 0)
            break;
        size_t limit = next < s->n ? ramp_max : 1; /* all started: wait for the last ones */
        run_until(now_s() + 0.05, room, &limit);
        if (now_s() - last_print > 5) {
            last_print = now_s();
            size_t reg = 0;
            for (size_t i = 0; i < next; i++)
                reg += s->c[i].registered;
            printf("#   %s/%s ramp: %zu of %zu registered, %llu errors\n", s->t->server,
                   s->t->transport, reg, s->n, set_errors(s));
            fflush(stdout);
        }
        if (s->t->ps != NULL && !pset_alive(s->t->ps))
            break;
    }
    for (size_t i = 0; i < s->n; i++) { /* what did not finish in time */
        struct conn *c = &s->c[i];
        if (c->st == C_IDLE) {
            c->st = C_CLOSED;
            s->err[E_TIMEOUT]++;
            set_error(s, "ramp timed out before connection %s started", c->user);
        } else if (c->st != C_CLOSED && (c->waiting || c->st != C_OPEN)) {
            conn_fail(c, E_TIMEOUT, "no answer during the ramp");
        }
    }
    G.pending = 0;
    return now_s() - t0;
}

unsigned long long check_alive(struct set *s, size_t max_out, double timeout_s)
{
    double deadline = now_s() + timeout_s;
    G.phase = P_CHECK;
    G.pending = 0;
    unsigned long long ok0 = s->ok;
    size_t next = 0;
    while (now_s() < deadline) {
        while (next < s->n && G.pending < max_out) {
            struct conn *c = &s->c[next++];
            if (c->st == C_OPEN && !c->waiting) {
                G.pending++;
                send_register(c, false);
            }
        }
        if (next >= s->n && G.pending == 0)
            break;
        size_t limit = next < s->n ? max_out : 1;
        run_until(now_s() + 0.05, room, &limit);
    }
    for (size_t i = 0; i < s->n; i++)
        if (s->c[i].waiting)
            conn_fail(&s->c[i], E_TIMEOUT, "no answer to the liveness re-REGISTER");
    G.pending = 0;
    return s->ok - ok0;
}

size_t set_open(const struct set *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++)
        n += s->c[i].st == C_OPEN;
    return n;
}

void set_close_all(struct set *s)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->c[i].st != C_CLOSED && s->c[i].st != C_IDLE)
            conn_close(&s->c[i]);
}

void print_errors(const struct set *s, const char *what)
{
    if (set_errors(s) == 0)
        return;
    printf("# ERRORS %s/%s %s:", s->t->server, s->t->transport, what);
    for (int i = 0; i < E_N; i++)
        if (s->err[i])
            printf(" %s=%llu", ekind_name[i], s->err[i]);
    for (int i = 0; i < MAX_CODES; i++)
        if (s->codes_n[i])
            printf(" status_%d=%llu", s->codes[i], s->codes_n[i]);
    printf("; first: %s\n", s->first_err);
}

/* The errors of s as a JSON object {"closed":2,"status_503":7,...}. */
json_t *errors_json(const struct set *s)
{
    json_t *o = json_object();
    for (int i = 0; i < E_N; i++)
        if (s->err[i])
            json_object_set_new(o, ekind_name[i], json_integer((json_int_t)s->err[i]));
    for (int i = 0; i < MAX_CODES; i++)
        if (s->codes_n[i]) {
            char k[32];
            snprintf(k, sizeof(k), "status_%d", s->codes[i]);
            json_object_set_new(o, k, json_integer((json_int_t)s->codes_n[i]));
        }
    return o;
}
