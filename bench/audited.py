"""Audit on vs off: the same backend through a manager with and without an AuditLog, timed
alternately in the paired phase (append and tail-100), so their ratio is the audit's cost.

Targets (issue #19): append at most 1.3x on file://, 1.1x on redis:// and postgresql://.

    python bench/audited.py [--quick] [--only NAME,...]   # appends only; nox -s bench runs all
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import hashlib
import hmac
import os
import sys
import tempfile
from pathlib import Path
from typing import cast

sys.path.insert(0, str(Path(__file__).parent))

from aixgo.audit import AuditLog
from aixgo.session import SessionManager
from subjects import AixgoSubject, Pool
from timing import Result

KEY = bytes(range(32))


class AuditedSubject(AixgoSubject):
    """An aixgo backend whose manager records every write in a JSONL audit log."""

    def __init__(self, name: str, url: str, fsync: bool) -> None:
        super().__init__(name, url, {})
        self.fsync = fsync
        self.folder = tempfile.TemporaryDirectory(prefix="aixgo-bench-audit-")

    async def open(self) -> None:
        log = AuditLog(Path(self.folder.name) / "audit.jsonl", key=KEY, fsync=self.fsync)
        self.mgr = SessionManager(self.url, audit=log)
        self.caps = self.mgr.backend.capabilities
        self.pool = Pool()
        await self.mgr.open()
        self.session = await self.mgr.create("bench", user_id="bench-appender")

    async def close(self) -> None:
        await super().close()
        self.folder.cleanup()


def pairs(stores: list[tuple[str, str, bool]]) -> list[tuple[AixgoSubject, AixgoSubject]]:
    """``(audited, plain)`` for each ``(name, url, fsync)``: the audit log flushes like the
    store (fsync with a file store in fsync mode)."""
    return [
        (AuditedSubject(f"{name} audit on", url, fsync), AixgoSubject(f"{name} audit off", url, {}))
        for name, url, fsync in stores
    ]


TARGETS = {"file": 1.3, "redis": 1.1, "postgresql": 1.1}

#: The plain append with the bare cost of an audit record added, and the plain one timed
#: with it (:func:`floors`).
FLOOR, VERSUS_FLOOR = "+ bare audit record", "audit off (in turns with a bare record)"
# A record of the shape AuditLog writes for an append (sorted keys, the previous MAC).
_RECORD = (
    b'{"actor":null,"agent":"bench","count":1,"i":%d,"ids":["%s"],"op":"append",'
    b'"outcome":"ok","prev":"%s","session_id":"%s","time":"2026-12-07T11:38:24.307657+00:00",'
    b'"user_id":"bench-appender"'
)


async def floors(stores: list[tuple[str, str]], *, runs: int, budget_s: float) -> list[Result]:
    """Each store's plain append timed in turns with the same append plus the least any
    audit record written before the operation returns must add (:func:`_floor`)."""
    out: list[Result] = []
    for name, url in stores:
        out += await _floor(name, url, runs=runs, budget_s=budget_s)
    return out


async def _floor(name: str, url: str, *, runs: int, budget_s: float) -> list[Result]:
    """The plain append, and the same append followed by an HMAC-SHA256 over a record of
    AuditLog's shape chained to the previous one and one locked write of it to a 0600
    append-only file (with ``fdatasync`` where the store syncs). No actor lookup, no record
    built from the operation, no error handling: a lower bound for the audit bound."""
    from timing import measure_pair

    fsync = "(fsync)" in name
    pool = Pool(size=min(runs * 2 + 100, 25_000))
    keyed = hmac.new(KEY, digestmod=hashlib.sha256)
    chain: list[object] = [0, b""]  # the next record's index and the previous MAC
    with tempfile.TemporaryDirectory(prefix="aixgo-bench-audit-floor-") as folder:
        fd = os.open(Path(folder) / "audit.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            async with SessionManager(url) as mgr:
                s = await mgr.create("bench", user_id="bench-appender")
                sid = s.id.encode()

                async def plain() -> None:
                    await s.append_message(pool.take()[0])

                async def floor() -> None:
                    m = pool.take()[0]
                    await s.append_message(m)
                    record = _RECORD % (chain[0], m.id.encode(), chain[1], sid)
                    mac = keyed.copy()
                    mac.update(record)
                    digest = mac.hexdigest().encode()
                    chain[:] = [cast(int, chain[0]) + 1, digest]
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    try:
                        os.write(fd, record + b',"mac":"' + digest + b'"}\n')
                        if fsync:
                            os.fdatasync(fd)
                    finally:
                        fcntl.flock(fd, fcntl.LOCK_UN)

                print(f"== audit floor: {name}", flush=True)
                ra, rb = await measure_pair(
                    (f"{name} {FLOOR}", f"{name} {VERSUS_FLOOR}"), "append_one",
                    (floor, plain), runs=runs, budget_s=budget_s,
                )  # fmt: skip
        finally:
            os.close(fd)
    if ra.median_us and rb.median_us:
        print(f"   append + bare audit record / plain: {ra.median_us / rb.median_us:.2f}x",
              flush=True)  # fmt: skip
    return [ra, rb]


async def appends(pair: tuple[AixgoSubject, AixgoSubject], runs: int, budget_s: float) -> str:
    """One line: the audited and plain append medians, timed alternately, and their ratio."""
    from timing import measure_pair

    on, off = pair
    await on.open()
    await off.open()
    try:
        ra, rb = await measure_pair(
            (on.name, off.name), "append_one", (on.append_one, off.append_one),
            runs=runs, budget_s=budget_s,
        )  # fmt: skip
    finally:
        await on.close()
        await off.close()
    store = on.name.removesuffix(" audit on")
    if not ra.median_us or not rb.median_us:
        return f"{store} append: not measured ({ra.note or rb.note})"
    ratio = ra.median_us / rb.median_us
    target = next((t for k, t in TARGETS.items() if f" {k}://" in store), None)
    verdict = "" if target is None else f" (target <= {target}x: "
    verdict += "" if target is None else ("met)" if ratio <= target else "missed)")
    return f"{store} append: {ra.median_us:.1f} / {rb.median_us:.1f} us = {ratio:.2f}x{verdict}"


def main() -> None:
    import run  # the bench's stores and their cleanup

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated parts of store names")
    args = ap.parse_args()
    plan = run.QUICK if args.quick else run.FULL
    only = [o for o in args.only.split(",") if o]
    keep: list[object] = []

    async def go() -> None:
        try:
            for pair in run.build_audit_pairs(keep):
                if not only or any(o in pair[0].name for o in only):
                    print(await appends(pair, plan.paired_runs, plan.budget_s), flush=True)  # type: ignore[arg-type]
        finally:
            for k in keep:
                k.cleanup()  # type: ignore[attr-defined]
            await run.cleanup()

    asyncio.run(go())


if __name__ == "__main__":
    main()
