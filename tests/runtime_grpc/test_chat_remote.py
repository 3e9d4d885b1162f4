"""``aixgo chat`` on a remote agent pins the session its first turn ran in: each later line
continues that session on the node, even once another client has made a newer session of the
same user there (a real ``aixgo serve`` process and a real ``aixgo chat`` process, driven
through stdin, on the real Redis)."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest
import yaml
from aixgo.session import SessionManager, open_backend
from aixgo_runtime_grpc import RemoteAgent

from .conftest import NodeFactory

pytestmark = pytest.mark.asyncio


async def _line_with(stream: asyncio.StreamReader, text: str) -> str:
    """Read lines until one holds ``text``; the line."""
    async with asyncio.timeout(60):
        while line := (await stream.readline()).decode():
            if text in line:
                return line
    raise AssertionError(f"the chat ended before printing {text!r}")


async def test_each_line_continues_the_session_the_first_one_ran_in(
    nodes: NodeFactory, redis_store: str, tmp_path: Path
) -> None:
    (node,) = nodes(redis_store, args=["--insecure"])
    config = tmp_path / "client.yaml"
    options = {"url": f"grpc://{node.address}", "agent": "echo", "insecure": True}
    config.write_text(yaml.safe_dump({
        "session": (tmp_path / "client-store").as_uri(),
        "agents": [{"name": "assistant", "role": "remote", "options": options}],
    }))  # fmt: skip
    aixgo = Path(sys.executable).parent / "aixgo"
    proc = await asyncio.create_subprocess_exec(
        str(aixgo), "chat", "assistant", "--config", str(config), "--user", "chatty",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(b"one\n")
        await proc.stdin.drain()
        await _line_with(proc.stdout, "assistant> You said: one")
        # Another client of the same user starts a newer session on the node: it is now
        # chatty's latest, and a chat that sent only the user would land there.
        async with SessionManager(open_backend(redis_store)) as mgr:
            (first,) = (await mgr.list(user_id="chatty")).items
            newer = await mgr.create("echo", user_id="chatty")
        out, err = await proc.communicate(b"two\n/session\n/quit\n")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert "assistant> You said: two" in out.decode()
    agent = RemoteAgent(f"grpc://{node.address}", agent="echo", insecure=True)
    try:
        history = await agent.tail(first.id, user="chatty")
        untouched = await agent.tail(newer.id, user="chatty")
    finally:
        await agent.stop()
    assert [m.text for m in history] == ["one", "You said: one", "two", "You said: two"]
    assert untouched == []

    stderr = err.decode()
    assert "chatty's latest session, kept where assistant runs" in stderr
    named = re.findall(r"session ([0-9a-f]{32}), kept where assistant runs", stderr)
    assert named == [first.id]  # said once, when the first turn named it
    assert out.decode().splitlines()[-1] == first.id  # /session prints the pinned id
    # Nothing was made in the chat's own store.
    async with SessionManager(open_backend((tmp_path / "client-store").as_uri())) as mgr:
        assert (await mgr.list(user_id="chatty")).items == []
