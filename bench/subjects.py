"""What the bench measures: aixgo backends through the public API, and the raw floors.

Every subject offers the operations it can (``append_one``, ``append_batch``, ``create``,
``fill``/``tail``/``history``, ``checkpoint``, ``restore``, ``fill_sessions``/``list_page``);
the runner measures those present. All subjects append the same message, so ratios compare
like with like.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

from aixgo import Message
from aixgo.session import Capability, Session, SessionManager
from aixgo.session.codec import encode_message

TEXT = (
    "Could you find me a flight from Oslo to Lisbon next Friday, morning departure, "
    "window seat, and a hotel near the old town for three nights? Budget is moderate."
)
LINE = encode_message(Message.user(TEXT)) + b"\n"
FILL_BATCH = 1000


def message() -> Message:
    return Message.user(TEXT)


class Pool:
    """Messages made ahead of time, so a timed append measures the store, not the
    construction of the message (which the raw floors do not pay either)."""

    def __init__(self, size: int = 25_000) -> None:
        self.items = [message() for _ in range(size)]

    def take(self, n: int = 1) -> list[Message]:
        if len(self.items) < n:
            self.items += [message() for _ in range(max(n, 1000))]
        out = self.items[-n:]
        del self.items[-n:]  # in place: slicing off a copy of the pool cost ~100 us per take
        return out


class Subject:
    """Base: a name, a family (aixgo, floor, peer) and the floor each operation compares to.

    A subject that can be read from implements ``add_fill(n)`` (store ``n`` more messages in
    the session that ``tail`` reads); :meth:`fill` grows it in batches until a deadline.
    """

    name = "?"
    family = "aixgo"
    floors: ClassVar[dict[str, str]] = {}
    fill_batch = FILL_BATCH
    have = 0

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def add_fill(self, n: int) -> None:
        raise NotImplementedError

    async def fill(self, size: int, deadline: float) -> None:
        """Grow the read session to ``size`` messages; TimeoutError past ``deadline``."""
        while self.have < size:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{self.name}: {self.have:,} of {size:,} messages stored")
            n = min(self.fill_batch, size - self.have)
            await self.add_fill(n)
            self.have += n


class AixgoSubject(Subject):
    """An aixgo backend, driven through SessionManager and Session like an application."""

    def __init__(self, name: str, url: str, floors: dict[str, str]) -> None:
        self.name = name
        self.url = url
        self.floors = floors
        self.mgr: SessionManager | None = None
        self.session: Session | None = None
        self.filled: Session | None = None
        self.cps: list[str] = []
        self.caps: frozenset[Capability] = frozenset()

    async def open(self) -> None:
        self.mgr = SessionManager(self.url)
        self.caps = self.mgr.backend.capabilities
        self.pool = Pool()
        await self.mgr.open()
        self.session = await self.mgr.create("bench", user_id="bench-appender")

    async def close(self) -> None:
        if self.mgr is not None:
            await self.mgr.close()

    async def append_one(self) -> None:
        assert self.session is not None
        await self.session.append_message(self.pool.take()[0])

    async def append_batch(self) -> None:
        assert self.session is not None
        await self.session.append_messages(self.pool.take(10))

    async def create(self) -> None:
        assert self.mgr is not None
        await self.mgr.create("bench-create", user_id="bench-creator")

    async def add_fill(self, n: int) -> None:
        assert self.mgr is not None
        if self.filled is None:
            self.filled = await self.mgr.create("bench-tail", user_id="bench-reader")
        await self.filled.append_messages([message() for _ in range(n)])

    async def fill(self, size: int, deadline: float) -> None:
        await super().fill(size, deadline)
        assert self.filled is not None
        self.cps = [(await self.filled.checkpoint()).id for _ in range(2)]

    async def tail(self) -> None:
        assert self.filled is not None
        msgs = await self.filled.get_messages(last=100)
        assert len(msgs) == 100

    async def history(self) -> None:
        assert self.filled is not None
        assert len(await self.filled.get_messages()) == self.have

    async def checkpoint(self) -> None:
        assert self.filled is not None
        await self.filled.checkpoint()

    async def restore(self) -> None:
        assert self.filled is not None
        # Alternate between two checkpoints of the same head: each restore moves the head.
        self.cps.reverse()
        await self.filled.restore(self.cps[0])

    async def fill_sessions(self, count: int) -> None:
        assert self.mgr is not None
        have = 0
        page = await self.mgr.list(agent="bench-list", user_id="bench-lister", limit=1000)
        have = len(page.items)
        while page.next_cursor and have < count:
            page = await self.mgr.list(
                agent="bench-list", user_id="bench-lister", limit=1000, cursor=page.next_cursor
            )
            have += len(page.items)
        for _ in range(count - have):
            await self.mgr.create("bench-list", user_id="bench-lister")

    async def list_page(self) -> None:
        assert self.mgr is not None
        page = await self.mgr.list(agent="bench-list", user_id="bench-lister", limit=50)
        assert len(page.items) == 50


class RawFile(Subject):
    """The floor for file appends: the same JSON line written to an O_APPEND file."""

    family = "floor"

    def __init__(self, fsync: bool) -> None:
        self.fsync = fsync
        self.name = "raw write+fdatasync" if fsync else "raw os.write"
        self.dir = tempfile.TemporaryDirectory(prefix="aixgo-bench-raw-")
        self.fd = -1

    async def open(self) -> None:
        path = Path(self.dir.name) / "raw.jsonl"
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    async def close(self) -> None:
        os.close(self.fd)
        self.dir.cleanup()

    async def append_one(self) -> None:
        os.write(self.fd, LINE)
        if self.fsync:
            os.fdatasync(self.fd)


class LoopTurn(Subject):
    """One turn of the event loop (``await asyncio.sleep(0)``): what every operation of the
    local stores (memory, file) pays so that other tasks can run during a loop of calls."""

    family = "floor"
    name = "raw event-loop turn"

    async def append_one(self) -> None:
        await asyncio.sleep(0)


def file_url(base: str, **options: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return f"file://{base}" + (f"?{query}" if query else "")


def temp_store() -> Any:
    return tempfile.TemporaryDirectory(prefix="aixgo-bench-")
