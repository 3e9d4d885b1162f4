"""The request and response bodies of the HTTP API (its OpenAPI schema is built from these).

Sessions, checkpoints and messages are returned as the core's own models
(:class:`~aixgo.session.SessionInfo`, :class:`~aixgo.session.Checkpoint`,
:class:`~aixgo.Message`), so a client sees exactly what the library stores.
"""

from __future__ import annotations

from typing import Literal

from aixgo.message import Message
from aixgo.session.models import Checkpoint, SessionInfo
from pydantic import BaseModel, ConfigDict, Field, JsonValue

__all__ = [
    "EVENT_STREAM_SCHEMA",
    "ID_PATTERN",
    "AgentInfo",
    "AgentList",
    "CallReply",
    "CallRequest",
    "CheckpointList",
    "CheckpointRequest",
    "ErrorBody",
    "ErrorDetail",
    "MessageList",
    "NewSession",
    "RestoreReply",
    "SessionPage",
]

#: Session and checkpoint ids (documented here; checked by aixgo.identifiers.validate_id).
ID_PATTERN = "^[0-9a-f]{32}$"

#: One event of the stream route, as its schema documents it: a name and JSON data.
EVENT_STREAM_SCHEMA: dict[str, JsonValue] = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"enum": ["session", "delta", "step", "reply", "error"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentInfo(BaseModel):
    """A registered agent: its name, whether it keeps sessions, and whether they are kept
    on the node that runs it (a remote agent: its sessions are not listed here)."""

    name: str
    session_mode: Literal["enabled", "disabled"]
    hosted: bool = False


class AgentList(BaseModel):
    """The agents a runtime serves."""

    items: list[AgentInfo]


class SessionPage(BaseModel):
    """One page of the user's sessions, most recently updated first; pass ``next_cursor``
    back as ``cursor`` for the next page (``null`` on the last one)."""

    items: list[SessionInfo]
    next_cursor: str | None


class NewSession(_Body):
    """A session to start for the current user."""

    agent: str = Field(min_length=1, max_length=256)
    metadata: dict[str, JsonValue] | None = None


class MessageList(BaseModel):
    """Messages, oldest first."""

    items: list[Message]


class CheckpointList(BaseModel):
    """Checkpoints, oldest first."""

    items: list[Checkpoint]


class CheckpointRequest(_Body):
    """A checkpoint to record, with an optional label."""

    label: str | None = Field(default=None, min_length=1, max_length=256)


class RestoreReply(BaseModel):
    """After a restore: the checkpoint of the history as it was before (restoring to it
    undoes the restore)."""

    undo: Checkpoint


class CallRequest(_Body):
    """A user message for an agent. ``session_id`` continues that session (it must be the
    current user's); without it the user's latest session with the agent is continued, or
    a new one started (for a remote agent, on the node that runs it). ``id`` makes the call
    repeatable: sending the same id again after a failure resumes that turn instead of
    storing the message twice."""

    content: str | list[dict[str, JsonValue]]
    id: str | None = Field(default=None, min_length=1, max_length=256)
    session_id: str | None = Field(default=None, json_schema_extra={"pattern": ID_PATTERN})


class CallReply(BaseModel):
    """The agent's reply as stored, and the session it is in (``null`` for a stateless
    agent; for a remote agent, the session on its node)."""

    session_id: str | None
    message: Message


class ErrorDetail(BaseModel):
    """What went wrong: the aixgo error type and a message for people."""

    type: str = Field(description="the aixgo error class, e.g. SessionNotFound")
    message: str


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorDetail
