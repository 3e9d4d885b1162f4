"""Simple stores: a whole backend from a handful of storage primitives.

Write a :class:`SimpleStore` (a SQL database, a document store, a key-value store with
transactions) and wrap it in :class:`SimpleBackend`, which implements the whole
:class:`~aixgo.session.Backend` protocol on top of it: validation, idempotence, ``expected_seq``,
``seq`` numbering, ``updated_at``, checkpoints and restore (:mod:`~aixgo.session.lineage`),
listing cursors, typed errors, and the optional :class:`~aixgo.session.SessionPerUser` and
:class:`~aixgo.session.TurnLeases` capabilities. The store only keeps rows:

* one *head* per session: its listing columns (id, agent, user id, ``updated_at`` in
  microseconds) and an opaque JSON document (the summary, the branch table, the turn lease),
  rewritten on append, restore and lease changes. It grows by one small row per restore,
  never per message;
* one *message* row per stored message, keyed ``(session, branch, seq)``, with the message id
  (looked up, not unique: a message may be stored on several branches) and its bytes;
* one *checkpoint* row per checkpoint, keyed ``(session, checkpoint id)``, listed in the order
  they were inserted.

Every primitive runs inside ``async with store.transaction(session_id, write=...) as tx``,
which must be atomic (all of its writes or none, rolled back when the block raises) and
isolated: two write transactions on the same session never interleave, in this process or
any other sharing the store, and a read transaction sees one consistent state.

The ``sqlite://`` example plugin (``examples/backend-sqlite`` in the aixgo repository) is a
complete store in under 150 lines; ``docs/writing-a-backend.md`` walks through it.
"""

from __future__ import annotations

import asyncio
import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from aixgo.clock import from_micros, now_micros, to_micros, utc_now
from aixgo.errors import (
    BackendClosed,
    CheckpointNotFound,
    ConflictError,
    CorruptedData,
    SessionNotFound,
)
from aixgo.message import Message
from aixgo.session.backend import Capability
from aixgo.session.codec import check_batch, check_repeat, decode_message, with_seq
from aixgo.session.cursor import decode_cursor, encode_cursor
from aixgo.session.kit.conflict import stale_seq
from aixgo.session.lineage import Branch, Lineage
from aixgo.session.models import Checkpoint, Page, SessionInfo
from aixgo.session.url import redact_url

__all__ = [
    "FIND_CHUNK",
    "HeadRow",
    "MessageRow",
    "SimpleBackend",
    "SimpleStore",
    "StoreTransaction",
]


#: The most message ids one ``find_messages`` call is given (a larger batch takes several
#: calls), so a store may put them all in one query.
FIND_CHUNK = 500


class HeadRow(NamedTuple):
    """A session's head as a store keeps it: the columns listing filters and sorts by, and
    ``data``, the rest of the head as JSON (store it as it is, hand it back unchanged)."""

    session_id: str
    agent: str
    user_id: str | None
    #: Microseconds since the epoch (:func:`aixgo.clock.to_micros`), the listing's sort key.
    updated_at: int
    data: bytes


class MessageRow(NamedTuple):
    """One stored message: message ``seq`` of ``branch``, its id, and its JSON bytes."""

    branch: int
    seq: int
    message_id: str
    data: bytes


