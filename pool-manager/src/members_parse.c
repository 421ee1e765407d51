/* Parsers of bulk member input: range patterns and CSV (see members_parse.h). */
#include "members_parse.h"
#include "internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

bool imspool_pattern_parse(const char *s, struct imspool_pattern *pt, char *detail, size_t dlen)
{
    memset(pt, 0, sizeof(*pt));
    const char *open = strchr(s, '{');
    if (open == NULL) {
        if (strchr(s, '}') || strlen(s) >= sizeof(pt->prefix)) {
            imspool_detail(detail, dlen, "pattern '%.200s': stray '}' or too long", s);
            return false;
        }
        strcpy(pt->prefix, s);
        return true;
    }
    const char *close = strchr(open, '}');
    const char *dots = strstr(open, "..");
    if (close == NULL || dots == NULL || dots > close || strchr(close + 1, '{') ||
        strchr(close + 1, '}') || (size_t)(open - s) >= sizeof(pt->prefix) ||
        strlen(close + 1) >= sizeof(pt->suffix)) {
        imspool_detail(detail, dlen, "pattern '%.200s' must hold one range {A..B}", s);
        return false;
    }
    size_t la = (size_t)(dots - open - 1), lb = (size_t)(close - dots - 2);
    bool digits = la > 0 && la == lb && la <= 7;
    for (const char *c = open + 1; digits && c < close; c++)
        digits = c == dots || c == dots + 1 || isdigit((unsigned char)*c);
    if (!digits) {
        imspool_detail(detail, dlen,
                       "pattern '%.200s': the range bounds must be decimal numbers written "
                       "with the same number of digits (e.g. {0000..9999})",
                       s);
        return false;
    }
    pt->has_range = true;
    pt->lo = strtol(open + 1, NULL, 10);
    pt->hi = strtol(dots + 2, NULL, 10);
    pt->width = (int)la;
    if (pt->lo > pt->hi || pt->hi - pt->lo + 1 > IMSPOOL_MAX_MEMBERS) {
        imspool_detail(detail, dlen,
                       "pattern '%.200s': range must go up and hold at most %ld values", s,
                       IMSPOOL_MAX_MEMBERS);
        return false;
    }
    memcpy(pt->prefix, s, (size_t)(open - s));
    strcpy(pt->suffix, close + 1);
    return true;
}

static bool bad_byte(unsigned char c)
{
    return c <= 0x20 || c == 0x7f;
}

const char *imspool_impi_problem(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 1024)
        return "IMPI must hold 1..1024 bytes";
    for (; *s; s++)
        if (bad_byte((unsigned char)*s))
            return "IMPI holds whitespace or a control character";
    return NULL;
}

const char *imspool_impu_problem(const char *s)
{
    size_t n = strlen(s);
    if (n > 1024)
        return "IMPU longer than 1024 bytes";
    if (!((strncmp(s, "sip:", 4) == 0 && n > 4) || (strncmp(s, "sips:", 5) == 0 && n > 5) ||
          (strncmp(s, "tel:", 4) == 0 && n > 4)))
        return "IMPU must be a sip:, sips: or tel: URI (lower-case scheme)";
    for (; *s; s++)
        if (bad_byte((unsigned char)*s) || *s == '<' || *s == '>' || *s == '"')
            return "IMPU holds whitespace, a control character, '<', '>' or '\"'";
    return NULL;
}

/* Cuts the next field off *pos (inside [*pos, end)). Sets *last when the record ends with
 * it. Unquotes in place. NULL with a reason in *why when malformed. */
static char *next_field(char **pos, char *end, bool *last, const char **why)
{
    char *s = *pos;
    if (s < end && *s == '"') {
        char *o = s, *i = s + 1;
        for (;;) {
            if (i >= end) {
                *why = "unterminated quoted field";
                return NULL;
            }
            if (*i == '"') {
                if (i + 1 < end && i[1] == '"') {
                    *o++ = '"';
                    i += 2;
                    continue;
                }
                i++;
                break;
            }
            *o++ = *i++;
        }
        *o = '\0';
        if (i < end && *i == ',') {
            *last = false;
            *pos = i + 1;
        } else if (i == end) {
            *last = true;
            *pos = i;
        } else {
            *why = "text after a closing quote";
            return NULL;
        }
        return s;
    }
    char *i = s;
    while (i < end && *i != ',') {
        if (*i == '"') {
            *why = "quote inside an unquoted field";
            return NULL;
        }
        i++;
    }
    *last = i == end;
    *pos = i < end ? i + 1 : i;
    *i = '\0';
    return s;
}

bool imspool_csv_parse(char *buf, size_t len, imspool_csv_row_fn fn, void *arg, char *detail,
                       size_t dlen)
{
    if (memchr(buf, '\0', len)) {
        imspool_detail(detail, dlen, "the file holds a NUL byte");
        return false;
    }
    buf[len] = '\0';
    bool header_possible = true, impu_first = false;
    long line = 0;
    char *p = buf, *stop = buf + len;
    while (p < stop) {
        line++;
        /* One record per line: a quoted field may not hold a line break here (IMPIs and
           IMPUs cannot contain one). */
        char *nl = memchr(p, '\n', (size_t)(stop - p));
        char *end = nl ? nl : stop;
        char *next = nl ? nl + 1 : stop;
        if (end > p && end[-1] == '\r')
            end--;
        if (end == p) { /* blank line */
            p = next;
            continue;
        }
        const char *why = NULL;
        bool last = false;
        char *f1 = next_field(&p, end, &last, &why);
        char *f2 = f1 && !last ? next_field(&p, end, &last, &why) : NULL;
        if (f1 && !f2 && !why)
            why = "two fields expected (impi,impu)";
        if (f2 && !last)
            why = "more than two fields";
        if (why) {
            imspool_detail(detail, dlen, "line %ld: %s", line, why);
            return false;
        }
        if (header_possible) {
            header_possible = false;
            if (strcasecmp(f1, "impi") == 0 && strcasecmp(f2, "impu") == 0) {
                p = next;
                continue;
            }
            if (strcasecmp(f1, "impu") == 0 && strcasecmp(f2, "impi") == 0) {
                impu_first = true;
                p = next;
                continue;
            }
        }
        const char *impi = impu_first ? f2 : f1, *impu = impu_first ? f1 : f2;
        why = imspool_impi_problem(impi);
        if (why == NULL)
            why = imspool_impu_problem(impu);
        if (why) {
            imspool_detail(detail, dlen, "line %ld: %s", line, why);
            return false;
        }
        if (!fn(line, impi, impu, arg))
            return false;
        p = next;
    }
    return true;
}
