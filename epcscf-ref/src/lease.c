/* The WAF lease API client (see lease.h). */
#include "lease.h"

#include <glib.h>
#include <openssl/crypto.h> /* OPENSSL_cleanse: wipes secrets */
#include <curl/curl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#define MAX_ATTEMPTS     4    /* first try included */
#define BACKOFF_FIRST_MS 250  /* doubled after each failure ... */
#define BACKOFF_MAX_MS   4000 /* ... up to this */
#define RETRY_AFTER_MAX  10   /* s: a longer Retry-After is cut to this */
#define URL_MAX          1000 /* waf_url */
#define ID_MAX           128  /* client id, as the WAF takes it */
#define SECRET_MAX       256  /* client secret, as the WAF takes it */
#define BODY_KEEP        200  /* bytes of an error answer kept for the log */

enum op { OP_RENEW, OP_RELEASE };
static const char *const op_name[] = {"renew", "release"};

struct req {
    struct req *next;
    enum op op;
    unsigned attempts;
    int64_t due_ms; /* not before (retries) */
    char id[EP_LEASE_ID_MAX + 1];
};

struct ep_lease_client {
    char *base; /* waf_url without a trailing '/' */
    unsigned timeout_ms;
    size_t queue_max;
    void (*log)(int level, const char *msg, void *arg);
    void *log_arg;

    CURL *curl;                 /* the thread's only */
    struct curl_slist *headers; /* the Authorization header holds the secret: wiped */
    char body[BODY_KEEP + 1];
    size_t body_len;

    pthread_t thread;
    pthread_mutex_t lock; /* the queue, stopping, deadline_ms, drop_logged */
    pthread_cond_t cond;
    struct req *head, *tail;
    size_t queued;
    bool stopping, drop_logged;
    int64_t deadline_ms;

    atomic_uint_least64_t renewed, released, failed, dropped;
};

/* Monotonic milliseconds (GLib's clock, as the rest of the eP-CSCF). */
static int64_t now_ms(void)
{
    return g_get_monotonic_time() / 1000;
}

static void llog(const struct ep_lease_client *c, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void llog(const struct ep_lease_client *c, int level, const char *fmt, ...)
{
    if (c->log == NULL)
        return;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    c->log(level, msg, c->log_arg);
}

static void detail_set(char *detail, size_t dlen, const char *msg)
{
    if (detail && dlen)
        snprintf(detail, dlen, "%s", msg);
}

static bool id_ok(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > EP_LEASE_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f') ||
              (id[i] >= 'A' && id[i] <= 'F') || id[i] == '-'))
            return false;
    return true;
}

/* https://..., or http:// on a loopback host; no user info, query or fragment. */
static bool url_ok(const char *u)
{
    size_t n = strlen(u);
    if (n > URL_MAX || strpbrk(u, "@?# \t\r\n") != NULL)
        return false;
    if (strncmp(u, "https://", 8) == 0)
        return n > 8 && u[8] != '/';
    if (strncmp(u, "http://", 7) != 0)
        return false;
    const char *h = u + 7;
    size_t hl = h[0] == '[' ? strcspn(h, "]") + 1 : strcspn(h, ":/");
    static const char *const loopback[] = {"127.0.0.1", "localhost", "[::1]"};
    for (size_t i = 0; i < sizeof(loopback) / sizeof(loopback[0]); i++)
        if (hl == strlen(loopback[i]) && strncmp(h, loopback[i], hl) == 0)
            return h[hl] == '\0' || h[hl] == ':' || h[hl] == '/';
    return false;
}

/* RFC 6749 2.3.1: application/x-www-form-urlencoded, unreserved characters kept. */
static size_t form_encode(const char *s, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    return o;
}

