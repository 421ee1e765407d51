/*
 * Members: bulk add from range patterns or CSV, enable/disable one member.
 *
 * A bulk add builds its rows here, sends them with COPY into a session-local temporary
 * table and moves them into pool_members with one INSERT ... SELECT: one statement, so all
 * rows or none are added, and 100,000 rows take a couple of seconds instead of 100,000
 * round trips. Progress is reported while the rows are sent.
 */
#include "internal.h"
#include "members_parse.h"

#include <stdio.h>
#include <stdlib.h>

#define MAX_CSV_BYTES  (256L * 1024 * 1024)
#define COPY_CHUNK     (256 * 1024)
#define PROGRESS_STEPS 100

/* COPY text-format rows "n\timpi\timpu\n", grown as needed. */
struct rows {
    char *buf;
    size_t len, cap;
    long count;
    bool nomem;
};

static void put(struct rows *r, const char *s)
{
    for (; *s; s++) {
        if (r->len + 2 >= r->cap) {
            size_t cap = r->cap ? r->cap * 2 : 1 << 20;
            char *b = realloc(r->buf, cap);
            if (b == NULL) {
                r->nomem = true;
                return;
            }
            r->buf = b;
            r->cap = cap;
        }
        if (*s == '\\') /* the only COPY escape a valid IMPI/IMPU can need */
            r->buf[r->len++] = '\\';
        r->buf[r->len++] = *s;
    }
}

static void add_row(struct rows *r, const char *impi, const char *impu)
{
    char n[24];
    snprintf(n, sizeof(n), "%ld\t", ++r->count);
    put(r, n);
    put(r, impi);
    put(r, "\t");
    put(r, impu);
    put(r, "\n");
}

static enum imspool_result pool_exists(struct imspool *p, const char *pool, char *detail,
                                       size_t dlen)
{
    enum imspool_result r = IMSPOOL_OK;
    const char *params[] = {pool};
    PGresult *res =
        imspool_q(p, "SELECT 1 FROM pools WHERE name = $1", 1, params, &r, detail, dlen);
    if (res == NULL)
        return r;
    bool known = PQntuples(res) == 1;
    PQclear(res);
    if (!known) {
        imspool_detail(detail, dlen, "no pool named %s", pool);
        return IMSPOOL_ERR_POOL_UNKNOWN;
    }
    return IMSPOOL_OK;
}

/* Sends rows with COPY and inserts them into pool in one statement. */
static enum imspool_result insert_rows(struct imspool *p, const char *pool, struct rows *rows,
                                       imspool_progress_fn progress, void *arg, long *added,
                                       char *detail, size_t dlen)
{
    enum imspool_result r = IMSPOOL_OK;
    PGresult *res = imspool_q(p,
                              "CREATE TEMP TABLE IF NOT EXISTS imspool_import "
                              "(n bigint, impi text, impu text)",
                              0, NULL, &r, detail, dlen);
    if (res == NULL)
        return r;
    PQclear(res);
    if ((res = imspool_q(p, "TRUNCATE imspool_import", 0, NULL, &r, detail, dlen)) == NULL)
        return r;
    PQclear(res);

    res = PQexec(p->c, "COPY imspool_import (n, impi, impu) FROM STDIN");
    bool copying = PQresultStatus(res) == PGRES_COPY_IN;
    PQclear(res);
    if (!copying) {
        imspool_detail(detail, dlen, "COPY refused: %s", PQerrorMessage(p->c));
        imspool_oneline(detail);
        return IMSPOOL_ERR_DB_UNAVAILABLE;
    }
    size_t step = rows->len / PROGRESS_STEPS + 1, next_report = 0;
    bool sent = true;
    for (size_t off = 0; off < rows->len && sent;) {
        size_t n = rows->len - off < COPY_CHUNK ? rows->len - off : COPY_CHUNK;
        sent = PQputCopyData(p->c, rows->buf + off, (int)n) == 1;
        off += n;
        if (progress && (off >= next_report || off == rows->len)) {
            progress(1, (long)((double)rows->count * (double)off / (double)rows->len), rows->count,
                     arg);
            next_report = off + step;
        }
    }
    sent = PQputCopyEnd(p->c, sent ? NULL : "send failed") == 1 && sent;
    for (PGresult *x; (x = PQgetResult(p->c)) != NULL; PQclear(x))
        if (PQresultStatus(x) != PGRES_COMMAND_OK)
            sent = false;
    if (!sent) {
        imspool_detail(detail, dlen, "sending the rows failed: %s", PQerrorMessage(p->c));
        imspool_oneline(detail);
        return IMSPOOL_ERR_DB_UNAVAILABLE;
    }

    if (progress)
        progress(2, 0, rows->count, arg);
    const char *params[] = {pool};
    res = imspool_q(p,
                    "INSERT INTO pool_members (pool_id, impi, impu) "
                    "SELECT pl.id, i.impi, i.impu FROM pools pl, imspool_import i "
                    "WHERE pl.name = $1 ORDER BY i.n",
                    1, params, &r, detail, dlen);
    PGresult *t = PQexec(p->c, "TRUNCATE imspool_import");
    PQclear(t);
    if (res == NULL)
        return r;
    long n = atol(PQcmdTuples(res));
    PQclear(res);
    if (n == 0 && rows->count > 0) {
        imspool_detail(detail, dlen, "no pool named %s", pool);
        return IMSPOOL_ERR_POOL_UNKNOWN;
    }
    if (progress)
        progress(2, n, rows->count, arg);
    *added = n;
    imspool_redis_members_changed(p, pool);
    return IMSPOOL_OK;
}

