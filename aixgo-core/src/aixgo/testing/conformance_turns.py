"""Conformance of the two optional capabilities that let several processes share users and
sessions: :class:`~aixgo.session.SessionPerUser` (an atomic get-or-create of a user's
current session) and :class:`~aixgo.session.TurnLeases` (one turn at a time per session).

Each test runs only when the backend has the capability (``isinstance`` of the protocol),
and skips with a reason otherwise; the tests that open a second instance on the same store
also need :attr:`Capability.MULTI_PROCESS` and the ``backend_url`` fixture.
"""

from __future__ import annotations

import asyncio

import pytest

from aixgo.errors import BackendClosed, SessionNotFound
from aixgo.identifiers import new_id
from aixgo.message import Message, utc_now
from aixgo.session import Backend, SessionInfo, SessionManager, SessionPerUser, TurnLeases
from aixgo.session import open_backend as _open_backend
from aixgo.testing.base import ConformanceBase, listed, new_session, shared_url, tick, unique

__all__ = ["SHORT_TTL", "TurnsConformance", "expire", "fresh_info", "leases", "per_user"]

#: A lease length short enough to wait out in a test, long enough for a slow store's calls.
SHORT_TTL = 0.3
_RACERS = 16


def per_user(backend: Backend) -> SessionPerUser:
    """``backend`` as a :class:`SessionPerUser`, or skip the calling test."""
    if not isinstance(backend, SessionPerUser):
        pytest.skip(
            f"{type(backend).__name__} does not implement SessionPerUser "
            "(async def get_or_create_session(info) -> (SessionInfo, created))"
        )
    return backend


def leases(backend: Backend) -> TurnLeases:
    """``backend`` as a :class:`TurnLeases`, or skip the calling test."""
    if not isinstance(backend, TurnLeases):
        pytest.skip(
            f"{type(backend).__name__} does not implement TurnLeases "
            "(acquire_turn, renew_turn, release_turn)"
        )
    return backend


def fresh_info(agent: str, user_id: str) -> SessionInfo:
    """A new session's summary, as the manager makes it."""
    now = utc_now()
    return SessionInfo(id=new_id(), agent=agent, user_id=user_id, created_at=now, updated_at=now)


async def expire(ttl: float = SHORT_TTL) -> None:
    """Wait until a lease taken or renewed with ``ttl`` has expired."""
    await asyncio.sleep(ttl * 1.5 + 0.05)


