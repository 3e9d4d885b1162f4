"""Fixtures for core tests: real entry-point discovery through throwaway distributions."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aixgo import plugins

FakeDist = Callable[..., None]


@pytest.fixture
def fake_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDist]:
    """Install a distribution into a temporary sys.path entry: a ``*.dist-info`` folder with
    an ``entry_points.txt`` plus its modules, found by importlib.metadata like any other."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    added: list[str] = []

    def make(dist: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
        info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
        lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
        (info / "entry_points.txt").write_text(f"[aixgo]\n{lines}\n")
        for name, source in modules.items():
            (root / f"{name}.py").write_text(textwrap.dedent(source))
            added.append(name)
        plugins.reset()

    yield make
    for name in added:
        sys.modules.pop(name, None)
    plugins.reset()


@pytest.fixture(autouse=True)
def _fresh_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("AIXGO_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("AIXGO_LOAD_PLUGINS", raising=False)
    plugins.reset()
    yield
    plugins.reset()
