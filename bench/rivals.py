"""The paired peer phase (issue #17): each aixgo backend against each of the fastest peers, and
``file://`` create against a bare file create, timed in turns (:func:`timing.pair`).

The sequential phase times every subject on its own, minutes apart from the others: on a
shared 2-core machine two such medians can differ by the noise alone, by more than the
targets' margins. So the targets table takes its "best peer" rows and the create ratio from
here, and the sequential tables stay for reference. Each backend and each peer is filled
once per size (the same message text on both sides), then paired with each one on the other
side; results are named :func:`timing.in_turns`, so every pair's two results stay apart.
"""

from __future__ import annotations

import json
import os
import time

from subjects import AixgoSubject, Subject
from timing import Result, in_turns, pair

#: A one-off pair: (aixgo subject, the other subject, the operation timed in turns).
OneOff = tuple[AixgoSubject, Subject, str]


class BareCreate(Subject):
    """The floor of a ``file://`` create: ``os.open(O_CREAT | O_EXCL | O_WRONLY, 0o600)``,
    one write of a session header line of the same fields, and ``close``, in ``<root>/bare``,
    sharded like the store (``<first two hex digits>/<32 hex>.log``, the shard directory made
    on first need as the store makes its own: which directory a file is made in, and how
    full it is, decide much of what a create costs).

    That is what aixgo's create must do on the file system at least: its log is the session
    (the ``.idx`` and ``.meta`` sidecars are made on the first message and the first
    checkpoint, not at create). Left out, as aixgo's own work (what the ratio shows): the
    ``fchmod`` that makes the mode 0600 whatever the umask, the ``flock`` held while the header
    is written, the four listing index lines (appends to files held open), and building the
    session (its id, its summary, the header's encoding). aixgo keeps the new log open and
    closes it once 256 newer ones are open; the floor closes at once, so both pay one close
    per create.
    """

    family = "floor"
    name = "bare file create"

    def __init__(self, root: str) -> None:
        self.root = os.path.join(root, "bare")
        fields = {"t": "session", "v": 1, "id": "0" * 32, "agent": "bench-create",
                  "user_id": "bench-creator", "created_at": 1_765_000_000_000_000,
                  "metadata": {}}  # fmt: skip
        self.header = json.dumps(fields).encode() + b"\n"

    async def open(self) -> None:
        os.mkdir(self.root, 0o700)
        self.shards: set[str] = set()

    async def create(self) -> None:
        name = os.urandom(16).hex()
        shard = f"{self.root}/{name[:2]}"
        if shard not in self.shards:
            os.mkdir(shard, 0o700)
            self.shards.add(shard)
        path = f"{shard}/{name}.log"
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, self.header)
        finally:
            os.close(fd)


async def run(
    backends: list[AixgoSubject],
    peers: list[Subject],
    one_offs: list[OneOff],
    *,
    sizes: tuple[int, ...],
    history_size: int,
    runs: int,
    budget_s: float,
    fill_s: float,
) -> list[Result]:
    """The ``one_offs`` (e.g. create, append), then at each of ``sizes``: every backend
    and every peer filled to it, each backend's tail 100 (and whole history at
    ``history_size``) timed in turns with each peer's. A subject that cannot open or fill
    in ``fill_s`` is reported and left out of what follows."""
    results: list[Result] = []
    live: list[Subject] = []
    everyone = [*backends, *peers, *(s for a, b, _ in one_offs for s in (a, b))]
    try:
        for s in dict.fromkeys(everyone):  # each once, in order
            try:
                await s.open()
            except Exception as exc:  # a peer that cannot even start is reported, not fatal
                results.append(
                    Result(s.name, "open", None, None, None, 0, f"failed: {exc!r}"[:200])
                )
                continue
            live.append(s)
        for a, b, op in one_offs:
            if a in live and b in live:
                results += await _pair(a, b, op, None, runs, budget_s)
        for size in sizes:
            for s in [s for s in live if s in backends or s in peers]:
                started = time.perf_counter()
                try:
                    await s.fill(size, started + fill_s)
                    print(f"   fill {size:,}: {s.name} ({time.perf_counter() - started:.1f} s)")
                except TimeoutError as exc:
                    results.append(Result(s.name, "fill", size, None, None, 0, f"too slow: {exc}"))
                    live.remove(s)
            for a in [a for a in backends if a in live]:
                for p in [p for p in peers if p in live]:
                    results += await _pair(a, p, "tail", size, min(runs, 1000), budget_s)
                    if size == history_size:
                        results += await _pair(a, p, "history", size, min(runs, 300), budget_s)
    finally:
        for s in live:
            await s.close()
    return results


async def _pair(
    a: Subject, b: Subject, op: str, size: int | None, runs: int, budget_s: float
) -> tuple[Result, Result]:
    print(f"== paired: {a.name} / {b.name}", flush=True)
    names = (in_turns(a.name, b.name), in_turns(b.name, a.name))
    return await pair(a, b, op, runs=runs, budget_s=budget_s, size=size, names=names)
