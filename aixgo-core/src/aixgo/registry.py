"""Registry: the agents a runtime knows, how each keeps sessions, and which are started.

:class:`aixgo.Runtime` checks and records agents here and starts and stops them through it;
an agent's ``start()`` and ``stop()`` are optional (:class:`~aixgo.agent.Lifecycle`).

>>> import asyncio
>>> from aixgo import Message
>>> class Echo:
...     async def execute(self, input: Message) -> Message:
...         return input
>>> agents = AgentRegistry()
>>> agents.add("echo", Echo())
>>> asyncio.run(agents.start_all())
>>> agents.names(), agents.entry("echo").started
(['echo'], True)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_args

from aixgo.agent import Agent, SessionAwareAgent, SessionHost, SessionMode, StreamingAgent
from aixgo.errors import AgentNotFound, InvalidArgument
from aixgo.identifiers import validate_name

__all__ = ["AgentEntry", "AgentRegistry"]


@dataclass(slots=True)
class AgentEntry:
    """One registered agent: the object, its session mode, whether it was started, and
    which of the agent protocols it implements (``hosted``: :class:`SessionHost`,
    ``streams``: :class:`StreamingAgent`, ``session_aware``: :class:`SessionAwareAgent`),
    all decided at registration."""

    agent: Any
    session_mode: SessionMode
    started: bool = False
    # Decided once, at registration: a runtime-checkable protocol's isinstance() inspects
    # every method by name, which costs tens of microseconds on each call otherwise.
    hosted: bool = field(init=False)
    #: A host that says it enforces ``time_left`` itself (``enforces_time_left = True``).
    bounds_time: bool = field(init=False)
    streams: bool = field(init=False)
    session_aware: bool = field(init=False)
    #: The agent's own input check (``check_input(message)``), if it has one.
    check_input: Callable[[Any], object] | None = field(init=False)

    def __post_init__(self) -> None:
        self.hosted = isinstance(self.agent, SessionHost)
        self.bounds_time = self.hosted and getattr(self.agent, "enforces_time_left", False) is True
        self.streams = isinstance(self.agent, StreamingAgent)
        self.session_aware = isinstance(self.agent, SessionAwareAgent)
        check = getattr(self.agent, "check_input", None)
        self.check_input = check if callable(check) else None

    async def start(self) -> None:
        """Call the agent's ``start()`` if it has one, and mark it started."""
        await _maybe_call(self.agent, "start")
        self.started = True

    async def stop(self) -> None:
        """Mark the agent stopped and call its ``stop()`` if it has one."""
        self.started = False
        await _maybe_call(self.agent, "stop")


class AgentRegistry:
    """Agents by name, in registration order."""

    def __init__(self) -> None:
        self._entries: dict[str, AgentEntry] = {}

    def add(self, name: str, agent: Agent, *, session_mode: SessionMode = "enabled") -> None:
        """Record ``agent`` under ``name`` after checking all three."""
        validate_name(name, "agent name")
        if not isinstance(agent, Agent):
            raise InvalidArgument(
                f"agent {name!r} is a {type(agent).__name__}, which has no "
                "'async def execute(self, input: Message) -> Message' method"
            )
        if session_mode not in get_args(SessionMode):
            raise InvalidArgument(
                f"session_mode of agent {name!r} must be 'enabled' or 'disabled', "
                f"not {session_mode!r}"
            )
        if name in self._entries:
            raise InvalidArgument(
                f"an agent is already registered as {name!r}; unregister it first"
            )
        self._entries[name] = AgentEntry(agent, session_mode)

    def remove(self, name: str) -> AgentEntry:
        """Forget ``name`` and return its entry, or :class:`AgentNotFound`."""
        entry = self._entries.pop(name, None)
        if entry is None:
            raise AgentNotFound(name, self.names())
        return entry

    def entry(self, name: str) -> AgentEntry:
        """The entry of ``name``, or :class:`AgentNotFound`."""
        entry = self._entries.get(name)
        if entry is None:
            raise AgentNotFound(name, self.names())
        return entry

    def find(self, name: object) -> AgentEntry | None:
        """The entry of ``name``, or ``None`` (also for a name that is not a string)."""
        return self._entries.get(name) if isinstance(name, str) else None

    def names(self) -> list[str]:
        """Registered agent names, sorted."""
        return sorted(self._entries)

    async def start_all(self) -> None:
        """Start every agent, in registration order. If one fails, those started here are
        stopped again (last first) and the error raised."""
        started: list[AgentEntry] = []
        try:
            for entry in self._entries.values():
                await entry.start()
                started.append(entry)
        except BaseException:
            for entry in reversed(started):
                await entry.stop()
            raise

    async def stop_all(self) -> list[Exception]:
        """Stop every started agent, last registered first; a failing ``stop()`` does not
        keep the others running. Returns the errors, in the order they happened."""
        errors: list[Exception] = []
        for entry in reversed(list(self._entries.values())):
            if entry.started:
                try:
                    await entry.stop()
                except Exception as exc:
                    errors.append(exc)
        return errors


async def _maybe_call(agent: object, method: str) -> None:
    fn = getattr(agent, method, None)
    if fn is not None and inspect.iscoroutinefunction(fn):
        await fn()
