"""Drive THIS repository's participant (``xaynet_sdk.driver.Participant``) for the benchmarks.

Run by ``benchmarks/run.py`` in its own process (``python -I``), one JSON event per line on
stdout; the tick loop is ``_driver_loop.py``, shared with ``_original_driver.py``. The local
model is a numpy array, the input this participant takes without a conversion.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_loop() -> ModuleType:
    path = Path(__file__).resolve().parent / "_driver_loop.py"
    spec = importlib.util.spec_from_file_location("_driver_loop", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    loop = load_loop()
    args = loop.parse_args()
    loop.die_with_parent()
    import numpy as np

    import xaynet_sdk
    from xaynet_sdk.driver import Participant

    model = np.random.default_rng(0).uniform(-1.0, 1.0, args.length).astype(np.float32)
    participant = Participant(args.url, 1.0)
    info = {"impl": "ours", "file": xaynet_sdk.__file__}
    return int(loop.run(args, participant, model, info))


if __name__ == "__main__":
    sys.exit(main())
