/*
 * /admin/v1/keys (signing keys and their rotation, keystore.h), /admin/v1/revoked-tokens
 * and /admin/v1/audit: the read-mostly security records.
 */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct admin_field admin_revoked_query[] = {
    ADMIN_PAGE_FIELDS,
    {"client_id", AT_STRING, 0, 1, 128, 0, 0, admin_check_client_id, NULL, NULL, NULL},
    {NULL, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL},
};

const struct admin_field admin_audit_query[] = {
    ADMIN_PAGE_FIELDS,
    {"actor", AT_STRING, AF_CHARS, 1, 256, 0, 0, NULL, NULL, NULL, NULL},
    {"action", AT_STRING, AF_CHARS, 1, 128, 0, 0, NULL, NULL, NULL, NULL},
    {"target_type", AT_STRING, AF_CHARS, 1, 64, 0, 0, NULL, NULL, NULL, NULL},
    {"target_id", AT_STRING, AF_CHARS, 1, 1024, 0, 0, NULL, NULL, NULL, NULL},
    {"since", AT_STRING, 0, 20, 40, 0, 0, admin_check_time, NULL, NULL, NULL},
    {"until", AT_STRING, 0, 20, 40, 0, 0, admin_check_time, NULL, NULL, NULL},
    {NULL, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL},
};

/* The representation of a key ($1: keys.overlap in seconds). */
#define KEY_JSON                                                                                   \
    "json_build_object('kid', kid, 'alg', alg, 'state', state, "                                   \
    " 'published', state <> 'retired' OR publish_until > now(), 'public_jwk', public_jwk, "        \
    " 'created_at', " KEY_TS("created_at") ", 'activated_at', " KEY_TS(                            \
        "activated_at") ", "                                                                       \
                        " 'retired_at', " KEY_TS("retired_at") ", 'publish_until', " KEY_TS(       \
                            "publish_until") ", "                                                  \
                                             " 'activates_after', CASE WHEN state = 'next' "       \
                                             "THEN " KEY_TS("created_at + make_interval(secs => "  \
                                                            "$1::int)") " END)"
#define KEY_TS(col) ADMIN_TS(col)

void admin_keys_list(struct admin_ctx *x)
{
    char overlap[24];
    snprintf(overlap, sizeof(overlap), "%ld", x->a->cfg->key_overlap_s);
    const char *params[] = {overlap};
    json_t *rows = NULL;
    if (admin_fetch_rows(x, "SELECT " KEY_JSON " FROM signing_keys ORDER BY created_at DESC, kid",
                         1, params, &rows))
        admin_json(x, 200,
                   json_pack("{s:o, s:I}", "items", rows, "overlap_s",
                             (json_int_t)x->a->cfg->key_overlap_s));
}

void admin_keys_rotate(struct admin_ctx *x)
{
    char kid[65], d[256] = "";
    PGconn *c = admin_conn(x);
    json_t *key = NULL;
    if (c == NULL || !admin_begin(x, c))
        goto out;
    int r = waf_keystore_rotate(x->a->keys, c, kid, d, sizeof(d));
    if (r == 1) {
        admin_problem(x, AP_CONFLICT, NULL,
                      "key %s waits already as next key; it becomes active after the overlap "
                      "(keys.overlap, %ld s)",
                      kid, x->a->cfg->key_overlap_s);
        goto out;
    }
    if (r != 0) {
        fprintf(stderr, "waf-server: admin: key rotation failed: %s\n", d);
        admin_problem(x, AP_INTERNAL, NULL, "the new key could not be made or stored");
        goto out;
    }
    char overlap[24];
    snprintf(overlap, sizeof(overlap), "%ld", x->a->cfg->key_overlap_s);
    const char *params[] = {overlap, kid};
    if (!admin_query_json(x, c, "SELECT " KEY_JSON " FROM signing_keys WHERE kid = $2", 2, params,
                          &key) ||
        key == NULL)
        goto out;
    if (!admin_audit(x, c, "key.rotate", "signing_key", kid, NULL, key) || !admin_commit(x, c))
        goto out;
    admin_put(x, c);
    c = NULL;
    (void)waf_keystore_reload(x->a->keys, d, sizeof(d)); /* publish it here now */
    admin_json(x, 201, key);
    key = NULL;
out:
    admin_put(x, c);
    json_decref(key);
}

void admin_revoked_list(struct admin_ctx *x)
{
    char cursor[400];
    if (!admin_cursor_get(x, cursor, sizeof(cursor)))
        return;
    /* Cursor: "<revoked_at in Unix microseconds>:<jti>". */
    char *colon = strchr(cursor, ':');
    if (cursor[0] &&
        (colon == NULL || colon == cursor ||
         strspn(cursor, "0123456789") != (size_t)(colon - cursor) || colon - cursor > 18)) {
        admin_invalid(x, "cursor", "is not a cursor from a previous page");
        return;
    }
    if (colon)
        *colon = '\0';
    const char *cid = admin_q_str(x, "client_id");
    const char *params[] = {cursor, colon ? colon + 1 : "", cid ? cid : ""};
    admin_list_rows(
        x,
        "SELECT json_build_object('jti', jti, 'client_id', client_id, 'reason', reason, "
        " 'exp', " ADMIN_TS("exp") ", 'revoked_at', " ADMIN_TS(
            "revoked_at") ", "
                          " 'expired', exp <= now(), '_cursor', "
                          " (extract(epoch FROM revoked_at) * 1000000)::bigint || ':' || jti) "
                          "FROM revoked_tokens WHERE ($1 = '' OR (revoked_at, jti) < "
                          " ('epoch'::timestamptz + nullif($1, '')::bigint * interval '1 "
                          "microsecond', $2)) "
                          " AND ($3 = '' OR client_id = $3) "
                          "ORDER BY revoked_at DESC, jti DESC LIMIT $4::int",
        3, params);
}

void admin_audit_list(struct admin_ctx *x)
{
    char cursor[32];
    if (!admin_cursor_id(x, cursor, sizeof(cursor)))
        return;
    const char *f[] = {"actor", "action", "target_type", "target_id", "since", "until"};
    const char *params[7] = {cursor};
    for (int i = 0; i < 6; i++) {
        const char *v = admin_q_str(x, f[i]);
        params[1 + i] = v ? v : "";
    }
    admin_list_rows(
        x,
        "SELECT json_build_object('id', id, 'at', " ADMIN_TS(
            "at") ", 'actor', actor, "
                  " 'action', action, 'target_type', target_type, 'target_id', target_id, "
                  " 'before', before, 'after', after, 'request_id', request_id, '_cursor', "
                  "id::text) "
                  "FROM audit_log WHERE ($1 = '' OR id < nullif($1, '')::bigint) "
                  " AND ($2 = '' OR actor = $2) AND ($3 = '' OR action = $3) "
                  " AND ($4 = '' OR target_type = $4) AND ($5 = '' OR target_id = $5) "
                  " AND ($6 = '' OR at >= nullif($6, '')::timestamptz) "
                  " AND ($7 = '' OR at < nullif($7, '')::timestamptz) "
                  "ORDER BY id DESC LIMIT $8::int",
        7, params);
}
