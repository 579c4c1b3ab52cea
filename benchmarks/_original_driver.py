"""Drive the ORIGINAL participant (``xaynet-sdk-python==0.1.0``) for the benchmarks.

Run by ``benchmarks/run.py`` with the reference venv's python in isolated mode (``-I``, see
``tests/original/refenv.py``), never imported by the main environment: the original and this
repository share the import name ``xaynet_sdk``. The repository is removed from ``sys.path``
and the driver exits with code 3 unless ``xaynet_sdk`` and its compiled
``xaynet_sdk.xaynet_sdk`` load from inside the running venv.

The tick loop is ``_driver_loop.py``, shared with ``_participant_driver.py``. The local model
is a list of floats, the only input the original takes (no numpy is imported here).
"""

from __future__ import annotations

import importlib.util
import os
import random
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def load_loop() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_driver_loop", HERE / "_driver_loop.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _inside(path: str, root: Path) -> bool:
    try:
        return Path(path).resolve().is_relative_to(root.resolve())
    except OSError:
        return False


def import_original() -> ModuleType:
    """``xaynet_sdk.xaynet_sdk`` from the venv; exit 3 if anything else would load."""
    sys.path[:] = [
        p for p in sys.path if not _inside(p or os.getcwd(), REPO) or _inside(p, Path(sys.prefix))
    ]
    venv = Path(sys.prefix)
    if sys.prefix == sys.base_prefix:
        print(f"not a venv python: {sys.executable}", file=sys.stderr)
        sys.exit(3)
    import xaynet_sdk
    import xaynet_sdk.xaynet_sdk as native

    for module in (xaynet_sdk, native):
        file = module.__file__ or ""
        if not _inside(file, venv) or _inside(file, REPO / "xaynet_sdk"):
            print(f"{module.__name__} would load from {file}, not {venv}", file=sys.stderr)
            sys.exit(3)
    return native


def main() -> int:
    loop = load_loop()
    args = loop.parse_args()
    loop.die_with_parent()
    native = import_original()
    rng = random.Random(0)
    model = [rng.uniform(-1.0, 1.0) for _ in range(args.length)]
    participant = native.Participant(args.url, 1.0, None)
    info = {"impl": "original", "file": native.__file__}
    return int(loop.run(args, participant, model, info))


if __name__ == "__main__":
    sys.exit(main())
