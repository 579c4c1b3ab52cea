"""Coordinator settings: the original's TOML format, validation, env overrides, and the CLI."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from xaynet_sdk.codec import RoundParameters
from xaynet_sdk.coordinator import Settings, SettingsError
from xaynet_sdk.coordinator.settings import MIN_UPDATE_COUNT
from xaynet_sdk.mask.config import MaskConfig

# configs/config.toml of xaynet v0.11.0, as shipped (docs/PROTOCOL.md section 13.1).
ORIGINAL_CONFIG = """\
[log]
filter = "xaynet=debug,http=warn,info"

[api]
bind_address = "127.0.0.1:8081"
tls_certificate = "/app/ssl/tls.pem"
tls_key = "/app/ssl/tls.key"
# tls_client_auth = "/app/ssl/trust_anchor.pem"

[pet]
min_sum_count = 1
min_update_count = 3
min_sum2_count = 1
max_sum_count = 100
max_update_count = 10000
max_sum2_count = 100
min_sum_time = 5
min_update_time = 10
min_sum2_time = 5
max_sum_time = 3600
max_update_time = 3600
max_sum2_time = 3600
sum = 0.5
update = 0.9

[mask]
group_type = "Prime"
data_type = "F32"
bound_type = "B0"
model_type = "M3"

[model]
length = 4

[metrics.influxdb]
url = "http://localhost:8086"
db = "metrics"

[redis]
url = "redis://127.0.0.1/"

[s3]
access_key = "minio"
secret_access_key = "minio123"
region = ["minio", "http://localhost:9000"]

