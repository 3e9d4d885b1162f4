"""Listing after a burst: a page looks up the sessions that can belong on it, not every
session updated within the index's disorder allowance, and still lists exactly right."""

from __future__ import annotations

from pathlib import Path

import pytest
from aixgo import Message
from aixgo.clock import from_micros, now_micros
from aixgo.identifiers import new_id
from aixgo.session.models import SessionInfo
from aixgo_backend_file import FileBackend
from aixgo_backend_file._index import ENTRY, REFRESH_US, SLACK_US
from aixgo_backend_file._store import Store


def info_at(micros: int, user: str = "u") -> SessionInfo:
    when = from_micros(micros)
    return SessionInfo(id=new_id(), agent="a", user_id=user, created_at=when, updated_at=when)


def count_lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    looked: list[str] = []
    real = Store.peek

    def peek(self: Store, session_id: str, seen: int = 0) -> tuple[SessionInfo, int] | None:
        looked.append(session_id)
        return real(self, session_id, seen)

    monkeypatch.setattr(Store, "peek", peek)
    return looked


async def all_pages(backend: FileBackend, limit: int) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        page = await backend.list_sessions(user_id="u", limit=limit, cursor=cursor)
        seen += [i.id for i in page.items]
        cursor = page.next_cursor
        if cursor is None:
            return seen


@pytest.mark.asyncio
async def test_a_page_after_a_burst_of_creates_looks_up_few_sessions(
    backend: FileBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 300 creates 100 µs apart: all within SLACK_US of each other, as in a burst.
    t0 = now_micros() - 10 * SLACK_US
    infos = [info_at(t0 + 100 * k) for k in range(300)]
    assert infos[-1].created_at.timestamp() - infos[0].created_at.timestamp() < SLACK_US / 1e6
    for info in infos:
        await backend.create_session(info)
    newest_first = [i.id for i in reversed(infos)]
    looked = count_lookups(monkeypatch)
    page = await backend.list_sessions(user_id="u", limit=10)
    assert [i.id for i in page.items] == newest_first[:10]
    # The page's 11 rows, and those within REFRESH_US (2 ms: 20 rows) of its last one.
    assert len(looked) <= 10 + 1 + REFRESH_US // 100 + 1, len(looked)
    looked.clear()
    assert await all_pages(backend, 7) == newest_first
    # Each of the 43 pages looks up about a page's rows, not every row of the burst.
    assert len(looked) <= 43 * (7 + 1 + REFRESH_US // 100 + 1), len(looked)


@pytest.mark.asyncio
async def test_a_session_updated_again_and_again_gets_a_fresh_row_every_refresh_interval(
    backend: FileBackend, store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer skips the row while its own is the newest, but only for REFRESH_US: then a
    page that passes over rows older than its last item by REFRESH_US still finds a session
    whose later updates skipped their rows, even behind rows written late by a stalled
    writer."""
    t0 = now_micros() - 10 * SLACK_US
    clock = [t0]
    monkeypatch.setattr("aixgo_backend_file._store.now_micros", lambda: clock[0])
    a = info_at(t0)
    await backend.create_session(a)
    user_index = next(p for p in (store_dir / "i").glob("p-*.ix"))
    for step in (100, 200, REFRESH_US, REFRESH_US + 1, 5 * REFRESH_US):
        clock[0] = t0 + step
        await backend.append_messages(a.id, [Message.user(str(step))])
    # Rows: the create, then one each for the updates more than REFRESH_US after its last.
    assert user_index.stat().st_size == 3 * ENTRY
    # Sessions stamped before a's last update but written after it (a writer stalled
    # between taking its time and writing): they follow a's row in the index.
    late = [info_at(t0 + 3 * REFRESH_US + k) for k in range(3)]
    for info in late:
        await backend.create_session(info)
    page = await backend.list_sessions(user_id="u", limit=1)
    assert [i.id for i in page.items] == [a.id]
    assert await all_pages(backend, 1) == [a.id] + [i.id for i in reversed(late)]
    assert await all_pages(backend, 2) == [a.id] + [i.id for i in reversed(late)]
