/* The lease API client against a real waf-server: a renewal and a release reach the WAF
 * (the lease's state read back with imspool), a release of an ended lease counts as
 * released, 4xx answers are final (no retry), form-encoded Basic credentials work, a bad
 * lease id is refused without a request, a WAF that is down ends in the failed counter
 * after the retries, a full queue drops and counts, stop is bounded, and the secret is
 * never logged.
 *
 * The servers come from tests/epcscf/test-epcscf-clients.sh (environment variables listed
 * there). Run without them (EP_TEST_WAF_URL unset) it fails: there is no
 * skipping. */
#include "lease.h"

#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

/* The i-th open lease the driver allocated (EP_TEST_LEASES, space-separated). */
static const char *lease_id(int i)
{
    static char ids[8][40];
    const char *p = env("EP_TEST_LEASES");
    for (int k = 0; k < i; k++) {
        p = strchr(p, ' ');
        cr_assert(p, "EP_TEST_LEASES has no lease %d", i);
        p++;
    }
    size_t n = strcspn(p, " ");
    cr_assert(n == 36);
    memcpy(ids[i], p, n);
    ids[i][n] = '\0';
    return ids[i];
}

/* The lease as imspool shows it: expires_ms, released_ms (0 while open) and the reason. */
struct lease_row {
    long long expires_ms, released_ms;
    char reason[64];
};
static void lease_row(const char *id, struct lease_row *r)
{
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "'%s' --json leases '%s'", env("EP_TEST_IMSPOOL"),
             env("EP_TEST_POOL"));
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    static char out[65536];
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    cr_assert_eq(pclose(p), 0, "%s", cmd);
    char pat[64];
    snprintf(pat, sizeof(pat), "\"lease\":\"%s\"", id);
    const char *o = strstr(out, pat);
    cr_assert(o, "lease %s not listed: %s", id, out);
    const char *e = strstr(o, "\"expires_ms\":"), *rel = strstr(o, "\"released_ms\":"),
               *why = strstr(o, "\"reason\":");
    cr_assert(e && rel && why);
    r->expires_ms = atoll(e + strlen("\"expires_ms\":"));
    r->released_ms = atoll(rel + strlen("\"released_ms\":"));
    why += strlen("\"reason\":");
    r->reason[0] = '\0';
    if (*why == '"')
        snprintf(r->reason, sizeof(r->reason), "%.*s", (int)strcspn(why + 1, "\""), why + 1);
}

/* Every log line, to check that the secret never shows. */
static struct {
    pthread_mutex_t m;
    char text[65536];
} logged = {.m = PTHREAD_MUTEX_INITIALIZER};

static void log_line(int level, const char *msg, void *arg)
{
    (void)arg;
    fprintf(stderr, "lease log %d: %s\n", level, msg);
    pthread_mutex_lock(&logged.m);
    size_t have = strlen(logged.text);
    snprintf(logged.text + have, sizeof(logged.text) - have, "%s\n", msg);
    pthread_mutex_unlock(&logged.m);
}

static struct ep_lease_client *start(const char *url, const char *id, const char *secret,
                                     unsigned timeout_ms, size_t queue_max)
{
    struct ep_lease_opts o = {.waf_url = url,
                              .client_id = id,
                              .client_secret = secret,
                              .timeout_ms = timeout_ms,
                              .queue_max = queue_max,
                              .log = log_line};
    struct ep_lease_client *c = NULL;
    char d[200] = "";
    cr_assert_eq(ep_lease_client_start(&c, &o, d, sizeof(d)), 0, "start: %s", d);
    return c;
}

static struct ep_lease_stats stats(const struct ep_lease_client *c)
{
    struct ep_lease_stats s;
    ep_lease_stats(c, &s);
    return s;
}

/* ms until the total of final outcomes reaches n, or -1 after limit_ms. */
static int wait_done(const struct ep_lease_client *c, uint64_t n, int limit_ms)
{
    int64_t t0 = now_ms();
    for (;;) {
        struct ep_lease_stats s = stats(c);
        if (s.renewed + s.released + s.failed + s.dropped >= n)
            return (int)(now_ms() - t0);
        if (now_ms() - t0 > limit_ms)
            return -1;
        sleep_ms(5);
    }
}

/* A loopback TCP listener that never accepts (connections wait in its backlog, requests
 * are never answered); its port in *port. */
static int silent_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(fd, 64), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* --------------------------------------------------------------------- tests -- */

