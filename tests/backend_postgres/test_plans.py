"""The indexes match the queries: EXPLAIN on 10,000 sessions shows no sequential scan.

Plans are taken on a plain connection with the server's default settings (sequential scans
allowed, unlike the backend's own connections), after ANALYZE, both with the values inlined
(a custom plan) and as a prepared statement forced to its generic plan.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from aixgo.identifiers import new_id
from aixgo.session import SessionManager
from aixgo_backend_postgres import PostgresBackend
from aixgo_backend_postgres._statements import Statements

from .helpers import admin

SESSIONS = 10_000
BIG = "b" * 26  # the session with a long history


@pytest_asyncio.fixture
async def filled(pg_url: str, schema: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with SessionManager(pg_url):  # creates the schema
        pass
    async with await admin(pg_url) as conn:
        await _fill(conn, f'"{schema}"')
        yield conn


async def _fill(conn: psycopg.AsyncConnection[Any], s: str) -> None:
    await conn.execute(
        f"INSERT INTO {s}.aixgo_sessions (id, agent, user_id, created_at, updated_at, "
        "message_count) SELECT lpad(g::text, 26, 'a'), 'agent-' || (g %% 100), "
        "'user-' || (g %% 1000), now(), now() - g * interval '1 second', 5 "
        "FROM generate_series(1, %s) g",
        (SESSIONS,),
    )
    await conn.execute(
        f"INSERT INTO {s}.aixgo_sessions (id, agent, user_id, created_at, updated_at, "
        "message_count) VALUES (%s, 'agent-1', 'user-1', now(), now(), 1000)",
        (BIG,),
    )
    await conn.execute(
        f"INSERT INTO {s}.aixgo_branches SELECT id, 0, NULL, 0 FROM {s}.aixgo_sessions"
    )
    await conn.execute(
        f"INSERT INTO {s}.aixgo_messages (session_id, branch, seq, id, message) "
        "SELECT s.id, 0, g, s.id || g, jsonb_build_object('role', 'user', 'seq', g) "
        f"FROM {s}.aixgo_sessions s, generate_series(1, 5) g WHERE s.id <> %s "
        f"UNION ALL SELECT %s, 0, g, 'm' || g, jsonb_build_object('role', 'user', 'seq', g) "
        "FROM generate_series(1, 1000) g",
        (BIG, BIG),
    )
    await conn.execute(f"ANALYZE {s}.aixgo_sessions, {s}.aixgo_branches, {s}.aixgo_messages")


def _numbered(query: bytes) -> tuple[str, list[str]]:
    """``query`` with psycopg placeholders turned into $1, $2, ... for PREPARE, and the
    parameter names in that order."""
    names: dict[str, int] = {}
    text = query.decode()

    def named(m: re.Match[str]) -> str:
        return f"${names.setdefault(m.group(1), len(names) + 1)}"

    text = re.sub(r"%\((\w+)\)s", named, text)
    count = iter(range(1, 100))
    return re.sub(r"%s", lambda _: f"${next(count)}", text), list(names)


async def _plans(conn: psycopg.AsyncConnection[Any], query: bytes, params: Any) -> list[str]:
    """The custom and the generic plan of ``query``, as JSON text."""
    cur = psycopg.AsyncClientCursor(conn)
    await cur.execute(b"EXPLAIN (FORMAT JSON) " + query, params)
    row = await cur.fetchone()
    assert row is not None
    custom = json.dumps(row[0])
    text, order = _numbered(query)
    values = [params[n] for n in order] if isinstance(params, dict) else list(params)
    await conn.execute(f"PREPARE q AS {text}")
    try:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        args = ", ".join(["%s"] * len(values))
        gen = await psycopg.AsyncClientCursor(conn).execute(
            f"EXPLAIN (FORMAT JSON) EXECUTE q({args})", values
        )
        grow = await gen.fetchone()
        assert grow is not None
        generic = json.dumps(grow[0])
    finally:
        await conn.execute("DEALLOCATE q")
        await conn.execute("RESET plan_cache_mode")
    return [custom, generic]


LISTINGS = {
    "no filter": (False, False),
    "agent": (True, False),
    "user": (False, True),
    "agent and user": (True, True),
}


@pytest.mark.asyncio
async def test_every_listing_is_an_index_scan(
    filled: psycopg.AsyncConnection[Any], schema: str
) -> None:
    sql = Statements.for_schema(schema)
    # A cursor from the middle of the listing, as a second page would send.
    cur = await filled.execute(
        f'SELECT updated_at, id FROM "{schema}".aixgo_sessions '
        "ORDER BY updated_at DESC, id DESC OFFSET 5000 LIMIT 1"
    )
    after = await cur.fetchone()
    assert after is not None
    for name, (agent, user) in LISTINGS.items():
        for cursor in (False, True):
            params: dict[str, Any] = {"limit": 51}
            if agent:
                params["agent"] = "agent-3"
            if user:
                params["user"] = "user-3"
            if cursor:
                params["after_at"], params["after_id"] = after
            for plan in await _plans(filled, sql.lists[agent, user, cursor], params):
                assert "Seq Scan" not in plan, (name, cursor, plan)
                # The planner may prefer a neighbouring index (or a bitmap scan and a top-N
                # sort of one agent's 100 rows); what matters is that no plan reads the table.
                assert "aixgo_sessions_" in plan and "Index" in plan, (name, cursor, plan)


@pytest.mark.asyncio
async def test_tail_reads_use_the_session_seq_index(
    filled: psycopg.AsyncConnection[Any], schema: str
) -> None:
    sql = Statements.for_schema(schema)
    for last in (100, None):
        for plan in await _plans(filled, sql.tail, {"last": last, "id": BIG}):
            assert "Seq Scan" not in plan, plan
            assert "aixgo_messages_pkey" in plan, plan
            assert "aixgo_branches_pkey" in plan, plan
            assert "aixgo_messages_id" not in plan, plan  # never all of the session's rows


@pytest.mark.asyncio
async def test_statements_inside_the_functions_read_only_what_they_need(pg_url: str) -> None:
    """auto_explain shows the plans of the statements inside aixgo_append, _append_one,
    _replay, _restore and the tail read, on a 2,000-message session after a restore, on a connection
    set up like the pool's: none scans a table or filters away more than a handful of rows."""
    from aixgo import Message
    from aixgo.session.codec import encode_message

    async with SessionManager(pg_url) as mgr:
        s = await mgr.create("assistant", user_id="u")
        for _ in range(4):
            await s.append_messages([Message.user("x") for _ in range(500)])
        cp = await s.checkpoint()
        await s.append_message(Message.user("discarded"))
        await s.restore(cp.id)
        known = (await s.get_messages(last=1))[0]
        backend = mgr.backend
        assert isinstance(backend, PostgresBackend)
        sql = backend._sql
        notes: list[str] = []
        async with await psycopg.AsyncConnection.connect(
            backend.options.conninfo, autocommit=True
        ) as conn:
            conn.add_notice_handler(lambda d: notes.append(d.message_primary or ""))
            for setting in (
                "LOAD 'auto_explain'",
                "SET auto_explain.log_min_duration = 0",
                "SET auto_explain.log_nested_statements = on",
                "SET auto_explain.log_analyze = on",
                "SET client_min_messages = log",
            ):
                await conn.execute(setting)
            for _ in range(7):  # past the five custom plans a plan cache may try first
                fresh = "[" + encode_message(Message.user("y")).decode() + "]"
                await conn.execute(sql.append, (s.id, fresh, None))
                one = Message.user("z")
                await conn.execute(
                    sql.append_one, (s.id, one.id, encode_message(one).decode(), None)
                )
                replay = "[" + encode_message(known).decode() + "]"
                await (await conn.execute(sql.append_replay, (s.id, replay, None))).fetchall()
                await (await conn.execute(sql.tail, {"id": s.id, "last": 50})).fetchall()
                undo = await s.checkpoint()
                await conn.execute(sql.restore, (s.id, undo.id, new_id()))
    plans = [n for n in notes if "Query Text" in n]
    assert len(plans) > 40, notes[:3]
    for plan in plans:
        assert "Seq Scan" not in plan, plan
        removed = [int(n) for n in re.findall(r"Rows Removed by Filter: (\d+)", plan)]
        assert max(removed, default=0) <= 5, plan
