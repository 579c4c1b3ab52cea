"""Prometheus metrics of the coordinator (``[metrics.prometheus]``): what the original records
in InfluxDB (phase, round id and parameters, messages accepted/rejected/discarded, masks),
plus participants, durations and global models, scraped over real HTTP while rounds run."""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import time
import urllib.request
from typing import Any

import pytest
from coordinator_fixtures import (
    RawClient,
    RawParticipant,
    RoundContext,
    local_coordinator,
    raw_round_settings,
    run_round,
)
from fault_servers import free_port
from influxdb_server import influxdb, query
from prometheus_client.parser import text_string_to_metric_families

from xaynet_sdk.coordinator import LocalCoordinator, Phase, Settings, SettingsError
from xaynet_sdk.coordinator.settings import MetricsSettings

pytestmark = pytest.mark.timeout(180)

__all__ = ["local_coordinator"]  # the fixture, imported for pytest

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _with_prometheus(settings: Settings) -> Settings:
    metrics = MetricsSettings(prometheus_host="127.0.0.1", prometheus_port=0)
    return dataclasses.replace(settings, metrics=metrics)


def scrape(coord: LocalCoordinator) -> Samples:
    """Every sample of ``GET /metrics``, keyed by (name, sorted labels)."""
    assert coord.metrics_port is not None
    url = f"http://127.0.0.1:{coord.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=15) as reply:
        assert reply.status == 200
        text = reply.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def coord() -> Any:
    coordinator = LocalCoordinator(_with_prometheus(raw_round_settings(sum=0.4, update=0.8)))
    coordinator.start()
    yield coordinator
    coordinator.stop()


