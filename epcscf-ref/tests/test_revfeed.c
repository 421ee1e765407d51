/* revfeed against a real Redis and waf-server: a PUBLISHed jti reaches the callback within
 * 2 s, the WAF's POST /revoke does too (through waf_redis_revoke and the default channel
 * imsauth:revoked:feed), SISMEMBER answers 1, 0 and -1 (Redis down), the feed survives a
 * Redis killed and restarted on the same port (on_resync again, one reconnect counted) and
 * notices a Redis that falls silent (SIGSTOP), and stop is prompt.
 *
 * The servers come from tests/epcscf/test-epcscf-clients.sh (environment variables listed
 * there). Run without them (EP_TEST_WAF_URL unset) it fails: there is no
 * skipping. */
#include "revfeed.h"

#include "ims_common/redis_url.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------- helpers -- */

static const char *env(const char *name)
{
    const char *v = getenv(name);
    cr_assert(v != NULL && *v, "%s is not set: run tests/epcscf/test-epcscf-clients.sh", name);
    return v;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* What the callbacks saw (Criterion runs each test in a process of its own). */
#define SEEN_MAX 16
static struct {
    pthread_mutex_t m;
    char jti[SEEN_MAX][EP_REVFEED_JTI_MAX + 1];
    int n, resyncs, revoked_in_resync;
    struct ep_revfeed *feed; /* for on_resync's check */
    const char *resync_probe;
} seen = {.m = PTHREAD_MUTEX_INITIALIZER};

/* On the feed thread: no cr_assert here (it would end the test from the wrong thread). */
static void on_revoked(const char *jti, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&seen.m);
    if (seen.n < SEEN_MAX)
        snprintf(seen.jti[seen.n], sizeof(seen.jti[0]), "%s", jti);
    seen.n++;
    pthread_mutex_unlock(&seen.m);
}

static void on_resync(void *arg)
{
    (void)arg;
    int r = -2;
    if (seen.feed && seen.resync_probe) /* the owner may check the set from here */
        r = ep_revfeed_is_revoked(seen.feed, seen.resync_probe);
    pthread_mutex_lock(&seen.m);
    seen.resyncs++;
    seen.revoked_in_resync = r;
    pthread_mutex_unlock(&seen.m);
}

static int seen_count(void)
{
    pthread_mutex_lock(&seen.m);
    int n = seen.n;
    pthread_mutex_unlock(&seen.m);
    return n;
}

static int resyncs(void)
{
    pthread_mutex_lock(&seen.m);
    int n = seen.resyncs;
    pthread_mutex_unlock(&seen.m);
    return n;
}

/* ms until jti was seen, or -1 after limit_ms. */
static int wait_jti(const char *jti, int limit_ms)
{
    int64_t t0 = now_ms();
    for (;;) {
        pthread_mutex_lock(&seen.m);
        bool found = false;
        for (int i = 0; i < seen.n && i < SEEN_MAX; i++)
            found = found || strcmp(seen.jti[i], jti) == 0;
        pthread_mutex_unlock(&seen.m);
        if (found)
            return (int)(now_ms() - t0);
        if (now_ms() - t0 > limit_ms)
            return -1;
        sleep_ms(5);
    }
}

static bool wait_connected(struct ep_revfeed *f, bool want, int limit_ms)
{
    for (int64_t t0 = now_ms(); now_ms() - t0 <= limit_ms; sleep_ms(10))
        if (ep_revfeed_connected(f) == want)
            return true;
    return false;
}

static bool wait_resyncs(int n, int limit_ms)
{
    for (int64_t t0 = now_ms(); now_ms() - t0 <= limit_ms; sleep_ms(10))
        if (resyncs() >= n)
            return true;
    return false;
}

/* One command on a connection of the test's own (REDIS_URL). */
static long long redis_int(const char *fmt, const char *a, const char *b)
{
    struct ims_redis_url u;
    cr_assert(ims_redis_url_parse(env("REDIS_URL"), &u));
    redisContext *c = redisConnect(u.host, u.port);
    cr_assert(c && !c->err, "test connection to Redis");
    if (u.db) {
        redisReply *s = redisCommand(c, "SELECT %d", u.db);
        cr_assert(s && s->type == REDIS_REPLY_STATUS);
        freeReplyObject(s);
    }
    redisReply *r = redisCommand(c, fmt, a, b);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER, "Redis: %s", r ? r->str : c->errstr);
    long long v = r->integer;
    freeReplyObject(r);
    redisFree(c);
    return v;
}