class StoreTransaction(ABC):
    """The storage primitives, valid inside one transaction. Every argument is a well-formed
    id or a value core made; nothing here validates, numbers, or decides."""

    @abstractmethod
    async def get_head(self, session_id: str) -> bytes | None:
        """The ``data`` of the session's head, or ``None`` if there is no such session."""

    @abstractmethod
    async def put_head(self, head: HeadRow) -> None:
        """Insert the head, or replace the session's head if it has one."""

    @abstractmethod
    async def list_heads(
        self, agent: str | None, user_id: str | None, after: tuple[int, str] | None, limit: int
    ) -> list[bytes]:
        """The ``data`` of at most ``limit`` heads matching ``agent`` and ``user_id`` (``None``
        matches all), ordered by ``(updated_at, session_id)`` descending, starting strictly
        below ``after`` when given. Index it so a page costs the same wherever it starts."""

    @abstractmethod
    async def delete_session(self, session_id: str) -> None:
        """Remove the session's head, messages and checkpoints."""

    @abstractmethod
    async def insert_messages(self, session_id: str, rows: Sequence[MessageRow]) -> None:
        """Store message rows. ``(session, branch, seq)`` is never reused."""

    @abstractmethod
    async def read_messages(self, session_id: str, branch: int, lo: int, hi: int) -> list[bytes]:
        """The ``data`` of messages ``lo..hi`` of ``branch``, by ``seq`` ascending."""

    @abstractmethod
    async def find_messages(self, session_id: str, message_ids: Sequence[str]) -> list[MessageRow]:
        """Every row of the session holding one of ``message_ids`` (at most
        :data:`FIND_CHUNK` of them), in any order."""

    @abstractmethod
    async def insert_checkpoint(self, session_id: str, checkpoint_id: str, data: bytes) -> None:
        """Store a checkpoint. Core checked that its id is new in the session."""

    @abstractmethod
    async def get_checkpoint(self, session_id: str, checkpoint_id: str) -> bytes | None:
        """The ``data`` of this session's checkpoint, or ``None``."""

    @abstractmethod
    async def list_checkpoints(self, session_id: str) -> list[bytes]:
        """The ``data`` of the session's checkpoints, in the order they were inserted."""


class SimpleStore(ABC):
    """A store :class:`SimpleBackend` runs on: transactions holding the primitives."""

    #: What the store can do: Capability.PERSISTENT, Capability.MULTI_PROCESS.
    capabilities: frozenset[Capability] = frozenset()

    async def open(self) -> None:  # noqa: B027 - optional: a store may have nothing to open
        """Connect or create the schema; :class:`BackendUnavailable` if unreachable. Called
        once, before the first transaction."""

    async def close(self) -> None:  # noqa: B027 - optional: a store may have nothing to close
        """Release connections and files. Called once, when the backend closes (whether or
        not it was opened)."""

    @abstractmethod
    def transaction(
        self, session_id: str | None, *, write: bool
    ) -> AbstractAsyncContextManager[StoreTransaction]:
        """A transaction about ``session_id`` (``None``: it lists or creates sessions; a store
        that locks per session serializes those writes with each other). Read-only unless
        ``write``. Commit when the block ends, roll back when it raises."""


@dataclass(slots=True)
class _Head:
    info: SessionInfo
    lineage: Lineage = field(default_factory=Lineage)
    lease: list[Any] = field(default_factory=lambda: [None, 0, 0])  # owner, token, expiry µs

    def row(self) -> HeadRow:
        i = self.info
        doc = {
            "id": i.id,
            "agent": i.agent,
            "user": i.user_id,
            "created": to_micros(i.created_at),
            "updated": to_micros(i.updated_at),
            "meta": i.metadata,
            "branches": self.lineage.to_list(),
            "head": self.lineage.head,
            "lease": self.lease,
        }
        data = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        return HeadRow(i.id, i.agent, i.user_id, to_micros(i.updated_at), data)

    @classmethod
    def load(cls, data: bytes, where: str) -> _Head:
        try:
            d = json.loads(data)
            lineage = Lineage([Branch(*b) for b in d["branches"]], d["head"])
            info = SessionInfo(
                id=d["id"],
                agent=d["agent"],
                user_id=d["user"],
                created_at=from_micros(d["created"]),
                updated_at=from_micros(d["updated"]),
                message_count=lineage.length,
                metadata=d["meta"],
            )
            return cls(info, lineage, d["lease"])
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise CorruptedData(f"the stored head of {where} is not valid: {exc}") from None

    def touch(self) -> HeadRow:
        now = max(utc_now(), self.info.updated_at)  # never back, whatever the clock does
        update = {"updated_at": now, "message_count": self.lineage.length}
        self.info = self.info.model_copy(update=update)
        return self.row()


def _checkpoint(data: bytes, session_id: str) -> tuple[Checkpoint, int]:
    try:
        cid, branch, seq, created, label = json.loads(data)
        when = from_micros(created)
        return Checkpoint(
            id=cid, session_id=session_id, seq=seq, created_at=when, label=label
        ), branch
    except (ValueError, TypeError) as exc:
        raise CorruptedData(
            f"a stored checkpoint of session {session_id!r} is not valid: {exc}"
        ) from None


