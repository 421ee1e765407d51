/* waf-server configuration: defaults, the file syntax, environment overrides, every error
 * named with its key or line, and the sample file documenting every key. */
#include "config.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRED                                                                                   \
    "issuer = https://waf.home1.net\n"                                                             \
    "database.url = postgresql://x@127.0.0.1/ims\n"                                                \
    "redis.url = redis://127.0.0.1:6379\n"                                                         \
    "keys.kek_file = /k\n"                                                                         \
    "secrets.server_key_file = /s\n"

static enum waf_config_result parse(const char *text, char *const *env, struct waf_config **c,
                                    char *d)
{
    return waf_config_parse(text, strlen(text), env, c, d, 256);
}

Test(config, defaults_and_file_values)
{
    struct waf_config *c;
    char d[256];
    cr_assert_eq(parse(REQUIRED "# comment\n\n  token.lifetime = 300  \nlog.level = \"debug\"\n",
                       NULL, &c, d),
                 WAF_CONFIG_OK, "%s", d);
    cr_assert_str_eq(c->issuer, "https://waf.home1.net");
    cr_assert_str_eq(c->pub.listen, "127.0.0.1:8443");
    cr_assert_null(c->pub.tls_cert);
    cr_assert_eq(c->token_lifetime_s, 300);
    cr_assert_eq(c->threads, 2);
    cr_assert_str_eq(c->log_level, "debug");
    cr_assert_str_eq(c->revoked_key, "imsauth:revoked");
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    waf_config_explain(c, f);
    fclose(f);
    cr_assert(strstr(buf, "token.lifetime                 = 300  # file") != NULL, "%s", buf);
    cr_assert(strstr(buf, "http.threads                   = 2  # default") != NULL, "%s", buf);
    cr_assert(strstr(buf, "database.url                   = (set)") != NULL,
              "secrets are not shown: %s", buf);
    cr_assert(strstr(buf, "postgresql://") == NULL);
    free(buf);
    waf_config_free(c);
}

Test(config, environment_overrides_the_file)
{
    struct waf_config *c;
    char d[256];
    char *env[] = {"PATH=/bin", "WAF_TOKEN_LIFETIME=120", "WAF_PUBLIC_LISTEN=127.0.0.2:9000",
                   "WAF_ISSUER=https://other.example", NULL};
    cr_assert_eq(parse(REQUIRED "token.lifetime = 300\n", env, &c, d), WAF_CONFIG_OK, "%s", d);
    cr_assert_eq(c->token_lifetime_s, 120);
    cr_assert_str_eq(c->pub.listen, "127.0.0.2:9000");
    cr_assert_str_eq(c->issuer, "https://other.example");
    waf_config_free(c);
    /* Everything from the environment, no file at all. */
    char *only[] = {"WAF_ISSUER=https://w.example",    "WAF_DATABASE_URL=postgresql:///x",
                    "WAF_REDIS_URL=redis://127.0.0.1", "WAF_KEYS_KEK_FILE=/k",
                    "WAF_SECRETS_SERVER_KEY_FILE=/s",  NULL};
    cr_assert_eq(waf_config_parse(NULL, 0, only, &c, d, sizeof(d)), WAF_CONFIG_OK, "%s", d);
    waf_config_free(c);
}

