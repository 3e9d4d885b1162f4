"""SessionManager.get_or_create: one session per (agent, user), atomic in the store when the
backend has SessionPerUser, converged after the fact when it has not."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aixgo import Message, Runtime
from aixgo.errors import SessionNotFound
from aixgo.identifiers import new_id
from aixgo.message import utc_now
from aixgo.session import Page, SessionInfo, SessionManager, SessionPerUser
from aixgo.session.memory import MemoryBackend


class NoPerUser(MemoryBackend):
    """memory:// as a third-party backend without SessionPerUser."""

    get_or_create_session = None  # type: ignore[assignment]


class RacedBy(NoPerUser):
    """Another process creates (and maybe uses) a session of the pair just after our first
    look-up found none: the race a process-local lock cannot see."""

    def __init__(self, *, used: bool = False, newer: bool = False) -> None:
        super().__init__()
        self.used, self.newer = used, newer
        self.theirs: SessionInfo | None = None

    async def list_sessions(self, **filters: Any) -> Page[SessionInfo]:
        page = await super().list_sessions(**filters)
        if self.theirs is None and filters.get("limit") == 1 and not page.items:
            now = utc_now()
            # "newer": their session gets a later creation time than ours will (their clock
            # ran ahead); the rule must still pick one session for both.
            created = now.replace(year=now.year + 1) if self.newer else now
            self.theirs = SessionInfo(
                id=new_id(),
                agent=filters["agent"],
                user_id=filters["user_id"],
                created_at=created,
                updated_at=created,
            )
            await self.create_session(self.theirs)
            if self.used:
                await self.append_messages(self.theirs.id, [Message.user("their first call")])
        return page


def test_memory_has_the_capability() -> None:
    assert isinstance(MemoryBackend(), SessionPerUser)
    assert not isinstance(NoPerUser(), SessionPerUser)


@pytest.mark.asyncio
async def test_concurrent_first_calls_share_one_session() -> None:
    store = MemoryBackend()
    managers = [SessionManager(store) for _ in range(4)]  # as separate processes would
    got = await asyncio.gather(
        *(managers[i % 4].get_or_create("assistant", "alice") for i in range(40))
    )
    assert len({s.id for s in got}) == 1
    assert len((await managers[0].list(agent="assistant", user_id="alice")).items) == 1


@pytest.mark.asyncio
async def test_without_the_capability_racing_calls_settle_on_one_session() -> None:
    store = NoPerUser()
    managers = [SessionManager(store) for _ in range(4)]  # as separate processes would
    firsts = await asyncio.gather(*(m.get_or_create("assistant", "alice") for m in managers))
    assert len({s.id for s in firsts}) == 1  # creators that see each other agree
    got = await asyncio.gather(
        *(managers[i % 4].get_or_create("assistant", "bob") for i in range(40))
    )
    (survivor,) = (await managers[0].list(agent="assistant", user_id="bob")).items
    # A call that looked while the race settled may hold a racer's empty session, deleted
    # since; the runtime then looks again (test below). None holds any other live session.
    for s in got:
        if s.id != survivor.id:
            with pytest.raises(SessionNotFound):
                await s.info()


class Echo:
    async def execute(self, input: Message) -> Message:
        return Message.assistant("re: " + input.text)


@pytest.mark.asyncio
async def test_without_the_capability_racing_runtime_calls_all_land_in_one_session() -> None:
    store = NoPerUser()
    runtimes = [Runtime(session_manager=SessionManager(store)) for _ in range(4)]
    for rt in runtimes:
        rt.register("assistant", Echo())
        await rt.start()
    try:
        await asyncio.gather(
            *(
                runtimes[i % 4].call("assistant", Message.user(f"m{i}"), user="carol")
                for i in range(40)
            )
        )
    finally:
        for rt in runtimes:
            await rt.stop()
    (only,) = (await SessionManager(store).list(agent="assistant", user_id="carol")).items
    history = await store.get_messages(only.id)
    assert sorted(m.text for m in history if m.role == "user") == sorted(f"m{i}" for i in range(40))
    assert len(history) == 80


@pytest.mark.asyncio
@pytest.mark.parametrize("backend", [MemoryBackend, NoPerUser])
async def test_the_most_recently_updated_session_is_returned(
    backend: type[MemoryBackend],
) -> None:
    async with SessionManager(backend()) as mgr:
        old = await mgr.create("assistant", user_id="alice")
        new = await mgr.create("assistant", user_id="alice")
        await mgr.create("assistant", user_id="bob")
        await mgr.create("other", user_id="alice")
        assert (await mgr.get_or_create("assistant", "alice")).id == new.id
        await asyncio.sleep(0.002)
        await old.append_message(Message.user("back to the first"))
        assert (await mgr.get_or_create("assistant", "alice")).id == old.id


@pytest.mark.asyncio
@pytest.mark.parametrize("newer", [False, True])
async def test_a_creation_racing_from_another_process_converges_on_one(newer: bool) -> None:
    store = RacedBy(newer=newer)
    async with SessionManager(store) as mgr:
        s = await mgr.get_or_create("assistant", "alice")
        assert store.theirs is not None
        sessions = (await mgr.list(agent="assistant", user_id="alice")).items
        if newer:  # ours is the older one: the other process defers to it (we keep ours)
            assert s.id != store.theirs.id and len(sessions) == 2
        else:  # we defer to theirs and delete our own, empty one
            assert [i.id for i in sessions] == [s.id] == [store.theirs.id]


@pytest.mark.asyncio
async def test_a_racing_session_already_in_use_wins() -> None:
    store = RacedBy(used=True, newer=True)
    async with SessionManager(store) as mgr:
        s = await mgr.get_or_create("assistant", "alice")
        assert store.theirs is not None and s.id == store.theirs.id
        assert [m.text for m in await s.get_messages()] == ["their first call"]
        assert len((await mgr.list(agent="assistant", user_id="alice")).items) == 1
