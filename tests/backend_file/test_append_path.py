"""The single-message append's fast path: an open session whose log is as this process left
it (one ``lseek`` says so) is locked and written without the catch-up machinery, and a new
id is recognised from the id window without a look-up. Each test here fails if the fast
path trusts a view that another writer has changed."""

from __future__ import annotations

from pathlib import Path

import pytest
from aixgo import Message
from aixgo.errors import SessionNotFound
from aixgo.session import SessionManager

from .helpers import Spawn, ask


def _log(store_dir: Path, session_id: str) -> Path:
    return next(store_dir.glob(f"s/*/{session_id}.log"))


@pytest.mark.asyncio
async def test_appends_alternating_with_another_process_each_see_the_others(
    spawn_worker: Spawn, store_url: str, store_dir: Path
) -> None:
    """Every append here follows one by the other process: the open view is stale each
    time, and the next seq is only right if the append noticed and caught up."""
    proc = spawn_worker("serve", store_url)
    try:
        async with SessionManager(store_url) as mgr:
            s = await mgr.create("a", user_id="u")
            seqs = []
            for i in range(20):
                seqs.append((await s.append_message(Message.user(f"here-{i}"))).seq)
                seqs.append(int(ask(proc, f"append {s.id} there-{i}")))
            assert seqs == list(range(1, 41))
            texts = [m.text for m in await s.get_messages()]
            assert texts == [t for i in range(20) for t in (f"here-{i}", f"there-{i}")]
            assert [m.seq for m in await s.get_messages(last=3)] == [38, 39, 40]
            assert (await s.info()).message_count == 40
    finally:
        _, err = proc.communicate(timeout=30)  # closing its input ends the worker
        assert proc.returncode == 0, err
    lines = _log(store_dir, s.id).read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 42  # header + 40 whole lines


@pytest.mark.asyncio
async def test_an_append_after_another_store_deleted_the_session_writes_nothing(
    store_url: str,
) -> None:
    # Two managers are two stores with descriptors of their own: to flock, two processes.
    async with SessionManager(store_url) as mgr, SessionManager(store_url) as other:
        s = await mgr.create("a")
        await s.append_message(Message.user("first"))  # the view is open and current
        await other.delete(s.id)
        with pytest.raises(SessionNotFound):
            await s.append_message(Message.user("too late"))
        with pytest.raises(SessionNotFound):
            await mgr.get(s.id)


@pytest.mark.asyncio
async def test_a_repeat_after_another_store_appended_finds_the_stored_copy(
    store_url: str,
) -> None:
    """The id window answers "new id" without a look-up only for ids it holds: a message
    written by another store since must still be found, not stored twice."""
    async with SessionManager(store_url) as mgr, SessionManager(store_url) as other:
        s = await mgr.create("a")
        await s.append_message(Message.user("one"))
        m = Message.user("two")
        assert (await (await other.get(s.id)).append_message(m)).seq == 2
        assert (await s.append_message(m)).seq == 2
        assert [x.text for x in await s.get_messages()] == ["one", "two"]
