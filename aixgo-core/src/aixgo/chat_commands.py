"""Slash-commands of ``aixgo chat``. A line starting with ``/`` is a command for the terminal,
handled here and never sent to the agent; ``//text`` sends ``/text``.

>>> parse("/checkpoint before the trip")
('checkpoint', 'before the trip')
>>> parse("//etc is a folder") is None, parse("hello") is None
(True, True)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import click

from aixgo.cli_errors import cli_message
from aixgo.cli_sessions import message_table, printable, table
from aixgo.errors import AixgoError, InvalidArgument
from aixgo.runtime import Runtime
from aixgo.session import Session

__all__ = ["HELP", "Chat", "parse", "run_command"]

HISTORY = 20  # messages /history shows without a count, and sessions /sessions lists


@dataclass(slots=True)
class Chat:
    """What a chat talks to: an agent of a running runtime, for a user, in a session
    (``session_id`` is ``None`` for a stateless agent, and for a remote agent until its
    first turn names the session it ran in: its sessions are kept where it runs,
    ``hosted``)."""

    rt: Runtime
    agent: str
    user: str
    session_id: str | None
    hosted: bool = False

    async def session(self) -> Session:
        """The current session."""
        assert self.session_id is not None
        return await self.rt.session_manager.get(self.session_id, user_id=self.user)


def parse(line: str) -> tuple[str, str] | None:
    """``(command, argument)`` for a slash-command line; ``None`` for a message to the agent."""
    if not line.startswith("/") or line.startswith("//"):
        return None
    name, _, argument = line[1:].partition(" ")
    return name, argument.strip()


async def run_command(chat: Chat, name: str, argument: str) -> bool:
    """Run the slash-command ``name``; ``False`` when the chat should end. An error is printed
    and the chat goes on."""
    if name in ("quit", "exit"):
        return False
    found = _COMMANDS.get(name)
    if found is None:
        _say(f"unknown command /{printable(name)}; /help lists them")
        return True
    handler, stateful, _ = found
    if stateful and chat.hosted:
        _say(f"{chat.agent}'s sessions are kept where it runs: /{name} works on local agents")
        return True
    if stateful and chat.session_id is None:
        _say(f"{chat.agent} is stateless: it keeps no sessions, history or checkpoints")
        return True
    try:
        await handler(chat, argument)
    except AixgoError as exc:
        _say(f"error: {printable(cli_message(exc, chat=True), lines=True)}")
    return True


def _say(text: str) -> None:
    click.echo(text, err=True)


async def _help(chat: Chat, argument: str) -> None:
    click.echo(HELP)


async def _session(chat: Chat, argument: str) -> None:
    click.echo(chat.session_id or ("(the latest, where it runs)" if chat.hosted else "(stateless)"))


async def _history(chat: Chat, argument: str) -> None:
    last = _count(argument)
    messages = await (await chat.session()).get_messages(last=last)
    click.echo(message_table(messages) if messages else "no messages yet")


def _count(argument: str) -> int:
    if not argument:
        return HISTORY
    if not argument.isdigit() or int(argument) < 1:
        raise InvalidArgument(f"/history takes a number of messages, not {argument!r}")
    return int(argument)


async def _sessions(chat: Chat, argument: str) -> None:
    page = await chat.rt.session_manager.list(agent=chat.agent, user_id=chat.user, limit=HISTORY)
    rows = [
        ("*" if i.id == chat.session_id else "", printable(i.id), str(i.message_count),
         i.updated_at.strftime("%Y-%m-%d %H:%M:%S"), printable(str(i.metadata.get("title", ""))))
        for i in page.items
    ]  # fmt: skip
    click.echo(table(("", "ID", "MESSAGES", "UPDATED", "TITLE"), rows))
    more = " (the latest; `aixgo sessions list` shows all)" if page.next_cursor else ""
    _say(f"* is this chat{more}; continue another with: aixgo chat {chat.agent} --session ID")


async def _new(chat: Chat, argument: str) -> None:
    s = await chat.rt.session_manager.create(chat.agent, user_id=chat.user)
    chat.session_id = s.id
    _say(f"new session {s.id}")


async def _checkpoint(chat: Chat, argument: str) -> None:
    cp = await (await chat.session()).checkpoint(label=argument or None)
    _say(f"checkpoint {cp.id} at message {cp.seq}; /restore {cp.id} comes back here")


async def _restore(chat: Chat, argument: str) -> None:
    s = await chat.session()
    if not argument:
        cps = await s.list_checkpoints()
        rows = [(printable(c.id), str(c.seq), printable(c.label or "")) for c in cps]
        click.echo(table(("ID", "SEQ", "LABEL"), rows) if rows else "no checkpoints yet")
        return
    undo = await s.restore(argument)
    count = (await s.info()).message_count
    _say(f"restored to {printable(argument)}: {count} messages; /restore {undo.id} undoes it")


Handler = Callable[[Chat, str], Awaitable[None]]

# name -> (handler, needs a session, help line)
_COMMANDS: dict[str, tuple[Handler, bool, str]] = {
    "help": (_help, False, "/help                this list"),
    "history": (_history, True, f"/history [N]         the last N messages (default {HISTORY})"),
    "sessions": (_sessions, True, "/sessions            your sessions with this agent"),
    "new": (_new, True, "/new                 start a new session"),
    "checkpoint": (_checkpoint, True, "/checkpoint [LABEL]  remember this point of the history"),
    "restore": (
        _restore,
        True,
        "/restore [ID]        back to a checkpoint (undoable); no ID: list",
    ),
    "session": (_session, False, "/session             this session's id"),
}

#: What ``/help`` prints.
HELP = "\n".join(
    [
        *(line for _, _, line in _COMMANDS.values()),
        "/quit                leave (so does end of input, Ctrl-D)",
        "Anything else is sent to the agent; start it with // to send a leading /.",
    ]
)
