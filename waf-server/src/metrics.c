/* Prometheus metrics (see metrics.h). */
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int statuses[WAF_METRICS_STATUSES - 1] = {200, 400, 401, 403, 404, 405,
                                                       413, 415, 422, 429, 500, 503};
/* Upper bounds of the latency buckets, in microseconds. */
static const unsigned long bounds_us[WAF_METRICS_BUCKETS] = {250,   500,   1000,  2500,   5000,
                                                             10000, 25000, 50000, 100000, 250000};
static const char *const listener_names[WAF_METRICS_LISTENERS] = {"public", "admin"};

static int status_slot(int status)
{
    for (int i = 0; i < WAF_METRICS_STATUSES - 1; i++)
        if (statuses[i] == status)
            return i;
    return WAF_METRICS_STATUSES - 1; /* "other" */
}

void waf_metrics_observe(struct waf_metrics *m, int listener, int route, int status, int64_t ns)
{
    if (listener < 0 || listener >= WAF_METRICS_LISTENERS || route >= WAF_METRICS_ROUTES)
        return;
    atomic_fetch_add_explicit(&m->req[listener][route + 1][status_slot(status)], 1,
                              memory_order_relaxed);
    const struct waf_route *rt =
        route >= 0 && m->routes[listener] ? &m->routes[listener][route] : NULL;
    if (rt && status == 200 && strcmp(rt->path, "/token") == 0) {
        unsigned long us = ns > 0 ? (unsigned long)(ns / 1000) : 0;
        int b = 0;
        while (b < WAF_METRICS_BUCKETS && us > bounds_us[b])
            b++;
        atomic_fetch_add_explicit(&m->token_bucket[b], 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&m->token_count, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&m->token_sum_us, us, memory_order_relaxed);
    }
}

char *waf_metrics_render(const struct waf_metrics *m)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL)
        return NULL;
    fputs("# HELP waf_http_requests_total HTTP requests answered, by listener, endpoint and "
          "status.\n# TYPE waf_http_requests_total counter\n",
          f);
    for (int l = 0; l < WAF_METRICS_LISTENERS; l++)
        for (int r = 0; r <= WAF_METRICS_ROUTES; r++)
            for (int s = 0; s < WAF_METRICS_STATUSES; s++) {
                unsigned long v = atomic_load_explicit((atomic_ulong *)(uintptr_t)&m->req[l][r][s],
                                                       memory_order_relaxed);
                if (v == 0)
                    continue;
                const char *ep =
                    r == 0 || m->routes[l] == NULL ? "(none)" : m->routes[l][r - 1].path;
                const char *method =
                    r == 0 || m->routes[l] == NULL ? "" : m->routes[l][r - 1].method;
                char st[8];
                if (s < WAF_METRICS_STATUSES - 1)
                    snprintf(st, sizeof(st), "%d", statuses[s]);
                else
                    snprintf(st, sizeof(st), "other");
                fprintf(f,
                        "waf_http_requests_total{listener=\"%s\",method=\"%s\",endpoint=\"%s\","
                        "status=\"%s\"} %lu\n",
                        listener_names[l], method, ep, st, v);
            }
    fputs("# HELP waf_token_response_seconds Time from a complete token request to its "
          "successful response.\n# TYPE waf_token_response_seconds histogram\n",
          f);
    unsigned long cum = 0;
    for (int b = 0; b <= WAF_METRICS_BUCKETS; b++) {
        cum += atomic_load_explicit((atomic_ulong *)(uintptr_t)&m->token_bucket[b],
                                    memory_order_relaxed);
        if (b < WAF_METRICS_BUCKETS)
            fprintf(f, "waf_token_response_seconds_bucket{le=\"%g\"} %lu\n",
                    (double)bounds_us[b] / 1e6, cum);
        else
            fprintf(f, "waf_token_response_seconds_bucket{le=\"+Inf\"} %lu\n", cum);
    }
    fprintf(f, "waf_token_response_seconds_sum %.6f\nwaf_token_response_seconds_count %lu\n",
            (double)atomic_load_explicit((atomic_ulong *)(uintptr_t)&m->token_sum_us,
                                         memory_order_relaxed) /
                1e6,
            atomic_load_explicit((atomic_ulong *)(uintptr_t)&m->token_count, memory_order_relaxed));
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}
