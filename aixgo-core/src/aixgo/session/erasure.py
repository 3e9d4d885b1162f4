"""Erasing a user: every session, message, checkpoint and index entry, and their data keys.

Works through the backend protocol alone, so on every backend: it lists the user's sessions
and deletes each (a backend's ``delete_session`` removes the messages, checkpoints and index
entries with it). With encryption on, the user's data key records go first, so whatever the
deletions below leave behind in a crash, in a backup or on a replica, is already
unreadable (crypto-shredding). Each step is idempotent: running it again after a crash
halfway finishes the job and counts only what that run erased.
"""

from __future__ import annotations

from dataclasses import dataclass

from aixgo.errors import BackendError, SessionNotFound
from aixgo.session._encrypted import DATA_KEY_AGENT
from aixgo.session.backend import Backend

__all__ = ["ErasureReport", "erase_user"]

_BATCH = 100


@dataclass(frozen=True, slots=True)
class ErasureReport:
    """The receipt of :meth:`SessionManager.erase_user`: what this run erased. It names no
    user and holds no content, so it may be logged and kept."""

    #: Sessions deleted.
    sessions: int = 0
    #: Messages of their current histories.
    messages: int = 0
    #: Checkpoints deleted with them.
    checkpoints: int = 0
    #: Data key records destroyed (0 without encryption).
    data_keys: int = 0


async def erase_user(backend: Backend, user_id: str) -> ErasureReport:
    """Erase ``user_id``'s sessions and data keys from ``backend`` (the raw store, not an
    encrypting wrapper of it) and return the receipt."""
    data_keys = await _delete_all(backend, user_id, DATA_KEY_AGENT, None)
    counts = [0, 0, 0]
    await _delete_all(backend, user_id, None, counts)
    # Again: a write of the user's racing this erasure may have made a new data key.
    data_keys += await _delete_all(backend, user_id, DATA_KEY_AGENT, None)
    # Audit: an "erase" record (actor, user id, this receipt's counts) is written here.
    return ErasureReport(
        sessions=counts[0], messages=counts[1], checkpoints=counts[2], data_keys=data_keys
    )


async def _delete_all(
    backend: Backend, user_id: str, agent: str | None, counts: list[int] | None
) -> int:
    deleted: set[str] = set()
    while True:
        # Always the first page: what was deleted is gone from it, what a writer adds meanwhile
        # shows up on it.
        page = await backend.list_sessions(agent=agent, user_id=user_id, limit=_BATCH)
        fresh = [i for i in page.items if i.id not in deleted]
        if not fresh:
            if page.items:
                raise BackendError(
                    f"{type(backend).__name__} still lists sessions it deleted; "
                    "its delete_session does not remove index entries"
                )
            return len(deleted)
        for info in fresh:
            try:
                if counts is not None:
                    checkpoints = await backend.list_checkpoints(info.id)
                await backend.delete_session(info.id)
            except SessionNotFound:
                continue  # deleted meanwhile, by a concurrent erasure or the application
            deleted.add(info.id)
            if counts is not None:
                counts[0] += 1
                counts[1] += info.message_count
                counts[2] += len(checkpoints)
