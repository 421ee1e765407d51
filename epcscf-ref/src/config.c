/* eP-CSCF configuration: the key table, the value checks and the cross checks (see
 * config.h); the file syntax, typed values and environment overrides are
 * ims_common/kvconf. */
#include "config.h"

#include "ims_common/kvconf.h"
#include "ims_common/redis_url.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- value checks ---- */

#define LISTEN "host:port with a numeric IPv4 or [IPv6] address"
#define PEER   "host:port (IPv4, [IPv6] or a name; port 1..65535)"
#define URL    "an http:// or https:// URL"

/* host[:port] for Via, Path and Record-Route. */
static bool advertise_ok(const char *v)
{
    return ims_kv_valid_peer(v) || ims_kv_host_ok(v);
}

/* An origin as browsers send it (RFC 6454 6.2): lowercase "http" or "https", "://", a host
 * and an optional port, nothing after. */
static bool origin_ok(const char *v)
{
    const char *rest;
    if (strncmp(v, "https://", 8) == 0)
        rest = v + 8;
    else if (strncmp(v, "http://", 7) == 0)
        rest = v + 7;
    else
        return false;
    for (const char *p = rest; *p; p++)
        if (isupper((unsigned char)*p) || *p == '/' || *p == '?' || *p == '#' || *p == '@')
            return false;
    char host[256];
    unsigned port;
    if (ims_kv_hostport(rest, host, sizeof(host), &port) == 0)
        return port > 0;
    return ims_kv_host_ok(rest);
}

/* A dialable emergency number: 1..15 digits. */
static bool number_ok(const char *v)
{
    size_t n = strlen(v);
    return n >= 1 && n <= 15 && strspn(v, "0123456789") == n;
}

static bool transport_ok(const char *v)
{
    return strcmp(v, "udp") == 0 || strcmp(v, "tcp") == 0;
}

static bool log_level_ok(const char *v)
{
    return strcmp(v, "error") == 0 || strcmp(v, "warning") == 0 || strcmp(v, "info") == 0 ||
           strcmp(v, "debug") == 0;
}

static bool url_ok(const char *v)
{
    size_t skip = strncmp(v, "https://", 8) == 0 ? 8 : strncmp(v, "http://", 7) == 0 ? 7 : 0;
    return skip && v[skip] && v[skip] != '/' && strchr(v, ' ') == NULL;
}

/* A domain name (the realm), not an address. */
static bool domain_ok(const char *v)
{
    return v[0] != '[' && strchr(v, ':') == NULL && ims_kv_host_ok(v);
}

/* Printable ASCII that fits a SIP header parameter when quoted: no '"' nor '\'. */
static bool text_ok(const char *v)
{
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p < 0x20 || *p > 0x7e || *p == '"' || *p == '\\')
            return false;
    return true;
}

/* One scope token (RFC 6749 3.3): %x21 / %x23-5B / %x5D-7E. */
static bool scope_ok(const char *v)
{
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p < 0x21 || *p > 0x7e || *p == '"' || *p == '\\')
            return false;
    return true;
}

static bool redis_ok(const char *v)
{
    struct ims_redis_url u;
    bool ok = ims_redis_url_parse(v, &u);
    memset(u.password, 0, sizeof(u.password));
    return ok;
}

/* ---- the table ---- */

