"""Session: a handle on one conversation's history and checkpoints.

A session works on the :class:`~aixgo.session.store.SessionStore` its manager gave it, never on
the manager itself: a call's data path reads Runtime, turn, Session, Backend, top-down."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import JsonValue

from aixgo.arguments import check_count
from aixgo.errors import InvalidMessage
from aixgo.identifiers import new_id, validate_id, validate_name
from aixgo.message import Message
from aixgo.session.codec import check_repeat
from aixgo.session.models import Checkpoint, SessionInfo
from aixgo.session.store import SessionStore

__all__ = ["MAX_SEQ", "Session"]

#: The largest ``expected_seq`` or ``last`` accepted: a signed 64-bit integer, which every
#: store can compare with (a larger one is refused up front, never a store's own error).
MAX_SEQ = 2**63 - 1


class Session:
    """One conversation. Get one from :class:`SessionManager` (``create``, ``get``,
    ``get_or_create``); every method reads or writes the backend, nothing is cached but the
    fixed facts (``id``, ``agent``, ``user_id``, ``created_at``, ``metadata``).

    >>> import asyncio
    >>> from aixgo.session import SessionManager
    >>> async def demo() -> list[str]:
    ...     async with SessionManager("memory://") as mgr:
    ...         s = await mgr.create("assistant", user_id="user-123")
    ...         await s.append_message(Message.user("Hello! My name is Alice."))
    ...         cp = await s.checkpoint(label="before-tool")
    ...         await s.append_message(Message.assistant("(a tool went wrong)"))
    ...         await s.restore(cp.id)
    ...         return [m.text for m in await s.get_messages()]
    >>> asyncio.run(demo())
    ['Hello! My name is Alice.']
    """

    __slots__ = ("_store", "agent", "created_at", "id", "metadata", "user_id")

    def __init__(self, store: SessionStore, info: SessionInfo) -> None:
        # The store its manager shares with it: the backend, and whether it is still open.
        self._store = store
        self.id: str = info.id
        self.agent: str = info.agent
        self.user_id: str | None = info.user_id
        self.created_at: datetime = info.created_at
        self.metadata: dict[str, JsonValue] = info.metadata

    def __repr__(self) -> str:
        return f"Session(id={self.id!r}, agent={self.agent!r}, user_id={self.user_id!r})"

    @property
    def store(self) -> SessionStore:
        """The store this session reads and writes through (shared with its manager): what
        code working on one session, such as the runtime's turn protocol, needs of the
        backend (its optional capabilities, turn leases) without a second reference."""
        return self._store

    async def info(self) -> SessionInfo:
        """The session's current summary (message count, last update, metadata)."""
        self._store.check_open()
        return await self._store.backend.get_session(self.id)

    async def append_message(self, message: Message, *, expected_seq: int | None = None) -> Message:
        """Store one message and return it with ``seq`` set. Appending a message whose id is
        already in the history returns the stored one (so retries never duplicate)."""
        if not isinstance(message, Message):
            raise InvalidMessage(
                f"append_message takes a Message, not {type(message).__name__}; "
                "build one with Message.user(...)"
            )
        # append_messages' checks, inlined: this is every backend's hottest path.
        self._store.check_open()
        if expected_seq is not None:
            check_count(expected_seq, "expected_seq", low=0, high=MAX_SEQ)
        (stored,) = await self._store.backend.append_messages(
            self.id, [message], expected_seq=expected_seq
        )
        # Our backends refuse a reused id themselves; this catches a third-party backend
        # that returns the stored copy of another message (nothing was written then).
        if stored.content is not message.content and stored.id == message.id:
            check_repeat(self.id, stored, message)
        return stored

    async def append_messages(
        self, messages: Sequence[Message] | Message, *, expected_seq: int | None = None
    ) -> list[Message]:
        """Store a batch atomically and return it as stored. With ``expected_seq=n`` ("I last
        saw n messages") a concurrent writer's change raises :class:`ConflictError`."""
        self._store.check_open()
        if expected_seq is not None:
            check_count(expected_seq, "expected_seq", low=0, high=MAX_SEQ)
        if isinstance(messages, Message):
            raise InvalidMessage("append_messages takes a list of messages; use append_message()")
        return await self._store.backend.append_messages(
            self.id, list(messages), expected_seq=expected_seq
        )

    async def get_messages(self, *, last: int | None = None) -> list[Message]:
        """The history, oldest first; ``last=n`` gives only the final ``n`` messages, at a
        cost that does not grow with the history's length."""
        self._store.check_open()
        if last is not None:
            check_count(last, "last", low=0, high=MAX_SEQ)
            if last == 0:
                await self._store.backend.get_session(self.id)  # still report a deleted session
                return []
        return await self._store.backend.get_messages(self.id, last=last)

    async def checkpoint(self, *, label: str | None = None) -> Checkpoint:
        """Record the current history under a new checkpoint id. O(1)."""
        self._store.check_open()
        if label is not None:
            validate_name(label, "checkpoint label")
        return await self._store.backend.create_checkpoint(self.id, new_id(), label=label)

    async def restore(self, checkpoint_id: str) -> Checkpoint:
        """Make the history what it was at ``checkpoint_id``. Nothing is destroyed: the
        current head is first saved as a checkpoint labelled ``before-restore``, which is
        returned, so ``await s.restore(undo.id)`` undoes the restore."""
        self._store.check_open()
        validate_id(checkpoint_id, "checkpoint id")
        return await self._store.backend.restore_checkpoint(
            self.id, checkpoint_id, undo_id=new_id()
        )

    async def list_checkpoints(self) -> list[Checkpoint]:
        """The session's checkpoints, oldest first."""
        self._store.check_open()
        return await self._store.backend.list_checkpoints(self.id)

    async def delete(self) -> None:
        """Delete this session with all its messages and checkpoints."""
        self._store.check_open()
        await self._store.backend.delete_session(self.id)
