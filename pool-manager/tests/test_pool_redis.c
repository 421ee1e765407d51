/*
 * The Redis side of libimspool against real Redis and PostgreSQL: the lease event stream,
 * the per-pool counters and the expiry schedule; their rebuild from PostgreSQL after the
 * keys vanish; and degraded mode (Redis unreachable, killed and restarted), where every
 * call keeps working on PostgreSQL alone.
 *
 * The dev stack's Redis is shared with other tests running at the same time, so each test
 * uses its own key prefix and "flushes" by deleting its own keys; the restart test runs a
 * private redis-server. A FLUSHALL and a restart of a shared Redis are in tests/pool/
 * test-fault.sh, on a private stack.
 */
#include "imspool/imspool.h"
#include "ims_common/testdb.h"

#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char db_url[512], db_name[64], prefix[64];
static int64_t clock_ms = 1900000000000LL;
static struct imspool *p;
static redisContext *rc; /* the test's own view of Redis */
static int warnings, infos;
static char last_log[512];

static int64_t test_clock(void *arg)
{
    return *(int64_t *)arg;
}

static void on_log(int level, const char *line, void *arg)
{
    (void)arg;
    if (level == 1)
        warnings++;
    else
        infos++;
    snprintf(last_log, sizeof(last_log), "%s", line);
}

static redisContext *redis_connect(const char *url)
{
    char host[128] = "127.0.0.1";
    int port = 6379;
    cr_assert(sscanf(url, "redis://%127[^:]:%d", host, &port) == 2, "REDIS_URL %s", url);
    redisContext *c = redisConnect(host, port);
    cr_assert(c && !c->err, "cannot reach Redis at %s", url);
    return c;
}

