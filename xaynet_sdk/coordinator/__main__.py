"""``xaynet-coordinator -c config.toml`` (or ``python -m xaynet_sdk.coordinator -c config.toml``).

Like the original's binary: the settings file is given with ``-c``, environment variables
``XAYNET_<SECTION>__<KEY>`` override it, and a file that does not load or validate prints the
reason on stderr and exits with status 1 (so does a TLS certificate or key that cannot be
used). The coordinator then serves until SIGINT or SIGTERM and exits with status 0 once every
connection is closed and every thread joined.

Log levels come from ``[log] filter`` (RUST_LOG-style directives, see :mod:`.logfilter`;
``XAYNET_LOG__FILTER`` overrides it); ``--log-level`` sets the default level instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Optional, Sequence

from . import LocalCoordinator, RestoreError, Settings, SettingsError, StoreError

__all__ = ["main"]

_LEVELS = ("debug", "info", "warning", "error")
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xaynet-coordinator",
        description="A local Xaynet v0.11 PET coordinator (the original's REST API and rounds).",
    )
    parser.add_argument(
        "-c",
        "--config",
        dest="config_path",
        required=True,
        type=Path,
        help="path of the configuration file (the original coordinator's TOML format)",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="save every round's global model there as .npy (overrides [model] save_dir)",
    )
    parser.add_argument(
        "--log-level",
        choices=_LEVELS,
        default=None,
        help="default log level (default: from [log] filter, else info)",
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the coordinator until SIGINT/SIGTERM; return the process exit status."""
    args = _parser().parse_args(argv)
    default = getattr(logging, (args.log_level or "info").upper())
    logging.basicConfig(level=default, format=_FORMAT)
    try:
        settings = Settings.from_toml(args.config_path)
    except SettingsError as e:
        print(f"xaynet-coordinator: {e}", file=sys.stderr)
        return 1
    log_filter = settings.log.filter
    if log_filter is not None:
        log_filter.apply()
        if args.log_level is not None:
            logging.getLogger().setLevel(default)
        if log_filter.unmapped:
            logging.getLogger("xaynet_sdk.coordinator").info(
                "[log] filter: targets with no counterpart here: %s",
                ", ".join(log_filter.unmapped),
            )
    if args.model_dir is not None:
        settings = dataclasses.replace(
            settings, model=dataclasses.replace(settings.model, save_dir=args.model_dir)
        )

    coordinator = LocalCoordinator(settings, keep_models=1)
    try:
        coordinator.start()
    except (StoreError, RestoreError, SettingsError) as e:
        print(f"xaynet-coordinator: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(
            f"xaynet-coordinator: cannot listen on {settings.api.bind_address}: {e}",
            file=sys.stderr,
        )
        return 1

    done = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: Optional[FrameType]) -> None:
        received.append(signum)  # no logging in a signal handler: it could hold the lock
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not done.wait(1.0):
            pass
        logging.getLogger("xaynet_sdk.coordinator").info(
            "received %s, shutting down", signal.Signals(received[0]).name
        )
    finally:
        coordinator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
