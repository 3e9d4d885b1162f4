"""The error of a lost ``expected_seq`` race, worded the same by every backend."""

from __future__ import annotations

from aixgo.errors import ConflictError

__all__ = ["stale_seq"]


def stale_seq(session_id: str, expected_seq: int | None, actual_seq: int) -> ConflictError:
    """The :class:`~aixgo.errors.ConflictError` for an append that said it last saw
    ``expected_seq`` messages when the session holds ``actual_seq``; raise it before storing
    anything.

    >>> err = stale_seq("s1", 2, 3)
    >>> err.expected_seq, err.actual_seq, str(err).split(":")[0]
    (2, 3, "session 's1' has 3 messages, not 2")
    """
    return ConflictError(
        f"session {session_id!r} has {actual_seq} messages, not {expected_seq}: another writer "
        "appended first; re-read the history and retry",
        expected_seq=expected_seq,
        actual_seq=actual_seq,
    )
