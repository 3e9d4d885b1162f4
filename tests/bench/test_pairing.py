"""The bench's own logic: paired timing and where the targets table takes its ratios from.
(The bench itself is run by ``nox -s bench``; these check only its arithmetic.)"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))

import report
import rivals
from subjects import Subject
from timing import Result, in_turns, measure_pair


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


def _in_turns(
    a: str, b: str, op: str, size: int | None, mine: float, theirs: float
) -> list[Result]:
    """The two results of ``a`` and ``b`` timed in turns, as bench/rivals.py names them."""
    return [
        Result(in_turns(a, b), f"paired {op}", size, mine, None, 100),
        Result(in_turns(b, a), f"paired {op}", size, theirs, None, 100),
    ]


REDIS_PEER = report.READ_PEERS[1]


def test_read_targets_are_ratios_in_the_pair_with_the_faster_peer() -> None:
    results = [
        # The sequential phase says otherwise: the rows must not read it.
        Result(report.REDIS, "tail", 1_000, 100.0, None, 100),
        Result(report.SQLITE, "tail", 1_000, 400.0, None, 100),
        Result(REDIS_PEER, "tail", 1_000, 400.0, None, 100),
        Result(report.FILE, "history", 1_000, 5000.0, None, 100),
        Result(report.SQLITE, "history", 1_000, 1000.0, None, 100),
        *_in_turns(report.REDIS, report.SQLITE, "tail", 1_000, 330.0, 300.0),
        *_in_turns(report.REDIS, REDIS_PEER, "tail", 1_000, 240.0, 200.0),  # the faster peer
        *_in_turns(report.FILE, report.SQLITE, "history", 1_000, 900.0, 1000.0),
        *_in_turns(report.FILE, REDIS_PEER, "history", 1_000, 1400.0, 1200.0),
        Result(report.FILE, "cold_list_page", None, 4000.0, None, 5),
    ]
    rows = report._targets(_lookup(results), [1_000])
    # Each row is the ratio within the pair whose peer was faster, never one across pairs
    # (240 / 200, not 330 / 200 or 240 / 300) and never the sequential phase's (100 / 400).
    assert _row(rows, "redis: tail 100 at 1,000 / best peer (paired)") == pytest.approx(1.2)
    assert _row(rows, "file: whole history of 1,000 / best peer (paired)") == 0.9
    met = {name: ok for name, _, _, ok in rows}
    assert met["redis: tail 100 at 1,000 / best peer (paired)"] is False
    # Issue #17 asks for the whole history against peers as a figure, with no bound.
    assert met["file: whole history of 1,000 / best peer (paired)"] is None
    bounds = {name: bound for name, _, bound, _ in rows}
    assert bounds["file: whole history of 1,000 / best peer (paired)"] == "reported"
    assert met["file: cold first list page of 50, fresh process (µs)"] is True
    names = [name for name, *_ in rows]
    assert "redis: tail 100 at 100,000 / best peer (paired)" not in names  # not filled to it
    assert "postgres: tail 100 at 1,000 / best peer (paired)" not in names  # not measured
    assert not any(name.endswith("/ best peer") for name in names)  # every one says paired


def test_read_targets_are_absent_where_only_the_sequential_phase_ran() -> None:
    results = [
        Result(report.PG, "tail", 1_000, 300.0, None, 100),
        Result(report.SQLITE, "tail", 1_000, 200.0, None, 100),
        *_in_turns(report.PG, report.SQLITE, "tail", 100_000, 500.0, 250.0),
    ]
    rows = report._targets(_lookup(results), [1_000, 100_000])
    names = [name for name, *_ in rows]
    assert not any(name.startswith("postgres: tail 100 at 1,000 / best peer") for name in names)
    assert _row(rows, "postgres: tail 100 at 100,000 / best peer (paired)") == 2.0


def test_a_paired_read_whose_peer_was_too_slow_is_reported_not_measured() -> None:
    results = [
        Result(in_turns(report.FILE, report.SQLITE), "paired tail", 1_000, 100.0, None, 100),
        Result(in_turns(report.SQLITE, report.FILE), "paired tail", 1_000, None, None, 3),
    ]
    rows = report._targets(_lookup(results), [1_000])
    assert _row(rows, "file: tail 100 at 1,000 / best peer (paired)") is None


def test_the_create_target_comes_from_its_pair_and_the_sqlite_append_from_its_loops() -> None:
    results = [
        Result(report.FILE, "append_one", None, 50.0, None, 100),  # sequential: 10x
        Result(report.SQLITE, "append_one", None, 500.0, None, 100),
        Result(report.FILE, "create", None, 150.0, None, 100),
        *_in_turns(report.FILE, report.SQLITE, "append_one", None, 20.0, 400.0),
        *_in_turns(report.FILE, report.BARE_CREATE, "create", None, 180.0, 120.0),
    ]
    rows = report._targets(_lookup(results), [])
    # The append bound was set loop against loop; the pair (20x here) does not count.
    assert _row(rows, "file: SQLiteSession append / file append (flush)") == 10.0
    assert _row(rows, "file: create / bare file create (paired)") == 1.5
    assert _row(rows, "file: create median (µs)") == 150.0  # the absolute target stays
    met = {name: ok for name, _, _, ok in rows}
    assert met["file: SQLiteSession append / file append (flush)"] is False
    assert met["file: create / bare file create (paired)"] is None  # reported, no bound
    unpaired = report._targets(_lookup(results[:3]), [])
    assert _row(unpaired, "file: SQLiteSession append / file append (flush)") == 10.0
    assert _row(unpaired, "file: create / bare file create (paired)") is None


def test_the_operation_tables_show_no_floor_for_a_backend_paired_with_a_peer() -> None:
    results = [
        *_in_turns(report.REDIS, REDIS_PEER, "tail", 1_000, 240.0, 200.0),
        Result(report.REDIS, "paired tail", 1_000, 90.0, None, 100),  # the floor pair's
        Result(report.RAW_R, "paired tail", 1_000, 100.0, None, 100),
    ]
    md = report._operations(results, report._getter(results))
    row = next(line for line in md if line.startswith(f"| {in_turns(report.REDIS, REDIS_PEER)} "))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[3] == ""  # x floor: its partner was a peer, not the raw floor
    assert cells[4] == "1.200"  # x best peer
    floor_row = next(line for line in md if line.startswith(f"| {report.REDIS} |"))
    assert floor_row.split("|")[4].strip() == "0.90"


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


class _Fake(Subject):
    """A subject whose operations do nothing but count, so the phase's wiring is checked."""

    def __init__(self, name: str, *, fails: bool = False) -> None:
        self.name = name
        self.fails = fails
        self.fills: list[int] = []
        self.closed = False

    async def open(self) -> None:
        if self.fails:
            raise RuntimeError("not installed")

    async def close(self) -> None:
        self.closed = True

    async def add_fill(self, n: int) -> None:
        self.fills.append(n)

    async def noop(self) -> None:
        await asyncio.sleep(0)

    tail = history = create = append_one = noop


