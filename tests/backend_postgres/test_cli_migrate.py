"""``aixgo sessions migrate`` on the real server: check, apply, refuse a newer schema."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from aixgo.cli import cli
from aixgo.session import SessionManager
from aixgo_backend_postgres import SCHEMA_VERSION, PostgresBackend, SchemaVersionError
from click.testing import CliRunner, Result

from tests.services import throwaway_database

from .test_migrations import _catalog

SECRET = "s3cret-Pw"  # trust auth ignores it; it must never be printed


def aixgo(*args: str) -> Result:
    return CliRunner().invoke(cli, ["sessions", *args], catch_exceptions=True)


def with_password(url: str) -> str:
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{SECRET}@", 1)


@pytest.fixture
def fresh_db() -> Iterator[str]:
    """A database of this test's own, nothing in it: the store is its ``public`` schema."""
    with throwaway_database("aixgo_cli") as url:
        yield with_password(url)


def _has_tables(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT to_regclass('public.aixgo_schema_version')").fetchone()
        return row is not None and row[0] is not None


def _json(result: Result) -> Any:
    return json.loads(result.stdout)


def test_check_apply_check_on_a_fresh_database(
    fresh_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    due = aixgo("migrate", "--url", fresh_db, "--check")
    assert due.exit_code == 1, (due.output, due.exception)
    assert "has no schema yet" in due.output and f"version {SCHEMA_VERSION} is due" in due.output
    assert "aixgo sessions migrate" in due.output
    data = _json(aixgo("migrate", "--url", fresh_db, "--check", "--json"))
    assert (data["migratable"], data["pending"], data["found"], data["applied"]) == (
        True, True, None, []
    )  # fmt: skip
    assert not _has_tables(fresh_db), "--check must change nothing"

    applied = aixgo("migrate", "--url", fresh_db, "--json")
    assert applied.exit_code == 0, (applied.output, applied.exception)
    data = _json(applied)
    assert data["applied"] == list(range(1, SCHEMA_VERSION + 1))
    assert (data["pending"], data["version"], data["latest"]) == (False, SCHEMA_VERSION,
                                                                  SCHEMA_VERSION)  # fmt: skip
    assert "schema 'public' of postgresql://postgres:***@" in data["target"]

    # The URL also comes from the group option and from $AIXGO_SESSION_URL.
    ok = aixgo("--url", fresh_db, "migrate", "--check")
    assert ok.exit_code == 0 and "up to date" in ok.output, ok.output
    monkeypatch.setenv("AIXGO_SESSION_URL", fresh_db)
    again = aixgo("migrate")
    assert again.exit_code == 0 and "up to date" in again.output, again.output
    assert _json(aixgo("migrate", "--json"))["applied"] == []

    # The application can now run without DDL rights.
    async def use() -> None:
        async with SessionManager(f"{fresh_db}?migrate=false") as mgr:
            await mgr.create("assistant")

    asyncio.run(use())
    for result in (due, applied, ok, again):
        assert SECRET not in result.output


def test_a_newer_schema_is_refused_and_left_alone(pg_url: str, schema: str) -> None:
    assert aixgo("migrate", "--url", pg_url).exit_code == 0
    with psycopg.connect(pg_url.split("?")[0], autocommit=True) as conn:
        conn.execute(
            f'INSERT INTO "{schema}".aixgo_schema_version (version, description) '
            "VALUES (%s, 'from the future')",
            (SCHEMA_VERSION + 1,),
        )
    before = asyncio.run(_catalog(pg_url, schema))
    for args in ((), ("--check",), ("--json",)):
        refused = aixgo("migrate", "--url", pg_url, *args)
        assert refused.exit_code == 1
        assert isinstance(refused.exception, SchemaVersionError), refused.exception
        text = str(refused.exception)
        assert f"version {SCHEMA_VERSION + 1}, newer than" in text and "not changed" in text
    assert asyncio.run(_catalog(pg_url, schema)) == before

    # What an operator sees from the script: one line on stderr, no password, status 1.
    script = shutil.which("aixgo")
    assert script is not None
    proc = subprocess.run(
        [script, "sessions", "migrate", "--url", with_password(pg_url)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("error: schema ") and proc.stderr.count("\n") == 1
    assert "upgrade aixgo-backend-postgres" in proc.stderr and SECRET not in proc.stderr
    assert asyncio.run(_catalog(pg_url, schema)) == before


def test_processes_migrating_together_apply_once(pg_url: str) -> None:
    script = shutil.which("aixgo")
    assert script is not None
    cmd = [script, "sessions", "migrate", "--url", pg_url, "--json"]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outs
    applied = sorted(json.loads(out)["applied"] for out, _ in outs)
    assert applied == [[], [], [], list(range(1, SCHEMA_VERSION + 1))], outs


def _report_line(url: str, *, check: bool) -> str:
    """What ``PostgresBackend.migrate()`` reports, as the command prints it."""

    async def run() -> str:
        backend = PostgresBackend(url)
        try:
            return str(await backend.migrate(check=check))
        finally:
            await backend.close()

    return asyncio.run(run())


def test_the_cli_prints_the_backends_report(pg_url: str) -> None:
    due = aixgo("migrate", "--url", pg_url, "--check")
    assert due.exit_code == 1
    assert _report_line(pg_url, check=True) == due.output.split("; run")[0]
    applied = aixgo("migrate", "--url", pg_url)
    assert applied.exit_code == 0
    assert "applied migration(s)" in applied.output
    ok = aixgo("migrate", "--url", pg_url, "--check")
    assert ok.exit_code == 0
    assert ok.output == _report_line(pg_url, check=True) + "\n"


def test_an_unreachable_server_is_reported_without_the_password() -> None:
    url = f"postgresql://postgres:{SECRET}@127.0.0.1:1/nowhere?connect_timeout=2"
    for args in ((), ("--check",)):
        result = aixgo("migrate", "--url", url, *args)
        assert result.exit_code == 1
        text = str(result.exception)
        assert text.startswith("cannot connect to PostgreSQL at postgresql://postgres:***@")
        assert SECRET not in text + result.output
