"""``aixgo web`` as a real process on 127.0.0.1, serving a config with the scripted ReAct
model and a file:// store in a temporary folder."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.services import free_port, wait_until_ready

CONFIG = """\
session: {store}
agents:
  - name: assistant
    role: react
    options:
      model: "scripted:echo"
      max_steps: 3
"""


def answers(url: str) -> Callable[[], bool]:
    """A ``ready`` check: ``url`` answers 200."""

    def check() -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    return check


@contextmanager
def aixgo_web(folder: Path, *args: str) -> Iterator[str]:
    """Start ``aixgo web`` on a free loopback port, serving the scripted ReAct agent on a
    file:// store in ``folder``; yield its base URL; stop it."""
    config = folder / "aixgo.yaml"
    config.write_text(CONFIG.format(store=(folder / "store").as_uri()))
    with serving(config, folder / "server.log", *args) as url:
        yield url


@contextmanager
def serving(config: Path, log: Path, *args: str) -> Iterator[str]:
    """``aixgo web --config config`` (plus ``args``) on a free loopback port, its output in
    ``log``, without the caller's ``AIXGO_*`` and ``OPENAI_*`` variables; yield its base
    URL; stop it."""
    port = free_port()
    exe = shutil.which("aixgo")
    assert exe, "the aixgo script is not on PATH (run the tests with the venv's bin first)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIXGO_", "OPENAI_"))}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [exe, "web", "--config", str(config), "--listen", f"127.0.0.1:{port}", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(proc, answers(url + "/openapi.json"), what="aixgo web",
                             log=log.read_text)  # fmt: skip
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
