/*
 * Bulk member input of libimspool: the CSV parser and the {A..B} pattern parser; and the
 * Redis URL parser of ims_common, which libimspool and waf-server use. The first byte
 * picks the parser; the rest is its input.
 */
#include "../pool-manager/src/internal.h"
#include "../pool-manager/src/members_parse.h"
#include "ims_common/redis_url.h"
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

static bool row(long line, const char *impi, const char *impu, void *arg)
{
    long *rows = arg;
    /* Every row handed out passed the schema's checks, and lines only go up. */
    if (line <= 0 || imspool_impi_problem(impi) || imspool_impu_problem(impu))
        __builtin_trap();
    (*rows)++;
    return *rows < 100000;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    char *buf = malloc(size);
    if (buf == NULL)
        return 0;
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    char detail[256] = "";
    switch (data[0] % 3) {
    case 0: {
        long rows = 0;
        bool ok = imspool_csv_parse(buf, size - 1, row, &rows, detail, sizeof(detail));
        if (!ok && detail[0] == '\0' && rows < 100000)
            __builtin_trap(); /* a refusal always says why */
        break;
    }
    case 1: {
        if (memchr(buf, '\0', size - 1))
            break; /* patterns are C strings */
        struct imspool_pattern pt;
        if (imspool_pattern_parse(buf, &pt, detail, sizeof(detail))) {
            if (pt.has_range && (pt.lo > pt.hi || pt.hi - pt.lo + 1 > IMSPOOL_MAX_MEMBERS ||
                                 pt.width < 1 || pt.width > 7))
                __builtin_trap();
        } else if (detail[0] == '\0') {
            __builtin_trap();
        }
        break;
    }
    default: {
        if (memchr(buf, '\0', size - 1))
            break;
        struct ims_redis_url u;
        if (ims_redis_url_parse(buf, &u) &&
            (u.host[0] == '\0' || u.port < 1 || u.port > 65535 || u.db < 0 || u.db > 1000))
            __builtin_trap();
        break;
    }
    }
    free(buf);
    return 0;
}