static void log_line(int level, const char *msg, void *arg)
{
    (void)arg;
    fprintf(stderr, "revfeed log %d: %s\n", level, msg);
}

static struct ep_revfeed *start(const char *url, const char *set_key, const char *channel)
{
    struct ep_revfeed_opts o = {.redis_url = url,
                                .set_key = set_key,
                                .channel = channel,
                                .on_revoked = on_revoked,
                                .on_resync = on_resync,
                                .arg = &seen,
                                .reconnect_ms = 100,
                                .log = log_line};
    struct ep_revfeed *f = NULL;
    char d[200] = "";
    cr_assert_eq(ep_revfeed_start(&f, &o, d, sizeof(d)), 0, "start: %s", d);
    seen.feed = f;
    return f;
}

static void stop_promptly(struct ep_revfeed *f)
{
    seen.feed = NULL;
    int64_t t0 = now_ms();
    ep_revfeed_stop(f);
    cr_expect_lt(now_ms() - t0, 1000, "stop took %lld ms", (long long)(now_ms() - t0));
}

/* A key of this process, so that runs never see each other's messages. */
static const char *key(const char *what)
{
    static char k[8][64];
    static int i;
    char *p = k[i++ % 8];
    snprintf(p, sizeof(k[0]), "revfeed-test-%ld:%s", (long)getpid(), what);
    return p;
}

/* --------------------------------------------------------------------- tests -- */

Test(revfeed, published_jti_reaches_callback, .timeout = 30)
{
    const char *set = key("revoked");
    char chan[100];
    snprintf(chan, sizeof(chan), "%s:feed", set);
    struct ep_revfeed *f = start(env("REDIS_URL"), set, NULL);
    cr_assert(wait_connected(f, true, 2000), "not subscribed within 2 s");
    cr_assert(wait_resyncs(1, 1000), "no on_resync after the first connection");

    cr_assert_eq(redis_int("PUBLISH %s %s", chan, "jti-one"), 1, "one subscriber");
    int ms = wait_jti("jti-one", 2000);
    cr_assert(ms >= 0, "PUBLISHed jti not delivered within 2 s");
    /* Other channels and messages that cannot be a jti are not delivered. */
    redis_int("PUBLISH %s %s", key("other:feed"), "jti-other");
    char big[EP_REVFEED_JTI_MAX + 2];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    redis_int("PUBLISH %s %s", chan, big);
    redis_int("PUBLISH %s %s", chan, "jti-two");
    cr_assert(wait_jti("jti-two", 2000) >= 0);
    cr_assert_eq(seen_count(), 2, "delivered: %d", seen_count());
    cr_assert_str_eq(seen.jti[0], "jti-one");
    cr_assert_str_eq(seen.jti[1], "jti-two");
    cr_assert_eq(resyncs(), 1);
    cr_assert_eq(ep_revfeed_reconnects(f), 0);
    stop_promptly(f);
}

Test(revfeed, explicit_channel, .timeout = 30)
{
    const char *chan = key("elsewhere");
    struct ep_revfeed *f = start(env("REDIS_URL"), key("revoked"), chan);
    cr_assert(wait_connected(f, true, 2000));
    redis_int("PUBLISH %s %s", chan, "jti-x");
    cr_assert(wait_jti("jti-x", 2000) >= 0);
    stop_promptly(f);
}

/* Through the WAF: a service token of the eP-CSCF client, revoked with POST /revoke. */
static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    char *buf = arg;
    size_t have = strlen(buf), add = size * n;
    cr_assert_lt(have + add, 8192, "answer too long");
    memcpy(buf + have, p, add);
    buf[have + add] = '\0';
    return add;
}

static long post_form(const char *path, const char *body, char out[8192])
{
    char url[300];
    snprintf(url, sizeof(url), "%s%s", env("EP_TEST_WAF_URL"), path);
    out[0] = '\0';
    CURL *h = curl_easy_init();
    cr_assert(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_USERNAME, env("EP_TEST_CLIENT_ID"));
    curl_easy_setopt(h, CURLOPT_PASSWORD, env("EP_TEST_CLIENT_SECRET"));
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    CURLcode rc = curl_easy_perform(h);
    cr_assert_eq(rc, CURLE_OK, "POST %s: %s", path, curl_easy_strerror(rc));
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    return status;
}

