"""``aixgo chat AGENT --config aixgo.yaml --user U [--session ID]``: talk to an agent in the
terminal. The conversation is a session like any other, so the next run picks it up again.

Type a message and press Enter; the reply is printed as it arrives when the agent streams it.
Lines starting with ``/`` are commands for the terminal (:mod:`aixgo.chat_commands`:
``/help``, ``/history``, ``/sessions``, ``/new``, ``/checkpoint``, ``/restore``, ``/quit``),
never sent to the agent; end of input leaves too.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import click

from aixgo.chat_commands import Chat, parse, run_command
from aixgo.cli_errors import cli_message
from aixgo.errors import AgentError
from aixgo.events import Event
from aixgo.message import Message
from aixgo.runtime import Runtime

__all__ = ["chat"]


@click.command("chat")
@click.argument("agent")
@click.option("--config", "-c", "config", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML config naming the agents  [default: ./aixgo.yaml]")  # fmt: skip
@click.option("--user", "-u", envvar="AIXGO_USER", required=True,
              help="Whose conversation this is (default: $AIXGO_USER).")  # fmt: skip
@click.option("--session", "session_id", help="Continue this session instead of the latest.")
def chat(agent: str, config: Path | None, user: str, session_id: str | None) -> None:
    """Chat with AGENT; the conversation is remembered across runs.

    \b
    Lines starting with / are commands, never sent to the agent:
    /help, /history, /sessions, /new, /checkpoint, /restore, /quit.
    """
    if config is None:
        config = Path("aixgo.yaml")
        if not config.exists():
            raise click.UsageError(
                "no config: aixgo chat reads ./aixgo.yaml, and there is none here; pass one "
                "with --config PATH (its agents: list names AGENT and its agent type)"
            )
    rt = Runtime.from_config(config)
    asyncio.run(_loop(rt, agent, user, session_id))


async def _loop(rt: Runtime, agent: str, user: str, session_id: str | None) -> None:
    stdin = sys.stdin
    async with rt:
        hosted = rt.hosted(agent)  # unknown: fails before anything
        stateful = rt.session_mode(agent) == "enabled"
        if stateful and hosted:
            # Its sessions live where it runs (a remote node): nothing is opened here. The
            # first turn names the session it ran in, and every later line continues that
            # one, not whichever is the user's latest by then (another client may start one).
            where = f"session {session_id}" if session_id else f"{user}'s latest session"
            click.echo(f"{where}, kept where {agent} runs; /quit to leave", err=True)
        elif stateful:
            mgr = rt.session_manager
            if session_id is not None:
                s = await mgr.get(session_id, user_id=user)
            else:
                s = await mgr.get_or_create(agent, user)
            session_id = s.id
            count = (await s.info()).message_count
            state = f"resumed, {count} messages" if count else "new"
            click.echo(f"session {s.id} ({state}); /help for commands, /quit to leave", err=True)
        else:
            click.echo(f"{agent} is stateless: nothing is remembered; /quit to leave", err=True)
        here = Chat(rt, agent, user, session_id if stateful else None, hosted=hosted)
        while True:
            click.echo("you> ", nl=False, err=True)
            line = await asyncio.to_thread(stdin.readline)
            if not line:
                click.echo("", err=True)
                return
            text = line.strip()
            if not text:
                continue
            command = parse(text)
            if command is not None:
                if not await run_command(here, *command):
                    return
                continue
            if text.startswith("//"):
                text = text[1:]
            if stateful:
                events = rt.stream(agent, Message.user(text), user=user,
                                   session=here.session_id, session_event=hosted)  # fmt: skip
            else:
                events = rt.stream(agent, Message.user(text))
            try:
                await _show(here, events)
            except AgentError as exc:
                # The input is stored; the conversation goes on (a repeat resumes that turn).
                click.echo(f"error: {cli_message(exc, chat=True)}", err=True)


async def _show(chat: Chat, events: AsyncIterator[Event]) -> None:
    """Print the reply's text as it arrives (from an agent that streams), else when it
    comes; text said before a tool step stays on a line of its own. The session a remote
    agent's node names becomes the chat's."""
    agent = chat.agent
    streaming = False  # whether the current line holds streamed text
    async for ev in events:
        if ev.type == "session":
            if chat.session_id is None:
                click.echo(f"session {ev.session_id}, kept where {agent} runs", err=True)
            chat.session_id = ev.session_id
        elif ev.type == "delta":
            if not streaming:
                click.echo(f"{agent}> ", nl=False)
                streaming = True
            click.echo(ev.text, nl=False)
        elif streaming:
            click.echo()
            streaming = False
        elif ev.type == "reply":
            click.echo(f"{agent}> {ev.message.text}")
