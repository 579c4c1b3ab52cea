/* xn_internal.h: what the C core's translation units share; not part of the API.
 *
 *   chacha.c   the ChaCha20 keystream (16, 8 or 4 lanes, chosen at run time)
 *   sample.c   rejection sampling of mask numbers, mask derivation (docs/PROTOCOL.md 10)
 *   encode.c   fixed-point encoding of weights and masking (docs/PROTOCOL.md 9)
 *   arith.c    groups and modular vector arithmetic
 *   x86.c      the AVX-512 kernels and the CPU feature checks that pick them
 *   model.c    the global model's bincode conversion
 *
 * The multi-limb helpers, the sampler and the F32 kernel are here because more than one
 * unit uses them.
 */
#ifndef XN_INTERNAL_H
#define XN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "xaynet_native.h"

/* Functions shared between the units but not part of the API: not exported from the shared
 * library, so that calls between units are direct and nothing can interpose them. */
#define XN_INTERNAL __attribute__((visibility("hidden")))

#define XN_CHACHA_MAX_BATCH 1024 /* 16 lanes x 64 bytes */

typedef struct {
    uint32_t key[8];
    uint64_t block;
    int lanes;
} xn_chacha;

XN_INTERNAL int xn_lanes(void);
XN_INTERNAL void xn_chacha_init(xn_chacha *c, const uint8_t *seed, uint64_t block);
XN_INTERNAL size_t xn_chacha_batch(xn_chacha *c, uint8_t *out);

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

/* ---- groups (arith.c) ----------------------------------------------------------------- */
#define XN_ORDER_LIMBS(g) (((g)->draw_bytes + 7) / 8)
/* numbers sampled and encoded per step, on the stack */
#define XN_BATCH 256

XN_INTERNAL int xn_check_group(const xn_group *g);
XN_INTERNAL void xn_add_mod_vec(uint64_t *acc, const uint64_t *x, size_t n,
                                const xn_group *group);

/* (a + b) mod order for one number of L limbs; a, b < order; out may alias a. */
static inline void xn_add_mod_one(uint64_t *out, const uint64_t *a, const uint64_t *b,
                                  const xn_group *g)
{
    size_t L = g->limbs;
    uint64_t carry = mp_add(out, a, b, L);
    if (carry || mp_cmp(out, L, g->order, XN_ORDER_LIMBS(g)) >= 0) mp_sub(out, out, g->order, L);
}

/* ---- the sampler: generate_integer over a buffered keystream (sample.c) ---------------- */
#define XN_SAMPLER_CAP (2 * XN_CHACHA_MAX_BATCH + XN_MAX_DRAW_BYTES)

typedef struct {
    xn_chacha chacha;
    size_t pos, len;         /* bytes of buf */
    uint64_t word_pos;       /* words consumed from the PRNG, accepted or not */
    uint64_t end_word;       /* no candidate starts at or past this word */
    int exhausted;           /* buf holds every byte before end_word */
    uint8_t buf[XN_SAMPLER_CAP + 16];
} xn_sampler;

XN_INTERNAL void xn_sampler_init_until(xn_sampler *s, const uint8_t *seed, uint64_t word_pos,
                                       uint64_t end_word);
XN_INTERNAL void xn_sampler_init(xn_sampler *s, const uint8_t *seed, uint64_t word_pos);
XN_INTERNAL size_t xn_sample(xn_sampler *s, const xn_group *g, uint64_t *out, size_t want);

/* ---- the F32 kernel of encode.c, also compiled for AVX-512 in x86.c --------------------- */
/* The 64-bit path for F32 weights, written without branches so that the compiler turns the
 * loop into vector code (variable shifts, 64-bit multiplies): encode, add the random
 * numbers, reduce. Same results as encode_u64 in encode.c (the differential tests cover
 * both). Every condition is an all-ones mask, and no constant is shifted by a lane-dependent
 * amount: GCC 12 refuses to vectorize either. */
typedef struct {
    uint64_t a, e_shift, ae, two_ae, order, sm;
    int64_t se;
} xn_u64_params;

#define XN_MASK(c) ((uint64_t)0 - (uint64_t)(c))
#define XN_SEL(m, x, y) (((x) & (m)) | ((y) & ~(m)))

