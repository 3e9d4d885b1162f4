"""Fixtures: a throwaway database on the real server for the whole run, a fresh schema per test.

The server is ``$AIXGO_TEST_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``).
A server that is down fails the run: these tests never skip for want of one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from aixgo.identifiers import new_id

ADMIN_URL = os.environ.get("AIXGO_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def with_db(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", parts.query, ""))


@contextmanager
def throwaway_database(prefix: str) -> Iterator[str]:
    """URL of a new, empty database, dropped (WITH FORCE) on exit."""
    name = f"{prefix}_{os.getpid()}_{new_id()[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_db(ADMIN_URL, name)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """URL of a database made for this run, dropped at the end."""
    with throwaway_database("aixgo_test") as url:
        yield url


@pytest.fixture
def schema() -> str:
    return f"t_{new_id()[:12]}"


@pytest.fixture
def pg_url(pg_database: str, schema: str) -> str:
    """A URL to an empty store: a schema of its own in the run's database."""
    return f"{pg_database}?schema={schema}"
