"""Events of a streamed call: what :meth:`aixgo.Runtime.stream` yields, in order.

* :class:`Delta`: a chunk of the reply's text as the agent produces it;
* :class:`Step`: a message the turn stored on its way (a request for tools, a tool's result),
  as stored, so ``seq`` is set when a session is in play;
* :class:`Reply`: the stored final reply, always the last event. It is exactly what
  :meth:`aixgo.Runtime.call` returns for the same call;
* :class:`SessionOpened`: only when asked for (``rt.stream(..., session_event=True)``), the
  first event of a turn that runs in a session (sent once its input is stored there), naming
  it, so a caller who gave only a ``user`` learns which session to continue (on this node
  or, for a remote agent, on any node sharing its store).

Every event is a pydantic model with a ``type`` field (``"delta"``, ``"step"``, ``"reply"``,
``"session"``);
:data:`Event` is their discriminated union, so an event serialised to JSON on one side (a
gRPC node, a web page) is parsed back to the right class on the other:

>>> from aixgo import Message
>>> wire = Delta(text="Hel").model_dump_json()
>>> wire
'{"type":"delta","text":"Hel"}'
>>> parse_event(wire)
Delta(type='delta', text='Hel')
>>> parse_event({"type": "reply", "message": Message.assistant("Hello").model_dump()}).message.text
'Hello'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from aixgo.errors import InvalidArgument
from aixgo.message import Message

__all__ = ["EVENT_ADAPTER", "Delta", "Event", "Reply", "SessionOpened", "Step", "parse_event"]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Delta(_Event):
    """A chunk of reply text, as produced. The chunks before a :class:`Step` or the
    :class:`Reply` make up that message's text (a model may say something before it asks
    for tools)."""

    type: Literal["delta"] = "delta"
    text: str


class Step(_Event):
    """A message the turn stored before its reply: the model's request for tools, or a
    tool's result, as stored (``seq`` set when a session is in play)."""

    type: Literal["step"] = "step"
    message: Message


class Reply(_Event):
    """The final reply, as stored (``seq`` set when a session is in play); always last."""

    type: Literal["reply"] = "reply"
    message: Message


class SessionOpened(_Event):
    """The session the turn runs in (found for the call's user, or the one it named):
    first, before any other event, in a stream that asked for it."""

    type: Literal["session"] = "session"
    session_id: str


#: Any event, told apart by its ``type``.
Event = Annotated[Delta | Step | Reply | SessionOpened, Field(discriminator="type")]
#: Validates and serialises :data:`Event` values (``validate_json``, ``dump_json``, ...).
EVENT_ADAPTER: TypeAdapter[Delta | Step | Reply | SessionOpened] = TypeAdapter(Event)


def parse_event(data: str | bytes | Mapping[str, Any]) -> Delta | Step | Reply | SessionOpened:
    """The event in ``data`` (JSON text, or a mapping as ``model_dump()`` gives), or
    :class:`~aixgo.errors.InvalidArgument` saying what is wrong with it.

    >>> parse_event('{"type": "shout"}')
    Traceback (most recent call last):
    ...
    aixgo.errors.InvalidArgument: not an event: ...
    """
    try:
        if isinstance(data, str | bytes):
            return EVENT_ADAPTER.validate_json(data)
        return EVENT_ADAPTER.validate_python(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "event"
        raise InvalidArgument(f"not an event: {where}: {err['msg']}") from None
