"""A create killed before its header was whole leaves a log that is no session; creating the
same id again (a data key record's id is derived, not random) finishes it instead of failing."""

from __future__ import annotations

from pathlib import Path

import pytest
from aixgo.errors import ConflictError, SessionNotFound
from aixgo.identifiers import new_id
from aixgo.message import utc_now
from aixgo.session import SessionInfo
from aixgo_backend_file import FileBackend

pytestmark = pytest.mark.asyncio


def _info(sid: str, title: str) -> SessionInfo:
    now = utc_now()
    return SessionInfo(id=sid, agent="a", user_id="u", created_at=now, updated_at=now,
                       metadata={"title": title})  # fmt: skip


def _cut_short(store_dir: Path, sid: str, left: int) -> None:
    """Leave the session's log as a create killed after ``left`` bytes of its header."""
    (log,) = [p for p in store_dir.rglob(f"*{sid}*") if p.name.endswith("log")]
    with log.open("r+b") as f:
        f.truncate(left)
    for p in log.parent.glob(f"*{sid}*"):  # its sidecars, if any: a crash leaves none
        if p != log:
            p.unlink()


@pytest.mark.parametrize("left", [0, 7], ids=["empty", "torn-header"])
async def test_a_create_cut_short_can_be_made_again(
    store_url: str, store_dir: Path, left: int
) -> None:
    sid = new_id()
    first = FileBackend(store_url)
    await first.create_session(_info(sid, "first"))
    await first.close()
    _cut_short(store_dir, sid, left)
    backend = FileBackend(store_url)
    try:
        with pytest.raises(SessionNotFound, match="creation did not complete"):
            await backend.get_session(sid)
        await backend.create_session(_info(sid, "again"))
        assert (await backend.get_session(sid)).metadata == {"title": "again"}
        with pytest.raises(ConflictError):  # a whole session is never taken over
            await backend.create_session(_info(sid, "third"))
        assert (await backend.get_session(sid)).metadata == {"title": "again"}
    finally:
        await backend.close()
