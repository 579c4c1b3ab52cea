/* Maintained by hand; its conventions are recorded in cbindgen.toml and checked by tests. */
/* xaynet_native.h: the C core of xaynet_sdk (mask generation, fixed-point encoding,
 * modular vector arithmetic, global-model conversion).
 *
 * Usable from a C host without Python: every function is a pure function over caller-owned
 * buffers, returns an int status (XN_OK or a negative XN_ERR_* code), keeps no global state
 * and is safe to call from several threads at once.
 *
 * Numbers of the mask group are stored as `limbs` little-endian 64-bit limbs each; a vector
 * of n numbers is n * limbs uint64_t, number-major. Constants (orders, shifts) use the same
 * limb layout with their own lengths.
 *
 * The declarations between the CDEF markers are read by src/build_native.py as the cffi
 * cdef, so they must stay plain C that cffi understands (no macros with expressions).
 */
#ifndef XAYNET_NATIVE_H
#define XAYNET_NATIVE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* CDEF-BEGIN */
#define XN_OK 0
#define XN_ERR_LENGTH -1
#define XN_ERR_ARGUMENT -2
#define XN_ERR_NONFINITE -3
#define XN_ERR_RANGE -4
#define XN_ERR_MALFORMED -5
#define XN_ERR_DIVERGES -6
#define XN_ERR_INVALID_NUMBER -7

#define XN_MAX_LIMBS 34
#define XN_MAX_DRAW_BYTES 272

#define XN_DTYPE_F32 0
#define XN_DTYPE_F64 1
#define XN_DTYPE_I32 2
#define XN_DTYPE_I64 3

/* A group order and how candidates are drawn for it (docs/PROTOCOL.md section 10.3). */
typedef struct {
    const uint64_t *order;  /* (draw_bytes + 7) / 8 limbs: one more than `limbs` when the
                               order is 2^(64*limbs), a power of two just above the storage */
    size_t limbs;           /* limbs of one stored number, 1..XN_MAX_LIMBS */
    size_t draw_bytes;      /* candidate length = byte length of the order, 1..XN_MAX_DRAW_BYTES */
} xn_group;

/* Fixed-point encoding constants of one mask configuration (docs/PROTOCOL.md section 9). */
typedef struct {
    const uint64_t *add_shift;     /* A, add_shift_limbs limbs */
    size_t add_shift_limbs;
    const uint64_t *exp_shift;     /* E, exp_shift_limbs limbs */
    size_t exp_shift_limbs;
    const uint64_t *shifted_zero;  /* A*E: the encoding of 0, group limbs */
    const uint64_t *shifted_max;   /* 2*A*E: the encoding of +A, group limbs */
} xn_encoding;

/* Writes to *lanes the width of the vector code in use, in 32-bit lanes: 16 (AVX-512), 8 (AVX2)
 * or 4 (SSE2 or portable C). Chosen at load time from the CPU; the environment variable
 * XAYNET_NATIVE_LANES=4 or 8 narrows it. */
int xn_simd_lanes(size_t *lanes);

/* The ChaCha20 keystream of the original PRNG: key = seed, 64-bit block counter from
 * `block`, stream id 0. Writes `len` bytes. */
int xn_chacha20_keystream(const uint8_t *seed, uint64_t block, uint8_t *out, size_t len);

/* Draws `n` numbers by rejection sampling from the PRNG at 32-bit word position *word_pos,
 * writing them to out (n * group->limbs limbs) and advancing *word_pos past every
 * candidate read, accepted or not. */
int xn_draw(const uint8_t *seed, uint64_t *word_pos, const xn_group *group,
            uint64_t *out, size_t n);

/* Masks a model: for each weight w_j, out_j = (encode(scalar * w_j) + r_j) mod order with
 * r_j drawn from the PRNG at *word_pos (advanced). The clamped scalar is given exactly as
 * scalar_mantissa * 2^scalar_exponent. `weights` holds n values of `dtype` (XN_DTYPE_*).
 * Fails with XN_ERR_NONFINITE (and *bad_index set) on a NaN or infinite weight. */
int xn_mask_vector(const uint8_t *seed, uint64_t *word_pos, const xn_group *group,
                   const xn_encoding *enc, uint64_t scalar_mantissa, int32_t scalar_exponent,
                   const void *weights, int dtype, size_t n, uint64_t *out, size_t *bad_index);

