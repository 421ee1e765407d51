/* waf-server configuration: the key table, the "key = value" parser and the environment
 * overrides (see config.h). */
#include "config.h"
#include "wutil.h"

#include "ims_common/redis_url.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TEXT  (1024 * 1024)
#define MAX_VALUE 4096

enum type { T_STR, T_INT, T_LISTEN };
enum source { SRC_DEFAULT, SRC_FILE, SRC_ENV };

struct key {
    const char *name;
    enum type type;
    size_t offset;
    const char *def; /* NULL: no default */
    bool required, secret;
    long min, max;
    const char *doc; /* one line, also in waf-server.conf.sample */
};

#define S(field) offsetof(struct waf_config, field)
static const struct key keys[] = {
    {"issuer", T_STR, S(issuer), NULL, true, false, 0, 0,
     "issuer URL: the iss of every token and the metadata's issuer (https://...)"},
    {"public.listen", T_LISTEN, S(pub.listen), "127.0.0.1:8443", true, false, 0, 0,
     "public listener (OAuth endpoints, JWKS, metadata), host:port"},
    {"public.tls_cert", T_STR, S(pub.tls_cert), NULL, false, false, 0, 0,
     "PEM certificate chain; unset: plain HTTP, allowed only on a loopback address"},
    {"public.tls_key", T_STR, S(pub.tls_key), NULL, false, true, 0, 0, "PEM private key"},
    {"admin.listen", T_LISTEN, S(admin.listen), "127.0.0.1:8444", true, false, 0, 0,
     "admin listener (/admin/v1/), host:port; loopback by default"},
    {"admin.tls_cert", T_STR, S(admin.tls_cert), NULL, false, false, 0, 0,
     "PEM certificate chain; unset: plain HTTP, allowed only on a loopback address"},
    {"admin.tls_key", T_STR, S(admin.tls_key), NULL, false, true, 0, 0, "PEM private key"},
    {"database.url", T_STR, S(database_url), NULL, true, true, 0, 0,
     "PostgreSQL connection string or URI"},
    {"redis.url", T_STR, S(redis_url), NULL, true, true, 0, 0,
     "Redis URL redis://[:password@]host[:port][/db]: revocations, rate limits, leases"},
    {"redis.revoked_key", T_STR, S(revoked_key), "imsauth:revoked", true, false, 0, 0,
     "Redis set of revoked jti values, read by libimsauth in the P-CSCF"},
    {"keys.kek_file", T_STR, S(kek_file), NULL, true, false, 0, 0,
     "file holding the 32-byte key-encryption key of the signing keys, as 64 hex digits"},
    {"keys.overlap", T_INT, S(key_overlap_s), "3600", true, false, 0, 604800,
     "seconds a new signing key is published before it signs (>= verifiers' JWKS max-age)"},
    {"secrets.server_key_file", T_STR, S(server_key_file), NULL, true, false, 0, 0,
     "file holding the 32-byte HMAC key for client secrets, as 64 hex digits"},
    {"token.lifetime", T_INT, S(token_lifetime_s), "600", true, false, 30, 86400,
     "access token lifetime in seconds, unless the client has its own"},
    {"token.epcscf_wss_url", T_STR, S(epcscf_wss_url), NULL, false, false, 0, 0,
     "eP-CSCF WebSocket URL (wss://...) returned to the WIC with each IMS token"},
    {"token.wwsf", T_STR, S(wwsf_origin), NULL, false, false, 0, 0,
     "WWSF origin put in the wwsf claim (https://...); unset: no wwsf claim"},
    {"token.assertion_max_lifetime", T_INT, S(assertion_max_lifetime_s), "300", true, false, 10,
     3600,
     "longest lifetime (exp - now) accepted for a JWT a client signed (assertions, "
     "private_key_jwt)"},
    {"code.lifetime", T_INT, S(code_lifetime_s), "60", true, false, 10, 600,
     "authorization code lifetime in seconds"},
    {"refresh.lifetime", T_INT, S(refresh_lifetime_s), "86400", true, false, 60, 31536000,
     "refresh token lifetime in seconds (each rotation starts it again)"},
    {"login.max_failures", T_INT, S(login_max_failures), "5", true, false, 1, 1000,
     "consecutive failed logins before an account is locked"},
    {"login.lockout", T_INT, S(login_lockout_s), "900", true, false, 1, 86400,
     "seconds an account stays locked after too many failed logins"},
    {"http.threads", T_INT, S(threads), "2", true, false, 1, 256, "worker threads per listener"},
    {"http.max_body", T_INT, S(max_body), "65536", true, false, 1024, 16777216,
     "largest request body in bytes; larger ones get 413"},
    {"http.connection_limit", T_INT, S(connection_limit), "1024", true, false, 1, 1000000,
     "open connections per listener"},
    {"http.per_ip_connection_limit", T_INT, S(per_ip_connection_limit), "64", true, false, 1,
     1000000, "open connections per client IP address"},
    {"http.connection_timeout", T_INT, S(connection_timeout_s), "30", true, false, 1, 3600,
     "seconds an idle connection is kept"},
    {"bootstrap.admin_client_id", T_STR, S(admin_client_id), "admin", true, false, 0, 0,
     "client_id of the first admin client, created on first start"},
    {"bootstrap.admin_client_secret", T_STR, S(admin_client_secret), NULL, false, true, 0, 0,
     "its secret (at least 32 characters); unset: no admin client is created"},
    {"rate.token_per_minute", T_INT, S(rate_token_per_min), "6000", true, false, 1, 100000000,
     "token requests per client and minute; more get 429"},
    {"rate.token_per_ip_per_minute", T_INT, S(rate_token_per_ip_min), "60000", true, false, 1,
     100000000, "token requests per client IP address and minute; more get 429"},
    {"rate.login_per_minute", T_INT, S(rate_login_per_min), "30", true, false, 1, 100000000,
     "login attempts per client IP and minute; more get 429"},
    {"log.level", T_STR, S(log_level), "info", true, false, 0, 0, "error, warning, info or debug"},
};
#undef S
#define NKEYS (sizeof(keys) / sizeof(keys[0]))
_Static_assert(NKEYS <= sizeof(((struct waf_config *)0)->source_), "source_ too small");

