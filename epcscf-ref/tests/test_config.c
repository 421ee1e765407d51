/* eP-CSCF configuration: defaults, the file syntax, lists and booleans, environment
 * overrides, every error kind named with its key or line, every cross check, secrets kept
 * out of --check-config, the host:port helper, and the sample file documenting every key. */
#include "config.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The smallest valid configuration: 7 lines, so a line added after it is line 8. */
#define REQUIRED                                                                                   \
    "ws.listen = 127.0.0.1:8080\n"                                                                 \
    "ws.allowed_origins = https://wwsf.home1.net\n"                                                \
    "mw.next_hop = 127.0.0.1:5060\n"                                                               \
    "ims.realm = home1.net\n"                                                                      \
    "token.issuer = https://waf.home1.net\n"                                                       \
    "token.audience = epcscf.home1.net\n"                                                          \
    "token.jwks_file = /etc/epcscf/jwks.json\n"

static enum ep_config_result parse(const char *text, char *const *env, struct ep_config **c,
                                   char *d)
{
    return ep_config_parse(text, strlen(text), env, c, d, 256);
}

static char *explain(const struct ep_config *c)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    cr_assert_not_null(f);
    ep_config_explain(c, f);
    fclose(f);
    return buf;
}

Test(config, defaults)
{
    struct ep_config *c;
    char d[256];
    cr_assert_eq(parse(REQUIRED, NULL, &c, d), EP_CONFIG_OK, "%s", d);
    cr_assert_str_eq(c->ws_listen, "127.0.0.1:8080");
    cr_assert_null(c->wss_listen);
    cr_assert_null(c->wss_cert);
    cr_assert_null(c->wss_key);
    cr_assert_eq(c->n_allowed_origins, 1);
    cr_assert_str_eq(c->allowed_origins[0], "https://wwsf.home1.net");
    cr_assert_null(c->allowed_origins[1]);
    cr_assert_eq(c->ws_max_message, 65535);
    cr_assert_eq(c->ws_max_conns, 20000);
    cr_assert_eq(c->ws_max_conns_per_ip, 100);
    cr_assert_eq(c->ws_ping_interval_s, 30);
    cr_assert_eq(c->ws_ping_timeout_s, 10);
    cr_assert_eq(c->ws_handshake_timeout_s, 10);
    cr_assert_str_eq(c->mw_listen, "127.0.0.1:5070");
    cr_assert_str_eq(c->mw_advertise, "127.0.0.1:5070", "defaults to mw.listen");
    cr_assert_str_eq(c->mw_next_hop, "127.0.0.1:5060");
    cr_assert_str_eq(c->mw_transport, "udp");
    cr_assert_eq(c->mw_t1_ms, 500);
    cr_assert_eq(c->mw_timeout_ms, 32000);
    cr_assert_str_eq(c->realm, "home1.net");
    cr_assert_str_eq(c->visited_network_id, "home1.net", "defaults to ims.realm");
    cr_assert_neq(c->visited_network_id, c->realm, "a copy, freed on its own");
    cr_assert_null(c->orig_ioi);
    cr_assert_str_eq(c->token_issuer, "https://waf.home1.net");
    cr_assert_str_eq(c->token_audience, "epcscf.home1.net");
    cr_assert_null(c->token_jwks_url);
    cr_assert_str_eq(c->token_jwks_file, "/etc/epcscf/jwks.json");
    cr_assert_null(c->token_ca_file);
    cr_assert_str_eq(c->token_authz_server, "https://waf.home1.net", "defaults to the issuer");
    cr_assert_str_eq(c->token_scope, "ims");
    cr_assert_eq(c->token_leeway_s, 30);
    cr_assert_eq(c->token_expiry_grace_s, 30);
    cr_assert(c->bearer_every_request);
    cr_assert_not(c->allow_digest);
    cr_assert_null(c->redis_url);
    cr_assert_str_eq(c->revoked_key, "imsauth:revoked");
    cr_assert_str_eq(c->revocation_channel, "imsauth:revoked:feed");
    cr_assert_null(c->waf_url);
    cr_assert_null(c->waf_client_id);
    cr_assert_null(c->waf_client_secret);
    cr_assert_eq(c->lease_renew_s, 60);
    cr_assert_null(c->ecscf);
    cr_assert_eq(c->n_emergency_numbers, 2);
    cr_assert_str_eq(c->emergency_numbers[0], "112");
    cr_assert_str_eq(c->emergency_numbers[1], "911");
    cr_assert_null(c->emergency_numbers[2]);
    cr_assert_not(c->emergency_unregistered);
    cr_assert_str_eq(c->http_listen, "127.0.0.1:9090");
    cr_assert_eq(c->workers, 0);
    cr_assert_str_eq(c->log_level, "info");
    ep_config_free(c);
    ep_config_free(NULL);
}

