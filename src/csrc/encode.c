/* encode.c: the fixed-point encoding of weights and masking (docs/PROTOCOL.md 9): encode
 * scalar * weight, add the random number the sampler drew for it, reduce.
 *
 * The original allocates a big integer per weight; here every number is a fixed number of
 * 64-bit limbs, and the common configurations (every constant below 2^127) take an
 * unsigned __int128 fast path, or a 64-bit one. The path is chosen once per model
 * (mask_plan), with the AVX-512 kernels of x86.c where the CPU has them.
 */
#include <math.h>
#include <string.h>

#include "xn_internal.h"

/* ---- fixed-point encoding ---------------------------------------------------------------- */

typedef struct {
    const xn_group *g;
    const xn_encoding *enc;
    size_t a_bits;
    int fast;                /* every constant and product fits the u128 path */
    xn_u128 a, e, ae, two_ae;
    size_t e_bits;
    /* E = e_odd * 2^e_twos; when e_odd fits 64 bits (10^10 and 10^20 do: 5^20 < 2^47), a
       64-bit weight mantissa needs one 64x64 multiply instead of a 128x128 one */
    uint64_t e_odd;
    int e_twos, e_odd_ok;
} encoder;

static xn_u128 to_u128(const uint64_t *x, size_t n)
{
    xn_u128 v = 0;
    if (n > 0) v = x[0];
    if (n > 1) v |= (xn_u128)x[1] << 64;
    return v;
}

static int encoder_init(encoder *c, const xn_group *g, const xn_encoding *enc)
{
    size_t al, el, L = g->limbs;
    if (enc == NULL || enc->add_shift == NULL || enc->exp_shift == NULL ||
        enc->shifted_zero == NULL || enc->shifted_max == NULL)
        return XN_ERR_ARGUMENT;
    if (enc->add_shift_limbs < 1 || enc->add_shift_limbs > XN_MAX_LIMBS ||
        enc->exp_shift_limbs < 1 || enc->exp_shift_limbs > XN_MAX_LIMBS)
        return XN_ERR_ARGUMENT;
    al = mp_len(enc->add_shift, enc->add_shift_limbs);
    el = mp_len(enc->exp_shift, enc->exp_shift_limbs);
    if (al == 0 || el == 0) return XN_ERR_ARGUMENT;
    /* 2AE must be a stored number below the order */
    if (mp_cmp(enc->shifted_max, L, g->order, XN_ORDER_LIMBS(g)) >= 0) return XN_ERR_ARGUMENT;
    c->g = g;
    c->enc = enc;
    c->a_bits = mp_bits(enc->add_shift, al);
    c->e_bits = mp_bits(enc->exp_shift, el);
    c->fast = mp_bits(enc->shifted_max, L) <= 127 && c->a_bits <= 127 && c->e_bits <= 127;
    if (c->fast) {
        xn_u128 odd;
        c->a = to_u128(enc->add_shift, al);
        c->e = to_u128(enc->exp_shift, el);
        c->ae = to_u128(enc->shifted_zero, L);
        c->two_ae = to_u128(enc->shifted_max, L);
        odd = c->e;
        c->e_twos = 0;
        while (!(odd & 1)) {
            odd >>= 1;
            c->e_twos++;
        }
        c->e_odd_ok = (odd >> 64) == 0;
        c->e_odd = (uint64_t)odd;
    }
    return XN_OK;
}

static inline void store_u128(uint64_t *out, xn_u128 v, size_t L)
{
    out[0] = (uint64_t)v;
    if (L > 1) {
        out[1] = (uint64_t)(v >> 64);
        if (L > 2) memset(out + 2, 0, (L - 2) * sizeof(uint64_t));
    }
}

static inline size_t u128_bits(xn_u128 v)
{
    uint64_t hi = (uint64_t)(v >> 64);
    if (hi) return 128 - (size_t)__builtin_clzll(hi);
    if ((uint64_t)v) return 64 - (size_t)__builtin_clzll((uint64_t)v);
    return 0;
}