#define S(field) offsetof(struct ep_config, field)
static const struct ims_kv_key keys[] = {
    /* WebSocket (W2) */
    {.name = "ws.listen",
     .type = IMS_KV_STR,
     .offset = S(ws_listen),
     .valid = ims_kv_valid_listen,
     .expect = LISTEN,
     .doc = "plain WebSocket listener host:port, loopback only (behind a TLS proxy); unset: off"},
    {.name = "wss.listen",
     .type = IMS_KV_STR,
     .offset = S(wss_listen),
     .valid = ims_kv_valid_listen,
     .expect = LISTEN,
     .doc = "secure WebSocket listener host:port; unset: off (one of ws/wss is needed)"},
    {.name = "wss.cert",
     .type = IMS_KV_STR,
     .offset = S(wss_cert),
     .doc = "PEM certificate chain of wss.listen"},
    {.name = "wss.key",
     .type = IMS_KV_STR,
     .offset = S(wss_key),
     .secret = true,
     .doc = "PEM private key of wss.listen"},
    {.name = "ws.allowed_origins",
     .type = IMS_KV_LIST,
     .offset = S(allowed_origins),
     .count_offset = S(n_allowed_origins),
     .required = true,
     .valid = origin_ok,
     .expect = "an origin scheme://host[:port] (lowercase http or https, no path)",
     .doc = "origins (WWSF pages) allowed to open a WebSocket, separated by spaces or commas"},
    {.name = "ws.max_message",
     .type = IMS_KV_INT,
     .offset = S(ws_max_message),
     .def = "65535",
     .min = 1024,
     .max = 1048576,
     .doc = "largest WebSocket message (one SIP message) in bytes"},
    {.name = "ws.max_connections",
     .type = IMS_KV_INT,
     .offset = S(ws_max_conns),
     .def = "20000",
     .min = 1,
     .max = 1000000,
     .doc = "open WebSocket connections in total; more are refused"},
    {.name = "ws.max_connections_per_ip",
     .type = IMS_KV_INT,
     .offset = S(ws_max_conns_per_ip),
     .def = "100",
     .min = 1,
     .max = 1000000,
     .doc = "open WebSocket connections per client IP address"},
    {.name = "ws.ping_interval",
     .type = IMS_KV_INT,
     .offset = S(ws_ping_interval_s),
     .def = "30",
     .min = 0,
     .max = 3600,
     .doc = "seconds between WebSocket pings on an idle connection; 0: no pings"},
    {.name = "ws.ping_timeout",
     .type = IMS_KV_INT,
     .offset = S(ws_ping_timeout_s),
     .def = "10",
     .min = 1,
     .max = 600,
     .doc = "seconds to wait for the pong before closing the connection"},
    {.name = "ws.handshake_timeout",
     .type = IMS_KV_INT,
     .offset = S(ws_handshake_timeout_s),
     .def = "10",
     .min = 1,
     .max = 120,
     .doc = "seconds for the TLS and WebSocket handshakes of a new connection"},
    /* Mw */
    {.name = "mw.listen",
     .type = IMS_KV_STR,
     .offset = S(mw_listen),
     .def = "127.0.0.1:5070",
     .required = true,
     .valid = ims_kv_valid_listen,
     .expect = LISTEN,
     .doc = "Mw address host:port towards the IMS core; worker i binds port + i"},
    {.name = "mw.advertise",
     .type = IMS_KV_STR,
     .offset = S(mw_advertise),
     .valid = advertise_ok,
     .expect = "host[:port] (IPv4, [IPv6] or a name)",
     .doc = "host[:port] put in Via, Path and Record-Route; unset: mw.listen"},
    {.name = "mw.next_hop",
     .type = IMS_KV_STR,
     .offset = S(mw_next_hop),
     .required = true,
     .valid = ims_kv_valid_peer,
     .expect = PEER,
     .doc = "host:port of the I-CSCF or S-CSCF every request towards the core goes to"},
    {.name = "mw.transport",
     .type = IMS_KV_STR,
     .offset = S(mw_transport),
     .def = "udp",
     .required = true,
     .valid = transport_ok,
     .expect = "udp or tcp",
     .doc = "udp or tcp"},
    {.name = "mw.t1",
     .type = IMS_KV_INT,
     .offset = S(mw_t1_ms),
     .def = "500",
     .min = 50,
     .max = 10000,
     .doc = "SIP timer T1 in milliseconds (RFC 3261 17)"},
    {.name = "mw.transaction_timeout",
     .type = IMS_KV_INT,
     .offset = S(mw_timeout_ms),
     .def = "32000",
     .min = 500,
     .max = 300000,
     .doc = "milliseconds before a transaction towards the core times out (64*T1)"},
    /* IMS */
    {.name = "ims.realm",
     .type = IMS_KV_STR,
     .offset = S(realm),
     .required = true,
     .valid = domain_ok,
     .expect = "a domain name",
     .doc = "home network domain: the realm of the TNA REGISTER and of the challenges"},
    {.name = "ims.visited_network_id",
     .type = IMS_KV_STR,
     .offset = S(visited_network_id),
     .valid = text_ok,
     .expect = "printable text without '\"' or '\\'",
     .doc = "P-Visited-Network-ID value; unset: ims.realm"},
    {.name = "ims.orig_ioi",
     .type = IMS_KV_STR,
     .offset = S(orig_ioi),
     .valid = text_ok,
     .expect = "printable text without '\"' or '\\'",
     .doc = "orig-ioi of P-Charging-Vector; unset: none"},
    /* Tokens */
    {.name = "token.issuer",
     .type = IMS_KV_STR,
     .offset = S(token_issuer),
     .required = true,
     .valid = url_ok,
     .expect = URL,
     .doc = "issuer of the access tokens (the WAF's issuer, compared byte for byte)"},
    {.name = "token.audience",
     .type = IMS_KV_STR,
     .offset = S(token_audience),
     .required = true,
     .doc = "audience the tokens must carry (this eP-CSCF)"},
    {.name = "token.jwks_url",
     .type = IMS_KV_STR,
     .offset = S(token_jwks_url),
     .valid = url_ok,
     .expect = URL,
     .doc = "URL of the WAF's JWKS (one of jwks_url and jwks_file)"},
    {.name = "token.jwks_file",
     .type = IMS_KV_STR,
     .offset = S(token_jwks_file),
     .doc = "file holding the JWKS (one of jwks_url and jwks_file)"},
    {.name = "token.ca_file",
     .type = IMS_KV_STR,
     .offset = S(token_ca_file),
     .doc = "PEM CA bundle for token.jwks_url; unset: the system's"},
    {.name = "token.authz_server",
     .type = IMS_KV_STR,
     .offset = S(token_authz_server),
     .valid = url_ok,
     .expect = URL,
     .doc = "authorization server URL named in the Bearer challenge; unset: token.issuer"},
    {.name = "token.scope",
     .type = IMS_KV_STR,
     .offset = S(token_scope),
     .def = "ims",
     .required = true,
     .valid = scope_ok,
     .expect = "one scope token (RFC 6749 3.3)",
     .doc = "scope a token needs, named in the Bearer challenge"},
    {.name = "token.leeway",
     .type = IMS_KV_INT,
     .offset = S(token_leeway_s),
     .def = "30",
     .min = 0,
     .max = 300,
     .doc = "seconds of clock skew allowed on exp, nbf and iat"},
    {.name = "token.expiry_grace",
     .type = IMS_KV_INT,
     .offset = S(token_expiry_grace_s),
     .def = "30",
     .min = 0,
     .max = 3600,
     .doc = "seconds after the token's exp before its registration is ended"},
    {.name = "auth.bearer_every_request",
     .type = IMS_KV_BOOL,
     .offset = S(bearer_every_request),
     .def = "yes",
     .doc = "yes: every request from the WIC carries a Bearer token; no: only REGISTER"},
    {.name = "auth.allow_digest",
     .type = IMS_KV_BOOL,
     .offset = S(allow_digest),
     .def = "no",
     .doc = "yes: relay Digest/AKA REGISTERs end to end to the core (no token)"},
    /* Revocation */
    {.name = "revocation.redis_url",
     .type = IMS_KV_STR,
     .offset = S(redis_url),
     .secret = true,
     .valid = redis_ok,
     .expect = "redis://[:password@]host[:port][/db]",
     .doc = "Redis holding revoked tokens; unset: no revocation check"},
    {.name = "revocation.key",
     .type = IMS_KV_STR,
     .offset = S(revoked_key),
     .def = "imsauth:revoked",
     .required = true,
     .doc = "Redis set of revoked jti values (the WAF's redis.revoked_key)"},
    {.name = "revocation.channel",
     .type = IMS_KV_STR,
     .offset = S(revocation_channel),
     .def = "imsauth:revoked:feed",
     .required = true,
     .doc = "Redis channel announcing revocations, to end registrations at once"},
    /* WAF lease API */
    {.name = "waf.url",
     .type = IMS_KV_STR,
     .offset = S(waf_url),
     .valid = url_ok,
     .expect = URL,
     .doc = "base URL of the WAF's public listener for the lease API; unset: no lease renewal"},
    {.name = "waf.client_id",
     .type = IMS_KV_STR,
     .offset = S(waf_client_id),
     .doc = "client_id of this eP-CSCF at the WAF (scope ims.lease)"},
    {.name = "waf.client_secret",
     .type = IMS_KV_STR,
     .offset = S(waf_client_secret),
     .secret = true,
     .doc = "its client secret"},
    {.name = "waf.lease_renew_interval",
     .type = IMS_KV_INT,
     .offset = S(lease_renew_s),
     .def = "60",
     .min = 10,
     .max = 86400,
     .doc = "seconds between renewals of the lease of a pooled identity"},
    /* Emergency */
    {.name = "emergency.ecscf",
     .type = IMS_KV_STR,
     .offset = S(ecscf),
     .valid = ims_kv_valid_peer,
     .expect = PEER,
     .doc = "host:port of the E-CSCF for emergency sessions; unset: none"},
    {.name = "emergency.numbers",
     .type = IMS_KV_LIST,
     .offset = S(emergency_numbers),
     .count_offset = S(n_emergency_numbers),
     .def = "112 911",
     .required = true,
     .valid = number_ok,
     .expect = "a number of 1 to 15 digits",
     .doc = "dialled numbers treated as emergency calls, separated by spaces or commas"},
    {.name = "emergency.allow_unregistered",
     .type = IMS_KV_BOOL,
     .offset = S(emergency_unregistered),
     .def = "no",
     .doc = "yes: accept emergency calls from WICs without a registration"},
    /* Operations */
    {.name = "http.listen",
     .type = IMS_KV_STR,
     .offset = S(http_listen),
     .def = "127.0.0.1:9090",
     .required = true,
     .valid = ims_kv_valid_listen,
     .expect = LISTEN,
     .doc = "host:port serving /metrics and /healthz"},
    {.name = "workers",
     .type = IMS_KV_INT,
     .offset = S(workers),
     .def = "0",
     .min = 0,
     .max = 256,
     .doc = "event-loop worker threads; 0: one per online CPU"},
    {.name = "log.level",
     .type = IMS_KV_STR,
     .offset = S(log_level),
     .def = "info",
     .required = true,
     .valid = log_level_ok,
     .expect = "error, warning, info or debug",
     .doc = "error, warning, info or debug"},
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))
static const struct ims_kv_table table = {keys, NKEYS, "EPCSCF_", S(source_),
                                          sizeof(((struct ep_config *)0)->source_)};
