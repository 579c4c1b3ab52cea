"""``[log] filter``: the original's ``RUST_LOG``-style directives, mapped onto Python loggers.

The original reads ``[log] filter`` (or ``XAYNET_LOG__FILTER``) as a ``tracing`` ``EnvFilter``:
comma-separated directives, each ``level`` (the default) or ``target=level``. The subset
understood here:

* levels ``off``, ``error``, ``warn``, ``info``, ``debug``, ``trace`` (any case; ``trace`` is
  Python's DEBUG, ``warn`` its WARNING);
* targets of the original, mapped onto this coordinator's loggers:

  ===================================================  =========================================
  ``xaynet``, ``xaynet_server``, ``coordinator``       ``xaynet_sdk`` (everything of ours)
  ``http``, ``xaynet_server::rest``                     ``xaynet_sdk.coordinator.server``
  ``xaynet_server::state_machine``                      ``xaynet_sdk.coordinator.rounds``
  ``xaynet_server::services``                           ``xaynet_sdk.coordinator.pipeline``
  ``xaynet_server::settings``                           ``xaynet_sdk.coordinator.settings``
  ``xaynet_server::metrics``                            ``xaynet_sdk.coordinator.metrics``
  ===================================================  =========================================

* a Python logger name (``xaynet_sdk.coordinator.pipeline=debug``; ``::`` is read as ``.``);
* targets of the original's dependencies (``hyper``, ``warp``, ``tokio``, ``redis``, ...) are
  accepted and have no effect; span and field filters (``target[span{field=1}]=debug``) are
  accepted and reduced to their target.

A directive whose level is not one of the above makes the filter invalid, as in the original.
As in ``EnvFilter``, the most specific target wins (Python's logger hierarchy does this).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

__all__ = ["LogFilter", "parse_log_filter"]

_LEVELS = {
    "off": logging.CRITICAL + 10,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": logging.DEBUG,
}

_TARGETS = {
    "xaynet": "xaynet_sdk",
    "xaynet_server": "xaynet_sdk",
    "xaynet_core": "xaynet_sdk",
    "coordinator": "xaynet_sdk",
    "http": "xaynet_sdk.coordinator.server",
    "xaynet_server::rest": "xaynet_sdk.coordinator.server",
    "xaynet_server::state_machine": "xaynet_sdk.coordinator.rounds",
    "xaynet_server::services": "xaynet_sdk.coordinator.pipeline",
    "xaynet_server::settings": "xaynet_sdk.coordinator.settings",
    "xaynet_server::metrics": "xaynet_sdk.coordinator.metrics",
}

#: Loggers of this package; other targets are the original's dependencies.
_OURS = ("xaynet_sdk",)


@dataclass(frozen=True)
class LogFilter:
    """A parsed filter: the default level and levels per Python logger."""

    text: str
    default: int = logging.INFO
    levels: tuple[tuple[str, int], ...] = ()
    #: Targets that were accepted but name nothing of this coordinator.
    unmapped: tuple[str, ...] = field(default=())

    def apply(self, root: logging.Logger | None = None) -> None:
        """Set the levels: the default on the root logger, the targets on theirs."""
        (root or logging.getLogger()).setLevel(self.default)
        for name, level in self.levels:
            logging.getLogger(name).setLevel(level)


def parse_log_filter(text: str) -> LogFilter:
    """Parse ``[log] filter``; raises ``ValueError`` naming the directive that is invalid."""
    if not isinstance(text, str):
        raise ValueError(f"expected a string of directives such as 'info', got {text!r}")
    default = logging.INFO
    levels: dict[str, int] = {}
    unmapped: list[str] = []
    for raw in text.split(","):
        directive = raw.strip()
        if not directive:
            continue
        target, sep, level_text = directive.rpartition("=")
        if not sep:
            target, level_text = "", directive
        level = _LEVELS.get(level_text.strip().lower())
        if level is None:
            if not sep:  # a bare target enables everything for it, as in EnvFilter
                target, level = directive, logging.DEBUG
            else:
                raise ValueError(
                    f"invalid directive {directive!r}: the level must be one of"
                    f" {', '.join(sorted(set(_LEVELS) - {'warning'}))}"
                )
        target = target.strip().split("[", 1)[0].strip()
        if not target:
            default = level
            continue
        name = _TARGETS.get(target)
        if name is None:
            dotted = target.replace("::", ".")
            if dotted == "xaynet_sdk" or dotted.startswith(_OURS[0] + "."):
                name = dotted
        if name is None:
            unmapped.append(target)
            continue
        levels[name] = level
    return LogFilter(
        text=text,
        default=default,
        levels=tuple(sorted(levels.items())),
        unmapped=tuple(unmapped),
    )
