"""Task eligibility from a task signature (docs/PROTOCOL.md section 4.5).

A participant is eligible for a task with probability ``p`` iff
``SHA256(signature) / (2**256 - 1) <= p``, where the digest is read as a *little-endian*
integer and the comparison is done on exact rationals (``p`` converted exactly from its
f64 value). Exactness matters: the coordinator re-checks eligibility, and a float division
could disagree with it on boundary cases, making a participant believe it has a task that
the coordinator then silently rejects.
"""

from __future__ import annotations

import hashlib
import math

from .bincode import BytesLike

__all__ = ["eligibility_ratio", "is_eligible"]

_DENOMINATOR = 2**256 - 1


def _digest_int(signature: BytesLike) -> int:
    return int.from_bytes(hashlib.sha256(signature).digest(), "little")


def is_eligible(signature: BytesLike, probability: float) -> bool:
    """True iff the task signature selects its owner with the given probability.

    * ``probability < 0`` → False and ``probability > 1`` → True, before any hashing,
      exactly as the original (so ``±inf`` are handled too).
    * NaN → False. In Rust, ``Ratio::from_float(NaN).unwrap()`` would panic; the original
      participant never gets there, because NaN parameters never equal themselves and every
      poll restarts the round (section 12.4), and the coordinator refuses NaN settings. A
      panic has no Python equivalent worth imitating; "not eligible" is the one answer
      that cannot make a participant act on a round it cannot take part in consistently.
    """
    p = float(probability)
    if math.isnan(p):
        return False
    if p < 0.0:
        return False
    if p > 1.0:
        return True
    numer, denom = p.as_integer_ratio()  # exact value of the f64, denom a power of two
    # h / (2^256 - 1) <= numer / denom  ⇔  h * denom <= numer * (2^256 - 1)   (denoms > 0)
    return _digest_int(signature) * denom <= numer * _DENOMINATOR


def eligibility_ratio(signature: BytesLike) -> float:
    """``SHA256(signature)`` (little-endian) divided by ``2**256 - 1``, rounded to a float.

    For diagnostics and tests only: decisions must use :func:`is_eligible`, which is exact.
    """
    return _digest_int(signature) / _DENOMINATOR
