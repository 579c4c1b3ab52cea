"""The fuzzing campaign: ``python fuzz/run.py [--inputs 100000] [target ...]``.

Each target (see :mod:`fuzz.targets`) runs in its own worker process, so that a crash in C
(a segfault, an AddressSanitizer abort: the C decoder runs without the GIL, outside Python's
reach) or a hang that never gives the GIL back ends only that worker. The parent then saves
the input that was running to ``fuzz/crashes/`` (the worker copies every input into a small
shared-memory file before running it) and carries on with the next target.

Inputs are built by a hand-written structure-aware mutator (:mod:`fuzz.mutate`): valid
encodings made with the package's encoders (seeds, plus fresh ones generated with random
parameters), mutated with bit flips, byte inserts and deletes, integer and length-field
tweaks and splicing, plus plain random bytes. Inputs that produce an outcome not seen before
(the exception class and message, numbers blanked) join the corpus: a cheap stand-in for
coverage feedback. Everything is drawn from one seeded RNG per target: ``--seed`` reproduces
a campaign.

Per input: anything but the decoder's documented exceptions is a *crash*; an input that runs
longer than ``--time-limit`` (1 s) is a *hang*. Both are saved (``<target>-crash-<hash>.bin``
with a ``.txt`` traceback, ``<target>-hang-<hash>.bin``) and counted; a worker stuck longer
than ``--hard-limit`` is killed. The summary table gives the inputs run per target; the exit
status is 1 if anything crashed or hung. ``--reproduce FILE`` runs one saved input again.
"""

from __future__ import annotations

import argparse
import faulthandler
import hashlib
import json
import logging
import mmap
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fuzz.mutate import Mutator, random_bytes  # noqa: E402
from fuzz.targets import TARGETS, Target, all_seeds, get_target  # noqa: E402

__all__ = ["CRASH_DIR", "Result", "decoded", "fuzz_target", "main", "run_campaign"]

CRASH_DIR = ROOT / "fuzz" / "crashes"
_RESULT_PREFIX = "FUZZ-RESULT "
_INFLIGHT_CAPACITY = 1 << 17
_MAX_POOL = 4000
_MAX_SAVED_PER_KIND = 20


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass
class Finding:
    """A crash or hang: what happened and where its input was saved."""

    kind: str  # "crash", "hang" or "fatal" (the worker process died)
    summary: str
    path: str
    count: int = 1


@dataclass
class Result:
    target: str
    inputs: int = 0
    decoded: int = 0
    rejected: int = 0
    crashes: int = 0
    hangs: int = 0
    features: int = 0
    max_seconds: float = 0.0
    seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)
    note: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.crashes or self.hangs or any(f.kind == "fatal" for f in self.findings))

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Result":
        raw = json.loads(text)
        raw["findings"] = [Finding(**f) for f in raw["findings"]]
        return cls(**raw)


_SUCCESS = ("ok", "verified", "accepted", "buffered", "rebuilt")


def decoded(feature: str) -> bool:
    """True if the input got through (any of) the target's decoders without an error."""
    return any(part.split(" ")[0] in _SUCCESS for part in feature.split(" | "))


def _save(crash_dir: Path, target: str, kind: str, data: bytes, text: str = "") -> Path:
    crash_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(data).hexdigest()[:12]
    path = crash_dir / f"{target}-{kind}-{digest}.bin"
    path.write_bytes(data)
    if text:
        path.with_suffix(".txt").write_text(text)
    return path


def _signature(error: BaseException) -> str:
    """The exception type and the innermost frame in this repository: one bug, one entry."""
    frames = traceback.extract_tb(error.__traceback__)
    where = "?"
    for frame in reversed(frames):
        if str(ROOT) in frame.filename:
            where = f"{Path(frame.filename).relative_to(ROOT)}:{frame.lineno}"
            break
    return f"{type(error).__name__} at {where}"