static inline __attribute__((always_inline)) void xn_mask_f32_u64_kernel(
    const float *restrict w, const uint64_t *restrict r, uint64_t *restrict out, size_t cnt,
    const xn_u64_params *P)
{
    const uint64_t a = P->a, e_shift = P->e_shift, ae = P->ae, two_ae = P->two_ae;
    const uint64_t order = P->order, sm = P->sm;
    const int64_t se = P->se;
    size_t k;
    for (k = 0; k < cnt; k++) {
        uint32_t b32;
        uint64_t bits, neg, ef, frac, normal, m, pos, el, pl, over, tpos, far, sh, qs, q, low;
        uint64_t p, ps, tneg, rneg, overn, clamped, t, rem, inside, v;
        int64_t e;
        memcpy(&b32, w + k, 4);
        bits = b32;
        neg = XN_MASK(bits >> 31);
        ef = (bits >> 23) & 0xff;
        frac = bits & 0x7fffff;
        normal = XN_MASK(ef != 0);
        m = (frac | (0x800000u & normal)) * sm;
        e = (int64_t)(ef + (1 & ~normal)) - 150 + se; /* a subnormal has the exponent of ef=1 */
        /* e >= 0: |v| = m << e, clamped when that overflows or exceeds A */
        pos = XN_MASK(e >= 0);
        el = (uint64_t)(e > 63 ? 63 : e) & pos;
        pl = m << el;
        over = XN_MASK(e > 63) | XN_MASK((pl >> el) != m) | XN_MASK(pl > a);
        tpos = pl * e_shift;
        /* e < 0: q = floor(|v|), t = floor(|v| * E), rem = whether a fraction was cut off */
        far = XN_MASK(e < -63);
        sh = (uint64_t)(e < -63 ? 63 : -e) & ~pos;
        qs = m >> sh;
        q = qs & ~far;
        low = XN_SEL(far, m, m - (qs << sh));
        p = m * e_shift;
        ps = p >> sh;
        tneg = ps & ~far;
        rneg = XN_SEL(far, XN_MASK(p != 0), XN_MASK(p != (ps << sh))) & 1;
        overn = XN_MASK(q > a) | (XN_MASK(q == a) & XN_MASK(low != 0));
        clamped = XN_MASK(m != 0) & XN_SEL(pos, over, overn);
        t = XN_SEL(pos, tpos, tneg);
        rem = rneg & ~pos;
        inside = XN_SEL(neg, ae - t - rem, ae + t);
        v = XN_SEL(clamped, two_ae & ~neg, inside) + r[k];
        out[k] = v - (order & XN_MASK(v >= order));
    }
}

/* ---- x86 kernels and CPU feature checks (x86.c) ---------------------------------------- */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define XN_X86 1

/* F64 weights, two-limb numbers, a power-of-two scalar: the constants of mask_f64_ifma. */
typedef struct {
    uint64_t ae_lo, ae_hi, two_ae_lo, two_ae_hi, order_lo, order_hi, e_odd;
    int64_t s_base; /* -1075 + se + e_twos: s = ef + (ef == 0) + s_base */
    double a, scale;
} xn_f64_params;

XN_INTERNAL size_t xn_scan8_avx512(const uint8_t *buf, size_t *pos, size_t len,
                                   uint64_t keep, uint64_t order, uint64_t *out, size_t want);
XN_INTERNAL size_t xn_scan12_vbmi(const uint8_t *buf, size_t *pos, size_t len, size_t k,
                                  uint64_t order_lo, uint64_t order_hi, uint64_t *out,
                                  size_t want);
XN_INTERNAL void xn_mask_f32_u64_avx512(const float *w, const uint64_t *r, uint64_t *out,
                                        size_t cnt, const xn_u64_params *P);
XN_INTERNAL size_t xn_mask_f64_ifma(const double *w, const uint64_t *r, uint64_t *out,
                                    size_t cnt, const xn_f64_params *P);
XN_INTERNAL int xn_have_vbmi(void);
XN_INTERNAL int xn_have_avx512dq(void);
XN_INTERNAL int xn_have_ifma(void);
#endif

#endif /* XN_INTERNAL_H */
