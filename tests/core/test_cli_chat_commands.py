"""``aixgo chat``'s slash-commands: handled in the terminal, never sent to the agent."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from aixgo import Message, hookimpl, plugins
from aixgo.cli import cli
from aixgo.session import Session
from click.testing import CliRunner


class Parrot:
    """Repeats what it is sent, numbered by the session's length, and remembers every input."""

    seen: ClassVar[list[str]] = []

    async def execute(self, input: Message) -> Message:
        Parrot.seen.append(input.text)
        return Message.assistant(f"said {input.text}")

    async def execute_with_session(self, input: Message, session: Session) -> Message:
        Parrot.seen.append(input.text)
        count = len(await session.get_messages())
        return Message.assistant(f"#{count} said {input.text}")


class ParrotPlugin:
    @hookimpl
    def aixgo_register_agents(self, register):  # type: ignore[no-untyped-def]
        register("parrot", Parrot)


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Path]:
    plugins.register_plugin(ParrotPlugin(), "parrot")
    Parrot.seen = []
    path = tmp_path / "aixgo.yaml"
    path.write_text(
        f"session: file://{tmp_path}/store\n"
        "agents:\n"
        "  - {name: assistant, role: parrot}\n"
        "  - {name: oneshot, role: parrot, session_mode: disabled}\n"
    )
    yield path
    plugins.unregister_plugin("parrot")


def chat(config: Path, *lines: str, agent: str = "assistant") -> tuple[str, str]:
    result = CliRunner().invoke(
        cli,
        ["chat", agent, "-c", str(config), "-u", "alice"],
        input="".join(f"{x}\n" for x in lines),
    )
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout, result.stderr


def test_commands_are_never_sent_to_the_agent(config: Path) -> None:
    out, err = chat(config, "/help", "/history", "/sessions", "/checkpoint", "/restore",
                    "/nonsense", "/history 2", "/history two", "/quit", "after quit")  # fmt: skip
    assert Parrot.seen == []
    assert "/checkpoint [LABEL]" in out and "/quit" in out  # /help
    assert "no messages yet" in out
    assert "unknown command /nonsense; /help lists them" in err
    assert "error: /history takes a number of messages, not 'two'" in err
    assert "after quit" not in out + err


def test_history_checkpoint_restore_and_undo(config: Path) -> None:
    out, err = chat(config, "one", "/checkpoint first", "two", "/history", "/restore")
    assert Parrot.seen == ["one", "two"]
    assert "assistant  #1 said one" in out and "assistant  #3 said two" in out
    cp = err.split("checkpoint ")[1].split()[0]
    assert f"{cp}  2    first" in out  # /restore without an id lists the checkpoints
    out, err = chat(config, f"/restore {cp}", "/history")
    assert "restored to" in err and ": 2 messages" in err
    undo = err.split("/restore ")[1].split()[0]
    assert "#3 said two" not in out and "#1 said one" in out
    out, err = chat(config, f"/restore {undo}", "/history 1")
    assert "#3 said two" in out and "#1 said one" not in out
    missing = "0" * 32
    out, err = chat(config, f"/restore {missing}", "/restore nope")
    assert f"error: checkpoint '{missing}' does not exist" in err
    assert "/restore without an id lists" in err and "Session." not in err
    assert "error: invalid checkpoint id 'nope'" in err and "()" not in err


def test_new_starts_a_session_and_sessions_lists_them(config: Path) -> None:
    out, err = chat(config, "first", "/session", "/new", "/session", "second", "/sessions")
    first, second = [line for line in out.splitlines() if len(line) == 32]
    assert first != second
    assert "#1 said second" in out  # a fresh history
    rows = [line for line in out.splitlines() if first in line or second in line][-2:]
    assert any(r.startswith("*") and second in r for r in rows)
    assert any(not r.startswith("*") and first in r for r in rows)
    assert "aixgo chat assistant --session ID" in err


def test_a_stateless_agent_has_no_session_commands_and_double_slash_sends_a_slash(
    config: Path,
) -> None:
    out, err = chat(config, "/history", "/checkpoint", "//etc is a folder", agent="oneshot")
    assert err.count("oneshot is stateless: it keeps no sessions") == 2
    assert Parrot.seen == ["/etc is a folder"]
    assert "oneshot> said /etc is a folder" in out


def test_without_a_config_chat_says_how_to_pass_one(tmp_path: Path) -> None:
    aixgo = shutil.which("aixgo")
    assert aixgo is not None
    proc = subprocess.run([aixgo, "chat", "assistant", "-u", "alice"], cwd=tmp_path, input="",
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2
    assert "no config" in proc.stderr and "--config PATH" in proc.stderr
    assert "Traceback" not in proc.stderr
    # --help says what the commands are.
    help_text = subprocess.run([aixgo, "chat", "--help"], capture_output=True, text=True,
                               timeout=60).stdout  # fmt: skip
    assert "/history" in help_text and "./aixgo.yaml" in help_text
