/* Logging of the eP-CSCF: one line per event on stderr with a level tag; the level is set
 * once at start-up (log.level). Callers never pass tokens or credentials. */
#include "ep.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static atomic_int max_level = EP_LOG_INFO;

void ep_log_set_level(const char *name)
{
    int l = EP_LOG_INFO;
    if (name != NULL && strcmp(name, "error") == 0)
        l = EP_LOG_ERR;
    else if (name != NULL && strcmp(name, "warning") == 0)
        l = EP_LOG_WARN;
    else if (name != NULL && strcmp(name, "debug") == 0)
        l = EP_LOG_DEBUG;
    atomic_store(&max_level, l);
}

void ep_log(enum ep_log_level lvl, const char *fmt, ...)
{
    if ((int)lvl > atomic_load(&max_level))
        return;
    static const char *const tag[] = {[EP_LOG_ERR] = "error",
                                      [EP_LOG_WARN] = "warning",
                                      [EP_LOG_INFO] = "info",
                                      [EP_LOG_DEBUG] = "debug"};
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ epcscf %s: %s\n", tm.tm_year + 1900,
            tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
            tag[lvl], msg);
}
