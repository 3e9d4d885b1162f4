"""SessionManager and Session checks that sit in front of every backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aixgo import Message
from aixgo.errors import BackendClosed, InvalidArgument, InvalidIdentifier, InvalidMessage
from aixgo.session import Page, SessionInfo, SessionManager
from aixgo.session.codec import MAX_DEPTH
from aixgo.session.memory import MemoryBackend
from aixgo.testing.samples import nested


@pytest_asyncio.fixture
async def mgr() -> AsyncIterator[SessionManager]:
    async with SessionManager("memory://") as m:
        yield m


def test_default_manager_opens_aixgo_session_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIXGO_SESSION_URL", "memory://")
    assert isinstance(SessionManager().backend, MemoryBackend)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("metadata", "why"),
    [
        ({"k": object()}, "JSON object"),
        ({1: "v"}, "JSON object"),
        (["not", "a", "dict"], "JSON object"),
        ({"k": "x" * 70_000}, "at most 65,536"),
        ({"k": ["a\x00"]}, "NUL"),
        ({"k": nested(MAX_DEPTH)}, f"more than {MAX_DEPTH} levels deep"),
        ({"k": nested(100_000)}, "levels deep|JSON object"),  # never a RecursionError
        ({"r": [1.0, float("nan")]}, "non-finite"),
        ({"r": float("-inf")}, "non-finite"),
        ({"t": "a\ud800b"}, "lone surrogate"),
        ({"\udc80": 1}, "lone surrogate"),
    ],
)
async def test_bad_metadata_is_refused_and_nothing_created(
    mgr: SessionManager, metadata: object, why: str
) -> None:
    with pytest.raises(InvalidArgument, match=why):
        await mgr.create("assistant", user_id="u", metadata=metadata)  # type: ignore[arg-type]
    assert (await mgr.list()).items == []


@pytest.mark.asyncio
async def test_argument_checks(mgr: SessionManager) -> None:
    s = await mgr.create("assistant", user_id="u")
    bad_calls = [
        (s.get_messages(last=-1), "last must be between 0 and"),
        (s.get_messages(last=True), "last must be an int"),
        (s.append_message(Message.user("x"), expected_seq=-1), "expected_seq must be between 0"),
        (mgr.list(limit=0), "limit must be between 1 and 1000"),
        (mgr.list(cursor=5), "cursor must be a string"),  # type: ignore[arg-type]
    ]
    for call, why in bad_calls:
        with pytest.raises(InvalidArgument, match=why):
            await call
    with pytest.raises(InvalidIdentifier, match="checkpoint label"):
        await s.checkpoint(label="line\nbreak")
    with pytest.raises(InvalidIdentifier, match="checkpoint id"):
        await s.restore("../../x")
    with pytest.raises(InvalidMessage, match="takes a Message"):
        await s.append_message("hello")  # type: ignore[arg-type]
    with pytest.raises(InvalidMessage, match="use append_message"):
        await s.append_messages(Message.user("x"))
    assert await s.get_messages() == []
    assert await s.list_checkpoints() == []


@pytest.mark.asyncio
async def test_last_zero_is_empty_but_still_checks_the_session(mgr: SessionManager) -> None:
    s = await mgr.create("assistant")
    await s.append_message(Message.user("x"))
    assert await s.get_messages(last=0) == []
    await s.delete()
    with pytest.raises(LookupError):
        await s.get_messages(last=0)


@pytest.mark.asyncio
async def test_close_is_idempotent_and_final() -> None:
    mgr = SessionManager("memory://")
    s = await mgr.create("assistant")
    await mgr.close()
    await mgr.close()
    for call in (mgr.create("a"), mgr.list(), s.get_messages(), s.checkpoint(), mgr.open()):
        with pytest.raises(BackendClosed, match="create a new SessionManager"):
            await call


@pytest.mark.asyncio
async def test_a_wrapped_view_shares_the_store_and_closes_with_it() -> None:
    from aixgo.telemetry import TracedBackend

    mgr = SessionManager("memory://")
    view = mgr.wrapped(TracedBackend)
    assert isinstance(view.backend, TracedBackend) and view.backend.inner is mgr.backend
    assert isinstance(mgr.backend, MemoryBackend)  # the original is left as it was
    s = await view.create("assistant", user_id="alice")
    await s.append_message(Message.user("hi"))
    assert (await mgr.get_or_create("assistant", "alice")).id == s.id
    await view.close()
    for call in (mgr.list(), s.info(), s.delete()):
        with pytest.raises(BackendClosed, match="create a new SessionManager"):
            await call


@pytest.mark.asyncio
async def test_session_handle_keeps_the_fixed_facts(mgr: SessionManager) -> None:
    s = await mgr.create("assistant", user_id="auth0|123", metadata={"title": "trip"})
    again = await mgr.get(s.id, user_id="auth0|123")
    assert (again.agent, again.user_id, again.metadata) == (
        "assistant",
        "auth0|123",
        {"title": "trip"},
    )
    assert again.created_at == s.created_at
    assert repr(again) == f"Session(id={s.id!r}, agent='assistant', user_id='auth0|123')"


class _YieldingBackend(MemoryBackend):
    """Gives other tasks a turn inside each call, as a networked backend would."""

    async def list_sessions(self, **kw: Any) -> Page[SessionInfo]:
        await asyncio.sleep(0.001)
        return await super().list_sessions(**kw)

    async def create_session(self, info: SessionInfo) -> None:
        await asyncio.sleep(0.001)
        await super().create_session(info)


@pytest.mark.asyncio
async def test_concurrent_get_or_create_agrees_on_one_session() -> None:
    async with SessionManager(_YieldingBackend()) as mgr:
        sessions = await asyncio.gather(
            *(mgr.get_or_create("assistant", "user-123") for _ in range(20)),
            *(mgr.get_or_create("assistant", "user-456") for _ in range(5)),
        )
        assert len({s.id for s in sessions[:20]}) == 1
        assert len({s.id for s in sessions[20:]}) == 1
        assert len((await mgr.list()).items) == 2
