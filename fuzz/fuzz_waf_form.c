/* Form-urlencoded parser: any bytes give a form or an error with a detail, never a crash or
 * leak; an accepted form keeps the caps and has no empty, repeated or NUL-holding strings. The
 * single-string decoder agrees with the parser on the same bytes. */
#include "../waf-server/src/form.h"
#include "fuzz.h"

#include <string.h>

static void check_form(const struct waf_form *f)
{
    size_t n = waf_form_count(f);
    if (n > WAF_FORM_MAX_PAIRS || waf_form_name(f, n) != NULL)
        __builtin_trap();
    for (size_t i = 0; i < n; i++) {
        const char *name = waf_form_name(f, i);
        if (name == NULL || name[0] == '\0' || strlen(name) > WAF_FORM_MAX_NAME)
            __builtin_trap();
        for (size_t j = 0; j < i; j++) {
            if (strcmp(waf_form_name(f, j), name) == 0)
                __builtin_trap(); /* a repeated name was accepted */
        }
        /* get() finds this pair: NULL for an empty value, else a non-empty string within
         * the cap and free of controls. */
        const char *v = waf_form_get(f, name);
        if (v != NULL) {
            size_t vl = strlen(v);
            if (vl == 0 || vl > WAF_FORM_MAX_VALUE)
                __builtin_trap();
            for (size_t k = 0; k < vl; k++) {
                unsigned char c = (unsigned char)v[k];
                if (c < 0x20 || c == 0x7f)
                    __builtin_trap();
            }
        }
        for (const char *p = name; *p; p++) {
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                __builtin_trap();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct waf_form *f = NULL;
    char detail[256] = "";
    enum waf_form_result r = waf_form_parse(buf, size, &f, detail, sizeof(detail));
    if ((r == WAF_FORM_OK) != (f != NULL))
        __builtin_trap();
    if (r != WAF_FORM_OK && detail[0] == '\0')
        __builtin_trap(); /* every refusal says why */
    if (memchr(detail, '\0', sizeof(detail)) == NULL)
        __builtin_trap();
    if (f != NULL)
        check_form(f);

    /* An input without '&' or '=' is one name; the decoder must agree with the parser. */
    if (size > 0 && size <= WAF_FORM_MAX_NAME && memchr(data, '&', size) == NULL &&
        memchr(data, '=', size) == NULL) {
        char out[WAF_FORM_MAX_NAME + 1];
        size_t ol = 0;
        enum waf_form_result d = waf_form_decode(buf, size, out, sizeof(out), &ol);
        if ((d == WAF_FORM_OK) != (r == WAF_FORM_OK))
            __builtin_trap();
        if (d == WAF_FORM_OK &&
            (ol == 0 || strlen(out) != ol || strcmp(out, waf_form_name(f, 0)) != 0))
            __builtin_trap();
    }
    waf_form_free(f);
    return 0;
}
