"""``nox -s bench``: aixgo backends side by side with the raw floors and the peers, one run.

    python bench/run.py [--quick] [--publish] [--out bench-results] [--only NAME,...]

Writes ``results.json``, ``results.md`` and ``tail-latency.png`` to ``--out``; with
``--publish`` also ``docs/performance.md``. Speed is never asserted in unit tests: this is where
the targets of the backend issues are checked, and a miss is reported, not hidden.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).parent))

import audited
import cold
import floors
import governance
import peers
import remote
import report
import rivals
import streaming
import throughput
import turns
from aixgo import plugins
from subjects import AixgoSubject, LoopTurn, RawFile, Subject, file_url, temp_store
from timing import Result, measure, pair

REDIS_URL = os.environ.get("AIXGO_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
# Names what this run leaves in shared servers (Redis key prefix, PostgreSQL schema).
BENCH_TAG = f"aixgo-bench-{os.getpid()}"
#: The history length whose whole-history read (``get_messages()``) is measured.
HISTORY_SIZE = 1_000
PG_URL = os.environ.get("AIXGO_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@dataclass(frozen=True)
class Plan:
    """How much a run measures: ``--quick`` (2-3 minutes on a 2-core VM) or full (about 20)."""

    runs: int  # timed calls per operation
    budget_s: float  # per operation
    fill_s: float  # per history size to fill (a peer too slow to fill it is reported)
    sizes: tuple[int, ...]  # history lengths for tail and checkpoint
    file_extra: tuple[int, ...]  # more sizes for the file backend (flush)
    sessions: int  # sessions of one user for the listing page
    paired_runs: int
    paired_sizes: tuple[int, ...]
    throughput_s: float  # per backend and mode
    shared_turns: int  # turns per process and shared user (turns.py)
    cold_runs: int  # fresh processes for the cold first list page (cold.py)


QUICK = Plan(
    runs=100, budget_s=3.0, fill_s=6.0, sizes=(1_000, 10_000), file_extra=(), sessions=1_000,
    paired_runs=300, paired_sizes=(1_000, 10_000), throughput_s=1.0, shared_turns=10,
    cold_runs=5,
)  # fmt: skip
FULL = Plan(
    runs=2000, budget_s=60.0, fill_s=240.0, sizes=(1_000, 10_000, 100_000), file_extra=(1_000_000,),
    sessions=10_000, paired_runs=3000, paired_sizes=(1_000, 100_000), throughput_s=10.0,
    shared_turns=100, cold_runs=20,
)  # fmt: skip


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 1):
            return True
    except OSError:
        return False


def build_subjects(quick: bool, keep: list[object]) -> list[Subject]:
    schemes = plugins.backend_schemes()
    out: list[Subject] = [
        AixgoSubject("aixgo memory://", "memory://", {}),
        RawFile(fsync=False),
        RawFile(fsync=True),
        LoopTurn(),
    ]
    if "file" in schemes:
        for mode, floor in (("flush", "raw os.write"), ("fsync", "raw write+fdatasync")):
            store = temp_store()
            keep.append(store)
            url = file_url(store.name, durability=mode)
            out.append(AixgoSubject(f"aixgo file:// ({mode})", url, {"append_one": floor}))
    out += [peers.OpenAISQLite(), peers.LangChainFile(), peers.ADKSqlite()]
    if reachable(REDIS_URL):
        redis_floor = {"append_one": floors.RawRedis.name, "tail": floors.RawRedis.name}
        if "redis" in schemes:
            prefix = f"{BENCH_TAG}:"
            out.append(AixgoSubject("aixgo redis://", f"{REDIS_URL}?prefix={prefix}", redis_floor))
        out += [
            floors.RawRedis(REDIS_URL),
            peers.OpenAIRedis(REDIS_URL),
            peers.LangChainRedis(REDIS_URL),
        ]
    if reachable(PG_URL):
        pg_floor = {"append_one": floors.RawPostgres.name, "tail": floors.RawPostgres.name}
        if "postgresql" in schemes:
            schema = BENCH_TAG.replace("-", "_")
            out.append(AixgoSubject("aixgo postgresql://", f"{PG_URL}?schema={schema}", pg_floor))
        out.append(floors.RawPostgres(PG_URL))
    return out


async def run_subject(s: Subject, plan: Plan, results: list[Result]) -> None:
    runs, budget = plan.runs, plan.budget_s
    sizes = list(plan.sizes)
    if s.name.startswith("aixgo file://") and "flush" in s.name:
        sizes += plan.file_extra
    print(f"== {s.name}", flush=True)
    started = time.perf_counter()
    try:
        await s.open()
    except Exception as exc:  # a peer that cannot even start is reported, not fatal
        print(f"   could not open: {exc!r}"[:300])
        results.append(Result(s.name, "open", None, None, None, 0, f"failed: {exc!r}"[:200]))
        return
    try:

        async def op(name: str, size: int | None = None, n: int = runs) -> None:
            fn: Callable[[], Awaitable[object]] | None = getattr(s, name, None)
            if fn is not None:
                r = await measure(s.name, name, fn, runs=n, budget_s=budget, size=size)
                print(f"   {name:<13} {size or '':>9} {r.median_us or 0:>10.1f} us  {r.note}")
                results.append(r)

        await op("create")
        await op("append_one")
        await op("append_batch")
        for size in sizes if hasattr(s, "tail") else []:
            try:
                await s.fill(size, time.perf_counter() + plan.fill_s)
            except TimeoutError as exc:
                results.append(
                    Result(s.name, "tail", size, None, None, 0, f"too slow to fill: {exc}")
                )
                break
            await op("tail", size, n=min(runs, 1000))
            if size == HISTORY_SIZE:
                await op("history", size, n=min(runs, 300))
            await op("checkpoint", size, n=min(runs, 500))
        if hasattr(s, "restore"):
            await op("restore", sizes[-1], n=min(runs, 500))
        if hasattr(s, "tail") and isinstance(s, AixgoSubject) and s.filled is not None:
            tracemalloc.start()
            await s.tail()
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            results.append(
                Result(s.name, "tail_peak_memory", sizes[-1], peak / 1024, None, 1, unit="KiB")
            )
        if hasattr(s, "list_page"):
            count = plan.sessions
            await s.fill_sessions(count)  # type: ignore[attr-defined]
            await op("list_page", count, n=min(runs, 500))
            if s.url.startswith("file://") and "flush" in s.name:
                results.append(await cold.first_page(s.name, s.url, runs=plan.cold_runs))
    finally:
        await s.close()
        print(f"   ({time.perf_counter() - started:.1f} s)", flush=True)


def build_audit_pairs(keep: list[object]) -> list[tuple[AixgoSubject, Subject]]:
    """Fresh (audited, plain) pairs of every backend: the audit log's cost."""
    schemes = plugins.backend_schemes()
    stores = [("aixgo memory://", "memory://", False)]
    if "file" in schemes:
        for mode in ("flush", "fsync"):
            store = temp_store()
            keep.append(store)
            stores.append((f"aixgo file:// ({mode})", file_url(store.name, durability=mode),
                           mode == "fsync"))  # fmt: skip
    if "redis" in schemes and reachable(REDIS_URL):
        stores.append(("aixgo redis://", f"{REDIS_URL}?prefix={BENCH_TAG}-audit:", False))
    if "postgresql" in schemes and reachable(PG_URL):
        schema = BENCH_TAG.replace("-", "_")
        stores.append(("aixgo postgresql://", f"{PG_URL}?schema={schema}", False))
    return list(audited.pairs(stores))


