"""Small helpers shared by the PostgreSQL tests."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg


async def admin(url: str) -> psycopg.AsyncConnection[Any]:
    """A plain autocommit connection to the database of ``url`` (our options stripped)."""
    return await psycopg.AsyncConnection.connect(url.split("?", 1)[0], autocommit=True)


async def terminate_others(url: str, like: str = "%") -> int:
    """Terminate every other backend connected to the database of ``url`` whose current or
    last query matches ``like``; return how many."""
    async with await admin(url) as conn:
        cur = await conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE %s",
            (like,),
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 0


async def wait_for_lock_waiter(url: str, like: str, seconds: float = 10.0) -> int:
    """The pid of a backend waiting on a lock while running a query matching ``like``."""
    async with await admin(url) as conn:
        for _ in range(int(seconds / 0.02)):
            cur = await conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE %s",
                (like,),
            )
            row = await cur.fetchone()
            if row:
                return int(row[0])
            await asyncio.sleep(0.02)
    raise AssertionError(f"no backend waited on a lock running {like!r}")
