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
Checkpoints are re-created in position order. ``updated_at`` becomes the time of the import, so
an imported session lists as just used (never as "most recent" forever because an archive says
so), and a ``created_at`` later than the import is clamped to the import time. A checkpoint's
``created_at`` becomes the time it is re-created.

Importing is safe to interrupt and to repeat. Every record of a session is validated (with the
same checks an append or a create makes) before any of it is written, and a session lands whole
or not at all: one that fails or is interrupted (an exception, Ctrl-C, task cancellation) is
rolled back. Only a hard kill (``kill -9``, power loss) can leave a session cut short; running
the same import again finishes it, because a session in the store that matches the archived one
(same agent, user and metadata, its messages a prefix of the archived ones by id) is completed
instead of counted as a conflict, and one that is already whole is counted as unchanged.
Sessions are imported one after another, so a failed run leaves the sessions before the failing
one imported and the ones after it not; again, re-running finishes the job.

>>> import asyncio, io
>>> from aixgo import Message
>>> from aixgo.session import SessionManager
>>> async def demo() -> list[object]:
...     buf = io.StringIO()
...     async with SessionManager("memory://") as src, SessionManager("memory://") as dst:
...         s = await src.create("assistant", user_id="alice")
...         await s.append_message(Message.user("hi"))
...         await export_sessions(src, buf.write)
...         await import_sessions(dst, buf.getvalue().splitlines())
...         again = await import_sessions(dst, buf.getvalue().splitlines())  # resumable
...         texts = [m.text for m in await (await dst.get(s.id)).get_messages()]
...         return [texts, again.sessions, again.sessions_unchanged]
>>> asyncio.run(demo())
[['hi'], 0, 1]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NoReturn

from pydantic import ValidationError

from aixgo.audit import audited
from aixgo.errors import AixgoError, ConflictError, InvalidArgument, SessionNotFound
from aixgo.identifiers import validate_id, validate_name
from aixgo.message import Message, utc_now
from aixgo.session.backend import Backend
from aixgo.session.codec import encode_message
from aixgo.session.manager import SessionManager, check_metadata
from aixgo.session.models import Checkpoint, SessionInfo

__all__ = [
    "FORMAT",
    "VERSION",
    "OnConflict",
    "TransferStats",
    "escape_controls",
    "export_sessions",
    "import_sessions",
]

FORMAT = "aixgo-sessions"
VERSION = 1
#: What import does with a session id the target already has and whose session differs from
#: the archived one (one that matches it is left alone or completed whatever this says).
OnConflict = Literal["fail", "skip", "replace"]
_BATCH = 500


@dataclass(slots=True)
class TransferStats:
    """What an export or import did."""

    #: Sessions written whole by this run: new, completed or replaced.
    sessions: int = 0
    #: Messages and checkpoints this run wrote.
    messages: int = 0
    checkpoints: int = 0
    #: Existing sessions that differ from the archived ones, left alone (``"skip"``).
    sessions_skipped: int = 0
    checkpoints_skipped: int = 0
    skipped_ids: list[str] = field(default_factory=list)
    #: Sessions that were in the store exactly as archived already: nothing written.
    sessions_unchanged: int = 0
    #: Of ``sessions``: ones an earlier, killed import had left cut short, now completed.
    sessions_completed: int = 0
    #: Of ``sessions``: existing, different sessions replaced (``"replace"``).
    sessions_replaced: int = 0


Progress = Callable[[TransferStats], None]

# DEL and C1 controls are not escaped by json.dumps(ensure_ascii=False), yet a terminal may act
# on them; as \\u escapes they decode to the same text.
_C1 = re.compile("[\x7f-\x9f]")


def escape_controls(text: str) -> str:
    r"""JSON text from ``json.dumps(..., ensure_ascii=False)`` with the DEL and C1 characters it
    leaves raw \u-escaped: the same JSON value, safe to show on a terminal.

    >>> print(escape_controls(json.dumps("a\x9b2J", ensure_ascii=False)))
    "a\u009b2J"
    """
    return _C1.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _line(obj: dict[str, Any]) -> str:
    return escape_controls(json.dumps(obj, ensure_ascii=False, separators=(",", ":"))) + "\n"