const char *waf_config_strerror(enum waf_config_result r)
{
    static const char *const names[] = {
        [WAF_CONFIG_OK] = "ok",
        [WAF_CONFIG_IO] = "io_error",
        [WAF_CONFIG_SYNTAX] = "syntax",
        [WAF_CONFIG_UNKNOWN] = "unknown_key",
        [WAF_CONFIG_REPEATED] = "repeated_key",
        [WAF_CONFIG_VALUE] = "bad_value",
        [WAF_CONFIG_MISSING] = "missing_key",
        [WAF_CONFIG_INVALID] = "invalid",
        [WAF_CONFIG_NOMEM] = "out_of_memory",
    };
    return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "unknown";
}

static char **str_slot(struct waf_config *c, const struct key *k)
{
    return (char **)(void *)((char *)c + k->offset);
}

static long *int_slot(struct waf_config *c, const struct key *k)
{
    return (long *)(void *)((char *)c + k->offset);
}

static const struct key *find(const char *name, size_t len)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strlen(keys[i].name) == len && memcmp(keys[i].name, name, len) == 0)
            return &keys[i];
    return NULL;
}

/* host:port with a numeric IPv4 address or [IPv6] and a port 0..65535. */
static bool listen_ok(const char *v)
{
    const char *colon = strrchr(v, ':');
    if (colon == NULL || colon == v)
        return false;
    char host[64];
    size_t hl = (size_t)(colon - v);
    if (v[0] == '[') {
        if (hl < 3 || v[hl - 1] != ']' || hl - 2 >= sizeof(host))
            return false;
        memcpy(host, v + 1, hl - 2);
        host[hl - 2] = '\0';
    } else {
        if (hl >= sizeof(host))
            return false;
        memcpy(host, v, hl);
        host[hl] = '\0';
    }
    unsigned char buf[16];
    if (inet_pton(v[0] == '[' ? AF_INET6 : AF_INET, host, buf) != 1)
        return false;
    char *e;
    errno = 0;
    long port = strtol(colon + 1, &e, 10);
    return colon[1] && !*e && !errno && port >= 0 && port <= 65535;
}

