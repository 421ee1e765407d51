/*
 * epcscf_bench: the eP-CSCF benchmark's load generator. One process, one thread, epoll,
 * non-blocking sockets, our own RFC 6455 client framing and OpenSSL for WSS
 * (epcscf_bench_ws.c); this file holds the measurements, the tokens and the /proc readings.
 * bench/epcscf_bench.sh starts the servers and calls it; see bench/README.md.
 *
 *   epcscf_bench jwks KEY.pem KID
 *       prints the JWKS (public part) of the ES256 signing key, for token.jwks_file.
 *   epcscf_bench rate TARGETS [--conns N] [--seconds S] [--warmup W] [--rounds R]
 *                     [--fresh-every K] [--max-rate X] COMMON
 *       N connections per target, each REGISTERed once, then rounds in the order
 *       epcscf/ws, kamailio/ws, epcscf/wss, kamailio/wss (those given), each W s of warm-up
 *       and S s counted, one REGISTER outstanding per connection. Every K-th REGISTER of a
 *       connection (default 2: every other) starts a new registration (new Call-ID, CSeq 1)
 *       with a freshly minted token the server has never seen; the others are re-REGISTERs
 *       (same Call-ID, next CSeq) with the connection's current token. Tokens for a round
 *       are minted before it; a connection that runs out ends the counted window early.
 *       Medians over the rounds. Last line: one JSON object.
 *   epcscf_bench idle TARGET [--conns N] [--hold H] [--ramp C] COMMON
 *       PSS of the server's processes, then N connections opened (C handshakes at a time),
 *       each REGISTERs once (fresh token) and stays idle (pings answered) for H s; PSS
 *       again; then one re-REGISTER on every connection (C at a time) proves they are all
 *       alive. Last line: one JSON object.
 *
 *   TARGETS: --ep-ws H:P --ep-wss H:P --kam-ws H:P --kam-wss H:P (numeric IPv4)
 *   COMMON:  --ep-pid PID --kam-pid PID [--kam-wss-pid PID] --core-pid PID (processes whose
 *            CPU/PSS count; a PID stands for itself and all its descendants; the Kamailio of
 *            --kam-wss may be another instance), --key KEY.pem --kid KID
 *            --issuer ISS --audience AUD --domain home1.net --origin URL --prefix P
 *            (user names are P<set><index>, so runs against one core do not collide)
 *
 * Every answer to a REGISTER must be a 200; anything else (other status, handshake refused,
 * TLS failure, connection closed by the server, no answer within 5 s after a round) is an
 * error, counted per kind and printed.
 */
#define _GNU_SOURCE
#include "epcscf_bench.h"
#include "mint.h"

#include <openssl/pem.h>
#include <openssl/rand.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define DRAIN_S    5.0 /* seconds an outstanding REGISTER may take after a round */
#define MAX_TASKS  1024
#define MAX_ROUNDS 32
void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "epcscf_bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL)
        die("out of memory");
    return p;
}

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- processes: CPU ticks and PSS of a server's process tree ------------------------------ */

static pid_t ppid_of(pid_t p)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)p);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *r = strrchr(buf, ')'); /* comm may hold spaces */
    int pp = -1;
    if (r == NULL || sscanf(r + 2, "%*c %d", &pp) != 1)
        return -1;
    return pp;
}

/* The root and every descendant (a fixed point over /proc; Kamailio forks once at start). */
static void pset_scan(struct pset *s, pid_t root)
{
    s->root = root;
    s->n = 0;
    if (root <= 0)
        return;
    s->pid[s->n++] = root;
    bool grew = true;
    while (grew) {
        grew = false;
        DIR *d = opendir("/proc");
        struct dirent *e;
        while (d != NULL && (e = readdir(d)) != NULL) {
            if (!isdigit((unsigned char)e->d_name[0]))
                continue;
            pid_t p = (pid_t)atoi(e->d_name), pp = ppid_of(p);
            bool have = false, parent = false;
            for (int i = 0; i < s->n; i++) {
                have |= s->pid[i] == p;
                parent |= s->pid[i] == pp;
            }
            if (!have && parent && s->n < MAX_PROCS) {
                s->pid[s->n++] = p;
                grew = true;
            }
        }
        if (d != NULL)
            closedir(d);
    }
}

