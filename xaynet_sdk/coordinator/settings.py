"""Coordinator settings: the original coordinator's TOML format, its validation, env overrides.

The file format is that of the Rust coordinator v0.11 (``configs/config.toml``), so an existing
configuration file works unchanged::

    [api]
    bind_address = "127.0.0.1:8081"

    [pet]
    sum = 0.5
    update = 0.9
    min_sum_count = 1      # and max_sum_count, {min,max}_{update,sum2}_count
    min_sum_time = 5       # and max_sum_time, {min,max}_{update,sum2}_time (seconds)
    ...

    [mask]
    group_type = "Prime"
    data_type = "F32"
    bound_type = "B0"
    model_type = "M3"

    [model]
    length = 4

Sections and keys the original needs for infrastructure this coordinator does not have
(``trust_anchor``) are accepted and listed once in the log, so a production file loads as
is. ``[api] tls_certificate``, ``tls_key`` and ``tls_client_auth`` serve HTTPS (with client
authentication), ``[metrics.prometheus] bind_address`` serves Prometheus metrics,
``[metrics.influxdb]`` (``url``, ``db``) writes the original's measurements to InfluxDB,
``[log] filter`` sets the log levels (see :mod:`.logfilter`), ``[redis] url`` keeps the
coordinator's state in Redis (``[restore] enable``) and ``[s3]`` stores every global model
in a bucket. Anything else unknown
is accepted and listed too, as serde ignores unknown fields in the original.

Environment variables override the file exactly as the original's ``config`` crate does:
``XAYNET_<SECTION>__<KEY>`` (case-insensitive, ``__`` separates the levels), the value given
as a string and converted to the field's type, e.g. ``XAYNET_PET__SUM=0.5``.

Validation follows the original rule for rule (``PetSettings::validate_pet``), with messages
that name the offending keys. Extensions, all backward compatible:

* times may be fractional seconds (the original takes whole seconds), which keeps test rounds
  short;
* ``[model] save_dir``: a directory where every round's global model is saved as ``.npy``;
* ``[redis]``, ``[restore]``, ``[s3]`` as in the original (see :mod:`.store`), except that a
  restored coordinator resumes the interrupted round instead of starting a new one;
* ``insecure_min_counts`` (Python only, :meth:`Settings.for_tests`): lowers the protocol's
  minimum of 3 update participants to 1 for small tests. It can not be set from a file or the
  environment, because with fewer than 3 updates the aggregate reveals individual models.
"""

from __future__ import annotations

import copy
import ipaddress
import logging
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from ..exceptions import XaynetError
from ..mask.config import InvalidMaskConfig, MaskConfig, MaskConfigPair
from .logfilter import LogFilter, parse_log_filter

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib

__all__ = [
    "ENV_PREFIX",
    "MIN_SUM_COUNT",
    "MIN_UPDATE_COUNT",
    "ApiSettings",
    "LogSettings",
    "MetricsSettings",
    "ModelSettings",
    "PetSettings",
    "RedisSettings",
    "RestoreSettings",
    "S3Settings",
    "Settings",
    "SettingsError",
]

_log = logging.getLogger("xaynet_sdk.coordinator.settings")

#: The protocol's lower bounds (``xaynet_core::message::{MIN_SUM_COUNT, MIN_UPDATE_COUNT}``).
MIN_SUM_COUNT = 1
MIN_UPDATE_COUNT = 3

#: Environment variables with this prefix (any case) override the file.
ENV_PREFIX = "xaynet_"
_ENV_SEPARATOR = "__"

#: Top-level sections of the original that configure infrastructure we do not have.
_UNUSED_SECTIONS = ("trust_anchor",)

_PET_COUNTS = (
    "min_sum_count",
    "min_update_count",
    "min_sum2_count",
    "max_sum_count",
    "max_update_count",
    "max_sum2_count",
)
_PET_TIMES = (
    "min_sum_time",
    "min_update_time",
    "min_sum2_time",
    "max_sum_time",
    "max_update_time",
    "max_sum2_time",
)
_MASK_KEYS = ("group_type", "data_type", "bound_type", "model_type")
_U64_MAX = 2**64 - 1


