/*
 * imsauth-verify: checks one Authorization header value read from stdin, for operators and
 * for black-box tests. Exit 0 valid (JSON on stdout), 1 invalid (JSON on stdout), 2 usage
 * or configuration error (message on stderr).
 */
#include "imsauth/imsauth.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STDIN_MAX (1024 * 1024)

static void usage(FILE *f)
{
    fputs("usage: imsauth-verify (--jwks FILE | --jwks-url URL) --issuer ISS --audience AUD\n"
          "                      --realm REALM [--scope SCOPE] [--impu URI]\n"
          "                      [--request-uri URI] [--method M] [--authz-server URL]\n"
          "                      [--leeway SECONDS] [--now UNIX_SECONDS] [--algs LIST]\n"
          "stdin: one Authorization header value, e.g. \"Bearer eyJ...\"\n"
          "exit: 0 valid, 1 invalid (JSON on stdout), 2 usage or configuration error\n",
          f);
}

static int die(const char *what, const char *detail)
{
    fprintf(stderr, "imsauth-verify: %s%s%s\n", what, detail && *detail ? ": " : "",
            detail ? detail : "");
    return 2;
}

static long long parse_num(const char *s, long long lo, long long hi, int *ok)
{
    char *e;
    errno = 0;
    long long v = strtoll(s, &e, 10);
    *ok = *s && !*e && !errno && v >= lo && v <= hi;
    return v;
}

static unsigned parse_algs(const char *list)
{
    static const struct {
        const char *n;
        unsigned a;
    } t[] = {{"ES256", IMSAUTH_ALG_ES256}, {"ES384", IMSAUTH_ALG_ES384},
             {"ES512", IMSAUTH_ALG_ES512}, {"RS256", IMSAUTH_ALG_RS256},
             {"RS384", IMSAUTH_ALG_RS384}, {"RS512", IMSAUTH_ALG_RS512},
             {"PS256", IMSAUTH_ALG_PS256}, {"PS384", IMSAUTH_ALG_PS384},
             {"PS512", IMSAUTH_ALG_PS512}, {"EdDSA", IMSAUTH_ALG_EDDSA}};
    unsigned algs = 0;
    char *copy = strdup(list), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        size_t i = 0;
        while (i < sizeof(t) / sizeof(t[0]) && strcmp(t[i].n, tok) != 0)
            i++;
        if (i == sizeof(t) / sizeof(t[0])) {
            free(copy);
            return 0;
        }
        algs |= t[i].a;
    }
    free(copy);
    return algs;
}

/* Reads stdin and strips one trailing line end. Input beyond STDIN_MAX is dropped: the
 * prefix alone is far over any token limit, so the verdict is too_large. */
