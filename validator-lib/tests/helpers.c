#include "helpers.h"

#include "../src/internal.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_t *th_claims(void)
{
    return json_pack("{s:s,s:s,s:s,s:I,s:I,s:s,s:s,s:s,s:s,s:[s,s]}", "iss", TH_ISS, "sub",
                     "user-1", "aud", TH_AUD, "iat", (json_int_t)TH_NOW - 10, "exp",
                     (json_int_t)TH_NOW + 600, "jti", "jti-1", "client_id", "wwsf", "scope",
                     "openid ims", "impi", "alice@home1.net", "impu", TH_IMPU, "tel:+15551234");
}

json_t *th_header(const char *alg, const char *kid)
{
    json_t *h = json_pack("{s:s,s:s}", "typ", "at+jwt", "alg", alg);
    if (kid)
        json_object_set_new(h, "kid", json_string(kid));
    return h;
}

char *th_bearer(const char *token)
{
    size_t n = strlen(token) + 8;
    char *s = malloc(n);
    snprintf(s, n, "Bearer %s", token);
    return s;
}

void th_write_file(const char *path, const char *text)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    fputs(text, f);
    fclose(f);
    rename(tmp, path);
}