/* Stores value for k; false with detail when it does not fit the type. */
static bool set(struct waf_config *c, const struct key *k, const char *value, enum source src,
                char *detail, size_t dlen, enum waf_config_result *r)
{
    for (const char *p = value; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            waf_detail(detail, dlen, "%s: control character in the value", k->name);
            *r = WAF_CONFIG_VALUE;
            return false;
        }
    if (k->type == T_INT) {
        char *e;
        errno = 0;
        long v = strtol(value, &e, 10);
        if (!*value || *e || errno || v < k->min || v > k->max) {
            waf_detail(detail, dlen, "%s: \"%.64s\" is not an integer in %ld..%ld", k->name, value,
                       k->min, k->max);
            *r = WAF_CONFIG_VALUE;
            return false;
        }
        *int_slot(c, k) = v;
    } else {
        if (k->type == T_LISTEN && !listen_ok(value)) {
            waf_detail(detail, dlen, "%s: \"%.64s\" is not host:port with a numeric address",
                       k->name, value);
            *r = WAF_CONFIG_VALUE;
            return false;
        }
        char *copy = strdup(value);
        if (copy == NULL) {
            *r = WAF_CONFIG_NOMEM;
            return false;
        }
        char **slot = str_slot(c, k);
        if (*slot && k->secret)
            memset(*slot, 0, strlen(*slot));
        free(*slot);
        *slot = *value ? copy : (free(copy), NULL);
    }
    c->source_[k - keys] = (unsigned char)src;
    return true;
}

/* One "key = value" line (trimmed, no comment); value may be double-quoted. */
static bool parse_line(struct waf_config *c, char *line, long lineno, bool *seen, char *detail,
                       size_t dlen, enum waf_config_result *r)
{
    char *eq = strchr(line, '=');
    if (eq == NULL) {
        waf_detail(detail, dlen, "line %ld: expected key = value", lineno);
        *r = WAF_CONFIG_SYNTAX;
        return false;
    }
    char *ke = eq;
    while (ke > line && isspace((unsigned char)ke[-1]))
        ke--;
    char *v = eq + 1;
    while (*v && isspace((unsigned char)*v))
        v++;
    size_t vl = strlen(v);
    while (vl && isspace((unsigned char)v[vl - 1]))
        v[--vl] = '\0';
    if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
        v[vl - 1] = '\0';
        v++;
        if (strchr(v, '"')) {
            waf_detail(detail, dlen, "line %ld: a quote inside a quoted value", lineno);
            *r = WAF_CONFIG_SYNTAX;
            return false;
        }
    } else if (strchr(v, '"')) {
        waf_detail(detail, dlen, "line %ld: unbalanced quote", lineno);
        *r = WAF_CONFIG_SYNTAX;
        return false;
    }
    if (strlen(v) > MAX_VALUE) {
        waf_detail(detail, dlen, "line %ld: value longer than %d bytes", lineno, MAX_VALUE);
        *r = WAF_CONFIG_VALUE;
        return false;
    }
    const struct key *k = find(line, (size_t)(ke - line));
    if (k == NULL) {
        waf_detail(detail, dlen, "line %ld: unknown key \"%.*s\"", lineno,
                   (int)(ke - line > 64 ? 64 : ke - line), line);
        *r = WAF_CONFIG_UNKNOWN;
        return false;
    }
    if (seen[k - keys]) {
        waf_detail(detail, dlen, "line %ld: %s is set twice", lineno, k->name);
        *r = WAF_CONFIG_REPEATED;
        return false;
    }
    seen[k - keys] = true;
    char inner[512];
    if (!set(c, k, v, SRC_FILE, inner, sizeof(inner), r)) {
        waf_detail(detail, dlen, "line %ld: %s", lineno, inner);
        return false;
    }
    return true;
}