def build_pairs(keep: list[object]) -> list[tuple[AixgoSubject, Subject]]:
    """Fresh (aixgo backend, its raw floor) pairs for the paired phase."""
    schemes = plugins.backend_schemes()
    pairs: list[tuple[AixgoSubject, Subject]] = []
    if "file" in schemes:
        for mode, fsync in (("flush", False), ("fsync", True)):
            store = temp_store()
            keep.append(store)
            url = file_url(store.name, durability=mode)
            pairs.append((AixgoSubject(f"aixgo file:// ({mode})", url, {}), RawFile(fsync=fsync)))
    if "redis" in schemes and reachable(REDIS_URL):
        url = f"{REDIS_URL}?prefix={BENCH_TAG}-paired:"
        pairs.append((AixgoSubject("aixgo redis://", url, {}), floors.RawRedis(REDIS_URL)))
    if "postgresql" in schemes and reachable(PG_URL):
        url = f"{PG_URL}?schema={BENCH_TAG.replace('-', '_')}"
        pairs.append((AixgoSubject("aixgo postgresql://", url, {}), floors.RawPostgres(PG_URL)))
    return pairs


async def run_pair(a: AixgoSubject, b: Subject, plan: Plan, results: list[Result]) -> None:
    """The paired phase: each operation that has a floor target, timed alternately with the
    floor (see :func:`timing.measure_pair`); the targets table takes its ratios from here."""
    runs, budget = plan.paired_runs, plan.budget_s
    print(f"== paired: {a.name} / {b.name}", flush=True)
    await a.open()
    await b.open()
    try:
        results += await pair(a, b, "append_one", runs=runs, budget_s=budget)
        if hasattr(b, "tail"):
            for size in plan.paired_sizes:
                deadline = time.perf_counter() + plan.fill_s
                await a.fill(size, deadline)
                await b.fill(size, deadline)
                results += await pair(
                    a, b, "tail", runs=min(runs, 1000), budget_s=budget, size=size
                )
    finally:
        await a.close()
        await b.close()


