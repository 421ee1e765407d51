/*
 * /admin/v1/identities: web identities, their password (local identities only; scrypt,
 * write-only) and their IMS subscription (IMPI, realm, IMPUs, default IMPU). One
 * subscription per identity, owned by it: replacing or removing the mapping, or deleting
 * the identity, deletes the subscription and its IMPUs. Temporary identities of pools are
 * refused as permanent ones (the schema cannot check that across the two tables).
 */
#include "admin.h"

#include "wcrypto.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const STATUSES[] = {"active", "disabled", NULL};

static const struct admin_field IMPU_FIELDS[] = {
    {"uri", AT_STRING, AF_REQUIRED, 5, 1024, 0, 0, admin_check_impu, NULL, NULL, NULL},
    {"barred", AT_BOOL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL},
    {NULL, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL},
};

static const struct admin_field IMS_FIELDS[] = {
    {"impi", AT_STRING, AF_REQUIRED, 1, 1024, 0, 0, admin_check_impi, NULL, NULL, NULL},
    {"realm", AT_STRING, AF_REQUIRED, 1, 253, 0, 0, admin_check_realm, NULL, NULL, NULL},
    {"impus", AT_OBJECTS, AF_REQUIRED, 1, 64, 0, 0, NULL, NULL, IMPU_FIELDS, NULL},
    {"default_impu", AT_STRING, AF_REQUIRED, 5, 1024, 0, 0, admin_check_impu, NULL, NULL, NULL},
    {NULL, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL},
};

const struct admin_field admin_identity_fields[] = {
    {"issuer", AT_STRING, AF_REQUIRED | AF_IMMUTABLE, 1, 1024, 0, 0, NULL, NULL, NULL, NULL},
    {"subject", AT_STRING, AF_REQUIRED | AF_IMMUTABLE, 1, 1024, 0, 0, NULL, NULL, NULL, NULL},
    {"display_name", AT_STRING, AF_NULLABLE | AF_CHARS, 1, 256, 0, 0, NULL, NULL, NULL, NULL},
    {"status", AT_STRING, 0, 1, 16, 0, 0, NULL, STATUSES, NULL, NULL},
    {"username", AT_STRING, AF_CHARS, 1, 128, 0, 0, admin_check_username, NULL, NULL, NULL},
    {"password", AT_STRING, AF_NULLABLE | AF_SECRET, 8, WAF_PASSWORD_MAX, 0, 0,
     admin_check_password, NULL, NULL, NULL},
    {"ims", AT_OBJECT, AF_NULLABLE, 0, 0, 0, 0, NULL, NULL, IMS_FIELDS, NULL},
    {NULL, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL},
};

const struct admin_field admin_identity_query[] = {
    ADMIN_PAGE_FIELDS,
    {"q", AT_STRING, AF_CHARS, 1, 200, 0, 0, NULL, NULL, NULL, NULL},
    {"issuer", AT_STRING, 0, 1, 1024, 0, 0, NULL, NULL, NULL, NULL},
    {"status", AT_STRING, 0, 1, 16, 0, 0, NULL, STATUSES, NULL, NULL},
    {NULL, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL},
};

/* The representation of identity w (p: its password row). */
#define IDENTITY_JSON                                                                              \
    "json_build_object('id', w.id, 'issuer', w.issuer, 'subject', w.subject, "                     \
    " 'display_name', w.display_name, 'status', w.status, 'username', p.username, "                \
    " 'has_password', p.web_identity_id IS NOT NULL, "                                             \
    " 'locked_until', " ADMIN_TS(                                                                  \
        "p.locked_until") ", "                                                                     \
                          " 'ims', (SELECT json_build_object('impi', s.impi, 'realm', s.realm, "   \
                          "   'impus', (SELECT json_agg(json_build_object('uri', i.uri, "          \
                          "'barred', i.barred) "                                                   \
                          "     ORDER BY i.id) FROM impus i WHERE i.subscription_id = s.id), "     \
                          "   'default_impu', d.uri) "                                             \
                          "  FROM identity_mappings m JOIN ims_subscriptions s ON s.id = "         \
                          "m.subscription_id "                                                     \
                          "  JOIN impus d ON d.id = m.default_impu_id WHERE m.web_identity_id = "  \
                          "w.id "                                                                  \
                          "  ORDER BY m.created_at LIMIT 1), "                                     \
                          " 'created_at', " ADMIN_TS("w.created_at") ", 'updated_at', " ADMIN_TS(  \
                              "w.updated_at") ")"
