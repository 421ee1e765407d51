/*
 * pool_bench: allocate+release pairs per second with C concurrent clients (processes) on a
 * 10,000-member pool, and in the same run pgbench's built-in TPC-B-like script with the
 * same number of clients against the same server. Needs the dev stack ($DATABASE_URL) and
 * pgbench. Last line: {"clients":C,"alloc_per_s":N,"pgbench_tps":N,"ratio":R,...}
 * usage: pool_bench [CLIENTS] [SECONDS]      (default 16 and 10)
 */
#include "ims_common/testdb.h"
#include "imspool/imspool.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DB "imspool_bench"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One client: allocate and release until the deadline; writes its count to fd. */
static void client(const char *url, int id, double until, int fd)
{
    struct imspool *p;
    struct imspool_opts o = {
        .db_url = url, .redis_url = getenv("POOL_BENCH_REDIS"), .redis_prefix = "pool_bench:"};
    char d[512];
    if (imspool_open(&p, &o, d, sizeof(d)) != IMSPOOL_OK)
        _exit(2);
    char holder[32];
    snprintf(holder, sizeof(holder), "bench-%d", id);
    long pairs = 0, errors = 0;
    while (now_s() < until) {
        struct imspool_lease l;
        if (imspool_allocate(p, "bench", holder, 0, &l, d, sizeof(d)) == IMSPOOL_OK &&
            imspool_release(p, l.id, NULL, d, sizeof(d)) == IMSPOOL_OK)
            pairs++;
        else
            errors++;
    }
    imspool_close(p);
    long out[2] = {pairs, errors};
    if (write(fd, out, sizeof(out)) != sizeof(out))
        _exit(2);
    _exit(0);
}

int main(int argc, char **argv)
{
    int clients = argc > 1 ? atoi(argv[1]) : 16;
    int secs = argc > 2 ? atoi(argv[2]) : 10;
    if (clients < 1 || clients > 256 || secs < 1 || getenv("DATABASE_URL") == NULL) {
        fprintf(stderr, "usage: pool_bench [CLIENTS] [SECONDS]   (needs $DATABASE_URL)\n");
        return 2;
    }
    char url[256], d[512];
    if (ims_testdb_create(DB, url, sizeof(url), d, sizeof(d)) != 0) {
        fprintf(stderr, "pool_bench: %s\n", d);
        return 2;
    }
    struct imspool *p;
    struct imspool_opts o = {.db_url = url};
    struct imspool_pool_spec spec = {"bench", "home1.net", 600, 0, 1};
    long added = 0;
    if (imspool_migrate(url, NULL, NULL, d, sizeof(d)) || imspool_open(&p, &o, d, sizeof(d)) ||
        imspool_pool_create(p, &spec, d, sizeof(d)) ||
        imspool_members_add(p, "bench", "sip:bench-{00000..09999}@home1.net",
                            "bench-{00000..09999}@home1.net", &added, d, sizeof(d))) {
        fprintf(stderr, "pool_bench: setup: %s\n", d);
        return 2;
    }
    /* One bulk import of 100,000 members (the issue: "well under a minute"). */
    struct imspool_pool_spec ispec = {"import", "home1.net", 600, 0, 1};
    long imported = 0;
    double ti = now_s();
    if (imspool_pool_create(p, &ispec, d, sizeof(d)) ||
        imspool_members_add(p, "import", "sip:imp-{000000..099999}@home1.net",
                            "imp-{000000..099999}@home1.net", &imported, d, sizeof(d))) {
        fprintf(stderr, "pool_bench: import: %s\n", d);
        return 2;
    }
    double import_s = now_s() - ti;
    printf("import: %ld members in %.2f s\n", imported, import_s);
    imspool_close(p);
    PGconn *c = PQconnectdb(url);
    PQclear(PQexec(c, "VACUUM ANALYZE"));
    PQfinish(c);

    /* (a) allocate+release pairs */
    int fds[2];
    if (pipe(fds) != 0)
        return 2;
    double until = now_s() + secs, t0 = now_s();
    for (int i = 0; i < clients; i++)
        if (fork() == 0)
            client(url, i, until, fds[1]);
    long pairs = 0, errors = 0;
    for (int i = 0; i < clients; i++) {
        long got[2] = {0, 0};
        if (read(fds[0], got, sizeof(got)) == sizeof(got)) {
            pairs += got[0];
            errors += got[1];
        }
        wait(NULL);
    }
    double alloc_per_s = (double)pairs / (now_s() - t0);
    printf("allocate+release: %d clients, %d s, %ld pairs (%ld errors), %.0f pairs/s\n", clients,
           secs, pairs, errors, alloc_per_s);

    /* (b) pgbench TPC-B-like, scale 1 (pgbench's default), same server and client count */
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "pgbench -i -q '%s' >/dev/null 2>&1", url);
    if (system(cmd) != 0) {
        fprintf(stderr, "pool_bench: pgbench -i failed (is pgbench installed?)\n");
        return 2;
    }
    snprintf(cmd, sizeof(cmd), "pgbench -n -c %d -j 2 -T %d '%s' 2>/dev/null", clients, secs, url);
    FILE *f = popen(cmd, "r");
    double tps = 0;
    char line[512];
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "tps = %lf", &tps) == 1)
            break;
    if (f)
        pclose(f);
    printf("pgbench TPC-B-like: %d clients, %d s, %.0f tps\n", clients, secs, tps);
    ims_testdb_drop(DB);
    printf("{\"clients\":%d,\"alloc_per_s\":%.0f,\"pgbench_tps\":%.0f,\"ratio\":%.3f,"
           "\"seconds\":%d,\"members\":%ld,\"errors\":%ld,\"redis\":%s,"
           "\"import_100k_s\":%.2f}\n",
           clients, alloc_per_s, tps, tps > 0 ? alloc_per_s / tps : 0, secs, added, errors,
           getenv("POOL_BENCH_REDIS") ? "true" : "false", import_s);
    return tps > 0 ? 0 : 1;
}
