"""``aixgo file ...``: maintenance of ``file://`` stores, added to the ``aixgo`` command line
by this package's plugin (``aixgo_register_commands``).

``aixgo file repair [--check] STORE`` rebuilds the sidecars and listing indexes of a store
from its logs (see :mod:`aixgo_backend_file.repair`); ``STORE`` is a ``file://`` URL or a
directory path. Exit status: 0 all is well, 1 damage found (or, with ``--check``, something
repair would change), 2 the store cannot be opened or written.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import click
from aixgo.errors import AixgoError

__all__ = ["file_group", "store_url"]


def store_url(store: str) -> str:
    """``store`` as a ``file://`` URL: a URL as it is (checked when opened), a path made
    absolute and percent-encoded, so ``?`` or ``#`` in a folder name stays part of it.

    >>> store_url("/var/lib/app sessions")
    'file:///var/lib/app%20sessions'
    >>> store_url("file:///srv/s?durability=fsync")
    'file:///srv/s?durability=fsync'
    """
    if "://" in store:
        return store
    return "file://" + quote(str(Path(store).absolute()))


@click.group("file")
def file_group() -> None:
    """Maintain file:// session stores."""


@file_group.command("repair")
@click.option("--check", is_flag=True, help="Only report; read-only, writes nothing.")
@click.argument("store", metavar="URL-OR-PATH")
@click.pass_context
def repair_command(ctx: click.Context, check: bool, store: str) -> None:
    """Rebuild the sidecars and listing indexes of a file:// store from its logs.

    Run it while no other process writes to the store (--check may run any time). Exit
    status 0 when the store is sound (or was repaired), 1 when a log is damaged (or --check
    found something to repair), 2 when the store cannot be opened or written.
    """
    from aixgo.cli_sessions import printable

    from aixgo_backend_file.repair import repair  # the store's modules: only when run

    # Errors and reports quote paths, which may hold control characters: escaped, as every
    # aixgo command prints them, so they cannot drive the terminal.
    try:
        report = repair(store_url(store), check=check)
    except AixgoError as exc:
        # Not aixgo's usual status 1: scripts tell "damaged" (1) from "could not run" (2).
        click.echo(f"error: {printable(str(exc))}", err=True)
        ctx.exit(2)
    click.echo(printable(str(report), lines=True))
    ctx.exit(0 if report.clean else 1)
