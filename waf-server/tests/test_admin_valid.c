/* The admin API's validation table (admin_valid.c): every kind of body error named by its
 * field, create vs merge-patch rules, nested objects and arrays, the error cap, query
 * parameter parsing, each form check at its edges, and the resource tables themselves
 * (identities, clients) on good and hostile bodies. No network. */
#include "admin.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static const char *const COLOURS[] = {"red", "green", NULL};

static const struct admin_field ITEM[] = {
    {"uri", AT_STRING, AF_REQUIRED, 5, 64, 0, 0, admin_check_impu, NULL, NULL, NULL},
    {"flag", AT_BOOL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL},
    {NULL, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL},
};

static const struct admin_field INNER[] = {
    {"items", AT_OBJECTS, AF_REQUIRED, 1, 3, 0, 0, NULL, NULL, ITEM, NULL},
    {NULL, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL},
};

static const struct admin_field TABLE[] = {
    {"id", AT_STRING, AF_REQUIRED | AF_IMMUTABLE, 1, 8, 0, 0, admin_check_client_id, NULL, NULL,
     NULL},
    {"name", AT_STRING, AF_CHARS | AF_NULLABLE, 1, 3, 0, 0, NULL, NULL, NULL, NULL},
    {"n", AT_INT, 0, -5, 5, 0, 0, NULL, NULL, NULL, NULL},
    {"colour", AT_STRING, 0, 1, 10, 0, 0, NULL, COLOURS, NULL, NULL},
    {"tags", AT_STRINGS, AF_UNIQUE, 0, 2, 1, 4, admin_check_scope, NULL, NULL, NULL},
    {"inner", AT_OBJECT, AF_NULLABLE, 0, 0, 0, 0, NULL, NULL, INNER, NULL},
    {NULL, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL},
};

/* Validates the JSON text; returns the errors array (caller decrefs). */
static json_t *errors_of(const struct admin_field *t, const char *text, enum admin_mode mode)
{
    json_error_t je;
    json_t *body = json_loads(text, JSON_DECODE_ANY, &je);
    cr_assert_not_null(body, "test body %s: %s", text, je.text);
    json_t *errors = json_array();
    bool ok = admin_validate_body(t, body, mode, errors);
    cr_assert_eq(ok, json_array_size(errors) == 0);
    json_decref(body);
    return errors;
}

static void valid(const struct admin_field *t, const char *text, enum admin_mode mode)
{
    json_t *e = errors_of(t, text, mode);
    char *s = json_dumps(e, 0);
    cr_assert_eq(json_array_size(e), 0, "%s: unexpected errors %s", text, s);
    free(s);
    json_decref(e);
}

/* The body must fail with (at least) an error on field whose message holds sub. */
static void invalid(const struct admin_field *t, const char *text, enum admin_mode mode,
                    const char *field, const char *sub)
{
    json_t *e = errors_of(t, text, mode);
    char *s = json_dumps(e, 0);
    bool found = false;
    for (size_t i = 0; i < json_array_size(e) && !found; i++) {
        const json_t *o = json_array_get(e, i);
        found = strcmp(json_string_value(json_object_get(o, "field")), field) == 0 &&
                strstr(json_string_value(json_object_get(o, "message")), sub) != NULL;
    }
    cr_assert(found, "%s: want %s \"%s\", got %s", text, field, sub, s);
    free(s);
    json_decref(e);
}

Test(admin_valid, accepts_complete_and_minimal_bodies)
{
    valid(TABLE, "{\"id\":\"a\"}", ADMIN_CREATE);
    valid(TABLE,
          "{\"id\":\"a.b~c-d\",\"name\":\"\\u00e9\\u00e9\\u00e9\",\"n\":-5,\"colour\":\"green\","
          "\"tags\":[\"x\",\"y\"],\"inner\":{\"items\":[{\"uri\":\"sip:a@b\",\"flag\":true}]}}",
          ADMIN_CREATE);
    valid(TABLE, "{\"name\":null,\"inner\":null}", ADMIN_PATCH);
    valid(TABLE, "{}", ADMIN_PATCH);
}

Test(admin_valid, body_must_be_an_object)
{
    invalid(TABLE, "[1]", ADMIN_CREATE, "(body)", "must be a JSON object");
    invalid(TABLE, "\"x\"", ADMIN_PATCH, "(body)", "must be a JSON object");
    invalid(TABLE, "null", ADMIN_CREATE, "(body)", "must be a JSON object");
}

