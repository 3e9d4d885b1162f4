"""A real process SIGKILLed in the middle of a ReAct turn; the next call on that session
continues from the last stored step and never runs a completed tool again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from aixgo import Message, Runtime
from aixgo.identifiers import new_id
from aixgo.message import ToolCall
from aixgo_agent_react import ReActAgent, Tool

TOOLS = """
import asyncio, pathlib
from aixgo_agent_react import tool

def make_tools(folder, hang):
    def note(name):
        with open(pathlib.Path(folder) / "runs", "a") as f:
            f.write(name + "\\n")

    @tool
    def first(x: int) -> int:
        '''Adds one.'''
        note("first")
        return x + 1

    @tool
    async def second(x: int) -> int:
        '''Doubles.'''
        note("second")
        if hang:
            (pathlib.Path(folder) / "ready").write_text("tool")
            await asyncio.sleep(600)  # killed here, after first's result was stored
        return x * 2

    return [first, second]
"""

WORKER = """
import asyncio, pathlib, sys
from aixgo import Message, Runtime
from aixgo.message import ToolCall
from aixgo_agent_react import ReActAgent
from crash_tools import make_tools

url, folder, message_id, kill_at = sys.argv[1:5]

class Model:
    async def complete(self, messages, tools):
        if messages[-1].role == "tool":
            (pathlib.Path(folder) / "ready").write_text("model")
            await asyncio.sleep(600)  # killed here, after both results were stored
        return Message.assistant(tool_calls=[
            ToolCall(id="c1", name="first", arguments={"x": 1}),
            ToolCall(id="c2", name="second", arguments={"x": 5}),
        ])

async def main():
    agent = ReActAgent(Model(), make_tools(folder, hang=kill_at == "tool"))
    async with Runtime(session_manager=url) as rt:
        rt.register("assistant", agent)
        await rt.call("assistant", Message.user("compute", id=message_id), user="alice")

asyncio.run(main())
"""


class Finisher:
    """The model after the restart: answers from the tool results it is sent."""

    def __init__(self) -> None:
        self.requests: list[list[Message]] = []

    async def complete(self, messages: Sequence[Message], tools: Sequence[Tool]) -> Message:
        self.requests.append(list(messages))
        if messages[-1].role != "tool":
            return Message.assistant(tool_calls=[ToolCall(id="again", name="first")])
        results = ", ".join(m.text for m in messages if m.role == "tool")
        return Message.assistant(f"results: {results}")


@pytest.mark.usefixtures("no_waiting")
@pytest.mark.parametrize("kill_at", ["tool", "model"])
def test_a_turn_killed_mid_loop_resumes_from_the_last_stored_step(
    tmp_path: Path, kill_at: str
) -> None:
    url = f"file://{tmp_path}/store"
    (tmp_path / "crash_tools.py").write_text(textwrap.dedent(TOOLS))
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    message_id = new_id()
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, str(script), url, str(tmp_path), message_id, kill_at], env=env
    )
    ready = tmp_path / "ready"
    try:
        deadline = time.monotonic() + 60
        while not (ready.exists() and ready.read_text()):
            assert proc.poll() is None, "the worker died before reaching the kill point"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert ready.read_text() == kill_at
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    sys.path.insert(0, str(tmp_path))
    try:
        from crash_tools import make_tools  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("crash_tools", None)
    model = Finisher()

    async def resume() -> tuple[Message, list[Message], list[Message]]:
        agent = ReActAgent(model, make_tools(str(tmp_path), hang=False))
        async with Runtime(session_manager=url) as rt:
            rt.register("assistant", agent)
            s = await rt.session_manager.get_or_create("assistant", "alice")
            before = await s.get_messages()
            out = await rt.call("assistant", Message.user("compute", id=message_id), user="alice")
            return out, before, await s.get_messages()

    out, before, after = asyncio.run(resume())  # no_waiting: not waited for its own steps
    runs = (tmp_path / "runs").read_text().split()
    if kill_at == "tool":
        assert [m.role for m in before] == ["user", "assistant", "tool"]
        assert runs == ["first", "second", "second"]  # first is not run again
    else:
        assert [m.role for m in before] == ["user", "assistant", "tool", "tool"]
        assert runs == ["first", "second"]  # nothing is run again
    assert out.text == "results: 2, 10"
    assert len(model.requests) == 1  # the stored request for tools was not asked again
    (context,) = model.requests
    assert [m.id for m in context] == [m.id for m in after[:4]]  # the input once, then steps
    assert [(m.role, m.tool_call_id) for m in after] == [
        ("user", None),
        ("assistant", None),
        ("tool", "c1"),
        ("tool", "c2"),
        ("assistant", None),
    ]
    assert [m.seq for m in after] == [1, 2, 3, 4, 5]
    assert after[0].id == message_id and after[-1].id == out.id
