"""Fixtures for core tests: real entry-point discovery through throwaway distributions."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aixgo import plugins
from aixgo.identifiers import new_id

from tests.services import accepts_connections, free_port, wait_until_ready

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


# -- real servers for the tests that move sessions between backends ------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A private redis-server (a real one, never a fake) for the run; yields its port."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is needed (apt-get install redis-server)"
    folder = tmp_path_factory.mktemp("redis")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until_ready(proc, accepts_connections(port), what="redis-server", timeout=10)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def redis_url(redis_server: int) -> str:
    """An empty store: a key prefix of this test's own."""
    return f"redis://127.0.0.1:{redis_server}/0?prefix=t{new_id()[:10]}:"


@pytest.fixture(params=["memory", "file", "redis", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store of each kind, on the real servers (each call opens its own
    connections)."""
    if request.param == "memory":
        return "memory://"
    if request.param == "file":
        return f"file://{tmp_path / 'sessions'}"
    fixture = "redis_url" if request.param == "redis" else "pg_url"
    return str(request.getfixturevalue(fixture))
