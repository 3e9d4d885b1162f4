"""SimpleBackend: the whole conformance kit over two simple stores (Python dicts, and the
``sqlite://`` example plugin), real processes sharing one SQLite file, and the optional
capabilities SimpleBackend adds."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType

import pytest
import pytest_asyncio
from aixgo import Message, plugins
from aixgo.identifiers import new_id
from aixgo.message import utc_now
from aixgo.session import (
    Backend,
    SessionInfo,
    SessionManager,
    SessionPerUser,
    TurnLeases,
    open_backend,
)
from aixgo.session.codec import with_seq
from aixgo.session.memory import MemoryBackend
from aixgo.session.simple import (
    HeadRow,
    MessageRow,
    SimpleBackend,
    SimpleStore,
    StoreTransaction,
)
from aixgo.testing import BackendConformance, EncryptedConformance

EXAMPLE = Path(__file__).parents[2] / "examples" / "backend-sqlite" / "src"


class DictStore(SimpleStore, StoreTransaction):
    """The primitives over Python dicts: the base alone, with nothing a database adds. One
    transaction at a time; a failed one is undone."""

    def __init__(self) -> None:
        self.heads: dict[str, HeadRow] = {}
        self.messages: dict[tuple[str, int, int], MessageRow] = {}
        self.checkpoints: dict[str, dict[str, bytes]] = {}
        self._turn = asyncio.Lock()

    @asynccontextmanager
    async def transaction(
        self, session_id: str | None, *, write: bool
    ) -> AsyncIterator[StoreTransaction]:
        async with self._turn:
            cps = {k: dict(v) for k, v in self.checkpoints.items()}
            saved = dict(self.heads), dict(self.messages), cps
            try:
                yield self
            except BaseException:
                self.heads, self.messages, self.checkpoints = saved
                raise

    async def get_head(self, session_id: str) -> bytes | None:
        row = self.heads.get(session_id)
        return None if row is None else row.data

    async def put_head(self, head: HeadRow) -> None:
        self.heads[head.session_id] = head

    async def list_heads(
        self, agent: str | None, user_id: str | None, after: tuple[int, str] | None, limit: int
    ) -> list[bytes]:
        rows = [
            h
            for h in self.heads.values()
            if agent in (None, h.agent)
            and user_id in (None, h.user_id)
            and (after is None or (h.updated_at, h.session_id) < after)
        ]
        rows.sort(key=lambda h: (h.updated_at, h.session_id), reverse=True)
        return [h.data for h in rows[:limit]]

    async def delete_session(self, session_id: str) -> None:
        del self.heads[session_id]
        self.checkpoints.pop(session_id, None)
        for key in [k for k in self.messages if k[0] == session_id]:
            del self.messages[key]

    async def insert_messages(self, session_id: str, rows: Sequence[MessageRow]) -> None:
        for r in rows:
            assert (session_id, r.branch, r.seq) not in self.messages, "a key was reused"
            self.messages[session_id, r.branch, r.seq] = r

    async def read_messages(self, session_id: str, branch: int, lo: int, hi: int) -> list[bytes]:
        rows = (self.messages.get((session_id, branch, seq)) for seq in range(lo, hi + 1))
        return [r.data for r in rows if r is not None]

    async def find_messages(self, session_id: str, message_ids: Sequence[str]) -> list[MessageRow]:
        wanted = set(message_ids)
        return [
            r for k, r in self.messages.items() if k[0] == session_id and r.message_id in wanted
        ]

    async def insert_checkpoint(self, session_id: str, checkpoint_id: str, data: bytes) -> None:
        self.checkpoints.setdefault(session_id, {})[checkpoint_id] = data

    async def get_checkpoint(self, session_id: str, checkpoint_id: str) -> bytes | None:
        return self.checkpoints.get(session_id, {}).get(checkpoint_id)

    async def list_checkpoints(self, session_id: str) -> list[bytes]:
        return list(self.checkpoints.get(session_id, {}).values())


class TestDictStoreConformance(BackendConformance):
    @pytest_asyncio.fixture
    async def backend(self) -> AsyncIterator[Backend]:
        backend = SimpleBackend(DictStore(), "dicts://")
        yield backend
        await backend.close()


class TestDictStoreEncrypted(EncryptedConformance):
    """The kit through encryption at rest on a store without ``ReadThrough``: the wrapper
    opens what ``get_messages`` returns, through its own cache of opened messages."""

    @pytest_asyncio.fixture
    async def plain_backend(self) -> AsyncIterator[Backend]:
        backend = SimpleBackend(DictStore(), "dicts://")
        yield backend
        await backend.close()


def _sqlite_plugin() -> ModuleType:
    if str(EXAMPLE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE))
    import aixgo_backend_sqlite

    return aixgo_backend_sqlite


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    """A fresh ``sqlite://`` URL, with the example plugin registered as if installed."""
    plugins.register_plugin(_sqlite_plugin(), "sqlite-example", "aixgo-backend-sqlite")
    yield f"sqlite://{tmp_path}/db/sessions.db"
    plugins.unregister_plugin("sqlite-example")


