"""Timing: medians and p99 of repeated async operations, within a time budget."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

#: The paired remote-call operation (bench/remote.py writes it, bench/report.py checks it).
ECHO_OP = "unary echo, stateless"


def in_turns(subject: str, other: str) -> str:
    """The name of ``subject``'s results from a pair with ``other``, for a subject timed in
    several pairs (an aixgo backend against each peer, a peer against each backend): each
    pair's two results stay apart from every other pair's and from the sequential phase's
    (``pair`` runs, ``bench/run.py``; ``bench/report.py`` reads them back by these names)."""
    return f"{subject}{IN_TURNS_WITH}{other})"


IN_TURNS_WITH = " (in turns with "


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


async def measure_pair(
    names: tuple[str, str],
    op: str,
    fns: tuple[Callable[[], Awaitable[object]], Callable[[], Awaitable[object]]],
    *,
    runs: int,
    warmup: int = 20,
    budget_s: float = 20.0,
    size: int | None = None,
) -> tuple[Result, Result]:
    """Time two operations alternately (A B, then B A, ...), so both see the same machine
    load: on a shared, noisy machine the ratio of their medians is then meaningful, where two
    phases measured minutes apart can differ by the noise alone. Results are named
    ``"paired <op>"``."""
    for _ in range(warmup):
        for fn in fns:
            await fn()
    deadline = time.perf_counter() + budget_s
    samples: tuple[list[float], list[float]] = ([], [])
    for i in range(runs):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for k in order:
            t0 = time.perf_counter_ns()
            await fns[k]()
            samples[k].append((time.perf_counter_ns() - t0) / 1000)
        if time.perf_counter() > deadline:
            break
    out = []
    for name, got in zip(names, samples, strict=True):
        got.sort()
        n = len(got)
        note = "" if n == runs else f"budget: {n} of {runs} runs"
        if n < 10:
            out.append(Result(name, f"paired {op}", size, None, None, n, f"too slow: {note}"))
            continue
        p99 = got[min(n - 1, int(n * 0.99))]
        out.append(Result(name, f"paired {op}", size, statistics.median(got), p99, n, note))
    return out[0], out[1]


async def pair(
    a: Any,
    b: Any,
    op: str,
    *,
    runs: int,
    budget_s: float,
    size: int | None = None,
    names: tuple[str, str] | None = None,
) -> tuple[Result, Result]:
    """``a.op`` and ``b.op`` of two bench subjects timed in turns (:func:`measure_pair`),
    named ``names`` (default: the subjects' names), with one line printed: both medians and
    their ratio."""
    ra, rb = await measure_pair(
        names or (a.name, b.name), op, (getattr(a, op), getattr(b, op)),
        runs=runs, budget_s=budget_s, size=size,
    )  # fmt: skip
    ratio = ra.median_us / rb.median_us if ra.median_us and rb.median_us else None
    shown = f"{ratio:.2f}x" if ratio else "-"
    print(f"   {op:<13} {size or '':>9} {ra.median_us or 0:>10.1f} / "
          f"{rb.median_us or 0:.1f} us = {shown}  {ra.note or rb.note}", flush=True)  # fmt: skip
    return ra, rb