static char *read_stdin(size_t *len)
{
    char *buf = malloc(STDIN_MAX + 1);
    if (buf == NULL)
        return NULL;
    size_t n = fread(buf, 1, STDIN_MAX, stdin);
    if (n == STDIN_MAX) {
        while (getchar() != EOF) /* drain */
            ;
    }
    if (n && buf[n - 1] == '\n') { /* one line end: "\n" or "\r\n", never a lone "\r" */
        n--;
        if (n && buf[n - 1] == '\r')
            n--;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"jwks", required_argument, 0, 'j'},
                                             {"jwks-url", required_argument, 0, 'u'},
                                             {"issuer", required_argument, 0, 'i'},
                                             {"audience", required_argument, 0, 'a'},
                                             {"realm", required_argument, 0, 'r'},
                                             {"scope", required_argument, 0, 's'},
                                             {"impu", required_argument, 0, 'p'},
                                             {"request-uri", required_argument, 0, 'q'},
                                             {"method", required_argument, 0, 'm'},
                                             {"authz-server", required_argument, 0, 'z'},
                                             {"leeway", required_argument, 0, 'l'},
                                             {"now", required_argument, 0, 'n'},
                                             {"algs", required_argument, 0, 'g'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    struct imsauth_opts o = {0};
    const char *issuers[2] = {0};
    const char *impu = NULL, *ruri = NULL, *method = "REGISTER";
    long long now = 0;
    int c, ok;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'j':
            o.jwks_file = optarg;
            break;
        case 'u':
            o.jwks_url = optarg;
            break;
        case 'i':
            issuers[0] = optarg;
            break;
        case 'a':
            o.audience = optarg;
            break;
        case 'r':
            o.realm = optarg;
            break;
        case 's':
            o.scope = optarg;
            break;
        case 'p':
            impu = optarg;
            break;
        case 'q':
            ruri = optarg;
            break;
        case 'm':
            method = optarg;
            break;
        case 'z':
            o.authz_server = optarg;
            break;
        case 'l':
            o.leeway_s = (unsigned)parse_num(optarg, 1, 86400, &ok);
            if (!ok)
                return die("--leeway must be 1..86400 seconds", NULL);
            break;
        case 'n':
            now = parse_num(optarg, 1, 253402300799LL, &ok);
            if (!ok)
                return die("--now must be Unix seconds", NULL);
            break;
        case 'g':
            o.allowed_algs = parse_algs(optarg);
            if (!o.allowed_algs)
                return die("--algs takes a comma list of ES256,ES384,ES512,RS256,RS384,"
                           "RS512,PS256,PS384,PS512,EdDSA",
                           NULL);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc || (!o.jwks_file && !o.jwks_url) || !issuers[0] || !o.audience || !o.realm) {
        usage(stderr);
        return 2;
    }
    o.issuers = issuers;
    o.cache_off = 1;

    char detail[256], ruri_buf[512];
    struct imsauth_ctx *ctx = NULL;
    enum imsauth_result r = imsauth_ctx_alloc(&ctx, &o, detail, sizeof(detail));
    if (r != IMSAUTH_OK)
        return die(imsauth_strerror(r), detail);
    if (o.jwks_url && (r = imsauth_refresh(ctx, NULL, detail, sizeof(detail))) != IMSAUTH_OK) {
        imsauth_ctx_free(ctx);
        return die("cannot fetch the JWKS", detail);
    }
    if (ruri == NULL) {
        snprintf(ruri_buf, sizeof(ruri_buf), "sip:%s", o.realm);
        ruri = ruri_buf;
    }
    size_t len = 0;
    char *in = read_stdin(&len);
    if (in == NULL) {
        imsauth_ctx_free(ctx);
        return die("out of memory", NULL);
    }
    struct imsauth_request req = {.method = method, .request_uri = ruri, .impu = impu, .now = now};
    struct imsauth_verdict v;
    imsauth_verify(ctx, (const uint8_t *)in, len, &req, &v);
    free(in);

    json_t *out = json_object();
    char hdr[2048];
    int rc;
    if (v.result == IMSAUTH_OK) {
        const struct imsauth_token *t = v.token;
        json_t *impus = json_array();
        for (size_t i = 0; i < imsauth_token_impu_count(t); i++)
            json_array_append_new(impus, json_string(imsauth_token_impu(t, i)));
        r = imsauth_tna_header(imsauth_token_impi(t), o.realm, ruri, hdr, sizeof(hdr), NULL);
        json_object_set_new(out, "valid", json_true());
        json_object_set_new(out, "impi", json_string(imsauth_token_impi(t)));
        json_object_set_new(out, "impu", impus);
        json_object_set_new(out, "sub", json_string(imsauth_token_sub(t)));
        json_object_set_new(out, "exp", json_integer(imsauth_token_exp(t)));
        json_object_set_new(out, "jti", json_string(imsauth_token_jti(t)));
        json_object_set_new(out, "client_id", json_string(imsauth_token_client_id(t)));
        json_object_set_new(out, "scope", json_string(imsauth_token_scope(t)));
        if (imsauth_token_pool_lease(t))
            json_object_set_new(out, "pool_lease", json_string(imsauth_token_pool_lease(t)));
        if (imsauth_token_wwsf(t))
            json_object_set_new(out, "wwsf", json_string(imsauth_token_wwsf(t)));
        json_object_set_new(out, "tna", r == IMSAUTH_OK ? json_string(hdr) : json_null());
        /* Claims never hold control characters, so only an absurd IMPI length fails. */
        rc = r == IMSAUTH_OK ? 0 : 2;
        if (r != IMSAUTH_OK)
            fprintf(stderr, "imsauth-verify: cannot build the TNA header: %s\n",
                    imsauth_strerror(r));
        imsauth_token_release(v.token);
    } else {
        r = imsauth_challenge(ctx, v.result, hdr, sizeof(hdr), NULL);
        json_object_set_new(out, "valid", json_false());
        json_object_set_new(out, "sip_status", json_integer(v.sip_status));
        json_object_set_new(out, "error", v.error ? json_string(v.error) : json_null());
        json_object_set_new(out, "reason", json_string(imsauth_strerror(v.result)));
        json_object_set_new(out, "detail", json_string(v.detail));
        json_object_set_new(out, "challenge", r == IMSAUTH_OK ? json_string(hdr) : json_null());
        rc = 1;
    }
    char *s = json_dumps(out, JSON_COMPACT);
    puts(s ? s : "{}");
    free(s);
    json_decref(out);
    imsauth_ctx_free(ctx);
    return rc;
}
