"""Reads again: a row this backend read before is a copy of what it decoded then only while
its stored text is the same (aixgo.session.kit.recent); anything else is read anew."""

from __future__ import annotations

import pytest
from aixgo import Message
from aixgo.errors import CorruptedData
from aixgo.session import SessionManager, open_backend
from aixgo.testing.base import grow_and_restore, new_session, reads_agree
from aixgo_backend_postgres import PostgresBackend

from .helpers import admin


async def _change(pg_url: str, schema: str, session_id: str, change: str, seq: int = 2) -> None:
    async with await admin(pg_url) as conn:
        await conn.execute(
            f'UPDATE "{schema}".aixgo_messages SET message = {change} '
            "WHERE session_id = %s AND seq = %s",
            (session_id, seq),
        )


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("change", "error"),
    [
        ("message - 'tool_call_id' || '{\"role\": \"tool\"}'", "tool_call_id"),
        ("message || '{\"evil\": 1}'", "Extra inputs"),
        ("'[1, 2]'", ""),
    ],
    ids=["tool without call id", "extra field", "not an object"],
)
async def test_a_row_damaged_after_a_read_is_refused_on_the_next(
    pg_url: str, schema: str, change: str, error: str
) -> None:
    async with SessionManager(pg_url) as mgr:
        s = await mgr.create("assistant")
        await s.append_messages([Message.user(t) for t in "abc"])
        for last in (None, 2, None, 2):  # read, and read again: the rows are kept
            assert [m.text for m in await s.get_messages(last=last)][-2:] == ["b", "c"]
        await _change(pg_url, schema, s.id, change)
        for last in (None, 2):
            with pytest.raises(CorruptedData, match=f"seq 2 is not valid: .*{error}"):
                await s.get_messages(last=last)
        assert [m.text for m in await s.get_messages(last=1)] == ["c"]


@pytest.mark.asyncio
async def test_a_row_rewritten_after_a_read_reads_as_rewritten(pg_url: str, schema: str) -> None:
    async with SessionManager(pg_url) as mgr:
        s = await mgr.create("assistant")
        await s.append_messages([Message.user(t) for t in "abc"])
        assert [m.text for m in await s.get_messages()] == ["a", "b", "c"]
        await _change(pg_url, schema, s.id, "jsonb_set(message, '{content}', '\"B\"')")
        assert [m.text for m in await s.get_messages()] == ["a", "B", "c"]
        assert [m.text for m in await s.get_messages(last=2)] == ["B", "c"]


@pytest.mark.asyncio
async def test_tails_across_restores_and_appends_read_as_without_reuse(pg_url: str) -> None:
    async with SessionManager(pg_url) as mgr:
        cached = open_backend(pg_url)
        assert isinstance(cached, PostgresBackend)
        try:
            s = await new_session(mgr, 3, agent="assistant")
            await grow_and_restore(s, lambda: reads_agree(cached, pg_url, s.id))
            assert [m.text for m in await cached.get_messages(s.id)] == ["m1", "m2", "m3", "a1"]
            assert cached._recent.of(s.id)  # the reads did keep rows to reuse
        finally:
            await cached.close()
