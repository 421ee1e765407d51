/* The admin API's validation table: bodies and query parameters (see admin.h). */
#include "admin.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void admin_error_add(json_t *errors, const char *field, const char *fmt, ...)
{
    if (json_array_size(errors) >= ADMIN_MAX_ERRORS)
        return;
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_array_append_new(
        errors, json_pack("{s:s, s:s}", "field", field[0] ? field : "(body)", "message", msg));
}

const struct admin_field *admin_field_find(const struct admin_field *table, const char *name)
{
    for (const struct admin_field *f = table; f && f->name; f++)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

/* ---- form checks ---- */

/* True for C0 controls, DEL and the C1 controls (U+0080..U+009F, UTF-8 C2 80..C2 9F). */
static bool has_control(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f || (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f))
            return true;
    return false;
}

static bool has_space_or_control(const char *s)
{
    if (has_control(s))
        return true;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p == ' ' || (p[0] == 0xc2 && p[1] == 0xa0))
            return true;
    return false;
}

static bool all_of(const char *s, const char *allowed)
{
    return s[strspn(s, allowed)] == '\0';
}

#define ALNUM "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
#define LOWER "abcdefghijklmnopqrstuvwxyz0123456789"

const char *admin_check_text(const char *s)
{
    return has_control(s) ? "must not hold control characters" : NULL;
}

const char *admin_check_token(const char *s)
{
    return has_space_or_control(s) ? "must not hold whitespace or control characters" : NULL;
}

const char *admin_check_client_id(const char *s)
{
    return all_of(s, ALNUM "._~-") ? NULL : "must hold only letters, digits and . _ ~ -";
}

const char *admin_check_pool_name(const char *s)
{
    if (!islower((unsigned char)s[0]) && !isdigit((unsigned char)s[0]))
        return "must start with a lower-case letter or a digit";
    return all_of(s, LOWER "_.-") ? NULL : "must hold only lower-case letters, digits and _ . -";
}

const char *admin_check_realm(const char *s)
{
    size_t n = strlen(s);
    if (!all_of(s, ALNUM ".-") || n == 0 || !isalnum((unsigned char)s[0]) ||
        !isalnum((unsigned char)s[n - 1]))
        return "must be a domain name (letters, digits, . and -, starting and ending with a "
               "letter or digit)";
    return NULL;
}

const char *admin_check_impi(const char *s)
{
    return has_space_or_control(s) ? "must not hold whitespace or control characters" : NULL;
}

const char *admin_check_impu(const char *s)
{
    if (!((strncmp(s, "sip:", 4) == 0 && s[4]) || (strncmp(s, "sips:", 5) == 0 && s[5]) ||
          (strncmp(s, "tel:", 4) == 0 && s[4])))
        return "must be a sip:, sips: or tel: URI (lower-case scheme)";
    if (has_space_or_control(s) || strpbrk(s, "<>\""))
        return "must be a plain URI: no whitespace, control characters, <, > or \"";
    return NULL;
}

const char *admin_check_scope(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x21 || *p == 0x22 || *p == 0x5c || *p > 0x7e)
            return "must be a scope token (printable ASCII without space, \" and \\)";
    return NULL;
}

/* host[:port] of an http(s) URI whose authority starts at p; true when it is a loopback
 * host (127.0.0.1, [::1], localhost). *end is the end of the authority. */
static bool authority(const char *p, const char **end, bool *loopback)
{
    size_t n = strcspn(p, "/?#");
    *end = p + n;
    if (n == 0 || memchr(p, '@', n))
        return false; /* no host, or userinfo */
    const char *colon = p[0] == '[' ? NULL : memchr(p, ':', n);
    size_t hl = colon ? (size_t)(colon - p) : n;
    if (p[0] == '[') {
        const char *rb = memchr(p, ']', n);
        if (rb == NULL)
            return false;
        hl = (size_t)(rb - p) + 1;
        colon = hl < n ? p + hl : NULL;
        if (colon && *colon != ':')
            return false;
    }
    if (hl == 0)
        return false;
    if (colon) {
        size_t pl = n - hl - 1;
        if (pl == 0 || pl > 5)
            return false;
        long port = 0;
        for (size_t i = 0; i < pl; i++) {
            if (!isdigit((unsigned char)colon[1 + i]))
                return false;
            port = port * 10 + (colon[1 + i] - '0');
        }
        if (port == 0 || port > 65535)
            return false;
    }
    *loopback = (hl == 9 && strncmp(p, "127.0.0.1", 9) == 0) ||
                (hl == 5 && strncmp(p, "[::1]", 5) == 0) ||
                (hl == 9 && strncasecmp(p, "localhost", 9) == 0);
    return true;
}

const char *admin_check_redirect(const char *s)
{
    const char *why = "must be an absolute https URI without fragment (http only for "
                      "127.0.0.1, [::1] or localhost)";
    bool https = strncmp(s, "https://", 8) == 0, http = strncmp(s, "http://", 7) == 0;
    if ((!https && !http) || has_space_or_control(s) || strchr(s, '#'))
        return why;
    const char *end;
    bool loop = false;
    if (!authority(s + (https ? 8 : 7), &end, &loop) || (http && !loop))
        return why;
    return NULL;
}

