/*
 * libimspool: temporary IMPU/IMPI pools for WebRTC access to IMS (TS 24.371 6.2.3/6.3.2),
 * with PostgreSQL as the only authority on leases.
 *
 * It holds the schema migrations of sql/migrations (the identity service schema shared
 * with the WAF), pools, members and leases, listings, an invariant check, and the
 * optional Redis side (lease events, counters, expiry schedule). docs/pool-manager.md
 * explains the lease life cycle.
 *
 * The library prints nothing; every function reports a result and, where a detail buffer
 * is given, a one-line explanation. Exported symbols all start with imspool_.
 */
#ifndef IMSPOOL_IMSPOOL_H
#define IMSPOOL_IMSPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

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
    IMSPOOL_ERR_POOL_UNKNOWN = 8,      /* no pool of that name */
    IMSPOOL_ERR_POOL_EXHAUSTED = 9,    /* no member free now; see retry_after_s */
    IMSPOOL_ERR_HOLDER_CAP = 10,       /* the holder has max_per_holder open leases */
    IMSPOOL_ERR_LEASE_UNKNOWN = 11,    /* no lease with that id */
    IMSPOOL_ERR_LEASE_RELEASED = 12,   /* the lease was released or has expired */
    IMSPOOL_ERR_POOL_DRAINING = 13,    /* the pool gives no new leases */
    IMSPOOL_ERR_DUPLICATE = 14,        /* a name or IMPU exists already; nothing written */
    IMSPOOL_ERR_POOL_NOT_EMPTY = 15,   /* the pool still has members or leases */
    IMSPOOL_ERR_MEMBER_UNKNOWN = 16,   /* no member with that IMPU in the pool */
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

/* ---- pools and leases ---- */

struct imspool;

/* Clock in Unix milliseconds; tests inject one instead of sleeping. */
typedef int64_t (*imspool_clock_fn)(void *arg);

/* Warnings the library would otherwise keep to itself (Redis lost, Redis back). level is
 * 1 for a warning, 2 for information. line holds no secret and no newline. */
typedef void (*imspool_log_fn)(int level, const char *line, void *arg);

struct imspool_opts {
    const char *db_url;     /* required */
    imspool_clock_fn clock; /* optional; default the system clock */
    void *clock_arg;
    /* Optional Redis (redis://[:password@]host[:port][/db] or unix:/path) for the lease event
     * stream, per-pool counters and the expiry schedule. NULL: none. Redis is never needed
     * for a lease: while it is unreachable every call works on PostgreSQL alone (degraded,
     * reported once through log), and what it carries is rebuilt from PostgreSQL when it
     * comes back empty (FLUSHALL, restart without persistence). */
    const char *redis_url;
    const char *redis_prefix; /* key prefix; NULL: "imspool:<database name>:" */
    imspool_log_fn log;       /* optional */
    void *log_arg;
};

/* Connects. Caller owns *pp (free with imspool_close). One handle is for one thread. */
enum imspool_result imspool_open(struct imspool **pp, const struct imspool_opts *o, char *detail,
                                 size_t detail_len);
void imspool_close(struct imspool *p); /* accepts NULL */

struct imspool_pool_spec {
    const char *name;   /* [a-z0-9][a-z0-9_.-]{0,62} */
    const char *realm;  /* home network domain */
    int lease_ttl_s;    /* 1..604800 */
    int quarantine_s;   /* 0..2592000 */
    int max_per_holder; /* >= 1; 0 means 1 */
};
enum imspool_result imspool_pool_create(struct imspool *p, const struct imspool_pool_spec *s,
                                        char *detail, size_t detail_len);
/* Changes a pool's settings: realm NULL and the numbers -1 keep the current value. New
 * settings apply to leases made, renewed or ended afterwards. */
enum imspool_result imspool_pool_update(struct imspool *p, const struct imspool_pool_spec *s,
                                        char *detail, size_t detail_len);
