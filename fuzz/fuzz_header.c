/* Authorization header parser. */
#include "../validator-lib/src/internal.h"
#include "fuzz.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *tok = NULL;
    size_t tl = 0;
    char detail[160];
    enum imsauth_result r = ims_header_parse(data, size, 4096, &tok, &tl, detail, sizeof(detail));
    if (r == IMSAUTH_OK) {
        /* The token is a non-empty span inside the input. */
        if (tl == 0 || tl > 4096 || tok < data || tok + tl > data + size)
            __builtin_trap();
    }
    if (memchr(detail, '\0', sizeof(detail)) == NULL)
        __builtin_trap();
    return 0;
}
