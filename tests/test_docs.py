"""The documentation site: it builds without a warning, its guides' code runs, and a browser
shows its pages.

* The site is built once per session with Sphinx, ``-W`` (every warning fails: a broken
  cross-reference, a public name without a reference entry, a Markdown error).
* Every code block of the guides marked ``% sample: NAME`` runs as a user would run it: a
  file of its own, in a fresh directory, with this interpreter. The samples start their own
  ``LocalCoordinator``, so a guide cannot drift from the code.
* Debian's headless Chromium renders the home page and an API reference page; the test reads
  the DOM it produced and the console errors it logged.

Missing tools fail loudly: Sphinx and its extensions come with the ``test`` extra, Chromium
with ``.ci/run`` (``apt-get install chromium``).
"""

from __future__ import annotations

import html
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

#: Guide pages that must each keep at least one executed sample.
GUIDES_WITH_SAMPLES = (
    "quickstart.md",
    "guides/training-loop.md",
    "guides/stop-restore.md",
    "guides/large-models.md",
    "guides/tls-timeouts.md",
    "guides/coordinator.md",
    "guides/models-asyncio.md",
    "guides/state-file.md",
    "guides/simulations.md",
    "guides/coordinator-service.md",
)

SAMPLE = re.compile(r"^% sample: (\S+)\n```python\n(.*?)^```", re.M | re.S)