[restore]
enable = true
"""


def _minimal() -> dict[str, Any]:
    return {
        "api": {"bind_address": "127.0.0.1:0"},
        "pet": {
            "sum": 0.5,
            "update": 0.9,
            "min_sum_count": 1,
            "min_update_count": 3,
            "min_sum2_count": 1,
            "max_sum_count": 100,
            "max_update_count": 10000,
            "max_sum2_count": 100,
            "min_sum_time": 5,
            "min_update_time": 10,
            "min_sum2_time": 5,
            "max_sum_time": 3600,
            "max_update_time": 3600,
            "max_sum2_time": 3600,
        },
        "mask": {"group_type": "Prime", "data_type": "F32", "bound_type": "B0", "model_type": "M3"},
        "model": {"length": 4},
    }


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- loading


def test_the_original_config_file_loads_unchanged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="xaynet_sdk.coordinator"):
        settings = Settings.from_toml(_write(tmp_path, ORIGINAL_CONFIG), environ={})
    assert settings.api.host == "127.0.0.1" and settings.api.port == 8081
    assert settings.pet.sum == 0.5 and settings.pet.update == 0.9
    assert (settings.pet.min_sum_count, settings.pet.min_update_count) == (1, 3)
    assert (settings.pet.max_update_count, settings.pet.max_sum2_time) == (10000, 3600.0)
    assert settings.mask == MaskConfig.from_name("Prime/F32/B0/M3")
    assert settings.model_length == 4 and settings.model_dir is None
    # Unused sections and keys are accepted and noted once.
    assert settings.ignored == ()
    # [api] TLS, [metrics], [log], [redis], [restore] and [s3] are all read (their own tests:
    # test_coordinator_tls.py, ..._metrics.py, ..._store.py).
    assert settings.api.tls_certificate == Path("/app/ssl/tls.pem")
    assert settings.api.tls_key == Path("/app/ssl/tls.key")
    assert settings.metrics.influxdb_url == "http://localhost:8086"
    assert settings.redis is not None and settings.s3 is not None
    assert not [r for r in caplog.records if "not used" in r.getMessage()]
    assert "minio123" not in caplog.text  # values are never logged


def test_from_dict_equals_from_toml(tmp_path: Path) -> None:
    from_file = Settings.from_toml(_write(tmp_path, ORIGINAL_CONFIG), environ={})
    from_dict = Settings.from_dict(_minimal())
    assert from_dict.pet == from_file.pet
    assert from_dict.mask == from_file.mask and from_dict.model == from_file.model
    assert from_dict.api.port == 0 and from_dict.ignored == ()


def test_for_tests_defaults_and_fractional_times(tmp_path: Path) -> None:
    s = Settings.for_tests()
    assert s.api.bind_address == "127.0.0.1:0"
    assert (s.model_length, s.mask.name, s.pet.sum, s.pet.update) == (
        4,
        "Prime/F32/B0/M3",
        0.5,
        0.9,
    )
    assert (s.pet.min_sum_count, s.pet.min_update_count, s.pet.min_sum2_count) == (1, 3, 1)
    assert (s.pet.max_sum_count, s.pet.max_update_count, s.pet.max_sum2_count) == (100, 10000, 100)
    assert (s.pet.min_sum_time, s.pet.max_update_time) == (0.5, 30.0)
    s = Settings.for_tests(mask="Integer/F64/B2/M6", model_length=3000, model_dir=tmp_path)
    assert s.mask_config.vect == s.mask_config.unit == MaskConfig.from_name("Integer/F64/B2/M6")
    assert s.model_dir == tmp_path
    # Fractional seconds are an extension of the file format too.
    data = _minimal()
    data["pet"]["min_sum_time"] = 0.25
    assert Settings.from_dict(data).pet.min_sum_time == 0.25


def test_save_dir_and_ipv6_bind_address(tmp_path: Path) -> None:
    data = _minimal()
    data["model"]["save_dir"] = str(tmp_path)
    data["api"]["bind_address"] = "[::1]:8081"
    s = Settings.from_dict(data)
    assert s.model_dir == tmp_path
    assert (s.api.host, s.api.port, s.api.bind_address) == ("::1", 8081, "[::1]:8081")


# ----------------------------------------------------------------------------- environment


def test_environment_overrides_like_the_original(tmp_path: Path) -> None:
    path = _write(tmp_path, ORIGINAL_CONFIG)
    environ = {
        "XAYNET_PET__SUM": "0.25",
        "xaynet_pet__min_update_time": "2",  # names are case-insensitive
        "XAYNET_MASK__BOUND_TYPE": "Bmax",
        "XAYNET_MODEL__LENGTH": "7",
        "XAYNET_API__BIND_ADDRESS": "0.0.0.0:9000",
        "XAYNET_CLIENT": "debug",  # the participant's variable: an unknown key, ignored
        "XAYNET_PET_SUM": "0.9",  # one underscore: not a separator, ignored
        "OTHER_PET__SUM": "0.9",
    }
    s = Settings.from_toml(path, environ=environ)
    assert s.pet.sum == 0.25 and s.pet.min_update_time == 2.0
    assert s.mask.name == "Prime/F32/Bmax/M3" and s.model_length == 7
    assert (s.api.host, s.api.port) == ("0.0.0.0", 9000)
    assert "[client]" in s.ignored and "[pet_sum]" in s.ignored


def test_environment_defaults_to_os_environ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XAYNET_PET__UPDATE", "0.5")
    assert Settings.from_toml(_write(tmp_path, ORIGINAL_CONFIG)).pet.update == 0.5
    # from_dict never reads the environment.
    assert Settings.from_dict(_minimal()).pet.update == 0.9


def test_environment_can_break_validation(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="starvation"):
        Settings.from_toml(_write(tmp_path, ORIGINAL_CONFIG), environ={"XAYNET_PET__SUM": "1"})
    with pytest.raises(SettingsError, match="pet.sum must be a number"):
        Settings.from_toml(_write(tmp_path, ORIGINAL_CONFIG), environ={"XAYNET_PET__SUM": "x"})


# ----------------------------------------------------------------------------- validation


def _with(section: str, key: str, value: Any) -> dict[str, Any]:
    data = _minimal()
    data[section][key] = value
    return data


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        # counts (validate_phase_counts)
        (
            "pet",
            "min_sum_count",
            0,
            r"invalid phase count range.*min_sum_count \(0\) must be at least 1",
        ),
        ("pet", "min_update_count", 2, r"min_update_count \(2\) must be at least 3"),
        ("pet", "min_sum2_count", 0, r"min_sum2_count \(0\) must be at least 1"),
        ("pet", "max_sum_count", 0, r"min_sum_count \(1\) must not exceed max_sum_count \(0\)"),
        ("pet", "max_update_count", 2, r"min_update_count \(3\) must not exceed max_update_count"),
        ("pet", "max_sum2_count", 0, r"min_sum2_count \(1\) must not exceed max_sum2_count"),
        ("pet", "max_sum2_count", 101, r"max_sum2_count \(101\) must not exceed max_sum_count"),
        # times (validate_phase_times)
        ("pet", "min_sum_time", 3601, r"invalid phase time range.*min_sum_time \(3601\)"),
        ("pet", "max_update_time", 9, r"min_update_time \(10\) must not exceed max_update_time"),
        ("pet", "min_sum2_time", 3601.5, r"min_sum2_time \(3601.5\) must not exceed"),
        # probabilities (validate_fractions)
        ("pet", "sum", 0.0, r"starvation.*sum \(0.0\) must satisfy 0 < sum < 1"),
        ("pet", "sum", 1.0, r"starvation.*0 < sum < 1"),
        ("pet", "update", 0.0, r"starvation.*0 < update <= 1"),
        ("pet", "update", 1.5, r"starvation.*0 < update <= 1"),
        ("pet", "sum", float("nan"), r"starvation"),
    ],
)
def test_validation_rules_of_the_original(section: str, key: str, value: Any, message: str) -> None:
    with pytest.raises(SettingsError, match=message) as info:
        Settings.from_dict(_with(section, key, value))
    assert str(info.value).startswith("validation failed: pet: ")


def test_update_probability_one_is_valid() -> None:
    assert Settings.from_dict(_with("pet", "update", 1.0)).pet.update == 1.0


@pytest.mark.parametrize(
    ("data_change", "message"),
    [
        (lambda d: d.pop("pet"), r"missing section \[pet\]"),
        (lambda d: d["pet"].pop("max_sum2_time"), r"missing field `max_sum2_time` in \[pet\]"),
        (lambda d: d["model"].pop("length"), r"missing field `length` in \[model\]"),
        (lambda d: d["api"].pop("bind_address"), r"missing field `bind_address` in \[api\]"),
        (lambda d: d["pet"].update(min_sum_count=-1), r"pet.min_sum_count must be a non-negative"),
        (lambda d: d["pet"].update(min_sum_count=1.5), r"pet.min_sum_count must be a non-negative"),
        (lambda d: d["pet"].update(min_sum_count=True), r"must be a non-negative integer"),
        (lambda d: d["pet"].update(sum="half"), r"pet.sum must be a number"),
        (lambda d: d["pet"].update(min_sum_time=-1), r"pet.min_sum_time must be a non-negative"),
        (lambda d: d["pet"].update(max_sum_time=float("inf")), r"max_sum_time must be a non-neg"),
        (lambda d: d["mask"].update(group_type="prime"), r"unknown GroupType 'prime'"),
        (lambda d: d["mask"].update(bound_type="B3"), r"unknown BoundType 'B3'"),
        (lambda d: d["mask"].update(model_type=3), r"mask.model_type must be a string"),
        (lambda d: d["model"].update(length="four"), r"model.length must be a non-negative"),
        (lambda d: d["api"].update(bind_address="localhost:8081"), r"not a socket address"),
        (lambda d: d["api"].update(bind_address="127.0.0.1"), r"not a socket address"),
        (lambda d: d["api"].update(bind_address="127.0.0.1:70000"), r"at most 65535"),
        (lambda d: d["api"].update(bind_address="::1:80"), r"not a socket address"),
        (lambda d: d.update(pet=[1]), r"\[pet\] must be a table"),
    ],
)
def test_loading_errors_name_the_key(data_change: Any, message: str) -> None:
    data = _minimal()
    data_change(data)
    with pytest.raises(SettingsError, match=message) as info:
        Settings.from_dict(data)
    assert str(info.value).startswith("configuration loading failed: ")


def test_numeric_strings_are_converted_like_environment_values() -> None:
    data = _minimal()
    data["pet"].update(sum="0.3", min_update_count="5", max_sum_time="60")
    s = Settings.from_dict(data)
    assert (s.pet.sum, s.pet.min_update_count, s.pet.max_sum_time) == (0.3, 5, 60.0)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read"):
        Settings.from_toml(tmp_path / "missing.toml", environ={})
    with pytest.raises(SettingsError, match="not valid TOML"):
        Settings.from_toml(_write(tmp_path, "[pet\nsum = "), environ={})


def test_insecure_min_counts_is_an_explicit_test_only_escape_hatch() -> None:
    with pytest.raises(SettingsError, match="at least 3"):
        Settings.for_tests(min_update_count=1)
    s = Settings.for_tests(min_update_count=1, insecure_min_counts=True)
    assert s.pet.min_update_count == 1 and MIN_UPDATE_COUNT == 3
    with pytest.raises(SettingsError, match="min_sum_count"):
        Settings.for_tests(min_sum_count=0, insecure_min_counts=True)
    # Not reachable from a file or the environment.
    data = _with("pet", "min_update_count", 1)
    data["insecure_min_counts"] = True
    with pytest.raises(SettingsError, match="at least 3"):
        Settings.from_dict(data)


# ----------------------------------------------------------------------------- the CLI


def _cli(*args: str, env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "xaynet_sdk.coordinator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        **kw,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (ORIGINAL_CONFIG.replace("min_update_count = 3", "min_update_count = 2"), "at least 3"),
        (ORIGINAL_CONFIG.replace('"Prime"', '"Prim"'), "unknown GroupType 'Prim'"),
        ("not toml [", "not valid TOML"),
        # TLS is asked for and the files are not there: no start, never plain HTTP instead.
        (ORIGINAL_CONFIG, "cannot read the certificate (api.tls_certificate) /app/ssl/tls.pem"),
    ],
)
def test_cli_exits_1_with_a_clear_message_on_a_bad_file(
    tmp_path: Path, text: str, message: str
) -> None:
    proc = _cli("-c", str(_write(tmp_path, text)))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, (out, err)
    # The last line (log lines of a file that loaded may come before a failed start).
    assert message in err and err.splitlines()[-1].startswith("xaynet-coordinator: ")


def test_cli_requires_c() -> None:
    proc = _cli()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "-c" in err


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    """``python -m xaynet_sdk.coordinator -c file`` with env overrides; SIGTERM ends it (0)."""
    text = ORIGINAL_CONFIG.replace(
        'bind_address = "127.0.0.1:8081"', 'bind_address = "127.0.0.1:0"'
    ).replace('tls_certificate = "/app/ssl/tls.pem"\ntls_key = "/app/ssl/tls.key"\n', "")
    text = text.split("\n[redis]")[0]  # in-memory state (the [redis] tests: test_coordinator_store)
    proc = _cli(
        "-c",
        str(_write(tmp_path, text)),
        "--model-dir",
        str(tmp_path / "models"),
        env={"XAYNET_PET__SUM": "0.25", "XAYNET_MODEL__LENGTH": "6"},
    )
    try:
        assert proc.stderr is not None
        url = None
        deadline = time.monotonic() + 30
        lines = []
        while time.monotonic() < deadline and url is None:
            line = proc.stderr.readline()
            lines.append(line)
            if "listening on " in line:
                url = line.split("listening on ", 1)[1].split()[0]
        assert url is not None, lines
        with urllib.request.urlopen(url + "/params", timeout=10) as response:
            params = RoundParameters.from_bytes(response.read())
        assert params.sum == 0.25 and params.model_length == 6
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "shutting down" in err
        assert "settings overridden by the environment: model.length, pet.sum" in "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_console_script_is_declared() -> None:
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert 'xaynet-coordinator = "xaynet_sdk.coordinator.__main__:main"' in pyproject
    from xaynet_sdk.coordinator.__main__ import main

    assert callable(main)
