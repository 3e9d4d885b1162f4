"""The scripts' replies as named tuples: each script's flat RESP array (see the comment at
the top of its ``lua/*.lua``) is taken apart here, once, so the backend reads fields by name.

Status words stay bytes, as Redis returns them (``b"ok"``, ``b"exists"``, ...).

>>> append([b"ok", 3, b"1700000000000000", 3, b""])
Appended(status=b'ok', length=3, updated=1700000000000000, first=3, idx=b'', known=[])
>>> append([b"known", 2, 1, 1, b"{}"]).known
[Stored(position=0, seq=1, data=b'{}')]
"""

from __future__ import annotations

from typing import Any, NamedTuple

Flat = list[Any]


def not_found(reply: Flat) -> bool:
    """Whether a per-session script found no session (``{'notfound'}``)."""
    return bool(reply) and reply[0] == b"notfound"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Stored(NamedTuple):
    """A message of a batch that was in the current history already (an idempotent
    repeat): its place in the batch (0-based), its seq and its stored JSON."""

    position: int
    seq: int
    data: bytes


def _stored(reply: Flat, start: int) -> list[Stored]:
    return [
        Stored(int(reply[j]) - 1, int(reply[j + 1]), reply[j + 2])
        for j in range(start, len(reply), 3)
    ]


class Appended(NamedTuple):
    """``append.lua``: ``ok`` (stored; ``first`` is the first fresh message's seq, ``idx``
    the index keys of Redis Cluster's second step), ``known`` (a probe found stored ids;
    nothing was written) or ``conflict``; ``length`` is the history's length."""

    status: bytes
    length: int
    updated: int
    first: int
    idx: bytes
    known: list[Stored]


def append(reply: Flat) -> Appended:
    status = reply[0]
    if status == b"ok":
        return Appended(
            status, int(reply[1]), int(reply[2]), int(reply[3]), reply[4], _stored(reply, 5)
        )
    if status == b"known":
        return Appended(status, int(reply[1]), 0, 0, b"", _stored(reply, 2))
    return Appended(status, int(reply[1]), 0, 0, b"", [])


class Existing(NamedTuple):
    """``create.lua``: ``exists`` with the stored session's agent, user and creation time
    (a retry compares them with its own), or ``ok``."""

    status: bytes
    agent: bytes | None = None
    user: bytes | None = None
    created: bytes | None = None


def create(reply: Flat) -> Existing:
    return Existing(*reply[:4])


class Deleted(NamedTuple):
    """``delete.lua``: the session's index keys (newline-separated; Redis Cluster removes
    the session from them in a second step)."""

    idx: bytes | None


def delete(reply: Flat) -> Deleted:
    return Deleted(reply[1] if len(reply) > 1 else None)


class Tail(NamedTuple):
    """``tail.lua``: the seq of the first message returned, and the messages' JSON."""

    first: int
    data: list[bytes]


def tail(reply: Flat) -> Tail:
    return Tail(int(reply[1]), reply[2:])


class CheckpointRow(NamedTuple):
    """A checkpoint as stored: its id and its packed value (see ``rows.checkpoint``)."""

    id: str
    value: bytes


class Checkpointed(NamedTuple):
    """``checkpoint.lua``: whether the id was taken already, and its stored value."""

    exists: bool
    value: bytes


def checkpoint(reply: Flat) -> Checkpointed:
    return Checkpointed(reply[0] == b"exists", reply[1])


def checkpoints(reply: Flat) -> list[CheckpointRow]:
    """``checkpoints.lua``: every checkpoint of the session."""
    return [CheckpointRow(_text(reply[j]), reply[j + 1]) for j in range(1, len(reply), 2)]


class Restored(NamedTuple):
    """``restore.lua``: ``ok`` or ``exists`` (the undo checkpoint is taken: an earlier
    attempt restored already) with the undo checkpoint's value, the session's update time
    and its index keys; or ``nocheckpoint``."""

    status: bytes
    undo: bytes = b""
    updated: int = 0
    idx: bytes | None = None


def restore(reply: Flat) -> Restored:
    if reply[0] == b"nocheckpoint":
        return Restored(reply[0])
    return Restored(reply[0], reply[1], int(reply[2]), reply[3])


class Turn(NamedTuple):
    """``turn.lua``: whether the lease was taken (or renewed), and an acquire's fencing
    token."""

    ok: bool
    token: int | None


def turn(reply: Flat) -> Turn:
    ok = reply[0] == b"ok"
    return Turn(ok, int(reply[1]) if ok and len(reply) > 1 else None)


class Found(NamedTuple):
    """``get_or_create.lua``: ``found`` with the pair's session id and its summary fields
    (``rows.SUMMARY_FIELDS``), else what ``create.lua`` returns (``ok``, ``exists``)."""

    status: bytes
    session_id: str = ""
    summary: list[Any] = []  # noqa: RUF012  # never mutated: a NamedTuple default


def get_or_create(reply: Flat) -> Found:
    if reply[0] == b"found":
        return Found(reply[0], _text(reply[1]), reply[2:8])
    return Found(reply[0])


class Claim(NamedTuple):
    """``pair.lua``: ``claimed`` (create the session), ``ok``/``lost`` (a settle), or
    ``members``: the claim in flight (if any) and the pair's sessions, newest first."""

    status: bytes
    claimed: str = ""
    ids: list[str] = []  # noqa: RUF012  # never mutated: a NamedTuple default


def claim(reply: Flat) -> Claim:
    if reply[0] == b"members":
        return Claim(reply[0], _text(reply[1]), [_text(x) for x in reply[2:]])
    return Claim(reply[0])