IMSPOOL_API enum imspool_result
imspool_members_add_progress(struct imspool *p, const char *pool, const char *impu_pattern,
                             const char *impi_pattern, imspool_progress_fn progress, void *arg,
                             long *added, char *detail, size_t dlen)
{
    struct imspool_pattern u, i;
    long dummy;
    added = added ? added : &dummy;
    *added = 0;
    imspool_detail(detail, dlen, "%s", "");
    if (pool == NULL || impu_pattern == NULL || impi_pattern == NULL) {
        imspool_detail(detail, dlen, "pool, IMPU pattern and IMPI pattern are required");
        return IMSPOOL_ERR_INVALID_ARG;
    }
    if (!imspool_pattern_parse(impu_pattern, &u, detail, dlen) ||
        !imspool_pattern_parse(impi_pattern, &i, detail, dlen))
        return IMSPOOL_ERR_INVALID_ARG;
    if (!u.has_range) { /* a single member: a range of one without digits */
        u.lo = u.hi = 0;
        u.width = 0;
    }
    if (i.has_range && (!u.has_range || i.lo != u.lo || i.hi != u.hi || i.width != u.width)) {
        imspool_detail(detail, dlen, "the IMPI pattern's range must equal the IMPU pattern's");
        return IMSPOOL_ERR_INVALID_ARG;
    }
    enum imspool_result r = pool_exists(p, pool, detail, dlen);
    if (r != IMSPOOL_OK)
        return r;
    struct rows rows = {0};
    char impu[2100], impi[2100];
    for (long n = u.lo; n <= u.hi && !rows.nomem; n++) {
        char num[16] = "";
        if (u.has_range)
            snprintf(num, sizeof(num), "%0*ld", u.width, n);
        snprintf(impu, sizeof(impu), "%s%s%s", u.prefix, num, u.suffix);
        snprintf(impi, sizeof(impi), "%s%s%s", i.prefix, i.has_range ? num : "",
                 i.has_range ? i.suffix : "");
        if (n == u.lo) { /* every row has the same form as the first */
            const char *why = imspool_impu_problem(impu);
            const char *whyi = imspool_impi_problem(impi);
            if (why || whyi) {
                imspool_detail(detail, dlen, "%s: %s", why ? "IMPU pattern" : "IMPI pattern",
                               why ? why : whyi);
                return IMSPOOL_ERR_INVALID_ARG;
            }
        }
        add_row(&rows, impi, impu);
    }
    if (rows.nomem)
        r = IMSPOOL_ERR_NOMEM;
    else
        r = insert_rows(p, pool, &rows, progress, arg, added, detail, dlen);
    if (r == IMSPOOL_ERR_DUPLICATE)
        imspool_detail(detail, dlen, "an IMPU of %.200s is a member already; nothing added",
                       impu_pattern);
    free(rows.buf);
    return r;
}

