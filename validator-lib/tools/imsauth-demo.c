/*
 * imsauth-demo: what `make run` shows while only the validator exists. It creates a fresh
 * ES256 key, publishes it as a JWKS file in DIR, mints a token of the project's token
 * profile (tools/mint.c, OpenSSL), verifies it with libimsauth and
 * prints the TNA header, then shows two rejections (wrong identity, tampered token).
 * usage: imsauth-demo DIR
 */
#include "imsauth/imsauth.h"
#include "mint.h"

#include <jansson.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ISSUER   "https://waf.home1.net"
#define AUDIENCE "epcscf.home1.net"
#define REALM    "home1.net"

/* Writes DIR/jwks.json for key; returns 0 on success. */
static int write_jwks(const char *dir, EVP_PKEY *key, const char *kid)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/jwks.json", dir);
    char *jwks = ims_mint_jwks(&key, &kid, 1);
    FILE *f = jwks ? fopen(path, "w") : NULL;
    int rc = f && fputs(jwks, f) >= 0 ? 0 : -1;
    if (f && fclose(f) != 0)
        rc = -1;
    free(jwks);
    return rc;
}

/* A token of docs/token-profile.md. (Debian's libjwt 1.10 cannot issue it: it always
   writes "typ":"JWT" into the header, while RFC 9068 requires "at+jwt".) */
static char *mint(EVP_PKEY *key, const char *kid, const char *impi, const char *impu)
{
    unsigned char rnd[16];
    char jti[2 * 16 + 1];
    RAND_bytes(rnd, sizeof(rnd));
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(jti + 2 * i, 3, "%02x", rnd[i]);
    time_t now = time(NULL);
    json_t *hdr = json_pack("{s:s,s:s,s:s}", "typ", "at+jwt", "alg", "ES256", "kid", kid);
    json_t *claims =
        json_pack("{s:s,s:s,s:s,s:I,s:I,s:s,s:s,s:s,s:s,s:[s],s:s}", "iss", ISSUER, "sub",
                  "web-user-alice", "aud", AUDIENCE, "iat", (json_int_t)now, "exp",
                  (json_int_t)now + 600, "jti", jti, "client_id", "wwsf-portal", "scope",
                  "openid ims", "impi", impi, "impu", impu, "wwsf", "https://wwsf.home1.net");
    char *out = hdr && claims ? ims_mint_sign(key, "ES256", hdr, claims) : NULL;
    json_decref(hdr);
    json_decref(claims);
    return out;
}

static void show(struct imsauth_ctx *ctx, const char *label, const char *hdr, const char *impu)
{
    struct imsauth_request req = {.method = "REGISTER", .request_uri = "sip:" REALM, .impu = impu};
    struct imsauth_verdict v;
    char out[1024];
    printf("\n== %s\n   REGISTER sip:%s, To <%s>\n", label, REALM, impu);
    if (imsauth_verify(ctx, (const unsigned char *)hdr, strlen(hdr), &req, &v) == IMSAUTH_OK) {
        imsauth_tna_header(imsauth_token_impi(v.token), REALM, "sip:" REALM, out, sizeof(out),
                           NULL);
        printf("   valid: impi=%s impu[0]=%s, expires in %lld s\n", imsauth_token_impi(v.token),
               imsauth_token_impu(v.token, 0),
               (long long)(imsauth_token_exp(v.token) - time(NULL)));
        printf("   forward to the S-CSCF with\n   Authorization: %s\n", out);
        imsauth_token_release(v.token);
    } else {
        imsauth_challenge(ctx, v.result, out, sizeof(out), NULL);
        printf("   rejected: %s (%s)\n   SIP/2.0 %d, WWW-Authenticate: %s\n",
               imsauth_strerror(v.result), v.detail, v.sip_status, out);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    const char *kid = "demo-es256-1";
    EVP_PKEY *key = EVP_EC_gen("P-256");
    if (key == NULL || write_jwks(argv[1], key, kid) != 0) {
        fprintf(stderr, "imsauth-demo: cannot create the key or write %s/jwks.json\n", argv[1]);
        return 2;
    }
    char jwks_path[4096], detail[256];
    snprintf(jwks_path, sizeof(jwks_path), "%s/jwks.json", argv[1]);
    const char *issuers[] = {ISSUER, NULL};
    struct imsauth_opts o = {.issuers = issuers,
                             .audience = AUDIENCE,
                             .realm = REALM,
                             .authz_server = ISSUER "/",
                             .jwks_file = jwks_path};
    struct imsauth_ctx *ctx;
    if (imsauth_ctx_alloc(&ctx, &o, detail, sizeof(detail)) != IMSAUTH_OK) {
        fprintf(stderr, "imsauth-demo: %s\n", detail);
        return 2;
    }
    char *tok = mint(key, kid, "alice@home1.net", "sip:alice@home1.net");
    if (tok == NULL) {
        fprintf(stderr, "imsauth-demo: could not sign\n");
        return 2;
    }
    size_t hl = strlen(tok) + 8;
    char *hdr = malloc(hl);
    snprintf(hdr, hl, "Bearer %s", tok);
    /* The demo key is throw-away; the header value is saved so the CLI can be tried. */
    char auth_path[4096];
    snprintf(auth_path, sizeof(auth_path), "%s/authorization.txt", argv[1]);
    FILE *af = fopen(auth_path, "w");
    if (af) {
        fprintf(af, "%s\n", hdr);
        fclose(af);
    }
    printf("JWKS written to %s (kid %s); token signed with a fresh ES256 key, %zu bytes, "
           "header {\"typ\":\"at+jwt\",\"alg\":\"ES256\",\"kid\":\"%s\"}\n",
           jwks_path, kid, strlen(tok), kid);
    show(ctx, "valid token", hdr, "sip:alice@home1.net");
    show(ctx, "token used for another identity", hdr, "sip:bob@home1.net");
    char *dot = strrchr(hdr, '.');
    dot[5] = dot[5] == 'A' ? 'B' : 'A'; /* one signature character changed */
    show(ctx, "tampered signature", hdr, "sip:alice@home1.net");
    show(ctx, "no credentials", "", "sip:alice@home1.net");
    free(hdr);
    free(tok);
    imsauth_ctx_free(ctx);
    EVP_PKEY_free(key);
    return 0;
}