#undef S
_Static_assert(NKEYS <= sizeof(((struct ep_config *)0)->source_), "source_ too small");

_Static_assert(EP_CONFIG_OK == (int)IMS_KV_OK && EP_CONFIG_IO == (int)IMS_KV_IO &&
                   EP_CONFIG_SYNTAX == (int)IMS_KV_SYNTAX &&
                   EP_CONFIG_UNKNOWN == (int)IMS_KV_UNKNOWN &&
                   EP_CONFIG_REPEATED == (int)IMS_KV_REPEATED &&
                   EP_CONFIG_VALUE == (int)IMS_KV_VALUE &&
                   EP_CONFIG_MISSING == (int)IMS_KV_MISSING &&
                   EP_CONFIG_INVALID == (int)IMS_KV_INVALID && EP_CONFIG_NOMEM == (int)IMS_KV_NOMEM,
               "ep_config_result follows ims_kv_result");

const char *ep_config_strerror(enum ep_config_result r)
{
    return ims_kv_strerror((enum ims_kv_result)r);
}

int ep_config_hostport(const char *s, char *host, size_t hl, unsigned *port)
{
    return ims_kv_hostport(s, host, hl, port);
}

/* ---- cross checks ---- */

/* 0.0.0.0 or [::]: a wildcard address that cannot be put in a Via. */
static bool unspecified(const char *listen)
{
    return strncmp(listen, "0.0.0.0:", 8) == 0 || strncmp(listen, "[::]:", 5) == 0;
}

