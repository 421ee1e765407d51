/* Private declarations of libimspool. */
#ifndef IMSPOOL_INTERNAL_H
#define IMSPOOL_INTERNAL_H

#include "imspool/imspool.h"

#include <stdbool.h>
#include <stdint.h>

#define IMSPOOL_API __attribute__((visibility("default")))

/* One migration: version NNNN, name, SQL text (len bytes, not NUL-terminated necessarily). */
struct imspool_migration {
    int version;
    const char *name;
    const char *sql;
    size_t len;
};

/* The migrations built into the library (generated from sql/migrations). */
extern const struct imspool_migration imspool_builtin_migrations[];
extern const size_t imspool_builtin_migrations_count;

void imspool_detail(char *detail, size_t dlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