bool pset_alive(const struct pset *s)
{
    return s->root > 0 && kill(s->root, 0) == 0;
}

/* Sum of Pss over the set (KiB), from smaps_rollup. */
static long pset_pss_kib(const struct pset *s)
{
    long sum = 0;
    for (int i = 0; i < s->n; i++) {
        char path[64], line[256];
        snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)s->pid[i]);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        long v;
        while (fgets(line, sizeof(line), f) != NULL)
            if (sscanf(line, "Pss: %ld", &v) == 1)
                sum += v;
        fclose(f);
    }
    return sum;
}

/* CPU ticks (utime + stime) of every thread of every process of a set. */
struct cpu_snap {
    int n;
    pid_t tid[MAX_TASKS];
    pid_t pid[MAX_TASKS];
    unsigned long long ticks[MAX_TASKS];
};

static unsigned long long stat_ticks(const char *path)
{
    char buf[1024];
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *r = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    if (r == NULL ||
        sscanf(r + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return ut + st;
}

static void cpu_snap(const struct pset *s, struct cpu_snap *c)
{
    c->n = 0;
    for (int i = 0; i < s->n; i++) {
        char dir[64];
        snprintf(dir, sizeof(dir), "/proc/%d/task", (int)s->pid[i]);
        DIR *d = opendir(dir);
        struct dirent *e;
        while (d != NULL && (e = readdir(d)) != NULL && c->n < MAX_TASKS) {
            if (!isdigit((unsigned char)e->d_name[0]))
                continue;
            char path[384];
            snprintf(path, sizeof(path), "%s/%.255s/stat", dir, e->d_name);
            c->tid[c->n] = (pid_t)atoi(e->d_name);
            c->pid[c->n] = s->pid[i];
            c->ticks[c->n] = stat_ticks(path);
            c->n++;
        }
        if (d != NULL)
            closedir(d);
    }
}

static double cpu_delta_s(const struct cpu_snap *a, const struct cpu_snap *b)
{
    unsigned long long ta = 0, tb = 0;
    for (int i = 0; i < a->n; i++)
        ta += a->ticks[i];
    for (int i = 0; i < b->n; i++)
        tb += b->ticks[i];
    return (double)(tb - ta) / (double)sysconf(_SC_CLK_TCK);
}

/* The busiest threads (tid/pid) between two snapshots, as "pid/tid:cores" text. */
static void cpu_top(const struct cpu_snap *a, const struct cpu_snap *b, double wall, char *out,
                    size_t n)
{
    double v[MAX_TASKS];
    for (int i = 0; i < b->n; i++) {
        unsigned long long t0 = 0;
        for (int j = 0; j < a->n; j++)
            if (a->tid[j] == b->tid[i])
                t0 = a->ticks[j];
        v[i] = (double)(b->ticks[i] - t0) / (double)sysconf(_SC_CLK_TCK) / wall;
    }
    size_t off = 0;
    out[0] = '\0';
    for (int k = 0; k < 6; k++) {
        int best = -1;
        for (int i = 0; i < b->n; i++)
            if (v[i] >= 0.01 && (best < 0 || v[i] > v[best]))
                best = i;
        if (best < 0)
            break;
        if (b->tid[best] == b->pid[best])
            off += (size_t)snprintf(out + off, n - off, "%s%d:%.2f", k ? " " : "",
                                    (int)b->pid[best], v[best]);
        else
            off += (size_t)snprintf(out + off, n - off, "%s%d/%d:%.2f", k ? " " : "",
                                    (int)b->pid[best], (int)b->tid[best], v[best]);
        v[best] = -1;
        if (off >= n)
            break;
    }
}

/* The whole machine: busy and stolen CPU ticks (/proc/stat) and UDP datagrams dropped for a
 * full receive buffer (/proc/net/snmp RcvbufErrors: the Mw hop of both proxies is UDP). */
struct sys_snap {
    unsigned long long busy, steal, udp_drops;
};

static void sys_snap(struct sys_snap *s)
{
    memset(s, 0, sizeof(*s));
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (f != NULL && fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                            &v[3], &v[4], &v[5], &v[6], &v[7]) == 8) {
        s->busy = v[0] + v[1] + v[2] + v[5] + v[6]; /* user nice system irq softirq */
        s->steal = v[7];
    }
    if (f != NULL)
        fclose(f);
    f = fopen("/proc/net/snmp", "r");
    char line[512];
    bool header = false;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "Udp: ", 5) != 0)
            continue;
        if (!header) {
            header = true; /* the names line; RcvbufErrors is the 5th value */
            continue;
        }
        sscanf(line, "Udp: %*u %*u %*u %*u %llu", &s->udp_drops);
        break;
    }
    if (f != NULL)
        fclose(f);
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}
/* ---- tokens ------------------------------------------------------------------------------- */

