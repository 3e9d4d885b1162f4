"""Moving sessions between stores: export to JSON Lines, import from them.

An archive is one JSON object per line, so it streams, diffs and greps::

    {"type": "header", "format": "aixgo-sessions", "version": 1, "exported_at": "..."}
    {"type": "session", "session": {"id": ..., "agent": ..., "user_id": ..., "created_at": ...,
                                    "updated_at": ..., "message_count": 2, "metadata": {...}}}
    {"type": "message", "session_id": ..., "message": {"id": ..., "seq": 1, "created_at": ...}}
    {"type": "checkpoint", "session_id": ..., "checkpoint": {"id": ..., "seq": 1, "label": ...}}
    {"type": "end", "session_id": ..., "messages": 2, "checkpoints": 1}

What is carried exactly: session ids, agent, user, ``created_at`` and metadata; every message of
the current history with its id, role, content, tool calls, metadata, ``created_at`` and
``seq``; every checkpoint's id and label at its position in that history.

What is not, because the backend protocol exposes only the current history: messages that a
restore discarded (branches reachable only through an older checkpoint). A checkpoint that
points into such a branch is skipped on import and counted in ``checkpoints_skipped``: one past
the end of the current history, or one older than a message of the history it would name.
Checkpoints are re-created in position order. ``updated_at`` becomes the time of the import
(stores set it on every append), and a checkpoint's ``created_at`` the time it is re-created.

>>> import asyncio, io
>>> from aixgo import Message
>>> from aixgo.session import SessionManager
>>> async def demo() -> list[str]:
...     buf = io.StringIO()
...     async with SessionManager("memory://") as src, SessionManager("memory://") as dst:
...         s = await src.create("assistant", user_id="alice")
...         await s.append_message(Message.user("hi"))
...         await export_sessions(src, buf.write)
...         await import_sessions(dst, buf.getvalue().splitlines())
...         return [m.text for m in await (await dst.get(s.id)).get_messages()]
>>> asyncio.run(demo())
['hi']
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from aixgo.errors import (
    AixgoError,
    ConflictError,
    InvalidArgument,
    InvalidIdentifier,
    SessionNotFound,
)
from aixgo.identifiers import validate_id, validate_name
from aixgo.message import Message, utc_now
from aixgo.session.manager import SessionManager
from aixgo.session.models import Checkpoint, SessionInfo

__all__ = ["FORMAT", "VERSION", "OnConflict", "TransferStats", "export_sessions", "import_sessions"]

FORMAT = "aixgo-sessions"
VERSION = 1
#: What import does with a session id the target already has.
OnConflict = Literal["fail", "skip", "replace"]
_BATCH = 500


@dataclass(slots=True)
class TransferStats:
    """What an export or import did."""

    sessions: int = 0
    messages: int = 0
    checkpoints: int = 0
    sessions_skipped: int = 0
    checkpoints_skipped: int = 0
    skipped_ids: list[str] = field(default_factory=list)


Progress = Callable[[TransferStats], None]


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"


async def export_sessions(
    mgr: SessionManager,
    write: Callable[[str], object],
    *,
    session_ids: Iterable[str] | None = None,
    agent: str | None = None,
    user_id: str | None = None,
    progress: Progress | None = None,
) -> TransferStats:
    """Write the chosen sessions (``session_ids``, else every session matching ``agent`` and
    ``user_id``) to ``write`` as JSON Lines, one call per line."""
    if session_ids is None:
        session_ids = await list_ids(mgr, agent=agent, user_id=user_id)
    stats = TransferStats()
    write(_line({"type": "header", "format": FORMAT, "version": VERSION,
                 "exported_at": utc_now().isoformat()}))  # fmt: skip
    for sid in session_ids:
        s = await mgr.get(sid)
        info = await s.info()
        messages = await s.get_messages()
        checkpoints = await s.list_checkpoints()
        write(_line({"type": "session", "session": info.model_dump(mode="json")}))
        for m in messages:
            write(
                _line({"type": "message", "session_id": sid, "message": m.model_dump(mode="json")})
            )
        for cp in checkpoints:
            write(_line({"type": "checkpoint", "session_id": sid,
                         "checkpoint": cp.model_dump(mode="json")}))  # fmt: skip
        write(_line({"type": "end", "session_id": sid, "messages": len(messages),
                     "checkpoints": len(checkpoints)}))  # fmt: skip
        stats.sessions += 1
        stats.messages += len(messages)
        stats.checkpoints += len(checkpoints)
        if progress is not None:
            progress(stats)
    return stats


async def list_ids(
    mgr: SessionManager, *, agent: str | None = None, user_id: str | None = None
) -> list[str]:
    """Every session id matching the filters, most recently updated first. Collected before
    exporting, so sessions that change meanwhile are neither missed nor repeated."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        page = await mgr.list(agent=agent, user_id=user_id, limit=1000, cursor=cursor)
        ids.extend(i.id for i in page.items)
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor


@dataclass(slots=True)
class _Pending:
    info: SessionInfo
    line: int
    messages: list[Message] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)


