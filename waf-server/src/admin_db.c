/* The admin API's database helpers: transactions, errors and the audit log (admin.h). */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

PGresult *admin_exec(PGconn *c, const char *sql, int n, const char *const *params,
                     struct admin_dberr *e)
{
    PGresult *res = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return res;
    const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *k = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);
    const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    snprintf(e->state, sizeof(e->state), "%s", s ? s : "");
    snprintf(e->constraint, sizeof(e->constraint), "%s", k ? k : "");
    snprintf(e->message, sizeof(e->message), "%s", m ? m : PQerrorMessage(c));
    for (char *p = e->message; *p; p++)
        if (*p == '\n')
            *p = ' ';
    PQclear(res);
    return NULL;
}

PGconn *admin_conn(struct admin_ctx *x)
{
    PGconn *c = waf_db_get(x->a->db);
    if (c == NULL) {
        admin_problem(x, AP_UNAVAILABLE, NULL, "the database cannot be reached");
        waf_resp_header(x->rs, "Retry-After", "5");
    }
    return c;
}

void admin_put(struct admin_ctx *x, PGconn *c)
{
    if (c == NULL)
        return;
    if (PQtransactionStatus(c) != PQTRANS_IDLE)
        PQclear(PQexec(c, "ROLLBACK"));
    waf_db_put(x->a->db, c);
}

PGresult *admin_run(struct admin_ctx *x, PGconn *c, const char *sql, int n,
                    const char *const *params)
{
    struct admin_dberr e;
    PGresult *res = admin_exec(c, sql, n, params, &e);
    if (res == NULL)
        admin_db_problem(x, &e);
    return res;
}

bool admin_do(struct admin_ctx *x, PGconn *c, const char *sql, int n, const char *const *params)
{
    PGresult *res = admin_run(x, c, sql, n, params);
    PQclear(res);
    return res != NULL;
}

bool admin_begin(struct admin_ctx *x, PGconn *c)
{
    return admin_do(x, c, "BEGIN", 0, NULL);
}

bool admin_commit(struct admin_ctx *x, PGconn *c)
{
    return admin_do(x, c, "COMMIT", 0, NULL);
}

static json_t *parse(const char *text)
{
    json_error_t je;
    return json_loads(text, JSON_DECODE_ANY, &je);
}

bool admin_query_json(struct admin_ctx *x, PGconn *c, const char *sql, int n,
                      const char *const *params, json_t **out)
{
    *out = NULL;
    PGresult *res = admin_run(x, c, sql, n, params);
    if (res == NULL)
        return false;
    if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0)) {
        *out = parse(PQgetvalue(res, 0, 0));
        if (*out == NULL) {
            PQclear(res);
            admin_problem(x, AP_INTERNAL, NULL, "the database answered malformed JSON");
            return false;
        }
    }
    PQclear(res);
    return true;
}

bool admin_query_rows(struct admin_ctx *x, PGconn *c, const char *sql, int n,
                      const char *const *params, json_t **out)
{
    *out = NULL;
    PGresult *res = admin_run(x, c, sql, n, params);
    if (res == NULL)
        return false;
    json_t *rows = json_array();
    for (int i = 0; rows && i < PQntuples(res); i++) {
        json_t *v = parse(PQgetvalue(res, i, 0));
        if (v == NULL || json_array_append_new(rows, v) != 0) {
            json_decref(rows);
            rows = NULL;
        }
    }
    PQclear(res);
    if (rows == NULL) {
        admin_problem(x, AP_INTERNAL, NULL, "the database answered malformed JSON");
        return false;
    }
    *out = rows;
    return true;
}

json_t *admin_load(struct admin_ctx *x, PGconn *c, const char *sql, const char *value,
                   const char *what)
{
    const char *params[] = {value};
    json_t *v = NULL;
    if (!admin_query_json(x, c, sql, 1, params, &v))
        return NULL;
    if (v == NULL)
        admin_problem(x, AP_NOT_FOUND, NULL, "no %s %s", what, value);
    return v;
}

json_t *admin_fetch(struct admin_ctx *x, const char *sql, const char *what)
{
    PGconn *c = admin_conn(x);
    if (c == NULL)
        return NULL;
    json_t *v = admin_load(x, c, sql, x->param, what);
    admin_put(x, c);
    return v;
}

void admin_get(struct admin_ctx *x, const char *sql, const char *what)
{
    json_t *v = admin_fetch(x, sql, what);
    if (v)
        admin_json(x, 200, v);
}

bool admin_fetch_rows(struct admin_ctx *x, const char *sql, int n, const char *const *params,
                      json_t **out)
{
    *out = NULL;
    PGconn *c = admin_conn(x);
    if (c == NULL)
        return false;
    bool ok = admin_query_rows(x, c, sql, n, params, out);
    admin_put(x, c);
    return ok;
}

