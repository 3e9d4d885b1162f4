"""Every error aixgo raises, under one base class.

Developer mistakes (bad identifiers, bad arguments, bad configuration) derive from
:class:`UsageError`, which is also a :class:`ValueError`; runtime failures (a missing
session, a lost race, an unreachable store) do not, so callers can tell "fix your code"
apart from "handle this at run time". Every message says what was wrong and what to do.

Store failures are each a :class:`BackendError`: :class:`BackendUnavailable` (cannot reach the
store), :class:`BackendTimeout` (the store did not answer in time; the operation may or may
not have happened, and repeating an append is safe), :class:`BackendClosed` and
:class:`CorruptedData`. A lost ``expected_seq`` race is a :class:`ConflictError` carrying
``expected_seq`` and ``actual_seq`` (backends build it with
:func:`aixgo.session.kit.stale_seq`).
"""

from __future__ import annotations

__all__ = [
    "AixgoError",
    "UsageError",
    "InvalidIdentifier",
    "InvalidArgument",
    "InvalidMessage",
    "ConfigError",
    "PluginError",
    "NotFoundError",
    "SessionNotFound",
    "CheckpointNotFound",
    "ConflictError",
    "MessageIdConflict",
    "BackendError",
    "BackendUnavailable",
    "BackendTimeout",
    "BackendClosed",
    "CorruptedData",
    "DecryptionError",
    "NotStarted",
    "AgentNotFound",
    "AgentError",
    "CallTimeout",
]


class AixgoError(Exception):
    """Base class of every error raised by aixgo and its plugins."""


class UsageError(AixgoError, ValueError):
    """The caller passed something aixgo refuses; nothing was changed."""


class InvalidIdentifier(UsageError):
    """An agent name, user id, session id or checkpoint id is malformed."""


class InvalidArgument(UsageError):
    """An argument is out of range or malformed (a bad ``limit``, ``last`` or cursor)."""


class InvalidMessage(UsageError):
    """A message cannot be stored as given (too large, NUL characters, not JSON)."""


class ConfigError(UsageError):
    """A configuration value or URL is invalid."""


class PluginError(AixgoError):
    """A plugin is broken, conflicts with another, or is missing."""


class NotFoundError(AixgoError, LookupError):
    """Something named by id does not exist (or is not visible to the caller)."""


class SessionNotFound(NotFoundError):
    """No session with that id exists for this caller. ``problem`` is the message without
    its hint for Python callers, for front ends (the CLI) that give hints of their own."""

    def __init__(self, session_id: str, detail: str = "") -> None:
        self.session_id = session_id
        self.problem = f"session {session_id!r} does not exist"
        if detail:
            self.problem += f" ({detail})"
        super().__init__(
            self.problem + "; create it with SessionManager.create() or list existing ones"
        )


class CheckpointNotFound(NotFoundError):
    """No checkpoint with that id exists in that session. ``problem`` is the message without
    its hint for Python callers, as for :class:`SessionNotFound`."""

    def __init__(self, checkpoint_id: str, session_id: str) -> None:
        self.checkpoint_id = checkpoint_id
        self.session_id = session_id
        self.problem = f"checkpoint {checkpoint_id!r} does not exist in session {session_id!r}"
        super().__init__(self.problem + "; see Session.list_checkpoints() for the ones that do")


class ConflictError(AixgoError):
    """Another writer changed the session first (``expected_seq`` did not match),
    or an id that must be new is already taken."""

    def __init__(
        self, message: str, *, expected_seq: int | None = None, actual_seq: int | None = None
    ) -> None:
        self.expected_seq = expected_seq
        self.actual_seq = actual_seq
        super().__init__(message)


class MessageIdConflict(ConflictError):
    """An append reused a stored message's id for a different message (another role or
    content). Not a lost race: retrying the same append fails the same way; give the new
    message a new id."""


class BackendError(AixgoError):
    """The storage backend failed."""


class BackendUnavailable(BackendError, ConnectionError):
    """The store cannot be reached or opened. The message names the URL, never a password."""


class BackendTimeout(BackendError, TimeoutError):
    """The store did not answer within its configured time limit (a command timeout, a
    statement timeout, no free connection in time). The operation may or may not have taken
    effect; every backend write is idempotent, so repeating the same call is safe."""


class BackendClosed(BackendError):
    """The backend (or its manager) was closed and cannot be used any more."""

    def __init__(self, what: str = "backend", remedy: str = "open a new one") -> None:
        super().__init__(f"the {what} is closed and cannot be used any more; {remedy}")


class CorruptedData(BackendError):
    """Stored data failed its integrity check. The message says where (file and line, key, row)."""


class DecryptionError(AixgoError):
    """An encrypted record cannot be read: its key is not in the keyring (``key_id`` names
    it), it was erased, the record was altered or moved to another session or id, or it is
    a plaintext record in an encrypted store. Nothing was changed; the message names the key
    id, never the key."""

    def __init__(self, message: str, *, key_id: str | None = None) -> None:
        self.key_id = key_id
        super().__init__(message)


class NotStarted(UsageError):
    """A runtime was used before ``start()`` (or ``async with``), or after ``stop()``."""


class AgentNotFound(NotFoundError):
    """No agent is registered under that name in this runtime."""

    def __init__(self, name: str, registered: list[str]) -> None:
        self.name = name
        shown = ", ".join(registered) or "none"
        super().__init__(
            f"no agent is registered as {name!r}; registered agents: {shown} "
            "(add one with Runtime.register(name, agent) or in the YAML 'agents:' list)"
        )


class AgentError(AixgoError):
    """An agent failed during a call. ``session_id`` names the session the call concerned
    (``None`` for a stateless call); its input is stored there and nothing more was written,
    so the same call (same message id) can be retried."""

    def __init__(self, message: str, *, agent: str, session_id: str | None) -> None:
        self.agent = agent
        self.session_id = session_id
        super().__init__(message)


class CallTimeout(AgentError, TimeoutError):
    """An agent did not answer within the runtime's ``timeout``."""
