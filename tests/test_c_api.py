"""The C core as a C host sees it: the public header alone, compiled without Python."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from xaynet_sdk.mask.config import MaskConfig, MaskConfigPair
from xaynet_sdk.mask.masking import mask_model
from xaynet_sdk.mask.objects import limbs_to_ints

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "src" / "csrc"
HEADER = CSRC / "xaynet_native.h"


def test_header_follows_the_recorded_conventions() -> None:
    conventions = tomllib.loads((ROOT / "cbindgen.toml").read_text())
    text = HEADER.read_text()
    assert conventions["language"] == "C"
    assert text.startswith(conventions["autogen_warning"])
    guard = conventions["include_guard"]
    assert f"#ifndef {guard}\n#define {guard}" in text and text.rstrip().endswith(
        f"#endif /* {guard} */"
    )
    for include in conventions["sys_includes"]:
        assert f"#include <{include}>" in text
    assert 'extern "C"' in text  # cpp_compat
    prefix = conventions["export"]["prefix"]
    functions = re.findall(r"^(?:int|size_t)\s+(\w+)\(", text, re.M)
    assert functions and all(f.startswith(prefix) for f in functions)
    types = re.findall(r"}\s*(\w+);", text)
    assert types and all(t.startswith(prefix) for t in types)
    constants = re.findall(r"^#define (\w+)", text, re.M)
    constant_prefix = conventions["enum"]["constant_prefix"]
    assert all(c.startswith(constant_prefix) or c == guard for c in constants)
    assert all(c == c.upper() for c in constants)


@pytest.mark.skipif(
    shutil.which("gcc") is None and shutil.which("cc") is None, reason="no C compiler"
)
def test_c_host_masks_like_the_python_layer(tmp_path: Path) -> None:
    compiler = shutil.which("gcc") or shutil.which("cc")
    exe = tmp_path / "mask_example"
    sources = [str(path) for path in sorted(CSRC.glob("*.c"))]
    subprocess.run(
        [
            compiler,
            "-std=gnu11",
            "-O2",
            "-Wall",
            "-Werror",
            f"-I{CSRC}",
            str(ROOT / "tests" / "c" / "mask_example.c"),
            *sources,
            "-o",
            str(exe),
            "-lm",
        ],
        check=True,
        capture_output=True,
    )
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split()
    config = MaskConfig.from_name("Prime/F32/B0/M3")
    masked = mask_model(
        bytes(range(32)),
        MaskConfigPair.single(config),
        1.0,
        np.array([0.5, -0.25, 1.0], dtype=np.float32),
    )
    assert [int(x) for x in out] == [masked.unit.value, *limbs_to_ints(masked.vect.data)]
