"""What SQL users see: the current-history view and function agree with get_messages()."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aixgo import Message
from aixgo.errors import CorruptedData
from aixgo.session import SessionManager

from .helpers import admin


@pytest.mark.asyncio
async def test_the_view_shows_current_histories_across_restores(pg_url: str, schema: str) -> None:
    async with SessionManager(pg_url) as mgr:
        s = await mgr.create("assistant", user_id="u")
        other = await mgr.create("assistant", user_id="v")
        await other.append_message(Message.user("elsewhere"))
        await s.append_messages([Message.user(f"m{i}") for i in range(1, 6)])
        cp2 = None
        for step in range(4):  # restore, grow differently, restore again...
            cp = await s.checkpoint()
            cp2 = cp2 or cp
            await s.append_messages([Message.user(f"r{step}-{i}") for i in range(3)])
            await s.restore(cp2.id)
            await s.append_message(Message.assistant(f"after-{step}"))
        expected = [(m.seq, m.id, m.text) for m in await s.get_messages()]
        async with await admin(pg_url) as conn:
            cur = await conn.execute(
                f"SELECT seq, id, message->>'content' FROM \"{schema}\".aixgo_current_messages "
                "WHERE session_id = %s ORDER BY seq",
                (s.id,),
            )
            assert await cur.fetchall() == expected
            cur = await conn.execute(
                f"SELECT seq, message->>'content' FROM \"{schema}\".aixgo_history(%s, 3)",
                (s.id,),
            )
            assert await cur.fetchall() == [(seq, text) for seq, _, text in expected[-3:]]
            cur = await conn.execute(
                f'SELECT count(*) FROM "{schema}".aixgo_current_messages', prepare=False
            )
            assert await cur.fetchone() == (len(expected) + 1,)
            # The stored JSON carries its seq, so rows read as they are.
            cur = await conn.execute(
                f"SELECT (message->>'seq')::bigint = seq FROM \"{schema}\".aixgo_messages"
            )
            assert all(ok for (ok,) in await cur.fetchall())


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("change", "error"),
    [
        ("message - 'tool_call_id' || '{\"role\": \"tool\"}'", "tool_call_id"),
        ("jsonb_set(message, '{content}', '[{\"kind\": \"t\"}]')", "type"),
        ("message || '{\"evil\": 1}'", "Extra inputs"),
        ("jsonb_set(message, '{created_at}', '\"2026-01-02T03:04:05+02:00\"')", None),
    ],
    ids=["tool without call id", "part without type", "extra field", "another offset"],
)
async def test_a_row_written_behind_our_back_is_read_whole_or_refused(
    pg_url: str, schema: str, change: str, error: str | None
) -> None:
    async with SessionManager(pg_url) as mgr:
        s = await mgr.create("assistant")
        await s.append_messages([Message.user(t) for t in "abc"])
        async with await admin(pg_url) as conn:
            await conn.execute(
                f'UPDATE "{schema}".aixgo_messages SET message = {change} '
                "WHERE session_id = %s AND seq = 2",
                (s.id,),
            )
        for last in (None, 2):
            if error is None:  # valid, though not as we write it: read as the model reads it
                got = await s.get_messages(last=last)
                assert got[-2].created_at == datetime(2026, 1, 2, 1, 4, 5, tzinfo=UTC)
                assert got[-2].created_at.utcoffset() == timedelta(0)
                assert [m.text for m in got] == ["a", "b", "c"][-len(got) :]
            else:
                with pytest.raises(CorruptedData, match=f"seq 2 is not valid: .*{error}"):
                    await s.get_messages(last=last)


@pytest.mark.asyncio
async def test_a_tail_after_restore_skips_damage_on_the_discarded_branch(
    pg_url: str, schema: str
) -> None:
    # Reads and writes share the connection's kept cursor: each read sees the history as it
    # is after the restore, whatever the cursor ran before; damage in the discarded tail is
    # never read, damage in the live history is a typed error, and the next read recovers.
    async with SessionManager(pg_url) as mgr:
        s = await mgr.create("assistant")
        await s.append_messages([Message.user(t) for t in "ab"])
        cp = await s.checkpoint()
        await s.append_messages([Message.user(t) for t in "xyz"])
        await s.restore(cp.id)
        await s.append_message(Message.user("c"))
        async with await admin(pg_url) as conn:
            await conn.execute(
                f'UPDATE "{schema}".aixgo_messages SET message = \'{{"id": 1}}\' '
                "WHERE session_id = %s AND branch = 0 AND seq = 4",
                (s.id,),
            )
        for last in (None, 3, 2, 100):
            got = await s.get_messages(last=last)
            assert [(m.seq, m.text) for m in got] == [(1, "a"), (2, "b"), (3, "c")][-len(got) :]
            assert len(got) == min(last or 3, 3)
        async with await admin(pg_url) as conn:
            await conn.execute(
                f"UPDATE \"{schema}\".aixgo_messages SET message = '[1, 2]' "
                "WHERE session_id = %s AND branch = 0 AND seq = 2",
                (s.id,),
            )
        with pytest.raises(CorruptedData, match="seq 2 is not valid"):
            await s.get_messages()
        assert [m.text for m in await s.get_messages(last=1)] == ["c"]