Test(config, file_values_lists_and_booleans)
{
    struct ep_config *c;
    char d[256];
    cr_assert_eq(parse("# comment\n\n"
                       "  wss.listen = [::]:7443  \n"
                       "wss.cert = /c.pem\n"
                       "wss.key = /k.pem\n"
                       "ws.allowed_origins = \"https://a.example, http://127.0.0.1:8080,,"
                       "https://[::1]:9443   https://b.example\"\n"
                       "mw.listen = 10.0.0.5:5070\n"
                       "mw.advertise = pcscf.home1.net\n"
                       "mw.next_hop = scscf.home1.net:6060\n"
                       "mw.transport = tcp\n"
                       "ims.realm = home1.net\n"
                       "ims.visited_network_id = Visited Net 1\n"
                       "token.issuer = https://waf.home1.net\n"
                       "token.audience = epcscf\n"
                       "token.jwks_url = https://waf.home1.net/jwks.json\n"
                       "token.authz_server = https://login.home1.net\n"
                       "auth.bearer_every_request = false\n"
                       "auth.allow_digest = 1\n"
                       "emergency.numbers = 112,911 , 999\n"
                       "emergency.allow_unregistered = yes\n"
                       "emergency.ecscf = [2001:db8::5]:5060\n"
                       "waf.url = https://waf.home1.net\n"
                       "waf.client_id = epcscf-1\n"
                       "waf.client_secret = s3cret-s3cret\n"
                       "workers = 4\n"
                       "log.level = \"debug\"\n",
                       NULL, &c, d),
                 EP_CONFIG_OK, "%s", d);
    cr_assert_null(c->ws_listen);
    cr_assert_str_eq(c->wss_listen, "[::]:7443");
    cr_assert_eq(c->n_allowed_origins, 4);
    cr_assert_str_eq(c->allowed_origins[0], "https://a.example");
    cr_assert_str_eq(c->allowed_origins[1], "http://127.0.0.1:8080");
    cr_assert_str_eq(c->allowed_origins[2], "https://[::1]:9443");
    cr_assert_str_eq(c->allowed_origins[3], "https://b.example");
    cr_assert_null(c->allowed_origins[4]);
    cr_assert_str_eq(c->mw_advertise, "pcscf.home1.net");
    cr_assert_str_eq(c->mw_transport, "tcp");
    cr_assert_str_eq(c->visited_network_id, "Visited Net 1");
    cr_assert_str_eq(c->token_authz_server, "https://login.home1.net");
    cr_assert_not(c->bearer_every_request);
    cr_assert(c->allow_digest);
    cr_assert(c->emergency_unregistered);
    cr_assert_eq(c->n_emergency_numbers, 3);
    cr_assert_str_eq(c->emergency_numbers[2], "999");
    cr_assert_str_eq(c->ecscf, "[2001:db8::5]:5060");
    cr_assert_eq(c->workers, 4);
    cr_assert_str_eq(c->log_level, "debug");
    ep_config_free(c);
}

