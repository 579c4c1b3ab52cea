"""Where the workers run: processes of this machine (multiprocessing) or Ray actors.

A backend starts one :class:`~._engine.Engine` per :class:`~._engine.WorkerSpec` and hands the
runner each worker's reports (:meth:`Engine.drain`) as ``(worker, report)`` pairs. The
runner only polls :meth:`Backend.reports`; nothing else crosses the process boundary.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import queue
import threading
import time
from typing import Any, Optional, Protocol

from ._engine import Engine, WorkerSpec

__all__ = ["Backend", "MultiprocessingBackend", "RayBackend", "make_backend"]

#: Seconds between two reports of a worker.
REPORT_INTERVAL = 0.2


class Backend(Protocol):
    def start(self, url: str, specs: list[WorkerSpec]) -> None: ...

    def wait_started(self, timeout: float) -> list[float]:
        """Each worker's time to build its participants, once all are running."""
        ...

    def reports(self) -> list[tuple[int, dict[str, Any]]]: ...

    def stop(self) -> list[tuple[int, dict[str, Any]]]:
        """Stop every worker; their last reports."""
        ...


def _process_main(
    worker: int,
    url: str,
    spec: WorkerSpec,
    reports: "multiprocessing.Queue[tuple[str, int, Any]]",
    stop: Any,
) -> None:
    """A worker process: the engine in a thread, its reports to the queue until stopped."""
    try:
        engine = Engine(url, spec)
    except BaseException as e:  # noqa: BLE001 - reported to the runner, which raises it
        reports.put(("failed", worker, f"{type(e).__name__}: {e}"))
        return
    thread = threading.Thread(target=engine.run, name="xaynet-sim-engine", daemon=True)
    thread.start()
    reports.put(("started", worker, engine.startup_seconds))
    while not stop.wait(REPORT_INTERVAL):
        reports.put(("report", worker, engine.drain()))
        if not thread.is_alive():
            reports.put(("failed", worker, "the engine thread ended"))
            return
    engine.stop()
    thread.join(60)
    reports.put(("report", worker, engine.drain()))
    reports.put(("stopped", worker, None))


class MultiprocessingBackend:
    """One process per worker (``spawn`` by default: the embedded coordinator's threads are
    running in the parent, and forking a process with threads is unsafe)."""

    def __init__(self, start_method: str = "spawn") -> None:
        self._ctx: Any = multiprocessing.get_context(start_method)
        self._queue: "multiprocessing.Queue[tuple[str, int, Any]]" = self._ctx.Queue()
        self._stop = self._ctx.Event()
        self._processes: list[Any] = []
        self._pending: list[tuple[int, dict[str, Any]]] = []
        self._started: dict[int, float] = {}
        self._stopped: set[int] = set()

    def start(self, url: str, specs: list[WorkerSpec]) -> None:
        for worker, spec in enumerate(specs):
            process = self._ctx.Process(
                target=_process_main,
                args=(worker, url, spec, self._queue, self._stop),
                name=f"xaynet-sim-{worker}",
                daemon=True,
            )
            process.start()
            self._processes.append(process)

    def _pump(self, timeout: float) -> None:
        try:
            kind, worker, payload = self._queue.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            if kind == "failed":
                raise RuntimeError(f"simulation worker {worker} failed: {payload}")
            if kind == "started":
                self._started[worker] = float(payload)
            elif kind == "report":
                self._pending.append((worker, payload))
            elif kind == "stopped":
                self._stopped.add(worker)
            try:
                kind, worker, payload = self._queue.get_nowait()
            except queue.Empty:
                return

    def wait_started(self, timeout: float) -> list[float]:
        deadline = time.monotonic() + timeout
        while len(self._started) < len(self._processes):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(self._started)} of {len(self._processes)} simulation workers started"
                    f" in {timeout:g} s"
                )
            dead = [p.name for p in self._processes if p.exitcode not in (None, 0)]
            if dead:
                self._pump(0.5)  # its reason, if it sent one
                raise RuntimeError(f"simulation workers died while starting: {dead}")
            self._pump(0.1)
        return [self._started[w] for w in sorted(self._started)]

    def reports(self) -> list[tuple[int, dict[str, Any]]]:
        self._pump(0)
        dead = [p.name for p in self._processes if p.exitcode is not None]
        if dead:
            self._pump(0.5)  # its reason, if it sent one
            raise RuntimeError(f"simulation workers ended unexpectedly: {dead}")
        pending, self._pending = self._pending, []
        return pending

    def stop(self) -> list[tuple[int, dict[str, Any]]]:
        self._stop.set()
        deadline = time.monotonic() + 90
        alive = [p for p in self._processes if p.exitcode is None]
        while len(self._stopped) < len(alive) and time.monotonic() < deadline:
            try:
                self._pump(0.2)
            except RuntimeError:
                break
        for process in self._processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                process.kill()
                process.join()
        pending, self._pending = self._pending, []
        self._queue.close()
        return pending


