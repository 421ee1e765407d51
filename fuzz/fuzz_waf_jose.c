/* Client-signed JWTs (waf-server/src/jose.c). An input "JWKS\0TOKEN" parses the JWKS and
 * verifies the token with it; an input without NUL is a token verified against the fixed JWKS
 * below, whose private halves signed the seed tokens (then discarded). Every verified payload,
 * and the input itself, go through the claims check. Any bytes give a result, never a crash or
 * leak; results and out-parameters agree; every refusal says why in one line; accepted claims
 * keep the rules they were checked against. */
#include "../waf-server/src/jose.h"
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

/* EC P-256 "es256", EC P-384 "es384", RSA 2048 "rsa", Ed25519 "ed". */
static const char FIXED_JWKS[] =
    "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"ylsWzLC7vnmvdHalivzng9sdOHTzKd6"
    "cBbtNwKFkKKk\",\"y\":\"urZjnBxAHJ2TzEXiYM5QfdCeb-lHDhyklNDqPmoeyCU\",\"kid\":\"es256"
    "\"},{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"aCbyJdp095goWcWbCEAKWWTjaZY0vlBx6W2iGH"
    "Skc6bLtgCBhBlAqnFvDfu5_gV5\",\"y\":\"NZ60GGq9OaTTlLyd83Krihb8mczocmEP6t4N2q1iWzfGKkY"
    "jZA3H1kQTeR68a1zn\",\"kid\":\"es384\"},{\"kty\":\"RSA\",\"n\":\"sfSayCJyZVgOvXm3xmdA"
    "v_D9etTMSfy5SwoPIYmuByDVz7uJUc7161r7f5OsCeoN-wM2cYyHAtRiUq-2XosPD9TkfkAaVXrTw55_zPeR"
    "w61jN05KCtPuhS23seEh64ADER57f7VVHi-edMugE_Jgi-aZ86duPTH6nowMwpZofcK4RAxWJ_kHT4fqkz_c"
    "1H0QgtAIN0pHjT_dukDUx4oqkyODVTMlginuDqD75kXyXRBGk7SgeDwCuW_7KmfTPuu-E8T2Q2_kiY6KoYku"
    "Q91gbVMmSOk3gUugidDTGqgH0qHDLSrWk3_8jrkT9uOW3bzzYgHmhWjvrGLTx0nUQjV60w\",\"e\":\"AQA"
    "B\",\"kid\":\"rsa\",\"use\":\"sig\"},{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"Og"
    "QMWmuyZAb_0rwqk8yCiZPoeB2uPWRB0WBB19Vvi1o\",\"kid\":\"ed\",\"alg\":\"EdDSA\"}]}";

#define NOW 1700000000

static void check_detail(const char *d, size_t cap)
{
    if (d[0] == '\0' || memchr(d, '\0', cap) == NULL || strchr(d, '\n') != NULL)
        __builtin_trap(); /* every refusal says why, in one line */
}

static bool clean(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > WAF_JWT_MAX_STR)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

/* Runs the claims check on p[0..n) as a client assertion and as a portal assertion. */
static void claims(const char *p, size_t n)
{
    static const char *const aud[] = {"https://waf.example/token", "https://waf.example", NULL};
    struct waf_jwt_expect e = {.iss = "client-1",
                               .aud = aud,
                               .now = NOW,
                               .max_lifetime_s = 300,
                               .leeway_s = 30,
                               .sub_must_equal_iss = true};
    for (int round = 0; round < 2; round++) {
        struct waf_jwt_facts f;
        char d[200] = "";
        enum waf_jose_result r = waf_jwt_check(p, n, &e, &f, d, sizeof(d));
        if (r != WAF_JOSE_OK) {
            check_detail(d, sizeof(d));
            if (f.iss[0] || f.exp)
                __builtin_trap(); /* facts are filled only on success */
        } else {
            if (!clean(f.iss) || !clean(f.sub) || !clean(f.jti))
                __builtin_trap();
            if ((e.iss && strcmp(f.iss, e.iss) != 0) ||
                (e.sub_must_equal_iss && strcmp(f.sub, f.iss) != 0))
                __builtin_trap();
            if (f.exp <= NOW - e.leeway_s || f.exp - NOW > e.max_lifetime_s + e.leeway_s ||
                f.iat > NOW + e.leeway_s ||
                (f.iat && f.exp - f.iat > e.max_lifetime_s + e.leeway_s))
                __builtin_trap();
        }
        e.iss = NULL; /* portal subject token: any issuer, sub is the user */
        e.sub_must_equal_iss = false;
        e.max_lifetime_s = 3600;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data, *jwks = FIXED_JWKS, *tok = in;
    size_t jl = sizeof(FIXED_JWKS) - 1, tl = size;
    const char *nul = memchr(in, '\0', size);
    if (nul) {
        jwks = in;
        jl = (size_t)(nul - in);
        tok = nul + 1;
        tl = size - jl - 1;
    }
    struct waf_jwks *ks = NULL;
    char d[200] = "";
    enum waf_jose_result r = waf_jwks_parse(jwks, jl, &ks, d, sizeof(d));
    if ((r == WAF_JOSE_OK) != (ks != NULL))
        __builtin_trap();
    if (r != WAF_JOSE_OK)
        check_detail(d, sizeof(d));
    else if (waf_jwks_count(ks) < 1 || waf_jwks_count(ks) > WAF_JWKS_MAX_KEYS)
        __builtin_trap();
    if (ks == NULL && !nul)
        __builtin_trap(); /* the fixed JWKS always parses */

    if (ks) {
        static const char *const typs[] = {NULL, "JWT"};
        for (int t = 0; t < 2; t++) {
            char *p = NULL;
            size_t pl = 0;
            d[0] = '\0';
            r = waf_jose_verify(ks, tok, tl, typs[t], &p, &pl, d, sizeof(d));
            if ((r == WAF_JOSE_OK) != (p != NULL))
                __builtin_trap();
            if (r != WAF_JOSE_OK) {
                check_detail(d, sizeof(d));
                continue;
            }
            if (pl > WAF_JOSE_MAX_TOKEN || strlen(p) != pl || tl > WAF_JOSE_MAX_TOKEN)
                __builtin_trap();
            claims(p, pl);
            free(p);
        }
    }
    claims(tok, tl);
    waf_jwks_free(ks);
    return 0;
}
