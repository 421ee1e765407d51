/* Throwaway test databases on the dev stack's PostgreSQL. */
#include "ims_common/testdb.h"

#include <ctype.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int admin_exec(const char *sql, char *err, size_t errn)
{
    const char *admin = getenv("DATABASE_URL");
    if (admin == NULL) {
        snprintf(err, errn, "DATABASE_URL is not set (run under scripts/devstack)");
        return -1;
    }
    PGconn *c = PQconnectdb(admin);
    int rc = 0;
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(err, errn, "%s", PQerrorMessage(c));
        rc = -1;
    } else {
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            snprintf(err, errn, "%s: %s", sql, PQresultErrorMessage(r));
            rc = -1;
        }
        PQclear(r);
    }
    PQfinish(c);
    return rc;
}

static int plain_name(const char *s)
{
    if (s == NULL || *s == '\0' || strlen(s) > 63)
        return 0;
    for (; *s; s++)
        if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) && *s != '_')
            return 0;
    return 1;
}

int ims_testdb_create(const char *name, char *url, size_t n, char *err, size_t errn)
{
    if (!plain_name(name)) {
        snprintf(err, errn, "bad database name");
        return -1;
    }
    char sql[128];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    if (admin_exec(sql, err, errn) != 0)
        return -1;
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
    if (admin_exec(sql, err, errn) != 0)
        return -1;
    PQconninfoOption *o = PQconninfoParse(getenv("DATABASE_URL"), NULL);
    if (o == NULL) {
        snprintf(err, errn, "DATABASE_URL does not parse");
        return -1;
    }
    const char *host = "127.0.0.1", *port = "5432", *user = "ims";
    for (PQconninfoOption *q = o; q->keyword; q++) {
        if (q->val && strcmp(q->keyword, "host") == 0)
            host = q->val;
        if (q->val && strcmp(q->keyword, "port") == 0)
            port = q->val;
        if (q->val && strcmp(q->keyword, "user") == 0)
            user = q->val;
    }
    snprintf(url, n, "host=%s port=%s user=%s dbname=%s", host, port, user, name);
    PQconninfoFree(o);
    return 0;
}

int ims_testdb_drop(const char *name)
{
    char sql[128], err[256];
    if (!plain_name(name))
        return -1;
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    return admin_exec(sql, err, sizeof(err));
}
