/* Strict base64url (RFC 4648 section 5, no padding) as JWS compact serialization needs. */
#include "internal.h"

#include <stdint.h>

/* 0..63 for alphabet characters, 0xff otherwise. */
static const uint8_t dec_table[256] = {
    ['A'] = 0,  ['B'] = 1,  ['C'] = 2,  ['D'] = 3,  ['E'] = 4,  ['F'] = 5,  ['G'] = 6,  ['H'] = 7,
    ['I'] = 8,  ['J'] = 9,  ['K'] = 10, ['L'] = 11, ['M'] = 12, ['N'] = 13, ['O'] = 14, ['P'] = 15,
    ['Q'] = 16, ['R'] = 17, ['S'] = 18, ['T'] = 19, ['U'] = 20, ['V'] = 21, ['W'] = 22, ['X'] = 23,
    ['Y'] = 24, ['Z'] = 25, ['a'] = 26, ['b'] = 27, ['c'] = 28, ['d'] = 29, ['e'] = 30, ['f'] = 31,
    ['g'] = 32, ['h'] = 33, ['i'] = 34, ['j'] = 35, ['k'] = 36, ['l'] = 37, ['m'] = 38, ['n'] = 39,
    ['o'] = 40, ['p'] = 41, ['q'] = 42, ['r'] = 43, ['s'] = 44, ['t'] = 45, ['u'] = 46, ['v'] = 47,
    ['w'] = 48, ['x'] = 49, ['y'] = 50, ['z'] = 51, ['0'] = 52, ['1'] = 53, ['2'] = 54, ['3'] = 55,
    ['4'] = 56, ['5'] = 57, ['6'] = 58, ['7'] = 59, ['8'] = 60, ['9'] = 61, ['-'] = 62, ['_'] = 63,
};

/* The table above leaves 0 for non-alphabet characters; 'A' is the only real 0. */
static inline int dec(uint8_t c)
{
    uint8_t v = dec_table[c];
    return (v == 0 && c != 'A') ? -1 : v;
}

size_t ims_b64url_decoded_len(size_t n)
{
    if (n % 4 == 1)
        return SIZE_MAX;
    return n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
}

bool ims_b64url_decode(const char *in, size_t n, uint8_t *out, size_t *outlen)
{
    if (n % 4 == 1)
        return false;
    size_t o = 0, i = 0;
    for (; i + 4 <= n; i += 4) {
        int a = dec((uint8_t)in[i]), b = dec((uint8_t)in[i + 1]);
        int c = dec((uint8_t)in[i + 2]), d = dec((uint8_t)in[i + 3]);
        if ((a | b | c | d) < 0)
            return false;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
        out[o++] = (uint8_t)(v >> 16);
        out[o++] = (uint8_t)(v >> 8);
        out[o++] = (uint8_t)v;
    }
    size_t rest = n - i;
    if (rest) {
        int a = dec((uint8_t)in[i]), b = dec((uint8_t)in[i + 1]);
        int c = rest == 3 ? dec((uint8_t)in[i + 2]) : 0;
        if ((a | b | c) < 0)
            return false;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6;
        /* Canonical encodings leave the unused low bits zero. */
        if (rest == 2 && (v & 0xffffu))
            return false;
        if (rest == 3 && (v & 0xffu))
            return false;
        out[o++] = (uint8_t)(v >> 16);
        if (rest == 3)
            out[o++] = (uint8_t)(v >> 8);
    }
    *outlen = o;
    return true;
}

size_t ims_b64url_encode(const uint8_t *in, size_t n, char *out)
{
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = alpha[v >> 18];
        out[o++] = alpha[(v >> 12) & 63];
        out[o++] = alpha[(v >> 6) & 63];
        out[o++] = alpha[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = alpha[v >> 18];
        out[o++] = alpha[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = alpha[v >> 18];
        out[o++] = alpha[(v >> 12) & 63];
        out[o++] = alpha[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}
