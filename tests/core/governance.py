"""Stores for the governance tests (encryption, erasure) on every backend, with a raw scan of
what each keeps: the file tree, every Redis key under the test's prefix, every PostgreSQL row
of the test's schema."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import pytest_asyncio
from aixgo.crypto import Keyring
from aixgo.session import Backend, SessionManager, open_backend

KINDS = ["memory", "file", "redis", "postgresql"]


@dataclass
class Store:
    """One empty store of a kind; ``backend`` is the raw backend the test's managers share
    (for memory:// the only way to see the same data twice)."""

    kind: str
    url: str
    backend: Backend

    def manager(self, keyring: Keyring | None = None, **kw: bool) -> SessionManager:
        return SessionManager(self.backend, encryption=keyring, **kw)

    async def raw(self) -> bytes:
        """Every byte the store keeps, as one blob to search."""
        if self.kind == "memory":
            return repr(vars(self.backend)).encode()
        if self.kind == "file":
            return _file_dump(Path(urlsplit(self.url).path))
        if self.kind == "redis":
            return await _redis_dump(self.url)
        return _pg_dump(self.url)


def _file_dump(root: Path) -> bytes:
    return b"\n".join(
        p.as_posix().encode() + b"\n" + p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    )


async def _redis_dump(url: str) -> bytes:
    import redis.asyncio as redis

    prefix = parse_qs(urlsplit(url).query)["prefix"][0]
    client = redis.Redis.from_url(url.split("?")[0])
    out: list[bytes] = []
    try:
        async for key in client.scan_iter(match=prefix + "*"):
            out.append(key)
            kind = (await client.type(key)).decode()
            if kind == "string":
                out.append(await client.get(key) or b"")
            elif kind == "list":
                out.extend(await client.lrange(key, 0, -1))
            elif kind == "hash":
                for k, v in (await client.hgetall(key)).items():
                    out += [k, v]
            elif kind == "zset":
                out.extend(await client.zrange(key, 0, -1))
            elif kind == "set":
                out.extend(await client.smembers(key))
            else:
                out.append(repr(await client.dump(key)).encode())
    finally:
        await client.aclose()
    return b"\n".join(out)


def _pg_dump(url: str) -> bytes:
    import psycopg

    schema = parse_qs(urlsplit(url).query)["schema"][0]
    out: list[str] = []
    with psycopg.connect(url.split("?")[0]) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,),
        ).fetchall()
        assert tables, "the schema has no tables"
        for (table,) in tables:
            for (row,) in conn.execute(f'SELECT t::text FROM "{schema}"."{table}" t'):
                out.append(row)
    return "\n".join(out).encode()


@pytest_asyncio.fixture(params=KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    kind = request.param
    url = {
        "memory": lambda: "memory://",
        "file": lambda: f"file://{tmp_path}/store",
        "redis": lambda: str(request.getfixturevalue("redis_url")),
        "postgresql": lambda: str(request.getfixturevalue("pg_url")),
    }[kind]()
    backend = open_backend(url)
    await backend.open()
    yield Store(kind, url, backend)
    await backend.close()


def key() -> bytes:
    return os.urandom(32)