/* The general path: any constant size. |v| = m * 2^e, clamped to [-A, A], shifted and scaled. */
static void encode_slow(const encoder *c, int neg, xn_u128 m, int64_t e, uint64_t *out)
{
    const xn_encoding *enc = c->enc;
    const size_t L = c->g->limbs;
    const size_t al = enc->add_shift_limbs, el = enc->exp_shift_limbs;
    uint64_t mm[2] = {(uint64_t)m, (uint64_t)(m >> 64)};
    uint64_t p[XN_MAX_LIMBS + 4], t[2 * XN_MAX_LIMBS + 4];
    size_t mbits = u128_bits(m);
    int clamped = 0, rem = 0;

    memset(t, 0, sizeof(t));
    if (e >= 0) {
        if ((int64_t)mbits + e > (int64_t)c->a_bits) {
            clamped = 1;
        } else {
            mp_shl(p, al, mm, 2, (size_t)e); /* fits: bits <= a_bits */
            clamped = mp_cmp(p, al, enc->add_shift, al) > 0;
            if (!clamped) {
                mp_mul(t, p, al, enc->exp_shift, el);
                /* t <= A*E < 2^(64L): only the low L limbs can be nonzero */
            }
        }
    } else {
        uint64_t q[2];
        size_t sh = (size_t)(-e);
        if (sh >= 128) {
            q[0] = q[1] = 0;
            rem = m != 0;
        } else {
            mp_shr(q, mm, 2, sh, &rem);
        }
        {
            int cmp = mp_cmp(q, 2, enc->add_shift, al);
            clamped = cmp > 0 || (cmp == 0 && rem);
        }
        if (!clamped) {
            mp_mul(p, mm, 2, enc->exp_shift, el); /* el + 2 limbs */
            mp_shr(t, p, el + 2, sh, &rem);
        }
    }
    if (clamped) {
        if (neg) memset(out, 0, L * sizeof(uint64_t));
        else memcpy(out, enc->shifted_max, L * sizeof(uint64_t));
        return;
    }
    if (neg) {
        uint64_t one[XN_MAX_LIMBS] = {0};
        mp_sub(out, enc->shifted_zero, t, L);
        if (rem) {
            one[0] = 1;
            mp_sub(out, out, one, L);
        }
    } else {
        mp_add(out, enc->shifted_zero, t, L);
    }
}

/* encode(s * w) for w = (-1)^neg * wm * 2^we and s = sm * 2^se. */
/* The unsigned __int128 path of encode(): returns 0 (and leaves *v alone) when a product
 * would not fit, so the caller takes encode_slow. Needs c->fast and m != 0. */
static inline int encode_fast(const encoder *c, int neg, xn_u128 m, int64_t e, xn_u128 *v)
{
    size_t mbits = u128_bits(m);
    if (e >= 0) {
        xn_u128 p;
        if ((int64_t)mbits + e > (int64_t)c->a_bits || (p = m << e) > c->a) {
            *v = neg ? 0 : c->two_ae;
            return 1;
        }
        p *= c->e;
        *v = neg ? c->ae - p : c->ae + p;
        return 1;
    } else {
        int64_t sh = -e;
        xn_u128 q, low;
        if (sh >= 128) {
            q = 0;
            low = m;
        } else {
            q = m >> sh;
            low = m & ((((xn_u128)1) << sh) - 1);
        }
        if (q > c->a || (q == c->a && low != 0)) {
            *v = neg ? 0 : c->two_ae;
            return 1;
        }
        if (c->e_odd_ok && mbits <= 64) {
            /* |v| * E = m * e_odd * 2^(e_twos - sh); the product is below 2^128 */
            xn_u128 p = (xn_u128)(uint64_t)m * c->e_odd, t, r;
            int64_t sh2 = sh - c->e_twos;
            if (sh2 <= 0) {
                t = p << -sh2; /* <= A*E: fits, since |v| <= A */
                r = 0;
            } else if (sh2 >= 128) {
                t = 0;
                r = p;
            } else {
                t = p >> sh2;
                r = p & ((((xn_u128)1) << sh2) - 1);
            }
            *v = neg ? c->ae - t - (r != 0) : c->ae + t;
            return 1;
        }
        if (mbits + c->e_bits <= 128) {
            xn_u128 p = m * c->e, t, r;
            if (sh >= 128) {
                t = 0;
                r = p;
            } else {
                t = p >> sh;
                r = p & ((((xn_u128)1) << sh) - 1);
            }
            *v = neg ? c->ae - t - (r != 0) : c->ae + t;
            return 1;
        }
        return 0;
    }
}

