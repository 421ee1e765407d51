/*
 * fault_worker: one process of the pool fault test (tests/pool/test-fault.sh).
 *
 *   fault_worker POOL WORKER_ID JOURNAL_PATH SECONDS
 *
 * DATABASE_URL (required) and REDIS_URL (optional) come from the environment. For SECONDS,
 * or until SIGTERM, the worker picks at random among allocate (holder h0..h39, shared with
 * the other workers, TTL 2..6 s), renew and release of one of its own open leases, now and
 * then a sweep, and rarely abandoning one of its leases (a client gone without a word: the
 * lease runs out and a sweep or an allocation ends it). Every call that returned IMSPOOL_OK
 * is appended to the journal with one write(2) on an O_APPEND descriptor, so a kill -9 loses
 * at most the call in flight:
 *
 *   A <lease> <holder> <impu> <expires_ms>    allocated
 *   N <lease> <expires_ms>                    renewed
 *   R <lease>                                 released
 *   T <unix_ms>                               about once a second: progress over time
 *
 * A renewal never moves a lease's expiry back (its TTL is at least the time the lease has
 * left), so the row of a lease expires no earlier than the last A or N line of it says,
 * whatever calls of unknown outcome came in between.
 *
 * IMSPOOL_ERR_DB_UNAVAILABLE (the PostgreSQL restart) is counted and the call given up
 * after 50 ms; exhaustion and the holder cap are normal answers, after which the worker
 * backs off 5..20 ms as a client would; an ended lease is normal too; any other
 * error is printed and ends the worker with exit 1. SIGTERM ends it with exit 0 after the
 * call in flight, printing one summary line on stdout.
 */
#include "imspool/imspool.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define HOLDERS      40
#define TTL_MIN_S    2
#define TTL_MAX_S    6
#define MAX_LEASES   64
#define RETRY_MS     50
#define BACKOFF_MS   5 /* .. 4 * BACKOFF_MS after a refusal */
#define TICK_MS      1000
#define OPEN_TRIES   100 /* times RETRY_MS while the database is not there at start */
#define REASON       "fault-test"
#define LINE_MAX_LEN 1200

static volatile sig_atomic_t stop_flag;

struct own_lease {
    char id[37];
    int64_t expires_ms;
};

struct worker {
    struct imspool *p;
    const char *pool;
    int id, fd;
    uint64_t rng;
    struct own_lease leases[MAX_LEASES];
    int n_leases;
    long ok_alloc, ok_renew, ok_release, ok_sweep, swept, abandoned;
    long exhausted, holder_cap, ended, db_unavailable;
    int in_outage; /* the last call met an unavailable database */
};

static void on_term(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL); /* SIGTERM cuts it short; the loop then ends */
}

