/*
 * sipmsg: the SIP-over-WebSocket message parser of the eP-CSCF (RFC 7118: one complete SIP
 * message per WebSocket message, so there is no framing and no stream resynchronisation).
 *
 * The bytes are checked strictly first (size caps, control characters, start line, header
 * names, no line folding, Content-Length, a single Authorization and Proxy-Authorization),
 * because libosip2 is lenient; only then does libosip2 parse them, and the mandatory headers
 * of RFC 3261 8.1.1 are checked on its result.
 *
 * libosip2 5.3 silently drops `Authorization: Bearer <token68>` (it keeps only the
 * auth-param form), so the raw values of Authorization and Proxy-Authorization are copied
 * from the bytes and are the only place to read credentials from: never read
 * osip_message_t's authorizations / proxy_authorizations lists.
 *
 * Thread safety: no mutable global state apart from the one-time libosip2 initialisation
 * behind pthread_once (ep_sip_init). Different messages may be parsed and used on different
 * threads at the same time; one ep_sipmsg is not synchronised.
 *
 * Secrets: error details never contain bytes of the message (no header values, so no
 * tokens), only fixed text, header names and line numbers. ep_sipmsg_free wipes the raw
 * credential copies and libosip2's copy of the raw message.
 */
#ifndef EP_SIPMSG_H
#define EP_SIPMSG_H

#include <osipparser2/osip_message.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Defaults used for a NULL limits pointer or a zero field. */
#define EP_SIPMSG_DEFAULT_MAX_MESSAGE 65535u /* whole WebSocket message, bytes */
#define EP_SIPMSG_DEFAULT_MAX_HEADER  8192u  /* start line + headers + empty line, bytes */
#define EP_SIPMSG_DEFAULT_MAX_HEADERS 128u   /* header lines */

/* Caps applied before anything is allocated. Zero fields take the defaults above. */
struct ep_sipmsg_limits {
    size_t max_message;        /* larger message -> 513 Message Too Large */
    size_t max_header_section; /* larger header section -> 400 */
    unsigned max_headers;      /* more header lines -> 400 */
};

/* Why a message was refused. status/reason are what a proxy answers to a request (for a
 * response nothing is sent back: it is dropped). reason points to a static string. detail
 * is one line of fixed text, header names and line numbers: never a header value. */
struct ep_sip_error {
    int status;         /* 400 or 513 */
    const char *reason; /* "Bad Request", "Message Too Large" */
    char detail[160];   /* NUL-terminated */
};

/* Opaque: the parsed osip_message_t plus the raw Authorization and Proxy-Authorization. */
struct ep_sipmsg;

/*
 * Initialises libosip2's parser (its header table) exactly once per process, through
 * pthread_once; safe to call from any thread any number of times. ep_sipmsg_parse calls it
 * itself, so calling it up front is only needed to fail early. Other code of the process
 * must not call parser_init() or osip_init() concurrently with the first call (osip_init
 * would re-run parser_init, which is not thread-safe); call ep_sip_init() first.
 * Returns 0, or -1 when libosip2's initialisation failed (then every parse fails with 500).
 */
int ep_sip_init(void);

/*
 * Parses buf[0..len): exactly one complete SIP message (request or response), not
 * NUL-terminated, any bytes. lim may be NULL (defaults). On success returns 0 and stores
 * a new message in *out, owned by the caller (free with ep_sipmsg_free). On failure
 * returns -1, leaves *out untouched and fills *err when err is not NULL. The buffer is
 * not retained. A message without Content-Length has as body everything after the empty
 * line (RFC 7118 5); with Content-Length the value must equal that length exactly.
 */
int ep_sipmsg_parse(const uint8_t *buf, size_t len, const struct ep_sipmsg_limits *lim,
                    struct ep_sipmsg **out, struct ep_sip_error *err);

/* Frees m (NULL is accepted), wiping the credential copies first. */
void ep_sipmsg_free(struct ep_sipmsg *m);

/* libosip2's parsed message, borrowed: owned by m, valid until ep_sipmsg_free(m); the
 * caller may modify it (e.g. before forwarding). Its authorization lists are incomplete
 * (see above). */
osip_message_t *ep_sipmsg_osip(struct ep_sipmsg *m);

/* Hands libosip2's parsed message over to the caller (free with osip_message_free), with
 * its raw copy of the bytes wiped and dropped; m keeps only the credential copies and is
 * still to be freed with ep_sipmsg_free. Saves a deep copy when a message is forwarded. */
osip_message_t *ep_sipmsg_detach(struct ep_sipmsg *m);

/* The raw value (surrounding whitespace trimmed) of the one Authorization header, or NULL
 * when there is none. Borrowed from m, valid until ep_sipmsg_free(m). It is a credential:
 * never log it. */
const char *ep_sipmsg_authorization(const struct ep_sipmsg *m);

/* As ep_sipmsg_authorization, for the one Proxy-Authorization header. */
const char *ep_sipmsg_proxy_authorization(const struct ep_sipmsg *m);

/* True for a request, false for a response. */
bool ep_sipmsg_is_request(const struct ep_sipmsg *m);

#endif