IMSPOOL_API enum imspool_result imspool_members_add(struct imspool *p, const char *pool,
                                                    const char *impu_pattern,
                                                    const char *impi_pattern, long *added,
                                                    char *detail, size_t dlen)
{
    return imspool_members_add_progress(p, pool, impu_pattern, impi_pattern, NULL, NULL, added,
                                        detail, dlen);
}

static bool csv_row(long line, const char *impi, const char *impu, void *arg)
{
    (void)line;
    struct rows *rows = arg;
    if (rows->count >= IMSPOOL_MAX_MEMBERS)
        return false;
    add_row(rows, impi, impu);
    return !rows->nomem;
}

IMSPOOL_API enum imspool_result imspool_members_add_csv(struct imspool *p, const char *pool,
                                                        FILE *f, imspool_progress_fn progress,
                                                        void *arg, long *added, char *detail,
                                                        size_t dlen)
{
    long dummy;
    added = added ? added : &dummy;
    *added = 0;
    imspool_detail(detail, dlen, "%s", "");
    if (pool == NULL || f == NULL) {
        imspool_detail(detail, dlen, "pool and file are required");
        return IMSPOOL_ERR_INVALID_ARG;
    }
    enum imspool_result r = pool_exists(p, pool, detail, dlen);
    if (r != IMSPOOL_OK)
        return r;
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 65536 + 1 > cap) {
            cap = cap ? cap * 2 : 1 << 20;
            char *t = realloc(text, cap);
            if (t == NULL) {
                free(text);
                return IMSPOOL_ERR_NOMEM;
            }
            text = t;
        }
        size_t n = fread(text + len, 1, 65536, f);
        len += n;
        if (len > (size_t)MAX_CSV_BYTES) {
            free(text);
            imspool_detail(detail, dlen, "CSV larger than %ld MiB", MAX_CSV_BYTES >> 20);
            return IMSPOOL_ERR_INVALID_ARG;
        }
        if (n < 65536)
            break;
    }
    if (ferror(f)) {
        free(text);
        imspool_detail(detail, dlen, "cannot read the CSV file");
        return IMSPOOL_ERR_IO;
    }
    struct rows rows = {0};
    bool parsed = imspool_csv_parse(text, len, csv_row, &rows, detail, dlen);
    free(text);
    if (!parsed || rows.nomem) {
        free(rows.buf);
        if (rows.nomem)
            return IMSPOOL_ERR_NOMEM;
        if (rows.count >= IMSPOOL_MAX_MEMBERS)
            imspool_detail(detail, dlen, "more than %ld rows", IMSPOOL_MAX_MEMBERS);
        return IMSPOOL_ERR_INVALID_ARG;
    }
    if (rows.count == 0) {
        free(rows.buf);
        imspool_detail(detail, dlen, "the CSV holds no member");
        return IMSPOOL_ERR_INVALID_ARG;
    }
    r = insert_rows(p, pool, &rows, progress, arg, added, detail, dlen);
    free(rows.buf);
    return r;
}

IMSPOOL_API enum imspool_result imspool_member_set_enabled(struct imspool *p, const char *pool,
                                                           const char *impu, int enabled,
                                                           char *detail, size_t dlen)
{
    if (pool == NULL || impu == NULL) {
        imspool_detail(detail, dlen, "pool and IMPU are required");
        return IMSPOOL_ERR_INVALID_ARG;
    }
    enum imspool_result r = pool_exists(p, pool, detail, dlen);
    if (r != IMSPOOL_OK)
        return r;
    const char *params[] = {pool, impu, enabled ? "available" : "disabled"};
    PGresult *res = imspool_q(p,
                              "UPDATE pool_members m SET state = $3, updated_at = now() "
                              "FROM pools pl WHERE pl.name = $1 AND m.pool_id = pl.id "
                              "AND m.impu = $2",
                              3, params, &r, detail, dlen);
    if (res == NULL)
        return r;
    bool hit = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    if (!hit) {
        imspool_detail(detail, dlen, "pool %s has no member %.200s", pool, impu);
        return IMSPOOL_ERR_MEMBER_UNKNOWN;
    }
    imspool_redis_members_changed(p, pool);
    return IMSPOOL_OK;
}