#define IDENTITY_FROM                                                                              \
    " FROM web_identities w LEFT JOIN password_credentials p ON p.web_identity_id = w.id "

#define IDENTITY_BY_ID "SELECT " IDENTITY_JSON IDENTITY_FROM "WHERE w.id = $1::bigint"
#define IDENTITY_WHAT  "identity with id"

/* The identity id (decimal text), locked when lock; NULL after answering 404 or a failure. */
static json_t *load(struct admin_ctx *x, PGconn *c, const char *id, bool lock)
{
    return admin_load(x, c, lock ? IDENTITY_BY_ID " FOR UPDATE OF w" : IDENTITY_BY_ID, id,
                      IDENTITY_WHAT);
}

/* The ims object's IMPUs as JSON text (free it); NULL after answering. */
static char *impus_text(struct admin_ctx *x, const json_t *ims)
{
    char *impus = json_dumps(json_object_get(ims, "impus"), JSON_COMPACT);
    if (impus == NULL)
        admin_problem(x, AP_INTERNAL, NULL, "out of memory");
    return impus;
}

/* The cross-field rules of an ims object. false after answering 422. */
static bool ims_rules(struct admin_ctx *x, const json_t *ims)
{
    const json_t *impus = json_object_get(ims, "impus");
    const char *def = json_string_value(json_object_get(ims, "default_impu"));
    bool found = false;
    for (size_t i = 0; i < json_array_size(impus); i++) {
        const json_t *u = json_array_get(impus, i);
        const char *uri = json_string_value(json_object_get(u, "uri"));
        for (size_t k = 0; k < i; k++)
            if (strcmp(uri, json_string_value(json_object_get(json_array_get(impus, k), "uri"))) ==
                0) {
                char f[64];
                snprintf(f, sizeof(f), "ims.impus[%zu].uri", i);
                admin_invalid(x, f, "repeats an earlier IMPU");
                return false;
            }
        if (strcmp(uri, def) == 0) {
            found = true;
            if (json_is_true(json_object_get(u, "barred"))) {
                admin_invalid(x, "ims.default_impu", "must not be a barred IMPU");
                return false;
            }
        }
    }
    if (!found) {
        admin_invalid(x, "ims.default_impu", "must be one of ims.impus");
        return false;
    }
    return true;
}

/* Refuses an IMPI or IMPU that a pool holds as a temporary identity. false after
 * answering 409 or a failure. */
static bool not_in_pool(struct admin_ctx *x, PGconn *c, const json_t *ims)
{
    char *impus = impus_text(x, ims);
    if (impus == NULL)
        return false;
    const char *params[] = {json_string_value(json_object_get(ims, "impi")), impus};
    PGresult *res = admin_run(x, c,
                              "SELECT p.name, m.impu, m.impi = $1 FROM pool_members m "
                              "JOIN pools p ON p.id = m.pool_id WHERE m.impi = $1 "
                              " OR impu_match_key(m.impu) IN (SELECT impu_match_key(e ->> 'uri') "
                              "  FROM json_array_elements($2::json) e) LIMIT 1",
                              2, params);
    free(impus);
    if (res == NULL)
        return false;
    bool clash = PQntuples(res) > 0;
    if (clash) {
        json_t *errors = json_array();
        bool impi = PQgetvalue(res, 0, 2)[0] == 't';
        admin_error_add(errors, impi ? "ims.impi" : "ims.impus",
                        "is a temporary identity of pool %s", PQgetvalue(res, 0, 0));
        admin_problem(x, AP_CONFLICT, errors, "%s %s is a temporary identity of pool %s",
                      impi ? "the IMPI of member" : "IMPU", PQgetvalue(res, 0, 1),
                      PQgetvalue(res, 0, 0));
    }
    PQclear(res);
    return !clash;
}