static long worker_count(const struct ep_config *c)
{
    if (c->workers > 0)
        return c->workers;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? n : 1;
}

static enum ep_config_result check(const struct ep_config *c, char *detail, size_t dlen)
{
    if (c->ws_listen == NULL && c->wss_listen == NULL) {
        ims_kv_detail(detail, dlen, "set wss.listen or ws.listen (or both): no WebSocket listener");
        return EP_CONFIG_INVALID;
    }
    if (c->ws_listen && !ims_kv_is_loopback(c->ws_listen)) {
        ims_kv_detail(detail, dlen,
                      "ws.listen %s is not a loopback address: plain WebSocket is for loopback "
                      "only (behind a TLS proxy); use wss.listen with wss.cert and wss.key",
                      c->ws_listen);
        return EP_CONFIG_INVALID;
    }
    if (c->wss_listen && (c->wss_cert == NULL || c->wss_key == NULL)) {
        ims_kv_detail(detail, dlen, "wss.listen needs wss.cert and wss.key");
        return EP_CONFIG_INVALID;
    }
    if (c->ws_listen && c->wss_listen && strcmp(c->ws_listen, c->wss_listen) == 0) {
        ims_kv_detail(detail, dlen, "ws.listen and wss.listen are the same address");
        return EP_CONFIG_INVALID;
    }
    const char *const tcp[] = {c->ws_listen, c->wss_listen};
    for (size_t i = 0; i < 2; i++)
        if (tcp[i] && strcmp(tcp[i], c->http_listen) == 0) {
            ims_kv_detail(detail, dlen, "http.listen is the address of %s",
                          i == 0 ? "ws.listen" : "wss.listen");
            return EP_CONFIG_INVALID;
        }
    if ((c->token_jwks_url == NULL) == (c->token_jwks_file == NULL)) {
        ims_kv_detail(detail, dlen, "set one of token.jwks_url and token.jwks_file%s",
                      c->token_jwks_url ? ", not both" : "");
        return EP_CONFIG_INVALID;
    }
    if (c->waf_url && (c->waf_client_id == NULL || c->waf_client_secret == NULL)) {
        ims_kv_detail(detail, dlen, "waf.url needs waf.client_id and waf.client_secret");
        return EP_CONFIG_INVALID;
    }
    char host[256];
    unsigned port = 0;
    if (ep_config_hostport(c->mw_listen, host, sizeof(host), &port) == 0 && port > 0 &&
        port + worker_count(c) - 1 > 65535) {
        ims_kv_detail(detail, dlen,
                      "mw.listen port %u leaves no room for %ld workers (worker i binds port + i)",
                      port, worker_count(c));
        return EP_CONFIG_INVALID;
    }
    if (c->mw_advertise == NULL && unspecified(c->mw_listen)) {
        ims_kv_detail(detail, dlen,
                      "mw.listen %s is a wildcard address: set mw.advertise to the address the "
                      "core reaches",
                      c->mw_listen);
        return EP_CONFIG_INVALID;
    }
    if (c->mw_timeout_ms < c->mw_t1_ms) {
        ims_kv_detail(detail, dlen,
                      "mw.transaction_timeout (%ld ms) is shorter than mw.t1 (%ld ms)",
                      c->mw_timeout_ms, c->mw_t1_ms);
        return EP_CONFIG_INVALID;
    }
    return EP_CONFIG_OK;
}

