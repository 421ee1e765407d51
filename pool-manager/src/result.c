/* Names of enum imspool_result and the detail helper. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>

static const char *const names[] = {
    [IMSPOOL_OK] = "ok",
    [IMSPOOL_ERR_INVALID_ARG] = "invalid_argument",
    [IMSPOOL_ERR_NOMEM] = "out_of_memory",
    [IMSPOOL_ERR_DB_UNAVAILABLE] = "database_unavailable",
    [IMSPOOL_ERR_MIGRATION_FAILED] = "migration_failed",
    [IMSPOOL_ERR_MIGRATION_CHANGED] = "migration_changed",
    [IMSPOOL_ERR_DB_NEWER] = "database_newer",
    [IMSPOOL_ERR_IO] = "io_error",
    [IMSPOOL_ERR_POOL_UNKNOWN] = "pool_unknown",
    [IMSPOOL_ERR_POOL_EXHAUSTED] = "pool_exhausted",
    [IMSPOOL_ERR_HOLDER_CAP] = "holder_cap_reached",
    [IMSPOOL_ERR_LEASE_UNKNOWN] = "lease_unknown",
    [IMSPOOL_ERR_LEASE_RELEASED] = "lease_already_released",
    [IMSPOOL_ERR_POOL_DRAINING] = "pool_draining",
    [IMSPOOL_ERR_DUPLICATE] = "duplicate",
    [IMSPOOL_ERR_POOL_NOT_EMPTY] = "pool_not_empty",
    [IMSPOOL_ERR_MEMBER_UNKNOWN] = "member_unknown",
};

IMSPOOL_API const char *imspool_strerror(enum imspool_result r)
{
    if ((unsigned)r < sizeof(names) / sizeof(names[0]) && names[r])
        return names[r];
    return "unknown";
}

void imspool_detail(char *detail, size_t dlen, const char *fmt, ...)
{
    if (detail == NULL || dlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, dlen, fmt, ap);
    va_end(ap);
}
