"""Node processes for the remote bench: ``aixgo serve`` started for real on 127.0.0.1, as a
deployment runs it, each serving a ReAct agent on the offline scripted echo model."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import yaml

_SERVING = re.compile(r"^serving (\S+):(\d+) ")


def _config(folder: Path, store_url: str) -> Path:
    path = folder / "node.yaml"
    config = {
        "session": store_url,
        "agents": [{"name": "echo", "role": "react", "options": {"model": "scripted:echo"}}],
        "runtime": {"timeout": 60},
    }
    path.write_text(yaml.safe_dump(config))
    return path


async def _start(config: Path, tls_args: Sequence[str]) -> tuple[asyncio.subprocess.Process, int]:
    aixgo = Path(sys.executable).parent / "aixgo"
    proc = await asyncio.create_subprocess_exec(
        str(aixgo), "serve", "--config", str(config), "--listen", "127.0.0.1:0", *tls_args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(120):
            while line := (await proc.stdout.readline()).decode():
                if m := _SERVING.match(line):
                    return proc, int(m.group(2))
    except TimeoutError:
        pass
    proc.kill()
    await proc.wait()
    raise RuntimeError("an aixgo serve node did not start")


@contextlib.asynccontextmanager
async def running_nodes(
    folder: Path, store_url: str, n: int, tls_args: Sequence[str]
) -> AsyncIterator[list[int]]:
    """``n`` node processes on one store (started in parallel); their ports. Stopped with
    SIGTERM (graceful) on the way out."""
    config = _config(folder, store_url)
    started = await asyncio.gather(*(_start(config, tls_args) for _ in range(n)),
                                   return_exceptions=True)  # fmt: skip
    procs = [s[0] for s in started if not isinstance(s, BaseException)]
    try:
        for s in started:
            if isinstance(s, BaseException):
                raise s
        yield [s[1] for s in started if not isinstance(s, BaseException)]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in procs:
            try:
                async with asyncio.timeout(30):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
