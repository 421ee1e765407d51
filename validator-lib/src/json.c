/*
 * A strict, zero-allocation JSON reader for the two small documents of every token (JOSE
 * header and claims), on the per-request path. Jansson parses everything else (JWKS,
 * configuration); here it cost ~4 us per token, more than all other work besides the
 * signature (bench/README.md). fuzz/fuzz_json.c checks this reader against Jansson.
 *
 * RFC 8259 grammar; strings are valid UTF-8 with no raw control characters and no \u0000;
 * duplicate names are rejected in every object; limits: depth IMS_JSON_MAX_DEPTH, members
 * per object IMS_JSON_MAX_MEMBERS, name length IMS_JSON_MAX_NAME.
 */
#include "json.h"

#include <stdlib.h>
#include <string.h>

struct parser {
    const uint8_t *p, *end;
    enum ims_json_status st;
};

static void ws(struct parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static bool fail(struct parser *ps, enum ims_json_status st)
{
    if (ps->st == IMS_JSON_OK)
        ps->st = st;
    return false;
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool hex4(const uint8_t *p, const uint8_t *end, unsigned *out)
{
    if (end - p < 4)
        return false;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return false;
        v = v << 4 | (unsigned)h;
    }
    *out = v;
    return true;
}

/* Length of the valid UTF-8 sequence at p (non-ASCII lead), 0 if invalid. */
static size_t utf8_len(const uint8_t *p, const uint8_t *end)
{
    uint8_t c = *p;
    size_t n;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return n;
}

/* Scans a string starting at the opening quote; leaves p after the closing quote. The
 * content span (escaped form) is [*s, *s + *n). */
static bool scan_string(struct parser *ps, const uint8_t **s, size_t *n)
{
    const uint8_t *p = ps->p + 1;
    *s = p;
    while (p < ps->end) {
        uint8_t c = *p;
        if (c == '"') {
            *n = (size_t)(p - *s);
            ps->p = p + 1;
            return true;
        }
        if (c < 0x20)
            return fail(ps, IMS_JSON_SYNTAX);
        if (c == '\\') {
            if (p + 1 >= ps->end)
                return fail(ps, IMS_JSON_SYNTAX);
            uint8_t e = p[1];
            if (e == 'u') {
                unsigned u;
                if (!hex4(p + 2, ps->end, &u) || u == 0)
                    return fail(ps, IMS_JSON_SYNTAX);
                p += 6;
                if (u >= 0xd800 && u <= 0xdbff) {
                    unsigned lo;
                    if (ps->end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
                        !hex4(p + 2, ps->end, &lo) || lo < 0xdc00 || lo > 0xdfff)
                        return fail(ps, IMS_JSON_SYNTAX);
                    p += 6;
                } else if (u >= 0xdc00 && u <= 0xdfff) {
                    return fail(ps, IMS_JSON_SYNTAX);
                }
                continue;
            }
            if (!strchr("\"\\/bfnrt", e) || e == 0)
                return fail(ps, IMS_JSON_SYNTAX);
            p += 2;
            continue;
        }
        if (c >= 0x80) {
            size_t l = utf8_len(p, ps->end);
            if (l == 0)
                return fail(ps, IMS_JSON_SYNTAX);
            p += l;
            continue;
        }
        p++;
    }
    return fail(ps, IMS_JSON_SYNTAX);
}

static bool scan_number(struct parser *ps)
{
    const uint8_t *p = ps->p, *e = ps->end;
    if (p < e && *p == '-')
        p++;
    if (p >= e)
        return fail(ps, IMS_JSON_SYNTAX);
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    } else {
        return fail(ps, IMS_JSON_SYNTAX);
    }
    if (p < e && *p == '.') {
        p++;
        if (p >= e || *p < '0' || *p > '9')
            return fail(ps, IMS_JSON_SYNTAX);
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (p >= e || *p < '0' || *p > '9')
            return fail(ps, IMS_JSON_SYNTAX);
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    if (p - ps->p > 64)
        return fail(ps, IMS_JSON_LIMIT);
    ps->p = p;
    return true;
}

static bool literal(struct parser *ps, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
        return fail(ps, IMS_JSON_SYNTAX);
    ps->p += n;
    return true;
}

static bool value(struct parser *ps, struct ims_json_value *v, int depth);

/* Names of one object, to find duplicates (compared in decoded form). */
struct names {
    struct ims_json_value v[IMS_JSON_MAX_MEMBERS];
    size_t n;
};

static bool object(struct parser *ps, struct ims_json_object *top, int depth)
{
    struct names local;
    struct names *seen = &local;
    local.n = 0;
    ps->p++; /* '{' */
    ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        return true;
    }
    for (;;) {
        ws(ps);
        if (ps->p >= ps->end || *ps->p != '"')
            return fail(ps, IMS_JSON_SYNTAX);
        struct ims_json_value name = {.type = IMS_JSON_STRING};
        if (!scan_string(ps, &name.s, &name.n))
            return false;
        if (name.n > IMS_JSON_MAX_NAME || seen->n == IMS_JSON_MAX_MEMBERS)
            return fail(ps, IMS_JSON_LIMIT);
        for (size_t i = 0; i < seen->n; i++)
            if (ims_json_str_equal(&seen->v[i], &name))
                return fail(ps, IMS_JSON_DUPLICATE);
        seen->v[seen->n++] = name;
        ws(ps);
        if (ps->p >= ps->end || *ps->p != ':')
            return fail(ps, IMS_JSON_SYNTAX);
        ps->p++;
        struct ims_json_value v;
        if (!value(ps, &v, depth + 1))
            return false;
        if (top) {
            top->names[top->n] = name;
            top->values[top->n] = v;
            top->n++;
        }
        ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == '}') {
            ps->p++;
            return true;
        }
        return fail(ps, IMS_JSON_SYNTAX);
    }
}

