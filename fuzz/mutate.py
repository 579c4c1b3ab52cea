"""A hand-written, structure-aware byte mutator (no coverage feedback of its own).

Every mutation is drawn from a seeded :class:`random.Random`, so a campaign is reproducible
from its seed. The operators are the classic ones (bit flips, interesting bytes, inserts,
deletes, duplicated ranges, splicing with another corpus entry) plus two that know how the
Xaynet formats are built:

* **integer fields**: overwrite 1, 2, 4 or 8 bytes, little- or big-endian, with an
  interesting value (0, 1, the maximum, a power of two, ±1 around the current value, the
  input length, the bytes remaining after the field);
* **length fields**: find positions whose u64 LE, u32 LE, u32 BE or u16 BE value is a
  plausible length or count (at most the input length) and nudge exactly those: ±1, ×2,
  0, the remaining bytes, 2**31, 2**63... This is how bincode counts, Length-Value items,
  message length fields and mask-object element counts get hit on purpose instead of by luck.
"""

from __future__ import annotations

import random
import struct
from typing import Callable, Sequence

__all__ = ["Mutator", "random_bytes"]

_INTERESTING_8 = (0x00, 0x01, 0x02, 0x03, 0x7F, 0x80, 0xFE, 0xFF, 0x10, 0x20, 0x40, 0x64)
_WIDTHS = ((1, "<B"), (2, "<H"), (2, ">H"), (4, "<I"), (4, ">I"), (8, "<Q"), (8, ">Q"))
# (width, format) of the length and count fields the formats use
_LENGTH_FIELDS = ((8, "<Q"), (4, ">I"), (4, "<I"), (2, ">H"))


def random_bytes(rng: random.Random, max_size: int = 4096) -> bytes:
    """Random bytes of a length biased towards small (most decoders fail in the first bytes)."""
    roll = rng.random()
    if roll < 0.5:
        n = rng.randrange(0, 64)
    elif roll < 0.9:
        n = rng.randrange(0, 512)
    else:
        n = rng.randrange(0, max_size + 1)
    if rng.random() < 0.2:  # low-entropy buffers: long runs of one byte
        return bytes([rng.choice(_INTERESTING_8)]) * n
    return rng.randbytes(n)


