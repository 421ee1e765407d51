/* Private declarations of libimspool. */
#ifndef IMSPOOL_INTERNAL_H
#define IMSPOOL_INTERNAL_H

#include "imspool/imspool.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define IMSPOOL_API __attribute__((visibility("default")))

/* One migration: version NNNN, name, SQL text (len bytes, not NUL-terminated necessarily). */
struct imspool_migration {
    int version;
    const char *name;
    const char *sql;
    size_t len;
};

/* The migrations built into the library (generated from sql/migrations). */
extern const struct imspool_migration imspool_builtin_migrations[];
extern const size_t imspool_builtin_migrations_count;

void imspool_detail(char *detail, size_t dlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- database access (db.c) ---- */
#include <libpq-fe.h>

struct imspool {
    PGconn *c;
    imspool_clock_fn clock;
    void *clock_arg;
};

/* Now as a query parameter: Unix milliseconds as decimal text (SQL: to_timestamp($n/1e3)). */
void imspool_now_param(struct imspool *p, char out[24]);
/* Runs a parameterised statement. On success returns the result (caller PQclear()s); on
 * failure returns NULL with *r set from the SQLSTATE (23505 DUPLICATE, 23xxx/22xxx
 * INVALID_ARG, else DB_UNAVAILABLE) and the server's message, on one line, in detail. */
PGresult *imspool_q(struct imspool *p, const char *sql, int n, const char *const *params,
                    enum imspool_result *r, char *detail, size_t dlen);
/* Folds a libpq message onto one line, in place. */
void imspool_oneline(char *s);

#endif