/* encode(s * w) for w = (-1)^neg * wm * 2^we and s = sm * 2^se, into group limbs. */
static inline void encode(const encoder *c, int neg, uint64_t sm, int64_t se, uint64_t wm,
                          int64_t we, uint64_t *out)
{
    const size_t L = c->g->limbs;
    xn_u128 m = (xn_u128)sm * wm, v;
    int64_t e = se + we;
    if (m == 0) {
        memcpy(out, c->enc->shifted_zero, L * sizeof(uint64_t));
        return;
    }
    if (c->fast && encode_fast(c, neg, m, e, &v)) {
        store_u128(out, v, L);
        return;
    }
    encode_slow(c, neg, m, e, out);
}

/* encode() when every quantity fits 64 bits: m * E < 2^64 and 2AE < 2^63 (checked by the
 * caller once per model). The default scalar 1.0 with F32 or I32 weights and bounds up to B6
 * lands here, which is most real use. */
static inline uint64_t encode_u64(uint64_t a, size_t a_bits, uint64_t e_shift, uint64_t ae,
                                  uint64_t two_ae, int neg, uint64_t m, int64_t e)
{
    uint64_t t, rem;
    if (m == 0) return ae;
    if (e >= 0) {
        uint64_t p;
        if ((int64_t)(64 - __builtin_clzll(m)) + e > (int64_t)a_bits || (p = m << e) > a)
            return neg ? 0 : two_ae;
        return neg ? ae - p * e_shift : ae + p * e_shift;
    }
    if (e > -64) {
        int sh = (int)-e;
        uint64_t q = m >> sh, low = m & ((1ULL << sh) - 1), p = m * e_shift;
        if (q > a || (q == a && low != 0)) return neg ? 0 : two_ae;
        t = p >> sh;
        rem = (p & ((1ULL << sh) - 1)) != 0;
    } else {
        t = 0;
        rem = 1; /* m != 0 and E != 0 */
    }
    return neg ? ae - t - rem : ae + t;
}

/* Splits a finite double into sign, integer mantissa and binary exponent. */
static inline void split_double(double x, int *neg, uint64_t *m, int64_t *e)
{
    uint64_t bits;
    uint64_t ef;
    memcpy(&bits, &x, 8);
    *neg = (int)(bits >> 63);
    ef = (bits >> 52) & 0x7ff;
    *m = bits & ((1ULL << 52) - 1);
    if (ef == 0) {
        *e = -1074;
    } else {
        *m |= 1ULL << 52;
        *e = (int64_t)ef - 1075;
    }
}

/* The same for a float, keeping its 24-bit mantissa (not the 53 bits of a widened double),
 * which is what lets F32 weights take the 64-bit encoding path. */
static inline void split_float(float x, int *neg, uint64_t *m, int64_t *e)
{
    uint32_t bits;
    uint32_t ef;
    memcpy(&bits, &x, 4);
    *neg = (int)(bits >> 31);
    ef = (bits >> 23) & 0xff;
    *m = bits & ((1u << 23) - 1);
    if (ef == 0) {
        *e = -149;
    } else {
        *m |= 1u << 23;
        *e = (int64_t)ef - 150;
    }
}

