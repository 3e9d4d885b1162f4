"""Streaming: how soon a streamed call's first event arrives, against its full reply and against
the same turn through ``call``, for the ReAct agent on the scripted model (no model latency: what
is left is aixgo's own cost per turn and per event).

Each sample is a new user's first turn on ``memory://`` with a reply of ``WORDS`` words, so it
streams ``WORDS`` deltas; stream and call samples alternate, so both see the same machine load.
"""

from __future__ import annotations

import statistics
import time

from aixgo import Message, Runtime
from aixgo_agent_react import ReActAgent
from timing import Result

WORDS = 200
SUBJECT = "aixgo memory:// ReAct scripted"


def _result(op: str, samples: list[float], note: str) -> Result:
    samples.sort()
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return Result(SUBJECT, op, WORDS, statistics.median(samples), p99, len(samples), note)


async def run(*, runs: int, budget_s: float) -> list[Result]:
    """Time-to-first-event and time-to-reply of ``stream``, and ``call``, alternately."""
    text = " ".join(f"w{i}" for i in range(WORDS - 2))  # the echo adds "You said: "
    first: list[float] = []
    full: list[float] = []
    called: list[float] = []
    print(f"== {SUBJECT}: streamed turns ({WORDS} deltas)", flush=True)
    async with Runtime(session_manager="memory://", tracing=False) as rt:
        rt.register("echo", ReActAgent("scripted:echo"))

        async def stream(user: str) -> None:
            t0 = time.perf_counter_ns()
            got_first = False
            async for ev in rt.stream("echo", Message.user(text), user=user):
                if not got_first:
                    first.append((time.perf_counter_ns() - t0) / 1000)
                    got_first = True
                if ev.type == "reply":
                    full.append((time.perf_counter_ns() - t0) / 1000)

        async def call(user: str) -> None:
            t0 = time.perf_counter_ns()
            await rt.call("echo", Message.user(text), user=user)
            called.append((time.perf_counter_ns() - t0) / 1000)

        for i in range(5):  # warm-up
            await stream(f"warm-s{i}")
            await call(f"warm-c{i}")
        for samples in (first, full, called):
            samples.clear()
        deadline = time.perf_counter() + budget_s
        for i in range(runs):
            order = (stream, call) if i % 2 == 0 else (call, stream)
            for fn in order:
                await fn(f"u{i}-{fn.__name__}")
            if time.perf_counter() > deadline:
                break
    note = "" if len(called) == runs else f"budget: {len(called)} of {runs} runs"
    out = [
        _result("stream_first_event", first, note),
        _result("stream_full_reply", full, note),
        _result("call_full_reply", called, note),
    ]
    for r in out:
        print(f"   {r.op:<20} {r.median_us or 0:>10.1f} us  p99 {r.p99_us or 0:,.1f}")
    return out