Test(config, every_error_names_its_key_or_line)
{
    static const struct {
        const char *text;
        enum waf_config_result r;
        const char *fragment;
    } cases[] = {
        {REQUIRED "token.lifetime 300\n", WAF_CONFIG_SYNTAX, "line 6: expected key = value"},
        {REQUIRED "nonsense = 1\n", WAF_CONFIG_UNKNOWN, "line 6: unknown key \"nonsense\""},
        {REQUIRED "issuer = https://again\n", WAF_CONFIG_REPEATED, "line 6: issuer is set twice"},
        {REQUIRED "token.lifetime = 10\n", WAF_CONFIG_VALUE,
         "token.lifetime: \"10\" is not an integer in 30..86400"},
        {REQUIRED "token.lifetime = 6OO\n", WAF_CONFIG_VALUE, "token.lifetime"},
        {REQUIRED "http.threads = -1\n", WAF_CONFIG_VALUE, "http.threads"},
        {REQUIRED "public.listen = localhost:80\n", WAF_CONFIG_VALUE, "public.listen"},
        {REQUIRED "public.listen = 127.0.0.1:70000\n", WAF_CONFIG_VALUE, "public.listen"},
        {REQUIRED "public.listen = 0.0.0.0:443\n", WAF_CONFIG_INVALID, "not a loopback address"},
        {REQUIRED "admin.tls_cert = /c\n", WAF_CONFIG_INVALID, "admin.tls_cert and admin.tls_key"},
        {REQUIRED "log.level = loud\n", WAF_CONFIG_VALUE, "log.level"},
        {"issuer = https://w.example\ndatabase.url = x\nredis.url = http://r\nkeys.kek_file = k\n"
         "secrets.server_key_file = s\n",
         WAF_CONFIG_VALUE, "redis.url must be"},
        {REQUIRED "log.level = \"info\n", WAF_CONFIG_SYNTAX, "line 6: unbalanced quote"},
        {REQUIRED "bootstrap.admin_client_secret = short\n", WAF_CONFIG_INVALID, "32"},
        {"database.url = x\nredis.url = redis://r\nkeys.kek_file = k\nsecrets.server_key_file = "
         "s\n",
         WAF_CONFIG_MISSING, "issuer is required"},
        {"issuer = https://w.example/\ndatabase.url = x\nredis.url = redis://r\nkeys.kek_file = k\n"
         "secrets.server_key_file = s\n",
         WAF_CONFIG_INVALID, "must not end with '/'"},
        {"issuer = ftp://w\ndatabase.url = x\nredis.url = redis://r\nkeys.kek_file = k\n"
         "secrets.server_key_file = s\n",
         WAF_CONFIG_INVALID, "https://"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct waf_config *c = (struct waf_config *)1;
        char d[256] = "";
        cr_expect_eq(parse(cases[i].text, NULL, &c, d), cases[i].r, "case %zu: %s", i, d);
        cr_expect_null(c, "case %zu", i);
        cr_expect(strstr(d, cases[i].fragment) != NULL, "case %zu: '%s' lacks '%s'", i, d,
                  cases[i].fragment);
    }
    struct waf_config *c;
    char d[256];
    char *env[] = {"WAF_NO_SUCH_KEY=1", NULL};
    cr_assert_eq(parse(REQUIRED, env, &c, d), WAF_CONFIG_UNKNOWN);
    cr_assert(strstr(d, "WAF_NO_SUCH_KEY") != NULL, "%s", d);
    char *bad[] = {"WAF_HTTP_THREADS=many", NULL};
    cr_assert_eq(parse(REQUIRED, bad, &c, d), WAF_CONFIG_VALUE);
    cr_assert(strstr(d, "environment: http.threads") != NULL, "%s", d);
    const char nul[] = REQUIRED "log.level = in\0fo\n";
    cr_assert_eq(waf_config_parse(nul, sizeof(nul) - 1, NULL, &c, d, sizeof(d)), WAF_CONFIG_SYNTAX);
    cr_assert_eq(waf_config_load("/nonexistent/waf.conf", NULL, &c, d, sizeof(d)), WAF_CONFIG_IO);
}

/* Every key of the table appears in waf-server.conf.sample with its default, and the
 * sample itself is a valid configuration. */
Test(config, the_sample_documents_every_key)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/waf-server.conf.sample", WAF_SOURCE_DIR);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    char text[16384];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *name, *def;
    bool required;
    size_t keys = 0;
    for (size_t i = 0; waf_config_key(i, &name, &def, &required); i++, keys++) {
        char want[256];
        if (required)
            snprintf(want, sizeof(want), "\n%s = ", name);
        else
            snprintf(want, sizeof(want), "\n# %s =%s%s\n", name, def[0] ? " " : "", def);
        cr_expect(strstr(text, want) != NULL, "the sample lacks '%s'", want + 1);
    }
    cr_assert(keys >= 20);
    struct waf_config *c;
    char d[256];
    cr_assert_eq(waf_config_load(path, NULL, &c, d, sizeof(d)), WAF_CONFIG_OK, "%s", d);
    waf_config_free(c);
}
