"""Where a listing page's summaries come from: each session's tail summary (an extended
attribute of its log, kept by writers) and its header, checked against the log's size; a
summary that does not match the log is never shown, whoever left it so."""

from __future__ import annotations

from datetime import timedelta

import pytest
from aixgo.clock import from_micros, now_micros
from aixgo.session.models import SessionInfo
from aixgo_backend_file import FileBackend


def info(session_id: str, micros: int, metadata: dict[str, str] | None = None) -> SessionInfo:
    when = from_micros(micros)
    return SessionInfo(
        id=session_id,
        agent="a",
        user_id="u",
        created_at=when,
        updated_at=when,
        metadata=metadata or {},
    )


SID = "0123456789abcdef0123456789abcdef"


@pytest.mark.asyncio
async def test_a_session_created_again_after_a_delete_lists_its_new_created_at(
    backend: FileBackend,
) -> None:
    t0 = now_micros() - 10_000_000
    await backend.create_session(info(SID, t0, {"k": "old"}))
    assert [i.created_at for i in (await backend.list_sessions(user_id="u")).items] == [
        from_micros(t0)
    ]
    await backend.delete_session(SID)
    t1 = t0 + 1_000_000  # the same width in the header: the same log size
    await backend.create_session(info(SID, t1, {"k": "new"}))
    page = await backend.list_sessions(user_id="u")
    assert [(i.created_at, i.metadata) for i in page.items] == [(from_micros(t1), {"k": "new"})]
    assert page.items[0].created_at - from_micros(t0) == timedelta(seconds=1)


@pytest.mark.asyncio
async def test_another_process_deleting_and_creating_the_id_again_is_seen(
    store_url: str,
) -> None:
    t0 = now_micros() - 10_000_000
    lister, writer = FileBackend(store_url), FileBackend(store_url)
    try:
        await writer.create_session(info(SID, t0, {"k": "old"}))
        assert [i.metadata for i in (await lister.list_sessions(user_id="u")).items] == [
            {"k": "old"}
        ]
        await writer.delete_session(SID)
        await writer.create_session(info(SID, t0 + 1_000_000, {"k": "new"}))
        page = await lister.list_sessions(user_id="u")
        assert [i.metadata for i in page.items] == [{"k": "new"}]
        assert page.items[0].created_at == from_micros(t0 + 1_000_000)
    finally:
        await lister.close()
        await writer.close()
