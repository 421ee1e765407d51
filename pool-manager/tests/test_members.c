/*
 * Bulk member import (patterns and CSV, with progress), member disable/enable, pool update,
 * and the database handle's resilience (deadlock retry, reconnect after the server ended
 * the session), against the dev stack's real PostgreSQL; each test in a fresh database.
 */
#include "imspool/imspool.h"
#include "ims_common/testdb.h"

#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char db_url[512], db_name[64];
static int64_t clock_ms = 1900000000000LL;
static struct imspool *p;

static int64_t test_clock(void *arg)
{
    return *(int64_t *)arg;
}

static void setup(void)
{
    static int seq;
    char err[512], d[512];
    snprintf(db_name, sizeof(db_name), "imspool_mem_%d_%d", (int)getpid(), seq++);
    cr_assert_eq(ims_testdb_create(db_name, db_url, sizeof(db_url), err, sizeof(err)), 0, "%s",
                 err);
    cr_assert_eq(imspool_migrate(db_url, NULL, NULL, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    struct imspool_opts opts = {.db_url = db_url, .clock = test_clock, .clock_arg = &clock_ms};
    cr_assert_eq(imspool_open(&p, &opts, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    struct imspool_pool_spec s = {"csv", "home1.net", 600, 300, 1};
    cr_assert_eq(imspool_pool_create(p, &s, d, sizeof(d)), IMSPOOL_OK, "%s", d);
}

static void teardown(void)
{
    imspool_close(p);
    p = NULL;
    ims_testdb_drop(db_name);
}

TestSuite(members, .init = setup, .fini = teardown, .timeout = 180);

static long members_of(const char *pool)
{
    struct imspool_stats st;
    char d[512];
    cr_assert_eq(imspool_pool_stats(p, pool, &st, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    return st.free + st.leased + st.quarantined + st.disabled;
}

/* A read-only stream over a copy of text[0..n) (the copy lives until the next call). */
static FILE *text_file(const char *text, size_t n)
{
    static char buf[4096];
    cr_assert(n <= sizeof(buf));
    memcpy(buf, text, n);
    FILE *f = fmemopen(buf, n, "r");
    cr_assert_not_null(f);
    return f;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static enum imspool_result add_csv(const char *text, long *added, char *d, size_t dlen)
{
    FILE *f = text_file(text, strlen(text));
    enum imspool_result r = imspool_members_add_csv(p, "csv", f, NULL, NULL, added, d, dlen);
    fclose(f);
    return r;
}

Test(members, csv_import_with_header_quotes_and_crlf)
{
    char d[512];
    long added = 0;
    cr_assert_eq(add_csv("IMPU,IMPI\r\n"
                         "sip:c1@home1.net,c1@home1.net\r\n"
                         "\r\n"
                         "\"sip:c2@home1.net;x=a,b\",\"c\\2\"\"@home1.net\"\r\n"
                         "tel:+4930123,c3@home1.net",
                         &added, d, sizeof(d)),
                 IMSPOOL_OK, "%s", d);
    cr_assert_eq(added, 3);
    cr_assert_eq(members_of("csv"), 3);
    /* The quoted IMPU and the IMPI with a backslash arrived intact. */
    struct imspool_lease l;
    cr_assert_eq(imspool_member_set_enabled(p, "csv", "sip:c1@home1.net", 0, d, sizeof(d)),
                 IMSPOOL_OK, "%s", d);
    cr_assert_eq(imspool_member_set_enabled(p, "csv", "tel:+4930123", 0, d, sizeof(d)), IMSPOOL_OK);
    cr_assert_eq(imspool_allocate(p, "csv", "u", 0, &l, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    cr_assert_str_eq(l.impu, "sip:c2@home1.net;x=a,b");
    cr_assert_str_eq(l.impi, "c\\2\"@home1.net");
    /* Without a header the order is impi,impu. */
    cr_assert_eq(add_csv("c4@home1.net,sip:c4@home1.net\n", &added, d, sizeof(d)), IMSPOOL_OK, "%s",
                 d);
    cr_assert_eq(members_of("csv"), 4);
}

Test(members, csv_bad_input_writes_nothing)
{
    static const struct {
        const char *text, *expect; /* expect: a fragment of the detail */
        enum imspool_result r;
    } cases[] = {
        {"impi,impu\nc1@h,sip:c1@h\nc2@h,sip:c2@h,extra\n", "line 3", IMSPOOL_ERR_INVALID_ARG},
        {"c1@h,sip:c1@h\nc2@h\n", "line 2: two fields", IMSPOOL_ERR_INVALID_ARG},
        {"c1@h,sip:c1@h\nc2@h,http://x\n", "line 2: IMPU", IMSPOOL_ERR_INVALID_ARG},
        {"c1@h,sip:c1@h\nc 2@h,sip:c2@h\n", "line 2: IMPI", IMSPOOL_ERR_INVALID_ARG},
        {"c1@h,\"sip:c1@h\n", "line 1: unterminated", IMSPOOL_ERR_INVALID_ARG},
        {"c1@h,\"sip:c1@h\"x\n", "line 1: text after", IMSPOOL_ERR_INVALID_ARG},
        {"c1@h,si\"p:c1@h\n", "line 1: quote inside", IMSPOOL_ERR_INVALID_ARG},
        {"c1@h,sip:<c1@h>\n", "line 1: IMPU", IMSPOOL_ERR_INVALID_ARG},
        {"\n\n", "no member", IMSPOOL_ERR_INVALID_ARG},
        {"c1@h,sip:c1@h\nc2@h,sip:c1@h\n", "already exists", IMSPOOL_ERR_DUPLICATE},
        {"c1@h,sip:c1@h\nc2@h,SIP:c1@H\n", "IMPU", IMSPOOL_ERR_INVALID_ARG},
        {"c1@h,sip:c1@h\nc2@h,sip:c1@H\n", "already exists", IMSPOOL_ERR_DUPLICATE},
        {"x');DROP/**/TABLE/**/pool_members;--,sip:x@h\n", "", IMSPOOL_OK},
    };
    char d[512];
    long added = -1, before = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cr_expect_eq(add_csv(cases[i].text, &added, d, sizeof(d)), cases[i].r, "case %zu: %s", i,
                     d);
        cr_expect(strstr(d, cases[i].expect) != NULL, "case %zu: '%s' lacks '%s'", i, d,
                  cases[i].expect);
        long now = members_of("csv");
        cr_expect_eq(now, before + (cases[i].r == IMSPOOL_OK ? 1 : 0), "case %zu wrote", i);
        before = now;
    }
    /* A NUL byte anywhere. */
    FILE *f = text_file("c1@h,sip:c1@h\0\n", 15);
    cr_assert_eq(imspool_members_add_csv(p, "csv", f, NULL, NULL, &added, d, sizeof(d)),
                 IMSPOOL_ERR_INVALID_ARG);
    fclose(f);
    f = text_file("c9@h,sip:c9@h\n", 14);
    cr_assert_eq(imspool_members_add_csv(p, "nope", f, NULL, NULL, &added, d, sizeof(d)),
                 IMSPOOL_ERR_POOL_UNKNOWN);
    fclose(f);
    cr_assert_eq(members_of("csv"), before);
}

struct progress_log {
    int calls, phase;
    long done, total;
    bool monotonic;
};

static void on_progress(int phase, long done, long total, void *arg)
{
    struct progress_log *l = arg;
    if (phase < l->phase || (phase == l->phase && done < l->done))
        l->monotonic = false;
    l->calls++;
    l->phase = phase;
    l->done = done;
    l->total = total;
}

Test(members, pattern_import_of_100k_reports_progress)
{
    char d[512];
    long added = 0;
    struct progress_log log = {.monotonic = true};
    cr_assert_eq(imspool_members_add_progress(p, "csv", "sip:big-{000000..099999}@home1.net",
                                              "big-{000000..099999}@home1.net", on_progress, &log,
                                              &added, d, sizeof(d)),
                 IMSPOOL_OK, "%s", d);
    cr_assert_eq(added, 100000);
    cr_assert_eq(members_of("csv"), 100000);
    cr_assert(log.monotonic);
    cr_assert(log.calls >= 10 && log.calls <= 110, "%d progress calls", log.calls);
    cr_assert(log.phase == 2 && log.done == 100000 && log.total == 100000);
    /* One more overlapping member: nothing of the second import is written. */
    cr_assert_eq(imspool_members_add_progress(p, "csv", "sip:big-{099999..100001}@home1.net", "x",
                                              NULL, NULL, &added, d, sizeof(d)),
                 IMSPOOL_ERR_DUPLICATE, "%s", d);
    cr_assert_eq(members_of("csv"), 100000);
}

Test(members, disable_and_enable)
{
    char d[512];
    long added;
    cr_assert_eq(imspool_members_add(p, "csv", "sip:d-{1..2}@home1.net", "d@home1.net", &added, d,
                                     sizeof(d)),
                 IMSPOOL_OK);
    cr_assert_eq(imspool_member_set_enabled(p, "csv", "sip:d-1@home1.net", 0, d, sizeof(d)),
                 IMSPOOL_OK, "%s", d);
    struct imspool_lease a, b;
    cr_assert_eq(imspool_allocate(p, "csv", "u1", 0, &a, d, sizeof(d)), IMSPOOL_OK);
    cr_assert_str_eq(a.impu, "sip:d-2@home1.net");
    cr_assert_eq(imspool_allocate(p, "csv", "u2", 0, &b, d, sizeof(d)), IMSPOOL_ERR_POOL_EXHAUSTED);
    struct imspool_stats st;
    cr_assert_eq(imspool_pool_stats(p, "csv", &st, d, sizeof(d)), IMSPOOL_OK);
    cr_assert(st.disabled == 1 && st.leased == 1 && st.free == 0);
    /* Disabling a leased member leaves its lease alone. */
    cr_assert_eq(imspool_member_set_enabled(p, "csv", "sip:d-2@home1.net", 0, d, sizeof(d)),
                 IMSPOOL_OK);
    cr_assert_eq(imspool_renew(p, a.id, 0, &b, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    cr_assert_eq(imspool_member_set_enabled(p, "csv", "sip:d-1@home1.net", 1, d, sizeof(d)),
                 IMSPOOL_OK);
    cr_assert_eq(imspool_allocate(p, "csv", "u2", 0, &b, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    cr_assert_str_eq(b.impu, "sip:d-1@home1.net");
    cr_assert_eq(imspool_member_set_enabled(p, "csv", "sip:none@home1.net", 0, d, sizeof(d)),
                 IMSPOOL_ERR_MEMBER_UNKNOWN);
    cr_assert_eq(imspool_member_set_enabled(p, "nope", "sip:d-1@home1.net", 0, d, sizeof(d)),
                 IMSPOOL_ERR_POOL_UNKNOWN);
    long v = -1;
    cr_assert_eq(imspool_check(p, &v, NULL, NULL, d, sizeof(d)), IMSPOOL_OK);
    cr_assert_eq(v, 0);
}

Test(members, pool_update)
{
    char d[512];
    long added;
    cr_assert_eq(imspool_members_add(p, "csv", "sip:u-{1..2}@home1.net", "u@home1.net", &added, d,
                                     sizeof(d)),
                 IMSPOOL_OK);
    struct imspool_pool_spec up = {"csv", NULL, 60, -1, 2};
    cr_assert_eq(imspool_pool_update(p, &up, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    struct imspool_lease a, b;
    cr_assert_eq(imspool_allocate(p, "csv", "u1", 0, &a, d, sizeof(d)), IMSPOOL_OK);
    cr_assert_eq(a.expires_ms, clock_ms + 60 * 1000, "the new lease TTL applies");
    cr_assert_eq(imspool_allocate(p, "csv", "u1", 0, &b, d, sizeof(d)), IMSPOOL_OK,
                 "the new cap of 2 applies: %s", d);
    struct imspool_pool_spec bad[] = {{"csv", NULL, 0, -1, -1},
                                      {"csv", NULL, -1, 99999999, -1},
                                      {"csv", "not a realm", -1, -1, -1},
                                      {"csv", NULL, -1, -1, 0}};
    for (size_t i = 0; i < 4; i++)
        cr_expect_eq(imspool_pool_update(p, &bad[i], d, sizeof(d)), IMSPOOL_ERR_INVALID_ARG,
                     "case %zu: %s", i, d);
    struct imspool_pool_spec none = {"nope", NULL, 60, -1, -1};
    cr_assert_eq(imspool_pool_update(p, &none, d, sizeof(d)), IMSPOOL_ERR_POOL_UNKNOWN);
}

/* ---- resilience ---- */

struct release_job {
    const char *lease;
    enum imspool_result r;
    char detail[512];
};

static void *release_thread(void *arg)
{
    struct release_job *j = arg;
    struct imspool *q;
    struct imspool_opts opts = {.db_url = db_url, .clock = test_clock, .clock_arg = &clock_ms};
    if (imspool_open(&q, &opts, j->detail, sizeof(j->detail)) != IMSPOOL_OK) {
        j->r = IMSPOOL_ERR_DB_UNAVAILABLE;
        return NULL;
    }
    j->r = imspool_release(q, j->lease, "test", j->detail, sizeof(j->detail));
    struct imspool_health h;
    imspool_health(q, &h);
    if (j->r == IMSPOOL_OK && h.db_retries < 1)
        snprintf(j->detail, sizeof(j->detail), "released without a retry");
    imspool_close(q);
    return NULL;
}

static PGresult *must(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(res);
    cr_assert(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s", sql, PQerrorMessage(c));
    return res;
}

/*
 * A deadlock: another session locks the member row, the release locks the lease row and
 * waits for the member, then the other session asks for the lease row. PostgreSQL aborts
 * the release (it waited first); the library runs it again and it succeeds.
 */
Test(members, release_survives_a_deadlock)
{
    char d[512];
    long added;
    cr_assert_eq(
        imspool_members_add(p, "csv", "sip:dl@home1.net", "dl@home1.net", &added, d, sizeof(d)),
        IMSPOOL_OK);
    struct imspool_lease l;
    cr_assert_eq(imspool_allocate(p, "csv", "u1", 0, &l, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    PGconn *c = PQconnectdb(db_url);
    cr_assert_eq(PQstatus(c), CONNECTION_OK);
    PQclear(must(c, "BEGIN"));
    PQclear(must(c, "UPDATE pool_members SET updated_at = updated_at"));
    struct release_job job = {.lease = l.id};
    pthread_t t;
    pthread_create(&t, NULL, release_thread, &job);
    /* Wait until the release waits for our member-row lock. */
    for (int i = 0; i < 200; i++) {
        PGresult *w = must(c, "SELECT count(*) FROM pg_locks WHERE NOT granted");
        bool waiting = atoi(PQgetvalue(w, 0, 0)) > 0;
        PQclear(w);
        if (waiting)
            break;
        sleep_ms(20);
    }
    char sql[160];
    snprintf(sql, sizeof(sql), "UPDATE leases SET renew_count = renew_count WHERE id = '%s'", l.id);
    PQclear(must(c, sql)); /* completes once PostgreSQL aborted the release */
    PQclear(must(c, "COMMIT"));
    pthread_join(t, NULL);
    PQfinish(c);
    cr_assert_eq(job.r, IMSPOOL_OK, "%s: %s", imspool_strerror(job.r), job.detail);
    cr_assert_str_eq(job.detail, "", "%s", job.detail);
    cr_assert_eq(imspool_release(p, l.id, NULL, d, sizeof(d)), IMSPOOL_ERR_LEASE_RELEASED);
}

Test(members, reconnects_after_the_server_ended_the_session)
{
    char d[512];
    long added;
    cr_assert_eq(imspool_members_add(p, "csv", "sip:rc-{1..3}@home1.net", "rc@home1.net", &added, d,
                                     sizeof(d)),
                 IMSPOOL_OK);
    /* Allocation's statement is prepared in the first session... */
    struct imspool_lease first;
    cr_assert_eq(imspool_allocate(p, "csv", "u0", 0, &first, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    PGconn *c = PQconnectdb(db_url);
    cr_assert_eq(PQstatus(c), CONNECTION_OK);
    PQclear(must(c, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"));
    PQfinish(c);
    sleep_ms(100);
    /* ...and again in the new one. */
    struct imspool_lease l;
    cr_assert_eq(imspool_allocate(p, "csv", "u1", 0, &l, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    struct imspool_health h;
    imspool_health(p, &h);
    cr_assert_eq(h.db_reconnects, 1);
    cr_assert_eq(members_of("csv"), 3);
}
