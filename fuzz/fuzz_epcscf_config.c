/* eP-CSCF configuration parser: any text (and one environment entry taken from the input's
 * first line) gives a config or an error with a detail, never a crash or leak. An accepted
 * config holds its required keys, one WebSocket listener, one JWKS source, consistent
 * lists, and host:port values the helper splits again. */
#include "../epcscf-ref/src/config.h"
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check_list(char *const *items, size_t n)
{
    if (n == 0 || items == NULL || items[n] != NULL)
        __builtin_trap();
    for (size_t i = 0; i < n; i++)
        if (items[i] == NULL || items[i][0] == '\0' || strpbrk(items[i], " \t,") != NULL)
            __builtin_trap();
}

static void check_hostport(const char *v)
{
    char host[256];
    unsigned port;
    if (v && ep_config_hostport(v, host, sizeof(host), &port) != 0)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The first line, if it starts with "EPCSCF_", is an environment entry. */
    const char *text = (const char *)data;
    char *env[2] = {NULL, NULL};
    const char *nl = memchr(data, '\n', size);
    if (nl && size >= 7 && memcmp(data, "EPCSCF_", 7) == 0) {
        size_t el = (size_t)(nl - text);
        env[0] = malloc(el + 1); /* the input is not NUL-terminated: no strndup */
        if (env[0] == NULL)
            return 0;
        memcpy(env[0], text, el);
        env[0][el] = '\0';
        size -= el + 1;
        text = nl + 1;
    }
    struct ep_config *c = NULL;
    char detail[256] = "";
    enum ep_config_result r = ep_config_parse(text, size, env, &c, detail, sizeof(detail));
    if ((r == EP_CONFIG_OK) != (c != NULL))
        __builtin_trap();
    if (r != EP_CONFIG_OK && r != EP_CONFIG_NOMEM && detail[0] == '\0')
        __builtin_trap(); /* every refusal says why */
    if (c) {
        if (c->realm == NULL || c->token_issuer == NULL || c->token_audience == NULL ||
            c->mw_next_hop == NULL || c->mw_advertise == NULL || c->visited_network_id == NULL ||
            c->token_authz_server == NULL || (c->ws_listen == NULL && c->wss_listen == NULL) ||
            (c->token_jwks_url == NULL) == (c->token_jwks_file == NULL) ||
            c->ws_max_message < 1024 || c->workers < 0 || c->workers > 256)
            __builtin_trap();
        check_list(c->allowed_origins, c->n_allowed_origins);
        check_list(c->emergency_numbers, c->n_emergency_numbers);
        check_hostport(c->ws_listen);
        check_hostport(c->wss_listen);
        check_hostport(c->mw_listen);
        check_hostport(c->mw_next_hop);
        check_hostport(c->ecscf);
        check_hostport(c->http_listen);
        FILE *f = fopen("/dev/null", "w");
        if (f) {
            ep_config_explain(c, f);
            fclose(f);
        }
    }
    ep_config_free(c);
    free(env[0]);
    return 0;
}
