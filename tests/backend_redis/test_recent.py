"""Reads again: a record this backend read before is a copy of what it decoded then only
while its stored bytes are the same (aixgo.session.kit.recent); anything else is read anew."""

from __future__ import annotations

import json

import pytest
from aixgo import Message
from aixgo.errors import CorruptedData
from aixgo.session import SessionManager, open_backend
from aixgo.session.codec import encode_message, stamp_seq
from aixgo.testing.base import grow_and_restore, new_session, reads_agree
from aixgo_backend_redis import RedisBackend
from aixgo_backend_redis._keys import Keys

from .helpers import raw


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "damage",
    [
        b"{not json",
        b'{"id":"x","role":"tool","content":"r","seq":2}',
        b"",
    ],
    ids=["not json", "tool without call id", "empty"],
)
async def test_a_record_damaged_after_a_read_is_refused_on_the_next(
    redis_url: str, prefix: str, damage: bytes
) -> None:
    async with SessionManager(redis_url) as mgr, raw(redis_url) as r:
        s = await mgr.create("bot")
        await s.append_messages([Message.user(t) for t in "abc"])
        for last in (None, 2, None, 2):  # read, and read again: the records are kept
            assert [m.text for m in await s.get_messages(last=last)][-2:] == ["b", "c"]
        await r.lset(Keys(prefix).session(s.id)[2], 1, damage)
        for last in (None, 2):
            with pytest.raises(CorruptedData, match=r"\[-2\]"):
                await s.get_messages(last=last)
        assert [m.text for m in await s.get_messages(last=1)] == ["c"]


@pytest.mark.asyncio
async def test_a_record_rewritten_after_a_read_reads_as_rewritten(
    redis_url: str, prefix: str
) -> None:
    async with SessionManager(redis_url) as mgr, raw(redis_url) as r:
        s = await mgr.create("bot")
        await s.append_messages([Message.user(t) for t in "abc"])
        before = await s.get_messages()
        other = stamp_seq(encode_message(Message.user("B", id=before[1].id)), 2)
        await r.lset(Keys(prefix).session(s.id)[2], 1, other)
        assert [m.text for m in await s.get_messages()] == ["a", "B", "c"]
        assert [m.text for m in await s.get_messages(last=2)] == ["B", "c"]


@pytest.mark.asyncio
async def test_tails_across_restores_and_appends_read_as_without_reuse(redis_url: str) -> None:
    cached = open_backend(redis_url)
    assert isinstance(cached, RedisBackend)
    async with SessionManager(redis_url) as mgr:
        try:
            s = await new_session(mgr, 3, agent="bot")
            await grow_and_restore(s, lambda: reads_agree(cached, redis_url, s.id))
            assert [m.text for m in await cached.get_messages(s.id)] == ["m1", "m2", "m3", "a1"]
            assert cached._recent.of(s.id)  # the reads did keep records to reuse
            await mgr.delete(s.id)
        finally:
            await cached.close()


@pytest.mark.asyncio
async def test_a_marker_written_over_a_kept_record_sends_the_read_to_the_walk(
    redis_url: str, prefix: str
) -> None:
    # The plain read finds restore markers among the records it reads, reused or not.
    async with SessionManager(redis_url) as mgr, raw(redis_url) as r:
        s = await mgr.create("bot")
        await s.append_messages([Message.user(t) for t in "ab"])
        cp = await s.checkpoint()
        await s.append_messages([Message.user(t) for t in "cd"])
        assert [m.text for m in await s.get_messages()] == list("abcd")
        await s.restore(cp.id)
        await s.append_message(Message.user("e"))
        assert [m.text for m in await s.get_messages()] == list("abe")
        assert [m.text for m in await s.get_messages(last=4)] == list("abe")
        stored = await r.lrange(Keys(prefix).session(s.id)[2], 0, -1)
        assert json.loads(stored[-1])["content"] == "e"
