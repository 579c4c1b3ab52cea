/* x86.c: the AVX-512 kernels and the CPU feature checks that decide whether they run.
 *
 * Each kernel computes exactly what the portable code in sample.c and encode.c computes (the
 * differential tests run both, and tests/test_native_dispatch.py the narrower paths); the
 * callers take a kernel only when its check passes. Compiled only for x86-64 with GCC or
 * Clang: elsewhere this unit is empty.
 */
#include "xn_internal.h"

#ifdef XN_X86
#include <immintrin.h>

/* Eight 8-byte candidates per step: mask to k bytes, compare with the order, and
 * compress-store the accepted ones. Consumes whole groups of eight while at least eight
 * more numbers are wanted, so every candidate it reads is one the scalar loop would read. */
__attribute__((target("avx512f"))) size_t xn_scan8_avx512(const uint8_t *buf, size_t *pos,
                                                          size_t len, uint64_t keep,
                                                          uint64_t order, uint64_t *out,
                                                          size_t want)
{
    const __m512i vkeep = _mm512_set1_epi64((long long)keep);
    const __m512i vorder = _mm512_set1_epi64((long long)order);
    size_t p = *pos, got = 0;
    while (p + 64 <= len && want - got >= 8) {
        __m512i v = _mm512_and_si512(_mm512_loadu_si512((const void *)(buf + p)), vkeep);
        __mmask8 m = _mm512_cmplt_epu64_mask(v, vorder);
        /* compress in a register and store all eight lanes (room: want - got >= 8); a
           compress straight to memory is microcoded and slow on AMD Zen 4 */
        _mm512_storeu_si512((void *)(out + got), _mm512_maskz_compress_epi64(m, v));
        got += (size_t)__builtin_popcount((unsigned)m);
        p += 64;
    }
    *pos = p;
    return got;
}

/* The same for candidates of 9 to 12 bytes (stride 12) and two-limb numbers: one byte
 * permute over 128 bytes gathers the low eight bytes of eight candidates, another their
 * high bytes (the bytes past draw_bytes zeroed), so eight 96-bit comparisons take a few
 * instructions. The scalar loop spends a branchless step on each of the four candidates
 * that one accepted number of Integer/F64/B2/M6 costs. Output: (low, high) limb pairs. */
