"""What the session layer hands back: session summaries, checkpoints, pages, and the report
of a backend's schema migration."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue

__all__ = ["Checkpoint", "MigrationReport", "Page", "SessionInfo"]

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


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What a backend's optional ``migrate()`` found and did (see
    :class:`aixgo.session.Migratable`); ``str()`` of it is one line for people.

    >>> print(MigrationReport("schema 'aixgo' of postgresql://db/app", found=None, latest=2))
    schema 'aixgo' of postgresql://db/app has no schema yet; version 2 is due
    >>> done = MigrationReport("schema 'aixgo'", found=1, latest=2, applied=(2,))
    >>> done.version, done.pending
    (2, False)
    >>> print(done)
    schema 'aixgo': applied migration(s) 2; now at version 2
    """

    #: What was inspected, as it may be shown (never with a password), e.g.
    #: ``"schema 'aixgo' of postgresql://app:***@db/app"``.
    target: str
    #: The schema version the store had before this call; ``None`` if it had no schema yet.
    found: int | None
    #: The version this code reads and writes.
    latest: int
    #: The versions this call applied, oldest first (empty when only checking).
    applied: tuple[int, ...] = ()

    @property
    def version(self) -> int | None:
        """The store's schema version now."""
        return self.applied[-1] if self.applied else self.found

    @property
    def pending(self) -> bool:
        """Whether a migration is still due (only ever after ``migrate(check=True)``)."""
        return self.version != self.latest

    def __str__(self) -> str:
        if self.applied:
            done = ", ".join(str(v) for v in self.applied)
            return f"{self.target}: applied migration(s) {done}; now at version {self.version}"
        if self.pending:
            have = "has no schema yet" if self.found is None else f"is at version {self.found}"
            return f"{self.target} {have}; version {self.latest} is due"
        return f"{self.target} is at version {self.latest}, up to date"
