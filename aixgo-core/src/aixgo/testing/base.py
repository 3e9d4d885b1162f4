"""The conformance kit's shared ground: its two fixtures, capability gates and small helpers.

Every topic class of the kit derives from :class:`ConformanceBase`, so a backend author only
ever overrides the fixtures declared here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import pytest
import pytest_asyncio

from aixgo.identifiers import new_id
from aixgo.message import Message
from aixgo.session import Backend, Capability, Checkpoint, Session, SessionInfo, SessionManager
from aixgo.session import open_backend as _open_backend
from aixgo.testing.samples import numbered

__all__ = [
    "Call",
    "ConformanceBase",
    "TICK_SECONDS",
    "assert_utc",
    "backend_calls",
    "each_raises",
    "grow_and_restore",
    "listed",
    "new_session",
    "persistent_url",
    "reads_agree",
    "reopened",
    "seen_twice",
    "require",
    "require_url",
    "shared_url",
    "snapshot",
    "texts",
    "tick",
    "unique",
]

#: A zero-argument call the kit awaits and expects to raise.
Call = Callable[[], Awaitable[object]]

#: How long :func:`tick` waits: longer than the millisecond a store may round times to, so a
#: write after a tick always has a later ``updated_at`` than a write before it.
TICK_SECONDS = 0.005

_MAX_PAGES = 1000  # a listing that never ends is a failure, not a hang


class ConformanceBase:
    """The fixtures the kit's tests ask for. Override ``backend`` (required) and, to run
    the discovery, persistence and multi-process tests, ``backend_url``."""

    # Typed like the override (an async generator fixture), so subclasses type-check; the
    # body only runs when a subclass forgot to provide one.
    @pytest_asyncio.fixture
    def backend(self) -> AsyncIterator[Backend]:
        """Override with an async fixture that yields an empty backend and closes it."""
        pytest.fail(
            f"{type(self).__name__} must override the `backend` fixture: an async fixture "
            "(@pytest_asyncio.fixture) that yields an empty backend and closes it afterwards"
        )

    @pytest.fixture
    def backend_url(self) -> str | None:
        """Override to return a URL that ``open_backend()`` opens to the same store as
        ``backend``. ``None`` skips the tests that need one."""
        return None


def unique(kind: str) -> str:
    """A name no other test uses, so tests on a shared store never see each other's sessions."""
    return f"{kind}-{new_id()[:12]}"


async def tick() -> None:
    """Let the clock move on before the next write."""
    await asyncio.sleep(TICK_SECONDS)


def require(backend: Backend, capability: Capability) -> None:
    """Skip the calling test unless ``backend`` declares ``capability``."""
    if capability not in backend.capabilities:
        pytest.skip(
            f"{type(backend).__name__} does not declare Capability.{capability.name} "
            "in its capabilities"
        )


def require_url(url: str | None, purpose: str) -> str:
    """``url``, or skip the calling test, saying what to provide."""
    if url is None:
        pytest.skip(
            f"needs the backend_url fixture to {purpose}: override it to return a URL that "
            "open_backend() opens to the same store as the backend fixture"
        )
    return url


def persistent_url(backend: Backend, url: str | None) -> str:
    """The URL to reopen a persistent store with, or skip."""
    require(backend, Capability.PERSISTENT)
    return require_url(url, "close and reopen the store")


def shared_url(backend: Backend, url: str | None) -> str:
    """The URL to open a second instance on a shared store with, or skip."""
    require(backend, Capability.MULTI_PROCESS)
    return require_url(url, "open a second instance on the same store")


@asynccontextmanager
async def reopened(url: str) -> AsyncIterator[SessionManager]:
    """A manager on a new backend instance for ``url``, opened now and closed on exit."""
    async with SessionManager(_open_backend(url)) as mgr:
        yield mgr


@asynccontextmanager
async def seen_twice(
    backend: Backend, url: str, messages: int = 0
) -> AsyncIterator[tuple[Session, Session, SessionManager]]:
    """A new session, as seen through ``backend`` and through a second instance on the same
    store (with that instance's manager)."""
    here = await new_session(SessionManager(backend), messages)
    async with reopened(url) as other:
        yield here, await other.get(here.id), other


