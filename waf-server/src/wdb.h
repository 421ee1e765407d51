/*
 * A small pool of PostgreSQL connections shared by the HTTP worker threads. Each request
 * takes one connection for the few statements it runs and gives it back. Statements are
 * always parameterised (PQexecParams); a broken connection is reset when it is taken.
 */
#ifndef WAF_WDB_H
#define WAF_WDB_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

struct waf_db;

/* Opens size connections to url. NULL with detail on failure. Caller frees with
 * waf_db_free(). */
struct waf_db *waf_db_open(const char *url, int size, char *detail, size_t detail_len);
void waf_db_free(struct waf_db *db); /* accepts NULL */

/* Takes a connection (waits while all are in use); NULL when the database cannot be
 * reached. The caller gives it back with waf_db_put(). */
PGconn *waf_db_get(struct waf_db *db);
void waf_db_put(struct waf_db *db, PGconn *c);

/* Runs a parameterised statement; returns the result when it succeeded (caller PQclear()s),
 * else NULL with the SQLSTATE (or "" when there is none) in state[6] and the message on
 * one line in detail. */
PGresult *waf_db_exec(PGconn *c, const char *sql, int n, const char *const *params, char state[6],
                      char *detail, size_t detail_len);

#endif