static inline int split_weight(const void *weights, int dtype, size_t j, int *neg, uint64_t *m,
                               int64_t *e)
{
    switch (dtype) {
    case XN_DTYPE_F32: {
        float f = ((const float *)weights)[j];
        if (!isfinite(f)) return XN_ERR_NONFINITE;
        split_float(f, neg, m, e);
        return XN_OK;
    }
    case XN_DTYPE_F64: {
        double d = ((const double *)weights)[j];
        if (!isfinite(d)) return XN_ERR_NONFINITE;
        split_double(d, neg, m, e);
        return XN_OK;
    }
    case XN_DTYPE_I32: {
        int32_t v = ((const int32_t *)weights)[j];
        *neg = v < 0;
        *m = v < 0 ? (uint64_t)(-(int64_t)v) : (uint64_t)v;
        *e = 0;
        return XN_OK;
    }
    case XN_DTYPE_I64: {
        int64_t v = ((const int64_t *)weights)[j];
        *neg = v < 0;
        *m = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
        *e = 0;
        return XN_OK;
    }
    default:
        return XN_ERR_ARGUMENT;
    }
}

static void mask_f32_u64_generic(const float *w, const uint64_t *r, uint64_t *out, size_t cnt,
                                 const xn_u64_params *P)
{
    xn_mask_f32_u64_kernel(w, r, out, cnt, P);
}

/* Index of the first NaN or infinity among n weights (n if none): a pass the compiler
 * vectorizes (an OR over blocks of exponent tests), then a search in the block that has one. */
size_t xn_first_nonfinite(const void *weights, int dtype, size_t n)
{
    const size_t block = 1024;
    const uint8_t *x = (const uint8_t *)weights;
    size_t j, k;
    if (dtype == XN_DTYPE_F64) {
        const uint64_t inf = 0x7ffULL << 52;
        for (j = 0; j < n; j += block) {
            size_t end = n - j < block ? n : j + block;
            uint64_t bad = 0, v;
            for (k = j; k < end; k++) {
                memcpy(&v, x + 8 * k, 8);
                bad |= (uint64_t)((v & inf) == inf);
            }
            for (k = j; bad && k < end; k++) {
                memcpy(&v, x + 8 * k, 8);
                if ((v & inf) == inf) return k;
            }
        }
    } else if (dtype == XN_DTYPE_F32) {
        const uint32_t inf = 0xffu << 23;
        for (j = 0; j < n; j += block) {
            size_t end = n - j < block ? n : j + block;
            uint32_t bad = 0, v;
            for (k = j; k < end; k++) {
                memcpy(&v, x + 4 * k, 4);
                bad |= (uint32_t)((v & inf) == inf);
            }
            for (k = j; bad && k < end; k++) {
                memcpy(&v, x + 4 * k, 4);
                if ((v & inf) == inf) return k;
            }
        }
    }
    return n;
}

/* The u128 path of one weight: encode, add the random number r (L limbs), reduce. */
static inline void mask_one_u128(const encoder *c, const void *weights, int dtype, size_t j,
                                 uint64_t scalar_mantissa, int32_t scalar_exponent,
                                 const uint64_t *r, xn_u128 order, uint64_t *out)
{
    const size_t L = c->g->limbs;
    int neg = 0;
    uint64_t wm = 0, shifted[XN_MAX_LIMBS];
    int64_t we = 0;
    xn_u128 m, v;
    split_weight(weights, dtype, j, &neg, &wm, &we);
    m = (xn_u128)scalar_mantissa * wm;
    if (m == 0) {
        v = c->ae;
    } else if (!encode_fast(c, neg, m, we + scalar_exponent, &v)) {
        encode_slow(c, neg, m, we + scalar_exponent, shifted);
        v = to_u128(shifted, L);
    }
    v += to_u128(r, L);
    if (v >= order) v -= order;
    store_u128(out, v, L);
}

/* How one model's weights are encoded and added to their random numbers: the fastest path
 * that is exact for this group, encoding, scalar and data type, chosen once per model. */
enum { PATH_F32_U64, PATH_U64, PATH_U128, PATH_GENERAL };

typedef struct {
    encoder c;
    const xn_group *g;
    int dtype, path, wide;
    uint64_t sm;
    int32_t se;
    xn_u128 order;
    xn_u64_params P64;
    void (*f32_kernel)(const float *, const uint64_t *, uint64_t *, size_t, const xn_u64_params *);
#if defined(XN_X86)
    xn_f64_params P128;
#endif
} mask_plan;

