"""Real servers for the coordinator's state and model stores: ``redis-server`` and moto's S3.

* :class:`RedisServer`: a ``redis-server`` process on a free loopback port, in its own
  temporary directory, with persistence on (append-only file, fsync on every write), so that
  the Redis process itself can be stopped and started again with its data.
* :class:`MotoServer`: moto's standalone S3 server (``moto.server``) in a subprocess, over
  real HTTP on a free loopback port.
* fixtures ``redis_server`` and ``s3_server`` start one per test and stop it at teardown.

A missing ``redis-server`` or moto fails loudly (``.ci/run`` installs ``redis-server``;
``pip install -e '.[test]'`` installs moto): never a skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

__all__ = ["MotoServer", "RedisServer", "free_port", "redis_server", "s3_server"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} at start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not listen on port {port} in {timeout} s") from None
            time.sleep(0.05)


class RedisServer:
    """``redis-server`` on 127.0.0.1, data in ``directory``; :meth:`stop` and :meth:`start`
    again keep the data (a graceful stop saves it; the append-only file has every write)."""

    def __init__(self, directory: Path, *, appendfsync: str = "always") -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError(
                "redis-server is not installed: apt-get install -y redis-server (.ci/run does)"
            )
        self.executable = executable
        self.directory = directory
        self.appendfsync = appendfsync
        self.port = free_port()
        self.proc: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        self.directory.mkdir(parents=True, exist_ok=True)
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                self.executable,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--appendonly", "yes",
                "--appendfsync", self.appendfsync,
                "--save", "",
                "--daemonize", "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        _wait_for_port(self.port, self.proc, "redis-server", 30)
        return self

    def stop(self) -> None:
        """SIGTERM (Redis flushes and exits), then wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.proc = None

    def client(self) -> Any:
        """A redis-py client (Any: redis-py's generic types are not worth spelling here)."""
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=10)


class MotoServer:
    """moto's S3 server in a subprocess: ``endpoint`` is its ``http://127.0.0.1:PORT``."""

    ACCESS_KEY = "test-access-key"
    SECRET_KEY = "test-secret-key"
    REGION = "us-east-1"

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: Optional[subprocess.Popen[bytes]] = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log: Path) -> "MotoServer":
        env = dict(os.environ, AWS_ACCESS_KEY_ID=self.ACCESS_KEY)
        out = open(log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        out.close()
        _wait_for_port(self.port, self.proc, "moto.server", 60)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.proc = None

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            region_name=self.REGION,
            endpoint_url=self.endpoint,
            aws_access_key_id=self.ACCESS_KEY,
            aws_secret_access_key=self.SECRET_KEY,
        )


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_server(tmp_path: Path) -> Iterator[MotoServer]:
    server = MotoServer().start(tmp_path / "moto.log")
    try:
        yield server
    finally:
        server.stop()