class TurnsConformance(ConformanceBase):
    """SessionPerUser and TurnLeases, each when the backend has it."""

    # -- SessionPerUser -----------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_get_or_create_session_creates_once_then_returns_it(
        self, backend: Backend
    ) -> None:
        store = per_user(backend)
        agent, user = unique("agent"), unique("user")
        first = fresh_info(agent, user)
        got, created = await store.get_or_create_session(first)
        assert (got.id, created) == (first.id, True)
        assert (got.agent, got.user_id, got.message_count) == (agent, user, 0)
        again, created = await store.get_or_create_session(fresh_info(agent, user))
        assert (again.id, created) == (first.id, False)
        assert await listed(SessionManager(backend), agent=agent) == [first.id]
        assert (await backend.get_session(first.id)).user_id == user

    @pytest.mark.asyncio
    async def test_get_or_create_session_returns_the_most_recently_updated(
        self, backend: Backend
    ) -> None:
        store, mgr = per_user(backend), SessionManager(backend)
        agent, user = unique("agent"), unique("user")
        old = await mgr.create(agent, user_id=user)
        await tick()
        new = await mgr.create(agent, user_id=user)
        await mgr.create(agent, user_id=unique("user"))  # other pairs never count
        await mgr.create(unique("agent"), user_id=user)
        got, created = await store.get_or_create_session(fresh_info(agent, user))
        assert (got.id, created) == (new.id, False)
        await tick()
        await old.append_message(Message.user("back to the first"))
        got, created = await store.get_or_create_session(fresh_info(agent, user))
        assert (got.id, got.message_count, created) == (old.id, 1, False)

    @pytest.mark.asyncio
    async def test_concurrent_get_or_create_session_creates_exactly_one(
        self, backend: Backend
    ) -> None:
        store = per_user(backend)
        agent, user = unique("agent"), unique("user")
        results = await asyncio.gather(
            *(store.get_or_create_session(fresh_info(agent, user)) for _ in range(_RACERS))
        )
        assert len({info.id for info, _ in results}) == 1
        assert [created for _, created in results].count(True) == 1
        assert len(await listed(SessionManager(backend), agent=agent, user_id=user)) == 1

    @pytest.mark.asyncio
    async def test_get_or_create_session_across_instances_creates_exactly_one(
        self, backend: Backend, backend_url: str | None
    ) -> None:
        store = per_user(backend)
        other = _open_backend(shared_url(backend, backend_url))
        try:
            assert isinstance(other, SessionPerUser)
            agent, user = unique("agent"), unique("user")
            results = await asyncio.gather(
                *(
                    (store if i % 2 else other).get_or_create_session(fresh_info(agent, user))
                    for i in range(_RACERS)
                )
            )
            assert len({info.id for info, _ in results}) == 1
            assert [created for _, created in results].count(True) == 1
        finally:
            await other.close()

    @pytest.mark.asyncio
    async def test_the_manager_uses_get_or_create_session(self, backend: Backend) -> None:
        per_user(backend)
        mgr = SessionManager(backend)
        agent, user = unique("agent"), unique("user")
        got = await asyncio.gather(*(mgr.get_or_create(agent, user) for _ in range(4)))
        assert len({s.id for s in got}) == 1

    # -- TurnLeases ---------------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_a_turn_lease_excludes_other_owners(self, backend: Backend) -> None:
        store = leases(backend)
        s = await new_session(SessionManager(backend))
        token = await store.acquire_turn(s.id, "owner-a", 30.0)
        assert isinstance(token, int)
        assert not isinstance(token, bool)
        assert await store.acquire_turn(s.id, "owner-b", 30.0) is None
        assert await store.acquire_turn(s.id, "owner-a", 30.0) == token  # its own: renewed
        assert await store.acquire_turn(s.id, "owner-b", 30.0) is None

    @pytest.mark.asyncio
    async def test_tokens_grow_with_every_acquisition(self, backend: Backend) -> None:
        store = leases(backend)
        s = await new_session(SessionManager(backend))
        tokens = []
        for owner in ("owner-a", "owner-b", "owner-a", "owner-c"):
            token = await store.acquire_turn(s.id, owner, 30.0)
            assert token is not None
            tokens.append(token)
            await store.release_turn(s.id, owner)
        assert tokens == sorted(set(tokens))
        after_expiry = await store.acquire_turn(s.id, "owner-d", SHORT_TTL)
        await expire()
        taken = await store.acquire_turn(s.id, "owner-e", 30.0)
        assert after_expiry is not None
        assert taken is not None
        assert tokens[-1] < after_expiry < taken

    @pytest.mark.asyncio
    async def test_tokens_strictly_increase_under_contention(self, backend: Backend) -> None:
        store = leases(backend)
        s = await new_session(SessionManager(backend))
        taken: list[int] = []

        async def contend(owner: str) -> None:
            for _ in range(15):
                token = await store.acquire_turn(s.id, owner, 30.0)
                if token is not None:
                    taken.append(token)  # before the release: in the order they were taken
                    await store.release_turn(s.id, owner)
                await asyncio.sleep(0)

        await asyncio.gather(*(contend(f"owner-{i}") for i in range(6)))
        assert len(taken) >= 6
        assert taken == sorted(set(taken))

    @pytest.mark.asyncio
    async def test_leases_are_per_session(self, backend: Backend) -> None:
        store = leases(backend)
        mgr = SessionManager(backend)
        one, two = await new_session(mgr), await new_session(mgr)
        assert await store.acquire_turn(one.id, "owner-a", 30.0) is not None
        assert await store.acquire_turn(two.id, "owner-b", 30.0) is not None
        assert await store.acquire_turn(one.id, "owner-b", 30.0) is None

    @pytest.mark.asyncio
    async def test_a_lease_expires_after_its_ttl(self, backend: Backend) -> None:
        store = leases(backend)
        s = await new_session(SessionManager(backend))
        first = await store.acquire_turn(s.id, "owner-a", SHORT_TTL)
        await expire()
        second = await store.acquire_turn(s.id, "owner-b", 30.0)
        assert first is not None
        assert second is not None
        assert second > first
        # The late owner has lost it: it can neither renew nor release the new holder's.
        assert await store.renew_turn(s.id, "owner-a", 30.0) is False
        await store.release_turn(s.id, "owner-a")
        assert await store.acquire_turn(s.id, "owner-c", 30.0) is None

    @pytest.mark.asyncio
    async def test_renewing_keeps_the_lease_past_its_first_ttl(self, backend: Backend) -> None:
        store = leases(backend)
        s = await new_session(SessionManager(backend))
        # Renewed every 0.3 s with a 1 s ttl, past the first second: each step has room for
        # a slow store or a loaded machine.
        token = await store.acquire_turn(s.id, "owner-a", 1.0)
        assert token is not None
        for _ in range(4):
            await asyncio.sleep(0.3)
            assert await store.renew_turn(s.id, "owner-a", 1.0) is True
        assert await store.acquire_turn(s.id, "owner-b", 30.0) is None
        assert await store.acquire_turn(s.id, "owner-a", 30.0) == token

    @pytest.mark.asyncio
    async def test_renew_by_another_owner_or_after_expiry_changes_nothing(
        self, backend: Backend
    ) -> None:
        store = leases(backend)
        s = await new_session(SessionManager(backend))
        assert await store.renew_turn(s.id, "owner-a", 30.0) is False  # nobody holds it
        assert await store.acquire_turn(s.id, "owner-b", 30.0) is not None  # ...still free
        assert await store.renew_turn(s.id, "owner-a", 30.0) is False
        assert await store.acquire_turn(s.id, "owner-a", 30.0) is None  # owner-b kept it
        t = await new_session(SessionManager(backend))
        assert await store.acquire_turn(t.id, "owner-a", SHORT_TTL) is not None
        await expire()
        assert await store.renew_turn(t.id, "owner-a", 30.0) is False  # expired: not revived
        assert await store.acquire_turn(t.id, "owner-b", 30.0) is not None

    @pytest.mark.asyncio
    async def test_release_frees_the_lease_only_for_its_holder(self, backend: Backend) -> None:
        store = leases(backend)
        s = await new_session(SessionManager(backend))
        first = await store.acquire_turn(s.id, "owner-a", 30.0)
        await store.release_turn(s.id, "owner-b")  # not the holder: nothing happens
        assert await store.acquire_turn(s.id, "owner-b", 30.0) is None
        await store.release_turn(s.id, "owner-a")
        await store.release_turn(s.id, "owner-a")  # again: nothing to give up
        second = await store.acquire_turn(s.id, "owner-b", 30.0)
        assert first is not None
        assert second is not None
        assert second > first
        assert await store.renew_turn(s.id, "owner-a", 30.0) is False

    @pytest.mark.asyncio
    async def test_turn_leases_of_an_unknown_session_are_not_found(self, backend: Backend) -> None:
        store = leases(backend)
        missing = new_id()
        with pytest.raises(SessionNotFound):
            await store.acquire_turn(missing, "owner-a", 30.0)
        with pytest.raises(SessionNotFound):
            await store.renew_turn(missing, "owner-a", 30.0)
        with pytest.raises(SessionNotFound):
            await store.release_turn(missing, "owner-a")

    @pytest.mark.asyncio
    async def test_delete_drops_the_lease(self, backend: Backend) -> None:
        store = leases(backend)
        mgr = SessionManager(backend)
        s = await new_session(mgr, 1)
        assert await store.acquire_turn(s.id, "owner-a", 30.0) is not None
        await mgr.delete(s.id)
        with pytest.raises(SessionNotFound):
            await store.acquire_turn(s.id, "owner-b", 30.0)
        with pytest.raises(SessionNotFound):
            await store.renew_turn(s.id, "owner-a", 30.0)
        with pytest.raises(SessionNotFound):
            await store.release_turn(s.id, "owner-a")
        other = await new_session(mgr)  # nothing of the deleted lease leaks elsewhere
        assert await store.acquire_turn(other.id, "owner-b", 30.0) is not None

    @pytest.mark.asyncio
    async def test_turn_leases_hold_across_instances(
        self, backend: Backend, backend_url: str | None
    ) -> None:
        store = leases(backend)
        other = _open_backend(shared_url(backend, backend_url))
        try:
            assert isinstance(other, TurnLeases)
            s = await new_session(SessionManager(backend))
            first = await store.acquire_turn(s.id, "owner-a", 30.0)
            assert first is not None
            assert await other.acquire_turn(s.id, "owner-b", 30.0) is None
            assert await other.renew_turn(s.id, "owner-b", 30.0) is False
            await store.release_turn(s.id, "owner-a")
            second = await other.acquire_turn(s.id, "owner-b", 1.0)
            assert second is not None
            assert second > first
            assert await store.acquire_turn(s.id, "owner-a", 30.0) is None
            await expire(1.0)
            third = await store.acquire_turn(s.id, "owner-a", 30.0)
            assert third is not None
            assert third > second
            assert await other.renew_turn(s.id, "owner-b", 30.0) is False
        finally:
            await other.close()

    @pytest.mark.asyncio
    async def test_a_closed_backend_refuses_the_capabilities(self, backend: Backend) -> None:
        if not isinstance(backend, SessionPerUser | TurnLeases):
            pytest.skip(f"{type(backend).__name__} implements neither optional capability")
        s = await new_session(SessionManager(backend))
        await backend.close()
        if isinstance(backend, SessionPerUser):
            with pytest.raises(BackendClosed):
                await backend.get_or_create_session(fresh_info(s.agent, s.user_id or "u"))
        if isinstance(backend, TurnLeases):
            with pytest.raises(BackendClosed):
                await backend.acquire_turn(s.id, "owner-a", 30.0)
            with pytest.raises(BackendClosed):
                await backend.renew_turn(s.id, "owner-a", 30.0)
            with pytest.raises(BackendClosed):
                await backend.release_turn(s.id, "owner-a")
