"""The bench's own logic: paired timing and where the targets table takes its ratios from.
(The bench itself is run by ``nox -s bench``; these check only its arithmetic.)"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))

import report
from timing import Result, measure_pair


@pytest.mark.asyncio
async def test_measure_pair_alternates_and_times_both() -> None:
    order: list[str] = []

    async def a() -> None:
        order.append("a")

    async def b() -> None:
        order.append("b")
        await asyncio.sleep(0.001)  # b is clearly the slower one

    ra, rb = await measure_pair(("A", "B"), "append_one", (a, b), runs=20, warmup=0)
    assert order[:4] == ["a", "b", "b", "a"]  # A B, then B A: neither always goes first
    assert (ra.subject, ra.op, ra.samples) == ("A", "paired append_one", 20)
    assert (rb.subject, rb.op, rb.samples) == ("B", "paired append_one", 20)
    assert ra.median_us is not None and rb.median_us is not None
    assert rb.median_us > ra.median_us and rb.median_us >= 1000


def _lookup(results: list[Result]) -> report.Lookup:
    def get(subject: str, op: str, size: int | None) -> float | None:
        for r in results:
            if r.subject == subject and r.op == op and r.size == size:
                return r.median_us
        return None

    return get


def _row(rows: list[tuple[str, float | None, str, bool | None]], name: str) -> float | None:
    return next(value for target, value, _, _ in rows if target == name)


def test_floor_ratios_come_from_the_paired_phase_when_it_ran() -> None:
    results = [
        Result(report.REDIS, "append_one", None, 400.0, None, 100),  # a noisy phase
        Result(report.RAW_R, "append_one", None, 100.0, None, 100),
        Result(report.REDIS, "paired append_one", None, 150.0, None, 100),
        Result(report.RAW_R, "paired append_one", None, 100.0, None, 100),
        Result(report.PG, "append_one", None, 300.0, None, 100),  # no paired phase: sequential
        Result(report.RAW_P, "append_one", None, 200.0, None, 100),
    ]
    rows = report._targets(_lookup(results), [])
    assert _row(rows, "redis: append / raw") == 1.5
    assert _row(rows, "postgres: append / raw") == 1.5


def test_tail_targets_only_at_sizes_the_backend_was_filled_to() -> None:
    results = [
        Result(report.REDIS, "paired tail", 1_000, 120.0, None, 100),
        Result(report.RAW_R, "paired tail", 1_000, 100.0, None, 100),
        Result(report.FILE, "tail", 1_000_000, 90.0, None, 100),
    ]
    names = [name for name, *_ in report._targets(_lookup(results), [1_000, 1_000_000])]
    assert "redis: tail 100 at 1,000 / raw" in names
    assert "redis: tail 100 at 1,000,000 / raw" not in names
    assert not any(n.startswith("postgres: tail") for n in names)


def test_tail_targets_are_the_paired_sizes_when_the_paired_phase_ran() -> None:
    # The issues' sizes are the paired ones; a sequential tail at another size is shown in
    # the tables but is no target (its ratio to a floor timed minutes apart is mostly noise).
    results = [
        Result(report.REDIS, "paired tail", 1_000, 120.0, None, 100),
        Result(report.RAW_R, "paired tail", 1_000, 100.0, None, 100),
        Result(report.REDIS, "tail", 10_000, 1000.0, None, 100),
        Result(report.RAW_R, "tail", 10_000, 500.0, None, 100),
        Result(report.PG, "tail", 10_000, 150.0, None, 100),  # no paired phase: sequential
        Result(report.RAW_P, "tail", 10_000, 100.0, None, 100),
    ]
    rows = report._targets(_lookup(results), [1_000, 10_000])
    names = [name for name, *_ in rows]
    assert "redis: tail 100 at 1,000 / raw" in names
    assert "redis: tail 100 at 10,000 / raw" not in names
    assert _row(rows, "postgres: tail 100 at 10,000 / raw") == 1.5


def test_read_targets_compare_with_the_fastest_peer_of_the_run() -> None:
    results = [
        Result(report.REDIS, "tail", 1_000, 300.0, None, 100),
        Result(report.SQLITE, "tail", 1_000, 400.0, None, 100),
        Result(report.READ_PEERS[1], "tail", 1_000, 200.0, None, 100),  # the fastest peer
        Result(report.FILE, "history", 1_000, 900.0, None, 100),
        Result(report.SQLITE, "history", 1_000, 1000.0, None, 100),
        Result(report.FILE, "cold_list_page", None, 4000.0, None, 5),
    ]
    rows = report._targets(_lookup(results), [1_000])
    assert _row(rows, "redis: tail 100 at 1,000 / best peer") == 1.5
    assert _row(rows, "file: whole history of 1,000 / best peer") == 0.9
    met = {name: ok for name, _, _, ok in rows}
    assert met["redis: tail 100 at 1,000 / best peer"] is False
    assert met["file: whole history of 1,000 / best peer"] is True
    assert met["file: cold first list page of 50, fresh process (µs)"] is True
    names = [name for name, *_ in rows]
    assert "redis: tail 100 at 100,000 / best peer" not in names  # not filled to it
    assert "postgres: tail 100 at 1,000 / best peer" not in names  # not measured


def test_encryption_targets_are_encrypted_over_plain_of_the_paired_phase() -> None:
    results = [
        Result(f"{report.REDIS} encrypted", "paired append", None, 105.0, None, 100),
        Result(f"{report.REDIS} plain", "paired append", None, 100.0, None, 100),
        Result(f"{report.FILE} encrypted", "paired tail-100", 1_000, 150.0, None, 100),
        Result(f"{report.FILE} plain", "paired tail-100", 1_000, 100.0, None, 100),
    ]
    rows = report._targets(_lookup(results), [])
    assert _row(rows, "redis: encrypted append / plain") == 1.05
    assert _row(rows, "file: encrypted tail-100 / plain") == 1.5
    met = {name: ok for name, _, _, ok in rows}
    assert met["redis: encrypted append / plain"] is True
    assert met["file: encrypted tail-100 / plain"] is False
    assert met["postgres: encrypted append / plain"] is None  # not measured


def test_the_audit_targets_are_paired_on_off_ratios_where_measured() -> None:
    results = [
        Result(f"{report.FILE} audit on", "paired append_one", None, 130.0, None, 100),
        Result(f"{report.FILE} audit off", "paired append_one", None, 100.0, None, 100),
    ]
    rows = report._targets(_lookup(results), [])
    assert _row(rows, "file (flush): append audit on / off") == 1.3
    assert not any("redis: append audit" in name for name, *_ in rows)
