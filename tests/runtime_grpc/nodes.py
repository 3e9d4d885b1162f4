"""Node processes for the tests: ``aixgo serve`` started for real on 127.0.0.1."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.services import wait_until_ready

HERE = Path(__file__).parent
TOOLS = "aixgo_grpc_test_tools"
_SERVING = re.compile(r"^serving (\S+):(\d+) ")


def server_config(
    path: Path,
    session_url: str,
    *,
    policy: str = "queue",
    lease_ttl: float = 2.0,
    timeout: float | None = 30.0,
) -> Path:
    """A node's YAML: ``assistant`` (ReAct, scripted tool calls), ``echo`` and ``guarded``
    (scripted echoes; the mutual-TLS node lets no test client call ``guarded``)."""
    tools = [f"{TOOLS}:{name}" for name in ("mark", "hold", "nap")]
    config = {
        "session": session_url,
        "agents": [
            {"name": "assistant", "role": "react",
             "options": {"model": "scripted:calls", "tools": tools}},
            {"name": "echo", "role": "react", "options": {"model": "scripted:echo"}},
            {"name": "guarded", "role": "react", "options": {"model": "scripted:echo"}},
        ],
        "runtime": {"turn_policy": policy, "turn_lease_ttl": lease_ttl, "timeout": timeout},
    }  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class Node:
    """One ``aixgo serve`` process; :meth:`start` waits until it serves."""

    config: Path
    args: list[str]
    tool_log: Path
    proc: subprocess.Popen[str] | None = None
    port: int = 0
    stderr: list[str] = field(default_factory=list)
    _drain: threading.Thread | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Node:
        env = {**os.environ, "PYTHONPATH": str(HERE), "AIXGO_TEST_TOOL_LOG": str(self.tool_log)}
        aixgo = Path(sys.executable).parent / "aixgo"
        self.proc = subprocess.Popen(
            [str(aixgo), "serve", "--config", str(self.config), "--listen", "127.0.0.1:0",
             *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        self._drain = threading.Thread(target=self._drain_stderr, daemon=True)
        self._drain.start()
        stdout = self.proc.stdout
        assert stdout is not None
        serving: list[re.Match[str]] = []

        def ready() -> bool:  # the line it prints once it accepts calls
            m = _SERVING.match(stdout.readline())
            serving.extend([m] if m else [])
            return m is not None

        try:
            wait_until_ready(self.proc, ready, what="node", timeout=timeout, interval=0,
                             log=lambda: "".join(self.stderr))  # fmt: skip
        except AssertionError:
            self.kill()
            raise
        self.port = int(serving[0].group(2))
        return self

    def _drain_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def terminate(self) -> int:
        """SIGTERM (graceful) and wait; the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        status = self.proc.wait(timeout=60)
        self._close_pipes()
        return status

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self._close_pipes()

    def _close_pipes(self) -> None:
        assert self.proc is not None
        if self._drain is not None:
            self._drain.join(timeout=10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.kill()
        else:  # it ended on its own (a test stopped it): its pipes are still open
            self._close_pipes()


def start_nodes(
    tmp: Path, session_url: str, n: int, *, args: list[str], tool_log: Path, **config: object
) -> list[Node]:
    """``n`` nodes on one store, started in parallel (each spends a while importing)."""
    path = server_config(tmp / f"node-{len(list(tmp.glob('node-*')))}.yaml", session_url,
                         **config)  # type: ignore[arg-type]  # fmt: skip
    nodes = [Node(path, args, tool_log) for _ in range(n)]
    threads = [threading.Thread(target=node.start) for node in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for node in nodes:
        assert node.port, f"a node did not start:\n{''.join(node.stderr)}"
    return nodes