Test(config, environment_overrides_the_file)
{
    struct ep_config *c;
    char d[256];
    char *env[] = {"PATH=/bin",
                   "EPCSCF_WS_MAX_MESSAGE=2048",
                   "EPCSCF_MW_NEXT_HOP=icscf.home1.net:5060",
                   "EPCSCF_WS_ALLOWED_ORIGINS=https://x.example,https://y.example",
                   "EPCSCF_AUTH_ALLOW_DIGEST=yes",
                   "EPCSCF_WORKERS=3",
                   "EPCSCF_TOKEN_JWKS_FILE=",                               /* empty unsets ... */
                   "EPCSCF_TOKEN_JWKS_URL=http://127.0.0.1:8443/jwks.json", /* ... for this */
                   "OTHER_EPCSCF_X=1",
                   NULL};
    cr_assert_eq(parse(REQUIRED "ws.max_message = 4096\n", env, &c, d), EP_CONFIG_OK, "%s", d);
    cr_assert_eq(c->ws_max_message, 2048);
    cr_assert_str_eq(c->mw_next_hop, "icscf.home1.net:5060");
    cr_assert_eq(c->n_allowed_origins, 2);
    cr_assert_str_eq(c->allowed_origins[1], "https://y.example");
    cr_assert(c->allow_digest);
    cr_assert_eq(c->workers, 3);
    cr_assert_null(c->token_jwks_file);
    cr_assert_str_eq(c->token_jwks_url, "http://127.0.0.1:8443/jwks.json");
    char *text = explain(c);
    cr_assert(strstr(text, "ws.max_message                 = 2048  # environment\n") != NULL, "%s",
              text);
    cr_assert(strstr(text, "ws.allowed_origins             = https://x.example https://y.example"
                           "  # environment\n") != NULL,
              "%s", text);
    cr_assert(strstr(text, "ims.realm                      = home1.net  # file\n") != NULL, "%s",
              text);
    cr_assert(strstr(text, "ws.ping_interval               = 30  # default\n") != NULL, "%s", text);
    cr_assert(strstr(text, "auth.allow_digest              = yes  # environment\n") != NULL, "%s",
              text);
    cr_assert(strstr(text, "token.jwks_file                = (unset)\n") != NULL, "%s", text);
    free(text);
    ep_config_free(c);

    /* Everything from the environment, no file at all. */
    char *only[] = {"EPCSCF_WSS_LISTEN=0.0.0.0:7443",
                    "EPCSCF_WSS_CERT=/c",
                    "EPCSCF_WSS_KEY=/k",
                    "EPCSCF_WS_ALLOWED_ORIGINS=https://wwsf.home1.net",
                    "EPCSCF_MW_NEXT_HOP=10.0.0.1:5060",
                    "EPCSCF_IMS_REALM=home1.net",
                    "EPCSCF_TOKEN_ISSUER=https://waf.home1.net",
                    "EPCSCF_TOKEN_AUDIENCE=epcscf",
                    "EPCSCF_TOKEN_JWKS_URL=https://waf.home1.net/jwks.json",
                    NULL};
    cr_assert_eq(ep_config_parse(NULL, 0, only, &c, d, sizeof(d)), EP_CONFIG_OK, "%s", d);
    cr_assert_str_eq(c->wss_listen, "0.0.0.0:7443");
    ep_config_free(c);
    cr_assert_eq(ep_config_load(NULL, only, &c, d, sizeof(d)), EP_CONFIG_OK, "%s", d);
    ep_config_free(c);
}

