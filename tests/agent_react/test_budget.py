"""The token budget: whole turns, newest first; tool calls never split from their results."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from aixgo import Message, Runtime
from aixgo.message import ToolCall
from aixgo.session import SessionManager
from aixgo_agent_react import ReActAgent, ScriptedModel, Tool, tool
from aixgo_agent_react.budget import estimate_tokens, fit_history, split_turns, well_formed
from hypothesis import given
from hypothesis import strategies as st


def tool_turn(q: str, n: int) -> list[Message]:
    calls = [ToolCall(id=f"{q}-{i}", name="look") for i in range(n)]
    return [
        Message.user(q),
        Message.assistant(tool_calls=calls),
        *[Message.tool("r" * 40, tool_call_id=c.id) for c in calls],
        Message.assistant("answer to " + q),
    ]


def test_estimate_is_about_four_characters_a_token() -> None:
    assert estimate_tokens(Message.user("")) == 4
    assert estimate_tokens(Message.user("x" * 400)) == 104
    call = ToolCall(id="c", name="abcd", arguments={"k": "v" * 100})
    assert estimate_tokens(Message.assistant(tool_calls=[call])) > 25


def test_oldest_whole_turns_are_dropped_first() -> None:
    history = tool_turn("q1", 2) + tool_turn("q2", 1) + tool_turn("q3", 3)
    everything = sum(estimate_tokens(m) for m in history)
    assert fit_history(history, budget=everything) == history
    kept = fit_history(history, budget=everything - 1)
    assert [m.text for m in kept if m.role == "user"] == ["q2", "q3"]
    cost_q3 = sum(estimate_tokens(m) for m in split_turns(history)[-1])
    assert [m.text for m in fit_history(history, budget=cost_q3) if m.role == "user"] == ["q3"]
    assert fit_history(history, budget=cost_q3 - 1) == []


def test_a_custom_counter_is_used() -> None:
    history = [Message.user("a"), Message.assistant("b"), Message.user("c"), Message.assistant("d")]
    assert fit_history(history, budget=2, count=lambda m: 1) == history[2:]
    assert fit_history(history, budget=4, count=lambda m: 1) == history


def test_interrupted_tool_calls_and_stray_results_are_left_out() -> None:
    c1, c2 = ToolCall(id="c1", name="a"), ToolCall(id="c2", name="b")
    turn = [
        Message.user("q"),
        Message.assistant("thinking", tool_calls=[c1, c2]),
        Message.tool("only one", tool_call_id="c1"),
        Message.tool("stray", tool_call_id="zz"),
    ]
    clean = well_formed(turn)
    assert [(m.role, m.text, m.tool_calls) for m in clean] == [
        ("user", "q", None),
        ("assistant", "thinking", None),
    ]
    # Results follow their request even when the API reorders nothing else.
    ok = [
        Message.user("q"),
        Message.assistant(tool_calls=[c1]),
        Message.tool("r", tool_call_id="c1"),
    ]
    assert well_formed(ok) == ok


@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 200), st.booleans()), min_size=0, max_size=12
    ),
    st.integers(0, 3000),
)
def test_kept_history_is_always_a_well_formed_suffix(
    turns: list[tuple[int, int, bool]], budget: int
) -> None:
    history: list[Message] = []
    for i, (n_calls, size, complete) in enumerate(turns):
        t = tool_turn(f"q{i}-" + "x" * size, n_calls)
        if not complete and n_calls:
            t = t[:3]  # a crash after the first result
        history += t
    kept = fit_history(history, budget=budget)
    assert sum(estimate_tokens(m) for m in kept) <= budget
    assert well_formed(kept) == kept
    users = [m.id for m in history if m.role == "user"]
    kept_users = [m.id for m in kept if m.role == "user"]
    assert kept_users == users[len(users) - len(kept_users) :]  # the newest turns
    requested = {c.id for m in kept for c in m.tool_calls or []}
    answered = {m.tool_call_id for m in kept if m.role == "tool"}
    assert requested == answered


@pytest.mark.asyncio
async def test_earlier_history_is_split_and_counted_once_a_turn_not_once_a_step(
    mgr: SessionManager,
) -> None:
    @tool
    def look(key: str) -> str:
        """Look a key up."""
        return f"value of {key}"

    def policy(messages: Sequence[Message], tools: Sequence[Tool]) -> Message:
        rounds = sum(1 for m in messages if m.role == "tool" and m.text.startswith("value"))
        if rounds < 3:
            return Message.assistant(tool_calls=[ToolCall(name="look", arguments={"key": "k"})])
        return Message.assistant("done")

    counted: list[str] = []

    def count(message: Message) -> int:
        counted.append(message.id)
        return estimate_tokens(message)

    s = await mgr.create("assistant", user_id="alice")
    earlier = await s.append_messages(tool_turn("q1", 2) + tool_turn("q2", 1))
    model = ScriptedModel(policy)
    async with Runtime(session_manager=mgr) as rt:
        rt.register("assistant", ReActAgent(model, [look], count_tokens=count))
        await rt.call_with_session("assistant", Message.user("now"), s.id)
    assert len(model.requests) == 4  # three tool steps, then the answer
    for request in model.requests:  # every step still sends the whole earlier history
        assert [m.id for m in request[: len(earlier)]] == [m.id for m in earlier]
    assert all(counted.count(m.id) == 1 for m in earlier), counted
