/* chacha.c: the keystream of rand_chacha 0.3 ChaCha20Rng (RFC 8439 ChaCha20 with a 64-bit
 * block counter in words 12..13 and a zero stream id), generated without the GIL.
 *
 * Why not the `cryptography` package: its update_into holds the GIL, so sum participants
 * deriving many masks could not use both cores. The same body is compiled for 16, 8 and 4
 * lanes (AVX-512, AVX2, SSE2 on x86; portable vector code elsewhere) and chosen at run time.
 */
#include <stdlib.h>
#include <string.h>

#include "xn_internal.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "xaynet_native assumes a little-endian host"
#endif

#define XN_W 4
#define XN_FN chacha_blocks_w4
#define XN_ATTR
#include "chacha_blocks.inc"
#undef XN_W
#undef XN_FN
#undef XN_ATTR

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define XN_HAVE_X86_DISPATCH 1
#define XN_W 8
#define XN_FN chacha_blocks_w8
#define XN_ATTR __attribute__((target("avx2")))
#include "chacha_blocks.inc"
#undef XN_W
#undef XN_FN
#undef XN_ATTR

#include <immintrin.h>

/* Lane b of x[j] is word j of block b; blocks must leave in keystream order. A 16x16
 * transpose in registers: 32- and 64-bit unpacks give 4-word rows per 128-bit lane, then
 * 128-bit lane shuffles gather each block's four rows. */
__attribute__((target("avx512f"))) static inline void store16_avx512(const void *xv,
                                                                     uint8_t *out)
{
    const __m512i *x = (const __m512i *)xv;
    __m512i t[16], u[16];
    int k, m;
    for (k = 0; k < 8; k++) {
        t[2 * k] = _mm512_unpacklo_epi32(x[2 * k], x[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_epi32(x[2 * k], x[2 * k + 1]);
    }
    for (k = 0; k < 4; k++) {
        u[4 * k + 0] = _mm512_unpacklo_epi64(t[4 * k], t[4 * k + 2]);
        u[4 * k + 1] = _mm512_unpackhi_epi64(t[4 * k], t[4 * k + 2]);
        u[4 * k + 2] = _mm512_unpacklo_epi64(t[4 * k + 1], t[4 * k + 3]);
        u[4 * k + 3] = _mm512_unpackhi_epi64(t[4 * k + 1], t[4 * k + 3]);
    }
    /* u[4k + m], 128-bit lane L = words 4k..4k+3 of block 4L + m */
    for (m = 0; m < 4; m++) {
        __m512i p0 = _mm512_shuffle_i32x4(u[m], u[4 + m], 0x44);
        __m512i p1 = _mm512_shuffle_i32x4(u[m], u[4 + m], 0xEE);
        __m512i q0 = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], 0x44);
        __m512i q1 = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], 0xEE);
        _mm512_storeu_si512((void *)(out + 64 * (0 + m)), _mm512_shuffle_i32x4(p0, q0, 0x88));
        _mm512_storeu_si512((void *)(out + 64 * (4 + m)), _mm512_shuffle_i32x4(p0, q0, 0xDD));
        _mm512_storeu_si512((void *)(out + 64 * (8 + m)), _mm512_shuffle_i32x4(p1, q1, 0x88));
        _mm512_storeu_si512((void *)(out + 64 * (12 + m)), _mm512_shuffle_i32x4(p1, q1, 0xDD));
    }
}

#define XN_STORE16(x, out) store16_avx512((x), (out))
#define XN_W 16
#define XN_FN chacha_blocks_w16
#define XN_ATTR __attribute__((target("avx512f")))
#include "chacha_blocks.inc"
#undef XN_W
#undef XN_FN
#undef XN_ATTR
#undef XN_STORE16
#endif

/* The widest vector code this CPU runs. XAYNET_NATIVE_LANES=4 or 8 narrows it, so that the
 * tests exercise the AVX2 and SSE2 code on a machine with AVX-512. */
int xn_lanes(void)
{
    const char *force = getenv("XAYNET_NATIVE_LANES");
    if (force != NULL && (strcmp(force, "4") == 0 || strcmp(force, "8") == 0)) {
#ifdef XN_HAVE_X86_DISPATCH
        __builtin_cpu_init();
        if (force[0] == '8' && __builtin_cpu_supports("avx2")) return 8;
#endif
        return 4;
    }
#ifdef XN_HAVE_X86_DISPATCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return 16;
    if (__builtin_cpu_supports("avx2")) return 8;
#endif
    return 4;
}

int xn_simd_lanes(size_t *lanes)
{
    *lanes = (size_t)xn_lanes();
    return XN_OK;
}

void xn_chacha_init(xn_chacha *c, const uint8_t *seed, uint64_t block)
{
    memcpy(c->key, seed, 32);
    c->block = block;
    c->lanes = xn_lanes();
}

/* Writes c->lanes * 64 bytes (XN_CHACHA_MAX_BATCH at most) and advances the counter. */
size_t xn_chacha_batch(xn_chacha *c, uint8_t *out)
{
    switch (c->lanes) {
#ifdef XN_HAVE_X86_DISPATCH
    case 16: chacha_blocks_w16(c->key, c->block, out); break;
    case 8: chacha_blocks_w8(c->key, c->block, out); break;
#endif
    default: chacha_blocks_w4(c->key, c->block, out); break;
    }
    c->block += (uint64_t)c->lanes;
    return (size_t)c->lanes * 64;
}

int xn_chacha20_keystream(const uint8_t *seed, uint64_t block, uint8_t *out, size_t len)
{
    xn_chacha c;
    uint8_t buf[XN_CHACHA_MAX_BATCH];
    if (seed == NULL || (out == NULL && len > 0)) return XN_ERR_ARGUMENT;
    xn_chacha_init(&c, seed, block);
    while (len > 0) {
        size_t got = xn_chacha_batch(&c, buf);
        size_t take = got < len ? got : len;
        memcpy(out, buf, take);
        out += take;
        len -= take;
    }
    return XN_OK;
}
