/* mask.c: rejection sampling of mask numbers, fixed-point encoding of weights, masking,
 * modular vector arithmetic and mask derivation (docs/PROTOCOL.md sections 9 to 11).
 *
 * The original allocates a big integer per weight; here every number is a fixed number of
 * 64-bit limbs, and the common configurations (every constant below 2^127) take an
 * unsigned __int128 fast path. Rejection sampling makes the keystream the cost: about 113
 * keystream bytes per weight for Prime/F32/B0/M3, so the scan over candidates is kept tight
 * and everything else small beside it.
 */
#include <math.h>
#include <string.h>

#include "xn_internal.h"

#define ORDER_LIMBS(g) (((g)->draw_bytes + 7) / 8)
#define BATCH 256
#define SAMPLER_CAP (2 * XN_CHACHA_MAX_BATCH + XN_MAX_DRAW_BYTES)

/* ---- groups ---------------------------------------------------------------------------- */

static int check_group(const xn_group *g)
{
    size_t ol;
    if (g == NULL || g->order == NULL) return XN_ERR_ARGUMENT;
    if (g->limbs < 1 || g->limbs > XN_MAX_LIMBS) return XN_ERR_ARGUMENT;
    if (g->draw_bytes < 1 || g->draw_bytes > XN_MAX_DRAW_BYTES) return XN_ERR_ARGUMENT;
    ol = ORDER_LIMBS(g);
    if (ol > XN_MAX_LIMBS || ol < g->limbs || ol > g->limbs + 1) return XN_ERR_ARGUMENT;
    /* the order's byte length must be draw_bytes */
    if ((mp_bits(g->order, ol) + 7) / 8 != g->draw_bytes) return XN_ERR_ARGUMENT;
    /* a stored number (< order) must fit in `limbs` limbs */
    if (ol > g->limbs && mp_bits(g->order, ol) != 64 * g->limbs + 1) return XN_ERR_ARGUMENT;
    return XN_OK;
}

/* (a + b) mod order for one number of L limbs; a, b < order; out may alias a. */
static inline void add_mod_one(uint64_t *out, const uint64_t *a, const uint64_t *b,
                               const xn_group *g)
{
    size_t L = g->limbs;
    uint64_t carry = mp_add(out, a, b, L);
    if (carry || mp_cmp(out, L, g->order, ORDER_LIMBS(g)) >= 0) mp_sub(out, out, g->order, L);
}

static void add_mod_vec(uint64_t *acc, const uint64_t *x, size_t n, const xn_group *group);

/* ---- the sampler: generate_integer over a buffered keystream ---------------------------- */

typedef struct {
    xn_chacha chacha;
    size_t pos, len;         /* bytes of buf */
    uint64_t word_pos;       /* words consumed from the PRNG, accepted or not */
    uint64_t end_word;       /* no candidate starts at or past this word */
    int exhausted;           /* buf holds every byte before end_word */
    uint8_t buf[SAMPLER_CAP + 16];
} sampler;

/* Cuts buf at end_word (buf[pos] is word word_pos) and zeroes the 16 bytes after len. */
static void sampler_clip(sampler *s)
{
    uint64_t room = s->end_word > s->word_pos ? s->end_word - s->word_pos : 0;
    if (room <= (uint64_t)(s->len - s->pos) / 4) {
        s->len = s->pos + (size_t)room * 4;
        s->exhausted = 1;
    }
    memset(s->buf + s->len, 0, 16);
}

static void sampler_init_until(sampler *s, const uint8_t *seed, uint64_t word_pos,
                               uint64_t end_word)
{
    xn_chacha_init(&s->chacha, seed, word_pos / 16);
    s->len = xn_chacha_batch(&s->chacha, s->buf);
    s->pos = (size_t)(word_pos % 16) * 4;
    s->word_pos = word_pos;
    s->end_word = end_word;
    s->exhausted = 0;
    sampler_clip(s);
}

static void sampler_init(sampler *s, const uint8_t *seed, uint64_t word_pos)
{
    sampler_init_until(s, seed, word_pos, UINT64_MAX);
}

