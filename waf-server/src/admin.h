/*
 * The admin REST API (/admin/v1/, docs/openapi.yaml), private to admin*.c:
 *   admin.c            router, bearer authentication, problem+json, query strings
 *   admin_valid.c      the validation table shared by every resource
 *   admin_db.c         transactions, SQLSTATE mapping and the audit log
 *   admin_identities.c web identities and their IMS mapping
 *   admin_clients.c    OAuth clients and their secrets
 *   admin_keys.c       signing keys, revoked tokens, the audit log listing
 *   admin_pools.c      pools, members and leases (through libimspool)
 * Every handler answers through struct admin_ctx; every change writes one audit_log row
 * in the transaction of the change.
 */
#ifndef WAF_ADMIN_H
#define WAF_ADMIN_H

#include "app.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- validation table (admin_valid.c) ---- */

enum admin_type {
    AT_STRING,  /* JSON string */
    AT_INT,     /* JSON integer (query: decimal digits) */
    AT_BOOL,    /* true / false (query: "true" / "false") */
    AT_STRINGS, /* array of strings */
    AT_OBJECT,  /* object whose members are the sub table */
    AT_OBJECTS, /* array of such objects */
    AT_ANY,     /* any JSON object, checked by check_json (a JWKS) */
};

#define AF_REQUIRED  0x01u /* required on create */
#define AF_NULLABLE  0x02u /* null is accepted (removes the value) */
#define AF_IMMUTABLE 0x04u /* set on create only: refused in a PATCH */
#define AF_CHARS     0x08u /* lengths count characters (default: bytes) */
#define AF_UNIQUE    0x10u /* array elements must be distinct */
#define AF_SECRET    0x20u /* write-only: never answered, "(set)" in the audit log */

/* NULL when s is fine, else a short reason ("must be ..."). */
typedef const char *(*admin_check_fn)(const char *s);

struct admin_field {
    const char *name;
    enum admin_type type;
    unsigned flags;
    long min, max;                 /* string length, integer range, array size */
    long emin, emax;               /* AT_STRINGS: length of each element */
    admin_check_fn check;          /* string (each element of AT_STRINGS) */
    const char *const *choices;    /* NULL-terminated allowed values, or NULL */
    const struct admin_field *sub; /* AT_OBJECT / AT_OBJECTS members */
    const char *(*check_json)(const json_t *v, char *buf, size_t len); /* AT_ANY */
};
/* A table ends with an entry whose name is NULL. */

enum admin_mode {
    ADMIN_CREATE, /* required fields must be there */
    ADMIN_PATCH,  /* merge patch (RFC 7396): every field optional, immutable ones refused */
};

#define ADMIN_MAX_ERRORS 20