def build_rivals(
    keep: list[object],
) -> tuple[list[AixgoSubject], list[Subject], list[rivals.OneOff]]:
    """Fresh stores of the backends with a peer target (file flush, redis, postgresql), the
    fastest peers (openai-agents' SQLiteSession and RedisSession) and the one-off pairs:
    file create against a bare create beside its store, file append against SQLiteSession's
    (the other backends' appends are held to their raw floors)."""
    schemes = plugins.backend_schemes()
    backends: list[AixgoSubject] = []
    one_offs: list[rivals.OneOff] = []
    sqlite = peers.OpenAISQLite()
    if "file" in schemes:
        tree = temp_store()
        keep.append(tree)
        url = file_url(f"{tree.name}/store", durability="flush")
        file = AixgoSubject("aixgo file:// (flush)", url, {})
        backends.append(file)
        one_offs += [(file, rivals.BareCreate(tree.name), "create"), (file, sqlite, "append_one")]
    fastest: list[Subject] = [sqlite]
    if reachable(REDIS_URL):
        if "redis" in schemes:
            url = f"{REDIS_URL}?prefix={BENCH_TAG}-peers:"
            backends.append(AixgoSubject("aixgo redis://", url, {}))
        fastest.append(peers.OpenAIRedis(REDIS_URL))
    if "postgresql" in schemes and reachable(PG_URL):
        url = f"{PG_URL}?schema={BENCH_TAG.replace('-', '_')}"
        backends.append(AixgoSubject("aixgo postgresql://", url, {}))
    return backends, fastest, one_offs


async def run_rivals(
    plan: Plan, keep: list[object], only: set[str] | None, results: list[Result]
) -> None:
    """The paired peer phase (:mod:`rivals`), timed as a whole."""
    backends, fastest, one_offs = build_rivals(keep)
    backends = [a for a in backends if only is None or any(o in a.name for o in only)]
    if not backends:
        return
    started = time.perf_counter()
    results += await rivals.run(
        backends, fastest, [o for o in one_offs if o[0] in backends],
        sizes=plan.paired_sizes, history_size=HISTORY_SIZE, runs=plan.paired_runs,
        budget_s=plan.budget_s, fill_s=plan.fill_s,
    )  # fmt: skip
    print(f"   (paired peer phase: {time.perf_counter() - started:.1f} s)", flush=True)


