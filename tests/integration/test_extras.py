"""The umbrella ``aixgo`` and each of its extras, installed alone from the built wheels into a
fresh venv (run by ``nox -s installed``): ``aixgo plugins`` lists exactly the plugins of the
packages that composition brings. What each package registers is read from its own
pyproject.toml, and an extra whose package has no folder in this checkout yet is reported as
skipped, so the check follows the repository as packages land."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("AIXGO_INSTALLED_TEST") != "1",
    reason="runs in `nox -s installed`, against the wheels it builds",
)

ROOT = Path(__file__).resolve().parents[2]
UMBRELLA = tomllib.loads((ROOT / "aixgo-umbrella" / "pyproject.toml").read_text())["project"]


def _projects() -> dict[str, dict[str, str]]:
    """Distribution name -> its ``aixgo`` entry points, for every aixgo-* folder present."""
    found = {}
    for path in sorted(ROOT.glob("aixgo-*/pyproject.toml")):
        project = tomllib.loads(path.read_text())["project"]
        found[project["name"]] = project.get("entry-points", {}).get("aixgo", {})
    return found


PROJECTS = _projects()


def _clean_env() -> dict[str, str]:
    """The environment without the variables that choose a store or filter plugins."""
    chosen = ("AIXGO_SESSION_URL", "AIXGO_DISABLE_PLUGINS", "AIXGO_LOAD_PLUGINS")
    return {k: v for k, v in os.environ.items() if k not in chosen}


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return match.group().lower()


def _brings(extra: str | None) -> set[str]:
    """The distributions ``aixgo[extra]`` installs (``None``: plain ``aixgo``)."""
    dists = {_name(r) for r in UMBRELLA["dependencies"]}
    if extra is None:
        return dists
    for requirement in UMBRELLA["optional-dependencies"][extra]:
        name = _name(requirement)
        if name == "aixgo":  # aixgo[a,b]: the umbrella's own extras
            inner = re.search(r"\[(.*)\]", requirement)
            assert inner, requirement
            for other in inner.group(1).split(","):
                dists |= _brings(other.strip())
        else:
            dists.add(name)
    return dists


def test_every_package_has_an_extra_and_all_brings_every_one() -> None:
    extras = UMBRELLA["optional-dependencies"]
    in_extras = {d for extra in extras if extra != "all" for d in _brings(extra)}
    base = _brings(None)
    assert base == {"aixgo-core", "aixgo-backend-file"}
    for dist in PROJECTS.keys() - {"aixgo"} - base:
        assert dist in in_extras, f"{dist} has no extra in aixgo-umbrella/pyproject.toml"
    assert _brings("all") == in_extras | base


def test_plugins_depend_on_a_compatible_core_range() -> None:
    for path in ROOT.glob("aixgo-*/pyproject.toml"):
        for requirement in tomllib.loads(path.read_text())["project"].get("dependencies", []):
            if _name(requirement).startswith("aixgo"):
                assert "==" not in requirement and ",<" in requirement, (path, requirement)


@pytest.mark.parametrize("extra", [None, *UMBRELLA["optional-dependencies"]])
def test_each_composition_installs_alone_with_exactly_its_plugins(
    extra: str | None, tmp_path: Path
) -> None:
    wanted = _brings(extra)
    missing = sorted(wanted - PROJECTS.keys())
    if missing:
        pytest.skip(f"{', '.join(missing)}: no folder in this checkout yet")
    uv = shutil.which("uv")
    assert uv is not None, "nox -s installed runs with uv on PATH"
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    target = "aixgo" if extra is None else f"aixgo[{extra}]"
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
         "--find-links", os.environ["AIXGO_WHEELS"], target],
        check=True,
    )  # fmt: skip
    out = subprocess.run(
        [venv / "bin" / "aixgo", "plugins", "--json"],
        capture_output=True,
        text=True,
        check=True,
        env=_clean_env(),
    )
    shown = {(p["name"], p["distribution"]) for p in json.loads(out.stdout)}
    expected = {(plugin, dist) for dist in wanted for plugin in PROJECTS[dist]}
    assert shown == expected


def test_plain_aixgo_opens_the_embedded_default_store(tmp_path: Path) -> None:
    uv = shutil.which("uv")
    assert uv is not None
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
         "--find-links", os.environ["AIXGO_WHEELS"], "aixgo"],
        check=True,
    )  # fmt: skip
    script = (
        "import asyncio\n"
        "from aixgo.session import SessionManager\n"
        "async def main():\n"
        "    async with SessionManager() as mgr:\n"
        "        s = await mgr.create('assistant')\n"
        "        print(type(mgr.backend).__module__, s.id)\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run(
        [venv / "bin" / "python", "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**_clean_env(), "AIXGO_HOME": str(tmp_path / "home")},
    )
    assert out.stdout.split()[0].startswith("aixgo_backend_file.")
    assert any((tmp_path / "home" / "sessions").rglob("*")), "nothing was stored"
