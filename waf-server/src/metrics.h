/*
 * Prometheus metrics of waf-server: requests by listener, endpoint and status, and the
 * latency of successful token responses as a histogram. Lock-free counters updated by the
 * HTTP workers; rendered in the text exposition format by GET /metrics.
 */
#ifndef WAF_METRICS_H
#define WAF_METRICS_H

#include "http.h"

#include <stdatomic.h>
#include <stdint.h>

#define WAF_METRICS_LISTENERS 2 /* 0 public, 1 admin */
#define WAF_METRICS_ROUTES    32
#define WAF_METRICS_STATUSES  13
#define WAF_METRICS_BUCKETS   10

struct waf_metrics {
    const struct waf_route *routes[WAF_METRICS_LISTENERS]; /* borrowed tables */
    /* route index + 1 (0: no route matched) by status slot */
    atomic_ulong req[WAF_METRICS_LISTENERS][WAF_METRICS_ROUTES + 1][WAF_METRICS_STATUSES];
    atomic_ulong token_bucket[WAF_METRICS_BUCKETS + 1]; /* last: +Inf */
    atomic_ulong token_count, token_sum_us;
};

/* Counts one response; route -1 when none matched; ns from the complete request to the
 * queued response. Thread-safe. */
void waf_metrics_observe(struct waf_metrics *m, int listener, int route, int status, int64_t ns);

/* The exposition text (a new string the caller frees; NULL without memory). */
char *waf_metrics_render(const struct waf_metrics *m);

#endif
