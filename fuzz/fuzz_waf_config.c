/* waf-server configuration parser: any text (and one environment entry taken from the
 * input's first line) gives a config or an error with a detail, never a crash or leak. */
#include "../waf-server/src/config.h"
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The first line, if it starts with "WAF_", is an environment entry. */
    const char *text = (const char *)data;
    char *env[2] = {NULL, NULL};
    const char *nl = memchr(data, '\n', size);
    if (nl && size >= 4 && memcmp(data, "WAF_", 4) == 0) {
        size_t el = (size_t)(nl - text);
        env[0] = malloc(el + 1); /* the input is not NUL-terminated: no strndup */
        if (env[0] == NULL)
            return 0;
        memcpy(env[0], text, el);
        env[0][el] = '\0';
        size -= (size_t)(nl - text) + 1;
        text = nl + 1;
    }
    struct waf_config *c = NULL;
    char detail[256] = "";
    enum waf_config_result r = waf_config_parse(text, size, env, &c, detail, sizeof(detail));
    if ((r == WAF_CONFIG_OK) != (c != NULL))
        __builtin_trap();
    if (r != WAF_CONFIG_OK && r != WAF_CONFIG_NOMEM && detail[0] == '\0')
        __builtin_trap(); /* every refusal says why */
    if (c && (c->issuer == NULL || c->pub.listen == NULL || c->token_lifetime_s < 30))
        __builtin_trap();
    waf_config_free(c);
    free(env[0]);
    return 0;
}
