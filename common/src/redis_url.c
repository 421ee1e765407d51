/* Redis URL parser (see redis_url.h). */
#include "ims_common/redis_url.h"

#include <string.h>

/* A decimal number of 1..5 digits only (no sign, no space) in lo..hi; advances *s. */
static bool number(const char **s, long lo, long hi, long *out)
{
    long v = 0;
    int n = 0;
    for (; **s >= '0' && **s <= '9' && n < 6; (*s)++, n++)
        v = v * 10 + (**s - '0');
    *out = v;
    return n >= 1 && n <= 5 && v >= lo && v <= hi;
}

bool ims_redis_url_parse(const char *url, struct ims_redis_url *u)
{
    const char *s = url;
    if (strncmp(s, "redis://", 8) != 0)
        return false;
    s += 8;
    u->password[0] = '\0';
    const char *at = strrchr(s, '@');
    if (at) {
        const char *colon = memchr(s, ':', (size_t)(at - s));
        if (colon == NULL)
            return false;
        size_t pl = (size_t)(at - colon - 1);
        if (pl == 0 || pl >= sizeof(u->password))
            return false;
        memcpy(u->password, colon + 1, pl);
        u->password[pl] = '\0';
        s = at + 1;
    }
    size_t hl = strcspn(s, ":/");
    if (hl == 0 || hl >= sizeof(u->host))
        return false;
    for (size_t i = 0; i < hl; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_'))
            return false;
    }
    memcpy(u->host, s, hl);
    u->host[hl] = '\0';
    s += hl;
    u->port = 6379;
    u->db = 0;
    long v;
    if (*s == ':') {
        s++;
        if (!number(&s, 1, 65535, &v))
            return false;
        u->port = (int)v;
    }
    if (*s == '/') {
        s++;
        if (*s) {
            if (!number(&s, 0, 1000, &v))
                return false;
            u->db = (int)v;
        }
    }
    return *s == '\0';
}
