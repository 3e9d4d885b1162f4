"""What the Redis backend promises beyond the kit: key layout, cleanup, TTL, one round trip."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aixgo import Message
from aixgo.errors import CorruptedData, SessionNotFound
from aixgo.identifiers import new_id
from aixgo.message import utc_now
from aixgo.session import SessionInfo, open_backend
from aixgo.session.codec import encode_message, stamp_seq
from aixgo.testing.base import listed
from aixgo_backend_redis import RedisBackend
from aixgo_backend_redis._keys import Keys
from redis.crc import key_slot

from .helpers import keys_of, manager, raw

WEIRD = ["a:{b}} c", "ü/名前 }{", "ü" * 256, "{x:all}"]


@pytest.mark.asyncio
async def test_every_key_of_a_session_is_in_one_slot(any_url: str, prefix: str) -> None:
    async with manager(any_url) as mgr, raw(any_url) as r:
        s = await mgr.create("agent:{1}", user_id="user }{")
        await s.append_message(Message.user("hi"))
        await s.checkpoint()
        keys = await keys_of(r, prefix)
        mine = [k for k in keys if s.id in k]
        assert len(mine) == 4
        assert len({key_slot(k.encode()) for k in mine}) == 1
        # Names never appear raw in keys; they are base64url.
        assert not any("agent:{1}" in k or "user }{" in k for k in keys)


@pytest.mark.asyncio
@pytest.mark.parametrize("name", WEIRD)
async def test_any_name_lists_exactly_its_sessions(any_url: str, name: str) -> None:
    async with manager(any_url) as mgr:
        mine = await mgr.create(name, user_id=name)
        other = await mgr.create(name[:-1] + "z", user_id=name[:-1] + "y")
        assert await listed(mgr, agent=name, user_id=name) == [mine.id]
        assert await listed(mgr, agent=name) == [mine.id]
        assert await listed(mgr, user_id=name) == [mine.id]
        assert {mine.id, other.id} <= set(await listed(mgr))


@pytest.mark.asyncio
async def test_delete_leaves_no_key_and_no_index_entry(any_url: str, prefix: str) -> None:
    async with manager(any_url) as mgr, raw(any_url) as r:
        keep = await mgr.create("bot", user_id="u")
        gone = await mgr.create("bot", user_id="u")
        for s in (keep, gone):
            await s.append_messages([Message.user("a"), Message.assistant("b")])
            cp = await s.checkpoint()
            await s.restore(cp.id)
        await mgr.delete(gone.id)
        keys = await keys_of(r, prefix)
        assert not [k for k in keys if gone.id in k]
        for index in Keys(prefix).indexes("bot", "u"):
            assert await r.zrange(index, 0, -1) == [keep.id.encode()]


@pytest.mark.asyncio
async def test_batches_larger_than_a_script_chunk(any_url: str) -> None:
    async with manager(any_url) as mgr:
        s = await mgr.create("bot")
        batch = [Message.user(f"m{i}") for i in range(2500)]
        stored = await s.append_messages(batch)
        assert [m.seq for m in stored] == list(range(1, 2501))
        again = await s.append_messages(batch)  # an idempotent repeat of the whole batch
        assert [m.seq for m in again] == list(range(1, 2501))
        assert [m.text for m in await s.get_messages(last=1500)] == [
            f"m{i}" for i in range(1000, 2500)
        ]
        assert len(await s.get_messages()) == 2500


@pytest.mark.asyncio
async def test_ttl_expires_every_key_together_and_writes_renew_it(any_url: str) -> None:
    url = any_url + "&ttl=1"
    async with manager(url) as mgr, raw(url) as r:
        s = await mgr.create("bot", user_id="u")
        await s.append_message(Message.user("a"))
        await s.checkpoint()
        keys = Keys(RedisBackend(url).options.prefix).session(s.id)
        await asyncio.sleep(0.5)
        await s.append_message(Message.user("b"))  # renews all four
        ttls = [await r.pttl(k) for k in keys]
        assert all(800 < t <= 1000 for t in ttls), ttls
        await asyncio.sleep(1.3)
        with pytest.raises(SessionNotFound):
            await mgr.get(s.id)
        assert await listed(mgr, user_id="u") == []
        assert [await r.exists(k) for k in keys] == [0] * 4


@pytest.mark.asyncio
async def test_expired_and_half_deleted_sessions_never_make_short_pages(
    any_url: str, prefix: str
) -> None:
    async with (
        manager(any_url) as keeper,
        manager(any_url + "&ttl=1") as fleeting,
        raw(any_url) as r,
    ):
        kept = [await keeper.create("bot", user_id="u") for _ in range(3)]
        for _ in range(4):
            await fleeting.create("bot", user_id="u")
        # A session whose keys vanished but whose index entries stayed (a cluster delete
        # that lost its second step): listing must skip it too.
        half = await keeper.create("bot", user_id="u")
        await r.delete(*Keys(prefix).session(half.id))
        await asyncio.sleep(1.3)
        page = await keeper.list(user_id="u", limit=2)
        assert [i.id for i in page.items] == [kept[2].id, kept[1].id]
        assert page.next_cursor is not None
        page = await keeper.list(user_id="u", limit=2, cursor=page.next_cursor)
        assert [i.id for i in page.items] == [kept[0].id]
        assert page.next_cursor is None
        index = Keys(prefix).index(None, "u")  # the index that listing read
        assert await r.zcard(index) == 3  # the dead entries were removed on the way
        assert await r.pttl(index) == -1  # a TTL writer never expires permanent sessions


@pytest.mark.asyncio
async def test_a_damaged_message_is_reported_with_its_key(redis_url: str, prefix: str) -> None:
    async with manager(redis_url) as mgr, raw(redis_url) as r:
        s = await mgr.create("bot")
        await s.append_messages([Message.user("a"), Message.user("b")])
        messages = Keys(prefix).session(s.id)[2]
        await r.lset(messages, 0, b"{not json")
        with pytest.raises(CorruptedData, match=r":m\[-2\] is not valid"):
            await s.get_messages()
        cp = await s.checkpoint()
        await s.restore(cp.id)  # the tail now comes from tail.lua, which checks every run
        await r.ltrim(messages, -1, -1)  # only the restore marker is left
        with pytest.raises(CorruptedData, match="missing"):
            await s.get_messages(last=1)


@pytest.mark.asyncio
async def test_a_damaged_record_sorting_before_a_marker_does_not_hide_it(
    redis_url: str, prefix: str
) -> None:
    # The plain LRANGE read spots a restore marker by the least record; a damaged record that
    # sorts below "#" must still let the marker send the read to tail.lua, which skips the
    # discarded tail holding the damage, and damage in the live history is still reported.
    async with manager(redis_url) as mgr, raw(redis_url) as r:
        s = await mgr.create("bot")
        await s.append_message(Message.user("a"))
        cp = await s.checkpoint()
        await s.append_messages([Message.user("b"), Message.user("c")])
        await s.restore(cp.id)
        await s.append_message(Message.user("d"))  # the list: a b c #marker d
        messages = Keys(prefix).session(s.id)[2]
        await r.lset(messages, 1, b" not json")  # b, on the discarded branch
        assert [(m.seq, m.text) for m in await s.get_messages()] == [(1, "a"), (2, "d")]
        assert [m.text for m in await s.get_messages(last=1)] == ["d"]
        await r.lset(messages, 0, b"!bad")  # a, in the live history
        for last in (None, 2):
            with pytest.raises(CorruptedData, match="is not valid"):
                await s.get_messages(last=last)
        assert [m.text for m in await s.get_messages(last=1)] == ["d"]


def _hostile(stored: list[bytes]) -> dict[str, list[bytes]]:
    """Replacements for the two stored records ``stored``: two that are not messages alone
    but would read as two when joined by a plain comma, and a tool message without a call id."""
    whole = stamp_seq(encode_message(Message.user([{"type": "t"}, {"type": "u"}], id="x")), 2)
    cut = whole.index(b',{"type":"u"}')
    tool = json.loads(stamp_seq(encode_message(Message.tool("r", tool_call_id="c")), 2))
    del tool["tool_call_id"]
    return {
        "spliced": [stored[0] + b"," + whole[:cut], whole[cut + 1 :]],
        "tool without call id": [stored[0], json.dumps(tool).encode()],
    }


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["spliced", "tool without call id"])
@pytest.mark.parametrize("restored", [False, True], ids=["lrange", "tail.lua"])
async def test_a_hostile_record_fails_the_read_and_is_never_half_read(
    redis_url: str, prefix: str, kind: str, restored: bool
) -> None:
    async with manager(redis_url) as mgr, raw(redis_url) as r:
        s = await mgr.create("bot")
        await s.append_messages([Message.user("a"), Message.user("b")])
        messages = Keys(prefix).session(s.id)[2]
        replaced = _hostile(await r.lrange(messages, 0, 1))[kind]
        if restored:  # a restore marker follows: tail.lua reads the records
            cp = await s.checkpoint()
            await s.restore(cp.id)
        assert [m.text for m in await s.get_messages()] == ["a", "b"]
        for i, record in enumerate(replaced):
            await r.lset(messages, i, record)
        for last in (None, 2, 5):
            with pytest.raises(CorruptedData, match="is not valid"):
                await s.get_messages(last=last)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("field", "value"),
    [("created", b"soon"), ("updated", b"inf"), ("created", b"1e20"), ("meta", b"{bad")],
)
async def test_a_damaged_summary_is_reported_with_its_key(
    any_url: str, prefix: str, field: str, value: bytes
) -> None:
    async with manager(any_url) as mgr, raw(any_url) as r:
        s = await mgr.create("bot", user_id="u")
        await r.hset(Keys(prefix).session(s.id)[0], field, value)
        with pytest.raises(CorruptedData, match=r":s is not valid"):
            await mgr.get(s.id)
        with pytest.raises(CorruptedData, match=r":s is not valid"):
            await mgr.list(user_id="u")


@pytest.mark.asyncio
async def test_unix_socket(redis_server: Any, prefix: str) -> None:
    url = f"unix://{redis_server.folder}/redis.sock?prefix={prefix}"
    async with manager(url) as mgr:
        s = await mgr.create("bot")
        await s.append_message(Message.user("over a socket"))
        assert (await s.info()).message_count == 1
        await mgr.delete(s.id)


def test_every_scheme_opens_this_backend_without_connecting() -> None:
    for url in ["redis://h", "rediss://h", "unix:///s", "redis+cluster://h:1,h:2"]:
        assert isinstance(open_backend(url), RedisBackend)


class _Trips:
    """Counts what the client sends: a pipeline or a single command is one write to a
    connection's stream, whether redis-py sends it (``writelines``) or the wire (``write``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        write, writelines = asyncio.StreamWriter.write, asyncio.StreamWriter.writelines

        def counted(real: Any) -> Any:
            def send(writer: asyncio.StreamWriter, data: Any) -> None:
                self.count += 1
                real(writer, data)

            return send

        monkeypatch.setattr(asyncio.StreamWriter, "write", counted(write))
        monkeypatch.setattr(asyncio.StreamWriter, "writelines", counted(writelines))

    async def of(self, call: Any) -> int:
        before = self.count
        await call
        return self.count - before