char *mint_token(struct minter *m, const char *user)
{
    double t0 = now_s();
    char jti[64], impi[96], impu[128], sub[96];
    snprintf(jti, sizeof(jti), "%s-%llu", m->run, ++m->seq);
    snprintf(impi, sizeof(impi), "%s@%s", user, m->domain);
    snprintf(impu, sizeof(impu), "sip:%s@%s", user, m->domain);
    snprintf(sub, sizeof(sub), "bench-%s", user);
    json_int_t now = (json_int_t)time(NULL);
    json_t *c = json_pack("{s:s,s:s,s:s,s:I,s:I,s:s,s:s,s:s,s:s,s:[s]}", "iss", m->iss, "sub", sub,
                          "aud", m->aud, "iat", now, "exp", now + 3600, "jti", jti, "client_id",
                          "epcscf-bench", "scope", "openid ims", "impi", impi, "impu", impu);
    char *t = c != NULL ? ims_mint_sign(m->key, "ES256", m->header, c) : NULL;
    json_decref(c);
    if (t == NULL)
        die("minting a token failed");
    m->spent_s += now_s() - t0;
    m->minted++;
    return t;
}
/* ---- options -------------------------------------------------------------------------------- */

struct opts {
    const char *ep_ws, *ep_wss, *kam_ws, *kam_wss;
    pid_t ep_pid, kam_pid, kam_wss_pid, core_pid;
    const char *key, *kid, *iss, *aud, *domain, *origin, *prefix;
    size_t conns;
    double seconds, warmup, hold;
    unsigned rounds, fresh_every;
    size_t ramp;
    double max_rate;
};

static void parse_opts(int argc, char **argv, struct opts *o)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            die("%s needs a value", a);
        const char *v = argv[++i];
#define STR(name, field)                                                                           \
    if (strcmp(a, name) == 0) {                                                                    \
        o->field = v;                                                                              \
        continue;                                                                                  \
    }
#define NUM(name, field, type)                                                                     \
    if (strcmp(a, name) == 0) {                                                                    \
        char *e;                                                                                   \
        double d = strtod(v, &e);                                                                  \
        if (*e || d < 0)                                                                           \
            die("%s: bad value %s", a, v);                                                         \
        o->field = (type)d;                                                                        \
        continue;                                                                                  \
    }
        STR("--ep-ws", ep_ws)
        STR("--ep-wss", ep_wss)
        STR("--kam-ws", kam_ws)
        STR("--kam-wss", kam_wss)
        NUM("--ep-pid", ep_pid, pid_t)
        NUM("--kam-pid", kam_pid, pid_t)
        NUM("--kam-wss-pid", kam_wss_pid, pid_t)
        NUM("--core-pid", core_pid, pid_t)
        STR("--key", key)
        STR("--kid", kid)
        STR("--issuer", iss)
        STR("--audience", aud)
        STR("--domain", domain)
        STR("--origin", origin)
        STR("--prefix", prefix)
        NUM("--conns", conns, size_t)
        NUM("--seconds", seconds, double)
        NUM("--warmup", warmup, double)
        NUM("--hold", hold, double)
        NUM("--rounds", rounds, unsigned)
        NUM("--fresh-every", fresh_every, unsigned)
        NUM("--ramp", ramp, size_t)
        NUM("--max-rate", max_rate, double)
        die("unknown option %s", a);