/* Deletes the subscription(s) of identity id and, when ims is an object, makes the new
 * one. false after answering. */
static bool write_ims(struct admin_ctx *x, PGconn *c, const char *id, const json_t *ims)
{
    const char *p1[] = {id};
    if (!admin_do(x, c,
                  "DELETE FROM ims_subscriptions WHERE id IN (SELECT subscription_id "
                  " FROM identity_mappings WHERE web_identity_id = $1::bigint)",
                  1, p1))
        return false;
    if (!json_is_object(ims))
        return true;
    char *impus = NULL;
    if (!not_in_pool(x, c, ims) || (impus = impus_text(x, ims)) == NULL)
        return false;
    const char *p2[] = {id, json_string_value(json_object_get(ims, "impi")),
                        json_string_value(json_object_get(ims, "realm")), impus,
                        json_string_value(json_object_get(ims, "default_impu"))};
    bool ok = admin_do(x, c,
                       "WITH s AS (INSERT INTO ims_subscriptions (impi, realm) "
                       "  VALUES ($2, $3) RETURNING id), "
                       " i AS (INSERT INTO impus (subscription_id, uri, barred) "
                       "  SELECT s.id, e ->> 'uri', coalesce((e ->> 'barred')::boolean, "
                       "   false) FROM s, json_array_elements($4::json) e "
                       "  RETURNING id, subscription_id, uri) "
                       "INSERT INTO identity_mappings (web_identity_id, subscription_id, "
                       " default_impu_id) SELECT $1::bigint, i.subscription_id, i.id "
                       " FROM i WHERE i.uri = $5",
                       5, p2);
    free(impus);
    return ok;
}

/* Hashes the body's password (when it is a string) into phc; false after answering. */
static bool hash_password(struct admin_ctx *x, char *phc, size_t len)
{
    phc[0] = '\0';
    const char *pw = json_string_value(json_object_get(x->body, "password"));
    if (pw == NULL)
        return true;
    char d[200];
    if (waf_password_hash(pw, 0, phc, len, d, sizeof(d)) != WAF_CRYPTO_OK) {
        admin_problem(x, AP_INTERNAL, NULL, "the password cannot be hashed");
        return false;
    }
    return true;
}

/* Password and username rules for an identity of issuer; false after answering 422. */
static bool login_rules(struct admin_ctx *x, const char *issuer, const char *username)
{
    const json_t *b = x->body;
    bool local = strcmp(issuer, "local") == 0;
    if (!local && json_object_get(b, "password")) {
        admin_invalid(x, "password", "only local identities (issuer \"local\") have a password");
        return false;
    }
    if (!local && json_object_get(b, "username")) {
        admin_invalid(x, "username", "only local identities (issuer \"local\") have a username");
        return false;
    }
    if (json_is_string(json_object_get(b, "password")) &&
        (strlen(username) > 128 || admin_check_username(username))) {
        admin_invalid(x, "username",
                      "is required: the subject cannot serve as username (whitespace, control "
                      "characters or over 128 bytes)");
        return false;
    }
    return true;
}

/* Sets, changes or removes the password row of identity id from the body. false after
 * answering. */
