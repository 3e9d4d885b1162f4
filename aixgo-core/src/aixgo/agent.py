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

An agent that wants its work seen as it happens also implements
:class:`StreamingAgent`: :meth:`aixgo.Runtime.stream` (and :meth:`aixgo.Runtime.call`, which is
that stream consumed to its reply) then iterates its ``stream_with_session``.

An agent with ``async def start(self)`` / ``async def stop(self)`` methods (see
:class:`Lifecycle`) is started and stopped with the runtime.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Literal, Protocol, TypeAlias, runtime_checkable

from aixgo.events import Delta, SessionOpened, Step
from aixgo.message import Message

if TYPE_CHECKING:
    from aixgo.session.session import Session

__all__ = [
    "Agent",
    "AgentEvent",
    "Lifecycle",
    "SessionAwareAgent",
    "SessionHost",
    "SessionMode",
    "StreamingAgent",
]

#: What a :class:`StreamingAgent` yields: chunks of text, the steps it stored, and last, its
#: reply (a :class:`~aixgo.message.Message`, which the runtime stores).
AgentEvent: TypeAlias = Delta | Step | Message

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
class StreamingAgent(Agent, Protocol):
    """An agent whose calls are streamed: the runtime iterates
    ``stream_with_session(input, session)`` instead of calling ``execute`` or
    ``execute_with_session``, for :meth:`~aixgo.Runtime.stream` and :meth:`~aixgo.Runtime.call`
    alike. ``session`` is ``None`` in a call without a session (then nothing may be stored).

    It yields, in any order, :class:`~aixgo.events.Delta` chunks of text as they are
    produced and a :class:`~aixgo.events.Step` for each message it stored in ``session``
    (the message ``append_message`` returned), and finally its reply, a
    :class:`~aixgo.message.Message` that the runtime stores and sends as the
    :class:`~aixgo.events.Reply`. Nothing may follow the reply. If the caller goes away
    (breaks out of its loop, is cancelled, times out), the iteration is cancelled at the
    ``yield`` or ``await`` it is in, as a crash would stop it: what was stored stays stored.

    >>> from aixgo import Message
    >>> from aixgo.events import Delta
    >>> class Spell:
    ...     async def execute(self, input: Message) -> Message:
    ...         return Message.assistant(input.text.upper())
    ...     async def stream_with_session(self, input: Message, session):
    ...         for ch in input.text.upper():
    ...             yield Delta(text=ch)
    ...         yield Message.assistant(input.text.upper())
    >>> isinstance(Spell(), StreamingAgent)
    True
    """

    def stream_with_session(
        self, input: Message, session: Session | None
    ) -> AsyncIterator[AgentEvent]:
        """Work on ``input`` (the last message of ``session``'s history, if there is one),
        yielding what happens and, last, the reply."""
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
    agent (``aixgo-runtime-grpc``). The runtime opens no session for it: it hands over the
    call's ``user`` and ``session`` id (both ``None`` for a stateless call) and
    ``time_left``, the seconds the call may still take (``None``: no limit). A call uses
    ``execute_hosted``, which returns the reply as stored there; a stream uses
    ``stream_hosted``, which yields what :meth:`StreamingAgent.stream_with_session` yields
    (its Steps and its last item, the reply, as stored there).

    The runtime bounds a call by its own timer too, unless the host says it enforces
    ``time_left`` itself with a class attribute ``enforces_time_left = True``: then its
    ``execute_hosted`` must raise a :class:`TimeoutError` (best a typed
    :class:`~aixgo.errors.CallTimeout`) once ``time_left`` has passed."""

    async def execute_hosted(
        self, input: Message, *, user: str | None, session: str | None, time_left: float | None
    ) -> Message:
        """Answer ``input`` in the user's (or the given) session, where the agent runs."""
        ...

    def stream_hosted(
        self, input: Message, *, user: str | None, session: str | None, time_left: float | None
    ) -> AsyncIterator[AgentEvent | SessionOpened]:
        """Like :meth:`execute_hosted`, yielding the turn's events and, last, the reply;
        first a :class:`~aixgo.events.SessionOpened` naming the session there, when the turn
        runs in one (the runtime passes it on to a stream that asked for it)."""
        ...