Test(lease, renew_and_release_reach_the_waf, .timeout = 60)
{
    const char *renew = lease_id(0), *release = lease_id(1);
    struct lease_row before, after;
    lease_row(renew, &before);
    cr_assert_eq(before.released_ms, 0, "lease %s is not open", renew);

    struct ep_lease_client *c =
        start(env("EP_TEST_WAF_URL"), env("EP_TEST_CLIENT_ID"), env("EP_TEST_CLIENT_SECRET"), 0, 0);
    ep_lease_renew(c, renew);
    cr_assert(wait_done(c, 1, 5000) >= 0, "no outcome within 5 s");
    cr_assert_eq(stats(c).renewed, 1, "renewal failed (see the log)");
    lease_row(renew, &after);
    /* Allocated for 60 s; a renewal takes the pool's lease TTL, 600 s. */
    cr_assert_gt(after.expires_ms, before.expires_ms + 300000, "expires %lld -> %lld",
                 before.expires_ms, after.expires_ms);
    cr_assert_eq(after.released_ms, 0);

    ep_lease_release(c, release);
    cr_assert(wait_done(c, 2, 5000) >= 0);
    cr_assert_eq(stats(c).released, 1);
    lease_row(release, &after);
    cr_assert_gt(after.released_ms, 0, "lease %s still open", release);
    cr_assert_str_eq(after.reason, "registration_ended");

    /* Ended already: the release counts as released (409), a renewal fails (409, final). */
    ep_lease_release(c, release);
    cr_assert(wait_done(c, 3, 5000) >= 0);
    ep_lease_renew(c, release);
    int ms = wait_done(c, 4, 5000);
    cr_assert(ms >= 0 && ms < 250, "a 409 was retried (%d ms)", ms);
    struct ep_lease_stats s = stats(c);
    cr_assert_eq(s.renewed, 1);
    cr_assert_eq(s.released, 2);
    cr_assert_eq(s.failed, 1);
    cr_assert_eq(s.dropped, 0);
    ep_lease_client_stop(c);
    cr_assert_null(strstr(logged.text, env("EP_TEST_CLIENT_SECRET")), "the secret was logged");
}

Test(lease, form_encoded_credentials, .timeout = 30)
{
    /* The secret holds '%', '+', ' ' and ':' (tests/epcscf/test-epcscf-clients.sh). */
    struct ep_lease_client *c =
        start(env("EP_TEST_WAF_URL"), env("EP_TEST_ODD_ID"), env("EP_TEST_ODD_SECRET"), 0, 0);
    ep_lease_renew(c, lease_id(3));
    cr_assert(wait_done(c, 1, 5000) >= 0);
    cr_assert_eq(stats(c).renewed, 1, "odd credentials refused (see the log)");
    ep_lease_client_stop(c);
    cr_assert_null(strstr(logged.text, env("EP_TEST_ODD_SECRET")), "the secret was logged");
}

Test(lease, client_errors_are_final, .timeout = 30)
{
    const char *id = lease_id(2);
    struct lease_row before, after;
    lease_row(id, &before);
    /* 403: a client without the scope ims.lease. */
    struct ep_lease_client *c = start(env("EP_TEST_WAF_URL"), env("EP_TEST_NOSCOPE_ID"),
                                      env("EP_TEST_NOSCOPE_SECRET"), 0, 0);
    ep_lease_renew(c, id);
    int ms = wait_done(c, 1, 5000);
    cr_assert(ms >= 0 && ms < 250, "a 403 was retried or slow (%d ms)", ms);
    cr_assert_eq(stats(c).failed, 1);
    ep_lease_client_stop(c);
    /* 401: a wrong secret. */
    c = start(env("EP_TEST_WAF_URL"), env("EP_TEST_CLIENT_ID"), "wrong-secret", 0, 0);
    ep_lease_release(c, id);
    ms = wait_done(c, 1, 5000);
    cr_assert(ms >= 0 && ms < 250, "a 401 was retried or slow (%d ms)", ms);
    cr_assert_eq(stats(c).failed, 1);
    ep_lease_client_stop(c);
    /* 404: a well-formed id of no lease. */
    c = start(env("EP_TEST_WAF_URL"), env("EP_TEST_CLIENT_ID"), env("EP_TEST_CLIENT_SECRET"), 0, 0);
    ep_lease_renew(c, "00000000-0000-4000-8000-000000000000");
    cr_assert(wait_done(c, 1, 5000) >= 0);
    cr_assert_eq(stats(c).failed, 1);
    ep_lease_client_stop(c);
    lease_row(id, &after);
    cr_assert_eq(after.expires_ms, before.expires_ms, "renewed without the scope");
    cr_assert_eq(after.released_ms, 0, "released with a wrong secret");
}