__attribute__((target("avx512f,avx512bw,avx512vbmi"))) size_t xn_scan12_vbmi(
    const uint8_t *buf, size_t *pos, size_t len, size_t k, uint64_t order_lo,
    uint64_t order_hi, uint64_t *out, size_t want)
{
    /* byte 8i + j of a lane: byte j of candidate i (low part), byte 8 + j (high part) */
    static const uint8_t ilo[64] = {
        0,  1,  2,  3,  4,  5,  6,  7,  12, 13, 14, 15, 16, 17, 18, 19, 24, 25, 26, 27, 28, 29,
        30, 31, 36, 37, 38, 39, 40, 41, 42, 43, 48, 49, 50, 51, 52, 53, 54, 55, 60, 61, 62, 63,
        64, 65, 66, 67, 72, 73, 74, 75, 76, 77, 78, 79, 84, 85, 86, 87, 88, 89, 90, 91};
    static const uint8_t ihi[64] = {
        8,  9,  10, 11, 0, 0, 0, 0, 20, 21, 22, 23, 0, 0, 0, 0, 32, 33, 34, 35, 0, 0,
        0,  0,  44, 45, 46, 47, 0, 0, 0,  0,  56, 57, 58, 59, 0, 0, 0, 0, 68, 69, 70, 71,
        0,  0,  0,  0,  80, 81, 82, 83, 0, 0,  0,  0,  92, 93, 94, 95, 0, 0, 0, 0};
    /* the high bytes below draw_bytes, in every lane */
    const __mmask64 keep_hi = (__mmask64)(0x0101010101010101ULL * ((1ULL << (k - 8)) - 1));
    size_t p = *pos, got = 0;
    {
        const __m512i vilo = _mm512_loadu_si512((const void *)ilo);
        const __m512i vihi = _mm512_loadu_si512((const void *)ihi);
        const __m512i ol = _mm512_set1_epi64((long long)order_lo);
        const __m512i oh = _mm512_set1_epi64((long long)order_hi);
        const __m512i first = _mm512_set_epi64(11, 3, 10, 2, 9, 1, 8, 0);
        const __m512i second = _mm512_set_epi64(15, 7, 14, 6, 13, 5, 12, 4);
        while (p + 128 <= len && want - got >= 8) {
            __m512i a = _mm512_loadu_si512((const void *)(buf + p));
            __m512i b = _mm512_loadu_si512((const void *)(buf + p + 64));
            __m512i lo = _mm512_permutex2var_epi8(a, vilo, b);
            __m512i hi = _mm512_maskz_permutex2var_epi8(keep_hi, a, vihi, b);
            __mmask8 m = _mm512_cmplt_epu64_mask(hi, oh) |
                         (_mm512_cmpeq_epu64_mask(hi, oh) & _mm512_cmplt_epu64_mask(lo, ol));
            __m512i cl = _mm512_maskz_compress_epi64(m, lo);
            __m512i ch = _mm512_maskz_compress_epi64(m, hi);
            /* room for sixteen limbs: want - got >= 8 */
            _mm512_storeu_si512((void *)(out + 2 * got), _mm512_permutex2var_epi64(cl, first, ch));
            _mm512_storeu_si512((void *)(out + 2 * got + 8),
                                _mm512_permutex2var_epi64(cl, second, ch));
            got += (size_t)__builtin_popcount((unsigned)m);
            p += 96;
        }
    }
    *pos = p;
    return got;
}

int xn_have_vbmi(void)
{
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512bw");
    }
    return cached;
}

__attribute__((target("avx512f,avx512dq,avx512vl"))) void xn_mask_f32_u64_avx512(
    const float *w, const uint64_t *r, uint64_t *out, size_t cnt, const xn_u64_params *P)
{
    xn_mask_f32_u64_kernel(w, r, out, cnt, P);
}

int xn_have_avx512dq(void)
{
    __builtin_cpu_init();
    return xn_lanes() == 16 && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl");
}

/* F64 weights, two-limb numbers, a power-of-two scalar 2^se: eight weights per step.
 *
 * |w| * 2^se * E = m * e_odd * 2^s with E = e_odd * 2^e_twos. The 53-bit mantissa
 * m = 2^52 + frac times e_odd < 2^52 is exact with IFMA's 52-bit multiplies: frac * e_odd in
 * two halves, plus e_odd * 2^52 for the implicit bit. The 128-bit shift by s (either way)
 * uses per-lane shifts, which give 0 for counts of 64 or more, so no count needs clamping.
 * Clamping to [-A, A] is decided on the double itself: |w| * 2^se is exact unless it
 * underflows (then far below A) or overflows (then infinite, above A), and A < 2^53 is
 * exact. Unclamped, the product is at most A * E < 2^127, so the shift cannot overflow.
 * The constants (xn_f64_params) are in xn_internal.h. */
