"""Raw floors for the networked stores: the bare client call each backend operation wraps."""

from __future__ import annotations

import json
import uuid
from typing import Any

from subjects import LINE, Subject


class RawRedis(Subject):
    """Bare redis-py (asyncio): RPUSH one line; LRANGE the last 100 (or all) and decode them."""

    family = "floor"
    name = "raw redis RPUSH/LRANGE"

    def __init__(self, url: str) -> None:
        self.url = url

    async def open(self) -> None:
        import redis.asyncio as redis

        self.r: Any = redis.Redis.from_url(self.url)
        self.key = f"aixgo-bench-raw:{uuid.uuid4().hex}"
        self.have = 0

    async def close(self) -> None:
        await self.r.delete(self.key, self.key + ":tail")
        await self.r.aclose()

    async def append_one(self) -> None:
        await self.r.rpush(self.key, LINE)

    async def add_fill(self, n: int) -> None:
        await self.r.rpush(self.key + ":tail", *([LINE] * n))

    async def tail(self) -> None:
        rows = await self.r.lrange(self.key + ":tail", -100, -1)
        assert len([json.loads(r) for r in rows]) == 100

    async def history(self) -> None:
        rows = await self.r.lrange(self.key + ":tail", 0, -1)
        assert len([json.loads(r) for r in rows]) == self.have


class RawPostgres(Subject):
    """Bare psycopg (async): one INSERT of a JSONB row; SELECT the last 100 (or all) by an index."""

    family = "floor"
    name = "raw psycopg INSERT/SELECT"

    def __init__(self, url: str) -> None:
        self.url = url

    async def open(self) -> None:
        import psycopg

        self.conn: Any = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        self.table = f"aixgo_bench_raw_{uuid.uuid4().hex[:12]}"
        await self.conn.execute(
            f"CREATE TABLE {self.table} (sid text, seq bigint, body jsonb, PRIMARY KEY (sid, seq))"
        )
        self.seq = 0
        self.have = 0
        self.body = LINE.decode().strip()

    async def close(self) -> None:
        await self.conn.execute(f"DROP TABLE {self.table}")
        await self.conn.close()

    async def append_one(self) -> None:
        self.seq += 1
        await self.conn.execute(
            f"INSERT INTO {self.table} VALUES ('a', %s, %s::jsonb)", (self.seq, self.body)
        )

    async def add_fill(self, n: int) -> None:
        async with self.conn.cursor() as cur:
            await cur.executemany(
                f"INSERT INTO {self.table} VALUES ('t', %s, %s::jsonb)",
                [(self.have + i + 1, self.body) for i in range(n)],
            )
        # Fresh statistics, so the floor's tail read is the index scan it should be.
        await self.conn.execute(f"ANALYZE {self.table}")

    async def tail(self) -> None:
        cur = await self.conn.execute(
            f"SELECT body FROM {self.table} WHERE sid = 't' ORDER BY seq DESC LIMIT 100"
        )
        assert len(await cur.fetchall()) == 100

    async def history(self) -> None:
        cur = await self.conn.execute(f"SELECT body FROM {self.table} WHERE sid = 't' ORDER BY seq")
        assert len(await cur.fetchall()) == self.have