/* Moves the unread bytes (fewer than one candidate) to the front and appends keystream. */
static void sampler_refill(sampler *s)
{
    size_t rest = s->len - s->pos;
    memmove(s->buf, s->buf + s->pos, rest);
    s->pos = 0;
    s->len = rest;
    /* rest < XN_MAX_DRAW_BYTES, so at least two full batches always fit */
    while (s->len + XN_CHACHA_MAX_BATCH <= SAMPLER_CAP)
        s->len += xn_chacha_batch(&s->chacha, s->buf + s->len);
    sampler_clip(s);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define XN_HAVE_SCAN8_AVX512 1
/* Eight 8-byte candidates per step: mask to k bytes, compare with the order, and
 * compress-store the accepted ones. Consumes whole groups of eight while at least eight
 * more numbers are wanted, so every candidate it reads is one the scalar loop would read. */
__attribute__((target("avx512f"))) static size_t scan8_avx512(const uint8_t *buf, size_t *pos,
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
__attribute__((target("avx512f,avx512bw,avx512vbmi"))) static size_t scan12_vbmi(
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

static int have_vbmi(void)
{
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512bw");
    }
    return cached;
}
#endif

/* Draws `want` numbers below the order into out (want * L limbs). Every candidate reads
 * draw_bytes bytes and consumes ceil(draw_bytes / 4) whole words (rand_core fill_bytes).
 * Returns how many it drew: fewer only when the candidates before end_word ran out. */
static size_t sample(sampler *s, const xn_group *g, uint64_t *out, size_t want)
{
    const size_t k = g->draw_bytes, L = g->limbs, ol = ORDER_LIMBS(g);
    const size_t stride = 4 * ((k + 3) / 4);
    const uint64_t stride_words = stride / 4;
    size_t got = 0;

    if (k <= 8) {
        const uint64_t keep = k == 8 ? ~0ULL : ((1ULL << (8 * k)) - 1);
        const uint64_t order = g->order[0];
        while (got < want) {
            const uint8_t *buf = s->buf;
            size_t pos = s->pos, len = s->len, start = s->pos;
#ifdef XN_HAVE_SCAN8_AVX512
            if (stride == 8 && L == 1 && s->chacha.lanes == 16)
                got += scan8_avx512(buf, &pos, len, keep, order, out + got, want - got);
#endif
            while (pos + stride <= len && got < want) { /* branchless, as below */
                uint64_t v;
                memcpy(&v, buf + pos, 8);
                v &= keep;
                pos += stride;
                out[got] = v; /* L == 1: a candidate of at most 8 bytes */
                got += v < order;
            }
            s->word_pos += (uint64_t)((pos - start) / stride) * stride_words;
            s->pos = pos;
            if (got < want) {
                if (s->exhausted) break;
                sampler_refill(s);
            }
        }
    } else if (k <= 16) {
        const xn_u128 keep = k == 16 ? ~(xn_u128)0 : (((xn_u128)1 << (8 * k)) - 1);
        const xn_u128 order = ol == 1 ? g->order[0]
                                      : (((xn_u128)g->order[1] << 64) | g->order[0]);
        /* ol == 3 (order 2^128) cannot happen here: that needs 17 draw bytes */
        while (got < want) {
            const uint8_t *buf = s->buf;
            size_t pos = s->pos, len = s->len, start = s->pos;
#ifdef XN_HAVE_SCAN8_AVX512
            if (stride == 12 && L == 2 && s->chacha.lanes == 16 && have_vbmi())
                got += scan12_vbmi(buf, &pos, len, k, g->order[0], g->order[1], out + 2 * got,
                                   want - got);
#endif
            /* branchless: about a quarter of the candidates are accepted for some orders, too
               many for the branch predictor; store every candidate, advance on acceptance */
            while (pos + stride <= len && got < want) {
                xn_u128 v;
                memcpy(&v, buf + pos, 16);
                v &= keep;
                pos += stride;
                out[got * L] = (uint64_t)v;
                if (L > 1) out[got * L + 1] = (uint64_t)(v >> 64);
                got += v < order;
            }
            s->word_pos += (uint64_t)((pos - start) / stride) * stride_words;
            s->pos = pos;
            if (got < want) {
                if (s->exhausted) break;
                sampler_refill(s);
            }
        }
    } else {
        uint64_t cand[XN_MAX_LIMBS + 1];
        while (got < want) {
            if (s->len - s->pos < stride) {
                if (s->exhausted) break;
                sampler_refill(s);
                if (s->len - s->pos < stride) break; /* exhausted by the refill */
            }
            memset(cand, 0, sizeof(cand));
            memcpy(cand, s->buf + s->pos, k);
            s->pos += stride;
            s->word_pos += stride_words;
            if (mp_cmp(cand, ol, g->order, ol) < 0) {
                memcpy(out + got * L, cand, L * sizeof(uint64_t));
                got++;
            }
        }
    }
    return got;
}

int xn_draw(const uint8_t *seed, uint64_t *word_pos, const xn_group *group, uint64_t *out,
            size_t n)
{
    sampler s;
    int rc = check_group(group);
    if (rc != XN_OK) return rc;
    if (seed == NULL || word_pos == NULL || (out == NULL && n > 0)) return XN_ERR_ARGUMENT;
    sampler_init(&s, seed, *word_pos);
    if (n > 0) sample(&s, group, out, n);
    *word_pos = s.word_pos;
    return XN_OK;
}

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
    if (mp_cmp(enc->shifted_max, L, g->order, ORDER_LIMBS(g)) >= 0) return XN_ERR_ARGUMENT;
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

/* The 64-bit path for F32 weights, written without branches so that the compiler turns the
 * loop into vector code (variable shifts, 64-bit multiplies): encode, add the random
 * numbers, reduce. Same results as encode_u64 (the differential tests cover both). Every
 * condition is an all-ones mask, and no constant is shifted by a lane-dependent amount: GCC
 * 12 refuses to vectorize either. */
typedef struct {
    uint64_t a, e_shift, ae, two_ae, order, sm;
    int64_t se;
} u64_params;

#define XN_MASK(c) ((uint64_t)0 - (uint64_t)(c))
#define XN_SEL(m, x, y) (((x) & (m)) | ((y) & ~(m)))

static inline __attribute__((always_inline)) void mask_f32_u64_kernel(
    const float *restrict w, const uint64_t *restrict r, uint64_t *restrict out, size_t cnt,
    const u64_params *P)
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

static void mask_f32_u64_generic(const float *w, const uint64_t *r, uint64_t *out, size_t cnt,
                                 const u64_params *P)
{
    mask_f32_u64_kernel(w, r, out, cnt, P);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx512f,avx512dq,avx512vl"))) static void mask_f32_u64_avx512(
    const float *w, const uint64_t *r, uint64_t *out, size_t cnt, const u64_params *P)
{
    mask_f32_u64_kernel(w, r, out, cnt, P);
}

static int have_avx512dq(void)
{
    __builtin_cpu_init();
    return xn_lanes() == 16 && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl");
}
#endif

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

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* F64 weights, two-limb numbers, a power-of-two scalar 2^se: eight weights per step.
 *
 * |w| * 2^se * E = m * e_odd * 2^s with E = e_odd * 2^e_twos. The 53-bit mantissa
 * m = 2^52 + frac times e_odd < 2^52 is exact with IFMA's 52-bit multiplies: frac * e_odd in
 * two halves, plus e_odd * 2^52 for the implicit bit. The 128-bit shift by s (either way)
 * uses per-lane shifts, which give 0 for counts of 64 or more, so no count needs clamping.
 * Clamping to [-A, A] is decided on the double itself: |w| * 2^se is exact unless it
 * underflows (then far below A) or overflows (then infinite, above A), and A < 2^53 is
 * exact. Unclamped, the product is at most A * E < 2^127, so the shift cannot overflow. */
typedef struct {
    uint64_t ae_lo, ae_hi, two_ae_lo, two_ae_hi, order_lo, order_hi, e_odd;
    int64_t s_base; /* -1075 + se + e_twos: s = ef + (ef == 0) + s_base */
    double a, scale;
} f64_params;

__attribute__((target("avx512f,avx512dq,avx512ifma"))) static size_t mask_f64_ifma(
    const double *w, const uint64_t *r, uint64_t *out, size_t cnt, const f64_params *P)
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

static int have_ifma(void)
{
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = xn_lanes() == 16 && __builtin_cpu_supports("avx512ifma") &&
                 __builtin_cpu_supports("avx512dq");
    }
    return cached;
}
#endif

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
    u64_params P64;
    void (*f32_kernel)(const float *, const uint64_t *, uint64_t *, size_t, const u64_params *);
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    f64_params P128;
#endif
} mask_plan;

