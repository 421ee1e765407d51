/*
 * Minimal libimsauth integration: verify the Authorization header of a REGISTER and print
 * the TNA header a P-CSCF forwards to the S-CSCF (or the challenge it answers with).
 * usage: imsauth-example JWKS_FILE ISSUER AUDIENCE REALM IMPU 'Bearer eyJ...'
 */
#include <imsauth/imsauth.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s JWKS ISSUER AUDIENCE REALM IMPU HEADER\n", argv[0]);
        return 2;
    }
    const char *issuers[] = {argv[2], NULL};
    struct imsauth_opts o = {
        .issuers = issuers, .audience = argv[3], .realm = argv[4], .jwks_file = argv[1]};
    struct imsauth_ctx *ctx;
    char detail[256], hdr[1024];
    if (imsauth_ctx_alloc(&ctx, &o, detail, sizeof(detail)) != IMSAUTH_OK) {
        fprintf(stderr, "config: %s\n", detail);
        return 2;
    }
    char ruri[300];
    snprintf(ruri, sizeof(ruri), "sip:%s", argv[4]);
    struct imsauth_request req = {.method = "REGISTER", .request_uri = ruri, .impu = argv[5]};
    struct imsauth_verdict v;
    if (imsauth_verify(ctx, (const unsigned char *)argv[6], strlen(argv[6]), &req, &v) ==
        IMSAUTH_OK) {
        imsauth_tna_header(imsauth_token_impi(v.token), argv[4], ruri, hdr, sizeof(hdr), NULL);
        printf("forward with Authorization: %s\n", hdr);
        imsauth_token_release(v.token);
    } else {
        imsauth_challenge(ctx, v.result, hdr, sizeof(hdr), NULL);
        printf("answer %d (%s): WWW-Authenticate: %s\n", v.sip_status, imsauth_strerror(v.result),
               hdr);
    }
    imsauth_ctx_free(ctx);
    return v.result == IMSAUTH_OK ? 0 : 1;
}