async def export_sessions(
    mgr: SessionManager,
    write: Callable[[str], object],
    *,
    session_ids: Iterable[str] | None = None,
    agent: str | None = None,
    user_id: str | None = None,
    progress: Progress | None = None,
) -> TransferStats:
    """Write the chosen sessions (``session_ids``, else every session) to ``write`` as JSON
    Lines, one call per line. ``agent`` and ``user_id`` filter: a named session of another
    agent or user is :class:`SessionNotFound`, as if it did not exist."""
    if session_ids is None:
        session_ids = await list_ids(mgr, agent=agent, user_id=user_id)
    stats = TransferStats()
    write(_line({"type": "header", "format": FORMAT, "version": VERSION,
                 "exported_at": utc_now().isoformat()}))  # fmt: skip
    for sid in session_ids:
        async with audited(mgr.backend, "export", session_id=sid) as record:
            info, messages, checkpoints = await _read_session(mgr, sid, agent, user_id)
            record.update(agent=info.agent, user_id=info.user_id, count=len(messages))
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


async def _read_session(
    mgr: SessionManager, sid: str, agent: str | None, user_id: str | None
) -> tuple[SessionInfo, list[Message], list[Checkpoint]]:
    s = await mgr.get(sid, user_id=user_id)
    info = await s.info()
    if agent is not None and info.agent != agent:
        raise SessionNotFound(sid)
    return info, await s.get_messages(), await s.list_checkpoints()


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


# -- reading and validating -----------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    """One archived session, every record validated, not yet written."""

    info: SessionInfo
    line: int
    messages: list[Message] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    message_ids: set[str] = field(default_factory=set)


class _Refused(Exception):
    """A record is wrong; the reader adds the source and the line."""


async def import_sessions(
    mgr: SessionManager,
    lines: Iterable[str | bytes],
    *,
    source: str = "archive",
    on_conflict: OnConflict = "fail",
    progress: Progress | None = None,
) -> TransferStats:
    """Recreate the sessions of an archive (lines of text, or of UTF-8 bytes) in ``mgr``'s
    store with their ids.

    A session the store has already is left alone when it equals the archived one
    (``sessions_unchanged``) and completed when it is the archived one cut short by a killed
    import. One that differs is an error (``on_conflict="fail"``), left alone (``"skip"``) or
    replaced (``"replace"``; on failure the original is put back). A damaged archive is refused
    with :class:`InvalidArgument` naming ``source`` and the line, before anything of that
    session is written. A session that fails or is interrupted half-way is rolled back, so the
    import can simply be re-run; the sessions before it stay imported.
    """
    if on_conflict not in ("fail", "skip", "replace"):
        raise InvalidArgument(f"on_conflict must be fail, skip or replace, not {on_conflict!r}")
    stats = TransferStats()
    for pending in _read(lines, source):
        info = pending.info
        async with audited(mgr.backend, "import", session_id=info.id, agent=info.agent,
                           user_id=info.user_id, count=len(pending.messages)):  # fmt: skip
            await _import_one(mgr.backend, pending, on_conflict, stats, source)
        if progress is not None:
            progress(stats)
    return stats


def _read(lines: Iterable[str | bytes], source: str) -> Iterator[_Pending]:
    """The archive's sessions, each yielded once all its records are read and valid."""
    pending: _Pending | None = None
    seen_header = False
    for n, rec in _records(lines, source):
        kind = rec.get("type")
        try:
            if not seen_header:
                _check_header(rec)
                seen_header = True
                continue
            _check_place(kind, rec, pending)
            pending = _apply(kind, rec, pending, n)
        except _Refused as exc:
            raise InvalidArgument(f"{source}, line {n}: {exc}") from None
        if kind == "end":
            yield pending
            pending = None
    if not seen_header:
        raise InvalidArgument(f"{source} is empty; expected an aixgo session archive")
    if pending is not None:
        raise InvalidArgument(
            f"{source}: the session that starts on line {pending.line} has no end line; "
            "the archive is cut short (nothing of that session was imported)"
        )


def _check_header(rec: dict[str, Any]) -> None:
    if rec.get("type") != "header" or rec.get("format") != FORMAT:
        raise _Refused(f"not an aixgo session archive (the first line must be a {FORMAT} header)")
    if rec.get("version") != VERSION:
        raise _Refused(f"archive version {rec.get('version')!r}; this aixgo reads {VERSION}")


