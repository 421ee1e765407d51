/* Key-table configuration (see kvconf.h): the "key = value" line parser, typed values,
 * environment overrides, required keys, source tracking and the explain listing. */
#include "ims_common/kvconf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum source { SRC_DEFAULT, SRC_FILE, SRC_ENV };

const char *ims_kv_strerror(enum ims_kv_result r)
{
    static const char *const names[] = {
        [IMS_KV_OK] = "ok",
        [IMS_KV_IO] = "io_error",
        [IMS_KV_SYNTAX] = "syntax",
        [IMS_KV_UNKNOWN] = "unknown_key",
        [IMS_KV_REPEATED] = "repeated_key",
        [IMS_KV_VALUE] = "bad_value",
        [IMS_KV_MISSING] = "missing_key",
        [IMS_KV_INVALID] = "invalid",
        [IMS_KV_NOMEM] = "out_of_memory",
    };
    return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "unknown";
}

void ims_kv_detail(char *detail, size_t dlen, const char *fmt, ...)
{
    if (detail == NULL || dlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, dlen, fmt, ap);
    va_end(ap);
}

/* ---- the fields of the component's struct ---- */

static void *field(void *cfg, size_t offset)
{
    return (char *)cfg + offset;
}

static const void *cfield(const void *cfg, size_t offset)
{
    return (const char *)cfg + offset;
}

static unsigned char *sources(const struct ims_kv_table *t, void *cfg)
{
    return field(cfg, t->source_offset);
}

static void wipe_str(char *s, bool secret)
{
    if (s && secret)
        memset(s, 0, strlen(s));
    free(s);
}

static void free_list(char **items, bool secret)
{
    for (size_t i = 0; items && items[i]; i++)
        wipe_str(items[i], secret);
    free(items);
}

static const struct ims_kv_key *find(const struct ims_kv_table *t, const char *name, size_t len)
{
    for (size_t i = 0; i < t->n; i++)
        if (strlen(t->keys[i].name) == len && memcmp(t->keys[i].name, name, len) == 0)
            return &t->keys[i];
    return NULL;
}

/* ---- typed values ---- */

static enum ims_kv_result refuse(const struct ims_kv_key *k, const char *value, const char *what,
                                 char *detail, size_t dlen)
{
    if (k->secret)
        ims_kv_detail(detail, dlen, "%s: the value is not %s", k->name, what);
    else
        ims_kv_detail(detail, dlen, "%s: \"%.64s\" is not %s", k->name, value, what);
    return IMS_KV_VALUE;
}

static bool is_separator(char c)
{
    return c == ' ' || c == '\t' || c == ',';
}

/* Splits value into a new NULL-terminated array of checked items (*items NULL when the
 * value holds none). */
static enum ims_kv_result parse_list(const struct ims_kv_key *k, const char *value, char ***items,
                                     size_t *count, char *detail, size_t dlen)
{
    *items = NULL;
    *count = 0;
    size_t n = 0;
    for (const char *p = value; *p;) {
        while (is_separator(*p))
            p++;
        if (*p == '\0')
            break;
        n++;
        while (*p && !is_separator(*p))
            p++;
    }
    if (n == 0)
        return IMS_KV_OK;
    if (n > IMS_KV_MAX_ITEMS) {
        ims_kv_detail(detail, dlen, "%s: more than %d items", k->name, IMS_KV_MAX_ITEMS);
        return IMS_KV_VALUE;
    }
    char **v = calloc(n + 1, sizeof(*v));
    if (v == NULL)
        return IMS_KV_NOMEM;
    size_t i = 0;
    for (const char *p = value; *p && i < n;) {
        while (is_separator(*p))
            p++;
        const char *start = p;
        while (*p && !is_separator(*p))
            p++;
        size_t il = (size_t)(p - start);
        v[i] = malloc(il + 1);
        if (v[i] == NULL) {
            free_list(v, k->secret);
            return IMS_KV_NOMEM;
        }
        memcpy(v[i], start, il);
        v[i][il] = '\0';
        if (k->valid && !k->valid(v[i])) {
            if (k->secret)
                ims_kv_detail(detail, dlen, "%s: an item is not %s", k->name, k->expect);
            else
                ims_kv_detail(detail, dlen, "%s: item \"%.64s\" is not %s", k->name, v[i],
                              k->expect);
            free_list(v, k->secret);
            return IMS_KV_VALUE;
        }
        i++;
    }
    *items = v;
    *count = n;
    return IMS_KV_OK;
}