Test(config, every_error_names_its_key_or_line)
{
    static const struct {
        const char *text;
        enum ep_config_result r;
        const char *fragment;
    } cases[] = {
        /* syntax */
        {REQUIRED "workers 4\n", EP_CONFIG_SYNTAX, "line 8: expected key = value"},
        {REQUIRED "log.level = \"info\n", EP_CONFIG_SYNTAX, "line 8: unbalanced quote"},
        {REQUIRED "log.level = \"in\"fo\"\n", EP_CONFIG_SYNTAX, "line 8: a quote inside"},
        /* unknown, repeated */
        {REQUIRED "ws.listn = 127.0.0.1:1\n", EP_CONFIG_UNKNOWN,
         "line 8: unknown key \"ws.listn\""},
        {REQUIRED "ims.realm = home2.net\n", EP_CONFIG_REPEATED, "line 8: ims.realm is set twice"},
        /* integers */
        {REQUIRED "ws.max_message = 1023\n", EP_CONFIG_VALUE,
         "line 8: ws.max_message: \"1023\" is not an integer in 1024..1048576"},
        {REQUIRED "ws.max_connections = 0\n", EP_CONFIG_VALUE, "ws.max_connections"},
        {REQUIRED "ws.max_connections_per_ip = 1000001\n", EP_CONFIG_VALUE,
         "ws.max_connections_per_ip"},
        {REQUIRED "ws.ping_interval = -1\n", EP_CONFIG_VALUE, "ws.ping_interval"},
        {REQUIRED "ws.ping_timeout = 0\n", EP_CONFIG_VALUE, "ws.ping_timeout"},
        {REQUIRED "ws.handshake_timeout = 121\n", EP_CONFIG_VALUE, "ws.handshake_timeout"},
        {REQUIRED "mw.t1 = 49\n", EP_CONFIG_VALUE, "mw.t1"},
        {REQUIRED "mw.transaction_timeout = 300001\n", EP_CONFIG_VALUE, "mw.transaction_timeout"},
        {REQUIRED "token.leeway = 301\n", EP_CONFIG_VALUE, "token.leeway"},
        {REQUIRED "token.expiry_grace = 1h\n", EP_CONFIG_VALUE, "token.expiry_grace"},
        {REQUIRED "waf.lease_renew_interval = 9\n", EP_CONFIG_VALUE, "waf.lease_renew_interval"},
        {REQUIRED "workers = 257\n", EP_CONFIG_VALUE, "workers: \"257\""},
        {REQUIRED "workers =\n", EP_CONFIG_VALUE, "workers"},
        /* booleans */
        {REQUIRED "auth.bearer_every_request = maybe\n", EP_CONFIG_VALUE,
         "auth.bearer_every_request: \"maybe\" is not yes or no"},
        {REQUIRED "auth.allow_digest = YES\n", EP_CONFIG_VALUE, "auth.allow_digest"},
        {REQUIRED "emergency.allow_unregistered = 2\n", EP_CONFIG_VALUE,
         "emergency.allow_unregistered"},
        /* host:port */
        {REQUIRED "mw.listen = localhost:5070\n", EP_CONFIG_VALUE,
         "mw.listen: \"localhost:5070\" is not host:port with a numeric"},
        {REQUIRED "mw.listen = 127.0.0.1\n", EP_CONFIG_VALUE, "mw.listen"},
        {REQUIRED "mw.listen = 127.0.0.1:65536\n", EP_CONFIG_VALUE, "mw.listen"},
        {REQUIRED "mw.listen = ::1:5070\n", EP_CONFIG_VALUE, "mw.listen"},
        {REQUIRED "http.listen = 127.0.0.1:+90\n", EP_CONFIG_VALUE, "http.listen"},
        {REQUIRED "wss.listen = [::1:7443\n", EP_CONFIG_VALUE, "wss.listen"},
        {REQUIRED "mw.advertise = pcscf..home1.net\n", EP_CONFIG_VALUE, "mw.advertise"},
        {REQUIRED "mw.advertise = p:1:2\n", EP_CONFIG_VALUE, "mw.advertise"},
        {"ws.listen = 127.0.0.1:8080\nws.allowed_origins = https://w\nmw.next_hop = "
         "icscf.home1.net\n",
         EP_CONFIG_VALUE, "mw.next_hop: \"icscf.home1.net\" is not host:port"},
        {REQUIRED "emergency.ecscf = 999.1.1.1:5060\n", EP_CONFIG_VALUE, "emergency.ecscf"},
        {REQUIRED "emergency.ecscf = ecscf.home1.net:0\n", EP_CONFIG_VALUE, "emergency.ecscf"},
        {REQUIRED "emergency.ecscf = -ecscf.home1.net:5060\n", EP_CONFIG_VALUE, "emergency.ecscf"},
        /* lists */
        {REQUIRED "emergency.numbers = 112 9-1-1\n", EP_CONFIG_VALUE,
         "emergency.numbers: item \"9-1-1\" is not a number"},
        /* other strings */
        {REQUIRED "mw.transport = sctp\n", EP_CONFIG_VALUE,
         "mw.transport: \"sctp\" is not udp or tcp"},
        {REQUIRED "log.level = loud\n", EP_CONFIG_VALUE, "log.level"},
        {REQUIRED "token.jwks_url = ftp://waf/jwks\n", EP_CONFIG_VALUE, "token.jwks_url"},
        {REQUIRED "token.scope = \"ims openid\"\n", EP_CONFIG_VALUE, "token.scope"},
        {REQUIRED "ims.orig_ioi = a\"b\n", EP_CONFIG_SYNTAX, "line 8"},
        {REQUIRED "ims.orig_ioi = a\\b\n", EP_CONFIG_VALUE, "ims.orig_ioi"},
        {REQUIRED "waf.url = waf.home1.net\n", EP_CONFIG_VALUE, "waf.url"},
        {REQUIRED "wss.cert = /a\tb\n", EP_CONFIG_VALUE, "wss.cert: control character"},
        /* missing: each required key */
        {"ws.listen = 127.0.0.1:8080\n", EP_CONFIG_MISSING, "ws.allowed_origins is required"},
        {REQUIRED "ws.allowed_origins =\n", EP_CONFIG_REPEATED, "ws.allowed_origins"},
        {"ws.listen = 127.0.0.1:8080\nws.allowed_origins = , ,\n", EP_CONFIG_MISSING,
         "ws.allowed_origins is required"},
        {"ws.listen = 127.0.0.1:8080\nws.allowed_origins = https://w\n", EP_CONFIG_MISSING,
         "mw.next_hop is required"},
        {"ws.listen = 127.0.0.1:8080\nws.allowed_origins = https://w\nmw.next_hop = "
         "10.0.0.1:5060\n",
         EP_CONFIG_MISSING, "ims.realm is required"},
        {"ws.listen = 127.0.0.1:8080\nws.allowed_origins = https://w\nmw.next_hop = "
         "10.0.0.1:5060\nims.realm = r.net\n",
         EP_CONFIG_MISSING, "token.issuer is required"},
        {"ws.listen = 127.0.0.1:8080\nws.allowed_origins = https://w\nmw.next_hop = "
         "10.0.0.1:5060\nims.realm = r.net\ntoken.issuer = https://i\n",
         EP_CONFIG_MISSING, "token.audience is required"},
        {REQUIRED "mw.listen =\n", EP_CONFIG_MISSING, "mw.listen is required"},
        {REQUIRED "emergency.numbers =\n", EP_CONFIG_MISSING, "emergency.numbers is required"},
        {REQUIRED "token.scope = \"\"\n", EP_CONFIG_MISSING, "token.scope is required"},
        /* cross checks */
        {REQUIRED "ws.listen = 10.0.0.1:8080\n", EP_CONFIG_REPEATED, "ws.listen"},
        {"ws.listen = 10.0.0.1:8080\nws.allowed_origins = https://w\nmw.next_hop = "
         "10.0.0.1:5060\nims.realm = r.net\ntoken.issuer = https://i\ntoken.audience = a\n"
         "token.jwks_file = /j\n",
         EP_CONFIG_INVALID, "ws.listen 10.0.0.1:8080 is not a loopback address"},
        {"ws.listen = [::]:8080\nws.allowed_origins = https://w\nmw.next_hop = "
         "10.0.0.1:5060\nims.realm = r.net\ntoken.issuer = https://i\ntoken.audience = a\n"
         "token.jwks_file = /j\n",
         EP_CONFIG_INVALID, "is not a loopback address"},
        {"ws.allowed_origins = https://w\nmw.next_hop = 10.0.0.1:5060\nims.realm = r.net\n"
         "token.issuer = https://i\ntoken.audience = a\ntoken.jwks_file = /j\n",
         EP_CONFIG_INVALID, "set wss.listen or ws.listen"},
        {REQUIRED "wss.listen = 0.0.0.0:7443\n", EP_CONFIG_INVALID,
         "wss.listen needs wss.cert and wss.key"},
        {REQUIRED "wss.listen = 0.0.0.0:7443\nwss.cert = /c\n", EP_CONFIG_INVALID,
         "wss.listen needs wss.cert and wss.key"},
        {REQUIRED "wss.listen = 127.0.0.1:8080\nwss.cert = /c\nwss.key = /k\n", EP_CONFIG_INVALID,
         "ws.listen and wss.listen are the same address"},
        {REQUIRED "http.listen = 127.0.0.1:8080\n", EP_CONFIG_INVALID,
         "http.listen is the address of ws.listen"},
        {REQUIRED "token.jwks_url = https://waf/jwks.json\n", EP_CONFIG_INVALID,
         "set one of token.jwks_url and token.jwks_file, not both"},
        {REQUIRED "token.jwks_file =\n", EP_CONFIG_REPEATED, "token.jwks_file"},
        {REQUIRED "waf.url = https://waf.home1.net\n", EP_CONFIG_INVALID,
         "waf.url needs waf.client_id and waf.client_secret"},
        {REQUIRED "waf.url = https://waf.home1.net\nwaf.client_id = e\n", EP_CONFIG_INVALID,
         "waf.url needs waf.client_id and waf.client_secret"},
        {REQUIRED "mw.listen = 127.0.0.1:65534\nworkers = 3\n", EP_CONFIG_INVALID,
         "mw.listen port 65534 leaves no room for 3 workers"},
        {REQUIRED "mw.listen = 0.0.0.0:5070\n", EP_CONFIG_INVALID, "set mw.advertise"},
        {REQUIRED "mw.t1 = 2000\nmw.transaction_timeout = 1000\n", EP_CONFIG_INVALID,
         "mw.transaction_timeout (1000 ms) is shorter than mw.t1 (2000 ms)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct ep_config *c = (struct ep_config *)1;
        char d[256] = "";
        cr_expect_eq(parse(cases[i].text, NULL, &c, d), cases[i].r, "case %zu: %s", i, d);
        cr_expect_null(c, "case %zu", i);
        cr_expect(strstr(d, cases[i].fragment) != NULL, "case %zu: '%s' lacks '%s'", i, d,
                  cases[i].fragment);
    }
}

Test(config, missing_jwks_and_environment_errors)
{
    struct ep_config *c;
    char d[256];
    char *nojwks[] = {"EPCSCF_TOKEN_JWKS_FILE=", NULL};
    cr_assert_eq(parse(REQUIRED, nojwks, &c, d), EP_CONFIG_INVALID);
    cr_assert(strstr(d, "set one of token.jwks_url and token.jwks_file") != NULL, "%s", d);
    cr_assert(strstr(d, "not both") == NULL, "%s", d);

    char *unknown[] = {"EPCSCF_NO_SUCH_KEY=1", NULL};
    cr_assert_eq(parse(REQUIRED, unknown, &c, d), EP_CONFIG_UNKNOWN);
    cr_assert(strstr(d, "EPCSCF_NO_SUCH_KEY") != NULL, "%s", d);
    char *lower[] = {"EPCSCF_ws_listen=127.0.0.1:1", NULL};
    cr_assert_eq(parse(REQUIRED, lower, &c, d), EP_CONFIG_UNKNOWN, "%s", d);
    char *bad[] = {"EPCSCF_WORKERS=many", NULL};
    cr_assert_eq(parse(REQUIRED, bad, &c, d), EP_CONFIG_VALUE);
    cr_assert(strstr(d, "environment: workers: \"many\"") != NULL, "%s", d);
    char *badlist[] = {"EPCSCF_WS_ALLOWED_ORIGINS=https://ok.example https://x.example/path", NULL};
    cr_assert_eq(parse(REQUIRED, badlist, &c, d), EP_CONFIG_VALUE);
    cr_assert(strstr(d, "environment: ws.allowed_origins: item \"https://x.example/path\"") != NULL,
              "%s", d);
    char *offloop[] = {"EPCSCF_WS_LISTEN=192.0.2.1:80", NULL};
    cr_assert_eq(parse(REQUIRED, offloop, &c, d), EP_CONFIG_INVALID);
    cr_assert(strstr(d, "not a loopback address") != NULL, "%s", d);

    /* A secret that does not parse is not echoed. */
    char *redis[] = {"EPCSCF_REVOCATION_REDIS_URL=redis://:hunter2@host:99999", NULL};
    cr_assert_eq(parse(REQUIRED, redis, &c, d), EP_CONFIG_VALUE);
    cr_assert(strstr(d, "revocation.redis_url") != NULL, "%s", d);
    cr_assert(strstr(d, "hunter2") == NULL, "%s", d);

    const char nul[] = REQUIRED "log.level = in\0fo\n";
    cr_assert_eq(ep_config_parse(nul, sizeof(nul) - 1, NULL, &c, d, sizeof(d)), EP_CONFIG_SYNTAX);
    cr_assert(strstr(d, "line 8: NUL byte") != NULL, "%s", d);
    cr_assert_eq(ep_config_load("/nonexistent/epcscf.conf", NULL, &c, d, sizeof(d)), EP_CONFIG_IO);
    cr_assert(strstr(d, "/nonexistent/epcscf.conf") != NULL, "%s", d);
    cr_assert_null(c);
    /* detail may be omitted. */
    cr_assert_eq(ep_config_parse("x", 1, NULL, &c, NULL, 0), EP_CONFIG_SYNTAX);
}

Test(config, origins)
{
    static const char *const good[] = {"https://wwsf.home1.net", "http://localhost:8080",
                                       "https://10.1.2.3",       "https://[2001:db8::1]:8443",
                                       "https://[::1]",          "https://a-b.c_d.example:1"};
    static const char *const bad[] = {"wwsf.home1.net",
                                      "https://",
                                      "https://W.example",
                                      "HTTPS://w.example",
                                      "https://w.example/",
                                      "https://w/x",
                                      "https://w?x",
                                      "https://w#f",
                                      "wss://w.example",
                                      "https://u@w.example",
                                      "https://w:0",
                                      "https://w:65536",
                                      "https://w:",
                                      "https://[::1",
                                      "*",
                                      "null"};
    char text[1024];
    char d[256];
    struct ep_config *c;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        snprintf(text, sizeof(text),
                 "%s"
                 "ws.allowed_origins = %s\n",
                 strstr(REQUIRED, "mw.next_hop"), good[i]);
        char full[1200];
        snprintf(full, sizeof(full), "ws.listen = 127.0.0.1:8080\n%s", text);
        cr_expect_eq(parse(full, NULL, &c, d), EP_CONFIG_OK, "%s: %s", good[i], d);
        if (c)
            cr_expect_str_eq(c->allowed_origins[0], good[i]);
        ep_config_free(c);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text),
                 "ws.listen = 127.0.0.1:8080\n%sws.allowed_origins = https://ok.example %s\n",
                 strstr(REQUIRED, "mw.next_hop"), bad[i]);
        cr_expect_eq(parse(text, NULL, &c, d), EP_CONFIG_VALUE, "%s: %s", bad[i], d);
        cr_expect(strstr(d, "ws.allowed_origins: item") != NULL, "%s: %s", bad[i], d);
    }
    /* A list longer than the cap. */
    char *many = malloc(300 * 4 + 64);
    cr_assert_not_null(many);
    strcpy(many, REQUIRED "emergency.numbers =");
    for (int i = 0; i < 300; i++)
        strcat(many, " 11");
    strcat(many, "\n");
    cr_assert_eq(parse(many, NULL, &c, d), EP_CONFIG_VALUE);
    cr_assert(strstr(d, "emergency.numbers: more than 256 items") != NULL, "%s", d);
    free(many);
}

