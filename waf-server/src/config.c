/* waf-server configuration: the key table and the cross checks (see config.h); the file
 * syntax, typed values and environment overrides are ims_common/kvconf. */
#include "config.h"
#include "wutil.h"

#include "ims_common/kvconf.h"
#include "ims_common/redis_url.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LISTEN "host:port with a numeric address"

static bool log_level_ok(const char *v)
{
    return strcmp(v, "error") == 0 || strcmp(v, "warning") == 0 || strcmp(v, "info") == 0 ||
           strcmp(v, "debug") == 0;
}

#define S(field) offsetof(struct waf_config, field)
static const struct ims_kv_key keys[] = {
    {.name = "issuer",
     .type = IMS_KV_STR,
     .offset = S(issuer),
     .required = true,
     .doc = "issuer URL: the iss of every token and the metadata's issuer (https://...)"},
    {.name = "public.listen",
     .type = IMS_KV_STR,
     .offset = S(pub.listen),
     .def = "127.0.0.1:8443",
     .required = true,
     .valid = ims_kv_valid_listen,
     .expect = LISTEN,
     .doc = "public listener (OAuth endpoints, JWKS, metadata), host:port"},
    {.name = "public.tls_cert",
     .type = IMS_KV_STR,
     .offset = S(pub.tls_cert),
     .doc = "PEM certificate chain; unset: plain HTTP, allowed only on a loopback address"},
    {.name = "public.tls_key",
     .type = IMS_KV_STR,
     .offset = S(pub.tls_key),
     .secret = true,
     .doc = "PEM private key"},
    {.name = "admin.listen",
     .type = IMS_KV_STR,
     .offset = S(admin.listen),
     .def = "127.0.0.1:8444",
     .required = true,
     .valid = ims_kv_valid_listen,
     .expect = LISTEN,
     .doc = "admin listener (/admin/v1/), host:port; loopback by default"},
    {.name = "admin.tls_cert",
     .type = IMS_KV_STR,
     .offset = S(admin.tls_cert),
     .doc = "PEM certificate chain; unset: plain HTTP, allowed only on a loopback address"},
    {.name = "admin.tls_key",
     .type = IMS_KV_STR,
     .offset = S(admin.tls_key),
     .secret = true,
     .doc = "PEM private key"},
    {.name = "database.url",
     .type = IMS_KV_STR,
     .offset = S(database_url),
     .required = true,
     .secret = true,
     .doc = "PostgreSQL connection string or URI"},
    {.name = "redis.url",
     .type = IMS_KV_STR,
     .offset = S(redis_url),
     .required = true,
     .secret = true,
     .doc = "Redis URL redis://[:password@]host[:port][/db]: revocations, rate limits, leases"},
    {.name = "redis.revoked_key",
     .type = IMS_KV_STR,
     .offset = S(revoked_key),
     .def = "imsauth:revoked",
     .required = true,
     .doc = "Redis set of revoked jti values, read by libimsauth in the P-CSCF"},
    {.name = "keys.kek_file",
     .type = IMS_KV_STR,
     .offset = S(kek_file),
     .required = true,
     .doc = "file holding the 32-byte key-encryption key of the signing keys, as 64 hex digits"},
    {.name = "keys.overlap",
     .type = IMS_KV_INT,
     .offset = S(key_overlap_s),
     .def = "3600",
     .min = 0,
     .max = 604800,
     .doc = "seconds a new signing key is published before it signs (>= verifiers' JWKS max-age)"},
    {.name = "secrets.server_key_file",
     .type = IMS_KV_STR,
     .offset = S(server_key_file),
     .required = true,
     .doc = "file holding the 32-byte HMAC key for client secrets, as 64 hex digits"},
    {.name = "token.lifetime",
     .type = IMS_KV_INT,
     .offset = S(token_lifetime_s),
     .def = "600",
     .min = 30,
     .max = 86400,
     .doc = "access token lifetime in seconds, unless the client has its own"},
    {.name = "token.epcscf_wss_url",
     .type = IMS_KV_STR,
     .offset = S(epcscf_wss_url),
     .doc = "eP-CSCF WebSocket URL (wss://...) returned to the WIC with each IMS token"},
    {.name = "token.wwsf",
     .type = IMS_KV_STR,
     .offset = S(wwsf_origin),
     .doc = "WWSF origin put in the wwsf claim (https://...); unset: no wwsf claim"},
    {.name = "token.assertion_max_lifetime",
     .type = IMS_KV_INT,
     .offset = S(assertion_max_lifetime_s),
     .def = "300",
     .min = 10,
     .max = 3600,
     .doc = "longest lifetime (exp - now) accepted for a JWT a client signed (assertions, "
            "private_key_jwt)"},
    {.name = "code.lifetime",
     .type = IMS_KV_INT,
     .offset = S(code_lifetime_s),
     .def = "60",
     .min = 10,
     .max = 600,
     .doc = "authorization code lifetime in seconds"},
    {.name = "refresh.lifetime",
     .type = IMS_KV_INT,
     .offset = S(refresh_lifetime_s),
     .def = "86400",
     .min = 60,
     .max = 31536000,
     .doc = "refresh token lifetime in seconds (each rotation starts it again)"},
    {.name = "login.max_failures",
     .type = IMS_KV_INT,
     .offset = S(login_max_failures),
     .def = "5",
     .min = 1,
     .max = 1000,
     .doc = "consecutive failed logins before an account is locked"},
    {.name = "login.lockout",
     .type = IMS_KV_INT,
     .offset = S(login_lockout_s),
     .def = "900",
     .min = 1,
     .max = 86400,
     .doc = "seconds an account stays locked after too many failed logins"},
    {.name = "http.threads",
     .type = IMS_KV_INT,
     .offset = S(threads),
     .def = "2",
     .min = 1,
     .max = 256,
     .doc = "worker threads per listener"},
    {.name = "http.max_body",
     .type = IMS_KV_INT,
     .offset = S(max_body),
     .def = "65536",
     .min = 1024,
     .max = 16777216,
     .doc = "largest request body in bytes; larger ones get 413"},
    {.name = "http.connection_limit",
     .type = IMS_KV_INT,
     .offset = S(connection_limit),
     .def = "1024",
     .min = 1,
     .max = 1000000,
     .doc = "open connections per listener"},
    {.name = "http.per_ip_connection_limit",
     .type = IMS_KV_INT,
     .offset = S(per_ip_connection_limit),
     .def = "64",
     .min = 1,
     .max = 1000000,
     .doc = "open connections per client IP address"},
    {.name = "http.connection_timeout",
     .type = IMS_KV_INT,
     .offset = S(connection_timeout_s),
     .def = "30",
     .min = 1,
     .max = 3600,
     .doc = "seconds an idle connection is kept"},
    {.name = "bootstrap.admin_client_id",
     .type = IMS_KV_STR,
     .offset = S(admin_client_id),
     .def = "admin",
     .required = true,
     .doc = "client_id of the first admin client, created on first start"},
    {.name = "bootstrap.admin_client_secret",
     .type = IMS_KV_STR,
     .offset = S(admin_client_secret),
     .secret = true,
     .doc = "its secret (at least 32 characters); unset: no admin client is created"},
    {.name = "rate.token_per_minute",
     .type = IMS_KV_INT,
     .offset = S(rate_token_per_min),
     .def = "6000",
     .min = 1,
     .max = 100000000,
     .doc = "token requests per client and minute; more get 429"},
    {.name = "rate.token_per_ip_per_minute",
     .type = IMS_KV_INT,
     .offset = S(rate_token_per_ip_min),
     .def = "60000",
     .min = 1,
     .max = 100000000,
     .doc = "token requests per client IP address and minute; more get 429"},
    {.name = "rate.login_per_minute",
     .type = IMS_KV_INT,
     .offset = S(rate_login_per_min),
     .def = "30",
     .min = 1,
     .max = 100000000,
     .doc = "login attempts per client IP and minute; more get 429"},
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
static const struct ims_kv_table table = {keys, NKEYS, "WAF_", S(source_),
                                          sizeof(((struct waf_config *)0)->source_)};
#undef S
_Static_assert(NKEYS <= sizeof(((struct waf_config *)0)->source_), "source_ too small");

_Static_assert(WAF_CONFIG_OK == (int)IMS_KV_OK && WAF_CONFIG_IO == (int)IMS_KV_IO &&
                   WAF_CONFIG_SYNTAX == (int)IMS_KV_SYNTAX &&
                   WAF_CONFIG_UNKNOWN == (int)IMS_KV_UNKNOWN &&
                   WAF_CONFIG_REPEATED == (int)IMS_KV_REPEATED &&
                   WAF_CONFIG_VALUE == (int)IMS_KV_VALUE &&
                   WAF_CONFIG_MISSING == (int)IMS_KV_MISSING &&
                   WAF_CONFIG_INVALID == (int)IMS_KV_INVALID &&
                   WAF_CONFIG_NOMEM == (int)IMS_KV_NOMEM,
               "waf_config_result follows ims_kv_result");

const char *waf_config_strerror(enum waf_config_result r)
{
    return ims_kv_strerror((enum ims_kv_result)r);
}

static bool check(const struct waf_config *c, char *detail, size_t dlen, enum waf_config_result *r)
{
    const struct waf_listener_config *ls[] = {&c->pub, &c->admin};
    const char *names[] = {"public", "admin"};
    for (int i = 0; i < 2; i++) {
        if ((ls[i]->tls_cert == NULL) != (ls[i]->tls_key == NULL)) {
            waf_detail(detail, dlen, "%s.tls_cert and %s.tls_key go together", names[i], names[i]);
            *r = WAF_CONFIG_INVALID;
            return false;
        }
        if (ls[i]->tls_cert == NULL && !ims_kv_is_loopback(ls[i]->listen)) {
            waf_detail(detail, dlen,
                       "%s.listen %s is not a loopback address: set %s.tls_cert and %s.tls_key "
                       "(plain HTTP is for loopback only)",
                       names[i], ls[i]->listen, names[i], names[i]);
            *r = WAF_CONFIG_INVALID;
            return false;
        }
    }
    if (strncmp(c->issuer, "https://", 8) != 0 &&
        !(strncmp(c->issuer, "http://127.", 11) == 0 ||
          strncmp(c->issuer, "http://localhost", 16) == 0)) {
        waf_detail(detail, dlen,
                   "issuer must be an https:// URL (http:// only for loopback tests)");
        *r = WAF_CONFIG_INVALID;
        return false;
    }
    size_t il = strlen(c->issuer);
    if (c->issuer[il - 1] == '/' || strchr(c->issuer, '?') || strchr(c->issuer, '#')) {
        waf_detail(detail, dlen,
                   "issuer must not end with '/' nor hold a query or fragment "
                   "(RFC 8414 2: verifiers compare it byte for byte)");
        *r = WAF_CONFIG_INVALID;
        return false;
    }
    if (c->admin_client_secret && strlen(c->admin_client_secret) < 32) {
        waf_detail(detail, dlen, "bootstrap.admin_client_secret must hold at least 32 characters");
        *r = WAF_CONFIG_INVALID;
        return false;
    }
    struct ims_redis_url ru;
    bool redis_ok = ims_redis_url_parse(c->redis_url, &ru);
    memset(ru.password, 0, sizeof(ru.password));
    if (!redis_ok) {
        waf_detail(detail, dlen, "redis.url must be redis://[:password@]host[:port][/db]");
        *r = WAF_CONFIG_VALUE;
        return false;
    }
    return true;
}

enum waf_config_result waf_config_parse(const char *text, size_t len, char *const *envp,
                                        struct waf_config **out, char *detail, size_t dlen)
{
    *out = NULL;
    waf_detail(detail, dlen, "%s", "");
    struct waf_config *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return WAF_CONFIG_NOMEM;
    enum waf_config_result r =
        (enum waf_config_result)ims_kv_parse(&table, c, text, len, envp, detail, dlen);
    if (r == WAF_CONFIG_OK && check(c, detail, dlen, &r)) {
        *out = c;
        return WAF_CONFIG_OK;
    }
    waf_config_free(c);
    return r;
}

enum waf_config_result waf_config_load(const char *path, char *const *envp, struct waf_config **out,
                                       char *detail, size_t dlen)
{
    *out = NULL;
    if (path == NULL)
        return waf_config_parse(NULL, 0, envp, out, detail, dlen);
    char *text;
    size_t n;
    enum waf_config_result r =
        (enum waf_config_result)ims_kv_read_file(path, &text, &n, detail, dlen);
    if (r != WAF_CONFIG_OK)
        return r;
    r = waf_config_parse(text, n, envp, out, detail, dlen);
    free(text);
    return r;
}

void waf_config_free(struct waf_config *c)
{
    if (c == NULL)
        return;
    ims_kv_clear(&table, c);
    free(c);
}

void waf_config_explain(const struct waf_config *c, FILE *f)
{
    ims_kv_explain(&table, c, f);
}

bool waf_config_key(size_t i, const char **name, const char **default_value, bool *required)
{
    return ims_kv_key_info(&table, i, name, default_value, required);
}