@pytest.mark.asyncio
async def test_one_round_trip_per_operation(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with manager(redis_url) as mgr:
        sessions = [await mgr.create("bot", user_id="u") for _ in range(60)]
        s = sessions[0]
        await s.append_messages([Message.user(f"m{i}") for i in range(150)])
        cp = await s.checkpoint()
        trips = _Trips(monkeypatch)
        assert await trips.of(s.append_message(Message.user("x"))) == 1
        assert await trips.of(s.append_messages([Message.user("y"), Message.user("z")])) == 1
        assert await trips.of(s.get_messages(last=100)) == 1
        assert await trips.of(mgr.list(user_id="u", limit=50)) == 1
        assert await trips.of(mgr.get(s.id)) == 1
        assert await trips.of(s.checkpoint()) == 1
        assert await trips.of(s.list_checkpoints()) == 1
        assert await trips.of(s.restore(cp.id)) == 1
        assert await trips.of(mgr.delete(sessions[1].id)) == 1


@pytest.mark.asyncio
async def test_sessions_updated_in_the_same_microsecond_page_by_id(any_url: str) -> None:
    backend = open_backend(any_url)
    try:
        now = utc_now()
        ids = sorted((new_id() for _ in range(7)), reverse=True)
        for sid in ids:
            info = SessionInfo(id=sid, agent="tie", user_id="u", created_at=now, updated_at=now)
            await backend.create_session(info)
        seen: list[str] = []
        cursor = None
        while True:
            page = await backend.list_sessions(agent="tie", user_id="u", limit=2, cursor=cursor)
            seen += [i.id for i in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == ids
    finally:
        await backend.close()


@pytest.mark.parametrize("name", WEIRD)
def test_a_pairs_claim_marker_is_in_its_index_slot(name: str) -> None:
    keys = Keys("p:")
    # pair.lua changes both in one script, so Redis Cluster must find them in one slot.
    assert key_slot(keys.claim(name, "u").encode()) == key_slot(keys.index(name, "u").encode())
    assert key_slot(keys.claim("a", name).encode()) == key_slot(keys.index("a", name).encode())


@pytest.mark.asyncio
async def test_one_round_trip_per_lease_call_and_get_or_create(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = open_backend(redis_url)
    assert isinstance(backend, RedisBackend)
    try:
        await backend.open()
        now = utc_now()

        def info() -> SessionInfo:
            return SessionInfo(id=new_id(), agent="bot", user_id="u", created_at=now,
                               updated_at=now)  # fmt: skip

        first = info()
        trips = _Trips(monkeypatch)
        assert await trips.of(backend.get_or_create_session(first)) == 1  # creates
        assert await trips.of(backend.get_or_create_session(info())) == 1  # finds
        assert await trips.of(backend.acquire_turn(first.id, "o", 5)) == 1
        assert await trips.of(backend.renew_turn(first.id, "o", 5)) == 1
        assert await trips.of(backend.release_turn(first.id, "o")) == 1
    finally:
        await backend.close()