Test(admin_valid, required_unknown_immutable_null)
{
    invalid(TABLE, "{}", ADMIN_CREATE, "id", "is required");
    invalid(TABLE, "{\"id\":\"a\",\"extra\":1}", ADMIN_CREATE, "extra", "unknown field");
    invalid(TABLE, "{\"id\":\"a\"}", ADMIN_PATCH, "id", "cannot be changed");
    invalid(TABLE, "{\"id\":\"a\",\"n\":null}", ADMIN_CREATE, "n", "must not be null");
    invalid(TABLE, "{\"id\":null}", ADMIN_CREATE, "id", "must not be null");
}

Test(admin_valid, types)
{
    invalid(TABLE, "{\"id\":1}", ADMIN_CREATE, "id", "must be a string");
    invalid(TABLE, "{\"id\":\"a\",\"n\":\"1\"}", ADMIN_CREATE, "n", "must be an integer");
    invalid(TABLE, "{\"id\":\"a\",\"n\":1.5}", ADMIN_CREATE, "n", "must be an integer");
    invalid(TABLE, "{\"id\":\"a\",\"n\":true}", ADMIN_CREATE, "n", "must be an integer");
    invalid(TABLE, "{\"id\":\"a\",\"tags\":\"x\"}", ADMIN_CREATE, "tags", "must be an array");
    invalid(TABLE, "{\"id\":\"a\",\"tags\":[1]}", ADMIN_CREATE, "tags[0]", "must be a string");
    invalid(TABLE, "{\"id\":\"a\",\"inner\":[]}", ADMIN_CREATE, "inner", "must be a JSON object");
    invalid(TABLE, "{\"id\":\"a\",\"inner\":{\"items\":[{\"uri\":\"sip:a@b\",\"flag\":1}]}}",
            ADMIN_CREATE, "inner.items[0].flag", "must be true or false");
}

Test(admin_valid, lengths_ranges_and_choices)
{
    invalid(TABLE, "{\"id\":\"\"}", ADMIN_CREATE, "id", "1 to 8 bytes");
    invalid(TABLE, "{\"id\":\"abcdefghi\"}", ADMIN_CREATE, "id", "1 to 8 bytes");
    valid(TABLE, "{\"id\":\"abcdefgh\"}", ADMIN_CREATE);
    /* Characters, not bytes: three two-byte characters fit, four do not. */
    invalid(TABLE, "{\"name\":\"\\u00e9\\u00e9\\u00e9\\u00e9\"}", ADMIN_PATCH, "name",
            "1 to 3 characters");
    invalid(TABLE, "{\"n\":6}", ADMIN_PATCH, "n", "between -5 and 5");
    invalid(TABLE, "{\"n\":-6}", ADMIN_PATCH, "n", "between -5 and 5");
    invalid(TABLE, "{\"n\":99999999999999999}", ADMIN_PATCH, "n", "between -5 and 5");
    invalid(TABLE, "{\"colour\":\"blue\"}", ADMIN_PATCH, "colour", "one of: red, green");
    invalid(TABLE, "{\"tags\":[\"a\",\"b\",\"c\"]}", ADMIN_PATCH, "tags", "0 to 2 items");
    invalid(TABLE, "{\"tags\":[\"a\",\"a\"]}", ADMIN_PATCH, "tags[1]", "repeats");
    invalid(TABLE, "{\"tags\":[\"abcde\"]}", ADMIN_PATCH, "tags[0]", "1 to 4 bytes");
    invalid(TABLE, "{\"tags\":[\"a b\"]}", ADMIN_PATCH, "tags[0]", "scope token");
}

Test(admin_valid, nested_paths_and_required_members)
{
    invalid(TABLE, "{\"inner\":{}}", ADMIN_PATCH, "inner.items", "is required");
    invalid(TABLE, "{\"inner\":{\"items\":[]}}", ADMIN_PATCH, "inner.items", "1 to 3 items");
    invalid(TABLE, "{\"inner\":{\"items\":[{\"uri\":\"sip:a@b\"},{\"x\":1}]}}", ADMIN_PATCH,
            "inner.items[1].x", "unknown field");
    invalid(TABLE, "{\"inner\":{\"items\":[{\"uri\":\"sip:a@b\"},{\"x\":1}]}}", ADMIN_PATCH,
            "inner.items[1].uri", "is required");
    invalid(TABLE, "{\"inner\":{\"items\":[{\"uri\":\"http://x\"}]}}", ADMIN_PATCH,
            "inner.items[0].uri", "sip:, sips: or tel:");
}

