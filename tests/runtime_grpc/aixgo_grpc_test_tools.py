"""Tools the test nodes' ReAct agents run (imported by the node processes through
PYTHONPATH). Each writes a line to ``$AIXGO_TEST_TOOL_LOG`` so a test can count runs."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path


def _log(line: str) -> None:
    with Path(os.environ["AIXGO_TEST_TOOL_LOG"]).open("a") as f:
        f.write(f"{line} pid={os.getpid()}\n")


def mark(tag: str) -> str:
    """Record that it ran."""
    _log(f"mark {tag}")
    return f"marked {tag}"


async def hold(tag: str) -> str:
    """Wait until the file ``$AIXGO_TEST_TOOL_LOG.release`` exists."""
    _log(f"hold-start {tag}")
    release = Path(os.environ["AIXGO_TEST_TOOL_LOG"] + ".release")
    # A file, not an event: the test that releases it is another process.
    while not release.exists():  # noqa: ASYNC110, ASYNC240
        await asyncio.sleep(0.05)
    _log(f"hold-end {tag}")
    return f"held {tag}"


async def nap(seconds: float, tag: str) -> str:
    """Sleep; logs whether it finished or was cancelled."""
    _log(f"nap-start {tag}")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        _log(f"nap-cancelled {tag}")
        raise
    _log(f"nap-end {tag}")
    return f"slept {seconds}"
