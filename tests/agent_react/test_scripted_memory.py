"""The scripted model keeps a bounded window of the contexts it was sent: a long offline run
(a soak, a demo left running) does not grow without bound."""

from __future__ import annotations

import gc
import tracemalloc

import pytest
from aixgo import Message, Runtime
from aixgo_agent_react import ReActAgent, ScriptedModel, tool


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    return f"the value of {key} is " + "x" * 200


async def _turns(rt: Runtime, start: int, stop: int) -> None:
    for i in range(start, stop):
        await rt.call("react", Message.user(f"turn {i}: please lookup(key=k{i})"), user="soak")


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


@pytest.mark.asyncio
async def test_a_long_scripted_run_keeps_memory_flat() -> None:
    model = ScriptedModel.from_spec("calls")
    async with Runtime(session_manager="memory://", timeout=30) as rt:
        rt.register("react", ReActAgent(model=model, tools=[lookup], max_steps=4))
        tracemalloc.start()
        try:
            await _turns(rt, 0, 50)
            after_50 = _traced()
            await _turns(rt, 50, 300)
            after_300 = _traced()
        finally:
            tracemalloc.stop()
    # 250 more turns store ~750 messages (~1 MB with their indexes); keeping every context
    # sent (each up to the agent's 400-message window) grew by hundreds of MB.
    growth = after_300 - after_50
    assert growth < 20 * 2**20, f"grew {growth / 2**20:.1f} MiB between turn 50 and 300"
    assert len(model.requests) <= ScriptedModel.KEEP_REQUESTS