const char *admin_check_origin(const char *s)
{
    const char *why = "must be an origin: https://host[:port] (http only for 127.0.0.1, [::1] "
                      "or localhost), no path";
    bool https = strncmp(s, "https://", 8) == 0, http = strncmp(s, "http://", 7) == 0;
    if ((!https && !http) || has_space_or_control(s))
        return why;
    const char *end;
    bool loop = false;
    if (!authority(s + (https ? 8 : 7), &end, &loop) || *end != '\0' || (http && !loop))
        return why;
    return NULL;
}

const char *admin_check_username(const char *s)
{
    return has_space_or_control(s) ? "must not hold whitespace or control characters" : NULL;
}

const char *admin_check_password(const char *s)
{
    return has_control(s) ? "must not hold control characters" : NULL;
}

const char *admin_check_uuid(const char *s)
{
    static const char form[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    if (strlen(s) != sizeof(form) - 1)
        return "must be a UUID";
    for (size_t i = 0; form[i]; i++)
        if (form[i] == '-' ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return "must be a UUID";
    return NULL;
}

const char *admin_check_cursor(const char *s)
{
    return all_of(s, ALNUM "-_") ? NULL : "must be a cursor from a previous page";
}

static bool digits(const char *s, int n, int lo, int hi, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return v >= lo && v <= hi;
}

const char *admin_check_time(const char *s)
{
    const char *why = "must be an RFC 3339 date-time such as 2025-01-31T12:00:00Z";
    int v;
    if (strlen(s) < 20 || !digits(s, 4, 1, 9999, &v) || s[4] != '-' ||
        !digits(s + 5, 2, 1, 12, &v) || s[7] != '-' || !digits(s + 8, 2, 1, 31, &v) ||
        (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2, 0, 23, &v) || s[13] != ':' ||
        !digits(s + 14, 2, 0, 59, &v) || s[16] != ':' || !digits(s + 17, 2, 0, 60, &v))
        return why;
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        int n = 0;
        while (isdigit((unsigned char)*p) && n < 9) {
            p++;
            n++;
        }
        if (n == 0)
            return why;
    }
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
        return NULL;
    if ((*p == '+' || *p == '-') && digits(p + 1, 2, 0, 23, &v) && p[3] == ':' &&
        digits(p + 4, 2, 0, 59, &v) && p[6] == '\0')
        return NULL;
    return why;
}

/* ---- values ---- */

static long length_of(const char *s, bool chars)
{
    long n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (!chars || (*p & 0xc0) != 0x80)
            n++;
    return n;
}

static bool utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = *p < 0x80             ? 0
                : (*p & 0xe0) == 0xc0 ? 1
                : (*p & 0xf0) == 0xe0 ? 2
                : (*p & 0xf8) == 0xf0 ? 3
                                      : -1;
        if (n < 0 || (n == 1 && *p < 0xc2) || (n == 3 && *p > 0xf4))
            return false;
        uint32_t cp = *p & (0x7f >> n);
        for (int i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
        p += n + 1;
    }
    return true;
}

static void choices_text(const char *const *c, char *out, size_t len)
{
    size_t n = 0;
    out[0] = '\0';
    for (; *c && n < len; c++)
        n += (size_t)snprintf(out + n, len - n, "%s%s", n ? ", " : "", *c);
}

/* Checks one string against f (length in min/max, or emin/emax for array elements). */
static void check_string(const struct admin_field *f, const char *s, long min, long max,
                         const char *path, json_t *errors)
{
    bool chars = f->flags & AF_CHARS;
    long n = length_of(s, chars);
    if (n < min || n > max) {
        if (min == max)
            admin_error_add(errors, path, "must hold %ld %s", min, chars ? "characters" : "bytes");
        else
            admin_error_add(errors, path, "must hold %ld to %ld %s", min, max,
                            chars ? "characters" : "bytes");
        return;
    }
    if (f->choices) {
        for (const char *const *c = f->choices; *c; c++)
            if (strcmp(*c, s) == 0)
                return;
        char list[300];
        choices_text(f->choices, list, sizeof(list));
        admin_error_add(errors, path, "must be one of: %s", list);
        return;
    }
    const char *why = admin_check_text(s);
    if (why == NULL && f->check)
        why = f->check(s);
    if (why)
        admin_error_add(errors, path, "%s", why);
}

static void validate_object(const struct admin_field *table, const json_t *obj, const char *prefix,
                            enum admin_mode mode, json_t *errors);

