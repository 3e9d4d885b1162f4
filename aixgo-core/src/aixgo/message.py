"""The message: one turn of a conversation, as stored in a session."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from aixgo.clock import utc_now
from aixgo.identifiers import new_id

__all__ = ["Message", "Role", "ToolCall", "utc_now"]

Role = Literal["system", "user", "assistant", "tool"]


class ToolCall(BaseModel):
    """A tool invocation requested by the assistant.

    >>> ToolCall(name="get_weather", arguments={"city": "Oslo"}).name
    'get_weather'
    """

    # NaN and infinities are written as the (non-JSON) constants so that storing refuses them
    # (aixgo.session.codec) instead of silently writing null.
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    id: str = Field(default_factory=new_id, min_length=1, max_length=256)
    name: str = Field(min_length=1, max_length=256)
    arguments: dict[str, JsonValue] = Field(default_factory=dict)


class Message(BaseModel):
    """A message in a session. Immutable: storing one returns a copy with ``seq`` set.

    ``content`` is text or a list of parts (each a JSON object with a ``"type"`` key, e.g.
    ``{"type": "text", "text": "..."}``). ``seq`` is the 1-based position in the session's
    current history, ``None`` until stored. ``id`` is random and makes appends idempotent:
    appending a message whose id is already in the session returns the stored one.

    >>> m = Message.user("Hello! My name is Alice.")
    >>> m.role, m.content, m.seq
    ('user', 'Hello! My name is Alice.', None)
    """

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    id: str = Field(default_factory=new_id, min_length=1, max_length=256)
    role: Role
    content: str | list[dict[str, JsonValue]] = ""
    name: str | None = Field(default=None, max_length=256)
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = Field(default=None, max_length=256)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utc_now)
    seq: int | None = Field(default=None, ge=1)

    @field_validator("content")
    @classmethod
    def _parts_are_typed(
        cls, value: str | list[dict[str, JsonValue]]
    ) -> str | list[dict[str, JsonValue]]:
        if isinstance(value, list):
            for i, part in enumerate(value):
                if not isinstance(part.get("type"), str):
                    raise ValueError(f"content part {i} needs a string 'type' key")
        return value

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        # Naive datetimes are taken as UTC; aware ones are converted, so stored times compare.
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _tool_needs_call_id(self) -> Self:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs tool_call_id (the id of the call it answers)")
        return self

    @property
    def text(self) -> str:
        """The text of the content: the string itself, or the text parts joined."""
        if isinstance(self.content, str):
            return self.content
        return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")

    @classmethod
    def system(cls, content: str | list[dict[str, JsonValue]], **kw: Any) -> Message:
        """A system message. ``Message.system("Be brief.")``"""
        return cls(role="system", content=content, **kw)

    @classmethod
    def user(cls, content: str | list[dict[str, JsonValue]], **kw: Any) -> Message:
        """A user message. ``Message.user("hi")``"""
        return cls(role="user", content=content, **kw)

    @classmethod
    def assistant(
        cls,
        content: str | list[dict[str, JsonValue]] = "",
        *,
        tool_calls: list[ToolCall] | None = None,
        **kw: Any,
    ) -> Message:
        """An assistant message, optionally asking for tool calls."""
        return cls(role="assistant", content=content, tool_calls=tool_calls, **kw)

    @classmethod
    def tool(
        cls, content: str | list[dict[str, JsonValue]], *, tool_call_id: str, **kw: Any
    ) -> Message:
        """The result of a tool call. ``Message.tool("12°C", tool_call_id=call.id)``"""
        return cls(role="tool", content=content, tool_call_id=tool_call_id, **kw)
