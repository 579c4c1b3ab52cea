/* A C host using the core without Python: masks three weights with Prime/F32/B0/M3 and
 * prints the masked unit and vector, one decimal per line. */
#include <stdio.h>

#include "xaynet_native.h"

int main(void)
{
    uint8_t seed[32];
    uint64_t order[1] = {20000000000021ULL}; /* Prime/F32/B0/M3 */
    uint64_t add_shift[1] = {1}, exp_shift[1] = {10000000000ULL};
    uint64_t zero[1] = {10000000000ULL}, top[1] = {20000000000ULL}; /* A*E, 2*A*E */
    xn_group group = {order, 1, 6};
    xn_encoding enc = {add_shift, 1, exp_shift, 1, zero, top};
    float weights[3] = {0.5f, -0.25f, 1.0f};
    uint64_t unit, vect[3], word_pos = 0;
    size_t bad = 0, i;
    int rc;

    for (i = 0; i < 32; i++) seed[i] = (uint8_t)i;
    rc = xn_draw(seed, &word_pos, &group, &unit, 1); /* the unit's random number comes first */
    if (rc != XN_OK) return 1;
    unit = (top[0] + unit) % order[0];               /* scalar 1.0 encodes as 2*A*E */
    rc = xn_mask_vector(seed, &word_pos, &group, &enc, 1, 0, weights, XN_DTYPE_F32, 3, vect,
                        &bad);
    if (rc != XN_OK) return 2;
    printf("%llu\n", (unsigned long long)unit);
    for (i = 0; i < 3; i++) printf("%llu\n", (unsigned long long)vect[i]);
    return 0;
}