#undef STR
#undef NUM
    }
    if (o->key == NULL || o->iss == NULL || o->aud == NULL || o->origin == NULL)
        die("--key, --issuer, --audience and --origin are required");
}

static EVP_PKEY *load_key(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        die("%s: %s", path, strerror(errno));
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (k == NULL)
        die("%s: not a PEM private key", path);
    return k;
}

static void setup(const struct opts *o, struct minter *m)
{
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    client_init(o->origin);
    memset(m, 0, sizeof(*m));
    m->key = load_key(o->key);
    m->kid = o->kid;
    m->iss = o->iss;
    m->aud = o->aud;
    m->domain = o->domain;
    m->header = json_pack("{s:s,s:s,s:s}", "typ", "at+jwt", "alg", "ES256", "kid", o->kid);
    unsigned char r[8];
    RAND_bytes(r, sizeof(r));
    for (int i = 0; i < 8; i++)
        snprintf(m->run + 2 * i, 3, "%02x", r[i]);
    G.mint = m;
}

/* First tokens (one per connection): minted before anything is timed. */
static void mint_initial(struct set *s)
{
    for (size_t i = 0; i < s->n; i++)
        s->c[i].token = mint_token(G.mint, s->c[i].user);
}

static void machine_line(void)
{
    char model[300] = "?", load[64] = "?";
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "model name", 10) == 0) {
            char *p = strchr(line, ':');
            snprintf(model, sizeof(model), "%s", p ? p + 2 : line);
            model[strcspn(model, "\n")] = '\0';
            break;
        }
    if (f != NULL)
        fclose(f);
    f = fopen("/proc/loadavg", "r");
    if (f != NULL && fgets(load, sizeof(load), f) != NULL)
        load[strcspn(load, "\n")] = '\0';
    if (f != NULL)
        fclose(f);
    time_t t = time(NULL);
    char ts[32];
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    printf("# machine: %s, nproc %ld, %s, loadavg %s\n", model, sysconf(_SC_NPROCESSORS_ONLN), ts,
           load);
}

/* ---- rate ------------------------------------------------------------------------------------ */

struct round_result {
    double per_s, server_cpu, core_cpu, gen_cpu, wall, lat_ms;
    unsigned long long ok; /* 200s in the counted window (the CPU figures' window) */
};

static bool drained(void *arg)
{
    struct set *s = arg;
    for (size_t i = 0; i < s->n; i++)
        if (s->c[i].waiting)
            return false;
    return true;
}

static bool tokens_gone(void *arg)
{
    (void)arg;
    return G.tokens_out;
}

/* Mints the fresh tokens of one round of s: enough for max_rate REGISTERs a second. */
static void mint_round(struct set *s, double max_rate, double secs)
{
    if (G.fresh_every == 0)
        return;
    size_t per = (size_t)(max_rate * secs / (double)G.fresh_every / (double)s->n) + 4;
    double t0 = now_s();
    for (size_t i = 0; i < s->n; i++) {
        struct conn *c = &s->c[i];
        for (size_t j = c->next_fresh; j < c->n_fresh; j++)
            free(c->fresh[j]);
        free(c->fresh);
        c->fresh = xmalloc(per * sizeof(char *));
        c->n_fresh = per;
        c->next_fresh = 0;
        for (size_t j = 0; j < per; j++) {
            c->fresh[j] = mint_token(G.mint, c->user);
            if (j % 64 == 63)
                run_ready();
        }
    }
    printf("#   minted %zu fresh tokens for %s/%s in %.1f s\n", per * s->n, s->t->server,
           s->t->transport, now_s() - t0);
}