static void check_value(const struct admin_field *f, const json_t *v, const char *path,
                        json_t *errors)
{
    char sub[320];
    switch (f->type) {
    case AT_STRING:
        if (!json_is_string(v))
            admin_error_add(errors, path, "must be a string");
        else
            check_string(f, json_string_value(v), f->min, f->max, path, errors);
        return;
    case AT_INT:
        if (!json_is_integer(v))
            admin_error_add(errors, path, "must be an integer");
        else if (json_integer_value(v) < f->min || json_integer_value(v) > f->max)
            admin_error_add(errors, path, "must be between %ld and %ld", f->min, f->max);
        return;
    case AT_BOOL:
        if (!json_is_boolean(v))
            admin_error_add(errors, path, "must be true or false");
        return;
    case AT_STRINGS:
    case AT_OBJECTS:
        if (!json_is_array(v)) {
            admin_error_add(errors, path, "must be an array");
            return;
        }
        if ((long)json_array_size(v) < f->min || (long)json_array_size(v) > f->max) {
            admin_error_add(errors, path, "must hold %ld to %ld items", f->min, f->max);
            return;
        }
        for (size_t i = 0; i < json_array_size(v); i++) {
            const json_t *e = json_array_get(v, i);
            if (snprintf(sub, sizeof(sub), "%s[%zu]", path, i) >= (int)sizeof(sub))
                sub[sizeof(sub) - 1] = '\0'; /* a path this deep is cut, not overrun */
            if (f->type == AT_OBJECTS) {
                validate_object(f->sub, e, sub, ADMIN_CREATE, errors);
                continue;
            }
            if (!json_is_string(e)) {
                admin_error_add(errors, sub, "must be a string");
                continue;
            }
            check_string(f, json_string_value(e), f->emin, f->emax, sub, errors);
            for (size_t k = 0; (f->flags & AF_UNIQUE) && k < i; k++)
                if (json_equal(json_array_get(v, k), e)) {
                    admin_error_add(errors, sub, "repeats an earlier item");
                    break;
                }
        }
        return;
    case AT_OBJECT:
        validate_object(f->sub, v, path, ADMIN_CREATE, errors);
        return;
    case AT_ANY: {
        char buf[300];
        const char *why = NULL;
        if (!json_is_object(v))
            why = "must be a JSON object";
        else if (f->check_json)
            why = f->check_json(v, buf, sizeof(buf));
        if (why)
            admin_error_add(errors, path, "%s", why);
        return;
    }
    }
}

static void validate_object(const struct admin_field *table, const json_t *obj, const char *prefix,
                            enum admin_mode mode, json_t *errors)
{
    if (!json_is_object(obj)) {
        admin_error_add(errors, prefix, "must be a JSON object");
        return;
    }
    char path[320];
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)(uintptr_t)obj, key, v)
    {
        snprintf(path, sizeof(path), "%s%s%.200s", prefix, prefix[0] ? "." : "", key);
        const struct admin_field *f = admin_field_find(table, key);
        if (f == NULL)
            admin_error_add(errors, path, "unknown field");
        else if (mode == ADMIN_PATCH && (f->flags & AF_IMMUTABLE))
            admin_error_add(errors, path, "cannot be changed");
        else if (json_is_null(v)) {
            if (!(f->flags & AF_NULLABLE))
                admin_error_add(errors, path, "must not be null");
        } else
            check_value(f, v, path, errors);
    }
    for (const struct admin_field *f = table; mode == ADMIN_CREATE && f && f->name; f++)
        if ((f->flags & AF_REQUIRED) && json_object_get(obj, f->name) == NULL) {
            snprintf(path, sizeof(path), "%s%s%s", prefix, prefix[0] ? "." : "", f->name);
            admin_error_add(errors, path, "is required");
        }
}

bool admin_validate_body(const struct admin_field *table, const json_t *body, enum admin_mode mode,
                         json_t *errors)
{
    size_t before = json_array_size(errors);
    validate_object(table, body, "", mode, errors);
    return json_array_size(errors) == before;
}

bool admin_validate_param(const struct admin_field *f, const char *value, json_t *out,
                          json_t *errors)
{
    size_t before = json_array_size(errors);
    if (!utf8_valid(value)) {
        admin_error_add(errors, f->name, "must be UTF-8 text");
        return false;
    }
    switch (f->type) {
    case AT_INT: {
        size_t n = strlen(value);
        if (n == 0 || n > 18 || !all_of(value, "0123456789")) {
            admin_error_add(errors, f->name, "must be a decimal integer");
            return false;
        }
        long long v = strtoll(value, NULL, 10);
        if (v < f->min || v > f->max) {
            admin_error_add(errors, f->name, "must be between %ld and %ld", f->min, f->max);
            return false;
        }
        json_object_set_new(out, f->name, json_integer(v));
        return true;
    }
    case AT_BOOL:
        if (strcmp(value, "true") != 0 && strcmp(value, "false") != 0) {
            admin_error_add(errors, f->name, "must be true or false");
            return false;
        }
        json_object_set_new(out, f->name, json_boolean(value[0] == 't'));
        return true;
    default:
        check_string(f, value, f->min, f->max, f->name, errors);
        if (json_array_size(errors) != before)
            return false;
        json_object_set_new(out, f->name, json_string(value));
        return true;
    }
}
