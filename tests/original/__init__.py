"""Harness for the ORIGINAL Xaynet participant (separate venv, driven in a subprocess)."""