Test(admin_valid, control_characters_are_refused_everywhere)
{
    invalid(TABLE, "{\"name\":\"a\\nb\"}", ADMIN_PATCH, "name", "control characters");
    invalid(TABLE, "{\"name\":\"a\\u007f\"}", ADMIN_PATCH, "name", "control characters");
    invalid(TABLE, "{\"name\":\"a\\u0085\"}", ADMIN_PATCH, "name", "control characters");
    valid(TABLE, "{\"name\":\"a'b\"}", ADMIN_PATCH);
}

Test(admin_valid, errors_are_capped)
{
    char body[2000] = "{";
    for (int i = 0; i < 40; i++)
        snprintf(body + strlen(body), sizeof(body) - strlen(body), "%s\"x%d\":1", i ? "," : "", i);
    strcat(body, "}");
    json_t *e = errors_of(TABLE, body, ADMIN_CREATE);
    cr_assert_eq(json_array_size(e), ADMIN_MAX_ERRORS);
    json_decref(e);
}

static void param(const struct admin_field *f, const char *value, bool ok, const char *sub)
{
    json_t *out = json_object(), *errors = json_array();
    bool got = admin_validate_param(f, value, out, errors);
    const char *m = json_string_value(json_object_get(json_array_get(errors, 0), "message"));
    cr_assert_eq(got, ok, "%s=%s: %s", f->name, value, m ? m : "accepted");
    if (ok)
        cr_assert_not_null(json_object_get(out, f->name));
    else
        cr_assert(m && strstr(m, sub), "%s=%s: %s lacks %s", f->name, value, m, sub);
    json_decref(out);
    json_decref(errors);
}

Test(admin_valid, query_parameters)
{
    const struct admin_field *n = admin_field_find(TABLE, "n");
    param(n, "5", true, NULL);
    param(n, "6", false, "between");
    param(n, "-1", false, "decimal integer");
    param(n, "1e2", false, "decimal integer");
    param(n, "", false, "decimal integer");
    param(n, "9999999999999999999", false, "decimal integer");
    const struct admin_field *c = admin_field_find(TABLE, "colour");
    param(c, "red", true, NULL);
    param(c, "Red", false, "one of");
    const struct admin_field *id = admin_field_find(TABLE, "id");
    param(id, "x';--", false, "letters, digits");
    param(id, "\xff", false, "UTF-8");
    static const struct admin_field b = {"b", AT_BOOL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL};
    param(&b, "true", true, NULL);
    param(&b, "1", false, "true or false");
}

Test(admin_valid, form_checks)
{
    cr_assert_null(admin_check_impu("sip:alice@home1.net;user=phone"));
    cr_assert_null(admin_check_impu("tel:+4930123"));
    cr_assert_not_null(admin_check_impu("SIP:alice@home1.net"));
    cr_assert_not_null(admin_check_impu("sip:"));
    cr_assert_not_null(admin_check_impu("sip:a b@c"));
    cr_assert_not_null(admin_check_impu("sip:<a@b>"));
    cr_assert_null(admin_check_realm("home1.net"));
    cr_assert_not_null(admin_check_realm("-home1.net"));
    cr_assert_not_null(admin_check_realm("home1.net."));
    cr_assert_not_null(admin_check_realm("home_1.net"));
    cr_assert_null(admin_check_pool_name("anon-1.x_y"));
    cr_assert_not_null(admin_check_pool_name("Anon"));
    cr_assert_not_null(admin_check_pool_name("_anon"));
    cr_assert_null(admin_check_client_id("a.b_c~d-E9"));
    cr_assert_not_null(admin_check_client_id("a b"));
    cr_assert_not_null(admin_check_client_id("a'"));
    cr_assert_null(admin_check_redirect("https://wwsf.home1.net/cb?x=1"));
    cr_assert_null(admin_check_redirect("http://127.0.0.1:8080/cb"));
    cr_assert_null(admin_check_redirect("http://[::1]/cb"));
    cr_assert_null(admin_check_redirect("http://localhost/cb"));
    cr_assert_not_null(admin_check_redirect("http://wwsf.home1.net/cb"));
    cr_assert_not_null(admin_check_redirect("https://wwsf.home1.net/cb#frag"));
    cr_assert_not_null(admin_check_redirect("https://user@wwsf.home1.net/cb"));
    cr_assert_not_null(admin_check_redirect("https:///cb"));
    cr_assert_not_null(admin_check_redirect("https://h:99999/"));
    cr_assert_not_null(admin_check_redirect("javascript:alert(1)"));
    cr_assert_null(admin_check_origin("https://wwsf.home1.net"));
    cr_assert_null(admin_check_origin("https://wwsf.home1.net:8443"));
    cr_assert_null(admin_check_origin("http://localhost:3000"));
    cr_assert_not_null(admin_check_origin("https://wwsf.home1.net/"));
    cr_assert_not_null(admin_check_origin("http://wwsf.home1.net"));
    cr_assert_null(admin_check_scope("ims.lease"));
    cr_assert_not_null(admin_check_scope("a\"b"));
    cr_assert_not_null(admin_check_scope("a\\b"));
    cr_assert_null(admin_check_uuid("0b6f4a1e-8d3c-4c9e-9a51-2f0e6f7d8c9b"));
    cr_assert_not_null(admin_check_uuid("0b6f4a1e8d3c4c9e9a512f0e6f7d8c9b"));
    cr_assert_not_null(admin_check_uuid("0b6f4a1e-8d3c-4c9e-9a51-2f0e6f7d8c9z"));
    cr_assert_null(admin_check_time("2025-01-31T12:00:00Z"));
    cr_assert_null(admin_check_time("2025-01-31T12:00:00.123+02:00"));
    cr_assert_not_null(admin_check_time("2025-13-31T12:00:00Z"));
    cr_assert_not_null(admin_check_time("2025-01-31 12:00:00Z"));
    cr_assert_not_null(admin_check_time("2025-01-31T12:00:00"));
    cr_assert_not_null(admin_check_time("2025-01-31T12:00:00Z'; DROP TABLE x"));
    cr_assert_null(admin_check_cursor("MTIz"));
    cr_assert_not_null(admin_check_cursor("MT=z"));
    cr_assert_not_null(admin_check_username("a b"));
    cr_assert_null(admin_check_password("correct horse battery"));
}

