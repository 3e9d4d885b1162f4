"""``python -m aixgo_backend_postgres.migrate URL``: bring a database's aixgo schema up to date.

Opening a backend does this on its own (unless the URL says ``migrate=false``); run it by
hand to migrate ahead of a deploy, or where the application's database user may not run DDL.
``--check`` only reports, exiting 1 when a migration is due. Same URL as the application's,
``schema=`` included. Exit status 0 on success, 1 on a problem (printed as one line).
``aixgo sessions --url URL migrate [--check]`` is the same, through
:meth:`PostgresBackend.migrate <aixgo_backend_postgres.PostgresBackend.migrate>`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from aixgo.errors import AixgoError
from aixgo.session import MigrationReport

from aixgo_backend_postgres.backend import PostgresBackend

__all__ = ["main", "run"]


async def run(url: str, *, check: bool = False) -> MigrationReport:
    """Migrate (or with ``check`` only inspect) the schema of ``url``; ``str()`` of the report
    is the line the command prints."""
    backend = PostgresBackend(url)
    try:
        return await backend.migrate(check=check)
    finally:
        await backend.close()


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
        report = asyncio.run(run(args.url, check=args.check))
    except AixgoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report)
    return 1 if report.pending else 0


if __name__ == "__main__":
    sys.exit(main())
