"""Conformance of a backend's life: the protocol and its capabilities, open and close,
discovery by URL scheme, (when declared) persistence across a reopen and sharing one store
between instances, and (when implemented) the optional ``migrate()`` of a store with a
schema."""

from __future__ import annotations

import asyncio

import pytest

from aixgo import plugins
from aixgo.errors import BackendClosed, ConflictError, SessionNotFound
from aixgo.identifiers import new_id
from aixgo.message import Message
from aixgo.session import Backend, Capability, Migratable, SessionManager, open_backend
from aixgo.testing.base import (
    Call,
    ConformanceBase,
    backend_calls,
    each_raises,
    grow_and_restore,
    listed,
    new_session,
    persistent_url,
    reads_agree,
    reopened,
    seen_twice,
    shared_url,
    snapshot,
    texts,
    tick,
    unique,
)
from aixgo.testing.samples import METADATA, every_field, numbered

__all__ = ["LifecycleConformance"]


class LifecycleConformance(ConformanceBase):
    """The backend as an object: protocol, open/close, discovery, persistence, sharing."""

    @pytest.mark.asyncio
    async def test_the_backend_implements_the_protocol(self, backend: Backend) -> None:
        assert isinstance(backend, Backend)
        assert isinstance(backend.capabilities, frozenset)
        assert all(isinstance(c, Capability) for c in backend.capabilities)

    @pytest.mark.asyncio
    async def test_open_is_optional_and_idempotent(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend), 1)
        await backend.open()
        await backend.open()
        await s.append_message(Message.user("m2"))
        assert await texts(s) == ["m1", "m2"]

    @pytest.mark.asyncio
    async def test_a_closed_manager_refuses_every_call(self, backend: Backend) -> None:
        mgr = SessionManager(backend)
        s = await new_session(mgr, 1)
        cp = await s.checkpoint()
        await mgr.close()
        await mgr.close()
        calls: dict[str, Call] = {
            "SessionManager.open": mgr.open,
            "SessionManager.create": lambda: mgr.create(unique("agent")),
            "SessionManager.get": lambda: mgr.get(s.id),
            "SessionManager.get_or_create": lambda: mgr.get_or_create(s.agent, "u"),
            "SessionManager.list": lambda: mgr.list(),
            "SessionManager.delete": lambda: mgr.delete(s.id),
            "Session.info": s.info,
            "Session.append_message": lambda: s.append_message(Message.user("x")),
            "Session.append_messages": lambda: s.append_messages([Message.user("x")]),
            "Session.get_messages": lambda: s.get_messages(),
            "Session.get_messages(last=1)": lambda: s.get_messages(last=1),
            "Session.checkpoint": lambda: s.checkpoint(),
            "Session.restore": lambda: s.restore(cp.id),
            "Session.list_checkpoints": s.list_checkpoints,
        }
        await each_raises(BackendClosed, calls)

    @pytest.mark.asyncio
    async def test_a_closed_backend_refuses_every_call(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend), 1)
        info = await s.info()
        await backend.close()
        await backend.close()
        calls: dict[str, Call] = {
            "open": backend.open,
            "create_session": lambda: backend.create_session(
                info.model_copy(update={"id": new_id(), "message_count": 0})
            ),
            "list_sessions": lambda: backend.list_sessions(),
            **backend_calls(backend, s.id),
        }
        await each_raises(BackendClosed, calls)

    @pytest.mark.asyncio
    async def test_migrate_finds_an_opened_store_up_to_date(self, backend: Backend) -> None:
        if not isinstance(backend, Migratable):
            pytest.skip(f"{type(backend).__name__} has no migrate(): no schema to migrate")
        s = await new_session(SessionManager(backend), 1)
        checked = await backend.migrate(check=True)
        assert (checked.pending, checked.applied, checked.version) == (False, (), checked.latest)
        again = await backend.migrate()
        assert (again.pending, again.applied, again.found) == (False, (), again.latest)
        assert str(again)
        assert str(checked)
        await s.append_message(Message.user("m2"))
        assert await texts(s) == ["m1", "m2"]
        await backend.close()
        await each_raises(BackendClosed, {"migrate": backend.migrate})

    @pytest.mark.asyncio
    async def test_the_scheme_is_discovered_through_entry_points(
        self, backend: Backend, backend_url: str | None
    ) -> None:
        if backend_url is None:
            pytest.skip(
                "needs the backend_url fixture to check discovery: override it to return a URL "
                "of your scheme that open_backend() opens"
            )
        scheme = backend_url.partition("://")[0].lower()
        assert scheme in plugins.backend_schemes(), (
            f"no installed plugin registers {scheme}://; add an entry point in the 'aixgo' "
            "group whose module implements aixgo_register_backends"
        )
        other = open_backend(backend_url)
        try:
            assert isinstance(other, type(backend))
        finally:
            await other.close()

    @pytest.mark.asyncio
    async def test_reopen_keeps_sessions_messages_and_listing(
        self, backend: Backend, backend_url: str | None
    ) -> None:
        url = persistent_url(backend, backend_url)
        mgr, agent = SessionManager(backend), unique("agent")
        s = await mgr.create(agent, user_id=unique("user"), metadata=METADATA)
        stored = await s.append_messages(every_field())
        await tick()
        other = await new_session(mgr, 2, agent=agent)
        infos = [await other.info(), await s.info()]
        await mgr.close()
        async with reopened(url) as again:
            got = await again.get(s.id, user_id=s.user_id)
            assert await got.get_messages() == stored
            assert await got.get_messages(last=2) == stored[-2:]
            assert (await again.list(agent=agent)).items == infos

    @pytest.mark.asyncio
    async def test_reopen_keeps_checkpoints_and_restores(
        self, backend: Backend, backend_url: str | None
    ) -> None:
        url = persistent_url(backend, backend_url)
        mgr = SessionManager(backend)
        s = await new_session(mgr, 2)
        cp1 = await s.checkpoint()
        await s.append_messages(numbered(2, start=3))
        cp2 = await s.checkpoint()
        await s.restore(cp1.id)
        await s.append_message(Message.user("x3"))
        before = await snapshot(s)
        await mgr.close()
        async with reopened(url) as again:
            got = await again.get(s.id)
            # The restored history stays restored: rolled-back messages do not come back.
            assert await snapshot(got) == before
            assert await texts(got, last=2) == ["m2", "x3"]
            await got.restore(cp2.id)
            assert await texts(got) == ["m1", "m2", "m3", "m4"]
            assert (await got.append_message(Message.user("m5"))).seq == 5

    @pytest.mark.asyncio
    async def test_reopen_keeps_deletes_and_idempotence(
        self, backend: Backend, backend_url: str | None
    ) -> None:
        url = persistent_url(backend, backend_url)
        mgr = SessionManager(backend)
        gone, kept = await new_session(mgr, 1), await new_session(mgr)
        msg = Message.user("once")
        stored = await kept.append_message(msg)
        await mgr.delete(gone.id)
        await mgr.close()
        async with reopened(url) as again:
            with pytest.raises(SessionNotFound):
                await again.get(gone.id)
            assert await listed(again, agent=gone.agent) == []
            got = await again.get(kept.id)
            assert await got.append_message(msg) == stored
            assert (await got.append_message(Message.user("next"))).seq == 2

    @pytest.mark.asyncio
    async def test_two_instances_share_one_store(
        self, backend: Backend, backend_url: str | None
    ) -> None:
        url = shared_url(backend, backend_url)
        async with seen_twice(backend, url, 1) as (here, there, other):
            await there.append_message(Message.user("from the other instance"))
            cp = await there.checkpoint()
            assert await texts(here) == ["m1", "from the other instance"]
            assert await here.list_checkpoints() == [cp]
            assert await listed(other, agent=here.agent) == [here.id]

    @pytest.mark.asyncio
    async def test_reads_again_see_what_another_instance_changed(
        self, backend: Backend, backend_url: str | None
    ) -> None:
        # A store may keep what it read to serve the next read faster (aixgo.session.kit's
        # Recent); the next read must still be what a new instance reads, whatever another
        # instance appended or restored in between, and whichever branch a tail walks.
        url = shared_url(backend, backend_url)
        async with seen_twice(backend, url, 3) as (here, there, _):
            await grow_and_restore(there, lambda: reads_agree(backend, url, here.id))
            assert await texts(here) == ["m1", "m2", "m3", "a1"]

    @pytest.mark.asyncio
    async def test_two_instances_append_concurrently(
        self, backend: Backend, backend_url: str | None
    ) -> None:
        sent = numbered(100)
        async with seen_twice(backend, shared_url(backend, backend_url)) as (here, there, _):
            await asyncio.gather(
                *(here.append_message(m) for m in sent[::2]),
                *(there.append_message(m) for m in sent[1::2]),
            )
            history = await there.get_messages()
        assert [m.seq for m in history] == list(range(1, 101))
        assert {m.id for m in history} == {m.id for m in sent}

    @pytest.mark.asyncio
    async def test_expected_seq_conflicts_across_instances(
        self, backend: Backend, backend_url: str | None
    ) -> None:
        async with seen_twice(backend, shared_url(backend, backend_url), 1) as (here, there, _):
            await here.append_message(Message.user("first"), expected_seq=1)
            with pytest.raises(ConflictError):
                await there.append_message(Message.user("second"), expected_seq=1)
            assert await texts(there) == ["m1", "first"]
