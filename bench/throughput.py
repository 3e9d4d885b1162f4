"""Throughput with 4 processes appending at once, to one shared session and to one each."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from typing import Any

from aixgo import Message
from aixgo.session import Capability, SessionManager
from timing import Result

PROCESSES = 4


def _worker(url: str, session_id: str | None, seconds: float, ready: Any, q: mp.Queue[int]) -> None:
    async def go() -> int:
        async with SessionManager(url) as mgr:
            s = await (mgr.get(session_id) if session_id else mgr.create("bench-tp", user_id="w"))
            ready.wait()  # every process has imported and connected: start together
            n, end = 0, time.time() + seconds
            while time.time() < end:
                await s.append_message(Message.user("throughput"))
                n += 1
            return n

    q.put(asyncio.run(go()))


def _collect(q: mp.Queue[int], count: int, timeout: float) -> int:
    return sum(q.get(timeout=timeout) for _ in range(count))


async def _shared_session(url: str) -> str:
    async with SessionManager(url) as mgr:
        return (await mgr.create("bench-tp", user_id="shared")).id


async def measure(name: str, url: str, seconds: float) -> list[Result]:
    ctx = mp.get_context("spawn")
    out = []
    for mode in ("shared", "separate"):
        sid = await _shared_session(url) if mode == "shared" else None
        q: mp.Queue[int] = ctx.Queue()
        ready = ctx.Barrier(PROCESSES)
        procs = [
            ctx.Process(target=_worker, args=(url, sid, seconds, ready, q))
            for _ in range(PROCESSES)
        ]
        for p in procs:
            p.start()
        total = await asyncio.to_thread(_collect, q, len(procs), seconds + 60)
        for p in procs:
            await asyncio.to_thread(p.join)
        out.append(
            Result(
                name, f"throughput_{mode}", PROCESSES, total / seconds, None, total, unit="ops/s"
            )
        )
        print(
            f"   throughput {mode:<9} {total / seconds:>10.0f} appends/s with {PROCESSES} processes"
        )
    return out


async def run_all(
    targets: list[tuple[str, str, frozenset[Capability]]], seconds: float
) -> list[Result]:
    results: list[Result] = []
    for name, url, caps in targets:
        if Capability.MULTI_PROCESS in caps:
            print(f"== {name}: {PROCESSES} processes")
            results += await measure(name, url, seconds)
    return results