Test(lease, bad_lease_id_refused_without_request, .timeout = 30)
{
    int port, lfd = silent_listener(&port);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    struct ep_lease_client *c = start(url, "epcscf", "s3cret", 1000, 0);
    char long_id[EP_LEASE_ID_MAX + 2];
    memset(long_id, 'a', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    const char *bad[] = {"",          "../../admin/v1/keys",
                         "abc/renew", "abc?x=1",
                         "ab cd",     "00000000-0000-4000-8000-00000000000g",
                         long_id,     NULL};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ep_lease_renew(c, bad[i]);
        ep_lease_release(c, bad[i]);
    }
    struct ep_lease_stats s = stats(c); /* refused at once, on this thread */
    cr_assert_eq(s.failed, 2 * (sizeof(bad) / sizeof(bad[0])));
    cr_assert_eq(s.renewed + s.released + s.dropped, 0);
    sleep_ms(300);
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    cr_assert_eq(poll(&p, 1, 0), 0, "a connection was made for a refused lease id");
    ep_lease_client_stop(c);
    close(lfd);
}

Test(lease, waf_down_counts_failed_after_retries, .timeout = 30)
{
    int port, lfd = silent_listener(&port);
    close(lfd); /* nothing listens there now */
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
    struct ep_lease_client *c = start(url, "epcscf", "s3cret", 1000, 0);
    ep_lease_renew(c, lease_id(3));
    int ms = wait_done(c, 1, 10000);
    cr_assert(ms >= 0, "no outcome within 10 s");
    struct ep_lease_stats s = stats(c);
    cr_assert_eq(s.failed, 1);
    cr_assert_eq(s.renewed + s.released + s.dropped, 0);
    /* Four attempts, 250 + 500 + 1000 ms apart. */
    cr_assert_geq(ms, 1700, "failed after %d ms: not retried with backoff", ms);
    cr_assert(strstr(logged.text, "given up after 4 attempts"), "%s", logged.text);
    ep_lease_client_stop(c);
}

Test(lease, full_queue_drops_and_stop_is_bounded, .timeout = 30)
{
    int port, lfd = silent_listener(&port); /* requests hang until their timeout */
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    struct ep_lease_client *c = start(url, "epcscf", "s3cret", 500, 4);
    int64_t t0 = now_ms();
    for (int i = 0; i < 20; i++)
        ep_lease_renew(c, lease_id(3));
    cr_assert_lt(now_ms() - t0, 100, "queueing blocked the caller");
    struct ep_lease_stats s = stats(c);
    cr_assert_geq(s.dropped, 15, "dropped %llu", (unsigned long long)s.dropped);
    t0 = now_ms();
    ep_lease_client_stop(c); /* what is queued gets at most 500 ms */
    int64_t took = now_ms() - t0;
    cr_assert_lt(took, 1200, "stop took %lld ms", (long long)took);
    close(lfd);
}

Test(lease, bad_options)
{
    struct ep_lease_client *c = NULL;
    char d[200];
    struct ep_lease_opts o = {
        .waf_url = "http://waf.example.net", .client_id = "x", .client_secret = "y"};
    cr_assert_eq(ep_lease_client_start(&c, &o, d, sizeof(d)), -1, "plain HTTP off loopback");
    cr_assert(strstr(d, "https://"), "%s", d);
    o.waf_url = "ftp://127.0.0.1";
    cr_assert_eq(ep_lease_client_start(&c, &o, d, sizeof(d)), -1);
    o.waf_url = "http://user@127.0.0.1";
    cr_assert_eq(ep_lease_client_start(&c, &o, d, sizeof(d)), -1);
    o.waf_url = "http://127.0.0.1.example.net";
    cr_assert_eq(ep_lease_client_start(&c, &o, d, sizeof(d)), -1);
    o.waf_url = "https://waf.example.net";
    o.client_secret = "";
    cr_assert_eq(ep_lease_client_start(&c, &o, d, sizeof(d)), -1);
    cr_assert_null(c);
    o.client_secret = "y";
    cr_assert_eq(ep_lease_client_start(&c, &o, d, sizeof(d)), 0, "%s", d);
    ep_lease_client_stop(c);
    o.waf_url = "http://[::1]:8443/";
    cr_assert_eq(ep_lease_client_start(&c, &o, d, sizeof(d)), 0, "%s", d);
    ep_lease_client_stop(c);
    ep_lease_client_stop(NULL);
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