class RayBackend:
    """One Ray actor per worker, on a Ray cluster (``address``) or a local Ray instance.

    Ray is an optional dependency (``pip install 'xaynet-sdk[ray]'``). A Ray instance this
    backend started is shut down by :meth:`stop`; one the caller started is left running.
    """

    def __init__(self, address: Optional[str] = None, num_cpus: float = 1.0) -> None:
        try:
            ray: Any = importlib.import_module("ray")
        except ImportError:
            raise RuntimeError("the ray backend needs Ray: pip install 'xaynet-sdk[ray]'") from None
        self._ray = ray
        self._owns = not ray.is_initialized()
        if self._owns:
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=True,
                configure_logging=False,
                ignore_reinit_error=True,
            )
        self._num_cpus = num_cpus
        self._actors: list[Any] = []
        self._inflight: dict[int, Any] = {}

    def start(self, url: str, specs: list[WorkerSpec]) -> None:
        actor = self._ray.remote(num_cpus=self._num_cpus)(_RayWorker)
        self._actors = [actor.remote(url, spec) for spec in specs]

    def wait_started(self, timeout: float) -> list[float]:
        refs = [a.startup_seconds.remote() for a in self._actors]
        return [float(s) for s in self._ray.get(refs, timeout=timeout)]

    def reports(self) -> list[tuple[int, dict[str, Any]]]:
        out: list[tuple[int, dict[str, Any]]] = []
        for worker, actor in enumerate(self._actors):
            ref = self._inflight.get(worker)
            if ref is None:
                self._inflight[worker] = actor.drain.remote()
                continue
            ready, _ = self._ray.wait([ref], timeout=0)
            if ready:
                out.append((worker, self._ray.get(ref)))
                self._inflight[worker] = actor.drain.remote()
        return out

    def stop(self) -> list[tuple[int, dict[str, Any]]]:
        out: list[tuple[int, dict[str, Any]]] = []
        for worker, ref in self._inflight.items():
            out.append((worker, self._ray.get(ref, timeout=60)))
        self._inflight.clear()
        finals = self._ray.get([a.stop.remote() for a in self._actors], timeout=90)
        out.extend(enumerate(finals))
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors = []
        if self._owns:
            self._ray.shutdown()
        return out


class _RayWorker:
    """The Ray actor: the engine in a thread of the actor's process."""

    def __init__(self, url: str, spec: WorkerSpec) -> None:
        self.engine = Engine(url, spec)
        self.thread = threading.Thread(target=self.engine.run, name="xaynet-sim-engine")
        self.thread.start()

    def startup_seconds(self) -> float:
        return self.engine.startup_seconds

    def pid(self) -> int:
        return os.getpid()

    def drain(self) -> dict[str, Any]:
        return self.engine.drain()

    def stop(self) -> dict[str, Any]:
        self.engine.stop()
        self.thread.join(60)
        return self.engine.drain()


def make_backend(name: str, ray_address: Optional[str] = None) -> Backend:
    if name == "multiprocessing":
        return MultiprocessingBackend()
    if name == "ray":
        return RayBackend(ray_address)
    raise ValueError(f"unknown backend {name!r} (multiprocessing or ray)")
