/* xn_internal.h: helpers shared by the C core's translation units; not part of the API. */
#ifndef XN_INTERNAL_H
#define XN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "xaynet_native.h"

#define XN_CHACHA_MAX_BATCH 1024 /* 16 lanes x 64 bytes */

typedef struct {
    uint32_t key[8];
    uint64_t block;
    int lanes;
} xn_chacha;

int xn_lanes(void);
void xn_chacha_init(xn_chacha *c, const uint8_t *seed, uint64_t block);
size_t xn_chacha_batch(xn_chacha *c, uint8_t *out);

/* ---- multi-limb unsigned arithmetic on little-endian uint64_t limbs ------------------- */
typedef unsigned __int128 xn_u128;

/* Number of significant limbs (0 for zero). */
static inline size_t mp_len(const uint64_t *a, size_t n)
{
    while (n > 0 && a[n - 1] == 0) n--;
    return n;
}

static inline size_t mp_bits(const uint64_t *a, size_t n)
{
    n = mp_len(a, n);
    if (n == 0) return 0;
    return 64 * (n - 1) + (64 - (size_t)__builtin_clzll(a[n - 1]));
}

/* Compares a (an limbs) with b (bn limbs): -1, 0, 1. */
static inline int mp_cmp(const uint64_t *a, size_t an, const uint64_t *b, size_t bn)
{
    size_t n = an > bn ? an : bn;
    while (n > 0) {
        uint64_t x, y;
        n--;
        x = n < an ? a[n] : 0;
        y = n < bn ? b[n] : 0;
        if (x != y) return x < y ? -1 : 1;
    }
    return 0;
}

/* out = a + b over n limbs; returns the carry. out may alias a or b. */
static inline uint64_t mp_add(uint64_t *out, const uint64_t *a, const uint64_t *b, size_t n)
{
    uint64_t carry = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        xn_u128 s = (xn_u128)a[i] + b[i] + carry;
        out[i] = (uint64_t)s;
        carry = (uint64_t)(s >> 64);
    }
    return carry;
}

/* out = a - b over n limbs; returns the borrow. out may alias a or b. */
static inline uint64_t mp_sub(uint64_t *out, const uint64_t *a, const uint64_t *b, size_t n)
{
    uint64_t borrow = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        uint64_t x = a[i], y = b[i];
        uint64_t d = x - y - borrow;
        borrow = (x < y) || (x == y && borrow) ? 1 : 0;
        out[i] = d;
    }
    return borrow;
}

/* out (an + bn limbs) = a * b. out must not alias. */
static inline void mp_mul(uint64_t *out, const uint64_t *a, size_t an, const uint64_t *b, size_t bn)
{
    size_t i, j;
    memset(out, 0, (an + bn) * sizeof(uint64_t));
    for (i = 0; i < an; i++) {
        uint64_t carry = 0;
        if (a[i] == 0) continue;
        for (j = 0; j < bn; j++) {
            xn_u128 t = (xn_u128)a[i] * b[j] + out[i + j] + carry;
            out[i + j] = (uint64_t)t;
            carry = (uint64_t)(t >> 64);
        }
        out[i + bn] = carry;
    }
}

/* out (n limbs) = a (n limbs) >> sh; *rem_nonzero tells whether any 1 bit was shifted out. */
static inline void mp_shr(uint64_t *out, const uint64_t *a, size_t n, size_t sh, int *rem_nonzero)
{
    size_t limb = sh / 64, bit = sh % 64, i;
    int rem = 0;
    for (i = 0; i < n && i < limb; i++) rem |= a[i] != 0;
    if (limb < n && bit) rem |= (a[limb] & ((1ULL << bit) - 1)) != 0;
    for (i = 0; i < n; i++) {
        size_t src = i + limb;
        uint64_t lo = src < n ? a[src] : 0;
        uint64_t hi = src + 1 < n ? a[src + 1] : 0;
        out[i] = bit ? (lo >> bit) | (hi << (64 - bit)) : lo;
    }
    *rem_nonzero = rem;
}

/* out (outn limbs) = a (an limbs) << sh; returns nonzero if bits were lost. */
static inline int mp_shl(uint64_t *out, size_t outn, const uint64_t *a, size_t an, size_t sh)
{
    size_t limb = sh / 64, bit = sh % 64, i;
    size_t bits = mp_bits(a, an);
    if (bits == 0) {
        memset(out, 0, outn * sizeof(uint64_t));
        return 0;
    }
    if (bits + sh > 64 * outn) return 1;
    for (i = 0; i < outn; i++) {
        uint64_t lo = 0, hi = 0;
        if (i >= limb) {
            size_t src = i - limb;
            hi = src < an ? a[src] : 0;
            lo = (bit && src >= 1 && src - 1 < an) ? a[src - 1] : 0;
        }
        out[i] = bit ? (hi << bit) | (lo >> (64 - bit)) : hi;
    }
    return 0;
}

#endif /* XN_INTERNAL_H */