/* The string value of "name" in a flat JSON object (no escapes expected) into out. */
static void json_str(const char *json, const char *name, char *out, size_t len)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":\"", name);
    const char *p = strstr(json, pat);
    cr_assert(p, "no %s in %s", name, json);
    p += strlen(pat);
    size_t n = strcspn(p, "\"");
    cr_assert_lt(n, len);
    memcpy(out, p, n);
    out[n] = '\0';
}

static void b64url_decode(const char *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned v = 0, bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const char *c = strchr(tab, in[i]);
        cr_assert(c && in[i], "not base64url");
        v = v << 6 | (unsigned)(c - tab);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)(v >> bits & 0xff);
        }
    }
    out[o] = '\0';
}

Test(revfeed, waf_revoke_reaches_callback, .timeout = 30)
{
    /* The WAF runs with the default set key, so this also checks the default channel. */
    struct ep_revfeed *f = start(env("REDIS_URL"), NULL, NULL);
    cr_assert(wait_connected(f, true, 2000));
    char *ans = calloc(1, 8192), tok[4096], jti[200];
    cr_assert(ans);
    cr_assert_eq(post_form("/token", "grant_type=client_credentials", ans), 200, "%s", ans);
    json_str(ans, "access_token", tok, sizeof(tok));
    const char *d1 = strchr(tok, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    cr_assert(d2, "not a JWS");
    char payload[4096];
    b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), payload);
    json_str(payload, "jti", jti, sizeof(jti));
    cr_assert_eq(ep_revfeed_is_revoked(f, jti), 0, "revoked before /revoke");

    char body[4200];
    snprintf(body, sizeof(body), "token=%s", tok);
    int64_t t0 = now_ms();
    cr_assert_eq(post_form("/revoke", body, ans), 200, "%s", ans);
    int ms = wait_jti(jti, 2000);
    cr_assert(ms >= 0, "the WAF's revocation of %s did not reach the callback within 2 s", jti);
    fprintf(stderr, "revfeed: /revoke to callback in %lld ms\n", (long long)(now_ms() - t0));
    cr_assert_eq(ep_revfeed_is_revoked(f, jti), 1, "the WAF's set does not hold the jti");
    free(ans);
    stop_promptly(f);
}

Test(revfeed, is_revoked_answers, .timeout = 30)
{
    const char *set = key("revoked");
    redis_int("SADD %s %s", set, "gone");
    struct ep_revfeed *f = start(env("REDIS_URL"), set, NULL);
    cr_assert_eq(ep_revfeed_is_revoked(f, "gone"), 1);
    cr_assert_eq(ep_revfeed_is_revoked(f, "live"), 0);
    cr_assert_eq(ep_revfeed_is_revoked(f, "gone"), 1, "the kept connection");
    cr_assert_eq(ep_revfeed_is_revoked(NULL, "gone"), -1);
    stop_promptly(f);

    /* No Redis at all: start succeeds, nothing is connected, the answer is unknown. */
    seen.resyncs = 0;
    struct ep_revfeed *g = start("redis://127.0.0.1:1/0", set, NULL);
    sleep_ms(400);
    cr_assert_not(ep_revfeed_connected(g));
    cr_assert_eq(resyncs(), 0);
    cr_assert_eq(ep_revfeed_is_revoked(g, "gone"), -1);
    stop_promptly(g);
}

