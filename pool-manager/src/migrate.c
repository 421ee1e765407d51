/* Schema migrations: numbered SQL files, one transaction each, recorded with a SHA-256. */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* pg_advisory_lock key that serialises migrators: "imspool" in ASCII. */
#define MIGRATE_LOCK_KEY "31084730549792620"
#define MAX_MIGRATIONS   1000
#define MAX_SQL_BYTES    (4 * 1024 * 1024)

struct set {
    struct imspool_migration *m;
    size_t n;
    char **owned; /* names and texts read from a directory */
    size_t n_owned;
};

static void set_free(struct set *s)
{
    for (size_t i = 0; i < s->n_owned; i++)
        free(s->owned[i]);
    free(s->owned);
    free(s->m);
}

static char *keep(struct set *s, char *p)
{
    if (p)
        s->owned[s->n_owned++] = p;
    return p;
}

static int by_version(const void *a, const void *b)
{
    const struct imspool_migration *x = a, *y = b;
    return (x->version > y->version) - (x->version < y->version);
}

static enum imspool_result read_text(const char *path, char **out, size_t *len, char *detail,
                                     size_t dlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        imspool_detail(detail, dlen, "cannot open %s: %s", path, strerror(errno));
        return IMSPOOL_ERR_IO;
    }
    char *buf = malloc(MAX_SQL_BYTES + 1);
    size_t n = buf ? fread(buf, 1, MAX_SQL_BYTES + 1, f) : 0;
    bool err = ferror(f);
    fclose(f);
    if (buf == NULL)
        return IMSPOOL_ERR_NOMEM;
    if (err || n > MAX_SQL_BYTES) {
        imspool_detail(detail, dlen, "%s: %s", path, err ? "read error" : "larger than 4 MiB");
        free(buf);
        return IMSPOOL_ERR_IO;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return IMSPOOL_OK;
}

/* Loads the NNNN_name.sql files of dir; anything else ending in .sql is an error. */
static enum imspool_result load_dir(const char *dir, struct set *s, char *detail, size_t dlen)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        imspool_detail(detail, dlen, "cannot open %s: %s", dir, strerror(errno));
        return IMSPOOL_ERR_IO;
    }
    regex_t re;
    regcomp(&re, "^([0-9]{4})_([a-z0-9_]+)\\.sql$", REG_EXTENDED);
    s->m = calloc(MAX_MIGRATIONS, sizeof(*s->m));
    s->owned = calloc(2 * MAX_MIGRATIONS, sizeof(char *));
    enum imspool_result r = s->m && s->owned ? IMSPOOL_OK : IMSPOOL_ERR_NOMEM;
    struct dirent *e;
    while (r == IMSPOOL_OK && (e = readdir(d))) {
        size_t nl = strlen(e->d_name);
        if (nl < 4 || strcmp(e->d_name + nl - 4, ".sql") != 0)
            continue;
        regmatch_t mt[3];
        if (regexec(&re, e->d_name, 3, mt, 0) != 0) {
            imspool_detail(detail, dlen, "%s/%s: name is not NNNN_name.sql", dir, e->d_name);
            r = IMSPOOL_ERR_INVALID_ARG;
            break;
        }
        if (s->n == MAX_MIGRATIONS) {
            imspool_detail(detail, dlen, "more than %d migrations", MAX_MIGRATIONS);
            r = IMSPOOL_ERR_INVALID_ARG;
            break;
        }
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        struct imspool_migration *m = &s->m[s->n];
        char *text = NULL;
        r = read_text(path, &text, &m->len, detail, dlen);
        if (r != IMSPOOL_OK)
            break;
        m->sql = keep(s, text);
        m->version = atoi(e->d_name);
        m->name = keep(s, strndup(e->d_name + mt[2].rm_so, (size_t)(mt[2].rm_eo - mt[2].rm_so)));
        if (m->name == NULL)
            r = IMSPOOL_ERR_NOMEM;
        s->n++;
    }
    regfree(&re);
    closedir(d);
    return r;
}