async def import_sessions(
    mgr: SessionManager,
    lines: Iterable[str],
    *,
    source: str = "archive",
    on_conflict: OnConflict = "fail",
    progress: Progress | None = None,
) -> TransferStats:
    """Recreate the sessions of an archive in ``mgr``'s store with their ids. A session id the
    store has already is an error (``on_conflict="fail"``), left alone (``"skip"``) or
    replaced (``"replace"``). A damaged archive is refused naming ``source`` and the line;
    a session that fails half-way is removed again, so the import can simply be re-run."""
    if on_conflict not in ("fail", "skip", "replace"):
        raise InvalidArgument(f"on_conflict must be fail, skip or replace, not {on_conflict!r}")
    stats = TransferStats()
    pending: _Pending | None = None
    seen_header = False
    n = 0
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue

        def bad(problem: str, line: int = n) -> InvalidArgument:
            return InvalidArgument(f"{source}, line {line}: {problem}")

        try:
            rec = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise bad(f"not JSON ({exc.msg}); is the file cut short?") from None
        kind = rec.get("type") if isinstance(rec, dict) else None
        if not seen_header:
            if kind != "header" or rec.get("format") != FORMAT:
                raise bad(
                    f"not an aixgo session archive (the first line must be a {FORMAT} header)"
                )
            if rec.get("version") != VERSION:
                raise bad(f"archive version {rec.get('version')!r}; this aixgo reads {VERSION}")
            seen_header = True
            continue
        try:
            if kind == "session":
                if pending is not None:
                    raise bad("a session starts before the previous one ended")
                pending = _Pending(SessionInfo.model_validate(rec["session"]), n)
                validate_id(pending.info.id)
                validate_name(pending.info.agent, "agent name")
                if pending.info.user_id is not None:
                    validate_name(pending.info.user_id, "user id")
            elif kind in ("message", "checkpoint", "end"):
                if pending is None or rec.get("session_id") != pending.info.id:
                    raise bad(f"a {kind} record outside its session")
                if kind == "message":
                    m = Message.model_validate(rec["message"])
                    if m.seq != len(pending.messages) + 1:
                        raise bad(f"message seq {m.seq} out of order")
                    pending.messages.append(m.model_copy(update={"seq": None}))
                elif kind == "checkpoint":
                    cp = Checkpoint.model_validate(rec["checkpoint"])
                    validate_id(cp.id, "checkpoint id")
                    pending.checkpoints.append(cp)
                else:
                    if (rec.get("messages"), rec.get("checkpoints")) != (
                        len(pending.messages),
                        len(pending.checkpoints),
                    ):
                        raise bad("the session's record counts do not match its end line")
                    await _restore_one(mgr, pending, on_conflict, stats, bad)
                    pending = None
                    if progress is not None:
                        progress(stats)
            else:
                raise bad(f"unknown record type {kind!r}")
        except (ValidationError, KeyError, TypeError, InvalidIdentifier) as exc:
            raise bad(f"malformed {kind} record: {exc}") from None
    if not seen_header:
        raise InvalidArgument(f"{source} is empty; expected an aixgo session archive")
    if pending is not None:
        raise InvalidArgument(
            f"{source}: the session that starts on line {pending.line} has no end line; "
            "the archive is cut short (nothing of that session was imported)"
        )
    return stats


async def _restore_one(
    mgr: SessionManager,
    p: _Pending,
    on_conflict: OnConflict,
    stats: TransferStats,
    bad: Callable[..., InvalidArgument],
) -> None:
    info = p.info.model_copy(update={"message_count": 0, "updated_at": p.info.created_at})
    backend = mgr.backend
    try:
        await backend.create_session(info)
    except ConflictError:
        if on_conflict == "skip":
            stats.sessions_skipped += 1
            stats.skipped_ids.append(info.id)
            return
        if on_conflict == "fail":
            raise bad(
                f"session {info.id!r} exists in the target store already; use "
                "--on-conflict skip or replace",
                p.line,
            ) from None
        await backend.delete_session(info.id)
        await backend.create_session(info)
    try:
        done = 0
        # Checkpoints are re-created where they were: after the first cp.seq messages.
        for cp in sorted(p.checkpoints, key=lambda c: c.seq):
            if not _on_current_history(cp, p.messages):
                stats.checkpoints_skipped += 1
                continue
            done = await _append(mgr, info.id, p.messages, done, cp.seq)
            await backend.create_checkpoint(info.id, cp.id, label=cp.label)
            stats.checkpoints += 1
        await _append(mgr, info.id, p.messages, done, len(p.messages))
    except AixgoError:
        with contextlib.suppress(SessionNotFound):
            await backend.delete_session(info.id)
        raise
    stats.sessions += 1
    stats.messages += len(p.messages)


def _on_current_history(cp: Checkpoint, messages: list[Message]) -> bool:
    """Whether ``cp`` can mean the first ``cp.seq`` messages of the exported history: not if
    it points past its end, nor if one of those messages was made after the checkpoint was
    taken (then the checkpoint was taken on a branch a restore discarded)."""
    if cp.seq > len(messages):
        return False
    return all(m.created_at <= cp.created_at for m in messages[: cp.seq])


async def _append(
    mgr: SessionManager, sid: str, messages: list[Message], done: int, upto: int
) -> int:
    while done < upto:
        batch = messages[done : min(upto, done + _BATCH)]
        await mgr.backend.append_messages(sid, batch, expected_seq=done)
        done += len(batch)
    return done
