"""Lost replies and lost second steps, on real servers: retries never duplicate, and many
writers on different connections ("machines") agree on one history."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aixgo import Message
from aixgo.errors import ConflictError
from aixgo.session import open_backend
from aixgo.testing.base import listed
from aixgo_backend_redis import RedisBackend
from aixgo_backend_redis._scripts import Scripts
from redis.exceptions import ConnectionError as RedisConnectionError

from .helpers import manager


def lose_replies(monkeypatch: pytest.MonkeyPatch, names: set[str]) -> list[str]:
    """Make the first run of each of these scripts happen on the server but lose its reply,
    as when a connection drops after the command went out."""
    lost: list[str] = []
    real = Scripts.run

    async def run(
        self: Scripts, name: str, keys: list[str], args: list[Any], **kw: Any
    ) -> list[Any]:
        reply = await real(self, name, keys, args, **kw)
        if name in names and name not in lost:
            lost.append(name)
            raise RedisConnectionError("connection reset by peer (test)")
        return reply

    monkeypatch.setattr(Scripts, "run", run)
    return lost


@pytest.mark.asyncio
async def test_every_write_survives_a_lost_reply(
    any_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with manager(any_url) as mgr:
        lost = lose_replies(monkeypatch, {"create", "append", "checkpoint", "restore", "delete"})
        s = await mgr.create("bot", user_id="u")
        stored = await s.append_messages([Message.user("a"), Message.user("b")], expected_seq=0)
        assert [m.seq for m in stored] == [1, 2]
        cp = await s.checkpoint(label="two")
        await s.append_message(Message.user("c"))
        undo = await s.restore(cp.id)
        assert undo.label == "before-restore" and undo.seq == 3
        assert [m.text for m in await s.get_messages()] == ["a", "b"]
        assert [c.label for c in await s.list_checkpoints()] == ["two", "before-restore"]
        await mgr.delete(s.id)
        assert await listed(mgr, user_id="u") == []
        assert set(lost) == {"create", "append", "checkpoint", "restore", "delete"}


@pytest.mark.asyncio
async def test_cluster_lost_index_step_is_redone_by_the_retry(
    cluster_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with manager(cluster_url) as mgr:
        older = await mgr.create("bot", user_id="u")
        newer = await mgr.create("bot", user_id="u")
        real = RedisBackend._index
        failed: list[bool] = []

        async def index(self: RedisBackend, *args: Any, **kw: Any) -> None:
            if not failed:
                failed.append(True)
                raise RedisConnectionError("lost on the way to the index's node (test)")
            await real(self, *args, **kw)

        monkeypatch.setattr(RedisBackend, "_index", index)
        stored = await older.append_message(Message.user("hi"))
        assert stored.seq == 1 and failed
        assert len(await older.get_messages()) == 1
        assert await listed(mgr, user_id="u") == [older.id, newer.id]


@pytest.mark.asyncio
async def test_writers_on_separate_connections_agree(any_url: str) -> None:
    backends = [open_backend(any_url) for _ in range(4)]
    try:
        async with manager(any_url) as mgr:
            s = await mgr.create("bot")

            async def writer(b: Any, w: int) -> None:
                for i in range(10):
                    batch = [Message.user(f"{w}.{i}.{k}") for k in range(3)]
                    await b.append_messages(s.id, batch)

            await asyncio.gather(*(writer(b, w) for w, b in enumerate(backends)))
            history = await s.get_messages()
            assert [m.seq for m in history] == list(range(1, 121))
            for j in range(0, 120, 3):  # every batch stayed whole and in order
                w, i, _ = history[j].text.split(".")
                assert [m.text for m in history[j : j + 3]] == [f"{w}.{i}.{k}" for k in range(3)]

            # expected_seq across "machines": of racing writers that all saw 120, one wins.
            async def racer(b: Any, w: int) -> str:
                try:
                    await b.append_messages(s.id, [Message.user(f"race {w}")], expected_seq=120)
                except ConflictError as exc:
                    return f"lost at {exc.actual_seq}"
                return "won"

            results = await asyncio.gather(*(racer(b, w) for w, b in enumerate(backends)))
            assert sorted(results) == ["lost at 121"] * 3 + ["won"]
            assert (await s.info()).message_count == 121
    finally:
        for b in backends:
            await b.close()