static bool array(struct parser *ps, int depth)
{
    ps->p++; /* '[' */
    ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        return true;
    }
    for (;;) {
        struct ims_json_value v;
        if (!value(ps, &v, depth + 1))
            return false;
        ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == ']') {
            ps->p++;
            return true;
        }
        return fail(ps, IMS_JSON_SYNTAX);
    }
}

static bool value(struct parser *ps, struct ims_json_value *v, int depth)
{
    if (depth > IMS_JSON_MAX_DEPTH)
        return fail(ps, IMS_JSON_LIMIT);
    ws(ps);
    if (ps->p >= ps->end)
        return fail(ps, IMS_JSON_SYNTAX);
    const uint8_t *start = ps->p;
    bool ok;
    switch (*ps->p) {
    case '"':
        v->type = IMS_JSON_STRING;
        return scan_string(ps, &v->s, &v->n);
    case '{':
        v->type = IMS_JSON_OBJECT;
        ok = object(ps, NULL, depth);
        break;
    case '[':
        v->type = IMS_JSON_ARRAY;
        ok = array(ps, depth);
        break;
    case 't':
        v->type = IMS_JSON_TRUE;
        ok = literal(ps, "true");
        break;
    case 'f':
        v->type = IMS_JSON_FALSE;
        ok = literal(ps, "false");
        break;
    case 'n':
        v->type = IMS_JSON_NULL;
        ok = literal(ps, "null");
        break;
    default:
        v->type = IMS_JSON_NUMBER;
        ok = scan_number(ps);
        break;
    }
    v->s = start;
    v->n = (size_t)(ps->p - start);
    return ok;
}

enum ims_json_status ims_json_parse_object(const uint8_t *buf, size_t len,
                                           struct ims_json_object *o)
{
    struct parser ps = {buf, buf + len, IMS_JSON_OK};
    o->n = 0;
    ws(&ps);
    if (ps.p >= ps.end || *ps.p != '{')
        return ps.p >= ps.end ? IMS_JSON_SYNTAX : IMS_JSON_NOT_OBJECT;
    if (!object(&ps, o, 1))
        return ps.st;
    ws(&ps);
    return ps.p == ps.end ? IMS_JSON_OK : IMS_JSON_SYNTAX;
}

