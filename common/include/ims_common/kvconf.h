/*
 * Key-table configuration: one text of "key = value" lines plus environment overrides
 * (PREFIX<KEY>, '.' written '_', letters upper-cased), parsed once into the caller's typed
 * struct. A component describes its keys in a table (name, type, offset of the field in its
 * struct, default, limits, one doc line) and keeps only its cross checks; this module does
 * the file syntax, the typed values, the environment, required keys, where each value came
 * from and the --check-config listing.
 *
 * File syntax: '#' starts a comment line; blank lines are ignored; "key = value" with
 * spaces around both trimmed; the value may be double-quoted (no quote inside). A key may
 * appear once in the file; the environment then overrides it. An empty value unsets a
 * string or list. Caps: IMS_KV_MAX_TEXT bytes of text, IMS_KV_MAX_VALUE bytes per value,
 * IMS_KV_MAX_ITEMS items per list. Control characters are refused in values.
 */
#ifndef IMS_COMMON_KVCONF_H
#define IMS_COMMON_KVCONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define IMS_KV_MAX_TEXT  (1024 * 1024)
#define IMS_KV_MAX_VALUE 4096
#define IMS_KV_MAX_ITEMS 256

/* The components' result enums (waf_config_result, ep_config_result) use these values. */
enum ims_kv_result {
    IMS_KV_OK = 0,
    IMS_KV_IO,       /* the file could not be read */
    IMS_KV_SYNTAX,   /* a line is not "key = value", a NUL byte, text too long */
    IMS_KV_UNKNOWN,  /* a key (file or environment) that is not in the table */
    IMS_KV_REPEATED, /* a key twice in the file */
    IMS_KV_VALUE,    /* a value of the wrong type, out of range or refused by its check */
    IMS_KV_MISSING,  /* a required key has no value */
    IMS_KV_INVALID,  /* values that contradict each other (the component's cross checks) */
    IMS_KV_NOMEM,
};
/* "ok", "io_error", "syntax", "unknown_key", "repeated_key", "bad_value", "missing_key",
 * "invalid", "out_of_memory"; "unknown" for anything else. */
const char *ims_kv_strerror(enum ims_kv_result r);

enum ims_kv_type {
    IMS_KV_STR,  /* char *, owned by the struct; NULL when unset or set to "" */
    IMS_KV_INT,  /* long, decimal, in [min, max] */
    IMS_KV_BOOL, /* bool: yes/no, true/false, 1/0 */
    IMS_KV_LIST, /* char ** NULL-terminated (NULL when empty) plus a size_t count at
                  * count_offset; items separated by spaces and/or commas */
};

struct ims_kv_key {
    const char *name; /* "section.key": lowercase letters, digits, '_' and '.' */
    enum ims_kv_type type;
    size_t offset;       /* of the field in the component's struct */
    size_t count_offset; /* IMS_KV_LIST only: of the size_t count */
    const char *def;     /* default, parsed like a file value; NULL: none */
    bool required;       /* a string or list that must end up non-empty */
    bool secret;         /* never shown (explain says "(set)"), nor echoed in errors; wiped */
    long min, max;       /* IMS_KV_INT */
    /* IMS_KV_STR and each IMS_KV_LIST item: NULL accepts anything, otherwise a refusal is
     * reported as "KEY: \"VALUE\" is not EXPECT". */
    bool (*valid)(const char *value);
    const char *expect;
    const char *doc; /* one line, also in the component's sample file */
};

struct ims_kv_table {
    const struct ims_kv_key *keys;
    size_t n;
    const char *env_prefix; /* "WAF_", "EPCSCF_" */
    size_t source_offset;   /* of the private unsigned char source_[] of the struct */
    size_t source_size;     /* its size, >= n */
};

/*
 * Fills cfg (a zeroed struct of the table's component) from the defaults, then
 * text[0..len) (may be NULL with len 0: no file), then the entries of envp starting with
 * the table's prefix (NULL-terminated "NAME=value" strings as environ; may be NULL), and
 * checks the required keys. On failure detail holds one line naming the key, and the line
 * for file errors; cfg keeps what was set so far (release it with ims_kv_clear).
 */
enum ims_kv_result ims_kv_parse(const struct ims_kv_table *t, void *cfg, const char *text,
                                size_t len, char *const *envp, char *detail, size_t dlen);

/* Reads path whole (at most IMS_KV_MAX_TEXT bytes) into a new *text of *len bytes the
 * caller frees. IMS_KV_IO (detail says why) or IMS_KV_NOMEM on failure. */
enum ims_kv_result ims_kv_read_file(const char *path, char **text, size_t *len, char *detail,
                                    size_t dlen);

/* Frees every string and list of cfg the table owns (secrets wiped first) and sets the
 * fields to NULL / 0; the struct itself stays the caller's. */
void ims_kv_clear(const struct ims_kv_table *t, void *cfg);

/* Replaces the string field of key name with a copy of value (source unchanged): for
 * defaults taken from another key ("default = realm"). -1 when out of memory. */
int ims_kv_set_copy(const struct ims_kv_table *t, void *cfg, const char *name, const char *value);

/* One line per key, "name = value  # default|file|environment": secrets as "(set)", unset
 * strings as "(unset)", booleans as yes/no, lists space-separated. */
void ims_kv_explain(const struct ims_kv_table *t, const void *cfg, FILE *f);

/* The documentation table, for the sample file's consistency test: the i-th key's name,
 * its default as written in the sample ("" when none) and whether it must be set (required
 * without a default). false past the end. */
bool ims_kv_key_info(const struct ims_kv_table *t, size_t i, const char **name,
                     const char **default_value, bool *required);

/* Formats one line into detail[dlen]; does nothing when detail is NULL or dlen 0. */
void ims_kv_detail(char *detail, size_t dlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * host:port where host is an IPv4 address, a bracketed IPv6 address or a DNS name (letters,
 * digits, '-', '_' and '.', labels of 1..63, at most 253 characters, the last label not all
 * digits) and port is 0..65535 in decimal. Writes the host without brackets into host[hl]
 * and the port; 0 on success, -1 when malformed or the host does not fit.
 */
int ims_kv_hostport(const char *s, char *host, size_t hl, unsigned *port);
/* The host alone, as above but without ":port". */
bool ims_kv_host_ok(const char *host);
/* host:port with a numeric address (IPv4 or [IPv6]), port 0..65535: a listening address. */
bool ims_kv_valid_listen(const char *v);
/* host:port as ims_kv_hostport with port 1..65535: a peer to connect to. */
bool ims_kv_valid_peer(const char *v);
/* A listening address (as ims_kv_valid_listen) on 127.0.0.0/8 or [::1]. */
bool ims_kv_is_loopback(const char *listen);

#endif
