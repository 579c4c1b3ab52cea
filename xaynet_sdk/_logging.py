"""The ``xaynet_sdk`` logger hierarchy, configured from ``XAYNET_CLIENT`` like the original.

The original's ``init_logging()`` installs a tracing subscriber when the environment
variable ``XAYNET_CLIENT`` holds an EnvFilter directive (``"info"``,
``"xaynet=debug,info"``...). Here the same variable sets the level of the ``xaynet_sdk``
logger and, only then, attaches a stderr handler; without it the library adds no handler
and the application's logging configuration decides, as a library should.

Nothing logged by this package contains keys, seeds, signatures, models or saved states.
"""

from __future__ import annotations

import logging
import os

__all__ = ["ENV_VAR", "LOGGER_NAME", "get_logger", "init_logging", "parse_filter"]

ENV_VAR = "XAYNET_CLIENT"
LOGGER_NAME = "xaynet_sdk"

_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "off": logging.CRITICAL + 10,
}
_handler: "logging.Handler | None" = None

logging.getLogger(LOGGER_NAME).addHandler(logging.NullHandler())


def get_logger(name: str = "") -> logging.Logger:
    """``xaynet_sdk`` or a child of it (``get_logger("transport")`` → ``xaynet_sdk.transport``)."""
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)


def parse_filter(directives: str) -> "int | None":
    """The level an EnvFilter directive string gives this package, or None if it gives none.

    A bare level (``"debug"``) applies to everything; ``target=level`` applies when the
    target is ``xaynet...`` (the original's crates) or ``xaynet_sdk...``. Later directives
    win over earlier ones, and targeted ones over bare levels, as in tracing.
    """
    default: "int | None" = None
    targeted: "int | None" = None
    for raw in directives.split(","):
        part = raw.strip().lower()
        if not part:
            continue
        if "=" in part:
            target, _, level = part.partition("=")
            if target.startswith("xaynet") and level in _LEVELS:
                targeted = _LEVELS[level]
        elif part in _LEVELS:
            default = _LEVELS[part]
    return targeted if targeted is not None else default


def init_logging() -> None:
    """Apply ``XAYNET_CLIENT`` (if set) to the ``xaynet_sdk`` logger; idempotent."""
    global _handler
    value = os.environ.get(ENV_VAR)
    if not value:
        return
    level = parse_filter(value)
    if level is None:
        return
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level)
    if _handler is None:
        _handler = logging.StreamHandler()
        _handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(_handler)
