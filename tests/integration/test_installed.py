"""Discovery from installed wheels (run by ``nox -s installed`` in a fresh venv)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aixgo
import pytest
import pytest_asyncio
from aixgo.session import Backend, open_backend

pytestmark = pytest.mark.skipif(
    os.environ.get("AIXGO_INSTALLED_TEST") != "1",
    reason="runs in `nox -s installed`, against wheels installed in a fresh venv",
)


def test_aixgo_comes_from_an_installed_wheel_not_the_source_tree() -> None:
    assert "site-packages" in (aixgo.__file__ or "")


def test_cli_lists_the_third_party_plugin() -> None:
    exe = shutil.which("aixgo")
    assert exe is not None, "the aixgo console script was not installed"
    out = subprocess.run([exe, "plugins", "--json"], capture_output=True, text=True, check=True)
    by_name = {p["name"]: p for p in json.loads(out.stdout)}
    assert by_name["toy"]["distribution"] == "aixgo-toy-backend"
    assert by_name["toy"]["version"] == "0.0.1"
    assert by_name["toy"]["backends"] == ["toy"]
    assert by_name["memory"]["distribution"] == "aixgo-core"
    table = subprocess.run([exe, "plugins"], capture_output=True, text=True, check=True).stdout
    assert "aixgo-toy-backend" in table
    assert "toy://" in table


def test_open_backend_resolves_the_third_party_scheme() -> None:
    backend = open_backend("toy://")
    assert type(backend).__module__ == "aixgo_toy_backend.backend"
    assert isinstance(backend, Backend)


@pytest_asyncio.fixture
async def toy() -> AsyncIterator[Backend]:
    backend = open_backend("toy://")
    yield backend
    await backend.close()


@pytest.mark.asyncio
async def test_the_installed_plugin_stores_sessions(toy: Backend) -> None:
    from aixgo import Message
    from aixgo.session import SessionManager

    mgr = SessionManager(toy)
    s = await mgr.create("assistant", user_id="user-123")
    await s.append_message(Message.user("hi"))
    assert [m.text for m in await (await mgr.get(s.id)).get_messages()] == ["hi"]


def test_every_first_party_plugin_is_discovered_from_its_wheel() -> None:
    from importlib.metadata import distributions

    from aixgo import plugins

    ours = {d.metadata["Name"] for d in distributions() if d.metadata["Name"].startswith("aixgo-")}
    by_dist: dict[str, list[str]] = {}
    for info in plugins.plugins():
        by_dist.setdefault(info.distribution, []).extend(info.backends)
    expected = {
        "aixgo-core": {"memory"},
        "aixgo-backend-file": {"file"},
        "aixgo-backend-redis": {"redis", "rediss", "unix", "redis+cluster"},
        "aixgo-backend-postgres": {"postgresql", "postgres"},
        "aixgo-toy-backend": {"toy"},
    }
    for dist, schemes in expected.items():
        if dist in ours:
            assert set(by_dist.get(dist, [])) >= schemes, dist
    if "aixgo-agent-react" in ours:
        assert "react" in plugins.agent_types()
        assert plugins.agent_factory("react")[1].distribution == "aixgo-agent-react"
    if "aixgo-runtime-grpc" in ours:
        assert plugins.agent_factory("remote")[1].distribution == "aixgo-runtime-grpc"


def test_the_grpc_runtime_ships_its_proto_and_serve_command() -> None:
    pytest.importorskip("aixgo_runtime_grpc")
    from aixgo_runtime_grpc import proto_path
    from aixgo_runtime_grpc._pb import agent_pb2

    assert "package aixgo.v1;" in proto_path().read_text()
    assert agent_pb2.DESCRIPTOR.package == "aixgo.v1"
    exe = shutil.which("aixgo")
    assert exe is not None
    out = subprocess.run([exe, "plugins", "--json"], capture_output=True, text=True, check=True)
    by_name = {p["name"]: p for p in json.loads(out.stdout)}
    assert by_name["grpc"]["commands"] == ["serve"]


def test_the_file_plugin_adds_its_command_from_its_wheel(tmp_path: Path) -> None:
    import asyncio

    from aixgo import Message
    from aixgo.session import SessionManager

    async def one_session() -> None:
        async with SessionManager(f"file://{tmp_path}/store") as mgr:
            s = await mgr.create("assistant")
            await s.append_message(Message.user("hi"))

    asyncio.run(one_session())
    exe = shutil.which("aixgo")
    assert exe is not None
    out = subprocess.run([exe, "plugins", "--json"], capture_output=True, text=True, check=True)
    by_name = {p["name"]: p for p in json.loads(out.stdout)}
    assert by_name["file"]["commands"] == ["file"]
    proc = subprocess.run(
        [exe, "file", "repair", "--check", str(tmp_path / "store")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1 sessions checked; nothing was changed"


def test_the_web_plugin_adds_its_command_and_ships_its_page() -> None:
    from importlib.metadata import distributions
    from importlib.resources import files

    if "aixgo-web" not in {d.metadata["Name"] for d in distributions()}:
        pytest.skip("aixgo-web is not installed here")
    exe = shutil.which("aixgo")
    assert exe is not None
    out = subprocess.run([exe, "plugins", "--json"], capture_output=True, text=True, check=True)
    by_name = {p["name"]: p for p in json.loads(out.stdout)}
    assert by_name["web"]["distribution"] == "aixgo-web"
    assert by_name["web"]["commands"] == ["web"]
    help_text = subprocess.run([exe, "web", "--help"], capture_output=True, text=True, check=True)
    assert "--listen" in help_text.stdout
    # The chat page is package data of the wheel, beside the installed module.
    static = files("aixgo_web") / "static"
    assert "site-packages" in str(static)
    for name in ("index.html", "chat.js", "chat.css"):
        assert (static / name).is_file(), name
