"""The first list page in a fresh process: what a command-line tool or a worker that has just
started pays before its caches hold anything (timed inside the process, after its imports)."""

from __future__ import annotations

import asyncio
import json
import statistics
import sys

from timing import Result

_CHILD = """
import asyncio, json, sys, time
from aixgo.session import SessionManager

async def main(url):
    t0 = time.perf_counter()
    mgr = SessionManager(url)
    await mgr.open()
    t1 = time.perf_counter()
    page = await mgr.list(agent="bench-list", user_id="bench-lister", limit=50)
    t2 = time.perf_counter()
    await mgr.close()
    assert len(page.items) == 50
    print(json.dumps({"open_us": (t1 - t0) * 1e6, "list_us": (t2 - t1) * 1e6}))

asyncio.run(main(sys.argv[1]))
"""


async def first_page(subject: str, url: str, runs: int) -> Result:
    """Median over ``runs`` fresh processes of the first ``list(limit=50)`` after opening the
    store at ``url`` (which holds the listing sessions the bench made)."""
    lists: list[float] = []
    opens: list[float] = []
    for _ in range(runs):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CHILD, url, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            return Result(subject, "cold_list_page", None, None, None, 0, "the process failed")
        got = json.loads(out)
        lists.append(got["list_us"])
        opens.append(got["open_us"])
    lists.sort()
    note = f"{runs} processes; opening the store took {statistics.median(opens):,.0f} us more"
    return Result(subject, "cold_list_page", None, statistics.median(lists), lists[-1], runs, note)
