/*
 * Test harness, C side: throwaway databases on the dev stack's PostgreSQL (scripts/devstack
 * writes $DATABASE_URL). For tests and benchmarks only.
 */
#ifndef IMS_COMMON_TESTDB_H
#define IMS_COMMON_TESTDB_H

#include <stddef.h>

/* Creates database name (dropping an old one of that name) on the server of $DATABASE_URL
 * and writes a libpq connection string for it to url[n]. name must be a plain lower-case
 * identifier. Returns 0, or -1 with the reason in err[errn]. */
int ims_testdb_create(const char *name, char *url, size_t n, char *err, size_t errn);
/* Drops database name (connections to it are closed). Returns 0 or -1. */
int ims_testdb_drop(const char *name);

#endif
