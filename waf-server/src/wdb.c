/* PostgreSQL connection pool (see wdb.h). */
#include "wdb.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct waf_db {
    pthread_mutex_t lock;
    pthread_cond_t freed;
    int size, nfree;
    PGconn **all, **free_list;
};

static void quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

struct waf_db *waf_db_open(const char *url, int size, char *detail, size_t dlen)
{
    struct waf_db *db = calloc(1, sizeof(*db));
    if (db == NULL)
        return NULL;
    db->all = calloc((size_t)size, sizeof(PGconn *));
    db->free_list = calloc((size_t)size, sizeof(PGconn *));
    pthread_mutex_init(&db->lock, NULL);
    pthread_cond_init(&db->freed, NULL);
    if (db->all == NULL || db->free_list == NULL) {
        waf_db_free(db);
        return NULL;
    }
    for (int i = 0; i < size; i++) {
        PGconn *c = PQconnectdb(url);
        db->all[db->size++] = c;
        if (PQstatus(c) != CONNECTION_OK) {
            snprintf(detail, dlen, "cannot connect to the database: %s", PQerrorMessage(c));
            for (char *p = detail; *p; p++)
                if (*p == '\n')
                    *p = ' ';
            waf_db_free(db);
            return NULL;
        }
        PQsetNoticeProcessor(c, quiet, NULL);
        db->free_list[db->nfree++] = c;
    }
    return db;
}

void waf_db_free(struct waf_db *db)
{
    if (db == NULL)
        return;
    for (int i = 0; i < db->size; i++)
        PQfinish(db->all[i]);
    free(db->all);
    free(db->free_list);
    pthread_mutex_destroy(&db->lock);
    pthread_cond_destroy(&db->freed);
    free(db);
}

PGconn *waf_db_get(struct waf_db *db)
{
    pthread_mutex_lock(&db->lock);
    while (db->nfree == 0)
        pthread_cond_wait(&db->freed, &db->lock);
    PGconn *c = db->free_list[--db->nfree];
    pthread_mutex_unlock(&db->lock);
    if (PQstatus(c) != CONNECTION_OK) {
        PQreset(c);
        if (PQstatus(c) != CONNECTION_OK) {
            waf_db_put(db, c);
            return NULL;
        }
    }
    return c;
}

void waf_db_put(struct waf_db *db, PGconn *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&db->lock);
    db->free_list[db->nfree++] = c;
    pthread_cond_signal(&db->freed);
    pthread_mutex_unlock(&db->lock);
}

PGresult *waf_db_exec(PGconn *c, const char *sql, int n, const char *const *params, char state[6],
                      char *detail, size_t dlen)
{
    PGresult *res = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return res;
    const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    snprintf(state, 6, "%s", s ? s : "");
    snprintf(detail, dlen, "%s", PQresultErrorMessage(res));
    for (char *p = detail; *p; p++)
        if (*p == '\n')
            *p = ' ';
    PQclear(res);
    return NULL;
}
