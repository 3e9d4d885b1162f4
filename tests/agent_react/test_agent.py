"""ReActAgent in a runtime: history within a budget, the input once, every step stored,
tool errors the model can react to, max_steps, resumption, input limits, YAML."""

from __future__ import annotations

import asyncio
import re
import textwrap
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aixgo import Message, Runtime, plugins
from aixgo.agent import SessionAwareAgent
from aixgo.errors import AgentError, CallTimeout, InvalidMessage
from aixgo.message import ToolCall
from aixgo.runtime import REPLY_TO
from aixgo.session import SessionManager
from aixgo.session.codec import MAX_DEPTH
from aixgo.testing.samples import nested
from aixgo_agent_react import ReActAgent, ScriptedModel, Tool, tool
from aixgo_agent_react import agent as agent_module
from aixgo_agent_react.agent import STOPPED, TOOL_ERROR
from aixgo_agent_react.budget import estimate_tokens
from pydantic import JsonValue


def ask(*calls: tuple[str, dict[str, object]]) -> Message:
    return Message.assistant(
        tool_calls=[ToolCall(id=f"call_{i}", name=n, arguments=a) for i, (n, a) in enumerate(calls)]
    )


class Counting:
    """Tools that count their runs."""

    def __init__(self) -> None:
        self.runs: list[str] = []

        @tool
        def lookup(key: str) -> str:
            """Look a key up."""
            self.runs.append(key)
            return f"value of {key}"

        self.lookup: Tool = lookup


def answer_after_tools(*calls: tuple[str, dict[str, object]]) -> ScriptedModel:
    """Asks for ``calls`` once per turn, then answers with the results it saw."""

    def policy(messages: Sequence[Message], tools: Sequence[Tool]) -> Message:
        if messages[-1].role == "tool":
            results = [m.text for m in messages if m.role == "tool"]
            return Message.assistant(f"done: {len(results)} results")
        return ask(*calls)

    return ScriptedModel(policy)


async def history(mgr: SessionManager) -> list[Message]:
    (info,) = (await mgr.list()).items
    return await (await mgr.get(info.id)).get_messages()


@pytest.mark.asyncio
async def test_every_step_is_stored_in_order_and_the_input_is_sent_once(
    mgr: SessionManager,
) -> None:
    tools = Counting()
    model = answer_after_tools(("lookup", {"key": "a"}), ("lookup", {"key": "b"}))
    agent = ReActAgent(model, [tools.lookup], system_prompt="Be exact.")
    assert isinstance(agent, SessionAwareAgent)
    async with Runtime(session_manager=mgr) as rt:
        rt.register("assistant", agent)
        q1 = Message.user("first question")
        out = await rt.call("assistant", q1, user="alice")
        q2 = Message.user("second question")
        out2 = await rt.call("assistant", q2, user="alice")
    stored = await history(mgr)
    assert [(m.role, m.text) for m in stored] == [
        ("user", "first question"),
        ("assistant", ""),
        ("tool", "value of a"),
        ("tool", "value of b"),
        ("assistant", "done: 2 results"),
        ("user", "second question"),
        ("assistant", ""),
        ("tool", "value of a"),
        ("tool", "value of b"),
        ("assistant", "done: 4 results"),
    ]
    assert [m.seq for m in stored] == list(range(1, 11))
    assert len({m.id for m in stored}) == 10
    assert stored[4].id == out.id and out.metadata[REPLY_TO] == q1.id
    assert stored[9].id == out2.id and out2.metadata[REPLY_TO] == q2.id
    assert [m.tool_call_id for m in stored if m.role == "tool"] == ["call_0", "call_1"] * 2
    assert tools.runs == ["a", "b", "a", "b"]
    # The second turn's first request: system prompt, the whole first turn, the input once.
    first_of_turn_2 = model.requests[2]
    assert first_of_turn_2[0].role == "system"
    assert first_of_turn_2[0].text == "Be exact."
    assert [m.id for m in first_of_turn_2[1:]] == [m.id for m in stored[:6]]
    assert sum(m.id == q2.id for r in model.requests for m in r) == 2  # once per request