/* Versions must start at 1 and have neither gaps nor duplicates. */
static enum imspool_result check_sequence(struct set *s, char *detail, size_t dlen)
{
    qsort(s->m, s->n, sizeof(*s->m), by_version);
    for (size_t i = 0; i < s->n; i++) {
        if (s->m[i].version != (int)i + 1) {
            imspool_detail(detail, dlen,
                           "migration %04d: versions must run 0001, 0002, ... "
                           "without gaps or duplicates",
                           s->m[i].version);
            return IMSPOOL_ERR_INVALID_ARG;
        }
    }
    return IMSPOOL_OK;
}

static void sha256_hex(const char *data, size_t len, char out[65])
{
    unsigned char d[32];
    EVP_Digest(data, len, d, NULL, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* Runs a command without parameters; on error puts the server's message in detail. */
static bool exec_ok(PGconn *c, const char *sql, ExecStatusType want, char *detail, size_t dlen)
{
    PGresult *res = PQexec(c, sql);
    bool ok = PQresultStatus(res) == want;
    if (!ok)
        imspool_detail(detail, dlen, "%s", PQresultErrorMessage(res));
    PQclear(res);
    return ok;
}

static enum imspool_result apply_one(PGconn *c, const struct imspool_migration *m, const char *sha,
                                     char *detail, size_t dlen)
{
    /* PQexec needs a NUL-terminated string; built-in texts are, directory ones too. */
    char *sql = strndup(m->sql, m->len);
    if (sql == NULL)
        return IMSPOOL_ERR_NOMEM;
    char err[512] = "";
    bool ok = exec_ok(c, "BEGIN", PGRES_COMMAND_OK, err, sizeof(err));
    if (ok) {
        PGresult *res = PQexec(c, sql);
        ExecStatusType st = PQresultStatus(res);
        ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;
        if (!ok)
            snprintf(err, sizeof(err), "%s", PQresultErrorMessage(res));
        PQclear(res);
    }
    if (ok) {
        char version[16];
        snprintf(version, sizeof(version), "%d", m->version);
        const char *params[3] = {version, m->name, sha};
        PGresult *res = PQexecParams(c,
                                     "INSERT INTO schema_migrations (version, name, sha256) "
                                     "VALUES ($1::int, $2, $3)",
                                     3, NULL, params, NULL, NULL, 0);
        ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!ok)
            snprintf(err, sizeof(err), "%s", PQresultErrorMessage(res));
        PQclear(res);
    }
    if (ok)
        ok = exec_ok(c, "COMMIT", PGRES_COMMAND_OK, err, sizeof(err));
    free(sql);
    if (ok)
        return IMSPOOL_OK;
    exec_ok(c, "ROLLBACK", PGRES_COMMAND_OK, NULL, 0);
    imspool_oneline(err);
    imspool_detail(detail, dlen, "migration %04d_%s failed and was rolled back: %s", m->version,
                   m->name, err);
    return PQstatus(c) == CONNECTION_OK ? IMSPOOL_ERR_MIGRATION_FAILED : IMSPOOL_ERR_DB_UNAVAILABLE;
}

static enum imspool_result run(PGconn *c, const struct set *s, struct imspool_migrate_report *rep,
                               char *detail, size_t dlen)
{
    char err[512] = "";
    if (!exec_ok(c, "SET client_min_messages = warning", PGRES_COMMAND_OK, err, sizeof(err)) ||
        !exec_ok(c,
                 "CREATE TABLE IF NOT EXISTS schema_migrations ("
                 " version int PRIMARY KEY CHECK (version > 0),"
                 " name text NOT NULL,"
                 " sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),"
                 " applied_at timestamptz NOT NULL DEFAULT now())",
                 PGRES_COMMAND_OK, err, sizeof(err))) {
        imspool_oneline(err);
        imspool_detail(detail, dlen, "cannot prepare schema_migrations: %s", err);
        return IMSPOOL_ERR_DB_UNAVAILABLE;
    }
    PGresult *res = PQexec(c, "SELECT version, sha256 FROM schema_migrations ORDER BY version");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(err, sizeof(err), "%s", PQresultErrorMessage(res));
        imspool_oneline(err);
        imspool_detail(detail, dlen, "cannot read schema_migrations: %s", err);
        PQclear(res);
        return IMSPOOL_ERR_DB_UNAVAILABLE;
    }
    int rows = PQntuples(res);
    enum imspool_result r = IMSPOOL_OK;
    for (int i = 0; i < rows && r == IMSPOOL_OK; i++) {
        int v = atoi(PQgetvalue(res, i, 0));
        rep->latest_version = v > rep->latest_version ? v : rep->latest_version;
        if (v < 1 || (size_t)v > s->n) {
            imspool_detail(detail, dlen,
                           "the database has migration %04d, which this build "
                           "does not know: it is newer than this program",
                           v);
            r = IMSPOOL_ERR_DB_NEWER;
            break;
        }
        const struct imspool_migration *m = &s->m[v - 1];
        char sha[65];
        sha256_hex(m->sql, m->len, sha);
        if (strcmp(sha, PQgetvalue(res, i, 1)) != 0) {
            imspool_detail(detail, dlen,
                           "migration %04d_%s was changed after it was applied "
                           "(never edit an applied migration; add a new one)",
                           m->version, m->name);
            r = IMSPOOL_ERR_MIGRATION_CHANGED;
        }
    }
    bool *applied = calloc(s->n + 1, sizeof(bool));
    for (int i = 0; applied && i < rows; i++) {
        int v = atoi(PQgetvalue(res, i, 0));
        if (v >= 1 && (size_t)v <= s->n)
            applied[v] = true;
    }
    PQclear(res);
    if (applied == NULL)
        return IMSPOOL_ERR_NOMEM;
    for (size_t i = 0; r == IMSPOOL_OK && i < s->n; i++) {
        const struct imspool_migration *m = &s->m[i];
        if (applied[m->version]) {
            rep->already++;
            continue;
        }
        char sha[65];
        sha256_hex(m->sql, m->len, sha);
        r = apply_one(c, m, sha, detail, dlen);
        if (r == IMSPOOL_OK) {
            rep->applied++;
            rep->latest_version = m->version;
        }
    }
    free(applied);
    return r;
}

