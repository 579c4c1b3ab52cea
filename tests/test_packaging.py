"""The release as a stranger gets it: ``python -m build`` makes an sdist and an abi3 wheel; each
installs into a fresh venv in a temporary directory away from the checkout, and there imports
the installed copy, runs the coordinator's CLI and the hello-world example, and masks the
original's vectors on every SIMD path of the C core.

``python -m build`` builds the wheel *from the sdist*, so a file missing from the sdist fails
the wheel build too; the sdist's file list is also compared with what git tracks under ``src/``.
The venvs take their dependencies from the package index, as a user's ``pip install`` does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from venvcache import clean_env, venv_python  # noqa: E402

REPO_ROOT = TESTS_DIR.parent
VECTORS = TESTS_DIR / "vectors"

pytestmark = [pytest.mark.timeout(1200), pytest.mark.slow]

#: Masks the original's vectors and a longer model on whatever SIMD path
#: ``XAYNET_NATIVE_LANES`` selects; prints one JSON line.
MASK_CHECK = r"""
import hashlib, json, sys
import numpy as np
import xaynet_sdk
from xaynet_sdk.mask.config import MaskConfig, MaskConfigPair
from xaynet_sdk.mask.masking import mask_model
from xaynet_sdk.mask.objects import limbs_to_ints
from xaynet_sdk._native import simd_lanes

cases = json.load(open(sys.argv[1]))["cases"]
for case in cases:
    config = MaskConfig.from_name(case["config"])
    weights = np.array(case["weights_python"], dtype=config.data_type.numpy_dtype)
    masked = mask_model(bytes.fromhex(case["mask_seed_hex"]), MaskConfigPair.single(config),
                        float(case["scalar"]), weights)
    assert [str(v) for v in limbs_to_ints(masked.vect.data)] == case["expected_masked_vect"], case
    assert masked.to_bytes().hex() == case["expected_mask_object_bytes_hex"], case
digests = {}
for name in ("Prime/F32/B0/M3", "Integer/F64/B2/M6", "Prime/F64/Bmax/M12"):
    config = MaskConfig.from_name(name)
    weights = (np.sin(np.arange(5000)) * 0.9).astype(config.data_type.numpy_dtype)
    masked = mask_model(bytes(range(32)), MaskConfigPair.single(config), 0.5, weights)
    digests[name] = hashlib.sha256(masked.to_bytes()).hexdigest()
print(json.dumps({"file": xaynet_sdk.__file__, "version": xaynet_sdk.__version__,
                  "lanes": simd_lanes(), "cases": len(cases), "digests": digests}))
