"""Build glue: cffi compiles src/csrc into xaynet_sdk/_native on install."""

from setuptools import setup

setup(cffi_modules=["src/build_native.py:ffibuilder"])