static bool parse_text(struct waf_config *c, const char *text, size_t len, char *detail,
                       size_t dlen, enum waf_config_result *r)
{
    bool seen[NKEYS] = {false};
    long lineno = 0;
    for (size_t pos = 0; pos < len;) {
        lineno++;
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - (text + pos)) : len - pos;
        if (memchr(text + pos, '\0', ll)) {
            waf_detail(detail, dlen, "line %ld: NUL byte", lineno);
            *r = WAF_CONFIG_SYNTAX;
            return false;
        }
        if (ll > MAX_VALUE + 256) {
            waf_detail(detail, dlen, "line %ld: longer than %d bytes", lineno, MAX_VALUE + 256);
            *r = WAF_CONFIG_SYNTAX;
            return false;
        }
        char line[MAX_VALUE + 257];
        memcpy(line, text + pos, ll);
        line[ll] = '\0';
        pos += ll + (nl ? 1 : 0);
        char *s = line;
        while (*s && isspace((unsigned char)*s))
            s++;
        if (*s == '\0' || *s == '#')
            continue;
        size_t sl = strlen(s);
        while (sl && isspace((unsigned char)s[sl - 1]))
            s[--sl] = '\0';
        if (!parse_line(c, s, lineno, seen, detail, dlen, r))
            return false;
    }
    return true;
}

/* WAF_PUBLIC_TLS_CERT -> public.tls_cert: the key whose name, upper-cased with '.' as '_',
 * equals the rest of the variable name. */
static const struct key *env_key(const char *name, size_t len)
{
    for (size_t i = 0; i < NKEYS; i++) {
        const char *k = keys[i].name;
        size_t kl = strlen(k);
        if (kl != len)
            continue;
        size_t j = 0;
        for (; j < kl; j++) {
            char want = k[j] == '.' ? '_' : (char)toupper((unsigned char)k[j]);
            if (name[j] != want)
                break;
        }
        if (j == kl)
            return &keys[i];
    }
    return NULL;
}

static bool parse_env(struct waf_config *c, char *const *envp, char *detail, size_t dlen,
                      enum waf_config_result *r)
{
    for (; envp && *envp; envp++) {
        const char *e = *envp;
        if (strncmp(e, "WAF_", 4) != 0)
            continue;
        const char *eq = strchr(e, '=');
        if (eq == NULL)
            continue;
        const struct key *k = env_key(e + 4, (size_t)(eq - e - 4));
        if (k == NULL) {
            waf_detail(detail, dlen, "environment: unknown variable %.*s",
                       (int)(eq - e > 64 ? 64 : eq - e), e);
            *r = WAF_CONFIG_UNKNOWN;
            return false;
        }
        if (strlen(eq + 1) > MAX_VALUE) {
            waf_detail(detail, dlen, "environment: %s longer than %d bytes", k->name, MAX_VALUE);
            *r = WAF_CONFIG_VALUE;
            return false;
        }
        char inner[512];
        if (!set(c, k, eq + 1, SRC_ENV, inner, sizeof(inner), r)) {
            waf_detail(detail, dlen, "environment: %s", inner);
            return false;
        }
    }
    return true;
}

static bool loopback(const char *listen)
{
    return strncmp(listen, "127.", 4) == 0 || strncmp(listen, "[::1]:", 6) == 0;
}