# ---------------------------------------------------------------------------------------------
# The in-flight input (shared with the parent) and the watchdog
# ---------------------------------------------------------------------------------------------


class Inflight:
    """A file-backed shared map holding the input being run: ``count u64 ‖ len u64 ‖ bytes``.

    The worker writes each input before running it; if the worker dies or hangs, the parent
    reads the input back from the file.
    """

    def __init__(self, path: Path, create: bool) -> None:
        self.path = path
        if create:
            path.write_bytes(bytes(16 + _INFLIGHT_CAPACITY))
        self._file = open(path, "r+b")  # noqa: SIM115 - closed in close()
        self._map = mmap.mmap(self._file.fileno(), 16 + _INFLIGHT_CAPACITY)

    def set(self, index: int, data: bytes) -> None:
        n = min(len(data), _INFLIGHT_CAPACITY)
        self._map[16 : 16 + n] = data[:n]
        self._map[0:16] = struct.pack("<QQ", index + 1, n)

    def read(self) -> tuple[int, bytes]:
        count, n = struct.unpack("<QQ", self._map[0:16])
        return count, bytes(self._map[16 : 16 + min(n, _INFLIGHT_CAPACITY)])

    def close(self) -> None:
        self._map.close()
        self._file.close()


class _Watchdog(threading.Thread):
    """Saves an input that runs past the time limit; ends the process past the hard limit."""

    def __init__(self, target: str, limit: float, hard_limit: float, crash_dir: Path) -> None:
        super().__init__(daemon=True, name=f"fuzz-watchdog-{target}")
        self.target = target
        self.limit = limit
        self.hard_limit = hard_limit
        self.crash_dir = crash_dir
        self._lock = threading.Lock()
        self._data: Optional[bytes] = None
        self._start = 0.0
        self._reported = False
        self._stop = threading.Event()
        self.saved: list[Path] = []

    def begin(self, data: bytes) -> None:
        with self._lock:
            self._data = data
            self._start = time.monotonic()
            self._reported = False

    def end(self) -> bool:
        """True if the watchdog already reported this input as a hang."""
        with self._lock:
            self._data = None
            return self._reported

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        while not self._stop.wait(0.05):
            with self._lock:
                data, start, reported = self._data, self._start, self._reported
                if data is None:
                    continue
                elapsed = time.monotonic() - start
                if elapsed > self.limit and not reported:
                    self._reported = True
                    self.saved.append(_save(self.crash_dir, self.target, "hang", data))
            if elapsed > self.hard_limit:
                sys.stderr.write(
                    f"fuzz: {self.target}: an input has run for {elapsed:.0f} s; giving up\n"
                )
                faulthandler.dump_traceback(all_threads=True)
                sys.stderr.flush()
                os._exit(3)


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------


class _Inputs:
    """The input stream: random bytes, fresh valid encodings, and mutations of the corpus."""

    def __init__(self, target: Target, rng: random.Random) -> None:
        self.target = target
        self.rng = rng
        self.mutator = Mutator(rng, max_size=target.max_size)
        self.pool: list[bytes] = all_seeds(target)
        self._pending = list(self.pool)  # every seed runs once, unmutated, first

    def next(self) -> bytes:
        if self._pending:
            return self._pending.pop(0)
        rng = self.rng
        roll = rng.random()
        if roll < 0.07:
            data = random_bytes(rng, min(self.target.max_size, 4096))
        elif roll < 0.2:
            data = self.target.generate(rng)
        else:
            base = rng.choice(self.pool)
            data = self.mutator.mutate(base, self.pool)
        return data[: self.target.max_size]

    def keep(self, data: bytes) -> None:
        if len(self.pool) < _MAX_POOL:
            self.pool.append(data)
        else:
            self.pool[self.rng.randrange(len(self.pool))] = data