static bool parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"yes", "true", "1"}, *const no[] = {"no", "false", "0"};
    for (size_t i = 0; i < 3; i++) {
        if (strcmp(v, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcmp(v, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

/* Stores value for k, remembering where it came from. */
static enum ims_kv_result set(const struct ims_kv_table *t, void *cfg, const struct ims_kv_key *k,
                              const char *value, enum source src, char *detail, size_t dlen)
{
    for (const char *p = value; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            ims_kv_detail(detail, dlen, "%s: control character in the value", k->name);
            return IMS_KV_VALUE;
        }
    switch (k->type) {
    case IMS_KV_INT: {
        char *e;
        errno = 0;
        long v = strtol(value, &e, 10);
        if (!*value || *e || errno || v < k->min || v > k->max) {
            ims_kv_detail(detail, dlen, "%s: \"%.64s\" is not an integer in %ld..%ld", k->name,
                          value, k->min, k->max);
            return IMS_KV_VALUE;
        }
        *(long *)field(cfg, k->offset) = v;
        break;
    }
    case IMS_KV_BOOL:
        if (!parse_bool(value, field(cfg, k->offset))) {
            ims_kv_detail(detail, dlen, "%s: \"%.64s\" is not yes or no", k->name, value);
            return IMS_KV_VALUE;
        }
        break;
    case IMS_KV_STR: {
        if (*value && k->valid && !k->valid(value))
            return refuse(k, value, k->expect, detail, dlen);
        char *copy = NULL;
        if (*value && (copy = strdup(value)) == NULL)
            return IMS_KV_NOMEM;
        char **slot = field(cfg, k->offset);
        wipe_str(*slot, k->secret);
        *slot = copy;
        break;
    }
    case IMS_KV_LIST: {
        char **items;
        size_t n;
        enum ims_kv_result r = parse_list(k, value, &items, &n, detail, dlen);
        if (r != IMS_KV_OK)
            return r;
        char ***slot = field(cfg, k->offset);
        free_list(*slot, k->secret);
        *slot = items;
        *(size_t *)field(cfg, k->count_offset) = n;
        break;
    }
    }
    sources(t, cfg)[k - t->keys] = (unsigned char)src;
    return IMS_KV_OK;
}

/* ---- the file ---- */

/* One "key = value" line (trimmed, no comment); the value may be double-quoted. */
static enum ims_kv_result parse_line(const struct ims_kv_table *t, void *cfg, char *line,
                                     long lineno, char *detail, size_t dlen)
{
    char *eq = strchr(line, '=');
    if (eq == NULL) {
        ims_kv_detail(detail, dlen, "line %ld: expected key = value", lineno);
        return IMS_KV_SYNTAX;
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
            ims_kv_detail(detail, dlen, "line %ld: a quote inside a quoted value", lineno);
            return IMS_KV_SYNTAX;
        }
    } else if (strchr(v, '"')) {
        ims_kv_detail(detail, dlen, "line %ld: unbalanced quote", lineno);
        return IMS_KV_SYNTAX;
    }
    if (strlen(v) > IMS_KV_MAX_VALUE) {
        ims_kv_detail(detail, dlen, "line %ld: value longer than %d bytes", lineno,
                      IMS_KV_MAX_VALUE);
        return IMS_KV_VALUE;
    }
    const struct ims_kv_key *k = find(t, line, (size_t)(ke - line));
    if (k == NULL) {
        ims_kv_detail(detail, dlen, "line %ld: unknown key \"%.*s\"", lineno,
                      (int)(ke - line > 64 ? 64 : ke - line), line);
        return IMS_KV_UNKNOWN;
    }
    /* The environment comes after the file, so "from the file" means "seen before". */
    if (sources(t, cfg)[k - t->keys] == SRC_FILE) {
        ims_kv_detail(detail, dlen, "line %ld: %s is set twice", lineno, k->name);
        return IMS_KV_REPEATED;
    }
    char inner[512];
    enum ims_kv_result r = set(t, cfg, k, v, SRC_FILE, inner, sizeof(inner));
    if (r == IMS_KV_NOMEM)
        ims_kv_detail(detail, dlen, "line %ld: out of memory", lineno);
    else if (r != IMS_KV_OK)
        ims_kv_detail(detail, dlen, "line %ld: %s", lineno, inner);
    return r;
}

static enum ims_kv_result parse_text(const struct ims_kv_table *t, void *cfg, const char *text,
                                     size_t len, char *detail, size_t dlen)
{
    long lineno = 0;
    for (size_t pos = 0; pos < len;) {
        lineno++;
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - (text + pos)) : len - pos;
        if (memchr(text + pos, '\0', ll)) {
            ims_kv_detail(detail, dlen, "line %ld: NUL byte", lineno);
            return IMS_KV_SYNTAX;
        }
        if (ll > IMS_KV_MAX_VALUE + 256) {
            ims_kv_detail(detail, dlen, "line %ld: longer than %d bytes", lineno,
                          IMS_KV_MAX_VALUE + 256);
            return IMS_KV_SYNTAX;
        }
        char line[IMS_KV_MAX_VALUE + 257];
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
        enum ims_kv_result r = parse_line(t, cfg, s, lineno, detail, dlen);
        if (r != IMS_KV_OK)
            return r;
    }
    return IMS_KV_OK;
}

/* ---- the environment ---- */

/* PREFIX_PUBLIC_TLS_CERT -> public.tls_cert: the key whose name, upper-cased with '.' as
 * '_', equals the rest of the variable name. */
static const struct ims_kv_key *env_key(const struct ims_kv_table *t, const char *name, size_t len)
{
    for (size_t i = 0; i < t->n; i++) {
        const char *k = t->keys[i].name;
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
            return &t->keys[i];
    }
    return NULL;
}

static enum ims_kv_result parse_env(const struct ims_kv_table *t, void *cfg, char *const *envp,
                                    char *detail, size_t dlen)
{
    size_t pl = strlen(t->env_prefix);
    for (; envp && *envp; envp++) {
        const char *e = *envp;
        if (strncmp(e, t->env_prefix, pl) != 0)
            continue;
        const char *eq = strchr(e, '=');
        if (eq == NULL)
            continue;
        const struct ims_kv_key *k = env_key(t, e + pl, (size_t)(eq - e) - pl);
        if (k == NULL) {
            ims_kv_detail(detail, dlen, "environment: unknown variable %.*s",
                          (int)(eq - e > 64 ? 64 : eq - e), e);
            return IMS_KV_UNKNOWN;
        }
        if (strlen(eq + 1) > IMS_KV_MAX_VALUE) {
            ims_kv_detail(detail, dlen, "environment: %s longer than %d bytes", k->name,
                          IMS_KV_MAX_VALUE);
            return IMS_KV_VALUE;
        }
        char inner[512];
        enum ims_kv_result r = set(t, cfg, k, eq + 1, SRC_ENV, inner, sizeof(inner));
        if (r == IMS_KV_NOMEM)
            ims_kv_detail(detail, dlen, "environment: out of memory");
        else if (r != IMS_KV_OK)
            ims_kv_detail(detail, dlen, "environment: %s", inner);
        if (r != IMS_KV_OK)
            return r;
    }
    return IMS_KV_OK;
}

/* ---- the whole ---- */

static bool is_unset(const struct ims_kv_key *k, const void *cfg)
{
    if (k->type == IMS_KV_STR)
        return *(char *const *)cfield(cfg, k->offset) == NULL;
    if (k->type == IMS_KV_LIST)
        return *(const size_t *)cfield(cfg, k->count_offset) == 0;
    return false;
}

enum ims_kv_result ims_kv_parse(const struct ims_kv_table *t, void *cfg, const char *text,
                                size_t len, char *const *envp, char *detail, size_t dlen)
{
    ims_kv_detail(detail, dlen, "%s", "");
    if (t->n > t->source_size) {
        ims_kv_detail(detail, dlen, "%zu keys but room for the sources of %zu", t->n,
                      t->source_size);
        return IMS_KV_INVALID;
    }
    if (len > IMS_KV_MAX_TEXT) {
        ims_kv_detail(detail, dlen, "configuration larger than %d bytes", IMS_KV_MAX_TEXT);
        return IMS_KV_SYNTAX;
    }
    for (size_t i = 0; i < t->n; i++) {
        enum ims_kv_result r = IMS_KV_OK;
        if (t->keys[i].def)
            r = set(t, cfg, &t->keys[i], t->keys[i].def, SRC_DEFAULT, detail, dlen);
        else
            sources(t, cfg)[i] = SRC_DEFAULT;
        if (r != IMS_KV_OK)
            return r;
    }
    enum ims_kv_result r = parse_text(t, cfg, text ? text : "", text ? len : 0, detail, dlen);
    if (r == IMS_KV_OK)
        r = parse_env(t, cfg, envp, detail, dlen);
    if (r != IMS_KV_OK)
        return r;
    for (size_t i = 0; i < t->n; i++)
        if (t->keys[i].required && is_unset(&t->keys[i], cfg)) {
            ims_kv_detail(detail, dlen, "%s is required (%s)", t->keys[i].name, t->keys[i].doc);
            return IMS_KV_MISSING;
        }
    return IMS_KV_OK;
}

enum ims_kv_result ims_kv_read_file(const char *path, char **text, size_t *len, char *detail,
                                    size_t dlen)
{
    *text = NULL;
    *len = 0;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        ims_kv_detail(detail, dlen, "cannot open %s: %s", path, strerror(errno));
        return IMS_KV_IO;
    }
    char *buf = malloc(IMS_KV_MAX_TEXT + 1);
    size_t n = buf ? fread(buf, 1, IMS_KV_MAX_TEXT + 1, f) : 0;
    bool err = ferror(f);
    fclose(f);
    if (buf == NULL)
        return IMS_KV_NOMEM;
    if (err) {
        free(buf);
        ims_kv_detail(detail, dlen, "cannot read %s", path);
        return IMS_KV_IO;
    }
    if (n > IMS_KV_MAX_TEXT) {
        free(buf);
        ims_kv_detail(detail, dlen, "%s: configuration larger than %d bytes", path,
                      IMS_KV_MAX_TEXT);
        return IMS_KV_SYNTAX;
    }
    *text = buf;
    *len = n;
    return IMS_KV_OK;
}

void ims_kv_clear(const struct ims_kv_table *t, void *cfg)
{
    for (size_t i = 0; i < t->n; i++) {
        const struct ims_kv_key *k = &t->keys[i];
        if (k->type == IMS_KV_STR) {
            char **slot = field(cfg, k->offset);
            wipe_str(*slot, k->secret);
            *slot = NULL;
        } else if (k->type == IMS_KV_LIST) {
            char ***slot = field(cfg, k->offset);
            free_list(*slot, k->secret);
            *slot = NULL;
            *(size_t *)field(cfg, k->count_offset) = 0;
        }
    }
}

int ims_kv_set_copy(const struct ims_kv_table *t, void *cfg, const char *name, const char *value)
{
    const struct ims_kv_key *k = find(t, name, strlen(name));
    if (k == NULL || k->type != IMS_KV_STR)
        return -1;
    char *copy = value ? strdup(value) : NULL;
    if (value && copy == NULL)
        return -1;
    char **slot = field(cfg, k->offset);
    wipe_str(*slot, k->secret);
    *slot = copy;
    return 0;
}

void ims_kv_explain(const struct ims_kv_table *t, const void *cfg, FILE *f)
{
    static const char *const from[] = {"default", "file", "environment"};
    const unsigned char *src = cfield(cfg, t->source_offset);
    for (size_t i = 0; i < t->n; i++) {
        const struct ims_kv_key *k = &t->keys[i];
        const void *slot = cfield(cfg, k->offset);
        bool unset = is_unset(k, cfg);
        if (k->type == IMS_KV_INT)
            fprintf(f, "%-30s = %ld", k->name, *(const long *)slot);
        else if (k->type == IMS_KV_BOOL)
            fprintf(f, "%-30s = %s", k->name, *(const bool *)slot ? "yes" : "no");
        else if (unset)
            fprintf(f, "%-30s = (unset)", k->name);
        else if (k->secret)
            fprintf(f, "%-30s = (set)", k->name);
        else if (k->type == IMS_KV_STR)
            fprintf(f, "%-30s = %s", k->name, *(char *const *)slot);
        else {
            fprintf(f, "%-30s =", k->name);
            for (char *const *it = *(char **const *)slot; *it; it++)
                fprintf(f, " %s", *it);
        }
        fprintf(f, "%s%s\n", unset ? "" : "  # ",
                unset ? "" : from[src[i] <= SRC_ENV ? src[i] : 0]);
    }
}

bool ims_kv_key_info(const struct ims_kv_table *t, size_t i, const char **name,
                     const char **default_value, bool *required)
{
    if (i >= t->n)
        return false;
    *name = t->keys[i].name;
    *default_value = t->keys[i].def ? t->keys[i].def : "";
    *required = t->keys[i].required && t->keys[i].def == NULL;
    return true;
}

/* ---- addresses ---- */

/* A DNS name: labels of letters, digits, '-' and '_' (1..63, not starting with '-'),
 * at most 253 characters, the last label not all digits (that would be a bad IPv4). */
static bool name_ok(const char *h, size_t n)
{
    if (n == 0 || n > 253)
        return false;
    size_t label = 0;
    bool digits_only = true;
    for (size_t i = 0; i <= n; i++) {
        char c = i < n ? h[i] : '.';
        if (c == '.') {
            if (label == 0)
                return false;
            if (i == n && digits_only)
                return false;
            label = 0;
            digits_only = true;
            continue;
        }
        if (!(isalnum((unsigned char)c) || c == '-' || c == '_') || (c & 0x80))
            return false;
        if (c == '-' && label == 0)
            return false;
        if (!isdigit((unsigned char)c))
            digits_only = false;
        if (++label > 63)
            return false;
    }
    return true;
}

/* h[0..n): an IPv4 address, or a name when names is true. */
static bool plain_host_ok(const char *h, size_t n, bool names)
{
    char buf[256];
    if (n == 0 || n >= sizeof(buf))
        return false;
    memcpy(buf, h, n);
    buf[n] = '\0';
    unsigned char a[4];
    if (inet_pton(AF_INET, buf, a) == 1)
        return true;
    return names && name_ok(h, n);
}

static bool ipv6_ok(const char *h, size_t n, unsigned char out[16])
{
    char buf[64];
    if (n == 0 || n >= sizeof(buf))
        return false;
    memcpy(buf, h, n);
    buf[n] = '\0';
    return inet_pton(AF_INET6, buf, out) == 1;
}

/* Splits s into the host (without brackets) and the port text; *v6 when bracketed. */
static bool split(const char *s, const char **h, size_t *hn, const char **port, bool *v6)
{
    if (s == NULL)
        return false;
    const char *colon;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (rb == NULL || rb[1] != ':')
            return false;
        unsigned char a[16];
        if (!ipv6_ok(s + 1, (size_t)(rb - s - 1), a))
            return false;
        *h = s + 1;
        *hn = (size_t)(rb - s - 1);
        colon = rb + 1;
        *v6 = true;
    } else {
        colon = strchr(s, ':');
        if (colon == NULL || strchr(colon + 1, ':'))
            return false;
        *h = s;
        *hn = (size_t)(colon - s);
        *v6 = false;
    }
    *port = colon + 1;
    return true;
}

