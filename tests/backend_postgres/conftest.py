"""Fixtures: a throwaway database on the real server for the whole run, a fresh schema per test.

The server is ``$AIXGO_TEST_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``).
A server that is down fails the run: these tests never skip for want of one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aixgo.identifiers import new_id

from tests.services import throwaway_database


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