/* Stops new leases; existing ones live on. */
enum imspool_result imspool_pool_drain(struct imspool *p, const char *name, char *detail,
                                       size_t detail_len);
/* Deletes a pool without members (members first need their leases gone). */
enum imspool_result imspool_pool_delete(struct imspool *p, const char *name, char *detail,
                                        size_t detail_len);

struct imspool_stats {
    long free, leased, quarantined, disabled;
};
enum imspool_result imspool_pool_stats(struct imspool *p, const char *name,
                                       struct imspool_stats *st, char *detail, size_t detail_len);

/* Progress of a bulk import: done of total rows sent; phase 1 sending, 2 writing (total
 * unknown until the end of a CSV file: 0). Called at most about 100 times per import. */
typedef void (*imspool_progress_fn)(int phase, long done, long total, void *arg);

/*
 * Adds members from patterns: impu_pattern holds one range {A..B} of decimal numbers
 * (written with the same number of digits, e.g. {0000..9999}, at most 1,000,000 values),
 * as in sip:anon-{0000..9999}@ims.example.net; impi_pattern holds the same range, or none
 * (one shared IMPI). All or nothing: a duplicate IMPU or a malformed URI writes nothing.
 */
enum imspool_result imspool_members_add(struct imspool *p, const char *pool,
                                        const char *impu_pattern, const char *impi_pattern,
                                        long *added, char *detail, size_t detail_len);
/* The same with progress reports (progress may be NULL). */
enum imspool_result imspool_members_add_progress(struct imspool *p, const char *pool,
                                                 const char *impu_pattern, const char *impi_pattern,
                                                 imspool_progress_fn progress, void *arg,
                                                 long *added, char *detail, size_t detail_len);

/*
 * Adds members from CSV text (RFC 4180: comma separated, optional double quotes, CRLF or
 * LF) with two columns, impi and impu. A first line "impi,impu" or "impu,impi" is a header
 * and sets the column order; without one the order is impi,impu. Blank lines are skipped.
 * All or nothing: a malformed line (named by its number in detail), a duplicate IMPU in the
 * file or in the database, or more than 1,000,000 rows writes nothing. The file is read
 * until EOF; the caller keeps ownership of f.
 */
enum imspool_result imspool_members_add_csv(struct imspool *p, const char *pool, FILE *f,
                                            imspool_progress_fn progress, void *arg, long *added,
                                            char *detail, size_t detail_len);

/* Disables (enabled 0) or enables a member, named by its exact IMPU. A disabled member gets
 * no new lease; a lease it holds lives on until released or expired. */
enum imspool_result imspool_member_set_enabled(struct imspool *p, const char *pool,
                                               const char *impu, int enabled, char *detail,
                                               size_t detail_len);

struct imspool_lease {
    char id[37]; /* UUID */
    char impi[1025], impu[1025];
    int64_t expires_ms;    /* Unix ms */
    int64_t retry_after_s; /* with IMSPOOL_ERR_POOL_EXHAUSTED: when a member frees up */
};

/*
 * Leases a member of pool to holder for ttl_s (0: the pool's lease_ttl_s). The same holder
 * gets its previous member back when that one is free, even inside its quarantine; no
 * other holder gets a member before its quarantine ended. One short transaction; correct
 * with any number of allocators in any number of processes.
 */
enum imspool_result imspool_allocate(struct imspool *p, const char *pool, const char *holder,
                                     int ttl_s, struct imspool_lease *out, char *detail,
                                     size_t detail_len);
/* Extends an open, unexpired lease to now + ttl_s (0: the pool's lease_ttl_s). Also in a
 * draining pool: draining stops new leases, not the ones that live. */
enum imspool_result imspool_renew(struct imspool *p, const char *lease_id, int ttl_s,
                                  struct imspool_lease *out, char *detail, size_t detail_len);
/* Ends a lease; its member is quarantined for the pool's quarantine_s. A lease that ran
 * out before anyone swept it ends as the sweeper would end it (at its expiry, reason
 * "expired") and the call returns IMSPOOL_ERR_LEASE_RELEASED saying so. */