static size_t base64(const unsigned char *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? tab[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

/* The request headers: Basic client authentication, the (empty) form body's type. */
static struct curl_slist *make_headers(const char *id, const char *secret)
{
    char pair[3 * (ID_MAX + SECRET_MAX) + 2];
    char hdr[sizeof("Authorization: Basic ") + sizeof(pair) / 3 * 4 + 4];
    size_t n = form_encode(id, pair);
    pair[n++] = ':';
    n += form_encode(secret, pair + n);
    size_t h = strlen("Authorization: Basic ");
    memcpy(hdr, "Authorization: Basic ", h);
    base64((const unsigned char *)pair, n, hdr + h);
    struct curl_slist *l = curl_slist_append(NULL, hdr);
    struct curl_slist *l2 =
        l ? curl_slist_append(l, "Content-Type: application/x-www-form-urlencoded") : NULL;
    struct curl_slist *l3 = l2 ? curl_slist_append(l2, "Accept: application/json") : NULL;
    OPENSSL_cleanse(pair, sizeof(pair));
    OPENSSL_cleanse(hdr, sizeof(hdr));
    if (l3 == NULL && l) {
        OPENSSL_cleanse(l->data, strlen(l->data));
        curl_slist_free_all(l);
    }
    return l3;
}

static void free_headers(struct curl_slist *l)
{
    for (struct curl_slist *p = l; p; p = p->next)
        OPENSSL_cleanse(p->data, strlen(p->data));
    curl_slist_free_all(l);
}

/* Keeps the start of the answer (for the log of a failure). */
static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
    struct ep_lease_client *c = arg;
    size_t n = size * nmemb, room = BODY_KEEP - c->body_len;
    size_t take = n < room ? n : room;
    memcpy(c->body + c->body_len, p, take);
    c->body_len += take;
    return n;
}

enum outcome { DONE_OK, DONE_FAILED, RETRY };

/* One attempt of r; *retry_after_s from the answer (0 when none). */
static enum outcome attempt(struct ep_lease_client *c, const struct req *r, long timeout_ms,
                            long *retry_after_s)
{
    char url[URL_MAX + EP_LEASE_ID_MAX + 32];
    snprintf(url, sizeof(url), "%s/leases/%s/%s", c->base, r->id, op_name[r->op]);
    c->body_len = 0;
    curl_easy_setopt(c->curl, CURLOPT_URL, url);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    CURLcode rc = curl_easy_perform(c->curl);
    long status = 0;
    curl_off_t ra = 0;
    *retry_after_s = 0;
    if (rc != CURLE_OK) {
        llog(c, LOG_WARNING, "lease %s %s (attempt %u): %s", op_name[r->op], r->id, r->attempts,
             curl_easy_strerror(rc));
        return RETRY;
    }
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status <= 299)
        return DONE_OK;
    c->body[c->body_len] = '\0';
    for (size_t i = 0; i < c->body_len; i++) /* one line */
        if (c->body[i] == '\n' || c->body[i] == '\r')
            c->body[i] = ' ';
    if (r->op == OP_RELEASE && status == 409) {
        llog(c, LOG_INFO, "lease release %s: already ended", r->id);
        return DONE_OK;
    }
    llog(c, status >= 500 ? LOG_WARNING : LOG_ERR, "lease %s %s (attempt %u): HTTP %ld %s",
         op_name[r->op], r->id, r->attempts, status, c->body);
    if (status >= 500 && status <= 599) {
        if (curl_easy_getinfo(c->curl, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
            *retry_after_s = ra > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : (long)ra;
        return RETRY;
    }
    return DONE_FAILED;
}

/* Under lock: the first request due at now (unlinked), else NULL and *next_due the
 * earliest due time (INT64_MAX when the queue is empty). */
static struct req *take_due(struct ep_lease_client *c, int64_t now, int64_t *next_due)
{
    *next_due = INT64_MAX;
    for (struct req **pp = &c->head, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->next) {
        struct req *r = *pp;
        if (r->due_ms <= now) {
            *pp = r->next;
            if (c->tail == r)
                c->tail = prev;
            c->queued--;
            return r;
        }
        if (r->due_ms < *next_due)
            *next_due = r->due_ms;
    }
    return NULL;
}

static void append(struct ep_lease_client *c, struct req *r)
{
    r->next = NULL;
    if (c->tail)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    c->queued++;
}

static void wait_until(struct ep_lease_client *c, int64_t when_ms)
{
    if (when_ms == INT64_MAX) {
        pthread_cond_wait(&c->cond, &c->lock);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t d = when_ms - now_ms();
    if (d <= 0)
        return;
    ts.tv_sec += d / 1000;
    ts.tv_nsec += (long)(d % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&c->cond, &c->lock, &ts);
}

/* Under lock, stopping and out of time: what is left counts as dropped. */
static void drop_all(struct ep_lease_client *c)
{
    if (c->queued)
        llog(c, LOG_WARNING, "lease client stopped with %zu requests unsent", c->queued);
    atomic_fetch_add(&c->dropped, c->queued);
    while (c->head) {
        struct req *r = c->head;
        c->head = r->next;
        free(r);
    }
    c->tail = NULL;
    c->queued = 0;
}

static void *worker(void *arg)
{
    struct ep_lease_client *c = arg;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        int64_t now = now_ms(), next_due;
        if (c->stopping && (c->head == NULL || now >= c->deadline_ms)) {
            drop_all(c);
            break;
        }
        struct req *r = take_due(c, now, &next_due);
        if (r == NULL) {
            wait_until(c, c->stopping && c->deadline_ms < next_due ? c->deadline_ms : next_due);
            continue;
        }
        long timeout = (long)c->timeout_ms;
        if (c->stopping && c->deadline_ms - now < timeout)
            timeout = (long)(c->deadline_ms - now);
        pthread_mutex_unlock(&c->lock);

        r->attempts++;
        long retry_after_s;
        enum outcome o = attempt(c, r, timeout, &retry_after_s);
        if (o == RETRY && r->attempts >= MAX_ATTEMPTS) {
            llog(c, LOG_ERR, "lease %s %s: given up after %u attempts", op_name[r->op], r->id,
                 r->attempts);
            o = DONE_FAILED;
        }
        if (o == DONE_OK)
            atomic_fetch_add(r->op == OP_RENEW ? &c->renewed : &c->released, 1);
        else if (o == DONE_FAILED)
            atomic_fetch_add(&c->failed, 1);

        pthread_mutex_lock(&c->lock);
        if (o == RETRY) { /* back in the queue even when it is full: it was in it already */
            int64_t backoff = (int64_t)BACKOFF_FIRST_MS << (r->attempts - 1);
            if (backoff > BACKOFF_MAX_MS)
                backoff = BACKOFF_MAX_MS;
            if (retry_after_s * 1000 > backoff)
                backoff = retry_after_s * 1000;
            r->due_ms = now_ms() + backoff;
            append(c, r);
        } else {
            free(r);
        }
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static void enqueue(struct ep_lease_client *c, enum op op, const char *lease_id)
{
    if (c == NULL)
        return;
    if (!id_ok(lease_id)) {
        atomic_fetch_add(&c->failed, 1);
        llog(c, LOG_ERR, "lease %s refused: the lease id is not 1..%u of [0-9a-fA-F-]", op_name[op],
             EP_LEASE_ID_MAX);
        return;
    }
    struct req *r = calloc(1, sizeof(*r));
    if (r) {
        r->op = op;
        snprintf(r->id, sizeof(r->id), "%s", lease_id);
    }
    pthread_mutex_lock(&c->lock);
    if (op == OP_RELEASE) { /* a queued renewal of this lease is moot now */
        for (struct req **pp = &c->head, *prev = NULL; *pp;) {
            struct req *q = *pp;
            if (q->op == OP_RENEW && strcmp(q->id, lease_id) == 0) {
                *pp = q->next;
                if (c->tail == q)
                    c->tail = prev;
                c->queued--;
                free(q);
            } else {
                prev = q;
                pp = &q->next;
            }
        }
    }
    if (r == NULL || c->queued >= c->queue_max || c->stopping) {
        bool first = !c->drop_logged;
        c->drop_logged = true;
        pthread_mutex_unlock(&c->lock);
        free(r);
        atomic_fetch_add(&c->dropped, 1);
        if (first)
            llog(c, LOG_WARNING, "lease %s %s dropped: %s", op_name[op], lease_id,
                 r ? "the queue is full" : "out of memory");
        return;
    }
    c->drop_logged = false;
    append(c, r);
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

void ep_lease_renew(struct ep_lease_client *c, const char *lease_id)
{
    enqueue(c, OP_RENEW, lease_id);
}

void ep_lease_release(struct ep_lease_client *c, const char *lease_id)
{
    enqueue(c, OP_RELEASE, lease_id);
}

void ep_lease_stats(const struct ep_lease_client *c, struct ep_lease_stats *s)
{
    memset(s, 0, sizeof(*s));
    if (c == NULL)
        return;
    s->renewed = atomic_load(&c->renewed);
    s->released = atomic_load(&c->released);
    s->failed = atomic_load(&c->failed);
    s->dropped = atomic_load(&c->dropped);
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void free_client(struct ep_lease_client *c)
{
    if (c->curl)
        curl_easy_cleanup(c->curl);
    free_headers(c->headers);
    free(c->base);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

int ep_lease_client_start(struct ep_lease_client **out, const struct ep_lease_opts *o, char *detail,
                          size_t dlen)
{
    if (out == NULL || o == NULL || o->waf_url == NULL || o->client_id == NULL ||
        o->client_secret == NULL) {
        detail_set(detail, dlen, "waf_url, client_id and client_secret are required");
        return -1;
    }
    if (!url_ok(o->waf_url)) {
        detail_set(detail, dlen,
                   "waf_url must be https://host[:port][/path], or http:// on 127.0.0.1, "
                   "localhost or [::1]");
        return -1;
    }
    size_t il = strlen(o->client_id), sl = strlen(o->client_secret);
    if (il == 0 || il > ID_MAX || sl == 0 || sl > SECRET_MAX) {
        detail_set(detail, dlen, "client_id must be 1..128 and client_secret 1..256 bytes");
        return -1;
    }
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) {
        detail_set(detail, dlen, "libcurl initialisation failed");
        return -1;
    }
    struct ep_lease_client *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        detail_set(detail, dlen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&c->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cond, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&c->renewed, 0);
    atomic_init(&c->released, 0);
    atomic_init(&c->failed, 0);
    atomic_init(&c->dropped, 0);
    c->timeout_ms = o->timeout_ms ? o->timeout_ms : EP_LEASE_DEFAULT_TIMEOUT_MS;
    c->queue_max = o->queue_max ? o->queue_max : EP_LEASE_DEFAULT_QUEUE_MAX;
    c->log = o->log;
    c->log_arg = o->log_arg;
    c->base = strdup(o->waf_url);
    if (c->base)
        for (size_t n = strlen(c->base); n > 0 && c->base[n - 1] == '/'; n--)
            c->base[n - 1] = '\0';
    c->headers = make_headers(o->client_id, o->client_secret);
    c->curl = curl_easy_init();
    if (c->base == NULL || c->headers == NULL || c->curl == NULL) {
        detail_set(detail, dlen, "out of memory");
        goto fail;
    }
    CURL *h = c->curl;
    bool ok = curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
              curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
              curl_easy_setopt(h, CURLOPT_POST, 1L) == CURLE_OK &&
              curl_easy_setopt(h, CURLOPT_POSTFIELDS, "") == CURLE_OK &&
              curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L) == CURLE_OK &&
              curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->headers) == CURLE_OK &&
              curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK &&
              curl_easy_setopt(h, CURLOPT_WRITEDATA, c) == CURLE_OK &&
              curl_easy_setopt(h, CURLOPT_USERAGENT, "epcscf-ref") == CURLE_OK &&
              curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L) == CURLE_OK &&
              (o->ca_file == NULL || curl_easy_setopt(h, CURLOPT_CAINFO, o->ca_file) == CURLE_OK);
    if (!ok) {
        detail_set(detail, dlen, "libcurl refused an option (is ca_file supported?)");
        goto fail;
    }
    if (pthread_create(&c->thread, NULL, worker, c) != 0) {
        detail_set(detail, dlen, "cannot start the lease client thread");
        goto fail;
    }
    *out = c;
    return 0;
fail:
    free_client(c);
    return -1;
}

void ep_lease_client_stop(struct ep_lease_client *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->lock);
    c->stopping = true;
    c->deadline_ms = now_ms() + c->timeout_ms;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    free_client(c);
}
