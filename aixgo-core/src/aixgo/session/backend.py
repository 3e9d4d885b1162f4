"""The backend protocol: the small async interface every session store implements.

A backend stores three things per session — a summary (:class:`SessionInfo`), an ordered
history of messages, and checkpoints — and nothing else. :class:`SessionManager` validates
input, makes ids and checks ownership before it calls a backend, so a backend receives only
well-formed ids, names and :class:`Message` objects; it owns storage, atomicity and ordering.

Semantics every backend must keep (the conformance kit :mod:`aixgo.testing` checks each):

* ``append_messages`` is atomic: all of the batch is stored, with consecutive ``seq`` values
  continuing the current history, or none of it is. Concurrent appends never lose, duplicate
  or interleave a batch, and ``seq`` is strictly increasing.
* Whatever an append accepts, every read returns: refuse (``check_batch``) before writing
  anything your store could not give back.
* Idempotence: a message whose ``id`` is already in the session's current history is not
  stored again; the stored copy is returned in its place. A batch whose messages are all
  present is therefore a no-op that returns them, whatever ``expected_seq`` says. A repeat
  must be the same message (:func:`~aixgo.session.codec.check_repeat`): an id stored with
  another role or content is a :class:`ConflictError`, and a batch holding one stores nothing.
* ``expected_seq=n`` means "I last saw n messages": if the current history does not have
  exactly ``n`` messages (and the batch is not an idempotent repeat), raise
  :class:`ConflictError` and store nothing; build it with
  :func:`aixgo.session.kit.stale_seq` so every backend says it alike.
* Appending or restoring sets ``updated_at`` to the current time (never earlier than before)
  and ``message_count`` to the new history length.
* A checkpoint names the first ``seq`` messages of the current history *as they are now*.
  ``restore_checkpoint`` first records a checkpoint of the current head under ``undo_id``
  (label ``"before-restore"``), then makes the checkpoint's history current; both happen or
  neither. Nothing is ever deleted by a restore: the discarded tail stays reachable through the
  undo checkpoint, and every older checkpoint keeps meaning what it meant.
* ``list_sessions`` orders by ``(updated_at, id)`` descending, filters by agent and user id,
  and pages with an opaque cursor (see :mod:`aixgo.session.cursor`).
* ``delete_session`` removes the session's messages, checkpoints and index entries.
* Every operation suspends at least once (a store whose work never waits, in memory or in
  local files, awaits ``asyncio.sleep(0)`` before it), so a loop of calls never starves the
  other tasks of the event loop.
* Unknown session → :class:`SessionNotFound`; unknown checkpoint, or one of another session →
  :class:`CheckpointNotFound`; any call after ``close()`` → :class:`BackendClosed`;
  an unreachable store → :class:`BackendUnavailable` (URL shown without its password); a
  store that did not answer within its time limit → :class:`~aixgo.errors.BackendTimeout`
  (the operation may or may not have happened; repeating it is safe).
* Secrets never reach a message or a repr: show the URL as ``Redactor(url).shown`` and pass
  a client library's messages through the redactor (:mod:`aixgo.session.redaction`).

What every backend needs beyond this (strict URL options, one retry policy,
:func:`~aixgo.session.kit.stale_seq`, ``seq`` stamping of stored JSON) is in
:mod:`aixgo.session.kit`.

Cost rules: append is O(batch), ``get_messages(last=n)`` is O(n) whatever the history length,
a checkpoint is O(1), listing is paginated. Never rewrite a whole history or index per message.

Optional: a backend whose store has a schema (tables, a key layout with a version) that must be
created or upgraded also implements :class:`Migratable`, ``async def migrate(self, *,
check=False) -> MigrationReport``. ``aixgo sessions migrate`` calls it; for a backend without
it the command says there is nothing to migrate and succeeds. Its rules:

* It brings the store's schema to the version the code uses and reports what it found and
  applied; run again, it applies nothing. It is safe when several processes run it at once
  (one migrates, the others find nothing left to do).
* ``check=True`` changes nothing: it only reports (``report.pending`` says a migration is due).
* A store whose schema is newer than the code is refused with a :class:`ConfigError` (in both
  modes), and is never altered.
* It works on a backend that was never opened, and does not open it (opening may itself
  migrate); ``close()`` afterwards releases what it used. Unreachable store:
  :class:`BackendUnavailable`; the report and errors show URLs without their password.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from aixgo.message import Message
from aixgo.session.models import Checkpoint, MigrationReport, Page, SessionInfo

if TYPE_CHECKING:
    from aixgo.session.kit.recent import Recent

__all__ = ["Backend", "Capability", "Migratable", "ReadThrough", "SessionPerUser", "TurnLeases"]


class Capability(StrEnum):
    """Optional abilities a backend declares in ``capabilities``; the conformance kit runs
    the tests for a capability only when the backend declares it."""

    #: Data survives ``close()`` and a new ``open_backend`` of the same URL.
    PERSISTENT = "persistent"
    #: Several processes (or machines) may share one store at once.
    MULTI_PROCESS = "multi-process"


@runtime_checkable
class Backend(Protocol):
    """A session store. Implement these methods (all ``async`` but ``capabilities``) and
    register a factory for your URL scheme with the ``aixgo_register_backends`` hook.

    Example, with the built-in reference implementation::

        >>> import asyncio
        >>> from aixgo.session import open_backend
        >>> backend = open_backend("memory://")
        >>> isinstance(backend, Backend)
        True
        >>> asyncio.run(backend.close())
    """

    #: The optional abilities this backend has.
    capabilities: frozenset[Capability]

    async def open(self) -> None:
        """Connect or prepare the store; idempotent. Raise :class:`BackendUnavailable` if it
        cannot be reached. Other methods must also work without an explicit ``open()``."""

    async def close(self) -> None:
        """Release connections and files; idempotent. Later calls raise BackendClosed."""

    async def create_session(self, info: SessionInfo) -> None:
        """Store a new, empty session. ``info.id`` is fresh from the manager; if it exists
        already, raise :class:`ConflictError`."""

    async def get_session(self, session_id: str) -> SessionInfo:
        """The session's current summary, or :class:`SessionNotFound`."""

    async def list_sessions(
        self,
        *,
        agent: str | None = None,
        user_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[SessionInfo]:
        """Sessions matching the filters, most recently updated first, at most ``limit``
        (1..1000) per page. ``next_cursor`` is ``None`` on the last page."""

    async def delete_session(self, session_id: str) -> None:
        """Delete the session with its messages, checkpoints and index entries, or raise
        :class:`SessionNotFound`."""

    async def append_messages(
        self, session_id: str, messages: Sequence[Message], *, expected_seq: int | None = None
    ) -> list[Message]:
        """Atomically append ``messages`` (non-empty, distinct ids) and return them as stored,
        each with its ``seq`` set. See the module docs for idempotence and ``expected_seq``."""

    async def get_messages(self, session_id: str, *, last: int | None = None) -> list[Message]:
        """The current history oldest first; with ``last=n`` only its final ``n`` messages,
        at a cost that does not grow with the history's length."""

    async def create_checkpoint(
        self, session_id: str, checkpoint_id: str, *, label: str | None = None
    ) -> Checkpoint:
        """Record a checkpoint of the current head under ``checkpoint_id``. O(1)."""

    async def list_checkpoints(self, session_id: str) -> list[Checkpoint]:
        """The session's checkpoints, oldest first."""

    async def restore_checkpoint(
        self, session_id: str, checkpoint_id: str, *, undo_id: str
    ) -> Checkpoint:
        """Make the checkpoint's history current, after recording the current head as the
        checkpoint ``undo_id`` labelled ``"before-restore"``; return that undo checkpoint."""


@runtime_checkable
class Migratable(Protocol):
    """The optional schema capability of a backend (see the module docs for its rules).

    A backend has it by defining the method; ``isinstance(backend, Migratable)`` tells.
    The built-in ``memory://`` store has no schema, so it has nothing to migrate::

        >>> from aixgo.session import open_backend
        >>> isinstance(open_backend("memory://"), Migratable)
        False
    """

    async def migrate(self, *, check: bool = False) -> MigrationReport:
        """Bring the store's schema up to date, or with ``check`` only inspect it; return
        what was found and applied. A schema newer than the code raises :class:`ConfigError`."""


@runtime_checkable
class SessionPerUser(Protocol):
    """Optional: an atomic "get or create" of a user's current session with an agent.

    ``SessionManager.get_or_create`` uses it when the backend has it, so that however many
    processes or machines make a user's first call at once, exactly one session is created.
    Without it the manager serializes within one process only, and converges racing
    creations afterwards (see :meth:`SessionManager.get_or_create`).
    """

    async def get_or_create_session(self, info: SessionInfo) -> tuple[SessionInfo, bool]:
        """The most recently updated session of ``(info.agent, info.user_id)``, or ``info``
        stored as a new, empty session if that pair has none; ``(session, created)``.
        Atomic across every process sharing the store: two concurrent calls for the same
        pair never both create. ``info.user_id`` is never ``None`` here."""


@runtime_checkable
class TurnLeases(Protocol):
    """Optional: a per-session turn lease held in the store, so that one turn at a time runs
    on a session across every process and machine sharing the store.

    Rules the conformance kit checks:

    * ``acquire_turn`` succeeds for at most one ``owner`` at a time; it returns a fencing
      token, an integer that is larger for every later successful acquisition of the same
      session's lease (by any owner), and ``None`` while another owner holds an unexpired
      lease. The same owner acquiring again while it holds the lease renews it and gets the
      same token.
    * A lease expires ``ttl`` seconds after it was last acquired or renewed; then any owner
      may take it (a process that died holding it loses it after at most ``ttl``).
    * ``renew_turn`` extends the lease by ``ttl`` from now and returns ``True`` if ``owner``
      still holds it, ``False`` (changing nothing) if it expired or another owner took it.
    * ``release_turn`` gives the lease up if ``owner`` holds it; otherwise it does nothing.
    * All three raise :class:`SessionNotFound` for an unknown session; ``delete_session``
      also drops the session's lease.

    ``owner`` is a non-empty string of at most 256 UTF-8 bytes (the runtime makes a random
    one per call, 33 ASCII characters); ``ttl`` is in seconds, a positive float (the runtime's
    ``turn_lease_ttl``, at least 0.05). The runtime renews every ``ttl / 3`` while a turn runs
    and keeps stating ``expected_seq`` on its writes under the lease, so the append's own
    check fences off a holder that outlived its lease (see :mod:`aixgo.turn`).
    """

    async def acquire_turn(self, session_id: str, owner: str, ttl: float) -> int | None:
        """Take the session's turn lease for ``owner`` for ``ttl`` seconds; the fencing token,
        or ``None`` if another owner holds it."""

    async def renew_turn(self, session_id: str, owner: str, ttl: float) -> bool:
        """Extend ``owner``'s lease to ``ttl`` seconds from now; ``False`` if it was lost."""

    async def release_turn(self, session_id: str, owner: str) -> None:
        """Give up ``owner``'s lease, if it still holds it."""


@runtime_checkable
class ReadThrough(Protocol):
    """Optional: a tail read that reuses and keeps decoded records in the caller's
    :class:`~aixgo.session.kit.Recent` rather than the store's own.

    For a wrapper that turns what the store holds into something else (encryption at rest
    decrypts sealed records): with ``Recent(make=...)`` of its own, it reads through the
    store's comparison of stored bytes, and a record read again costs it a copy instead of
    a decode, a decryption and a copy. Rules (the conformance kit checks them):

    * It reads exactly what ``get_messages(session_id, last=last)`` reads, with the same
      round trips and errors, and decodes it the same way, except that records are reused
      from, and kept in, ``recent`` (never the store's own) under its rules, and what is
      decoded afresh goes through ``recent.make`` before it is kept and returned. An
      exception ``make`` raises propagates unchanged, and the read keeps nothing then.
    * A :class:`~aixgo.session.kit.BackendWrapper` never passes it through: the wrapper is
      on the read path, so a wrapper that wants it defines it itself.

    The built-in stores have it::

        >>> from aixgo.session import open_backend
        >>> isinstance(open_backend("memory://"), ReadThrough)
        True
    """

    async def get_messages_through(
        self, session_id: str, recent: Recent, *, last: int | None = None
    ) -> list[Message]:
        """``get_messages(session_id, last=last)``, reusing and keeping records in
        ``recent`` and turned by ``recent.make`` (see the class docs)."""
