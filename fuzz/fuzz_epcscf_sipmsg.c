/* eP-CSCF SIP-over-WebSocket message parser: any bytes give a message or a refusal with a
 * status and a one-line detail, never a crash, leak or over-read (the input is not
 * NUL-terminated). An accepted message has the mandatory headers, a CSeq method matching the
 * request method, and raw credentials that are non-empty, trimmed and free of controls. */
#include "../epcscf-ref/src/sipmsg.h"
#include "fuzz.h"

#include <string.h>

static void check_credential(const char *v)
{
    if (v == NULL)
        return;
    size_t n = strlen(v);
    if (n == 0 || v[0] == ' ' || v[0] == '\t' || v[n - 1] == ' ' || v[n - 1] == '\t')
        __builtin_trap();
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ep_sipmsg *m = NULL;
    struct ep_sip_error err;
    memset(&err, 0, sizeof(err));
    int rc = ep_sipmsg_parse(data, size, NULL, &m, &err);
    if ((rc == 0) != (m != NULL))
        __builtin_trap();
    if (rc != 0) {
        if ((err.status != 400 && err.status != 513) || err.reason == NULL ||
            err.detail[0] == '\0' || memchr(err.detail, '\0', sizeof(err.detail)) == NULL ||
            strpbrk(err.detail, "\r\n") != NULL)
            __builtin_trap();
        return 0;
    }
    osip_message_t *o = ep_sipmsg_osip(m);
    if (o == NULL || o->to == NULL || o->from == NULL || o->cseq == NULL ||
        o->cseq->method == NULL || o->call_id == NULL || osip_list_size(&o->vias) <= 0)
        __builtin_trap();
    if (ep_sipmsg_is_request(m)) {
        if (o->sip_method == NULL || strcmp(o->sip_method, o->cseq->method) != 0)
            __builtin_trap();
    } else if (o->status_code < 100 || o->status_code > 699) {
        __builtin_trap();
    }
    check_credential(ep_sipmsg_authorization(m));
    check_credential(ep_sipmsg_proxy_authorization(m));
    ep_sipmsg_free(m);
    return 0;
}
