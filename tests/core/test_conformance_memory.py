"""The conformance kit run against the reference backend, and proof that it can fail."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest
import pytest_asyncio
from aixgo import Message, hookimpl, plugins
from aixgo.hookspecs import BackendRegister
from aixgo.identifiers import new_id
from aixgo.session import Backend, Capability, Page, SessionInfo, open_backend
from aixgo.session.memory import MemoryBackend
from aixgo.testing import BackendConformance


class TestMemoryConformance(BackendConformance):
    @pytest.fixture
    def backend_url(self) -> str:
        return "memory://"

    @pytest_asyncio.fixture
    async def backend(self) -> AsyncIterator[Backend]:
        backend = open_backend("memory://")
        yield backend
        await backend.close()


# memory:// declares no capabilities, so its run skips the reopen and two-instance tests. This
# stand-in keeps each store by URL beyond close(), so those tests run (and pass) here too.

_STORES: dict[str, dict[str, Any]] = {}


class SharedMemoryBackend(MemoryBackend):
    """memory:// whose store outlives the instance and is shared by every instance of a URL."""

    capabilities = frozenset({Capability.PERSISTENT, Capability.MULTI_PROCESS})

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._sessions = _STORES.setdefault(url, {})

    async def close(self) -> None:
        self._closed = True  # the store stays for the next instance


class Registers:
    """An in-process plugin that registers one backend scheme."""

    def __init__(self, scheme: str, factory: type[MemoryBackend]) -> None:
        self.scheme, self.factory = scheme, factory

    @hookimpl
    def aixgo_register_backends(self, register: BackendRegister) -> None:
        register(self.scheme, self.factory)


class TestSharedMemoryConformance(BackendConformance):
    @pytest.fixture
    def backend_url(self) -> Iterator[str]:
        plugins.register_plugin(Registers("sharedmem", SharedMemoryBackend), "sharedmem-selftest")
        url = f"sharedmem://{new_id()}"
        yield url
        plugins.unregister_plugin("sharedmem-selftest")
        _STORES.pop(url, None)

    @pytest_asyncio.fixture
    async def backend(self, backend_url: str) -> AsyncIterator[Backend]:
        backend = open_backend(backend_url)
        yield backend
        await backend.close()


# Backends that each break one rule, to show the kit notices.


class ForgetsIds(MemoryBackend):
    """Not idempotent: every append is stored as if new."""

    async def append_messages(
        self, session_id: str, messages: Sequence[Message], *, expected_seq: int | None = None
    ) -> list[Message]:
        fresh = [m.model_copy(update={"id": new_id()}) for m in messages]
        return await super().append_messages(session_id, fresh, expected_seq=expected_seq)


class TrustsIds(MemoryBackend):
    """Takes a stored id for a repeat whatever the message now says."""

    async def append_messages(
        self, session_id: str, messages: Sequence[Message], *, expected_seq: int | None = None
    ) -> list[Message]:
        history = {m.id: m for m in await self.get_messages(session_id)}
        fresh = [m for m in messages if m.id not in history]
        if fresh:
            stored = await super().append_messages(session_id, fresh, expected_seq=expected_seq)
            history.update((m.id, m) for m in stored)
        return [history[m.id] for m in messages]


class HeadForTail(MemoryBackend):
    """``get_messages(last=n)`` returns the first n messages, not the last."""

    async def get_messages(self, session_id: str, *, last: int | None = None) -> list[Message]:
        everything = await super().get_messages(session_id)
        return everything if last is None else everything[:last]


class OldestFirst(MemoryBackend):
    """Lists sessions in the wrong order."""

    async def list_sessions(self, **filters: Any) -> Page[SessionInfo]:
        page = await super().list_sessions(**filters)
        return Page(items=page.items[::-1], next_cursor=page.next_cursor)


class RestoreForgetsUndo(MemoryBackend):
    """Restores without recording the undo checkpoint in the list."""

    async def list_checkpoints(self, session_id: str) -> list[Any]:
        cps = await super().list_checkpoints(session_id)
        return [cp for cp in cps if cp.label != "before-restore"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("broken", "test"),
    [
        (ForgetsIds, "test_reappending_a_message_returns_the_stored_copy"),
        (ForgetsIds, "test_concurrent_retries_store_a_message_once"),
        (HeadForTail, "test_get_messages_last_across_restores"),
        (OldestFirst, "test_list_is_most_recently_updated_first"),
        (OldestFirst, "test_appending_moves_a_session_to_the_front"),
        (RestoreForgetsUndo, "test_restore_returns_an_undo_checkpoint"),
    ],
)
async def test_the_kit_fails_a_broken_backend(broken: type[MemoryBackend], test: str) -> None:
    backend = broken()
    try:
        with pytest.raises(AssertionError):
            await getattr(BackendConformance(), test)(backend)
    finally:
        await backend.close()