def fuzz_target(
    target: Target,
    inputs: int,
    *,
    seed: int = 0,
    time_limit: float = 1.0,
    hard_limit: float = 60.0,
    crash_dir: Path = CRASH_DIR,
    inflight: Optional[Inflight] = None,
    progress: Optional[Callable[[int], None]] = None,
) -> Result:
    """Run ``inputs`` inputs through ``target`` in this process; see the module docstring."""
    result = Result(target.name)
    rng = random.Random(f"xaynet-fuzz:{seed}:{target.name}")
    if target.setup is not None:
        target.setup()
    stream = _Inputs(target, rng)
    features: set[str] = set()
    crashes: dict[str, Finding] = {}
    watchdog = _Watchdog(target.name, time_limit, hard_limit, crash_dir)
    watchdog.start()
    started = time.perf_counter()
    try:
        for i in range(inputs):
            data = stream.next()
            if inflight is not None:
                inflight.set(i, data)
            watchdog.begin(data)
            t0 = time.perf_counter()
            try:
                feature = target.run(data)
            except Exception as error:  # noqa: BLE001 - undocumented: that is the finding
                feature = f"crash {type(error).__name__}"
                _record_crash(result, crashes, crash_dir, target.name, data, error)
            elapsed = time.perf_counter() - t0
            already = watchdog.end()
            result.inputs += 1
            result.max_seconds = max(result.max_seconds, elapsed)
            if elapsed > time_limit:
                result.hangs += 1
                if not already and result.hangs <= _MAX_SAVED_PER_KIND:
                    path = _save(crash_dir, target.name, "hang", data)
                    result.findings.append(Finding("hang", f"{elapsed:.2f} s", str(path)))
                elif already and watchdog.saved:
                    result.findings.append(
                        Finding("hang", f"{elapsed:.2f} s", str(watchdog.saved[-1]))
                    )
            if decoded(feature):
                result.decoded += 1
            elif not feature.startswith("crash"):
                result.rejected += 1
            if feature not in features:
                features.add(feature)
                stream.keep(data)
            if progress is not None and (i + 1) % 1000 == 0:
                progress(i + 1)
    finally:
        watchdog.stop()
        result.seconds = time.perf_counter() - started
        result.features = len(features)
    return result


def _record_crash(
    result: Result,
    crashes: dict[str, Finding],
    crash_dir: Path,
    target: str,
    data: bytes,
    error: BaseException,
) -> None:
    result.crashes += 1
    key = _signature(error)
    if key in crashes:
        crashes[key].count += 1
        return
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    path = _save(crash_dir, target, "crash", data, text) if len(crashes) < 50 else Path("-")
    finding = Finding("crash", f"{key}: {str(error)[:200]}", str(path))
    crashes[key] = finding
    result.findings.append(finding)


# ---------------------------------------------------------------------------------------------
# Workers and the campaign
# ---------------------------------------------------------------------------------------------


def _quiet_logging() -> None:
    """The decoders log rejections (coordinator, reassembler); millions of lines help no one."""
    logging.getLogger("xaynet_sdk").setLevel(logging.CRITICAL)


def _worker(args: argparse.Namespace) -> int:
    faulthandler.enable()  # a fatal signal (segfault, abort, SIGABRT from the parent) dumps
    _quiet_logging()
    target = get_target(args.worker)
    if args.selftest:
        target = _selftest(target, args.selftest)
    inflight = Inflight(Path(args.inflight), create=False) if args.inflight else None
    if args.engine == "atheris":
        return _atheris_worker(target, args, inflight)
    result = fuzz_target(
        target,
        args.inputs,
        seed=args.seed,
        time_limit=args.time_limit,
        hard_limit=args.hard_limit,
        crash_dir=Path(args.crash_dir),
        inflight=inflight,
    )
    sys.stdout.write(_RESULT_PREFIX + result.to_json() + "\n")
    sys.stdout.flush()
    return 0