def _check_place(kind: Any, rec: dict[str, Any], pending: _Pending | None) -> None:
    """Refuse a record that does not belong where it stands."""
    if kind == "session":
        if pending is not None:
            raise _Refused("a session starts before the previous one ended")
    elif kind in ("message", "checkpoint", "end"):
        if pending is None or rec.get("session_id") != pending.info.id:
            raise _Refused(f"a {kind} record outside its session")
    else:
        raise _Refused(f"unknown record type {kind!r}")


def _apply(kind: str, rec: dict[str, Any], pending: _Pending | None, line: int) -> _Pending:
    """The session being read, with the record (in its place) taken in."""
    try:
        if kind == "session":
            return _Pending(_session(rec["session"]), line)
        assert pending is not None
        if kind == "end":
            _end(rec, pending)
        else:
            _add(kind, rec, pending)
        return pending
    except _Refused:
        raise
    except RecursionError:
        raise _Refused(f"{kind} record nested too deeply") from None
    except (AixgoError, ValidationError, KeyError, TypeError, ValueError) as exc:
        # ValueError covers what pydantic's serializer and the codecs raise for text that
        # no store keeps (lone surrogates, say) when they do not raise an aixgo error.
        raise _Refused(f"malformed {kind} record: {_why(exc)}") from None


def _records(lines: Iterable[str | bytes], source: str) -> Iterator[tuple[int, Any]]:
    """(line number, JSON object) for every non-blank line; a line that is not a UTF-8 JSON
    object is refused naming it."""
    for n, raw in enumerate(lines, 1):
        where = f"{source}, line {n}"
        text: str
        if isinstance(raw, bytes):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidArgument(
                    f"{where}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column "
                    f"{exc.start + 1}); an aixgo archive is UTF-8 JSON Lines"
                ) from None
        else:
            text = raw
        if not text.strip():
            continue
        try:
            rec = json.loads(text, parse_constant=_no_constant)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"{where}: not JSON ({exc.msg}); is it cut short?") from None
        except RecursionError:
            raise InvalidArgument(f"{where}: JSON nested too deeply to read") from None
        except _Refused as exc:
            raise InvalidArgument(f"{where}: {exc}") from None
        if not isinstance(rec, dict):
            raise InvalidArgument(f"{where}: not a JSON object")
        yield n, rec


def _no_constant(name: str) -> NoReturn:
    raise _Refused(f"{name} is not a JSON number, and no store keeps it")


def _why(exc: BaseException) -> str:
    """One line saying what was wrong (pydantic's own messages span several)."""
    if isinstance(exc, ValidationError):
        errors = exc.errors()
        first = errors[0]
        where = ".".join(str(p) for p in first["loc"])
        if len(where) > 80:
            where = where[:80] + "…"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return f"{where}: {first['msg']}{more}" if where else f"{first['msg']}{more}"
    if isinstance(exc, KeyError):
        return f"missing {exc}"
    return " ".join(str(exc).split())


def _session(data: Any) -> SessionInfo:
    info = SessionInfo.model_validate(data)
    validate_id(info.id)
    validate_name(info.agent, "agent name")
    if info.user_id is not None:
        validate_name(info.user_id, "user id")
    check_metadata(info.metadata)
    return info.model_copy(update={"created_at": _utc(info.created_at)})


def _utc(value: datetime) -> datetime:
    # Naive times are UTC, as for messages; aware ones compare with the import time.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _add(kind: str, rec: dict[str, Any], p: _Pending) -> None:
    if kind == "message":
        m = Message.model_validate(rec["message"])
        if m.seq != len(p.messages) + 1:
            raise _Refused(f"message seq {m.seq} out of order")
        if m.id in p.message_ids:
            # A store would take the repeat as already stored and drop it silently.
            raise _Refused(f"message id {m.id!r} appears twice in session {p.info.id}")
        m = m.model_copy(update={"seq": None})
        encode_message(m)  # every check an append makes, before anything is written
        p.message_ids.add(m.id)
        p.messages.append(m)
    else:
        cp = Checkpoint.model_validate(rec["checkpoint"])
        if cp.session_id != p.info.id:
            raise _Refused(f"checkpoint {cp.id!r} names session {cp.session_id!r}")
        validate_id(cp.id, "checkpoint id")
        if cp.label is not None:
            validate_name(cp.label, "checkpoint label")
        if any(c.id == cp.id for c in p.checkpoints):
            raise _Refused(f"checkpoint id {cp.id!r} appears twice in session {p.info.id}")
        p.checkpoints.append(cp.model_copy(update={"created_at": _utc(cp.created_at)}))


