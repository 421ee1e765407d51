/*
 * Differential check of the per-request JSON reader (validator-lib/src/json.c) against
 * Jansson (JSON_REJECT_DUPLICATES): both must agree on what is a valid JSON object, and
 * on the decoded value of every top-level string member. Differences allowed by design:
 * our limits (depth, members, name and number length), Jansson's number range errors, and
 * raw NUL bytes, which Jansson's stream silently skips outside strings (RFC 8259 allows
 * none; we reject them).
 */
#include "../validator-lib/src/json.h"
#include "fuzz.h"

#include <jansson.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ims_json_object o;
    enum ims_json_status st = ims_json_parse_object(data, size, &o);
    json_error_t err;
    json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &err);
    bool jansson_object = j && json_is_object(j);
    if (st == IMS_JSON_LIMIT || memchr(data, 0, size)) {
        json_decref(j);
        return 0;
    }
    if (jansson_object && st != IMS_JSON_OK)
        __builtin_trap(); /* we rejected valid JSON */
    if (!jansson_object && st == IMS_JSON_OK) {
        /* Only Jansson's number range limits may reject what we accept. */
        if (!strstr(err.text, "too big") && !strstr(err.text, "overflow"))
            __builtin_trap();
    }
    if (jansson_object && st == IMS_JSON_OK) {
        if (o.n != json_object_size(j))
            __builtin_trap();
        for (size_t i = 0; i < o.n; i++) {
            char name[IMS_JSON_MAX_NAME * 4 + 1], val[8192];
            if (ims_json_string(&o.names[i], name, sizeof(name)) == SIZE_MAX)
                __builtin_trap();
            json_t *jv = json_object_get(j, name);
            if (jv == NULL)
                __builtin_trap();
            if (o.values[i].type == IMS_JSON_STRING) {
                size_t n = ims_json_string(&o.values[i], val, sizeof(val));
                if (n != SIZE_MAX && (!json_is_string(jv) || json_string_length(jv) != n ||
                                      memcmp(json_string_value(jv), val, n) != 0))
                    __builtin_trap();
            }
        }
    }
    json_decref(j);
    return 0;
}
