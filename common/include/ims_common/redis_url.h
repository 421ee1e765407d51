/*
 * Redis URLs as the project's services take them: redis://[:password@]host[:port][/db]
 * (host: letters, digits, '.', '-', '_'; port 1..65535, default 6379; db 0..1000, default
 * 0; a user name without a password is refused, there being nothing to authenticate with).
 */
#ifndef IMS_COMMON_REDIS_URL_H
#define IMS_COMMON_REDIS_URL_H

#include <stdbool.h>
#include <stddef.h>

struct ims_redis_url {
    char host[256];
    char password[256]; /* "" when none; the caller wipes it when done */
    int port, db;
};

/* Parses url into *u. false when malformed or a part does not fit (u then undefined). */
bool ims_redis_url_parse(const char *url, struct ims_redis_url *u);

#endif
