/* model.c: the global model from its bincode form (Vec<Ratio<BigInt>>) to primitives, the
 * way the original participant converts it (docs/PROTOCOL.md sections 3.2, 3.5 and 8.3).
 *
 * Ratios are taken as sent: not reduced, signs as they are. Where the original's loop
 * would never end (a quotient that is not finite) this returns XN_ERR_DIVERGES instead.
 * Big integers are read in place from the buffer as u32 digits, least significant first.
 */
#include <math.h>
#include <string.h>

#include "xn_internal.h"

typedef struct {
    const uint8_t *digits; /* u32 LE digits, in the input buffer */
    size_t n;              /* significant digits (high zero digits dropped) */
    int neg;
} bigint_ref;

static inline uint32_t digit(const bigint_ref *x, size_t i)
{
    uint32_t d;
    if (i >= x->n) return 0;
    memcpy(&d, x->digits + 4 * i, 4);
    return d;
}

static inline uint64_t rd_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static int parse_bigint(const uint8_t *data, size_t len, size_t *pos, bigint_ref *out)
{
    uint8_t sign;
    uint64_t count;
    if (len - *pos < 9) return XN_ERR_MALFORMED;
    sign = data[*pos];
    if (sign != 0x00 && sign != 0x01 && sign != 0xff) return XN_ERR_MALFORMED;
    count = rd_u64(data + *pos + 1);
    *pos += 9;
    if (count > (len - *pos) / 4) return XN_ERR_MALFORMED;
    out->digits = data + *pos;
    out->n = (size_t)count;
    *pos += 4 * (size_t)count;
    while (out->n > 0 && digit(out, out->n - 1) == 0) out->n--;
    /* BigInt::from_biguint(NoSign, m) is zero whatever m is (num-bigint 0.3.1) */
    if (sign == 0x00) out->n = 0;
    out->neg = sign == 0xff && out->n > 0;
    return XN_OK;
}

static size_t big_bits(const bigint_ref *x)
{
    if (x->n == 0) return 0;
    return 32 * (x->n - 1) + (32 - (size_t)__builtin_clz(digit(x, x->n - 1)));
}

/* Bit i of |x|. */
static inline int big_bit(const bigint_ref *x, size_t i)
{
    return (int)((digit(x, i / 32) >> (i % 32)) & 1u);
}

/* The top 64 bits of |x| as an integer (all of it if it has 64 bits or fewer). */
static uint64_t big_top64(const bigint_ref *x, size_t bits)
{
    uint64_t v = 0;
    size_t i, lo = bits > 64 ? bits - 64 : 0;
    for (i = bits; i > lo; i--) v = (v << 1) | (uint64_t)big_bit(x, i - 1);
    return v;
}

/* num-bigint 0.3.1 to_f32/to_f64: truncate to the top 64 bits, round those once to the
 * float's precision (half to even), scale by 2^(dropped bits); overflow gives infinity. */
