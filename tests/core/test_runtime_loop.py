"""Calls share the event loop: a tight loop of calls on a local store (memory://, file://)
never stalls the other tasks of the process (in a web server, the other requests)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest
from aixgo import Message, Runtime


class Echo:
    async def execute(self, input: Message) -> Message:
        return Message.assistant("echo: " + input.text)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["memory", "file", "file-fsync"])
async def test_a_busy_caller_does_not_stall_a_ticker(kind: str, tmp_path: Path) -> None:
    url = {
        "memory": "memory://",
        "file": f"file://{tmp_path}/sessions",
        "file-fsync": f"file://{tmp_path}/sessions?durability=fsync",
    }[kind]
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async with Runtime(session_manager=url, timeout=5) as rt:
        rt.register("echo", Echo())
        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)  # the ticker starts
        deadline = time.monotonic() + 0.5
        calls = 0
        while time.monotonic() < deadline:
            await rt.call("echo", Message.user(f"m{calls}"), user="alice")
            calls += 1
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # 0.5 s of 10 ms ticks is 50 on an idle machine; a loop that never yields gives none.
    assert ticks >= 10, f"the ticker ran {ticks} times during {calls} calls"
