/* JWKS / JWK parsing (what a JWKS file or URL may contain). */
#include "../validator-lib/src/internal.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ims_keyset *ks = ims_keyset_new();
    char detail[160];
    ims_keyset_add_jwks(ks, (const char *)data, size, detail, sizeof(detail));
    if (ks->n > IMSAUTH_MAX_KEYS)
        __builtin_trap();
    ims_keyset_unref(ks);
    return 0;
}