class SettingsError(XaynetError, ValueError):
    """A configuration that cannot be loaded or does not validate.

    The message starts like the original's (``configuration loading failed: ...`` or
    ``validation failed: ...``) and names the key and the rule, so it can be shown to the
    operator as is; the CLI prints it and exits with status 1.
    """


# ---------------------------------------------------------------------------------------------
# The settings values
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiSettings:
    """Where the REST API listens. Port 0 asks the OS for a free port.

    TLS as in the original (``ApiSettings::validate_api``): ``tls_certificate`` and ``tls_key``
    together serve HTTPS; ``tls_client_auth`` (a PEM trust anchor) also requires client
    certificates signed by it. A certificate without a key (or the reverse), or client
    authentication without a server certificate, is "invalid tls settings".
    """

    host: str
    port: int
    # --- [api] TLS keys (begin) ---
    tls_certificate: Optional[Path] = None
    tls_key: Optional[Path] = None
    tls_client_auth: Optional[Path] = None

    def __post_init__(self) -> None:
        if (self.tls_certificate is None) != (self.tls_key is None):
            given, missing = (
                ("tls_certificate", "tls_key")
                if self.tls_key is None
                else ("tls_key", "tls_certificate")
            )
            raise SettingsError(
                f"validation failed: api: invalid tls settings: {given} is set but {missing}"
                " is not (the certificate and its key go together)"
            )
        if self.tls_client_auth is not None and self.tls_certificate is None:
            raise SettingsError(
                "validation failed: api: invalid tls settings: tls_client_auth needs"
                " tls_certificate and tls_key (client authentication runs over TLS)"
            )

    @property
    def tls(self) -> bool:
        """Whether the API is served over TLS."""
        return self.tls_certificate is not None

    # --- [api] TLS keys (end) ---

    @property
    def bind_address(self) -> str:
        """``host:port`` as in the file (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class PetSettings:
    """The ``[pet]`` section: selection probabilities, and per phase min/max counts and times.

    Times are seconds, as floats (the original's are whole seconds).
    """

    sum: float
    update: float
    min_sum_count: int
    min_update_count: int
    min_sum2_count: int
    max_sum_count: int
    max_update_count: int
    max_sum2_count: int
    min_sum_time: float
    min_update_time: float
    min_sum2_time: float
    max_sum_time: float
    max_update_time: float
    max_sum2_time: float


@dataclass(frozen=True)
class ModelSettings:
    """The ``[model]`` section: the model length, and (extension) where to save global models."""

    length: int
    save_dir: Optional[Path] = None


# --- [redis], [restore], [s3]: coordinator state and global models (store.py, s3.py) -------


@dataclass(frozen=True)
class RedisSettings:
    """The ``[redis]`` section: where the coordinator keeps its state (``redis://`` URL)."""

    url: str

    def __repr__(self) -> str:  # the URL may hold a password
        return f"RedisSettings(url={redact_url(self.url)!r})"


@dataclass(frozen=True)
class RestoreSettings:
    """The ``[restore]`` section: ``enable = false`` deletes the stored state at start."""

    enable: bool = True


@dataclass(frozen=True)
class S3Settings:
    """The ``[s3]`` section: the bucket that receives every global model.

    ``region`` is the original's ``["<name>", "<endpoint url>"]`` (or ``"<name> <endpoint>"``,
    or an AWS region name alone); ``global_models`` is ``[s3.buckets] global_models``.
    """

    access_key: str
    secret_access_key: str
    region_name: str
    endpoint: Optional[str] = None
    global_models: str = "global-models"

    def __repr__(self) -> str:  # never show the credentials
        return (
            f"S3Settings(region_name={self.region_name!r}, endpoint={self.endpoint!r},"
            f" global_models={self.global_models!r})"
        )


def redact_url(url: str) -> str:
    """``url`` without its password, for logs and error messages."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    credentials, _, host = rest.partition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user + ':***' if user else '***'}@{host}"


_STORE_SECTIONS = ("redis", "restore", "s3")
_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _parse_store(data: Mapping[str, Any], ignored: list[str]) -> dict[str, Any]:
    """The ``redis``, ``restore`` and ``s3`` fields of :class:`Settings` (absent: None)."""
    out: dict[str, Any] = {}
    if "redis" in data:
        redis = _section(data, "redis")
        url = _field(redis, "redis", "url")
        if not isinstance(url, str) or not url.strip().startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise _loading("redis.url must be a redis://, rediss:// or unix:// URL")
        out["redis"] = RedisSettings(url.strip())
        ignored += [f"redis.{k}" for k in sorted(redis) if k != "url"]
    if "restore" in data:
        restore = _section(data, "restore")
        enable = _field(restore, "restore", "enable")
        if isinstance(enable, str) and enable.strip().lower() in ("true", "false"):
            enable = enable.strip().lower() == "true"  # environment values are strings
        if not isinstance(enable, bool):
            raise _loading(f"restore.enable must be true or false, got {enable!r}")
        out["restore"] = RestoreSettings(enable)
        ignored += [f"restore.{k}" for k in sorted(restore) if k != "enable"]
    if "s3" in data:
        s3 = _section(data, "s3")
        keys = {}
        for key in ("access_key", "secret_access_key"):
            value = _field(s3, "s3", key)
            if not isinstance(value, str):
                raise _loading(f"s3.{key} must be a string")
            keys[key] = value
        region = _field(s3, "s3", "region")
        parts = region.split() if isinstance(region, str) else region
        if (
            not isinstance(parts, list)
            or not 1 <= len(parts) <= 2
            or not all(isinstance(p, str) and p.strip() for p in parts)
        ):
            raise _loading('s3.region must be ["<name>", "<endpoint url>"] or an AWS region name')
        buckets = s3.get("buckets", {})
        if not isinstance(buckets, dict):
            raise _loading("[s3.buckets] must be a table")
        bucket = buckets.get("global_models", "global-models")
        if not isinstance(bucket, str) or not _S3_BUCKET.match(bucket) or ".." in bucket:
            raise _loading(
                f"s3.buckets.global_models {bucket!r} is not a valid bucket name (lowercase"
                " letters, digits, dots and hyphens, 3 to 63 characters)"
            )
        out["s3"] = S3Settings(
            keys["access_key"],
            keys["secret_access_key"],
            parts[0].strip(),
            parts[1].strip() if len(parts) == 2 else None,
            bucket,
        )
        ignored += [
            f"s3.{k}"
            for k in sorted(s3)
            if k not in ("access_key", "secret_access_key", "region", "buckets")
        ]
        ignored += [f"s3.buckets.{k}" for k in sorted(buckets) if k != "global_models"]
    return out


# --- end of [redis], [restore], [s3] ---------------------------------------------------------


# --- [metrics] and [log] (begin) ---
@dataclass(frozen=True)
class MetricsSettings:
    """``[metrics]``: ``[metrics.prometheus] bind_address`` serves ``/metrics`` (off if absent).

    ``[metrics.influxdb]`` (``url``, ``db``) is the original's section, validated like the
    original's: the same measurements are written there (see :mod:`.influx`).
    """

    prometheus_host: Optional[str] = None
    prometheus_port: int = 0
    influxdb_url: Optional[str] = None
    influxdb_db: Optional[str] = None

    @property
    def prometheus(self) -> bool:
        return self.prometheus_host is not None


@dataclass(frozen=True)
class LogSettings:
    """``[log] filter``, RUST_LOG-style (see :mod:`.logfilter`); None: the CLI's default."""

    filter: Optional[LogFilter] = None


def _parse_api_tls(api: Mapping[str, Any]) -> dict[str, Optional[Path]]:
    paths: dict[str, Optional[Path]] = {}
    for key in _API_TLS_KEYS:
        raw = api.get(key)
        if raw is None:
            paths[key] = None
            continue
        if not isinstance(raw, str) or not raw.strip():
            raise _loading(f"api.{key} must be a file path, got {raw!r}")
        paths[key] = Path(raw.strip())
    return paths


def _parse_metrics(data: Mapping[str, Any], ignored: list[str]) -> MetricsSettings:
    if "metrics" not in data:
        return MetricsSettings()
    metrics = _section(data, "metrics")
    values: dict[str, Any] = {}
    if "prometheus" in metrics:
        prometheus = metrics["prometheus"]
        if not isinstance(prometheus, dict):
            raise _loading("[metrics.prometheus] must be a table")
        address = _field(prometheus, "metrics.prometheus", "bind_address")
        host, port = _parse_bind_address(address, "metrics.prometheus.bind_address")
        values.update(prometheus_host=host, prometheus_port=port)
        ignored += [f"metrics.prometheus.{k}" for k in sorted(prometheus) if k != "bind_address"]
    if "influxdb" in metrics:
        influx = metrics["influxdb"]
        if not isinstance(influx, dict):
            raise _loading("[metrics.influxdb] must be a table")
        url = _field(influx, "metrics.influxdb", "url")
        db = _field(influx, "metrics.influxdb", "db")
        if not isinstance(url, str) or not _is_url(url):
            raise SettingsError(f"validation failed: metrics.influxdb.url: not a URL: {url!r}")
        if not isinstance(db, str):
            raise _loading(f"metrics.influxdb.db must be a string, got {db!r}")
        values.update(influxdb_url=url, influxdb_db=db)
        ignored += [f"metrics.influxdb.{k}" for k in sorted(influx) if k not in ("url", "db")]
    ignored += [f"metrics.{k}" for k in sorted(metrics) if k not in ("prometheus", "influxdb")]
    return MetricsSettings(**values)


def _is_url(text: str) -> bool:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text.strip())
    except ValueError:
        return False
    return bool(parts.scheme) and bool(parts.netloc or parts.path)


def _parse_log(data: Mapping[str, Any], ignored: list[str]) -> LogSettings:
    if "log" not in data:
        return LogSettings()
    log = _section(data, "log")
    ignored += [f"log.{k}" for k in sorted(log) if k != "filter"]
    if "filter" not in log:
        return LogSettings()
    try:
        return LogSettings(parse_log_filter(log["filter"]))
    except ValueError as e:
        raise _loading(f"log.filter: {e}") from None


_API_TLS_KEYS = ("tls_certificate", "tls_key", "tls_client_auth")
_SERVICE_SECTIONS = ("metrics", "log")
# --- [metrics] and [log] (end) ---


@dataclass(frozen=True)
class Settings:
    """Validated coordinator settings. Build with :meth:`from_toml`, :meth:`from_dict` or
    :meth:`for_tests`; constructing directly validates too (``__post_init__``)."""

    api: ApiSettings
    pet: PetSettings
    mask: MaskConfig
    model: ModelSettings
    #: Dotted names of sections/keys that were accepted but are not used (for the log).
    ignored: tuple[str, ...] = ()
    #: TEST ONLY: lower the minimum update count from 3 to 1 (see the module docstring).
    insecure_min_counts: bool = False
    # --- [redis], [restore], [s3] (None: in-memory state, no bucket) ---
    redis: Optional[RedisSettings] = None
    restore: RestoreSettings = RestoreSettings()
    s3: Optional[S3Settings] = None
    # --- end of [redis], [restore], [s3] ---
    # --- [metrics] and [log] (begin) ---
    metrics: MetricsSettings = MetricsSettings()
    log: LogSettings = LogSettings()
    # --- [metrics] and [log] (end) ---

    def __post_init__(self) -> None:
        _validate(self)

    # -- convenience views -------------------------------------------------------------------
    @property
    def mask_config(self) -> MaskConfigPair:
        """The round's configuration pair; the original always uses the same for both parts."""
        return MaskConfigPair.single(self.mask)

    @property
    def model_length(self) -> int:
        return self.model.length

    @property
    def model_dir(self) -> Optional[Path]:
        return self.model.save_dir

    # -- constructors ------------------------------------------------------------------------
    @classmethod
    def from_toml(
        cls, path: "str | os.PathLike[str]", *, environ: Optional[Mapping[str, str]] = None
    ) -> "Settings":
        """Load a TOML file, apply ``XAYNET_*`` environment overrides, validate.

        ``environ`` defaults to ``os.environ``; pass ``{}`` to ignore the environment.
        Sections and keys that are accepted but unused are logged once, at INFO.
        """
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise SettingsError(f"configuration loading failed: cannot read {file}: {e}") from None
        try:
            data: dict[str, Any] = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise SettingsError(
                f"configuration loading failed: {file} is not valid TOML: {e}"
            ) from None
        overridden = _merge_environment(data, os.environ if environ is None else environ)
        if overridden:
            # Names only: values may be credentials (XAYNET_S3__SECRET_ACCESS_KEY).
            _log.info("settings overridden by the environment: %s", ", ".join(overridden))
        settings = _parse(data)
        if settings.ignored:
            _log.info(
                "accepted but not used by the local coordinator: %s", ", ".join(settings.ignored)
            )
        return settings

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Settings":
        """Build from nested mappings with the TOML's sections and keys (no env overrides)."""
        if not isinstance(data, Mapping):
            raise SettingsError(
                f"configuration loading failed: expected a mapping of sections, got"
                f" {type(data).__name__}"
            )
        return _parse(copy.deepcopy(dict(data)))

    @classmethod
    def for_tests(
        cls,
        *,
        model_length: int = 4,
        mask: str = "Prime/F32/B0/M3",
        sum: float = 0.5,
        update: float = 0.9,
        min_sum_count: int = 1,
        min_update_count: int = 3,
        min_sum2_count: int = 1,
        min_sum_time: float = 0.5,
        max_sum_time: float = 30,
        min_update_time: float = 0.5,
        max_update_time: float = 30,
        min_sum2_time: float = 0.5,
        max_sum2_time: float = 30,
        max_sum_count: int = 100,
        max_update_count: int = 10000,
        max_sum2_count: int = 100,
        model_dir: "str | os.PathLike[str] | None" = None,
        bind_address: str = "127.0.0.1:0",
        insecure_min_counts: bool = False,
    ) -> "Settings":
        """Settings for tests and examples: loopback on a free port, short phases.

        Validated like a file. ``insecure_min_counts=True`` is the only way to go below the
        protocol's minimum of 3 update participants; never use it outside tests.
        """
        try:
            mask_config = MaskConfig.from_name(mask)
        except InvalidMaskConfig as e:
            raise SettingsError(f"configuration loading failed: mask: {e}") from None
        host, port = _parse_bind_address(bind_address, "bind_address")
        pet = PetSettings(
            sum=_float(sum, "sum"),
            update=_float(update, "update"),
            min_sum_count=_count(min_sum_count, "min_sum_count"),
            min_update_count=_count(min_update_count, "min_update_count"),
            min_sum2_count=_count(min_sum2_count, "min_sum2_count"),
            max_sum_count=_count(max_sum_count, "max_sum_count"),
            max_update_count=_count(max_update_count, "max_update_count"),
            max_sum2_count=_count(max_sum2_count, "max_sum2_count"),
            min_sum_time=_seconds(min_sum_time, "min_sum_time"),
            min_update_time=_seconds(min_update_time, "min_update_time"),
            min_sum2_time=_seconds(min_sum2_time, "min_sum2_time"),
            max_sum_time=_seconds(max_sum_time, "max_sum_time"),
            max_update_time=_seconds(max_update_time, "max_update_time"),
            max_sum2_time=_seconds(max_sum2_time, "max_sum2_time"),
        )
        return cls(
            api=ApiSettings(host, port),
            pet=pet,
            mask=mask_config,
            model=ModelSettings(
                _count(model_length, "model_length"),
                Path(model_dir) if model_dir is not None else None,
            ),
            insecure_min_counts=bool(insecure_min_counts),
        )


# ---------------------------------------------------------------------------------------------
# Environment overrides (the `config` crate's Environment::with_prefix("xaynet").separator("__"))
# ---------------------------------------------------------------------------------------------


def _merge_environment(data: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Merge ``XAYNET_A__B=value`` into ``data["a"]["b"]``; return the dotted keys set.

    Like the original, names are lowercased and unknown keys are accepted (they end up in
    ``ignored``); ``XAYNET_CLIENT``, the participant's log filter, is one such key.
    """
    applied: list[str] = []
    for name in sorted(environ):
        lowered = name.lower()
        if not lowered.startswith(ENV_PREFIX):
            continue
        path = lowered[len(ENV_PREFIX) :].split(_ENV_SEPARATOR)
        if not all(path):
            continue
        node = data
        conflict = False
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                conflict = True
                break
            node = child
        if conflict:
            _log.warning("ignoring environment variable %s: it does not name a setting", name)
            continue
        node[path[-1]] = environ[name]
        applied.append(".".join(path))
    return applied


# ---------------------------------------------------------------------------------------------
# Parsing (types) and validation (rules)
# ---------------------------------------------------------------------------------------------


def _loading(message: str) -> SettingsError:
    return SettingsError(f"configuration loading failed: {message}")


def _section(data: Mapping[str, Any], name: str) -> dict[str, Any]:
    if name not in data:
        raise _loading(f"missing section [{name}]")
    section = data[name]
    if not isinstance(section, dict):
        raise _loading(f"[{name}] must be a table, got {type(section).__name__}")
    return section


def _field(section: Mapping[str, Any], section_name: str, key: str) -> Any:
    if key not in section:
        raise _loading(f"missing field `{key}` in [{section_name}]")
    return section[key]


def _float(value: Any, key: str) -> float:
    """An f64: a TOML number, or a string that parses as one (environment values are strings)."""
    if isinstance(value, bool):
        raise _loading(f"{key} must be a number, got a boolean")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise _loading(f"{key} must be a number, got {value!r}")


def _count(value: Any, key: str) -> int:
    """A u64 (counts, the model length): a non-negative integer, or a string of one."""
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            value = int(text)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _loading(f"{key} must be a non-negative integer, got {value!r}")
    if not 0 <= value <= _U64_MAX:
        raise _loading(f"{key} must be a non-negative integer below 2^64, got {value}")
    return value


def _seconds(value: Any, key: str) -> float:
    """A duration in seconds: non-negative and finite (fractions are an extension)."""
    seconds = _float(value, key)
    if not math.isfinite(seconds) or seconds < 0:
        raise _loading(f"{key} must be a non-negative number of seconds, got {value!r}")
    return seconds


def _parse_bind_address(value: Any, key: str) -> tuple[str, int]:
    """A Rust ``SocketAddr``: ``ip:port`` or ``[ipv6]:port``; host names are not accepted."""
    if not isinstance(value, str):
        raise _loading(f'{key} must be a string like "127.0.0.1:8081", got {value!r}')
    text = value.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise _loading(f'{key} {value!r} is not a socket address like "127.0.0.1:8081"')
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        version = 6
    else:
        version = 4
    try:
        address = ipaddress.ip_address(host)
        if address.version != version:
            raise ValueError("IPv6 addresses need brackets")
        if not port_text.isdigit():
            raise ValueError("the port must be a number")
        port = int(port_text)
        if port > 65535:
            raise ValueError("the port must be at most 65535")
    except ValueError as e:
        raise _loading(
            f'{key} {value!r} is not a socket address like "127.0.0.1:8081" or "[::1]:8081" ({e})'
        ) from None
    return str(address), port


def _mask(section: Mapping[str, Any]) -> MaskConfig:
    names = []
    for key in _MASK_KEYS:
        value = _field(section, "mask", key)
        if not isinstance(value, str):
            raise _loading(f'mask.{key} must be a string such as "Prime", got {value!r}')
        names.append(value.strip())
    try:
        return MaskConfig.from_names(*names)
    except InvalidMaskConfig as e:
        raise _loading(f"[mask]: {e}") from None


def _parse(data: dict[str, Any]) -> Settings:
    """Typed settings from the merged mapping; the rules are checked by ``Settings``."""
    ignored: list[str] = []
    for name in sorted(data):
        if name not in ("api", "pet", "mask", "model", *_STORE_SECTIONS, *_SERVICE_SECTIONS):
            ignored.append(f"[{name}]")

    api = _section(data, "api")
    host, port = _parse_bind_address(_field(api, "api", "bind_address"), "api.bind_address")
    ignored += [f"api.{k}" for k in sorted(api) if k not in ("bind_address",) + _API_TLS_KEYS]
    tls = _parse_api_tls(api)
    metrics = _parse_metrics(data, ignored)
    log = _parse_log(data, ignored)

    pet_section = _section(data, "pet")
    values: dict[str, Any] = {
        "sum": _float(_field(pet_section, "pet", "sum"), "pet.sum"),
        "update": _float(_field(pet_section, "pet", "update"), "pet.update"),
    }
    for key in _PET_COUNTS:
        values[key] = _count(_field(pet_section, "pet", key), f"pet.{key}")
    for key in _PET_TIMES:
        values[key] = _seconds(_field(pet_section, "pet", key), f"pet.{key}")
    ignored += [f"pet.{k}" for k in sorted(pet_section) if k not in values]

    mask_section = _section(data, "mask")
    mask = _mask(mask_section)
    ignored += [f"mask.{k}" for k in sorted(mask_section) if k not in _MASK_KEYS]

    model_section = _section(data, "model")
    length = _count(_field(model_section, "model", "length"), "model.length")
    save_dir: Optional[Path] = None
    if "save_dir" in model_section:
        raw = model_section["save_dir"]
        if not isinstance(raw, str) or not raw.strip():
            raise _loading(f"model.save_dir must be a directory path, got {raw!r}")
        save_dir = Path(raw.strip())
    ignored += [f"model.{k}" for k in sorted(model_section) if k not in ("length", "save_dir")]

    store = _parse_store(data, ignored)  # [redis], [restore], [s3]
    return Settings(
        api=ApiSettings(host, port, **tls),
        pet=PetSettings(**values),
        mask=mask,
        model=ModelSettings(length, save_dir),
        ignored=tuple(ignored),
        metrics=metrics,
        log=log,
        **store,
    )


def _validate(settings: Settings) -> None:
    """The original's ``validate_pet``: counts, then times, then probabilities."""
    pet = settings.pet
    min_update = 1 if settings.insecure_min_counts else MIN_UPDATE_COUNT
    problems = []

    def at_most(small: str, large: str) -> None:
        low, high = getattr(pet, small), getattr(pet, large)
        if low > high:
            problems.append(f"{small} ({low}) must not exceed {large} ({high})")

    for phase, minimum in (("sum", MIN_SUM_COUNT), ("update", min_update), ("sum2", MIN_SUM_COUNT)):
        low = getattr(pet, f"min_{phase}_count")
        if low < minimum:
            problems.append(f"min_{phase}_count ({low}) must be at least {minimum}")
        at_most(f"min_{phase}_count", f"max_{phase}_count")
    at_most("min_sum2_count", "max_sum_count")
    at_most("max_sum2_count", "max_sum_count")
    if problems:
        raise SettingsError(
            "validation failed: pet: invalid phase count range(s): " + "; ".join(problems)
        )

    for phase in ("sum", "update", "sum2"):
        low = getattr(pet, f"min_{phase}_time")
        high = getattr(pet, f"max_{phase}_time")
        if low > high:
            problems.append(
                f"min_{phase}_time ({low:g}) must not exceed max_{phase}_time ({high:g})"
            )
    if problems:
        raise SettingsError(
            "validation failed: pet: invalid phase time range(s): " + "; ".join(problems)
        )

    s, u = pet.sum, pet.update
    either = s + u - s * u
    if not 0.0 < s < 1.0:
        problems.append(f"sum ({s!r}) must satisfy 0 < sum < 1")
    if not 0.0 < u <= 1.0:
        problems.append(f"update ({u!r}) must satisfy 0 < update <= 1")
    if not problems and not 0.0 < either <= 1.0:
        problems.append(f"sum + update - sum*update ({either!r}) must be in (0, 1]")
    if problems:
        raise SettingsError(
            "validation failed: pet: starvation (the selection probabilities let no participant"
            " take part): " + "; ".join(problems)
        )