static struct round_result run_round(struct set *s, const struct opts *o, struct pset *core,
                                     double max_rate)
{
    struct round_result r = {0};
    if (s->t->is_ep)
        mint_round(s, max_rate, o->warmup + o->seconds);
    G.phase = P_LOAD;
    G.active = s;
    G.sending = true;
    G.tokens_out = false;
    for (size_t i = 0; i < s->n; i++) {
        s->c[i].regs = 0;
        if (s->c[i].st == C_OPEN && !s->c[i].waiting)
            next_register(&s->c[i]);
    }
    run_until(now_s() + o->warmup, tokens_gone, NULL);
    struct cpu_snap *a = xmalloc(sizeof(*a)), *b = xmalloc(sizeof(*b));
    struct cpu_snap *ca = xmalloc(sizeof(*ca)), *cb = xmalloc(sizeof(*cb));
    cpu_snap(s->t->ps, a);
    cpu_snap(core, ca);
    struct sys_snap y0, y1;
    sys_snap(&y0);
    double g0 = self_cpu_s();
    unsigned long long ok0 = s->ok, err0 = set_errors(s);
    double lat0 = s->lat_sum;
    double t0 = now_s();
    run_until(t0 + o->seconds, tokens_gone, NULL);
    double t1 = G.tokens_out ? G.tokens_out_at : now_s();
    if (t1 < t0)
        t1 = t0;
    unsigned long long ok1 = s->ok;
    cpu_snap(s->t->ps, b);
    cpu_snap(core, cb);
    sys_snap(&y1);
    r.gen_cpu = self_cpu_s() - g0;
    r.wall = now_s() - t0;
    double hz = (double)sysconf(_SC_CLK_TCK);
    double busy = (double)(y1.busy - y0.busy) / hz / r.wall;
    r.ok = ok1 - ok0;
    r.per_s = t1 > t0 ? (double)(ok1 - ok0) / (t1 - t0) : 0;
    r.lat_ms = ok1 > ok0 ? (s->lat_sum - lat0) / (double)(ok1 - ok0) * 1000 : 0;
    r.server_cpu = cpu_delta_s(a, b);
    r.core_cpu = cpu_delta_s(ca, cb);
    char top[256], ctop[256];
    cpu_top(a, b, r.wall, top, sizeof(top));
    cpu_top(ca, cb, r.wall, ctop, sizeof(ctop));
    G.sending = false;
    run_until(now_s() + DRAIN_S, drained, s);
    for (size_t i = 0; i < s->n; i++)
        if (s->c[i].waiting)
            conn_fail(&s->c[i], E_TIMEOUT, "no answer within 5 s after the round");
    printf("#   %-8s %-3s %9.0f reg/s  latency %.2f ms  cpu (cores): server %.2f [%s]  core "
           "%.2f [%s]  generator %.2f  machine busy %.2f (rest %.2f, steal %.2f)  UDP drops "
           "%llu%s%s\n",
           s->t->server, s->t->transport, r.per_s, r.lat_ms, r.server_cpu / r.wall, top,
           r.core_cpu / r.wall, ctop, r.gen_cpu / r.wall, busy,
           busy - (r.server_cpu + r.core_cpu + r.gen_cpu) / r.wall,
           (double)(y1.steal - y0.steal) / hz / r.wall, y1.udp_drops - y0.udp_drops,
           G.tokens_out ? "  (tokens ran out: window ended early)" : "",
           set_errors(s) > err0 ? "  ERRORS" : "");
    fflush(stdout);
    free(a);
    free(b);
    free(ca);
    free(cb);
    return r;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, unsigned n)
{
    double t[MAX_ROUNDS];
    memcpy(t, v, n * sizeof(double));
    qsort(t, n, sizeof(double), cmp_double);
    return n == 0 ? 0 : n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

static json_t *num_or_null(double v, bool ok, int decimals)
{
    if (!ok)
        return json_null();
    double f = 1;
    for (int i = 0; i < decimals; i++)
        f *= 10;
    double r = (double)(long long)(v * f + 0.5) / f;
    return decimals == 0 ? json_integer((json_int_t)r) : json_real(r);
}

static int cmd_rate(int argc, char **argv)
{
    struct opts o = {.domain = "home1.net",
                     .kid = "bench",
                     .prefix = "r",
                     .conns = 100,
                     .seconds = 10,
                     .warmup = 3,
                     .rounds = 3,
                     .fresh_every = 2,
                     .ramp = 100,
                     .max_rate = 15000};
    parse_opts(argc, argv, &o);
    if (o.rounds == 0 || o.rounds > MAX_ROUNDS || o.conns == 0)
        die("--rounds 1..%d and --conns > 0", MAX_ROUNDS);
    struct minter m;
    setup(&o, &m);
    G.fresh_every = o.fresh_every;
    struct pset ep, kam, kamw, core;
    pset_scan(&ep, o.ep_pid);
    pset_scan(&kam, o.kam_pid);
    pset_scan(&kamw, o.kam_wss_pid > 0 ? o.kam_wss_pid : o.kam_pid);
    pset_scan(&core, o.core_pid);
    /* Order of a round: eP-CSCF then Kamailio, per transport. */
    const char *hp[4] = {o.ep_ws, o.kam_ws, o.ep_wss, o.kam_wss};
    const char *srv[4] = {"epcscf", "kamailio", "epcscf", "kamailio"};
    const char *tr[4] = {"ws", "ws", "wss", "wss"};
    struct set *sets[4] = {0};
    machine_line();
    printf("# rate: %zu connections per target, %u rounds of %.0f s (+%.0f s warm-up), a fresh "
           "token every %u REGISTERs, servers: epcscf-ref %d (%d procs), kamailio %d (%d procs) "
           "and %d (%d procs), core %d (%d procs)\n",
           o.conns, o.rounds, o.seconds, o.warmup, o.fresh_every, (int)o.ep_pid, ep.n,
           (int)kam.root, kam.n, (int)kamw.root, kamw.n, (int)o.core_pid, core.n);
    for (int i = 0; i < 4; i++) {
        if (hp[i] == NULL)
            continue;
        struct target *t = target_new(srv[i], tr[i], hp[i],
                                      i % 2 == 0 ? &ep
                                      : i == 1   ? &kam
                                                 : &kamw);
        sets[i] = set_new(t, o.conns, o.prefix, (char)('a' + i));
        mint_initial(sets[i]);
    }
    for (int i = 0; i < 4; i++) {
        if (sets[i] == NULL)
            continue;
        double d = ramp(sets[i], o.ramp, 120);
        printf("# %s/%s: %zu connections registered in %.1f s%s%s\n", srv[i], tr[i],
               set_open(sets[i]), d, sets[i]->cipher[0] ? ", " : "", sets[i]->cipher);
        print_errors(sets[i], "ramp");
    }
    double rates[4][MAX_ROUNDS] = {{0}}, scpu[4] = {0}, ccpu[4] = {0}, gcpu[4] = {0};
    unsigned long long oks[4] = {0};
    double max_rate[4] = {o.max_rate, o.max_rate, o.max_rate, o.max_rate};
    for (unsigned r = 0; r < o.rounds; r++) {
        printf("# round %u\n", r + 1);
        for (int i = 0; i < 4; i++) {
            if (sets[i] == NULL)
                continue;
            if (set_open(sets[i]) == 0) {
                printf("#   %s/%s: no connection left\n", srv[i], tr[i]);
                continue;
            }
            struct round_result rr = run_round(sets[i], &o, &core, max_rate[i]);
            rates[i][r] = rr.per_s;
            scpu[i] += rr.server_cpu;
            ccpu[i] += rr.core_cpu;
            gcpu[i] += rr.gen_cpu;
            oks[i] += rr.ok;
            if (G.tokens_out)
                max_rate[i] *= 2; /* too few tokens were minted: twice as many next time */
            else if (rr.per_s * 1.5 > max_rate[i])
                max_rate[i] = rr.per_s * 1.5;
        }
    }
    double med[4];
    bool ok[4];
    unsigned long long ep_err = 0, kam_err = 0;
    json_t *out = json_object();
    for (int i = 0; i < 4; i++) {
        med[i] = median(rates[i], o.rounds);
        ok[i] = sets[i] != NULL && med[i] > 0; /* with errors: printed, and exit 1 */
        if (sets[i] == NULL)
            continue;
        print_errors(sets[i], "total");
        if (i % 2 == 0)
            ep_err += set_errors(sets[i]);
        else
            kam_err += set_errors(sets[i]);
        char ks[64];
        printf("# %s/%s: median %.0f reg/s over %u rounds (", srv[i], tr[i], med[i], o.rounds);
        for (unsigned r = 0; r < o.rounds; r++)
            printf("%s%.0f", r ? ", " : "", rates[i][r]);
        double per = oks[i] ? 1e6 / (double)oks[i] : 0;
        printf("); CPU per REGISTER: server %.1f us, core %.1f us, generator %.1f us; %llu pings "
               "answered\n",
               scpu[i] * per, ccpu[i] * per, gcpu[i] * per, sets[i]->pings);
        snprintf(ks, sizeof(ks), "%s_%s_cpu_us_per_reg", srv[i], tr[i]);
        json_object_set_new(out, ks, num_or_null(scpu[i] * per, oks[i] > 0, 1));
        snprintf(ks, sizeof(ks), "%s_%s_errors", srv[i], tr[i]);
        json_object_set_new(out, ks, errors_json(sets[i]));
    }
    if (ep_err)
        printf("# ERROR: the eP-CSCF had %llu errors (see the ERRORS lines)\n", ep_err);
    if (kam_err)
        printf("# WARNING: Kamailio had %llu errors (see the ERRORS lines)\n", kam_err);
    if (m.minted)
        printf("# %llu tokens minted, %.1f us each (outside the counted windows)\n", m.minted,
               m.spent_s / (double)m.minted * 1e6);
    json_object_set_new(out, "fresh_every", json_integer(o.fresh_every));
    json_object_set_new(out, "rounds", json_integer(o.rounds));
    json_object_set_new(out, "seconds", json_real(o.seconds));
    json_object_set_new(out, "epcscf_wss_reg_per_s", num_or_null(med[2], ok[2], 0));
    json_object_set_new(out, "kamailio_wss_reg_per_s", num_or_null(med[3], ok[3], 0));
    json_object_set_new(out, "wss_ratio", num_or_null(med[2] / med[3], ok[2] && ok[3], 2));
    json_object_set_new(out, "conns", json_integer((json_int_t)o.conns));
    json_object_set_new(out, "epcscf_reg_per_s", num_or_null(med[0], ok[0], 0));
    json_object_set_new(out, "kamailio_reg_per_s", num_or_null(med[1], ok[1], 0));
    json_object_set_new(out, "ratio", num_or_null(med[0] / med[1], ok[0] && ok[1], 2));
    char *txt = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    printf("%s\n", txt);
    free(txt);
    json_decref(out);
    return ep_err ? 1 : 0;
}

/* ---- idle ------------------------------------------------------------------------------------ */

static int cmd_idle(int argc, char **argv)
{
    struct opts o = {.domain = "home1.net",
                     .kid = "bench",
                     .prefix = "i",
                     .conns = 10000,
                     .hold = 10,
                     .ramp = 100};
    parse_opts(argc, argv, &o);
    struct minter m;
    setup(&o, &m);
    const char *hp = NULL, *srv = NULL, *tr = NULL;
    pid_t pid = 0;
    int given = 0;
    if (o.ep_ws)
        given++, hp = o.ep_ws, srv = "epcscf", tr = "ws", pid = o.ep_pid;
    if (o.ep_wss)
        given++, hp = o.ep_wss, srv = "epcscf", tr = "wss", pid = o.ep_pid;
    if (o.kam_ws)
        given++, hp = o.kam_ws, srv = "kamailio", tr = "ws", pid = o.kam_pid;
    if (o.kam_wss)
        given++, hp = o.kam_wss, srv = "kamailio", tr = "wss", pid = o.kam_pid;
    if (given != 1 || pid <= 0)
        die("idle: exactly one target and its server's pid");
    struct pset ps;
    pset_scan(&ps, pid);
    struct target *t = target_new(srv, tr, hp, &ps);
    struct set *s = set_new(t, o.conns, o.prefix, tr[2] ? 's' : 'w');
    machine_line();
    mint_initial(s);
    long pss0 = pset_pss_kib(&ps);
    printf("# idle %s/%s: %zu connections, %d processes, PSS before %ld KiB\n", srv, tr, o.conns,
           ps.n, pss0);
    fflush(stdout);
    double d = ramp(s, o.ramp, 300);
    size_t registered = 0;
    for (size_t i = 0; i < s->n; i++)
        registered += s->c[i].registered && s->c[i].st == C_OPEN;
    printf("# %zu of %zu registered in %.1f s (%.0f/s)%s%s\n", registered, s->n, d,
           (double)registered / d, s->cipher[0] ? ", " : "", s->cipher);
    print_errors(s, "ramp");
    fflush(stdout);
    G.phase = P_LOAD; /* idle: nothing is sent, pings are answered */
    G.sending = false;
    run_until(now_s() + o.hold, NULL, NULL);
    bool alive = pset_alive(&ps);
    pset_scan(&ps, pid); /* a Kamailio child may have been replaced */
    long pss1 = alive ? pset_pss_kib(&ps) : 0;
    size_t open = set_open(s);
    printf("# after %.0f s idle: %zu connections open, server %s, PSS %ld KiB\n", o.hold, open,
           alive ? "running" : "GONE", pss1);
    /* Every connection answers one re-REGISTER (cached token). */
    unsigned long long live = check_alive(s, o.ramp, 120);
    printf("# liveness re-REGISTER: %llu of %zu answered 200\n", live, s->n);
    print_errors(s, "idle");
    set_close_all(s);
    bool good = set_errors(s) == 0 && live == s->n && alive;
    /* Over the connections open when PSS was read (all of them in a good run). */
    double kib = open > 0 ? (double)(pss1 - pss0) / (double)open : 0;
    printf("# %s/%s: %.1f KiB per idle registered connection (PSS %ld -> %ld KiB, %zu "
           "connections)%s\n",
           srv, tr, kib, pss0, pss1, open, good ? "" : "  (with errors: see above)");
    json_t *out = json_object();
    json_object_set_new(out, "server", json_string(srv));
    json_object_set_new(out, "transport", json_string(tr));
    json_object_set_new(out, "conns", json_integer((json_int_t)o.conns));
    json_object_set_new(out, "registered", json_integer((json_int_t)registered));
    json_object_set_new(out, "alive", json_integer((json_int_t)live));
    json_object_set_new(out, "server_running", json_boolean(alive));
    json_object_set_new(out, "errors", errors_json(s));
    if (s->first_err[0])
        json_object_set_new(out, "first_error", json_string(s->first_err));
    json_object_set_new(out, "pss_before_kib", json_integer(pss0));
    json_object_set_new(out, "pss_after_kib", json_integer(pss1));
    json_object_set_new(out, "open_at_pss", json_integer((json_int_t)open));
    json_object_set_new(out, "kib_per_conn", num_or_null(kib, alive && open > 0, 1));
    char *txt = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    printf("%s\n", txt);
    free(txt);
    json_decref(out);
    return good ? 0 : 1;
}

/* ---- jwks ------------------------------------------------------------------------------------ */

static int cmd_jwks(int argc, char **argv)
{
    if (argc != 2)
        die("usage: epcscf_bench jwks KEY.pem KID");
    EVP_PKEY *k = load_key(argv[0]);
    const char *kid = argv[1];
    char *j = ims_mint_jwks(&k, &kid, 1);
    if (j == NULL)
        die("JWKS failed");
    printf("%s\n", j);
    free(j);
    EVP_PKEY_free(k);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && strcmp(argv[1], "jwks") == 0)
        return cmd_jwks(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "rate") == 0)
        return cmd_rate(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "idle") == 0)
        return cmd_idle(argc - 2, argv + 2);
    fprintf(stderr, "usage: epcscf_bench jwks KEY.pem KID | rate OPTIONS | idle OPTIONS\n"
                    "(see the comment at the top of bench/epcscf_bench.c)\n");
    return 2;
}