class Mutator:
    """Stacks 1 to 8 random operators on an input; see the module docstring."""

    def __init__(self, rng: random.Random, max_size: int = 1 << 17) -> None:
        self.rng = rng
        self.max_size = max_size
        ops: list[tuple[int, Callable[[bytearray, Sequence[bytes]], None]]] = [
            (6, self._flip_bit),
            (4, self._set_byte),
            (3, self._random_byte),
            (5, self._int_field),
            (8, self._length_field),
            (3, self._insert),
            (4, self._delete),
            (2, self._duplicate),
            (3, self._truncate),
            (2, self._append),
            (3, self._splice),
            (2, self._insert_from_other),
            (1, self._swap),
        ]
        self._ops = [op for weight, op in ops for _ in range(weight)]

    def mutate(self, data: bytes, corpus: Sequence[bytes] = ()) -> bytes:
        buf = bytearray(data)
        rng = self.rng
        for _ in range(1 + min(7, int(rng.expovariate(0.7)))):
            rng.choice(self._ops)(buf, corpus)
        if len(buf) > self.max_size:
            del buf[self.max_size :]
        return bytes(buf)

    # -- byte-level -------------------------------------------------------------------------
    def _pos(self, buf: bytearray, end_ok: bool = False) -> int:
        n = len(buf) + (1 if end_ok else 0)
        if n <= 0:
            return 0
        # favour the front: headers, counts and tags live there
        if self.rng.random() < 0.3:
            return self.rng.randrange(min(n, 160))
        return self.rng.randrange(n)

    def _flip_bit(self, buf: bytearray, corpus: Sequence[bytes]) -> None:
        if buf:
            i = self._pos(buf)
            buf[i] ^= 1 << self.rng.randrange(8)

    def _set_byte(self, buf: bytearray, corpus: Sequence[bytes]) -> None:
        if buf:
            buf[self._pos(buf)] = self.rng.choice(_INTERESTING_8)

    def _random_byte(self, buf: bytearray, corpus: Sequence[bytes]) -> None:
        if buf:
            buf[self._pos(buf)] = self.rng.randrange(256)

    def _insert(self, buf: bytearray, corpus: Sequence[bytes]) -> None:
        i = self._pos(buf, end_ok=True)
        n = 1 + int(self.rng.expovariate(0.1))
        fill = (
            self.rng.randbytes(n)
            if self.rng.random() < 0.5
            else bytes([self.rng.choice(_INTERESTING_8)]) * n
        )
        buf[i:i] = fill

    def _delete(self, buf: bytearray, corpus: Sequence[bytes]) -> None:
        if buf:
            i = self._pos(buf)
            n = 1 + int(self.rng.expovariate(0.05))
            del buf[i : i + n]

    def _duplicate(self, buf: bytearray, corpus: Sequence[bytes]) -> None:
        if buf:
            i = self._pos(buf)
            n = 1 + self.rng.randrange(min(len(buf) - i, 256))
            j = self._pos(buf, end_ok=True)
            buf[j:j] = buf[i : i + n] * (1 + int(self.rng.expovariate(1.0)))

    def _truncate(self, buf: bytearray, corpus: Sequence[bytes]) -> None:
        if buf:
            del buf[self.rng.randrange(len(buf)) :]

    def _append(self, buf: bytearray, corpus: Sequence[bytes]) -> None:
        buf.extend(self.rng.randbytes(1 + int(self.rng.expovariate(0.05))))

    def _swap(self, buf: bytearray, corpus: Sequence[bytes]) -> None:
        if len(buf) >= 2:
            n = 1 + self.rng.randrange(min(len(buf) // 2, 64))
            i = self.rng.randrange(len(buf) - n + 1)
            j = self.rng.randrange(len(buf) - n + 1)
            a, b = bytes(buf[i : i + n]), bytes(buf[j : j + n])
            buf[i : i + n], buf[j : j + n] = b, a

    def _splice(self, buf: bytearray, corpus: Sequence[bytes]) -> None:
        if not corpus:
            return
        other = self.rng.choice(corpus)
        cut = self.rng.randrange(len(buf) + 1)
        ocut = self.rng.randrange(len(other) + 1)
        buf[cut:] = other[ocut:]

    def _insert_from_other(self, buf: bytearray, corpus: Sequence[bytes]) -> None:
        if not corpus:
            return
        other = self.rng.choice(corpus)
        if not other:
            return
        i = self.rng.randrange(len(other))
        piece = other[i : i + 1 + self.rng.randrange(min(len(other) - i, 512))]
        j = self._pos(buf, end_ok=True)
        if self.rng.random() < 0.5:
            buf[j:j] = piece
        else:
            buf[j : j + len(piece)] = piece

    # -- structure-aware --------------------------------------------------------------------
    def _interesting_values(self, current: int, width: int, remaining: int, total: int) -> int:
        top = (1 << (8 * width)) - 1
        rng = self.rng
        choice = rng.randrange(12)
        if choice == 0:
            return 0
        if choice == 1:
            return 1
        if choice == 2:
            return top
        if choice == 3:
            return top >> 1  # i*_MAX
        if choice == 4:
            return (top >> 1) + 1  # i*_MIN as unsigned
        if choice == 5:
            return 1 << rng.randrange(8 * width)
        if choice == 6:
            return (1 << rng.randrange(8 * width)) - 1
        if choice == 7:
            return max(0, remaining)
        if choice == 8:
            return total
        if choice == 9:
            return current + rng.choice((-1, 1))
        if choice == 10:
            return current + rng.randrange(-16, 17)
        return rng.randrange(top + 1)

    def _write(self, buf: bytearray, pos: int, width: int, fmt: str, value: int) -> None:
        value &= (1 << (8 * width)) - 1
        if fmt == "<B":
            buf[pos] = value
        else:
            buf[pos : pos + width] = struct.pack(fmt, value)

    def _int_field(self, buf: bytearray, corpus: Sequence[bytes]) -> None:
        width, fmt = self.rng.choice(_WIDTHS)
        if len(buf) < width:
            return
        pos = self._pos(bytearray(len(buf) - width + 1))
        current = buf[pos] if fmt == "<B" else struct.unpack_from(fmt, buf, pos)[0]
        value = self._interesting_values(current, width, len(buf) - pos - width, len(buf))
        self._write(buf, pos, width, fmt, value)

    def _length_field(self, buf: bytearray, corpus: Sequence[bytes]) -> None:
        """Nudge a field that looks like a length or count (value <= input length)."""
        n = len(buf)
        if n < 2:
            return
        width, fmt = self.rng.choice(_LENGTH_FIELDS)
        if n < width:
            return
        # sample candidate offsets instead of scanning everything (inputs can be large)
        candidates = []
        span = n - width + 1
        probes = range(span) if span <= 512 else self.rng.sample(range(span), 512)
        for pos in probes:
            value = struct.unpack_from(fmt, buf, pos)[0]
            if 0 < value <= n:
                candidates.append((pos, value))
        if not candidates:
            self._int_field(buf, corpus)
            return
        pos, value = self.rng.choice(candidates)
        rng = self.rng
        remaining = n - pos - width
        choice = rng.randrange(10)
        if choice == 0:
            new = value + 1
        elif choice == 1:
            new = value - 1
        elif choice == 2:
            new = value * 2
        elif choice == 3:
            new = value // 2
        elif choice == 4:
            new = 0
        elif choice == 5:
            new = remaining
        elif choice == 6:
            new = remaining + 1
        elif choice == 7:
            new = 1 << (8 * width - 1)
        elif choice == 8:
            new = (1 << (8 * width)) - 1
        else:
            new = value + rng.randrange(-64, 65)
        self._write(buf, pos, width, fmt, max(0, new))
