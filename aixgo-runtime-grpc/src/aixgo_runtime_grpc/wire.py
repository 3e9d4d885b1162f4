"""Messages and errors on the wire: :class:`aixgo.Message` to and from ``aixgo.v1.Message``,
aixgo errors to and from gRPC status codes.

Free-form JSON (content parts, tool arguments, metadata) travels as JSON text, so a number
arrives exactly as it left. A message that does not convert is an :class:`InvalidMessage`.

>>> m = Message.user("hi", metadata={"n": 2**60})
>>> from_wire(to_wire(m)) == m
True
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import grpc
from aixgo.clock import from_micros, to_micros
from aixgo.errors import (
    AgentError,
    AgentNotFound,
    AixgoError,
    BackendClosed,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    CallTimeout,
    CheckpointNotFound,
    ConflictError,
    InvalidArgument,
    InvalidIdentifier,
    InvalidMessage,
    MessageIdConflict,
    NotFoundError,
    NotStarted,
    SessionNotFound,
    UsageError,
)
from aixgo.events import Delta, Reply, SessionOpened, Step
from aixgo.message import Message, ToolCall
from pydantic import ValidationError

from aixgo_runtime_grpc._pb import agent_pb2 as pb

# The model's own validator, called without model_validate's wrapper: every call, both ways.
_validate: Callable[[Any], Message] = Message.__pydantic_validator__.validate_python

__all__ = [
    "ERROR_KEY",
    "NodeUnavailable",
    "PermissionDenied",
    "RemoteError",
    "error_from_status",
    "event_from_wire",
    "event_to_wire",
    "from_wire",
    "status_of",
    "to_wire",
]

#: Trailing metadata key naming the aixgo error class behind a failed call.
ERROR_KEY = "aixgo-error"


class RemoteError(AixgoError):
    """A remote node failed the call with a status no aixgo error describes. ``code`` is
    the gRPC status code's name (``"INTERNAL"``)."""

    def __init__(self, message: str, *, code: str) -> None:
        self.code = code
        super().__init__(message)


class NodeUnavailable(RemoteError, ConnectionError):
    """No node answered: every target was unreachable or stopping (gRPC ``UNAVAILABLE``).
    The call's input may be stored; the same call (same message id) resumes it."""


class PermissionDenied(RemoteError, PermissionError):
    """The node refused this client (its certificate is not on the agent's allow-list)."""


def to_wire(m: Message, out: pb.Message | None = None) -> pb.Message:
    """``m`` as an ``aixgo.v1.Message``: written into ``out`` (an empty one, such as a
    request's field, so no copy is made) when given."""
    if out is None:
        out = pb.Message(id=m.id, role=m.role, seq=m.seq or 0)
    else:
        out.id, out.role, out.seq = m.id, m.role, m.seq or 0
    if isinstance(m.content, str):
        out.text = m.content
    else:
        out.parts_json = _dumps(m.content)
    if m.name is not None:
        out.name = m.name
    if m.tool_calls is not None:
        out.tool_calls.SetInParent()
        for c in m.tool_calls:
            out.tool_calls.items.add(id=c.id, name=c.name, arguments_json=_dumps(c.arguments))
    if m.tool_call_id is not None:
        out.tool_call_id = m.tool_call_id
    if m.metadata:
        out.metadata_json = _dumps(m.metadata)
    # Whole microseconds by integer arithmetic: exact, and a few times cheaper than
    # Timestamp.FromDatetime.
    at = out.created_at
    at.seconds, micros = divmod(to_micros(m.created_at), 1_000_000)
    at.nanos = micros * 1000
    return out


