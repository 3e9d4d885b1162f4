"""``python -m aixgo_backend_postgres.migrate URL``: bring a database's aixgo schema up to date.

Opening a backend does this on its own (unless the URL says ``migrate=false``); run it by
hand to migrate ahead of a deploy, or where the application's database user may not run DDL.
``--check`` only reports, exiting 1 when a migration is due. Same URL as the application's,
``schema=`` included. Exit status 0 on success, 1 on a problem (printed as one line).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import psycopg
from aixgo.errors import AixgoError, BackendUnavailable

from aixgo_backend_postgres import migrations, retry
from aixgo_backend_postgres.options import parse_url

__all__ = ["main", "run"]


async def run(url: str, *, check: bool = False) -> str:
    """Migrate (or with ``check`` only inspect) the schema of ``url``; return a report line."""
    opts = parse_url(url)
    try:
        conn = await psycopg.AsyncConnection.connect(opts.conninfo, autocommit=True)
    except psycopg.Error as exc:
        raise BackendUnavailable(
            f"cannot connect to PostgreSQL at {opts.shown}: {retry.scrub(str(exc).strip(), opts)}"
        ) from None
    async with conn:
        try:
            found = await migrations.read_version(conn, opts.schema)
            if check:
                migrations.check_version(found, opts.schema, opts.shown)
                return f"schema {opts.schema!r} is at version {found}, up to date"
            applied = await migrations.migrate(conn, opts.schema, opts.shown)
        except psycopg.Error as exc:
            raise retry.translate(exc, opts) from None
    if not applied:
        return f"schema {opts.schema!r} is at version {migrations.LATEST}, up to date"
    done = ", ".join(str(v) for v in applied)
    return f"schema {opts.schema!r}: applied migration(s) {done}; now at {migrations.LATEST}"


def main(argv: list[str] | None = None) -> int:
    """The command line: migrate (or ``--check``) the URL given; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m aixgo_backend_postgres.migrate",
        description="Create or upgrade the aixgo tables in a PostgreSQL database.",
    )
    parser.add_argument("url", help="postgresql:// URL, with ?schema=NAME if not 'public'")
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if behind")
    args = parser.parse_args(argv)
    try:
        print(asyncio.run(run(args.url, check=args.check)))
    except AixgoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