Test(config, explain_hides_secrets_and_warns)
{
    struct ep_config *c;
    char d[256];
    cr_assert_eq(parse(REQUIRED "wss.listen = 0.0.0.0:7443\nwss.cert = /etc/c.pem\n"
                                "wss.key = /etc/very-private-key.pem\n"
                                "waf.url = https://waf.home1.net\nwaf.client_id = epcscf-1\n"
                                "waf.client_secret = topsecretvalue\n"
                                "auth.allow_digest = yes\nauth.bearer_every_request = no\n",
                       NULL, &c, d),
                 EP_CONFIG_OK, "%s", d);
    char *text = explain(c);
    cr_assert(strstr(text, "wss.key                        = (set)  # file\n") != NULL, "%s", text);
    cr_assert(strstr(text, "waf.client_secret              = (set)  # file\n") != NULL, "%s", text);
    cr_assert(strstr(text, "very-private-key") == NULL, "%s", text);
    cr_assert(strstr(text, "topsecretvalue") == NULL, "%s", text);
    cr_assert(strstr(text, "wss.cert                       = /etc/c.pem  # file\n") != NULL, "%s",
              text);
    cr_assert(strstr(text, "revocation.redis_url           = (unset)\n") != NULL, "%s", text);
    cr_assert(strstr(text, "emergency.numbers              = 112 911  # default\n") != NULL, "%s",
              text);
    cr_assert(strstr(text, "# warning: revocation.redis_url unset") != NULL, "%s", text);
    cr_assert(strstr(text, "# warning: auth.allow_digest = yes") != NULL, "%s", text);
    cr_assert(strstr(text, "# warning: auth.bearer_every_request = no") != NULL, "%s", text);
    cr_assert(strstr(text, "waf.url unset") == NULL, "%s", text);
    free(text);
    ep_config_free(c);

    char *env[] = {"EPCSCF_REVOCATION_REDIS_URL=redis://:hunter2@127.0.0.1:6379/2", NULL};
    cr_assert_eq(parse(REQUIRED, env, &c, d), EP_CONFIG_OK, "%s", d);
    cr_assert_str_eq(c->redis_url, "redis://:hunter2@127.0.0.1:6379/2");
    text = explain(c);
    cr_assert(strstr(text, "revocation.redis_url           = (set)  # environment\n") != NULL, "%s",
              text);
    cr_assert(strstr(text, "hunter2") == NULL, "%s", text);
    cr_assert(strstr(text, "revocation.redis_url unset") == NULL, "%s", text);
    cr_assert(strstr(text, "# note: waf.url unset") != NULL, "%s", text);
    free(text);
    ep_config_free(c);
}