def _end(rec: dict[str, Any], p: _Pending) -> None:
    if (rec.get("messages"), rec.get("checkpoints")) != (len(p.messages), len(p.checkpoints)):
        raise _Refused("the session's record counts do not match its end line")


# -- writing ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Stored:
    """A session as the target store has it."""

    info: SessionInfo
    messages: list[Message]
    checkpoints: list[Checkpoint]


async def _import_one(
    backend: Backend, p: _Pending, on_conflict: OnConflict, stats: TransferStats, source: str
) -> None:
    now = utc_now()
    info = p.info.model_copy(
        update={"message_count": 0, "updated_at": now, "created_at": min(p.info.created_at, now)}
    )
    try:
        await backend.create_session(info)
    except ConflictError:
        await _onto_existing(backend, p, info, on_conflict, stats, source)
        return
    except BaseException:
        # Interrupted while creating: the session may exist, empty; it is this run's own.
        await _undo(_delete(backend, info.id), None)
        raise
    done = TransferStats()
    await _guarded(_write(backend, p, done), _delete(backend, info.id))
    _count(stats, done)


async def _onto_existing(
    backend: Backend,
    p: _Pending,
    info: SessionInfo,
    on_conflict: OnConflict,
    stats: TransferStats,
    source: str,
) -> None:
    old = await _load(backend, p.info.id)
    have = _matching_prefix(old, p)
    if have == len(p.messages) and _missing_checkpoints(old, p) == []:
        stats.sessions_unchanged += 1
        return
    if have is not None:
        # An earlier import was killed half-way: finish it. A failure now leaves a prefix
        # still, which the next run finishes in turn.
        done = TransferStats(sessions_completed=1)
        await _write(backend, p, done, start=have, present={c.id for c in old.checkpoints})
        _count(stats, done)
        return
    if on_conflict == "skip":
        stats.sessions_skipped += 1
        stats.skipped_ids.append(info.id)
        return
    if on_conflict == "fail":
        raise InvalidArgument(
            f"{source}, line {p.line}: session {info.id!r} exists in the target store already "
            "and differs from the archived one; use --on-conflict skip or replace "
            "(nothing of it was written)"
        )
    done = TransferStats(sessions_replaced=1)
    await _guarded(_replace(backend, p, info, done), _put_back(backend, old))
    _count(stats, done)


def _count(stats: TransferStats, session: TransferStats) -> None:
    """Add what writing one session did, once it is whole."""
    stats.sessions += 1
    stats.messages += session.messages
    stats.checkpoints += session.checkpoints
    stats.checkpoints_skipped += session.checkpoints_skipped
    stats.sessions_completed += session.sessions_completed
    stats.sessions_replaced += session.sessions_replaced


async def _replace(backend: Backend, p: _Pending, info: SessionInfo, stats: TransferStats) -> None:
    await backend.delete_session(info.id)
    await backend.create_session(info)
    await _write(backend, p, stats)


async def _load(backend: Backend, sid: str) -> _Stored:
    info = await backend.get_session(sid)
    return _Stored(info, await backend.get_messages(sid), await backend.list_checkpoints(sid))


def _matching_prefix(old: _Stored, p: _Pending) -> int | None:
    """How many archived messages ``old`` has, if it is the archived session cut short (or
    whole): same agent, user and metadata, its history a prefix of the archived one by message
    id, and its checkpoints the archived ones at their places. ``None`` if it is another."""
    n = len(old.messages)
    if (
        (old.info.agent, old.info.user_id, old.info.metadata)
        != (p.info.agent, p.info.user_id, p.info.metadata)
        or n > len(p.messages)
        or [m.id for m in old.messages] != [m.id for m in p.messages[:n]]
    ):
        return None
    # Archived checkpoints an import skips (into discarded history) count too: the store the
    # archive came from has them, and is the archived session all the same.
    archived = {c.id: c.seq for c in p.checkpoints}
    if any(archived.get(c.id) != c.seq for c in old.checkpoints):
        return None
    # Checkpoints are written in position order, so all those before the head must be there.
    if any(seq < n for seq in _missing_checkpoints(old, p)):
        return None
    return n