static int plan_init(mask_plan *pl, const xn_group *group, const xn_encoding *enc,
                     uint64_t scalar_mantissa, int32_t scalar_exponent, int dtype)
{
    static const int weight_bits[4] = {24, 53, 31, 64}; /* mantissa bits per dtype */
    encoder *c = &pl->c;
    size_t sm_bits, L = group->limbs;
    int rc = check_group(group);
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
    if (L == 1 && ORDER_LIMBS(group) == 1 && group->order[0] < (1ULL << 63) && c->fast &&
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
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
        if (have_avx512dq()) pl->f32_kernel = mask_f32_u64_avx512;
#endif
        return XN_OK;
    }
    if (c->fast && L <= 2 && ORDER_LIMBS(group) == L && mp_bits(group->order, L) <= 127) {
        /* every stored number and sum of two fits an unsigned __int128 */
        pl->path = PATH_U128;
        pl->order = to_u128(group->order, L);
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
        pl->wide = dtype == XN_DTYPE_F64 && L == 2 && scalar_mantissa == 1 && c->e_odd_ok &&
                   c->e_odd < (1ULL << 52) && c->a < ((xn_u128)1 << 53) && have_ifma();
        if (pl->wide) {
            f64_params *P = &pl->P128;
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
        const u64_params *P = &pl->P64;
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
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
        if (pl->wide) k = mask_f64_ifma((const double *)weights + j, r, out, cnt, &pl->P128);
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
            add_mod_one(out + k * L, shifted, r + k * L, pl->g);
        }
    }
}