async def reads_agree(backend: Backend, url: str, session_id: str) -> None:
    """Every tail ``backend`` reads of the session, each read twice (a store may keep what it
    read and serve the next read from it), is what a new instance on ``url`` reads."""
    fresh = _open_backend(url)
    try:
        whole = await fresh.get_messages(session_id)
    finally:
        await fresh.close()
    for last in (None, 1, 2, 3, 4, 6, 100):
        want = whole if last is None else whole[-last:]
        for _ in range(2):
            got = await backend.get_messages(session_id, last=last)
            assert [m.model_dump() for m in got] == [m.model_dump() for m in want], last


async def grow_and_restore(writer: Session, check: Callable[[], Awaitable[object]]) -> None:
    """Grow ``writer``'s session (holding ``m1 .. m3``), restore it back past what was read,
    grow another branch and restore again, calling ``check()`` before and after each step:
    the walk a store that keeps what it read must follow (with :func:`reads_agree` as the
    check). The history ends as ``m1, m2, m3, a1``."""
    await check()
    cp = await writer.checkpoint()
    await writer.append_messages(numbered(2, start=4))
    await check()
    await writer.restore(cp.id)  # tails reaching back past here walk the branches
    await check()
    await writer.append_message(Message.assistant("a1", metadata={"n": 1}))
    await check()
    cp2 = await writer.checkpoint()
    await writer.append_messages(numbered(4, start=6))
    await check()
    await writer.restore(cp.id)
    await writer.append_message(Message.user("m10"))
    await check()
    await writer.restore(cp2.id)
    await check()


async def new_session(
    mgr: SessionManager, messages: int = 0, *, agent: str | None = None, user_id: str | None = None
) -> Session:
    """A session of a fresh agent and user (unless given), holding ``m1 .. m<messages>``."""
    session = await mgr.create(agent or unique("agent"), user_id=user_id or unique("user"))
    if messages:
        await session.append_messages(numbered(messages))
    return session


async def texts(session: Session, last: int | None = None) -> list[str]:
    """The text of each message in the session's history (or its tail)."""
    return [m.text for m in await session.get_messages(last=last)]


async def snapshot(session: Session) -> tuple[SessionInfo, list[Message], list[Checkpoint]]:
    """Everything a refused call must leave as it was."""
    return await session.info(), await session.get_messages(), await session.list_checkpoints()


async def listed(
    mgr: SessionManager,
    *,
    agent: str | None = None,
    user_id: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> list[str]:
    """The ids a listing shows, in order, across all its pages (from ``cursor`` if given)."""
    ids: list[str] = []
    for _ in range(_MAX_PAGES):
        page = await mgr.list(agent=agent, user_id=user_id, limit=limit, cursor=cursor)
        ids.extend(info.id for info in page.items)
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor
    pytest.fail(f"the listing still had a next_cursor after {_MAX_PAGES} pages")


def assert_utc(when: datetime) -> None:
    """``when`` is timezone-aware and in UTC."""
    assert when.tzinfo is not None, f"{when!r} is naive; store and return UTC-aware times"
    assert when.utcoffset() == timedelta(0), f"{when!r} is not in UTC"


def backend_calls(backend: Backend, session_id: str) -> dict[str, Call]:
    """One call of each per-session protocol method on ``session_id``."""
    return {
        "get_session": lambda: backend.get_session(session_id),
        "get_messages": lambda: backend.get_messages(session_id),
        "get_messages(last=2)": lambda: backend.get_messages(session_id, last=2),
        "append_messages": lambda: backend.append_messages(session_id, [Message.user("late")]),
        "create_checkpoint": lambda: backend.create_checkpoint(session_id, new_id()),
        "list_checkpoints": lambda: backend.list_checkpoints(session_id),
        "restore_checkpoint": lambda: backend.restore_checkpoint(
            session_id, new_id(), undo_id=new_id()
        ),
        "delete_session": lambda: backend.delete_session(session_id),
    }


async def each_raises(error: type[Exception], calls: Mapping[str, Call]) -> None:
    """Await every call; each must raise ``error``. A failure names the call."""
    for what, call in calls.items():
        try:
            await call()
        except error:
            continue
        except Exception as exc:
            pytest.fail(f"{what} raised {type(exc).__name__} ({exc}), not {error.__name__}")
        pytest.fail(f"{what} did not raise {error.__name__}")
