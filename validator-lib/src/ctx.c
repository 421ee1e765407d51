/* Context: options, key sources, atomic key-set swap, host-driven refresh, logging. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_SCOPE     "ims"
#define DEFAULT_LEEWAY    30
#define DEFAULT_MAX_TOKEN 8192
#define DEFAULT_CACHE     4096

void ims_log(const struct imsauth_ctx *ctx, enum imsauth_log_level lvl, const char *fmt, ...)
{
    if (ctx->log == NULL)
        return;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ctx->log(lvl, msg, ctx->log_arg);
}

struct ims_keyset *ims_ctx_keys(struct imsauth_ctx *ctx)
{
    pthread_mutex_lock(&ctx->ks_lock);
    struct ims_keyset *ks = ctx->ks;
    ims_keyset_ref(ks);
    pthread_mutex_unlock(&ctx->ks_lock);
    return ks;
}

IMSAUTH_API size_t imsauth_key_count(struct imsauth_ctx *ctx)
{
    struct ims_keyset *ks = ims_ctx_keys(ctx);
    size_t n = ks->n;
    ims_keyset_unref(ks);
    return n;
}

/* Reads a whole file of at most max bytes into a NUL-terminated buffer; records its
 * identity in st. */
static enum imsauth_result read_file(const char *path, size_t max, char **out, size_t *len,
                                     struct stat *st, char *detail, size_t dlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, st) != 0) {
        ims_detail(detail, dlen, "cannot open %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return IMSAUTH_ERR_IO;
    }
    if (!S_ISREG(st->st_mode) || (size_t)st->st_size > max) {
        ims_detail(detail, dlen, "%s is not a regular file of at most %zu bytes", path, max);
        close(fd);
        return IMSAUTH_ERR_IO;
    }
    size_t n = (size_t)st->st_size, got = 0;
    char *buf = malloc(n + 1);
    if (buf == NULL) {
        close(fd);
        return IMSAUTH_ERR_NOMEM;
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (got != n) {
        ims_detail(detail, dlen, "short read on %s", path);
        free(buf);
        return IMSAUTH_ERR_IO;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return IMSAUTH_OK;
}

/* Builds a key set from every source, with file_doc/url_doc as the candidate documents
 * of those sources. On success swaps it in. The caller holds refresh_lock (or is alloc). */
static enum imsauth_result rebuild(struct imsauth_ctx *ctx, const char *file_doc, size_t file_len,
                                   const char *url_doc, size_t url_len, char *detail, size_t dlen)
{
    struct ims_keyset *ks = ims_keyset_new();
    if (ks == NULL)
        return IMSAUTH_ERR_NOMEM;
    enum imsauth_result r = IMSAUTH_OK;
    if (ctx->jwks_json)
        r = ims_keyset_add_jwks(ks, ctx->jwks_json, strlen(ctx->jwks_json), detail, dlen);
    for (size_t i = 0; r == IMSAUTH_OK && i < ctx->n_pem; i++)
        r = ims_keyset_add_pem(ks, ctx->pem[i].pem, ctx->pem[i].kid, detail, dlen);
    if (r == IMSAUTH_OK && ctx->secret)
        r = ims_keyset_add_secret(ks, ctx->secret, ctx->secret_len, ctx->secret_kid, detail, dlen);
    if (r == IMSAUTH_OK && file_doc)
        r = ims_keyset_add_jwks(ks, file_doc, file_len, detail, dlen);
    if (r == IMSAUTH_OK && url_doc)
        r = ims_keyset_add_jwks(ks, url_doc, url_len, detail, dlen);
    if (r != IMSAUTH_OK) {
        ims_keyset_unref(ks);
        return r;
    }
    ims_keyset_prepare(ks, &ctx->mds, ctx->algs);
    pthread_mutex_lock(&ctx->ks_lock);
    struct ims_keyset *old = ctx->ks;
    ctx->ks = ks;
    atomic_store(&ctx->generation, ks->generation);
    pthread_mutex_unlock(&ctx->ks_lock);
    ims_keyset_unref(old);
    return IMSAUTH_OK;
}

static char *dup_opt(const char *s, bool *fail)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        *fail = true;
    return d;
}

static void free_sources(struct imsauth_ctx *ctx)
{
    free(ctx->jwks_json);
    for (size_t i = 0; i < ctx->n_pem; i++) {
        free((char *)(uintptr_t)ctx->pem[i].pem);
        free((char *)(uintptr_t)ctx->pem[i].kid);
    }
    free(ctx->pem);
    if (ctx->secret) {
        OPENSSL_cleanse(ctx->secret, ctx->secret_len);
        free(ctx->secret);
    }
    free(ctx->secret_kid);
    free(ctx->file.path);
    free(ctx->file.doc);
    free(ctx->url.url);
    free(ctx->url.doc);
    free(ctx->ca_file);
}

IMSAUTH_API void imsauth_ctx_free(struct imsauth_ctx *ctx)
{
    if (ctx == NULL)
        return;
    ims_cache_free(ctx->cache);
    ims_keyset_unref(ctx->ks);
    for (size_t i = 0; i < ctx->policy.n_issuers; i++)
        free(ctx->policy.issuers[i]);
    free(ctx->policy.issuers);
    free(ctx->realm);
    free(ctx->authz_server);
    free(ctx->scope);
    free((char *)(uintptr_t)ctx->policy.audience);
    free_sources(ctx);
    ims_mds_free(&ctx->mds);
    pthread_mutex_destroy(&ctx->ks_lock);
    pthread_mutex_destroy(&ctx->refresh_lock);
    free(ctx);
}

static enum imsauth_result check_opts(const struct imsauth_opts *o, char *detail, size_t dlen)
{
    if (o == NULL) {
        ims_detail(detail, dlen, "options missing");
        return IMSAUTH_ERR_INVALID_ARG;
    }
    if (o->issuers == NULL || o->issuers[0] == NULL || o->audience == NULL ||
        o->audience[0] == '\0' || o->realm == NULL || o->realm[0] == '\0') {
        ims_detail(detail, dlen, "issuers, audience and realm are required");
        return IMSAUTH_ERR_INVALID_ARG;
    }
    if (!o->jwks_file && !o->jwks_json && !o->n_pem_keys && !o->jwks_url && !o->hmac_secret) {
        ims_detail(detail, dlen,
                   "no key source (jwks_file, jwks_json, pem_keys, jwks_url or "
                   "hmac_secret)");
        return IMSAUTH_ERR_INVALID_ARG;
    }
    unsigned hs = IMSAUTH_ALG_HS256 | IMSAUTH_ALG_HS384 | IMSAUTH_ALG_HS512;
    if ((o->allowed_algs & hs) && o->hmac_secret == NULL) {
        ims_detail(detail, dlen, "HS* algorithms need an explicit hmac_secret");
        return IMSAUTH_ERR_INVALID_ARG;
    }
    if (o->hmac_secret && o->hmac_secret_len < 32) {
        ims_detail(detail, dlen, "hmac_secret must be at least 32 bytes");
        return IMSAUTH_ERR_INVALID_ARG;
    }
    if (o->allowed_algs & ~((IMSAUTH_ALG_HS512 << 1) - 1)) {
        ims_detail(detail, dlen, "unknown bits in allowed_algs");
        return IMSAUTH_ERR_INVALID_ARG;
    }
    if (o->n_pem_keys && o->pem_keys == NULL) {
        ims_detail(detail, dlen, "n_pem_keys without pem_keys");
        return IMSAUTH_ERR_INVALID_ARG;
    }
    if (o->scope && (o->scope[0] == '\0' || strchr(o->scope, ' '))) {
        ims_detail(detail, dlen, "scope must be one non-empty scope token");
        return IMSAUTH_ERR_INVALID_ARG;
    }
    return IMSAUTH_OK;
}

static unsigned or_default(unsigned v, unsigned d)
{
    return v ? v : d;
}

IMSAUTH_API enum imsauth_result imsauth_ctx_alloc(struct imsauth_ctx **ctxp,
                                                  const struct imsauth_opts *o, char *detail,
                                                  size_t dlen)
{
    ims_detail(detail, dlen, "%s", "");
    enum imsauth_result r = check_opts(o, detail, dlen);
    if (r != IMSAUTH_OK)
        return r;
    struct imsauth_ctx *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        return IMSAUTH_ERR_NOMEM;
    pthread_mutex_init(&ctx->ks_lock, NULL);
    pthread_mutex_init(&ctx->refresh_lock, NULL);
    bool fail = false;

    size_t ni = 0;
    while (o->issuers[ni])
        ni++;
    ctx->policy.issuers = calloc(ni, sizeof(char *));
    fail |= ctx->policy.issuers == NULL;
    for (size_t i = 0; !fail && i < ni; i++) {
        ctx->policy.issuers[i] = dup_opt(o->issuers[i], &fail);
        ctx->policy.n_issuers = i + 1;
    }
    ctx->policy.audience = dup_opt(o->audience, &fail);
    ctx->realm = dup_opt(o->realm, &fail);
    ctx->authz_server = dup_opt(o->authz_server ? o->authz_server : o->issuers[0], &fail);
    ctx->scope = dup_opt(o->scope ? o->scope : DEFAULT_SCOPE, &fail);
    ctx->policy.scope = ctx->scope;
    ctx->jwks_json = dup_opt(o->jwks_json, &fail);
    ctx->ca_file = dup_opt(o->ca_file, &fail);
    if (o->n_pem_keys) {
        ctx->pem = calloc(o->n_pem_keys, sizeof(*ctx->pem));
        fail |= ctx->pem == NULL;
        for (size_t i = 0; !fail && i < o->n_pem_keys; i++) {
            ctx->pem[i].pem = dup_opt(o->pem_keys[i].pem ? o->pem_keys[i].pem : "", &fail);
            ctx->pem[i].kid = dup_opt(o->pem_keys[i].kid, &fail);
            ctx->n_pem = i + 1;
        }
    }
    if (o->hmac_secret && !fail) {
        ctx->secret = malloc(o->hmac_secret_len);
        fail |= ctx->secret == NULL;
        if (ctx->secret) {
            memcpy(ctx->secret, o->hmac_secret, o->hmac_secret_len);
            ctx->secret_len = o->hmac_secret_len;
        }
        ctx->secret_kid = dup_opt(o->hmac_kid, &fail);
    }
    ctx->algs = o->allowed_algs ? o->allowed_algs
                                : IMSAUTH_ALGS_DEFAULT | (o->hmac_secret ? IMSAUTH_ALG_HS256 : 0);
    ctx->leeway = o->leeway_s ? o->leeway_s : DEFAULT_LEEWAY;
    ctx->max_token_len = o->max_token_len ? o->max_token_len : DEFAULT_MAX_TOKEN;
    ctx->url_min = or_default(o->jwks_min_refresh_s, 60);
    ctx->url_max = or_default(o->jwks_max_refresh_s, 86400);
    ctx->url_default = or_default(o->jwks_default_refresh_s, 300);
    ctx->kid_interval = or_default(o->unknown_kid_interval_s, 30);
    ctx->http_timeout = or_default(o->http_timeout_s, 5);
    ctx->revoked = o->revoked;
    ctx->revoked_arg = o->revoked_arg;
    ctx->log = o->log;
    ctx->log_arg = o->log_arg;
    if (o->jwks_url) {
        ctx->url.url = dup_opt(o->jwks_url, &fail);
        ctx->has_url = true;
    }
    if (fail || !ims_mds_load(&ctx->mds)) {
        r = IMSAUTH_ERR_NOMEM;
        goto out;
    }
    if (!o->cache_off) {
        ctx->cache = ims_cache_new(o->cache_entries ? o->cache_entries : DEFAULT_CACHE);
        if (ctx->cache == NULL) {
            r = IMSAUTH_ERR_NOMEM;
            goto out;
        }
    }
    if (o->jwks_file) {
        struct stat st;
        ctx->has_file = true;
        ctx->file.path = dup_opt(o->jwks_file, &fail);
        if (fail) {
            r = IMSAUTH_ERR_NOMEM;
            goto out;
        }
        r = read_file(o->jwks_file, IMSAUTH_MAX_JWKS_LEN, &ctx->file.doc, &ctx->file.doc_len, &st,
                      detail, dlen);
        if (r != IMSAUTH_OK)
            goto out;
        ctx->file.dev = st.st_dev;
        ctx->file.ino = st.st_ino;
        ctx->file.size = st.st_size;
        ctx->file.mtime = st.st_mtim;
    }
    r = rebuild(ctx, ctx->file.doc, ctx->file.doc_len, NULL, 0, detail, dlen);
    if (r == IMSAUTH_OK && ctx->ks->n == 0 && !ctx->has_url) {
        ims_detail(detail, dlen, "no usable signature key in the configured sources");
        r = IMSAUTH_ERR_KEYS;
    }
out:
    if (r != IMSAUTH_OK) {
        imsauth_ctx_free(ctx);
        return r;
    }
    *ctxp = ctx;
    return IMSAUTH_OK;
}

static enum imsauth_result refresh_file(struct imsauth_ctx *ctx, char *detail, size_t dlen)
{
    struct stat st;
    struct ims_source_file *f = &ctx->file;
    if (stat(f->path, &st) != 0) {
        ims_detail(detail, dlen, "cannot stat %s: %s (keeping the loaded keys)", f->path,
                   strerror(errno));
        return IMSAUTH_ERR_IO;
    }
    if (st.st_dev == f->dev && st.st_ino == f->ino && st.st_size == f->size &&
        st.st_mtim.tv_sec == f->mtime.tv_sec && st.st_mtim.tv_nsec == f->mtime.tv_nsec)
        return IMSAUTH_OK;
    char *doc;
    size_t len;
    enum imsauth_result r = read_file(f->path, IMSAUTH_MAX_JWKS_LEN, &doc, &len, &st, detail, dlen);
    if (r != IMSAUTH_OK)
        return r;
    r = rebuild(ctx, doc, len, ctx->url.doc, ctx->url.doc_len, detail, dlen);
    if (r != IMSAUTH_OK) {
        /* Perhaps caught mid-write: keep the old keys and look again next time. */
        free(doc);
        return r;
    }
    free(f->doc);
    f->doc = doc;
    f->doc_len = len;
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    f->size = st.st_size;
    f->mtime = st.st_mtim;
    atomic_fetch_add(&ctx->n_reloads, 1);
    ims_log(ctx, IMSAUTH_LOG_INFO, "JWKS file %s reloaded: %zu keys", f->path,
            imsauth_key_count(ctx));
    return IMSAUTH_OK;
}

static unsigned clamp(long v, unsigned lo, unsigned hi)
{
    return v < (long)lo ? lo : v > (long)hi ? hi : (unsigned)v;
}

/* now: monotonic milliseconds, so that intervals are elapsed time, not whole seconds of
 * the wall clock (a fetch at x.999 s and another at x+1.001 s are 2 ms apart). */
static enum imsauth_result refresh_url(struct imsauth_ctx *ctx, int64_t now, char *detail,
                                       size_t dlen)
{
    struct ims_source_url *u = &ctx->url;
    bool due = now >= u->next_fetch;
    bool kid = atomic_load(&ctx->want_kid_fetch) &&
               (!u->kid_fetched || now - u->last_kid_fetch >= (int64_t)ctx->kid_interval * 1000);
    if (!due && !kid)
        return IMSAUTH_OK;
    if (kid) {
        u->last_kid_fetch = now;
        u->kid_fetched = true;
    }
    atomic_store(&ctx->want_kid_fetch, false);
    struct ims_http_result h;
    enum imsauth_result r = ims_http_get(u->url, ctx->http_timeout, ctx->ca_file,
                                         IMSAUTH_MAX_JWKS_LEN, &h, detail, dlen);
    if (r == IMSAUTH_OK && h.status != 200) {
        ims_detail(detail, dlen, "JWKS URL answered HTTP %ld", h.status);
        r = IMSAUTH_ERR_IO;
    }
    if (r == IMSAUTH_OK)
        r = rebuild(ctx, ctx->file.doc, ctx->file.doc_len, h.body, h.len, detail, dlen);
    if (r != IMSAUTH_OK) {
        free(h.body);
        /* Retry soon, but not in a tight loop. */
        u->next_fetch = now + (int64_t)(ctx->url_min < 30 ? ctx->url_min : 30) * 1000;
        return r;
    }
    free(u->doc);
    u->doc = h.body;
    u->doc_len = h.len;
    u->next_fetch = now + (int64_t)(h.max_age < 0 ? ctx->url_default
                                                  : clamp(h.max_age, ctx->url_min, ctx->url_max)) *
                              1000;
    atomic_fetch_add(&ctx->n_reloads, 1);
    ims_log(ctx, IMSAUTH_LOG_INFO, "JWKS URL fetched: %zu keys, next in %lld s",
            imsauth_key_count(ctx), (long long)((u->next_fetch - now) / 1000));
    return IMSAUTH_OK;
}

IMSAUTH_API enum imsauth_result imsauth_refresh(struct imsauth_ctx *ctx, unsigned *next_s,
                                                char *detail, size_t dlen)
{
    ims_detail(detail, dlen, "%s", "");
    enum imsauth_result r = IMSAUTH_OK, r2;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000; /* ms */
    unsigned next = 3600;
    pthread_mutex_lock(&ctx->refresh_lock);
    if (ctx->has_file) {
        r = refresh_file(ctx, detail, dlen);
        next = 1;
    }
    if (ctx->has_url) {
        r2 = refresh_url(ctx, now, r == IMSAUTH_OK ? detail : NULL, dlen);
        if (r == IMSAUTH_OK)
            r = r2;
        int64_t until = ctx->url.next_fetch - now; /* ms */
        if (atomic_load(&ctx->want_kid_fetch)) {
            int64_t k = ctx->url.last_kid_fetch + (int64_t)ctx->kid_interval * 1000 - now;
            until = k < until ? k : until;
        }
        until = (until + 999) / 1000; /* whole seconds, rounded up */
        /* A verification may meet an unknown kid any time after this call: come back within
           the refetch interval so a new key is fetched in time. */
        if (until > (int64_t)ctx->kid_interval)
            until = ctx->kid_interval;
        if (until < 1)
            until = 1;
        if (until < next)
            next = (unsigned)until;
    }
    pthread_mutex_unlock(&ctx->refresh_lock);
    if (r != IMSAUTH_OK) {
        atomic_fetch_add(&ctx->n_reload_errors, 1);
        ims_log(ctx, IMSAUTH_LOG_WARN, "key refresh failed: %s",
                detail && dlen ? detail : imsauth_strerror(r));
    }
    if (next_s)
        *next_s = next;
    return r;
}

IMSAUTH_API void imsauth_stats_get(const struct imsauth_ctx *ctx, struct imsauth_stats *s)
{
    struct imsauth_ctx *c = (struct imsauth_ctx *)(uintptr_t)ctx;
    s->verified = atomic_load(&c->n_verified);
    s->cache_hits = atomic_load(&c->n_hits);
    s->cache_misses = atomic_load(&c->n_misses);
    s->failures = atomic_load(&c->n_failures);
    s->key_reloads = atomic_load(&c->n_reloads);
    s->key_reload_errors = atomic_load(&c->n_reload_errors);
}