int xn_mask_vector(const uint8_t *seed, uint64_t *word_pos, const xn_group *group,
                   const xn_encoding *enc, uint64_t scalar_mantissa, int32_t scalar_exponent,
                   const void *weights, int dtype, size_t n, uint64_t *out, size_t *bad_index)
{
    sampler s;
    mask_plan pl;
    uint64_t r[BATCH * XN_MAX_LIMBS];
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
    sampler_init(&s, seed, *word_pos);
    for (j = 0; j < n; j += BATCH) {
        size_t cnt = n - j < BATCH ? n - j : BATCH;
        sample(&s, group, r, cnt);
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
    uint64_t batch[BATCH * XN_MAX_LIMBS];
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
    for (j = 0; j < n; j += BATCH) {
        size_t cnt = n - j < BATCH ? n - j : BATCH;
        const uint64_t *rj = r + j * L;
        if (r == out) { /* the kernels take their operands as restrict: copy when in place */
            memcpy(batch, rj, cnt * L * sizeof(uint64_t));
            rj = batch;
        }
        plan_run(&pl, weights, j, rj, out + j * L, cnt);
    }
    return XN_OK;
}

int xn_draw_until(const uint8_t *seed, uint64_t *word_pos, uint64_t end_word,
                  const xn_group *group, uint64_t *out, size_t n, size_t *drawn)
{
    sampler s;
    int rc = check_group(group);
    if (rc != XN_OK) return rc;
    if (seed == NULL || word_pos == NULL || drawn == NULL || (out == NULL && n > 0))
        return XN_ERR_ARGUMENT;
    sampler_init_until(&s, seed, *word_pos, end_word);
    *drawn = n > 0 ? sample(&s, group, out, n) : 0;
    *word_pos = s.word_pos;
    return XN_OK;
}

int xn_draw_add_until(const uint8_t *seed, uint64_t *word_pos, uint64_t end_word,
                      const xn_group *group, uint64_t *acc, size_t n, size_t *drawn)
{
    sampler s;
    uint64_t r[BATCH * XN_MAX_LIMBS];
    size_t got = 0, L;
    int rc = check_group(group);
    if (rc != XN_OK) return rc;
    if (seed == NULL || word_pos == NULL || drawn == NULL || (acc == NULL && n > 0))
        return XN_ERR_ARGUMENT;
    L = group->limbs;
    sampler_init_until(&s, seed, *word_pos, end_word);
    while (got < n) {
        size_t want = n - got < BATCH ? n - got : BATCH;
        size_t cnt = sample(&s, group, r, want);
        add_mod_vec(acc + got * L, r, cnt, group);
        got += cnt;
        if (cnt < want) break; /* the candidates before end_word ran out */
    }
    *drawn = got;
    *word_pos = s.word_pos;
    return XN_OK;
}

/* ---- vector arithmetic ------------------------------------------------------------------- */

/* acc_j = (acc_j + x_j) mod order; one-limb orders below 2^63 take a loop gcc vectorizes. */
static void add_mod_vec(uint64_t *acc, const uint64_t *x, size_t n, const xn_group *group)
{
    size_t j, L = group->limbs;
    if (L == 1 && ORDER_LIMBS(group) == 1 && group->order[0] < (1ULL << 63)) {
        const uint64_t order = group->order[0];
        for (j = 0; j < n; j++) {
            uint64_t v = acc[j] + x[j];
            acc[j] = v >= order ? v - order : v;
        }
        return;
    }
    for (j = 0; j < n; j++) add_mod_one(acc + j * L, acc + j * L, x + j * L, group);
}

int xn_add_mod(uint64_t *acc, const uint64_t *x, size_t n, const xn_group *group)
{
    int rc = check_group(group);
    if (rc != XN_OK) return rc;
    if ((acc == NULL || x == NULL) && n > 0) return XN_ERR_ARGUMENT;
    add_mod_vec(acc, x, n, group);
    return XN_OK;
}

int xn_sub_mod(const uint64_t *a, const uint64_t *b, uint64_t *out, size_t n,
               const xn_group *group)
{
    size_t j, L;
    int rc = check_group(group);
    if (rc != XN_OK) return rc;
    if ((a == NULL || b == NULL || out == NULL) && n > 0) return XN_ERR_ARGUMENT;
    L = group->limbs;
    for (j = 0; j < n; j++) {
        if (mp_sub(out + j * L, a + j * L, b + j * L, L))
            mp_add(out + j * L, out + j * L, group->order, L); /* wraps mod 2^(64L) */
    }
    return XN_OK;
}

size_t xn_first_invalid(const uint64_t *x, size_t n, const xn_group *group)
{
    size_t j;
    if (check_group(group) != XN_OK || (x == NULL && n > 0)) return 0;
    for (j = 0; j < n; j++)
        if (mp_cmp(x + j * group->limbs, group->limbs, group->order, ORDER_LIMBS(group)) >= 0)
            return j;
    return n;
}

int xn_derive_masks_add(const uint8_t *seeds, size_t count, const xn_group *vect_group,
                        const xn_group *unit_group, size_t n, uint64_t *acc_vect,
                        uint64_t *acc_unit)
{
    uint64_t r[BATCH * XN_MAX_LIMBS];
    size_t i, j;
    int rc = check_group(vect_group);
    if (rc != XN_OK) return rc;
    rc = check_group(unit_group);
    if (rc != XN_OK) return rc;
    if ((seeds == NULL && count > 0) || acc_unit == NULL || (acc_vect == NULL && n > 0))
        return XN_ERR_ARGUMENT;
    for (i = 0; i < count; i++) {
        sampler s;
        size_t L = vect_group->limbs;
        sampler_init(&s, seeds + 32 * i, 0);
        sample(&s, unit_group, r, 1);
        add_mod_one(acc_unit, acc_unit, r, unit_group);
        for (j = 0; j < n; j += BATCH) {
            size_t cnt = n - j < BATCH ? n - j : BATCH;
            sample(&s, vect_group, r, cnt);
            add_mod_vec(acc_vect + j * L, r, cnt, vect_group);
        }
    }
    return XN_OK;
}
