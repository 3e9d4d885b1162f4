"""Migrations: bring a schema up to :data:`LATEST`, safely when many processes start at once.

The applied versions live in ``aixgo_schema_version`` in the same schema. Upgrading runs in
one transaction under a transaction-scoped advisory lock keyed by the schema name, so when
several processes open a fresh database together one migrates and the others wait, then find
nothing left to do. A database whose schema is newer than this code is refused with
:class:`SchemaVersionError` before anything is changed (and the transaction would roll back
anyway). Run it by hand with ``aixgo sessions migrate [--check]``, which calls
:meth:`PostgresBackend.migrate <aixgo_backend_postgres.PostgresBackend.migrate>`: it runs
:func:`migrate` (or, checking, :func:`inspect`).
"""

from __future__ import annotations

from typing import Any

import psycopg
from aixgo.session import MigrationReport
from psycopg import sql

from aixgo_backend_postgres._schema import MIGRATIONS
from aixgo_backend_postgres.errors import SchemaVersionError

#: The schema version this code reads and writes.
LATEST = MIGRATIONS[-1].version
# First half of the advisory lock key (the second is a hash of the schema name), so our
# lock does not collide with an application's own advisory locks on small integers.
_LOCK_SPACE = 0x41495847  # "AIXG"


def _version_table(schema: str) -> sql.Composed:
    return sql.SQL("{}.aixgo_schema_version").format(sql.Identifier(schema))


async def read_version(conn: psycopg.AsyncConnection[Any], schema: str) -> int | None:
    """The schema's version, or ``None`` if it has no aixgo tables. ``conn`` must be in
    autocommit mode (a missing table would otherwise abort the caller's transaction)."""
    try:
        cur = await conn.execute(
            sql.SQL("SELECT max(version) FROM {}").format(_version_table(schema))
        )
    except psycopg.errors.UndefinedTable:
        return None
    row = await cur.fetchone()
    return None if row is None or row[0] is None else int(row[0])


def _too_new(found: int, schema: str, shown: str) -> SchemaVersionError:
    return SchemaVersionError(
        f"schema {schema!r} of {shown} is at aixgo schema version {found}, newer than the "
        f"{LATEST} this aixgo-backend-postgres knows; upgrade aixgo-backend-postgres. The "
        "database was not changed",
        found=found,
        expected=LATEST,
    )


def _target(schema: str, shown: str) -> str:
    return f"schema {schema!r} of {shown}"


def inspect(found: int | None, schema: str, shown: str) -> MigrationReport:
    """The report for a schema at version ``found`` (``None``: no aixgo tables), changing
    nothing; :class:`SchemaVersionError` if it is newer than this code.

    >>> print(inspect(None, "aixgo", "postgresql://db/app"))
    schema 'aixgo' of postgresql://db/app has no schema yet; version ... is due
    """
    if found is not None and found > LATEST:
        raise _too_new(found, schema, shown)
    return MigrationReport(_target(schema, shown), found=found, latest=LATEST)


def check_version(found: int | None, schema: str, shown: str) -> None:
    """Refuse a schema that is not exactly :data:`LATEST` (used with ``migrate=false``)."""
    if found is not None and found > LATEST:
        raise _too_new(found, schema, shown)
    if found != LATEST:
        have = "has no aixgo tables" if found is None else f"is at version {found}"
        raise SchemaVersionError(
            f"schema {schema!r} of {shown} {have}; this code needs version {LATEST}. Run "
            "`aixgo sessions --url URL migrate` (or drop migrate=false)",
            found=found or 0,
            expected=LATEST,
        )


async def migrate(conn: psycopg.AsyncConnection[Any], schema: str, shown: str) -> MigrationReport:
    """Apply the missing migrations to ``schema``; report what was found and applied (nothing
    when it was up to date). :class:`SchemaVersionError` if the schema is newer than the code.
    ``conn`` must be in autocommit mode."""
    table = _version_table(schema)
    applied: list[int] = []
    async with conn.transaction():
        # Waiting for another process's migration, or migrating a big table, is not a slow
        # statement: the URL's statement_timeout_ms must not cut it short.
        await conn.execute("SET LOCAL statement_timeout = 0")
        await conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_SPACE, schema))
        cur = await conn.execute("SELECT to_regclass(%s)", (table.as_string(conn),))
        row = await cur.fetchone()
        found: int | None = None
        if row is not None and row[0] is not None:
            cur = await conn.execute(sql.SQL("SELECT max(version) FROM {}").format(table))
            vrow = await cur.fetchone()
            found = None if vrow is None or vrow[0] is None else int(vrow[0])
        report = inspect(found, schema, shown)
        if found == LATEST:
            return report
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        await conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (version integer PRIMARY KEY, "
                "description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(table)
        )
        quoted = sql.Identifier(schema).as_string(conn)
        for m in MIGRATIONS:
            if m.version <= (found or 0):
                continue
            # The SQL is ours (no user input) but for the schema name, which is quoted.
            await conn.execute(m.sql.replace("{s}", quoted).encode())
            await conn.execute(
                sql.SQL("INSERT INTO {} (version, description) VALUES (%s, %s)").format(table),
                (m.version, m.description),
            )
            applied.append(m.version)
    return MigrationReport(report.target, found=found, latest=LATEST, applied=tuple(applied))