static struct imspool *open_with(const char *redis_url)
{
    struct imspool *h;
    char d[512];
    struct imspool_opts opts = {.db_url = db_url,
                                .clock = test_clock,
                                .clock_arg = &clock_ms,
                                .redis_url = redis_url,
                                .redis_prefix = prefix,
                                .log = on_log};
    cr_assert_eq(imspool_open(&h, &opts, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    return h;
}

static void setup(void)
{
    static int seq;
    char err[512], d[512];
    snprintf(db_name, sizeof(db_name), "imspool_redis_%d_%d", (int)getpid(), seq);
    snprintf(prefix, sizeof(prefix), "t%d.%d:", (int)getpid(), seq++);
    cr_assert_eq(ims_testdb_create(db_name, db_url, sizeof(db_url), err, sizeof(err)), 0, "%s",
                 err);
    cr_assert_eq(imspool_migrate(db_url, NULL, NULL, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    const char *url = getenv("REDIS_URL");
    cr_assert_not_null(url, "REDIS_URL is not set (scripts/devstack up)");
    rc = redis_connect(url);
    p = open_with(url);
    struct imspool_pool_spec s = {"r", "home1.net", 60, 30, 2};
    cr_assert_eq(imspool_pool_create(p, &s, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    long added;
    cr_assert_eq(imspool_members_add(p, "r", "sip:r-{1..4}@home1.net", "r-{1..4}@home1.net", &added,
                                     d, sizeof(d)),
                 IMSPOOL_OK, "%s", d);
    warnings = infos = 0;
}

static void drop_keys(void);

static void teardown(void)
{
    imspool_close(p);
    p = NULL;
    drop_keys();
    redisFree(rc);
    ims_testdb_drop(db_name);
}

TestSuite(redis, .init = setup, .fini = teardown, .timeout = 120);

static redisReply *cmd(const char *fmt, const char *key_suffix)
{
    char key[160];
    snprintf(key, sizeof(key), "%s%s", prefix, key_suffix);
    redisReply *r = redisCommand(rc, fmt, key);
    cr_assert_not_null(r);
    return r;
}

/* Deletes the test's keys: what FLUSHALL does to them. */
static void drop_keys(void)
{
    static const char *const keys[] = {"events", "expiry", "epoch", "pool:r"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        freeReplyObject(cmd("DEL %s", keys[i]));
}

static long counter(const char *field)
{
    char key[160];
    snprintf(key, sizeof(key), "%spool:r", prefix);
    redisReply *r = redisCommand(rc, "HGET %s %s", key, field);
    cr_assert_not_null(r);
    long v = r->type == REDIS_REPLY_STRING ? atol(r->str) : -999;
    freeReplyObject(r);
    return v;
}

/* The counters equal what PostgreSQL says. */
static void counters_match_db(void)
{
    PGconn *c = PQconnectdb(db_url);
    cr_assert_eq(PQstatus(c), CONNECTION_OK);
    PGresult *res = PQexec(c, "SELECT count(*) FILTER (WHERE released_at IS NULL), count(*), "
                              "coalesce(sum(renew_count), 0), "
                              "count(*) FILTER (WHERE release_reason <> 'expired'), "
                              "count(*) FILTER (WHERE release_reason = 'expired') FROM leases");
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
    static const char *const fields[] = {"leased", "allocated", "renewed", "released", "expired"};
    for (int i = 0; i < 5; i++)
        cr_expect_eq(counter(fields[i]), atol(PQgetvalue(res, 0, i)), "counter %s", fields[i]);
    PQclear(res);
    res = PQexec(c, "SELECT count(*) FROM leases WHERE released_at IS NULL");
    long open = atol(PQgetvalue(res, 0, 0));
    PQclear(res);
    PQfinish(c);
    redisReply *z = cmd("ZCARD %s", "expiry");
    cr_expect_eq(z->integer, open, "expiry schedule holds every open lease");
    freeReplyObject(z);
    cr_expect_eq(counter("members"), 4);
}

/* The last event of the stream has these type and lease. */
static void last_event_is(const char *type, const char *lease)
{
    redisReply *r = cmd("XREVRANGE %s + - COUNT 1", "events");
    cr_assert(r->type == REDIS_REPLY_ARRAY && r->elements == 1, "no event");
    redisReply *fields = r->element[0]->element[1];
    const char *t = NULL, *l = NULL;
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        if (strcmp(fields->element[i]->str, "type") == 0)
            t = fields->element[i + 1]->str;
        if (strcmp(fields->element[i]->str, "lease") == 0)
            l = fields->element[i + 1]->str;
    }
    cr_expect_str_eq(t ? t : "(none)", type);
    if (lease)
        cr_expect_str_eq(l ? l : "(none)", lease);
    freeReplyObject(r);
}

Test(redis, events_counters_and_schedule_follow_each_call)
{
    char d[512];
    struct imspool_lease a, b, x;
    cr_assert_eq(imspool_allocate(p, "r", "u1", 0, &a, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    last_event_is("allocated", a.id);
    cr_assert_eq(counter("leased"), 1);
    cr_assert_eq(counter("allocated"), 1);
    redisReply *z = cmd("ZRANGE %s 0 -1 WITHSCORES", "expiry");
    cr_assert_eq(z->elements, 2);
    cr_assert_str_eq(z->element[0]->str, a.id);
    cr_assert_eq(atoll(z->element[1]->str), a.expires_ms);
    freeReplyObject(z);

    clock_ms += 10000;
    cr_assert_eq(imspool_renew(p, a.id, 100, &x, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    last_event_is("renewed", a.id);
    cr_assert_eq(counter("renewed"), 1);
    int64_t when = 0;
    cr_assert_eq(imspool_next_expiry(p, &when, d, sizeof(d)), IMSPOOL_OK);
    cr_assert_eq(when, clock_ms + 100000);

    cr_assert_eq(imspool_allocate(p, "r", "u2", 0, &b, d, sizeof(d)), IMSPOOL_OK);
    cr_assert_eq(imspool_release(p, a.id, "logout", d, sizeof(d)), IMSPOOL_OK, "%s", d);
    last_event_is("released", a.id);
    cr_assert_eq(counter("leased"), 1);
    cr_assert_eq(counter("released"), 1);
    cr_assert_eq(imspool_next_expiry(p, &when, d, sizeof(d)), IMSPOOL_OK);
    cr_assert_eq(when, b.expires_ms, "the released lease left the schedule");

    /* Expiry found by the sweeper, and inline by the allocator. */
    clock_ms = b.expires_ms;
    long n = 0;
    cr_assert_eq(imspool_sweep(p, &n, d, sizeof(d)), IMSPOOL_OK);
    cr_assert_eq(n, 1);
    last_event_is("expired", b.id);
    cr_assert_eq(imspool_allocate(p, "r", "u3", 0, &a, d, sizeof(d)), IMSPOOL_OK);
    clock_ms = a.expires_ms + 1;
    cr_assert_eq(imspool_allocate(p, "r", "u4", 0, &b, d, sizeof(d)), IMSPOOL_OK);
    redisReply *r = cmd("XREVRANGE %s + - COUNT 2", "events");
    cr_assert_eq(r->elements, 2);
    freeReplyObject(r);
    counters_match_db();
    cr_assert_eq(counter("expired"), 2, "the allocator's inline expiry is reported too");
    cr_assert_eq(imspool_next_expiry(p, &when, d, sizeof(d)), IMSPOOL_OK);
    cr_assert_eq(when, b.expires_ms);
    cr_assert_eq(warnings, 0, "%s", last_log);
}

Test(redis, vanished_keys_are_rebuilt_from_postgresql)
{
    char d[512];
    struct imspool_lease a, b;
    cr_assert_eq(imspool_allocate(p, "r", "u1", 0, &a, d, sizeof(d)), IMSPOOL_OK);
    cr_assert_eq(imspool_renew(p, a.id, 0, &b, d, sizeof(d)), IMSPOOL_OK);
    drop_keys(); /* FLUSHALL, as far as this test's keys go */
    cr_assert_eq(imspool_allocate(p, "r", "u2", 0, &b, d, sizeof(d)), IMSPOOL_OK);
    counters_match_db();
    cr_assert_eq(counter("leased"), 2);
    redisReply *e = cmd("GET %s", "epoch");
    cr_assert_eq(e->type, REDIS_REPLY_STRING, "the epoch marks the rebuild");
    freeReplyObject(e);
    /* A disabled member shows in the counters; a rebuild on request agrees. */
    cr_assert_eq(imspool_member_set_enabled(p, "r", "sip:r-4@home1.net", 0, d, sizeof(d)),
                 IMSPOOL_OK);
    cr_assert_eq(counter("disabled"), 1);
    cr_assert_eq(imspool_redis_rebuild(p, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    counters_match_db();
    cr_assert_eq(counter("disabled"), 1);
    /* Only the pool's counters gone (the epoch stays): rebuilt as well, not restarted
       from zero. */
    freeReplyObject(cmd("DEL %s", "pool:r"));
    struct imspool_lease c3;
    cr_assert_eq(imspool_allocate(p, "r", "u3", 0, &c3, d, sizeof(d)), IMSPOOL_OK);
    counters_match_db();
    cr_assert_eq(counter("leased"), 3);
    cr_assert_eq(imspool_release(p, c3.id, NULL, d, sizeof(d)), IMSPOOL_OK);
    /* Without any Redis key the schedule comes from PostgreSQL. */
    drop_keys();
    struct imspool *plain;
    struct imspool_opts opts = {.db_url = db_url, .clock = test_clock, .clock_arg = &clock_ms};
    cr_assert_eq(imspool_open(&plain, &opts, d, sizeof(d)), IMSPOOL_OK);
    int64_t when = 0;
    cr_assert_eq(imspool_next_expiry(plain, &when, d, sizeof(d)), IMSPOOL_OK);
    cr_assert_eq(when, a.expires_ms < b.expires_ms ? a.expires_ms : b.expires_ms);
    /* The default prefix holds the database name, so databases sharing a Redis do not
       share keys. */
    struct imspool *dflt;
    struct imspool_opts od = {.db_url = db_url, .redis_url = getenv("REDIS_URL")};
    cr_assert_eq(imspool_open(&dflt, &od, d, sizeof(d)), IMSPOOL_OK);
    cr_assert_eq(imspool_redis_rebuild(dflt, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    imspool_close(dflt);
    char key[160];
    snprintf(key, sizeof(key), "imspool:%s:pool:r", db_name);
    redisReply *rr = redisCommand(rc, "HGET %s leased", key);
    cr_assert(rr && rr->type == REDIS_REPLY_STRING && strcmp(rr->str, "2") == 0,
              "no counters under %s", key);
    freeReplyObject(rr);
    static const char *const dk[] = {"pool:r", "events", "expiry", "epoch"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(key, sizeof(key), "imspool:%s:%s", db_name, dk[i]);
        freeReplyObject(redisCommand(rc, "DEL %s", key));
    }
    cr_assert_eq(imspool_redis_rebuild(plain, d, sizeof(d)), IMSPOOL_ERR_INVALID_ARG);
    imspool_close(plain);
}

Test(redis, unreachable_redis_degrades_without_failing)
{
    char d[512];
    imspool_close(p);
    p = open_with("redis://127.0.0.1:1/0"); /* nothing listens on port 1 */
    struct imspool_lease a, b;
    cr_assert_eq(imspool_allocate(p, "r", "u1", 0, &a, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    cr_assert_eq(imspool_renew(p, a.id, 0, &b, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    cr_assert_eq(imspool_release(p, a.id, NULL, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    long n;
    cr_assert_eq(imspool_sweep(p, &n, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    int64_t when = -1;
    cr_assert_eq(imspool_next_expiry(p, &when, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    cr_assert_eq(when, 0, "no open lease");
    cr_assert_eq(warnings, 1, "one warning for the outage, not one per call");
    cr_assert(strstr(last_log, "degraded") != NULL, "%s", last_log);
    struct imspool_health h;
    imspool_health(p, &h);
    cr_assert(h.redis_configured && !h.redis_up && h.redis_failures >= 1);
    cr_assert_eq(imspool_redis_rebuild(p, d, sizeof(d)), IMSPOOL_ERR_DB_UNAVAILABLE);

    struct imspool *bad;
    struct imspool_opts o = {.db_url = db_url, .redis_url = "http://127.0.0.1:6379"};
    cr_assert_eq(imspool_open(&bad, &o, d, sizeof(d)), IMSPOOL_ERR_INVALID_ARG);
    o.redis_url = "redis://127.0.0.1:99999";
    cr_assert_eq(imspool_open(&bad, &o, d, sizeof(d)), IMSPOOL_ERR_INVALID_ARG);
}

/* ---- a private redis-server, killed and restarted under a live handle ---- */

/* A loopback port nothing listens on now (the kernel's choice). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
              getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static pid_t start_redis(int port)
{
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        execlp("redis-server", "redis-server", "--port", portstr, "--bind", "127.0.0.1", "--save",
               "", "--appendonly", "no", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100; i++) {
        redisContext *c = redisConnect("127.0.0.1", port);
        bool up = c && !c->err;
        redisFree(c);
        if (up) {
            cr_assert_eq(waitpid(pid, NULL, WNOHANG), 0, "our redis-server exited: port taken");
            return pid;
        }
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    cr_assert_fail("redis-server on port %d did not start", port);
    return -1;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

Test(redis, restart_of_redis_under_a_live_handle)
{
    char d[512], url[64];
    int port = free_port();
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
    pid_t srv = start_redis(port);
    imspool_close(p);
    p = open_with(url);
    redisFree(rc);
    rc = redis_connect(url);
    struct imspool_lease a, b, c;
    cr_assert_eq(imspool_allocate(p, "r", "u1", 0, &a, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    cr_assert_eq(counter("leased"), 1);

    kill(srv, SIGKILL); /* a crash: everything in it is gone */
    waitpid(srv, NULL, 0);
    cr_assert_eq(imspool_allocate(p, "r", "u2", 0, &b, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    cr_assert_eq(imspool_release(p, a.id, NULL, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    cr_assert_eq(warnings, 1, "%s", last_log);

    srv = start_redis(port);
    redisFree(rc);
    rc = redis_connect(url);
    sleep_ms(1100); /* the handle tries Redis again at most once a second */
    cr_assert_eq(imspool_allocate(p, "r", "u3", 0, &c, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    struct imspool_health h;
    imspool_health(p, &h);
    cr_assert(h.redis_up, "back after the restart");
    /* The calls made during the outage are in the rebuilt counters. */
    counters_match_db();
    cr_assert_eq(counter("allocated"), 3);
    cr_assert_eq(counter("released"), 1);
    /* The new Redis got the allocation, then the rebuild it triggered. */
    last_event_is("rebuilt", NULL);
    redisReply *r = cmd("XRANGE %s - + COUNT 1", "events");
    cr_assert_eq(r->elements, 1);
    cr_assert_str_eq(r->element[0]->element[1]->element[3]->str, c.id);
    freeReplyObject(r);
    kill(srv, SIGTERM);
    waitpid(srv, NULL, 0);
    redisFree(rc);
    rc = redis_connect(getenv("REDIS_URL"));
}

/* A sweep that ends more leases than one Redis round trip carries (256 events). */
Test(redis, a_large_sweep_reaches_redis_in_batches)
{
    char d[512];
    struct imspool_pool_spec s = {"big", "home1.net", 60, 0, 1};
    cr_assert_eq(imspool_pool_create(p, &s, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    long added;
    cr_assert_eq(imspool_members_add(p, "big", "sip:big-{000..299}@home1.net", "big@home1.net",
                                     &added, d, sizeof(d)),
                 IMSPOOL_OK, "%s", d);
    struct imspool_lease l;
    for (int i = 0; i < 300; i++) {
        char holder[16];
        snprintf(holder, sizeof(holder), "h%d", i);
        cr_assert_eq(imspool_allocate(p, "big", holder, 0, &l, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    }
    clock_ms += 61 * 1000;
    long n = 0;
    cr_assert_eq(imspool_sweep(p, &n, d, sizeof(d)), IMSPOOL_OK, "%s", d);
    cr_assert_eq(n, 300);
    char key[160];
    snprintf(key, sizeof(key), "%spool:big", prefix);
    redisReply *r = redisCommand(rc, "HMGET %s leased expired allocated", key);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 3);
    cr_assert_str_eq(r->element[0]->str, "0");
    cr_assert_str_eq(r->element[1]->str, "300");
    cr_assert_str_eq(r->element[2]->str, "300");
    freeReplyObject(r);
    redisReply *z = cmd("ZCARD %s", "expiry");
    cr_assert_eq(z->integer, 0, "every swept lease left the schedule");
    freeReplyObject(z);
    freeReplyObject(redisCommand(rc, "DEL %s", key));
    cr_assert_eq(warnings, 0, "%s", last_log);
}