"""


def _run(
    cmd: list[str], cwd: Path, *, timeout: float = 600, env: dict[str, str] | None = None
) -> str:
    environ = clean_env()
    environ.update(env or {})
    proc = subprocess.run(
        cmd,
        cwd=str(cwd),
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"$ {' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-4000:]}\n"
            f"--- stderr ---\n{proc.stderr[-4000:]}"
        )
    return proc.stdout


def _interpreters() -> dict[str, str]:
    """Interpreters beside the running one to install into: the lowest version requires-python
    claims (3.10) for the sdist, the newest found for the wheel (pyenv, as on the project's
    machines); the running interpreter stands in for any not found."""
    found: dict[str, str] = {}
    versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for minor in ("3.10", "3.13"):
        candidates = [str(p) for p in sorted(versions.glob(f"{minor}.*/bin/python{minor}"))[-1:]]
        on_path = shutil.which(f"python{minor}")
        if on_path:
            candidates.append(on_path)
        for exe in candidates:
            probe = subprocess.run([exe, "-c", "import venv"], capture_output=True, timeout=60)
            if probe.returncode == 0:  # a pyenv shim of a version not selected fails here
                found[minor] = exe
                break
    return found


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(REPO_ROOT)], cwd=out, timeout=900
    )
    return out


def _sdist(dist: Path) -> Path:
    (sdist,) = dist.glob("*.tar.gz")
    return sdist


def _wheel(dist: Path) -> Path:
    (wheel,) = dist.glob("*.whl")
    return wheel


def _tracked_under_src() -> list[str]:
    if (REPO_ROOT / ".git").exists():
        out = subprocess.run(
            ["git", "ls-files", "src/"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout
        return [line for line in out.splitlines() if line]
    # a packager running the tests from the unpacked sdist: what is on disk
    return [
        str(p.relative_to(REPO_ROOT))
        for p in (REPO_ROOT / "src").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]


def test_sdist_holds_every_source_file_the_license_and_the_tests(dist: Path) -> None:
    sdist = _sdist(dist)
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    root = names[0].split("/")[0]
    inside = {n[len(root) + 1 :] for n in names if n.startswith(root + "/")}
    src = _tracked_under_src()
    assert "src/build_native.py" in src and "src/csrc/xaynet_native.h" in src
    missing = sorted(set(src) - inside)
    assert not missing, f"the sdist lacks files git tracks under src/: {missing}"
    wanted = [
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "pyproject.toml",
        "setup.py",
        "docs/PROTOCOL.md",
        "tests/conftest.py",
        "tests/vectors/mask_orders.json",
        "tests/vectors/masking_wheel.json",
        "examples/hello_world.py",
    ]
    assert not [w for w in wanted if w not in inside], sorted(inside)
    assert not [n for n in inside if n.endswith((".so", ".o", ".pyc"))]
    print(f"sdist {sdist.name}: {sdist.stat().st_size} bytes, {len(inside)} entries")


def test_wheel_is_tagged_for_the_limited_api(dist: Path) -> None:
    wheel = _wheel(dist)
    # name-version-python-abi-platform.whl
    python_tag, abi_tag, platform_tag = wheel.name[: -len(".whl")].split("-")[-3:]
    assert (python_tag, abi_tag) == ("cp310", "abi3"), wheel.name
    assert platform_tag.startswith(("linux_", "manylinux")), wheel.name
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        license_files = [n for n in names if n.endswith("LICENSE")]
        assert license_files and b"Apache License" in zf.read(license_files[0])
    so = [n for n in names if n.endswith(".so")]
    assert so == ["xaynet_sdk/_native/_xaynet_native.abi3.so"], so
    assert "xaynet_sdk/py.typed" in names
    print(f"wheel {wheel.name}: {wheel.stat().st_size} bytes, {len(names)} files")


def _fresh_venv(where: Path, python: str, package: Path) -> Path:
    _run([python, "-m", "venv", str(where)], cwd=where.parent)
    py = venv_python(where)
    _run([str(py), "-m", "pip", "install", "-q", str(package)], cwd=where.parent, timeout=900)
    return py


def _mask_report(python: Path | str, cwd: Path, **env: str) -> dict[str, Any]:
    out = _run([str(python), "-c", MASK_CHECK, str(VECTORS / "masking_wheel.json")], cwd, env=env)
    report: dict[str, Any] = json.loads(out)
    return report


def _check_installed(py: Path, venv: Path, work: Path) -> dict[str, Any]:
    """What a user does after ``pip install``, from a directory outside the checkout."""
    report = _mask_report(py, work)
    installed = Path(str(report["file"])).resolve()
    assert venv.resolve() in installed.parents, f"imported {installed}, not the venv's copy"
    assert REPO_ROOT not in installed.parents
    help_text = _run([str(venv / "bin" / "xaynet-coordinator"), "--help"], work)
    assert "config" in help_text
    for name in ("hello_world.py", "_common.py"):
        shutil.copy(REPO_ROOT / "examples" / name, work / name)
    out = _run([str(py), "hello_world.py", "--rounds", "1"], work, timeout=300)
    assert "round 1/1: global model [" in out, out
    return report


def test_wheel_installs_away_from_the_checkout_and_masks_on_every_path(
    dist: Path, tmp_path: Path
) -> None:
    python = _interpreters().get("3.13", sys.executable)
    venv = tmp_path / "wheel-venv"
    work = tmp_path / "work"
    work.mkdir()
    py = _fresh_venv(venv, python, _wheel(dist))
    default = _check_installed(py, venv, work)
    assert default["cases"] == 12
    # every SIMD path of the one wheel gives the same masked models
    for lanes in ("4", "8"):
        forced = _mask_report(py, work, XAYNET_NATIVE_LANES=lanes)
        assert forced["lanes"] == int(lanes)  # the forced path was the one taken
        assert forced["digests"] == default["digests"]
    print(f"wheel on {python}: {default['lanes']} lanes by default; 4 and 8 agree")


def test_sdist_builds_and_installs_away_from_the_checkout(dist: Path, tmp_path: Path) -> None:
    python = _interpreters().get("3.10", sys.executable)
    venv = tmp_path / "sdist-venv"
    work = tmp_path / "work"
    work.mkdir()
    py = _fresh_venv(venv, python, _sdist(dist))
    report = _check_installed(py, venv, work)
    assert report["version"] == _version_from_source()
    # the sdist's build, on another interpreter, masks as the checkout's build does
    here = _mask_report(sys.executable, REPO_ROOT)
    assert report["digests"] == here["digests"]
    print(f"sdist on {python}: version {report['version']}, masks equal to the checkout's")


def _version_from_source() -> str:
    namespace: dict[str, str] = {}
    exec((REPO_ROOT / "xaynet_sdk" / "_version.py").read_text(), namespace)
    return namespace["__version__"]