@pytest.mark.asyncio
async def test_tool_errors_are_messages_the_model_reacts_to(mgr: SessionManager) -> None:
    @tool
    def boom(x: int) -> int:
        """Fails."""
        raise RuntimeError("disk on fire")

    @tool
    async def slow() -> str:
        """Sleeps."""
        await asyncio.sleep(10)
        return "late"

    model = answer_after_tools(
        ("nope", {}), ("boom", {"x": "not a number"}), ("boom", {"x": 1}), ("slow", {})
    )
    agent = ReActAgent(model, [boom, slow], tool_timeout=0.2)
    async with Runtime(session_manager=mgr) as rt:
        rt.register("assistant", agent)
        out = await rt.call("assistant", Message.user("go"), user="alice")
    assert out.text == "done: 4 results"
    results = [m for m in await history(mgr) if m.role == "tool"]
    assert all(m.metadata[TOOL_ERROR] is True for m in results)
    texts = [m.text for m in results]
    assert texts[0] == "error: there is no tool 'nope'; tools: boom, slow"
    assert texts[1].startswith("error: invalid arguments for tool 'boom': x: Input should be")
    assert texts[2] == "error: tool 'boom' failed: RuntimeError: disk on fire"
    assert texts[3] == "error: tool 'slow' did not finish within 0.2 s"
    assert model.requests[-1][-1].text == texts[3]  # the model saw them


@pytest.mark.asyncio
async def test_a_repeated_call_id_gets_its_own_id_and_result(mgr: SessionManager) -> None:
    tools = Counting()
    same = ask(("lookup", {"key": "a"}), ("lookup", {"key": "b"}))
    same = same.model_copy(
        update={"tool_calls": [c.model_copy(update={"id": "dup"}) for c in same.tool_calls or []]}
    )
    model = ScriptedModel([same, "ok"])
    async with Runtime(session_manager=mgr) as rt:
        rt.register("assistant", ReActAgent(model, [tools.lookup]))
        await rt.call("assistant", Message.user("go"), user="alice")
    stored = await history(mgr)
    ids = [c.id for c in stored[1].tool_calls or []]
    assert ids[0] == "dup" and ids[1] != "dup"
    assert [m.tool_call_id for m in stored if m.role == "tool"] == ids
    assert tools.runs == ["a", "b"]


@pytest.mark.asyncio
async def test_max_steps_ends_the_loop_with_a_clear_final_message(mgr: SessionManager) -> None:
    tools = Counting()
    model = ScriptedModel(lambda msgs, tools: ask(("lookup", {"key": "again"})))
    agent = ReActAgent(model, [tools.lookup], max_steps=3)
    async with Runtime(session_manager=mgr) as rt:
        rt.register("assistant", agent)
        out = await rt.call("assistant", Message.user("loop forever"), user="alice")
    assert out.metadata[STOPPED] == "max_steps"
    assert "stopped after 3 steps" in out.text
    assert len(model.requests) == 3
    assert tools.runs == ["again"] * 3
    roles = [m.role for m in await history(mgr)]
    assert roles == ["user", *["assistant", "tool"] * 3, "assistant"]


@pytest.mark.asyncio
async def test_a_failed_turn_resumes_without_running_stored_tools_again(
    mgr: SessionManager,
) -> None:
    tools = Counting()
    calls = {"n": 0}

    def flaky(messages: Sequence[Message], _: Sequence[Tool]) -> Message:
        calls["n"] += 1
        if messages[-1].role != "tool":
            return ask(("lookup", {"key": "k1"}), ("lookup", {"key": "k2"}))
        if calls["n"] == 2:
            raise ConnectionError("model went away after the tools ran")
        return Message.assistant("final")

    agent = ReActAgent(ScriptedModel(flaky), [tools.lookup])
    question = Message.user("q")
    async with Runtime(session_manager=mgr) as rt:
        rt.register("assistant", agent)
        with pytest.raises(AgentError, match="model went away"):
            await rt.call("assistant", question, user="alice")
        assert [m.role for m in await history(mgr)] == ["user", "assistant", "tool", "tool"]
        out = await rt.call("assistant", question, user="alice")  # the same message: resume
        again = await rt.call("assistant", question, user="alice")  # answered: returned as is
    assert out.text == "final" and again.id == out.id
    assert tools.runs == ["k1", "k2"]
    assert [m.role for m in await history(mgr)] == [
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
    ]


