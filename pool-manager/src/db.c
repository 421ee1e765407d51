/* Connection handle, clock and the query helpers shared by pools and leases. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void imspool_oneline(char *s)
{
    if (s == NULL)
        return;
    char *o = s;
    bool space = false;
    for (char *p = s; *p; p++) {
        if (*p == '\n' || *p == '\r' || *p == '\t' || *p == ' ') {
            space = o != s;
            continue;
        }
        if (space)
            *o++ = ' ';
        space = false;
        *o++ = *p;
    }
    *o = '\0';
}

static int64_t system_ms(void *arg)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void imspool_now_param(struct imspool *p, char out[24])
{
    snprintf(out, 24, "%lld", (long long)p->clock(p->clock_arg));
}

/* 23505 unique violation; other 23xxx (integrity) and 22xxx (data) errors are bad input;
 * anything else (connection, server, conflicts) counts as the database being unavailable. */
static enum imspool_result from_sqlstate(const char *st)
{
    if (st && strcmp(st, "23505") == 0)
        return IMSPOOL_ERR_DUPLICATE;
    if (st && (strncmp(st, "23", 2) == 0 || strncmp(st, "22", 2) == 0))
        return IMSPOOL_ERR_INVALID_ARG;
    return IMSPOOL_ERR_DB_UNAVAILABLE;
}

PGresult *imspool_q(struct imspool *p, const char *sql, int n, const char *const *params,
                    enum imspool_result *r, char *detail, size_t dlen)
{
    PGresult *res = PQexecParams(p->c, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return res;
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
    imspool_oneline(msg);
    *r = from_sqlstate(PQresultErrorField(res, PG_DIAG_SQLSTATE));
    imspool_detail(detail, dlen, "%s", msg[0] ? msg : "database error");
    PQclear(res);
    return NULL;
}

IMSPOOL_API enum imspool_result imspool_open(struct imspool **pp, const struct imspool_opts *o,
                                             char *detail, size_t dlen)
{
    imspool_detail(detail, dlen, "%s", "");
    if (o == NULL || o->db_url == NULL) {
        imspool_detail(detail, dlen, "db_url is required");
        return IMSPOOL_ERR_INVALID_ARG;
    }
    struct imspool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return IMSPOOL_ERR_NOMEM;
    p->clock = o->clock ? o->clock : system_ms;
    p->clock_arg = o->clock_arg;
    p->c = PQconnectdb(o->db_url);
    if (PQstatus(p->c) != CONNECTION_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(p->c));
        imspool_oneline(msg);
        imspool_detail(detail, dlen, "cannot connect to the database: %s", msg);
        imspool_close(p);
        return IMSPOOL_ERR_DB_UNAVAILABLE;
    }
    *pp = p;
    return IMSPOOL_OK;
}

IMSPOOL_API void imspool_close(struct imspool *p)
{
    if (p == NULL)
        return;
    PQfinish(p->c);
    free(p);
}
