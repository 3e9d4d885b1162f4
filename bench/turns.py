"""Turns on shared users: several processes (memory://: runtimes in one process) calling an
echo agent for the same users at once, so every turn takes and gives up its session's turn
lease against the others. Reports turns/s and the latency of one ``Runtime.call`` (median,
p99): what the lease costs where turns queue for a session."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import statistics
import time
from typing import Any

from aixgo import Message, Runtime
from aixgo.session import Capability, SessionManager
from timing import Result

PROCESSES = 4
USERS = 4


class _Echo:
    async def execute(self, input: Message) -> Message:
        return Message.assistant(input.text)


async def _drive(rt: Runtime, turns: int, tag: str) -> list[float]:
    """Every user's turns, users at once; the latency of each call in µs."""

    async def one(user: str) -> list[float]:
        out = []
        for i in range(turns):
            t0 = time.perf_counter()
            await rt.call("echo", Message.user(f"{tag} {i}"), user=user)
            out.append((time.perf_counter() - t0) * 1e6)
        return out

    per_user = await asyncio.gather(*(one(f"shared-{u}") for u in range(USERS)))
    return [x for xs in per_user for x in xs]


def _worker(url: str, turns: int, tag: str, ready: Any, q: mp.Queue[list[float]]) -> None:
    os.environ["AIXGO_DISABLE_PLUGINS"] = "react"  # no agent plugin needed: a faster start

    async def go() -> list[float]:
        async with Runtime(session_manager=url, timeout=60) as rt:
            rt.register("echo", _Echo())
            for u in range(USERS):  # the sessions exist before the clock starts
                await rt.session_manager.get_or_create("echo", f"shared-{u}")
            ready.wait()
            return await _drive(rt, turns, tag)

    q.put(asyncio.run(go()))


def _collect(q: mp.Queue[list[float]], count: int, timeout: float) -> list[list[float]]:
    return [q.get(timeout=timeout) for _ in range(count)]


async def _in_process(url: str, turns: int) -> tuple[list[float], float]:
    """memory://: runtimes sharing one store object, as processes share a file or server."""
    async with SessionManager(url) as mgr:
        runtimes = [Runtime(session_manager=mgr, timeout=60) for _ in range(PROCESSES)]
        for rt in runtimes:
            rt.register("echo", _Echo())
            await rt.start()
        t0 = time.perf_counter()
        lat = await asyncio.gather(*(_drive(rt, turns, f"r{k}") for k, rt in enumerate(runtimes)))
        elapsed = time.perf_counter() - t0
        for rt in runtimes:
            await rt.stop()
    return [x for xs in lat for x in xs], elapsed


async def measure(name: str, url: str, turns: int, separate: bool) -> list[Result]:
    if separate:
        ctx = mp.get_context("spawn")
        q: mp.Queue[list[float]] = ctx.Queue()
        ready = ctx.Barrier(PROCESSES + 1)
        procs = [
            ctx.Process(target=_worker, args=(url, turns, f"p{k}", ready, q))
            for k in range(PROCESSES)
        ]
        for p in procs:
            p.start()
        await asyncio.to_thread(ready.wait)
        t0 = time.perf_counter()
        lat = [x for xs in await asyncio.to_thread(_collect, q, PROCESSES, 600) for x in xs]
        elapsed = time.perf_counter() - t0
        for p in procs:
            await asyncio.to_thread(p.join)
    else:
        lat, elapsed = await _in_process(url, turns)
    lat.sort()
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    who = f"{PROCESSES} {'processes' if separate else 'runtimes'} x {USERS} shared users"
    print(f"   shared-user turns {len(lat) / elapsed:>8.0f} turns/s, call median "
          f"{statistics.median(lat):,.0f} us, p99 {p99:,.0f} us ({who})")  # fmt: skip
    return [
        Result(name, "shared_user_turns", PROCESSES, len(lat) / elapsed, None, len(lat),
               note=who, unit="turns/s"),
        Result(name, "shared_user_turn", PROCESSES, statistics.median(lat), p99, len(lat),
               note=who),
    ]  # fmt: skip


async def run_all(
    targets: list[tuple[str, str, frozenset[Capability]]], turns: int
) -> list[Result]:
    results: list[Result] = []
    for name, url, caps in targets:
        separate = Capability.MULTI_PROCESS in caps
        if separate or url.startswith("memory://"):
            print(f"== {name}: turns on shared users")
            results += await measure(name, url, turns, separate)
    return results
