"""Agents: what a runtime calls. Two small protocols; no base class to inherit.

A plain :class:`Agent` sees only the input. A :class:`SessionAwareAgent` also receives the
:class:`~aixgo.session.Session` the call belongs to, whose history already ends with that
input, so it can read as much context as it wants (never the input twice).

>>> from aixgo import Message
>>> class Echo:
...     async def execute(self, input: Message) -> Message:
...         return Message.assistant(input.text)
>>> isinstance(Echo(), Agent), isinstance(Echo(), SessionAwareAgent)
(True, False)

An agent with ``async def start(self)`` / ``async def stop(self)`` methods (see
:class:`Lifecycle`) is started and stopped with the runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from aixgo.message import Message

if TYPE_CHECKING:
    from aixgo.session.session import Session

__all__ = ["Agent", "Lifecycle", "SessionAwareAgent", "SessionHost", "SessionMode"]

#: ``"enabled"`` (the default): calls with a user or session id are stored in a session.
#: ``"disabled"``: the agent is stateless; no session is ever read or written for it.
SessionMode = Literal["enabled", "disabled"]


@runtime_checkable
class Agent(Protocol):
    """Anything with ``async def execute(self, input: Message) -> Message``."""

    async def execute(self, input: Message) -> Message:
        """Answer ``input``."""
        ...


@runtime_checkable
class SessionAwareAgent(Agent, Protocol):
    """An agent that reads its conversation: the runtime calls
    ``execute_with_session(input, session)`` instead of ``execute`` when a session is in play.

    >>> from aixgo import Message
    >>> class Counter:
    ...     async def execute(self, input: Message) -> Message:
    ...         return Message.assistant("1 message so far")
    ...     async def execute_with_session(self, input: Message, session) -> Message:
    ...         n = len(await session.get_messages())
    ...         return Message.assistant(f"{n} messages so far")
    >>> isinstance(Counter(), SessionAwareAgent)
    True
    """

    async def execute_with_session(self, input: Message, session: Session) -> Message:
        """Answer ``input``, the last message of ``session``'s history."""
        ...


@runtime_checkable
class Lifecycle(Protocol):
    """An agent holding resources (a client, a model) that the runtime opens and releases."""

    async def start(self) -> None:
        """Called once by ``Runtime.start()`` (or on first use if registered later)."""
        ...

    async def stop(self) -> None:
        """Called once by ``Runtime.stop()`` or ``Runtime.unregister()``."""
        ...


@runtime_checkable
class SessionHost(Agent, Protocol):
    """An agent whose sessions live where it runs, not in this runtime's store: a remote
    agent (``aixgo-runtime-grpc``). The runtime opens no session for it and hands it the
    call's ``user`` and ``session`` id instead (both ``None`` for a stateless call), and the
    seconds left for the call (``time_left``; ``None``: no limit); it returns the reply as
    stored there."""

    async def execute_hosted(
        self, input: Message, *, user: str | None, session: str | None, time_left: float | None
    ) -> Message:
        """Answer ``input`` in the user's (or the given) session, where the agent runs."""
        ...
