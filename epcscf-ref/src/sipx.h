/*
 * sipx: small SIP helpers of the eP-CSCF on top of libosip2 (headers by name, Via and Route
 * edits, response text, branches and icids). Functions returning char * return memory the
 * caller frees with g_free(); osip_message_t arguments are borrowed.
 */
#ifndef EP_SIPX_H
#define EP_SIPX_H

#include "ep.h"

#include <osipparser2/osip_message.h>

/* First value of a header libosip2 keeps in its generic list (Path, Expires, Require...),
 * compact form accepted; NULL when absent. Borrowed from m. */
const char *ep_hdr(osip_message_t *m, const char *name);
/* Removes every such header. */
void ep_hdr_del(osip_message_t *m, const char *name);
/* Adds one header (name: value) after the existing ones. */
void ep_hdr_add(osip_message_t *m, const char *name, const char *value);
/* Removes every header of the name, then adds one. */
void ep_hdr_set(osip_message_t *m, const char *name, const char *value);
/* All values of a header as separate entries (comma lists split outside <> and quotes),
 * trimmed; NULL-terminated, free with g_strfreev. Never NULL. */
char **ep_hdr_values(osip_message_t *m, const char *name);

/* Removes one option tag (e.g. "sec-agree") from a list header such as Require; the
 * header goes when nothing is left. */
void ep_hdr_drop_token(osip_message_t *m, const char *name, const char *token);

/*
 * A response from the core as the WIC gets it, made from its raw bytes (already accepted by
 * ep_sipmsg_parse): the first Via line (ours) and the P-Charging-Vector and
 * P-Charging-Function-Addresses lines removed, everything else byte for byte. NULL when the
 * first Via line holds more than one value (the caller then rebuilds the message).
 */
char *ep_raw_for_wic(const uint8_t *buf, size_t len, size_t *outlen);

/* Removes every Authorization and Proxy-Authorization (parsed and raw). */
void ep_drop_credentials(osip_message_t *m);
/* Call-ID as one string (number@host) in buf[n]; false when absent. */
bool ep_call_id(osip_message_t *m, char *buf, size_t n);

/* The message as text (libosip2 rebuilds it; Content-Length recomputed). *len set. */
char *ep_msg_text(osip_message_t *m, size_t *len);

/* A new unique branch (z9hG4bK...) of worker w. out must hold 48 bytes. */
void ep_new_branch(struct ep_worker *w, char out[48]);
/* A new random hex string of 2 * nbytes characters. */
void ep_rand_hex(char *out, size_t nbytes);

/* Prepends our Via (transport "UDP" or "WSS") with branch. */
void ep_via_push(osip_message_t *m, const char *transport, const char *host, unsigned port,
                 const char *branch);
/* Removes the top Via. */
void ep_via_pop(osip_message_t *m);
/* Branch of the top Via, or NULL. Borrowed. */
const char *ep_via_branch(osip_message_t *m);
/* Adds received and rport to the top Via (the WIC's hop). */
void ep_via_received(osip_message_t *m, const char *ip, unsigned port);
/* Decrements Max-Forwards (70 when absent); returns the value it had (0: do not forward). */
int ep_max_forwards(osip_message_t *m);

/* True when u is one of our Mw addresses (advertised host, port of any worker). */
bool ep_uri_is_us(const struct ep_app *app, const osip_uri_t *u);
/* Text of a URI. */
char *ep_uri_text(const osip_uri_t *u);
/* A numeric address from a URI host:port (5060 default); false for names. */
bool ep_uri_addr(const osip_uri_t *u, struct sockaddr_storage *ss, socklen_t *len);

/*
 * The text of a response to req: Via, From, To (with a tag added for status > 100 when
 * absent), Call-ID, CSeq copied; extra ("Name: value\r\n" lines, may be NULL) appended.
 */
char *ep_response_text(osip_message_t *req, int status, const char *reason, const char *extra,
                       size_t *len);

/*
 * Best-effort 400 for bytes that did not parse: those of the Via, From, To, Call-ID and CSeq
 * lines that are present and printable are copied when the start line does not look like a
 * response. NULL for a response (never answered): the message is dropped.
 */
char *ep_bad_request_text(const uint8_t *buf, size_t len, int status, const char *reason,
                          size_t *outlen);

#endif