Test(revfeed, survives_redis_restart, .timeout = 60)
{
    const char *set = key("revoked"), *kill_cmd = env("EP_TEST_REDIS_KILL"),
               *start_cmd = env("EP_TEST_REDIS_START");
    char chan[100];
    snprintf(chan, sizeof(chan), "%s:feed", set);
    struct ep_revfeed *f = start(env("REDIS_URL"), set, NULL);
    cr_assert(wait_connected(f, true, 2000));
    cr_assert(wait_resyncs(1, 1000));
    cr_assert_eq(ep_revfeed_is_revoked(f, "before"), 0); /* opens the kept connection */

    cr_assert_eq(system(kill_cmd), 0, "%s", kill_cmd);
    cr_assert(wait_connected(f, false, 3000), "the lost connection went unnoticed");
    cr_assert_eq(ep_revfeed_is_revoked(f, "before"), -1, "Redis is down: unknown");
    sleep_ms(300); /* a few failed attempts */
    cr_assert_eq(resyncs(), 1);

    seen.resync_probe = "after";
    cr_assert_eq(system(start_cmd), 0, "%s", start_cmd);
    redis_int("SADD %s %s", set, "after"); /* before the feed is back, most likely */
    cr_assert(wait_resyncs(2, 5000), "no on_resync after Redis came back");
    cr_assert(ep_revfeed_connected(f));
    cr_assert_eq(ep_revfeed_reconnects(f), 1);
    pthread_mutex_lock(&seen.m);
    int in_resync = seen.revoked_in_resync;
    pthread_mutex_unlock(&seen.m);
    cr_assert(in_resync == 1 || in_resync == 0, "is_revoked from on_resync: %d", in_resync);
    cr_assert_eq(ep_revfeed_is_revoked(f, "after"), 1);
    redis_int("PUBLISH %s %s", chan, "jti-after-restart");
    cr_assert(wait_jti("jti-after-restart", 2000) >= 0, "no delivery after the restart");
    stop_promptly(f);
}

/* A Redis that stops answering without closing the connection (SIGSTOP): the feed PINGs
 * after 5 s of quiet and gives the connection up 5 s later, then comes back by itself. */
Test(revfeed, notices_a_silent_redis, .timeout = 60)
{
    const char *set = key("revoked"), *pause_cmd = env("EP_TEST_REDIS_PAUSE"),
               *resume_cmd = env("EP_TEST_REDIS_RESUME");
    char chan[100];
    snprintf(chan, sizeof(chan), "%s:feed", set);
    struct ep_revfeed *f = start(env("REDIS_URL"), set, NULL);
    cr_assert(wait_connected(f, true, 2000));
    sleep_ms(6000); /* one PING answered: still subscribed, still delivering */
    cr_assert(ep_revfeed_connected(f));
    redis_int("PUBLISH %s %s", chan, "jti-after-ping");
    cr_assert(wait_jti("jti-after-ping", 2000) >= 0);

    cr_assert_eq(system(pause_cmd), 0, "%s", pause_cmd);
    int64_t t0 = now_ms();
    bool noticed = wait_connected(f, false, 15000);
    int64_t took = now_ms() - t0;
    cr_assert_eq(system(resume_cmd), 0, "%s", resume_cmd);
    cr_assert(noticed, "a silent Redis went unnoticed for 15 s");
    cr_assert_geq(took, 4000, "gave up after %lld ms, before any PING", (long long)took);
    cr_assert(wait_resyncs(2, 5000), "not subscribed again after SIGCONT");
    redis_int("PUBLISH %s %s", chan, "jti-after-pause");
    cr_assert(wait_jti("jti-after-pause", 2000) >= 0);
    stop_promptly(f);
}

Test(revfeed, bad_options)
{
    struct ep_revfeed *f = (struct ep_revfeed *)&f;
    char d[200];
    struct ep_revfeed_opts o = {.redis_url = "http://127.0.0.1:6379", .on_revoked = on_revoked};
    cr_assert_eq(ep_revfeed_start(&f, &o, d, sizeof(d)), -1);
    cr_assert(strstr(d, "redis://"), "%s", d);
    o.redis_url = "redis://127.0.0.1:1";
    o.on_revoked = NULL;
    cr_assert_eq(ep_revfeed_start(&f, &o, d, sizeof(d)), -1);
    o.on_revoked = on_revoked;
    o.set_key = "";
    cr_assert_eq(ep_revfeed_start(&f, &o, d, sizeof(d)), -1);
    cr_assert_eq(f, (struct ep_revfeed *)&f, "*out written on failure");
    ep_revfeed_stop(NULL);
}

/* ---------------------------------------------------------------------- main -- */

int main(int argc, char *argv[])
{
    if (getenv("EP_TEST_WAF_URL") == NULL) {
        fprintf(stderr, "EP_TEST_WAF_URL is not set: run this through "
                        "tests/epcscf/test-epcscf-clients.sh (CTest: epcscf.clients)\n");
        return 1;
    }
    struct criterion_test_set *tests = criterion_initialize();
    int rc = 0;
    if (criterion_handle_args(argc, argv, true))
        rc = !criterion_run_all_tests(tests);
    criterion_finalize(tests);
    return rc;
}