/* xn_draw, but only from candidates that start before word end_word: draws until n numbers
 * or until those candidates run out, and sets *drawn to how many it drew. *word_pos ends
 * past the last candidate read. Lets two threads draw one sequence: one from the start up to
 * a candidate's word, the other from that candidate on. */
int xn_draw_until(const uint8_t *seed, uint64_t *word_pos, uint64_t end_word,
                  const xn_group *group, uint64_t *out, size_t n, size_t *drawn);

/* xn_draw_until, adding the numbers into acc (acc_j = (acc_j + r_j) mod order for the
 * *drawn numbers) instead of storing them: one part of a mask split between two threads. */
int xn_draw_add_until(const uint8_t *seed, uint64_t *word_pos, uint64_t end_word,
                      const xn_group *group, uint64_t *acc, size_t n, size_t *drawn);

/* Index of the first NaN or infinite weight among n of `dtype` (n if none; integers are
 * all finite): the check xn_mask_vector and xn_encode_add make first. */
size_t xn_first_nonfinite(const void *weights, int dtype, size_t n);

/* The second half of xn_mask_vector, for random numbers drawn beforehand:
 * out_j = (encode(scalar * w_j) + r_j) mod order. r_j must be below the order; out may be r.
 * Fails with XN_ERR_NONFINITE (and *bad_index set) on a NaN or infinite weight. */
int xn_encode_add(const xn_group *group, const xn_encoding *enc, uint64_t scalar_mantissa,
                  int32_t scalar_exponent, const void *weights, int dtype, size_t n,
                  const uint64_t *r, uint64_t *out, size_t *bad_index);

/* acc_j = (acc_j + x_j) mod order, for n numbers. Inputs must be below the order. */
int xn_add_mod(uint64_t *acc, const uint64_t *x, size_t n, const xn_group *group);

/* out_j = (a_j - b_j) mod order, for n numbers. Inputs must be below the order. */
int xn_sub_mod(const uint64_t *a, const uint64_t *b, uint64_t *out, size_t n,
               const xn_group *group);

/* Index of the first number that is not below the order, or n if all are. */
size_t xn_first_invalid(const uint64_t *x, size_t n, const xn_group *group);

/* Derives count masks of n numbers each from count 32-byte seeds (unit first, then the
 * vector, as the masking did) and adds them into acc_vect (n numbers) and acc_unit
 * (1 number), which the caller initialises (zeros to start a fresh aggregate). */
int xn_derive_masks_add(const uint8_t *seeds, size_t count, const xn_group *vect_group,
                        const xn_group *unit_group, size_t n, uint64_t *acc_vect,
                        uint64_t *acc_unit);

/* The global model from the unmasked sums x_j (n numbers of `limbs` <= 2 limbs, each below
 * 2^127): w_j = (x_j - offset) * mul / den, reduced, written as bincode Vec<Ratio<BigInt>>
 * (a u64 count, then per weight the numerator and the positive denominator). offset, mul and
 * den are 128-bit values given as (lo, hi) limb pairs; mul and den are nonzero, mul_negative
 * flips the sign. Every product must stay below 2^127, or XN_ERR_RANGE. out needs
 * 8 + 50 * n bytes; *written receives the length. */
int xn_unmask_to_bincode(const uint64_t *x, size_t n, size_t limbs, const uint64_t *offset,
                         const uint64_t *mul, int mul_negative, const uint64_t *den,
                         uint8_t *out, size_t capacity, size_t *written);

/* Parses a bincode Vec<Ratio<BigInt>> (the global model) and converts every weight to
 * `dtype` the way the original participant does (docs/PROTOCOL.md section 8.3), except that
 * where the original would loop forever this returns XN_ERR_DIVERGES. `out` holds
 * `capacity` values of dtype; *count receives the model length. On a conversion error
 * *bad_index names the weight. `scratch` needs scratch_words >= len / 4 + 8 words. */
int xn_model_from_bincode(const uint8_t *data, size_t len, int dtype, void *out,
                          size_t capacity, size_t *count, size_t *consumed,
                          size_t *bad_index, uint32_t *scratch, size_t scratch_words);
/* CDEF-END */

#ifdef __cplusplus
}
#endif

#endif /* XAYNET_NATIVE_H */