def sphinx_build(out: Path, *extra: str, builder: str = "html") -> subprocess.CompletedProcess[str]:
    for module in ("sphinx", "myst_parser", "furo"):
        if importlib.util.find_spec(module) is None:
            pytest.fail(f"{module} is not installed: pip install -e '.[test]' (or '.[docs]')")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-E", "-b", builder]
    return subprocess.run(
        [*command, *extra, str(DOCS), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "html"
    result = sphinx_build(out)
    assert result.returncode == 0, f"the docs build failed:\n{result.stderr}{result.stdout}"
    return out


def test_site_builds_without_warnings(site: Path) -> None:
    for page in (
        "index.html",
        "quickstart.html",
        "PROTOCOL.html",
        "migration.html",
        "changelog.html",
        "performance.html",
        "reference/participant.html",
        "reference/coordinator.html",
        "reference/c-api.html",
    ):
        assert (site / page).is_file(), page
    protocol = (site / "PROTOCOL.html").read_text(encoding="utf-8")
    # The protocol keeps its section numbers; the code cites them.
    assert "12.7 Saved state format" in html.unescape(protocol)


def test_the_reference_has_the_public_api(site: Path) -> None:
    participant = (site / "reference/participant.html").read_text(encoding="utf-8")
    for anchor in (
        "xaynet_sdk.spawn_participant",
        "xaynet_sdk.spawn_async_participant",
        "xaynet_sdk.AsyncParticipant.set_local_model",
        "xaynet_sdk.ParticipantABC.train_round",
    ):
        assert f'id="{anchor}"' in participant, anchor
    coordinator = (site / "reference/coordinator.html").read_text(encoding="utf-8")
    assert 'id="xaynet_sdk.coordinator.LocalCoordinator"' in coordinator
    header = (ROOT / "src/csrc/xaynet_native.h").read_text(encoding="utf-8")
    c_api = html.unescape(re.sub(r"<[^>]+>", "", (site / "reference/c-api.html").read_text()))
    for name in re.findall(r"^(?:int|size_t) (xn_\w+)\(", header, re.M):
        assert name in c_api, name


def load_extension() -> ModuleType:
    spec = importlib.util.spec_from_file_location("xaynet_docs", DOCS / "_ext/xaynet_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def documented_names(site: Path) -> tuple[set[str], set[str]]:
    from sphinx.util.inventory import InventoryFile

    with open(site / "objects.inv", "rb") as f:
        inventory = InventoryFile.load(f, "", os.path.join)
    data = inventory.data if hasattr(inventory, "data") else inventory  # Sphinx 8.2+ / older
    names = {name for role, entries in data.items() if role != "py:module" for name in entries}
    modules = set(data.get("py:module", {}))
    return names, modules


def test_the_check_lists_a_public_name_without_an_entry(site: Path) -> None:
    ext = load_extension()
    names, modules = documented_names(site)
    assert ext.missing_entries(names, modules) == []
    problems = ext.missing_entries(names - {"xaynet_sdk.spawn_participant"}, modules)
    assert any(p.startswith("xaynet_sdk.spawn_participant: no reference entry") for p in problems)
    problems = ext.missing_entries(names, modules - {"xaynet_sdk.transport"})
    assert any(p.startswith("module xaynet_sdk.transport: add") for p in problems), problems


def test_a_module_left_out_of_the_reference_fails_the_build(tmp_path: Path) -> None:
    # The check runs once every page is read, before any is written: the dummy builder (which
    # writes nothing) is enough.
    result = sphinx_build(
        tmp_path / "out",
        "-D",
        "exclude_patterns=_build,_inventories,reference/transport.rst",
        builder="dummy",
    )
    assert result.returncode != 0
    assert "module xaynet_sdk.transport: add '.. automodule:: xaynet_sdk.transport'" in (
        result.stderr
    )


# -- the guides' code ----------------------------------------------------------------------------


def samples() -> list[tuple[str, str, str]]:
    found = []
    for page in sorted(DOCS.rglob("*.md")):
        for match in SAMPLE.finditer(page.read_text(encoding="utf-8")):
            found.append((str(page.relative_to(DOCS)), match.group(1), match.group(2)))
    return found


def test_every_guide_keeps_an_executed_sample() -> None:
    pages = {page for page, _, _ in samples()}
    assert set(GUIDES_WITH_SAMPLES) <= pages, set(GUIDES_WITH_SAMPLES) - pages
    names = [name for _, name, _ in samples()]
    assert len(names) == len(set(names)), "two samples share a name"


@pytest.mark.parametrize(
    ("page", "name", "code"), samples(), ids=[name for _, name, _ in samples()]
)
def test_guide_sample_runs(page: str, name: str, code: str, tmp_path: Path) -> None:
    script = tmp_path / f"{name}.py"
    script.write_text(code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("XAYNET_")}
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    output = f"{page}, sample {name}:\n{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, output
    assert "Traceback" not in result.stderr, output  # an exception in a thread exits with 0


# -- in a browser --------------------------------------------------------------------------------


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Debian's chromium is not installed: apt-get install chromium (.ci/run does)")
    return path


def render(page: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on a built page; stdout is the DOM after scripts ran."""
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=3000",
        *extra,
        page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def console_messages(stderr: str) -> list[str]:
    """What the page's scripts logged: Chromium prints every console message (an uncaught
    exception too) as an ``INFO:CONSOLE`` line, whatever its level; the site logs none."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def missing_assets(page: Path) -> list[str]:
    """Local stylesheets, scripts and images the page loads that are not in the build."""
    text = page.read_text(encoding="utf-8")
    found = re.findall(r'<(?:link|script|img)\b[^>]*?(?:href|src)="([^"#?]+)', text)
    return [url for url in found if "://" not in url and not (page.parent / url).is_file()]


def headings(dom: str) -> list[str]:
    found = re.findall(r"<h([12])[^>]*>(.*?)</h\1>", dom, re.S)
    return [
        html.unescape(re.sub(r"<[^>]+>", "", text)).replace("¶", "").strip() for _, text in found
    ]


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ("index.html", ["xaynet_sdk", "Try it", "Where to go"]),
        (
            "reference/participant.html",
            ["Participant API", "Subclass and spawn", "Your own training loop"],
        ),
    ],
)
def test_a_browser_shows_the_page(site: Path, page: str, expected: list[str]) -> None:
    result = render(site / page, "--dump-dom")
    assert result.returncode == 0, result.stderr
    dom = result.stdout
    shown = headings(dom)
    for heading in expected:
        assert heading in shown, (heading, shown)
    assert 'class="system-message"' not in dom  # a docutils error rendered into the page
    assert "Traceback" not in dom
    assert console_messages(result.stderr) == [], console_messages(result.stderr)
    assert missing_assets(site / page) == []


def test_the_readme_links_into_the_site() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if "://" not in link]
    assert [link for link in local if not (ROOT / link).exists()] == []
    assert "docs/quickstart.md" in local and "docs/reference/index.md" in local
