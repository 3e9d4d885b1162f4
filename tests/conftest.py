"""Fixtures every test tree shares."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aixgo import plugins
from aixgo.identifiers import new_id


@pytest.fixture(autouse=True)
def _fresh_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test discovers plugins afresh, with no allow or block list from the caller's
    environment leaking in."""
    monkeypatch.delenv("AIXGO_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("AIXGO_LOAD_PLUGINS", raising=False)
    plugins.reset()
    yield
    plugins.reset()


@pytest.fixture
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the runtime ever backs off to wait for another turn (or retry a
    conflict): a deterministic "it did not wait", where a wall-clock bound would be noisy."""
    import aixgo.turn

    async def refuse(attempt: int, *, jitter: bool = False) -> None:
        raise AssertionError("the runtime waited (backed off) where it should not have")

    monkeypatch.setattr(aixgo.turn, "_backoff", refuse)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A throwaway database on the real PostgreSQL server ($AIXGO_TEST_PG_URL) for the run,
    dropped afterwards (backend_postgres has one of its own)."""
    from tests.services import throwaway_database  # the installed-wheel tests never need it

    with throwaway_database("aixgo_tests") as url:
        yield url


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """An empty PostgreSQL store: a schema of this test's own in the run's database."""
    return f"{pg_database}?schema=t_{new_id()[:12]}"