Test(admin_valid, identity_table)
{
    valid(admin_identity_fields,
          "{\"issuer\":\"local\",\"subject\":\"alice\",\"display_name\":\"Alice O'Brien\","
          "\"password\":\"correct horse\",\"ims\":{\"impi\":\"alice@home1.net\",\"realm\":"
          "\"home1.net\",\"impus\":[{\"uri\":\"sip:alice@home1.net\"},{\"uri\":\"tel:+1\","
          "\"barred\":true}],\"default_impu\":\"sip:alice@home1.net\"}}",
          ADMIN_CREATE);
    invalid(admin_identity_fields,
            "{\"issuer\":\"local\",\"subject\":\"a\",\"password\":\"short\"}", ADMIN_CREATE,
            "password", "8 to 1024 bytes");
    invalid(admin_identity_fields,
            "{\"issuer\":\"local\",\"subject\":\"a\",\"ims\":{\"impi\":\"x'; DROP TABLE impus; "
            "--\",\"realm\":\"r\",\"impus\":[{\"uri\":\"sip:a@r\"}],\"default_impu\":\"sip:a@r\"}}",
            ADMIN_CREATE, "ims.impi", "whitespace");
    invalid(admin_identity_fields, "{\"subject\":\"b\"}", ADMIN_PATCH, "subject",
            "cannot be changed");
    invalid(admin_identity_fields, "{\"status\":\"gone\"}", ADMIN_PATCH, "status", "one of");
}

Test(admin_valid, client_table)
{
    valid(admin_client_fields,
          "{\"client_id\":\"portal\",\"name\":\"Portal\",\"grant_types\":[\"authorization_code\","
          "\"refresh_token\"],\"redirect_uris\":[\"https://wwsf.home1.net/cb\"],\"scopes\":"
          "[\"ims\"],\"allowed_origins\":[\"https://wwsf.home1.net\"],\"audience\":"
          "\"epcscf.home1.net\",\"token_lifetime_s\":600}",
          ADMIN_CREATE);
    invalid(admin_client_fields,
            "{\"client_id\":\"p\",\"name\":\"P\",\"grant_types\":[\"password\"],"
            "\"audience\":\"a\"}",
            ADMIN_CREATE, "grant_types[0]", "one of");
    invalid(admin_client_fields, "{\"token_lifetime_s\":10}", ADMIN_PATCH, "token_lifetime_s",
            "between 30 and 86400");
    invalid(admin_client_fields, "{\"jwks\":{\"keys\":[{\"kty\":\"oct\",\"k\":\"AAAA\"}]}}",
            ADMIN_PATCH, "jwks", "JWKS");
    invalid(admin_client_fields, "{\"jwks\":[]}", ADMIN_PATCH, "jwks", "JSON object");
    invalid(admin_client_fields, "{\"token_endpoint_auth_method\":\"none\"}", ADMIN_PATCH,
            "token_endpoint_auth_method", "cannot be changed");
    invalid(admin_client_fields, "{\"client_secret\":\"x\"}", ADMIN_PATCH, "client_secret",
            "unknown field");
}