enum imspool_result imspool_release(struct imspool *p, const char *lease_id, const char *reason,
                                    char *detail, size_t detail_len);
/* Ends every lease past its expiry (reason "expired", quarantine from the expiry time).
 * Safe to run from several processes at once. */
enum imspool_result imspool_sweep(struct imspool *p, long *expired, char *detail,
                                  size_t detail_len);

/* When the next open lease expires (Unix ms; 0 when no lease is open), for a sweeper that
 * sleeps until then. Read from the Redis schedule when it is there, else from PostgreSQL. */
enum imspool_result imspool_next_expiry(struct imspool *p, int64_t *when_ms, char *detail,
                                        size_t detail_len);

/*
 * Redis keys (prefix P, default "imspool:<database name>:"), all rebuilt from PostgreSQL
 * when missing:
 *   P"events"        stream of lease events, fields: type (allocated | renewed | released |
 *                    expired), lease, pool, holder, impi, impu, expires_ms, reason; trimmed
 *                    to about 100,000 entries. Best effort: an event is added after its
 *                    commit, so a crash or a Redis outage between the two loses it;
 *                    consumers resynchronise from imspool_leases() when P"epoch" changes.
 *   P"pool:NAME"     hash of counters: members, disabled, leased (open leases), allocated,
 *                    renewed, released, expired (totals over the lease history).
 *   P"expiry"        sorted set: open lease id -> expiry (Unix ms).
 *   P"epoch"         when the keys above were last rebuilt (Unix ms).
 * Rebuilds every key from PostgreSQL now. Counters between rebuilds follow each call of
 * this library with Redis reachable; calls made while it was not are caught up here. */
enum imspool_result imspool_redis_rebuild(struct imspool *p, char *detail, size_t detail_len);

struct imspool_health {
    int redis_configured, redis_up; /* redis_up: the last Redis exchange worked */
    long redis_failures;            /* Redis exchanges that failed (degraded calls) */
    long db_retries;                /* statements run again after a deadlock/serialisation */
    long db_reconnects;             /* PostgreSQL connections re-established */
};
void imspool_health(const struct imspool *p, struct imspool_health *h);

/* ---- listings and invariant check ---- */

struct imspool_pool_info {
    const char *name, *realm; /* borrowed for the duration of the callback */
    int lease_ttl_s, quarantine_s, max_per_holder, draining;
    long members;
};
typedef void (*imspool_pool_fn)(const struct imspool_pool_info *pool, void *arg);
/* Calls fn for every pool, by name. */
enum imspool_result imspool_pool_list(struct imspool *p, imspool_pool_fn fn, void *arg,
                                      char *detail, size_t detail_len);

struct imspool_lease_info {
    const char *id, *holder, *impi, *impu, *release_reason; /* reason NULL while open */
    int64_t created_ms, expires_ms, released_ms;            /* released_ms 0 while open */
};
typedef void (*imspool_lease_fn)(const struct imspool_lease_info *lease, void *arg);
/* Calls fn for the leases of pool, newest first; open_only limits it to open leases.
 * At most limit rows (0: 1000). */
enum imspool_result imspool_leases(struct imspool *p, const char *pool, int open_only, long limit,
                                   imspool_lease_fn fn, void *arg, char *detail, size_t detail_len);

/* Checks, in SQL, what the schema cannot state: no member in two leases whose lifetimes
 * overlap, no lease to another holder inside a quarantine, no holder over its pool's cap,
 * the member row's copy of its lease state (open_lease, last_holder, last_released_at,
 * quarantine_until) equal to the leases table, and each quarantine following its pool.
 * Calls fn (may be NULL) with one line per violation and sets *violations. */
typedef void (*imspool_violation_fn)(const char *line, void *arg);
enum imspool_result imspool_check(struct imspool *p, long *violations, imspool_violation_fn fn,
                                  void *arg, char *detail, size_t detail_len);

#ifdef __cplusplus
}
#endif
#endif
