"""``aixgo chat``: an interactive loop that remembers across runs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aixgo import Message, hookimpl, plugins
from aixgo.cli import cli
from aixgo.events import Delta, Step
from aixgo.session import Session
from click.testing import CliRunner


class Recall:
    """Answers with the first thing the user ever said in this session."""

    async def execute(self, input: Message) -> Message:
        return Message.assistant(f"(no memory) {input.text}")

    async def execute_with_session(self, input: Message, session: Session) -> Message:
        if input.text == "fail":
            raise RuntimeError("model down")
        history = await session.get_messages()
        first = next(m.text for m in history if m.role == "user")
        return Message.assistant(f"turn {len(history) // 2 + 1}; you first said: {first}")


class RecallPlugin:
    @hookimpl
    def aixgo_register_agents(self, register):  # type: ignore[no-untyped-def]
        register("recall", Recall)


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Path]:
    plugins.register_plugin(RecallPlugin(), "recall")
    path = tmp_path / "aixgo.yaml"
    path.write_text(
        f"session: file://{tmp_path}/store\n"
        "agents:\n"
        "  - {name: assistant, role: recall}\n"
        "  - {name: oneshot, role: recall, session_mode: disabled}\n"
    )
    yield path
    plugins.unregister_plugin("recall")


def chat(*args: str, input: str) -> tuple[str, str]:
    result = CliRunner().invoke(cli, ["chat", *args], input=input)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout, result.stderr


def test_chat_remembers_across_runs(config: Path) -> None:
    out, err = chat("assistant", "--config", str(config), "--user", "alice",
                    input="My name is Alice\n\n/session\n")  # fmt: skip
    assert "assistant> turn 1; you first said: My name is Alice" in out
    assert "(new)" in err
    session_id = out.splitlines()[-1]
    out, err = chat("assistant", "-c", str(config), "-u", "alice", input="fail\nWho am I?\n/quit\n")
    assert f"session {session_id} (resumed, 2 messages)" in err
    assert "error: agent 'assistant' failed" in err and "model down" in err
    assert "assistant> turn 3; you first said: My name is Alice" in out  # after the failed turn
    # Another user has a conversation of their own; --session picks one explicitly.
    out, _ = chat("assistant", "-c", str(config), "-u", "bob", input="I am Bob\n")
    assert "you first said: I am Bob" in out
    out, _ = chat("assistant", "-c", str(config), "-u", "alice", "--session", session_id,
                  input="again\n")  # fmt: skip
    assert "turn 4; you first said: My name is Alice" in out


def test_chat_with_a_stateless_agent_and_errors(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIXGO_USER", raising=False)
    out, err = chat("oneshot", "-c", str(config), "-u", "alice", input="hi\n")
    assert "stateless" in err and "oneshot> (no memory) hi" in out
    result = CliRunner().invoke(cli, ["chat", "nobody", "-c", str(config), "-u", "a"], input="")
    assert "no agent is registered as 'nobody'" in str(result.exception)
    result = CliRunner().invoke(cli, ["chat", "assistant", "-c", str(config)], input="")
    assert result.exit_code == 2 and "--user" in result.output


class Speller:
    """Streams: a word, a tool step, then its answer in chunks."""

    async def execute(self, input: Message) -> Message:
        raise AssertionError("streamed")

    async def stream_with_session(
        self, input: Message, session: Session | None
    ) -> AsyncIterator[Delta | Step | Message]:
        yield Delta(text="Checking.")
        step = Message.tool("looked up", tool_call_id="c1")
        if session is not None:
            step = await session.append_message(step)
        yield Step(message=step)
        for chunk in ("Spelled: ", *input.text.upper()):
            yield Delta(text=chunk)
        yield Message.assistant("Spelled: " + input.text.upper())


class SpellerPlugin:
    @hookimpl
    def aixgo_register_agents(self, register):  # type: ignore[no-untyped-def]
        register("speller", Speller)


def test_chat_prints_a_streamed_reply_as_it_comes(tmp_path: Path) -> None:
    plugins.register_plugin(SpellerPlugin(), "speller")
    try:
        path = tmp_path / "aixgo.yaml"
        path.write_text("session: memory://\nagents:\n  - {name: sp, role: speller}\n")
        out, _ = chat("sp", "--config", str(path), "--user", "alice", input="abc\n")
    finally:
        plugins.unregister_plugin("speller")
    assert out.splitlines() == ["sp> Checking.", "sp> Spelled: ABC"]
