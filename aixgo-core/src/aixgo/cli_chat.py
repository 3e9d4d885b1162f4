"""``aixgo chat AGENT --config aixgo.yaml --user U [--session ID]``: talk to an agent in the
terminal. The conversation is a session like any other, so the next run picks it up again.

Type a message and press Enter; ``/quit`` (or end of input) leaves, ``/session`` prints the
session id. The reply is printed as it arrives when the agent streams it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import click

from aixgo.errors import AgentError
from aixgo.events import Event
from aixgo.message import Message
from aixgo.runtime import Runtime

__all__ = ["chat"]


@click.command("chat")
@click.argument("agent")
@click.option("--config", "-c", "config", type=click.Path(dir_okay=False, path_type=Path),
              default="aixgo.yaml", show_default=True, help="YAML config.")  # fmt: skip
@click.option("--user", "-u", envvar="AIXGO_USER", required=True,
              help="Whose conversation this is (default: $AIXGO_USER).")  # fmt: skip
@click.option("--session", "session_id", help="Continue this session instead of the latest.")
def chat(agent: str, config: Path, user: str, session_id: str | None) -> None:
    """Chat with AGENT; the conversation is remembered across runs."""
    rt = Runtime.from_config(config)
    asyncio.run(_loop(rt, agent, user, session_id))


async def _loop(rt: Runtime, agent: str, user: str, session_id: str | None) -> None:
    stdin = sys.stdin
    async with rt:
        rt.get(agent)  # an unknown agent fails before anything is created
        stateful = rt.session_mode(agent) == "enabled"
        if stateful:
            mgr = rt.session_manager
            if session_id is not None:
                s = await mgr.get(session_id, user_id=user)
            else:
                s = await mgr.get_or_create(agent, user)
            session_id = s.id
            count = (await s.info()).message_count
            state = f"resumed, {count} messages" if count else "new"
            click.echo(f"session {s.id} ({state}); /quit to leave", err=True)
        else:
            click.echo(f"{agent} is stateless: nothing is remembered; /quit to leave", err=True)
        while True:
            click.echo("you> ", nl=False, err=True)
            line = await asyncio.to_thread(stdin.readline)
            if not line:
                click.echo("", err=True)
                return
            text = line.strip()
            if not text:
                continue
            if text == "/quit":
                return
            if text == "/session":
                click.echo(session_id or "(stateless)")
                continue
            if stateful:
                events = rt.stream(agent, Message.user(text), user=user, session=session_id)
            else:
                events = rt.stream(agent, Message.user(text))
            try:
                await _show(agent, events)
            except AgentError as exc:
                # The input is stored; the conversation goes on (a repeat resumes that turn).
                click.echo(f"error: {exc}", err=True)


async def _show(agent: str, events: AsyncIterator[Event]) -> None:
    """Print the reply's text as it arrives (from an agent that streams), else when it
    comes; text said before a tool step stays on a line of its own."""
    streaming = False  # whether the current line holds streamed text
    async for ev in events:
        if ev.type == "delta":
            if not streaming:
                click.echo(f"{agent}> ", nl=False)
                streaming = True
            click.echo(ev.text, nl=False)
        elif streaming:
            click.echo()
            streaming = False
        elif ev.type == "reply":
            click.echo(f"{agent}> {ev.message.text}")
