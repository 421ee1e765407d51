/* Strict zero-allocation JSON reader for JOSE headers and claims (see json.c). Values are
 * spans into the caller's buffer, which must outlive them. */
#ifndef IMSAUTH_JSON_H
#define IMSAUTH_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMS_JSON_MAX_DEPTH   16
#define IMS_JSON_MAX_MEMBERS 64
#define IMS_JSON_MAX_NAME    256

enum ims_json_status {
    IMS_JSON_OK = 0,
    IMS_JSON_SYNTAX,     /* not RFC 8259 JSON (or invalid UTF-8, raw control, \u0000) */
    IMS_JSON_NOT_OBJECT, /* top-level value is not an object */
    IMS_JSON_DUPLICATE,  /* a name appears twice in one object */
    IMS_JSON_LIMIT,      /* deeper, wider or longer than the limits */
};

enum ims_json_type {
    IMS_JSON_STRING,
    IMS_JSON_NUMBER,
    IMS_JSON_TRUE,
    IMS_JSON_FALSE,
    IMS_JSON_NULL,
    IMS_JSON_ARRAY,
    IMS_JSON_OBJECT,
};

/* For strings, [s, s+n) is the content between the quotes, still escaped; for other
 * types the whole value text. */
struct ims_json_value {
    enum ims_json_type type;
    const uint8_t *s;
    size_t n;
};

struct ims_json_object {
    size_t n;
    struct ims_json_value names[IMS_JSON_MAX_MEMBERS];
    struct ims_json_value values[IMS_JSON_MAX_MEMBERS];
};

/* Parses buf as one JSON object (nested values are validated, not indexed). */
enum ims_json_status ims_json_parse_object(const uint8_t *buf, size_t len,
                                           struct ims_json_object *o);
/* The member called name (compared after unescaping), or NULL. */
const struct ims_json_value *ims_json_get(const struct ims_json_object *o, const char *name);
/* Unescaped equality of two string values. */
bool ims_json_str_equal(const struct ims_json_value *a, const struct ims_json_value *b);
/* Unescapes a string value into out[cap] with a NUL; returns its length, or SIZE_MAX if
 * it does not fit. */
size_t ims_json_string(const struct ims_json_value *v, char *out, size_t cap);
/* Converts a number value; *is_int says it had no fraction or exponent. */
bool ims_json_number(const struct ims_json_value *v, double *out, bool *is_int);

/* Iteration over the elements of a (validated) array value. */
struct ims_json_iter {
    const uint8_t *p, *end;
};
void ims_json_array_iter(const struct ims_json_value *arr, struct ims_json_iter *it);
bool ims_json_array_next(struct ims_json_iter *it, struct ims_json_value *v);

#endif
