/*
 * Schema migrations against the dev stack's real PostgreSQL ($DATABASE_URL): each test
 * works in a database of its own, created here and dropped afterwards.
 */
#include "imspool/imspool.h"
#include "ims_common/testdb.h"

#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char db_url[512], db_name[64];

static void fresh_db(void)
{
    static int seq;
    char err[512];
    snprintf(db_name, sizeof(db_name), "imspool_mig_%d_%d", (int)getpid(), seq++);
    cr_assert_eq(ims_testdb_create(db_name, db_url, sizeof(db_url), err, sizeof(err)), 0, "%s",
                 err);
}

static void drop_db(void)
{
    ims_testdb_drop(db_name);
}

TestSuite(migrate, .init = fresh_db, .fini = drop_db, .timeout = 120);

/* Runs one query in the test database and returns the first value (caller frees). */
static char *query1(const char *sql)
{
    PGconn *c = PQconnectdb(db_url);
    cr_assert_eq(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(r));
    char *v = strdup(PQntuples(r) ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    PQfinish(c);
    return v;
}

static void expect_query(const char *sql, const char *want)
{
    char *v = query1(sql);
    cr_expect_str_eq(v, want, "%s", sql);
    free(v);
}

/* A migrations directory with the given files (name, text pairs, NULL-terminated). */
static void make_dir(char *dir, const char *const *files)
{
    strcpy(dir, "/tmp/imspool-mig-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    for (size_t i = 0; files[i]; i += 2) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f);
        fputs(files[i + 1], f);
        fclose(f);
    }
}

static void remove_dir(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(migrate, builtin_schema_applies_once)
{
    struct imspool_migrate_report rep;
    char d[1024];
    cr_assert_eq(imspool_migrate(db_url, NULL, &rep, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    cr_assert_geq(rep.applied, 1);
    cr_assert_eq(rep.already, 0);
    int n = rep.applied;
    cr_assert_eq(rep.latest_version, n);
    expect_query("SELECT to_regclass('public.leases') IS NOT NULL", "t");
    expect_query("SELECT to_regclass('public.pool_members') IS NOT NULL", "t");
    expect_query("SELECT to_regclass('public.audit_log') IS NOT NULL", "t");
    /* Re-running is a no-op. */
    cr_assert_eq(imspool_migrate(db_url, NULL, &rep, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    cr_assert_eq(rep.applied, 0);
    cr_assert_eq(rep.already, n);
    char want[16];
    snprintf(want, sizeof(want), "%d", n);
    expect_query("SELECT count(*) FROM schema_migrations", want);
    /* The built-in set equals the files of sql/migrations, checksums included. */
    cr_assert_eq(imspool_migrate(db_url, MIGRATIONS_DIR, &rep, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    cr_assert_eq(rep.applied, 0);
}

Test(migrate, failing_migration_leaves_nothing)
{
    static const char *const files[] = {
        "0001_base.sql", "CREATE TABLE base (x int);", "0002_boom.sql",
        "CREATE TABLE boom_partial (x int);\nINSERT INTO boom_partial VALUES (1);\nSELECT 1/0;",
        NULL};
    char dir[64], d[1024];
    make_dir(dir, files);
    struct imspool_migrate_report rep;
    cr_assert_eq(imspool_migrate(db_url, dir, &rep, d, sizeof(d)), IMSPOOL_ERR_MIGRATION_FAILED);
    cr_assert(strstr(d, "0002_boom") && strstr(d, "division by zero"), "%s", d);
    cr_assert_eq(rep.applied, 1);
    expect_query("SELECT to_regclass('public.boom_partial') IS NULL", "t");
    expect_query("SELECT max(version) FROM schema_migrations", "1");
    /* Fixed, it applies; the first one is not applied twice. */
    static const char *const fixed[] = {"0001_base.sql", "CREATE TABLE base (x int);",
                                        "0002_boom.sql", "CREATE TABLE boom_partial (x int);",
                                        NULL};
    remove_dir(dir);
    make_dir(dir, fixed);
    cr_assert_eq(imspool_migrate(db_url, dir, &rep, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    cr_assert_eq(rep.applied, 1);
    cr_assert_eq(rep.already, 1);
    remove_dir(dir);
}

Test(migrate, edited_migration_is_refused)
{
    static const char *const v1[] = {"0001_a.sql", "CREATE TABLE a (x int);", NULL};
    static const char *const v2[] = {"0001_a.sql", "CREATE TABLE a (x int, y int);", "0002_b.sql",
                                     "CREATE TABLE b (x int);", NULL};
    char dir[64], d[1024];
    make_dir(dir, v1);
    cr_assert_eq(imspool_migrate(db_url, dir, NULL, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    remove_dir(dir);
    make_dir(dir, v2);
    cr_assert_eq(imspool_migrate(db_url, dir, NULL, d, sizeof(d)), IMSPOOL_ERR_MIGRATION_CHANGED);
    cr_assert(strstr(d, "0001_a") != NULL, "%s", d);
    expect_query("SELECT to_regclass('public.b') IS NULL", "t");
    remove_dir(dir);
}

Test(migrate, newer_database_is_refused)
{
    static const char *const two[] = {"0001_a.sql", "CREATE TABLE a (x int);", "0002_b.sql",
                                      "CREATE TABLE b (x int);", NULL};
    static const char *const one[] = {"0001_a.sql", "CREATE TABLE a (x int);", NULL};
    char dir[64], d[1024];
    make_dir(dir, two);
    cr_assert_eq(imspool_migrate(db_url, dir, NULL, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    remove_dir(dir);
    make_dir(dir, one);
    cr_assert_eq(imspool_migrate(db_url, dir, NULL, d, sizeof(d)), IMSPOOL_ERR_DB_NEWER);
    cr_assert(strstr(d, "0002") != NULL, "%s", d);
    remove_dir(dir);
}

Test(migrate, bad_sets_are_refused_before_touching_the_database)
{
    static const char *const gap[] = {"0001_a.sql", "SELECT 1;", "0003_c.sql", "SELECT 1;", NULL};
    static const char *const badname[] = {"1_a.sql", "SELECT 1;", NULL};
    static const char *const upper[] = {"0001_Alpha.sql", "SELECT 1;", NULL};
    const char *const *sets[] = {gap, badname, upper};
    for (size_t i = 0; i < 3; i++) {
        char dir[64], d[1024];
        make_dir(dir, sets[i]);
        cr_expect_eq(imspool_migrate(db_url, dir, NULL, d, sizeof(d)), IMSPOOL_ERR_INVALID_ARG,
                     "set %zu: %s", i, d);
        remove_dir(dir);
    }
    expect_query("SELECT to_regclass('public.schema_migrations') IS NULL", "t");
    char d[256];
    cr_assert_eq(imspool_migrate(db_url, "/nonexistent/dir", NULL, d, sizeof(d)), IMSPOOL_ERR_IO);
    cr_assert_eq(imspool_migrate(NULL, NULL, NULL, d, sizeof(d)), IMSPOOL_ERR_INVALID_ARG);
}

Test(migrate, concurrent_migrators_apply_each_migration_once)
{
    enum { N = 6 };
    pid_t pids[N];
    for (int i = 0; i < N; i++) {
        pids[i] = fork();
        cr_assert_geq(pids[i], 0);
        if (pids[i] == 0) {
            struct imspool_migrate_report rep;
            enum imspool_result r = imspool_migrate(db_url, NULL, &rep, NULL, 0);
            _exit(r == IMSPOOL_OK ? rep.applied : 100);
        }
    }
    int total = 0;
    for (int i = 0; i < N; i++) {
        int st;
        waitpid(pids[i], &st, 0);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 100, "migrator %d failed", i);
        total += WEXITSTATUS(st);
    }
    char *count = query1("SELECT count(*) FROM schema_migrations");
    cr_assert_eq(total, atoi(count), "every migration applied by exactly one process");
    free(count);
}

Test(migrate, unreachable_database)
{
    char d[512];
    cr_assert_eq(imspool_migrate("host=127.0.0.1 port=1 dbname=x connect_timeout=2", NULL, NULL, d,
                                 sizeof(d)),
                 IMSPOOL_ERR_DB_UNAVAILABLE);
    cr_assert(strstr(d, "cannot connect") != NULL, "%s", d);
    cr_assert_str_eq(imspool_strerror(IMSPOOL_ERR_DB_UNAVAILABLE), "database_unavailable");
}

/* Runs sql in the test database and returns its SQLSTATE ("" on success). */
static void expect_sqlstate(PGconn *c, const char *sql, const char *state)
{
    PGresult *r = PQexec(c, sql);
    const char *got = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    cr_expect_str_eq(got ? got : "", state, "%s -> %s", sql, PQresultErrorMessage(r));
    PQclear(r);
}

Test(migrate, schema_enforces_the_pool_invariants)
{
    char d[1024];
    cr_assert_eq(imspool_migrate(db_url, NULL, NULL, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    PGconn *c = PQconnectdb(db_url);
    cr_assert_eq(PQstatus(c), CONNECTION_OK);
    expect_sqlstate(c,
                    "INSERT INTO pools (name, realm, lease_ttl_s, quarantine_s) VALUES "
                    "('anon', 'home1.net', 600, 300), ('other', 'home1.net', 600, 300)",
                    "");
    expect_sqlstate(c,
                    "INSERT INTO pool_members (pool_id, impi, impu) SELECT id, "
                    "'anon-' || n || '@home1.net', 'sip:anon-' || n || '@home1.net' FROM pools, "
                    "generate_series(1, 2) n WHERE name = 'anon'",
                    "");
    const char *lease = "INSERT INTO leases (pool_id, member_id, holder, expires_at) SELECT "
                        "m.pool_id, m.id, 'web-user-1', now() + interval '10 min' FROM "
                        "pool_members m WHERE m.impu = 'sip:anon-1@home1.net'";
    expect_sqlstate(c, lease, "");
    /* One IMPU is never held by two users: a second open lease on the member fails. */
    expect_sqlstate(c, lease, "23505");
    /* A lease names its member's own pool. */
    expect_sqlstate(c,
                    "INSERT INTO leases (pool_id, member_id, holder, expires_at) SELECT "
                    "(SELECT id FROM pools WHERE name = 'other'), m.id, 'h', now() + "
                    "interval '1 min' FROM pool_members m WHERE m.impu = 'sip:anon-2@home1.net'",
                    "23503");
    /* The same IMPU in another pool, also in another spelling of the same URI. */
    expect_sqlstate(c,
                    "INSERT INTO pool_members (pool_id, impi, impu) SELECT id, 'x@home1.net', "
                    "'sip:anon-1@HOME1.NET;transport=ws' FROM pools WHERE name = 'other'",
                    "23505");
    /* Names with SQL metacharacters are refused by the database itself. */
    expect_sqlstate(c,
                    "INSERT INTO pools (name, realm, lease_ttl_s, quarantine_s) VALUES "
                    "('x''; drop table pools; --', 'home1.net', 600, 300)",
                    "23514");
    expect_sqlstate(c,
                    "INSERT INTO pools (name, realm, lease_ttl_s, quarantine_s) VALUES "
                    "('neg', 'home1.net', -1, 300)",
                    "23514");
    /* A release needs its reason; the audit log is append-only. */
    expect_sqlstate(c, "UPDATE leases SET released_at = now()", "23514");
    expect_sqlstate(c,
                    "INSERT INTO audit_log (actor, action, target_type) VALUES "
                    "('admin', 'pool.create', 'pool')",
                    "");
    expect_sqlstate(c, "UPDATE audit_log SET actor = 'someone else'", "2F003");
    expect_sqlstate(c, "DELETE FROM audit_log", "2F003");
    PQfinish(c);
}
