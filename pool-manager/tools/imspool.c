/*
 * imspool: operator CLI of libimspool.
 * Exit: 0 success, 1 the operation failed (one line on stderr naming the problem), 2 usage.
 * Every command takes --json for machine output.
 */
#include "imspool/imspool.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fputs("usage: imspool [--db URL] [--redis URL] [--redis-prefix P] [--json] [--verbose] COMMAND "
          "...\n"
          "  migrate [--dir DIR]\n"
          "  pool create NAME --realm REALM --lease-ttl SECONDS --quarantine SECONDS\n"
          "                   [--max-per-holder N]\n"
          "  pool show NAME | drain NAME | delete NAME\n"
          "  pool update NAME [--realm R] [--lease-ttl S] [--quarantine S] [--max-per-holder N]\n"
          "  member add POOL --impu PATTERN --impi PATTERN   e.g. sip:anon-{0000..9999}@h\n"
          "  member add POOL --csv FILE      (impi,impu rows; FILE - reads stdin)\n"
          "  member disable POOL IMPU | member enable POOL IMPU\n"
          "  allocate POOL --holder ID [--ttl SECONDS]\n"
          "  renew LEASE [--ttl SECONDS]\n"
          "  release LEASE [--reason TEXT]\n"
          "  sweep [--watch]  (--watch: keep sweeping at each expiry until SIGTERM)\n"
          "  stats POOL\n"
          "  pool list\n"
          "  leases POOL [--active]\n"
          "  check          (every invariant in SQL; exit 1 and list violations)\n"
          "  redis rebuild  (rebuild the Redis counters and expiry schedule from PostgreSQL)\n"
          "--db defaults to $DATABASE_URL, --redis to $REDIS_URL (optional: without Redis\n"
          "there are no lease events or counters, and nothing else changes), --redis-prefix\n"
          "to $IMSPOOL_REDIS_PREFIX or \"imspool:<database name>:\".\n",
          f);
}

struct args {
    const char *db, *redis, *dir, *realm, *impu, *impi, *holder, *reason, *csv;
    long ttl, lease_ttl, quarantine, max_per_holder;
    int json, active, watch, verbose;
    const char *redis_prefix;
    int rows;  /* listing output state */
    FILE *out; /* where listings print (a memory stream until the call succeeded) */
};

static int usage_error(const char *msg)
{
    fprintf(stderr, "imspool: %s (see imspool --help)\n", msg);
    return 2;
}

/* Strict decimal in [lo, hi]; -1 on error. */
static long number(const char *s, long lo, long hi)
{
    char *e;
    errno = 0;
    long v = strtol(s, &e, 10);
    return (*s && !*e && !errno && v >= lo && v <= hi) ? v : -1;
}

static int fail(struct args *a, enum imspool_result r, const char *detail)
{
    fprintf(stderr, "imspool: %s: %s\n", imspool_strerror(r), detail);
    if (a->json)
        printf("{\"ok\":false,\"error\":\"%s\"}\n", imspool_strerror(r));
    return 1;
}

