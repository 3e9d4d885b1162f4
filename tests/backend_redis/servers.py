"""Private Redis servers for the tests: real redis-server processes on free ports.

Never fakeredis or a mock: the contract is enforced by Lua on the server, so only a real server
tests it. In CI a missing redis-server binary is a failure, not a skip.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["RedisCluster3", "RedisProcess", "free_port", "redis_binary"]


def redis_binary(name: str = "redis-server") -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        raise RuntimeError(f"{name} is not installed (apt-get install redis-server); the Redis "
                           "backend tests need a real server")  # fmt: skip
    return path


def free_port(bus: bool = False) -> int:
    """A TCP port nobody listens on (and, for cluster nodes, port + 10000 too)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not bus:
            return port
        if port < 55000:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisProcess:
    """One redis-server in a folder of its own; start, stop (SIGKILL or SIGTERM) and restart on
    the same port. With ``durable``, every write is fsynced to an AOF before it is acknowledged,
    so a restart keeps every acknowledged write."""

    def __init__(self, folder: Path, *, durable: bool = False, extra: tuple[str, ...] = ()) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port(bus="--cluster-enabled" in extra)
        self.durable = durable
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.durable
            else ["--appendonly", "no"]
        )
        args = [
            redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", *persistence, "--dir", str(self.folder), "--daemonize", "no",
            "--logfile", str(self.folder / "redis.log"), *self.extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _ping(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (self.folder / "redis.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not start:\n{log}")
            time.sleep(0.02)

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc = None

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            [redis_binary("redis-cli"), "-p", str(self.port), *args],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        return out.stdout


class RedisCluster3:
    """A 3-master Redis Cluster (no replicas) from three local redis-server processes."""

    def __init__(self, folder: Path, *, durable: bool = False) -> None:
        extra = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                 "--cluster-node-timeout", "2000")  # fmt: skip
        self.nodes = [
            RedisProcess(folder / f"node{i}", durable=durable, extra=extra) for i in range(3)
        ]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        addrs = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run(
            [redis_binary("redis-cli"), "--cluster", "create", *addrs,
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, timeout=60, check=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not all("cluster_state:ok" in n.cli("cluster", "info") for n in self.nodes):
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the test Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.05)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
