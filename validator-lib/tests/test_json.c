/* The per-request JSON reader: grammar, escapes, UTF-8, duplicates, limits. */
#include "../src/json.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static enum ims_json_status parse(const char *s, struct ims_json_object *o)
{
    return ims_json_parse_object((const uint8_t *)s, strlen(s), o);
}

Test(json, accepts_valid_objects_and_reads_members)
{
    static struct ims_json_object o;
    cr_assert_eq(parse(" {\"a\" : \"x\\\"y\\u00e9\\ud83d\\ude00\", \"n\":-1.5e+3,\"t\":true,"
                       "\"f\":false,\"z\":null,\"arr\":[1,\"s\",{\"k\":[]}],\"o\":{}} \n",
                       &o),
                 IMS_JSON_OK);
    cr_assert_eq(o.n, 7);
    char buf[64];
    const struct ims_json_value *a = ims_json_get(&o, "a");
    cr_assert_not_null(a);
    cr_assert_eq(ims_json_string(a, buf, sizeof(buf)), strlen("x\"y\xc3\xa9\xf0\x9f\x98\x80"));
    cr_assert_str_eq(buf, "x\"y\xc3\xa9\xf0\x9f\x98\x80");
    double d;
    bool is_int;
    cr_assert(ims_json_number(ims_json_get(&o, "n"), &d, &is_int));
    cr_assert(d == -1500.0 && !is_int);
    cr_assert_eq(ims_json_get(&o, "t")->type, IMS_JSON_TRUE);
    cr_assert_eq(ims_json_get(&o, "arr")->type, IMS_JSON_ARRAY);
    cr_assert_null(ims_json_get(&o, "missing"));
    struct ims_json_iter it;
    struct ims_json_value v;
    int count = 0;
    ims_json_array_iter(ims_json_get(&o, "arr"), &it);
    while (ims_json_array_next(&it, &v))
        count++;
    cr_assert_eq(count, 3);
    cr_assert_eq(ims_json_string(a, buf, 4), SIZE_MAX, "does not fit");
}

Test(json, escaped_names_match_and_count_as_duplicates)
{
    static struct ims_json_object o;
    cr_assert_eq(parse("{\"\\u0069ss\":\"x\"}", &o), IMS_JSON_OK);
    cr_assert_not_null(ims_json_get(&o, "iss"));
    cr_assert_eq(parse("{\"iss\":\"a\",\"\\u0069ss\":\"b\"}", &o), IMS_JSON_DUPLICATE);
    cr_assert_eq(parse("{\"a\":1,\"a\":1}", &o), IMS_JSON_DUPLICATE);
    cr_assert_eq(parse("{\"x\":{\"b\":1,\"b\":2}}", &o), IMS_JSON_DUPLICATE);
}

Test(json, rejects)
{
    static struct ims_json_object o;
    static const char *syntax[] = {
        "",
        "{",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\":1,}",
        "{\"a\":1 \"b\":2}",
        "{a:1}",
        "{\"a\":01}",
        "{\"a\":1.}",
        "{\"a\":.5}",
        "{\"a\":1e}",
        "{\"a\":+1}",
        "{\"a\":tru}",
        "{\"a\":\"\\x\"}",
        "{\"a\":\"\\u12\"}",
        "{\"a\":\"\\u0000\"}",
        "{\"a\":\"\\ud800\"}",
        "{\"a\":\"\\udc00\"}",
        "{\"a\":\"\t\"}",
        "{\"a\":\"\xc3\"}",
        "{\"a\":\"\xc0\x80\"}",
        "{\"a\":\"\xed\xa0\x80\"}",
        "{\"a\":\"\xf5\x80\x80\x80\"}",
        "{\"a\":[1,]}",
        "{} {}",
        "{}x",
        "{\"a\":1}\x01",
    };
    for (size_t i = 0; i < sizeof(syntax) / sizeof(syntax[0]); i++)
        cr_expect_eq(parse(syntax[i], &o), IMS_JSON_SYNTAX, "case %zu: %s", i, syntax[i]);
    cr_assert_eq(parse("[1]", &o), IMS_JSON_NOT_OBJECT);
    cr_assert_eq(parse("\"s\"", &o), IMS_JSON_NOT_OBJECT);
    static const uint8_t nul[] = "{\"a\":1\0}";
    cr_assert_eq(ims_json_parse_object(nul, sizeof(nul) - 1, &o), IMS_JSON_SYNTAX);
}

Test(json, limits)
{
    static struct ims_json_object o;
    char deep[200] = "{\"a\":";
    for (int i = 0; i < 20; i++)
        strcat(deep, "[");
    for (int i = 0; i < 20; i++)
        strcat(deep, "]");
    strcat(deep, "}");
    cr_assert_eq(parse(deep, &o), IMS_JSON_LIMIT);
    char wide[2000] = "{";
    for (int i = 0; i < 65; i++)
        snprintf(wide + strlen(wide), sizeof(wide) - strlen(wide), "%s\"k%d\":1", i ? "," : "", i);
    strcat(wide, "}");
    cr_assert_eq(parse(wide, &o), IMS_JSON_LIMIT);
    char num[200] = "{\"n\":1";
    memset(num + 6, '0', 80);
    strcpy(num + 86, "}");
    cr_assert_eq(parse(num, &o), IMS_JSON_LIMIT);
}
