"""``aixgo.session.archive`` as a library: sessions land whole or not at all, whatever stops an
import; bad records are refused before anything is written; re-runs finish the job."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aixgo import Message, ToolCall
from aixgo.errors import InvalidArgument, SessionNotFound, UsageError
from aixgo.session import SessionManager
from aixgo.session.archive import (
    OnConflict,
    TransferStats,
    _on_current_history,
    export_sessions,
    import_sessions,
)
from aixgo.session.memory import MemoryBackend

# -- helpers -------------------------------------------------------------------------------


async def seed(mgr: SessionManager) -> list[str]:
    """Three sessions: one with checkpoints and enough messages for several append batches,
    one small, one empty."""
    a = await mgr.create("assistant", user_id="alice", metadata={"title": "trip"})
    await a.append_messages([Message.user(f"a{i}") for i in range(700)])
    await a.checkpoint(label="first")
    await a.append_messages([Message.assistant(f"b{i}") for i in range(600)])
    await a.checkpoint(label="second")
    call = ToolCall(name="weather", arguments={"city": "Oslo"})
    await a.append_messages(
        [Message.assistant(tool_calls=[call]), Message.tool("12C", tool_call_id=call.id)]
    )
    b = await mgr.create("assistant", user_id="bob")
    await b.append_message(Message.user("I am Bob"))
    c = await mgr.create("classifier")
    return [a.id, b.id, c.id]


async def archive_of(mgr: SessionManager, ids: Sequence[str] | None = None) -> list[str]:
    buf = io.StringIO()
    await export_sessions(mgr, buf.write, session_ids=ids)
    return buf.getvalue().splitlines()


async def snapshot(mgr: SessionManager) -> dict[str, Any]:
    """Everything the protocol shows of every session but the times an import sets."""
    out: dict[str, Any] = {}
    cursor = None
    while True:
        page = await mgr.list(limit=1000, cursor=cursor)
        for info in page.items:
            s = await mgr.get(info.id)
            messages = await s.get_messages()
            out[info.id] = {
                "info": info.model_dump(exclude={"updated_at"}),
                "messages": [m.model_dump() for m in messages],
                "checkpoints": sorted(
                    (c.seq, c.id, c.label)
                    for c in await s.list_checkpoints()
                    if _on_current_history(c, messages)
                ),
            }
        if page.next_cursor is None:
            return out
        cursor = page.next_cursor


class FailingBackend(MemoryBackend):
    """The in-memory store, which raises ``error`` on its ``fail_on``-th append (counting
    from 1) once ``armed``; or, with ``cancel``, cancels the task that appends."""

    def __init__(self, error: BaseException | None = None, fail_on: int = 1) -> None:
        super().__init__()
        self.error = error
        self.fail_on = fail_on
        self.appends = 0
        self.armed = False

    async def append_messages(self, session_id: str, messages: Any, **kw: Any) -> list[Message]:
        if self.armed:
            self.appends += 1
            if self.appends == self.fail_on:
                if self.error is None:
                    task = asyncio.current_task()
                    assert task is not None
                    task.cancel()
                    await asyncio.sleep(0)  # the cancellation lands here
                else:
                    raise self.error
        return await super().append_messages(session_id, messages, **kw)


def replace_in(lines: list[str], old: str, new: str, *, kind: str = "message") -> list[str]:
    """The archive with the first ``kind`` line containing ``old`` changed."""
    out = list(lines)
    for i, line in enumerate(out):
        if json.loads(line)["type"] == kind and old in line:
            out[i] = line.replace(old, new, 1)
            return out
    raise AssertionError(f"no {kind} line with {old!r}")


# -- validation before writing -------------------------------------------------------------

# Each case breaks one record of session a (its message "a5", or its session or checkpoint
# record); raw text, as a damaged or hostile archive would carry it.
BAD_RECORDS = {
    "nul in a message": ('"a5"', '"a\\u00005"', "message"),
    "lone surrogate in a message": ('"a5"', '"a\\ud8005"', "message"),
    "NaN in message metadata": ('"metadata":{}', '"metadata":{"x":NaN}', "message"),
    "nul in session metadata": ('"trip"', '"tr\\u0000ip"', "session"),
    "lone surrogate in session metadata": ('"trip"', '"tr\\udc00ip"', "session"),
    "Infinity in session metadata": ('"title":"trip"', '"title":Infinity', "session"),
    "huge session metadata": ('"trip"', '"' + "x" * 70_000 + '"', "session"),
    "control character in a label": ('"first"', '"fi\\u001brst"', "checkpoint"),
    "bad checkpoint id": ('"label":"first"', '"label":"first","id":"../x"', "checkpoint"),
    "agent name with a newline": ('"agent":"assistant"', '"agent":"a\\nb"', "session"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_replace_leaves_the_existing_session_untouched_when_the_archive_is_bad(
    case: str,
) -> None:
    old, new, kind = BAD_RECORDS[case]

    async def go() -> None:
        async with SessionManager("memory://") as src, SessionManager("memory://") as dst:
            ids = await seed(src)
            lines = await archive_of(src)
            await import_sessions(dst, lines)
            s = await dst.get(ids[0])
            await s.append_message(Message.user("the target's own, newer message"))
            await s.checkpoint(label="mine")
            before = await snapshot(dst)
            bad = replace_in(lines, old, new, kind=kind)
            for how in ("replace", "skip", "fail"):
                with pytest.raises(UsageError) as exc:
                    await import_sessions(dst, bad, source="bad.jsonl", on_conflict=how)
                assert "bad.jsonl, line " in str(exc.value)
                assert await snapshot(dst) == before, how

    asyncio.run(go())


def test_a_bad_record_refuses_its_session_before_any_of_it_is_written() -> None:
    async def go() -> None:
        async with SessionManager("memory://") as src, SessionManager("memory://") as dst:
            ids = await seed(src)
            lines = await archive_of(src, [ids[1], ids[0], ids[2]])
            bad = replace_in(lines, '"b599"', '"b\\u0000"')  # late in session a's history
            with pytest.raises(UsageError, match=r"line \d+:.*NUL"):
                await import_sessions(dst, bad)
            # b came first and is whole; nothing of a; c never read.
            assert list(await snapshot(dst)) == [ids[1]]
            # Repeated message ids would be dropped silently by a store: refused.
            first = next(x for x in lines if '"a1"' in x)
            repeat = json.loads(first)
            repeat["message"]["seq"] += 1
            at = lines.index(first) + 1
            dup = [*lines[:at], json.dumps(repeat), *lines[at:]]
            with pytest.raises(InvalidArgument, match="appears twice"):
                await import_sessions(dst, dup, on_conflict="skip")

    asyncio.run(go())


def test_deep_nesting_non_utf8_and_non_json_constants_are_refused_naming_the_line() -> None:
    async def go() -> None:
        async with SessionManager("memory://") as src, SessionManager("memory://") as dst:
            ids = await seed(src)
            lines = await archive_of(src, [ids[1]])
            deep = '{"type":"message","x":' + "[" * 100_000 + "]" * 100_000 + "}"
            with pytest.raises(InvalidArgument, match=r"^archive, line 3: .*nested too deeply"):
                await import_sessions(dst, [*lines[:2], deep, *lines[2:]])
            raw = [x.encode() for x in lines]
            raw[2] = raw[2].replace(b"Bob", b"B\xffb")
            with pytest.raises(InvalidArgument, match=r"line 3: not UTF-8 text \(byte 0xff"):
                await import_sessions(dst, raw)
            nan = lines[2].replace('"metadata":{}', '"metadata":{"x":NaN}')
            with pytest.raises(InvalidArgument, match="line 3: NaN is not a JSON number"):
                await import_sessions(dst, [*lines[:2], nan, *lines[3:]])
            assert await snapshot(dst) == {}
            # Bytes that are fine import like text.
            await import_sessions(dst, [x.encode() for x in lines])
            assert list(await snapshot(dst)) == [ids[1]]

    asyncio.run(go())


# -- whole or not at all, whatever stops the import ----------------------------------------


@pytest.mark.parametrize(
    "error", [KeyboardInterrupt(), None, RuntimeError("crash")], ids=["ctrl-c", "cancel", "crash"]
)
@pytest.mark.parametrize("how", ["fail", "replace"])
def test_an_interrupted_session_is_rolled_back_and_a_rerun_finishes(
    error: BaseException | None, how: OnConflict
) -> None:
    async def go() -> None:
        backend = FailingBackend(error, fail_on=3)  # session a's second batch
        async with SessionManager("memory://") as src, SessionManager(backend) as dst:
            ids = await seed(src)
            lines = await archive_of(src, [ids[1], ids[0], ids[2]])
            if how == "replace":  # the target has a different session a, to be replaced
                await import_sessions(dst, lines[:1] + _session_lines(lines, ids[0]))
                await (await dst.get(ids[0])).append_message(Message.user("the target's own"))
            before = await snapshot(dst)
            backend.armed = True
            expected = asyncio.CancelledError if error is None else type(error)
            with pytest.raises(expected):
                await import_sessions(dst, lines, on_conflict=how)
            if error is None:
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
            after = await snapshot(dst)
            # b is whole; a is as it was before (absent, or the original put back); no c.
            assert after == {**before, ids[1]: after[ids[1]]}
            assert len(after[ids[1]]["messages"]) == 1
            backend.armed = False
            await import_sessions(dst, lines, on_conflict=how)
            assert await snapshot(dst) == await snapshot(src)

    asyncio.run(go())


def _session_lines(lines: list[str], sid: str) -> list[str]:
    return [x for x in lines if sid in x and json.loads(x)["type"] != "header"]


CUTS = [(0, False), (1, False), (700, False), (700, True), (701, True), (1300, True), (1302, True)]


@pytest.mark.parametrize(
    ("how", "cut", "cp_at_cut"),
    [("fail", *c) for c in CUTS] + [(h, *CUTS[i]) for h in ("skip", "replace") for i in (0, 4, 5)],
)
def test_a_session_a_killed_import_cut_short_is_completed_by_a_rerun(
    how: OnConflict, cut: int, cp_at_cut: bool
) -> None:
    """What kill -9 leaves (no rollback runs): the session with its first ``cut`` messages
    and the checkpoints written before them (one at ``cut`` itself, or not yet). Any re-run
    completes it; none skips it."""

    async def go() -> None:
        async with SessionManager("memory://") as src, SessionManager("memory://") as dst:
            ids = await seed(src)
            lines = await archive_of(src)
            a = await src.get(ids[0])
            info, messages = await a.info(), await a.get_messages()
            await dst.backend.create_session(info.model_copy(update={"message_count": 0}))
            plain = [m.model_copy(update={"seq": None}) for m in messages]
            done = 0
            for cp in [*await a.list_checkpoints(), None]:
                upto = min(cut, cp.seq if cp else cut)
                if upto > done:
                    await dst.backend.append_messages(ids[0], plain[done:upto])
                    done = upto
                if cp and (cp.seq < cut or (cp.seq == cut and cp_at_cut)):
                    await dst.backend.create_checkpoint(ids[0], cp.id, label=cp.label)
            stats = await import_sessions(dst, lines, on_conflict=how)
            assert await snapshot(dst) == await snapshot(src)
            whole = cut == 1302  # killed after its last write: nothing left to do
            assert (stats.sessions, stats.sessions_completed, stats.sessions_unchanged) == (
                (2, 0, 1) if whole else (3, 1, 0)
            )
            assert (stats.messages, stats.sessions_skipped) == (1302 - cut + 1, 0)
            again = await import_sessions(dst, lines, on_conflict=how)
            assert (again.sessions, again.sessions_unchanged) == (0, 3)

    asyncio.run(go())


def test_a_different_session_is_not_taken_for_a_cut_short_one() -> None:
    async def go() -> None:
        async with SessionManager("memory://") as src, SessionManager("memory://") as dst:
            ids = await seed(src)
            lines = await archive_of(src, ids[1:2])
            await import_sessions(dst, lines)
            b = await dst.get(ids[1])
            await b.append_message(Message.user("later"))  # longer than the archived one
            before = await snapshot(dst)
            with pytest.raises(InvalidArgument, match="exists in the target store already"):
                await import_sessions(dst, lines)
            stats = await import_sessions(dst, lines, on_conflict="skip")
            assert (stats.sessions_skipped, stats.skipped_ids) == (1, [ids[1]])
            assert await snapshot(dst) == before
            stats = await import_sessions(dst, lines, on_conflict="replace")
            assert (stats.sessions, stats.sessions_replaced) == (1, 1)
            assert (await snapshot(dst))[ids[1]] == (await snapshot(src))[ids[1]]

    asyncio.run(go())


# -- times ---------------------------------------------------------------------------------


def test_imported_sessions_list_by_import_time_and_future_creation_is_clamped() -> None:
    async def go() -> None:
        async with SessionManager("memory://") as src, SessionManager("memory://") as dst:
            ids = await seed(src)
            lines = await archive_of(src)
            future = "9999-12-31T23:59:59.999999Z"
            lines = [_retime(x, future) if json.loads(x)["type"] == "session" else x for x in lines]
            start = datetime.now(UTC)
            await import_sessions(dst, lines)
            end = datetime.now(UTC)
            for sid in ids:
                info = await (await dst.get(sid)).info()
                assert start <= info.updated_at <= end, sid
                assert start <= info.created_at <= end, sid  # clamped to the import time
            fresh = await dst.create("assistant", user_id="alice")
            assert (await dst.list(limit=1)).items[0].id == fresh.id
            assert (await dst.get_or_create("assistant", "alice")).id == fresh.id
            # A creation time in the past is kept exactly.
            past = [_retime(x, "2001-02-03T04:05:06Z") for x in await archive_of(src, ids[1:2])]
            async with SessionManager("memory://") as other:
                await import_sessions(other, past)
                info = await (await other.get(ids[1])).info()
                assert info.created_at == datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)
                assert info.updated_at - datetime.now(UTC) < timedelta(seconds=5)

    asyncio.run(go())


def _retime(line: str, when: str) -> str:
    rec = json.loads(line)
    if rec["type"] == "session":
        rec["session"]["created_at"] = rec["session"]["updated_at"] = when
    return json.dumps(rec)


# -- export --------------------------------------------------------------------------------


def test_export_with_a_user_or_agent_treats_other_sessions_as_not_found() -> None:
    async def go() -> None:
        async with SessionManager("memory://") as src:
            ids = await seed(src)
            out: list[str] = []
            with pytest.raises(SessionNotFound):
                await export_sessions(src, out.append, session_ids=[ids[1]], user_id="alice")
            with pytest.raises(SessionNotFound):
                await export_sessions(src, out.append, session_ids=[ids[2]], agent="assistant")
            assert not any("I am Bob" in x for x in out)
            stats: TransferStats = await export_sessions(
                src, out.append, session_ids=[ids[1]], user_id="bob"
            )
            assert stats.sessions == 1

    asyncio.run(go())


def test_export_escapes_del_and_c1_characters_and_keeps_the_text(tmp_path: Path) -> None:
    async def go() -> None:
        async with SessionManager("memory://") as src, SessionManager("memory://") as dst:
            s = await src.create("a", metadata={"title": "t\x9b2J\x7f"})
            await s.append_message(Message.user("\x1b[2J\x9d0;x\x9c"))
            lines = await archive_of(src)
            assert not any(c in "".join(lines) for c in "\x1b\x7f\x9b\x9c\x9d")
            await import_sessions(dst, lines)
            assert await snapshot(dst) == await snapshot(src)

    asyncio.run(go())
