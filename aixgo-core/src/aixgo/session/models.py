"""What the session layer hands back: session summaries, checkpoints, pages."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue

__all__ = ["Checkpoint", "Page", "SessionInfo"]

T = TypeVar("T")


class SessionInfo(BaseModel):
    """A session's summary, as listed.

    ``message_count`` is the length of the current history; ``updated_at`` moves on every
    append and restore, and listing orders by it, most recent first.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    agent: str
    user_id: str | None
    created_at: datetime
    updated_at: datetime
    message_count: int = Field(default=0, ge=0)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)


class Checkpoint(BaseModel):
    """A named point in a session's history: the first ``seq`` messages as they were.

    A checkpoint keeps meaning the same history after the session is restored elsewhere and
    grows differently, so restoring to it always brings that history back.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    session_id: str
    seq: int = Field(ge=0)
    created_at: datetime
    label: str | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing. ``next_cursor`` is ``None`` on the last page; pass it back as
    ``cursor=`` to get the next one."""

    items: list[T] = field(default_factory=list)
    next_cursor: str | None = None
