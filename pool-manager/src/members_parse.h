/*
 * Parsers of bulk member input: {A..B} range patterns and two-column CSV. Pure functions
 * with no database access, so the fuzz harness (fuzz/fuzz_members.c) drives them alone.
 */
#ifndef IMSPOOL_MEMBERS_PARSE_H
#define IMSPOOL_MEMBERS_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#define IMSPOOL_MAX_MEMBERS 1000000L

/* A pattern split at its one range "{A..B}". has_range false: no braces at all. */
struct imspool_pattern {
    char prefix[1024], suffix[1024];
    bool has_range;
    long lo, hi;
    int width;
};

/* Parses s into *pt. false with a one-line reason in detail when malformed. */
bool imspool_pattern_parse(const char *s, struct imspool_pattern *pt, char *detail, size_t dlen);

/* The checks of the schema's ims_impi and ims_impu domains (sql/migrations/0001), done
 * before anything is sent so that an error can name its line. NULL when fine, else a
 * short reason. */
const char *imspool_impi_problem(const char *s);
const char *imspool_impu_problem(const char *s);

/* Called per data row with its 1-based line number; the strings live until the parse
 * returns. Returning false stops the parse (imspool_csv_parse then returns false too). */
typedef bool (*imspool_csv_row_fn)(long line, const char *impi, const char *impu, void *arg);

/*
 * Parses CSV text buf[0..len) in place (buf must hold len + 1 bytes; it is modified):
 * RFC 4180 fields, "" inside quotes, CRLF or LF, a final line without newline. Two fields
 * per row; an optional header "impi,impu" or "impu,impi" (any case) sets the order. Each
 * IMPI and IMPU is checked as above. Blank lines are skipped; NUL bytes are an error.
 * Returns false with "line N: reason" in detail at the first malformed line.
 */
bool imspool_csv_parse(char *buf, size_t len, imspool_csv_row_fn fn, void *arg, char *detail,
                       size_t dlen);

#endif
