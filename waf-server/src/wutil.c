/* Small helpers shared by the waf-server modules (see wutil.h). */
#include "wutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

void waf_detail(char *detail, size_t dlen, const char *fmt, ...)
{
    if (detail == NULL || dlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, dlen, fmt, ap);
    va_end(ap);
}

int64_t waf_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t waf_mono_ms(void)
{
    return waf_mono_ns() / 1000000;
}
