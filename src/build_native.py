"""cffi out-of-line API build of the C core (``xaynet_sdk._native._xaynet_native``).

The cdef is read from the public header between its CDEF markers, so the header stays the
single description of the C API (the pyca/cryptography and PyNaCl pattern).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cffi import FFI

CSRC = Path(__file__).resolve().parent / "csrc"
HEADER = CSRC / "xaynet_native.h"
SOURCES = ["arith.c", "chacha.c", "encode.c", "model.c", "sample.c", "x86.c"]


def _cdef() -> str:
    text = HEADER.read_text()
    begin = text.index("/* CDEF-BEGIN */") + len("/* CDEF-BEGIN */")
    end = text.index("/* CDEF-END */")
    return text[begin:end]


def _compile_args() -> list[str]:
    args = ["-std=gnu11", "-O3", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    extra = os.environ.get("XAYNET_NATIVE_CFLAGS")  # e.g. sanitizer flags for a test build
    if extra:
        args += extra.split()
    return args


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "xaynet_sdk._native._xaynet_native",
    '#include "xaynet_native.h"',
    # setuptools wants source paths relative to the project root it runs in
    sources=[os.path.relpath(CSRC / name) for name in SOURCES],
    include_dirs=[str(CSRC)],
    extra_compile_args=_compile_args(),
    extra_link_args=os.environ.get("XAYNET_NATIVE_LDFLAGS", "").split(),
    libraries=["m"] if sys.platform != "win32" else [],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
