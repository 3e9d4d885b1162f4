"""SessionManager: the front door to sessions. It validates, makes ids, scopes by user, and
delegates storage to a backend."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from pydantic import JsonValue, TypeAdapter, ValidationError

from aixgo.arguments import check_count
from aixgo.crypto import Keyring
from aixgo.errors import ConfigError, InvalidArgument, SessionNotFound
from aixgo.identifiers import new_id, validate_id, validate_name
from aixgo.message import utc_now
from aixgo.session._encrypted import EncryptedBackend, RekeyReport
from aixgo.session.backend import Backend, SessionPerUser
from aixgo.session.codec import check_json_value
from aixgo.session.erasure import ErasureReport, erase_user
from aixgo.session.models import Page, SessionInfo
from aixgo.session.session import Session
from aixgo.session.store import SessionStore
from aixgo.session.url import default_session_url, open_backend

__all__ = ["MAX_LIST_LIMIT", "MAX_METADATA_BYTES", "SessionManager", "check_metadata"]

MAX_LIST_LIMIT = 1000
MAX_METADATA_BYTES = 64 * 1024
_METADATA = TypeAdapter(dict[str, JsonValue])
# How many of a pair's sessions a racing creator looks at to converge.
_CONVERGE_LIMIT = 20
_CONVERGE_ROUNDS = 3


class SessionManager:
    """Creates, finds, lists and deletes sessions in one backend.

    ``SessionManager()`` opens ``$AIXGO_SESSION_URL``, else the embedded file store;
    pass a URL or a backend to choose. Use it with ``async with`` (or ``await close()``).

    >>> import asyncio
    >>> async def demo() -> list[str]:
    ...     async with SessionManager("memory://") as mgr:
    ...         s = await mgr.create("assistant", user_id="user-123", metadata={"title": "trip"})
    ...         again = await mgr.get_or_create("assistant", "user-123")
    ...         page = await mgr.list(user_id="user-123")
    ...         return [again.id == s.id, page.items[0].metadata["title"]]
    >>> asyncio.run(demo())
    [True, 'trip']
    """

    def __init__(
        self,
        backend: Backend | str | None = None,
        *,
        encryption: Keyring | None = None,
        allow_plaintext: bool = False,
    ) -> None:
        """``encryption``: encrypt at rest with this keyring's keys (docs/governance.md);
        ``allow_plaintext`` lets it read records written before encryption was turned on
        (a migration flag: otherwise they are refused with ``DecryptionError``)."""
        if backend is None:
            backend = default_session_url()
        raw = open_backend(backend) if isinstance(backend, str) else backend
        self._encrypted = (
            None
            if encryption is None
            else EncryptedBackend(raw, encryption, allow_plaintext=allow_plaintext)
        )
        self._raw = raw
        self._store = SessionStore(raw if self._encrypted is None else self._encrypted)
        # Held only while a get_or_create runs; weak values let idle locks go away.
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    @property
    def backend(self) -> Backend:
        """The backend this manager (and every session it returns) stores in."""
        return self._store.backend

    def wrapped(self, wrap: Callable[[Backend], Backend]) -> SessionManager:
        """A manager on the same store whose operations, and those of its sessions, go
        through ``wrap(self.backend)`` (a wrapper such as
        :class:`~aixgo.telemetry.TracedBackend`). This manager is left as it is; the two
        share their open/closed state and the per-user creation locks, so closing either
        closes both.

        >>> from aixgo.telemetry import TracedBackend
        >>> mgr = SessionManager("memory://")
        >>> traced = mgr.wrapped(TracedBackend)
        >>> type(traced.backend).__name__, type(mgr.backend).__name__
        ('TracedBackend', 'MemoryBackend')
        """
        # A shallow copy keeps a subclass's behaviour and shares the lock table.
        view = copy.copy(self)
        view._store = self._store.view(wrap(self._store.backend))
        return view

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Connect to the store now, so an unreachable one fails here (BackendUnavailable)."""
        await self._store.open()

    async def close(self) -> None:
        """Close the backend. Idempotent; later calls raise :class:`BackendClosed`."""
        await self._store.close()

    def _check_open(self) -> None:
        self._store.check_open()

    async def create(
        self,
        agent: str,
        user_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Session:
        """Create an empty session for ``agent``, owned by ``user_id`` if given."""
        self._check_open()
        validate_name(agent, "agent name")
        if user_id is not None:
            validate_name(user_id, "user id")
        meta = check_metadata(metadata)
        now = utc_now()
        info = SessionInfo(
            id=new_id(),
            agent=agent,
            user_id=user_id,
            created_at=now,
            updated_at=now,
            message_count=0,
            metadata=meta,
        )
        await self.backend.create_session(info)
        return Session(self._store, info)

    async def get(self, session_id: str, user_id: str | None = None) -> Session:
        """The session ``session_id``. With ``user_id``, a session owned by someone else is
        reported as :class:`SessionNotFound`, exactly like one that does not exist."""
        self._check_open()
        validate_id(session_id)
        if user_id is not None:
            validate_name(user_id, "user id")
        info = await self.backend.get_session(session_id)
        if user_id is not None and info.user_id != user_id:
            raise SessionNotFound(session_id)
        return Session(self._store, info)

    async def get_or_create(self, agent: str, user_id: str) -> Session:
        """The user's most recently updated session with ``agent``, or a new one.

        How many sessions concurrent first calls make:

        * On a backend with :class:`~aixgo.session.backend.SessionPerUser` (``memory://``,
          ``file://``, ...) the look-up and the creation are one atomic step in the store:
          however many processes or machines make the first call at once, exactly one
          session is created and all of them get it.
        * On a backend without it, calls in this process are serialized, and calls racing
          from other processes converge after the fact: a call that created a session lists
          the pair again and, if it finds another one it should defer to (one with messages,
          else the oldest empty one), deletes its own, still-empty session and returns that
          one. Racers that see each other's sessions agree on one; a creation that only
          becomes visible after the others listed again can still leave two sessions (both
          kept, and later calls resume the most recently updated one). A session is deleted
          only while it is empty and only by the call that created it, moments after; a call
          that found it in the meantime holds a deleted session (``Runtime.call`` then looks
          again, so its input lands in the survivor).
        """
        self._check_open()
        validate_name(agent, "agent name")
        validate_name(user_id, "user id")
        key = (agent, user_id)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            if isinstance(self.backend, SessionPerUser):
                info, _ = await self.backend.get_or_create_session(_new_info(agent, user_id))
                return Session(self._store, info)
            page = await self.backend.list_sessions(agent=agent, user_id=user_id, limit=1)
            if page.items:
                return Session(self._store, page.items[0])
            mine = _new_info(agent, user_id)
            await self.backend.create_session(mine)
            return Session(self._store, await self._converge(mine))

    async def _converge(self, mine: SessionInfo) -> SessionInfo:
        """After creating ``mine``, the session racing creators of the pair agree on."""
        for _ in range(_CONVERGE_ROUNDS):
            page = await self.backend.list_sessions(
                agent=mine.agent, user_id=mine.user_id, limit=_CONVERGE_LIMIT
            )
            others = [i for i in page.items if i.id != mine.id]
            # Every racer applies the same rule to what it sees: a session someone already
            # wrote to (the most recently updated), else the oldest empty one.
            used = [i for i in others if i.message_count > 0]
            oldest = min([mine, *others], key=lambda i: (i.created_at, i.id))
            chosen = used[0] if used else oldest
            if chosen.id == mine.id:
                return mine
            try:
                # It may be another racer's, deleted since in favour of a third: look again.
                chosen = await self.backend.get_session(chosen.id)
            except SessionNotFound:
                continue
            with contextlib.suppress(SessionNotFound):
                if (await self.backend.get_session(mine.id)).message_count == 0:
                    await self.backend.delete_session(mine.id)
                    return chosen
            return mine
        return mine

    async def list(
        self,
        agent: str | None = None,
        user_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[SessionInfo]:
        """Sessions, most recently updated first, ``limit`` (1..1000) at a time. Pass the
        page's ``next_cursor`` back as ``cursor`` for the next page."""
        self._check_open()
        if agent is not None:
            validate_name(agent, "agent name")
        if user_id is not None:
            validate_name(user_id, "user id")
        check_count(limit, "limit", low=1, high=MAX_LIST_LIMIT)
        if cursor is not None and not isinstance(cursor, str):
            raise InvalidArgument(f"cursor must be a string or None, not {type(cursor).__name__}")
        return await self.backend.list_sessions(
            agent=agent, user_id=user_id, limit=limit, cursor=cursor
        )

    @property
    def keyring(self) -> Keyring | None:
        """The keyring this manager encrypts with, or ``None`` without encryption."""
        return None if self._encrypted is None else self._encrypted.keyring

    async def rekey(
        self, *, progress: Callable[[RekeyReport], None] | None = None, batch: int = 200
    ) -> RekeyReport:
        """Move every data key onto the keyring's active master key, so the others can be
        removed from the keyring afterwards. Only data keys are rewrapped, never messages.
        Safe while the application runs and to interrupt: run it again to finish.
        ``progress`` gets the report so far after each ``batch`` data keys."""
        self._check_open()
        if self._encrypted is None:
            raise ConfigError(
                "rekey needs encryption: SessionManager(url, encryption=Keyring(...))"
            )
        check_count(batch, "batch", low=1, high=MAX_LIST_LIMIT)
        return await self._encrypted.rekey(progress=progress, batch=batch)

    async def erase_user(self, user_id: str) -> ErasureReport:
        """Erase every session of ``user_id`` with its messages, checkpoints and index
        entries, and destroy their data keys when encryption is on; the receipt counts what
        this run erased. Safe to run again after a crash halfway."""
        self._check_open()
        validate_name(user_id, "user id")
        report = await erase_user(self._raw, user_id)
        if self._encrypted is not None:
            self._encrypted.forget(user_id)
        return report

    async def delete(self, session_id: str, user_id: str | None = None) -> None:
        """Delete the session with all its messages and checkpoints. With ``user_id``, only
        that user's session can be deleted (others are :class:`SessionNotFound`)."""
        if user_id is not None:
            await self.get(session_id, user_id=user_id)
        else:
            self._check_open()
            validate_id(session_id)
        await self.backend.delete_session(session_id)


def check_metadata(metadata: object) -> dict[str, JsonValue]:
    """``metadata`` as session metadata (``{}`` for ``None``), or :class:`InvalidArgument`:
    not a JSON object with string keys, over :data:`MAX_METADATA_BYTES`, or holding NUL,
    non-finite numbers, lone surrogates or nesting deeper than ``codec.MAX_DEPTH``."""
    if metadata is None:
        return {}
    try:
        meta = _METADATA.validate_python(metadata)
    except ValidationError as exc:
        raise InvalidArgument(f"metadata must be a JSON object with string keys: {exc}") from None
    check_json_value(meta, "metadata", InvalidArgument)  # also NUL, which stores cannot keep
    size = len(json.dumps(meta, ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        raise InvalidArgument(
            f"metadata is {size:,} bytes as JSON; at most {MAX_METADATA_BYTES:,} are allowed"
        )
    return meta


def _new_info(agent: str, user_id: str) -> SessionInfo:
    now = utc_now()
    return SessionInfo(
        id=new_id(), agent=agent, user_id=user_id, created_at=now, updated_at=now, metadata={}
    )
