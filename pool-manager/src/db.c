/* Connection handle, clock and the query helpers shared by pools and leases. */
#include "internal.h"

#include <poll.h>
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

/* Deadlocks (40P01) and serialisation failures (40001) roll the whole statement back, so
 * running it again is safe; each call of imspool_q() is one autocommit statement. */
static bool retryable(const char *st)
{
    return st && (strcmp(st, "40P01") == 0 || strcmp(st, "40001") == 0);
}

/* Sleeps 2^attempt ms plus up to as much again of jitter, so that the two sides of a
 * deadlock do not meet again at once. */
static void backoff(struct imspool *p, int attempt)
{
    p->seed = p->seed * 6364136223846793005ULL + 1442695040888963407ULL;
    long ms = (1L << attempt) + (long)((p->seed >> 33) % (uint64_t)(1L << attempt));
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/*
 * Reconnects a handle whose connection broke (a server restart, a network cut). A server
 * that ended an idle session has left its goodbye and EOF on the socket: reading it first
 * (a poll without waiting) tells a dead connection from a live one before a statement is
 * sent, so the statement runs on a fresh connection instead of failing with an unknown
 * outcome.
 */
bool imspool_connected(struct imspool *p)
{
    if (PQstatus(p->c) == CONNECTION_OK) {
        /* The goodbye message and the EOF may take a read each. */
        for (int i = 0; i < 4 && PQstatus(p->c) == CONNECTION_OK; i++) {
            struct pollfd pfd = {.fd = PQsocket(p->c), .events = POLLIN};
            if (pfd.fd < 0 || poll(&pfd, 1, 0) <= 0)
                break;
            if (!PQconsumeInput(p->c))
                break;
            (void)PQisBusy(p->c); /* parses what arrived */
        }
        if (PQstatus(p->c) == CONNECTION_OK)
            return true;
    }
    PQreset(p->c);
    p->prepared = 0; /* a new session has no prepared statements */
    if (PQstatus(p->c) != CONNECTION_OK)
        return false;
    p->reconnects++;
    return true;
}

/* Runs sql, as the prepared statement id when id >= 0 (prepared on first use per session,
 * which saves parsing and planning on the hot paths), else as a one-off statement. */
static PGresult *exec(struct imspool *p, int id, const char *sql, int n, const char *const *params)
{
    if (id < 0)
        return PQexecParams(p->c, sql, n, NULL, params, NULL, NULL, 0);
    char name[24];
    snprintf(name, sizeof(name), "imspool_%d", id);
    if (!(p->prepared & (1u << id))) {
        PGresult *prep = PQprepare(p->c, name, sql, n, NULL);
        if (PQresultStatus(prep) != PGRES_COMMAND_OK)
            return prep;
        PQclear(prep);
        p->prepared |= 1u << id;
    }
    return PQexecPrepared(p->c, name, n, params, NULL, NULL, 0);
}

PGresult *imspool_q(struct imspool *p, const char *sql, int n, const char *const *params,
                    enum imspool_result *r, char *detail, size_t dlen)
{
    return imspool_qs(p, -1, sql, n, params, r, detail, dlen);
}

PGresult *imspool_qs(struct imspool *p, int id, const char *sql, int n, const char *const *params,
                     enum imspool_result *r, char *detail, size_t dlen)
{
    char msg[512];
    for (int attempt = 0;; attempt++) {
        if (!imspool_connected(p)) {
            snprintf(msg, sizeof(msg), "%s", PQerrorMessage(p->c));
            imspool_oneline(msg);
            imspool_detail(detail, dlen, "cannot reach the database: %s", msg);
            *r = IMSPOOL_ERR_DB_UNAVAILABLE;
            return NULL;
        }
        PGresult *res = exec(p, id, sql, n, params);
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
            return res;
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (state && strcmp(state, "26000") == 0 && id >= 0 && attempt < IMSPOOL_RETRIES) {
            /* The session lost its prepared statements (DISCARD ALL by a pooler). */
            PQclear(res);
            p->prepared = 0;
            continue;
        }
        /* 57P01..57P03: the server ended the session (shutdown, restart, crash
           recovery) before or while running the statement, which therefore did not
           commit: run it again on a fresh connection. */
        bool ended = state && strncmp(state, "57P", 3) == 0 && PQstatus(p->c) != CONNECTION_OK;
        if ((retryable(state) || ended) && attempt < IMSPOOL_RETRIES) {
            PQclear(res);
            p->retries++;
            backoff(p, attempt);
            continue;
        }
        snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
        imspool_oneline(msg);
        *r = from_sqlstate(state);
        if (PQstatus(p->c) != CONNECTION_OK)
            /* The statement may or may not have committed before the connection went. */
            imspool_detail(detail, dlen, "connection to the database lost; outcome unknown: %s",
                           msg[0] ? msg : "no message");
        else if (retryable(state))
            imspool_detail(detail, dlen, "still conflicting after %d retries: %s", IMSPOOL_RETRIES,
                           msg);
        else if (state && strncmp(state, "23", 2) == 0 &&
                 PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL))
            /* Integrity errors: the detail names the offending key. */
            imspool_detail(detail, dlen, "%s (%s)", msg,
                           PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL));
        else
            imspool_detail(detail, dlen, "%s", msg[0] ? msg : "database error");
        PQclear(res);
        return NULL;
    }
}

static void quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
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
    p->seed = (uint64_t)system_ms(NULL) ^ (uint64_t)(uintptr_t)p;
    enum imspool_result r = imspool_redis_init(p, o, detail, dlen);
    if (r != IMSPOOL_OK) {
        free(p);
        return r;
    }
    p->c = PQconnectdb(o->db_url);
    /* The library prints nothing: server notices are dropped. */
    PQsetNoticeProcessor(p->c, quiet, NULL);
    if (PQstatus(p->c) != CONNECTION_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(p->c));
        imspool_oneline(msg);
        imspool_detail(detail, dlen, "cannot connect to the database: %s", msg);
        imspool_close(p);
        return IMSPOOL_ERR_DB_UNAVAILABLE;
    }
    if (!imspool_redis_prefix_set(p)) {
        /* Default prefix "imspool:<database>:", so that databases sharing a Redis never
           share keys. */
        char prefix[160];
        snprintf(prefix, sizeof(prefix), "imspool:%s:", PQdb(p->c));
        if (imspool_redis_set_prefix(p, prefix) != IMSPOOL_OK) {
            imspool_detail(detail, dlen, "database name too long for the default redis prefix");
            imspool_close(p);
            return IMSPOOL_ERR_INVALID_ARG;
        }
    }
    *pp = p;
    return IMSPOOL_OK;
}

IMSPOOL_API void imspool_close(struct imspool *p)
{
    if (p == NULL)
        return;
    PQfinish(p->c);
    imspool_redis_free(p);
    free(p);
}