static bool write_login(struct admin_ctx *x, PGconn *c, const char *id, const char *username,
                        const char *phc)
{
    const json_t *pw = json_object_get(x->body, "password");
    const json_t *un = json_object_get(x->body, "username");
    const char *params[] = {id, username, phc};
    PGresult *res = NULL;
    if (json_is_string(pw))
        res = admin_run(x, c,
                        "INSERT INTO password_credentials (web_identity_id, username, "
                        " password_hash) VALUES ($1::bigint, $2, $3) "
                        "ON CONFLICT (web_identity_id) DO UPDATE SET username = $2, "
                        " password_hash = $3, failed_attempts = 0, locked_until = NULL",
                        3, params);
    else if (json_is_null(pw))
        res = admin_run(x, c, "DELETE FROM password_credentials WHERE web_identity_id = $1::bigint",
                        1, params);
    else if (un)
        res = admin_run(x, c,
                        "UPDATE password_credentials SET username = $2 "
                        "WHERE web_identity_id = $1::bigint",
                        2, params);
    else
        return true;
    if (res == NULL)
        return false;
    bool none = pw == NULL && strcmp(PQcmdTuples(res), "0") == 0;
    PQclear(res);
    if (none) {
        admin_invalid(x, "username", "this identity has no password; set one with the username");
        return false;
    }
    return true;
}

/* Writes the audit row of a change of identity id and commits; the after image notes
 * "password": "(set)" when the body set one. false after answering. */
static bool audit_commit(struct admin_ctx *x, PGconn *c, const char *action, const char *id,
                         const json_t *before, const json_t *after)
{
    json_t *audit = json_deep_copy(after);
    if (json_is_string(json_object_get(x->body, "password")))
        json_object_set_new(audit, "password", json_string("(set)"));
    bool ok = admin_audit(x, c, action, "identity", id, before, audit);
    json_decref(audit);
    return ok && admin_commit(x, c);
}

void admin_identities_list(struct admin_ctx *x)
{
    char cursor[32];
    if (!admin_cursor_id(x, cursor, sizeof(cursor)))
        return;
    const char *iss = admin_q_str(x, "issuer"), *st = admin_q_str(x, "status"),
               *q = admin_q_str(x, "q");
    const char *params[] = {cursor, iss ? iss : "", st ? st : "", q ? q : ""};
    admin_list_rows(x,
                    "SELECT jsonb_set(" IDENTITY_JSON
                    "::jsonb, '{_cursor}', to_jsonb(w.id::text)) " IDENTITY_FROM
                    "WHERE ($1 = '' OR w.id > nullif($1, '')::bigint) "
                    " AND ($2 = '' OR w.issuer = $2) AND ($3 = '' OR w.status = $3) "
                    " AND ($4 = '' OR strpos(lower(w.subject), lower($4)) > 0 "
                    "  OR strpos(lower(coalesce(w.display_name, '')), lower($4)) > 0 "
                    "  OR strpos(lower(coalesce(p.username, '')), lower($4)) > 0 "
                    "  OR EXISTS (SELECT 1 FROM identity_mappings m "
                    "   JOIN ims_subscriptions s ON s.id = m.subscription_id "
                    "   WHERE m.web_identity_id = w.id AND (strpos(lower(s.impi), lower($4)) > 0 "
                    "    OR EXISTS (SELECT 1 FROM impus i WHERE i.subscription_id = s.id "
                    "     AND strpos(lower(i.uri), lower($4)) > 0)))) "
                    "ORDER BY w.id LIMIT $5::int",
                    4, params);
}

void admin_identity_get(struct admin_ctx *x)
{
    admin_get(x, IDENTITY_BY_ID, IDENTITY_WHAT);
}

