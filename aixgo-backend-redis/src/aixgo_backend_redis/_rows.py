"""Turning stored fields into :class:`SessionInfo` and :class:`Checkpoint`, and times into
the integer microseconds Redis stores (exact, sortable, and a valid sorted-set score).

>>> from datetime import datetime, UTC
>>> t = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
>>> from_us(to_us(t)) == t
True
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from aixgo.clock import from_micros, to_micros
from aixgo.errors import CorruptedData
from aixgo.message import Message
from aixgo.session.codec import decode_message, with_seq
from aixgo.session.models import Checkpoint, SessionInfo
from pydantic import TypeAdapter

#: The summary fields a listing or get_session reads, in this order.
SUMMARY_FIELDS = ("agent", "user", "created", "updated", "count", "meta")
_INFOS = TypeAdapter(list[SessionInfo])


#: Microseconds since the epoch (the unit of every stored time and index score).
to_us = to_micros


def from_us(us: int | float | bytes | str) -> datetime:
    """The UTC time ``us`` microseconds after the epoch (scores may come back as '1.7e+15').

    >>> from_us(b"1.7e+15") == from_us(b"1700000000000000")
    True
    """
    if isinstance(us, bytes | str):
        try:
            us = int(us)  # what the scripts write
        except ValueError:
            us = int(float(us))  # OverflowError for 'inf'
    return from_micros(int(us))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _summary(session_id: str, values: Sequence[Any]) -> dict[str, Any]:
    agent, user, created, updated, count, meta = values
    return {
        "id": session_id,
        "agent": _text(agent),
        "user_id": None if user is None else _text(user),
        "created_at": from_us(created),
        "updated_at": from_us(updated),
        "message_count": int(count),
        # Most sessions carry no metadata: skip the parser (a quarter of a row's cost).
        "metadata": {} if meta == b"{}" else json.loads(meta),
    }


def info(session_id: str, values: Sequence[Any], where: str) -> SessionInfo:
    """The summary from ``values`` (:data:`SUMMARY_FIELDS` in order, as Redis returns them)."""
    try:
        return SessionInfo(**_summary(session_id, values))
    except (TypeError, ValueError, OverflowError) as exc:
        raise CorruptedData(f"session summary {where} is not valid: {exc}") from None


def infos(
    found: Sequence[tuple[str, Sequence[Any]]], affixes: tuple[str, str]
) -> list[SessionInfo]:
    """The summaries of a listing page: ``(session id, values)`` pairs as for :func:`info`,
    and the affixes that name a summary's key around its id. One validation for the whole
    page costs about half as much per row as :func:`info`'s one per row.

    >>> page = infos([("a" * 32, [b"bot", None, b"0", b"1", b"0", b"{}"])], ("k:", ":s"))
    >>> page[0].agent, page[0].user_id, page[0].message_count
    ('bot', None, 0)
    """
    try:
        return _INFOS.validate_python([_summary(sid, values) for sid, values in found])
    except (TypeError, ValueError, OverflowError):
        pre, suf = affixes
        # Again row by row, to name the damaged one.
        return [info(sid, values, pre + sid + suf) for sid, values in found]


def checkpoint(checkpoint_id: str, session_id: str, value: bytes | str) -> tuple[int, Checkpoint]:
    """``(ordinal, checkpoint)`` from a stored ``"ordinal,branch,seq,created_us,label"``."""
    try:
        ordinal, _branch, seq, created, label = _text(value).split(",", 4)
        cp = Checkpoint(
            id=checkpoint_id,
            session_id=session_id,
            seq=int(seq),
            created_at=from_us(created),
            label=json.loads(label),
        )
        return int(ordinal), cp
    except (TypeError, ValueError) as exc:
        raise CorruptedData(
            f"checkpoint {checkpoint_id!r} of session {session_id!r} is not valid: {exc}"
        ) from None


def message(data: bytes | str, seq: int | None, where: str) -> Message:
    """The stored message ``data``, which is message ``seq`` of the history (``None``: the
    seq written into the JSON when it was stored).

    >>> from aixgo.session.codec import encode_message
    >>> stored = encode_message(Message.user("hi"))[:-5] + b"7}"  # as append.lua stores it
    >>> message(stored, None, "here").seq
    7
    """
    try:
        msg = Message.model_validate_json(data)
    except ValueError:  # pydantic's ValidationError: the careful path reads or reports it
        shown = where if seq is None else f"{where} (message {seq} of the history)"
        msg = decode_message(data, shown)
    if seq is not None and msg.seq != seq:
        return with_seq(msg, seq)
    if msg.seq is None:
        raise CorruptedData(f"stored message {msg.id!r} at {where} has no seq")
    return msg
