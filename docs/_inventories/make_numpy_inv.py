"""Write numpy.inv: a Sphinx inventory of the numpy names these docs link to.

Debian ships no numpy documentation package and the build must not fetch numpy's own
inventory, so the few entries used here are listed by hand, with the addresses of numpy's
reference pages. Add a name here when a docstring or a signature starts to use it, then run
``python docs/_inventories/make_numpy_inv.py``.
"""

from __future__ import annotations

import zlib
from pathlib import Path

# (name, domain:role, page under https://numpy.org/doc/stable/)
ENTRIES = [
    ("numpy", "py:module", "reference/index.html#module-numpy"),
    ("numpy.ndarray", "py:class", "reference/generated/numpy.ndarray.html#numpy.ndarray"),
    ("numpy.dtype", "py:class", "reference/generated/numpy.dtype.html#numpy.dtype"),
    ("numpy.float32", "py:class", "reference/arrays.scalars.html#numpy.float32"),
    ("numpy.float64", "py:class", "reference/arrays.scalars.html#numpy.float64"),
    ("numpy.int64", "py:class", "reference/arrays.scalars.html#numpy.int64"),
    ("numpy.uint8", "py:class", "reference/arrays.scalars.html#numpy.uint8"),
    ("numpy.uint32", "py:class", "reference/arrays.scalars.html#numpy.uint32"),
    ("numpy.uint64", "py:class", "reference/arrays.scalars.html#numpy.uint64"),
    ("numpy.generic", "py:class", "reference/arrays.scalars.html#numpy.generic"),
    ("numpy.floating", "py:class", "reference/arrays.scalars.html#numpy.floating"),
    ("numpy.integer", "py:class", "reference/arrays.scalars.html#numpy.integer"),
    ("numpy.typing", "py:module", "reference/typing.html#module-numpy.typing"),
    ("numpy.typing.NDArray", "py:data", "reference/typing.html#numpy.typing.NDArray"),
    ("numpy.typing.ArrayLike", "py:data", "reference/typing.html#numpy.typing.ArrayLike"),
    ("numpy.typing.DTypeLike", "py:data", "reference/typing.html#numpy.typing.DTypeLike"),
    ("numpy.save", "py:function", "reference/generated/numpy.save.html#numpy.save"),
    ("numpy.load", "py:function", "reference/generated/numpy.load.html#numpy.load"),
]


def main() -> None:
    header = (
        "# Sphinx inventory version 2\n"
        "# Project: NumPy\n"
        "# Version: stable\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    lines = "".join(f"{name} {role} 1 {uri} -\n" for name, role, uri in ENTRIES)
    out = Path(__file__).with_name("numpy.inv")
    out.write_bytes(header.encode() + zlib.compress(lines.encode(), 9))


if __name__ == "__main__":
    main()