const struct ims_json_value *ims_json_get(const struct ims_json_object *o, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < o->n; i++) {
        const struct ims_json_value *k = &o->names[i];
        /* Fast path for names without escapes, the usual case. */
        if (k->n == n && memcmp(k->s, name, n) == 0)
            return &o->values[i];
        if (memchr(k->s, '\\', k->n)) {
            struct ims_json_value want = {
                .type = IMS_JSON_STRING, .s = (const uint8_t *)name, .n = n};
            if (ims_json_str_equal(k, &want))
                return &o->values[i];
        }
    }
    return NULL;
}

/* Decodes the next character of an escaped string span into out (up to 4 bytes). */
static size_t next_char(const uint8_t **pp, uint8_t out[4])
{
    const uint8_t *p = *pp;
    if (*p != '\\') {
        *pp = p + 1;
        out[0] = *p;
        return 1;
    }
    uint8_t e = p[1];
    if (e != 'u') {
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        out[0] = (uint8_t)to[strchr(from, e) - from];
        *pp = p + 2;
        return 1;
    }
    unsigned u = 0, lo = 0xdc00;
    hex4(p + 2, p + 6, &u);
    *pp = p + 6;
    uint32_t cp = u;
    if (u >= 0xd800 && u <= 0xdbff) {
        hex4(p + 8, p + 12, &lo);
        cp = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
        *pp = p + 12;
    }
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xc0 | cp >> 6);
        out[1] = (uint8_t)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xe0 | cp >> 12);
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (uint8_t)(0xf0 | cp >> 18);
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

bool ims_json_str_equal(const struct ims_json_value *a, const struct ims_json_value *b)
{
    const uint8_t *pa = a->s, *ea = a->s + a->n, *pb = b->s, *eb = b->s + b->n;
    if (!memchr(pa, '\\', a->n) && !memchr(pb, '\\', b->n))
        return a->n == b->n && memcmp(pa, pb, a->n) == 0;
    while (pa < ea && pb < eb) {
        uint8_t ca[4], cb[4];
        size_t la = next_char(&pa, ca), lb = next_char(&pb, cb);
        if (la != lb || memcmp(ca, cb, la) != 0)
            return false;
    }
    return pa == ea && pb == eb;
}

size_t ims_json_string(const struct ims_json_value *v, char *out, size_t cap)
{
    const uint8_t *p = v->s, *e = v->s + v->n;
    size_t o = 0;
    while (p < e) {
        uint8_t c[4];
        size_t l = next_char(&p, c);
        if (o + l >= cap)
            return SIZE_MAX;
        memcpy(out + o, c, l);
        o += l;
    }
    if (cap)
        out[o] = '\0';
    return o;
}

bool ims_json_number(const struct ims_json_value *v, double *out, bool *is_int)
{
    if (v->type != IMS_JSON_NUMBER || v->n >= 64)
        return false;
    char buf[64];
    memcpy(buf, v->s, v->n);
    buf[v->n] = '\0';
    *is_int = strpbrk(buf, ".eE") == NULL;
    char *end;
    *out = strtod(buf, &end);
    return *end == '\0';
}

void ims_json_array_iter(const struct ims_json_value *arr, struct ims_json_iter *it)
{
    it->p = arr->s + 1;
    it->end = arr->s + arr->n - 1;
}

bool ims_json_array_next(struct ims_json_iter *it, struct ims_json_value *v)
{
    struct parser ps = {it->p, it->end, IMS_JSON_OK};
    ws(&ps);
    if (ps.p < ps.end && *ps.p == ',')
        ps.p++;
    ws(&ps);
    if (ps.p >= ps.end)
        return false;
    /* The array was validated when parsed: this cannot fail. */
    value(&ps, v, 0);
    it->p = ps.p;
    return true;
}