def _missing_checkpoints(old: _Stored, p: _Pending) -> list[int]:
    """The positions of the archived checkpoints ``old`` lacks."""
    present = {c.id for c in old.checkpoints}
    return [c.seq for c in _carried(p) if c.id not in present]


def _carried(p: _Pending) -> list[Checkpoint]:
    """The archived checkpoints an import re-creates, in position order."""
    return sorted(
        (c for c in p.checkpoints if _on_current_history(c, p.messages)), key=lambda c: c.seq
    )


async def _write(
    backend: Backend,
    p: _Pending,
    stats: TransferStats,
    *,
    start: int = 0,
    present: AbstractSet[str] = frozenset(),
) -> None:
    """Append the archived messages after the first ``start`` ones, re-creating the checkpoints
    not ``present`` where they were: after the first ``cp.seq`` messages."""
    sid = p.info.id
    done = start
    for cp in _carried(p):
        if cp.id in present:
            continue
        done = await _append(backend, sid, p.messages, done, cp.seq, stats)
        await backend.create_checkpoint(sid, cp.id, label=cp.label)
        stats.checkpoints += 1
    await _append(backend, sid, p.messages, done, len(p.messages), stats)
    stats.checkpoints_skipped += len(p.checkpoints) - len(_carried(p))


def _on_current_history(cp: Checkpoint, messages: list[Message]) -> bool:
    """Whether ``cp`` can mean the first ``cp.seq`` messages of the exported history: not if
    it points past its end, nor if one of those messages was made after the checkpoint was
    taken (then the checkpoint was taken on a branch a restore discarded)."""
    if cp.seq > len(messages):
        return False
    return all(m.created_at <= cp.created_at for m in messages[: cp.seq])


async def _append(
    backend: Backend,
    sid: str,
    messages: list[Message],
    done: int,
    upto: int,
    stats: TransferStats,
) -> int:
    while done < upto:
        batch = messages[done : min(upto, done + _BATCH)]
        await backend.append_messages(sid, batch, expected_seq=done)
        done += len(batch)
        stats.messages += len(batch)
        # A backend that never suspends (file:// writes synchronously) would otherwise let no
        # cancellation in (Ctrl-C under asyncio.run, SIGTERM in the CLI) before the import ends.
        await asyncio.sleep(0)
    return done


async def _delete(backend: Backend, sid: str) -> None:
    with contextlib.suppress(SessionNotFound):
        await backend.delete_session(sid)


async def _put_back(backend: Backend, old: _Stored) -> None:
    """Restore a session a failed replace had deleted: its summary, its history and the
    checkpoints on it (those into history a restore discarded are lost, as in an export)."""
    await _delete(backend, old.info.id)
    await backend.create_session(old.info.model_copy(update={"message_count": 0}))
    done = 0
    cps = sorted(
        (c for c in old.checkpoints if _on_current_history(c, old.messages)), key=lambda c: c.seq
    )
    scratch = TransferStats()
    for cp in cps:
        done = await _append(backend, old.info.id, old.messages, done, cp.seq, scratch)
        await backend.create_checkpoint(old.info.id, cp.id, label=cp.label)
    await _append(backend, old.info.id, old.messages, done, len(old.messages), scratch)


async def _guarded(work: Awaitable[None], undo: Coroutine[Any, Any, None]) -> None:
    """Run ``work``; if it fails or is interrupted, run ``undo`` to the end and re-raise."""
    try:
        await work
    except BaseException as exc:
        await _undo(undo, exc)
        raise
    else:
        undo.close()  # never awaited: close it, so Python does not warn


async def _undo(undo: Coroutine[Any, Any, None], exc: BaseException | None) -> None:
    """Run ``undo`` to its end even if this task is cancelled meanwhile (Ctrl-C under
    asyncio.run, SIGTERM in the CLI, a timeout): shielded, and awaited again after each
    cancellation, which the caller re-raises afterwards anyway."""
    task = asyncio.ensure_future(undo)
    while not task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({task})  # unlike awaiting it, a cancellation here spares it
    if task.cancelled():
        failure: BaseException | None = asyncio.CancelledError()
    else:
        failure = task.exception()
    if failure is not None and exc is not None:
        exc.add_note(
            f"rolling back failed as well ({type(failure).__name__}: {_why(failure)}); "
            "run the same import again to finish"
        )
