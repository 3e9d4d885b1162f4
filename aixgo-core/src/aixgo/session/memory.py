"""``memory://``: the reference backend. Everything lives in this process and is gone on close.

It is the executable form of the backend contract: small enough to read in one sitting, and
the conformance kit tests itself against it. It stores messages as JSON bytes (like every
other backend), so what comes back is a copy the caller cannot change in place. And like
every other backend, each operation suspends once (first, so a task cancelled then has
changed nothing): a loop of calls on it never starves the other tasks of the process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aixgo.errors import BackendClosed, CheckpointNotFound, ConflictError, SessionNotFound
from aixgo.message import Message, utc_now
from aixgo.session.backend import Capability
from aixgo.session.codec import check_batch, check_repeat, decode_at, decode_batch
from aixgo.session.cursor import decode_cursor, encode_cursor
from aixgo.session.kit.conflict import stale_seq
from aixgo.session.lineage import Lineage
from aixgo.session.models import Checkpoint, Page, SessionInfo

if TYPE_CHECKING:
    from aixgo.session.kit.recent import Recent

__all__ = ["MemoryBackend"]


@dataclass(slots=True)
class _Stored:
    info: SessionInfo
    lineage: Lineage = field(default_factory=Lineage)
    # Per branch, its own messages as JSON: branch b's message seq s is at [b][s - fork - 1].
    own: list[list[bytes]] = field(default_factory=lambda: [[]])
    # Message id -> every (branch, seq) it was stored at: after a restore discards a message it
    # may be stored again on the new branch, and an undo may make the first copy current again.
    ids: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    checkpoints: dict[str, tuple[Checkpoint, int]] = field(default_factory=dict)  # -> branch
    # The turn lease: (owner, fencing token, monotonic expiry); the token count outlives it.
    lease: tuple[str, int, float] | None = None
    tokens: int = 0

    def message(self, branch: int, seq: int) -> Message:
        fork = self.lineage.branches[branch].fork_seq
        return decode_at(self.own[branch][seq - fork - 1], seq)

    def live(self, message_id: str) -> Message | None:
        """The message with this id in the current history, if it is there."""
        for branch, seq in self.ids.get(message_id, ()):
            if self.lineage.is_live(branch, seq):
                return self.message(branch, seq)
        return None


class MemoryBackend:
    """In-process session store for tests, demos and stateless services. It has both
    optional capabilities, :class:`~aixgo.session.backend.SessionPerUser` and
    :class:`~aixgo.session.backend.TurnLeases` (its lease clock is ``time.monotonic``).

    >>> import asyncio
    >>> from aixgo.session import SessionManager
    >>> async def demo() -> int:
    ...     async with SessionManager("memory://") as mgr:
    ...         s = await mgr.create("assistant", user_id="u1")
    ...         await s.append_message(Message.user("hi"))
    ...         return len(await s.get_messages())
    >>> asyncio.run(demo())
    1
    """

    capabilities: frozenset[Capability] = frozenset()

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._sessions: dict[str, _Stored] = {}
        self._closed = False

    async def open(self) -> None:
        self._check_open()

    async def close(self) -> None:
        self._closed = True
        self._sessions.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise BackendClosed(f"backend {self.url}")

    def _get(self, session_id: str) -> _Stored:
        self._check_open()
        stored = self._sessions.get(session_id)
        if stored is None:
            raise SessionNotFound(session_id)
        return stored

    async def create_session(self, info: SessionInfo) -> None:
        await asyncio.sleep(0)
        self._insert(info)

    def _insert(self, info: SessionInfo) -> None:
        self._check_open()
        if info.id in self._sessions:
            raise ConflictError(f"session {info.id!r} exists already")
        self._sessions[info.id] = _Stored(info=info)

    async def get_or_create_session(self, info: SessionInfo) -> tuple[SessionInfo, bool]:
        await asyncio.sleep(0)
        # No await between the look-up and the create: atomic within the event loop.
        self._check_open()
        mine = [
            s.info
            for s in self._sessions.values()
            if s.info.agent == info.agent and s.info.user_id == info.user_id
        ]
        if mine:
            return max(mine, key=lambda i: (i.updated_at, i.id)), False
        self._insert(info)
        return info, True

    async def acquire_turn(self, session_id: str, owner: str, ttl: float) -> int | None:
        await asyncio.sleep(0)
        stored = self._get(session_id)
        now = time.monotonic()
        if stored.lease is not None:
            holder, token, expires = stored.lease
            if expires > now:
                if holder != owner:
                    return None
                stored.lease = (owner, token, now + ttl)
                return token
        stored.tokens += 1
        stored.lease = (owner, stored.tokens, now + ttl)
        return stored.tokens

    async def renew_turn(self, session_id: str, owner: str, ttl: float) -> bool:
        await asyncio.sleep(0)
        stored = self._get(session_id)
        now = time.monotonic()
        if stored.lease is None or stored.lease[0] != owner or stored.lease[2] <= now:
            return False
        stored.lease = (owner, stored.lease[1], now + ttl)
        return True

    async def release_turn(self, session_id: str, owner: str) -> None:
        await asyncio.sleep(0)
        stored = self._get(session_id)
        if stored.lease is not None and stored.lease[0] == owner:
            stored.lease = None

    async def get_session(self, session_id: str) -> SessionInfo:
        await asyncio.sleep(0)
        return self._get(session_id).info

    async def list_sessions(
        self,
        *,
        agent: str | None = None,
        user_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[SessionInfo]:
        await asyncio.sleep(0)
        self._check_open()
        after = decode_cursor(cursor) if cursor is not None else None
        rows = [
            s.info
            for s in self._sessions.values()
            if (agent is None or s.info.agent == agent)
            and (user_id is None or s.info.user_id == user_id)
            and (after is None or (s.info.updated_at, s.info.id) < after)
        ]
        rows.sort(key=lambda i: (i.updated_at, i.id), reverse=True)
        items = rows[:limit]
        more = len(rows) > limit
        nxt = encode_cursor(items[-1].updated_at, items[-1].id) if more else None
        return Page(items=items, next_cursor=nxt)

    async def delete_session(self, session_id: str) -> None:
        await asyncio.sleep(0)
        self._get(session_id)
        del self._sessions[session_id]

    async def append_messages(
        self, session_id: str, messages: Sequence[Message], *, expected_seq: int | None = None
    ) -> list[Message]:
        await asyncio.sleep(0)
        stored = self._get(session_id)
        encoded = check_batch(messages)
        lin = stored.lineage
        known = {
            m.id: check_repeat(session_id, hit, m)
            for m in messages
            if (hit := stored.live(m.id)) is not None
        }
        fresh = [(m, data) for m, data in zip(messages, encoded, strict=True) if m.id not in known]
        if fresh and expected_seq is not None and expected_seq != lin.length:
            raise stale_seq(session_id, expected_seq, lin.length)
        out: list[Message] = []
        if fresh:
            branch, seq = lin.append(len(fresh))
            for m, data in fresh:
                stored.own[branch].append(data)
                stored.ids.setdefault(m.id, []).append((branch, seq))
                seq += 1
            self._touch(stored)
        for m in messages:
            out.append(known[m.id] if m.id in known else stored.message(*stored.ids[m.id][-1]))
        return out

    async def get_messages(self, session_id: str, *, last: int | None = None) -> list[Message]:
        await asyncio.sleep(0)
        return self._tail(session_id, last, None)

    async def get_messages_through(
        self, session_id: str, recent: Recent, *, last: int | None = None
    ) -> list[Message]:
        """:class:`~aixgo.session.ReadThrough`: the records are reused from ``recent`` by
        seq (this store keeps no :class:`Recent` of its own: its reads decode afresh)."""
        await asyncio.sleep(0)
        return self._tail(session_id, last, recent)

    def _tail(self, session_id: str, last: int | None, recent: Recent | None) -> list[Message]:
        stored = self._get(session_id)
        spans = stored.lineage.tail_spans(last)
        if not spans:
            return []
        records: list[bytes] = []
        for branch, lo, hi in spans:
            fork = stored.lineage.branches[branch].fork_seq
            records += stored.own[branch][lo - fork - 1 : hi - fork]
        first = spans[0][1]

        def careful(i: int) -> Message:
            return decode_at(records[i], first + i)

        if recent is None:
            return decode_batch(records, careful, first_seq=first)
        seqs = range(first, first + len(records))
        return recent.decode(session_id, records, seqs, careful, first_seq=first)

    async def create_checkpoint(
        self, session_id: str, checkpoint_id: str, *, label: str | None = None
    ) -> Checkpoint:
        await asyncio.sleep(0)
        stored = self._get(session_id)
        if checkpoint_id in stored.checkpoints:
            raise ConflictError(f"checkpoint {checkpoint_id!r} exists already")
        return self._checkpoint(stored, checkpoint_id, label)

    def _checkpoint(self, stored: _Stored, checkpoint_id: str, label: str | None) -> Checkpoint:
        branch, seq = stored.lineage.head_ref()
        cp = Checkpoint(
            id=checkpoint_id,
            session_id=stored.info.id,
            seq=seq,
            created_at=utc_now(),
            label=label,
        )
        stored.checkpoints[checkpoint_id] = (cp, branch)
        return cp

    async def list_checkpoints(self, session_id: str) -> list[Checkpoint]:
        await asyncio.sleep(0)
        return [cp for cp, _ in self._get(session_id).checkpoints.values()]

    async def restore_checkpoint(
        self, session_id: str, checkpoint_id: str, *, undo_id: str
    ) -> Checkpoint:
        await asyncio.sleep(0)
        stored = self._get(session_id)
        target = stored.checkpoints.get(checkpoint_id)
        if target is None:
            raise CheckpointNotFound(checkpoint_id, session_id)
        if undo_id in stored.checkpoints:
            raise ConflictError(f"checkpoint {undo_id!r} exists already")
        undo = self._checkpoint(stored, undo_id, "before-restore")
        cp, branch = target
        new = stored.lineage.move_head(branch, cp.seq)
        stored.own.append([])
        assert new == len(stored.own) - 1
        self._touch(stored)
        return undo

    def _touch(self, stored: _Stored) -> None:
        now = max(utc_now(), stored.info.updated_at)
        stored.info = stored.info.model_copy(
            update={"updated_at": now, "message_count": stored.lineage.length}
        )