/* splitmix64 */
static uint64_t rnd(struct worker *w)
{
    uint64_t z = (w->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int rnd_between(struct worker *w, int lo, int hi)
{
    return lo + (int)(rnd(w) % (uint64_t)(hi - lo + 1));
}

static void log_line(int level, const char *line, void *arg)
{
    const struct worker *w = arg;
    fprintf(stderr, "worker %d: imspool %s: %s\n", w->id, level == 1 ? "warning" : "info", line);
}

/* Appends one line with a single write(2); a failed write ends the worker. */
static void journal(struct worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void journal(struct worker *w, const char *fmt, ...)
{
    char line[LINE_MAX_LEN];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line) - 1) {
        fprintf(stderr, "worker %d: journal line too long\n", w->id);
        exit(1);
    }
    line[n++] = '\n';
    ssize_t k;
    do
        k = write(w->fd, line, (size_t)n);
    while (k < 0 && errno == EINTR);
    if (k != n) {
        fprintf(stderr, "worker %d: journal write: %s\n", w->id,
                k < 0 ? strerror(errno) : "short write");
        exit(1);
    }
}

static void forget(struct worker *w, int i)
{
    w->leases[i] = w->leases[--w->n_leases];
}

/* Judges a call's result: 1 OK, 0 a normal refusal or an outage, exits on anything else. */
static int judge(struct worker *w, const char *what, enum imspool_result r, const char *detail)
{
    switch (r) {
    case IMSPOOL_OK:
        if (w->in_outage)
            fprintf(stderr, "worker %d: database back (%s works again)\n", w->id, what);
        w->in_outage = 0;
        return 1;
    case IMSPOOL_ERR_DB_UNAVAILABLE:
        if (!w->in_outage)
            fprintf(stderr, "worker %d: %s: %s: %s\n", w->id, what, imspool_strerror(r), detail);
        w->in_outage = 1;
        w->db_unavailable++;
        sleep_ms(RETRY_MS);
        return 0;
    case IMSPOOL_ERR_POOL_EXHAUSTED:
        w->exhausted++;
        sleep_ms(rnd_between(w, BACKOFF_MS, 4 * BACKOFF_MS));
        return 0;
    case IMSPOOL_ERR_HOLDER_CAP:
        w->holder_cap++;
        sleep_ms(rnd_between(w, BACKOFF_MS, 4 * BACKOFF_MS));
        return 0;
    case IMSPOOL_ERR_LEASE_RELEASED:
        w->ended++;
        return 0;
    default:
        fprintf(stderr, "worker %d: FAIL: %s: %s: %s\n", w->id, what, imspool_strerror(r), detail);
        fflush(stderr);
        exit(1);
    }
}

static void do_allocate(struct worker *w)
{
    char holder[16], detail[512] = "";
    struct imspool_lease l;
    snprintf(holder, sizeof(holder), "h%d", rnd_between(w, 0, HOLDERS - 1));
    int ttl = rnd_between(w, TTL_MIN_S, TTL_MAX_S);
    enum imspool_result r =
        imspool_allocate(w->p, w->pool, holder, ttl, &l, detail, sizeof(detail));
    if (!judge(w, "allocate", r, detail))
        return;
    journal(w, "A %s %s %s %lld", l.id, holder, l.impu, (long long)l.expires_ms);
    w->ok_alloc++;
    struct own_lease *o = &w->leases[w->n_leases++];
    snprintf(o->id, sizeof(o->id), "%s", l.id);
    o->expires_ms = l.expires_ms;
}

static void do_renew(struct worker *w)
{
    char detail[512] = "";
    struct imspool_lease l;
    int i = rnd_between(w, 0, w->n_leases - 1);
    struct own_lease *o = &w->leases[i];
    /* At least the time left (rounded up): the expiry never moves back. */
    int64_t left = o->expires_ms - now_ms();
    int lo = left > 0 ? (int)((left + 999) / 1000) : 0;
    if (lo < TTL_MIN_S)
        lo = TTL_MIN_S;
    if (lo > TTL_MAX_S)
        lo = TTL_MAX_S;
    int ttl = rnd_between(w, lo, TTL_MAX_S);
    enum imspool_result r = imspool_renew(w->p, o->id, ttl, &l, detail, sizeof(detail));
    if (r == IMSPOOL_ERR_LEASE_RELEASED)
        forget(w, i);
    if (!judge(w, "renew", r, detail))
        return;
    journal(w, "N %s %lld", o->id, (long long)l.expires_ms);
    w->ok_renew++;
    o->expires_ms = l.expires_ms;
}

static void do_release(struct worker *w)
{
    char detail[512] = "";
    int i = rnd_between(w, 0, w->n_leases - 1);
    char id[37];
    snprintf(id, sizeof(id), "%s", w->leases[i].id);
    enum imspool_result r = imspool_release(w->p, id, REASON, detail, sizeof(detail));
    if (r == IMSPOOL_OK || r == IMSPOOL_ERR_LEASE_RELEASED)
        forget(w, i);
    if (!judge(w, "release", r, detail))
        return;
    journal(w, "R %s", id);
    w->ok_release++;
}

static void do_sweep(struct worker *w)
{
    char detail[512] = "";
    long expired = 0;
    enum imspool_result r = imspool_sweep(w->p, &expired, detail, sizeof(detail));
    if (!judge(w, "sweep", r, detail))
        return;
    w->ok_sweep++;
    w->swept += expired;
}

/* Forgets a lease without releasing it. */
static void do_abandon(struct worker *w)
{
    forget(w, rnd_between(w, 0, w->n_leases - 1));
    w->abandoned++;
}

static int open_pool(struct worker *w, const char *db_url, const char *redis_url)
{
    struct imspool_opts o = {
        .db_url = db_url, .redis_url = redis_url, .log = log_line, .log_arg = w};
    char detail[512] = "";
    enum imspool_result r = IMSPOOL_ERR_DB_UNAVAILABLE;
    for (int i = 0; i < OPEN_TRIES && !stop_flag; i++) {
        r = imspool_open(&w->p, &o, detail, sizeof(detail));
        if (r != IMSPOOL_ERR_DB_UNAVAILABLE)
            break;
        w->db_unavailable++;
        sleep_ms(RETRY_MS);
    }
    if (r != IMSPOOL_OK) {
        fprintf(stderr, "worker %d: FAIL: open: %s: %s\n", w->id, imspool_strerror(r), detail);
        return -1;
    }
    return 0;
}

static long number(const char *s)
{
    char *e;
    errno = 0;
    long v = strtol(s, &e, 10);
    return (*s && !*e && !errno && v >= 0 && v <= 1000000) ? v : -1;
}

int main(int argc, char **argv)
{
    if (argc != 5 || number(argv[2]) < 0 || number(argv[4]) < 0) {
        fprintf(stderr, "usage: fault_worker POOL WORKER_ID JOURNAL_PATH SECONDS\n");
        return 2;
    }
    const char *db_url = getenv("DATABASE_URL");
    const char *redis_url = getenv("REDIS_URL");
    if (db_url == NULL || *db_url == '\0') {
        fprintf(stderr, "fault_worker: DATABASE_URL is not set\n");
        return 2;
    }
    if (redis_url != NULL && *redis_url == '\0')
        redis_url = NULL;

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL); /* no SA_RESTART: a sleep ends at once */

    static struct worker w;
    w.pool = argv[1];
    w.id = (int)number(argv[2]);
    w.rng = ((uint64_t)w.id << 32) ^ (uint64_t)getpid() ^ (uint64_t)now_ms();
    w.fd = open(argv[3], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (w.fd < 0) {
        fprintf(stderr, "worker %d: %s: %s\n", w.id, argv[3], strerror(errno));
        return 1;
    }
    if (open_pool(&w, db_url, redis_url) != 0) {
        close(w.fd);
        return 1;
    }

    int64_t start = now_ms(), end = start + number(argv[4]) * 1000, last_tick = 0;
    while (!stop_flag) {
        int64_t t = now_ms();
        if (t >= end)
            break;
        if (t - last_tick >= TICK_MS) {
            journal(&w, "T %lld", (long long)t);
            last_tick = t;
        }
        int pick = rnd_between(&w, 0, 999); /* per mille */
        if (pick < 20)
            do_sweep(&w);
        else if (pick < 25 && w.n_leases > 0)
            do_abandon(&w);
        else if (w.n_leases == 0 || (pick < 425 && w.n_leases < MAX_LEASES))
            do_allocate(&w);
        else if (pick < 725)
            do_renew(&w);
        else
            do_release(&w);
    }

    printf("worker %d: ok allocate=%ld renew=%ld release=%ld sweep=%ld (expired %ld); "
           "abandoned=%ld exhausted=%ld holder_cap=%ld lease_ended=%ld db_unavailable=%ld\n",
           w.id, w.ok_alloc, w.ok_renew, w.ok_release, w.ok_sweep, w.swept, w.abandoned,
           w.exhausted, w.holder_cap, w.ended, w.db_unavailable);
    imspool_close(w.p);
    close(w.fd);
    return 0;
}