def _atheris_worker(target: Target, args: argparse.Namespace, inflight: Optional[Inflight]) -> int:
    """The same target under libFuzzer (``pip install atheris``): coverage-guided, the Python
    code instrumented; half the mutations are libFuzzer's, half this package's structure-aware
    ones, and a tenth of the inputs are fresh valid encodings. libFuzzer stops at the first
    crash (the parent saves the input) and treats an input over the time limit as a hang."""
    import atheris  # type: ignore[import-untyped]  # optional, this engine only

    # Coverage comes from instrumenting the package's bytecode as it is imported, so import
    # it (and the targets built on it) again, this time under the instrumentation.
    for module in list(sys.modules):
        if module.split(".")[0] == "xaynet_sdk" or module == "fuzz.targets":
            del sys.modules[module]
    with atheris.instrument_imports(include=["xaynet_sdk"]):
        import fuzz.targets as instrumented
    target = instrumented.get_target(target.name)
    if target.setup is not None:
        target.setup()
    rng = random.Random(f"xaynet-fuzz:{args.seed}:{target.name}")
    mutator = Mutator(rng, max_size=target.max_size)
    seeds = all_seeds(target)
    corpus = Path(tempfile.mkdtemp(prefix=f"xaynet-fuzz-{target.name}-"))
    for i, seed in enumerate(seeds):
        (corpus / f"seed-{i}").write_bytes(seed)
    result = Result(target.name)
    features: set[str] = set()
    started = time.perf_counter()

    def mutate(data: bytes, max_size: int, seed: int) -> bytes:
        rng.seed(seed)
        roll = rng.random()
        if roll < 0.1:
            return target.generate(rng)[:max_size]
        if roll < 0.55:
            return bytes(atheris.Mutate(data, max_size))
        return mutator.mutate(data, seeds)[:max_size]

    def one(data: bytes) -> None:
        if inflight is not None:
            inflight.set(result.inputs, data)
        t0 = time.perf_counter()
        feature = target.run(data)  # anything undocumented: libFuzzer reports a crash
        result.max_seconds = max(result.max_seconds, time.perf_counter() - t0)
        result.inputs += 1
        if decoded(feature):
            result.decoded += 1
        else:
            result.rejected += 1
        features.add(feature)
        if result.inputs >= args.inputs:
            result.features = len(features)
            result.seconds = time.perf_counter() - started
            result.note = "engine: atheris (libFuzzer)"
            sys.stdout.write(_RESULT_PREFIX + result.to_json() + "\n")
            sys.stdout.flush()
            os._exit(0)

    atheris.Setup(
        [
            sys.argv[0],
            str(corpus),
            f"-timeout={max(1, round(args.time_limit))}",
            f"-max_len={target.max_size}",
            f"-seed={args.seed + 1}",
            f"-artifact_prefix={Path(args.crash_dir)}/{target.name}-atheris-",
        ],
        one,
        custom_mutator=mutate,
    )
    Path(args.crash_dir).mkdir(parents=True, exist_ok=True)
    atheris.Fuzz()
    return 0  # pragma: no cover - libFuzzer exits the process


def _selftest(target: Target, how: str) -> Target:
    """The target, except that its 50th input crashes the process the way a C bug would.

    ``segv`` raises SIGSEGV (what a bad pointer in the C core ends in); ``gil-hang``
    sleeps in C *holding* the GIL (no Python thread can run: only the parent can notice).
    For the engine's own tests: they check that the parent saves that input.
    """
    import ctypes

    calls = 0

    def run(data: bytes) -> str:
        nonlocal calls
        calls += 1
        if calls == 50:
            if how == "segv":
                os.kill(os.getpid(), signal.SIGSEGV)  # what a bad pointer in C ends in
            elif how == "gil-hang":
                ctypes.PyDLL(None).sleep(3600)
        return target.run(data)

    return replace(target, run=run)


@dataclass
class _Running:
    target: str
    process: "subprocess.Popen[str]"
    inflight: Inflight
    stderr_path: Path
    last_count: int = 0
    last_change: float = field(default_factory=time.monotonic)
    hang_saved: bool = False
    killed: bool = False