static bool check(const struct waf_config *c, char *detail, size_t dlen, enum waf_config_result *r)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].required && keys[i].type != T_INT &&
            *str_slot((struct waf_config *)(uintptr_t)c, &keys[i]) == NULL) {
            waf_detail(detail, dlen, "%s is required (%s)", keys[i].name, keys[i].doc);
            *r = WAF_CONFIG_MISSING;
            return false;
        }
    const struct waf_listener_config *ls[] = {&c->pub, &c->admin};
    const char *names[] = {"public", "admin"};
    for (int i = 0; i < 2; i++) {
        if ((ls[i]->tls_cert == NULL) != (ls[i]->tls_key == NULL)) {
            waf_detail(detail, dlen, "%s.tls_cert and %s.tls_key go together", names[i], names[i]);
            *r = WAF_CONFIG_INVALID;
            return false;
        }
        if (ls[i]->tls_cert == NULL && !loopback(ls[i]->listen)) {
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
    static const char *const levels[] = {"error", "warning", "info", "debug"};
    bool level_ok = false;
    for (size_t i = 0; i < 4; i++)
        level_ok = level_ok || strcmp(c->log_level, levels[i]) == 0;
    if (!level_ok) {
        waf_detail(detail, dlen, "log.level must be error, warning, info or debug");
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
    if (len > MAX_TEXT) {
        waf_detail(detail, dlen, "configuration larger than %d bytes", MAX_TEXT);
        return WAF_CONFIG_SYNTAX;
    }
    struct waf_config *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return WAF_CONFIG_NOMEM;
    enum waf_config_result r = WAF_CONFIG_OK;
    for (size_t i = 0; i < NKEYS && r == WAF_CONFIG_OK; i++)
        if (keys[i].def && !set(c, &keys[i], keys[i].def, SRC_DEFAULT, detail, dlen, &r))
            break;
    if (r == WAF_CONFIG_OK && parse_text(c, text ? text : "", len, detail, dlen, &r) &&
        parse_env(c, envp, detail, dlen, &r) && check(c, detail, dlen, &r)) {
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
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        waf_detail(detail, dlen, "cannot open %s: %s", path, strerror(errno));
        return WAF_CONFIG_IO;
    }
    char *text = malloc(MAX_TEXT + 1);
    size_t n = text ? fread(text, 1, MAX_TEXT + 1, f) : 0;
    bool err = ferror(f);
    fclose(f);
    if (text == NULL)
        return WAF_CONFIG_NOMEM;
    if (err) {
        free(text);
        waf_detail(detail, dlen, "cannot read %s", path);
        return WAF_CONFIG_IO;
    }
    enum waf_config_result r = waf_config_parse(text, n, envp, out, detail, dlen);
    free(text);
    return r;
}

void waf_config_free(struct waf_config *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].type != T_INT) {
            char **slot = str_slot(c, &keys[i]);
            if (*slot && keys[i].secret)
                memset(*slot, 0, strlen(*slot));
            free(*slot);
        }
    free(c);
}

void waf_config_explain(const struct waf_config *c, FILE *f)
{
    static const char *const from[] = {"default", "file", "environment"};
    for (size_t i = 0; i < NKEYS; i++) {
        const struct key *k = &keys[i];
        struct waf_config *m = (struct waf_config *)(uintptr_t)c;
        if (k->type == T_INT)
            fprintf(f, "%-30s = %ld", k->name, *int_slot(m, k));
        else if (*str_slot(m, k) == NULL)
            fprintf(f, "%-30s = (unset)", k->name);
        else if (k->secret)
            fprintf(f, "%-30s = (set)", k->name);
        else
            fprintf(f, "%-30s = %s", k->name, *str_slot(m, k));
        bool set_somewhere = k->type == T_INT || *str_slot(m, k) != NULL;
        fprintf(f, "%s%s\n", set_somewhere ? "  # " : "", set_somewhere ? from[c->source_[i]] : "");
    }
}

bool waf_config_key(size_t i, const char **name, const char **default_value, bool *required)
{
    if (i >= NKEYS)
        return false;
    *name = keys[i].name;
    *default_value = keys[i].def ? keys[i].def : "";
    *required = keys[i].required && keys[i].def == NULL;
    return true;
}
