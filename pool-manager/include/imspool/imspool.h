/*
 * libimspool: temporary IMPU/IMPI pools for WebRTC access to IMS (TS 24.371 6.2.3/6.3.2),
 * with PostgreSQL as the only authority on leases.
 *
 * This first part holds the schema migrations of sql/migrations (the identity service
 * schema shared with the WAF); pools, members and leases follow (see pool-manager/README.md).
 *
 * The library prints nothing; every function reports a result and, where a detail buffer
 * is given, a one-line explanation. Exported symbols all start with imspool_.
 */
#ifndef IMSPOOL_IMSPOOL_H
#define IMSPOOL_IMSPOOL_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Outcome of a call. Values are never reused or renumbered. */
enum imspool_result {
    IMSPOOL_OK = 0,
    IMSPOOL_ERR_INVALID_ARG = 1,       /* bad argument; detail says which */
    IMSPOOL_ERR_NOMEM = 2,             /* allocation failed */
    IMSPOOL_ERR_DB_UNAVAILABLE = 3,    /* cannot connect to or talk with PostgreSQL */
    IMSPOOL_ERR_MIGRATION_FAILED = 4,  /* a migration's SQL failed; it was rolled back */
    IMSPOOL_ERR_MIGRATION_CHANGED = 5, /* an applied migration's text differs from its file */
    IMSPOOL_ERR_DB_NEWER = 6,          /* the database has migrations this build lacks */
    IMSPOOL_ERR_IO = 7,                /* a migrations directory could not be read */
};

/* Short stable name of a result ("migration_failed", ...). */
const char *imspool_strerror(enum imspool_result r);

struct imspool_migrate_report {
    int applied;        /* migrations applied by this call */
    int already;        /* migrations found already applied (and unchanged) */
    int latest_version; /* highest version in the database afterwards (0 when none) */
};

/*
 * Brings the database at db_url (a libpq connection string or URI) to the latest schema.
 * dir NULL applies the migrations built into the library (sql/migrations at build time);
 * otherwise the files NNNN_name.sql of dir, in version order. Each migration runs in its
 * own transaction together with its row in schema_migrations (version, name, SHA-256), so a
 * failing migration leaves nothing of itself; the ones before it stay applied. Concurrent
 * callers are serialised by a PostgreSQL advisory lock. Re-running is a no-op. Refuses to
 * run when an applied migration's text changed, or when the database has a version the
 * given set does not. Blocking. *report (optional) is filled in on every outcome.
 */
enum imspool_result imspool_migrate(const char *db_url, const char *dir,
                                    struct imspool_migrate_report *report, char *detail,
                                    size_t detail_len);

#ifdef __cplusplus
}
#endif
#endif
