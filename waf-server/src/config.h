/*
 * waf-server configuration: one file of "key = value" lines plus environment overrides
 * (WAF_<KEY> with '.' as '_', upper case), parsed once into a typed struct. Every key, its
 * type, default and meaning is in the table of config.c and in waf-server.conf.sample.
 */
#ifndef WAF_CONFIG_H
#define WAF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct waf_listener_config {
    char *listen;   /* host:port, IPv4 or [IPv6] */
    char *tls_cert; /* PEM file; NULL: plain HTTP (only on a loopback address) */
    char *tls_key;  /* PEM file */
};

struct waf_config {
    char *issuer; /* "iss" of every token and the metadata's issuer */
    struct waf_listener_config pub, admin;
    char *database_url;
    char *redis_url;
    char *revoked_key;     /* Redis set read by libimsauth */
    char *kek_file;        /* 32-byte key-encryption key for signing keys (hex) */
    char *server_key_file; /* 32-byte HMAC key for client secrets (hex) */
    long token_lifetime_s;
    char *epcscf_wss_url;          /* returned to the WIC with each IMS token */
    char *wwsf_origin;             /* the "wwsf" claim; NULL: none */
    long key_overlap_s;            /* a new key is published this long before it signs */
    long assertion_max_lifetime_s; /* longest exp - now of a client-signed JWT */
    long code_lifetime_s;          /* authorization codes */
    long refresh_lifetime_s;       /* refresh tokens */
    long login_max_failures;       /* failed logins before a lockout */
    long login_lockout_s;          /* length of a lockout */
    long threads;                  /* HTTP worker threads per listener */
    long max_body;                 /* bytes; larger bodies get 413 */
    long connection_limit, per_ip_connection_limit, connection_timeout_s;
    char *admin_client_id;      /* first admin client, created on first start */
    char *admin_client_secret;  /* its secret (>= 32 characters); NULL: none created */
    long rate_token_per_min;    /* per client */
    long rate_token_per_ip_min; /* per client IP */
    long rate_login_per_min;    /* per IP */
    char *log_level;            /* error | warning | info | debug */
    unsigned char source_[48];  /* private: where each key's value came from */
};

enum waf_config_result {
    WAF_CONFIG_OK = 0,
    WAF_CONFIG_IO,       /* the file could not be read */
    WAF_CONFIG_SYNTAX,   /* a line is not "key = value" */
    WAF_CONFIG_UNKNOWN,  /* a key (in the file or WAF_* environment) that does not exist */
    WAF_CONFIG_REPEATED, /* a key twice in the file */
    WAF_CONFIG_VALUE,    /* a value of the wrong type or out of range */
    WAF_CONFIG_MISSING,  /* a required key has no value */
    WAF_CONFIG_INVALID,  /* values that contradict each other (plain HTTP off loopback, ...) */
    WAF_CONFIG_NOMEM,
};
const char *waf_config_strerror(enum waf_config_result r);

/*
 * Parses text[0..len) (the file's content; may be NULL with len 0 for "no file") and then
 * the WAF_* entries of envp (NULL-terminated "NAME=value" strings, as environ; may be
 * NULL). On success *out is a new config the caller frees with waf_config_free(); on
 * failure *out is NULL and detail holds one line naming the key, and the line for file
 * errors. Caps: 1 MiB of text, 4096 bytes per value.
 */
enum waf_config_result waf_config_parse(const char *text, size_t len, char *const *envp,
                                        struct waf_config **out, char *detail, size_t detail_len);
/* Reads path (NULL: no file) and parses it as above. */
enum waf_config_result waf_config_load(const char *path, char *const *envp, struct waf_config **out,
                                       char *detail, size_t detail_len);
void waf_config_free(struct waf_config *c); /* accepts NULL */

/* Writes every key with its value and where it came from (default, file, environment);
 * secrets are shown as "(set)". For --check-config. */
void waf_config_explain(const struct waf_config *c, FILE *f);

/* The documentation table, for the sample file's consistency test: the i-th key's name,
 * its default as written in the sample ("" when none) and whether it is required. false
 * past the end. */
bool waf_config_key(size_t i, const char **name, const char **default_value, bool *required);

#endif