static bool port_ok(const char *p, unsigned *port)
{
    size_t n = strlen(p);
    if (n == 0 || n > 5 || strspn(p, "0123456789") != n)
        return false;
    unsigned long v = strtoul(p, NULL, 10);
    if (v > 65535)
        return false;
    *port = (unsigned)v;
    return true;
}

int ims_kv_hostport(const char *s, char *host, size_t hl, unsigned *port)
{
    const char *h, *p;
    size_t hn;
    bool v6;
    unsigned pv;
    if (!split(s, &h, &hn, &p, &v6) || !port_ok(p, &pv))
        return -1;
    if (!v6 && !plain_host_ok(h, hn, true))
        return -1;
    if (host == NULL || hn >= hl)
        return -1;
    memcpy(host, h, hn);
    host[hn] = '\0';
    if (port)
        *port = pv;
    return 0;
}

bool ims_kv_host_ok(const char *host)
{
    if (host == NULL)
        return false;
    size_t n = strlen(host);
    unsigned char a[16];
    if (n >= 2 && host[0] == '[')
        return host[n - 1] == ']' && ipv6_ok(host + 1, n - 2, a);
    return plain_host_ok(host, n, true);
}

bool ims_kv_valid_listen(const char *v)
{
    const char *h, *p;
    size_t hn;
    bool v6;
    unsigned port;
    return split(v, &h, &hn, &p, &v6) && port_ok(p, &port) && (v6 || plain_host_ok(h, hn, false));
}

bool ims_kv_valid_peer(const char *v)
{
    char host[256];
    unsigned port;
    return ims_kv_hostport(v, host, sizeof(host), &port) == 0 && port > 0;
}

bool ims_kv_is_loopback(const char *listen)
{
    const char *h, *p;
    size_t hn;
    bool v6;
    unsigned port;
    if (!split(listen, &h, &hn, &p, &v6) || !port_ok(p, &port))
        return false;
    unsigned char a[16];
    if (v6) {
        static const unsigned char loop6[16] = {[15] = 1};
        return ipv6_ok(h, hn, a) && memcmp(a, loop6, 16) == 0;
    }
    char buf[16];
    if (hn >= sizeof(buf))
        return false;
    memcpy(buf, h, hn);
    buf[hn] = '\0';
    return inet_pton(AF_INET, buf, a) == 1 && a[0] == 127;
}
