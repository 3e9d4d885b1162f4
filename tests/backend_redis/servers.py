"""Private Redis servers for the tests: real redis-server processes on free ports.

Never fakeredis or a mock: the contract is enforced by Lua on the server, so only a real server
tests it. In CI a missing redis-server binary is a failure, not a skip.

With :class:`TlsFiles` a server speaks only TLS (``--port 0 --tls-port N``); a cluster's nodes
then also talk TLS to each other on the cluster bus (``--tls-cluster yes``).
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RedisCluster3", "RedisProcess", "TlsFiles", "free_port", "redis_binary"]


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


_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")  # fast to make


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is needed to make the TLS test certificates")
    subprocess.run([openssl, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class TlsFiles:
    """Certificates made for one test run, in ``folder``:

    * ``ca.crt``: the test CA; ``server.crt``/``server.key``, signed by it for IP 127.0.0.1
      only (so 127.0.0.2, the same machine, fails a hostname check), used by every server;
    * ``client.crt``/``client.key``, signed by the CA, and ``client-encrypted.key``, the same
      key encrypted with :attr:`KEY_PASSWORD` (for ``ssl_password``);
    * ``other-ca.crt``: an unrelated CA, and ``other-client.crt``/``.key`` signed by it.
    """

    folder: Path
    KEY_PASSWORD = "key-pa55"

    @classmethod
    def make(cls, folder: Path) -> TlsFiles:
        folder.mkdir(parents=True, exist_ok=True)
        for ca, cn in (("ca", "aixgo-test-ca"), ("other-ca", "someone-else")):
            _openssl("req", "-x509", *_EC_KEY, "-keyout", f"{ca}.key", "-out", f"{ca}.crt",
                     "-days", "2", "-subj", f"/CN={cn}", cwd=folder)  # fmt: skip
        (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        for name, ca, ext in (("server", "ca", ["-extfile", "server.ext"]),
                              ("client", "ca", []), ("other-client", "other-ca", [])):  # fmt: skip
            _openssl("req", *_EC_KEY, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                     "-subj", f"/CN=aixgo-test-{name}", cwd=folder)  # fmt: skip
            _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey",
                     f"{ca}.key", "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", *ext,
                     cwd=folder)  # fmt: skip
        _openssl("pkey", "-in", "client.key", "-out", "client-encrypted.key", "-aes256",
                 "-passout", f"pass:{cls.KEY_PASSWORD}", cwd=folder)  # fmt: skip
        return cls(folder)

    def path(self, name: str) -> str:
        return str(self.folder / name)

    def server_args(self) -> list[str]:
        return ["--tls-cert-file", self.path("server.crt"), "--tls-key-file",
                self.path("server.key"), "--tls-ca-cert-file", self.path("ca.crt")]  # fmt: skip

    def cli_args(self) -> list[str]:
        """redis-cli's TLS options, with the client certificate (servers may require one)."""
        return ["--tls", "--cacert", self.path("ca.crt"), "--cert", self.path("client.crt"),
                "--key", self.path("client.key")]  # fmt: skip

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.path("ca.crt"))
        context.load_cert_chain(self.path("client.crt"), self.path("client.key"))
        return context


def _ping(port: int, tls: TlsFiles | None) -> bool:
    """Whether a server answers on ``port`` (``-NOAUTH`` counts: it is up, it wants AUTH)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as raw:
            if tls is None:
                return _pong(raw)
            with tls.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as s:
                return _pong(s)
    except OSError:
        return False


def _pong(s: socket.socket) -> bool:
    s.sendall(b"PING\r\n")
    return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))


class RedisProcess:
    """One redis-server in a folder of its own; start, stop (SIGKILL or SIGTERM) and restart on
    the same port. With ``durable``, every write is fsynced to an AOF before it is acknowledged,
    so a restart keeps every acknowledged write. With ``tls`` it speaks only TLS on its port
    (clients must show a certificate of the CA unless ``extra`` relaxes
    ``--tls-auth-clients``); with ``password`` it wants AUTH."""

    def __init__(
        self,
        folder: Path,
        *,
        durable: bool = False,
        extra: tuple[str, ...] = (),
        tls: TlsFiles | None = None,
        password: str | None = None,
    ) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port(bus="--cluster-enabled" in extra)
        self.durable = durable
        self.extra = extra
        self.tls = tls
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.durable
            else ["--appendonly", "no"]
        )
        if self.tls is None:
            listen = ["--port", str(self.port)]
        else:
            listen = ["--port", "0", "--tls-port", str(self.port), *self.tls.server_args()]
        auth = ["--requirepass", self.password] if self.password else []
        args = [
            redis_binary(), *listen, "--bind", "127.0.0.1", *auth,
            "--save", "", *persistence, "--dir", str(self.folder), "--daemonize", "no",
            "--logfile", str(self.folder / "redis.log"), *self.extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _ping(self.port, self.tls):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (self.folder / "redis.log").read_text(errors="replace")[-2000:]
                self.stop(kill=True)
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

    def cli_options(self) -> list[str]:
        """How redis-cli reaches this server (TLS, AUTH), before the command."""
        tls = self.tls.cli_args() if self.tls else []
        auth = ["-a", self.password, "--no-auth-warning"] if self.password else []
        return [*tls, *auth]

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            [redis_binary("redis-cli"), "-p", str(self.port), *self.cli_options(), *args],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        return out.stdout


class RedisCluster3:
    """A 3-master Redis Cluster (no replicas) from three local redis-server processes; with
    ``tls``, clients and the cluster bus speak only TLS."""

    def __init__(
        self,
        folder: Path,
        *,
        durable: bool = False,
        tls: TlsFiles | None = None,
        password: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        extra = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                 "--cluster-node-timeout", "2000",
                 *(("--tls-cluster", "yes") if tls else ()), *extra)  # fmt: skip
        self.nodes = [
            RedisProcess(
                folder / f"node{i}", durable=durable, extra=extra, tls=tls, password=password
            )
            for i in range(3)
        ]

    @property
    def url(self) -> str:
        """``redis+cluster://`` with the password, no options (TLS ones are the caller's)."""
        password = self.nodes[0].password
        auth = f":{password}@" if password else ""
        return f"redis+cluster://{auth}" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> None:
        """Start every node and form the cluster; on any failure, stop what was started."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        for node in self.nodes:
            node.start()
        addrs = [f"127.0.0.1:{n.port}" for n in self.nodes]
        created = subprocess.run(
            [redis_binary("redis-cli"), *self.nodes[0].cli_options(), "--cluster", "create",
             *addrs, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{created.stdout}\n"
                               f"{created.stderr}")  # fmt: skip
        deadline = time.monotonic() + 30
        while not all("cluster_state:ok" in n.cli("cluster", "info") for n in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the test Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.05)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
