"""A real InfluxDB 1.x server (Debian's ``influxdb`` package, ``influxd``) for tests.

``influxdb()`` is a context manager: a fresh server on free loopback ports with its data in a
temporary directory, stopped (and its files removed) at exit. ``query(url, db, q)`` returns the
series of an InfluxQL query as ``{measurement: [row dicts]}``. Without ``influxd`` the test
fails with the command that installs it: never a silent skip.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fault_servers import free_port

__all__ = ["influxdb", "query"]


@contextmanager
def influxdb() -> Iterator[str]:
    binary = shutil.which("influxd")
    if binary is None:
        pytest.fail("influxd is not installed: apt-get install influxdb (Debian's package)")
    directory = Path(tempfile.mkdtemp(prefix="xaynet-influxdb-"))
    http_port, rpc_port = free_port(), free_port()
    config = directory / "influxdb.conf"
    config.write_text(
        "reporting-disabled = true\n"
        f'bind-address = "127.0.0.1:{rpc_port}"\n'
        f'[meta]\n  dir = "{directory / "meta"}"\n'
        f'[data]\n  dir = "{directory / "data"}"\n  wal-dir = "{directory / "wal"}"\n'
        "  query-log-enabled = false\n"
        f'[http]\n  bind-address = "127.0.0.1:{http_port}"\n  log-enabled = false\n'
        "[monitor]\n  store-enabled = false\n"
    )
    log = (directory / "influxd.log").open("wb")
    proc = subprocess.Popen([binary, "-config", str(config)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/ping", timeout=5) as reply:
                    if reply.status == 204:
                        break
            except (OSError, urllib.error.URLError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"influxd did not start: {(directory / 'influxd.log').read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
        log.close()
        shutil.rmtree(directory, ignore_errors=True)


def query(url: str, db: str, q: str) -> dict[str, list[dict[str, Any]]]:
    params = urllib.parse.urlencode({"db": db, "q": q, "epoch": "ns"})
    with urllib.request.urlopen(f"{url}/query?{params}", timeout=15) as reply:
        data = json.loads(reply.read())
    series: dict[str, list[dict[str, Any]]] = {}
    for result in data["results"]:
        assert "error" not in result, result
        for s in result.get("series", []):
            rows = [dict(zip(s["columns"], values)) for values in s["values"]]
            series.setdefault(s["name"], []).extend(rows)
    return series