static int plan_init(mask_plan *pl, const xn_group *group, const xn_encoding *enc,
                     uint64_t scalar_mantissa, int32_t scalar_exponent, int dtype)
{
    static const int weight_bits[4] = {24, 53, 31, 64}; /* mantissa bits per dtype */
    encoder *c = &pl->c;
    size_t sm_bits, L = group->limbs;
    int rc = xn_check_group(group);
    if (rc != XN_OK) return rc;
    if (dtype < XN_DTYPE_F32 || dtype > XN_DTYPE_I64) return XN_ERR_ARGUMENT;
    if (scalar_mantissa > (1ULL << 53)) return XN_ERR_ARGUMENT;
    memset(pl, 0, sizeof(*pl));
    rc = encoder_init(c, group, enc);
    if (rc != XN_OK) return rc;
    pl->g = group;
    pl->dtype = dtype;
    pl->sm = scalar_mantissa;
    pl->se = scalar_exponent;
    sm_bits = scalar_mantissa ? 64 - (size_t)__builtin_clzll(scalar_mantissa) : 0;
    if (L == 1 && XN_ORDER_LIMBS(group) == 1 && group->order[0] < (1ULL << 63) && c->fast &&
        c->two_ae < ((xn_u128)1 << 63) &&
        sm_bits + (size_t)weight_bits[dtype] + c->e_bits <= 64) {
        pl->path = dtype == XN_DTYPE_F32 ? PATH_F32_U64 : PATH_U64;
        pl->P64.a = (uint64_t)c->a;
        pl->P64.e_shift = (uint64_t)c->e;
        pl->P64.ae = (uint64_t)c->ae;
        pl->P64.two_ae = (uint64_t)c->two_ae;
        pl->P64.order = group->order[0];
        pl->P64.sm = scalar_mantissa;
        pl->P64.se = scalar_exponent;
        pl->f32_kernel = mask_f32_u64_generic;
#if defined(XN_X86)
        if (xn_have_avx512dq()) pl->f32_kernel = xn_mask_f32_u64_avx512;
#endif
        return XN_OK;
    }
    if (c->fast && L <= 2 && XN_ORDER_LIMBS(group) == L && mp_bits(group->order, L) <= 127) {
        /* every stored number and sum of two fits an unsigned __int128 */
        pl->path = PATH_U128;
        pl->order = to_u128(group->order, L);
#if defined(XN_X86)
        pl->wide = dtype == XN_DTYPE_F64 && L == 2 && scalar_mantissa == 1 && c->e_odd_ok &&
                   c->e_odd < (1ULL << 52) && c->a < ((xn_u128)1 << 53) && xn_have_ifma();
        if (pl->wide) {
            xn_f64_params *P = &pl->P128;
            P->ae_lo = (uint64_t)c->ae;
            P->ae_hi = (uint64_t)(c->ae >> 64);
            P->two_ae_lo = (uint64_t)c->two_ae;
            P->two_ae_hi = (uint64_t)(c->two_ae >> 64);
            P->order_lo = (uint64_t)pl->order;
            P->order_hi = (uint64_t)(pl->order >> 64);
            P->e_odd = c->e_odd;
            P->s_base = -1075 + (int64_t)scalar_exponent + c->e_twos;
            P->a = (double)(uint64_t)c->a;
            P->scale = ldexp(1.0, scalar_exponent);
        }
#endif
        return XN_OK;
    }
    pl->path = PATH_GENERAL;
    return XN_OK;
}