void admin_identities_create(struct admin_ctx *x)
{
    const json_t *b = x->body;
    const char *issuer = json_string_value(json_object_get(b, "issuer"));
    const char *subject = json_string_value(json_object_get(b, "subject"));
    const char *username = json_string_value(json_object_get(b, "username"));
    const json_t *ims = json_object_get(b, "ims");
    if (username == NULL)
        username = subject;
    if (!login_rules(x, issuer, username) || (json_is_object(ims) && !ims_rules(x, ims)))
        return;
    if (json_object_get(b, "username") && !json_is_string(json_object_get(b, "password"))) {
        admin_invalid(x, "username", "is set together with a password");
        return;
    }
    char phc[WAF_PHC_MAX + 1];
    if (!hash_password(x, phc, sizeof(phc)))
        return;
    PGconn *c = admin_conn(x);
    json_t *after = NULL;
    const char *st = json_string_value(json_object_get(b, "status"));
    const char *params[] = {issuer, subject, json_string_value(json_object_get(b, "display_name")),
                            st ? st : "active"};
    PGresult *res = NULL;
    char id[24];
    if (c == NULL || !admin_begin(x, c))
        goto out;
    res = admin_run(x, c,
                    "INSERT INTO web_identities (issuer, subject, display_name, status) "
                    "VALUES ($1, $2, $3, $4) RETURNING id",
                    4, params);
    if (res == NULL)
        goto out;
    snprintf(id, sizeof(id), "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    if (!write_login(x, c, id, username, phc) || (json_is_object(ims) && !write_ims(x, c, id, ims)))
        goto out;
    if ((after = load(x, c, id, false)) == NULL ||
        !audit_commit(x, c, "identity.create", id, NULL, after))
        goto out;
    admin_location(x, "identities", id);
    admin_json(x, 201, after);
    after = NULL;
out:
    OPENSSL_cleanse(phc, sizeof(phc));
    admin_put(x, c);
    json_decref(after);
}

void admin_identity_patch(struct admin_ctx *x)
{
    const json_t *b = x->body;
    const json_t *ims = json_object_get(b, "ims");
    if (json_is_object(ims) && !ims_rules(x, ims))
        return;
    char phc[WAF_PHC_MAX + 1] = "";
    json_t *before = NULL, *after = NULL;
    PGconn *c = admin_conn(x);
    if (c == NULL || !admin_begin(x, c) || (before = load(x, c, x->param, true)) == NULL)
        goto out;
    const char *issuer = json_string_value(json_object_get(before, "issuer"));
    const char *username = json_string_value(json_object_get(b, "username"));
    if (username == NULL)
        username = json_string_value(json_object_get(before, "username"));
    if (username == NULL)
        username = json_string_value(json_object_get(before, "subject"));
    if (!login_rules(x, issuer, username))
        goto out;
    if (json_object_get(b, "username") && json_is_null(json_object_get(b, "password"))) {
        admin_invalid(x, "username", "cannot be set while the password is removed");
        goto out;
    }
    if (!hash_password(x, phc, sizeof(phc)))
        goto out;
    const json_t *dn = json_object_get(b, "display_name");
    const json_t *st = json_object_get(b, "status");
    const char *params[] = {x->param,
                            json_string_value(dn ? dn : json_object_get(before, "display_name")),
                            json_string_value(st ? st : json_object_get(before, "status"))};
    if (!admin_do(x, c,
                  "UPDATE web_identities SET display_name = $2, status = $3 WHERE id = $1::bigint",
                  3, params) ||
        !write_login(x, c, x->param, username, phc) || (ims && !write_ims(x, c, x->param, ims)) ||
        (after = load(x, c, x->param, false)) == NULL ||
        !audit_commit(x, c, "identity.update", x->param, before, after))
        goto out;
    admin_json(x, 200, after);
    after = NULL;
out:
    OPENSSL_cleanse(phc, sizeof(phc));
    admin_put(x, c);
    json_decref(before);
    json_decref(after);
}

void admin_identity_delete(struct admin_ctx *x)
{
    json_t *before = NULL;
    PGconn *c = admin_conn(x);
    if (c == NULL || !admin_begin(x, c) || (before = load(x, c, x->param, true)) == NULL ||
        !write_ims(x, c, x->param, NULL))
        goto out;
    const char *params[] = {x->param};
    if (!admin_do(x, c, "DELETE FROM web_identities WHERE id = $1::bigint", 1, params) ||
        !admin_audit(x, c, "identity.delete", "identity", x->param, before, NULL) ||
        !admin_commit(x, c))
        goto out;
    admin_no_content(x);
out:
    admin_put(x, c);
    json_decref(before);
}
