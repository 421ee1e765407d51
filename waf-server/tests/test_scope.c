/* Scope lists (RFC 6749 3.3: space-separated, case-sensitive) and lease holder names. */
#include "clients.h"
#include "ims.h"

#include <criterion/criterion.h>
#include <string.h>

Test(scope, has_matches_whole_tokens_only)
{
    cr_assert(waf_scope_has("openid ims", "ims"));
    cr_assert(waf_scope_has("  ims  ", "ims"));
    cr_assert_not(waf_scope_has("imsx openid", "ims"));
    cr_assert_not(waf_scope_has("IMS", "ims"));
    cr_assert_not(waf_scope_has("ims.lease", "ims"));
    cr_assert_not(waf_scope_has("", "ims"));
    cr_assert_not(waf_scope_has("ims", ""));
}

Test(scope, subset)
{
    cr_assert(waf_scope_subset("ims", "openid ims"));
    cr_assert(waf_scope_subset("ims openid", "openid ims"));
    cr_assert(waf_scope_subset("", "ims"), "nothing requested is within anything");
    cr_assert(waf_scope_subset("   ", "ims"));
    cr_assert_not(waf_scope_subset("ims admin", "openid ims"));
    cr_assert_not(waf_scope_subset("im", "ims"));
    char longest[300];
    memset(longest, 'a', sizeof(longest) - 1);
    longest[sizeof(longest) - 1] = '\0';
    cr_assert_not(waf_scope_subset(longest, longest), "scope tokens over 128 bytes are refused");
}

Test(holder, bounded_and_reveals_no_subject)
{
    char h[200], h2[200], h3[200];
    waf_ims_holder("portal", 'u', "alice@example.com", h);
    waf_ims_holder("portal", 'u', "alice@example.com", h2);
    waf_ims_holder("portal", 'a', "alice@example.com", h3);
    cr_assert_str_eq(h, h2, "the same user gets the same holder (stickiness)");
    cr_assert_str_neq(h, h3, "users and anonymous sessions never share a holder");
    cr_assert_null(strstr(h, "alice"));
    cr_assert_eq(strncmp(h, "portal/u:", 9), 0, "%s", h);
    cr_assert_eq(strlen(h), 9 + 43);
    char id[200];
    memset(id, 'c', 180);
    id[180] = '\0';
    waf_ims_holder(id, 'u', "x", h);
    cr_assert_leq(strlen(h), 199, "client ids are cut, the name stays within the schema's 256");
}