@pytest.mark.asyncio
@pytest.mark.usefixtures("no_waiting")
async def test_a_runtime_timeout_in_a_tool_keeps_the_steps_so_far(mgr: SessionManager) -> None:
    runs: list[str] = []
    hang = {"on": True}

    @tool
    def quick() -> str:
        """Fast."""
        runs.append("quick")
        return "q"

    @tool
    async def stuck() -> str:
        """Hangs the first time."""
        runs.append("stuck")
        if hang["on"]:
            await asyncio.sleep(30)
        return "s"

    model = answer_after_tools(("quick", {}), ("stuck", {}))
    question = Message.user("go")
    async with Runtime(session_manager=mgr, timeout=0.5) as rt:
        rt.register("assistant", ReActAgent(model, [quick, stuck], tool_timeout=None))
        with pytest.raises(CallTimeout):
            await rt.call("assistant", question, user="alice")
        assert [m.role for m in await history(mgr)] == ["user", "assistant", "tool"]
        hang["on"] = False
        out = await rt.call("assistant", question, user="alice")  # no_waiting: not waited for
    assert out.text == "done: 2 results"
    assert runs == ["quick", "stuck", "stuck"]
    assert [m.role for m in await history(mgr)] == [
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
    ]


@pytest.mark.asyncio
async def test_a_half_answered_request_runs_only_the_missing_tools(mgr: SessionManager) -> None:
    tools = Counting()
    model = answer_after_tools(("lookup", {"key": "never"}))
    s = await mgr.create("assistant", user_id="alice")
    question = Message.user("q")
    request = ask(("lookup", {"key": "k1"}), ("lookup", {"key": "k2"}), ("lookup", {"key": "k3"}))
    # What a run killed after its first tool left behind.
    await s.append_messages([question, request, Message.tool("stored", tool_call_id="call_0")])
    async with Runtime(session_manager=mgr) as rt:
        rt.register("assistant", ReActAgent(model, [tools.lookup]))
        out = await rt.call_with_session("assistant", question, s.id)
    assert tools.runs == ["k2", "k3"]
    assert len(model.requests) == 1  # the stored request was not asked for again
    stored = await s.get_messages()
    assert [m.tool_call_id for m in stored if m.role == "tool"] == ["call_0", "call_1", "call_2"]
    assert stored[-1].id == out.id and out.text == "done: 3 results"
    assert [m.seq for m in stored] == [1, 2, 3, 4, 5, 6]


@pytest.mark.asyncio
async def test_an_earlier_interrupted_turn_never_reaches_the_model_half_formed(
    mgr: SessionManager,
) -> None:
    model = ScriptedModel(["ok"])
    s = await mgr.create("assistant", user_id="alice")
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)  # a crash long ago: nothing to wait for
    await s.append_messages(
        [
            Message.user("old", created_at=long_ago),
            ask(("lookup", {}), ("lookup", {})),
            Message.tool("r", tool_call_id="call_0", created_at=long_ago),
        ]
    )
    async with Runtime(session_manager=mgr) as rt:
        rt.register("assistant", ReActAgent(model, []))
        await rt.call_with_session("assistant", Message.user("new"), s.id)
    (context,) = model.requests
    assert [(m.role, m.text) for m in context] == [("user", "old"), ("user", "new")]


@pytest.mark.asyncio
async def test_history_is_cut_to_the_token_budget_keeping_prompt_and_input(
    mgr: SessionManager,
) -> None:
    model = ScriptedModel(lambda msgs, tools: Message.assistant("x" * 400))
    agent = ReActAgent(model, [], system_prompt="S" * 400, max_context_tokens=600)
    async with Runtime(session_manager=mgr) as rt:
        rt.register("assistant", agent)
        for i in range(6):
            await rt.call("assistant", Message.user(f"{i}" * 400), user="alice")
    last = model.requests[-1]
    assert last[0].text == "S" * 400 and last[-1].text == "5" * 400
    assert sum(estimate_tokens(m) for m in last) <= 600
    assert [m.text[0] for m in last if m.role == "user"] == ["4", "5"]  # the newest whole turns
    assert [m.role for m in last] == ["system", "user", "assistant", "user"]
    # An input larger than the whole budget is still sent, alone with the prompt.
    big = ReActAgent(model, [], system_prompt="S", max_context_tokens=10)
    await big.execute(Message.user("y" * 1000))
    assert [m.role for m in model.requests[-1]] == ["system", "user"]


