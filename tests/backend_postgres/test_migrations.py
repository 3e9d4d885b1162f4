"""Migrations: automatic on open, safe when many start at once, never touching a newer schema."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import pytest
from aixgo import Message
from aixgo.cli import cli
from aixgo.session import SessionManager
from aixgo_backend_postgres import SCHEMA_VERSION, PostgresBackend, SchemaVersionError
from aixgo_backend_postgres import _migrations as migrations
from aixgo_backend_postgres._schema import MIGRATIONS
from click.testing import CliRunner

from .helpers import admin


async def migrate_status(url: str, *args: str) -> int:
    """The exit status of ``aixgo sessions migrate --url URL ARGS`` (run off the loop: the
    command runs its own)."""

    def run() -> int:
        return CliRunner().invoke(cli, ["sessions", "migrate", "--url", url, *args]).exit_code

    return await asyncio.to_thread(run)


async def _catalog(url: str, schema: str) -> list[tuple[str, str]]:
    """Every object in ``schema`` and the version rows: what "not altered" compares."""
    async with await admin(url) as conn:
        cur = await conn.execute(
            "SELECT c.relname, c.relkind::text FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s "
            "UNION ALL SELECT p.proname, md5(p.prosrc) FROM pg_proc p JOIN pg_namespace n "
            "ON n.oid = p.pronamespace WHERE n.nspname = %s ORDER BY 1, 2",
            (schema, schema),
        )
        rows = [(str(a), str(b)) for a, b in await cur.fetchall()]
        cur = await conn.execute(
            f'SELECT version::text, description FROM "{schema}".aixgo_schema_version'
        )
        return rows + [(str(a), str(b)) for a, b in await cur.fetchall()]


@pytest.mark.asyncio
async def test_first_open_creates_the_schema(pg_url: str, schema: str) -> None:
    async with SessionManager(pg_url):
        pass
    catalog = await _catalog(pg_url, schema)
    names = {name for name, _ in catalog}
    assert {"aixgo_sessions", "aixgo_messages", "aixgo_branches", "aixgo_checkpoints"} <= names
    assert {"aixgo_current_messages", "aixgo_history", "aixgo_append", "aixgo_restore"} <= names
    assert {"aixgo_append_one", "aixgo_turns"} <= names
    versions = [(v, d) for v, d in catalog if v.isdigit()]
    assert versions == [(str(m.version), m.description) for m in MIGRATIONS]
    assert versions[-1][0] == str(SCHEMA_VERSION)


@pytest.mark.asyncio
async def test_a_store_of_an_older_version_is_upgraded_keeping_its_data(
    pg_url: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A store made by the code of version 1, with a history and a restore in it.
    with monkeypatch.context() as old:
        old.setattr(migrations, "MIGRATIONS", MIGRATIONS[:1])
        old.setattr(migrations, "LATEST", 1)
        async with SessionManager(pg_url) as mgr:
            s = await mgr.create("assistant", user_id="u")
            await s.append_messages([Message.user("a"), Message.user("b")])
            cp = await s.checkpoint()
            await s.append_messages([Message.user("c"), Message.user("d")])
            await s.restore(cp.id)
    assert [v for v, _ in await _catalog(pg_url, schema) if v.isdigit()] == ["1"]

    assert await migrate_status(pg_url, "--check") == 1
    report = await PostgresBackend(pg_url).migrate()
    assert (report.found, report.applied) == (1, tuple(range(2, SCHEMA_VERSION + 1)))
    async with SessionManager(f"{pg_url}&migrate=false") as mgr:
        s = await mgr.get(s.id)
        assert [m.text for m in await s.get_messages()] == ["a", "b"]
        stored = await s.append_message(Message.user("e"), expected_seq=2)
        assert stored.seq == 3
        assert await s.get_messages() == [*(await s.get_messages())[:2], stored]


@pytest.mark.asyncio
async def test_many_backends_opening_a_fresh_schema_at_once(pg_url: str, schema: str) -> None:
    backends = [PostgresBackend(pg_url) for _ in range(6)]
    try:
        await asyncio.gather(*(b.open() for b in backends))
    finally:
        await asyncio.gather(*(b.close() for b in backends))
    versions = [v for v, _ in await _catalog(pg_url, schema) if v.isdigit()]
    assert versions == [str(m.version) for m in MIGRATIONS]  # each applied once


def test_many_processes_migrating_at_once(pg_url: str) -> None:
    script = shutil.which("aixgo")
    assert script is not None
    cmd = [script, "sessions", "migrate", "--url", pg_url]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outs
    applied = [out for out, _ in outs if "applied" in out]
    assert len(applied) == 1, outs
    assert sum("up to date" in out for out, _ in outs) == 3


@pytest.mark.asyncio
async def test_a_newer_schema_is_refused_and_not_altered(pg_url: str, schema: str) -> None:
    async with SessionManager(pg_url):
        pass
    async with await admin(pg_url) as conn:
        await conn.execute(
            f'INSERT INTO "{schema}".aixgo_schema_version (version, description) '
            "VALUES (%s, 'from the future')",
            (SCHEMA_VERSION + 1,),
        )
    before = await _catalog(pg_url, schema)
    for url in (pg_url, f"{pg_url}&migrate=false"):
        backend = PostgresBackend(url)
        with pytest.raises(SchemaVersionError) as info:
            await backend.open()
        await backend.close()
        assert info.value.found == SCHEMA_VERSION + 1
        assert "newer" in str(info.value) and "not changed" in str(info.value)
    assert await migrate_status(pg_url) == 1
    assert await _catalog(pg_url, schema) == before


@pytest.mark.asyncio
async def test_migrate_false_only_checks(pg_url: str, schema: str) -> None:
    backend = PostgresBackend(f"{pg_url}&migrate=false")
    with pytest.raises(SchemaVersionError) as info:
        await backend.open()
    await backend.close()
    assert "no aixgo tables" in str(info.value) and "aixgo sessions --url URL migrate" in str(
        info.value
    )
    assert await migrate_status(pg_url, "--check") == 1
    assert await migrate_status(pg_url) == 0
    assert await migrate_status(pg_url, "--check") == 0
    async with SessionManager(f"{pg_url}&migrate=false") as mgr:
        await mgr.create("assistant")