static double big_to_float(const bigint_ref *x, int precision, int max_exp, int *is_inf)
{
    size_t bits = big_bits(x);
    uint64_t mant;
    int64_t e;
    size_t mbits;
    *is_inf = 0;
    if (bits == 0) return 0.0;
    mant = big_top64(x, bits);
    e = bits > 64 ? (int64_t)(bits - 64) : 0;
    if (e > max_exp) {
        *is_inf = 1;
        return x->neg ? -INFINITY : INFINITY;
    }
    mbits = 64 - (size_t)__builtin_clzll(mant);
    if ((int)mbits > precision) {
        int sh = (int)mbits - precision;
        uint64_t r = mant >> sh, rem = mant & ((1ULL << sh) - 1), half = 1ULL << (sh - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        mant = r;
        e += sh;
    }
    {
        /* mant has at most precision + 1 bits: exact in a double; scaling is exact up to
           overflow, which the caller's float type turns into infinity */
        double v = ldexp((double)mant, (int)e);
        if (precision == 24) {
            float f = (float)v;
            if (isinf(f)) *is_inf = 1;
            return x->neg ? -(double)f : (double)f;
        }
        if (isinf(v)) *is_inf = 1;
        return x->neg ? -v : v;
    }
}

/* |n| > MAX * |d| with MAX = mant_max * 2^exp_max, exactly. scratch holds d->n + 3 words. */
static int exceeds_max(const bigint_ref *n, const bigint_ref *d, uint64_t mant_max,
                       size_t exp_max, uint32_t *scratch)
{
    size_t bn = big_bits(n), bd = big_bits(d);
    size_t mb = 64 - (size_t)__builtin_clzll(mant_max);
    size_t pn, i, qn, wsh, bsh;
    uint64_t carry = 0;
    if (bn == 0) return 0;
    if (bn > bd + mb + exp_max) return 1;
    if (bn + 1 < bd + mb + exp_max) return 0;
    /* P = mant_max * |d| */
    for (i = 0; i < d->n; i++) {
        xn_u128 t = (xn_u128)mant_max * digit(d, i) + carry;
        scratch[i] = (uint32_t)t;
        carry = (uint64_t)(t >> 32);
    }
    pn = d->n;
    while (carry) {
        scratch[pn++] = (uint32_t)carry;
        carry >>= 32;
    }
    while (pn > 0 && scratch[pn - 1] == 0) pn--;
    /* compare floor(|n| / 2^exp_max) with P, then the remainder */
    wsh = exp_max / 32;
    bsh = exp_max % 32;
    qn = n->n > wsh ? n->n - wsh : 0;
    {
        size_t top = qn > pn ? qn : pn;
        while (top > 0) {
            uint32_t q, p;
            top--;
            q = (uint32_t)(((uint64_t)digit(n, top + wsh) |
                            ((uint64_t)digit(n, top + wsh + 1) << 32)) >> bsh);
            p = top < pn ? scratch[top] : 0;
            if (q != p) return q > p;
        }
    }
    for (i = 0; i < exp_max; i++)
        if (big_bit(n, i)) return 1;
    return 0;
}

/* trunc(|n| / |d|) into *q if it is below 2^64 (else XN_ERR_RANGE). scratch: n->n words. */
static int div_trunc_u64(const bigint_ref *n, const bigint_ref *d, uint64_t *q,
                         uint32_t *scratch)
{
    size_t bn = big_bits(n), bd = big_bits(d), rn = n->n, i;
    int64_t s;
    *q = 0;
    if (bn < bd) return XN_OK;
    if (bn - bd > 63) return XN_ERR_RANGE;
    for (i = 0; i < rn; i++) scratch[i] = digit(n, i);
    /* schoolbook binary long division: for each shift s from high to low, subtract d << s */
    for (s = (int64_t)(bn - bd); s >= 0; s--) {
        size_t wsh = (size_t)s / 32, bsh = (size_t)s % 32;
        size_t top = rn;
        int ge = 1;
        /* compare R with D << s */
        while (top > 0) {
            uint32_t r, dd;
            size_t k;
            top--;
            r = scratch[top];
            k = top >= wsh ? top - wsh : (size_t)-1;
            if (k == (size_t)-1) {
                dd = 0;
            } else {
                uint64_t lo = digit(d, k), prev = k > 0 ? digit(d, k - 1) : 0;
                dd = (uint32_t)(((lo << 32) | prev) >> (32 - bsh));
                if (bsh == 0) dd = (uint32_t)lo;
            }
            if (r != dd) {
                ge = r > dd;
                break;
            }
        }
        if (!ge) continue;
        {
            uint64_t borrow = 0;
            for (i = 0; i < rn; i++) {
                uint32_t dd;
                uint64_t sub;
                if (i < wsh) {
                    dd = 0;
                } else {
                    size_t k = i - wsh;
                    uint64_t lo = digit(d, k), prev = k > 0 ? digit(d, k - 1) : 0;
                    dd = bsh == 0 ? (uint32_t)lo : (uint32_t)(((lo << 32) | prev) >> (32 - bsh));
                }
                sub = (uint64_t)dd + borrow;
                borrow = (uint64_t)scratch[i] < sub;
                scratch[i] = (uint32_t)((uint64_t)scratch[i] - sub);
            }
        }
        *q |= 1ULL << s;
    }
    return XN_OK;
}

/* One weight to dtype, written to out[j]: XN_OK, XN_ERR_RANGE or XN_ERR_DIVERGES. */
static int convert_weight(const bigint_ref *num, const bigint_ref *den, int dtype, void *out,
                          size_t j, uint32_t *scratch)
{
    if (dtype == XN_DTYPE_F32 || dtype == XN_DTYPE_F64) {
        int f32 = dtype == XN_DTYPE_F32, inf_n, inf_d;
        double nf, df;
        if (exceeds_max(num, den, f32 ? (1ULL << 24) - 1 : (1ULL << 53) - 1, f32 ? 104 : 971,
                        scratch))
            return XN_ERR_RANGE;
        nf = big_to_float(num, f32 ? 24 : 53, f32 ? 128 : 1024, &inf_n);
        df = big_to_float(den, f32 ? 24 : 53, f32 ? 128 : 1024, &inf_d);
        if (nf == 0.0 || df == 0.0) {
            if (f32) ((float *)out)[j] = 0.0f;
            else ((double *)out)[j] = 0.0;
            return XN_OK;
        }
        if (f32) {
            float q = (float)nf / (float)df;
            if (!isfinite(q)) return XN_ERR_DIVERGES;
            ((float *)out)[j] = q;
        } else {
            double q = nf / df;
            if (!isfinite(q)) return XN_ERR_DIVERGES;
            ((double *)out)[j] = q;
        }
        return XN_OK;
    }
    {
        uint64_t q;
        int neg = num->neg != den->neg;
        if (div_trunc_u64(num, den, &q, scratch) != XN_OK) return XN_ERR_RANGE;
        if (dtype == XN_DTYPE_I32) {
            if (neg ? q > (1ULL << 31) : q > (1ULL << 31) - 1) return XN_ERR_RANGE;
            ((int32_t *)out)[j] = neg ? (int32_t)(0 - (int64_t)q) : (int32_t)q;
        } else {
            if (neg ? q > (1ULL << 63) : q > (1ULL << 63) - 1) return XN_ERR_RANGE;
            ((int64_t *)out)[j] = neg ? (int64_t)(0 - q) : (int64_t)q;
        }
        return XN_OK;
    }
}

int xn_model_from_bincode(const uint8_t *data, size_t len, int dtype, void *out,
                          size_t capacity, size_t *count, size_t *consumed,
                          size_t *bad_index, uint32_t *scratch, size_t scratch_words)
{
    uint64_t n;
    size_t pos = 8, j, first_bad = 0;
    int first_rc = XN_OK;
    if (data == NULL || count == NULL || consumed == NULL || scratch == NULL)
        return XN_ERR_ARGUMENT;
    if (dtype < XN_DTYPE_F32 || dtype > XN_DTYPE_I64) return XN_ERR_ARGUMENT;
    if (scratch_words < len / 4 + 8) return XN_ERR_LENGTH;
    if (len < 8) return XN_ERR_MALFORMED;
    n = rd_u64(data);
    /* every weight takes at least 18 bytes: two signs and two digit counts */
    if (n > (len - 8) / 18) return XN_ERR_MALFORMED;
    *count = (size_t)n;
    if (n > capacity || (out == NULL && n > 0)) return XN_ERR_LENGTH;
    /* The original deserializes the whole model before converting any weight, so a malformed
       weight anywhere wins over a conversion error before it: after the first conversion
       error the rest is only parsed. */
    for (j = 0; j < (size_t)n; j++) {
        bigint_ref num, den;
        int rc = parse_bigint(data, len, &pos, &num);
        if (rc == XN_OK) rc = parse_bigint(data, len, &pos, &den);
        if (rc == XN_OK && den.n == 0) rc = XN_ERR_MALFORMED; /* Ratio rejects a zero denominator */
        if (rc != XN_OK) {
            if (bad_index) *bad_index = j;
            return rc;
        }
        if (first_rc == XN_OK) {
            rc = convert_weight(&num, &den, dtype, out, j, scratch);
            if (rc != XN_OK) {
                first_rc = rc;
                first_bad = j;
            }
        }
    }
    if (first_rc != XN_OK) {
        if (bad_index) *bad_index = first_bad;
        return first_rc;
    }
    *consumed = pos;
    return XN_OK;
}

/* ---- unmasking to the wire form ------------------------------------------------------- */

static inline int ctz128(xn_u128 v)
{
    uint64_t lo = (uint64_t)v;
    return lo ? __builtin_ctzll(lo) : 64 + __builtin_ctzll((uint64_t)(v >> 64));
}

/* Stein's binary gcd; a and b nonzero. */
static xn_u128 gcd128(xn_u128 a, xn_u128 b)
{
    int za = ctz128(a), zb = ctz128(b), k = za < zb ? za : zb;
    a >>= za;
    b >>= zb;
    while (a != b) {
        if (a > b) {
            a -= b;
            a >>= ctz128(a);
        } else {
            b -= a;
            b >>= ctz128(b);
        }
    }
    return a << k;
}

/* A BigInt in bincode: sign byte, u64 digit count, minimal u32 digits. */
static size_t put_bigint(uint8_t *out, int neg, xn_u128 mag)
{
    size_t digits = 0, i;
    uint64_t count;
    xn_u128 t = mag;
    while (t) {
        digits++;
        t >>= 32;
    }
    out[0] = mag == 0 ? 0x00 : neg ? 0xff : 0x01;
    count = digits;
    memcpy(out + 1, &count, 8);
    for (i = 0; i < digits; i++) {
        uint32_t d = (uint32_t)(mag >> (32 * i));
        memcpy(out + 9 + 4 * i, &d, 4);
    }
    return 9 + 4 * digits;
}

int xn_unmask_to_bincode(const uint64_t *x, size_t n, size_t limbs, const uint64_t *offset,
                         const uint64_t *mul, int mul_negative, const uint64_t *den,
                         uint8_t *out, size_t capacity, size_t *written)
{
    const xn_u128 limit = (xn_u128)1 << 127;
    xn_u128 off, m, d;
    size_t j, pos = 8;
    uint64_t count = n;
    if ((x == NULL && n > 0) || offset == NULL || mul == NULL || den == NULL || out == NULL ||
        written == NULL)
        return XN_ERR_ARGUMENT;
    if (limbs < 1 || limbs > 2) return XN_ERR_ARGUMENT;
    if (n > (SIZE_MAX - 8) / 50 || capacity < 8 + 50 * n) return XN_ERR_LENGTH;
    off = ((xn_u128)offset[1] << 64) | offset[0];
    m = ((xn_u128)mul[1] << 64) | mul[0];
    d = ((xn_u128)den[1] << 64) | den[0];
    if (m == 0 || d == 0 || off >= limit || m >= limit || d >= limit) return XN_ERR_RANGE;
    memcpy(out, &count, 8);
    for (j = 0; j < n; j++) {
        xn_u128 v = limbs == 2 ? (((xn_u128)x[2 * j + 1] << 64) | x[2 * j]) : x[j];
        xn_u128 diff, num, g, dd;
        int neg;
        if (v >= limit) return XN_ERR_RANGE;
        neg = v < off;
        diff = neg ? off - v : v - off;
        if (diff != 0 && m > (limit - 1) / diff) return XN_ERR_RANGE;
        num = diff * m;
        neg ^= mul_negative;
        if (num == 0) {
            pos += put_bigint(out + pos, 0, 0);
            pos += put_bigint(out + pos, 0, 1);
            continue;
        }
        g = gcd128(num, d);
        dd = d / g;
        pos += put_bigint(out + pos, neg, num / g);
        pos += put_bigint(out + pos, 0, dd);
    }
    *written = pos;
    return XN_OK;
}
