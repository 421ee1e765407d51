/*
 * imspool: operator CLI of libimspool. Implemented so far: `migrate` (the pool, member and
 * lease commands come with the rest of the pool-manager issue, see README.md).
 * Exit: 0 success, 1 the operation failed (one line on stderr), 2 usage error.
 */
#include "imspool/imspool.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fputs("usage: imspool [--db URL] [--json] migrate [--dir DIR]\n"
          "  migrate   bring the database to the latest schema (sql/migrations built in,\n"
          "            or the NNNN_name.sql files of DIR); re-running is a no-op\n"
          "  --db URL  PostgreSQL URL or connection string (default: $DATABASE_URL)\n"
          "  --json    machine-readable output\n",
          f);
}

static int cmd_migrate(const char *db, const char *dir, int json)
{
    struct imspool_migrate_report rep;
    char detail[1024];
    enum imspool_result r = imspool_migrate(db, dir, &rep, detail, sizeof(detail));
    if (r != IMSPOOL_OK) {
        fprintf(stderr, "imspool: %s: %s\n", imspool_strerror(r), detail);
        if (json)
            printf("{\"ok\":false,\"error\":\"%s\",\"applied\":%d,\"version\":%d}\n",
                   imspool_strerror(r), rep.applied, rep.latest_version);
        return 1;
    }
    if (json)
        printf("{\"ok\":true,\"applied\":%d,\"already\":%d,\"version\":%d}\n", rep.applied,
               rep.already, rep.latest_version);
    else if (rep.applied == 0)
        printf("schema up to date (version %04d)\n", rep.latest_version);
    else
        printf("applied %d migration%s; schema version %04d\n", rep.applied,
               rep.applied == 1 ? "" : "s", rep.latest_version);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"db", required_argument, 0, 'd'},
                                         {"dir", required_argument, 0, 'D'},
                                         {"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *db = getenv("DATABASE_URL"), *dir = NULL;
    int json = 0, c;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            db = optarg;
            break;
        case 'D':
            dir = optarg;
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[optind++];
    /* Options may also follow the command. */
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            db = optarg;
            break;
        case 'D':
            dir = optarg;
            break;
        case 'j':
            json = 1;
            break;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "imspool: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (db == NULL || *db == '\0') {
        fprintf(stderr, "imspool: no database: give --db URL or set DATABASE_URL\n");
        return 2;
    }
    if (strcmp(cmd, "migrate") == 0)
        return cmd_migrate(db, dir, json);
    fprintf(stderr, "imspool: unknown command '%s' (implemented so far: migrate)\n", cmd);
    return 2;
}
