/* arith.c: groups and modular vector arithmetic on numbers of a fixed number of 64-bit limbs
 * (docs/PROTOCOL.md 11): the checks of a group, adding masks into an aggregate, unmasking's
 * subtraction, and the range check of received numbers. The multi-limb primitives (mp_*)
 * are inline in xn_internal.h.
 */
#include "xn_internal.h"

/* ---- groups ---------------------------------------------------------------------------- */

int xn_check_group(const xn_group *g)
{
    size_t ol;
    if (g == NULL || g->order == NULL) return XN_ERR_ARGUMENT;
    if (g->limbs < 1 || g->limbs > XN_MAX_LIMBS) return XN_ERR_ARGUMENT;
    if (g->draw_bytes < 1 || g->draw_bytes > XN_MAX_DRAW_BYTES) return XN_ERR_ARGUMENT;
    ol = XN_ORDER_LIMBS(g);
    if (ol > XN_MAX_LIMBS || ol < g->limbs || ol > g->limbs + 1) return XN_ERR_ARGUMENT;
    /* the order's byte length must be draw_bytes */
    if ((mp_bits(g->order, ol) + 7) / 8 != g->draw_bytes) return XN_ERR_ARGUMENT;
    /* a stored number (< order) must fit in `limbs` limbs */
    if (ol > g->limbs && mp_bits(g->order, ol) != 64 * g->limbs + 1) return XN_ERR_ARGUMENT;
    return XN_OK;
}

/* ---- vector arithmetic ------------------------------------------------------------------- */

/* acc_j = (acc_j + x_j) mod order; one-limb orders below 2^63 take a loop gcc vectorizes. */
void xn_add_mod_vec(uint64_t *acc, const uint64_t *x, size_t n, const xn_group *group)
{
    size_t j, L = group->limbs;
    if (L == 1 && XN_ORDER_LIMBS(group) == 1 && group->order[0] < (1ULL << 63)) {
        const uint64_t order = group->order[0];
        for (j = 0; j < n; j++) {
            uint64_t v = acc[j] + x[j];
            acc[j] = v >= order ? v - order : v;
        }
        return;
    }
    for (j = 0; j < n; j++) xn_add_mod_one(acc + j * L, acc + j * L, x + j * L, group);
}

int xn_add_mod(uint64_t *acc, const uint64_t *x, size_t n, const xn_group *group)
{
    int rc = xn_check_group(group);
    if (rc != XN_OK) return rc;
    if ((acc == NULL || x == NULL) && n > 0) return XN_ERR_ARGUMENT;
    xn_add_mod_vec(acc, x, n, group);
    return XN_OK;
}

int xn_sub_mod(const uint64_t *a, const uint64_t *b, uint64_t *out, size_t n,
               const xn_group *group)
{
    size_t j, L;
    int rc = xn_check_group(group);
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
    if (xn_check_group(group) != XN_OK || (x == NULL && n > 0)) return 0;
    for (j = 0; j < n; j++)
        if (mp_cmp(x + j * group->limbs, group->limbs, group->order, XN_ORDER_LIMBS(group)) >= 0)
            return j;
    return n;
}