/* Keys whose default is another key's value. */
static enum ep_config_result derive(struct ep_config *c)
{
    static const struct {
        const char *name;
        size_t to, from;
    } d[] = {
        {"mw.advertise", offsetof(struct ep_config, mw_advertise),
         offsetof(struct ep_config, mw_listen)},
        {"ims.visited_network_id", offsetof(struct ep_config, visited_network_id),
         offsetof(struct ep_config, realm)},
        {"token.authz_server", offsetof(struct ep_config, token_authz_server),
         offsetof(struct ep_config, token_issuer)},
    };
    for (size_t i = 0; i < sizeof(d) / sizeof(d[0]); i++) {
        char **to = (char **)(void *)((char *)c + d[i].to);
        char *const *from = (char *const *)(void *)((char *)c + d[i].from);
        if (*to == NULL && ims_kv_set_copy(&table, c, d[i].name, *from) != 0)
            return EP_CONFIG_NOMEM;
    }
    return EP_CONFIG_OK;
}

enum ep_config_result ep_config_parse(const char *text, size_t len, char *const *envp,
                                      struct ep_config **out, char *detail, size_t dlen)
{
    *out = NULL;
    ims_kv_detail(detail, dlen, "%s", "");
    struct ep_config *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return EP_CONFIG_NOMEM;
    enum ep_config_result r =
        (enum ep_config_result)ims_kv_parse(&table, c, text, len, envp, detail, dlen);
    if (r == EP_CONFIG_OK)
        r = check(c, detail, dlen);
    if (r == EP_CONFIG_OK)
        r = derive(c);
    if (r == EP_CONFIG_OK) {
        *out = c;
        return EP_CONFIG_OK;
    }
    if (r == EP_CONFIG_NOMEM)
        ims_kv_detail(detail, dlen, "out of memory");
    ep_config_free(c);
    return r;
}

