"""Turns and first calls on a store shared by several runtimes and processes.

Every test takes the store from the ``shared_store`` fixture, so the same tests run on any
backend that several processes can share: add its name to the fixture's ``params`` (the
redis:// and postgresql:// stores come from ``redis_url`` and ``pg_url`` in conftest.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from aixgo import Message, Runtime
from aixgo.errors import ConflictError
from aixgo.identifiers import new_id
from aixgo.runtime import REPLY_TO
from aixgo.session import Backend, SessionManager, open_backend

WORKER = str(Path(__file__).with_name("turn_worker.py"))
# Workers need no agent plugin; importing the ReAct agent's model client costs seconds.
WORKER_ENV = {**os.environ, "AIXGO_DISABLE_PLUGINS": "react"}
_OPTIONAL = frozenset({"get_or_create_session", "acquire_turn", "renew_turn", "release_turn"})


@pytest.fixture(params=["file", "redis", "postgresql"])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store that every runtime and process of a test shares."""
    urls: dict[str, Callable[[], str]] = {
        "file": lambda: f"file://{tmp_path}/store",
        "redis": lambda: str(request.getfixturevalue("redis_url")),
        "postgresql": lambda: str(request.getfixturevalue("pg_url")),
    }
    return urls[request.param]()


class Plain:
    """A backend seen without its optional capabilities, as a third-party backend that has
    not implemented them would be (the runtime then uses the optimistic turn protocol)."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.capabilities = inner.capabilities

    def __getattr__(self, name: str) -> Any:
        if name in _OPTIONAL or name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.inner, name)


class Jammed(Plain):
    """Writes that state ``expected_seq`` meet ``jam`` conflicts in a row, as a call losing
    race after race under heavy concurrent use would; ``before_last`` runs before the last
    one (another runtime's turn starts there)."""

    def __init__(self, inner: Backend, *, plain: bool) -> None:
        super().__init__(inner)
        self.plain = plain
        self.jam = 0
        self.before_last: Callable[[], Awaitable[None]] | None = None

    def __getattr__(self, name: str) -> Any:
        if self.plain:
            return super().__getattr__(name)
        return getattr(self.inner, name)

    async def append_messages(
        self, session_id: str, messages: Sequence[Message], *, expected_seq: int | None = None
    ) -> list[Message]:
        if self.jam and expected_seq is not None:
            self.jam -= 1
            if not self.jam and self.before_last is not None:
                await self.before_last()
            raise ConflictError("another writer appended first (jammed)")
        return await self.inner.append_messages(session_id, messages, expected_seq=expected_seq)


def assert_alternates(history: list[Message]) -> None:
    """Every input is followed at once by its own reply."""
    assert len(history) % 2 == 0, [m.text for m in history]
    for question, answer in zip(history[::2], history[1::2], strict=True):
        assert question.role == "user", [m.text for m in history]
        assert answer.metadata.get(REPLY_TO) == question.id, [m.text for m in history]
    assert [m.seq for m in history] == list(range(1, len(history) + 1))


# -- two runtimes in one process -----------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", ["leases", "optimistic"])
async def test_a_lost_race_to_store_the_input_never_unblocks_the_next_call(
    shared_store: str, protocol: str
) -> None:
    # Issue #21: a call that failed storing its input after repeated conflicts marked the
    # session's last message as abandoned. That message was the input of the runtime that
    # won the race, whose turn was still running: the loser's next call skipped the wait
    # and interleaved with it.
    plain = protocol == "optimistic"
    started, gate = asyncio.Event(), asyncio.Event()

    class Slow:
        async def execute(self, input: Message) -> Message:
            started.set()
            await gate.wait()
            return Message.assistant("re: " + input.text)

    class Quick:
        async def execute(self, input: Message) -> Message:
            return Message.assistant("re: " + input.text)

    winner_backend = Plain(open_backend(shared_store)) if plain else open_backend(shared_store)
    loser_backend = Jammed(open_backend(shared_store), plain=plain)
    async with SessionManager(winner_backend) as m1, SessionManager(loser_backend) as m2:
        s = await m1.create("chat", user_id="alice")
        winner, loser = Runtime(session_manager=m1, timeout=20), Runtime(session_manager=m2)
        winner.register("chat", Slow())
        loser.register("chat", Quick())
        async with winner, loser:
            tasks: list[asyncio.Task[Message]] = []

            async def winner_starts() -> None:
                first = winner.call_with_session("chat", Message.user("first"), s.id)
                tasks.append(asyncio.create_task(first))
                if plain:  # its input is stored now, its agent runs
                    await started.wait()
                else:  # it waits for the loser's lease
                    await asyncio.sleep(0.05)

            loser_backend.jam, loser_backend.before_last = 8, winner_starts
            try:
                with pytest.raises(ConflictError):
                    await loser.call_with_session("chat", Message.user("lost"), s.id)
                await started.wait()  # the winner's turn runs
                nxt = loser.call_with_session("chat", Message.user("next"), s.id)
                tasks.append(asyncio.create_task(nxt))
                await asyncio.sleep(0.3)
                assert not tasks[-1].done()  # it waits for the winner's turn
            finally:
                gate.set()
                await asyncio.gather(*tasks, return_exceptions=True)
            for task in tasks:
                task.result()
        history = await s.get_messages()
    assert [m.text for m in history] == ["first", "re: first", "next", "re: next"]
    assert_alternates(history)


# -- separate processes ----------------------------------------------------------------------


def spawn(*args: str) -> subprocess.Popen[str]:
    """Start turn_worker.py and wait until it says it is ready."""
    proc = subprocess.Popen(
        [sys.executable, WORKER, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=WORKER_ENV,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"worker failed to start: {line!r} {err}")
    return proc


def release(procs: list[subprocess.Popen[str]]) -> list[str]:
    """Send the ready workers "go" together; their outputs once they all succeeded."""
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        outs.append(out)
    return outs


async def histories(url: str, users: Sequence[str]) -> dict[str, list[Message]]:
    """Each user's only session with "chat", as stored."""
    out = {}
    async with SessionManager(url) as mgr:
        for user in users:
            page = await mgr.list(agent="chat", user_id=user)
            assert len(page.items) == 1, f"{user} has {len(page.items)} sessions"
            out[user] = await (await mgr.get(page.items[0].id)).get_messages()
    return out


@pytest.mark.slow
def test_processes_racing_a_new_users_first_call_share_one_session(shared_store: str) -> None:
    users = [f"newcomer-{i}" for i in range(8)]
    procs = [spawn("first", shared_store, *users) for _ in range(4)]
    release(procs)
    for history in asyncio.run(histories(shared_store, users)).values():  # one session each
        assert len(history) == 8
        assert_alternates(history)


@pytest.mark.slow
def test_four_processes_queue_turns_on_shared_sessions(shared_store: str) -> None:
    users, turns = ["u1", "u2", "u3"], 6
    procs = [spawn("drive", shared_store, "queue", f"p{k}", str(turns), *users) for k in range(4)]
    lines = [line.split() for out in release(procs) for line in out.splitlines()]
    assert [kind for kind, _ in lines] == ["ok"] * (4 * len(users) * turns)  # no ConflictError
    stored = asyncio.run(histories(shared_store, users))
    for user, history in stored.items():
        assert len(history) == 2 * 4 * turns  # nothing lost
        assert_alternates(history)
        for k in range(4):  # each process's turns in its own order
            mine = [m.text for m in history[::2] if m.text.startswith(f"p{k} ")]
            assert mine == [f"p{k} {user} {i}" for i in range(turns)]
    assert {mid for _, mid in lines} == {m.id for h in stored.values() for m in h[::2]}


@pytest.mark.slow
def test_four_processes_under_reject_get_typed_conflicts(shared_store: str) -> None:
    users, turns = ["u1", "u2"], 6
    procs = [spawn("drive", shared_store, "reject", f"p{k}", str(turns), *users) for k in range(4)]
    lines = [line.split() for out in release(procs) for line in out.splitlines()]
    answered = {mid for kind, mid in lines if kind == "ok"}
    refused = {mid for kind, mid in lines if kind == "conflict"}
    assert len(answered) + len(refused) == 4 * len(users) * turns
    assert refused, "no call was refused: the turns never overlapped"
    stored = asyncio.run(histories(shared_store, users))
    for history in stored.values():
        assert_alternates(history)
    inputs = {m.id for h in stored.values() for m in h[::2]}
    assert inputs == answered  # a refused call wrote nothing


@pytest.mark.slow
def test_a_process_killed_holding_the_lease_is_outlived_and_its_turn_resumed(
    shared_store: str,
) -> None:
    dead_id, ttl = new_id(), 1.0
    proc = subprocess.Popen(
        [sys.executable, WORKER, "hold", shared_store, "alice", dead_id, str(ttl)],
        stdout=subprocess.PIPE,
        text=True,
        env=WORKER_ENV,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "running"  # its turn holds the lease
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    seen: list[str] = []

    class Chat:
        async def execute(self, input: Message) -> Message:
            seen.append(input.id)
            return Message.assistant("re: " + input.text)

    async def after() -> tuple[float, list[Message]]:
        async with Runtime(session_manager=shared_store, timeout=30) as rt:
            rt.register("chat", Chat())
            t0 = time.monotonic()
            await rt.call("chat", Message.user("next"), user="alice")  # proceeds
            waited = time.monotonic() - t0
            dead = Message.user("the dead turn", id=dead_id)
            out = await rt.call("chat", dead, user="alice")  # resumes the dead turn
            again = await rt.call("chat", dead, user="alice")  # answered: not run again
            assert again == out
            s = await rt.session_manager.get_or_create("chat", "alice")
            return waited, await s.get_messages()

    waited, history = asyncio.run(after())
    assert waited < ttl + 5  # the dead holder's lease ended within its ttl
    assert [m.text for m in history] == ["the dead turn", "next", "re: next", "re: the dead turn"]
    assert [m.id for m in history].count(dead_id) == 1  # its input stored once
    assert history[1].id == seen[0] and seen[1] == dead_id and len(seen) == 2
    assert history[2].metadata[REPLY_TO] == history[1].id
    assert history[3].metadata[REPLY_TO] == dead_id
