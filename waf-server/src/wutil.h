/* Small helpers shared by the waf-server modules. */
#ifndef WAF_WUTIL_H
#define WAF_WUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Formats one line into detail[dlen]; does nothing when detail is NULL or dlen 0. */
void waf_detail(char *detail, size_t dlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* CLOCK_MONOTONIC in milliseconds / nanoseconds. */
int64_t waf_mono_ms(void);
int64_t waf_mono_ns(void);

#endif