/* out_k = (encode(s * w_{j+k}) + r_k) mod order for k < cnt (r and out: cnt numbers). */
static void plan_run(const mask_plan *pl, const void *weights, size_t j, const uint64_t *r,
                     uint64_t *out, size_t cnt)
{
    const encoder *c = &pl->c;
    const size_t L = pl->g->limbs;
    size_t k = 0;
    switch (pl->path) {
    case PATH_F32_U64:
        pl->f32_kernel((const float *)weights + j, r, out, cnt, &pl->P64);
        return;
    case PATH_U64: {
        const xn_u64_params *P = &pl->P64;
        for (k = 0; k < cnt; k++) {
            int neg = 0;
            uint64_t m = 0, v;
            int64_t e = 0;
            split_weight(weights, pl->dtype, j + k, &neg, &m, &e);
            v = encode_u64(P->a, c->a_bits, P->e_shift, P->ae, P->two_ae, neg, m * P->sm,
                           e + P->se) + r[k];
            out[k] = v >= P->order ? v - P->order : v;
        }
        return;
    }
    case PATH_U128:
#if defined(XN_X86)
        if (pl->wide) k = xn_mask_f64_ifma((const double *)weights + j, r, out, cnt, &pl->P128);
#endif
        for (; k < cnt; k++)
            mask_one_u128(c, weights, pl->dtype, j + k, pl->sm, pl->se, r + k * L, pl->order,
                          out + k * L);
        return;
    default:
        for (k = 0; k < cnt; k++) {
            int neg = 0;
            uint64_t m = 0, shifted[XN_MAX_LIMBS];
            int64_t e = 0;
            split_weight(weights, pl->dtype, j + k, &neg, &m, &e); /* finite: checked before */
            encode(c, neg, pl->sm, pl->se, m, e, shifted);
            xn_add_mod_one(out + k * L, shifted, r + k * L, pl->g);
        }
    }
}

int xn_mask_vector(const uint8_t *seed, uint64_t *word_pos, const xn_group *group,
                   const xn_encoding *enc, uint64_t scalar_mantissa, int32_t scalar_exponent,
                   const void *weights, int dtype, size_t n, uint64_t *out, size_t *bad_index)
{
    xn_sampler s;
    mask_plan pl;
    uint64_t r[XN_BATCH * XN_MAX_LIMBS];
    size_t j, L;
    int rc = plan_init(&pl, group, enc, scalar_mantissa, scalar_exponent, dtype);
    if (rc != XN_OK) return rc;
    if (seed == NULL || word_pos == NULL || ((weights == NULL || out == NULL) && n > 0))
        return XN_ERR_ARGUMENT;
    /* Reject non-finite weights before drawing anything: no partial output. */
    j = xn_first_nonfinite(weights, dtype, n);
    if (j < n) {
        if (bad_index) *bad_index = j;
        return XN_ERR_NONFINITE;
    }
    L = group->limbs;
    xn_sampler_init(&s, seed, *word_pos);
    for (j = 0; j < n; j += XN_BATCH) {
        size_t cnt = n - j < XN_BATCH ? n - j : XN_BATCH;
        xn_sample(&s, group, r, cnt);
        plan_run(&pl, weights, j, r, out + j * L, cnt);
    }
    *word_pos = s.word_pos;
    return XN_OK;
}

int xn_encode_add(const xn_group *group, const xn_encoding *enc, uint64_t scalar_mantissa,
                  int32_t scalar_exponent, const void *weights, int dtype, size_t n,
                  const uint64_t *r, uint64_t *out, size_t *bad_index)
{
    mask_plan pl;
    uint64_t batch[XN_BATCH * XN_MAX_LIMBS];
    size_t j, L;
    int rc = plan_init(&pl, group, enc, scalar_mantissa, scalar_exponent, dtype);
    if (rc != XN_OK) return rc;
    if ((weights == NULL || r == NULL || out == NULL) && n > 0) return XN_ERR_ARGUMENT;
    j = xn_first_nonfinite(weights, dtype, n);
    if (j < n) {
        if (bad_index) *bad_index = j;
        return XN_ERR_NONFINITE;
    }
    L = group->limbs;
    for (j = 0; j < n; j += XN_BATCH) {
        size_t cnt = n - j < XN_BATCH ? n - j : XN_BATCH;
        const uint64_t *rj = r + j * L;
        if (r == out) { /* the kernels take their operands as restrict: copy when in place */
            memcpy(batch, rj, cnt * L * sizeof(uint64_t));
            rj = batch;
        }
        plan_run(&pl, weights, j, rj, out + j * L, cnt);
    }
    return XN_OK;
}
