/* Fetching a JWKS over HTTP(S) with libcurl; used only by imsauth_refresh(). */
#include "internal.h"

#include <ctype.h>
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct fetch {
    char *buf;
    size_t len, max;
    bool too_big;
    long max_age;
};

static size_t on_body(char *p, size_t sz, size_t nm, void *arg)
{
    struct fetch *f = arg;
    size_t n = sz * nm;
    if (f->len + n > f->max) {
        f->too_big = true;
        return 0; /* aborts the transfer */
    }
    char *b = realloc(f->buf, f->len + n + 1);
    if (b == NULL)
        return 0;
    memcpy(b + f->len, p, n);
    f->buf = b;
    f->len += n;
    f->buf[f->len] = '\0';
    return n;
}

long ims_cache_control_max_age(const char *v, size_t n)
{
    long max_age = -1;
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s &&
               (v[e - 1] == ' ' || v[e - 1] == '\t' || v[e - 1] == '\r' || v[e - 1] == '\n'))
            e--;
        size_t len = e - s;
        if ((len == 8 && strncasecmp(v + s, "no-cache", 8) == 0) ||
            (len == 8 && strncasecmp(v + s, "no-store", 8) == 0))
            return 0;
        if (len > 8 && strncasecmp(v + s, "max-age=", 8) == 0) {
            long a = 0;
            size_t k = s + 8;
            if (k < e && v[k] == '"')
                k++;
            size_t digits = 0;
            for (; k < e && isdigit((unsigned char)v[k]) && a < 100000000; k++, digits++)
                a = a * 10 + (v[k] - '0');
            if (digits)
                max_age = a;
        }
    }
    return max_age;
}

static size_t on_header(char *p, size_t sz, size_t nm, void *arg)
{
    struct fetch *f = arg;
    size_t n = sz * nm;
    static const char name[] = "cache-control:";
    if (n > sizeof(name) - 1 && strncasecmp(p, name, sizeof(name) - 1) == 0)
        f->max_age = ims_cache_control_max_age(p + sizeof(name) - 1, n - (sizeof(name) - 1));
    return n;
}

enum imsauth_result ims_http_get(const char *url, unsigned timeout_s, const char *ca_file,
                                 size_t max_len, struct ims_http_result *r, char *detail,
                                 size_t dlen)
{
    memset(r, 0, sizeof(*r));
    struct fetch f = {.max = max_len, .max_age = -1};
    CURL *c = curl_easy_init();
    if (c == NULL)
        return IMSAUTH_ERR_NOMEM;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)timeout_s);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)timeout_s);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &f);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &f);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "libimsauth/1");
    if (ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, ca_file);
    CURLcode cc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    if (cc != CURLE_OK) {
        ims_detail(detail, dlen, "JWKS fetch failed: %s",
                   f.too_big ? "document too large" : curl_easy_strerror(cc));
        free(f.buf);
        return IMSAUTH_ERR_IO;
    }
    r->body = f.buf ? f.buf : calloc(1, 1);
    r->len = f.len;
    r->status = status;
    r->max_age = f.max_age;
    return r->body ? IMSAUTH_OK : IMSAUTH_ERR_NOMEM;
}