def from_wire(w: pb.Message) -> Message:
    """The :class:`Message` ``w`` describes, or :class:`InvalidMessage` saying what is wrong."""
    try:
        fields: dict[str, Any] = {"id": w.id, "role": w.role}
        kind = w.WhichOneof("content")
        fields["content"] = _loads(w.parts_json, "parts_json") if kind == "parts_json" else w.text
        if w.HasField("name"):
            fields["name"] = w.name
        if w.HasField("tool_calls"):
            fields["tool_calls"] = [
                ToolCall(id=c.id, name=c.name, arguments=_loads(c.arguments_json or "{}",
                                                                "arguments_json"))
                for c in w.tool_calls.items
            ]  # fmt: skip
        if w.HasField("tool_call_id"):
            fields["tool_call_id"] = w.tool_call_id
        if w.metadata_json:
            fields["metadata"] = _loads(w.metadata_json, "metadata_json")
        if w.HasField("created_at"):
            at = w.created_at
            if not 0 <= at.nanos < 1_000_000_000:
                raise InvalidMessage("the message's created_at has nanos outside 0-999999999")
            try:
                fields["created_at"] = from_micros(at.seconds * 1_000_000 + at.nanos // 1000)
            except ValueError:
                raise InvalidMessage(
                    "the message's created_at is outside the years 1-9999"
                ) from None
        if w.seq:
            fields["seq"] = w.seq
        return _validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidMessage(f"the message is not valid: {problems}") from None


def event_to_wire(event: Delta | Step | Reply | SessionOpened) -> pb.Event:
    """A streamed event as an ``aixgo.v1.Event``."""
    if isinstance(event, Delta):
        return pb.Event(delta=pb.Delta(text=event.text))
    if isinstance(event, SessionOpened):
        return pb.Event(session=pb.SessionOpened(id=event.session_id))
    out = pb.Event()
    to_wire(event.message, out.step.message if isinstance(event, Step) else out.reply.message)
    return out


def event_from_wire(w: pb.Event) -> Delta | Step | Reply | SessionOpened | None:
    """The event ``w`` carries; ``None`` for a kind this version does not know (a newer
    node's, which an older client skips)."""
    kind = w.WhichOneof("event")
    if kind == "delta":
        return Delta(text=w.delta.text)
    if kind == "step":
        return Step(message=from_wire(w.step.message))
    if kind == "reply":
        return Reply(message=from_wire(w.reply.message))
    if kind == "session":
        return SessionOpened(session_id=w.session.id)
    return None


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _loads(text: str, field: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidMessage(f"the message's {field} is not valid JSON: {exc}") from None


# -- errors ------------------------------------------------------------------------------------

# Most specific first: the first class an error is an instance of decides its status.
_STATUS: list[tuple[type[BaseException], grpc.StatusCode]] = [
    (AgentNotFound, grpc.StatusCode.NOT_FOUND),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (NotStarted, grpc.StatusCode.UNAVAILABLE),
    (UsageError, grpc.StatusCode.INVALID_ARGUMENT),
    (ConflictError, grpc.StatusCode.ABORTED),
    (CallTimeout, grpc.StatusCode.DEADLINE_EXCEEDED),
    (AgentError, grpc.StatusCode.INTERNAL),
    (BackendTimeout, grpc.StatusCode.UNAVAILABLE),
    (BackendUnavailable, grpc.StatusCode.UNAVAILABLE),
    (BackendClosed, grpc.StatusCode.UNAVAILABLE),
    (BackendError, grpc.StatusCode.INTERNAL),
]


def status_of(exc: AixgoError) -> grpc.StatusCode:
    """The gRPC status an aixgo error is reported with."""
    return next((code for cls, code in _STATUS if isinstance(exc, cls)), grpc.StatusCode.UNKNOWN)


def error_from_status(
    code: grpc.StatusCode, details: str, name: str | None, *, agent: str
) -> AixgoError:
    """The aixgo error a failed call's status and ``aixgo-error`` name stand for."""
    text = f"remote agent {agent!r}: {details}"
    simple: dict[str, type[AixgoError]] = {
        "ConflictError": ConflictError,
        "MessageIdConflict": MessageIdConflict,
        "InvalidMessage": InvalidMessage,
        "InvalidArgument": InvalidArgument,
        "InvalidIdentifier": InvalidIdentifier,
        "UsageError": UsageError,
    }
    if name in simple:
        return simple[name](text)
    if name in ("AgentError", "CallTimeout"):
        cls = CallTimeout if name == "CallTimeout" else AgentError
        return cls(text, agent=agent, session_id=None)
    if name == "SessionNotFound":
        return _not_found(SessionNotFound, text)
    if name == "CheckpointNotFound":
        return _not_found(CheckpointNotFound, text)
    if name == "AgentNotFound" or code is grpc.StatusCode.NOT_FOUND:
        return _not_found(NotFoundError, text)
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return InvalidMessage(text)
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(text)
    if code is grpc.StatusCode.ABORTED:
        return ConflictError(text)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return CallTimeout(text, agent=agent, session_id=None)
    if code is grpc.StatusCode.UNAVAILABLE:
        return NodeUnavailable(text, code=code.name)
    if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
        return PermissionDenied(text, code=code.name)
    return RemoteError(text, code=code.name)


def _not_found(cls: type[NotFoundError], text: str) -> NotFoundError:
    # SessionNotFound and CheckpointNotFound compose their message from ids the status does
    # not carry; the node's own message is the one worth showing.
    err = NotFoundError.__new__(cls)
    NotFoundError.__init__(err, text)
    return err