/* Prints s as a JSON string (the values here are URIs, UUIDs and names). */
static void json_str_to(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static void json_str(const char *s)
{
    json_str_to(stdout, s);
}

static void print_lease(struct args *a, const struct imspool_lease *l)
{
    if (a->json) {
        printf("{\"ok\":true,\"lease\":");
        json_str(l->id);
        printf(",\"impi\":");
        json_str(l->impi);
        printf(",\"impu\":");
        json_str(l->impu);
        printf(",\"expires_ms\":%lld}\n", (long long)l->expires_ms);
    } else {
        printf("lease    %s\nimpu     %s\nimpi     %s\nexpires  %lld (Unix ms)\n", l->id, l->impu,
               l->impi, (long long)l->expires_ms);
    }
}

static int ok(struct args *a, const char *text)
{
    if (a->json)
        printf("{\"ok\":true}\n");
    else
        puts(text);
    return 0;
}

static void print_pool(const struct imspool_pool_info *pl, void *arg)
{
    struct args *a = arg;
    if (a->json) {
        fprintf(a->out, "%s{\"name\":", a->rows++ ? "," : "");
        json_str_to(a->out, pl->name);
        fprintf(a->out, ",\"realm\":");
        json_str_to(a->out, pl->realm);
        fprintf(a->out,
                ",\"lease_ttl\":%d,\"quarantine\":%d,\"max_per_holder\":%d,\"state\":\"%s\","
                "\"members\":%ld}",
                pl->lease_ttl_s, pl->quarantine_s, pl->max_per_holder,
                pl->draining ? "draining" : "active", pl->members);
    } else {
        if (a->rows++ == 0)
            fprintf(a->out, "%-24s %-20s %9s %10s %7s %-8s %8s\n", "NAME", "REALM", "LEASE_TTL",
                    "QUARANTINE", "MAX/H", "STATE", "MEMBERS");
        fprintf(a->out, "%-24s %-20s %9d %10d %7d %-8s %8ld\n", pl->name, pl->realm,
                pl->lease_ttl_s, pl->quarantine_s, pl->max_per_holder,
                pl->draining ? "draining" : "active", pl->members);
    }
}

static void print_lease_row(const struct imspool_lease_info *l, void *arg)
{
    struct args *a = arg;
    if (a->json) {
        fprintf(a->out, "%s{\"lease\":", a->rows++ ? "," : "");
        json_str_to(a->out, l->id);
        fprintf(a->out, ",\"holder\":");
        json_str_to(a->out, l->holder);
        fprintf(a->out, ",\"impu\":");
        json_str_to(a->out, l->impu);
        fprintf(a->out, ",\"created_ms\":%lld,\"expires_ms\":%lld,\"released_ms\":%lld,\"reason\":",
                (long long)l->created_ms, (long long)l->expires_ms, (long long)l->released_ms);
        if (l->release_reason)
            json_str_to(a->out, l->release_reason);
        else
            fprintf(a->out, "null");
        fputc('}', a->out);
    } else {
        if (a->rows++ == 0)
            fprintf(a->out, "%-36s %-20s %-32s %-10s\n", "LEASE", "HOLDER", "IMPU", "STATE");
        fprintf(a->out, "%-36s %-20s %-32s %-10s\n", l->id, l->holder, l->impu,
                l->release_reason ? l->release_reason : "open");
    }
}

static void print_violation(const char *line, void *arg)
{
    struct args *a = arg;
    if (a->json) {
        fprintf(a->out, "%s", a->rows++ ? "," : "");
        json_str_to(a->out, line);
    } else {
        fprintf(a->out, "violation: %s\n", line);
    }
}

/* A progress bar on stderr (a terminal only). */
struct bar {
    bool on, drawn;
};

static void progress_bar(int phase, long done, long total, void *arg)
{
    struct bar *b = arg;
    if (!b->on)
        return;
    b->drawn = true;
    if (phase == 2) {
        fprintf(stderr, "\r%-60s", done ? "" : "writing members...");
        if (done)
            fprintf(stderr, "\r");
        fflush(stderr);
        return;
    }
    int width = 40, fill = total > 0 ? (int)((double)done / (double)total * width) : 0;
    fprintf(stderr, "\r[%.*s%*s] %ld/%ld", fill, "########################################",
            width - fill, "", done, total);
    fflush(stderr);
}

static void bar_end(struct bar *b)
{
    if (b->drawn)
        fprintf(stderr, "\r%-60s\r", "");
}

static volatile sig_atomic_t stopping;

static void on_stop(int sig)
{
    (void)sig;
    stopping = 1;
}

/* Sweeps at each expiry (at least every 5 s, so leases made by others are caught even
 * without Redis) until SIGTERM or SIGINT. */
static int sweep_watch(struct imspool *p, struct args *a)
{
    struct sigaction sa = {.sa_handler = on_stop};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    long total = 0;
    char d[1024];
    while (!stopping) {
        long expired = 0;
        enum imspool_result r = imspool_sweep(p, &expired, d, sizeof(d));
        if (r != IMSPOOL_OK)
            fprintf(stderr, "imspool: sweep: %s: %s\n", imspool_strerror(r), d);
        total += expired;
        if (expired && !a->json)
            printf("expired %ld lease%s\n", expired, expired == 1 ? "" : "s");
        fflush(stdout);
        int64_t next = 0;
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
        int64_t wait = 5000;
        if (imspool_next_expiry(p, &next, d, sizeof(d)) == IMSPOOL_OK && next > 0 &&
            next - now_ms < wait)
            wait = next - now_ms < 10 ? 10 : next - now_ms;
        for (int64_t slept = 0; slept < wait && !stopping; slept += 100) {
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    if (a->json)
        printf("{\"ok\":true,\"expired\":%ld}\n", total);
    return 0;
}

/* Warnings (Redis lost) go to stderr; information only with --verbose. */
static void log_line(int level, const char *line, void *arg)
{
    const struct args *a = arg;
    if (level == 1 || a->verbose)
        fprintf(stderr, "imspool: %s: %s\n", level == 1 ? "warning" : "info", line);
}

static int run(struct imspool *p, struct args *a, int n, char **w)
{
    char d[1024];
    enum imspool_result r;
    struct imspool_lease l;
    if (n == 3 && !strcmp(w[0], "pool") && !strcmp(w[1], "create")) {
        if (!a->realm || a->lease_ttl < 0 || a->quarantine < 0)
            return usage_error("pool create needs --realm, --lease-ttl and --quarantine");
        struct imspool_pool_spec s = {w[2], a->realm, (int)a->lease_ttl, (int)a->quarantine,
                                      (int)(a->max_per_holder < 0 ? 1 : a->max_per_holder)};
        r = imspool_pool_create(p, &s, d, sizeof(d));
        return r ? fail(a, r, d) : ok(a, "pool created");
    }
    if (n == 3 && !strcmp(w[0], "pool") && !strcmp(w[1], "drain")) {
        r = imspool_pool_drain(p, w[2], d, sizeof(d));
        return r ? fail(a, r, d) : ok(a, "pool draining: no new leases");
    }
    if (n == 3 && !strcmp(w[0], "pool") && !strcmp(w[1], "delete")) {
        r = imspool_pool_delete(p, w[2], d, sizeof(d));
        return r ? fail(a, r, d) : ok(a, "pool deleted");
    }
    if ((n == 3 && !strcmp(w[0], "pool") && !strcmp(w[1], "show")) ||
        (n == 2 && !strcmp(w[0], "stats"))) {
        struct imspool_stats st;
        r = imspool_pool_stats(p, w[n - 1], &st, d, sizeof(d));
        if (r)
            return fail(a, r, d);
        if (a->json)
            printf("{\"ok\":true,\"free\":%ld,\"leased\":%ld,\"quarantined\":%ld,"
                   "\"disabled\":%ld}\n",
                   st.free, st.leased, st.quarantined, st.disabled);
        else
            printf("free         %ld\nleased       %ld\nquarantined  %ld\ndisabled     %ld\n",
                   st.free, st.leased, st.quarantined, st.disabled);
        return 0;
    }
    if (n == 3 && !strcmp(w[0], "pool") && !strcmp(w[1], "update")) {
        if (!a->realm && a->lease_ttl < 0 && a->quarantine < 0 && a->max_per_holder < 0)
            return usage_error("pool update needs at least one of --realm, --lease-ttl, "
                               "--quarantine, --max-per-holder");
        struct imspool_pool_spec s = {w[2], a->realm, (int)a->lease_ttl, (int)a->quarantine,
                                      (int)a->max_per_holder};
        r = imspool_pool_update(p, &s, d, sizeof(d));
        return r ? fail(a, r, d) : ok(a, "pool updated");
    }
    if (n == 4 && !strcmp(w[0], "member") &&
        (!strcmp(w[1], "disable") || !strcmp(w[1], "enable"))) {
        int enable = !strcmp(w[1], "enable");
        r = imspool_member_set_enabled(p, w[2], w[3], enable, d, sizeof(d));
        return r ? fail(a, r, d) : ok(a, enable ? "member enabled" : "member disabled");
    }
    if (n == 3 && !strcmp(w[0], "member") && !strcmp(w[1], "add")) {
        if (a->csv ? (a->impu || a->impi) : (!a->impu || !a->impi))
            return usage_error("member add needs --impu PATTERN and --impi PATTERN, or --csv FILE");
        long added = 0;
        struct bar bar = {.on = !a->json && isatty(STDERR_FILENO)};
        if (a->csv) {
            FILE *f = strcmp(a->csv, "-") == 0 ? stdin : fopen(a->csv, "r");
            if (f == NULL) {
                snprintf(d, sizeof(d), "cannot open %s: %s", a->csv, strerror(errno));
                return fail(a, IMSPOOL_ERR_IO, d);
            }
            r = imspool_members_add_csv(p, w[2], f, progress_bar, &bar, &added, d, sizeof(d));
            if (f != stdin)
                fclose(f);
        } else {
            r = imspool_members_add_progress(p, w[2], a->impu, a->impi, progress_bar, &bar, &added,
                                             d, sizeof(d));
        }
        bar_end(&bar);
        if (r)
            return fail(a, r, d);
        if (a->json)
            printf("{\"ok\":true,\"added\":%ld}\n", added);
        else
            printf("added %ld member%s\n", added, added == 1 ? "" : "s");
        return 0;
    }
    if (n == 2 && !strcmp(w[0], "allocate")) {
        if (!a->holder)
            return usage_error("allocate needs --holder ID");
        r = imspool_allocate(p, w[1], a->holder, (int)(a->ttl < 0 ? 0 : a->ttl), &l, d, sizeof(d));
        if (r == IMSPOOL_ERR_POOL_EXHAUSTED && l.retry_after_s >= 0) {
            fprintf(stderr, "imspool: %s: %s (retry after %lld s)\n", imspool_strerror(r), d,
                    (long long)l.retry_after_s);
            if (a->json)
                printf("{\"ok\":false,\"error\":\"%s\",\"retry_after\":%lld}\n",
                       imspool_strerror(r), (long long)l.retry_after_s);
            return 1;
        }
        if (r)
            return fail(a, r, d);
        print_lease(a, &l);
        return 0;
    }
    if (n == 2 && !strcmp(w[0], "renew")) {
        r = imspool_renew(p, w[1], (int)(a->ttl < 0 ? 0 : a->ttl), &l, d, sizeof(d));
        if (r)
            return fail(a, r, d);
        print_lease(a, &l);
        return 0;
    }
    if (n == 2 && !strcmp(w[0], "release")) {
        r = imspool_release(p, w[1], a->reason, d, sizeof(d));
        return r ? fail(a, r, d) : ok(a, "lease released");
    }
    if (n == 2 && !strcmp(w[0], "redis") && !strcmp(w[1], "rebuild")) {
        r = imspool_redis_rebuild(p, d, sizeof(d));
        return r ? fail(a, r, d) : ok(a, "redis keys rebuilt from PostgreSQL");
    }
    if (n == 1 && !strcmp(w[0], "sweep") && a->watch)
        return sweep_watch(p, a);
    if (n == 1 && !strcmp(w[0], "sweep")) {
        long expired = 0;
        r = imspool_sweep(p, &expired, d, sizeof(d));
        if (r)
            return fail(a, r, d);
        if (a->json)
            printf("{\"ok\":true,\"expired\":%ld}\n", expired);
        else
            printf("expired %ld lease%s\n", expired, expired == 1 ? "" : "s");
        return 0;
    }
    /* Listings print into a memory stream, shown only when the call succeeded, so a
       failure prints the error object alone. */
    char *buf = NULL;
    size_t buflen = 0;
    a->out = open_memstream(&buf, &buflen);
    if (a->out == NULL)
        return fail(a, IMSPOOL_ERR_NOMEM, "cannot buffer output");
    if (n == 2 && !strcmp(w[0], "pool") && !strcmp(w[1], "list")) {
        r = imspool_pool_list(p, print_pool, a, d, sizeof(d));
        fclose(a->out);
        if (r == IMSPOOL_OK)
            printf(a->json ? "{\"ok\":true,\"pools\":[%s]}\n" : "%s", buf);
        free(buf);
        return r ? fail(a, r, d) : 0;
    }
    if (n == 2 && !strcmp(w[0], "leases")) {
        r = imspool_leases(p, w[1], a->active, 0, print_lease_row, a, d, sizeof(d));
        fclose(a->out);
        if (r == IMSPOOL_OK)
            printf(a->json ? "{\"ok\":true,\"leases\":[%s]}\n" : "%s", buf);
        free(buf);
        return r ? fail(a, r, d) : 0;
    }
    if (n == 1 && !strcmp(w[0], "check")) {
        long v = 0;
        r = imspool_check(p, &v, print_violation, a, d, sizeof(d));
        fclose(a->out);
        if (r == IMSPOOL_OK)
            printf(a->json ? "{\"violations\":[%s],\"ok\":%s}\n" : "%s", buf,
                   v == 0 ? "true" : "false");
        free(buf);
        if (r)
            return fail(a, r, d);
        if (v) {
            fprintf(stderr, "imspool: check: %ld violation%s\n", v, v == 1 ? "" : "s");
            return 1;
        }
        if (!a->json)
            puts("no violations");
        return 0;
    }
    fclose(a->out);
    free(buf);
    return usage_error("unknown command or wrong number of arguments");
}

int main(int argc, char **argv)
{
    enum {
        O_DB = 256,
        O_DIR,
        O_JSON,
        O_REALM,
        O_LEASE_TTL,
        O_Q,
        O_MAX,
        O_IMPU,
        O_IMPI,
        O_HOLDER,
        O_TTL,
        O_REASON,
        O_ACTIVE,
        O_REDIS,
        O_CSV,
        O_WATCH,
        O_PREFIX,
        O_VERBOSE
    };
    static const struct option opts[] = {{"db", required_argument, 0, O_DB},
                                         {"dir", required_argument, 0, O_DIR},
                                         {"json", no_argument, 0, O_JSON},
                                         {"realm", required_argument, 0, O_REALM},
                                         {"lease-ttl", required_argument, 0, O_LEASE_TTL},
                                         {"quarantine", required_argument, 0, O_Q},
                                         {"max-per-holder", required_argument, 0, O_MAX},
                                         {"impu", required_argument, 0, O_IMPU},
                                         {"impi", required_argument, 0, O_IMPI},
                                         {"holder", required_argument, 0, O_HOLDER},
                                         {"ttl", required_argument, 0, O_TTL},
                                         {"reason", required_argument, 0, O_REASON},
                                         {"active", no_argument, 0, O_ACTIVE},
                                         {"redis", required_argument, 0, O_REDIS},
                                         {"csv", required_argument, 0, O_CSV},
                                         {"watch", no_argument, 0, O_WATCH},
                                         {"redis-prefix", required_argument, 0, O_PREFIX},
                                         {"verbose", no_argument, 0, O_VERBOSE},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    struct args a = {.db = getenv("DATABASE_URL"),
                     .redis = getenv("REDIS_URL"),
                     .redis_prefix = getenv("IMSPOOL_REDIS_PREFIX"),
                     .ttl = -1,
                     .lease_ttl = -1,
                     .quarantine = -1,
                     .max_per_holder = -1};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_DB:
            a.db = optarg;
            break;
        case O_DIR:
            a.dir = optarg;
            break;
        case O_JSON:
            a.json = 1;
            break;
        case O_REALM:
            a.realm = optarg;
            break;
        case O_IMPU:
            a.impu = optarg;
            break;
        case O_IMPI:
            a.impi = optarg;
            break;
        case O_HOLDER:
            a.holder = optarg;
            break;
        case O_ACTIVE:
            a.active = 1;
            break;
        case O_REDIS:
            a.redis = optarg;
            break;
        case O_CSV:
            a.csv = optarg;
            break;
        case O_WATCH:
            a.watch = 1;
            break;
        case O_PREFIX:
            a.redis_prefix = optarg;
            break;
        case O_VERBOSE:
            a.verbose = 1;
            break;
        case O_REASON:
            a.reason = optarg;
            break;
        case O_LEASE_TTL:
            if ((a.lease_ttl = number(optarg, 1, 604800)) < 0)
                return usage_error("--lease-ttl must be 1..604800 seconds");
            break;
        case O_Q:
            if ((a.quarantine = number(optarg, 0, 2592000)) < 0)
                return usage_error("--quarantine must be 0..2592000 seconds");
            break;
        case O_MAX:
            if ((a.max_per_holder = number(optarg, 1, 1000000)) < 0)
                return usage_error("--max-per-holder must be 1..1000000");
            break;
        case O_TTL:
            if ((a.ttl = number(optarg, 1, 604800)) < 0)
                return usage_error("--ttl must be 1..604800 seconds");
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    int n = argc - optind;
    char **w = argv + optind;
    if (n == 0) {
        usage(stderr);
        return 2;
    }
    if (a.db == NULL || *a.db == '\0')
        return usage_error("no database: give --db URL or set DATABASE_URL");
    char d[1024];
    if (n == 1 && strcmp(w[0], "migrate") == 0) {
        struct imspool_migrate_report rep;
        enum imspool_result r = imspool_migrate(a.db, a.dir, &rep, d, sizeof(d));
        if (r != IMSPOOL_OK)
            return fail(&a, r, d);
        if (a.json)
            printf("{\"ok\":true,\"applied\":%d,\"already\":%d,\"version\":%d}\n", rep.applied,
                   rep.already, rep.latest_version);
        else if (rep.applied == 0)
            printf("schema up to date (version %04d)\n", rep.latest_version);
        else
            printf("applied %d migration%s; schema version %04d\n", rep.applied,
                   rep.applied == 1 ? "" : "s", rep.latest_version);
        return 0;
    }
    struct imspool *p;
    struct imspool_opts o = {.db_url = a.db,
                             .redis_url = a.redis && *a.redis ? a.redis : NULL,
                             .redis_prefix = a.redis_prefix,
                             .log = log_line,
                             .log_arg = &a};
    enum imspool_result r = imspool_open(&p, &o, d, sizeof(d));
    if (r != IMSPOOL_OK)
        return fail(&a, r, d);
    int rc = run(p, &a, n, w);
    imspool_close(p);
    return rc;
}