class SimpleBackend:
    """The whole backend protocol on top of a :class:`SimpleStore`.

    Subclass it to give your backend a name and a URL constructor, e.g.
    ``class SqliteBackend(SimpleBackend): def __init__(self, url): super().__init__(...)``.
    """

    def __init__(self, store: SimpleStore, url: str = "") -> None:
        self.store = store
        self.url = url
        self.capabilities: frozenset[Capability] = store.capabilities
        self._opened = False
        self._closed = False
        self._opening = asyncio.Lock()

    async def open(self) -> None:
        self._check_open()
        async with self._opening:
            if not self._opened:
                await self.store.open()
                self._opened = True

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self.store.close()

    def _check_open(self) -> None:
        if self._closed:
            raise BackendClosed(f"backend {redact_url(self.url)}".rstrip())

    @asynccontextmanager
    async def _tx(self, session_id: str | None, write: bool) -> AsyncIterator[StoreTransaction]:
        if not self._opened:
            await self.open()
        self._check_open()
        # Every operation lets other tasks run (the protocol's rule), even on a store whose
        # primitives never suspend; before the transaction, so a cancellation writes nothing.
        await asyncio.sleep(0)
        async with self.store.transaction(session_id, write=write) as tx:
            yield tx

    async def _head(self, tx: StoreTransaction, session_id: str) -> _Head:
        data = await tx.get_head(session_id)
        if data is None:
            raise SessionNotFound(session_id)
        return _Head.load(data, f"session {session_id!r}")

    async def create_session(self, info: SessionInfo) -> None:
        async with self._tx(info.id, True) as tx:
            if await tx.get_head(info.id) is not None:
                raise ConflictError(f"session {info.id!r} exists already")
            await tx.put_head(_Head(info).row())

    async def get_or_create_session(self, info: SessionInfo) -> tuple[SessionInfo, bool]:
        """The pair's most recently updated session, else ``info`` stored: one transaction."""
        async with self._tx(None, True) as tx:
            found = await tx.list_heads(info.agent, info.user_id, None, 1)
            if found:
                return _Head.load(found[0], "a listed session").info, False
            await tx.put_head(_Head(info).row())
            return info, True

    async def get_session(self, session_id: str) -> SessionInfo:
        async with self._tx(session_id, False) as tx:
            return (await self._head(tx, session_id)).info

    async def list_sessions(
        self,
        *,
        agent: str | None = None,
        user_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[SessionInfo]:
        self._check_open()
        after = None
        if cursor is not None:
            when, sid = decode_cursor(cursor)
            after = (to_micros(when), sid)
        async with self._tx(None, False) as tx:
            rows = await tx.list_heads(agent, user_id, after, limit + 1)
        items = [_Head.load(data, "a listed session").info for data in rows[:limit]]
        more = len(rows) > limit
        nxt = encode_cursor(items[-1].updated_at, items[-1].id) if more else None
        return Page(items=items, next_cursor=nxt)

    async def delete_session(self, session_id: str) -> None:
        async with self._tx(session_id, True) as tx:
            await self._head(tx, session_id)
            await tx.delete_session(session_id)

    async def append_messages(
        self, session_id: str, messages: Sequence[Message], *, expected_seq: int | None = None
    ) -> list[Message]:
        self._check_open()
        encoded = check_batch(messages)
        async with self._tx(session_id, True) as tx:
            head = await self._head(tx, session_id)
            lin = head.lineage
            out: dict[str, Message] = {}
            ids = [m.id for m in messages]
            for at in range(0, len(ids), FIND_CHUNK):
                for row in await tx.find_messages(session_id, ids[at : at + FIND_CHUNK]):
                    if lin.is_live(row.branch, row.seq):
                        out[row.message_id] = with_seq(decode_message(row.data), row.seq)
            for m in messages:
                if m.id in out:
                    check_repeat(session_id, out[m.id], m)
            fresh = [
                (m, data) for m, data in zip(messages, encoded, strict=True) if m.id not in out
            ]
            if fresh and expected_seq is not None and expected_seq != lin.length:
                raise stale_seq(session_id, expected_seq, lin.length)
            if fresh:
                branch, first = lin.append(len(fresh))
                rows = [MessageRow(branch, first + i, m.id, d) for i, (m, d) in enumerate(fresh)]
                await tx.insert_messages(session_id, rows)
                await tx.put_head(head.touch())
                # Decoded from the stored bytes: the caller's containers are never shared.
                out.update((r.message_id, with_seq(decode_message(r.data), r.seq)) for r in rows)
        return [out[m.id] for m in messages]

    async def get_messages(self, session_id: str, *, last: int | None = None) -> list[Message]:
        out: list[Message] = []
        async with self._tx(session_id, False) as tx:
            for branch, lo, hi in (await self._head(tx, session_id)).lineage.tail_spans(last):
                rows = await tx.read_messages(session_id, branch, lo, hi)
                where = f"session {session_id} branch {branch} seq {lo}..{hi}"
                if len(rows) != hi - lo + 1:
                    raise CorruptedData(f"{where}: {len(rows)} messages stored")
                out += (with_seq(decode_message(d, where), lo + i) for i, d in enumerate(rows))
        return out

    async def create_checkpoint(
        self, session_id: str, checkpoint_id: str, *, label: str | None = None
    ) -> Checkpoint:
        async with self._tx(session_id, True) as tx:
            head = await self._head(tx, session_id)
            return await self._checkpoint(tx, head, checkpoint_id, label)

    async def _checkpoint(
        self, tx: StoreTransaction, head: _Head, checkpoint_id: str, label: str | None
    ) -> Checkpoint:
        if await tx.get_checkpoint(head.info.id, checkpoint_id) is not None:
            raise ConflictError(f"checkpoint {checkpoint_id!r} exists already")
        branch, seq = head.lineage.head_ref()
        now = utc_now()
        data = json.dumps([checkpoint_id, branch, seq, to_micros(now), label]).encode()
        await tx.insert_checkpoint(head.info.id, checkpoint_id, data)
        return Checkpoint(
            id=checkpoint_id, session_id=head.info.id, seq=seq, created_at=now, label=label
        )

    async def list_checkpoints(self, session_id: str) -> list[Checkpoint]:
        async with self._tx(session_id, False) as tx:
            await self._head(tx, session_id)
            rows = await tx.list_checkpoints(session_id)
        return [_checkpoint(data, session_id)[0] for data in rows]

    async def restore_checkpoint(
        self, session_id: str, checkpoint_id: str, *, undo_id: str
    ) -> Checkpoint:
        async with self._tx(session_id, True) as tx:
            head = await self._head(tx, session_id)
            data = await tx.get_checkpoint(session_id, checkpoint_id)
            if data is None:
                raise CheckpointNotFound(checkpoint_id, session_id)
            target, branch = _checkpoint(data, session_id)
            undo = await self._checkpoint(tx, head, undo_id, "before-restore")
            head.lineage.move_head(branch, target.seq)
            await tx.put_head(head.touch())
            return undo

    # TurnLeases: the lease lives in the head, so it needs no primitive of its own and goes
    # with the session on delete. Expiry uses this machine's clock.

    async def acquire_turn(self, session_id: str, owner: str, ttl: float) -> int | None:
        """Take the session's turn lease for ``owner``; its fencing token, or ``None``."""
        async with self._tx(session_id, True) as tx:
            head = await self._head(tx, session_id)
            held, token, expires = head.lease
            now = now_micros()
            if held != owner and held is not None and expires > now:
                return None
            if held != owner or expires <= now:
                token += 1
            head.lease = [owner, token, now + int(ttl * 1_000_000)]
            await tx.put_head(head.row())
            return int(token)

    async def renew_turn(self, session_id: str, owner: str, ttl: float) -> bool:
        """Extend ``owner``'s lease to ``ttl`` seconds from now; ``False`` if it was lost."""
        async with self._tx(session_id, True) as tx:
            head = await self._head(tx, session_id)
            held, token, expires = head.lease
            now = now_micros()
            if held != owner or expires <= now:
                return False
            head.lease = [owner, token, now + int(ttl * 1_000_000)]
            await tx.put_head(head.row())
            return True

    async def release_turn(self, session_id: str, owner: str) -> None:
        """Give up ``owner``'s lease, if it still holds it."""
        async with self._tx(session_id, True) as tx:
            head = await self._head(tx, session_id)
            if head.lease[0] == owner:
                head.lease = [None, head.lease[1], 0]
                await tx.put_head(head.row())