@pytest.mark.asyncio
async def test_the_peer_phase_pairs_each_backend_with_each_peer_filled_once_per_size(
    tmp_path: Path,
) -> None:
    file, redis = _Fake(report.FILE), _Fake(report.REDIS)
    sqlite, redis_peer, gone = _Fake(report.SQLITE), _Fake(REDIS_PEER), _Fake("x", fails=True)
    bare = rivals.BareCreate(str(tmp_path))
    one_offs = [(file, bare, "create"), (file, sqlite, "append_one")]
    results = await rivals.run(
        [file, redis], [sqlite, redis_peer, gone], one_offs,  # type: ignore[list-item]
        sizes=(10, 30), history_size=10, runs=12, budget_s=30.0, fill_s=30.0,
    )  # fmt: skip
    got = {(r.subject, r.op, r.size) for r in results}
    want = {(in_turns(file.name, bare.name), "paired create", None),
            (in_turns(bare.name, file.name), "paired create", None),
            (in_turns(file.name, sqlite.name), "paired append_one", None),
            (in_turns(sqlite.name, file.name), "paired append_one", None),
            ("x", "open", None)}  # fmt: skip
    for a in (file, redis):
        for p in (sqlite, redis_peer):
            for op, size in (("tail", 10), ("history", 10), ("tail", 30)):
                want |= {(in_turns(a.name, p.name), f"paired {op}", size),
                         (in_turns(p.name, a.name), f"paired {op}", size)}  # fmt: skip
    assert got == want
    assert all(r.samples == 12 for r in results if r.op != "open")
    for s in (file, redis, sqlite, redis_peer):
        assert s.fills == [10, 20] and s.closed  # filled once per size, for every pair
    assert not gone.closed
    rows = report._targets(_lookup(results), [10, 30])
    assert _row(rows, "redis: tail 100 at 30 / best peer (paired)") is not None
    assert _row(rows, "file: whole history of 10 / best peer (paired)") is not None
    assert _row(rows, "file: create / bare file create (paired)") is not None


@pytest.mark.asyncio
async def test_the_bare_create_makes_one_private_file_with_a_header_per_call(
    tmp_path: Path,
) -> None:
    bare = rivals.BareCreate(str(tmp_path))
    await bare.open()
    for _ in range(300):
        await bare.create()
    made = sorted((tmp_path / "bare").glob("*/*.log"))
    assert len(made) == 300
    assert all(f.parent.name == f.name[:2] for f in made)  # sharded like the store
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in made)
    assert {f.read_bytes() for f in made} == {bare.header}
    assert json.loads(bare.header)["t"] == "session"


def test_governance_floors_are_reported_beside_their_bounds_from_their_own_pairs() -> None:
    import audited
    import governance

    results = [
        Result(f"{report.FILE} encrypted", "paired append", None, 36.0, None, 100),
        Result(f"{report.FILE} plain", "paired append", None, 20.0, None, 100),
        # The floor's pair has its own plain side (24 us here), never the encrypted pair's.
        Result(f"{report.FILE} {governance.FLOOR}", "paired append", None, 30.0, None, 100),
        Result(
            f"{report.FILE} plain {governance.VERSUS_FLOOR}", "paired append", None, 24.0, None, 100
        ),
        Result(f"{report.FILE} audit on", "paired append_one", None, 34.0, None, 100),
        Result(f"{report.FILE} audit off", "paired append_one", None, 20.0, None, 100),
        Result(f"{report.FILE} {audited.FLOOR}", "paired append_one", None, 26.0, None, 100),
        Result(f"{report.FILE} {audited.VERSUS_FLOOR}", "paired append_one", None, 20.0, None, 100),
    ]
    rows = report._targets(_lookup(results), [])
    by = {name: (value, bound, met) for name, value, bound, met in rows}
    assert by["file: encrypted append / plain"] == (1.8, "≤ 1.3", False)
    sealing = by["file: plain append + bare sealing / plain (the bound's floor)"]
    assert sealing == (1.25, "reported", None)
    audit = by["file (flush): plain append + bare audit record / plain (the bound's floor)"]
    assert audit == (1.3, "reported", None)
    # Without the floor phase, the audit floor row is left out and the sealing one says so.
    bare = report._targets(_lookup(results[:2] + results[4:6]), [])
    names = [name for name, *_ in bare]
    assert "file (flush): plain append + bare audit record / plain (the bound's floor)" not in names
    assert _row(bare, "file: plain append + bare sealing / plain (the bound's floor)") is None