def _spawn(target: str, args: argparse.Namespace, workdir: Path) -> _Running:
    inflight_path = workdir / f"{target}.inflight"
    inflight = Inflight(inflight_path, create=True)
    stderr_path = workdir / f"{target}.stderr"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        target,
        "--inputs",
        str(args.inputs),
        "--seed",
        str(args.seed),
        "--time-limit",
        str(args.time_limit),
        "--hard-limit",
        str(args.hard_limit),
        "--crash-dir",
        str(args.crash_dir),
        "--inflight",
        str(inflight_path),
    ]
    if args.selftest:
        command += ["--selftest", args.selftest]
    if args.engine != "builtin":
        command += ["--engine", args.engine]
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
    return _Running(target, process, inflight, stderr_path)


def _finish(run: _Running, args: argparse.Namespace) -> Result:
    out, _ = run.process.communicate()
    count, data = run.inflight.read()
    run.inflight.close()
    stderr = run.stderr_path.read_text(errors="replace")
    for line in out.splitlines():
        if line.startswith(_RESULT_PREFIX):
            return Result.from_json(line[len(_RESULT_PREFIX) :])
    # The worker died: the input in flight is the culprit.
    code = run.process.returncode
    how = f"signal {-code}" if code < 0 else f"exit status {code}"
    if run.killed:
        how = f"no progress for {args.hard_limit:g} s, killed"
    hung = run.killed or "ALARM: working on the last Unit" in stderr  # libFuzzer's timeout
    kind = "hang" if hung else "fatal"
    path = _save(Path(args.crash_dir), run.target, kind, data, stderr[-20000:])
    result = Result(run.target, inputs=max(count, 0))
    if hung:
        result.hangs = 1
    else:
        result.crashes = 1
    result.findings.append(Finding(kind, f"worker died ({how})", str(path)))
    result.note = _first_error_line(stderr)
    return result


