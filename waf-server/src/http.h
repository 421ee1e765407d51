/*
 * The HTTP listeners of waf-server on libmicrohttpd: request bodies collected up to a cap
 * (413 beyond), routes from a table, responses built by the handlers. TLS (GnuTLS inside
 * libmicrohttpd, TLS 1.2 or newer) when a certificate is configured; plain HTTP otherwise,
 * which the configuration allows only on loopback addresses.
 */
#ifndef WAF_HTTP_H
#define WAF_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct MHD_Connection;

/* One request, as a handler sees it (everything borrowed for the call). */
struct waf_req {
    const char *method, *path; /* path without the query */
    const char *body;          /* NUL-terminated copy of the body ("" when none) */
    size_t body_len;
    const char *query;     /* raw query string after '?' ("" when none; at most 8 KiB, longer
                              queries get 414 before a handler runs) */
    const char *client_ip; /* numeric */
    struct MHD_Connection *conn;
};

/* A request header value, NULL when absent. */
const char *waf_req_header(const struct waf_req *rq, const char *name);

#define WAF_RESP_MAX_HEADERS 8

/* What a handler answers. body is owned by the response (malloc'd) or static when
 * body_static is set. */
struct waf_resp {
    int status;
    const char *content_type;
    char *body;
    size_t body_len;
    bool body_static;
    const char *hname[WAF_RESP_MAX_HEADERS];
    char *hvalue[WAF_RESP_MAX_HEADERS]; /* malloc'd */
    int nheaders;
};

/* Sets the body to a copy of s (len bytes) / takes ownership of a malloc'd s / points to
 * a static string. */
void waf_resp_text(struct waf_resp *rs, int status, const char *type, const char *s, size_t len);
void waf_resp_take(struct waf_resp *rs, int status, const char *type, char *s, size_t len);
void waf_resp_static(struct waf_resp *rs, int status, const char *type, const char *s);
/* Adds a header (name static, value copied). */
void waf_resp_header(struct waf_resp *rs, const char *name, const char *value);

typedef void (*waf_handler)(void *app, const struct waf_req *rq, struct waf_resp *rs);

struct waf_route {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* exact path; a trailing '*' matches any rest */
    waf_handler fn;
};

struct waf_http_opts {
    const char *listen;                       /* host:port (validated by the config) */
    const char *tls_cert_file, *tls_key_file; /* both or neither */
    int threads;
    size_t max_body;
    unsigned connection_limit, per_ip_limit, timeout_s;
    const struct waf_route *routes; /* terminated by a NULL method */
    /* Optional: told of every response (route index or -1, status, ns from the complete
     * request to the queued response). */
    void (*observe)(void *app, int listener, int route, int status, int64_t ns);
    int listener; /* handed to observe */
    void *app;    /* handed to every handler */
};

struct waf_http;

/* Binds and starts serving. NULL with detail on failure. */
struct waf_http *waf_http_start(const struct waf_http_opts *o, char *detail, size_t detail_len);
/* The port it listens on (useful with port 0). */
uint16_t waf_http_port(const struct waf_http *h);
void waf_http_stop(struct waf_http *h); /* accepts NULL */

#endif
