"""Fuzzing of every decoder of untrusted bytes: ``python fuzz/run.py`` (see run.py)."""
