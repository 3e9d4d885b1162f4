"""Timing: medians and p99 of repeated async operations, within a time budget."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass
class Result:
    """One measured operation of one subject."""

    subject: str
    op: str
    size: int | None  # history length for size-dependent operations
    median_us: float | None
    p99_us: float | None
    samples: int
    note: str = ""  # e.g. "too slow: over budget", "not supported"
    unit: str = "us"  # "us" for latencies; throughput and memory say theirs

    @property
    def ok(self) -> bool:
        return self.median_us is not None


async def measure(
    subject: str,
    op: str,
    fn: Callable[[], Awaitable[object]],
    *,
    runs: int,
    warmup: int = 5,
    budget_s: float = 20.0,
    size: int | None = None,
) -> Result:
    """Time ``runs`` calls of ``fn`` (after ``warmup``); stop early, and say so, when the
    budget runs out before 10 samples."""
    deadline = time.perf_counter() + budget_s
    for _ in range(warmup):
        await fn()
        if time.perf_counter() > deadline:
            return Result(subject, op, size, None, None, 0, f"too slow: warm-up over {budget_s:g}s")
    samples: list[float] = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        await fn()
        samples.append((time.perf_counter_ns() - t0) / 1000)
        if time.perf_counter() > deadline:
            break
    if len(samples) < 10:
        return Result(subject, op, size, None, None, len(samples), f"too slow: over {budget_s:g}s")
    samples.sort()
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    note = "" if len(samples) == runs else f"budget: {len(samples)} of {runs} runs"
    return Result(subject, op, size, statistics.median(samples), p99, len(samples), note)