IMSPOOL_API enum imspool_result imspool_migrate(const char *db_url, const char *dir,
                                                struct imspool_migrate_report *report, char *detail,
                                                size_t dlen)
{
    struct imspool_migrate_report rep = {0};
    struct set s = {0};
    enum imspool_result r = IMSPOOL_OK;
    imspool_detail(detail, dlen, "%s", "");
    if (db_url == NULL) {
        imspool_detail(detail, dlen, "no database URL");
        r = IMSPOOL_ERR_INVALID_ARG;
        goto out;
    }
    if (dir) {
        r = load_dir(dir, &s, detail, dlen);
    } else {
        s.m = calloc(imspool_builtin_migrations_count + 1, sizeof(*s.m));
        if (s.m == NULL)
            r = IMSPOOL_ERR_NOMEM;
        else
            memcpy(s.m, imspool_builtin_migrations,
                   imspool_builtin_migrations_count * sizeof(*s.m));
        s.n = imspool_builtin_migrations_count;
    }
    if (r == IMSPOOL_OK)
        r = check_sequence(&s, detail, dlen);
    if (r != IMSPOOL_OK)
        goto out;

    PGconn *c = PQconnectdb(db_url);
    if (PQstatus(c) != CONNECTION_OK) {
        char err[512];
        snprintf(err, sizeof(err), "%s", PQerrorMessage(c));
        imspool_oneline(err);
        imspool_detail(detail, dlen, "cannot connect to the database: %s", err);
        PQfinish(c);
        r = IMSPOOL_ERR_DB_UNAVAILABLE;
        goto out;
    }
    char err[512] = "";
    if (!exec_ok(c, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", PGRES_TUPLES_OK, err,
                 sizeof(err))) {
        imspool_oneline(err);
        imspool_detail(detail, dlen, "cannot take the migration lock: %s", err);
        r = IMSPOOL_ERR_DB_UNAVAILABLE;
    } else {
        r = run(c, &s, &rep, detail, dlen);
        exec_ok(c, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", PGRES_TUPLES_OK, NULL, 0);
    }
    PQfinish(c);
out:
    set_free(&s);
    if (report)
        *report = rep;
    return r;
}