def test_metrics_follow_a_round(coord: LocalCoordinator) -> None:
    before = scrape(coord)
    assert value(before, "xaynet_round_id") == 1
    assert value(before, "xaynet_phase") == 1  # the original's number for Sum
    assert value(before, "xaynet_phase_state", phase="Sum") == 1
    assert value(before, "xaynet_phase_state", phase="Update") == 0
    assert value(before, "xaynet_round_param_sum") == 0.4
    assert value(before, "xaynet_round_param_update") == 0.8
    assert value(before, "xaynet_global_models_total") == 0
    assert ("xaynet_messages_accepted_total", (("phase", "Sum"),)) in before

    during: dict[str, Samples] = {}

    def in_sum2(ctx: RoundContext) -> None:
        key = ("xaynet_phase_duration_seconds_count", (("phase", "Update"),))
        deadline = time.monotonic() + 30  # the thread that times phases may lag a little
        while key not in (samples := scrape(coord)) and time.monotonic() < deadline:
            time.sleep(0.05)
        during["sum2"] = samples

    run_round(coord, hooks={"sum2": in_sum2})
    mid = during["sum2"]
    assert value(mid, "xaynet_phase") == 3
    assert value(mid, "xaynet_round_participants", phase="Sum") == 2
    assert value(mid, "xaynet_round_participants", phase="Update") == 3
    assert value(mid, "xaynet_round_participants", phase="Sum2") == 1
    assert value(mid, "xaynet_masks_total_number") == 1
    assert value(mid, "xaynet_phase_duration_seconds_count", phase="Sum") == 1
    assert value(mid, "xaynet_phase_duration_seconds_count", phase="Update") == 1

    coord.wait_for_phase(Phase.SUM, timeout=30, round_id=2)
    client = RawClient(coord.url)
    try:
        assert client.post(b"\x00" * 200) == 200  # does not decrypt: rejected
    finally:
        client.close()

    # Durations are observed by a thread that follows the phases, and a request is counted
    # once its reply is written, which the client may see first: give both a moment.
    def settled(sample: Any) -> bool:
        posts = value(
            sample, "xaynet_http_requests_total", method="POST", path="/message", status="200"
        )
        return value(sample, "xaynet_round_duration_seconds_count") >= 1 and posts >= 8

    deadline = time.monotonic() + 30
    while not settled(after := scrape(coord)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert value(after, "xaynet_round_id") == 2
    assert value(after, "xaynet_phase") == 1
    assert value(after, "xaynet_round_participants", phase="Sum") == 0
    assert value(after, "xaynet_masks_total_number") == 0
    assert value(after, "xaynet_global_models_total") == 1
    assert value(after, "xaynet_rounds_completed_total") == 1
    assert value(after, "xaynet_messages_accepted_total", phase="Sum") == 2
    assert value(after, "xaynet_messages_accepted_total", phase="Update") == 3
    assert value(after, "xaynet_messages_accepted_total", phase="Sum2") == 2
    assert value(after, "xaynet_messages_rejected_total", phase="Sum", reason="decrypt") == 1
    assert value(after, "xaynet_round_duration_seconds_count") == 1
    assert value(after, "xaynet_phase_duration_seconds_count", phase="Sum2") == 1
    assert (
        value(after, "xaynet_http_requests_total", method="POST", path="/message", status="200")
        == 8
    )
    # The same numbers as the coordinator's own counters.
    stats = coord.stats
    assert stats["accepted"] == {"Sum": 2, "Update": 3, "Sum2": 2}
    assert stats["rejected_by_phase"] == {"Sum": {"decrypt": 1}}


def test_discarded_messages_are_counted_apart() -> None:
    settings = raw_round_settings(
        max_sum_count=2, max_sum2_count=2, min_sum_time=10, max_sum_time=30
    )
    coordinator = LocalCoordinator(_with_prometheus(settings)).start()
    try:
        client = RawClient(coordinator.url)
        params = client.params()
        for _ in range(3):
            summer = RawParticipant.with_role(params, "sum")
            assert client.post(summer.sealed(params, summer.sum_payload(params))) == 200
        client.close()
        samples = scrape(coordinator)
    finally:
        coordinator.stop()
    assert value(samples, "xaynet_messages_accepted_total", phase="Sum") == 2
    assert value(samples, "xaynet_messages_discarded_total", phase="Sum") == 1
    assert not [k for k in samples if k[0] == "xaynet_messages_rejected_total"]


def test_stop_ends_the_metrics_endpoint_and_threads() -> None:
    coordinator = LocalCoordinator(_with_prometheus(raw_round_settings())).start()
    port = coordinator.metrics_port
    assert port is not None and scrape(coordinator)
    coordinator.stop()
    assert not [t for t in threading.enumerate() if t.name.startswith("xaynet-coordinator")]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_metrics_are_off_by_default(local_coordinator: Any) -> None:
    coordinator = local_coordinator()
    assert coordinator.settings.metrics == MetricsSettings()
    assert coordinator.metrics_port is None


def _with_influxdb(settings: Settings, url: str, db: str) -> Settings:
    return dataclasses.replace(settings, metrics=MetricsSettings(influxdb_url=url, influxdb_db=db))


def test_influxdb_receives_the_original_measurements() -> None:
    """A real influxd: the original's measurements, fields and tags, for a round and a half."""
    with influxdb() as url:
        settings = _with_influxdb(raw_round_settings(sum=0.4, update=0.8), url, "xaynet")
        coordinator = LocalCoordinator(settings).start()
        try:
            run_round(coordinator)
            coordinator.wait_for_phase(Phase.SUM, timeout=30, round_id=2)
            client = RawClient(coordinator.url)
            try:
                assert client.post(b"\x00" * 200) == 200  # rejected (does not decrypt)
            finally:
                client.close()
        finally:
            coordinator.stop()  # flushes the queued points
        assert not [t for t in threading.enumerate() if t.name.startswith("xaynet-coordinator")]
        series = query(url, "xaynet", "SELECT * FROM /.*/")
    phases = [row["value"] for row in series["phase"]]
    assert phases == [0, 1, 2, 3, 4, 0, 1, 6]  # Idle, Sum, ... Unmask, round 2, Shutdown
    assert [row["value"] for row in series["round_total_number"]] == [1, 2]
    params = {(r["round_id"], r["phase"], r["value"]) for r in series["round_param_sum"]}
    assert params == {("1", "0", 0.4), ("2", "0", 0.4)}
    params = {(r["round_id"], r["phase"], r["value"]) for r in series["round_param_update"]}
    assert params == {("1", "0", 0.8), ("2", "0", 0.8)}
    for name, phase, count in (("message_sum", "1", 2), ("message_update", "2", 3)):
        rows = series[name]
        assert len(rows) == count and {(r["round_id"], r["phase"], r["value"]) for r in rows} == {
            ("1", phase, 1)
        }
    assert len(series["message_sum2"]) == 2
    assert [(r["round_id"], r["phase"]) for r in series["message_rejected"]] == [("2", "1")]
    assert [(r["round_id"], r["phase"], r["value"]) for r in series["masks_total_number"]] == [
        ("1", "4", 1)
    ]
    assert "message_discarded" not in series and "event" not in series


def test_an_absent_influxdb_is_a_warning_not_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://user:secret@127.0.0.1:{free_port()}"  # nothing listens there
    settings = _with_influxdb(raw_round_settings(), url, "m")
    assert settings.metrics.influxdb_url == url
    with caplog.at_level(logging.DEBUG, logger="xaynet_sdk.coordinator"):
        with LocalCoordinator(settings) as coordinator:
            run_round(coordinator)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "InfluxDB at http://127.0.0.1:" in w]) == 1
    assert "secret" not in caplog.text  # credentials of the URL are never logged


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({"influxdb": {"url": "not a url", "db": "m"}}, "metrics.influxdb.url"),
        ({"influxdb": {"url": "http://localhost:8086"}}, "missing field `db`"),
        ({"prometheus": {"bind_address": "localhost:9100"}}, "metrics.prometheus.bind_address"),
        ({"prometheus": {}}, "missing field `bind_address`"),
    ],
)
def test_metrics_settings_are_validated(metrics: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_dict(_sections(metrics=metrics))


def test_prometheus_bind_address_from_the_environment(tmp_path: Any) -> None:
    config = tmp_path / "config.toml"
    config.write_text(_toml())
    settings = Settings.from_toml(
        config, environ={"XAYNET_METRICS__PROMETHEUS__BIND_ADDRESS": "127.0.0.1:9464"}
    )
    assert (settings.metrics.prometheus_host, settings.metrics.prometheus_port) == (
        "127.0.0.1",
        9464,
    )


def _sections(**extra: Any) -> dict[str, Any]:
    settings = raw_round_settings()
    pet = dataclasses.asdict(settings.pet)
    return {
        "api": {"bind_address": "127.0.0.1:0"},
        "pet": pet,
        "mask": {
            "group_type": "Prime",
            "data_type": "F32",
            "bound_type": "B0",
            "model_type": "M3",
        },
        "model": {"length": 4},
        **extra,
    }


def _toml() -> str:
    data = _sections()
    lines = ['[api]\nbind_address = "127.0.0.1:0"', "[pet]"]
    lines += [f"{k} = {v}" for k, v in data["pet"].items()]
    lines += ["[mask]"] + [f'{k} = "{v}"' for k, v in data["mask"].items()]
    lines += ["[model]", "length = 4", ""]
    return "\n".join(lines)
