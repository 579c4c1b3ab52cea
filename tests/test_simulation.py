"""The simulation runner (``xaynet_sdk.simulation``): a few dozen participants multiplexed over a
few threads per worker process, checked by the exact global models they produce.

The Ray backend runs in its own cached venv, ``.cache/ray-venv`` (``ray`` and the SDK's
dependencies; this checkout through a ``.pth`` file), built on first use like the Keras
example's venv (tests/test_examples.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from test_examples import _sdk_dependencies, _see_this_checkout  # noqa: E402
from venvcache import VenvSpec, ensure_venv, run_setup  # noqa: E402

REPO_ROOT = TESTS_DIR.parent
RAY_VENV = REPO_ROOT / ".cache" / "ray-venv"
RAY_REQUIREMENT = "ray>=2.9"

_RAY_CHECK = (
    "import json, ray, xaynet_sdk;"
    " print(json.dumps({'ray': ray.__version__, 'sdk': xaynet_sdk.__file__}))"
)


def _check_ray_venv(python: Path) -> dict[str, object]:
    out = run_setup([str(python), "-I", "-c", _RAY_CHECK], "checking the ray venv", 300, REPO_ROOT)
    info: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    assert Path(str(info["sdk"])).resolve().is_relative_to(REPO_ROOT), info
    return info


def ray_venv_spec() -> VenvSpec:
    return VenvSpec(
        path=RAY_VENV,
        install=(RAY_REQUIREMENT, *_sdk_dependencies()),
        recipe={
            "version": 1,
            "ray": RAY_REQUIREMENT,
            "sdk": _sdk_dependencies(),
            "checkout": str(REPO_ROOT),
        },
        marker_name=".xaynet-ray-venv-ok",
        what="the ray venv",
        after_install=_see_this_checkout,
        verify=_check_ray_venv,
    )


if __name__ == "__main__":
    print(ensure_venv(ray_venv_spec()))