/* Appends {"field","message"} to errors (a JSON array) unless it has ADMIN_MAX_ERRORS. */
void admin_error_add(json_t *errors, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Checks body (any JSON value) against table: an object, no unknown member, every member
 * of the right type, length, range, choice and form, required ones present on create.
 * Problems are appended to errors, each naming its field ("ims.impus[1].uri"). Returns
 * true when none was found. */
bool admin_validate_body(const struct admin_field *table, const json_t *body, enum admin_mode mode,
                         json_t *errors);

/* Checks one query parameter value (text) against its field and stores the typed value in
 * out (string, integer or boolean). false with an error appended. */
bool admin_validate_param(const struct admin_field *f, const char *value, json_t *out,
                          json_t *errors);

/* The field named name in table, or NULL. */
const struct admin_field *admin_field_find(const struct admin_field *table, const char *name);

/* Form checks for the tables (NULL: fine). */
const char *admin_check_text(const char *s);      /* no control characters */
const char *admin_check_token(const char *s);     /* no whitespace or control characters */
const char *admin_check_client_id(const char *s); /* ^[A-Za-z0-9._~-]+$ */
const char *admin_check_pool_name(const char *s); /* ^[a-z0-9][a-z0-9_.-]*$ */
const char *admin_check_realm(const char *s);     /* DNS name */
const char *admin_check_impi(const char *s);
const char *admin_check_impu(const char *s);     /* sip:/sips:/tel: addr-spec */
const char *admin_check_scope(const char *s);    /* RFC 6749 3.3 scope-token */
const char *admin_check_redirect(const char *s); /* https URI (http on loopback), no fragment */
const char *admin_check_origin(const char *s);   /* scheme://host[:port] */
const char *admin_check_username(const char *s);
const char *admin_check_password(const char *s);
const char *admin_check_uuid(const char *s);
const char *admin_check_cursor(const char *s);
const char *admin_check_time(const char *s); /* RFC 3339 date-time */

/* ---- request context (admin.c) ---- */

struct admin_ctx {
    struct waf_app *a;
    const struct waf_req *rq;
    struct waf_resp *rs;
    char actor[129];     /* client_id of the bearer token */
    char request_id[65]; /* X-Request-Id (given or made) */
    const char *param;   /* the {placeholder} of the path, NULL when none */
    json_t *body;        /* the validated body (an object), NULL when the route takes none */
    json_t *query;       /* the validated query parameters (an object, never NULL) */
};

struct admin_route {
    const char *method;
    const char *path; /* template: at most one {placeholder} segment */
    void (*fn)(struct admin_ctx *x);
    const struct admin_field *body;  /* NULL: no body */
    const struct admin_field *query; /* NULL: no query parameters */
    enum admin_mode mode;            /* for body */
    admin_check_fn param_check;      /* the placeholder's form (404 when it fails) */
};

/* Problems (RFC 9457). */
enum admin_problem {
    AP_INVALID_JSON,  /* 400 */
    AP_BAD_REQUEST,   /* 400 */
    AP_INVALID_TOKEN, /* 401 */
    AP_INSUFFICIENT,  /* 403 */
    AP_NOT_FOUND,     /* 404: a resource that does not exist */
    AP_NO_ROUTE,      /* 404: a path the API does not have */
    AP_METHOD,        /* 405 */
    AP_CONFLICT,      /* 409 */
    AP_MEDIA_TYPE,    /* 415 */
    AP_VALIDATION,    /* 422 */
    AP_INTERNAL,      /* 500 */
    AP_UNAVAILABLE,   /* 503 */
};

/* Answers the problem with a detail line; errors (may be NULL) is taken. */
void admin_problem(struct admin_ctx *x, enum admin_problem p, json_t *errors, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* 422 naming one field. */
void admin_invalid(struct admin_ctx *x, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Answers status with j (taken) as application/json, no-store. */
void admin_json(struct admin_ctx *x, int status, json_t *j);
/* 204 No Content. */
void admin_no_content(struct admin_ctx *x);
/* Sets the Location header of a created resource: /admin/v1/<collection>/<id>. */
void admin_location(struct admin_ctx *x, const char *collection, const char *id);

/* Query parameters of every listing: an opaque cursor (base64url of the sort key of the
 * last item of the previous page) and a page size (1..200, default 50). */
#define ADMIN_PAGE_FIELDS                                                                          \
    {"cursor", AT_STRING, 0, 1, 512, 0, 0, admin_check_cursor, NULL, NULL, NULL},                  \
    {                                                                                              \
        "limit", AT_INT, 0, 1, 200, 0, 0, NULL, NULL, NULL, NULL                                   \
    }

/* The page size of a listing request. */
long admin_limit(const struct admin_ctx *x);
/* Decodes the "cursor" query parameter into out (at most len - 1 bytes; "" when absent).
 * false after answering 422 for a cursor that is not one of ours. */
bool admin_cursor_get(struct admin_ctx *x, char *out, size_t len);
/* admin_cursor_get for a cursor that is a decimal id (at most 18 digits); false after
 * answering 422. */
bool admin_cursor_id(struct admin_ctx *x, char *out, size_t len);
/* Makes the page {"items": rows, "next_cursor"} from rows (taken), which a query fetched
 * with LIMIT limit + 1: each row holds its sort key as text in "_cursor", which is removed;
 * next_cursor encodes the key of the last item kept when there was one more row, else
 * null. NULL without memory. */
json_t *admin_page(json_t *rows, long limit);

/* The query parameter name as a string, or NULL. */
const char *admin_q_str(const struct admin_ctx *x, const char *name);

/* ---- database (admin_db.c) ---- */

struct admin_dberr {
    char state[6];
    char constraint[64];
    char message[256];
};

/* A connection, or NULL after answering 503. Give it back with admin_put(). */
PGconn *admin_conn(struct admin_ctx *x);
/* Rolls back anything open and returns the connection. Accepts NULL. */
void admin_put(struct admin_ctx *x, PGconn *c);

/* Runs a parameterised statement; NULL on failure with *e filled. */
PGresult *admin_exec(PGconn *c, const char *sql, int n, const char *const *params,
                     struct admin_dberr *e);
/* admin_exec answering the failure (admin_db_problem): NULL then. */
PGresult *admin_run(struct admin_ctx *x, PGconn *c, const char *sql, int n,
                    const char *const *params);
/* admin_run for a statement whose result is not needed; false after answering. */
bool admin_do(struct admin_ctx *x, PGconn *c, const char *sql, int n, const char *const *params);
/* BEGIN / COMMIT; false after answering the failure. */
bool admin_begin(struct admin_ctx *x, PGconn *c);
bool admin_commit(struct admin_ctx *x, PGconn *c);

/* Runs a query whose first column of its first row is JSON text. *out is the parsed value
 * (new reference) or NULL when there is no row. false after answering a failure. */
bool admin_query_json(struct admin_ctx *x, PGconn *c, const char *sql, int n,
                      const char *const *params, json_t **out);
/* The same for every row: *out is an array of the parsed first columns. */
bool admin_query_rows(struct admin_ctx *x, PGconn *c, const char *sql, int n,
                      const char *const *params, json_t **out);

/* The resource that sql (one parameter, $1 = value) answers as JSON; NULL after answering
 * 404 ("no <what> <value>") or a failure. */
json_t *admin_load(struct admin_ctx *x, PGconn *c, const char *sql, const char *value,
                   const char *what);
/* admin_load of the path's placeholder on a connection of its own. */
json_t *admin_fetch(struct admin_ctx *x, const char *sql, const char *what);
/* GET of one resource: answers 200 with admin_fetch. */
void admin_get(struct admin_ctx *x, const char *sql, const char *what);
/* admin_query_rows on a connection of its own. */
bool admin_fetch_rows(struct admin_ctx *x, const char *sql, int n, const char *const *params,
                      json_t **out);

#define ADMIN_LIST_MAX_PARAMS 15

/* A paged listing: runs sql with params (at most ADMIN_LIST_MAX_PARAMS) and the page size
 * plus one (admin_limit) as its last parameter $<n+1>, and answers 200 with admin_page. */
void admin_list_rows(struct admin_ctx *x, const char *sql, int n, const char *const *params);

/* Answers a failed statement: unique and foreign-key violations as 409/422 naming the
 * field (from the constraint), lost connections as 503, anything else as 500. */
void admin_db_problem(struct admin_ctx *x, const struct admin_dberr *e);

/* Inserts the audit_log row of a change on c (inside the change's transaction): actor
 * and request id from x, before/after (may be NULL; not taken) with secrets replaced by
 * the caller. false after answering a failure. */
bool admin_audit(struct admin_ctx *x, PGconn *c, const char *action, const char *target_type,
                 const char *target_id, const json_t *before, const json_t *after);

/* SQL expression of a timestamptz column as an RFC 3339 UTC string. */
#define ADMIN_TS(col) "to_char((" col ") AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/* ---- resources ---- */

void admin_identities_list(struct admin_ctx *x);
void admin_identities_create(struct admin_ctx *x);
void admin_identity_get(struct admin_ctx *x);
void admin_identity_patch(struct admin_ctx *x);
void admin_identity_delete(struct admin_ctx *x);
extern const struct admin_field admin_identity_fields[], admin_identity_query[];

void admin_clients_list(struct admin_ctx *x);
void admin_clients_create(struct admin_ctx *x);
void admin_client_get(struct admin_ctx *x);
void admin_client_patch(struct admin_ctx *x);
void admin_client_delete(struct admin_ctx *x);
void admin_client_secret(struct admin_ctx *x);
extern const struct admin_field admin_client_fields[], admin_client_query[];

void admin_keys_list(struct admin_ctx *x);
void admin_keys_rotate(struct admin_ctx *x);
void admin_revoked_list(struct admin_ctx *x);
void admin_audit_list(struct admin_ctx *x);
extern const struct admin_field admin_revoked_query[], admin_audit_query[], admin_empty_fields[];

void admin_pools_list(struct admin_ctx *x);
void admin_pools_create(struct admin_ctx *x);
void admin_pool_get(struct admin_ctx *x);
void admin_pool_patch(struct admin_ctx *x);
void admin_pool_delete(struct admin_ctx *x);
void admin_pool_drain(struct admin_ctx *x);
void admin_pool_members_add(struct admin_ctx *x);
void admin_pool_leases(struct admin_ctx *x);
void admin_lease_release(struct admin_ctx *x);
extern const struct admin_field admin_pool_fields[], admin_members_fields[], admin_leases_query[];

/* The route table of the API (admin.c), terminated by a NULL method. */
extern const struct admin_route admin_api_routes[];

#endif
