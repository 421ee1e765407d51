/* Claims of a (signature-checked) payload: JSON bytes into the token object, and the
 * identity comparison on what comes out. */
#include "../validator-lib/src/internal.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *iss[] = {"https://waf.test"};
    struct ims_claim_policy p = {iss, 1, "epcscf.test", "ims"};
    struct imsauth_token *t = NULL;
    char detail[160];
    if (ims_token_from_claims(data, size, &p, &t, detail, sizeof(detail)) == IMSAUTH_OK) {
        if (t->n_impu == 0 || t->impi == NULL || t->jti == NULL)
            __builtin_trap();
        for (size_t i = 0; i < t->n_impu; i++)
            if (!imsauth_token_grants(t, t->impu[i]))
                __builtin_trap(); /* every IMPU equals itself */
        imsauth_token_release(t);
    }
    return 0;
}