def _first_error_line(stderr: str) -> str:
    """The line that says what killed a worker (faulthandler, a sanitizer, Python)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    markers = ("Fatal Python error", "ERROR: AddressSanitizer", "runtime error", "ALARM:")
    for i, line in enumerate(lines):
        if "Uncaught Python exception" in line and i + 1 < len(lines):
            return lines[i + 1][:200]  # atheris: the exception follows
        if line.startswith(markers) or any(m in line for m in markers[1:3]):
            return line[:200]
    return lines[-1][:200] if lines else ""


def _watch(run: _Running, args: argparse.Namespace) -> None:
    """Kill a worker whose input counter has not moved for the hard limit (a hang in C)."""
    count, data = run.inflight.read()
    now = time.monotonic()
    if count != run.last_count:
        run.last_count, run.last_change, run.hang_saved = count, now, False
        return
    stuck = now - run.last_change
    if stuck > args.time_limit and not run.hang_saved and count > 0:
        run.hang_saved = True
        _save(Path(args.crash_dir), run.target, "hang", data)
    if stuck > args.hard_limit and not run.killed:
        run.killed = True
        try:
            run.process.send_signal(signal.SIGABRT)  # faulthandler prints where it is stuck
            run.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            run.process.kill()


def run_campaign(targets: Sequence[str], args: argparse.Namespace) -> list[Result]:
    """Every target in a worker process, ``args.jobs`` at a time; results in target order."""
    results: dict[str, Result] = {}
    pending = list(targets)
    running: list[_Running] = []
    with tempfile.TemporaryDirectory(prefix="xaynet-fuzz-") as tmp:
        workdir = Path(tmp)
        while pending or running:
            while pending and len(running) < args.jobs:
                name = pending.pop(0)
                print(f"fuzz: {name}: {args.inputs} inputs ...", flush=True)
                running.append(_spawn(name, args, workdir))
            time.sleep(0.1)
            for run in list(running):
                if run.process.poll() is None:
                    _watch(run, args)
                    continue
                running.remove(run)
                result = _finish(run, args)
                results[run.target] = result
                status = "FAILED" if result.failed else "ok"
                print(
                    f"fuzz: {run.target}: {result.inputs} inputs in {result.seconds:.1f} s,"
                    f" {status}",
                    flush=True,
                )
    return [results[t] for t in targets]


def format_table(results: Sequence[Result]) -> str:
    header = (
        f"{'target':16} {'inputs':>9} {'decoded':>9} {'rejected':>9} {'outcomes':>8}"
        f" {'crashes':>7} {'hangs':>5} {'max ms':>8} {'seconds':>8} {'inputs/s':>9}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        rate = r.inputs / r.seconds if r.seconds else 0.0
        lines.append(
            f"{r.target:16} {r.inputs:>9} {r.decoded:>9} {r.rejected:>9} {r.features:>8}"
            f" {r.crashes:>7} {r.hangs:>5} {1000 * r.max_seconds:>8.1f} {r.seconds:>8.1f}"
            f" {rate:>9.0f}"
        )
    total = sum(r.inputs for r in results)
    lines.append("-" * len(header))
    lines.append(
        f"{'total':16} {total:>9}   crashes {sum(r.crashes for r in results)},"
        f" hangs {sum(r.hangs for r in results)}"
    )
    for r in results:
        for f in r.findings:
            count = f" (x{f.count})" if f.count > 1 else ""
            lines.append(f"  {r.target}: {f.kind}{count}: {f.summary} -> {f.path}")
        if r.note:
            lines.append(f"  {r.target}: {r.note}")
    return "\n".join(lines)


def _reproduce(path: Path, target_name: Optional[str]) -> int:
    name = target_name or next(
        (t for t in sorted(TARGETS, key=len, reverse=True) if path.name.startswith(f"{t}-")), None
    )
    if name is None:
        print(f"cannot tell the target of {path.name}; pass --target", file=sys.stderr)
        return 2
    target = get_target(name)
    if target.setup is not None:
        target.setup()
    data = path.read_bytes()
    t0 = time.perf_counter()
    try:
        feature = target.run(data)
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        return 1
    print(f"{name}: {feature} ({1000 * (time.perf_counter() - t0):.1f} ms)")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Fuzz every decoder of untrusted bytes (see fuzz/targets.py).",
    )
    parser.add_argument("targets", nargs="*", help="targets to run (default: all)")
    parser.add_argument("--inputs", type=int, default=100_000, help="inputs per target")
    parser.add_argument("--seed", type=int, default=0, help="campaign seed (reproducible)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--time-limit", type=float, default=1.0, help="seconds: a hang")
    parser.add_argument("--hard-limit", type=float, default=30.0, help="seconds: kill")
    parser.add_argument("--crash-dir", default=str(CRASH_DIR))
    parser.add_argument(
        "--engine",
        choices=("builtin", "atheris"),
        default="builtin",
        help="builtin: the hand-written mutator (default); atheris: libFuzzer, coverage-guided"
        " (pip install atheris)",
    )
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument("--reproduce", metavar="FILE", help="run one saved input again")
    parser.add_argument("--target", help="the target of --reproduce (default: from the name)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--inflight", help=argparse.SUPPRESS)
    parser.add_argument("--selftest", choices=("segv", "gil-hang"), help=argparse.SUPPRESS)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.worker:
        return _worker(args)
    if args.list:
        for t in TARGETS.values():
            print(f"{t.name:16} {t.description}")
        return 0
    if args.reproduce:
        _quiet_logging()
        return _reproduce(Path(args.reproduce), args.target)
    names = args.targets or list(TARGETS)
    for name in names:
        get_target(name)
    started = time.perf_counter()
    results = run_campaign(names, args)
    print()
    print(format_table(results))
    print(f"\n{len(names)} targets in {time.perf_counter() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 1 if any(r.failed for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
