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

/* Times a statement is run again after a deadlock or serialisation failure. */
#define IMSPOOL_RETRIES 6

struct imspool {
    PGconn *c;
    imspool_clock_fn clock;
    void *clock_arg;
    uint64_t seed;               /* backoff jitter */
    long retries;                /* statements run again after a conflict */
    long reconnects;             /* connections re-established */
    uint32_t prepared;           /* bit i: statement i is prepared in this session */
    struct imspool_redis *redis; /* NULL without Redis (redis.c) */
    imspool_log_fn log;
    void *log_arg;
};

/* Reconnects a broken connection; false when the database cannot be reached. */
bool imspool_connected(struct imspool *p);

/* ---- Redis (redis.c); every function is a no-op without Redis and never fails ---- */

/* A committed lease change, for the event stream, counters and expiry schedule. */
struct imspool_event {
    const char *type; /* allocated | renewed | released | expired */
    const char *lease, *pool, *holder, *impi, *impu, *reason;
    int64_t expires_ms;
};
enum imspool_result imspool_redis_init(struct imspool *p, const struct imspool_opts *o,
                                       char *detail, size_t dlen);
void imspool_redis_free(struct imspool *p);
/* Sets the key prefix; INVALID_ARG when too long. */
enum imspool_result imspool_redis_set_prefix(struct imspool *p, const char *prefix);
/* false while no prefix was given (the default is set once the database name is known). */
bool imspool_redis_prefix_set(const struct imspool *p);
/* Reports count committed changes in as few round trips as possible. e NULL with count > 0:
 * changes happened that cannot be described (no memory); the keys are rebuilt later. */
void imspool_redis_events(struct imspool *p, const struct imspool_event *e, size_t count);
void imspool_redis_members_changed(struct imspool *p, const char *pool);
void imspool_redis_pool_deleted(struct imspool *p, const char *pool);

/* Now as a query parameter: Unix milliseconds as decimal text (SQL: to_timestamp($n/1e3)). */
void imspool_now_param(struct imspool *p, char out[24]);
/* Runs a parameterised statement. On success returns the result (caller PQclear()s); on
 * failure returns NULL with *r set from the SQLSTATE (23505 DUPLICATE, 23xxx/22xxx
 * INVALID_ARG, else DB_UNAVAILABLE) and the server's message, on one line, in detail.
 * A broken connection is re-established before the statement; a deadlock or serialisation
 * failure runs the statement again (up to IMSPOOL_RETRIES times, with backoff). A
 * connection lost during the statement is not retried: its outcome is unknown. */
PGresult *imspool_q(struct imspool *p, const char *sql, int n, const char *const *params,
                    enum imspool_result *r, char *detail, size_t dlen);
/* The statements run often enough to be prepared once per session (imspool_qs). */
enum imspool_stmt {
    IMSPOOL_STMT_ALLOCATE = 0,
    IMSPOOL_STMT_RENEW,
    IMSPOOL_STMT_RELEASE,
    IMSPOOL_STMT_SWEEP,
    IMSPOOL_STMT_COUNT
};
/* imspool_q() for the prepared statement id (an enum imspool_stmt; sql must always be the
 * same text for one id). */
PGresult *imspool_qs(struct imspool *p, int id, const char *sql, int n, const char *const *params,
                     enum imspool_result *r, char *detail, size_t dlen);
/* Folds a libpq message onto one line, in place. */
void imspool_oneline(char *s);

#endif
