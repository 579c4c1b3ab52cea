"""A local Xaynet v0.11 coordinator: the original's REST API and PET round logic, in Python.

For tests, examples and deployments, without Docker or Rust (state in memory by default, in
Redis with ``[redis]``, global models in S3 with ``[s3]``)::

    from xaynet_sdk.coordinator import LocalCoordinator, Settings

    with LocalCoordinator(Settings.for_tests(model_length=4)) as coordinator:
        print(coordinator.url)                       # point participants here
        models = coordinator.wait_for_global_models(2, timeout=60)

From the command line, with the original coordinator's TOML file::

    xaynet-coordinator -c config.toml                # or: python -m xaynet_sdk.coordinator

Modules, one responsibility each: :mod:`.local` (:class:`LocalCoordinator`: wires the others),
:mod:`.settings` (TOML, environment, validation),
:mod:`.server` (HTTP), :mod:`.pipeline` (a POST body to a message), :mod:`.state` (the round's
data and the rules that change it), :mod:`.rounds` (phase timing, unmask, next round),
:mod:`.stats` (counters), :mod:`.limits` (resource bounds), :mod:`.store` (state that
survives a restart: memory or Redis), :mod:`.s3` (global models in a bucket),
:mod:`.frontend` (connections, deadlines, the worker pool), :mod:`.tls` (the TLS
context), :mod:`.metrics` (Prometheus), :mod:`.influx` (InfluxDB), :mod:`.logfilter`
(``[log] filter``).

The coordinator runs in background threads of the calling process. The ORIGINAL participant
(``xaynet-sdk-python`` 0.1.0) holds the GIL during its HTTP requests, so it must run in
another process than this coordinator; this package's own participant does not have that
problem.
"""

from __future__ import annotations

from .limits import Limits
from .local import LocalCoordinator
from .outcomes import Phase, Reason
from .settings import Settings, SettingsError
from .state import RoundRecord, derive_round_seed
from .store import RestoreError, StoreError

__all__ = [
    "Limits",
    "LocalCoordinator",
    "Phase",
    "Reason",
    "RestoreError",
    "RoundRecord",
    "Settings",
    "SettingsError",
    "StoreError",
    "derive_round_seed",
]
