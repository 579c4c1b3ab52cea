"""Shared pytest configuration."""

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Register markers so `-m original` / `-m "not original"` work without warnings."""
    config.addinivalue_line(
        "markers",
        "original: drives the ORIGINAL xaynet-sdk-python 0.1.0 participant "
        "(builds .cache/refvenv from PyPI on first use; runs it in a subprocess)",
    )