void admin_list_rows(struct admin_ctx *x, const char *sql, int n, const char *const *params)
{
    const char *all[ADMIN_LIST_MAX_PARAMS + 1];
    if (n < 0 || n > ADMIN_LIST_MAX_PARAMS) {
        admin_problem(x, AP_INTERNAL, NULL, "too many query parameters");
        return;
    }
    for (int i = 0; i < n; i++)
        all[i] = params[i];
    char lim[24];
    long limit = admin_limit(x);
    snprintf(lim, sizeof(lim), "%ld", limit + 1);
    all[n] = lim;
    json_t *rows = NULL;
    if (admin_fetch_rows(x, sql, n + 1, all, &rows))
        admin_json(x, 200, admin_page(rows, limit));
}

/* What a constraint violation means to the API's user. */
static const struct {
    const char *constraint;
    enum admin_problem p;
    const char *field, *message;
} KNOWN[] = {
    {"web_identities_issuer_subject_key", AP_CONFLICT, "subject",
     "an identity with this issuer and subject exists already"},
    {"password_credentials_username_lower_key", AP_CONFLICT, "username",
     "this username is taken (usernames are compared ignoring case)"},
    {"ims_subscriptions_impi_key", AP_CONFLICT, "ims.impi",
     "this IMPI is the subscription of another identity"},
    {"impus_uri_key", AP_CONFLICT, "ims.impus", "an IMPU is in use by another subscription"},
    {"impus_uri_match_key", AP_CONFLICT, "ims.impus",
     "an IMPU is in use by another subscription or listed twice (compared as the P-CSCF "
     "compares IMPUs: host case and URI parameters ignored)"},
    {"oauth_clients_client_id_key", AP_CONFLICT, "client_id",
     "a client with this client_id exists already"},
    {"oauth_clients_allow_pool_fkey", AP_VALIDATION, "allow_pool", "there is no pool of this name"},
    {"pools_name_key", AP_CONFLICT, "name", "a pool of this name exists already"},
};

void admin_db_problem(struct admin_ctx *x, const struct admin_dberr *e)
{
    for (size_t i = 0; i < sizeof(KNOWN) / sizeof(KNOWN[0]); i++)
        if (strcmp(e->constraint, KNOWN[i].constraint) == 0) {
            json_t *errors = json_array();
            admin_error_add(errors, KNOWN[i].field, "%s", KNOWN[i].message);
            admin_problem(x, KNOWN[i].p, errors, "%s: %s", KNOWN[i].field, KNOWN[i].message);
            return;
        }
    const char *s = e->state;
    if (strcmp(s, "23505") == 0)
        admin_problem(x, AP_CONFLICT, NULL, "conflicts with an existing record (%s)",
                      e->constraint);
    else if (strcmp(s, "23503") == 0)
        admin_problem(x, AP_CONFLICT, NULL, "still referenced by other records (%s)",
                      e->constraint);
    else if (strncmp(s, "23", 2) == 0 || strncmp(s, "22", 2) == 0)
        admin_problem(x, AP_VALIDATION, NULL, "the database refused a value (%s%s%s)",
                      e->constraint[0] ? "constraint " : "", e->constraint,
                      e->constraint[0] ? "" : e->message);
    else if (strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0) {
        admin_problem(x, AP_UNAVAILABLE, NULL, "a concurrent change got in the way; try again");
        waf_resp_header(x->rs, "Retry-After", "1");
    } else if (s[0] == '\0' || strncmp(s, "08", 2) == 0 || strncmp(s, "57", 2) == 0) {
        admin_problem(x, AP_UNAVAILABLE, NULL, "the database cannot be reached");
        waf_resp_header(x->rs, "Retry-After", "5");
    } else {
        fprintf(stderr, "waf-server: admin: database error %s: %s\n", s, e->message);
        admin_problem(x, AP_INTERNAL, NULL, "database error %s", s);
    }
}

bool admin_audit(struct admin_ctx *x, PGconn *c, const char *action, const char *target_type,
                 const char *target_id, const json_t *before, const json_t *after)
{
    char *b = before ? json_dumps(before, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    char *f = after ? json_dumps(after, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if ((before && b == NULL) || (after && f == NULL)) {
        free(b);
        free(f);
        admin_problem(x, AP_INTERNAL, NULL, "out of memory");
        return false;
    }
    const char *params[] = {x->actor, action, target_type, target_id, b, f, x->request_id};
    bool ok = admin_do(x, c,
                       "INSERT INTO audit_log (actor, action, target_type, target_id, "
                       " before, after, request_id) "
                       "VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7)",
                       7, params);
    free(b);
    free(f);
    return ok;
}
