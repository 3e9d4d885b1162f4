"""Helpers the test trees share for real servers and processes: a throwaway PostgreSQL
database, a free loopback port, and waiting for a spawned process to be ready.

Imported as ``tests.services`` (the repository root is on ``sys.path`` when pytest runs)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

from aixgo.identifiers import new_id

#: The PostgreSQL server the tests use, as its administrator (databases are made and dropped).
PG_ADMIN_URL = os.environ.get("AIXGO_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def with_db(url: str, dbname: str) -> str:
    """``url`` naming database ``dbname`` instead."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", parts.query, ""))


@contextmanager
def throwaway_database(prefix: str) -> Iterator[str]:
    """URL of a new, empty database on the real server, dropped (WITH FORCE) on exit; other
    helpers' databases on the same server are never touched."""
    import psycopg  # only the trees that use PostgreSQL pay for the import

    name = f"{prefix}_{os.getpid()}_{new_id()[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_db(PG_ADMIN_URL, name)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on (right now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_ready(
    proc: subprocess.Popen[str] | subprocess.Popen[bytes],
    ready: Callable[[], bool],
    *,
    what: str,
    timeout: float = 60.0,
    interval: float = 0.05,
    log: Callable[[], str] = lambda: "",
) -> None:
    """Call ``ready()`` until it is true. Fails (with ``log()``) if ``proc`` exits first or
    ``timeout`` seconds pass; the caller stops ``proc`` then."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with status {proc.returncode}:\n{log()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} was not ready within {timeout:g} s:\n{log()}")
        time.sleep(interval)


def accepts_connections(port: int) -> Callable[[], bool]:
    """A ``ready`` check: something listens on 127.0.0.1:``port``."""

    def check() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return False
        return True

    return check