class TestSqliteConformance(BackendConformance):
    @pytest.fixture
    def backend_url(self, sqlite_url: str) -> str:
        return sqlite_url

    @pytest_asyncio.fixture
    async def backend(self, backend_url: str) -> AsyncIterator[Backend]:
        backend = open_backend(backend_url)
        yield backend
        await backend.close()


# Real processes on one SQLite file: the kit's "two instances" share one process.

_WORKER = textwrap.dedent(
    """
    import asyncio, json, sys
    from aixgo import Message
    from aixgo.session import SessionInfo, SessionManager
    from aixgo_backend_sqlite import SqliteBackend

    async def main(url, mode, arg, name):
        async with SessionManager(SqliteBackend(url)) as mgr:
            if mode == "append":
                s = await mgr.get(arg)
                for b in range(10):
                    batch = [Message.user(f"{name}.{b}.{i}") for i in range(3)]
                    await s.append_messages(batch)
            else:
                info = SessionInfo.model_validate_json(arg)
                got, created = await mgr.backend.get_or_create_session(info)
                print(json.dumps([got.id, created]))

    asyncio.run(main(*sys.argv[1:]))
    """
)


def _run_workers(url: str, mode: str, args: list[str]) -> list[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(EXAMPLE), *sys.path])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, url, mode, arg, f"p{i}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, arg in enumerate(args)
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(out)
    return outs


@pytest.mark.asyncio
async def test_processes_appending_to_one_session_lose_and_interleave_nothing(
    sqlite_url: str,
) -> None:
    async with SessionManager(sqlite_url) as mgr:
        s = await mgr.create("agent", user_id="u")
        await asyncio.to_thread(_run_workers, sqlite_url, "append", [s.id] * 4)
        history = await s.get_messages()
    assert [m.seq for m in history] == list(range(1, 121))
    texts = [m.text for m in history]
    assert sorted(texts) == sorted(f"p{p}.{b}.{i}" for p in range(4) for b in range(10)
                                   for i in range(3))  # fmt: skip
    for start in range(0, 120, 3):  # each batch whole and in order, batches of a process too
        name, batch, _ = texts[start].split(".")
        assert texts[start : start + 3] == [f"{name}.{batch}.{i}" for i in range(3)]
    for p in range(4):
        mine = [t.split(".")[1] for t in texts[::3] if t.startswith(f"p{p}.")]
        assert mine == [str(b) for b in range(10)]


@pytest.mark.asyncio
async def test_processes_racing_get_or_create_make_one_session(sqlite_url: str) -> None:
    now = utc_now()
    infos = [
        SessionInfo(id=new_id(), agent="a", user_id="u", created_at=now, updated_at=now)
        for _ in range(4)
    ]
    outs = await asyncio.to_thread(
        _run_workers, sqlite_url, "get_or_create", [i.model_dump_json() for i in infos]
    )
    results = [json.loads(out) for out in outs]
    assert sum(created for _, created in results) == 1
    assert len({sid for sid, _ in results}) == 1
    async with SessionManager(sqlite_url) as mgr:
        assert [i.id for i in (await mgr.list(agent="a")).items] == [results[0][0]]


