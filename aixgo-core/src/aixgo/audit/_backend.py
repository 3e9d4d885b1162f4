"""AuditedBackend: records every session operation that goes through a backend."""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from aixgo.message import Message
from aixgo.session.backend import Backend
from aixgo.session.kit.wrapper import BackendWrapper
from aixgo.session.models import Checkpoint, Page, SessionInfo

if TYPE_CHECKING:
    from aixgo.audit._log import AuditLog

__all__ = ["AuditedBackend", "audit_of"]

T = TypeVar("T")
# Sessions whose agent and user id are remembered, so an append's record names them without
# reading the session again (they never change; a miss costs one get_session).
_OWNERS = 10_000


class AuditedBackend(BackendWrapper):
    """A :class:`~aixgo.session.Backend` that appends an audit record for each write of the
    one it wraps: ``create``, ``append``, ``checkpoint``, ``restore``, ``delete``. Reads are
    not recorded (``export`` is, by :mod:`aixgo.session.archive`).

    >>> import tempfile, os
    >>> from aixgo.audit import AuditLog
    >>> from aixgo.session import open_backend
    >>> log = AuditLog(os.path.join(tempfile.mkdtemp(), "a.jsonl"), key=b"k" * 32)
    >>> isinstance(AuditedBackend(open_backend("memory://"), log), Backend)
    True
    """

    def __init__(self, inner: Backend, log: AuditLog) -> None:
        super().__init__(inner)
        self.audit = log
        self._owners: OrderedDict[str, tuple[str, str | None]] = OrderedDict()

    def __repr__(self) -> str:
        return f"AuditedBackend({self.inner!r}, {self.audit!r})"

    def optional(self, name: str, fn: Any) -> Any:
        # A get-or-create that creates is recorded as ``create``; the rest pass through.
        if name != "get_or_create_session" or fn is None:
            return fn

        async def get_or_create_session(info: SessionInfo) -> tuple[SessionInfo, bool]:
            try:
                got, created = await fn(info)
            except BaseException as exc:  # a cancelled create may have reached the store
                await self._record("create", info.id, type(exc).__name__, owner=info)
                raise
            self._remember(got)
            if created:
                await self._record("create", got.id, "ok", owner=got)
            return got, created

        return get_or_create_session

    def _remember(self, info: SessionInfo) -> None:
        self._owners[info.id] = (info.agent, info.user_id)
        self._owners.move_to_end(info.id)
        if len(self._owners) > _OWNERS:
            self._owners.popitem(last=False)

    async def _owner(self, session_id: str) -> tuple[str | None, str | None]:
        known = self._owners.get(session_id)
        if known is not None:
            return known
        with contextlib.suppress(Exception):  # a missing session has no owner to name
            info = await self.inner.get_session(session_id)
            self._remember(info)
            return info.agent, info.user_id
        return None, None

    async def _record(
        self,
        op: str,
        session_id: str,
        outcome: str,
        *,
        owner: SessionInfo | tuple[str | None, str | None] | None = None,
        ids: Iterable[str] = (),
        count: int | None = None,
    ) -> None:
        agent: str | None
        if isinstance(owner, SessionInfo):
            agent, user_id = owner.agent, owner.user_id
        elif owner is not None:
            agent, user_id = owner
        else:
            known = self._owners.get(session_id)  # the common case, without a coroutine
            agent, user_id = known if known is not None else await self._owner(session_id)
        await self.audit.record(
            op, outcome=outcome, agent=agent, user_id=user_id, session_id=session_id,
            ids=ids, count=count,
        )  # fmt: skip

    async def _op(
        self,
        op: str,
        session_id: str,
        work: Callable[[], Awaitable[T]],
        *,
        ids: Iterable[str] = (),
        count: Callable[[T], int | None] | None = None,
        owner: tuple[str | None, str | None] | None = None,
    ) -> T:
        try:
            out = await work()
        except BaseException as exc:
            # Cancelled too (a call timing out): the store may have done the work before the
            # cancellation arrived, so the attempt is recorded, as CancelledError.
            await self._record(op, session_id, type(exc).__name__, owner=owner, ids=ids)
            raise
        n = count(out) if count is not None else None
        await self._record(op, session_id, "ok", owner=owner, ids=ids, count=n)
        return out

    async def close(self) -> None:
        """Close the wrapped backend, then the audit log (which raises
        :class:`~aixgo.errors.AuditError` if buffered records could not be written)."""
        try:
            await self.inner.close()
        finally:
            await self.audit.close()

    async def create_session(self, info: SessionInfo) -> None:
        """See :meth:`Backend.create_session`."""
        owner = (info.agent, info.user_id)
        await self._op("create", info.id, lambda: self.inner.create_session(info), owner=owner)
        self._remember(info)

    async def get_session(self, session_id: str) -> SessionInfo:
        """See :meth:`Backend.get_session`."""
        info = await self.inner.get_session(session_id)
        self._remember(info)
        return info

    async def list_sessions(
        self,
        *,
        agent: str | None = None,
        user_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[SessionInfo]:
        """See :meth:`Backend.list_sessions`."""
        page = await self.inner.list_sessions(
            agent=agent, user_id=user_id, limit=limit, cursor=cursor
        )
        for info in page.items:
            self._remember(info)
        return page

    async def delete_session(self, session_id: str) -> None:
        """See :meth:`Backend.delete_session`."""
        owner = await self._owner(session_id)  # before it is gone
        await self._op(
            "delete", session_id, lambda: self.inner.delete_session(session_id), owner=owner
        )
        self._owners.pop(session_id, None)

    async def append_messages(
        self, session_id: str, messages: Sequence[Message], *, expected_seq: int | None = None
    ) -> list[Message]:
        """See :meth:`Backend.append_messages`."""
        # _op spelled out: the hottest audited path, without its closure and extra coroutine.
        ids = _ids(messages)
        try:
            out = await self.inner.append_messages(session_id, messages, expected_seq=expected_seq)
        except BaseException as exc:  # cancelled too, as in _op
            await self._record("append", session_id, type(exc).__name__, ids=ids)
            raise
        await self._record("append", session_id, "ok", ids=ids, count=len(out))
        return out

    async def get_messages(self, session_id: str, *, last: int | None = None) -> list[Message]:
        """See :meth:`Backend.get_messages`."""
        return await self.inner.get_messages(session_id, last=last)

    async def create_checkpoint(
        self, session_id: str, checkpoint_id: str, *, label: str | None = None
    ) -> Checkpoint:
        """See :meth:`Backend.create_checkpoint`."""
        return await self._op(
            "checkpoint",
            session_id,
            lambda: self.inner.create_checkpoint(session_id, checkpoint_id, label=label),
            ids=[checkpoint_id],
            count=lambda cp: cp.seq,
        )

    async def list_checkpoints(self, session_id: str) -> list[Checkpoint]:
        """See :meth:`Backend.list_checkpoints`."""
        return await self.inner.list_checkpoints(session_id)

    async def restore_checkpoint(
        self, session_id: str, checkpoint_id: str, *, undo_id: str
    ) -> Checkpoint:
        """See :meth:`Backend.restore_checkpoint`."""
        return await self._op(
            "restore",
            session_id,
            lambda: self.inner.restore_checkpoint(session_id, checkpoint_id, undo_id=undo_id),
            ids=[checkpoint_id, undo_id],
        )


def _ids(messages: object) -> list[str]:
    """The message ids of a batch; a batch the store will refuse (a lone message, items
    that are not messages) is recorded with the ids it has."""
    if type(messages) is list or isinstance(messages, Sequence):
        return [m.id for m in messages if isinstance(m, Message)]
    return []


def audit_of(backend: Any) -> AuditLog | None:
    """The audit log of ``backend`` (a manager's backend, through any wrappers that keep the
    one they wrap as ``inner``), or ``None``: how code outside the backend path — export,
    import, retention sweeps, key rotation, erasure — records its operations::

        log = audit_of(mgr.backend)
        if log is not None:
            await log.record("erase", user_id=user_id, count=n)
    """
    seen = 0
    while backend is not None and seen < 16:
        if isinstance(backend, AuditedBackend):
            return backend.audit
        backend = getattr(backend, "inner", None)
        seen += 1
    return None