async def main_async(args: argparse.Namespace) -> list[Result]:
    keep: list[object] = []
    results: list[Result] = []
    plan = QUICK if args.quick else FULL
    only = set(args.only.split(",")) if args.only else None
    subjects = [
        s
        for s in build_subjects(args.quick, keep)
        if only is None or any(o in s.name for o in only)
    ]
    for s in subjects:
        await run_subject(s, plan, results)
    for a, b in build_pairs(keep) + build_audit_pairs(keep):
        if only is None or any(o in a.name for o in only):
            await run_pair(a, b, plan, results)
    await run_rivals(plan, keep, only, results)
    for phase, run in _phases(subjects, plan, only):
        try:
            results += await run()
        except Exception as exc:  # e.g. workers starved on a loaded machine: report, keep the rest
            print(f"   {phase} failed: {exc!r}"[:300])
            results.append(Result("aixgo", phase, None, None, None, 0, f"failed: {exc!r}"[:200]))
    for k in keep:
        k.cleanup()  # type: ignore[attr-defined]
    await cleanup()
    return results


Phase = tuple[str, Callable[[], Awaitable[list[Result]]]]


def _phases(subjects: list[Subject], plan: Plan, only: set[str] | None) -> list[Phase]:
    """The phases after the per-subject and paired ones, each run on its own (one that fails
    is reported and the rest still run)."""
    targets = [(s.name, s.url, s.caps) for s in subjects if isinstance(s, AixgoSubject) and s.caps]
    stores = [(s.name, s.url, s.caps) for s in subjects if isinstance(s, AixgoSubject)]
    named = [(name, url) for name, url, _ in stores]
    phases: list[Phase] = [
        ("throughput", lambda: throughput.run_all(targets, seconds=plan.throughput_s)),
        ("shared_user_turn", lambda: turns.run_all(stores, turns=plan.shared_turns)),
    ]
    if only is None or "stream" in only:
        phases.append(("stream", lambda: streaming.run(runs=plan.runs, budget_s=plan.budget_s)))
    phases.append(
        (
            "governance",
            lambda: governance.run_all(named, runs=plan.paired_runs, budget_s=plan.budget_s),
        )
    )
    phases.append(
        (
            "audit floor",
            lambda: audited.floors(named, runs=plan.paired_runs, budget_s=plan.budget_s),
        )
    )
    if only is None or "remote" in only:
        shared = f"{REDIS_URL}?prefix={BENCH_TAG}-remote:" if reachable(REDIS_URL) else "memory://"
        runs = min(plan.paired_runs, 2000)
        phases.append(
            ("remote", lambda: remote.run_all(runs, plan.budget_s, plan.throughput_s, shared))
        )
    return phases


async def cleanup() -> None:
    """Remove what the aixgo subjects left in the shared servers: keys under the bench's
    Redis prefix, and its PostgreSQL schema."""
    if reachable(REDIS_URL):
        import redis.asyncio as redis

        r = redis.Redis.from_url(REDIS_URL)
        try:
            batch = [k async for k in r.scan_iter(match=f"*{BENCH_TAG}*", count=1000)]
            for i in range(0, len(batch), 1000):
                await r.delete(*batch[i : i + 1000])
        finally:
            await r.aclose()
    if reachable(PG_URL):
        import psycopg

        async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
            await conn.execute(f"DROP SCHEMA IF EXISTS {BENCH_TAG.replace('-', '_')} CASCADE")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a short run (~2-3 minutes)")
    ap.add_argument("--out", default="bench-results")
    ap.add_argument("--only", default="", help="comma-separated parts of subject names")
    ap.add_argument("--publish", action="store_true", help="also write docs/performance.md")
    args = ap.parse_args()
    results = asyncio.run(main_async(args))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report.write(results, out, quick=args.quick, publish=args.publish)


if __name__ == "__main__":
    main()