def test_the_database_file_is_private(sqlite_url: str) -> None:
    async def touch() -> None:
        async with SessionManager(sqlite_url) as mgr:
            await mgr.create("agent")

    asyncio.run(touch())
    path = Path(sqlite_url.removeprefix("sqlite://"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


@pytest.mark.asyncio
@pytest.mark.parametrize("round_", range(8))
async def test_many_openers_of_a_new_sqlite_file_all_open(sqlite_url: str, round_: int) -> None:
    # Switching a new file to WAL fails at once ("database is locked") while another opener
    # switches it; every opener must still open (seen as a BackendUnavailable in CI).
    url = f"{sqlite_url.rsplit('/', 1)[0]}/race{round_}.db"
    managers = [SessionManager(url) for _ in range(8)]
    try:
        await asyncio.gather(*(m.open() for m in managers))
        await asyncio.gather(*(m.create("agent") for m in managers))
        assert len((await managers[0].list(agent="agent")).items) == 8
    finally:
        for m in managers:
            await m.close()


def test_sqlite_plugin_module_fits_in_150_lines() -> None:
    source = EXAMPLE / "aixgo_backend_sqlite" / "__init__.py"
    assert len(source.read_text().splitlines()) <= 150


# The optional capabilities SimpleBackend adds, on the dict store.


@pytest.mark.asyncio
async def test_get_or_create_session_creates_once_then_finds() -> None:
    backend = SimpleBackend(DictStore())
    assert isinstance(backend, SessionPerUser)
    now = utc_now()
    infos = [
        SessionInfo(id=new_id(), agent="a", user_id="u", created_at=now, updated_at=now)
        for _ in range(5)
    ]
    results = await asyncio.gather(*(backend.get_or_create_session(i) for i in infos))
    assert [created for _, created in results] == [True, False, False, False, False]
    assert {got.id for got, _ in results} == {infos[0].id}
    other = infos[1].model_copy(update={"user_id": "v"})
    assert await backend.get_or_create_session(other) == (other, True)


@pytest.mark.asyncio
async def test_turn_leases_fence_and_expire() -> None:
    backend = SimpleBackend(DictStore())
    assert isinstance(backend, TurnLeases)
    s = await SessionManager(backend).create("agent")
    first = await backend.acquire_turn(s.id, "a", 30)
    assert first is not None
    assert await backend.acquire_turn(s.id, "b", 30) is None
    assert await backend.acquire_turn(s.id, "a", 30) == first  # a renewal keeps the token
    assert await backend.renew_turn(s.id, "a", 0.01)
    assert not await backend.renew_turn(s.id, "b", 30)
    await asyncio.sleep(0.02)
    assert not await backend.renew_turn(s.id, "a", 30)  # expired
    second = await backend.acquire_turn(s.id, "b", 30)
    assert second is not None and second > first
    await backend.release_turn(s.id, "a")  # not the holder: nothing happens
    assert await backend.acquire_turn(s.id, "a", 30) is None
    await backend.release_turn(s.id, "b")
    third = await backend.acquire_turn(s.id, "a", 30)
    assert third is not None and third > second
    assert (await s.info()).message_count == 0


# The kit notices a backend that hands out the caller's containers.


class SharesState(MemoryBackend):
    """Returns the caller's own messages (stamped with seq) from an append."""

    async def append_messages(
        self, session_id: str, messages: Sequence[Message], *, expected_seq: int | None = None
    ) -> list[Message]:
        stored = await super().append_messages(session_id, messages, expected_seq=expected_seq)
        return [with_seq(m, s.seq) for m, s in zip(messages, stored, strict=True)]


@pytest.mark.asyncio
async def test_the_kit_fails_a_backend_that_shares_state() -> None:
    backend = SharesState()
    try:
        with pytest.raises(AssertionError):
            await BackendConformance().test_returned_messages_share_no_state_with_the_caller(
                backend
            )
    finally:
        await backend.close()


# SQLite specifics: a batch larger than one find_messages call, and a cancelled call.


@pytest.mark.asyncio
async def test_a_batch_beyond_one_lookup_is_stored_and_repeated(sqlite_url: str) -> None:
    async with SessionManager(sqlite_url) as mgr:
        s = await mgr.create("agent")
        batch = [Message.user(f"m{i}") for i in range(1234)]
        stored = await s.append_messages(batch)
        assert await s.append_messages(batch, expected_seq=0) == stored
        assert [m.seq for m in await s.get_messages(last=3)] == [1232, 1233, 1234]


@pytest.mark.asyncio
async def test_a_cancelled_append_leaves_no_transaction_open(sqlite_url: str) -> None:
    async with SessionManager(sqlite_url) as mgr:
        s = await mgr.create("agent")
        tasks: list[asyncio.Task[list[Message]]] = []
        for delay in (0, 0.001, 0.003, 0.01, 0.03, 2.0):  # the last one completes
            batch = [Message.user("x") for _ in range(50)]
            tasks.append(asyncio.create_task(s.append_messages(batch)))
            await asyncio.sleep(delay)
            tasks[-1].cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(o, list | asyncio.CancelledError) for o in outcomes), outcomes
        count = len(await s.get_messages())
        assert count % 50 == 0 and count >= 50  # each batch whole or not at all
        assert (await s.append_message(Message.user("after"))).seq == count + 1
        async with SessionManager(sqlite_url) as other:  # and no write lock is left held
            assert (
                await (await other.get(s.id)).append_message(Message.user("b"))
            ).seq == count + 2
