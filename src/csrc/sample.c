/* sample.c: rejection sampling of mask numbers from the ChaCha20 keystream, as the original's
 * generate_integer (docs/PROTOCOL.md 10), and the functions built on it alone: drawing,
 * drawing up to a word (for the two-thread split), and deriving and adding masks (Sum2).
 *
 * Rejection sampling makes the keystream the cost: about 113 keystream bytes per weight
 * for Prime/F32/B0/M3, so the scan over candidates is kept tight (x86.c has the AVX-512
 * scans) and everything else small beside it.
 */
#include <string.h>

#include "xn_internal.h"

/* Cuts buf at end_word (buf[pos] is word word_pos) and zeroes the 16 bytes after len. */
static void sampler_clip(xn_sampler *s)
{
    uint64_t room = s->end_word > s->word_pos ? s->end_word - s->word_pos : 0;
    if (room <= (uint64_t)(s->len - s->pos) / 4) {
        s->len = s->pos + (size_t)room * 4;
        s->exhausted = 1;
    }
    memset(s->buf + s->len, 0, 16);
}

void xn_sampler_init_until(xn_sampler *s, const uint8_t *seed, uint64_t word_pos,
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

void xn_sampler_init(xn_sampler *s, const uint8_t *seed, uint64_t word_pos)
{
    xn_sampler_init_until(s, seed, word_pos, UINT64_MAX);
}

/* Moves the unread bytes (fewer than one candidate) to the front and appends keystream. */
static void sampler_refill(xn_sampler *s)
{
    size_t rest = s->len - s->pos;
    memmove(s->buf, s->buf + s->pos, rest);
    s->pos = 0;
    s->len = rest;
    /* rest < XN_MAX_DRAW_BYTES, so at least two full batches always fit */
    while (s->len + XN_CHACHA_MAX_BATCH <= XN_SAMPLER_CAP)
        s->len += xn_chacha_batch(&s->chacha, s->buf + s->len);
    sampler_clip(s);
}

/* Draws `want` numbers below the order into out (want * L limbs). Every candidate reads
 * draw_bytes bytes and consumes ceil(draw_bytes / 4) whole words (rand_core fill_bytes).
 * Returns how many it drew: fewer only when the candidates before end_word ran out. */
size_t xn_sample(xn_sampler *s, const xn_group *g, uint64_t *out, size_t want)
{
    const size_t k = g->draw_bytes, L = g->limbs, ol = XN_ORDER_LIMBS(g);
    const size_t stride = 4 * ((k + 3) / 4);
    const uint64_t stride_words = stride / 4;
    size_t got = 0;

    if (k <= 8) {
        const uint64_t keep = k == 8 ? ~0ULL : ((1ULL << (8 * k)) - 1);
        const uint64_t order = g->order[0];
        while (got < want) {
            const uint8_t *buf = s->buf;
            size_t pos = s->pos, len = s->len, start = s->pos;
#ifdef XN_X86
            if (stride == 8 && L == 1 && s->chacha.lanes == 16)
                got += xn_scan8_avx512(buf, &pos, len, keep, order, out + got, want - got);
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
#ifdef XN_X86
            if (stride == 12 && L == 2 && s->chacha.lanes == 16 && xn_have_vbmi())
                got += xn_scan12_vbmi(buf, &pos, len, k, g->order[0], g->order[1],
                                      out + 2 * got, want - got);
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
    xn_sampler s;
    int rc = xn_check_group(group);
    if (rc != XN_OK) return rc;
    if (seed == NULL || word_pos == NULL || (out == NULL && n > 0)) return XN_ERR_ARGUMENT;
    xn_sampler_init(&s, seed, *word_pos);
    if (n > 0) xn_sample(&s, group, out, n);
    *word_pos = s.word_pos;
    return XN_OK;
}

int xn_draw_until(const uint8_t *seed, uint64_t *word_pos, uint64_t end_word,
                  const xn_group *group, uint64_t *out, size_t n, size_t *drawn)
{
    xn_sampler s;
    int rc = xn_check_group(group);
    if (rc != XN_OK) return rc;
    if (seed == NULL || word_pos == NULL || drawn == NULL || (out == NULL && n > 0))
        return XN_ERR_ARGUMENT;
    xn_sampler_init_until(&s, seed, *word_pos, end_word);
    *drawn = n > 0 ? xn_sample(&s, group, out, n) : 0;
    *word_pos = s.word_pos;
    return XN_OK;
}

int xn_draw_add_until(const uint8_t *seed, uint64_t *word_pos, uint64_t end_word,
                      const xn_group *group, uint64_t *acc, size_t n, size_t *drawn)
{
    xn_sampler s;
    uint64_t r[XN_BATCH * XN_MAX_LIMBS];
    size_t got = 0, L;
    int rc = xn_check_group(group);
    if (rc != XN_OK) return rc;
    if (seed == NULL || word_pos == NULL || drawn == NULL || (acc == NULL && n > 0))
        return XN_ERR_ARGUMENT;
    L = group->limbs;
    xn_sampler_init_until(&s, seed, *word_pos, end_word);
    while (got < n) {
        size_t want = n - got < XN_BATCH ? n - got : XN_BATCH;
        size_t cnt = xn_sample(&s, group, r, want);
        xn_add_mod_vec(acc + got * L, r, cnt, group);
        got += cnt;
        if (cnt < want) break; /* the candidates before end_word ran out */
    }
    *drawn = got;
    *word_pos = s.word_pos;
    return XN_OK;
}

int xn_derive_masks_add(const uint8_t *seeds, size_t count, const xn_group *vect_group,
                        const xn_group *unit_group, size_t n, uint64_t *acc_vect,
                        uint64_t *acc_unit)
{
    uint64_t r[XN_BATCH * XN_MAX_LIMBS];
    size_t i, j;
    int rc = xn_check_group(vect_group);
    if (rc != XN_OK) return rc;
    rc = xn_check_group(unit_group);
    if (rc != XN_OK) return rc;
    if ((seeds == NULL && count > 0) || acc_unit == NULL || (acc_vect == NULL && n > 0))
        return XN_ERR_ARGUMENT;
    for (i = 0; i < count; i++) {
        xn_sampler s;
        size_t L = vect_group->limbs;
        xn_sampler_init(&s, seeds + 32 * i, 0);
        xn_sample(&s, unit_group, r, 1);
        xn_add_mod_one(acc_unit, acc_unit, r, unit_group);
        for (j = 0; j < n; j += XN_BATCH) {
            size_t cnt = n - j < XN_BATCH ? n - j : XN_BATCH;
            xn_sample(&s, vect_group, r, cnt);
            xn_add_mod_vec(acc_vect + j * L, r, cnt, vect_group);
        }
    }
    return XN_OK;
}