enum ep_config_result ep_config_load(const char *path, char *const *envp, struct ep_config **out,
                                     char *detail, size_t dlen)
{
    *out = NULL;
    if (path == NULL)
        return ep_config_parse(NULL, 0, envp, out, detail, dlen);
    char *text;
    size_t n;
    enum ep_config_result r =
        (enum ep_config_result)ims_kv_read_file(path, &text, &n, detail, dlen);
    if (r != EP_CONFIG_OK)
        return r;
    r = ep_config_parse(text, n, envp, out, detail, dlen);
    free(text);
    return r;
}

void ep_config_free(struct ep_config *c)
{
    if (c == NULL)
        return;
    ims_kv_clear(&table, c);
    free(c);
}

void ep_config_explain(const struct ep_config *c, FILE *f)
{
    ims_kv_explain(&table, c, f);
    if (c->redis_url == NULL)
        fprintf(f, "# warning: revocation.redis_url unset: no revocation check, a revoked token "
                   "stays valid until it expires\n");
    if (!c->bearer_every_request)
        fprintf(f, "# warning: auth.bearer_every_request = no: only REGISTER requests carry a "
                   "token\n");
    if (c->allow_digest)
        fprintf(f, "# warning: auth.allow_digest = yes: Digest/AKA REGISTERs reach the core "
                   "without a token\n");
    if (c->waf_url == NULL)
        fprintf(f, "# note: waf.url unset: leases of pooled identities are not renewed\n");
    if (c->ecscf == NULL)
        fprintf(f, "# note: emergency.ecscf unset: no E-CSCF for emergency sessions\n");
}

bool ep_config_key(size_t i, const char **name, const char **default_value, bool *required)
{
    return ims_kv_key_info(&table, i, name, default_value, required);
}

const char *ep_config_key_doc(size_t i)
{
    return i < NKEYS ? keys[i].doc : NULL;
}