@pytest.mark.asyncio
async def test_the_kit_fails_a_backend_that_trusts_a_reused_id() -> None:
    backend = TrustsIds()
    try:
        with pytest.raises(pytest.fail.Exception, match="DID NOT RAISE"):
            await BackendConformance().test_reusing_a_stored_id_for_other_content_conflicts(
                backend, {"content": "changed"}
            )
    finally:
        await backend.close()


@pytest.mark.asyncio
async def test_the_kit_fails_a_wrong_tail_for_one_size() -> None:
    backend = HeadForTail()
    kit = BackendConformance()
    await kit.test_get_messages_last_is_the_tail(backend, 5)  # the whole history: no difference
    with pytest.raises(AssertionError):
        await kit.test_get_messages_last_is_the_tail(backend, 3)
    await backend.close()


@pytest.mark.asyncio
async def test_capability_tests_skip_with_a_reason() -> None:
    backend, kit = MemoryBackend(), BackendConformance()
    with pytest.raises(pytest.skip.Exception, match="Capability.PERSISTENT"):
        await kit.test_reopen_keeps_checkpoints_and_restores(backend, "memory://")
    with pytest.raises(pytest.skip.Exception, match="Capability.MULTI_PROCESS"):
        await kit.test_two_instances_share_one_store(backend, "memory://")
    with pytest.raises(pytest.skip.Exception, match="backend_url fixture"):
        await kit.test_the_scheme_is_discovered_through_entry_points(backend, None)
    await backend.close()


@pytest.mark.asyncio
async def test_a_capability_without_backend_url_skips_asking_for_it() -> None:
    backend, kit = SharedMemoryBackend(f"sharedmem://{new_id()}"), BackendConformance()
    with pytest.raises(pytest.skip.Exception, match="needs the backend_url fixture to close and"):
        await kit.test_reopen_keeps_deletes_and_idempotence(backend, None)
    with pytest.raises(pytest.skip.Exception, match="needs the backend_url fixture to open a"):
        await kit.test_two_instances_append_concurrently(backend, None)
    await backend.close()


class ReopensEmpty(SharedMemoryBackend):
    """Claims to persist, but a new instance starts from nothing (the store is lost on close)."""

    async def close(self) -> None:
        await MemoryBackend.close(self)


@pytest.mark.asyncio
async def test_the_kit_fails_a_backend_that_does_not_persist() -> None:
    plugins.register_plugin(Registers("forgetful", ReopensEmpty), "forgetful-selftest")
    url = f"forgetful://{new_id()}"
    backend = open_backend(url)
    try:
        with pytest.raises(LookupError):  # SessionNotFound after the reopen
            await BackendConformance().test_reopen_keeps_sessions_messages_and_listing(backend, url)
    finally:
        await backend.close()
        plugins.unregister_plugin("forgetful-selftest")
        _STORES.pop(url, None)


# The optional protocols: skipped with a reason when absent, failing when broken.


class Plain(MemoryBackend):
    """A backend with neither SessionPerUser nor TurnLeases."""

    get_or_create_session = None  # type: ignore[assignment]
    acquire_turn = renew_turn = release_turn = None  # type: ignore[assignment]


class LeaseNeverExpires(MemoryBackend):
    async def acquire_turn(self, session_id: str, owner: str, ttl: float) -> int | None:
        return await super().acquire_turn(session_id, owner, 1e9)


class TokensRestart(MemoryBackend):
    async def release_turn(self, session_id: str, owner: str) -> None:
        await super().release_turn(session_id, owner)
        self._sessions[session_id].tokens = 0


class CreatesAlways(MemoryBackend):
    async def get_or_create_session(self, info: SessionInfo) -> tuple[SessionInfo, bool]:
        await self.create_session(info)
        return info, True


@pytest.mark.asyncio
async def test_optional_protocol_tests_skip_with_a_reason() -> None:
    backend, kit = Plain(), BackendConformance()
    with pytest.raises(pytest.skip.Exception, match="does not implement TurnLeases"):
        await kit.test_a_turn_lease_excludes_other_owners(backend)
    with pytest.raises(pytest.skip.Exception, match="does not implement SessionPerUser"):
        await kit.test_concurrent_get_or_create_session_creates_exactly_one(backend)
    await backend.close()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("broken", "test"),
    [
        (LeaseNeverExpires, "test_a_lease_expires_after_its_ttl"),
        (TokensRestart, "test_tokens_grow_with_every_acquisition"),
        (CreatesAlways, "test_concurrent_get_or_create_session_creates_exactly_one"),
        (CreatesAlways, "test_get_or_create_session_creates_once_then_returns_it"),
    ],
)
async def test_the_kit_fails_a_broken_optional_protocol(
    broken: type[MemoryBackend], test: str
) -> None:
    backend = broken()
    try:
        with pytest.raises(AssertionError):
            await getattr(BackendConformance(), test)(backend)
    finally:
        await backend.close()
