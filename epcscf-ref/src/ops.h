/*
 * The operations listener (http.listen): GET /metrics (Prometheus text) and GET /healthz
 * (JSON). Owned by main; reads the app's atomic counters from its own thread.
 */
#ifndef EP_OPS_H
#define EP_OPS_H

#include "ep.h"

struct ep_ops;

/* Starts listening; *out is owned by the caller (ep_ops_stop). -1 with detail on failure. */
int ep_ops_start(struct ep_ops **out, struct ep_app *app, char *detail, size_t dlen);
void ep_ops_stop(struct ep_ops *o); /* accepts NULL */

#endif
