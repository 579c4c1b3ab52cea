"""Build glue: cffi compiles src/csrc into xaynet_sdk/_native on install.

The extension uses only the limited C API (cffi builds it as ``.abi3.so``), so the wheel is
tagged ``cp310-abi3``: one wheel for every CPython from the oldest that requires-python admits.
Its C code selects AVX2 / AVX-512 paths at run time; no CPU-specific compiler flags are used.
"""

from setuptools import setup

setup(
    cffi_modules=["src/build_native.py:ffibuilder"],
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
)