__attribute__((target("avx512f,avx512dq,avx512ifma"))) size_t xn_mask_f64_ifma(
    const double *w, const uint64_t *r, uint64_t *out, size_t cnt, const xn_f64_params *P)
{
    const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi64(1);
    const __m512i c64 = _mm512_set1_epi64(64), c128 = _mm512_set1_epi64(128);
    const __m512i exp_mask = _mm512_set1_epi64(0x7ff), frac_mask = _mm512_set1_epi64((1LL << 52) - 1);
    const __m512i e_odd = _mm512_set1_epi64((long long)P->e_odd);
    const __m512i s_base = _mm512_set1_epi64(P->s_base);
    const __m512i ae_lo = _mm512_set1_epi64((long long)P->ae_lo);
    const __m512i ae_hi = _mm512_set1_epi64((long long)P->ae_hi);
    const __m512i two_ae_lo = _mm512_set1_epi64((long long)P->two_ae_lo);
    const __m512i two_ae_hi = _mm512_set1_epi64((long long)P->two_ae_hi);
    const __m512i o_lo = _mm512_set1_epi64((long long)P->order_lo);
    const __m512i o_hi = _mm512_set1_epi64((long long)P->order_hi);
    const __m512d a = _mm512_set1_pd(P->a), scale = _mm512_set1_pd(P->scale);
    const __m512i even = _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_set_epi64(15, 13, 11, 9, 7, 5, 3, 1);
    const __m512i first = _mm512_set_epi64(11, 3, 10, 2, 9, 1, 8, 0);
    const __m512i second = _mm512_set_epi64(15, 7, 14, 6, 13, 5, 12, 4);
    size_t k;
    for (k = 0; k + 8 <= cnt; k += 8) {
        __m512d x = _mm512_loadu_pd(w + k);
        __m512i bits = _mm512_castpd_si512(x);
        __mmask8 neg = _mm512_movepi64_mask(bits);
        __m512i ef = _mm512_and_si512(_mm512_srli_epi64(bits, 52), exp_mask);
        __m512i frac = _mm512_and_si512(bits, frac_mask);
        __mmask8 normal = _mm512_test_epi64_mask(ef, ef);
        __mmask8 clamped = _mm512_cmp_pd_mask(_mm512_mul_pd(_mm512_abs_pd(x), scale), a,
                                              _CMP_GT_OQ);
        /* p = m * e_odd = p52 + ph * 2^52, as (lo, hi) */
        __m512i p52 = _mm512_madd52lo_epu64(zero, frac, e_odd);
        __m512i ph = _mm512_madd52hi_epu64(_mm512_maskz_mov_epi64(normal, e_odd), frac, e_odd);
        __m512i lo = _mm512_or_si512(p52, _mm512_slli_epi64(ph, 52));
        __m512i hi = _mm512_srli_epi64(ph, 12);
        __m512i s = _mm512_add_epi64(_mm512_mask_add_epi64(ef, (__mmask8)~normal, ef, one), s_base);
        __mmask8 left = _mm512_cmpge_epi64_mask(s, zero);
        __m512i cl = _mm512_max_epi64(s, zero), cr = _mm512_max_epi64(_mm512_sub_epi64(zero, s), zero);
        /* t = floor(p * 2^s), rem = whether that dropped nonzero bits */
        __m512i tl_lo = _mm512_sllv_epi64(lo, cl);
        __m512i tl_hi = _mm512_or_si512(
            _mm512_or_si512(_mm512_sllv_epi64(hi, cl), _mm512_srlv_epi64(lo, _mm512_sub_epi64(c64, cl))),
            _mm512_sllv_epi64(lo, _mm512_sub_epi64(cl, c64)));
        __m512i tr_lo = _mm512_or_si512(
            _mm512_or_si512(_mm512_srlv_epi64(lo, cr), _mm512_sllv_epi64(hi, _mm512_sub_epi64(c64, cr))),
            _mm512_srlv_epi64(hi, _mm512_sub_epi64(cr, c64)));
        __m512i tr_hi = _mm512_srlv_epi64(hi, cr);
        __m512i dropped = _mm512_or_si512(_mm512_sllv_epi64(lo, _mm512_sub_epi64(c64, cr)),
                                          _mm512_sllv_epi64(hi, _mm512_sub_epi64(c128, cr)));
        __m512i t_lo, t_hi, v_lo, v_hi, d_lo, d_hi, x_lo, x_hi, rl, rh, ra, rb;
        __mmask8 rem, carry, borrow, ge;
        dropped = _mm512_mask_or_epi64(dropped, _mm512_cmpge_epu64_mask(cr, c64), dropped, lo);
        dropped = _mm512_mask_or_epi64(dropped, _mm512_cmpge_epu64_mask(cr, c128), dropped, hi);
        rem = _mm512_test_epi64_mask(dropped, dropped) & (__mmask8)~left;
        t_lo = _mm512_mask_blend_epi64(left, tr_lo, tl_lo);
        t_hi = _mm512_mask_blend_epi64(left, tr_hi, tl_hi);
        /* positive: AE + t; negative: AE - t - rem */
        v_lo = _mm512_add_epi64(ae_lo, t_lo);
        carry = _mm512_cmplt_epu64_mask(v_lo, ae_lo);
        v_hi = _mm512_mask_add_epi64(_mm512_add_epi64(ae_hi, t_hi), carry,
                                     _mm512_add_epi64(ae_hi, t_hi), one);
        d_lo = _mm512_sub_epi64(ae_lo, t_lo);
        borrow = _mm512_cmplt_epu64_mask(ae_lo, t_lo);
        d_hi = _mm512_mask_sub_epi64(_mm512_sub_epi64(ae_hi, t_hi), borrow,
                                     _mm512_sub_epi64(ae_hi, t_hi), one);
        borrow = rem & _mm512_cmpeq_epi64_mask(d_lo, zero);
        d_lo = _mm512_mask_sub_epi64(d_lo, rem, d_lo, one);
        d_hi = _mm512_mask_sub_epi64(d_hi, borrow, d_hi, one);
        v_lo = _mm512_mask_blend_epi64(neg, v_lo, d_lo);
        v_hi = _mm512_mask_blend_epi64(neg, v_hi, d_hi);
        /* clamped: 2AE when positive, 0 when negative */
        v_lo = _mm512_mask_mov_epi64(v_lo, clamped, _mm512_maskz_mov_epi64((__mmask8)~neg, two_ae_lo));
        v_hi = _mm512_mask_mov_epi64(v_hi, clamped, _mm512_maskz_mov_epi64((__mmask8)~neg, two_ae_hi));
        /* + r, reduced: r arrives as (lo, hi) pairs */
        ra = _mm512_loadu_si512((const void *)(r + 2 * k));
        rb = _mm512_loadu_si512((const void *)(r + 2 * k + 8));
        rl = _mm512_permutex2var_epi64(ra, even, rb);
        rh = _mm512_permutex2var_epi64(ra, odd, rb);
        x_lo = _mm512_add_epi64(v_lo, rl);
        carry = _mm512_cmplt_epu64_mask(x_lo, v_lo);
        x_hi = _mm512_add_epi64(v_hi, rh);
        x_hi = _mm512_mask_add_epi64(x_hi, carry, x_hi, one);
        ge = _mm512_cmpgt_epu64_mask(x_hi, o_hi) |
             (_mm512_cmpeq_epi64_mask(x_hi, o_hi) & _mm512_cmpge_epu64_mask(x_lo, o_lo));
        borrow = ge & _mm512_cmplt_epu64_mask(x_lo, o_lo);
        x_hi = _mm512_mask_sub_epi64(x_hi, ge, x_hi, o_hi);
        x_hi = _mm512_mask_sub_epi64(x_hi, borrow, x_hi, one);
        x_lo = _mm512_mask_sub_epi64(x_lo, ge, x_lo, o_lo);
        _mm512_storeu_si512((void *)(out + 2 * k), _mm512_permutex2var_epi64(x_lo, first, x_hi));
        _mm512_storeu_si512((void *)(out + 2 * k + 8), _mm512_permutex2var_epi64(x_lo, second, x_hi));
    }
    return k;
}

int xn_have_ifma(void)
{
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = xn_lanes() == 16 && __builtin_cpu_supports("avx512ifma") &&
                 __builtin_cpu_supports("avx512dq");
    }
    return cached;
}
#endif /* XN_X86 */
