/*
 * eP-CSCF configuration: one file of "key = value" lines plus environment overrides
 * (EPCSCF_<KEY> with '.' as '_', upper case), parsed once into a typed struct. Every key,
 * its type, default and meaning is in the table of config.c and in epcscf.conf.sample; the
 * syntax is ims_common/kvconf.h. `epcscf-ref --check-config [FILE]` shows the result.
 *
 * Addresses: listening addresses (ws.listen, wss.listen, mw.listen, http.listen) are
 * host:port with a numeric IPv4 or [IPv6] address (port 0 for an ephemeral port in tests);
 * peers (mw.next_hop, emergency.ecscf) may name a host and need a port 1..65535. Strings
 * are NULL when unset; lists are NULL-terminated arrays with their count.
 */
#ifndef EP_CONFIG_H
#define EP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct ep_config {
    /* W2: WebSocket listeners. At least one of ws_listen / wss_listen. */
    char *ws_listen;          /* ws.listen host:port plain WS; only on loopback; NULL = off */
    char *wss_listen;         /* wss.listen host:port; NULL = off */
    char *wss_cert, *wss_key; /* wss.cert, wss.key: PEM files, required with wss.listen */
    char **allowed_origins;   /* ws.allowed_origins: "scheme://host[:port]", at least one */
    size_t n_allowed_origins;
    long ws_max_message;         /* ws.max_message bytes, default 65535, 1024..1048576 */
    long ws_max_conns;           /* ws.max_connections total, default 20000 */
    long ws_max_conns_per_ip;    /* ws.max_connections_per_ip, default 100 */
    long ws_ping_interval_s;     /* ws.ping_interval default 30, 0 (off)..3600 */
    long ws_ping_timeout_s;      /* ws.ping_timeout default 10, 1..600 */
    long ws_handshake_timeout_s; /* ws.handshake_timeout default 10, 1..120 */
    /* Mw towards the IMS core. */
    char *mw_listen;    /* mw.listen, default 127.0.0.1:5070: worker i binds port + i (UDP) */
    char *mw_advertise; /* mw.advertise host[:port] for Via/Path/Record-Route; = mw.listen */
    char *mw_next_hop;  /* mw.next_hop host:port of the I-CSCF/S-CSCF; required */
    char *mw_transport; /* mw.transport "udp" or "tcp", default udp */
    long mw_t1_ms;      /* mw.t1 default 500, 50..10000 */
    long mw_timeout_ms; /* mw.transaction_timeout default 32000 (64*T1), 500..300000 */
    /* IMS */
    char *realm;              /* ims.realm home network domain, required */
    char *visited_network_id; /* ims.visited_network_id, a copy of realm when unset */
    char *orig_ioi;           /* ims.orig_ioi, optional, for P-Charging-Vector */
    /* Tokens (libimsauth) */
    char *token_issuer;        /* token.issuer, required */
    char *token_audience;      /* token.audience, required */
    char *token_jwks_url;      /* token.jwks_url; exactly one of jwks_url / jwks_file */
    char *token_jwks_file;     /* token.jwks_file */
    char *token_ca_file;       /* token.ca_file optional */
    char *token_authz_server;  /* token.authz_server for the challenge; a copy of issuer */
    char *token_scope;         /* token.scope default "ims" */
    long token_leeway_s;       /* token.leeway default 30, 0..300 */
    long token_expiry_grace_s; /* token.expiry_grace default 30, 0..3600 */
    bool bearer_every_request; /* auth.bearer_every_request default yes */
    bool allow_digest;         /* auth.allow_digest default no: relay Digest/AKA end to end */
    /* Revocation (Redis) */
    char *redis_url;          /* revocation.redis_url (secret); NULL = no revocation check */
    char *revoked_key;        /* revocation.key default "imsauth:revoked" */
    char *revocation_channel; /* revocation.channel default "imsauth:revoked:feed" */
    /* WAF lease API (pooled identities) */
    char *waf_url;           /* waf.url base URL of the WAF public listener, optional */
    char *waf_client_id;     /* waf.client_id, required with waf.url */
    char *waf_client_secret; /* waf.client_secret (secret), required with waf.url */
    long lease_renew_s;      /* waf.lease_renew_interval default 60, 10..86400 */
    /* Emergency */
    char *ecscf;              /* emergency.ecscf host:port, optional */
    char **emergency_numbers; /* emergency.numbers, default "112 911", at least one */
    size_t n_emergency_numbers;
    bool emergency_unregistered; /* emergency.allow_unregistered default no */
    /* Operations */
    char *http_listen;         /* http.listen for /metrics and /healthz, default 127.0.0.1:9090 */
    long workers;              /* workers, default 0 = one per online CPU, 0..256 */
    char *log_level;           /* log.level error|warning|info|debug default info */
    unsigned char source_[64]; /* private: where each key's value came from */
};

enum ep_config_result {
    EP_CONFIG_OK = 0,
    EP_CONFIG_IO,       /* the file could not be read */
    EP_CONFIG_SYNTAX,   /* a line is not "key = value" */
    EP_CONFIG_UNKNOWN,  /* a key (in the file or EPCSCF_* environment) that does not exist */
    EP_CONFIG_REPEATED, /* a key twice in the file */
    EP_CONFIG_VALUE,    /* a value of the wrong type, out of range or malformed (host:port) */
    EP_CONFIG_MISSING,  /* a required key has no value */
    EP_CONFIG_INVALID,  /* values that contradict each other (plain WS off loopback, ...) */
    EP_CONFIG_NOMEM,
};
const char *ep_config_strerror(enum ep_config_result r);

/*
 * Parses text[0..len) (the file's content; may be NULL with len 0 for "no file") and then
 * the EPCSCF_* entries of envp (NULL-terminated "NAME=value" strings, as environ; may be
 * NULL). On success *out is a new config the caller owns and frees with ep_config_free();
 * on failure *out is NULL and detail holds one line naming the key, and the line for file
 * errors. Caps: 1 MiB of text, 4096 bytes per value, 256 items per list.
 */
enum ep_config_result ep_config_parse(const char *text, size_t len, char *const *envp,
                                      struct ep_config **out, char *detail, size_t detail_len);
/* Reads path (NULL: no file) and parses it as above. */
enum ep_config_result ep_config_load(const char *path, char *const *envp, struct ep_config **out,
                                     char *detail, size_t detail_len);
void ep_config_free(struct ep_config *c); /* accepts NULL; wipes the secrets */

/* Writes every key with its value and where it came from (default, file, environment),
 * then warnings (no revocation check, ...) as "# warning: " lines; secrets are shown as
 * "(set)". For --check-config. */
void ep_config_explain(const struct ep_config *c, FILE *f);

/* The documentation table, for the sample file's consistency test: the i-th key's name,
 * its default as written in the sample ("" when none) and whether it must be set. false
 * past the end. */
bool ep_config_key(size_t i, const char **name, const char **default_value, bool *required);
/* The i-th key's one-line description, as written above it in the sample; NULL past the
 * end. */
const char *ep_config_key_doc(size_t i);

/*
 * Splits "host:port": host an IPv4 address, a bracketed IPv6 address or a DNS name; port
 * 0..65535. Writes the host without brackets into host[hl] and the port into *port.
 * 0 on success, -1 when malformed or the host does not fit.
 */
int ep_config_hostport(const char *s, char *host, size_t hl, unsigned *port);

#endif