@pytest.mark.asyncio
async def test_a_long_history_is_read_as_a_bounded_tail(
    mgr: SessionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_module, "_WINDOW", 5)
    model = ScriptedModel(lambda msgs, tools: Message.assistant("a"))
    s = await mgr.create("assistant", user_id="alice")
    for i in range(10):
        await s.append_messages([Message.user(f"q{i}"), Message.assistant(f"a{i}")])
    async with Runtime(session_manager=mgr) as rt:
        rt.register("assistant", ReActAgent(model, []))
        await rt.call_with_session("assistant", Message.user("now"), s.id)
        await s.append_messages(
            [Message.user("q"), Message.assistant("x"), Message.assistant("y"), Message.user("z")]
        )
        await s.append_message(Message.assistant("ignored"))
        await rt.call_with_session("assistant", Message.user("then"), s.id)
    assert [m.text for m in model.requests[0]] == ["q8", "a8", "q9", "a9", "now"]
    # The window starts inside a turn (x, y of q): what is left of it is not sent.
    assert [m.text for m in model.requests[1]] == ["z", "ignored", "then"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("x" * 1001, "1,001 characters; at most 1,000"),
        ("hello\x00world", "control character '\\x00'"),
        ("esc \x1b[31m", "control character '\\x1b'"),
        # Structured content: every string of every part, not only the text parts.
        ([{"type": "image_url", "image_url": {"url": "x" * 1000}}], "characters; at most 1,000"),
        (
            [{"type": "text", "text": "ok"}, {"type": "file", "name": "a\x1b]0;x\x07"}],
            "control character '\\x1b'",
        ),
        ([{"type": "data", "v": nested(MAX_DEPTH)}], f"more than {MAX_DEPTH} levels deep"),
    ],
)
async def test_bad_input_is_refused_before_anything_is_stored(
    mgr: SessionManager, text: str | list[dict[str, JsonValue]], problem: str
) -> None:
    model = ScriptedModel(["never"])
    agent = ReActAgent(model, [], max_input_chars=1000)
    async with Runtime(session_manager=mgr) as rt:
        rt.register("assistant", agent)
        with pytest.raises(InvalidMessage, match=re.escape(problem)):
            await rt.call("assistant", Message.user(text), user="alice")
        with pytest.raises(InvalidMessage):
            await rt.call("assistant", Message.user(text))  # stateless too
        assert (await mgr.list()).items == []
        out = await rt.call("assistant", Message.user("tabs\tand\nnewlines\r are fine"), user="a")
    assert out.text == "never"
    assert model.requests and len(model.requests) == 1
    with pytest.raises(InvalidMessage, match="user message"):
        agent.check_input(Message.assistant("hi"))


@pytest.mark.asyncio
async def test_a_stateless_call_runs_the_loop_and_stores_nothing(mgr: SessionManager) -> None:
    tools = Counting()
    agent = ReActAgent("scripted:calls", [tools.lookup])
    async with Runtime(session_manager=mgr) as rt:
        rt.register("calc", agent, session_mode="disabled")
        out = await rt.call("calc", Message.user('lookup(key="z")'), user="alice")
    assert out.text == "Results: value of z"
    assert tools.runs == ["z"]
    assert (await mgr.list()).items == []


def test_role_react_in_yaml_builds_the_agent_through_the_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugins.reset()
    assert "react" in plugins.agent_types()
    (tmp_path / "my_tools.py").write_text(
        textwrap.dedent(
            '''
            def shout(text: str) -> str:
                """Capitals."""
                return text.upper()
            '''
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "aixgo.yaml"
    config.write_text(
        textwrap.dedent(
            """
            session: memory://
            agents:
              - name: assistant
                role: react
                options:
                  model: "${MODEL:-scripted:calls}"
                  tools: ["my_tools:shout"]
                  system_prompt: Be loud.
                  max_steps: 4
            """
        )
    )

    async def run() -> str:
        rt = Runtime.from_config(config)
        async with rt:
            agent = rt.get("assistant")
            assert isinstance(agent, ReActAgent)
            assert agent.max_steps == 4 and agent.system_prompt == "Be loud."
            out = await rt.call("assistant", Message.user('shout(text="hey")'), user="u")
            return out.text

    assert asyncio.run(run()) == "Results: HEY"