Test(config, hostport)
{
    char host[256];
    unsigned port = 1;
    cr_assert_eq(ep_config_hostport("127.0.0.1:5060", host, sizeof(host), &port), 0);
    cr_assert_str_eq(host, "127.0.0.1");
    cr_assert_eq(port, 5060);
    cr_assert_eq(ep_config_hostport("[2001:db8::1]:443", host, sizeof(host), &port), 0);
    cr_assert_str_eq(host, "2001:db8::1", "no brackets");
    cr_assert_eq(port, 443);
    cr_assert_eq(ep_config_hostport("scscf.home1.net:6060", host, sizeof(host), &port), 0);
    cr_assert_str_eq(host, "scscf.home1.net");
    cr_assert_eq(ep_config_hostport("localhost:0", host, sizeof(host), &port), 0);
    cr_assert_eq(port, 0);
    cr_assert_eq(ep_config_hostport("x_y.example:65535", host, sizeof(host), &port), 0);
    static const char *const bad[] = {NULL,
                                      "",
                                      ":5060",
                                      "host",
                                      "host:",
                                      "host:65536",
                                      "host:-1",
                                      "host:+1",
                                      "host: 1",
                                      "host:1x",
                                      "2001:db8::1:5",
                                      "[2001:db8::1]",
                                      "[zz::1]:5",
                                      "[::1]x:5",
                                      "999.1.1.1:5",
                                      "1.2.3:5",
                                      "a..b:5",
                                      ".a:5",
                                      "a.:5",
                                      "-a:5",
                                      "a b:5",
                                      "h\xc3\xa9.net:5",
                                      "host:000001"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_eq(ep_config_hostport(bad[i], host, sizeof(host), &port), -1, "%s",
                     bad[i] ? bad[i] : "(null)");
    /* The host must fit. */
    cr_assert_eq(ep_config_hostport("abcdefgh:1", host, 8, &port), -1);
    cr_assert_eq(ep_config_hostport("abcdefg:1", host, 8, &port), 0);
    char label[80];
    memset(label, 'a', 64);
    strcpy(label + 64, ".net:5");
    cr_assert_eq(ep_config_hostport(label, host, sizeof(host), &port), -1, "label over 63");
}

Test(config, strerror)
{
    cr_assert_str_eq(ep_config_strerror(EP_CONFIG_OK), "ok");
    cr_assert_str_eq(ep_config_strerror(EP_CONFIG_MISSING), "missing_key");
    cr_assert_str_eq(ep_config_strerror(EP_CONFIG_INVALID), "invalid");
    cr_assert_str_eq(ep_config_strerror(EP_CONFIG_NOMEM), "out_of_memory");
    cr_assert_str_eq(ep_config_strerror((enum ep_config_result)99), "unknown");
}

/* The directory of epcscf-ref, from this file's path (CMake compiles it by absolute path). */
static void source_dir(char *out, size_t n)
{
    snprintf(out, n, "%s", __FILE__);
    char *t = strstr(out, "/tests/test_config.c");
    cr_assert_not_null(t, "%s", __FILE__);
    *t = '\0';
}

/* Every key of the table appears in epcscf.conf.sample under its doc line, commented with
 * its default when it has one, set when it is required; every key line of the sample is a
 * key of the table; and the sample itself is a valid configuration. */
Test(config, the_sample_documents_every_key)
{
    char path[1024];
    source_dir(path, sizeof(path));
    strncat(path, "/epcscf.conf.sample", sizeof(path) - strlen(path) - 1);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    static char text[32768];
    text[0] = '\n';
    size_t n = fread(text + 1, 1, sizeof(text) - 2, f);
    fclose(f);
    cr_assert_lt(n, sizeof(text) - 2, "sample larger than the test's buffer");
    text[n + 1] = '\0';

    const char *name, *def;
    bool required;
    size_t keys = 0;
    for (size_t i = 0; ep_config_key(i, &name, &def, &required); i++, keys++) {
        char commented[256], set[256];
        snprintf(commented, sizeof(commented), "\n# %s =%s%s\n", name, def[0] ? " " : "", def);
        snprintf(set, sizeof(set), "\n%s = ", name);
        const char *at = strstr(text, commented);
        if (required) {
            cr_expect_null(at, "required %s is commented out", name);
            at = strstr(text, set);
        } else if (def[0] == '\0' && at == NULL) {
            at = strstr(text, set); /* optional, set in the sample */
        }
        cr_expect_not_null(at, "the sample lacks '%s'", required ? set + 1 : commented + 1);
        if (at == NULL)
            continue;
        /* The line before is "# " and the key's doc line of the table. */
        const char *doc = ep_config_key_doc(i);
        cr_assert_not_null(doc);
        size_t dl = strlen(doc);
        const char *prev = at - dl - 3;
        cr_expect(prev >= text && strncmp(prev, "\n# ", 3) == 0 && strncmp(prev + 3, doc, dl) == 0,
                  "the line above %s is not '# %s'", name, doc);
    }
    cr_assert_geq(keys, 40);
    cr_assert_null(ep_config_key_doc(keys));

    /* Every "key = ..." line, commented or not, names a key of the table. */
    for (char *line = text + 1; *line;) {
        char *nl = strchr(line, '\n');
        size_t ll = nl ? (size_t)(nl - line) : strlen(line);
        const char *k = strncmp(line, "# ", 2) == 0 ? line + 2 : line;
        size_t kl = strspn(k, "abcdefghijklmnopqrstuvwxyz0123456789_.");
        if (kl > 0 && (size_t)(k - line) + kl + 2 <= ll && strncmp(k + kl, " =", 2) == 0) {
            bool known = false;
            for (size_t i = 0; ep_config_key(i, &name, &def, &required); i++)
                known = known || (strlen(name) == kl && strncmp(name, k, kl) == 0);
            cr_expect(known, "the sample names an unknown key: %.*s", (int)ll, line);
        }
        line = nl ? nl + 1 : line + ll;
    }

    struct ep_config *c;
    char d[256];
    cr_assert_eq(ep_config_load(path, NULL, &c, d, sizeof(d)), EP_CONFIG_OK, "%s", d);
    cr_assert_str_eq(c->wss_listen, "0.0.0.0:7443");
    cr_assert_not_null(c->redis_url);
    ep_config_free(c);
}
